"""Every `nextbest` command ends a user error in ONE line on stderr and a non-zero exit, never a traceback
(issue 11): a step not run yet, a rejected dataset, a bad option, a failing dbt build. ``--debug`` and
``NEXTBEST_DEBUG=1`` bring the traceback back; Typer's own usage errors keep their box and exit 2.

A real (tiny) dataset and real dbt. One test runs the command as a subprocess (its exit code and stderr
as a shell sees them; ``test_cli.py`` runs more); the others call its entry point ``nextbest.cli.main``
in this process: the same code, without the import of a fresh interpreter (~10 s of CPU, mostly Feast).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from nextbest.cli import dbt_failure_line, main
from nextbest.ingest.store import ingest_directory
from tests.data.raw_builders import tiny_frames, write_raw_dataset, write_tiny_dataset

pytestmark = pytest.mark.integration

STEP_FAILED, BAD_INPUT = 1, 2
DEBUG_HINT = " (details: nextbest --debug ...)"


def nextbest(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command in a fresh process, as a user runs it."""
    env = {k: v for k, v in os.environ.items() if k != "NEXTBEST_DEBUG"}
    env.update(NEXTBEST_HOME=str(home), COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "nextbest.cli", *args], env=env, text=True, capture_output=True, check=False
    )


@dataclass(frozen=True)
class Run:
    """The outcome of ``main(args)`` in this process."""

    returncode: int
    stdout: str
    stderr: str


Runner = Callable[..., Run]


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Runner:
    """``run(home, *args)``: the command's entry point in this process with NEXTBEST_HOME = ``home``."""
    monkeypatch.delenv("NEXTBEST_DEBUG", raising=False)
    monkeypatch.setenv("COLUMNS", "200")

    def _run(home: Path, *args: str) -> Run:
        monkeypatch.setenv("NEXTBEST_HOME", str(home))
        capsys.readouterr()
        code = 0
        try:
            main(list(args))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        out, err = capsys.readouterr()
        return Run(code, out, err)

    return _run


def one_line(result: subprocess.CompletedProcess[str] | Run, code: int) -> str:
    """Assert exit ``code``, no traceback anywhere, exactly one line on stderr; return that line."""
    output = result.stdout + result.stderr
    assert result.returncode == code, output[-3000:]
    assert "Traceback" not in output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("nextbest: ") and lines[0].endswith(DEBUG_HINT)
    return lines[0]


def _hashes(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with the tiny dataset ingested, nothing built."""
    base = tmp_path_factory.mktemp("cli-errors")
    ingest_directory(write_tiny_dataset(base / "tiny"), base / "home" / "raw")
    return base / "home"


# ------------------------------------------------------------------------------------------ a real process


def test_build_with_nothing_ingested_says_to_ingest(tmp_path: Path) -> None:
    line = one_line(nextbest(tmp_path / "empty", "build"), STEP_FAILED)
    assert "No ingested dataset" in line and "nextbest ingest" in line


def test_a_full_disk_is_one_line_without_traceback(tmp_path: Path) -> None:
    """stdout on /dev/full (every write fails with ENOSPC), as when a build's log file fills its disk."""
    env = {k: v for k, v in os.environ.items() if k != "NEXTBEST_DEBUG"}
    env.update(NEXTBEST_HOME=str(tmp_path / "home"), COLUMNS="200")
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "nextbest.cli", "ingest", "synthetic", "--customers", "30"],
            env=env,
            text=True,
            stdout=full,
            stderr=subprocess.PIPE,
            check=False,
        )
    assert result.returncode == STEP_FAILED, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("nextbest: no space left on the device") and DEBUG_HINT in result.stderr


# ------------------------------------------------------------------------------------------ in process


def test_a_rejected_ingest_is_one_line_on_stderr_with_the_details_on_stdout(
    run: Runner, ingested: Path, tmp_path: Path
) -> None:
    raw = ingested / "raw"
    before = _hashes(raw)
    frames = tiny_frames()
    frames["customers"].loc[2, "joined_on"] = dt.date(9999, 12, 31)
    frames["holdings"].loc[0, "customer_id"] = "nobody"
    bad = write_raw_dataset(tmp_path / "bad", frames["customers"], frames["products"], frames["holdings"])

    result = run(ingested, "ingest", "dir", str(bad))

    line = one_line(result, STEP_FAILED)
    assert "customers.parquet: column 'joined_on': rule '1900-01-01 <= joined_on <= " in line
    assert "violated by 1 row (and 1 more broken rule)" in line
    stdout = " ".join(result.stdout.split())
    assert "unchanged" in stdout and "customer_id exists in customers.parquet" in stdout
    assert "'joined_on': '9999-12-31'" in stdout  # the example rows are on stdout
    assert _hashes(raw) == before


def test_train_with_nothing_ingested_says_to_ingest(run: Runner, tmp_path: Path) -> None:
    line = one_line(run(tmp_path / "empty", "train"), STEP_FAILED)
    assert "dataset.json" in line and "nextbest ingest" in line


def test_train_with_nothing_built_says_to_build(run: Runner, ingested: Path) -> None:
    line = one_line(run(ingested, "train"), STEP_FAILED)
    assert "fct_ranking_labels" in line and "nextbest build" in line


def test_summary_and_score_batch_before_a_build_say_to_build(
    run: Runner, ingested: Path, tmp_path: Path
) -> None:
    assert "nextbest build" in one_line(run(ingested, "summary"), STEP_FAILED)
    out = str(tmp_path / "o.parquet")
    assert "nextbest build" in one_line(
        run(ingested, "score-batch", "--snapshot", "2021-05-31", "--out", out), 1
    )


def test_rank_before_anything_is_one_line_without_traceback(run: Runner, tmp_path: Path) -> None:
    result = run(tmp_path / "empty", "rank", "NOPE")
    output = result.stdout + result.stderr
    assert result.returncode == STEP_FAILED and "Traceback" not in output
    assert len([line for line in output.splitlines() if line.strip()]) == 1
    assert "nextbest train" in output


def test_an_unknown_grain_is_bad_input(run: Runner, tmp_path: Path) -> None:
    line = one_line(run(tmp_path / "home", "ingest", "completejourney", "--grain", "nope"), BAD_INPUT)
    assert "grain must be one of" in line


def test_an_empty_date_window_is_a_usage_error(run: Runner, ingested: Path) -> None:
    window = ["--earliest-date", "2020-01-01", "--latest-date", "2019-01-01"]
    result = run(ingested, "ingest", "dir", str(ingested / "raw"), *window)
    assert result.returncode == BAD_INPUT and "Traceback" not in result.stdout + result.stderr
    assert "is after --latest-date" in result.stderr


def test_the_date_window_options_widen_the_plausible_dates(run: Runner, tmp_path: Path) -> None:
    frames = tiny_frames()
    frames["customers"].loc[0, "joined_on"] = dt.date(1850, 6, 1)  # an old bank's first customer
    source = write_raw_dataset(tmp_path / "old", frames["customers"], frames["products"], frames["holdings"])
    home = tmp_path / "home"

    assert "1900-01-01 <= joined_on" in one_line(run(home, "ingest", "dir", str(source)), STEP_FAILED)
    accepted = run(home, "ingest", "dir", str(source), "--earliest-date", "1800-01-01")

    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert pq.read_table(home / "raw" / "customers.parquet").column("joined_on")[0].as_py() == dt.date(
        1850, 6, 1
    )


def test_typer_usage_errors_keep_their_message_and_exit_2(run: Runner, tmp_path: Path) -> None:
    result = run(tmp_path / "home", "rank")
    assert result.returncode == BAD_INPUT
    assert "Missing argument" in result.stderr and "Traceback" not in result.stderr


def test_debug_flag_raises_the_error_itself(run: Runner, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="No ingested dataset"):
        run(tmp_path / "empty", "--debug", "build")


def test_debug_env_raises_the_error_itself(
    run: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEXTBEST_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="No ingested dataset"):
        run(tmp_path / "empty", "build")


def test_a_failing_dbt_build_names_the_node_and_the_log(run: Runner, ingested: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(ingested / "raw", home / "raw")
    products = home / "raw" / "products.parquet"  # damaged after ingest: the staging model cannot read it
    pq.write_table(pq.read_table(products).drop(["category"]), products)

    line = one_line(run(home, "build", "--no-feast"), STEP_FAILED)

    assert "dbt build failed (exit 1)" in line and ": failed model stg_raw__products;" in line
    log = Path(line.removesuffix(DEBUG_HINT).split("; log: ")[1])
    assert log.is_file() and log.name == "dbt.log" and "stg_raw__products" in log.read_text()


def test_dbt_failure_line_names_every_failed_node_of_the_message() -> None:
    message = (
        "dbt build failed (exit 1):\n12:00:01  Failure in test not_null_x (models/x.yml)\n"
        "12:00:01  Failure in unit_test test_y (models/y.yml)\n"
        "12:00:02  Failure in test not_null_x (models/x.yml)"
    )
    assert dbt_failure_line(message, Path("/w/dbt_logs/dbt.log")) == (
        "dbt build failed (exit 1): failed test not_null_x, unit_test test_y; log: /w/dbt_logs/dbt.log"
    )
    assert dbt_failure_line("the DuckDB file x is locked by another process", None) == (
        "the DuckDB file x is locked by another process"
    )
