"""The dbt project on Spark equals the DuckDB build: every portable mart, row for row.

One raw dataset (the hand-made dbt fixture, with its edge cases: a transaction at 23:59:59 on a month-end,
a product held in and out inside one month, a re-held product, age bounds, null segments; plus a small
generated bank for volume) is built by dbt-duckdb and by dbt-spark (`local[2]`, in-process session). The
marts Spark publishes must be exactly the models not tagged ``duckdb_only`` (nor built on one), each with
the same parquet schema as DuckDB's and the same rows: same keys and non-float values, floats within a
relative 1e-9 (the engines sum in different orders). Feast's historical retrieval of the customer and
product views (defined from each build's manifest) through its Spark offline store, on the Spark marts,
equals its DuckDB offline store's on the DuckDB marts, for the same entity rows.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nextbest.dbt import SPARK_MARTS_SUBDIR, run_dbt
from nextbest.features.definitions import build_entities, build_source, build_view
from nextbest.features.manifest import feature_specs_from_manifest
from nextbest.marts import FCT_RANKING_LABELS, manifest_path, mart_path
from nextbest.settings import Settings
from tests.data.raw_builders import write_scale_dataset
from tests.integration import dbt_fixtures

pytestmark = [pytest.mark.integration, pytest.mark.spark]

FLOAT_RTOL = 1e-9
"""Relative tolerance of float columns (sums in another order differ in the last bits)."""

FEAST_VIEW_MODELS = ("feat_customer_monthly", "feat_product_monthly")
"""The feature marts of the Feast views compared (the pair view reads a mart not portable yet)."""

RETRIEVAL_KEYS = ["customer_id", "product_id", "event_timestamp"]


def _require_spark() -> None:
    """Skip without pyspark / dbt-spark or Java locally; fail in CI, where .ci/run installs them."""
    missing = []
    for module in ("pyspark", "dbt.adapters.spark"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if shutil.which("java") is None:
        missing.append("java")
    if missing:
        message = f"the spark engine needs {', '.join(missing)} (pip install -e '.[spark]'; Java 17)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def _write_raw(raw_dir: Path) -> None:
    """The dbt fixture's rows plus a small generated bank (ids c*/p* beside C*/P*), one dataset."""
    dbt_fixtures.write_raw(raw_dir)
    generated = write_scale_dataset(raw_dir.parent / "generated", n_customers=120, n_transactions=1500,
                                    n_products=6)
    for table in ("customers", "products", "holdings", "transactions"):
        fixture = pq.read_table(raw_dir / f"{table}.parquet")
        extra = pq.read_table(generated / f"{table}.parquet").select(fixture.schema.names)
        pq.write_table(pa.concat_tables([fixture, extra.cast(fixture.schema)]), raw_dir / f"{table}.parquet")


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Settings]:
    """The same raw dataset built on DuckDB and on Spark (portable models only on both)."""
    _require_spark()
    root = tmp_path_factory.mktemp("spark_equivalence")
    raw_dir = root / "raw"
    _write_raw(raw_dir)
    dbt_vars = {"observed_until": dbt_fixtures.OBSERVED_UNTIL.isoformat(), "burn_in_months": 0}
    built = []
    for engine in ("duckdb", "spark"):
        home = root / engine
        shutil.copytree(raw_dir, home / "raw")
        settings = Settings(home=home, engine=engine, dbt_threads=2, dbt_memory_limit="1GB",
                            spark_driver_memory="1g")
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("NEXTBEST_SPARK_SHUFFLE_PARTITIONS", "1")  # tiny data: one task per stage
            run_dbt(["run", "--exclude", "tag:duckdb_only+"], settings, dbt_vars, quiet=True)
        built.append(settings)
    return built[0], built[1]


def portable_marts(settings: Settings) -> set[str]:
    """The mart models of the manifest that are neither tagged duckdb_only nor built on one."""
    nodes = json.loads(manifest_path(settings).read_text())["nodes"]
    models = {key: node for key, node in nodes.items() if node["resource_type"] == "model"}
    excluded = {key for key, node in models.items() if "duckdb_only" in node["tags"]}
    changed = True
    while changed:
        downstream = {key for key, node in models.items()
                      if key not in excluded and set(node["depends_on"]["nodes"]) & excluded}
        excluded |= downstream
        changed = bool(downstream)
    return {node["name"] for key, node in models.items()
            if key not in excluded and node["config"]["materialized"] == "parquet_file"}


def sorted_frame(path: Path) -> pd.DataFrame:
    """A mart's rows in a canonical order (by every column)."""
    frame = pd.read_parquet(path)
    ordered = frame.sort_values(list(frame.columns), na_position="first", kind="mergesort")
    return ordered.reset_index(drop=True)


def test_spark_publishes_one_parquet_file_per_portable_mart(builds: tuple[Settings, Settings]) -> None:
    duckdb_build, spark_build = builds
    expected = portable_marts(spark_build)
    assert {"feat_customer_monthly", "feat_product_monthly", "fct_ranking_labels"} <= expected
    published = {path.stem for path in spark_build.marts_dir.glob("*.parquet")}
    assert published == expected
    assert (spark_build.marts_dir / SPARK_MARTS_SUBDIR).is_dir()
    for name in expected:
        assert mart_path(duckdb_build, name).is_file()


def test_every_portable_mart_built_on_spark_equals_the_duckdb_build(
    builds: tuple[Settings, Settings],
) -> None:
    duckdb_build, spark_build = builds
    for name in sorted(portable_marts(spark_build)):
        duckdb_schema = pq.read_schema(mart_path(duckdb_build, name))
        spark_schema = pq.read_schema(mart_path(spark_build, name))
        assert spark_schema.names == duckdb_schema.names, name
        assert spark_schema.types == duckdb_schema.types, name  # timestamps in microseconds, ints alike
        expected = sorted_frame(mart_path(duckdb_build, name))
        actual = sorted_frame(mart_path(spark_build, name))
        assert len(expected) > 0, f"{name}: the DuckDB build is empty, the comparison would prove nothing"
        pd.testing.assert_frame_equal(actual, expected, check_exact=False, rtol=FLOAT_RTOL, obj=name)


def historical_features(home: str, engine: str, entity_path: str, out_path: str) -> None:
    """Feast's historical retrieval of FEAST_VIEW_MODELS' views over the build in ``home``, through the
    DuckDB offline store (the project's FileSources) or the Spark one (SparkSources on the same files).
    Run in a child process on Spark, so that no JVM stays in the test process. Writes the frame."""
    from feast import FeatureStore, RepoConfig
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

    settings = Settings(home=Path(home), engine=engine)
    specs = [spec for spec in feature_specs_from_manifest(manifest_path(settings), settings.marts_dir)
             if spec.model in FEAST_VIEW_MODELS]
    entities = build_entities()
    views = [
        build_view(spec, entities, build_source(spec) if engine == "duckdb" else SparkSource(
            name=spec.source_name, path=str(spec.parquet_path), file_format="parquet",
            timestamp_field="event_timestamp",
        ))
        for spec in specs
    ]
    offline = {"type": "duckdb"} if engine == "duckdb" else {"type": "spark", "spark_conf": {
        "spark.master": "local[2]", "spark.driver.memory": "1g", "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false", "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": "1", "spark.sql.catalogImplementation": "in-memory",
    }}
    root = Path(home) / "feast_equivalence"
    root.mkdir(parents=True, exist_ok=True)
    store = FeatureStore(config=RepoConfig(
        project="equivalence", provider="local", registry=str(root / "registry.db"),
        offline_store=offline, online_store={"type": "sqlite", "path": str(root / "online.db")},
        entity_key_serialization_version=3, repo_path=str(root),
    ))
    store.apply([*entities.values(), *views])
    features = [f"{view.name}:{field.name}" for view in views for field in view.features]
    frame = store.get_historical_features(entity_df=pd.read_parquet(entity_path), features=features).to_df()
    frame.to_parquet(out_path, index=False)


def retrieved(path: Path) -> pd.DataFrame:
    """A retrieval's rows by key, event_timestamp as naive UTC microseconds (the stores differ there)."""
    frame = pd.read_parquet(path)
    stamps = pd.to_datetime(frame["event_timestamp"])
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    frame["event_timestamp"] = stamps.astype("datetime64[us]")
    return frame.sort_values(RETRIEVAL_KEYS).reset_index(drop=True)


def test_feast_retrieval_through_the_spark_offline_store_equals_the_duckdb_store(
    builds: tuple[Settings, Settings], tmp_path: Path
) -> None:
    duckdb_build, spark_build = builds
    entity_path = tmp_path / "entities.parquet"
    entities = pd.read_parquet(mart_path(duckdb_build, FCT_RANKING_LABELS))[RETRIEVAL_KEYS]
    entities.to_parquet(entity_path, index=False)
    historical_features(str(duckdb_build.home), "duckdb", str(entity_path), str(tmp_path / "duckdb.parquet"))
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as child:
        child.submit(historical_features, str(spark_build.home), "spark", str(entity_path),
                     str(tmp_path / "spark.parquet")).result()

    expected, actual = retrieved(tmp_path / "duckdb.parquet"), retrieved(tmp_path / "spark.parquet")
    assert len(expected) == len(entities) > 0
    assert expected.drop(columns=RETRIEVAL_KEYS).notna().any().all()  # every feature was found somewhere
    pd.testing.assert_frame_equal(actual[list(expected.columns)], expected, check_dtype=False,
                                  check_exact=False, rtol=FLOAT_RTOL)
