"""nextbest.dbt and the engine setting: the dbt target and Spark's environment follow NEXTBEST_ENGINE, and
Spark's mart directories are published as the one-file-per-mart contract."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from nextbest.dbt import SPARK_MARTS_SUBDIR, DbtError, dbt_env, publish_spark_marts
from nextbest.settings import Settings


def test_the_engine_selects_the_dbt_target_and_spark_gets_its_master_and_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYSPARK_PYTHON", raising=False)
    duckdb_env = dbt_env(Settings(home=tmp_path))
    assert duckdb_env["NEXTBEST_DBT_TARGET"] == "local"

    monkeypatch.setenv("NEXTBEST_ENGINE", "SPARK")
    monkeypatch.setenv("NEXTBEST_SPARK_MASTER", "spark://10.0.0.5:7077")
    spark_env = dbt_env(Settings(home=tmp_path))
    assert spark_env["NEXTBEST_DBT_TARGET"] == "spark"
    assert spark_env["NEXTBEST_SPARK_MASTER"] == "spark://10.0.0.5:7077"
    assert spark_env["NEXTBEST_SPARK_DRIVER_MEMORY"] == "2g"
    assert spark_env["PYSPARK_PYTHON"] == sys.executable


def _spark_mart(marts_dir: Path, model: str, parts: int) -> None:
    directory = marts_dir / SPARK_MARTS_SUBDIR / model
    directory.mkdir(parents=True)
    (directory / "_SUCCESS").write_text("")
    for i in range(parts):
        (directory / f"part-0000{i}-x.snappy.parquet").write_bytes(f"{model} {i}".encode())


def test_each_spark_mart_directory_becomes_its_parquet_file(tmp_path: Path) -> None:
    _spark_mart(tmp_path, "feat_customer_monthly", 1)
    _spark_mart(tmp_path, "dim_products", 1)
    (tmp_path / "dim_products.parquet").write_bytes(b"from an earlier run")

    published = publish_spark_marts(tmp_path)

    assert published == [tmp_path / "dim_products.parquet", tmp_path / "feat_customer_monthly.parquet"]
    assert (tmp_path / "dim_products.parquet").read_bytes() == b"dim_products 0"
    assert (tmp_path / "feat_customer_monthly.parquet").read_bytes() == b"feat_customer_monthly 0"


def test_a_spark_mart_of_several_files_is_refused_in_one_line(tmp_path: Path) -> None:
    _spark_mart(tmp_path, "fct_candidates", 2)
    refused = "fct_candidates: expected one parquet part file written by Spark, found 2"
    with pytest.raises(DbtError, match=refused):
        publish_spark_marts(tmp_path)
    assert not (tmp_path / "fct_candidates.parquet").exists()
