"""nextbest.pipeline build bookkeeping: the live pointer, pruning, one build at a time (no dbt here)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from nextbest.marts import BuildRecord
from nextbest.pipeline import (
    BuildInProgressError,
    build_lock,
    describe_build,
    describe_candidate_retrieval,
    new_build_id,
    prune_builds,
    switch_live_build,
)
from nextbest.settings import Settings

HOLD = """
import sys
from pathlib import Path
from nextbest.pipeline import build_lock
from nextbest.settings import Settings
with build_lock(Settings(home=Path(sys.argv[1]))):
    print("held", flush=True)
    sys.stdin.read()
"""


def make_build(settings: Settings, build_id: str, finished: bool) -> None:
    path = settings.builds_dir / build_id
    path.mkdir(parents=True)
    BuildRecord(
        build_id=build_id,
        dbt_vars={"horizon_months": 1},
        started_at="2024-07-01T00:00:00Z",
        finished_at="2024-07-01T00:01:00Z" if finished else None,
    ).write(path)


def test_build_ids_sort_by_start_time() -> None:
    early = new_build_id(datetime(2024, 7, 1, 9, 59, 59, 999999, tzinfo=UTC))
    late = new_build_id(datetime(2024, 7, 1, 10, 0, 0, tzinfo=UTC))
    assert early.startswith("20240701T095959999999Z-") and early < late


def test_switching_replaces_the_pointer_and_remembers_the_previous_build(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    settings.warehouse_dir.mkdir()
    switch_live_build(settings, "A")
    switch_live_build(settings, "B")
    pointer = json.loads(settings.live_pointer_path.read_text())
    assert pointer["build_id"] == "B" and pointer["previous"] == "A"
    assert settings.live_build_id == "B"
    assert [p.name for p in settings.warehouse_dir.iterdir()] == ["current.json"]  # no temporary file left


def test_pruning_keeps_the_live_and_previous_builds_and_the_flat_layout_while_kept(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    for build_id in ("A", "B", "C", "D"):
        (settings.builds_dir / build_id / "marts").mkdir(parents=True)
    (settings.warehouse_dir / "marts").mkdir()
    (settings.warehouse_dir / "nextbest.duckdb").write_text("")
    assert prune_builds(settings, keep={"D", None}) == ["A", "B", "C"]
    assert (settings.warehouse_dir / "marts").is_dir()
    assert prune_builds(settings, keep={"D", "C"}) == []
    assert not (settings.warehouse_dir / "marts").exists()
    assert not (settings.warehouse_dir / "nextbest.duckdb").exists()


def test_the_description_names_the_live_build_and_unfinished_later_ones(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    make_build(settings, "20240701T000000000000Z-aaaaaa", finished=True)
    make_build(settings, "20240702T000000000000Z-bbbbbb", finished=False)
    switch_live_build(settings, "20240701T000000000000Z-aaaaaa")
    said = describe_build(settings)
    assert said.startswith("build 20240701T000000000000Z-aaaaaa (live, finished 2024-07-01T00:01:00Z)")
    assert said.endswith("not live: 20240702T000000000000Z-bbbbbb")
    assert "flat layout" in describe_build(Settings(home=tmp_path / "old"))


def test_a_second_build_is_refused_naming_the_running_ones_pid(tmp_path: Path) -> None:
    env_path = str(Path(__file__).resolve().parents[2])
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        second = build_lock(Settings(home=tmp_path))
        with pytest.raises(BuildInProgressError, match=rf"running \(PID {holder.pid}, lock "), second:
            pass
    finally:
        holder.communicate("", timeout=20)
    with build_lock(Settings(home=tmp_path)):  # released when the holder ended
        pass


def test_candidate_grain_tests_sample_customers_by_customer_product_pairs() -> None:
    from nextbest.pipeline import candidate_test_sample_modulo as modulo

    assert modulo(20_000, 24) == 1  # a bank up to 20k customers: every customer
    assert modulo(1_000_000, 24) == 50
    assert modulo(2_469, 303) == 1  # The Complete Journey's categories: every household
    assert modulo(2_469, 2_378) == 12  # its product types: ~200 households
    assert modulo(0, 0) == 1


def test_unpacks_to_checks_an_eighth_of_the_sampled_customers_only_when_they_are_sampled() -> None:
    from nextbest.pipeline import test_sample_vars

    assert test_sample_vars(20_000, 24) == {"test_sample_modulo": 1, "unpacks_to_sample_divisor": 1}
    assert test_sample_vars(1_000_000, 24) == {"test_sample_modulo": 50, "unpacks_to_sample_divisor": 8}


def test_the_retrieval_line_sums_the_recall_mart_over_the_labelled_groups(tmp_path: Path) -> None:
    path = tmp_path / "fct_candidate_retrieval_recall.parquet"
    groups = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "count_candidates_eligible": [10_000, 12_000],
            "count_candidates_retrieved": [2_000, 2_000],
            "count_adoptions": [30, 10],
            "count_adoptions_retrieved": [24, 6],
        }
    )
    groups.to_parquet(path)
    line = describe_candidate_retrieval(duckdb.connect(), path)
    assert line.startswith("candidate retrieval: on, kept 4,000 of 22,000 eligible candidates")
    assert "30 of their 40 adoptions (recall 75.0%" in line
    groups.iloc[:0].to_parquet(path)  # the stage off: no row
    assert describe_candidate_retrieval(duckdb.connect(), path).startswith("candidate retrieval: off")
