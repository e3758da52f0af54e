"""Builders of tiny datasets in the raw contract, shared by tests.

``tiny_frames()`` is a valid dataset small enough to reason about by hand; tests copy a frame, break one
rule, and write it with ``write_raw_dataset``.

Known answers of ``tiny_frames()``:
    * 4 customers (c1..c4), 3 products (p1..p3), 5 holdings, 4 transactions;
    * c2 held p1 twice: [2020-03-01, 2020-06-01) then [2020-06-01, open) (touching intervals are allowed);
    * latest date in the data: 2021-06-30 (transaction of c1 at 2021-06-30 18:30) = ``TINY_LATEST_DATE``.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

TINY_LATEST_DATE = dt.date(2021, 6, 30)
TINY_ROWS = {
    "customers.parquet": 4,
    "products.parquet": 3,
    "holdings.parquet": 5,
    "transactions.parquet": 4,
}


def _dates(*values: str | None) -> list[dt.date | None]:
    return [None if v is None else dt.date.fromisoformat(v) for v in values]


def tiny_frames() -> dict[str, pd.DataFrame]:
    """A valid tiny dataset: keys ``customers``, ``products``, ``holdings``, ``transactions``.

    Dates are ``datetime.date`` objects (written as parquet ``date32``), ids are strings, nullable ints
    use pandas ``Int64``.
    """
    customers = pd.DataFrame(
        {
            "customer_id": ["c1", "c2", "c3", "c4"],
            "joined_on": _dates("2019-01-15", "2019-06-01", "2020-02-29", "2020-12-31"),
            "birth_year": pd.array([1980, 1995, None, 2001], dtype="Int64"),
            "income": [52000.0, 31000.5, None, 0.0],
            "segment": ["mass", "affluent", None, "young"],
            "region": ["north", "south", "south", None],
        }
    )
    products = pd.DataFrame(
        {
            "product_id": ["p1", "p2", "p3"],
            "product_name": ["Current account", "Mortgage", "Student card"],
            "category": ["accounts", "loans", "cards"],
            "min_age": pd.array([None, 18, 16], dtype="Int64"),
            "max_age": pd.array([None, 70, 25], dtype="Int64"),
        }
    )
    holdings = pd.DataFrame(
        {
            "customer_id": ["c1", "c1", "c2", "c2", "c4"],
            "product_id": ["p1", "p2", "p1", "p1", "p3"],
            "started_on": _dates("2019-01-15", "2019-09-01", "2020-03-01", "2020-06-01", "2021-01-10"),
            "ended_on": _dates(None, "2021-03-31", "2020-06-01", None, None),
        }
    )
    transactions = pd.DataFrame(
        {
            "customer_id": ["c1", "c1", "c2", "c4"],
            "product_id": ["p1", None, "p1", "p3"],
            "occurred_at": pd.to_datetime(
                ["2020-01-05 09:00", "2021-06-30 18:30", "2020-04-01 12:00", "2021-02-01 00:00"]
            ),
            "amount": [-25.5, 100.0, -3.0, 12.0],
        }
    )
    return {"customers": customers, "products": products, "holdings": holdings, "transactions": transactions}


RANDOM_FIRST_DAY = dt.date(2019, 1, 1)
RANDOM_OBSERVED_UNTIL = dt.date(2021, 12, 31)
"""``random_small_frames`` draws every date in [RANDOM_FIRST_DAY, RANDOM_OBSERVED_UNTIL]."""


def random_small_frames(rng: random.Random) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """A random valid small dataset and its ``dataset.json``: the frames of ``tiny_frames()`` plus a meta.

    1-4 customers, 1-3 products, 1-6 holdings (non-overlapping per customer and product: at most one
    interval each, ending after it starts or open), 0-4 transactions of known customers (product known
    or null); dates in [RANDOM_FIRST_DAY, RANDOM_OBSERVED_UNTIL]; meta ``observed_until`` =
    RANDOM_OBSERVED_UNTIL and a ``burn_in_months`` below the months observed (at most 6).
    """

    def day(lo: dt.date = RANDOM_FIRST_DAY, hi: dt.date = RANDOM_OBSERVED_UNTIL) -> dt.date:
        return lo + dt.timedelta(days=rng.randint(0, (hi - lo).days))

    n_customers, n_products = rng.randint(1, 4), rng.randint(1, 3)
    customer_ids = [f"c{i}" for i in range(1, n_customers + 1)]
    product_ids = [f"p{i}" for i in range(1, n_products + 1)]
    customers = pd.DataFrame(
        {
            "customer_id": customer_ids,
            "joined_on": [day() for _ in customer_ids],
            "birth_year": pd.array(
                [rng.choice([None, rng.randint(1940, 2005)]) for _ in customer_ids], "Int64"
            ),
            "income": [rng.choice([None, float(rng.randint(0, 90_000))]) for _ in customer_ids],
            "segment": [rng.choice([None, "mass", "affluent"]) for _ in customer_ids],
            "region": [rng.choice([None, "north", "south"]) for _ in customer_ids],
        }
    )
    products = pd.DataFrame(
        {
            "product_id": product_ids,
            "product_name": [f"Product {p}" for p in product_ids],
            "category": [rng.choice(["accounts", "loans", "cards"]) for _ in product_ids],
            "min_age": pd.array([None] * n_products, dtype="Int64"),
            "max_age": pd.array([None] * n_products, dtype="Int64"),
        }
    )
    pairs = [(c, p) for c in customer_ids for p in product_ids]
    held = rng.sample(pairs, rng.randint(1, min(6, len(pairs))))
    starts = [day() for _ in held]
    ends = [rng.choice([None, day(s + dt.timedelta(days=1), dt.date(2022, 1, 1))]) for s in starts]
    ends = [None if e is not None and e > RANDOM_OBSERVED_UNTIL else e for e in ends]
    holdings = pd.DataFrame(
        {
            "customer_id": [c for c, _ in held],
            "product_id": [p for _, p in held],
            "started_on": starts,
            "ended_on": ends,
        }
    )
    n_transactions = rng.randint(0, 4)
    transactions = pd.DataFrame(
        {
            "customer_id": pd.array([rng.choice(customer_ids) for _ in range(n_transactions)], "string"),
            "product_id": pd.array(
                [rng.choice([None, *product_ids]) for _ in range(n_transactions)], "string"
            ),
            "occurred_at": pd.to_datetime(
                [dt.datetime.combine(day(), dt.time(rng.randint(0, 23))) for _ in range(n_transactions)]
            ).astype("datetime64[us]"),
            "amount": pd.array([float(rng.randint(-500, 500)) for _ in range(n_transactions)], "float64"),
        }
    )
    first = transactions["occurred_at"].min().date() if n_transactions else None
    first = first or min(min(customers["joined_on"]), min(holdings["started_on"]))
    months = (RANDOM_OBSERVED_UNTIL.year - first.year) * 12 + RANDOM_OBSERVED_UNTIL.month - first.month + 1
    meta = {
        "observed_until": RANDOM_OBSERVED_UNTIL.isoformat(),
        "burn_in_months": rng.randint(0, min(6, months - 1)),
    }
    frames = {
        "customers": customers,
        "products": products,
        "holdings": holdings,
        "transactions": transactions,
    }
    return frames, meta


def write_raw_dataset(
    path: Path,
    customers: pd.DataFrame,
    products: pd.DataFrame,
    holdings: pd.DataFrame,
    transactions: pd.DataFrame | None = None,
    meta: Mapping[str, Any] | None = None,
    extra_files: Mapping[str, pd.DataFrame] | None = None,
) -> Path:
    """Write a dataset directory (parquet without the pandas index) and return ``path``.

    Args:
        path: the directory to create (parents too); existing files are overwritten.
        customers, products, holdings: the required tables.
        transactions: optional; not written when ``None``.
        meta: optional contents of ``dataset.json``.
        extra_files: other parquet files by file name, e.g. ``{"oracle.parquet": frame}``.
    """
    path.mkdir(parents=True, exist_ok=True)
    tables: dict[str, pd.DataFrame | None] = {
        "customers.parquet": customers,
        "products.parquet": products,
        "holdings.parquet": holdings,
        "transactions.parquet": transactions,
        **(extra_files or {}),
    }
    for name, frame in tables.items():
        if frame is not None:
            frame.to_parquet(path / name, index=False)
    if meta is not None:
        (path / "dataset.json").write_text(json.dumps(dict(meta), indent=2), encoding="utf-8")
    return path


def write_frames(
    path: Path,
    frames: Mapping[str, pd.DataFrame],
    meta: Mapping[str, Any] | None = None,
    **extra: pd.DataFrame,
) -> Path:
    """``write_raw_dataset`` of a frames dict (``tiny_frames()`` shape; transactions optional); ``extra``
    frames are written as ``<name>.parquet``, e.g. ``oracle=frame``."""
    return write_raw_dataset(
        path,
        frames["customers"],
        frames["products"],
        frames["holdings"],
        frames.get("transactions"),
        meta=meta,
        extra_files={f"{k}.parquet": v for k, v in extra.items()},
    )


def write_tiny_dataset(path: Path, meta: Mapping[str, Any] | None = None) -> Path:
    """``tiny_frames()`` written to ``path`` (with transactions)."""
    return write_frames(path, tiny_frames(), meta)


def write_scale_dataset(path: Path, n_customers: int, n_transactions: int, n_products: int = 30) -> Path:
    """A large valid dataset generated by DuckDB (never in pandas), for ingest and dbt benchmarks.

    Each customer holds 4 distinct products (non-overlapping by construction, a third of them open);
    transactions pick customers by hash, a third without product; dates span 2018-01-01..~2022.

    Args:
        path: directory to create.
        n_customers: rows in customers (holdings get 4 x as many); >= 1.
        n_transactions: rows in transactions; >= 0.
        n_products: rows in products; >= 4.
    """
    import duckdb  # local: only benchmarks and slow tests need it here

    path.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("set enable_progress_bar = false")
    out = str(path).replace("'", "''")
    con.execute(
        f"""copy (select 'c' || i as customer_id, date '2018-01-01' + cast(i % 1500 as integer) as joined_on,
            case when i % 10 = 0 then null else 1940 + i % 65 end as birth_year,
            case when i % 7 = 0 then null else (i % 1000) * 97.5 end as income,
            ['mass', 'affluent', 'young'][1 + i % 3] as segment, ['north', 'south', null][1 + i % 3] as region
        from range({n_customers}) as t(i)) to '{out}/customers.parquet'"""
    )
    con.execute(
        f"""copy (select 'p' || i as product_id, 'Product ' || i as product_name,
            'cat' || (i % 5) as category,
            case when i % 4 = 0 then 18 end as min_age, case when i % 4 = 0 then 70 end as max_age
        from range({n_products}) as t(i)) to '{out}/products.parquet'"""
    )
    con.execute(
        f"""copy (select 'c' || i as customer_id, 'p' || ((i * 7 + k) % {n_products}) as product_id,
            date '2019-01-01' + cast((i * 13 + k * 101) % 700 as integer) as started_on,
            case when (i + k) % 3 = 0 then null
                else date '2019-01-01' + cast((i * 13 + k * 101) % 700 + 1 + i % 200 as integer)
            end as ended_on
        from range({n_customers}) as t(i), range(4) as s(k)) to '{out}/holdings.parquet'"""
    )
    con.execute(
        f"""copy (select 'c' || cast(hash(i) % {n_customers} as bigint) as customer_id,
            case when i % 3 = 0 then null else 'p' || (i % {n_products}) end as product_id,
            timestamp '2019-01-01' + to_seconds(cast(hash(i * 31) % 63000000 as bigint)) as occurred_at,
            round(hash(i * 17) % 100000 / 100.0 - 500, 2) as amount
        from range({n_transactions}) as t(i)) to '{out}/transactions.parquet'"""
    )
    con.close()
    return path
