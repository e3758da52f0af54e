"""The main job's steps as library functions: build the dbt project, summarise what it produced."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow.parquet as pq

from nextbest.dbt import run_dbt
from nextbest.marts import DIM_PRODUCTS, FCT_CANDIDATES, FCT_RANKING_LABELS, MART_MODELS, mart_path
from nextbest.settings import BuildVars, Settings

TEST_SAMPLE_CUSTOMERS = 20_000
"""Above this many customers, the heaviest dbt tests run on a hash sample of about this many."""


def dbt_vars_for(settings: Settings, build_vars: BuildVars) -> dict[str, Any]:
    """dbt vars for the ingested dataset: its observed_until and burn-in, plus ``build_vars``."""
    from nextbest.ingest.store import read_dataset_meta

    meta = read_dataset_meta(settings.raw_dir)
    customers = pq.ParquetFile(settings.raw_dir / "customers.parquet").metadata.num_rows
    return {
        # the candidate-grain uniqueness tests check ~TEST_SAMPLE_CUSTOMERS customers on large data
        "test_sample_modulo": max(1, customers // TEST_SAMPLE_CUSTOMERS),
        "observed_until": meta.observed_until.isoformat(),
        "burn_in_months": meta.burn_in_months,
        **build_vars.model_dump(),
    }


def build_warehouse(
    settings: Settings, build_vars: BuildVars | None = None, quiet: bool = False
) -> BuildVars:
    """Run ``dbt build`` (models and their tests) over the ingested dataset and keep its build vars.

    Args:
        settings: where the raw dataset and the warehouse are.
        build_vars: the modelling choices; None = ``settings.build`` (the previous build's, else the
            defaults of ``dbt_project.yml``).
        quiet: capture dbt's output.

    Returns:
        The build vars used, now saved beside the warehouse (``settings.build`` reads them back).
    """
    if not (settings.raw_dir / "customers.parquet").exists():
        raise FileNotFoundError(
            f"No ingested dataset in {settings.raw_dir}: "
            "run `nextbest ingest synthetic|completejourney|dir` first."
        )
    build_vars = build_vars or settings.build
    run_dbt(["build"], settings, dbt_vars_for(settings, build_vars), quiet=quiet)
    build_vars.write(settings.build_vars_path)
    return build_vars


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
    extra: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """Human-readable lines for the terminal."""
        out = [f"{name:<32} {n:>14,} rows" for name, n in self.rows.items()]
        out += [
            f"snapshots: {self.snapshots} ({self.labelled_snapshots} labelled, "
            f"first labelled {self.first_labelled_snapshot}, latest {self.latest_snapshot})",
            f"customers: {self.customers:,}  products: {self.products:,}",
            f"ranking groups (customer x labelled snapshot): {self.groups:,}, "
            f"{self.groups_with_positive:,} with a positive",
            f"candidates per group: {self.mean_candidates_per_group:.2f}   "
            f"positive rate: {self.positive_rate:.4%}",
        ]
        return out


def summarize_warehouse(settings: Settings) -> BuildSummary:
    """Counts and rates over the marts, read straight from their parquet files."""
    con = duckdb.connect()
    rows = {
        name: con.execute(f"select count(*) from read_parquet('{mart_path(settings, name)}')").fetchone()[0]
        for name in MART_MODELS
        if mart_path(settings, name).exists()
    }
    cand = mart_path(settings, FCT_CANDIDATES)
    labels = mart_path(settings, FCT_RANKING_LABELS)
    snaps, latest = con.execute(
        f"select count(distinct snapshot_on), max(snapshot_on)::varchar from read_parquet('{cand}')"
    ).fetchone()
    lab = con.execute(
        f"""
        with groups as (
            select customer_id, snapshot_on, count(*) as n, sum(label) as pos
            from read_parquet('{labels}') group by all
        )
        select
            (select count(distinct snapshot_on) from groups),
            (select min(snapshot_on)::varchar from groups),
            count(*), coalesce(avg(n), 0), coalesce(sum(pos) / nullif(sum(n), 0), 0),
            count(*) filter (where pos > 0)
        from groups
        """
    ).fetchone()
    customers, products = con.execute(
        f"select count(distinct customer_id), count(distinct product_id) from read_parquet('{cand}')"
    ).fetchone()
    n_products = rows.get(DIM_PRODUCTS, products)
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
    )


def sample_latest_customers(settings: Settings, n: int = 3, seed: int = 0) -> list[str]:
    """``n`` customers (a reproducible sample) with candidates at the latest snapshot."""
    cand = mart_path(settings, FCT_CANDIDATES)
    rows = (
        duckdb.connect()
        .execute(
            f"""
        select customer_id from read_parquet('{cand}')
        where snapshot_on = (select max(snapshot_on) from read_parquet('{cand}'))
        group by customer_id
        order by hash(customer_id || ?), customer_id
        limit ?
        """,
            [str(seed), n],
        )
        .fetchall()
    )
    return [r[0] for r in rows]


def latest_event_timestamp(settings: Settings) -> datetime:
    """The latest snapshot's ``event_timestamp`` (UTC): the moment the newest features became knowable."""
    cand = mart_path(settings, FCT_CANDIDATES)
    query = f"select max(event_timestamp) from read_parquet('{cand}')"
    (latest,) = duckdb.connect().execute(query).fetchone()
    return latest.replace(tzinfo=UTC)
