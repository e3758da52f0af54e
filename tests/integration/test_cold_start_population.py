"""Customers who own nothing yet are ranked too: a hand-made contract dataset where half own nothing.

40 customers with integer ids, observed 2023-01-01 .. 2023-12-31, 4 products (one for adults only):
* 20 "owners" (ids 1..20) joined in 2022 and hold the current account since joining; ids 1..10 add a
  card in 2023-03 (adoptions), ids 11..14 close everything on 2023-06-15 and are never active again
  (dormant from the June snapshot on);
* 20 "prospects" (ids 21..40) joined on the 1st of month (id - 20) // 2 + 1 of 2023 and never hold
  anything; ids 21..30 make one transaction without a product in their join month.
Real ingest, real dbt build (whose singular test recomputes the population rule by brute force).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from nextbest.ingest.store import ingest_directory
from tests.data.raw_builders import write_raw_dataset
from tests.integration.dbt_fixtures import build, read_mart

pytestmark = pytest.mark.integration

PRODUCTS = ["1", "2", "3", "4"]  # current account, card (18+), saver, loan
SNAPSHOTS = [pd.Timestamp(dt.date(2023, m, 1)) + pd.offsets.MonthEnd(0) for m in range(1, 13)]


def prospect_join_month(customer: int) -> int:
    return (customer - 20 - 1) // 2 + 1


def frames() -> dict[str, pd.DataFrame]:
    customers = pd.DataFrame({
        "customer_id": list(range(1, 41)),
        "joined_on": [dt.date(2022, 6, 1)] * 20
        + [dt.date(2023, prospect_join_month(c), 1) for c in range(21, 41)],
        "birth_year": [1980] * 38 + [2010, 2010],  # ids 39 and 40 are minors: no card
        "income": [40_000.0] * 40,
        "segment": ["mass"] * 40,
        "region": ["north"] * 40,
    })
    products = pd.DataFrame({
        "product_id": [int(p) for p in PRODUCTS],
        "product_name": ["current account", "card", "saver", "loan"],
        "category": ["accounts", "cards", "savings", "loans"],
        "min_age": pd.array([None, 18, None, None], dtype="Int64"),
        "max_age": pd.array([None, None, None, None], dtype="Int64"),
    })
    holdings = pd.DataFrame(
        [(c, 1, dt.date(2022, 6, 1), dt.date(2023, 6, 15) if 11 <= c <= 14 else None) for c in range(1, 21)]
        + [(c, 2, dt.date(2023, 3, 10), None) for c in range(1, 11)],
        columns=["customer_id", "product_id", "started_on", "ended_on"],
    )
    transactions = pd.DataFrame({
        "customer_id": list(range(21, 31)),
        "product_id": pd.array([None] * 10, dtype="Int64"),
        "occurred_at": [pd.Timestamp(2023, prospect_join_month(c), 2, 12) for c in range(21, 31)],
        "amount": [25.0] * 10,
    })
    return {"customers": customers, "products": products, "holdings": holdings, "transactions": transactions}


def ingested(home: Path) -> Path:
    source = write_raw_dataset(home / "source", **frames(),
                               meta={"name": "half-cold", "observed_until": "2023-12-31"})
    ingest_directory(source, home / "raw")
    return home


def expected_population(prospect_window: int | None = None) -> set[tuple[str, pd.Timestamp]]:
    rows = set()
    for s in SNAPSHOTS:
        for c in range(1, 21):
            if not (11 <= c <= 14 and s.month >= 6):  # dormant after closing in June
                rows.add((str(c), s))
        for c in range(21, 41):
            join = prospect_join_month(c)
            if s.month >= join and (prospect_window is None or s.month - join < prospect_window):
                rows.add((str(c), s))
    return rows


def population(settings) -> set[tuple[str, pd.Timestamp]]:
    features = read_mart(settings, "feat_customer_monthly")
    snapshot = pd.to_datetime(features["event_timestamp"]) - pd.Timedelta(days=1)
    return set(zip(features["customer_id"], snapshot, strict=True))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    return build(ingested(tmp_path_factory.mktemp("half_cold")))


def test_every_joined_customer_who_is_not_dormant_is_in_the_population(built) -> None:
    assert population(built) == expected_population()


def test_a_prospect_has_a_candidate_row_for_every_eligible_product(built) -> None:
    candidates = read_mart(built, "fct_candidates")
    snapshot = pd.to_datetime(candidates["snapshot_on"])
    prospect = candidates[candidates["customer_id"] == "21"]  # joined 2023-01-01, never holds anything
    assert len(prospect) == 12 * 4
    minor = candidates[(candidates["customer_id"] == "40") & (snapshot == SNAPSHOTS[-1])]
    assert sorted(minor["product_id"]) == ["1", "3", "4"]  # no card under 18
    owner = candidates[(candidates["customer_id"] == "1") & (snapshot == SNAPSHOTS[-1])]
    assert sorted(owner["product_id"]) == ["3", "4"]


def test_half_of_the_ranking_groups_at_the_end_are_cold_start(built) -> None:
    features = read_mart(built, "feat_customer_monthly")
    last = features[pd.to_datetime(features["event_timestamp"]) == SNAPSHOTS[-1] + pd.Timedelta(days=1)]
    assert (last["count_products_owned"] == 0).sum() == 20
    assert (last["count_holdings_started_ever"] == 0).sum() == 20


def test_cross_sell_features_are_defined_for_a_customer_owning_nothing(built) -> None:
    pairs = read_mart(built, "feat_customer_product_monthly")
    cold = pairs[pairs["customer_id"].astype(int) > 20]
    assert len(cold) > 0
    assert (cold["max_transition_lift_from_owned"] == 1.0).all()
    assert (cold["sum_log_transition_lift_from_owned"] == 0.0).all()
    assert (cold["transition_lift_from_latest_started"] == 1.0).all()
    assert (cold["count_products_owned_in_category"] == 0).all()
    assert cold["age_gap_to_adopters_years"].notna().all()  # life stage still informative


def test_owners_of_the_current_account_look_likelier_to_take_the_card(built) -> None:
    """Ids 1..10 took the card the month after owning the current account (March 2023)."""
    pairs = read_mart(built, "feat_customer_product_monthly")
    at = pd.Timestamp(2023, 5, 1)  # the April snapshot, after the March adoptions are known
    owner = pairs[(pairs["customer_id"] == "15") & (pairs["product_id"] == "2")
                  & (pd.to_datetime(pairs["event_timestamp"]) == at)]
    assert owner["max_transition_lift_from_owned"].item() > 1.0


def test_a_prospect_window_drops_stale_registrations(tmp_path: Path) -> None:
    settings = build(ingested(tmp_path), {"prospect_window_months": 3}, select="+feat_customer_monthly")
    assert population(settings) == expected_population(prospect_window=3)
