"""A tiny hand-made raw dataset (the raw contract, exact types) and a helper that builds dbt on it.

The story (observed 2024-01-01 .. 2024-06-30, the first transaction is in January 2024, so the snapshots
are the month-ends 2024-01-31 .. 2024-06-30; with horizon 1 the labelled ones are January .. May):

products
    P1 current account (accounts, no age bounds)    P2 credit card (cards, min_age 18)
    P3 junior saver (savings, max_age 17)           P4 mortgage (loans, no age bounds)

customers
    C1 joined 2023-06-15, born 1980, mass, north: P1 since join; adopts P2 on 2024-03-10 (label of the
       February snapshot); transactions in January (P1 100), on 2024-02-29 23:59:59 (P1 50) and on
       2024-04-01 00:00:00 (P2 30).
    C2 joined 2024-02-10, born 2010 (age 14: P3 eligible, P2 not), no segment / region: P1 from the join
       day, closed on 2024-05-20; adopts P3 on 2024-04-05; one transaction on P1 on 2024-03-10 (40).
    C3 joined 2023-01-01, age unknown (only P1 and P4 are eligible), mass: P4 from 2023-01-01, closed on
       2024-02-15, held again from 2024-05-02 (a re-held product); one transaction without a product on
       2024-03-15 (20).  Owns nothing at the end of February and has no activity then: not in the
       February population.
    C4 joined 2024-05-20, born 1990, affluent, no holdings and no transactions: a prospect, in the
       population from the May snapshot on (never held a product, so never dormant).
    C5 joined 2024-01-01, born 2000, affluent, south: P1 since join; P2 opened 2024-01-20 and closed
       2024-01-25 (in and out inside January: not owned at any month-end, "previously held" from
       January); P2 again from 2024-06-10; a transaction on 2024-06-30 23:00 (P1 10) counts at June.
"""

from __future__ import annotations

import json
import shutil
from datetime import date, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from nextbest.dbt import run_dbt
from nextbest.marts import mart_path
from nextbest.settings import Settings

OBSERVED_UNTIL = date(2024, 6, 30)

CUSTOMERS_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("joined_on", pa.date32()),
        ("birth_year", pa.int64()),
        ("income", pa.float64()),
        ("segment", pa.string()),
        ("region", pa.string()),
    ]
)
PRODUCTS_SCHEMA = pa.schema(
    [
        ("product_id", pa.string()),
        ("product_name", pa.string()),
        ("category", pa.string()),
        ("min_age", pa.int64()),
        ("max_age", pa.int64()),
    ]
)
HOLDINGS_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("product_id", pa.string()),
        ("started_on", pa.date32()),
        ("ended_on", pa.date32()),
    ]
)
TRANSACTIONS_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("product_id", pa.string()),
        ("occurred_at", pa.timestamp("us")),
        ("amount", pa.float64()),
    ]
)

CUSTOMERS = [
    ("C1", date(2023, 6, 15), 1980, 50_000.0, "mass", "north"),
    ("C2", date(2024, 2, 10), 2010, None, None, None),
    ("C3", date(2023, 1, 1), None, None, "mass", "north"),
    ("C4", date(2024, 5, 20), 1990, 70_000.0, "affluent", "south"),
    ("C5", date(2024, 1, 1), 2000, 30_000.0, "affluent", "south"),
]
PRODUCTS = [
    ("P1", "current account", "accounts", None, None),
    ("P2", "credit card", "cards", 18, None),
    ("P3", "junior saver", "savings", None, 17),
    ("P4", "mortgage", "loans", None, None),
]
HOLDINGS = [
    ("C1", "P1", date(2023, 6, 15), None),
    ("C1", "P2", date(2024, 3, 10), None),
    ("C2", "P1", date(2024, 2, 10), date(2024, 5, 20)),
    ("C2", "P3", date(2024, 4, 5), None),
    ("C3", "P4", date(2023, 1, 1), date(2024, 2, 15)),
    ("C3", "P4", date(2024, 5, 2), None),
    ("C5", "P1", date(2024, 1, 1), None),
    ("C5", "P2", date(2024, 1, 20), date(2024, 1, 25)),
    ("C5", "P2", date(2024, 6, 10), None),
]
TRANSACTIONS = [
    ("C1", "P1", datetime(2024, 1, 5, 10, 0), 100.0),
    ("C1", "P1", datetime(2024, 2, 29, 23, 59, 59), 50.0),
    ("C1", "P2", datetime(2024, 4, 1, 0, 0), 30.0),
    ("C2", "P1", datetime(2024, 3, 10, 9, 30), 40.0),
    ("C3", None, datetime(2024, 3, 15, 12, 0), 20.0),
    ("C5", "P1", datetime(2024, 6, 30, 23, 0), 10.0),
]


def _frame(rows: list[tuple], schema: pa.Schema) -> pa.Table:
    """Rows as a pyarrow table with exactly the contract schema."""
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in schema.names]
    return pa.table({name: pa.array(list(col), type=schema.field(name).type) for name, col in
                     zip(schema.names, columns, strict=True)})


def write_raw(
    raw_dir: Path,
    holdings: list[tuple] | None = None,
    transactions: list[tuple] | None = None,
) -> Path:
    """Write the fixture (optionally with other holdings / transactions rows) in the raw contract."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(_frame(CUSTOMERS, CUSTOMERS_SCHEMA), raw_dir / "customers.parquet")
    pq.write_table(_frame(PRODUCTS, PRODUCTS_SCHEMA), raw_dir / "products.parquet")
    pq.write_table(_frame(HOLDINGS if holdings is None else holdings, HOLDINGS_SCHEMA),
                   raw_dir / "holdings.parquet")
    pq.write_table(_frame(TRANSACTIONS if transactions is None else transactions, TRANSACTIONS_SCHEMA),
                   raw_dir / "transactions.parquet")
    dataset = {"name": "dbt-fixture", "observed_until": OBSERVED_UNTIL.isoformat(), "burn_in_months": 0}
    (raw_dir / "dataset.json").write_text(json.dumps(dataset))
    return raw_dir


def build(home: Path, dbt_vars: dict | None = None, select: str | None = None, threads: int = 2) -> Settings:
    """Run ``dbt build`` (or ``--select select``) on the dataset in ``home/raw`` with ``threads`` dbt
    threads; return its settings."""
    settings = Settings(home=home, dbt_threads=threads, dbt_memory_limit="1GB")
    dataset = json.loads((settings.raw_dir / "dataset.json").read_text())
    all_vars = {"observed_until": dataset["observed_until"], "burn_in_months": dataset["burn_in_months"]}
    all_vars.update(dbt_vars or {})
    selection = ["--select", select, "--indirect-selection", "cautious"] if select else []
    run_dbt(["build", *selection], settings, all_vars, quiet=True)
    return settings


def read_mart(settings: Settings, name: str) -> pd.DataFrame:
    """A mart's parquet file as a DataFrame; a mart materialized as a view (feat_customer_product_monthly)
    is read from the build's DuckDB file."""
    path = mart_path(settings, name)
    if path.exists():
        return pd.read_parquet(path)
    with duckdb.connect(str(settings.build_dir / "nextbest.duckdb"), read_only=True) as con:
        return con.sql(f'select * from "{name}"').df()


def copy_raw(source: Path, destination: Path) -> Path:
    """Copy a raw dataset directory."""
    shutil.copytree(source, destination)
    return destination
