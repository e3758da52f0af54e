"""Structured access log: one JSON line per request on the ``nextbest.access`` logger (stderr by default).

A line holds ``ts``, ``request_id`` (echoed as ``X-Request-ID``: the client's when sane, else a new one),
``key_id`` (never the key), ``method``, ``route``, ``status``, ``latency_ms`` and, for ranking routes,
``customers`` (keyed hash by default; ``serving.log_customer``: hash / omit / plain), ``model_version`` and
``snapshot`` (the served features' snapshot). Offered products and probabilities only with
``serving.log_scores``; features never. Lines are written by a background thread, so a slow stderr does
not slow requests (beyond ``MAX_QUEUED_LINES`` waiting, lines are dropped).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import queue
import re
import sys
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nextbest.serving.results import Ranking
from nextbest.settings import ServingSettings

LOGGER_NAME = "nextbest.access"

REQUEST_ID_HEADER = "x-request-id"
SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
"""A client's X-Request-ID is kept when it matches this (else a new id is generated)."""


def request_id_of(value: bytes | None) -> str:
    """The client's request id when sane, else a new random one (32 hex characters)."""
    if value:
        text = value.decode("latin-1")
        if SANE_REQUEST_ID.match(text):
            return text
    return os.urandom(16).hex()


def customer_tag(customer_id: str, mode: str, secret: str = "") -> str | None:
    """How a customer id appears in logs: ``plain``, ``omit`` (None) or ``hash`` (the first 16 hex
    characters of HMAC-SHA256 keyed with ``secret``; sha256 when it is empty)."""
    if mode == "plain":
        return customer_id
    if mode == "omit":
        return None
    data = customer_id.encode("utf-8", "surrogatepass")
    if secret:
        return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()[:16]
    return hashlib.sha256(data).hexdigest()[:16]


@dataclass
class RequestContext:
    """What the gate and the route learn about one request (``scope["nextbest"]``)."""

    request_id: str
    key_id: str | None = None
    rankings: list[Ranking] = field(default_factory=list)
    model_version: str | None = None


MAX_QUEUED_LINES = 10_000
"""Lines waiting for the writer beyond this are dropped (a stderr nobody reads must not grow memory)."""


MAX_LINES_PER_WRITE = 500
"""The writer hands at most this many waiting lines to the logger at once."""


class AccessLog:
    """Writes one JSON line per request (see the module docstring): ``write`` queues the line, a daemon
    thread hands the waiting lines to the ``nextbest.access`` logger (its handler: ``stream``, default
    stderr) as one record of newline-separated lines."""

    def __init__(self, serving: ServingSettings, stream: Any = None) -> None:
        self.serving = serving
        self.logger = logging.getLogger(LOGGER_NAME)
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        self.handler = logging.StreamHandler(stream or sys.stderr)
        self.handler.setFormatter(logging.Formatter("%(message)s"))
        self._queue: queue.Queue[str | None] = queue.Queue(MAX_QUEUED_LINES)
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def start(self) -> None:
        """Start the writer thread."""
        self.logger.addHandler(self.handler)
        self._thread = threading.Thread(target=self._run, name="nextbest-access-log", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """Hand the queued lines to the logger, all lines waiting at once as one record (one write)."""
        while True:
            lines = [self._queue.get()]
            while lines[-1] is not None and len(lines) < MAX_LINES_PER_WRITE:
                try:
                    lines.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            texts = [line for line in lines if line is not None]
            if texts:
                self.logger.info("\n".join(texts))
            if lines[-1] is None:
                return

    def stop(self, timeout_s: float = 2.0) -> None:
        """Write what is queued (waiting at most ``timeout_s``: a blocked stderr must not hang a
        shutdown) and stop."""
        if self._thread is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=timeout_s)
            self._thread.join(timeout=timeout_s)
            self._thread = None
        self.logger.removeHandler(self.handler)

    def line(self, ctx: RequestContext, method: str, route: str, status: int, latency_ms: float) -> dict:
        """The fields of one request's line."""
        out: dict[str, Any] = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "request_id": ctx.request_id,
            "key_id": ctx.key_id,
            "method": method,
            "route": route,
            "status": status,
            "latency_ms": round(latency_ms, 3),
        }
        if ctx.rankings:
            mode, secret = self.serving.log_customer, self.serving.log_hash_key
            if mode != "omit":
                out["customers"] = [customer_tag(r.customer_id, mode, secret) for r in ctx.rankings]
            out["model_version"] = ctx.model_version
            out["snapshot"] = max(r.snapshot_at for r in ctx.rankings).isoformat()
            if self.serving.log_scores:
                out["offers"] = [
                    [[p.product_id, p.probability, p.score] for p in r.products] for r in ctx.rankings
                ]
        return out

    def write(self, ctx: RequestContext, method: str, route: str, status: int, latency_ms: float) -> None:
        """Queue the request's line for the writer thread (dropped, and counted, when it is full)."""
        try:
            self._queue.put_nowait(json.dumps(self.line(ctx, method, route, status, latency_ms), default=str))
        except queue.Full:
            self.dropped += 1
