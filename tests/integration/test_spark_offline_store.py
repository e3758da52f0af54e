"""Feast's Spark offline store as a setting: ``NEXTBEST_ENGINE=spark`` reads the same parquet marts through
Spark (``SparkSource``s in the registry instead of ``FileSource``s), with the same answers.

One small synthetic bank is built with DuckDB, applied and materialized to sqlite as usual. Then, in a
child process (so that no JVM stays in this one), the same home with ``engine=spark`` is applied again,
nextbest's own training retrieval (``historical_features`` through the ranker's FeatureService, the packed
customer x product view included) runs through the Spark offline store, and every view is materialized
again, through Spark, into an emptied sqlite store (by Feast's local engine: Spark's tasks cannot share a
sqlite file) and into redis (by Feast's Spark batch engine, its tasks writing). The frame must equal the
DuckDB store's for the same entity rows, and the online rows must equal those the DuckDB materialization
wrote.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nextbest.columns import CUSTOMER_ID, EVENT_TIMESTAMP, PRODUCT_ID
from nextbest.features.online import online_features
from nextbest.features.retrieval import historical_features
from nextbest.features.store import apply_definitions, get_store, materialize, sqlite_path
from nextbest.ingest.store import ingest_directory
from nextbest.ingest.synthetic import generate_synthetic
from nextbest.marts import FCT_RANKING_LABELS, mart_path
from nextbest.pipeline import build_warehouse
from nextbest.settings import Settings
from tests.integration.serving_fixtures import RedisServer
from tests.integration.test_spark_equivalence import _require_spark

pytestmark = [pytest.mark.integration, pytest.mark.spark]

ENTITY_ROWS = 3_000
PAIR_FEATURE = "max_transition_lift_from_owned"
"""A customer x product feature, read from the packed view."""
FLOAT_RTOL = 1e-9
SPARK_MASTER = "local[1]"
"""Not the default (local[2]): the session Spark runs in must be the one the settings ask for."""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A DuckDB-built small bank, applied and materialized to sqlite through the DuckDB offline store."""
    _require_spark()
    home = tmp_path_factory.mktemp("spark_offline_store")
    settings = Settings(home=home)
    generate_synthetic(home / "source", customers=300, months=6, seed=3, with_oracle=False)
    ingest_directory(home / "source", settings.raw_dir)
    build_warehouse(settings, quiet=True)
    apply_definitions(settings, "sqlite")
    materialize(settings, "sqlite", progress=False)
    return settings


def spark_side(home: str, entity_path: str | None, out_path: str | None, online: str = "sqlite") -> list[str]:
    """With ``engine=spark``: apply; retrieve the entity rows' features (when ``entity_path``); then empty
    the online store and materialize every view again through Spark. Returns the registered sources'
    types, the batch engine's, and the Spark session's master and time zone."""
    settings = Settings(home=Path(home), engine="spark", spark_master=SPARK_MASTER)
    definitions = apply_definitions(settings, online)
    store = get_store(settings, online)
    if entity_path is not None and out_path is not None:
        historical_features(store, pd.read_parquet(entity_path)).to_parquet(out_path, index=False)
    if online == "sqlite":
        sqlite_path(settings).unlink()  # every online row must come from this materialization
    materialize(settings, online, progress=False, full=True)
    store = get_store(settings, online)
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    return (
        sorted({type(s).__name__ for s in store.list_data_sources()})
        + [type(s).__name__ for s in definitions.sources[:1]]
        + [type(store._get_provider().batch_engine).__name__]
        + [session.conf.get("spark.master"), session.conf.get("spark.sql.session.timeZone")]
    )


def in_spark_child(*args: str | None) -> list[str]:
    """``spark_side(*args)`` in a spawned process (no JVM stays in this one)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as child:
        return child.submit(spark_side, *args).result()


def online_frame(settings: Settings, customers: list[str], online: str = "sqlite") -> pd.DataFrame:
    """Every feature online for ``customers`` x every product, one frame."""
    store = get_store(settings, online)
    products = pd.read_parquet(mart_path(settings, "dim_products"))[PRODUCT_ID].astype(str).tolist()
    return pd.concat([online_features(store, c, products).frame for c in customers], ignore_index=True)


def assert_same_online_rows(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    """The same non-empty online frame: numbers within float tolerance, everything else exactly."""
    assert len(actual) == len(expected) > 0
    numeric = expected.select_dtypes(include=[np.number]).columns
    pd.testing.assert_frame_equal(actual[numeric], expected[numeric], check_exact=False)
    others = [c for c in expected.columns if c not in numeric]
    pd.testing.assert_frame_equal(actual[others], expected[others])


def test_the_spark_offline_store_gives_the_duckdb_stores_features_and_online_rows(
    deployment: Settings, tmp_path: Path
) -> None:
    labels = pd.read_parquet(mart_path(deployment, FCT_RANKING_LABELS))
    entities = labels[[CUSTOMER_ID, PRODUCT_ID, EVENT_TIMESTAMP]].sample(
        n=min(ENTITY_ROWS, len(labels)), random_state=0
    )
    entity_path = tmp_path / "entities.parquet"
    entities.to_parquet(entity_path, index=False)
    expected = historical_features(get_store(deployment, "sqlite"), entities.reset_index(drop=True))
    customers = sorted(entities[CUSTOMER_ID].astype(str).unique())[:5]
    online_before = online_frame(deployment, customers)

    try:
        kinds = in_spark_child(str(deployment.home), str(entity_path), str(tmp_path / "spark.parquet"))
        # sqlite: Feast's local engine writes what it pulls through the Spark offline store
        assert kinds == ["SparkSource", "SparkSource", "LocalComputeEngine", SPARK_MASTER, "UTC"]
        actual = pd.read_parquet(tmp_path / "spark.parquet")
        assert len(actual) == len(expected) > 0
        features = [c for c in expected.columns if c not in (CUSTOMER_ID, PRODUCT_ID, EVENT_TIMESTAMP)]
        found = expected[features].notna().any()  # 6 months: the year-ago features are null everywhere
        assert found.mean() > 0.8 and found[PAIR_FEATURE], found[~found].index.tolist()
        pd.testing.assert_frame_equal(
            actual[features], expected[features], check_dtype=False, check_exact=False, rtol=FLOAT_RTOL
        )
        assert_same_online_rows(online_frame(deployment, customers), online_before)
    finally:
        apply_definitions(deployment, "sqlite")  # back to the DuckDB offline store


@pytest.mark.redis
def test_the_spark_batch_engine_loads_redis_with_the_rows_of_the_local_engine(
    deployment: Settings, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis takes Feast's Spark batch engine (its tasks write in parallel): the same rows as sqlite loaded
    by Feast's local engine from DuckDB."""
    monkeypatch.setenv("NEXTBEST_REDIS_URL", redis_server.url)  # the spawned child inherits it
    labels = pd.read_parquet(mart_path(deployment, FCT_RANKING_LABELS))
    customers = sorted(labels[CUSTOMER_ID].astype(str).unique())[:5]
    expected = online_frame(deployment, customers)
    try:
        kinds = in_spark_child(str(deployment.home), None, None, "redis")
        # materialized first in its process: Feast's engine ran in the session of nextbest's settings
        assert kinds[-3:] == ["SparkComputeEngine", SPARK_MASTER, "UTC"]
        numeric = expected.select_dtypes(include=[np.number]).columns
        assert expected[numeric].notna().to_numpy().mean() > 0.5
        assert_same_online_rows(online_frame(Settings(home=deployment.home), customers, "redis"), expected)
    finally:
        apply_definitions(deployment, "sqlite")  # back to the DuckDB offline store
