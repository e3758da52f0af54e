"""The packed customer x product layout: its encoding (defined here, once) and its one decoder.

The dbt macro ``pack_features`` stores a customer's candidate products (``PACKED_PRODUCTS``) and, aligned
with them, one list per pair feature. Lists carry no nulls, because Feast's online store turns a null
element into 0: numbers and booleans travel as double with NaN for null (``NUMBER_NULL``), strings with
'' for null (``STRING_NULL``); ``transport_type`` names the Feast element type a feature travels as and
``ELEMENT_TYPE_TAG`` tags the Feast field with the type the model sees. ``manifest`` and ``definitions``
import these; ``unpack`` is the one decoder, used by the offline retrieval (training) and the online
read (``nextbest.features.online``), so both see identical values and neither training nor serving sees
the layout. (The macro in ``dbt_project/macros/pack_features.sql`` writes the same encoding in SQL.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa

PACKED_PRODUCTS = "candidate_product_ids"
"""The list column of a packed model: the customer's candidate products, aligned with every feature list."""

PACKED_PRODUCTS_DBT_TYPE = "varchar[]"
"""The dbt ``data_type`` of ``PACKED_PRODUCTS`` in the packed model's yml."""

STRING_NULL = ""
"""How a null string element travels in a packed list."""

NUMBER_NULL = float("nan")
"""How a null number or boolean element travels in a packed list (as a double)."""

STRING_TYPE: Literal["String"] = "String"
"""The Feast type of features whose elements travel as strings; every other type travels as a double."""

NUMBER_TRANSPORT: Literal["Float64"] = "Float64"
"""The Feast element type numbers and booleans travel as."""

ELEMENT_TYPE_TAG = "element_type"
"""Field tag of a packed feature: the Feast type name of one element as the model sees it."""


def transport_type(feast_type: str) -> Literal["String", "Float64"]:
    """The Feast element type a packed feature of ``feast_type`` travels as (strings stay strings,
    numbers and booleans become doubles with ``NUMBER_NULL`` for null)."""
    return STRING_TYPE if feast_type == STRING_TYPE else NUMBER_TRANSPORT


class PackingError(ValueError):
    """A packed row is malformed (a feature list's length differs from its product list's)."""


@dataclass(frozen=True)
class Unpacked:
    """Customer x product rows decoded from packed rows.

    Attributes:
        row: per element, the index of the packed row it came from (int64).
        product_id: per element, the candidate product (object array of str).
        features: feature name -> per-element values: float64 (NaN = missing) for numbers and booleans,
            object (None = missing) for strings.
    """

    row: np.ndarray
    product_id: np.ndarray
    features: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.row)


def _flatten(values: Any, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """(per-row lengths, all elements in order) of a column of lists: a pyarrow list array (null row =
    no element; fast, no per-row Python) or a sequence of lists / arrays / None."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], type=values.type)
    if isinstance(values, pa.ListArray | pa.LargeListArray):
        lengths = values.value_lengths().fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        return lengths, np.asarray(values.flatten().to_numpy(zero_copy_only=False), dtype=dtype)
    lengths = np.fromiter((0 if v is None else len(v) for v in values), dtype=np.int64, count=len(values))
    parts = [np.asarray(v, dtype=dtype) for v, n in zip(values, lengths, strict=True) if n > 0]
    return lengths, np.concatenate(parts) if parts else np.empty(0, dtype=dtype)


def unpack(
    products: Sequence[Any], lists: Mapping[str, Sequence[Any]], string_features: Sequence[str] = ()
) -> Unpacked:
    """Decode packed rows into customer x product elements.

    Args:
        products: per packed row, its ``candidate_product_ids`` (a list or array; None = no row), or a
            pyarrow list array of them (offline: flattened without a per-row loop).
        lists: feature name -> per packed row, the feature's list, aligned with ``products``' list
            (same kinds of input).
        string_features: the features whose elements are strings ('' decodes to None); every other
            feature is numeric (NaN = missing).

    Raises:
        PackingError: a feature list of some row is not as long as that row's product list.
    """
    lengths, product_id = _flatten(products, object)
    strings = set(string_features)
    features: dict[str, np.ndarray] = {}
    for name, values in lists.items():
        if len(values) != len(products):
            raise PackingError(f"feature {name!r}: {len(values)} packed rows, expected {len(products)}")
        got, flat = _flatten(values, object if name in strings else np.float64)
        bad = np.flatnonzero(got != lengths)
        if len(bad):
            i = int(bad[0])
            raise PackingError(
                f"feature {name!r}, packed row {i}: {got[i]} values for {lengths[i]} candidate products "
                f"({len(bad)} row(s) misaligned)"
            )
        if name in strings:
            flat[flat == STRING_NULL] = None
        features[name] = flat
    row = np.repeat(np.arange(len(products), dtype=np.int64), lengths)
    return Unpacked(row=row, product_id=product_id, features=features)
