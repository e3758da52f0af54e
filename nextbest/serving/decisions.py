"""The decisions log: what the service answered, for campaign readouts and complaint investigations.

One parquet row per offered product (``DECISIONS_SCHEMA``; a customer offered nothing gets one row with a
null product): who was answered, what was offered at which rank, score and probability, by which model
bundle, from which feature snapshot, for which request and key. Online answers are logged when
``serving.decisions_log_dir`` is set: ``DecisionsLog.append`` only buffers (the request does not wait
for a disk); a background thread writes the buffer as a new file when it holds ``decisions_flush_rows``
rows or its oldest row is ``decisions_flush_s`` old, and on shutdown. ``nextbest score-batch`` logs its
whole output (``log_batch``). Every file is written beside its final name and renamed into place
(readers never see half a file; names start with ``decisions-``, temporary ones with ``.``).

``replay`` re-ranks the logged customers from the offline store at the logged snapshot with the logged
bundle (point-in-time features: what the online store held at that snapshot) and compares.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from nextbest.columns import CUSTOMER_ID, EVENT_TIMESTAMP, PRODUCT_ID, SNAPSHOT_ON
from nextbest.errors import UserError
from nextbest.marts import FCT_CANDIDATES, existing_mart
from nextbest.serving.results import Ranking
from nextbest.settings import Settings

DECISIONS_SCHEMA = pa.schema(
    [
        ("decided_at", pa.timestamp("ms", tz="UTC")),
        ("source", pa.string()),  # online | batch
        ("request_id", pa.string()),
        ("key_id", pa.string()),
        (CUSTOMER_ID, pa.string()),
        ("rank", pa.int32()),  # null: nothing offered
        (PRODUCT_ID, pa.string()),
        ("score", pa.float64()),
        ("probability", pa.float64()),
        ("n_candidates", pa.int32()),
        ("restricted", pa.bool_()),  # the request named the products to rank
        ("model_version", pa.string()),
        ("feature_service", pa.string()),
        ("snapshot_at", pa.timestamp("us", tz="UTC")),  # event timestamp of the served features
    ]
)
"""One row per offered product (rank 1 = best)."""

FILE_PREFIX = "decisions-"

logger = logging.getLogger(__name__)


class DecisionsLogError(UserError):
    """A file given as a decisions log is not one (unreadable, or without the log's columns), or names a
    model bundle that cannot replay it."""


Row = tuple


@dataclass(frozen=True)
class Decision:
    """The context of one answered ranking (besides the ranking itself)."""

    request_id: str
    key_id: str | None
    model_version: str
    feature_service: str
    restricted: bool = False
    source: str = "online"


def decision_rows(ranking: Ranking, decision: Decision, decided_at: datetime) -> list[Row]:
    """The log rows of one ranking, in ``DECISIONS_SCHEMA`` order."""
    head = (decided_at, decision.source, decision.request_id, decision.key_id, ranking.customer_id)
    tail = (
        ranking.n_candidates,
        decision.restricted,
        decision.model_version,
        decision.feature_service,
        ranking.snapshot_at,
    )
    if not ranking.products:
        return [(*head, None, None, None, None, *tail)]
    return [(*head, p.rank, p.product_id, p.score, p.probability, *tail) for p in ranking.products]


def new_file_name(seq: int) -> str:
    """A unique, time-ordered file name: ``decisions-<UTC time>-<pid>-<seq>.parquet``."""
    return f"{FILE_PREFIX}{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{os.getpid()}-{seq:06d}.parquet"


def write_rows(directory: Path, rows: Sequence[Row], seq: int = 0) -> Path:
    """Write ``rows`` as one new parquet file in ``directory``, atomically; its path."""
    directory.mkdir(parents=True, exist_ok=True)
    columns = list(zip(*rows, strict=True))
    table = pa.table(
        [pa.array(col, type=f.type) for col, f in zip(columns, DECISIONS_SCHEMA, strict=True)],
        schema=DECISIONS_SCHEMA,
    )
    path = directory / new_file_name(seq)
    tmp = directory / f".{path.name}.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


class DecisionsLog:
    """Buffers decision rows and writes them off the request path (see the module docstring).

    At most ``max_buffer_rows`` (default 10 x ``flush_rows``) wait; beyond, rows are dropped and
    ``on_drop(n)`` is called (a disk that stopped must not grow the process without bound).
    """

    def __init__(
        self,
        directory: Path,
        flush_rows: int = 10_000,
        flush_s: float = 5.0,
        max_buffer_rows: int | None = None,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.flush_rows = flush_rows
        self.flush_s = flush_s
        self.max_buffer_rows = max_buffer_rows or 10 * flush_rows
        self.on_drop = on_drop
        self._rows: list[Row] = []
        self._since = 0.0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._seq = 0
        self._thread: threading.Thread | None = None
        self.files: list[Path] = []

    def append(self, rankings: Sequence[Ranking], decision: Decision) -> None:
        """Buffer the rows of ``rankings`` (cheap: no I/O)."""
        now = datetime.now(UTC)
        rows = [row for r in rankings for row in decision_rows(r, decision, now)]
        with self._lock:
            if len(self._rows) + len(rows) > self.max_buffer_rows:
                dropped = len(rows)
                rows = []
            else:
                dropped = 0
                if not self._rows:
                    self._since = time.monotonic()
                self._rows.extend(rows)
            full = len(self._rows) >= self.flush_rows
        if dropped and self.on_drop is not None:
            self.on_drop(dropped)
        if full:
            self._wake.set()

    def flush(self) -> Path | None:
        """Write what is buffered now as one file (None when nothing is, or the write failed: its rows
        are counted as dropped and a warning names the error)."""
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return None
        self._seq += 1
        try:
            path = write_rows(self.directory, rows, self._seq)
        except OSError as exc:  # a full or read-only disk must not stop the service or this thread
            logger.warning("decisions log: %d rows not written to %s (%s)", len(rows), self.directory, exc)
            if self.on_drop is not None:
                self.on_drop(len(rows))
            return None
        self.files.append(path)
        return path

    def _due(self) -> bool:
        with self._lock:
            n, since = len(self._rows), self._since
        return n >= self.flush_rows or (n > 0 and time.monotonic() - since >= self.flush_s)

    def _run(self) -> None:
        while not self._closing:
            self._wake.wait(timeout=min(self.flush_s, 1.0))
            self._wake.clear()
            if self._due():
                self.flush()

    def start(self) -> None:
        """Start the writer thread."""
        self._thread = threading.Thread(target=self._run, name="nextbest-decisions", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the writer thread and write what is left."""
        self._closing = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.flush()


def log_batch(
    settings: Settings,
    batch_file: Path,
    directory: Path,
    model_version: str,
    feature_service: str,
    run_id: str,
) -> Path:
    """Log a ``score-batch`` output file (every candidate, ranked) as one decisions file; its path.
    The snapshot timestamp of each row is its candidate's ``event_timestamp`` (``fct_candidates``)."""
    directory.mkdir(parents=True, exist_ok=True)
    candidates = existing_mart(settings, FCT_CANDIDATES)
    path = directory / new_file_name(0)
    tmp = directory / f".{path.name}.tmp"
    con = duckdb.connect()
    try:
        con.execute("set timezone = 'UTC'")
        con.execute(
            f"""copy (
                select current_timestamp::timestamptz as decided_at, 'batch' as source,
                    ? as request_id, null::varchar as key_id, b.{CUSTOMER_ID}, b.rank::int as rank,
                    b.{PRODUCT_ID}, b.score, b.probability,
                    (count(*) over (partition by b.{CUSTOMER_ID}))::int as n_candidates,
                    false as restricted, ? as model_version, ? as feature_service,
                    timezone('UTC', c.{EVENT_TIMESTAMP}) as snapshot_at
                from read_parquet(?) b
                join read_parquet(?) c using ({CUSTOMER_ID}, {PRODUCT_ID}, {SNAPSHOT_ON})
                order by b.{CUSTOMER_ID}, b.rank
            ) to '{tmp}' (format parquet)""",
            [run_id, model_version, feature_service, str(batch_file), str(candidates)],
        )
    finally:
        con.close()
    table = pq.read_table(tmp).cast(DECISIONS_SCHEMA, safe=False)  # decided_at: us -> ms
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- replay


def _read_file(path: Path) -> pa.Table:
    """One decisions file in ``DECISIONS_SCHEMA`` (parquet would read a file lacking a column as nulls,
    which replay would skip: a wrong file would "replay" to nothing differing).

    Raises:
        DecisionsLogError: ``path`` is not parquet or lacks some of the log's columns.
    """
    try:
        names = pq.read_schema(path).names
    except (pa.ArrowException, OSError) as exc:
        raise DecisionsLogError(f"{path}: not a readable parquet file ({exc})") from exc
    missing = [name for name in DECISIONS_SCHEMA.names if name not in names]
    if missing:
        raise DecisionsLogError(f"{path}: not a decisions log file: no column(s) {missing}")
    return pq.read_table(path, schema=DECISIONS_SCHEMA)


def read_decisions(path: Path) -> pd.DataFrame:
    """The decisions of one file or of every ``decisions-*.parquet`` of a directory.

    Raises:
        FileNotFoundError: ``path`` does not exist, or is a directory without decisions files.
        DecisionsLogError: a file is not a decisions log file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"decisions log {path} does not exist")
    files = sorted(path.glob(f"{FILE_PREFIX}*.parquet")) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"no {FILE_PREFIX}*.parquet file in {path}")
    return pa.concat_tables([_read_file(f) for f in files]).to_pandas()


@dataclass
class ReplayReport:
    """How many logged decisions replayed to the same ranking, and the first that did not."""

    decisions: int = 0
    same: int = 0
    differing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.decisions == self.same


def _candidates_at(settings: Settings, snapshot_at: pd.Timestamp, customers: Sequence[str]) -> pd.DataFrame:
    path = existing_mart(settings, FCT_CANDIDATES)
    ts = pd.Timestamp(snapshot_at).tz_convert("UTC").tz_localize(None).to_pydatetime()
    con = duckdb.connect()
    try:
        con.register("wanted", pd.DataFrame({CUSTOMER_ID: list(customers)}))
        return con.execute(
            f"select {CUSTOMER_ID}, {PRODUCT_ID}, {SNAPSHOT_ON}, {EVENT_TIMESTAMP} from read_parquet(?) "
            f"where {EVENT_TIMESTAMP} = ? and {CUSTOMER_ID} in (select {CUSTOMER_ID} from wanted) "
            f"order by {CUSTOMER_ID}, {PRODUCT_ID}",
            [str(path), ts],
        ).df()
    finally:
        con.close()


def _compare(logged: pd.DataFrame, replayed: pd.DataFrame, tolerance: float) -> str | None:
    """Why one logged decision differs from its replay (None: the same ranking)."""
    offered = logged.dropna(subset=["rank"]).sort_values("rank")
    if offered.empty:
        if bool(logged["restricted"].iloc[0]) or replayed.empty:
            return None
        return f"nothing was offered, the replay has {len(replayed)} candidates"
    mine = replayed.set_index(PRODUCT_ID)
    products = offered[PRODUCT_ID].tolist()
    missing = [p for p in products if p not in mine.index]
    if missing:
        return f"offered {missing}, not candidates in the replay"
    if bool(offered["restricted"].iloc[0]):
        order = mine.loc[products, "rank"].to_numpy()
        if not np.all(np.diff(order) > 0):
            replay_order = list(mine.loc[products].sort_values("rank").index)
            return f"offered {products}, the replay orders them {replay_order}"
    else:
        top = replayed.sort_values("rank")[PRODUCT_ID].head(len(products)).tolist()
        if top != products:
            return f"offered {products}, the replay ranks {top} first"
    gap = np.abs(mine.loc[products, "score"].to_numpy() - offered["score"].to_numpy())
    if gap.max() > tolerance:
        return f"scores differ by up to {gap.max():.3g}"
    return None


def replay(settings: Settings, path: Path, tolerance: float = 1e-6) -> ReplayReport:
    """Re-rank every logged decision (file or directory ``path``) with its logged model bundle on the
    point-in-time features of its logged snapshot, and compare with what was offered (the same products
    in the same order, scores within ``tolerance``; for a request restricted to some products, their
    order)."""
    from nextbest.features.definitions import FEATURE_SERVICE_NAME
    from nextbest.features.store import get_store
    from nextbest.serving.batch import score_part
    from nextbest.training.artifacts import load_bundle

    decisions = read_decisions(path)
    report = ReplayReport()
    store = get_store(settings)
    for (version, snapshot_at), group in decisions.groupby(["model_version", "snapshot_at"], sort=True):
        bundle_path = settings.models_dir / str(version)
        if not bundle_path.exists():
            raise FileNotFoundError(f"model bundle {version} (decisions log) is not in {settings.models_dir}")
        bundle = load_bundle(bundle_path)
        if bundle.feature_service_name != FEATURE_SERVICE_NAME:
            raise DecisionsLogError(
                f"bundle {version} (decisions log) was trained on {bundle.feature_service_name}, the "
                f"feature store serves {FEATURE_SERVICE_NAME}: it cannot be replayed here"
            )
        customers = sorted(group[CUSTOMER_ID].unique())
        part = _candidates_at(settings, snapshot_at, customers)
        scored = score_part(store, bundle, part).to_pandas() if len(part) else part.assign(rank=[], score=[])
        by_customer = dict(tuple(scored.groupby(CUSTOMER_ID)))
        for (request_id, customer), logged in group.groupby(["request_id", CUSTOMER_ID], sort=True):
            report.decisions += 1
            replayed = by_customer.get(customer, scored.iloc[0:0])
            why = _compare(logged, replayed, tolerance)
            if why is None:
                report.same += 1
            elif len(report.differing) < 20:
                report.differing.append(f"request {request_id}, customer {customer}: {why}")
    return report
