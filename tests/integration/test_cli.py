"""The `nextbest` command as a user runs it: a real subprocess, a real dataset, real dbt."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.integration


def nextbest(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NEXTBEST_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "nextbest.cli", *args], env=env, text=True, capture_output=True, check=False
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("cli") / "nextbest"
    ingest = nextbest(home, "ingest", "synthetic", "--customers", "800", "--months", "6", "--seed", "3")
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    return home


def test_build_prints_the_summary(home: Path) -> None:
    result = nextbest(home, "build", "--no-feast")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "fct_ranking_labels" in result.stdout
    assert "snapshots: 6 (5 labelled" in result.stdout
    assert "positive rate" in result.stdout


def test_a_bad_dataset_is_rejected_naming_file_column_rule_and_keeps_the_current_one(
    home: Path, tmp_path: Path
) -> None:
    raw = home / "raw"
    before = {p.name: p.read_bytes() for p in raw.iterdir() if p.is_file()}
    bad = tmp_path / "bad"
    shutil.copytree(raw, bad)
    customers = pd.read_parquet(bad / "customers.parquet")
    customers.loc[5, "customer_id"] = customers.loc[4, "customer_id"]
    customers.to_parquet(bad / "customers.parquet")

    result = nextbest(home, "ingest", "dir", str(bad))

    assert result.returncode == 1
    message = " ".join(result.stdout.split())
    assert "customers.parquet" in message and "customer_id" in message and "unique" in message
    assert "unchanged" in message
    assert {p.name: p.read_bytes() for p in raw.iterdir() if p.is_file()} == before


def test_build_without_a_dataset_says_what_to_do(tmp_path: Path) -> None:
    result = nextbest(tmp_path / "empty", "build")
    assert result.returncode != 0
    assert "nextbest ingest" in result.stdout + result.stderr
