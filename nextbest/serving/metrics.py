"""Prometheus metrics of the API (``GET /metrics``, scope ``admin``).

- ``nextbest_http_requests_total{route,method,status}`` and ``nextbest_http_request_duration_seconds``
  (histogram, same labels): every request, counted by ``nextbest.serving.gate``; ``route`` is the route's
  template (``/score/{task}``), ``unmatched`` for unknown paths;
- ``nextbest_online_read_duration_seconds`` (histogram): each online-store read of the ranking path
  (one per micro-batch), and ``nextbest_online_store_errors_total{kind}`` (``timeout``, ``circuit_open``,
  ``error``);
- ``nextbest_candidates_per_request`` (histogram): candidates scored per ranked customer;
- ``nextbest_model_info{model_version,feature_service}`` = 1 and
  ``nextbest_feature_snapshot_age_seconds{view}``: now minus the online store's latest snapshot of the
  view (from the last readiness check), set when scraped;
- ``nextbest_rate_limited_total{key_id}`` and ``nextbest_decisions_dropped_total``.

Several worker processes (``nextbest serve --workers N``) share their figures through Prometheus'
multiprocess mode: ``serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before the workers
start, and ``/metrics`` of any worker then sums every worker's files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from nextbest.features.online import OnlineStoreUnavailableError

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
WORKER_ENV = "NEXTBEST_METRICS_WORKER"
"""Set by ``multiprocess_metrics`` for the worker processes: their app's end is their process' end."""
PREFIX = "nextbest_"

LATENCY_BUCKETS_S = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Request latency buckets (seconds): the targets are a few ms, a store timeout is 100 ms."""

CANDIDATE_BUCKETS = (0, 1, 2, 5, 10, 20, 30, 50, 100, 200)


def multiprocess_dir() -> str | None:
    """The shared metrics directory of a multi-worker server, None in a single process."""
    return os.environ.get(MULTIPROC_ENV) or None


def values_are_shared() -> bool:
    """True when prometheus_client keeps values in the multiprocess files: decided once, by the
    environment when it was first imported (importing ``feast.metrics`` later sets the variable for
    Feast's own use, which must not switch an in-memory process to reading files)."""
    return values.ValueClass is not values.MutexValue


def store_error_kind(exc: BaseException) -> str:
    """``circuit_open``, ``timeout`` or ``error`` for an online-store failure."""
    if "circuit open" in str(exc):
        return "circuit_open"
    cause = exc.__cause__
    if isinstance(cause, TimeoutError) or "timeout" in type(cause).__name__.lower():
        return "timeout"
    return "error"


class ServingMetrics:
    """The metrics of one app (own registry; in multiprocess mode the values live in the shared files)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        labels = ("route", "method", "status")
        self.requests = Counter("nextbest_http_requests", "HTTP requests answered.", labels, registry=r)
        self.latency = Histogram(
            "nextbest_http_request_duration_seconds",
            "Wall time from request to response.",
            labels,
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.store_read = Histogram(
            "nextbest_online_read_duration_seconds",
            "One online-store read of the ranking path (all customers of a micro-batch).",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.store_errors = Counter(
            "nextbest_online_store_errors", "Failed online-store reads by kind.", ("kind",), registry=r
        )
        self.candidates = Histogram(
            "nextbest_candidates_per_request",
            "Candidates scored per ranked customer.",
            buckets=CANDIDATE_BUCKETS,
            registry=r,
        )
        self.model_info = Gauge(
            "nextbest_model_info",
            "The served model bundle (value 1; one sample per live worker process in multiprocess mode).",
            ("model_version", "feature_service"),
            multiprocess_mode="liveall",
            registry=r,
        )
        self.snapshot_age = Gauge(
            "nextbest_feature_snapshot_age_seconds",
            "Now minus the latest snapshot the online store holds, per view.",
            ("view",),
            multiprocess_mode="mostrecent",
            registry=r,
        )
        self.rate_limited = Counter(
            "nextbest_rate_limited", "Requests refused with 429, per key.", ("key_id",), registry=r
        )
        self.decisions_dropped = Counter(
            "nextbest_decisions_dropped",
            "Decisions not logged because the writer fell behind.",
            registry=r,
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.shared = values_are_shared()

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            labels = (route, method, str(status))
            children = (self.requests.labels(*labels), self.latency.labels(*labels))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_candidates(self, counts: Sequence[int]) -> None:
        """Candidates of each ranked customer of one request."""
        for n in counts:
            self.candidates.observe(n)

    def set_model(self, model_version: str, feature_service: str) -> None:
        self.model_info.labels(model_version, feature_service).set(1)

    def set_snapshot_ages(self, online_ts: dict[str, datetime | None], now: datetime | None = None) -> None:
        """``nextbest_feature_snapshot_age_seconds`` of each view with an online snapshot."""
        now = now or datetime.now(UTC)
        for view, ts in online_ts.items():
            if ts is not None:
                self.snapshot_age.labels(view).set((now - ts).total_seconds())

    def render(self) -> tuple[bytes, str]:
        """The exposition text (every worker's figures in multiprocess mode) and its content type."""
        if not self.shared:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(Prefixed(registry, PREFIX)), CONTENT_TYPE_LATEST


class Prefixed:
    """A registry view with only the metric families named ``prefix...`` (the shared files also hold
    Feast's own metrics)."""

    def __init__(self, registry: CollectorRegistry, prefix: str) -> None:
        self.registry = registry
        self.prefix = prefix

    def collect(self) -> Iterator[Any]:
        return (m for m in self.registry.collect() if m.name.startswith(self.prefix))


class TimedReader:
    """An ``OnlineReader`` whose ranking read (``candidates_many``) is timed and whose failures are
    counted; every other attribute is the reader's own."""

    def __init__(self, reader: Any, metrics: ServingMetrics) -> None:
        self._reader = reader.unwrapped if isinstance(reader, TimedReader) else reader
        self._metrics = metrics

    @property
    def unwrapped(self) -> Any:
        return self._reader

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)

    def candidates_many(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return self._reader.candidates_many(*args, **kwargs)
        except OnlineStoreUnavailableError as exc:
            self._metrics.store_errors.labels(store_error_kind(exc)).inc()
            raise
        finally:
            self._metrics.store_read.observe(time.perf_counter() - start)


def mark_worker_dead() -> None:
    """Drop this worker process' live gauges from the shared directory, when it is a worker of
    ``nextbest serve --workers N`` (another process may build several apps, e.g. tests)."""
    if values_are_shared() and multiprocess_dir() and os.environ.get(WORKER_ENV) == "1":
        multiprocess.mark_process_dead(os.getpid())


def process_alive(pid: int) -> bool:
    """True when a process ``pid`` exists (signal 0 probes without signalling)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_process_files(directory: Path) -> list[Path]:
    """The metric files (``<kind>_<pid>.db``) of ``directory`` whose process is gone: a previous run's.
    The files of live processes stay: the directory may be shared (an inherited
    ``PROMETHEUS_MULTIPROC_DIR``, e.g. the one importing Feast sets), and a live process keeps writing
    to its file through a memory map, so removing it would silently lose its counts."""
    dead = []
    for path in directory.glob("*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if not pid.isdigit() or not process_alive(int(pid)):
            dead.append(path)
    return dead


@contextmanager
def multiprocess_metrics() -> Iterator[str]:
    """Multiprocess mode for the worker processes started inside: ``PROMETHEUS_MULTIPROC_DIR`` is the
    operator's directory (emptied of the files of processes that are gone) or a fresh one, removed
    afterwards."""
    given = multiprocess_dir()
    directory = given or tempfile.mkdtemp(prefix="nextbest-metrics-")
    for stale in dead_process_files(Path(directory)):
        stale.unlink(missing_ok=True)
    os.environ[MULTIPROC_ENV] = directory
    os.environ[WORKER_ENV] = "1"
    try:
        yield directory
    finally:
        os.environ.pop(WORKER_ENV, None)
        if given is None:
            os.environ.pop(MULTIPROC_ENV, None)
            shutil.rmtree(directory, ignore_errors=True)
