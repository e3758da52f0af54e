"""The dbt project on Spark equals the DuckDB build: every mart, row for row.

One raw dataset (the hand-made dbt fixture, with its edge cases: a transaction at 23:59:59 on a month-end,
a product held in and out inside one month, a re-held product, age bounds, null segments; plus a small
generated bank for volume, and a customer owning every product open to them, so never a candidate) is
built by dbt-duckdb and by dbt-spark (`local[2]`, in-process session). Spark must publish every mart of
the project, each with the same parquet schema as DuckDB's (names and types, list element types
included) and the same rows: same keys and non-float values, floats within a relative 1e-9 (the engines
sum in different orders); a packed mart's lists (``packed_parquet``) element by element, in order.
Feast's historical retrieval of the customer, product and packed customer x product views (defined from
each build's manifest) through its Spark offline store, on the Spark marts, equals its DuckDB offline
store's on the DuckDB marts, for the same entity rows.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from nextbest.dbt import SPARK_MARTS_SUBDIR, run_dbt
from nextbest.features.definitions import build_entities, build_source, build_view
from nextbest.features.manifest import feature_specs_from_manifest
from nextbest.marts import FCT_RANKING_LABELS, manifest_path, mart_path
from nextbest.settings import Engine, Settings
from tests.data.raw_builders import write_scale_dataset
from tests.integration import dbt_fixtures

pytestmark = [pytest.mark.integration, pytest.mark.spark]

FLOAT_RTOL = 1e-9
"""Relative tolerance of float columns (sums in another order differ in the last bits)."""

FEAST_VIEW_MODELS = ("feat_customer_monthly", "feat_product_monthly", "feat_customer_product_monthly_packed")
"""The feature marts of the Feast views compared (the packed one: the customer x product view)."""

PACKED_MART = "feat_customer_product_monthly_packed"

MART_MATERIALIZATIONS = ("parquet_file", "packed_parquet")
"""The materializations that publish a mart (one parquet file in the marts directory)."""

OWNS_EVERYTHING = "E1"
"""A customer of unknown age holding every product without age bounds from before the first snapshot: in
the population at every snapshot, without a candidate (a packed row of empty lists)."""

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
    customers = pq.read_table(raw_dir / "customers.parquet")
    products = pq.read_table(raw_dir / "products.parquet").to_pylist()
    open_to_all = [p["product_id"] for p in products if p["min_age"] is None and p["max_age"] is None]
    since = date(2018, 1, 1)
    owner = {"customer_id": OWNS_EVERYTHING, "joined_on": since, "birth_year": None, "income": None,
             "segment": "mass", "region": None}
    pq.write_table(pa.concat_tables([customers, pa.Table.from_pylist([owner], schema=customers.schema)]),
                   raw_dir / "customers.parquet")
    holdings = pq.read_table(raw_dir / "holdings.parquet")
    held = [{"customer_id": OWNS_EVERYTHING, "product_id": p, "started_on": since, "ended_on": None}
            for p in open_to_all]
    pq.write_table(pa.concat_tables([holdings, pa.Table.from_pylist(held, schema=holdings.schema)]),
                   raw_dir / "holdings.parquet")


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Settings]:
    """The same raw dataset built (dbt run: every model) on DuckDB and on Spark. Its 10 products are over
    a candidate retrieval threshold of 8, so both engines also run the retrieval stage (each
    customer-month keeps its 3 best-ranked eligible candidates) and count its recall."""
    _require_spark()
    root = tmp_path_factory.mktemp("spark_equivalence")
    raw_dir = root / "raw"
    _write_raw(raw_dir)
    dbt_vars = {"observed_until": dbt_fixtures.OBSERVED_UNTIL.isoformat(), "burn_in_months": 0,
                "candidate_retrieval_above_products": 8, "candidate_retrieval_top_n": 3}
    built = []
    for engine in ("duckdb", "spark"):
        home = root / engine
        shutil.copytree(raw_dir, home / "raw")
        settings = Settings(home=home, engine=engine, dbt_threads=2, dbt_memory_limit="1GB",
                            spark_driver_memory="1g")
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("NEXTBEST_SPARK_SHUFFLE_PARTITIONS", "1")  # tiny data: one task per stage
            run_dbt(["run"], settings, dbt_vars, quiet=True)
        built.append(settings)
    return built[0], built[1]


def mart_models(settings: Settings) -> set[str]:
    """The models of the manifest materialized as a mart (one parquet file)."""
    nodes = json.loads(manifest_path(settings).read_text())["nodes"].values()
    return {node["name"] for node in nodes
            if node["resource_type"] == "model" and node["config"]["materialized"] in MART_MATERIALIZATIONS}


def sorted_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in a canonical order (by every column, the first ones first)."""
    ordered = frame.sort_values(list(frame.columns), na_position="first", kind="mergesort")
    return ordered.reset_index(drop=True)


def list_columns(table: pa.Table) -> list[str]:
    return [field.name for field in table.schema if pa.types.is_list(field.type)]


def elements(table: pa.Table, lists: list[str], keys: list[str]) -> pd.DataFrame:
    """One row per list element: the row's ``keys``, the element's position, and the element of each list
    in ``lists`` (which must be equally long in every row)."""
    arrays = [pa.concat_arrays(table.column(name).chunks) if table.column(name).num_chunks
              else pa.array([], table.schema.field(name).type) for name in lists]
    lengths = arrays[0].value_lengths().fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    for name, array in zip(lists, arrays, strict=True):
        got = array.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
        assert (got == lengths).all(), f"{name}: a list not as long as {lists[0]} in the same row"
    rows = np.repeat(np.arange(table.num_rows), lengths)
    frame = table.select(keys).take(pa.array(rows, pa.int64())).to_pandas()
    frame["position"] = np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    for name, array in zip(lists, arrays, strict=True):
        frame[name] = array.flatten().to_numpy(zero_copy_only=False)
    return frame


def comparable(table: pa.Table, keys: list[str] | None = None) -> list[pd.DataFrame]:
    """A mart as canonically sorted frames: its rows; for a mart with list columns, its rows with every
    list replaced by its length, and its list elements (``elements``, by ``keys``: default, every column
    but the lists)."""
    lists = list_columns(table)
    if not lists:
        return [sorted_frame(table.to_pandas())]
    scalars = [name for name in table.column_names if name not in lists]
    rows = table.select(scalars).to_pandas()
    for name in lists:
        rows[f"len({name})"] = pc.list_value_length(table.column(name)).to_pandas()  # NaN: a null list
    return [sorted_frame(rows), sorted_frame(elements(table, lists, keys or scalars))]


def test_spark_publishes_one_parquet_file_per_mart(builds: tuple[Settings, Settings]) -> None:
    duckdb_build, spark_build = builds
    expected = mart_models(spark_build)
    assert {"feat_customer_monthly", "feat_product_monthly", "fct_ranking_labels", PACKED_MART} <= expected
    published = {path.stem for path in spark_build.marts_dir.glob("*.parquet")}
    assert published == expected
    assert (spark_build.marts_dir / SPARK_MARTS_SUBDIR).is_dir()
    for name in expected:
        assert mart_path(duckdb_build, name).is_file()


def test_every_mart_built_on_spark_equals_the_duckdb_build(builds: tuple[Settings, Settings]) -> None:
    duckdb_build, spark_build = builds
    for name in sorted(mart_models(spark_build)):
        duckdb_schema = pq.read_schema(mart_path(duckdb_build, name))
        spark_schema = pq.read_schema(mart_path(spark_build, name))
        assert spark_schema.names == duckdb_schema.names, name
        # timestamps in microseconds, ints alike; a list's element type and nullability too (not its name)
        assert spark_schema.types == duckdb_schema.types, name
        expected = comparable(pq.read_table(mart_path(duckdb_build, name)))
        actual = comparable(pq.read_table(mart_path(spark_build, name)))
        for expected_frame, actual_frame in zip(expected, actual, strict=True):
            assert len(expected_frame) > 0, f"{name}: empty in the DuckDB build, so proves nothing"
            pd.testing.assert_frame_equal(actual_frame, expected_frame, check_exact=False, rtol=FLOAT_RTOL,
                                          obj=name)


def test_both_engines_ran_the_candidate_retrieval_stage(builds: tuple[Settings, Settings]) -> None:
    """The equivalence above covers the retrieval stage: on, and keeping fewer candidates than eligible."""
    for build in builds:
        recall = pd.read_parquet(mart_path(build, "fct_candidate_retrieval_recall"))
        assert (recall["count_candidates_retrieved"] < recall["count_candidates_eligible"]).any()
        assert (recall["count_adoptions_retrieved"] < recall["count_adoptions"]).any()
        candidates = pd.read_parquet(mart_path(build, "fct_candidates"))
        assert candidates.groupby(["customer_id", "event_timestamp"]).size().max() == 3


def test_a_customer_without_candidates_gets_a_packed_row_of_empty_lists_on_both_engines(
    builds: tuple[Settings, Settings],
) -> None:
    for build in builds:
        packed = pq.read_table(mart_path(build, PACKED_MART))
        owner = packed.filter(pc.equal(packed.column("customer_id"), OWNS_EVERYTHING))
        assert owner.num_rows > 0, build.engine
        for name in list_columns(owner):
            assert all(len(values) == 0 for values in owner.column(name).to_pylist()), (build.engine, name)


def historical_features(home: str, engine: Engine, entity_path: str, out_path: str) -> None:
    """Feast's historical retrieval of FEAST_VIEW_MODELS' views over the build in ``home``, through the
    DuckDB offline store (the project's FileSources) or the Spark one (SparkSources on the same files).
    Run in a child process on Spark, so that no JVM stays in the test process. Writes the frame."""
    from feast import FeatureStore, RepoConfig

    settings = Settings(home=Path(home), engine=engine)
    specs = [spec for spec in feature_specs_from_manifest(manifest_path(settings), settings.marts_dir)
             if spec.model in FEAST_VIEW_MODELS]
    entities = build_entities()
    views = [build_view(spec, entities, build_source(spec, engine)) for spec in specs]
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
    columns = RETRIEVAL_KEYS + [name for name in expected.columns if name not in RETRIEVAL_KEYS]
    expected_table = pa.Table.from_pandas(expected[columns], preserve_index=False)
    assert list_columns(expected_table)  # the packed view's lists
    actual_table = pa.Table.from_pandas(actual[columns], preserve_index=False)
    expected_frames = comparable(expected_table, RETRIEVAL_KEYS)
    actual_frames = comparable(actual_table, RETRIEVAL_KEYS)
    for expected_frame, actual_frame in zip(expected_frames, actual_frames, strict=True):
        pd.testing.assert_frame_equal(actual_frame, expected_frame, check_dtype=False, check_exact=False,
                                      rtol=FLOAT_RTOL)
