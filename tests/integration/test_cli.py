"""The `nextbest` command as a user runs it: a real subprocess, a real dataset, real dbt.

The dataset is the user's own: a synthetic bank copied without its oracle and without a name in
dataset.json, ingested with `nextbest ingest dir` (its name is then its directory's, ``acme_bank``,
which has no shipped training config), built, and trained with no `--config`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from nextbest.settings import Settings

pytestmark = pytest.mark.integration


def nextbest(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NEXTBEST_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "nextbest.cli", *args], env=env, text=True, capture_output=True, check=False
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with the user's own dataset (no oracle, no name) ingested by `nextbest ingest dir`."""
    base = tmp_path_factory.mktemp("cli")
    home = base / "nextbest"
    ingest = nextbest(home, "ingest", "synthetic", "--customers", "800", "--months", "6", "--seed", "3")
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    own = shutil.copytree(home / "raw", base / "acme_bank")
    (own / "oracle.parquet").unlink()
    meta = json.loads((own / "dataset.json").read_text())
    (own / "dataset.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "name"}))
    ingest = nextbest(home, "ingest", "dir", str(own))
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    assert not (home / "raw" / "oracle.parquet").exists()
    assert json.loads((home / "raw" / "dataset.json").read_text())["name"] == "acme_bank"
    return home


@pytest.fixture(scope="module")
def build(home: Path) -> subprocess.CompletedProcess[str]:
    """`nextbest build` (dbt build, Feast apply + materialize) on the home's dataset."""
    return nextbest(home, "build")


def test_build_prints_the_summary(build: subprocess.CompletedProcess[str]) -> None:
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert "fct_ranking_labels" in build.stdout
    assert "snapshots: 6 (5 labelled" in build.stdout
    assert "positive rate" in build.stdout


def test_train_without_config_uses_the_default_config_for_an_unknown_dataset_without_oracle(
    home: Path, build: subprocess.CompletedProcess[str]
) -> None:
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    result = nextbest(home, "train")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = " ".join(result.stdout.split())
    assert "dataset 'acme_bank' -> default.yaml" in out
    assert "training/configs/default.yaml" in out
    reports = list((home / "reports").iterdir())
    assert len(reports) == 1 and len(list((home / "models").iterdir())) == 1
    report = json.loads((reports[0] / "report.json").read_text())
    assert set(report["models"]) == {"ranker", "per_product", "pooled", "popularity"}  # no oracle
    assert report["context"]["dataset"] == "default" and report["failures"] == []
    refit = report["context"]["refit"]  # default.yaml refits on training + validation months
    assert refit["n_trees"] == report["context"]["best_iteration"] >= 1
    assert report["context"]["train"]["groups"] > refit["selected_train_groups"]
    bundle = json.loads((next((home / "models").iterdir()) / "bundle.json").read_text())
    assert bundle["build_vars"] == {"horizon_months": 1, "activity_lookback_months": 3}
    # default.yaml's ranker has a pointwise part: its trees are in the one booster the bundle holds
    assert bundle["pointwise_trees"] == report["context"]["pointwise_trees"] >= 1
    # and a seasonal offset (weight 1, or none while no index is known in the training months): the
    # season's index is read beside the features, never split on
    assert bundle["seasonal_offset"] == report["context"]["seasonal_offset"] >= 0
    assert bundle["seasonal_weight"] in (0.0, 1.0)
    assert (bundle["seasonal_offset"] > 0) == (bundle["seasonal_weight"] > 0)
    assert bundle["bundle_format"] == (3 if bundle["seasonal_offset"] else 2)
    assert "seasonal_index_label_month" in bundle["unused_features"]
    assert "seasonal_index_label_month" not in bundle["feature_cols"]


def test_build_vars_given_once_are_kept_by_the_next_build(home: Path, tmp_path: Path) -> None:
    own = tmp_path / "nextbest"
    shutil.copytree(home / "raw", own / "raw")
    first = nextbest(own, "build", "--horizon-months", "2", "--no-feast")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "snapshots: 6 (4 labelled" in first.stdout  # a 2-month horizon labels one snapshot less
    second = nextbest(own, "build", "--no-feast")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "snapshots: 6 (4 labelled" in second.stdout
    kept = json.loads(Settings(home=own).build_vars_path.read_text())  # the live build's
    assert kept == {"horizon_months": 2, "activity_lookback_months": 3}
    # built without Feast: training says what to run, without a traceback
    untrained = nextbest(own, "train")
    assert untrained.returncode == 2
    said = " ".join(untrained.stdout.split())
    assert "ranker_v1 does not exist" in said and "run `nextbest build` without --no-feast" in said
    assert "Traceback" not in untrained.stdout + untrained.stderr


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
