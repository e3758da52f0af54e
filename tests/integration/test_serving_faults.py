"""Serving under faults and bad input, on a real app over real Feast, sqlite and redis-server.

Faults: a redis that accepts connections and never answers (a socket server on a free port), a real
redis-server paused (SIGSTOP) in the middle of a load, and the real sqlite file of a materialization
corrupted in place, deleted, then restored. Every request must end in 200 or 503 (never a 500, a hang or a
lost request), other routes must keep answering, and the service must recover without a restart.
Input: limits on body size, id length, k and batch size, 422 bodies that do not echo the input, and a
hypothesis property test that no body of any shape gets a 5xx.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from nextbest.features.online_tables import OnlineTables
from nextbest.features.store import apply_definitions, materialize, sqlite_path
from nextbest.serving.api import create_app
from nextbest.settings import K_LIMIT, OnlineStoreSettings, ServingSettings, Settings
from tests.integration.serving_fixtures import RedisServer, build_deployment, free_port, latest_candidates

pytestmark = pytest.mark.integration

TIMEOUT_MS = 250.0
FAULTY = dict(read_timeout_ms=TIMEOUT_MS, breaker_failures=3, breaker_cooldown_s=0.5, ready_refresh_s=0.2)
# Once the store is back, a read in flight (a request's or the readiness monitor's) may still time out and
# re-open the breaker: recovery takes up to a cooldown plus two read timeouts (a second for a busy machine).
RECOVERY_S = FAULTY["breaker_cooldown_s"] + 2 * TIMEOUT_MS / 1e3 + 1.0


def recovered(call: Callable[[], httpx.Response], within_s: float = RECOVERY_S) -> httpx.Response:
    """``call()`` until it answers 200 or ``within_s`` seconds pass; the last answer. Every answer before
    the 200 must be a 503 (the store still refused), never another status."""
    deadline = time.monotonic() + within_s
    while True:
        response = call()
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        assert response.status_code == 503, response.text
        time.sleep(0.05)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return build_deployment(tmp_path_factory.mktemp("serving_faults"), customers=500, months=6, seed=11)


@pytest.fixture(scope="module")
def customers(deployment: Settings) -> list[str]:
    return sorted(latest_candidates(deployment)["customer_id"].unique())


@pytest.fixture(scope="module")
def client(deployment: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(deployment, ServingSettings(online_store="sqlite"))) as test_client:
        yield test_client


class BlackHole:
    """A TCP server on a free loopback port that accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = int(self.sock.getsockname()[1])
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


class ServerThread:
    """A real uvicorn server for ``app`` on a free loopback port, in a thread of this process."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def timed(call) -> tuple[httpx.Response, float]:  # noqa: ANN001
    start = time.perf_counter()
    response = call()
    return response, time.perf_counter() - start


# --------------------------------------------------------------------------- input limits


class TestInputLimits:
    @pytest.mark.parametrize(
        "raw",
        [
            b'{"customer_id": "C0000001", "k": 1e400}',
            b'{"customer_id": "C0000001", "k": NaN}',
            b'{"customer_id": "\\ud800"}',
            b'{"customer_id": "C0000001", "product_ids": ["\\udfff"]}',
        ],
    )
    def test_out_of_range_numbers_and_lone_surrogates_are_422(self, client: TestClient, raw: bytes) -> None:
        response = client.post("/rank", content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 422

    @pytest.mark.parametrize("k", ["3", True, 3.0, 0, K_LIMIT + 1, 10**30])
    def test_k_is_a_json_integer_within_the_one_documented_limit(self, client: TestClient, k: object) -> None:
        assert client.post("/rank", json={"customer_id": "C0000001", "k": k}).status_code == 422

    def test_k_at_the_limit_is_accepted(self, client: TestClient, customers: list[str]) -> None:
        assert client.post("/rank", json={"customer_id": customers[0], "k": K_LIMIT}).status_code == 200

    def test_a_422_does_not_echo_a_large_input(self, client: TestClient) -> None:
        response = client.post("/rank", json={"customer_id": "x" * 60_000})
        assert response.status_code == 422
        assert len(response.content) < 1_000 and "xxxxxxxxxx" not in response.text
        detail = response.json()["detail"][0]
        assert detail["loc"] == ["body", "customer_id"] and "128" in detail["msg"]

    def test_a_body_over_the_limit_is_413_before_it_is_read(self, client: TestClient) -> None:
        response = client.post("/rank", json={"customer_id": "C0000001", "pad": "x" * 200_000})
        assert response.status_code == 413 and "bytes" in response.json()["detail"]

    def test_a_chunked_body_over_the_limit_is_413(self, client: TestClient) -> None:
        chunks = (b'{"customer_id": "' if i == 0 else b"x" * 8192 for i in range(20))
        response = client.post("/rank", content=chunks, headers={"content-type": "application/json"})
        assert response.status_code == 413

    def test_a_batch_over_the_limit_is_422_and_huge_ids_are_refused(self, client: TestClient) -> None:
        assert client.post("/rank/batch", json={"customer_ids": ["C"] * 101}).status_code == 422
        huge = client.post("/rank/batch", json={"customer_ids": ["x" * 1_000_000] * 3})
        assert huge.status_code == 413

    @hsettings(
        max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        body=st.one_of(
            st.recursive(
                st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=30),
                lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
                max_leaves=12,
            ),
            st.fixed_dictionaries(
                {"customer_id": st.text(max_size=140)},
                optional={
                    "k": st.one_of(st.integers(), st.floats(), st.booleans(), st.text(max_size=4)),
                    "product_ids": st.one_of(st.none(), st.lists(st.text(max_size=20), max_size=5)),
                },
            ),
            st.fixed_dictionaries(
                {"customer_ids": st.lists(st.text(max_size=20), max_size=5)},
                optional={"k": st.integers()},
            ),
        ),
        route=st.sampled_from(["/rank", "/rank/batch"]),
    )
    def test_no_body_of_any_shape_gets_a_5xx(self, client: TestClient, body: object, route: str) -> None:
        response = client.post(route, content=json.dumps(body), headers={"content-type": "application/json"})
        assert response.status_code in {200, 404, 413, 422}, response.text[:300]
        assert len(response.content) < 200_000


# --------------------------------------------------------------------------- faults


def test_a_black_hole_redis_gets_503_within_twice_the_timeout_while_other_routes_answer(
    deployment: Settings, customers: list[str]
) -> None:
    hole = BlackHole()
    settings = Settings(
        home=deployment.home, online=OnlineStoreSettings(kind="redis", redis_url=f"127.0.0.1:{hole.port}")
    )
    try:
        app = create_app(settings, ServingSettings(online_store="redis", **FAULTY))
        with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as c:
            first, seconds = timed(lambda: c.post("/rank", json={"customer_id": customers[0]}))
            assert first.status_code == 503 and seconds < 2 * TIMEOUT_MS / 1e3
            assert "redis online store is unreachable" in first.json()["detail"]
            assert int(first.headers["retry-after"]) >= 1
            for _ in range(3):  # the breaker opens: a dead store answers at once
                c.post("/rank", json={"customer_id": customers[0]})
            fast, seconds = timed(lambda: c.post("/rank", json={"customer_id": customers[0]}))
            assert fast.status_code == 503 and "circuit open" in fast.json()["detail"]
            assert seconds < TIMEOUT_MS / 1e3 / 2

            async def storm() -> tuple[list[int], list[float]]:
                async with httpx.AsyncClient(base_url=server.url, timeout=30) as ac:
                    ranks = [ac.post("/rank", json={"customer_id": x}) for x in customers[:40]]
                    others = [ac.get(path) for path in ("/health", "/products", "/ready") for _ in range(5)]
                    start = time.perf_counter()
                    done = await asyncio.gather(*ranks, *others)
                    return [r.status_code for r in done], [time.perf_counter() - start]

            codes, _ = asyncio.run(storm())
            assert set(codes[:40]) == {503}
            assert codes[40:50] == [200] * 10  # /health and /products answer while the store hangs
            assert set(codes[50:]) == {503}  # /ready says the store cannot be read
            _, seconds = timed(lambda: c.get("/products"))
            assert seconds < 1.0
    finally:
        hole.close()


def overwrite_header(path: Path) -> None:
    with path.open("r+b") as f:  # the real file, overwritten in place
        f.write(b"\xff" * 100)


def truncate(path: Path) -> None:
    os.truncate(path, 4096)  # the memory-mapped file shrinks between two reads: an error, not a SIGBUS


@pytest.mark.parametrize("damage", [overwrite_header, truncate], ids=["overwritten", "truncated"])
def test_a_damaged_sqlite_file_is_503_and_the_service_recovers_when_it_is_restored(
    deployment: Settings, customers: list[str], damage: Callable[[Path], None]
) -> None:
    path = sqlite_path(deployment)
    with TestClient(create_app(deployment, ServingSettings(online_store="sqlite", **FAULTY))) as c:
        ok = c.post("/rank", json={"customer_id": customers[0], "k": 3})
        assert ok.status_code == 200 and c.get("/ready").status_code == 200
        conn = OnlineTables(c.app.state.scorer.reader.store)._conn()  # Feast's connection, as served
        assert conn.execute("pragma mmap_size").fetchone()[0] > 0  # serving reads through a memory map
        saved = path.read_bytes()
        # Between two reads (the readiness thread reads too): a file shrunk under an in-flight read of
        # its memory map is a SIGBUS, sqlite's documented hazard (``SQLITE_MMAP_BYTES``).
        between_reads = c.app.state.scorer.reader._lock
        try:
            with between_reads:
                damage(path)
            broken = c.post("/rank", json={"customer_id": customers[0], "k": 3})
            assert broken.status_code == 503 and "DatabaseError" in broken.json()["detail"]
            assert broken.headers["retry-after"].isdigit()
            state = c.app.state.readiness.check()
            assert not state.ready and not state.online_store_reachable
            assert c.get("/health").status_code == 200
        finally:
            with between_reads:  # write_bytes empties the file first
                path.write_bytes(saved)
        back = recovered(lambda: c.post("/rank", json={"customer_id": customers[0], "k": 3}))
        assert back.status_code == 200 and back.json()["products"] == ok.json()["products"]
        assert c.app.state.readiness.check().ready


def test_a_deleted_sqlite_file_makes_the_instance_not_ready_until_it_is_back(
    deployment: Settings, customers: list[str]
) -> None:
    path = sqlite_path(deployment)
    aside = path.with_name("online_store.db.aside")
    with TestClient(create_app(deployment, ServingSettings(online_store="sqlite", **FAULTY))) as c:
        assert c.app.state.readiness.check().ready
        path.rename(aside)
        try:
            state = c.app.state.readiness.check()
            assert not state.ready and "is missing" in state.reason
            ready = c.get("/ready")
            assert ready.status_code == 503 and ready.json()["ready"] is False
        finally:
            aside.rename(path)
        assert c.app.state.readiness.check().ready
        assert c.post("/rank", json={"customer_id": customers[0]}).status_code == 200


def test_an_empty_online_store_is_not_ready(deployment: Settings, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(deployment.home, home, ignore=shutil.ignore_patterns("online_store.db", "source", "raw"))
    empty = Settings(home=home)
    with TestClient(create_app(empty, ServingSettings(online_store="sqlite", **FAULTY))) as c:
        state = c.app.state.readiness.check()
        assert not state.ready
        assert c.get("/ready").status_code == 503


@pytest.mark.redis
def test_a_store_that_hangs_midway_through_a_load_loses_no_request_and_recovers(
    deployment: Settings, customers: list[str], redis_server: RedisServer
) -> None:
    online = OnlineStoreSettings(kind="redis", redis_url=redis_server.url)
    settings = Settings(home=deployment.home, online=online)
    apply_definitions(settings, "redis")
    materialize(settings, "redis", progress=False)
    app = create_app(settings, ServingSettings(online_store="redis", **FAULTY))
    sent, statuses, errors = 0, Counter(), []

    async def client_loop(ac: httpx.AsyncClient, offset: int, deadline: float) -> None:
        nonlocal sent
        i = offset
        while time.monotonic() < deadline:
            sent += 1
            try:
                response = await ac.post("/rank", json={"customer_id": customers[i % len(customers)], "k": 3})
            except httpx.HTTPError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            else:
                statuses[response.status_code] += 1
            i += 1

    async def load(seconds: float) -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as ac:
            deadline = time.monotonic() + seconds
            await asyncio.gather(*(client_loop(ac, k, deadline) for k in range(16)))

    def pause_redis_after(delay_s: float) -> None:
        time.sleep(delay_s)
        os.kill(redis_server.process.pid, signal.SIGSTOP)

    with ServerThread(app) as server:
        pauser = threading.Thread(target=pause_redis_after, args=(1.0,))
        pauser.start()
        asyncio.run(load(3.0))
        pauser.join()
        assert errors == [] and sum(statuses.values()) == sent
        assert set(statuses) == {200, 503} and statuses[200] > 16 and statuses[503] > 16

        os.kill(redis_server.process.pid, signal.SIGCONT)  # the store is back: no restart needed
        with httpx.Client(base_url=server.url, timeout=30) as c:
            assert recovered(lambda: c.post("/rank", json={"customer_id": customers[0]})).status_code == 200
            assert recovered(lambda: c.get("/ready")).status_code == 200
