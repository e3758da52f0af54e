"""Reading the FeatureService: point-in-time (offline) and latest (online), packed views unpacked.

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
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from feast import FeatureService, FeatureStore

from nextbest.features.definitions import ELEMENT_TYPE_TAG, FEATURE_SERVICE_NAME
from nextbest.features.manifest import ENTITY_JOIN_KEYS, EVENT_TIMESTAMP, PACKED_PRODUCTS
from nextbest.features.packing import unpack
from nextbest.features.schema import PANDAS_DTYPES, cast_column

CUSTOMER_ID = ENTITY_JOIN_KEYS["customer"]
PRODUCT_ID = ENTITY_JOIN_KEYS["product"]
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
    codes, uniques = pd.factorize(np.concatenate([decoded.product_id.astype(object), wanted]))
    n_codes = np.int64(len(uniques))
    element_keys = decoded.row * n_codes + codes[: len(decoded)]
    wanted_keys = group.astype(np.int64) * n_codes + codes[len(decoded) :]
    return decoded.features, pd.Index(element_keys).get_indexer(wanted_keys)


def _take_or_missing(values: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``values[pos]`` with missing (NaN / None) where ``pos`` is -1."""
    missing = np.nan if values.dtype.kind == "f" else None
    padded = np.append(values if missing is not None else values.astype(object), missing)
    return padded[np.where(pos >= 0, pos, len(values))]


def historical_features(
    store: FeatureStore,
    entity_df: pd.DataFrame,
    service: FeatureService | str = FEATURE_SERVICE_NAME,
    candidates_only: bool = False,
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

    Returns:
        ``entity_df``'s columns unchanged (same index) followed by one column per feature, in the
        canonical dtypes of ``nextbest.features.schema``.
    """
    if EVENT_TIMESTAMP not in entity_df.columns:
        raise ValueError(f"entity_df needs an {EVENT_TIMESTAMP!r} column")
    if ROW_ORDER_COLUMN in entity_df.columns:
        raise ValueError(f"entity_df must not contain the reserved column {ROW_ORDER_COLUMN!r}")
    views = served_views(store, service)
    if entity_df.empty:
        return _empty_like(entity_df, service_dtypes(store, service))
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
                    values = pd.Series(_take_or_missing(decoded[f], pos), name=f)
                    columns[f] = cast_column(values, v.dtypes[f]).array
    out = entity_df.copy()
    dtypes = service_dtypes(store, service)
    for v in views:
        for f in v.features:
            out[f] = pd.Series(pd.array(columns[f], dtype=dtypes[f], copy=False), index=out.index)
    return out


# --------------------------------------------------------------------------- online (latest)


def response_columns(response: Any) -> dict[str, list[Any]]:
    """A Feast ``OnlineResponse`` as columns, like ``to_dict(include_event_timestamps=True)``, ~3x faster.

    Reads the protobuf directly: per feature, its values (None when missing; a list for list features)
    and ``<feature>__ts`` (event timestamp in epoch seconds; 0 when no row).
    """
    proto = response.proto
    out: dict[str, list[Any]] = {}
    for name, vector in zip(proto.metadata.feature_names.val, proto.results, strict=True):
        values = []
        for value in vector.values:
            kind = value.WhichOneof("val")
            if kind is None or kind == "null_val":
                values.append(None)
            elif kind.endswith("_list_val"):
                values.append(getattr(value, kind).val)
            else:
                values.append(getattr(value, kind))
        out[name] = values
        out[f"{name}__ts"] = [ts.seconds for ts in vector.event_timestamps]
    return out


@dataclass(frozen=True)
class OnlineRows:
    """The service's latest features for one customer x a list of products, as columns.

    Attributes:
        columns: ``customer_id``, ``product_id`` and every feature (request order of products; numbers
            as float64 with NaN = missing for packed features, Python values / None otherwise).
        timestamps: view -> per row, the event timestamp (epoch seconds; 0 = no value) of the view's
            value. For a packed view, that of the customer's packed row, whether or not it lists the
            product (a product it does not list gets missing pair features).
        candidate_products: the customer's ``candidate_product_ids`` from the packed view (None when
            the service has no packed view or the customer has no packed row).
        packed_timestamp: the packed row's event timestamp (epoch seconds; 0 = none).
    """

    columns: dict[str, Any]
    timestamps: dict[str, np.ndarray]
    candidate_products: list[str] | None
    packed_timestamp: int


def _read(store: FeatureStore, refs: list[str], rows: dict[str, list[str]]) -> dict[str, list[Any]]:
    if not refs or not next(iter(rows.values())):
        return {}
    return response_columns(store.get_online_features(features=refs, entity_rows=rows))


def customer_read(store: FeatureStore, views: Sequence[ServedView], customer_id: str) -> dict[str, list[Any]]:
    """ONE online read of every customer-keyed view (customer features and packed lists) for a customer."""
    refs = [r for v in views if v.join_keys == (CUSTOMER_ID,) for r in v.refs]
    return _read(store, refs, {CUSTOMER_ID: [customer_id]})


def product_read(
    store: FeatureStore, views: Sequence[ServedView], customer_id: str, product_ids: Sequence[str]
) -> dict[str, list[Any]]:
    """ONE online read of every other (product-keyed, or customer x product unpacked) view."""
    others = [v for v in views if v.join_keys != (CUSTOMER_ID,)]
    keys = {k for v in others for k in v.join_keys}
    rows = {PRODUCT_ID: list(product_ids)}
    if CUSTOMER_ID in keys:
        rows[CUSTOMER_ID] = [customer_id] * len(product_ids)
    return _read(store, [r for v in others for r in v.refs], rows)


def read_value(row: Mapping[str, list[Any]], field: str) -> Any:
    """The value of ``field`` in a one-key read (``customer_read``); None when nothing was read."""
    return row[field][0] if row and field in row else None


def read_timestamp(row: Mapping[str, list[Any]], field: str) -> int:
    """The event timestamp (epoch seconds; 0 = no row) of ``field`` in a one-key read."""
    return int(read_value(row, f"{field}__ts") or 0)


def listed_products(customer: Mapping[str, list[Any]]) -> list[str] | None:
    """The customer's ``candidate_product_ids`` from a ``customer_read`` (None: no packed row)."""
    listed = read_value(customer, PACKED_PRODUCTS)
    return None if listed is None else [str(p) for p in listed]


def assemble_online(
    views: Sequence[ServedView],
    customer_id: str,
    product_ids: Sequence[str],
    customer: Mapping[str, list[Any]],
    products: Mapping[str, list[Any]],
) -> OnlineRows:
    """Combine a customer read and a product read into one row per product (``unpack`` decodes the
    packed lists; a product missing from the customer's candidates gets missing pair features)."""
    n = len(product_ids)
    columns: dict[str, Any] = {CUSTOMER_ID: [customer_id] * n, PRODUCT_ID: list(product_ids)}
    timestamps: dict[str, np.ndarray] = {}
    candidates: list[str] | None = None
    packed_ts = 0
    for v in views:
        if v.join_keys == (CUSTOMER_ID,) and not v.packed:
            for f in v.features:
                columns[f] = [read_value(customer, f)] * n
            timestamps[v.name] = np.full(n, read_timestamp(customer, v.timestamp_field), dtype=np.int64)
        elif v.packed:
            candidates = listed_products(customer)
            packed_ts = read_timestamp(customer, PACKED_PRODUCTS)
            lists = {f: [read_value(customer, f)] for f in v.features}
            decoded = unpack([candidates], lists, v.string_features)
            where = {p: i for i, p in enumerate(decoded.product_id)}
            pos = np.fromiter((where.get(p, -1) for p in product_ids), dtype=np.int64, count=n)
            for f in v.features:
                columns[f] = _take_or_missing(decoded.features[f], pos)
            timestamps[v.name] = np.full(n, packed_ts, dtype=np.int64)
        else:
            for f in v.features:
                columns[f] = products[f] if products else [None] * n
            stamps = products.get(f"{v.timestamp_field}__ts") if products else None
            timestamps[v.name] = np.asarray([t or 0 for t in stamps] if stamps else [0] * n, dtype=np.int64)
    return OnlineRows(columns, timestamps, candidates, packed_ts)


def online_rows(
    store: FeatureStore,
    customer_id: str,
    product_ids: Sequence[str] | None = None,
    service: FeatureService | str = FEATURE_SERVICE_NAME,
) -> OnlineRows:
    """The service's latest features online for ``customer_id`` x each of ``product_ids`` (default: the
    customer's candidate products). Two reads: the customer's views, then the products' views."""
    views = served_views(store, service)
    customer = customer_read(store, views, str(customer_id))
    ids = [str(p) for p in (listed_products(customer) or [] if product_ids is None else product_ids)]
    products = product_read(store, views, str(customer_id), ids)
    return assemble_online(views, str(customer_id), ids, customer, products)


@dataclass(frozen=True)
class OnlineFeatures:
    """Online features for one customer and a list of products.

    Attributes:
        frame: one row per requested product (request order): ``customer_id``, ``product_id``, every
            feature of the service, and ``<view>__event_timestamp`` (UTC, NaT when missing) per view.
        feature_timestamps: view -> the OLDEST event_timestamp served for that view across the rows
            (None if any row had no value for the view); feed it to ``staleness_report``.
    """

    frame: pd.DataFrame
    feature_timestamps: dict[str, datetime | None]


def online_features(
    store: FeatureStore,
    customer_id: str,
    product_ids: Sequence[str],
    service: FeatureService | str = FEATURE_SERVICE_NAME,
) -> OnlineFeatures:
    """Read the service's features online for ``customer_id`` x each of ``product_ids``, as a frame.

    Feast's online read ignores ttl; the returned event timestamps let the caller check staleness.
    """
    rows = online_rows(store, customer_id, list(product_ids), service)
    dtypes = service_dtypes(store, service)
    columns: dict[str, Any] = {
        k: pd.array(rows.columns[k], dtype="string") for k in (CUSTOMER_ID, PRODUCT_ID)
    }
    stamps: dict[str, datetime | None] = {}
    for v in served_views(store, service):
        for f in v.features:
            columns[f] = pd.array(
                cast_column(pd.Series(rows.columns[f], dtype=object), dtypes[f]), dtype=dtypes[f]
            )
        secs = rows.timestamps[v.name]
        ts = pd.DatetimeIndex(
            np.where(secs > 0, secs, np.iinfo("int64").min).astype("datetime64[s]"), tz="UTC"
        )
        columns[f"{v.name}__{EVENT_TIMESTAMP}"] = ts.astype("datetime64[ns, UTC]")
        stamps[v.name] = None if ts.hasnans or ts.empty else ts.min().to_pydatetime()
    return OnlineFeatures(frame=pd.DataFrame(columns), feature_timestamps=stamps)
