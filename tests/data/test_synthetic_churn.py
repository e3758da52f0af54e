"""The synthetic bank's churn mechanism and its oracle (``churn_oracle.parquet``).

The oracle gives, per population customer and snapshot, the probability of the churn label (the dbt
project's ``inactivity`` rule over ``CHURN_HORIZON_MONTHS`` months: no transaction and no new holding).
Here the label is recomputed from the written transactions and holdings with DuckDB, and the oracle must
be calibrated in the large (mean probability = realised rate within 3 binomial standard errors), on the
customers at risk (a transaction in the last 3 months, the label model's population) and on the rest,
and must rank (realised rate rising across quintiles of the probability).
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from nextbest.ingest.synthetic import (
    CHURN_HORIZON_MONTHS,
    CHURN_ORACLE_SCHEMA,
    SyntheticSummary,
    churn_logit,
    generate_synthetic,
    quiet_month_probability,
)


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SyntheticSummary]:
    out = tmp_path_factory.mktemp("churn_bank")
    return out, generate_synthetic(out, customers=6000, months=12, seed=3, start_month=date(2023, 1, 1))


@pytest.fixture(scope="module")
def labelled(bank: tuple[Path, SyntheticSummary]) -> pd.DataFrame:
    """churn_oracle rows with y (no transaction and no holding start in the horizon) and at_risk."""
    path, _ = bank
    h = CHURN_HORIZON_MONTHS
    return duckdb.sql(f"""
        with oracle as (select * from read_parquet('{path / "churn_oracle.parquet"}')),
        txn as (
            select customer_id, last_day(cast(occurred_at as date)) as month_end
            from read_parquet('{path / "transactions.parquet"}')
        ),
        starts as (
            select customer_id, last_day(started_on) as month_end
            from read_parquet('{path / "holdings.parquet"}')
        ),
        busy as (
            select distinct oracle.customer_id, oracle.snapshot_on
            from oracle
            join (select * from txn union all select * from starts) as e
                on e.customer_id = oracle.customer_id
                and e.month_end > oracle.snapshot_on
                and e.month_end <= last_day(oracle.snapshot_on + interval {h} month)
        ),
        recent as (
            select distinct oracle.customer_id, oracle.snapshot_on
            from oracle
            join txn on txn.customer_id = oracle.customer_id
                and txn.month_end <= oracle.snapshot_on
                and txn.month_end > last_day(oracle.snapshot_on - interval 3 month)
        )
        select oracle.*, busy.customer_id is null as y, recent.customer_id is not null as at_risk
        from oracle
        left join busy using (customer_id, snapshot_on)
        left join recent using (customer_id, snapshot_on)
    """).df()


def test_the_oracle_file_has_its_schema_and_covers_the_snapshots_with_an_observed_horizon(
    bank: tuple[Path, SyntheticSummary], labelled: pd.DataFrame
) -> None:
    path, summary = bank
    written = duckdb.sql(f"select * from read_parquet('{path / 'churn_oracle.parquet'}') limit 0").arrow()
    assert written.schema.equals(CHURN_ORACLE_SCHEMA)
    snapshots = sorted(pd.to_datetime(labelled["snapshot_on"]).dt.date.unique())
    # month 0's end .. October's: every snapshot whose horizon (November, December) is generated
    assert snapshots[0] == date(2023, 1, 31) and snapshots[-1] == date(2023, 10, 31)
    assert len(labelled) == summary.churn_oracle_rows
    assert labelled["probability"].between(0, 1).all()
    assert (labelled["probability"] >= labelled["churn_hazard"] - 1e-6).all()  # churning is churning


@pytest.mark.parametrize("at_risk", [True, False])
def test_the_oracle_is_calibrated_in_the_large(labelled: pd.DataFrame, at_risk: bool) -> None:
    rows = labelled[labelled["at_risk"] == at_risk]
    p, y = rows["probability"].to_numpy(float), rows["y"].to_numpy(float)
    se = math.sqrt((p * (1 - p)).sum()) / len(p)
    assert len(rows) > 5000
    assert abs(p.mean() - y.mean()) < 3 * se, (p.mean(), y.mean(), se)


def test_the_oracle_ranks_churners(labelled: pd.DataFrame) -> None:
    rows = labelled[labelled["at_risk"]]
    quintile = pd.qcut(rows["probability"], 5, labels=False)
    rates = rows.groupby(quintile)["y"].mean().to_numpy()
    assert np.all(np.diff(rates) > 0), rates


def test_the_monthly_churn_rate_of_customers_at_risk_is_a_few_percent(labelled: pd.DataFrame) -> None:
    assert 0.01 < labelled.loc[labelled["at_risk"], "churn_hazard"].mean() < 0.05


def test_churners_close_every_holding_on_the_first_day_of_a_month(
    bank: tuple[Path, SyntheticSummary],
) -> None:
    """Customers owning nothing after all their open holdings ended on the same first day of a month,
    with no transaction from then on: about the number of churns the generator counted."""
    path, summary = bank
    left = duckdb.sql(f"""
        with h as (select * from read_parquet('{path / "holdings.parquet"}')),
        last_end as (
            select customer_id, max(ended_on) as day, bool_and(ended_on is not null) as all_closed
            from h group by customer_id
        ),
        closed_that_day as (
            select h.customer_id, count(*) as n from h join last_end using (customer_id)
            where h.ended_on = last_end.day group by h.customer_id
        )
        select count(*) from last_end join closed_that_day using (customer_id)
        where all_closed and day(last_end.day) = 1
            and not exists (
                select 1 from read_parquet('{path / "transactions.parquet"}') t
                where t.customer_id = last_end.customer_id and cast(t.occurred_at as date) >= last_end.day
            )
    """).fetchall()[0][0]
    assert summary.churns > 100
    # an ordinary closure also lands on a first day now and then (1 in ~30): a few more than the churns
    assert summary.churns <= left <= 1.15 * summary.churns


def test_churn_logit_and_quiet_month_known_answers() -> None:
    # one product, active this month, long tenure, age 40: the base logit
    base = churn_logit(np.array([1]), np.array([0]), np.array([24.0]), np.array([40.0]))
    # 4+ inactive months, new, young, 3 products: + 0.5 * 4 + 0.7 + 0.4 - 0.3 * 2
    worst = churn_logit(np.array([3]), np.array([9]), np.array([3.0]), np.array([25.0]))
    assert worst[0] - base[0] == pytest.approx(0.5 * 4 + 0.7 + 0.4 - 0.6)
    # no product, no candidate: always quiet; one product never closing with rate 1: exp(-1)
    lam = np.array([[1.0]])
    assert quiet_month_probability(np.zeros((1, 2)), np.array([[False]]), np.zeros((1, 1)), lam, 30)[0] == 1.0
    assert quiet_month_probability(np.zeros((1, 2)), np.array([[True]]), np.zeros((1, 1)), lam, 30)[0] == \
        pytest.approx(math.exp(-1))
    # closing surely after d ~ U{0..29} days: mean of exp(-d / 30); times no adoption of 0.1 and 0.2
    expected = np.mean(np.exp(-np.arange(30) / 30)) * 0.9 * 0.8
    got = quiet_month_probability(np.array([[0.1, 0.2]]), np.array([[True]]), np.ones((1, 1)), lam, 30)[0]
    assert got == pytest.approx(expected)
