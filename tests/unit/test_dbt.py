"""nextbest.dbt: the dbt child dies with its caller (interrupt or SIGKILL), a DuckDB lock is one line."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from nextbest.dbt import WarehouseLockedError, lock_error

LOCK_OUTPUT = (
    "12:00:01  Encountered an error:\n"
    'Runtime Error\n  IO Error: Could not set lock on file "/data/warehouse/builds/x/nextbest.duckdb": '
    "Conflicting lock is held in /usr/bin/python3.11 (PID 4242). See also "
    "https://duckdb.org/docs/current/connect/concurrency\n"
)

# A caller of _run_in_own_group whose child starts a grandchild; both print their PID, then sleep.
CALLER = """
import os, sys
from pathlib import Path
from nextbest.dbt import _run_in_own_group
child = (
    "import os, subprocess, sys, time; "
    "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
    "print(os.getpid(), g.pid, flush=True); time.sleep(60)"
)
_run_in_own_group([sys.executable, "-c", child], Path("."), dict(os.environ), quiet=False)
"""


def running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pids: list[int], seconds: float = 10.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(running(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if running(p)]


class TestLockError:
    def test_duckdbs_lock_message_becomes_one_line_naming_file_program_and_pid(self) -> None:
        error = lock_error(LOCK_OUTPUT)
        assert isinstance(error, WarehouseLockedError)
        assert str(error) == (
            "the DuckDB file /data/warehouse/builds/x/nextbest.duckdb is locked by another process: "
            "/usr/bin/python3.11 (PID 4242); close that process (or wait for it to finish), then run again"
        )

    def test_other_failures_are_not_lock_errors(self) -> None:
        assert lock_error("Database Error in model fct_candidates: Binder Error: no_such_column") is None


class TestChildDiesWithCaller:
    def _start(self) -> tuple[subprocess.Popen[str], list[int]]:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        caller = subprocess.Popen(
            [sys.executable, "-c", CALLER], env=env, text=True, stdout=subprocess.PIPE, start_new_session=True
        )
        assert caller.stdout is not None
        pids = [int(p) for p in caller.stdout.readline().split()]
        assert len(pids) == 2 and all(running(p) for p in pids)
        return caller, pids

    def test_an_interrupted_caller_kills_the_childs_process_group(self) -> None:
        caller, (child, grandchild) = self._start()
        caller.send_signal(signal.SIGINT)  # Ctrl-C reaches only the caller: dbt has its own group
        caller.wait(timeout=15)
        assert wait_gone([child, grandchild]) == []

    def test_a_sigkilled_caller_takes_the_child_with_it(self) -> None:
        caller, (child, grandchild) = self._start()
        caller.kill()
        caller.wait(timeout=10)
        assert wait_gone([child]) == []
        with contextlib.suppress(ProcessLookupError):  # PR_SET_PDEATHSIG covers the direct child (dbt) only
            os.kill(grandchild, signal.SIGKILL)
