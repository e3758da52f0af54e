"""Readiness of the service (``GET /ready``): the bundle is loaded and the online store answers and holds
the snapshot the marts were built to, checked in the background so a load balancer may poll it freely.

``check_readiness`` probes, per served view, one entity key of the mart's latest snapshot in the online
store (one small read each; the key is re-read from the mart only when its file changes);
``ReadinessMonitor`` runs it every ``ready_refresh_s`` seconds in a daemon thread and keeps the last answer.
When the bundle holds a retrieval index, the check also says whether retrieval is active: the online store
holds the customer embeddings of the latest snapshot, written by the index's retrieval model. Inactive
retrieval does not make the instance unready (every candidate is then ranked), but the reason is reported.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from nextbest.columns import CUSTOMER_ID
from nextbest.features.embeddings import EMBEDDING, FEAT_CUSTOMER_EMBEDDING_MONTHLY, RETRIEVAL_MODEL
from nextbest.features.online import OnlineStoreUnavailableError
from nextbest.features.store import latest_snapshot_key, sqlite_path
from nextbest.marts import mart_file
from nextbest.serving.results import epoch_to_utc
from nextbest.serving.scorer import Scorer


@dataclass(frozen=True)
class ViewReadiness:
    """One served view: its mart's latest snapshot and whether the online store holds it.

    Attributes:
        view: feature view name.
        offline_max_ts: event timestamp of the mart's latest snapshot (UTC; None: empty mart).
        online_ts: event timestamp of the probed key's row online (UTC; None: no row).
        is_current: the online row is at (or after) the latest snapshot.
    """

    view: str
    offline_max_ts: datetime | None
    online_ts: datetime | None
    is_current: bool


@dataclass(frozen=True)
class Readiness:
    """The answer of one readiness check.

    Attributes:
        ready: the online store is reachable and holds every view's latest snapshot.
        reason: why not ready (None when ready).
        online_store_reachable: the probe reads succeeded.
        views: one entry per view probed (empty when the store could not be read).
        checked_at: when the check ran (UTC).
        retrieval_active: whether the bundle's retrieval index narrows candidates (None: no index).
        retrieval_reason: why retrieval is not active (None when it is, or without an index).
    """

    ready: bool
    reason: str | None
    online_store_reachable: bool
    views: list[ViewReadiness]
    checked_at: datetime
    retrieval_active: bool | None = None
    retrieval_reason: str | None = None


Probe = tuple[dict[str, str] | None, datetime | None]


class ProbeCache:
    """Per mart file, its latest snapshot's first key and timestamp, re-read when the file changes."""

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[int, Probe]] = {}

    def get(self, path: Path, join_keys: tuple[str, ...]) -> Probe:
        """(key, snapshot timestamp) of the mart at ``path``; (None, None) when missing or empty."""
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            return None, None
        cached = self._cache.get(path)
        if cached is None or cached[0] != stamp:
            cached = (stamp, latest_snapshot_key(path, join_keys))
            self._cache[path] = cached
        return cached[1]


def check_readiness(scorer: Scorer, probes: ProbeCache) -> Readiness:
    """Probe the online store for every served view's latest snapshot (see the module docstring)."""
    now = datetime.now(UTC)
    path = sqlite_path(scorer.settings)
    if scorer.online_kind == "sqlite" and not path.exists():
        return Readiness(False, f"the sqlite online store {path} is missing", False, [], now)
    served = {v.name: v for v in scorer.views}
    views: list[ViewReadiness] = []
    for spec in scorer.specs:
        key, max_ts = probes.get(spec.parquet_path, spec.join_keys)
        online_ts = None
        if key is not None:
            try:
                seconds = scorer.reader.timestamp(served[spec.view], key)
            except OnlineStoreUnavailableError as exc:
                return Readiness(False, str(exc), False, [], now)
            online_ts = epoch_to_utc(seconds) if seconds > 0 else None
        current = max_ts is not None and online_ts is not None and online_ts >= max_ts
        views.append(ViewReadiness(spec.view, max_ts, online_ts, current))
    behind = [v.view for v in views if not v.is_current]
    reason = None if not behind else f"the online store does not hold the latest snapshot of {behind}"
    active, why = check_retrieval(scorer, probes)
    return Readiness(not behind, reason, True, views, now, active, why)


def check_retrieval(scorer: Scorer, probes: ProbeCache) -> tuple[bool | None, str | None]:
    """(active, why not) of the bundle's retrieval index: (None, None) without one; active when the
    online ``customer_embedding`` row of a customer of the embedding mart's latest snapshot is of that
    snapshot and was written by the index's model (the same check each request makes)."""
    index = scorer.retrieval
    if index is None:
        return None, None
    view = scorer.reader.narrowing_view(index.view)
    if view is None:
        return False, f"the {index.view} view is not registered: run `nextbest retrieval embed`"
    path = mart_file(scorer.settings.marts_dir, FEAT_CUSTOMER_EMBEDDING_MONTHLY)
    key, max_ts = probes.get(path, (CUSTOMER_ID,))
    if key is None or max_ts is None:
        return False, f"{path} is missing or empty: run `nextbest retrieval embed`"
    try:
        row = scorer.reader.customer_view_read(view, [key[CUSTOMER_ID]])
    except OnlineStoreUnavailableError as exc:
        return False, str(exc)
    online_ts = int(row[f"{EMBEDDING}__ts"][0] or 0)
    if online_ts < int(max_ts.timestamp()):
        return False, f"the online store does not hold the latest snapshot of {index.view}: materialize"
    model = row[RETRIEVAL_MODEL][0]
    if index.embedding(row[EMBEDDING][0], model) is None:
        return False, (
            f"the online customer embeddings are retrieval model {model}'s, the bundle index's are "
            f"{index.model_id}'s: run `nextbest retrieval embed --model <that model's directory>`"
        )
    return True, None


class ReadinessMonitor:
    """Runs ``check_readiness`` now and then every ``interval_s`` seconds in a daemon thread; ``state``
    is the last answer (reading it costs nothing). A sqlite file replaced since the last check (e.g.
    restored from a backup) is reopened."""

    def __init__(self, scorer: Scorer, interval_s: float) -> None:
        self.scorer = scorer
        self.interval_s = interval_s
        self._probes = ProbeCache()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._inode = self._sqlite_inode()
        self.state = self.check()

    def _sqlite_inode(self) -> int | None:
        if self.scorer.online_kind != "sqlite":
            return None
        try:
            return sqlite_path(self.scorer.settings).stat().st_ino
        except OSError:
            return None

    def check(self) -> Readiness:
        """Run one check now (reopening a replaced sqlite file first) and keep its answer."""
        inode = self._sqlite_inode()
        if inode is not None and inode != self._inode:
            self.scorer.reader.reconnect()
        self._inode = inode
        self.state = check_readiness(self.scorer, self._probes)
        return self.state

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception as exc:  # noqa: BLE001 - the monitor must outlive any one failed check
                self.state = Readiness(False, f"readiness check failed: {exc}", False, [], datetime.now(UTC))

    def start(self) -> None:
        """Start the background checks (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="nextbest-readiness", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the background checks."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
