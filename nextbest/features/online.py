"""Reading the FeatureService online: a customer's candidate products as plain rows.

The online store holds one key per customer (customer features and the packed candidate lists) and one
per product. ``OnlineReader.candidates`` reads the customer's key, keeps the listed products that the
caller's candidate rule accepts, reads (or takes from its cache) their product rows and returns one plain
row per candidate: the packed layout is decoded here (``nextbest.features.packing.unpack``) and never
leaves this module. ``online_rows`` / ``online_features`` read arbitrary products (tests, benchmarks).
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import pandas as pd
from feast import FeatureService, FeatureStore
from feast.errors import FeatureViewNotFoundException
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from nextbest.columns import CUSTOMER_ID, EVENT_TIMESTAMP, PRODUCT_ID
from nextbest.features.definitions import FEATURE_SERVICE_NAME
from nextbest.features.embeddings import EMBEDDING, RETRIEVAL_MODEL
from nextbest.features.online_tables import OnlineTables, proto_value
from nextbest.features.packing import PACKED_PRODUCTS, element_positions, unpack
from nextbest.features.retrieval import (
    ServedView,
    get_service,
    served_views,
    service_dtypes,
    take_or_missing,
)
from nextbest.features.schema import cast_column
from nextbest.features.store import reset_online_client

CandidateRule = Callable[[np.ndarray, int, int], np.ndarray]
"""``(listed, customer_ts, list_ts) -> mask``: which listed products are candidates, given a boolean per
listed product, the event timestamp (epoch seconds; 0 = no row) of the customer's latest customer row
and that of its candidate list."""


class CandidateNarrowing(Protocol):
    """A retrieval stage (``nextbest.retrieval.bundle.RetrievalIndex``) that keeps some of a customer's
    candidates, best first, before their rows are read. ``view`` names the customer-keyed Feast view it
    needs (its ``embedding`` and ``retrieval_model``), read once for all the customers of a call;
    ``keep`` gets the customer's one-key read of it (empty when the view is not registered) and the
    event timestamp of the customer's feature row, and answers the positions in ``candidates`` of the
    ones it keeps, best first."""

    @property
    def view(self) -> str: ...

    def keep(self, candidates: list[str], row: Mapping[str, list[Any]], customer_ts: int) -> np.ndarray: ...


class OnlineStoreUnavailableError(ConnectionError):
    """The online store could not be read (down, timed out, corrupted); retry after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    """Exception types meaning "the online store cannot be read": every sqlite and redis error (down,
    timed out, corrupted file, missing table), socket errors, and undecodable stored values."""
    from google.protobuf.message import DecodeError

    errors: list[type[BaseException]] = [sqlite3.Error, OSError, TimeoutError, DecodeError]
    try:
        import redis.exceptions

        errors.append(redis.exceptions.RedisError)
    except ImportError:  # pragma: no cover - redis is a dependency of feast[redis]
        pass
    return tuple(errors)


UNAVAILABLE_ERRORS = _unavailable_errors()


def epoch_to_utc(seconds: int) -> datetime:
    """A tz-aware UTC datetime from epoch seconds."""
    return datetime.fromtimestamp(int(seconds), tz=UTC)


# --------------------------------------------------------------------------- one read


def response_columns(response: Any) -> dict[str, list[Any]]:
    """A Feast ``OnlineResponse`` as columns, like ``to_dict(include_event_timestamps=True)``, ~3x faster.

    Reads the protobuf directly: per feature, its values (None when missing; a list for list features)
    and ``<feature>__ts`` (event timestamp in epoch seconds; 0 when no row).
    """
    proto = response.proto
    out: dict[str, list[Any]] = {}
    for name, vector in zip(proto.metadata.feature_names.val, proto.results, strict=True):
        out[name] = [proto_value(value) for value in vector.values]
        out[f"{name}__ts"] = [ts.seconds for ts in vector.event_timestamps]
    return out


def _read(store: FeatureStore, refs: list[str], rows: dict[str, list[str]]) -> dict[str, list[Any]]:
    if not refs or not next(iter(rows.values())):
        return {}
    return response_columns(store.get_online_features(features=refs, entity_rows=rows))


_TABLES: dict[FeatureStore, dict[str, Any]] = {}


def _feature_view(store: FeatureStore, name: str) -> Any:
    """The registered FeatureView ``name`` (cached per store object, like ``served_views``)."""
    per_store = _TABLES.setdefault(store, {})
    if name not in per_store:
        per_store[name] = store.get_feature_view(name)
    return per_store[name]


def online_tables(store: FeatureStore) -> OnlineTables:
    """The direct reader of ``store``'s online tables (one per store object)."""
    per_store = _TABLES.setdefault(store, {})
    tables = per_store.get(OnlineTables)
    if tables is None:
        tables = per_store[OnlineTables] = OnlineTables(store)
    return tables


def customers_read(
    store: FeatureStore, views: Sequence[ServedView], customer_ids: Sequence[str]
) -> dict[str, list[Any]]:
    """ONE online read of every customer-keyed view for several customers: per feature, one value per
    customer and ``<feature>__ts`` (epoch seconds; 0 = no row), as ``response_columns`` gives them
    (double lists as float64 arrays).

    Reads Feast's online tables directly (``OnlineTables``: the sqlite table with Feast's query and
    Feast's encodings, without its per-row conversions; redis through ``provider.online_read``), one
    call per view, rather than through ``get_online_features``, whose per-call planning and response
    building cost more than the read itself (customer ids are strings: the ``customer`` entity's type).
    """
    ids = [str(c) for c in customer_ids]
    if not ids:
        return {}
    keys = [EntityKeyProto(join_keys=[CUSTOMER_ID], entity_values=[ValueProto(string_val=c)]) for c in ids]
    tables = online_tables(store)
    out: dict[str, list[Any]] = {}
    for view in views:
        if view.join_keys != (CUSTOMER_ID,):
            continue
        names = [ref.split(":", 1)[1] for ref in view.refs]
        rows = tables.read_values(_feature_view(store, view.name), keys, names)
        stamps = [ts if found is not None else 0 for ts, found in rows]
        for name in names:
            out[name] = [None if found is None else found.get(name) for _, found in rows]
            out[f"{name}__ts"] = stamps
    return out


def customer_read(store: FeatureStore, views: Sequence[ServedView], customer_id: str) -> dict[str, list[Any]]:
    """ONE online read of every customer-keyed view (customer features and packed lists) for a customer."""
    return customers_read(store, views, [customer_id])


def one_row(read: Mapping[str, list[Any]], i: int) -> dict[str, list[Any]]:
    """Row ``i`` of a several-key read as a one-key read (what ``customer_read`` returns)."""
    return {k: v[i : i + 1] for k, v in read.items()}


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


def listed_products(customer: Mapping[str, list[Any]]) -> list[str]:
    """The customer's listed candidate products from a ``customer_read`` (empty: no packed row)."""
    listed = read_value(customer, PACKED_PRODUCTS)
    return [] if listed is None else list(map(str, listed))


# --------------------------------------------------------------------------- plain rows


@dataclass(frozen=True)
class OnlineRows:
    """The service's latest features for one customer x a list of products, as plain columns.

    Attributes:
        columns: ``customer_id``, ``product_id`` (lists) and every feature (request order of products;
            numbers as float64 with NaN = missing for customer x product features, object arrays of
            Python values / None otherwise). A product that is not among the customer's candidates has
            missing customer x product features.
        view_ts: per customer-keyed view, the event timestamp (epoch seconds; 0 = no row) of the
            customer's row in it (for customer x product features: that of the candidate list).
        row_ts: per other view, per row, the event timestamp (epoch seconds; 0 = no value).
        customer_ts: the event timestamp of the customer's customer-features row (0 = unknown customer).
    """

    columns: dict[str, Any]
    view_ts: dict[str, int]
    row_ts: dict[str, np.ndarray]
    customer_ts: int

    @property
    def n(self) -> int:
        """The number of rows (products)."""
        return len(self.columns[PRODUCT_ID])

    @property
    def timestamps(self) -> dict[str, np.ndarray]:
        """View -> per row, the event timestamp (epoch seconds; 0 = no value) of the view's value."""
        out = {view: np.full(self.n, ts, dtype=np.int64) for view, ts in self.view_ts.items()}
        out.update(self.row_ts)
        return out

    def oldest_served(self) -> dict[str, datetime | None]:
        """View -> the oldest event timestamp served (UTC): a customer-keyed view's row whether or not
        a product was served; for other views, None when no row was served or one had no value."""
        oldest: dict[str, datetime | None] = {
            view: epoch_to_utc(ts) if ts > 0 else None for view, ts in self.view_ts.items()
        }
        for view, ts in self.row_ts.items():
            oldest[view] = None if len(ts) == 0 or (ts <= 0).any() else epoch_to_utc(ts.min())
        return oldest


def assemble_online(
    views: Sequence[ServedView],
    customer_id: str,
    product_ids: Sequence[str],
    customer: Mapping[str, list[Any]],
    products: Mapping[str, list[Any]],
) -> OnlineRows:
    """Combine a customer read and a product read into one row per product (``unpack`` decodes the
    packed lists; a product missing from the customer's candidates gets missing pair features)."""
    return assemble_many(views, [customer_id], [product_ids], customer, products)[0]


def assemble_many(
    views: Sequence[ServedView],
    customer_ids: Sequence[str],
    product_ids: Sequence[Sequence[str]],
    customers: Mapping[str, list[Any]],
    products: Mapping[str, list[Any]],
    positions: Sequence[np.ndarray] | None = None,
) -> list[OnlineRows]:
    """``assemble_online`` of several customers at once: ``customers`` is one read of their keys (one
    value per customer), ``products`` the product rows of all their ``product_ids`` stacked in order.
    Decodes every packed list in one ``unpack`` call and builds each column once for all customers;
    each customer's ``OnlineRows`` holds slices of those columns. ``positions`` (per customer, where
    each of its ``product_ids`` is in its packed list, when the caller knows) decodes only those
    elements; else the wanted products are looked up among the listed ones."""
    counts = np.fromiter((len(p) for p in product_ids), dtype=np.int64, count=len(product_ids))
    ends = np.cumsum(counts)
    n = int(ends[-1]) if len(ends) else 0
    row = np.repeat(np.arange(len(customer_ids), dtype=np.int64), counts)
    wanted = list(itertools.chain.from_iterable(product_ids))
    columns: dict[str, np.ndarray] = {
        CUSTOMER_ID: np.asarray(customer_ids, dtype=object)[row],
        PRODUCT_ID: np.asarray(wanted, dtype=object).reshape(n),
    }
    view_ts: dict[str, list[int]] = {}
    row_ts: dict[str, np.ndarray] = {}
    customer_ts: list[int] = [0] * len(customer_ids)

    def stamps(field: str) -> list[int]:
        return [int(t or 0) for t in customers.get(f"{field}__ts", [0] * len(customer_ids))]

    for v in views:
        if v.join_keys == (CUSTOMER_ID,) and not v.packed:
            for f in v.features:
                values = np.empty(len(customer_ids), dtype=object)
                values[:] = customers[f] if customers else [None] * len(customer_ids)
                columns[f] = values[row]
            view_ts[v.name] = stamps(v.timestamp_field)
            customer_ts = [c or t for c, t in zip(customer_ts, view_ts[v.name], strict=True)]
        elif v.packed:
            listed = customers.get(PACKED_PRODUCTS) if customers else None
            listed = listed or [None] * len(customer_ids)
            lists = {f: customers.get(f, [None] * len(customer_ids)) for f in v.features}
            if positions is not None:  # the caller knows where its products are: no lookup
                columns.update(unpack(listed, lists, v.string_features, positions).features)
            else:
                names = [None if x is None else list(map(str, x)) for x in listed]
                decoded = unpack(names, lists, v.string_features)
                pos = element_positions(decoded.row, decoded.product_id, row, wanted)
                complete = bool((pos >= 0).all())
                for f in v.features:
                    values = decoded.features[f]
                    columns[f] = values[pos] if complete else take_or_missing(values, pos)
            view_ts[v.name] = stamps(PACKED_PRODUCTS)
        else:
            for f in v.features:
                values = np.empty(n, dtype=object)
                values[:] = products[f] if products else [None] * n
                columns[f] = values
            got = products.get(f"{v.timestamp_field}__ts") if products else None
            stamps_of = [0] * n if got is None or not len(got) else [t or 0 for t in got]
            row_ts[v.name] = np.asarray(stamps_of, dtype=np.int64)
    out = []
    for i, (start, stop) in enumerate(zip(ends - counts, ends, strict=True)):
        part = slice(int(start), int(stop))
        out.append(
            OnlineRows(
                columns={
                    **{c: values[part] for c, values in columns.items()},
                    CUSTOMER_ID: [customer_ids[i]] * int(counts[i]),
                    PRODUCT_ID: list(product_ids[i]),
                },
                view_ts={view: ts[i] for view, ts in view_ts.items()},
                row_ts={view: ts[part] for view, ts in row_ts.items()},
                customer_ts=customer_ts[i],
            )
        )
    return out


# --------------------------------------------------------------------------- the circuit breaker


class CircuitBreaker:
    """Fail fast while the online store is down: ``failures`` consecutive failed reads open the breaker
    for ``cooldown_s`` seconds, during which ``admit`` refuses every read at once; then one read is let
    through as a probe (half-open): its success closes the breaker, its failure opens it again.

    Thread-safe; ``clock`` is ``time.monotonic`` (seconds) unless a test gives another.
    """

    def __init__(
        self, failures: int = 3, cooldown_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failures = failures
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._consecutive = 0
        self._open_until: float | None = None
        self._probing = False

    @property
    def is_open(self) -> bool:
        """True while reads are refused (open, or half-open with a probe in flight)."""
        with self._lock:
            return self._open_until is not None and (self._probing or self._clock() < self._open_until)

    def retry_after_s(self) -> float:
        """Seconds until a read may be let through again (0 when the breaker is closed)."""
        with self._lock:
            if self._open_until is None:
                return 0.0
            return max(self._open_until - self._clock(), 0.0) or self.cooldown_s

    def admit(self) -> bool:
        """True when a read may go to the store now (closed, or the one half-open probe)."""
        with self._lock:
            if self._open_until is None:
                return True
            if self._probing or self._clock() < self._open_until:
                return False
            self._probing = True
            return True

    def success(self) -> None:
        """A read succeeded: close the breaker."""
        with self._lock:
            self._consecutive, self._open_until, self._probing = 0, None, False

    def abandon(self) -> None:
        """A read ended without telling whether the store works: let the next probe through."""
        with self._lock:
            self._probing = False

    def failure(self) -> None:
        """A read failed: count it; open (or re-open after a failed probe) at ``failures`` in a row."""
        with self._lock:
            self._consecutive += 1
            if self._probing or self._consecutive >= self.failures:
                self._open_until = self._clock() + self.cooldown_s
            self._probing = False


# --------------------------------------------------------------------------- the serving read


@dataclass(frozen=True)
class ProductCache:
    """Product rows of the whole catalogue read at ``read_at`` (``time.monotonic()``): column -> values
    in catalogue order, and product -> position."""

    columns: dict[str, np.ndarray]
    position: dict[str, int]
    read_at: float

    @classmethod
    def of(cls, columns: Mapping[str, Sequence[Any]], product_ids: Sequence[str]) -> ProductCache:
        """The cache of a read of ``product_ids``' rows (``columns``: column -> values in that order)."""
        arrays = {}
        for col, values in columns.items():
            arrays[col] = np.empty(len(values), dtype=object)  # one object per row, lists included
            arrays[col][:] = values
        return cls(arrays, {p: i for i, p in enumerate(product_ids)}, time.monotonic())

    def take(self, product_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The columns for ``product_ids`` (all in the catalogue), in that order (object arrays)."""
        idx = np.fromiter((self.position[p] for p in product_ids), dtype=np.int64, count=len(product_ids))
        return {col: values[idx] for col, values in self.columns.items()}


class OnlineReader:
    """A customer's candidate products with every feature of the service, read from the online store.

    Thread-safe: sqlite reads are serialised (Feast shares one sqlite connection between threads), redis
    reads go through redis-py's connection pool. Product rows change only when the store is
    materialized, so the whole ``catalogue``'s product rows are read at most once per
    ``product_cache_seconds`` (0 = on every request); their own event timestamps are still served.

    Faults: every store error (sqlite, redis, sockets, undecodable values) becomes an
    ``OnlineStoreUnavailableError``; a sqlite read waits at most ``read_timeout_s`` for the connection
    (redis: the store's client carries the timeout, see ``nextbest.features.store.get_store``); after a
    sqlite error the connection is reopened on the next read; ``breaker`` (when given) refuses reads at
    once while the store is known to be down.
    """

    def __init__(
        self,
        store: FeatureStore,
        service: FeatureService | str = FEATURE_SERVICE_NAME,
        catalogue: Sequence[str] = (),
        product_cache_seconds: float = 0.0,
        read_timeout_s: float | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.store = store
        self.read_timeout_s = read_timeout_s
        self.breaker = breaker
        self.online_kind: str = store.config.online_store.type
        self.service: FeatureService = get_service(store, service)
        self.views: list[ServedView] = served_views(store, self.service)
        self.features: list[str] = [f for v in self.views for f in v.features]
        self.catalogue: list[str] = [str(p) for p in catalogue]
        self.product_cache_seconds = product_cache_seconds
        customer_views = [v for v in self.views if v.join_keys == (CUSTOMER_ID,) and not v.packed]
        packed_views = [v for v in self.views if v.packed]
        if len(customer_views) != 1 or len(packed_views) != 1:
            raise ValueError(
                f"the service needs one customer view and one packed customer x product view, got "
                f"{[v.name for v in customer_views]} and {[v.name for v in packed_views]}"
            )
        self._customer_ts_field = customer_views[0].timestamp_field
        others = [v for v in self.views if v.join_keys != (CUSTOMER_ID,)]
        self._cacheable = all(v.join_keys == (PRODUCT_ID,) for v in others)
        self._lock = threading.Lock() if self.online_kind == "sqlite" else None
        self._product_cache: ProductCache | None = None
        self._cache_lock = threading.Lock()
        self._narrowing_views: dict[str, ServedView] = {}

    def _read(self, read: Callable[[], dict[str, list[Any]]]) -> dict[str, list[Any]]:
        breaker = self.breaker
        if breaker is not None and not breaker.admit():
            wait = breaker.retry_after_s()
            raise OnlineStoreUnavailableError(
                f"the {self.online_kind} online store is unreachable (circuit open after repeated "
                f"failures); retry in {wait:.1f}s",
                retry_after_s=wait,
            )
        try:
            result = self._locked(read)
        except UNAVAILABLE_ERRORS as exc:
            wait = 1.0
            if breaker is not None:
                breaker.failure()
                wait = breaker.retry_after_s() or wait
            raise OnlineStoreUnavailableError(
                f"the {self.online_kind} online store is unreachable or unreadable "
                f"({type(exc).__name__}: {exc}); retry later",
                retry_after_s=wait,
            ) from exc
        except BaseException:
            if breaker is not None:
                breaker.abandon()  # not a store failure; a half-open probe must not stay in flight
            raise
        if breaker is not None:
            breaker.success()
        return result

    def _locked(self, read: Callable[[], dict[str, list[Any]]]) -> dict[str, list[Any]]:
        """``read()`` under the sqlite lock (waited for at most ``read_timeout_s``); a sqlite error
        drops the connection so the next read reopens the file."""
        if self._lock is None:
            return read()
        timeout = -1 if self.read_timeout_s is None else self.read_timeout_s
        if not self._lock.acquire(timeout=timeout):
            raise TimeoutError(f"no sqlite connection free within {self.read_timeout_s:.3f}s")
        try:
            return read()
        except sqlite3.Error:
            reset_online_client(self.store, self.read_timeout_s or 5.0)
            raise
        finally:
            self._lock.release()

    def _cached_products(self) -> ProductCache | None:
        """The catalogue's product rows, re-read when older than ``product_cache_seconds`` (None when
        caching is off or the service has views keyed by more than the product)."""
        ttl = self.product_cache_seconds
        if ttl <= 0 or not self._cacheable:
            return None
        cache = self._product_cache
        if cache is None or time.monotonic() - cache.read_at > ttl:
            with self._cache_lock:
                cache = self._product_cache
                if cache is None or time.monotonic() - cache.read_at > ttl:
                    ids = self.catalogue
                    columns = self._read(lambda: product_read(self.store, self.views, "", ids))
                    cache = ProductCache.of(columns, ids)
                    self._product_cache = cache
        return cache

    def refresh_products(self) -> None:
        """Drop the product cache: the next request re-reads the catalogue's product rows."""
        with self._cache_lock:
            self._product_cache = None

    def candidates(
        self, customer_id: str, rule: CandidateRule, product_ids: Sequence[str] | None = None
    ) -> OnlineRows:
        """The customer's candidate products (listed for the customer and accepted by ``rule``, restricted
        to ``product_ids`` when given), one plain row each: one read of the customer's key, then one of
        the candidates' product rows (none while the product cache is fresh).

        Raises:
            OnlineStoreUnavailableError: the online store cannot be read.
        """
        return self.candidates_many([customer_id], rule, [product_ids])[0]

    def candidates_many(
        self,
        customer_ids: Sequence[str],
        rule: CandidateRule,
        product_ids: Sequence[Sequence[str] | None] | None = None,
        narrow: CandidateNarrowing | None = None,
    ) -> list[OnlineRows]:
        """``candidates`` of several customers (``product_ids``: one restriction or None per customer)
        with ONE read of the customers' keys; product rows come from the cache (else one read per
        customer with candidates). ``narrow`` (when given) keeps some of the candidates of a customer
        asked without a restriction, before their rows are read; the view it needs is read in the same
        read of the customers' keys (not at all while it is not registered).

        Raises:
            OnlineStoreUnavailableError: the online store cannot be read.
        """
        views = self.views
        ids = [str(c) for c in customer_ids]
        wanted_per = list(product_ids) if product_ids is not None else [None] * len(ids)
        narrowing = None
        if narrow is not None and any(w is None for w in wanted_per):
            narrowing = self.narrowing_view(narrow.view)  # read with the customer views, in one go
        read_views = views if narrowing is None else [*views, narrowing]
        read = self._read(lambda: customers_read(self.store, read_views, ids))
        chosen_per: list[list[str]] = []
        positions: list[np.ndarray] = []  # of the chosen products in the customer's packed list
        for i, wanted in enumerate(wanted_per):
            customer = one_row(read, i)
            listed = listed_products(customer)
            customer_ts = read_timestamp(customer, self._customer_ts_field)
            list_ts = read_timestamp(customer, PACKED_PRODUCTS)
            mask = rule(np.ones(len(listed), dtype=bool), customer_ts, list_ts)
            if wanted is not None:
                keep = set(wanted)
                mask &= np.fromiter((p in keep for p in listed), dtype=bool, count=len(listed))
            at = np.flatnonzero(mask)
            chosen = listed if len(at) == len(listed) else list(itertools.compress(listed, mask))
            if narrow is not None and wanted is None and chosen:
                kept = narrow.keep(chosen, customer if narrowing is not None else {}, customer_ts)
                at, chosen = at[kept], [chosen[j] for j in kept]
            chosen_per.append(chosen)
            positions.append(at)
        products = self._products_of(ids, chosen_per)
        return assemble_many(views, ids, chosen_per, read, products, positions)

    def narrowing_view(self, name: str) -> ServedView | None:
        """The registered customer-keyed view ``name`` a retrieval stage reads (``embedding``,
        ``retrieval_model``); None while it is not registered (nothing is narrowed then)."""
        served = self._narrowing_views.get(name)
        if served is None:
            try:
                registered = _feature_view(self.store, name)
            except FeatureViewNotFoundException:
                return None
            served = ServedView(
                name=name,
                join_keys=tuple(registered.join_keys),
                features=(EMBEDDING, RETRIEVAL_MODEL),
                dtypes={EMBEDDING: "object", RETRIEVAL_MODEL: "string"},
            )
            self._narrowing_views[name] = served
        return served

    def customer_view_read(self, view: ServedView, customer_ids: Sequence[str]) -> dict[str, list[Any]]:
        """ONE read of a customer-keyed ``view`` (e.g. ``narrowing_view``'s) for several customers, as
        ``customers_read`` gives it, under the reader's timeout and circuit breaker.

        Raises:
            OnlineStoreUnavailableError: the online store cannot be read.
        """
        ids = [str(c) for c in customer_ids]
        return self._read(lambda: customers_read(self.store, [view], ids))

    def customer_features(self, customer_ids: Sequence[str]) -> dict[str, list[Any]]:
        """ONE read of the service's customer features (its customer-keyed views but the packed lists) for
        several customers, as ``customers_read`` gives them (``<feature>__ts`` 0 = no row), under the
        reader's timeout and circuit breaker: what a customer-level task model scores.

        Raises:
            OnlineStoreUnavailableError: the online store cannot be read.
        """
        views = [v for v in self.views if v.join_keys == (CUSTOMER_ID,) and not v.packed]
        ids = [str(c) for c in customer_ids]
        return self._read(lambda: customers_read(self.store, views, ids))

    def _products_of(self, customer_ids: list[str], chosen: list[list[str]]) -> dict[str, list[Any]]:
        """The product rows of every customer's chosen products, stacked in order: from the cache, else
        one read per customer with candidates."""
        every = list(itertools.chain.from_iterable(chosen))
        if not every:
            return {}
        cache = self._cached_products()
        if cache is not None and all(p in cache.position for p in every):
            return cache.take(every)
        parts = [self._product_rows(c, ids) for c, ids in zip(customer_ids, chosen, strict=True) if ids]
        return {col: list(itertools.chain.from_iterable(p[col] for p in parts)) for col in parts[0]}

    def _product_rows(self, customer_id: str, ids: list[str]) -> dict[str, list[Any]]:
        """The product rows of ``ids`` from the cache, else from one read."""
        if not ids:
            return {}
        cache = self._cached_products()
        if cache is not None and all(p in cache.position for p in ids):
            return cache.take(ids)
        return self._read(lambda: product_read(self.store, self.views, customer_id, ids))

    def reconnect(self) -> None:
        """Reopen the sqlite file on the next read (e.g. it was replaced); redis reconnects by itself."""
        if self._lock is None:
            return
        with self._lock:
            reset_online_client(self.store, self.read_timeout_s or 5.0)

    def timestamp(self, view: ServedView, key: Mapping[str, str]) -> int:
        """Event timestamp (epoch seconds; 0 = no row) of ``view``'s row for ``key`` in the online store.

        Raises:
            OnlineStoreUnavailableError: the online store cannot be read.
        """
        ref = view.refs[0]
        rows = {k: [str(key[k])] for k in view.join_keys}
        read = self._read(lambda: _read(self.store, [ref], rows))
        return read_timestamp(read, ref.split(":", 1)[1])

    def ping(self) -> bool:
        """True when the online store answers a read (of a key that need not exist)."""
        try:
            self._read(lambda: customer_read(self.store, self.views, "__nextbest_ping__"))
        except OnlineStoreUnavailableError:
            return False
        return True


# --------------------------------------------------------------------------- any products


def online_rows(
    store: FeatureStore,
    customer_id: str,
    product_ids: Sequence[str] | None = None,
    service: FeatureService | str = FEATURE_SERVICE_NAME,
) -> OnlineRows:
    """The service's latest features online for ``customer_id`` x each of ``product_ids`` (default: the
    customer's listed products). Two reads: the customer's views, then the products' views."""
    views = served_views(store, service)
    customer = customer_read(store, views, str(customer_id))
    ids = [str(p) for p in (listed_products(customer) if product_ids is None else product_ids)]
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
    timestamps = rows.timestamps
    for v in served_views(store, service):
        for f in v.features:
            columns[f] = pd.array(
                cast_column(pd.Series(rows.columns[f], dtype=object), dtypes[f]), dtype=dtypes[f]
            )
        secs = timestamps[v.name]
        ts = pd.DatetimeIndex(
            np.where(secs > 0, secs, np.iinfo("int64").min).astype("datetime64[s]"), tz="UTC"
        )
        columns[f"{v.name}__{EVENT_TIMESTAMP}"] = ts.astype("datetime64[ns, UTC]")
        stamps[v.name] = None if ts.hasnans or ts.empty else ts.min().to_pydatetime()
    return OnlineFeatures(frame=pd.DataFrame(columns), feature_timestamps=stamps)
