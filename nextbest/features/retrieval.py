"""Reading the FeatureService point in time (offline), packed views unpacked; online is ``features.online``.

The feature list is the registered FeatureService and nothing else. Its views are read per join-key
group: customer-keyed views (the customer's features and the packed customer x product lists) once per
distinct (customer, timestamp), product-keyed views once per distinct (product, timestamp), then the
values are broadcast to the caller's (customer, product, timestamp) rows. A packed view's lists are
decoded by ``nextbest.features.packing.unpack``, offline and online alike; a product that is not among the
customer's ``candidate_product_ids`` gets missing pair features.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from feast import FeatureService, FeatureStore

from nextbest.columns import CUSTOMER_ID, EVENT_TIMESTAMP, PRODUCT_ID
from nextbest.features.definitions import FEATURE_SERVICE_NAME
from nextbest.features.packing import ELEMENT_TYPE_TAG, PACKED_PRODUCTS, element_positions, unpack
from nextbest.features.schema import PANDAS_DTYPES, cast_column

ROW_ORDER_COLUMN = "__nextbest_row"
"""Temporary entity-df column used to restore the caller's row order after a Feast PIT join."""


# --------------------------------------------------------------------------- the service's views


@dataclass(frozen=True)
class ServedView:
    """One view of the FeatureService as the model sees it.

    Attributes:
        name: the Feast view name.
        join_keys: the view's Feast join keys (``("customer_id",)`` for a packed view).
        features: feature names as the model sees them (a packed view's ``candidate_product_ids`` excluded).
        dtypes: feature -> canonical pandas dtype (element type for packed features).
        packed: True when the view stores customer x product features as per-customer lists.
    """

    name: str
    join_keys: tuple[str, ...]
    features: tuple[str, ...]
    dtypes: dict[str, str] = field(hash=False)
    packed: bool = False

    @property
    def refs(self) -> list[str]:
        """Feast feature references to read (``view:feature``), the packed product list included."""
        names = (PACKED_PRODUCTS, *self.features) if self.packed else self.features
        return [f"{self.name}:{f}" for f in names]

    @property
    def string_features(self) -> list[str]:
        """Features whose canonical dtype is ``string``."""
        return [f for f in self.features if self.dtypes[f] == "string"]

    @property
    def timestamp_field(self) -> str:
        """The response field whose ``__ts`` is the view's event timestamp online."""
        return PACKED_PRODUCTS if self.packed else self.features[0]


_SERVICE_CACHE: weakref.WeakKeyDictionary[FeatureStore, dict[str, FeatureService]] = (
    weakref.WeakKeyDictionary()
)
_VIEWS_CACHE: weakref.WeakKeyDictionary[FeatureStore, dict[str, list[ServedView]]] = (
    weakref.WeakKeyDictionary()
)


def get_service(store: FeatureStore, service: FeatureService | str = FEATURE_SERVICE_NAME) -> FeatureService:
    """The registered FeatureService (by name, cached per store object; or passed through).

    Caching the object matters online: Feast caches its request plan per service object, and a fresh
    object per call costs ~40 ms. A re-applied service is seen by a new FeatureStore (``get_store``).
    """
    if isinstance(service, FeatureService):
        return service
    per_store = _SERVICE_CACHE.setdefault(store, {})
    if service not in per_store:
        per_store[service] = store.get_feature_service(service)
    return per_store[service]


def _field_dtype(f: Any) -> str:
    element = (f.tags or {}).get(ELEMENT_TYPE_TAG)
    return PANDAS_DTYPES[element if element else str(f.dtype)]


def served_views(
    store: FeatureStore, service: FeatureService | str = FEATURE_SERVICE_NAME
) -> list[ServedView]:
    """The service's views in service order, with join keys from the registry (cached per store)."""
    svc = get_service(store, service)
    per_store = _VIEWS_CACHE.setdefault(store, {})
    if svc.name not in per_store:
        views = []
        for p in svc.feature_view_projections:
            view = store.get_feature_view(p.name)
            packed = any(f.name == PACKED_PRODUCTS for f in p.features)
            feats = [f for f in p.features if f.name != PACKED_PRODUCTS]
            views.append(
                ServedView(
                    name=p.name,
                    join_keys=tuple(view.join_keys),
                    features=tuple(f.name for f in feats),
                    dtypes={f.name: _field_dtype(f) for f in feats},
                    packed=packed,
                )
            )
        per_store[svc.name] = views
    return per_store[svc.name]


def service_feature_views(store: FeatureStore, service: FeatureService | str) -> dict[str, list[str]]:
    """View name -> feature names (as the model sees them) served by ``service``, in service order."""
    return {v.name: list(v.features) for v in served_views(store, service)}


def service_dtypes(
    store: FeatureStore, service: FeatureService | str = FEATURE_SERVICE_NAME
) -> dict[str, str]:
    """Feature name -> canonical pandas dtype (``nextbest.features.schema.PANDAS_DTYPES``) for ``service``."""
    return {f: dtype for v in served_views(store, service) for f, dtype in v.dtypes.items()}


def _key_groups(views: Sequence[ServedView]) -> dict[tuple[str, ...], list[ServedView]]:
    """Views grouped by join keys, in first-seen order."""
    groups: dict[tuple[str, ...], list[ServedView]] = {}
    for v in views:
        groups.setdefault(v.join_keys, []).append(v)
    return groups


# --------------------------------------------------------------------------- offline (point in time)


def _empty_like(entity_df: pd.DataFrame, dtypes: Mapping[str, str]) -> pd.DataFrame:
    out = entity_df.copy()
    for col, dtype in dtypes.items():
        out[col] = pd.Series(dtype=dtype, index=out.index)
    return out


def _point_in_time(store: FeatureStore, rows: pd.DataFrame, refs: list[str]) -> pa.Table:
    """Feast's PIT join of ``rows`` (keys + event_timestamp) as an arrow table, in ``rows``' order."""
    keyed = rows.reset_index(drop=True)
    keyed.insert(0, ROW_ORDER_COLUMN, np.arange(len(keyed)))
    result = store.get_historical_features(entity_df=keyed, features=refs).to_arrow()
    if result.num_rows != len(keyed):
        raise RuntimeError(f"Feast returned {result.num_rows} rows for {len(keyed)} entity rows")
    order = np.argsort(result.column(ROW_ORDER_COLUMN).to_numpy(), kind="stable")
    return result.take(pa.array(order))


def _group_codes(keys: Sequence[pd.Series], timestamps: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the index of its distinct (keys..., timestamp) combination, numbered in order of first
    appearance, and the row index of each combination's first appearance."""
    combined = pd.factorize(timestamps.array.asi8 if hasattr(timestamps.array, "asi8") else timestamps)[0]
    for key in keys:
        codes, uniques = pd.factorize(key)
        combined = combined * np.int64(len(uniques) + 1) + codes
    _, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # number the combinations by first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse.ravel()], first[order]


def _unpacked_positions(
    packed: pa.Table, views: Sequence[ServedView], group: np.ndarray, products: pd.Series
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Decode the packed lists of ``packed`` (one row per distinct entity group) and, for each entity row
    (its group index and product), the position of its element (-1 = not a candidate)."""
    lists = {f: packed.column(f) for v in views for f in v.features}
    strings = [f for v in views for f in v.string_features]
    decoded = unpack(packed.column(PACKED_PRODUCTS), lists, strings)
    wanted = products.astype(str).to_numpy(dtype=object)
    return decoded.features, element_positions(decoded.row, decoded.product_id, group, wanted)


def take_or_missing(values: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``values[pos]`` with missing (NaN / None) where ``pos`` is -1."""
    missing = np.nan if values.dtype.kind == "f" else None
    padded = np.append(values if missing is not None else values.astype(object), missing)
    return padded[np.where(pos >= 0, pos, len(values))]


def historical_features(
    store: FeatureStore,
    entity_df: pd.DataFrame,
    service: FeatureService | str = FEATURE_SERVICE_NAME,
    candidates_only: bool = False,
    join_keys: tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """Point-in-time features for every row of ``entity_df``, in ``entity_df``'s row order.

    For each row and view, the value is the view's row with the same keys and the latest
    ``event_timestamp <= entity event_timestamp`` that is not older than the view's ttl (else null).
    For a packed view, the row's product must also be among that row's ``candidate_product_ids`` (else
    null pair features).

    Args:
        store: the feature store.
        entity_df: ``customer_id`` (and ``product_id`` if any view is keyed by product or packed),
            ``event_timestamp`` (naive = UTC, or tz-aware) and any extra columns, passed through.
        service: the feature service (default ``ranker_v1``).
        candidates_only: raise if some row's product is not a candidate of its customer's packed row
            (training rows must all be candidates).
        join_keys: read only the service's views keyed by exactly these keys, packed views excluded
            (``("customer_id",)``: the customer features a customer-grain task reads); None = every view.

    Returns:
        ``entity_df``'s columns unchanged (same index) followed by one column per feature, in the
        canonical dtypes of ``nextbest.features.schema``.
    """
    if EVENT_TIMESTAMP not in entity_df.columns:
        raise ValueError(f"entity_df needs an {EVENT_TIMESTAMP!r} column")
    if ROW_ORDER_COLUMN in entity_df.columns:
        raise ValueError(f"entity_df must not contain the reserved column {ROW_ORDER_COLUMN!r}")
    views = served_views(store, service)
    if join_keys is not None:
        views = [v for v in views if v.join_keys == tuple(join_keys) and not v.packed]
    dtypes = {f: dtype for v in views for f, dtype in v.dtypes.items()}
    if entity_df.empty:
        return _empty_like(entity_df, dtypes)
    timestamps = pd.to_datetime(entity_df[EVENT_TIMESTAMP])
    if timestamps.dt.tz is None:
        timestamps = timestamps.dt.tz_localize("UTC")
    columns: dict[str, Any] = {}
    for keys, group_views in _key_groups(views).items():
        missing = [k for k in keys if k not in entity_df.columns]
        if missing or (any(v.packed for v in group_views) and PRODUCT_ID not in entity_df.columns):
            raise ValueError(
                f"entity_df needs column(s) {missing or [PRODUCT_ID]} for views "
                f"{[v.name for v in group_views]}"
            )
        frame = pd.DataFrame({k: entity_df[k].astype(str).to_numpy() for k in keys})
        frame[EVENT_TIMESTAMP] = timestamps.array
        group, first = _group_codes([frame[k] for k in keys], timestamps)
        distinct = frame.iloc[first].reset_index(drop=True)
        result = _point_in_time(store, distinct, [r for v in group_views for r in v.refs])
        for v in (v for v in group_views if not v.packed):
            for f in v.features:
                values = result.column(f).to_pandas().rename(f)
                columns[f] = cast_column(values, v.dtypes[f]).array.take(group)
        packed = [v for v in group_views if v.packed]
        if packed:
            decoded, pos = _unpacked_positions(result, packed, group, entity_df[PRODUCT_ID])
            if candidates_only and (pos < 0).any():
                bad = entity_df.iloc[int(np.flatnonzero(pos < 0)[0])]
                raise ValueError(
                    f"{int((pos < 0).sum())} entity row(s) are not candidates in view {packed[0].name}, e.g. "
                    f"customer {bad[CUSTOMER_ID]!r}, product {bad[PRODUCT_ID]!r} at {bad[EVENT_TIMESTAMP]}"
                )
            for v in packed:
                for f in v.features:
                    values = pd.Series(take_or_missing(decoded[f], pos), name=f)
                    columns[f] = cast_column(values, v.dtypes[f]).array
    out = entity_df.copy()
    for v in views:
        for f in v.features:
            out[f] = pd.Series(pd.array(columns[f], dtype=dtypes[f], copy=False), index=out.index)
    return out
