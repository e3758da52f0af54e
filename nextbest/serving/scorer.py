"""Online scoring: a customer's online features -> candidates -> ranker score -> calibrated probability.

The ``Scorer`` loads a model bundle once, refuses it when its feature list differs from the live
FeatureService, keeps the product catalogue in memory and, per request, reads the customer's online
row (customer features and the packed candidate list with its pair features), keeps the candidates
(``candidate_mask``: the list dbt wrote from ``fct_candidates``' rule), reads the candidates' product
features, and scores and calibrates them with ``nextbest.training.scoring.score_bundle``: the one
scoring function of training evaluation, ``score_batch`` (offline, historical features) and this online
path, so they can only differ through their features.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from feast import FeatureService, FeatureStore

from nextbest.features.definitions import FEATURE_SERVICE_NAME
from nextbest.features.manifest import PACKED_PRODUCTS
from nextbest.features.retrieval import (
    OnlineRows,
    ServedView,
    assemble_online,
    customer_read,
    get_service,
    listed_products,
    product_read,
    read_timestamp,
    served_views,
)
from nextbest.features.staleness import ViewStaleness, stale_views, staleness_report
from nextbest.features.store import get_store, load_specs
from nextbest.serving.settings import ServingSettings
from nextbest.settings import Settings
from nextbest.training.artifacts import METADATA_FILE, latest_bundle, load_bundle
from nextbest.training.constants import CUSTOMER_ID, PRODUCT_ID
from nextbest.training.scoring import ScoredFrame, input_columns, ranking_order, score_bundle

KEY_COLUMNS: tuple[str, ...] = (CUSTOMER_ID, PRODUCT_ID)
"""Entity keys a bundle may use as features besides the FeatureService's list."""

PRODUCT_COLUMNS: tuple[str, ...] = ("product_id", "product_name", "category", "min_age", "max_age")
"""Columns of the ``dim_products`` mart kept in memory."""

NO_CANDIDATE_REASON = (
    "no candidate: the customer owns, or is not eligible for, every requested product at its latest snapshot"
)


# --------------------------------------------------------------------------- errors


class ServingError(Exception):
    """Base class of the errors a ranking request can end with."""


class UnknownCustomerError(ServingError, LookupError):
    """The customer has no ``customer_monthly`` row in the online store (HTTP 404)."""


class InvalidRequestError(ServingError, ValueError):
    """A request the scorer cannot answer as asked, e.g. k out of range (HTTP 422)."""


class UnknownProductError(InvalidRequestError):
    """A requested product is not in the catalogue (HTTP 422)."""


class OnlineStoreUnavailableError(ServingError):
    """The online store could not be read (e.g. redis down); retry later (HTTP 503)."""


class StaleFeaturesError(ServingError):
    """The served features are older than their view's ttl and ``refuse_stale`` is on (HTTP 503)."""

    def __init__(self, message: str, staleness: list[ViewStaleness]) -> None:
        super().__init__(message)
        self.staleness = staleness


class NoModelError(ServingError, FileNotFoundError):
    """No model bundle to serve."""


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    """Exception types meaning "the online store is unreachable" (redis, sqlite, sockets)."""
    errors: list[type[BaseException]] = [sqlite3.OperationalError, ConnectionError, TimeoutError]
    try:
        import redis.exceptions

        errors += [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError]
    except ImportError:  # pragma: no cover - redis is a dependency of feast[redis]
        pass
    return tuple(errors)


UNAVAILABLE_ERRORS = _unavailable_errors()


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class RankedProduct:
    """One ranked candidate.

    Attributes:
        product_id: the product.
        rank: 1 = best.
        score: raw ranker score (unbounded; higher ranks first).
        probability: calibrated adoption probability in [0, 1] within the label horizon (None when
            the bundle has no calibrators).
    """

    product_id: str
    rank: int
    score: float
    probability: float | None


@dataclass(frozen=True)
class Ranking:
    """The answer for one customer.

    Attributes:
        customer_id: the customer.
        snapshot_at: event timestamp (UTC) of the customer's latest online snapshot.
        products: top-k candidates, best first (empty when there is no candidate; see ``reason``).
        reason: why ``products`` is empty, else None.
        n_candidates: candidates scored before the top-k cut.
        staleness: one entry per feature view (age of the served values vs the view's ttl).
        timings_ms: wall milliseconds of ``fetch``, ``filter``, ``predict``, ``calibrate``, ``total``.
    """

    customer_id: str
    snapshot_at: datetime
    products: list[RankedProduct]
    reason: str | None
    n_candidates: int
    staleness: list[ViewStaleness]
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def stale_views(self) -> list[str]:
        """Names of the views whose served values are stale."""
        return stale_views(self.staleness)


# --------------------------------------------------------------------------- the candidate rule


@dataclass(frozen=True)
class CandidateViews:
    """The two views the candidate rule reads: the customer's and the packed customer x product one."""

    customer_view: str
    packed_view: str


def candidate_views(views: Sequence[ServedView]) -> CandidateViews:
    """The customer view (keyed by customer_id, not packed) and the packed view among ``views``."""
    customer = [v.name for v in views if v.join_keys == (CUSTOMER_ID,) and not v.packed]
    packed = [v.name for v in views if v.packed]
    if len(customer) != 1 or len(packed) != 1:
        raise ValueError(
            f"need one customer view and one packed customer x product view, got {customer} and {packed}"
        )
    return CandidateViews(customer[0], packed[0])


def candidate_mask(listed: np.ndarray, customer_ts: int, packed_ts: int) -> np.ndarray:
    """Which listed products are candidates: THE serving implementation of the candidate rule.

    dbt (the one implementation of "not owned and eligible") writes, per customer and snapshot, the
    candidate products into ``candidate_product_ids``, and an (empty) list for a customer without any,
    so the customer's packed row is refreshed at every snapshot. A listed product is a candidate iff
    the packed row is from the same snapshot as the customer's latest ``customer_monthly`` row: an
    older packed row means the lists are out of date, and nothing is ranked.

    Args:
        listed: per product asked about, True when it is in the packed row's ``candidate_product_ids``.
        customer_ts: event timestamp (epoch seconds; 0 = no row) of the customer's customer row.
        packed_ts: event timestamp (epoch seconds; 0 = no row) of the customer's packed row.

    Returns:
        A boolean array shaped like ``listed``, True for candidates.
    """
    listed = np.asarray(listed, dtype=bool)
    return listed & bool(customer_ts > 0 and packed_ts == customer_ts)


@dataclass(frozen=True)
class ProductCache:
    """Product rows of the whole catalogue read at ``read_at`` (``time.monotonic()``): column -> values
    in catalogue order, and product -> position."""

    columns: dict[str, list[Any]]
    position: dict[str, int]
    read_at: float

    def take(self, product_ids: Sequence[str]) -> dict[str, list[Any]]:
        """The columns for ``product_ids`` (all in the catalogue), in that order."""
        idx = [self.position[p] for p in product_ids]
        return {col: [values[i] for i in idx] for col, values in self.columns.items()}


@dataclass(frozen=True)
class Fetched:
    """What ``Scorer.fetch`` read: the candidates' rows and the customer row's event timestamp."""

    rows: OnlineRows
    customer_ts: int


def epoch_to_utc(seconds: int) -> datetime:
    """A tz-aware UTC datetime from epoch seconds."""
    return datetime.fromtimestamp(int(seconds), tz=UTC)


def top_k(product_ids: Sequence[str], scored: ScoredFrame, k: int) -> list[RankedProduct]:
    """The ``k`` best products by ``ranking_order`` (score, ties: product id ascending), ranked from 1."""
    order = ranking_order(product_ids, scored.score)[:k]
    return [
        RankedProduct(
            product_id=str(product_ids[i]),
            rank=r,
            score=float(scored.score[i]),
            probability=None if scored.probability is None else float(scored.probability[i]),
        )
        for r, i in enumerate(order, start=1)
    ]


# --------------------------------------------------------------------------- the scorer


def load_products(settings: Settings) -> pd.DataFrame:
    """The product catalogue (``dim_products`` mart), sorted by product_id."""
    path = settings.marts_dir / "dim_products.parquet"
    if not path.exists():
        raise FileNotFoundError(f"product catalogue {path} is missing: run `nextbest build` first")
    cols = ", ".join(PRODUCT_COLUMNS)
    return duckdb.sql(f"select {cols} from read_parquet('{path}') order by product_id").df()


def resolve_bundle_path(settings: Settings, serving: ServingSettings) -> Path:
    """The bundle to serve: ``serving.model_path`` or the latest bundle in ``settings.models_dir``."""
    path = serving.model_path or latest_bundle(settings.models_dir)
    if path is None:
        raise NoModelError(f"no model bundle in {settings.models_dir}: train one first (`nextbest train`)")
    return Path(path)


def expected_bundle_features(bundle_path: Path, served: Sequence[str]) -> list[str]:
    """The live feature list as the bundle must hold it: ``served`` plus the key columns the bundle uses,
    at the bundle's positions (keys are not features of the service but may be model inputs)."""
    import json

    meta = json.loads((bundle_path / METADATA_FILE).read_text(encoding="utf-8"))
    expected = list(served)
    for i, col in enumerate(meta.get("feature_cols", [])):
        if col in KEY_COLUMNS:
            expected.insert(min(i, len(expected)), col)
    return expected


class Scorer:
    """Ranks a customer's candidate products from the online store with one loaded model bundle.

    Thread-safe: the bundle and catalogue are read-only; sqlite reads are serialised (Feast shares one
    sqlite connection between threads), redis reads go through redis-py's connection pool.
    """

    def __init__(
        self,
        settings: Settings,
        serving: ServingSettings | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.serving = serving or ServingSettings()
        self._clock = clock or (lambda: self.serving.as_of or datetime.now(UTC))
        self.store: FeatureStore = get_store(settings, self.serving.online_store)
        self.online_kind: str = self.store.config.online_store.type
        self.service: FeatureService = get_service(self.store, FEATURE_SERVICE_NAME)
        self.views = served_views(self.store, self.service)
        self.features = [f for v in self.views for f in v.features]
        names = {v.name for v in self.views}
        self.specs = [s for s in load_specs(settings) if s.view in names]
        self.candidate_views = candidate_views(self.views)
        self._customer_ts_field = next(
            v.timestamp_field for v in self.views if v.name == self.candidate_views.customer_view
        )
        self.bundle_path = resolve_bundle_path(settings, self.serving)
        self.bundle = load_bundle(
            self.bundle_path,
            expected_features=expected_bundle_features(self.bundle_path, self.features),
            expected_service=self.service.name,
        )
        self.input_columns = input_columns(self.bundle)
        self.products = load_products(settings)
        self.product_ids: list[str] = self.products["product_id"].astype(str).tolist()
        self._known_products = frozenset(self.product_ids)
        self._lock = threading.Lock() if self.online_kind == "sqlite" else None
        others = [v for v in self.views if v.join_keys != (CUSTOMER_ID,)]
        self._cacheable = all(v.join_keys == (PRODUCT_ID,) for v in others)
        self._product_cache: ProductCache | None = None
        self._cache_lock = threading.Lock()

    @property
    def model_version(self) -> str:
        """The served bundle's version (its directory name)."""
        return self.bundle_path.name

    def _check_products(self, product_ids: Sequence[str]) -> list[str]:
        ids = [str(p) for p in dict.fromkeys(product_ids)]
        unknown = [p for p in ids if p not in self._known_products]
        if unknown:
            raise UnknownProductError(f"unknown product(s) {unknown}; see GET /products")
        if not ids:
            raise UnknownProductError("product_ids is empty: omit it to rank every product")
        return ids

    def _read(self, read: Callable[[], dict[str, list[Any]]]) -> dict[str, list[Any]]:
        try:
            if self._lock is None:
                return read()
            with self._lock:
                return read()
        except UNAVAILABLE_ERRORS as exc:
            raise OnlineStoreUnavailableError(
                f"the {self.online_kind} online store is unreachable "
                f"({type(exc).__name__}: {exc}); retry later"
            ) from exc

    def _cached_products(self) -> ProductCache | None:
        """The catalogue's product rows, re-read when older than ``product_cache_seconds`` (None when
        caching is off or the service has views keyed by more than the product)."""
        ttl = self.serving.product_cache_seconds
        if ttl <= 0 or not self._cacheable:
            return None
        cache = self._product_cache
        if cache is None or time.monotonic() - cache.read_at > ttl:
            with self._cache_lock:
                cache = self._product_cache
                if cache is None or time.monotonic() - cache.read_at > ttl:
                    ids = self.product_ids
                    columns = self._read(lambda: product_read(self.store, self.views, "", ids))
                    cache = ProductCache(columns, {p: i for i, p in enumerate(ids)}, time.monotonic())
                    self._product_cache = cache
        return cache

    def refresh_products(self) -> None:
        """Drop the product cache: the next request re-reads the catalogue's product rows."""
        with self._cache_lock:
            self._product_cache = None

    def fetch(self, customer_id: str, product_ids: Sequence[str] | None = None) -> Fetched:
        """The customer's online row, then the candidates' product rows (two reads).

        Candidates are the customer's listed products (``candidate_mask``), restricted to
        ``product_ids`` when given (None = every product).

        Raises:
            OnlineStoreUnavailableError: the online store cannot be reached.
        """
        customer = self._read(lambda: customer_read(self.store, self.views, customer_id))
        customer_ts = read_timestamp(customer, self._customer_ts_field)
        packed_ts = read_timestamp(customer, PACKED_PRODUCTS)
        listed = listed_products(customer) or []
        if product_ids is not None:
            wanted = set(product_ids)
            listed = [p for p in listed if p in wanted]
        mask = candidate_mask(np.ones(len(listed), dtype=bool), customer_ts, packed_ts)
        ids = [p for p, keep in zip(listed, mask, strict=True) if keep]
        cache = self._cached_products() if ids else None
        if cache is not None and all(p in cache.position for p in ids):
            products = cache.take(ids)
        else:
            products = (
                self._read(lambda: product_read(self.store, self.views, customer_id, ids)) if ids else {}
            )
        rows = assemble_online(self.views, customer_id, ids, customer, products)
        return Fetched(rows=rows, customer_ts=customer_ts)

    def staleness(self, fetched: Fetched) -> list[ViewStaleness]:
        """Staleness per view of the values served (the oldest one counts), judged now. Without any
        candidate, only the customer-keyed views are judged (nothing else was served)."""
        oldest: dict[str, datetime | None] = {}
        served = len(fetched.rows.columns[PRODUCT_ID]) > 0
        for view, ts in fetched.rows.timestamps.items():
            if view == self.candidate_views.packed_view:
                ts = np.asarray([fetched.rows.packed_timestamp])
            elif len(ts) == 0 and view == self.candidate_views.customer_view:
                ts = np.asarray([fetched.customer_ts])
            oldest[view] = None if len(ts) == 0 or (ts <= 0).any() else epoch_to_utc(ts.min())
        specs = self.specs if served else [s for s in self.specs if s.join_keys == (CUSTOMER_ID,)]
        return staleness_report(oldest, specs, self._clock())

    def rank(
        self, customer_id: str, k: int | None = None, product_ids: Sequence[str] | None = None
    ) -> Ranking:
        """The top-``k`` candidate products of ``customer_id`` (all catalogue products, or ``product_ids``).

        Raises:
            UnknownCustomerError: no online ``customer_monthly`` row for the customer.
            UnknownProductError: a requested product is not in the catalogue.
            OnlineStoreUnavailableError: the online store cannot be reached.
            StaleFeaturesError: stale features while ``refuse_stale`` is on.
        """
        k = self.serving.default_k if k is None else k
        if not 1 <= k <= self.serving.max_k:
            raise InvalidRequestError(f"k must be in [1, {self.serving.max_k}], got {k}")
        ids = None if product_ids is None else self._check_products(product_ids)
        t0 = time.perf_counter()
        fetched = self.fetch(str(customer_id), ids)
        t1 = time.perf_counter()
        if fetched.customer_ts <= 0:
            raise UnknownCustomerError(f"unknown customer {customer_id!r}: no features in the online store")
        data = fetched.rows.columns
        n = len(data[PRODUCT_ID])
        report = self.staleness(fetched)
        stale = stale_views(report)
        if stale and self.serving.refuse_stale:
            raise StaleFeaturesError(
                f"stale features for customer {customer_id!r}: views {stale} are older than their ttl", report
            )
        candidates = {col: data[col] for col in self.input_columns}
        t2 = time.perf_counter()
        scored = score_bundle(self.bundle, candidates, threads=1)
        ranked = top_k(data[PRODUCT_ID], scored, k)
        t3 = time.perf_counter()
        return Ranking(
            customer_id=str(customer_id),
            snapshot_at=epoch_to_utc(fetched.customer_ts),
            products=ranked,
            reason=None if ranked else NO_CANDIDATE_REASON,
            n_candidates=n,
            staleness=report,
            timings_ms={
                "fetch": (t1 - t0) * 1e3,
                "filter": (t2 - t1) * 1e3,
                "predict": scored.predict_ms,
                "calibrate": scored.calibrate_ms,
                "total": (t3 - t0) * 1e3,
            },
        )

    def ping(self) -> bool:
        """True when the online store answers a read (of a key that need not exist)."""
        try:
            self._read(lambda: customer_read(self.store, self.views, "__nextbest_ping__"))
        except OnlineStoreUnavailableError:
            return False
        return True
