"""All-or-nothing builds on real dbt, DuckDB, Feast (sqlite) and LightGBM, one home through a story:

1. dataset A (a small synthetic bank) is built, applied, materialized: build A is live;
2. dataset B is ingested and built with a project whose ``fct_ranking_labels`` fails at run time (the
   ``feat_*`` marts are written before it): the build fails, build A stays live in every mart, training
   runs on A and the bundle records A;
3. a ``nextbest build`` subprocess on B is SIGKILLed (its process group; dbt runs in a group of its own)
   while dbt writes its marts: no dbt process survives, A is still live for training and serving, and
   the next build (B, horizon 2) succeeds without a lock error and prunes the failed builds;
4. B is live: serving refuses the bundle of A in one line unless told to; training and
   materialization refuse Feast's registry of A while B is live.

Plus: a DuckDB file held by another process gives one line naming its PID, and a warehouse in the
flat layout of an older nextbest (in a directory whose name holds a quote) is still read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from nextbest.dbt import WarehouseLockedError, run_dbt
from nextbest.features.store import (
    FeatureBuildMismatchError,
    apply_definitions,
    check_applied_build,
    get_store,
    materialize,
    materialized_build,
)
from nextbest.ingest.store import ingest_directory
from nextbest.ingest.synthetic import generate_synthetic
from nextbest.marts import FCT_CANDIDATES, FCT_RANKING_LABELS, MART_MODELS, build_record, mart_path
from nextbest.pipeline import BuildFailedError, build_warehouse, describe_build, summarize_warehouse
from nextbest.serving.scorer import Scorer
from nextbest.settings import DBT_PROJECT_DIR, BuildVars, Settings
from nextbest.training.artifacts import BundleMismatchError, load_bundle
from nextbest.training.config import TrainingConfig
from nextbest.training.datasets import entity_frame, labelled_snapshots
from nextbest.training.train import train

pytestmark = pytest.mark.integration

LABELS_SQL = Path("models/marts/labels/fct_ranking_labels.sql")
HOLD_LOCK = (
    "import duckdb, time; c = duckdb.connect({database!r}); print('ready', flush=True); time.sleep(60)"
)
"""A process holding a DuckDB file open read-write (another dbt, a notebook, the DuckDB CLI)."""


def small_config() -> TrainingConfig:
    """A fast training config: single-threaded, few trees, no ablation, no calibration features."""
    return TrainingConfig.model_validate(
        {
            "name": "atomic-builds",
            "split": {"max_train_snapshots": 3},
            "ranker": {"n_estimators": 40, "n_jobs": 1, "early_stopping_rounds": 10, "min_child_samples": 20},
            "baseline_params": {"n_estimators": 20, "n_jobs": 1},
            "calibration": {"feature_cols": [], "min_positives": 10},
            "ablation": {"enabled": False},
        }
    )


def marts_digest(settings: Settings) -> dict[str, str]:
    """sha256 of every mart file of the build ``settings`` read."""
    return {m: hashlib.sha256(mart_path(settings, m).read_bytes()).hexdigest() for m in MART_MODELS}


def ingest_synthetic(home: Path, settings: Settings, customers: int, seed: int) -> None:
    source = home / f"source-{seed}"
    generate_synthetic(source, customers=customers, months=6, seed=seed, with_oracle=False)
    ingest_directory(source, settings.raw_dir)


def failing_project(base: Path) -> Path:
    """A copy of the dbt project whose ``fct_ranking_labels`` fails at run time (an unknown column)."""
    project = base / "dbt_project_failing"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    sql = (project / LABELS_SQL).read_text()
    assert sql.rstrip().endswith("select * from final"), "fct_ranking_labels changed: update this test"
    broken = sql.rstrip().removesuffix("select * from final") + "select *, no_such_column from final\n"
    (project / LABELS_SQL).write_text(broken)
    return project


def nextbest_cli(home: Path, *args: str) -> subprocess.Popen[str]:
    """``nextbest <args>`` as a subprocess in its own process group (as a shell would start it)."""
    env = {**os.environ, "NEXTBEST_HOME": str(home), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.Popen(
        [sys.executable, "-m", "nextbest.cli", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def children(pid: int) -> list[int]:
    """The PIDs whose parent is ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    """True when ``pid`` runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def training_label_rows(settings: Settings) -> int:
    """The labelled rows training reads now, after checking Feast serves the same build."""
    pinned = settings.pinned()
    check_applied_build(pinned, get_store(pinned, "sqlite"))
    return len(entity_frame(pinned, labelled_snapshots(pinned), with_oracle=False))


@dataclass
class Story:
    settings: Settings
    build_a: str
    digest_a: dict[str, str]
    label_rows_a: int
    failure: BuildFailedError
    bundle_a: Path
    summary_after_failure: list[str]


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Story:
    """Steps 1 and 2: build A live (applied, materialized), a failed build of B, training on A."""
    base = tmp_path_factory.mktemp("atomic")
    settings = Settings(home=base / "home", dbt_memory_limit="1GB")
    ingest_synthetic(base, settings, customers=300, seed=4)
    build_warehouse(settings, quiet=True)
    apply_definitions(settings, "sqlite")
    materialize(settings, "sqlite", progress=False)
    build_a = settings.live_build_id
    assert build_a is not None
    digest_a = marts_digest(settings)
    label_rows_a = training_label_rows(settings)

    ingest_synthetic(base, settings, customers=240, seed=5)
    with pytest.raises(BuildFailedError) as failed:
        build_warehouse(settings, quiet=True, project_dir=failing_project(base))
    summary = summarize_warehouse(settings).lines()
    result = train(settings, small_config())
    assert result.bundle_path is not None
    return Story(settings, build_a, digest_a, label_rows_a, failed.value, result.bundle_path, summary)


def test_a_failed_build_leaves_the_previous_build_live_in_every_mart(story: Story) -> None:
    settings = story.settings
    message = str(story.failure)
    assert "stays live" in message and f"build {story.build_a}" in message.splitlines()[0]
    assert settings.live_build_id == story.build_a
    assert marts_digest(settings) == story.digest_a  # labels, candidates and features: all of A
    failed = [p for p in settings.builds_dir.iterdir() if p.name != story.build_a]
    assert len(failed) == 1 and (failed[0] / "marts" / "feat_customer_monthly.parquet").exists()
    assert not (failed[0] / "marts" / f"{FCT_RANKING_LABELS}.parquet").exists()
    # `nextbest summary` names the live build and the failed one
    assert story.summary_after_failure[0].startswith(f"build {story.build_a} (live")
    said = story.summary_after_failure[0]
    assert failed[0].name in said and "unfinished (failed, interrupted or still running)" in said


def test_training_after_a_failed_build_runs_on_the_live_build_and_records_it(story: Story) -> None:
    bundle = load_bundle(story.bundle_a)
    assert bundle.build_id == story.build_a
    record = build_record(story.settings)
    assert record is not None and bundle.dbt_vars == record.dbt_vars
    recorded = {"horizon_months", "activity_lookback_months", "burn_in_months", "observed_until"}
    assert set(bundle.dbt_vars) == recorded
    meta = json.loads((story.bundle_a / "bundle.json").read_text())
    assert meta["build_id"] == story.build_a


@pytest.fixture(scope="module")
def killed(story: Story) -> dict:
    """Step 3: SIGKILL a `nextbest build` process group while dbt writes B's marts, then build B again."""
    settings = story.settings
    proc = nextbest_cli(settings.home, "build", "--no-feast")
    deadline = time.monotonic() + 90
    earlier = {p.name for p in settings.builds_dir.iterdir()}
    writing: Path | None = None
    while time.monotonic() < deadline and writing is None:
        for build in settings.builds_dir.iterdir():
            if build.name not in earlier and list(build.glob("marts/feat_*.parquet")):
                writing = build
        time.sleep(0.05)
    assert writing is not None, "dbt never started writing the new build"
    dbt_pids = children(proc.pid)
    assert dbt_pids, "no dbt child process found"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    gone = time.monotonic() + 10
    while time.monotonic() < gone and any(alive(p) for p in dbt_pids):
        time.sleep(0.05)
    survivors = [p for p in dbt_pids if alive(p)]
    for pid in survivors:  # do not leave a runaway dbt behind if the guarantee failed
        os.kill(pid, signal.SIGKILL)
    live_after_kill = settings.live_build_id
    digest_after_kill = marts_digest(settings)
    label_rows_after_kill = training_label_rows(settings)  # what training would read now
    serving_ok = Scorer(settings).bundle.build_id  # serving still loads A's bundle on A
    rebuild: Exception | None = None
    try:
        build_warehouse(settings, BuildVars(horizon_months=2, activity_lookback_months=3), quiet=True)
    except Exception as exc:  # reported by the test, not as a fixture error
        rebuild = exc
    return {
        "writing": writing,
        "survivors": survivors,
        "live_after_kill": live_after_kill,
        "digest_after_kill": digest_after_kill,
        "label_rows_after_kill": label_rows_after_kill,
        "serving_build": serving_ok,
        "rebuild": rebuild,
    }


def test_a_killed_build_leaves_no_dbt_running_and_the_previous_build_live(story: Story, killed: dict) -> None:
    assert killed["survivors"] == [], "dbt outlived its SIGKILLed parent"
    assert killed["live_after_kill"] == story.build_a
    assert killed["digest_after_kill"] == story.digest_a
    assert killed["label_rows_after_kill"] == story.label_rows_a
    assert killed["serving_build"] == story.build_a


def test_the_build_after_a_killed_one_succeeds_and_prunes_failed_builds(story: Story, killed: dict) -> None:
    assert killed["rebuild"] is None, str(killed["rebuild"])  # no lock error, no leftover of the killed build
    settings = story.settings
    live = settings.live_build_id
    assert live not in (None, story.build_a)
    assert settings.build == BuildVars(horizon_months=2, activity_lookback_months=3)
    # kept: the new live build and the one before it (still read by Feast and the server); pruned: the rest
    assert sorted(p.name for p in settings.builds_dir.iterdir()) == sorted([story.build_a, live])
    assert not killed["writing"].exists()


def test_serving_refuses_a_bundle_of_another_build_in_one_line_unless_told_to(
    story: Story, killed: dict
) -> None:
    settings = story.settings
    assert killed["rebuild"] is None
    with pytest.raises(BundleMismatchError) as refused:
        Scorer(settings)
    message = str(refused.value)
    assert "\n" not in message
    assert f"trained on build {story.build_a}, the live build is {settings.live_build_id}" in message
    assert "horizon_months 1 (bundle) vs 2 (live)" in message
    assert f"sqlite online store holds build {story.build_a}" in message
    assert "NEXTBEST_SERVING_ALLOW_BUILD_MISMATCH=true" in message
    allowed = settings.serving.model_copy(update={"allow_build_mismatch": True})
    scorer = Scorer(settings, allowed)
    assert scorer.bundle.build_id == story.build_a
    assert materialized_build(settings, "sqlite") == (story.build_a, True)


def test_training_and_materialization_refuse_features_of_another_build(story: Story, killed: dict) -> None:
    assert killed["rebuild"] is None
    with pytest.raises(FeatureBuildMismatchError, match="run `nextbest features apply`"):
        train(story.settings, small_config())
    with pytest.raises(FeatureBuildMismatchError, match=f"reads the marts of build {story.build_a} but"):
        materialize(story.settings, "sqlite", progress=False)


def test_a_held_duckdb_lock_is_one_line_naming_the_pid(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", build_id="locked", dbt_memory_limit="1GB")
    settings.build_dir.mkdir(parents=True)
    database = settings.build_dir / "nextbest.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK.format(database=str(database))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(WarehouseLockedError) as locked:
            run_dbt(["debug"], settings, quiet=True)  # opens the DuckDB file, like every dbt command
    finally:
        holder.kill()
        holder.wait()
    message = str(locked.value)
    assert "\n" not in message
    assert f"(PID {holder.pid})" in message and str(database) in message and "close that process" in message


def test_a_flat_warehouse_of_an_older_version_is_still_read(story: Story, tmp_path: Path) -> None:
    old = Settings(home=tmp_path / "o'brien" / "home")  # a quote in the path: SQL must quote or bind it
    build_a = story.settings.model_copy(update={"build_id": story.build_a})
    shutil.copytree(build_a.marts_dir, old.warehouse_dir / "marts")
    assert old.live_build_id is None and old.marts_dir == old.warehouse_dir / "marts"
    summary = summarize_warehouse(old)
    assert summary.rows[FCT_CANDIDATES] > 0
    assert "flat layout" in describe_build(old)
