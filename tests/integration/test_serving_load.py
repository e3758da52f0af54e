"""Bounded load on loopback: 50 concurrent clients against a real uvicorn server for ~20 s.

The server is ``nextbest.serving.cli.serve`` in a subprocess on a free 127.0.0.1 port (sqlite online store).
Every request must get an answer (none lost, no transport error) and no answer may be a 5xx.
``NEXTBEST_LOAD_SECONDS`` / ``NEXTBEST_LOAD_CLIENTS`` change the bounds.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from nextbest.settings import PROJECT_ROOT, Settings
from tests.integration.serving_fixtures import build_deployment, free_port, latest_candidates, wait_for_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECONDS = float(os.environ.get("NEXTBEST_LOAD_SECONDS", "20"))
CLIENTS = int(os.environ.get("NEXTBEST_LOAD_CLIENTS", "50"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Settings]]:
    """(base URL, settings) of a uvicorn server over a small deployment; stopped after the module."""
    settings = build_deployment(tmp_path_factory.mktemp("serving_load"), customers=800, months=7, seed=3)
    port = free_port()
    env = {
        **os.environ,
        "NEXTBEST_HOME": str(settings.home),
        "NEXTBEST_SERVING_ONLINE_STORE": "sqlite",
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    code = f"from nextbest.serving.cli import serve; serve('127.0.0.1', {port})"
    # the server writes a JSON access-log line per request to stderr: a file, as a process manager would
    # collect it (an unread pipe fills after a few hundred lines and then blocks every write to it)
    log_path = settings.home / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=log)
        try:
            wait_for_port(port, timeout_s=180)  # two workers importing Feast on a loaded machine: minutes
            yield f"http://127.0.0.1:{port}", settings
        finally:
            proc.terminate()
            proc.wait(timeout=15)


@dataclass
class Tally:
    """What the clients saw."""

    sent: int = 0
    statuses: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


async def client_loop(
    client: httpx.AsyncClient, customers: list[str], offset: int, deadline: float, tally: Tally
) -> None:
    """One client: POST /rank until ``deadline``; every 10th request is for an unknown customer."""
    i = offset
    while time.monotonic() < deadline:
        unknown = i % 10 == 0
        customer = "NOBODY" if unknown else customers[i % len(customers)]
        tally.sent += 1
        start = time.perf_counter()
        try:
            response = await client.post("/rank", json={"customer_id": customer, "k": 5})
        except httpx.HTTPError as exc:
            tally.errors.append(f"{type(exc).__name__}: {exc}")
        else:
            tally.latencies.append(time.perf_counter() - start)
            tally.statuses[response.status_code] += 1
            if response.status_code != (404 if unknown else 200):
                tally.wrong.append(f"{customer}: {response.status_code} {response.text[:200]}")
        i += 1


async def run_load(base_url: str, customers: list[str]) -> Tally:
    tally = Tally()
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=base_url, timeout=60.0, limits=limits) as client:
        deadline = time.monotonic() + SECONDS
        await asyncio.gather(*(client_loop(client, customers, k, deadline, tally) for k in range(CLIENTS)))
    return tally


def test_concurrent_clients_lose_no_request_and_get_no_5xx(server: tuple[str, Settings]) -> None:
    base_url, settings = server
    customers = sorted(latest_candidates(settings)["customer_id"].unique())
    tally = asyncio.run(run_load(base_url, customers))
    answered = sum(tally.statuses.values())
    latencies = sorted(tally.latencies)
    p99 = latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan")
    print(
        f"\n{CLIENTS} clients x {SECONDS:.0f}s: {tally.sent} sent, {answered} answered "
        f"({answered / SECONDS:.0f}/s), statuses {dict(tally.statuses)}, p99 {p99 * 1e3:.0f} ms"
    )
    assert tally.sent > CLIENTS
    assert tally.errors == []
    assert answered == tally.sent
    assert not any(code >= 500 for code in tally.statuses)
    assert tally.wrong == []
    assert httpx.get(f"{base_url}/health").json()["status"] == "ok"
