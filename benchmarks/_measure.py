"""Run a command and report its wall time and the peak resident memory of its whole process tree."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Measured:
    """Wall seconds and peak RSS (bytes, summed over the process tree) of one command."""

    seconds: float
    peak_rss: int
    returncode: int

    @property
    def peak_gib(self) -> float:
        return self.peak_rss / 2**30


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def measure(cmd: Sequence[str], env: Mapping[str, str] | None = None, poll_s: float = 0.1) -> Measured:
    """Run ``cmd`` to completion, sampling the tree's RSS every ``poll_s`` seconds."""
    start = time.perf_counter()
    popen = subprocess.Popen(list(cmd), env=dict(env) if env else None, stdout=subprocess.DEVNULL)
    proc = psutil.Process(popen.pid)
    peak = 0
    while popen.poll() is None:
        peak = max(peak, _tree_rss(proc))
        time.sleep(poll_s)
    return Measured(time.perf_counter() - start, peak, popen.returncode)
