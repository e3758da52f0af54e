"""Shared fixtures: an isolated NEXTBEST_HOME per test, and the Redis switch."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from nextbest.settings import Settings


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings rooted in a fresh temporary NEXTBEST_HOME (also exported for CLI subprocesses)."""
    home = tmp_path / "nextbest"
    monkeypatch.setenv("NEXTBEST_HOME", str(home))
    return Settings(home=home)


def redis_available(host: str = "127.0.0.1", port: int = 6379) -> bool:
    """True when something accepts TCP connections on the Redis port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def require_redis() -> str:
    """The Redis URL; skips without a server locally, but fails in CI, where .ci/run starts one."""
    if not redis_available():
        message = "redis-server is not listening on 127.0.0.1:6379"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI must start it: see .ci/run)")
        pytest.skip(f"{message}; start one with `redis-server --daemonize yes` to run this test")
    return "127.0.0.1:6379"
