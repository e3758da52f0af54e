"""One dtype schema for feature frames, applied identically to offline and online results.

Offline (DuckDB -> pandas) a nullable integer comes back as float64 with NaN and a string as object;
online (protobuf -> Python) an integer comes back as int/None and a missing double as None. ``normalise``
maps both onto the same nullable pandas dtypes so frames compare with ``assert_frame_equal`` and the
ranker sees the same types in training and serving.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from nextbest.columns import ENTITY_JOIN_KEYS, EVENT_TIMESTAMP
from nextbest.features.manifest import FeatureViewSpec

PANDAS_DTYPES: dict[str, str] = {
    "String": "string",
    "Int32": "Int64",
    "Int64": "Int64",
    "Float64": "Float64",
    "Bool": "boolean",
}
"""Feast type name -> pandas dtype every feature column is normalised to (all nullable, NA = missing)."""


def feature_dtypes(specs: Iterable[FeatureViewSpec]) -> dict[str, str]:
    """Feature name -> canonical pandas dtype for every feature of ``specs``."""
    return {f.name: PANDAS_DTYPES[f.feast_type] for s in specs for f in s.fields}


def _missing_to_none(values: pd.Series) -> pd.Series:
    """An object Series with every missing value (None, NaN, NA, NaT) replaced by None."""
    obj = values.astype("object")
    return obj.where(obj.notna(), None)


def cast_column(values: pd.Series, dtype: str) -> pd.Series:
    """``values`` as ``dtype`` (one of PANDAS_DTYPES' values), missing -> NA.

    Raises:
        ValueError: a float column holds non-integral values for an integer dtype.
    """
    if dtype == "Int64" and values.dtype.kind == "f":
        finite = values.dropna().to_numpy()
        if not np.all(np.mod(finite, 1) == 0):
            raise ValueError(f"column {values.name!r} holds non-integral values for an integer feature")
    if values.dtype.kind == "f" and dtype in ("Int64", "Float64", "boolean"):
        return pd.Series(_from_floats(values.to_numpy(), dtype), index=values.index, name=values.name)
    return _missing_to_none(values).astype(dtype)


def _from_floats(values: np.ndarray, dtype: str) -> pd.api.extensions.ExtensionArray:
    """A float64 array (NaN = missing) as a nullable ``dtype`` array, without a per-value Python loop."""
    mask = np.isnan(values)
    filled = np.where(mask, 0.0, values)
    if dtype == "Float64":
        return pd.arrays.FloatingArray(filled, mask)
    if dtype == "Int64":
        return pd.arrays.IntegerArray(filled.astype(np.int64), mask)
    return pd.arrays.BooleanArray(filled != 0, mask)


def normalise_dtypes(df: pd.DataFrame, dtypes: Mapping[str, str]) -> pd.DataFrame:
    """A copy of ``df`` with the canonical dtypes (see ``normalise``); ``dtypes``: feature -> dtype."""
    out = df.copy()
    for name, dtype in dtypes.items():
        if name in out.columns:
            out[name] = cast_column(out[name], dtype)
    for key in ENTITY_JOIN_KEYS.values():
        if key in out.columns:
            out[key] = _missing_to_none(out[key]).map(lambda v: v if v is None else str(v)).astype("string")
    if EVENT_TIMESTAMP in out.columns:
        ts = pd.to_datetime(out[EVENT_TIMESTAMP])
        ts = ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")
        out[EVENT_TIMESTAMP] = ts.astype("datetime64[ns, UTC]")
    return out


def normalise(df: pd.DataFrame, specs: Iterable[FeatureViewSpec]) -> pd.DataFrame:
    """A copy of ``df`` with feature, key and timestamp columns in the canonical dtypes.

    Feature columns of ``specs`` present in ``df`` get ``PANDAS_DTYPES`` (integers -> Int64, doubles ->
    Float64, strings -> string, booleans -> boolean); ``customer_id`` and ``product_id`` become
    ``string``; ``event_timestamp`` becomes ``datetime64[ns, UTC]`` (naive values are taken as UTC).
    Other columns are left as they are. Missing values are ``pd.NA`` / ``NaT``.
    """
    return normalise_dtypes(df, feature_dtypes(specs))
