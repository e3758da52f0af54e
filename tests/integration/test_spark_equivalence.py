"""The dbt project on Spark equals the DuckDB build: every portable mart, row for row.

One raw dataset (the hand-made dbt fixture, with its edge cases: a transaction at 23:59:59 on a month-end,
a product held in and out inside one month, a re-held product, age bounds, null segments; plus a small
generated bank for volume) is built by dbt-duckdb and by dbt-spark (`local[2]`, in-process session). The
marts Spark publishes must be exactly the models not tagged ``duckdb_only`` (nor built on one), each with
the same parquet schema as DuckDB's and the same rows: same keys and non-float values, floats within a
relative 1e-9 (the engines sum in different orders).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nextbest.dbt import SPARK_MARTS_SUBDIR, run_dbt
from nextbest.marts import manifest_path, mart_path
from nextbest.settings import Settings
from tests.data.raw_builders import write_scale_dataset
from tests.integration import dbt_fixtures

pytestmark = [pytest.mark.integration, pytest.mark.spark]

FLOAT_RTOL = 1e-9
"""Relative tolerance of float columns (sums in another order differ in the last bits)."""


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
