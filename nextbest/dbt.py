"""Run the dbt project as a subprocess with nextbest's paths and vars.

A subprocess (not dbt's in-process runner) keeps dbt's global state and memory out of the caller,
and lets benchmarks read the child's peak memory. The child dies with its parent: it runs in its own
process group, which is killed when the caller is interrupted or fails, and on Linux the kernel kills it
when the parent dies (``PR_SET_PDEATHSIG``), so a SIGKILLed ``nextbest build`` leaves no dbt running.

``settings.engine`` picks the profile target (DuckDB, or Spark through dbt-spark's session; every model
and test of the project runs on both): on Spark the marts Spark writes as directories are published as
the one parquet file per mart every stage reads (``publish_spark_marts``).
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from nextbest.errors import UserError
from nextbest.marts import dbt_target_dir
from nextbest.settings import DBT_PROJECT_DIR, DBT_TARGETS, Settings


class DbtError(UserError, RuntimeError):
    """dbt exited non-zero; the message carries the tail of its log."""


class WarehouseLockedError(DbtError):
    """Another process holds the DuckDB file dbt needs; the message names it (PID) and what to do."""


OUTPUT_TAIL_LINES = 60
"""Lines of dbt's output a DbtError carries."""

KILL_GRACE_SECONDS = 5.0
"""How long an interrupted dbt gets to exit after SIGTERM before its process group is SIGKILLed."""

_LOCK_RE = re.compile(
    r'Could not set lock on file "(?P<file>[^"]+)": Conflicting lock is held in (?P<program>\S+) '
    r"\(PID (?P<pid>\d+)\)"
)
"""DuckDB's message when another process holds the database file."""

SPARK_MARTS_SUBDIR = "_spark"
"""Where the spark ``parquet_file`` and ``packed_parquet`` materializations write each mart as a directory
(in the marts dir)."""

PR_SET_PDEATHSIG = 1
"""prctl option: the signal the kernel sends this process when its parent dies (Linux)."""


def dbt_env(settings: Settings, project_dir: Path = DBT_PROJECT_DIR) -> dict[str, str]:
    """Environment for a dbt run: where the raw contract lives and where the build's warehouse goes."""
    env = dict(os.environ)
    env.update(
        NEXTBEST_RAW_DIR=str(settings.raw_dir.resolve()),
        NEXTBEST_WAREHOUSE_DIR=str(settings.build_dir.resolve()),
        NEXTBEST_DBT_THREADS=str(settings.dbt_threads),
        NEXTBEST_DBT_MEMORY_LIMIT=settings.dbt_memory_limit,
        NEXTBEST_DBT_TARGET=DBT_TARGETS[settings.engine],
        DBT_PROFILES_DIR=str(project_dir),
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        DBT_PARTIAL_PARSE="false",
    )
    if settings.engine == "spark":
        env.update(NEXTBEST_SPARK_MASTER=settings.spark_master,
                   NEXTBEST_SPARK_DRIVER_MEMORY=settings.spark_driver_memory)
        env.setdefault("PYSPARK_PYTHON", sys.executable)  # Spark's Python workers: this venv
    return env


def publish_spark_marts(marts_dir: Path) -> list[Path]:
    """Link the one part file of each Spark-written mart directory to ``marts_dir/<model>.parquet``.

    Spark writes ``marts/_spark/<model>/part-*.parquet`` (one partition); the contract is one file per
    mart, so each becomes ``marts/<model>.parquet`` (a hard link, no copy; a copy across file systems).

    Returns:
        The mart files published.

    Raises:
        DbtError: a mart directory holds no parquet part file, or more than one.
    """
    published = []
    for directory in sorted((marts_dir / SPARK_MARTS_SUBDIR).glob("*/")):
        parts = sorted(directory.glob("part-*.parquet"))
        if len(parts) != 1:
            raise DbtError(
                f"{directory}: expected one parquet part file written by Spark, found {len(parts)}"
            )
        target = marts_dir / f"{directory.name}.parquet"
        target.unlink(missing_ok=True)
        try:
            os.link(parts[0], target)
        except OSError:
            shutil.copyfile(parts[0], target)
        published.append(target)
    return published


def dbt_executable() -> str:
    """The dbt entry point installed beside the running interpreter."""
    candidate = Path(sys.executable).parent / "dbt"
    return str(candidate) if candidate.exists() else "dbt"


def lock_error(output: str) -> WarehouseLockedError | None:
    """A one-line WarehouseLockedError when ``output`` holds DuckDB's lock conflict message, else None."""
    match = _LOCK_RE.search(output)
    if match is None:
        return None
    return WarehouseLockedError(
        f"the DuckDB file {match['file']} is locked by another process: {match['program']} "
        f"(PID {match['pid']}); close that process (or wait for it to finish), then run again"
    )


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking the kernel to SIGKILL the child when its parent dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """Stop ``proc`` and its process group: SIGTERM, then SIGKILL after ``KILL_GRACE_SECONDS``."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_SECONDS), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _run_in_own_group(
    cmd: Sequence[str], cwd: Path, env: Mapping[str, str], quiet: bool
) -> tuple[int, str, str]:
    """Run ``cmd`` in its own process group, dying with its parent; stream its output unless ``quiet``.

    Returns:
        The exit code, the last ``OUTPUT_TAIL_LINES`` lines of output, and the first DuckDB lock
        conflict line seen ('' when none).
    """
    tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
    lock_line = ""
    proc = subprocess.Popen(
        list(cmd),
        cwd=cwd,
        env=dict(env),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_die_with_parent(os.getpid()),  # noqa: PLW1509 - only prctl, no locks or threads
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not quiet:
                sys.stdout.write(line)
                sys.stdout.flush()
            tail.append(line.rstrip("\n"))
            if not lock_line and "Could not set lock" in line:
                lock_line = line
        proc.wait()
    except BaseException:
        _kill_group(proc)
        raise
    return proc.returncode, "\n".join(tail), lock_line


def run_dbt(
    args: Sequence[str],
    settings: Settings,
    dbt_vars: Mapping[str, Any] | None = None,
    quiet: bool = False,
    project_dir: Path = DBT_PROJECT_DIR,
) -> subprocess.CompletedProcess[str]:
    """Run ``dbt <args>`` in the project directory; raise DbtError with dbt's output on failure.

    Args:
        args: dbt sub-command and flags, e.g. ``["build"]``.
        settings: paths of the raw dataset and the warehouse.
        dbt_vars: values for ``--vars`` (horizon_months, burn_in_months, ...).
        quiet: keep dbt's output off the terminal (a failure's message still carries its tail).
        project_dir: the dbt project (default: the repo's ``dbt_project``; tests run edited copies).

    dbt writes into ``settings.build_dir`` (the pinned build's directory; see ``nextbest.pipeline``).
    It runs in its own process group and dies with the caller (see the module docstring).

    Raises:
        WarehouseLockedError: another process holds the DuckDB file (one line naming its PID).
        DbtError: dbt exited non-zero.
    """
    settings.build_dir.mkdir(parents=True, exist_ok=True)
    settings.marts_dir.mkdir(parents=True, exist_ok=True)
    cmd = [dbt_executable(), *args, "--project-dir", str(project_dir)]
    if dbt_vars:
        cmd += ["--vars", json.dumps(dict(dbt_vars), default=str)]
    env = dbt_env(settings, project_dir)
    env["DBT_TARGET_PATH"] = str(dbt_target_dir(settings))
    env["DBT_LOG_PATH"] = str(settings.build_dir / "dbt_logs")
    code, tail, lock_line = _run_in_own_group(cmd, project_dir, env, quiet)
    if code != 0:
        locked = lock_error(lock_line)
        if locked is not None:
            raise locked
        shown = tail if quiet else "(see dbt output above)"
        raise DbtError(f"dbt {' '.join(args)} failed (exit {code}):\n{shown}")
    if settings.engine == "spark":
        publish_spark_marts(settings.marts_dir)
    return subprocess.CompletedProcess(cmd, code, tail, None)
