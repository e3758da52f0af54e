"""A closed-loop HTTP load generator for the serving benchmark: ``clients`` connections on loopback, each
sending its next ``POST`` as soon as the previous answer arrived (raw HTTP/1.1 keep-alive over asyncio
streams, so the generator itself costs little CPU next to the server under test)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np


@dataclass
class LoadResult:
    """What the clients saw: answers per status, transport errors, latencies (ms), wall seconds."""

    statuses: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())

    @property
    def rate(self) -> float:
        """Answers per second."""
        return self.answered / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


def _request(path: str, body: dict, headers: dict[str, str] | None = None) -> bytes:
    payload = json.dumps(body).encode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    head = (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n{extra}"
        f"content-length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def _client(
    port: int, requests: list[bytes], offset: int, deadline: float, result: LoadResult
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = offset
    try:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                writer.write(requests[i % len(requests)])
                status_line = await reader.readline()
                if not status_line:
                    raise ConnectionError("connection closed by the server")
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                result.errors.append(f"{type(exc).__name__}: {exc}")
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            result.latencies_ms.append((time.perf_counter() - start) * 1e3)
            result.statuses[int(status_line.split()[1])] += 1
            i += 1
    finally:
        writer.close()


async def _run(
    port: int, path: str, bodies: list[dict], clients: int, seconds: float, headers: dict[str, str] | None
) -> LoadResult:
    requests = [_request(path, b, headers) for b in bodies]
    result = LoadResult()
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(*(_client(port, requests, k * 7, deadline, result) for k in range(clients)))
    result.seconds = time.perf_counter() - start
    return result


def closed_loop(
    port: int,
    path: str,
    bodies: list[dict],
    clients: int,
    seconds: float,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """Run ``clients`` closed-loop clients POSTing ``bodies`` (round robin) to ``path`` for ``seconds``,
    with ``headers`` (e.g. an API key) on every request."""
    try:
        import uvloop

        return uvloop.run(_run(port, path, bodies, clients, seconds, headers))
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.run(_run(port, path, bodies, clients, seconds, headers))
