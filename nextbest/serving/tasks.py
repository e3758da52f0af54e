"""Scoring the binary customer tasks (e.g. churn) with their trained bundles, in batch and online.

A task bundle (``nextbest train --task NAME`` -> ``models/tasks/<task>/<version>/``) is a LightGBM
classifier and its calibrator over the FeatureService's customer features
(``nextbest.training.tasks.load_task_bundle``). Both paths score with the bundle's one ``BinaryModel``
and can only differ through their features:

* batch (``score_task_batch``): the task's population at a snapshot (the label model's yml names its
  population model, ``meta.population``, e.g. ``fct_churn_population``: every snapshot, the latest
  included) -> Feast point-in-time customer features (``customer_features``, the training retrieval) ->
  calibrated probability -> parquet, written beside the target and renamed into place;
* online (``TaskScorer``): the customer's features from the online store through the ranker Scorer's
  ``OnlineReader`` (the same read timeout, circuit breaker and 503 mapping) -> calibrated probability.

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

from nextbest.columns import CUSTOMER_ID, EVENT_TIMESTAMP, PROBABILITY, SCORE, SNAPSHOT_ON
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
from nextbest.training.tasks import (
    BinaryModel,
    TaskSpec,
    UnknownTaskError,
    customer_features,
    latest_task_bundle,
    load_task_bundle,
    task_spec,
    task_specs,
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


def binary_customer_spec(settings: Settings, task: str) -> TaskSpec:
    """The spec of ``task``, which must be a binary customer task (UnknownTaskError otherwise)."""
    spec = task_spec(settings, task)
    if spec.kind != "binary" or spec.entity != "customer":
        raise UnknownTaskError(
            f"task {task!r} is a {spec.kind} task on {spec.entity}: only binary customer tasks are scored "
            "here (the ranking: `nextbest score-batch --snapshot ... --out ...`, POST /rank)"
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


def population_at(settings: Settings, model: str, snapshot: date | None) -> pd.DataFrame:
    """The population model's rows at ``snapshot`` (default: its latest): customer_id, snapshot_on,
    event_timestamp (naive UTC), sorted by customer.

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
        frame = con.execute(
            f"select {CUSTOMER_ID}, {SNAPSHOT_ON}, {EVENT_TIMESTAMP} from read_parquet(?) "
            f"where {SNAPSHOT_ON} = ? order by {CUSTOMER_ID}",
            [path, chosen],
        ).df()
    finally:
        con.close()
    frame[CUSTOMER_ID] = frame[CUSTOMER_ID].astype(str)
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
    parquet (``TASK_BATCH_SCHEMA``) to ``out`` (default ``default_batch_path``), atomically.

    Raises:
        UnknownTaskError: the task is not a declared binary customer task, or names no population model.
        NoModelError: the task has no trained bundle.
        BundleMismatchError: the bundle was trained on another build (or on features no longer served).
        EmptySnapshotError: nobody is in the population at ``snapshot``.
    """
    settings = (settings or get_settings()).pinned()
    serving = serving or settings.serving
    spec = binary_customer_spec(settings, task)
    bundle = load_task(settings, task, None)
    check_task_build(bundle, settings, serving.allow_build_mismatch)
    population = population_at(settings, population_model(settings, spec), snapshot)
    chosen = population[SNAPSHOT_ON].iloc[0]
    features = customer_features(settings, population, FEATURE_SERVICE_NAME, progress)
    check_features(bundle, list(features.columns), f"the offline store's {FEATURE_SERVICE_NAME}")
    features = features.sort_values(CUSTOMER_ID, kind="stable").reset_index(drop=True)
    score = bundle.model.score(features)
    table = pa.table(
        {
            CUSTOMER_ID: pa.array(features[CUSTOMER_ID].astype(str), pa.string()),
            SNAPSHOT_ON: pa.array(features[SNAPSHOT_ON], pa.date32()),
            PROBABILITY: pa.array(bundle.model.calibrator.predict(score), pa.float64()),
            SCORE: pa.array(score, pa.float64()),
        },
        schema=TASK_BATCH_SCHEMA,
    )
    path = Path(out) if out is not None else default_batch_path(settings, task, chosen)
    write_atomically(table, path)
    return TaskBatch(task, chosen, table.num_rows, path, bundle.version)


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


class TaskScorer:
    """Scores a binary customer task online with one loaded bundle and a shared ``OnlineReader``."""

    def __init__(
        self,
        bundle: TaskBundle,
        reader: OnlineReader,
        specs: Sequence[FeatureViewSpec],
        serving: ServingSettings,
    ) -> None:
        self.bundle = bundle
        self.reader = reader
        self.serving = serving
        customer_views = [v for v in reader.views if v.join_keys == (CUSTOMER_ID,) and not v.packed]
        names = {v.name for v in customer_views}
        self.specs = [s for s in specs if s.view in names]
        self._stamp_of = {v.name: v.features[0] for v in customer_views}
        check_features(bundle, [f for v in customer_views for f in v.features], "the online store")

    @property
    def task(self) -> str:
        """The task scored."""
        return self.bundle.task

    @property
    def model_version(self) -> str:
        """The served bundle's version (its directory name)."""
        return self.bundle.version

    def score_many(self, customer_ids: Sequence[str]) -> list[TaskScore | ServingError]:
        """Each customer's score, in order, or the ``ServingError`` it ends with (unknown customer, stale
        features refused): ONE online read of the customers' keys and ONE model call.

        Raises:
            OnlineStoreUnavailableError: the online store cannot be read (the whole batch fails).
        """
        ids = [str(c) for c in customer_ids]
        try:
            read = self.reader.customer_features(ids)
        except StoreUnavailable as exc:
            raise OnlineStoreUnavailableError(str(exc), retry_after_s=exc.retry_after_s) from exc
        now = self.serving.as_of or datetime.now(UTC)
        stamps = {view: read[f"{feature}__ts"] for view, feature in self._stamp_of.items()}
        results: list[TaskScore | ServingError | None] = [None] * len(ids)
        reports: dict[int, list[ViewStaleness]] = {}
        for i, customer_id in enumerate(ids):
            seen = {view: int(ts[i] or 0) for view, ts in stamps.items()}
            if not any(seen.values()):
                results[i] = UnknownCustomerError(
                    f"unknown customer {customer_id!r}: no features in the online store"
                )
                continue
            oldest = {view: epoch_to_utc(ts) if ts > 0 else None for view, ts in seen.items()}
            report = staleness_report(oldest, self.specs, now)
            stale = stale_views(report)
            if stale and self.serving.refuse_stale:
                results[i] = StaleFeaturesError(
                    f"stale features for customer {customer_id!r}: views {stale} are older than their ttl",
                    report,
                )
                continue
            reports[i] = report
        if reports:
            rows = list(reports)
            columns = self.bundle.model.feature_cols
            frame = pd.DataFrame({c: np.asarray([read[c][i] for i in rows], dtype=object) for c in columns})
            score = self.bundle.model.score(frame)
            probability = self.bundle.model.calibrator.predict(score)
            for j, i in enumerate(rows):
                results[i] = TaskScore(
                    task=self.task,
                    customer_id=ids[i],
                    probability=float(probability[j]),
                    score=float(score[j]),
                    snapshot_at=epoch_to_utc(max(int(ts[i] or 0) for ts in stamps.values())),
                    staleness=reports[i],
                )
        return results  # type: ignore[return-value]

    def score(self, customer_id: str) -> TaskScore:
        """``score_many`` of one customer; raises the ``ServingError`` it ends with."""
        result = self.score_many([customer_id])[0]
        if isinstance(result, ServingError):
            raise result
        return result


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
    """A ``TaskScorer`` per declared binary customer task with a trained bundle that matches the live build
    and the online store (``check_bundle_build``; a mismatch is logged and the task not served, unless
    ``allow_build_mismatch``): a stale task model never stops the ranking from being served."""
    scorers, not_served = {}, {}
    for name, spec in task_specs(settings).items():
        if spec.kind != "binary" or spec.entity != "customer":
            not_served[name] = f"a {spec.kind} task on {spec.entity}; the ranking is POST /rank"
            continue
        try:
            bundle = load_task(settings, name)
            check_bundle_build(bundle, settings, reader.online_kind, serving.allow_build_mismatch)  # type: ignore[arg-type]
            scorers[name] = TaskScorer(bundle, reader, specs, serving)
        except (NoModelError, BundleMismatchError) as exc:
            log.warning("task %s is not served: %s", name, exc)
            not_served[name] = str(exc)
    return ServedTasks(scorers, not_served)
