"""Scoring the binary customer tasks (e.g. churn) and the multi-label customer x category tasks (e.g.
category_propensity) with their trained bundles, in batch and online.

A task bundle (``nextbest train --task NAME`` -> ``models/tasks/<task>/<version>/``) is a LightGBM
classifier and its calibrator over the FeatureService's customer features (plus, for a customer x
category task, ``category`` and the label model's ``task_feature`` columns)
(``nextbest.training.tasks.load_task_bundle``). Both paths score with the bundle's one ``BinaryModel``
and can only differ through their features:

* batch (``score_task_batch``): the task's population at a snapshot (the label model's yml names its
  population model, ``meta.population``, e.g. ``fct_churn_population`` or
  ``fct_category_propensity_population``: every snapshot, the latest included, with the task's own
  feature columns) -> Feast point-in-time customer features (``customer_features``, the training
  retrieval) -> calibrated probability (and, per customer, the rank of its categories) -> parquet,
  written beside the target and renamed into place;
* online (``TaskScorer``): the customer's features from the online store through the ranker Scorer's
  ``OnlineReader`` (the same read timeout, circuit breaker and 503 mapping) -> calibrated probability.
  ``CategoryTaskScorer`` adds the customer's category rows of the latest snapshot of the population
  model, read from the build's mart once at start-up (the category-level features are served from the
  mart, not from Feast) -> the customer's categories ranked by probability.

Both refuse a bundle trained on another build (``NEXTBEST_SERVING_ALLOW_BUILD_MISMATCH=true`` serves it
with a warning), like the ranker.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from nextbest.columns import CATEGORY, CUSTOMER_ID, EVENT_TIMESTAMP, PROBABILITY, RANK, SCORE, SNAPSHOT_ON
from nextbest.errors import UserError
from nextbest.features.definitions import FEATURE_SERVICE_NAME
from nextbest.features.manifest import FeatureViewSpec, load_manifest
from nextbest.features.online import OnlineReader, epoch_to_utc
from nextbest.features.online import OnlineStoreUnavailableError as StoreUnavailable
from nextbest.features.staleness import ViewStaleness, stale_views, staleness_report
from nextbest.marts import existing_mart, manifest_path
from nextbest.serving.errors import (
    NoModelError,
    OnlineStoreUnavailableError,
    ServingError,
    StaleFeaturesError,
    UnknownCustomerError,
)
from nextbest.settings import ServingSettings, Settings, get_settings
from nextbest.training.artifacts import BundleMismatchError, build_differences, check_bundle_build
from nextbest.training.scoring import rank_within_groups
from nextbest.training.tasks import (
    BINARY,
    CUSTOMER_CATEGORY,
    MULTI_LABEL,
    BinaryModel,
    TaskSpec,
    UnknownTaskError,
    customer_features,
    latest_task_bundle,
    load_task_bundle,
    task_spec,
    task_specs,
    with_customer_features,
)

log = logging.getLogger(__name__)

TASK_BATCH_SCHEMA = pa.schema(
    [
        (CUSTOMER_ID, pa.string()),
        (SNAPSHOT_ON, pa.date32()),
        (PROBABILITY, pa.float64()),
        (SCORE, pa.float64()),
    ]
)
"""One row per customer of the task's population at the snapshot: calibrated probability and raw score."""

CATEGORY_BATCH_SCHEMA = pa.schema(
    [
        (CUSTOMER_ID, pa.string()),
        (SNAPSHOT_ON, pa.date32()),
        (CATEGORY, pa.string()),
        (PROBABILITY, pa.float64()),
        (SCORE, pa.float64()),
        (RANK, pa.int32()),
    ]
)
"""One row per (customer, category) of a customer x category task's population at the snapshot:
calibrated probability, raw score, and the category's rank among the customer's (1 = most likely)."""

SCORED = {(BINARY, "customer"), (MULTI_LABEL, CUSTOMER_CATEGORY)}
"""The (kind, entity) of the tasks scored here."""


class EmptySnapshotError(UserError, ValueError):
    """Nobody is in the task's population at the snapshot asked for (the message lists the snapshots)."""


class UnknownServedTaskError(ServingError, LookupError):
    """No served task of that name: undeclared, not a binary customer task, or not trained (HTTP 404)."""


@dataclass
class TaskBundle:
    """A loaded task bundle: its model and ``task.json``. ``build_id`` / ``dbt_vars`` / ``build_vars`` /
    ``version`` are what the build checks (``check_bundle_build``) read of a bundle."""

    task: str
    path: Path
    model: BinaryModel
    meta: dict[str, Any]
    dbt_vars: dict[str, Any] = field(default_factory=dict)
    build_vars: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """The bundle's version (its directory name)."""
        return self.path.name

    @property
    def build_id(self) -> str | None:
        """The build the bundle was trained on."""
        return self.meta.get("build_id")


def is_scored(spec: TaskSpec) -> bool:
    """Whether ``spec`` is scored here: a binary customer task or a multi-label customer x category one."""
    return (spec.kind, spec.entity) in SCORED


def scored_spec(settings: Settings, task: str) -> TaskSpec:
    """The spec of ``task``, which must be ``is_scored`` (UnknownTaskError otherwise)."""
    spec = task_spec(settings, task)
    if not is_scored(spec):
        raise UnknownTaskError(
            f"task {task!r} is a {spec.kind} task on {spec.entity}: only binary customer and multi_label "
            "customer_category tasks are scored here (the ranking: `nextbest score-batch --snapshot ... "
            "--out ...`, POST /rank)"
        )
    return spec


def load_task(settings: Settings, task: str, path: Path | None = None) -> TaskBundle:
    """The bundle at ``path``, else the latest of ``task``; NoModelError naming the command to train it."""
    path = path or latest_task_bundle(settings, task)
    if path is None:
        raise NoModelError(f"no trained bundle of task {task!r}: run `nextbest train --task {task}`")
    model, meta = load_task_bundle(path)
    if meta.get("task") != task:
        raise BundleMismatchError(f"bundle {path} is of task {meta.get('task')!r}, not {task!r}")
    return TaskBundle(task=task, path=Path(path), model=model, meta=meta)


def check_task_build(bundle: TaskBundle, settings: Settings, allow_mismatch: bool) -> None:
    """Refuse (BundleMismatchError) a task bundle trained on another build than the live one."""
    problems = build_differences(bundle, settings.current_build_id, None)  # type: ignore[arg-type]
    if problems and not allow_mismatch:
        raise BundleMismatchError(
            f"task bundle {bundle.task}/{bundle.version} does not match the live build: "
            f"{'; '.join(problems)}; "
            f"retrain (`nextbest train --task {bundle.task}`) or allow it with "
            "NEXTBEST_SERVING_ALLOW_BUILD_MISMATCH=true"
        )


def check_features(bundle: TaskBundle, available: Sequence[str], where: str) -> None:
    """Refuse (BundleMismatchError) a bundle whose features are not all ``available``."""
    missing = [c for c in bundle.model.feature_cols if c not in set(available)]
    if missing:
        raise BundleMismatchError(
            f"task bundle {bundle.task}/{bundle.version} needs features {missing} that {where} does not "
            f"serve: retrain (`nextbest train --task {bundle.task}`)"
        )


# --------------------------------------------------------------------------- batch


def population_model(settings: Settings, spec: TaskSpec) -> str:
    """The population model the task's label model names in its yml (``meta.population``)."""
    manifest = load_manifest(manifest_path(settings))
    for node in manifest.get("nodes", {}).values():
        if node.get("resource_type") == "model" and node.get("name") == spec.model:
            meta = node.get("meta") or node.get("config", {}).get("meta") or {}
            if meta.get("population"):
                return str(meta["population"])
    raise UnknownTaskError(
        f"task {spec.name!r}: its label model {spec.model} names no population model to score "
        "(meta.population in its yml)"
    )


def population_at(settings: Settings, model: str, snapshot: date | None, spec: TaskSpec) -> pd.DataFrame:
    """The population model's rows at ``snapshot`` (default: its latest): the task's keys (customer_id[,
    category]), snapshot_on, event_timestamp (naive UTC) and the task's own features, sorted by the keys.

    Raises:
        EmptySnapshotError: nobody is in the population at ``snapshot`` (the message lists the snapshots).
    """
    path = str(existing_mart(settings, model))
    con = duckdb.connect()
    try:
        con.execute("set timezone = 'UTC'")
        known = [r[0] for r in con.execute(
            f"select distinct {SNAPSHOT_ON} from read_parquet(?) order by 1", [path]
        ).fetchall()]
        chosen = snapshot or (known[-1] if known else None)
        if chosen not in known:
            listed = ", ".join(str(s) for s in known) or "none"
            raise EmptySnapshotError(f"nobody is in {model} at snapshot {snapshot}; snapshots: {listed}")
        columns = ", ".join([*spec.keys, SNAPSHOT_ON, EVENT_TIMESTAMP, *spec.features])
        frame = con.execute(
            f"select {columns} from read_parquet(?) where {SNAPSHOT_ON} = ? order by {', '.join(spec.keys)}",
            [path, chosen],
        ).df()
    finally:
        con.close()
    for key in spec.keys:
        frame[key] = frame[key].astype(str)
    frame[SNAPSHOT_ON] = pd.to_datetime(frame[SNAPSHOT_ON]).dt.date
    return frame


@dataclass(frozen=True)
class TaskBatch:
    """What ``score_task_batch`` wrote."""

    task: str
    snapshot_on: date
    rows: int
    path: Path
    model_version: str


def default_batch_path(settings: Settings, task: str, snapshot: date) -> Path:
    """``$NEXTBEST_HOME/scores/<task>/<snapshot>.parquet``."""
    return settings.home / "scores" / task / f"{snapshot.isoformat()}.parquet"


def score_task_batch(
    task: str,
    snapshot: date | None = None,
    out: Path | None = None,
    settings: Settings | None = None,
    serving: ServingSettings | None = None,
    progress: Callable[[str], None] | None = None,
) -> TaskBatch:
    """Score the task's population at ``snapshot`` (default: the latest) from the offline store; write
    parquet (``TASK_BATCH_SCHEMA``; a customer x category task: ``CATEGORY_BATCH_SCHEMA``) to ``out``
    (default ``default_batch_path``), atomically.

    Raises:
        UnknownTaskError: the task is not a declared ``is_scored`` task, or names no population model.
        NoModelError: the task has no trained bundle.
        BundleMismatchError: the bundle was trained on another build (or on features no longer served).
        EmptySnapshotError: nobody is in the population at ``snapshot``.
    """
    settings = (settings or get_settings()).pinned()
    serving = serving or settings.serving
    spec = scored_spec(settings, task)
    bundle = load_task(settings, task, None)
    check_task_build(bundle, settings, serving.allow_build_mismatch)
    population = population_at(settings, population_model(settings, spec), snapshot, spec)
    chosen = population[SNAPSHOT_ON].iloc[0]
    customers = population[[CUSTOMER_ID, SNAPSHOT_ON, EVENT_TIMESTAMP]].drop_duplicates(CUSTOMER_ID)
    customer = customer_features(settings, customers.reset_index(drop=True), FEATURE_SERVICE_NAME, progress)
    features = with_customer_features(population, customer)  # the population's row order (by its keys)
    check_features(bundle, list(features.columns), f"the offline store's {FEATURE_SERVICE_NAME}")
    score = bundle.model.score(features)
    columns = {
        CUSTOMER_ID: pa.array(features[CUSTOMER_ID].astype(str), pa.string()),
        SNAPSHOT_ON: pa.array(features[SNAPSHOT_ON], pa.date32()),
        PROBABILITY: pa.array(bundle.model.calibrator.predict(score), pa.float64()),
        SCORE: pa.array(score, pa.float64()),
    }
    schema = TASK_BATCH_SCHEMA
    if spec.entity == CUSTOMER_CATEGORY:
        categories = features[CATEGORY].to_numpy()
        columns[CATEGORY] = pa.array(categories, pa.string())
        columns[RANK] = pa.array(category_ranks(features[CUSTOMER_ID].to_numpy(), categories, score))
        schema = CATEGORY_BATCH_SCHEMA
    table = pa.table({name: columns[name] for name in schema.names}, schema=schema)
    path = Path(out) if out is not None else default_batch_path(settings, task, chosen)
    write_atomically(table, path)
    return TaskBatch(task, chosen, table.num_rows, path, bundle.version)


def category_ranks(customer_ids: np.ndarray, categories: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Each row's rank (1 = most likely, int32) among its customer's categories: by score descending
    (so by calibrated probability descending, which is monotone in it), ties by category ascending
    (``rank_within_groups``, the one tie-break rule)."""
    return rank_within_groups([np.asarray(customer_ids)], np.asarray(categories), np.asarray(score))


def write_atomically(table: pa.Table, path: Path) -> None:
    """Write ``table`` to a temporary file beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp_name)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- online


@dataclass(frozen=True)
class TaskScore:
    """One customer's answer for a task.

    Attributes:
        task: the task.
        customer_id: the customer.
        probability: calibrated probability in [0, 1] of the positive class within the task's horizon.
        score: the classifier's raw score (log-odds, unbounded).
        snapshot_at: event timestamp (UTC) of the customer's online features.
        staleness: one entry per customer view (age of the served values vs the view's ttl).
    """

    task: str
    customer_id: str
    probability: float
    score: float
    snapshot_at: datetime
    staleness: list[ViewStaleness]


@dataclass(frozen=True)
class CategoryScore:
    """One category of a customer's ranking: calibrated probability in [0, 1] that the customer is
    active in it within the task's horizon, and the classifier's raw score (log-odds)."""

    category: str
    probability: float
    score: float


@dataclass(frozen=True)
class CategoryRanking:
    """One customer's answer for a customer x category task.

    Attributes:
        task: the task.
        customer_id: the customer.
        categories: the customer's categories of the population (the ones it is a candidate for), most
            likely first (``category_ranks``).
        snapshot_at: event timestamp (UTC) of the customer's online features.
        staleness: one entry per customer view (age of the served values vs the view's ttl).
    """

    task: str
    customer_id: str
    categories: list[CategoryScore]
    snapshot_at: datetime
    staleness: list[ViewStaleness]


@dataclass
class _OnlineRead:
    """One online read of customers: the values by feature, the stamp columns by view, per customer
    either the error it ends with or its staleness report."""

    values: dict[str, list[Any]]
    stamps: dict[str, list[Any]]
    errors: dict[int, ServingError]
    reports: dict[int, list[ViewStaleness]]

    def snapshot_at(self, i: int) -> datetime:
        """The newest event timestamp of customer ``i``'s views."""
        return epoch_to_utc(max(int(ts[i] or 0) for ts in self.stamps.values()))


class TaskScorer:
    """Scores a binary customer task online with one loaded bundle and a shared ``OnlineReader``."""

    def __init__(
        self,
        bundle: TaskBundle,
        reader: OnlineReader,
        specs: Sequence[FeatureViewSpec],
        serving: ServingSettings,
        elsewhere: Sequence[str] = (),
    ) -> None:
        """``elsewhere``: the bundle's features served from somewhere else than the online store."""
        self.bundle = bundle
        self.reader = reader
        self.serving = serving
        customer_views = [v for v in reader.views if v.join_keys == (CUSTOMER_ID,) and not v.packed]
        names = {v.name for v in customer_views}
        self.specs = [s for s in specs if s.view in names]
        self._stamp_of = {v.name: v.features[0] for v in customer_views}
        online = [f for v in customer_views for f in v.features]
        check_features(bundle, [*online, *elsewhere], "the online store")
        self.customer_columns = [c for c in bundle.model.feature_cols if c in set(online)]

    @property
    def task(self) -> str:
        """The task scored."""
        return self.bundle.task

    @property
    def model_version(self) -> str:
        """The served bundle's version (its directory name)."""
        return self.bundle.version

    def _read(self, ids: Sequence[str]) -> _OnlineRead:
        """ONE online read of the customers' keys; per customer, unknown (no features), stale features
        refused, or its staleness report.

        Raises:
            OnlineStoreUnavailableError: the online store cannot be read (the whole batch fails).
        """
        try:
            read = self.reader.customer_features(list(ids))
        except StoreUnavailable as exc:
            raise OnlineStoreUnavailableError(str(exc), retry_after_s=exc.retry_after_s) from exc
        now = self.serving.as_of or datetime.now(UTC)
        stamps = {view: read[f"{feature}__ts"] for view, feature in self._stamp_of.items()}
        out = _OnlineRead(read, stamps, {}, {})
        for i, customer_id in enumerate(ids):
            seen = {view: int(ts[i] or 0) for view, ts in stamps.items()}
            if not any(seen.values()):
                out.errors[i] = UnknownCustomerError(
                    f"unknown customer {customer_id!r}: no features in the online store"
                )
                continue
            oldest = {view: epoch_to_utc(ts) if ts > 0 else None for view, ts in seen.items()}
            report = staleness_report(oldest, self.specs, now)
            stale = stale_views(report)
            if stale and self.serving.refuse_stale:
                out.errors[i] = StaleFeaturesError(
                    f"stale features for customer {customer_id!r}: views {stale} are older than their ttl",
                    report,
                )
                continue
            out.reports[i] = report
        return out

    def _customer_frame(self, read: _OnlineRead, rows: Sequence[int], repeats: Sequence[int]) -> pd.DataFrame:
        """The online customer features of ``rows``, each repeated ``repeats`` times."""
        counts = np.asarray(repeats, dtype=int)
        return pd.DataFrame({
            c: np.repeat(np.asarray([read.values[c][i] for i in rows], dtype=object), counts)
            for c in self.customer_columns
        })

    def score_many(self, customer_ids: Sequence[str]) -> list[TaskScore | ServingError]:
        """Each customer's score, in order, or the ``ServingError`` it ends with (unknown customer, stale
        features refused): ONE online read of the customers' keys and ONE model call.

        Raises:
            OnlineStoreUnavailableError: the online store cannot be read (the whole batch fails).
        """
        ids = [str(c) for c in customer_ids]
        read = self._read(ids)
        results: list[TaskScore | ServingError | None] = [read.errors.get(i) for i in range(len(ids))]
        if read.reports:
            rows = list(read.reports)
            frame = self._customer_frame(read, rows, [1] * len(rows))
            score = self.bundle.model.score(frame)
            probability = self.bundle.model.calibrator.predict(score)
            for j, i in enumerate(rows):
                results[i] = TaskScore(
                    task=self.task,
                    customer_id=ids[i],
                    probability=float(probability[j]),
                    score=float(score[j]),
                    snapshot_at=read.snapshot_at(i),
                    staleness=read.reports[i],
                )
        return results  # type: ignore[return-value]

    def score(self, customer_id: str) -> TaskScore:
        """``score_many`` of one customer; raises the ``ServingError`` it ends with."""
        result = self.score_many([customer_id])[0]
        if isinstance(result, ServingError):
            raise result
        return result


class CategoryTaskScorer(TaskScorer):
    """Scores a multi-label customer x category task online: the customer's features from the online
    store (``TaskScorer``) and its category rows of the population's latest snapshot (``category`` and
    the task's own features), held in memory from the build's mart (``population_rows``)."""

    def __init__(
        self,
        bundle: TaskBundle,
        reader: OnlineReader,
        specs: Sequence[FeatureViewSpec],
        serving: ServingSettings,
        population: dict[str, pd.DataFrame],
        population_name: str,
    ) -> None:
        """``population``: customer -> its rows (``population_rows``) of ``population_name``."""
        columns = {c for rows in list(population.values())[:1] for c in rows.columns}
        super().__init__(bundle, reader, specs, serving, elsewhere=sorted(columns))
        self.population = population
        self.population_name = population_name

    def score_many(self, customer_ids: Sequence[str]) -> list[CategoryRanking | ServingError]:  # type: ignore[override]
        """Each customer's ranking of its categories, in order, or the ``ServingError`` it ends with
        (unknown customer: not in the population or no online features; stale features refused): ONE
        online read and ONE model call."""
        ids = [str(c) for c in customer_ids]
        read = self._read(ids)
        for i, customer_id in enumerate(ids):
            if customer_id not in self.population:
                read.reports.pop(i, None)
                read.errors[i] = UnknownCustomerError(
                    f"unknown customer {customer_id!r}: not in {self.population_name} at its latest snapshot"
                )
        results: list[CategoryRanking | ServingError | None] = [read.errors.get(i) for i in range(len(ids))]
        if read.reports:
            rows = list(read.reports)
            own = [self.population[ids[i]] for i in rows]
            sizes = [len(r) for r in own]
            frame = pd.concat(
                [self._customer_frame(read, rows, sizes), pd.concat(own, ignore_index=True)], axis=1
            )
            score = self.bundle.model.score(frame)
            probability = self.bundle.model.calibrator.predict(score)
            owner = np.repeat(np.arange(len(rows)), sizes)
            categories = frame[CATEGORY].to_numpy()
            rank = category_ranks(owner, categories, score)
            offsets = np.concatenate([[0], np.cumsum(sizes)])
            for j, i in enumerate(rows):
                part = range(offsets[j], offsets[j + 1])
                ranked = sorted(part, key=lambda r: rank[r])
                results[i] = CategoryRanking(
                    task=self.task,
                    customer_id=ids[i],
                    categories=[
                        CategoryScore(str(categories[r]), float(probability[r]), float(score[r]))
                        for r in ranked
                    ],
                    snapshot_at=read.snapshot_at(i),
                    staleness=read.reports[i],
                )
        return results  # type: ignore[return-value]

    def score(self, customer_id: str) -> CategoryRanking:  # type: ignore[override]
        """``score_many`` of one customer; raises the ``ServingError`` it ends with."""
        result = self.score_many([customer_id])[0]
        if isinstance(result, ServingError):
            raise result
        return result


def population_rows(settings: Settings, spec: TaskSpec) -> tuple[str, dict[str, pd.DataFrame]]:
    """The task's population model and, per customer, its rows at the model's latest snapshot: ``category``
    and the task's own features (one DataFrame per customer, its categories sorted).

    Raises:
        UnknownTaskError: the label model names no population model.
        FileNotFoundError: the build has not written the population mart.
        EmptySnapshotError: the population is empty.
    """
    model = population_model(settings, spec)
    frame = population_at(settings, model, None, spec)
    own = [c for c in (*spec.keys, *spec.features) if c != CUSTOMER_ID]
    return model, {
        str(customer): rows[own].reset_index(drop=True)
        for customer, rows in frame.groupby(CUSTOMER_ID, sort=False)
    }


@dataclass
class ServedTasks:
    """The task scorers loaded at start-up, and why each other declared task is not served."""

    scorers: dict[str, TaskScorer]
    not_served: dict[str, str]

    def get(self, task: str) -> TaskScorer:
        """The scorer of ``task``; UnknownServedTaskError naming why it is not served and what is."""
        if task in self.scorers:
            return self.scorers[task]
        served = ", ".join(sorted(self.scorers)) or "none"
        why = self.not_served.get(task, "no dbt label model declares it")
        raise UnknownServedTaskError(f"task {task!r} is not served ({why}); served tasks: {served}")


def load_served_tasks(
    settings: Settings, reader: OnlineReader, specs: Sequence[FeatureViewSpec], serving: ServingSettings
) -> ServedTasks:
    """A scorer per declared ``is_scored`` task with a trained bundle that matches the live build and the
    online store (``check_bundle_build``; a mismatch is logged and the task not served, unless
    ``allow_build_mismatch``): ``TaskScorer`` for a binary customer task, ``CategoryTaskScorer`` (with its
    population's latest snapshot read from the mart now) for a customer x category one. A stale task model
    never stops the ranking from being served."""
    scorers: dict[str, TaskScorer] = {}
    not_served = {}
    for name, spec in task_specs(settings).items():
        if not is_scored(spec):
            not_served[name] = f"a {spec.kind} task on {spec.entity}; the ranking is POST /rank"
            continue
        try:
            bundle = load_task(settings, name)
            check_bundle_build(bundle, settings, reader.online_kind, serving.allow_build_mismatch)  # type: ignore[arg-type]
            if spec.entity == CUSTOMER_CATEGORY:
                model, rows = population_rows(settings, spec)
                scorers[name] = CategoryTaskScorer(bundle, reader, specs, serving, rows, model)
            else:
                scorers[name] = TaskScorer(bundle, reader, specs, serving)
        except (UserError, FileNotFoundError) as exc:
            log.warning("task %s is not served: %s", name, exc)
            not_served[name] = str(exc)
    return ServedTasks(scorers, not_served)
