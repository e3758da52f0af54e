"""Online scoring: a customer's candidates from the online store -> ``score_bundle`` -> top k.

The ``Scorer`` loads a model bundle once, refuses it when its feature list differs from the live
FeatureService, keeps the product catalogue in memory and, per request, asks the feature store once for
the customer's candidates as plain rows (``OnlineReader.candidates`` with the candidate rule
``candidate_mask``), then scores and calibrates them with ``nextbest.training.scoring.score_bundle``: the
one scoring function of training evaluation, batch scoring (``nextbest.serving.batch``) and this online
path, so they can only differ through their features. A request travels route -> scorer -> feature store
-> model -> response once. ``rank_many`` answers several queries (``RankQuery``) with one read of all the
customers' keys (``OnlineReader.candidates_many``) and one ``score_bundle`` call over all their
candidates; ``rank`` is its one-query case, so both paths are the same code. When the bundle holds a
retrieval index (``nextbest.retrieval.bundle``) and ``serving.retrieval`` is on, a customer asked without
a product list has only its top-N retrieved candidates read and ranked.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from feast import FeatureService
from feast.errors import FeastObjectNotFoundException

from nextbest.columns import CUSTOMER_ID, PRODUCT_ID
from nextbest.features.definitions import FEATURE_SERVICE_NAME
from nextbest.features.online import CircuitBreaker, OnlineReader, OnlineRows, epoch_to_utc
from nextbest.features.online import OnlineStoreUnavailableError as StoreUnavailable
from nextbest.features.staleness import ViewStaleness, stale_views, staleness_report
from nextbest.features.store import get_store, load_specs
from nextbest.marts import DIM_PRODUCTS, mart_path
from nextbest.retrieval.bundle import RetrievalIndex, load_index
from nextbest.serving.candidates import candidate_mask
from nextbest.serving.errors import (
    FeatureStoreNotAppliedError,
    InvalidRequestError,
    NoModelError,
    OnlineStoreUnavailableError,
    ServingError,
    StaleFeaturesError,
    UnknownCustomerError,
    UnknownProductError,
)
from nextbest.serving.results import NO_CANDIDATE_REASON, RankedProduct, Ranking
from nextbest.settings import ServingSettings, Settings
from nextbest.training.artifacts import METADATA_FILE, check_bundle_build, latest_bundle, load_bundle
from nextbest.training.scoring import ScoredFrame, input_columns, ranking_order, score_bundle

KEY_COLUMNS: tuple[str, ...] = (CUSTOMER_ID, PRODUCT_ID)
"""Entity keys a bundle may use as features besides the FeatureService's list."""

PRODUCT_COLUMNS: tuple[str, ...] = (PRODUCT_ID, "product_name", "category", "min_age", "max_age")
"""Columns of the ``dim_products`` mart kept in memory."""

log = logging.getLogger(__name__)


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


def concat_columns(parts: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """Columns ``names`` of several row blocks stacked in order (arrays stay arrays, else lists)."""
    out: dict[str, Any] = {}
    for name in names:
        blocks = [part[name] for part in parts]
        if len(blocks) == 1:
            out[name] = blocks[0]
        elif all(isinstance(b, np.ndarray) for b in blocks):
            out[name] = np.concatenate(blocks)
        else:
            out[name] = list(itertools.chain.from_iterable(blocks))
    return out


def scored_slice(scored: ScoredFrame, rows: slice) -> ScoredFrame:
    """The rows ``rows`` of ``scored`` (timings kept)."""
    probability = None if scored.probability is None else scored.probability[rows]
    return ScoredFrame(scored.score[rows], probability, scored.predict_ms, scored.calibrate_ms)


@dataclass(frozen=True)
class RankQuery:
    """One ranking asked of ``Scorer.rank_many``: the customer, k (None = ``default_k``) and the products
    to rank (None = every product)."""

    customer_id: str
    k: int | None = None
    product_ids: Sequence[str] | None = None


# --------------------------------------------------------------------------- the scorer


def load_products(settings: Settings) -> pd.DataFrame:
    """The product catalogue (``dim_products`` mart), sorted by product_id."""
    path = mart_path(settings, DIM_PRODUCTS)
    if not path.exists():
        raise FileNotFoundError(f"product catalogue {path} is missing: run `nextbest build` first")
    cols = ", ".join(PRODUCT_COLUMNS)
    con = duckdb.connect()
    try:
        return con.execute(
            f"select {cols} from read_parquet(?) order by {PRODUCT_ID}", [str(path)]
        ).df()
    finally:
        con.close()


def resolve_bundle_path(settings: Settings, serving: ServingSettings) -> Path:
    """The bundle to serve: ``serving.model_path`` or the latest bundle in ``settings.models_dir``."""
    path = serving.model_path or latest_bundle(settings.models_dir)
    if path is None:
        raise NoModelError(f"no model bundle in {settings.models_dir}: train one first (`nextbest train`)")
    return Path(path)


def expected_bundle_features(bundle_path: Path, served: Sequence[str]) -> list[str]:
    """The live feature list as the bundle must hold it: ``served`` plus the key columns the bundle uses,
    at the bundle's positions (keys are not features of the service but may be model inputs)."""
    meta = json.loads((bundle_path / METADATA_FILE).read_text(encoding="utf-8"))
    expected = list(served)
    for i, col in enumerate(meta.get("feature_cols", [])):
        if col in KEY_COLUMNS:
            expected.insert(min(i, len(expected)), col)
    return expected


class Scorer:
    """Ranks a customer's candidate products from the online store with one loaded model bundle.

    Thread-safe: the bundle and catalogue are read-only; ``OnlineReader`` serialises sqlite reads. Every
    online read is bounded by ``read_timeout_ms`` and guarded by a circuit breaker (a store that is down
    answers 503 fast); ``rank_many`` ranks several customers with one read and one vectorised scoring.
    """

    def __init__(
        self,
        settings: Settings,
        serving: ServingSettings | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.serving = serving or settings.serving
        self._clock = clock or (lambda: self.serving.as_of or datetime.now(UTC))
        self.bundle_path = resolve_bundle_path(settings, self.serving)
        self.products = load_products(settings)
        self.product_ids: list[str] = self.products[PRODUCT_ID].astype(str).tolist()
        self._known_products = frozenset(self.product_ids)
        timeout_s = self.serving.read_timeout_ms / 1e3
        try:
            self.reader = OnlineReader(
                get_store(settings, self.serving.online_store, read_timeout_s=timeout_s),
                FEATURE_SERVICE_NAME,
                catalogue=self.product_ids,
                product_cache_seconds=self.serving.product_cache_seconds,
                read_timeout_s=timeout_s,
                breaker=CircuitBreaker(self.serving.breaker_failures, self.serving.breaker_cooldown_s),
            )
        except FeastObjectNotFoundException as err:
            raise FeatureStoreNotAppliedError(
                f"the feature store has nothing to serve ({' '.join(str(err).split())}): "
                "run `nextbest features apply` and `nextbest features materialize` (or `nextbest build`)"
            ) from err
        self.service: FeatureService = self.reader.service
        self.views = self.reader.views
        self.online_kind: str = self.reader.online_kind
        names = {v.name for v in self.views}
        self.specs = [s for s in load_specs(settings) if s.view in names]
        self.bundle = load_bundle(
            self.bundle_path,
            expected_features=expected_bundle_features(self.bundle_path, self.reader.features),
            expected_service=self.service.name,
        )
        check_bundle_build(self.bundle, settings, self.online_kind, self.serving.allow_build_mismatch)
        self.input_columns = input_columns(self.bundle)
        self.retrieval: RetrievalIndex | None = (
            load_index(self.bundle_path) if self.serving.retrieval else None
        )
        if self.retrieval is not None and self.reader.narrowing_view(self.retrieval.view) is None:
            log.warning(
                "bundle %s holds a retrieval index but the %s view is not registered: every candidate is "
                "ranked until `nextbest retrieval embed` registers it",
                self.bundle_path.name,
                self.retrieval.view,
            )

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

    def refresh_products(self) -> None:
        """Drop the product cache: the next request re-reads the catalogue's product rows."""
        self.reader.refresh_products()

    def fetch(self, customer_id: str, product_ids: Sequence[str] | None = None) -> OnlineRows:
        """The customer's candidates (``candidate_mask``), restricted to ``product_ids`` when given, with
        every feature, from the online store (one trip through ``OnlineReader.candidates``).

        Raises:
            OnlineStoreUnavailableError: the online store cannot be reached.
        """
        return self.fetch_many([customer_id], [product_ids])[0]

    def fetch_many(
        self, customer_ids: Sequence[str], product_ids: Sequence[Sequence[str] | None]
    ) -> list[OnlineRows]:
        """``fetch`` of several customers in one read of their keys (``OnlineReader.candidates_many``).

        Raises:
            OnlineStoreUnavailableError: the online store cannot be reached.
        """
        try:
            return self.reader.candidates_many(customer_ids, candidate_mask, product_ids, self.retrieval)
        except StoreUnavailable as exc:
            raise OnlineStoreUnavailableError(str(exc), retry_after_s=exc.retry_after_s) from exc

    def staleness(self, rows: OnlineRows) -> list[ViewStaleness]:
        """Staleness per view of the values served (the oldest one counts), judged now. Without any
        candidate, only the customer-keyed views are judged (nothing else was served)."""
        specs = self.specs if rows.n > 0 else [s for s in self.specs if s.join_keys == (CUSTOMER_ID,)]
        return staleness_report(rows.oldest_served(), specs, self._clock())

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
        result = self.rank_many([RankQuery(str(customer_id), k, product_ids)])[0]
        if isinstance(result, ServingError):
            raise result
        return result

    def _query_error(self, query: RankQuery) -> ServingError | None:
        """Why ``query`` cannot be answered before reading the store (k out of range, unknown product)."""
        k = self.serving.default_k if query.k is None else query.k
        if not 1 <= k <= self.serving.max_k:
            return InvalidRequestError(f"k must be in [1, {self.serving.max_k}], got {k}")
        if query.product_ids is not None:
            try:
                self._check_products(query.product_ids)
            except UnknownProductError as exc:
                return exc
        return None

    def rank_many(self, queries: Sequence[RankQuery]) -> list[Ranking | ServingError]:
        """The ranking of every query, in order, or the ``ServingError`` that query ends with (invalid
        k or product, unknown customer, stale features refused): ONE online read of the customers' keys
        and ONE vectorised ``score_bundle`` call over all their candidates, so a batch costs little
        more than one customer.

        Raises:
            OnlineStoreUnavailableError: the online store cannot be reached (the whole batch fails).
        """
        results: list[Ranking | ServingError | None] = [self._query_error(q) for q in queries]
        todo = [i for i, r in enumerate(results) if r is None]
        if not todo:
            return results  # type: ignore[return-value]
        t0 = time.perf_counter()
        wanted = [queries[i].product_ids for i in todo]
        fetched = self.fetch_many(
            [queries[i].customer_id for i in todo],
            [None if ids is None else self._check_products(ids) for ids in wanted],
        )
        t1 = time.perf_counter()
        scored_rows: list[tuple[int, OnlineRows, list[ViewStaleness]]] = []
        for i, rows in zip(todo, fetched, strict=True):
            customer_id = queries[i].customer_id
            if rows.customer_ts <= 0:
                results[i] = UnknownCustomerError(
                    f"unknown customer {customer_id!r}: no features in the online store"
                )
                continue
            report = self.staleness(rows)
            stale = stale_views(report)
            if stale and self.serving.refuse_stale:
                results[i] = StaleFeaturesError(
                    f"stale features for customer {customer_id!r}: views {stale} are older than their "
                    "ttl",
                    report,
                )
                continue
            scored_rows.append((i, rows, report))
        if not scored_rows:
            return results  # type: ignore[return-value]
        t2 = time.perf_counter()
        data = concat_columns([rows.columns for _, rows, _ in scored_rows], self.input_columns)
        scored = score_bundle(self.bundle, data, threads=1)
        timings = {
            "fetch": (t1 - t0) * 1e3,
            "filter": (t2 - t1) * 1e3,
            "predict": scored.predict_ms,
            "calibrate": scored.calibrate_ms,
        }
        start = 0
        for i, rows, report in scored_rows:
            part = slice(start, start + rows.n)
            start += rows.n
            query = queries[i]
            k = self.serving.default_k if query.k is None else query.k
            ranked = top_k(rows.columns[PRODUCT_ID], scored_slice(scored, part), k)
            results[i] = Ranking(
                customer_id=query.customer_id,
                snapshot_at=epoch_to_utc(rows.customer_ts),
                products=ranked,
                reason=None if ranked else NO_CANDIDATE_REASON,
                n_candidates=rows.n,
                staleness=report,
                timings_ms={**timings, "total": (time.perf_counter() - t0) * 1e3},
            )
        return results  # type: ignore[return-value]

    def ping(self) -> bool:
        """True when the online store answers a read (of a key that need not exist)."""
        return self.reader.ping()
