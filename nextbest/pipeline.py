"""The main job's steps as library functions: build the dbt project, summarise what it produced.

Builds are all-or-nothing. ``build_warehouse`` gives each build an id and a new directory
``warehouse/builds/<id>/`` (marts, DuckDB file, dbt target and logs, ``build_vars.json``, ``build.json``),
runs ``dbt build`` there, and only when dbt and its tests pass switches the live pointer
(``warehouse/current.json``, replaced in one ``os.replace``) to it. A failed or interrupted build leaves
the previous build live (and says so); the next successful build deletes it. The build that was live
before stays on disk, so a server or a Feast registry still reading it stays valid until the following
build. One build runs at a time (a lock file names the running build's PID).
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from nextbest.dbt import DbtError, run_dbt
from nextbest.errors import UserError
from nextbest.marts import (
    DIM_PRODUCTS,
    FCT_CANDIDATE_RETRIEVAL_RECALL,
    FCT_CANDIDATES,
    FCT_RANKING_LABELS,
    MART_MODELS,
    BuildRecord,
    build_record,
    mart_path,
)
from nextbest.settings import DBT_PROJECT_DIR, BuildVars, Settings

BUILD_LOCK_FILE = "build.lock"
"""The lock file (in the warehouse directory) held while a build runs; it holds the builder's PID."""

FLAT_LAYOUT_ENTRIES: tuple[str, ...] = (
    "marts",
    "dbt_target",
    "dbt_logs",
    "nextbest.duckdb",
    "nextbest.duckdb.wal",
    "build_vars.json",
)
"""What an older nextbest wrote straight into the warehouse directory (the flat layout)."""


class BuildFailedError(DbtError):
    """A build failed; the message says which build stays live."""


class BuildInProgressError(UserError):
    """Another ``nextbest build`` holds the build lock; the message names its PID."""

    exit_code = 1  # a step is running, not bad input


TEST_SAMPLE_CUSTOMER_PRODUCTS = 20_000 * 24
"""Above this many customers x products, the heaviest dbt tests (the candidate grain's) run on a hash
sample of customers holding about this many: 20k customers of a 24-product bank, ~200 households of The
Complete Journey's 2,378 product types (all 2,469 of them, 64M candidate rows, ran the packed model's
``unpacks_to`` out of DuckDB's 6 GB)."""


def candidate_test_sample_modulo(customers: int, products: int) -> int:
    """The dbt var ``test_sample_modulo``: test 1 customer in N, so that the customers tested hold about
    ``TEST_SAMPLE_CUSTOMER_PRODUCTS`` customer x product pairs (1 = every customer)."""
    return max(1, customers * products // TEST_SAMPLE_CUSTOMER_PRODUCTS)


UNPACKS_TO_SAMPLE_DIVISOR = 8
"""When the candidate-grain tests sample customers, the packed model's ``unpacks_to`` test compares the
middle 1/N of the sampled customers in id order: one contiguous id range, whose rows the packed file's
row-group statistics find without decoding the rest of its lists. At 1M customers x 24 months: 2,496
customers (632k list elements) read in 3.5 s instead of 19,978 (5.0M) in 26.7 s; the whole test 31.8 s
before. The pair model's column tests keep the whole sample."""

TEST_VARS: tuple[str, ...] = ("test_sample_modulo", "unpacks_to_sample_divisor")
"""dbt vars that size the build's tests, not its models (left out of the build record)."""


def test_sample_vars(customers: int, products: int) -> dict[str, int]:
    """The ``TEST_VARS`` for a dataset of ``customers`` and ``products``."""
    modulo = candidate_test_sample_modulo(customers, products)
    divisor = UNPACKS_TO_SAMPLE_DIVISOR if modulo > 1 else 1
    return {"test_sample_modulo": modulo, "unpacks_to_sample_divisor": divisor}


def dbt_vars_for(settings: Settings, build_vars: BuildVars) -> dict[str, Any]:
    """dbt vars for the ingested dataset: its observed_until and burn-in, plus ``build_vars``."""
    from nextbest.ingest.store import read_dataset_meta

    meta = read_dataset_meta(settings.raw_dir)
    customers = pq.ParquetFile(settings.raw_dir / "customers.parquet").metadata.num_rows
    products = pq.ParquetFile(settings.raw_dir / "products.parquet").metadata.num_rows
    return {
        **test_sample_vars(customers, products),
        "observed_until": meta.observed_until.isoformat(),
        "burn_in_months": meta.burn_in_months,
        **build_vars.model_dump(),
    }


def new_build_id(now: datetime | None = None) -> str:
    """A new build id: the UTC time to the microsecond (sortable) and a short random suffix."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@contextmanager
def build_lock(settings: Settings) -> Iterator[None]:
    """Hold the warehouse's build lock (released by the kernel if the process dies).

    Raises:
        BuildInProgressError: another process holds it (the message names its PID).
    """
    settings.warehouse_dir.mkdir(parents=True, exist_ok=True)
    path = settings.warehouse_dir / BUILD_LOCK_FILE
    with path.open("a+", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            raise BuildInProgressError(
                f"another `nextbest build` is running (PID {holder}, lock {path}): wait for it to finish"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        try:
            yield
        finally:
            fh.truncate(0)
            fcntl.flock(fh, fcntl.LOCK_UN)


def switch_live_build(settings: Settings, build_id: str) -> None:
    """Make ``build_id`` the live build in one step (the pointer is replaced with ``os.replace``)."""
    pointer = settings.live_pointer_path
    state = {"build_id": build_id, "previous": settings.live_build_id, "switched_at": _utc_now()}
    tmp = pointer.with_name(f".{pointer.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, pointer)


def prune_builds(settings: Settings, keep: set[str | None]) -> list[str]:
    """Delete the build directories not in ``keep`` (failed, interrupted, older); return their ids.

    None in ``keep`` stands for the flat layout of an older nextbest; without it, that is deleted too.
    """
    removed = []
    if settings.builds_dir.is_dir():
        for path in sorted(settings.builds_dir.iterdir()):
            if path.is_dir() and path.name not in keep:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
    if None not in keep:
        for name in FLAT_LAYOUT_ENTRIES:
            path = settings.warehouse_dir / name
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists():
                path.unlink()
    return removed


def build_warehouse(
    settings: Settings,
    build_vars: BuildVars | None = None,
    quiet: bool = False,
    project_dir: Path = DBT_PROJECT_DIR,
) -> BuildVars:
    """Run ``dbt build`` (models and their tests) into a new build directory; make it live if it passes.

    Args:
        settings: where the raw dataset and the warehouse are.
        build_vars: the modelling choices; None = ``settings.build`` (the live build's, else the
            defaults of ``dbt_project.yml``).
        quiet: keep dbt's output off the terminal.
        project_dir: the dbt project (tests build edited copies).

    Returns:
        The build vars used, saved with the build (``settings.build`` reads them back).

    Raises:
        BuildFailedError: dbt or one of its tests failed, or the build was interrupted (Ctrl-C: dbt is
            stopped first); the previous build stays live.
        BuildInProgressError: another build is running.
    """
    if not (settings.raw_dir / "customers.parquet").exists():
        raise FileNotFoundError(
            f"No ingested dataset in {settings.raw_dir}: "
            "run `nextbest ingest synthetic|completejourney|dir` first."
        )
    build_vars = build_vars or settings.build
    with build_lock(settings):
        from nextbest.ingest.store import read_dataset_meta

        dbt_vars = dbt_vars_for(settings, build_vars)
        record = BuildRecord(
            build_id=new_build_id(),
            dbt_vars={k: v for k, v in dbt_vars.items() if k not in TEST_VARS},
            dataset=read_dataset_meta(settings.raw_dir).name,
            started_at=_utc_now(),
            pid=os.getpid(),
        )
        target = settings.model_copy(update={"build_id": record.build_id})
        target.build_dir.mkdir(parents=True)
        record.write(target.build_dir)
        live = settings.live_build_id
        try:
            run_dbt(["build"], target, dbt_vars, quiet=quiet, project_dir=project_dir)
        except (DbtError, KeyboardInterrupt) as exc:
            still = f"build {live}" if live else "the previous warehouse (if any)"
            what = "was interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            message = f"build {record.build_id} {what}; {still} stays live. {exc}"
            raise BuildFailedError(message.strip()) from exc
        build_vars.write(target.build_vars_path)
        record.model_copy(update={"finished_at": _utc_now()}).write(target.build_dir)
        switch_live_build(settings, record.build_id)
        prune_builds(settings, keep={record.build_id, live})
    return build_vars


def unfinished_builds(settings: Settings) -> list[BuildRecord]:
    """Builds started after the live one that did not pass (failed or interrupted), oldest first."""
    live = settings.live_build_id or ""
    if not settings.builds_dir.is_dir():
        return []
    records = (BuildRecord.read(p) for p in sorted(settings.builds_dir.iterdir()) if p.name > live)
    return [r for r in records if r is not None and not r.succeeded]


@dataclass(frozen=True)
class BuildSummary:
    """What the warehouse holds after a build."""

    rows: dict[str, int]
    snapshots: int
    labelled_snapshots: int
    first_labelled_snapshot: str | None
    latest_snapshot: str | None
    customers: int
    products: int
    groups: int
    mean_candidates_per_group: float
    positive_rate: float
    groups_with_positive: int
    build: str = ""
    retrieval: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """Human-readable lines for the terminal."""
        out = [self.build] if self.build else []
        out += [f"{name:<32} {n:>14,} rows" for name, n in self.rows.items()]
        out += [
            f"snapshots: {self.snapshots} ({self.labelled_snapshots} labelled, "
            f"first labelled {self.first_labelled_snapshot}, latest {self.latest_snapshot})",
            f"customers: {self.customers:,}  products: {self.products:,}",
            f"ranking groups (customer x labelled snapshot): {self.groups:,}, "
            f"{self.groups_with_positive:,} with a positive",
            f"candidates per group: {self.mean_candidates_per_group:.2f}   "
            f"positive rate: {self.positive_rate:.4%}",
        ]
        return out + ([self.retrieval] if self.retrieval else [])


def describe_build(settings: Settings) -> str:
    """One line: which build ``settings`` read (the live one unless pinned), and any failed since."""
    record = build_record(settings)
    if settings.current_build_id is None:
        line = "build: none recorded (flat layout of an older nextbest; `nextbest build` makes a build)"
    elif record is None:
        line = f"build {settings.current_build_id}: no build.json"
    else:
        state = "live" if settings.current_build_id == settings.live_build_id else "pinned"
        line = f"build {record.build_id} ({state}, finished {record.finished_at}): vars {record.dbt_vars}"
    failed = [r.build_id for r in unfinished_builds(settings)]
    if failed:
        line += f"; unfinished (failed, interrupted or still running), not live: {', '.join(failed)}"
    return line


def summarize_warehouse(settings: Settings) -> BuildSummary:
    """Counts and rates over the marts, read straight from their parquet files (the live build's)."""
    settings = settings.pinned()
    con = duckdb.connect()
    count = "select count(*) from read_parquet(?)"
    rows = {
        name: con.execute(count, [str(mart_path(settings, name))]).fetchone()[0]
        for name in MART_MODELS
        if mart_path(settings, name).exists()
    }
    cand = str(mart_path(settings, FCT_CANDIDATES))
    labels = str(mart_path(settings, FCT_RANKING_LABELS))
    snaps, latest = con.execute(
        "select count(distinct snapshot_on), max(snapshot_on)::varchar from read_parquet(?)", [cand]
    ).fetchone()
    lab = con.execute(
        """
        with groups as (
            select customer_id, snapshot_on, count(*) as n, sum(label) as pos
            from read_parquet(?) group by all
        )
        select
            (select count(distinct snapshot_on) from groups),
            (select min(snapshot_on)::varchar from groups),
            count(*), coalesce(avg(n), 0), coalesce(sum(pos) / nullif(sum(n), 0), 0),
            count(*) filter (where pos > 0)
        from groups
        """,
        [labels],
    ).fetchone()
    customers, products = con.execute(
        "select count(distinct customer_id), count(distinct product_id) from read_parquet(?)", [cand]
    ).fetchone()
    n_products = rows.get(DIM_PRODUCTS, products)
    recall = mart_path(settings, FCT_CANDIDATE_RETRIEVAL_RECALL)
    return BuildSummary(
        rows=rows,
        snapshots=int(snaps),
        labelled_snapshots=int(lab[0]),
        first_labelled_snapshot=lab[1],
        latest_snapshot=latest,
        customers=int(customers),
        products=int(n_products),
        groups=int(lab[2]),
        mean_candidates_per_group=float(lab[3]),
        positive_rate=float(lab[4]),
        groups_with_positive=int(lab[5]),
        build=describe_build(settings),
        retrieval=describe_candidate_retrieval(con, recall) if recall.exists() else "",
    )


def describe_candidate_retrieval(con: duckdb.DuckDBPyConnection, recall: Path) -> str:
    """One line on the candidate retrieval stage (fct_candidate_retrieval_recall: no row when it is off):
    what it kept of the labelled groups' eligible candidates and adoptions."""
    groups, eligible, kept, adoptions, adoptions_kept = con.execute(
        """
        select count(*), sum(count_candidates_eligible), sum(count_candidates_retrieved),
            sum(count_adoptions), sum(count_adoptions_retrieved)
        from read_parquet(?)
        """,
        [str(recall)],
    ).fetchone()
    if not groups:
        return "candidate retrieval: off (every eligible product is a candidate)"
    share = f"{adoptions_kept / adoptions:.1%}" if adoptions else "n/a"
    return (
        f"candidate retrieval: on, kept {kept:,} of {eligible:,} eligible candidates at the labelled "
        f"snapshots and {adoptions_kept:,} of their {adoptions:,} adoptions (recall {share}; "
        "fct_candidate_retrieval_recall)"
    )


def sample_latest_customers(settings: Settings, n: int = 3, seed: int = 0) -> list[str]:
    """``n`` customers (a reproducible sample) with candidates at the latest snapshot."""
    cand = str(mart_path(settings, FCT_CANDIDATES))
    rows = (
        duckdb.connect()
        .execute(
            """
        select customer_id from read_parquet($cand)
        where snapshot_on = (select max(snapshot_on) from read_parquet($cand))
        group by customer_id
        order by hash(customer_id || $seed), customer_id
        limit $n
        """,
            {"cand": cand, "seed": str(seed), "n": n},
        )
        .fetchall()
    )
    return [r[0] for r in rows]


def latest_event_timestamp(settings: Settings) -> datetime:
    """The latest snapshot's ``event_timestamp`` (UTC): the moment the newest features became knowable."""
    cand = str(mart_path(settings, FCT_CANDIDATES))
    query = "select max(event_timestamp) from read_parquet(?)"
    (latest,) = duckdb.connect().execute(query, [cand]).fetchone()
    return latest.replace(tzinfo=UTC)
