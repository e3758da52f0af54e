"""The Feast feature store of nextbest: configuration in code, apply, materialize, status.

Reading features is ``nextbest.features.retrieval`` (point in time) and ``nextbest.features.online`` (latest).

The registry lives at ``settings.feast_dir / "registry.db"``, the offline store reads the dbt parquet
marts with DuckDB, or with Spark when ``settings.engine`` is ``spark`` (``offline_store_config``: the
sources become ``SparkSource``s over the same files), the online store is sqlite
(``settings.feast_dir / "online_store.db"``) or redis, chosen
by ``settings.online`` (``kind`` from env ``NEXTBEST_ONLINE_STORE``, ``sqlite`` | ``redis``; ``redis_url``
from env ``NEXTBEST_REDIS_URL``, default ``127.0.0.1:6379``). Materialization runs on Feast's local
engine, or on its Spark batch engine with the spark engine and redis (``batch_engine_config``). The
committed ``feature_repo/feature_store.yaml`` describes the same (DuckDB) store for the ``feast`` CLI.

Builds: ``apply`` registers the marts of the live build (absolute paths into ``warehouse/builds/<id>/``),
so the registry names the build it serves (``applied_builds``); ``materialize`` records, per online store
kind, which build it loaded (``feast/materialized_builds.json``) and backfills fully when the build
changed. Training refuses features of another build than its labels (``check_applied_build``); serving
compares the bundle, the live build and the online store's build (``nextbest.training.artifacts``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

import duckdb
import pandas as pd
from feast import FeatureStore, FeatureView, RepoConfig

from nextbest.columns import EVENT_TIMESTAMP
from nextbest.errors import UserError
from nextbest.features.definitions import Definitions, build_definitions
from nextbest.features.manifest import FeatureViewSpec, feature_specs_from_manifest
from nextbest.features.registry_store import REGISTRY_STORE_TYPE
from nextbest.marts import manifest_path
from nextbest.settings import BUILDS_DIR, FEATURE_REPO_DIR, ONLINE_KINDS, OnlineKind, Settings

PROJECT = "nextbest"
"""Feast project name (registry namespace and online-store table prefix)."""

ONLINE_WRITE_BATCH_ROWS = 50_000
"""Rows converted to protobuf and written to the online store per batch during materialization."""

MATERIALIZED_BUILDS_FILE = "materialized_builds.json"
"""In ``settings.feast_dir``: per online store kind, the build last materialized and whether it completed."""


class FeatureBuildMismatchError(UserError, ValueError):
    """The Feast registry reads another build's marts than the caller's; the message says what to run."""


# --------------------------------------------------------------------------- configuration


def registry_path(settings: Settings) -> Path:
    """The Feast registry file."""
    return settings.feast_dir / "registry.db"


def sqlite_path(settings: Settings) -> Path:
    """The sqlite online store file."""
    return settings.feast_dir / "online_store.db"


def repo_config(
    settings: Settings, online: OnlineKind | None = None, read_timeout_s: float | None = None
) -> RepoConfig:
    """The Feast RepoConfig of nextbest for ``settings`` and the chosen online store.

    Args:
        settings: where the registry and the sqlite online store live, and the online store branch.
        online: ``sqlite`` or ``redis``; None = ``settings.online.kind``.
        read_timeout_s: redis socket (connect and read) timeout in seconds, for serving reads; None =
            redis-py's default (none), as materialization's large writes need.
    """
    kind = online or settings.online.kind
    if kind not in ONLINE_KINDS:
        raise ValueError(f"online store {kind!r}: expected one of {ONLINE_KINDS}")
    if kind == "redis":
        # skip_dedup: last write wins, as in sqlite (a restated row with the same event_timestamp
        # replaces the old one); materialize() always writes intervals forward in time.
        connection = settings.online.redis_url
        if read_timeout_s is not None:
            connection += f",socket_timeout={read_timeout_s},socket_connect_timeout={read_timeout_s}"
        online_store: dict[str, Any] = {
            "type": "redis",
            "connection_string": connection,
            "skip_dedup": True,
        }
    else:
        online_store = {"type": "sqlite", "path": str(sqlite_path(settings).resolve())}
    return RepoConfig(
        project=PROJECT,
        provider="local",
        registry={
            "registry_type": "file",
            "registry_store_type": REGISTRY_STORE_TYPE,
            "path": str(registry_path(settings).resolve()),
            "cache_ttl_seconds": 60,
            # a materialize marks its view MATERIALIZING in the registry (and leaves the mark when killed):
            # other processes keep reading the last materialized values instead of failing every read
            "serve_features_while_materializing": True,
        },
        offline_store=offline_store_config(settings),
        batch_engine=batch_engine_config(settings, kind),
        online_store=online_store,
        entity_key_serialization_version=3,
        # Dedup to the latest row per key inside DuckDB (not all history into pandas), and convert/write
        # to the online store in bounded batches: materialization memory ~ latest rows, not history.
        materialization={"pull_latest_features": True, "online_write_batch_size": ONLINE_WRITE_BATCH_ROWS},
        repo_path=FEATURE_REPO_DIR,
    )


def spark_conf(settings: Settings) -> dict[str, str]:
    """The Spark session of Feast's Spark offline store and batch engine (one session: same conf)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # Spark's Python workers: this venv
    return {
        "spark.master": settings.spark_master,
        "spark.driver.memory": settings.spark_driver_memory,
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.catalogImplementation": "in-memory",
        "spark.sql.shuffle.partitions": "4",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
    }


def offline_store_config(settings: Settings) -> dict[str, Any]:
    """Feast's offline store for ``settings.engine``: DuckDB, or Spark (``spark_master``,
    ``spark_driver_memory``; UTC session, in-memory catalogue) reading the same parquet marts."""
    if settings.engine != "spark":
        return {"type": "duckdb"}
    return {"type": "spark", "spark_conf": spark_conf(settings)}


def start_spark_session(settings: Settings) -> None:
    """Start this thread's Spark session with ``spark_conf`` unless one is active. Feast's Spark batch
    engine, when no session is active, starts one from its whole engine config rather than the
    ``spark_conf`` in it (Feast 0.67: ``ComputeEngine._get_feature_view_engine_config``), i.e. without our
    master, driver memory or UTC; the offline store and the engine then share this session."""
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    if SparkSession.getActiveSession() is None:
        SparkSession.builder.config(conf=SparkConf().setAll(list(spark_conf(settings).items()))).getOrCreate()


def batch_engine_config(settings: Settings, online: OnlineKind) -> dict[str, Any]:
    """Feast's materialization engine: its ``spark.engine`` when ``settings.engine`` is ``spark`` and the
    online store is redis (the latest row per key computed in Spark, each of its tasks writing to redis);
    otherwise its in-process ``local`` engine (which reads through the offline store, Spark's included).
    sqlite is a file beside the driver: Spark's tasks, on other machines or several at once, cannot share
    it (two writers already fail with "database is locked"), and Feast's Spark engine cannot be told to
    write from one task."""
    if settings.engine != "spark" or online != "redis":
        return {"type": "local"}
    return {"type": "spark.engine", "spark_conf": spark_conf(settings)}


def get_store(
    settings: Settings, online: OnlineKind | None = None, read_timeout_s: float | None = None
) -> FeatureStore:
    """A FeatureStore over nextbest's registry (created lazily by Feast on first apply); with
    ``read_timeout_s``, its online client is set up for serving (``serving_online_client``)."""
    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    config = repo_config(settings, online, read_timeout_s)
    store = FeatureStore(repo_path=str(FEATURE_REPO_DIR), config=config)
    if read_timeout_s is not None:
        serving_online_client(store, read_timeout_s)
    return store


SQLITE_MMAP_BYTES = 1 << 31
"""How much of the sqlite online store serving reads through a memory map (sqlite caps it at its
compile-time maximum, 2 GiB in CPython's builds): a customer's packed row spans several overflow pages,
and each page read otherwise is a ``pread`` and a copy into sqlite's small page cache. On the 20k-customer
bank (245 MB store, 12,385 customers in turn) the online read's p99 went from 0.78-0.83 ms to 0.63 ms and
``Scorer.rank``'s p99 from 1.42-1.47 ms to 1.30 ms. A file larger than the map is read as before beyond it.
Writes (materialization, in any process) still go through sqlite's locking; each read is its own
transaction, at whose start sqlite re-reads the file's size. The one hazard, sqlite's own for any memory
map: a file shrunk by something other than sqlite while a read is in flight kills the process (SIGBUS);
sqlite's writers never shrink a file under a reader, and a file damaged between reads is a 503."""


def serving_online_client(store: FeatureStore, read_timeout_s: float) -> None:
    """Set ``store``'s online client up for serving: every read gives up after about ``read_timeout_s``
    seconds, and sqlite is read through a memory map.

    redis: the socket timeouts come from the connection string (``repo_config``); here redis-py's
    default retries (3, with up to seconds of back-off) are turned off, so a timeout fails at once.
    sqlite: a locked database is waited for at most ``read_timeout_s`` (sqlite's ``busy_timeout``;
    Python's default is 5 s), and up to ``SQLITE_MMAP_BYTES`` of the file are memory-mapped. Reaches into
    Feast's online store object: Feast has no option for either.
    """
    online = store._get_provider().online_store
    config = store.config
    if config.online_store.type == "redis":
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        online._get_client(config.online_store).set_retry(Retry(NoBackoff(), 0))
    elif config.online_store.type == "sqlite":
        conn = online._get_conn(config)
        conn.execute(f"pragma busy_timeout = {max(1, int(read_timeout_s * 1000))}")
        conn.execute(f"pragma mmap_size = {SQLITE_MMAP_BYTES}")


def reset_online_client(store: FeatureStore, read_timeout_s: float) -> None:
    """Drop ``store``'s sqlite connection so the next read reopens the file (a corrupted, replaced or
    deleted file is seen again); redis reconnects by itself. The caller serialises sqlite reads."""
    config = store.config
    if config.online_store.type != "sqlite":
        return
    online = store._get_provider().online_store
    conn, online._conn = online._conn, None
    if conn is not None:
        with contextlib.suppress(sqlite3.Error):
            conn.close()
    with contextlib.suppress(sqlite3.Error):
        serving_online_client(store, read_timeout_s)


def load_specs(settings: Settings) -> list[FeatureViewSpec]:
    """Feature-view specs from the dbt manifest of the last build."""
    return feature_specs_from_manifest(manifest_path(settings), settings.marts_dir)


def load_definitions(settings: Settings) -> Definitions:
    """Feast objects for the marts of the last dbt build (paths resolved from ``settings``)."""
    return build_definitions(load_specs(settings), settings.marts_dir, settings.engine)


# --------------------------------------------------------------------------- apply


def apply_definitions(
    settings: Settings, online: OnlineKind | None = None, definitions: Definitions | None = None
) -> Definitions:
    """Register entities, sources, views and the service; delete nextbest objects no longer defined.

    Idempotent: applying the same definitions twice leaves the registry objects unchanged.

    Args:
        settings: locations of the manifest, marts and registry.
        online: online store kind (None: ``settings.online.kind``).
        definitions: objects to apply; None builds them from the dbt manifest.
    """
    definitions = definitions or load_definitions(settings)
    store = get_store(settings, online)
    wanted_views, wanted_services = definitions.view_names, definitions.service_names
    stale: list[Any] = [v for v in store.list_feature_views() if v.name not in wanted_views]
    stale += [s for s in store.list_feature_services() if s.name not in wanted_services]
    store.apply(definitions.all(), objects_to_delete=stale, partial=not stale)
    return definitions


# --------------------------------------------------------------------------- builds


def build_of_mart(path: Path) -> str | None:
    """The build id of a mart file ``.../builds/<id>/marts/<model>.parquet``; None for the flat layout."""
    parts = Path(path).parts
    return parts[-3] if len(parts) >= 4 and parts[-4] == BUILDS_DIR else None


def applied_builds(store: FeatureStore) -> set[str | None]:
    """The builds whose marts the registered feature views read (one, unless an apply was cut short)."""
    return {build_of_mart(_view_path(view)) for view in store.list_feature_views()}


def check_applied_build(settings: Settings, store: FeatureStore) -> None:
    """Refuse to read features of another build than the marts ``settings`` read (labels, candidates).

    Nothing registered passes (the caller reports the missing FeatureService itself).

    Raises:
        FeatureBuildMismatchError: the registry's views read another build (or several).
    """
    applied = applied_builds(store)
    wanted = settings.current_build_id
    if applied and applied != {wanted}:
        names = ", ".join(sorted(str(b or "flat layout") for b in applied))
        raise FeatureBuildMismatchError(
            f"the Feast registry reads the marts of build {names} but the live build is "
            f"{wanted or 'the flat layout'}: run `nextbest features apply` and `nextbest features "
            "materialize` so that features, labels and candidates come from one build"
        )


class MaterializedBuild(NamedTuple):
    """The build an online store was last materialized from; ``complete`` False while (or if cut) midway."""

    build_id: str | None
    complete: bool


def materialized_build(settings: Settings, online: OnlineKind | None = None) -> MaterializedBuild | None:
    """The build the ``online`` store (default ``settings.online.kind``) holds; None when not recorded."""
    path = settings.feast_dir / MATERIALIZED_BUILDS_FILE
    if not path.is_file():
        return None
    entry = json.loads(path.read_text(encoding="utf-8")).get(online or settings.online.kind)
    return None if entry is None else MaterializedBuild(entry["build_id"], bool(entry["complete"]))


def _record_materialized(settings: Settings, online: OnlineKind, state: MaterializedBuild) -> None:
    path = settings.feast_dir / MATERIALIZED_BUILDS_FILE
    recorded = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    recorded[online] = state._asdict()
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


# --------------------------------------------------------------------------- offline facts


@dataclass(frozen=True)
class OfflineExtent:
    """Row count and event-timestamp range of one parquet mart (timestamps in UTC)."""

    rows: int
    min_ts: datetime | None
    max_ts: datetime | None


def _utc(ts: Any) -> datetime | None:
    """A timezone-aware UTC datetime from a naive (UTC) or aware timestamp; None stays None."""
    if ts is None or pd.isna(ts):
        return None
    stamp = pd.Timestamp(ts)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def offline_extent(parquet_path: Path) -> OfflineExtent:
    """Rows and min/max ``event_timestamp`` of a mart, read from parquet metadata/columns by DuckDB."""
    if not parquet_path.exists():
        raise FileNotFoundError(f"feature mart {parquet_path} does not exist: run dbt build first")
    con = duckdb.connect()
    try:
        con.execute("set timezone = 'UTC'")
        rows, lo, hi = con.execute(
            f"select count(*), min({EVENT_TIMESTAMP}), max({EVENT_TIMESTAMP}) from read_parquet(?)",
            [str(parquet_path)],
        ).fetchone()
    finally:
        con.close()
    return OfflineExtent(rows=int(rows), min_ts=_utc(lo), max_ts=_utc(hi))


def _view_path(view: FeatureView) -> Path:
    """The parquet mart behind a registered view."""
    return Path(view.batch_source.path)


def _view_join_keys(view: FeatureView) -> list[str]:
    """The join key columns of a registered view."""
    return [c.name for c in view.entity_columns]


def _latest_key(view: FeatureView) -> dict[str, str] | None:
    """One entity key of the mart's latest snapshot (used to probe the online store)."""
    return latest_snapshot_key(_view_path(view), _view_join_keys(view))[0]


def latest_snapshot_key(
    parquet_path: Path, join_keys: Sequence[str]
) -> tuple[dict[str, str] | None, datetime | None]:
    """(the first entity key of the mart's latest snapshot, that snapshot's event_timestamp in UTC);
    (None, None) for an empty mart. Probing this key online tells whether the snapshot is loaded."""
    con = duckdb.connect()
    try:
        con.execute("set timezone = 'UTC'")
        keys = ", ".join(join_keys)
        row = con.execute(
            f"select {keys}, {EVENT_TIMESTAMP} from read_parquet(?) where {EVENT_TIMESTAMP} = "
            f"(select max({EVENT_TIMESTAMP}) from read_parquet(?)) order by {keys} limit 1",
            [str(parquet_path), str(parquet_path)],
        ).fetchone()
    finally:
        con.close()
    if row is None:
        return None, None
    return dict(zip(join_keys, map(str, row[:-1]), strict=True)), _utc(row[-1])


# --------------------------------------------------------------------------- materialize


@dataclass(frozen=True)
class MaterializationRun:
    """What one materialize() did for one view.

    Attributes:
        view: feature view name.
        mode: ``full`` (backfill from the earliest event_timestamp), ``incremental`` (from the last
            materialized end, inclusive, so a restated latest snapshot is rewritten) or ``empty``.
        start, end: the materialized interval (UTC, both inclusive); None when the mart is empty.
        seconds: wall time.
    """

    view: str
    mode: Literal["full", "incremental", "empty"]
    start: datetime | None
    end: datetime | None
    seconds: float


def ensure_online_tables(store: FeatureStore, views: Sequence[FeatureView]) -> None:
    """(Re)create the online tables of ``views`` if missing (e.g. the sqlite file was deleted); idempotent."""
    store._get_provider().update_infra(
        project=store.project,
        tables_to_delete=[],
        tables_to_keep=list(views),
        entities_to_delete=[],
        entities_to_keep=store.list_entities(),
        partial=True,
    )


def _online_has_view(store: FeatureStore, view: FeatureView) -> bool:
    """True when a key of the latest snapshot is present online (detects a lost/emptied online store)."""
    key = _latest_key(view)
    if key is None:
        return False
    first_feature = view.features[0].name
    resp = store.get_online_features(features=[f"{view.name}:{first_feature}"], entity_rows=[key]).to_dict(
        include_event_timestamps=True
    )
    stamps = resp.get(f"{first_feature}__ts") or [0]
    return bool(stamps[0])


def materialize(
    settings: Settings,
    online: OnlineKind | None = None,
    progress: bool = True,
    full: bool = False,
    views: Sequence[str] | None = None,
) -> list[MaterializationRun]:
    """Load the latest row per entity key of every registered view (apply first) into the online store.

    A view that was never materialized, or whose online rows are missing (e.g. the sqlite file was
    deleted or redis flushed), is backfilled from the earliest ``event_timestamp`` of its mart to the
    latest; otherwise the run is incremental from the last materialized end (inclusive) to the latest.
    Re-running with unchanged marts rewrites the same values (idempotent).

    Args:
        settings: locations of the registry, marts and online store.
        online: online store kind (None: ``settings.online.kind``).
        progress: let Feast print its progress bars.
        full: force a full backfill of every view.
        views: restrict to these view names (default: all registered views). On top of a complete
            load of the same build, the load stays complete.
    """
    kind = online or settings.online.kind
    store = get_store(settings, kind)
    registered = sorted(store.list_feature_views(), key=lambda v: v.name)
    ensure_online_tables(store, registered)
    check_applied_build(settings, store)  # load the online store from the build the marts are read from
    builds = applied_builds(store)
    build_id = next(iter(builds)) if len(builds) == 1 else None
    was_complete = materialized_build(settings, kind) == MaterializedBuild(build_id, True)
    if not was_complete:
        full = True  # another build (or an unfinished run): restated rows anywhere in history
    _record_materialized(settings, kind, MaterializedBuild(build_id, False))
    if settings.engine == "spark":
        start_spark_session(settings)
    runs: list[MaterializationRun] = []
    for view in registered:
        if views is not None and view.name not in views:
            continue
        started = time.perf_counter()
        extent = offline_extent(_view_path(view))
        if extent.max_ts is None or extent.min_ts is None:
            runs.append(MaterializationRun(view.name, "empty", None, None, 0.0))
            continue
        last_end = _utc(view.most_recent_end_time)
        backfill = full or last_end is None or not _online_has_view(store, view)
        start = extent.min_ts if backfill else min(last_end, extent.max_ts)
        end = extent.max_ts
        _run_feast_materialize(store, view.name, start, end, progress)
        runs.append(
            MaterializationRun(
                view.name, "full" if backfill else "incremental", start, end, time.perf_counter() - started
            )
        )
    if was_complete or views is None or set(views) >= {v.name for v in registered}:
        # complete again: every view loaded now, or some loaded (again) on top of a complete load
        _record_materialized(settings, kind, MaterializedBuild(build_id, True))
    return runs


def _run_feast_materialize(
    store: FeatureStore, view: str, start: datetime, end: datetime, progress: bool
) -> None:
    """``store.materialize`` for one view, silencing Feast's console output unless ``progress``."""
    if progress:
        store.materialize(start_date=start, end_date=end, feature_views=[view])
        return
    import contextlib
    import io

    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        store.materialize(start_date=start, end_date=end, feature_views=[view])


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class ViewStatus:
    """State of one feature view: offline rows and range, and how far the online store is loaded.

    Attributes:
        view: feature view name; model: its dbt model.
        offline_rows: rows in the parquet mart (0 if the file is missing).
        offline_min_ts, offline_max_ts: event_timestamp range of the mart (UTC).
        online_until: end of the latest materialized interval (UTC), None if never materialized.
        online_is_current: the online store holds the mart's latest snapshot.
    """

    view: str
    model: str
    offline_rows: int
    offline_min_ts: datetime | None
    offline_max_ts: datetime | None
    online_until: datetime | None
    online_is_current: bool


def status(settings: Settings, online: OnlineKind | None = None) -> list[ViewStatus]:
    """One ViewStatus per registered feature view, sorted by view name."""
    store = get_store(settings, online)
    out: list[ViewStatus] = []
    for view in sorted(store.list_feature_views(), key=lambda v: v.name):
        path = _view_path(view)
        extent = offline_extent(path) if path.exists() else OfflineExtent(0, None, None)
        until = _utc(view.most_recent_end_time)
        current = until is not None and extent.max_ts is not None and until >= extent.max_ts
        out.append(
            ViewStatus(
                view=view.name,
                model=view.tags.get("dbt_model", ""),
                offline_rows=extent.rows,
                offline_min_ts=extent.min_ts,
                offline_max_ts=extent.max_ts,
                online_until=until,
                online_is_current=current,
            )
        )
    return out


def now_utc() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)
