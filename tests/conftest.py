"""Shared fixtures: an isolated NEXTBEST_HOME per test, and the Redis switch."""

from __future__ import annotations

import os
import shutil
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from nextbest.settings import Settings

if TYPE_CHECKING:
    from tests.integration.serving_fixtures import RedisServer


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


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """Our own redis-server on a free loopback port (a test may stop, pause or restart it); skipped
    locally without the binary, failed in CI, where .ci/run installs it."""
    from tests.integration.serving_fixtures import RedisServer, free_port

    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not on PATH (CI must install it)")
        pytest.skip("redis-server is not on PATH; `apt-get install -y redis-server` to run this test")
    server = RedisServer(free_port())
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            os.kill(server.process.pid, signal.SIGCONT)  # a test that paused it
        server.stop()
