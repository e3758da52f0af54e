"""The one settings tree. Reading settings has no side effect: no directory is created here.

``Settings`` (``NEXTBEST_*``) is the root: where nextbest keeps its state (``home``), the dbt knobs, and
three branches:

- ``online`` (``OnlineStoreSettings``): the online store kind (``NEXTBEST_ONLINE_STORE``) and the redis
  address (``NEXTBEST_REDIS_URL``);
- ``serving`` (``ServingSettings``, ``NEXTBEST_SERVING_*``): the Scorer and the HTTP API;
- ``build`` (``BuildVars``): the dbt vars a build is run with (label horizon, activity look-back); not
  from the environment but from the live build (its ``build_vars.json``), else the defaults in
  ``dbt_project/dbt_project.yml``, the one place they are written.

Builds are all-or-nothing: each ``nextbest build`` writes a new directory ``warehouse/builds/<id>/``
(marts, DuckDB file, dbt target, build vars, ``build.json``) and, only once ``dbt build`` and its tests
passed, switches the live pointer ``warehouse/current.json`` to it (``nextbest.pipeline``). The paths
below resolve through that pointer when they are read (``build_id`` pins one build instead); a warehouse
without a pointer (never built, or built by an older version) is read in the old flat layout.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from nextbest.errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
FEATURE_REPO_DIR = PROJECT_ROOT / "feature_repo"

Engine = Literal["duckdb", "spark"]
ENGINES: tuple[Engine, ...] = ("duckdb", "spark")
DBT_TARGETS: dict[Engine, str] = {"duckdb": "local", "spark": "spark"}
"""The dbt profile target (``dbt_project/profiles.yml``) of each engine."""

OnlineKind = Literal["sqlite", "redis"]
ONLINE_KINDS: tuple[OnlineKind, ...] = ("sqlite", "redis")
DEFAULT_REDIS_URL = "127.0.0.1:6379"

BUILD_VARS_FILE = "build_vars.json"
"""The build vars of a build, in its build directory."""

LIVE_BUILD_FILE = "current.json"
"""The live pointer in the warehouse directory: ``{"build_id": ...}`` of the live build."""

BUILDS_DIR = "builds"
"""The directory of the warehouse holding one directory per build, named by build id."""


class OnlineStoreSettings(BaseSettings):
    """Which online store Feast serves from.

    Attributes:
        kind: ``sqlite`` (a file under ``home``) or ``redis`` (env ``NEXTBEST_ONLINE_STORE``).
        redis_url: ``host:port[,options]`` of redis (env ``NEXTBEST_REDIS_URL``; ``redis://`` is dropped).
    """

    model_config = SettingsConfigDict(env_prefix="NEXTBEST_", frozen=True, populate_by_name=True)

    kind: OnlineKind = Field(default="sqlite", validation_alias="NEXTBEST_ONLINE_STORE")
    redis_url: str = Field(default=DEFAULT_REDIS_URL, validation_alias="NEXTBEST_REDIS_URL")

    @field_validator("kind", mode="before")
    @classmethod
    def _known_kind(cls, value: Any) -> str:
        kind = str(value).strip().lower()
        if kind not in ONLINE_KINDS:
            raise ValueError(f"NEXTBEST_ONLINE_STORE={kind!r}: expected one of {ONLINE_KINDS}")
        return kind

    @field_validator("redis_url", mode="before")
    @classmethod
    def _plain_address(cls, value: Any) -> str:
        return str(value).strip().removeprefix("redis://").rstrip("/")


K_LIMIT = 100
"""The largest k any request may ask for: the bound of ``RankRequest.k`` and of ``ServingSettings.max_k``."""

BATCH_LIMIT = 100
"""The most customers one ``/rank/batch`` request may hold (bound of the schema and of ``max_batch``)."""


class ServingSettings(BaseSettings):
    """Knobs of the Scorer and the HTTP API.

    Every field can be set from the environment with the ``NEXTBEST_SERVING_`` prefix, e.g.
    ``NEXTBEST_SERVING_REFUSE_STALE=true``.
    """

    model_config = SettingsConfigDict(env_prefix="NEXTBEST_SERVING_", frozen=True, populate_by_name=True)

    online_store: OnlineKind | None = Field(
        default=None, description="Online store kind; None = the settings' ``online.kind``."
    )
    model_path: Path | None = Field(
        default=None, description="A model bundle directory; None serves the latest bundle in models_dir."
    )
    refuse_stale: bool = Field(
        default=False,
        description="Refuse (503) a ranking whose features are older than their view's ttl, instead of "
        "only reporting the staleness.",
    )
    allow_build_mismatch: bool = Field(
        default=False,
        description="Serve a bundle trained on another build (id or dbt vars) than the live one, or with an "
        "online store of another build, with a warning instead of refusing to start.",
    )
    as_of: datetime | None = Field(
        default=None,
        description="Judge staleness at this (tz-aware) time instead of the wall clock, e.g. when "
        "replaying a historical dataset. None = now.",
    )
    product_cache_seconds: float = Field(
        default=60.0,
        ge=0,
        description="Keep the catalogue's product features in memory this long (one online read of every "
        "product per period instead of one per request); they change only when the store is materialized. "
        "0 = read them on every request.",
    )
    retrieval: bool = Field(
        default=True,
        description="When the bundle holds a retrieval index (``nextbest retrieval index``), rank only each "
        "customer's top-N retrieved candidates; false = rank all candidates (as without an index).",
    )
    default_k: int = Field(default=7, ge=1, le=K_LIMIT, description="Products returned when k is not given.")
    max_k: int = Field(
        default=K_LIMIT, ge=1, le=K_LIMIT, description=f"Largest k a request may ask for (<= {K_LIMIT})."
    )
    max_batch: int = Field(
        default=BATCH_LIMIT,
        ge=1,
        le=BATCH_LIMIT,
        description=f"Most customers one /rank/batch request may hold (<= {BATCH_LIMIT}).",
    )
    max_body_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Larger request bodies are refused with 413."
    )
    read_timeout_ms: float = Field(
        default=100.0,
        gt=0,
        description="Deadline of one online-store read (redis socket timeouts, sqlite lock and busy wait); "
        "a read that misses it ends the request in 503.",
    )
    breaker_failures: int = Field(
        default=3,
        ge=1,
        description="Consecutive failed online reads that open the circuit breaker: while open, requests "
        "get 503 at once instead of waiting for a dead store.",
    )
    breaker_cooldown_s: float = Field(
        default=1.0,
        gt=0,
        description="How long the breaker stays open before one probe read may close it (the 503's "
        "Retry-After).",
    )
    ready_refresh_s: float = Field(
        default=2.0, gt=0, description="How often the background check behind GET /ready runs."
    )
    workers: int = Field(
        default=2,
        ge=1,
        le=64,
        description="uvicorn worker processes of ``nextbest serve`` (each loads the bundle and the "
        "catalogue once); 2 measured best on a 2-core machine (benchmarks/bench_serving.py).",
    )
    max_micro_batch: int = Field(
        default=32,
        ge=1,
        le=BATCH_LIMIT,
        description="Most concurrent /rank requests scored together in one online read and one "
        "vectorised predict + calibrate.",
    )
    # ----------------------------------------------------------------- operating the API
    api_keys_file: Path | None = Field(
        default=None,
        description="API keys (yaml/json: id, sha256 of the key, scopes); None = ``<home>/api_keys.yaml`` "
        "when it exists (where ``nextbest serve keys add`` writes).",
    )
    api_keys: str | None = Field(
        default=None,
        validation_alias="NEXTBEST_API_KEYS",
        description="API keys in the file's format, as one yaml/json string (env ``NEXTBEST_API_KEYS``); "
        "added to the file's.",
    )
    open_routes: tuple[str, ...] = Field(
        default=("/health",),
        description="Paths answered without a key (/ready, /docs, /openapi.json, /metrics are behind a key "
        "unless listed here).",
    )
    rate_limit_per_s: float = Field(
        default=100.0,
        ge=0,
        description="Requests per second each key may send to one worker process (token bucket; 0 = no "
        "limit); a key's own ``rate_per_s`` wins. No limit without keys.",
    )
    rate_limit_burst: int = Field(
        default=200, ge=1, description="Requests a key may send at once before the rate applies."
    )
    metrics: bool = Field(
        default=True, description="Count and time requests and store reads for GET /metrics (off: 404)."
    )
    access_log: bool = Field(default=True, description="One JSON line per request on stderr.")
    log_customer: Literal["hash", "omit", "plain"] = Field(
        default="hash",
        description="Customer ids in the access log: keyed hash (``log_hash_key``), omitted, or plain.",
    )
    log_hash_key: str = Field(
        default="",
        description="Secret of the customer-id HMAC in logs (empty: a plain sha256, pseudonymous only).",
    )
    log_scores: bool = Field(
        default=False, description="Also log the offered products and probabilities (off: no scores)."
    )
    decisions_log_dir: Path | None = Field(
        default=None,
        description="Append every online answer to a parquet decisions log in this directory (None = off; "
        "``score-batch`` writes to it, else to ``<home>/decisions``).",
    )
    decisions_flush_rows: int = Field(
        default=10_000, ge=1, description="A decisions file is written when this many rows are buffered."
    )
    decisions_flush_s: float = Field(
        default=5.0, gt=0, description="... or when the oldest buffered row is this old (seconds)."
    )


def dbt_var_defaults(project_dir: Path = DBT_PROJECT_DIR) -> dict[str, Any]:
    """The ``vars:`` of ``dbt_project.yml``: the defaults of every dbt var, written only there."""
    project = yaml.safe_load((project_dir / "dbt_project.yml").read_text(encoding="utf-8"))
    return dict(project.get("vars") or {})


TrainingEngine = Literal["local", "dask"]


class TrainingSettings(BaseSettings):
    """Where the ranker is fitted (``nextbest.training.distributed``).

    Every field can be set from the environment with the ``NEXTBEST_TRAINING_`` prefix, e.g.
    ``NEXTBEST_TRAINING_ENGINE=dask NEXTBEST_TRAINING_DASK_SCHEDULER=tcp://10.0.0.5:8786``.
    """

    model_config = SettingsConfigDict(env_prefix="NEXTBEST_TRAINING_", frozen=True)

    engine: TrainingEngine = Field(
        default="local", description="local: this process (early stopping); dask: DaskLGBMRanker, a cluster."
    )
    dask_scheduler: str | None = Field(
        default=None, description="The Dask scheduler's address; None starts a LocalCluster (dask_workers)."
    )
    dask_workers: int = Field(default=2, ge=1, description="Workers of the LocalCluster (one thread each).")


class BuildVars(BaseModel):
    """The modelling choices a warehouse is built with (dbt vars), kept with the build.

    Attributes:
        horizon_months: months after a snapshot in which a new holding counts as an adoption (>= 1).
        activity_lookback_months: a customer who held a product before but owns none now is dormant
            unless they transacted in the last N months (>= 1).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    horizon_months: int = Field(ge=1)
    activity_lookback_months: int = Field(ge=1)

    @classmethod
    def defaults(cls, project_dir: Path = DBT_PROJECT_DIR) -> BuildVars:
        """The defaults of ``dbt_project.yml``."""
        defaults = dbt_var_defaults(project_dir)
        return cls(**{name: defaults[name] for name in cls.model_fields})

    @classmethod
    def read(cls, path: Path) -> BuildVars | None:
        """The build vars saved at ``path``, or None when there are none."""
        if not path.exists():
            return None
        return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))

    def write(self, path: Path) -> None:
        """Save these vars at ``path`` (written to a temporary file, then renamed into place)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.model_dump(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(path)

    def replace(self, **values: int | None) -> BuildVars:
        """These vars with the given values instead (a None value keeps the current one)."""
        return self.model_copy(update={k: v for k, v in values.items() if v is not None})


class Settings(BaseSettings):
    """Where nextbest keeps its state, the knobs of the build, and the online store and serving branches.

    Every field can be set from the environment with the ``NEXTBEST_`` prefix, e.g.
    ``NEXTBEST_HOME=/data/nextbest``; the branches read theirs when the settings are created.
    """

    model_config = SettingsConfigDict(env_prefix="NEXTBEST_", frozen=True)

    home: Path = Field(default=PROJECT_ROOT / ".nextbest", description="Root of all generated state.")
    dbt_threads: int = Field(
        default=1,
        ge=1,
        description="dbt threads (nodes built at once). 1: each DuckDB query has both cores and the whole "
        "memory limit to itself; two heavy models at once share the limit and spill (synthetic bank "
        "1M x 24 months: dbt 922 s with 2 threads, 745 s with 1; 10k: 31 s vs 35 s). Raise it for Spark "
        "on a cluster.",
    )
    dbt_memory_limit: str = Field(default="6GB", description="DuckDB memory_limit for dbt builds.")
    engine: Engine = Field(
        default="duckdb",
        description="The SQL engine dbt builds the warehouse with (env ``NEXTBEST_ENGINE``): duckdb, or "
        "spark (dbt-spark in-process on ``spark_master``; the ``spark`` extra and Java 17).",
    )
    spark_master: str = Field(
        default="local[2]", description="spark.master of the spark engine, e.g. local[2] or spark://host:7077."
    )
    spark_driver_memory: str = Field(default="2g", description="spark.driver.memory of the spark engine.")
    build_id: str | None = Field(
        default=None,
        description="Read this build (``warehouse/builds/<id>``) instead of the live one; None = the live "
        "build. The build in progress and training (pinned at its start) address their build this way.",
    )
    online: OnlineStoreSettings = Field(default_factory=OnlineStoreSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)

    @field_validator("engine", mode="before")
    @classmethod
    def _known_engine(cls, value: Any) -> str:
        engine = str(value).strip().lower()
        if engine not in ENGINES:
            raise ValueError(f"expected one of {', '.join(ENGINES)}")
        return engine

    @cached_property
    def raw_dir(self) -> Path:
        """The ingested, validated dataset in the raw contract."""
        return self.home / "raw"

    @cached_property
    def sources_dir(self) -> Path:
        """Datasets produced by the shipped loaders before ingest (synthetic, completejourney)."""
        return self.home / "sources"

    @cached_property
    def warehouse_dir(self) -> Path:
        """dbt's DuckDB file, the external parquet marts and the build vars."""
        return self.home / "warehouse"

    @property
    def live_pointer_path(self) -> Path:
        """The live pointer: which build of ``builds_dir`` is live."""
        return self.warehouse_dir / LIVE_BUILD_FILE

    @property
    def builds_dir(self) -> Path:
        """One directory per build (``<id>/``), the live one, its predecessor and any in progress."""
        return self.warehouse_dir / BUILDS_DIR

    @property
    def live_build_id(self) -> str | None:
        """The id of the live build (read now from the pointer), None when nothing was built this way."""
        return read_live_build_id(self.live_pointer_path)

    @property
    def current_build_id(self) -> str | None:
        """The build these settings read: ``build_id`` when pinned, else the live build's id."""
        return self.build_id or self.live_build_id

    @property
    def build_dir(self) -> Path:
        """The directory of ``current_build_id``; the warehouse itself (flat layout) when there is none."""
        build_id = self.current_build_id
        return self.warehouse_dir if build_id is None else self.builds_dir / build_id

    @property
    def marts_dir(self) -> Path:
        """External parquet written by dbt, one file per model, of the build these settings read."""
        return self.build_dir / "marts"

    def pinned(self) -> Settings:
        """These settings pinned to the build live now: a build finishing later does not switch them."""
        return self if self.build_id else self.model_copy(update={"build_id": self.live_build_id})

    @cached_property
    def feast_dir(self) -> Path:
        """Feast registry and sqlite online store."""
        return self.home / "feast"

    @cached_property
    def models_dir(self) -> Path:
        """Versioned model bundles."""
        return self.home / "models"

    @property
    def build_vars_path(self) -> Path:
        """Where the vars of the build these settings read are kept."""
        return self.build_dir / BUILD_VARS_FILE

    @property
    def build(self) -> BuildVars:
        """The build vars of the live build (read now), else the defaults of ``dbt_project.yml``."""
        return BuildVars.read(self.build_vars_path) or BuildVars.defaults()


def read_live_build_id(pointer: Path) -> str | None:
    """The build id in the live pointer file ``pointer``; None when there is no pointer."""
    try:
        return str(json.loads(pointer.read_text(encoding="utf-8"))["build_id"])
    except FileNotFoundError:
        return None


class SettingsError(UserError):
    """An environment variable holds a value the settings refuse."""


def settings_error_line(err: ValidationError) -> str:
    """The refused values of a settings ``ValidationError``, by environment variable, on one line."""
    prefixes = {cls.__name__: cls.model_config.get("env_prefix", "") for cls in BaseSettings.__subclasses__()}
    prefix = prefixes.get(err.title, "NEXTBEST_")
    parts = [
        f"{prefix}{'_'.join(str(p) for p in e['loc']).upper()}={e.get('input')!r}: {e['msg']}"
        for e in err.errors()
    ]
    return "settings: " + "; ".join(parts)


def get_settings() -> Settings:
    """Settings read from the environment now (not cached: tests change NEXTBEST_HOME).

    Raises:
        SettingsError: an environment variable holds a value the settings refuse.
    """
    try:
        return Settings()
    except ValidationError as err:
        raise SettingsError(settings_error_line(err)) from err
