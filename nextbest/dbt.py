"""Run the dbt project as a subprocess with nextbest's paths and vars.

A subprocess (not dbt's in-process runner) keeps dbt's global state and memory out of the caller,
and lets benchmarks read the child's peak memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nextbest.errors import UserError
from nextbest.marts import dbt_target_dir
from nextbest.settings import DBT_PROJECT_DIR, Settings


class DbtError(UserError, RuntimeError):
    """dbt exited non-zero; the message carries the tail of its log."""


def dbt_env(settings: Settings, project_dir: Path = DBT_PROJECT_DIR) -> dict[str, str]:
    """Environment for a dbt run: where the raw contract lives and where the warehouse goes."""
    env = dict(os.environ)
    env.update(
        NEXTBEST_RAW_DIR=str(settings.raw_dir.resolve()),
        NEXTBEST_WAREHOUSE_DIR=str(settings.warehouse_dir.resolve()),
        NEXTBEST_DBT_THREADS=str(settings.dbt_threads),
        NEXTBEST_DBT_MEMORY_LIMIT=settings.dbt_memory_limit,
        DBT_PROFILES_DIR=str(project_dir),
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        DBT_PARTIAL_PARSE="false",
    )
    return env


def dbt_executable() -> str:
    """The dbt entry point installed beside the running interpreter."""
    candidate = Path(sys.executable).parent / "dbt"
    return str(candidate) if candidate.exists() else "dbt"


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
        quiet: capture dbt's output instead of streaming it to the terminal.
        project_dir: the dbt project (default: the repo's ``dbt_project``; tests run edited copies).
    """
    settings.warehouse_dir.mkdir(parents=True, exist_ok=True)
    settings.marts_dir.mkdir(parents=True, exist_ok=True)
    cmd = [dbt_executable(), *args, "--project-dir", str(project_dir)]
    if dbt_vars:
        cmd += ["--vars", json.dumps(dict(dbt_vars), default=str)]
    target_path = dbt_target_dir(settings)
    env = dbt_env(settings, project_dir)
    env["DBT_TARGET_PATH"] = str(target_path)
    env["DBT_LOG_PATH"] = str(settings.warehouse_dir / "dbt_logs")
    proc = subprocess.run(cmd, cwd=project_dir, env=env, text=True, capture_output=quiet, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout or "").splitlines()[-60:]) if quiet else "(see dbt output above)"
        raise DbtError(f"dbt {' '.join(args)} failed (exit {proc.returncode}):\n{tail}")
    return proc
