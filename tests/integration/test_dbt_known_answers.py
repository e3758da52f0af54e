"""The dbt project on the hand-made fixture (tests/integration/dbt_fixtures.py): exact, hand-computed answers.

Real dbt + DuckDB; the marts are read back from their parquet files. Snapshots are written as month-end
dates; event_timestamp is the next midnight. Ages at the 2024 snapshots: C1 44, C2 14, C3 unknown, C5 24.
"""

from __future__ import annotations

from datetime import date, datetime

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nextbest.dbt import DbtError
from nextbest.marts import mart_path
from nextbest.settings import Settings
from tests.integration.dbt_fixtures import HOLDINGS, build, read_mart, write_raw

pytestmark = pytest.mark.integration

JAN, FEB, MAR, APR, MAY, JUN = (
    date(2024, 1, 31), date(2024, 2, 29), date(2024, 3, 31), date(2024, 4, 30), date(2024, 5, 31),
    date(2024, 6, 30),
)
SNAPSHOTS = [JAN, FEB, MAR, APR, MAY, JUN]


def ts(snapshot_on: date) -> pd.Timestamp:
    """The event_timestamp of a snapshot: the midnight after snapshot_on."""
    return pd.Timestamp(snapshot_on) + pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    home = tmp_path_factory.mktemp("dbt_known_answers")
    write_raw(home / "raw")
    return build(home)


@pytest.fixture(scope="module")
def marts(built: Settings) -> dict[str, pd.DataFrame]:
    settings = built
    names = ["dim_products", "fct_candidates", "fct_ranking_labels", "feat_customer_monthly",
             "feat_product_monthly", "feat_customer_product_monthly", "feat_customer_product_monthly_packed"]
    return {name: read_mart(settings, name) for name in names}


def row(frame: pd.DataFrame, **keys: object) -> pd.Series:
    """The single row of ``frame`` matching ``keys`` (fails if there is not exactly one)."""
    mask = pd.Series(True, index=frame.index)
    for column, value in keys.items():
        mask &= frame[column] == value
    matched = frame[mask]
    assert len(matched) == 1, f"{len(matched)} rows for {keys}"
    return matched.iloc[0]


def key_set(frame: pd.DataFrame) -> set[tuple[str, str, pd.Timestamp]]:
    return {(r.customer_id, r.product_id, pd.Timestamp(r.event_timestamp)) for r in frame.itertuples()}


# --- snapshots and population -------------------------------------------------------------------------

def test_snapshots_are_the_month_ends_of_the_observed_months(marts: dict[str, pd.DataFrame]) -> None:
    timestamps = sorted(pd.to_datetime(marts["feat_product_monthly"]["event_timestamp"]).unique())
    assert timestamps == [ts(s) for s in SNAPSHOTS]


def test_population_is_joined_customers_who_are_not_dormant(marts: dict[str, pd.DataFrame]) -> None:
    expected = (
        {("C1", ts(s)) for s in SNAPSHOTS}
        | {("C2", ts(s)) for s in [FEB, MAR, APR, MAY, JUN]}  # joined 2024-02-10
        | {("C3", ts(s)) for s in [JAN, MAR, APR, MAY, JUN]}  # dormant in Feb
        | {("C4", ts(s)) for s in [MAY, JUN]}  # joined 2024-05-20, never held anything: a prospect
        | {("C5", ts(s)) for s in SNAPSHOTS}
    )
    features = marts["feat_customer_monthly"]
    actual = {(r.customer_id, pd.Timestamp(r.event_timestamp)) for r in features.itertuples()}
    assert actual == expected


# --- candidates and labels -----------------------------------------------------------------------------

EXPECTED_CANDIDATES = (
    {("C1", "P2", ts(s)) for s in [JAN, FEB]}  # P2 owned from 2024-03-10; P3 ineligible (age 44)
    | {("C1", "P4", ts(s)) for s in SNAPSHOTS}
    | {("C2", "P3", ts(s)) for s in [FEB, MAR]}  # P2 ineligible (age 14), P3 owned from April
    | {("C2", "P4", ts(s)) for s in [FEB, MAR, APR, MAY, JUN]}
    | {("C2", "P1", ts(s)) for s in [MAY, JUN]}  # P1 closed on 2024-05-20
    | {("C3", "P1", ts(s)) for s in [JAN, MAR, APR, MAY, JUN]}  # unknown age: P2 and P3 ineligible
    | {("C3", "P4", ts(s)) for s in [MAR, APR]}  # P4 closed 2024-02-15, held again from 2024-05-02
    | {("C5", "P2", ts(s)) for s in [JAN, FEB, MAR, APR, MAY]}  # in and out within January: not owned
    | {("C5", "P4", ts(s)) for s in SNAPSHOTS}
    | {("C4", p, ts(s)) for p in ["P1", "P2", "P4"] for s in [MAY, JUN]}  # a prospect (age 34: not P3)
)


def test_candidates_exclude_owned_and_ineligible_products(marts: dict[str, pd.DataFrame]) -> None:
    candidates = marts["fct_candidates"]
    assert len(EXPECTED_CANDIDATES) == 41
    assert key_set(candidates) == EXPECTED_CANDIDATES
    assert len(candidates) == 41


def test_candidates_carry_the_snapshot_date(marts: dict[str, pd.DataFrame]) -> None:
    candidates = marts["fct_candidates"]
    snapshot = pd.to_datetime(candidates["snapshot_on"])
    assert (pd.to_datetime(candidates["event_timestamp"]) - snapshot == pd.Timedelta(days=1)).all()


def test_labels_cover_candidates_of_the_labelled_snapshots(marts: dict[str, pd.DataFrame]) -> None:
    labels = marts["fct_ranking_labels"]
    expected_keys = {k for k in EXPECTED_CANDIDATES if k[2] != ts(JUN)}  # June's label window is open
    assert key_set(labels) == expected_keys
    assert len(labels) == 33


def test_label_is_one_exactly_for_a_start_in_the_next_month(marts: dict[str, pd.DataFrame]) -> None:
    labels = marts["fct_ranking_labels"]
    positives = key_set(labels[labels["label"] == 1])
    assert positives == {
        ("C1", "P2", ts(FEB)),  # started 2024-03-10
        ("C2", "P3", ts(MAR)),  # started 2024-04-05 (not a positive at February: two months later)
        ("C3", "P4", ts(APR)),  # held again from 2024-05-02
        ("C5", "P2", ts(MAY)),  # held again from 2024-06-10
    }
    assert set(labels["label"]) == {0, 1}


def test_longer_horizon_and_burn_in_change_labels(tmp_path) -> None:
    write_raw(tmp_path / "raw")
    settings = build(tmp_path, {"horizon_months": 2, "burn_in_months": 2}, select="+fct_ranking_labels")
    labels = read_mart(settings, "fct_ranking_labels")
    # horizon 2: windows must end by 2024-06-30 -> snapshots up to April; burn-in 2: from February on,
    # and per customer from their second month (C2 joined 2024-02-10: labelled from March)
    assert sorted(pd.to_datetime(labels["event_timestamp"]).unique()) == [ts(s) for s in [FEB, MAR, APR]]
    positives = key_set(labels[labels["label"] == 1])
    assert positives == {
        ("C1", "P2", ts(FEB)),
        ("C2", "P3", ts(MAR)),  # April; C2's February is burn-in
        ("C3", "P4", ts(MAR)),
        ("C3", "P4", ts(APR)),
        ("C5", "P2", ts(APR)),  # June is within two months of April
    }


# --- customer features ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("customer_id", "snapshot_on", "expected"),
    [
        ("C1", FEB, {"tenure_months": 8, "age_years": 44, "count_products_owned": 1,
                     "sum_spend_last_1_months": 50.0, "sum_spend_last_3_months": 150.0,
                     "count_transactions_last_12_months": 2, "months_since_last_transaction": 0}),
        ("C1", MAR, {"count_products_owned": 2, "count_products_added_last_3_months": 1,
                     "count_products_added_last_12_months": 2, "sum_spend_last_1_months": 0.0,
                     "count_transactions_last_1_months": 0, "months_since_last_transaction": 1}),
        ("C1", APR, {"sum_spend_last_1_months": 30.0, "sum_spend_last_3_months": 80.0,
                     "sum_spend_last_12_months": 180.0, "count_transactions_last_3_months": 2}),
        ("C3", JAN, {"count_products_owned": 1, "count_products_added_last_12_months": 0,
                     "tenure_months": 12, "months_since_last_transaction": None}),
        ("C3", MAR, {"count_products_owned": 0, "count_products_dropped_last_3_months": 1,
                     "sum_spend_last_1_months": 20.0, "months_since_last_transaction": 0, "age_years": None,
                     "income": None, "segment": "mass"}),
        ("C5", JAN, {"tenure_months": 0, "count_products_owned": 1, "count_products_added_last_3_months": 2,
                     "count_products_dropped_last_3_months": 1, "count_products_dropped_last_12_months": 1}),
        ("C5", JUN, {"count_products_owned": 2, "sum_spend_last_1_months": 10.0,
                     "count_products_dropped_last_3_months": 0, "count_products_dropped_last_6_months": 1}),
        ("C2", MAY, {"count_products_owned": 1, "count_products_dropped_last_3_months": 1,
                     "months_since_last_transaction": 2, "count_transactions_last_3_months": 1,
                     "segment": None, "region": None}),
        ("C1", APR, {"count_holdings_started_ever": 2, "months_since_last_holding_start": 1,
                     "label_month_of_year": 5}),
        ("C4", MAY, {"count_products_owned": 0, "count_holdings_started_ever": 0,
                     "months_since_last_holding_start": None, "label_month_of_year": 6, "tenure_months": 0}),
        ("C3", MAR, {"count_holdings_started_ever": 1, "months_since_last_holding_start": 14}),
    ],
)
def test_customer_features(marts: dict[str, pd.DataFrame], customer_id: str, snapshot_on: date,
                           expected: dict[str, object]) -> None:
    actual = row(marts["feat_customer_monthly"], customer_id=customer_id, event_timestamp=ts(snapshot_on))
    for column, value in expected.items():
        if value is None:
            assert pd.isna(actual[column]), column
        else:
            assert actual[column] == value, column


def test_customer_feature_columns(marts: dict[str, pd.DataFrame]) -> None:
    features = marts["feat_customer_monthly"]
    assert features.columns[:2].tolist() == ["customer_id", "event_timestamp"]
    assert "snapshot_on" not in features.columns


# --- product features ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("product_id", "snapshot_on", "expected"),
    [
        ("P1", JAN, {"count_owners": 2, "share_population_owning": 2 / 3,
                     "adoption_rate_last_1_months": None}),
        ("P1", MAR, {"count_owners": 3, "share_population_owning": 0.75}),
        ("P4", MAY, {"count_owners": 1, "share_population_owning": 0.2,  # C1, C2, C3, C4, C5
                     "adoption_rate_last_1_months": 0.25}),  # 1 of the 4 April candidates started in May
        ("P2", MAR, {"adoption_rate_last_1_months": 0.5, "adoption_rate_last_3_months": None}),
        ("P2", APR, {"adoption_rate_last_3_months": 0.5}),  # January candidates C1, C5; C1 started in March
        # May candidates C5 (started P2 in June) and the prospect C4
        ("P2", JUN, {"adoption_rate_last_1_months": 0.5, "adoption_rate_last_3_months": 1.0,
                     "adoption_rate_last_12_months": None, "popularity_trend_3_vs_12_months": None}),
        ("P3", APR, {"adoption_rate_last_1_months": 1.0, "max_age": 17, "min_age": None}),
    ],
)
def test_product_features(marts: dict[str, pd.DataFrame], product_id: str, snapshot_on: date,
                          expected: dict[str, object]) -> None:
    actual = row(marts["feat_product_monthly"], product_id=product_id, event_timestamp=ts(snapshot_on))
    for column, value in expected.items():
        if value is None:
            assert pd.isna(actual[column]), column
        else:
            assert actual[column] == pytest.approx(value), column


def test_product_features_one_row_per_product_and_snapshot(marts: dict[str, pd.DataFrame]) -> None:
    assert len(marts["feat_product_monthly"]) == 4 * 6


# --- customer x product features -----------------------------------------------------------------------

def _age_log_lift(age: float, starts: list[float], population: list[float], prior: float = 20.0) -> float:
    """ln N(age; adopters' mean, sd) - ln N(age; population's mean, sd), the adopters' moments shrunk
    towards the population's by ``prior`` pseudo-adopters (int_product_adopter_profiles)."""
    mean, var = np.mean(population), np.var(population)
    adopter_mean = (sum(starts) + prior * mean) / (len(starts) + prior)
    adopter_square = (sum(a * a for a in starts) + prior * (var + mean**2)) / (len(starts) + prior)
    adopter_var = adopter_square - adopter_mean**2
    typical_among_adopters = -0.5 * (age - adopter_mean) ** 2 / adopter_var - 0.5 * np.log(adopter_var)
    typical_among_all = -0.5 * (age - mean) ** 2 / var - 0.5 * np.log(var)
    return typical_among_adopters - typical_among_all


# P2 at April: started by C5 at 24 (January) and C1 at 44 (March); April's population with a known age:
# C1 44, C2 14, C5 24
P2_APRIL_AGE_24_LOG_LIFT = _age_log_lift(24, starts=[24, 44], population=[44, 14, 24])


@pytest.mark.parametrize(
    ("customer_id", "product_id", "snapshot_on", "expected"),
    [
        ("C5", "P2", JAN, {"is_previously_held": 1, "months_since_last_held": 0}),  # closed 2024-01-25
        ("C5", "P2", FEB, {"is_previously_held": 1, "months_since_last_held": 1,
                           "share_segment_owning": 0.0}),
        ("C3", "P4", MAR, {"is_previously_held": 1, "months_since_last_held": 1}),
        ("C3", "P1", MAR, {"is_previously_held": 0, "months_since_last_held": None,
                           "share_segment_owning": 0.5,  # mass at March: C1 (owns P1) and C3
                           "sum_spend_category_last_12_months": 0.0}),  # C3's transaction has no product
        ("C1", "P4", JAN, {"share_segment_owning": 0.5}),  # mass at January: C1, C3 (owns P4)
        ("C1", "P4", MAY, {"share_segment_owning": 0.5}),
        ("C2", "P4", FEB, {"share_segment_owning": 0.0}),  # null segment is its own group: only C2
        ("C2", "P1", MAY, {"is_previously_held": 1, "months_since_last_held": 0,
                           "sum_spend_category_last_12_months": 40.0}),  # accounts spend on 2024-03-10
        ("C2", "P1", JUN, {"months_since_last_held": 1, "sum_spend_category_last_12_months": 40.0}),
        ("C1", "P2", FEB, {"sum_spend_category_last_12_months": 0.0}),  # card spend only from April
        ("C2", "P1", JUN, {"sum_spend_category_last_3_months": 0.0,  # the March spend is 3 months back
                           "count_transactions_category_last_3_months": 0,
                           "count_products_owned_in_category": 0}),
        ("C2", "P1", MAY, {"sum_spend_category_last_3_months": 40.0,
                           "count_transactions_category_last_3_months": 1,
                           # C2's only spend on a product is this March one: all of it on accounts
                           "share_spend_category_last_3_months": 1.0,
                           "share_spend_category_last_12_months": 1.0}),
        ("C2", "P1", JUN, {"share_spend_category_last_3_months": 0.0,  # nothing spent in April..June
                           "share_spend_category_last_12_months": 1.0}),
        # C1 spent on accounts and cards, never on loans: a share of 0
        ("C1", "P4", APR, {"share_spend_category_last_3_months": 0.0,
                           "share_spend_category_last_12_months": 0.0}),
        # cross-sell, P1 -> P2 at April from January..March: owners of P1 not owning P2 were 2 + 3 + 2
        # customer-months, one of whom (C1, February) started P2 the next month; P2's base rate among the
        # population not owning it: 1 adoption in 3 + 3 + 3 customer-months. Prior 20 at the base rate:
        # rate (1 + 20 / 9) / (7 + 20) = 29 / 243, lift = 29 / 243 * 9 = 261 / 243.
        ("C5", "P2", APR, {"max_transition_lift_from_owned": 261 / 243,
                           "sum_log_transition_lift_from_owned": np.log(261 / 243),
                           "transition_lift_from_latest_started": 261 / 243,
                           # owned sets at April: C1 {P1, P2}, C2 {P1, P3}, C5 {P1}:
                           # (1 + 20) / (3 * 1 / 3 + 20); C5 owns P1 only: mean log = ln 1
                           "max_coownership_lift_with_owned": 1.0,
                           "mean_log_coownership_lift_with_owned": 0.0}),
        # a sequence, P1 -> P2 at March from January..February: owners of P1 not owning P2 2 + 3, C1 adopting
        # in March; base 1 in 3 + 3: rate (1 + 20 / 6) / (5 + 20) = 13 / 75, lift 26 / 25. Of them, those
        # whose latest start is P1 from the last 3 months: C5 (January; started P1 in January), C2 and C5
        # (February; C2 started P1 in February), none adopting: shrunk towards the pair's rate,
        # (0 + 20 * 13 / 75) / (3 + 20) = 52 / 345, lift 52 / 345 * 6 = 104 / 115. C5 started P1 in January,
        # 2 months before March: recent
        ("C5", "P2", MAR, {"transition_lift_from_latest_started": 26 / 25,
                           "transition_lift_from_recent_start": 104 / 115}),
        ("C5", "P2", APR, {"transition_lift_from_recent_start": 1.0}),  # January is 3 months back: not recent
        # every start of the last 12 months, owned or not: at June, C2 started P3 2 months before (April)
        # and P1 4 months before (February; closed on 2024-05-20, so no longer in the owned set).
        # P1 -> P4 at June from January..May: owners of P1 not owning P4 2 + 3 + 3 + 3 + 2, none adopting P4;
        # P4's base rate 1 adoption (C3, May) in 2 + 4 + 4 + 4 + 4: rate (0 + 20 / 18) / (13 + 20), lift
        # 20 / 33. Starters of P1 3-5 months before (band 3): C5 in April, C2 and C5 in May, none adopting:
        # shrunk towards that rate, (0 + 20 * 20 / 33 / 18) / (3 + 20) * 18 = 400 / 759. P3 -> P4: owners of
        # P3 (C2 in April and May) 2, none adopting: (20 / 18) / 22 * 18 = 10 / 11, and no one started P3 2
        # months before a snapshot until June: the plain lift
        ("C2", "P4", JUN, {"max_transition_lift_from_starts_last_12_months": 10 / 11,
                           "sum_log_transition_lift_from_starts_last_12_months":
                               np.log(400 / 759) + np.log(10 / 11)}),
        ("C3", "P1", APR, {"max_transition_lift_from_starts_last_12_months": 1.0,  # P4 started in 2023-01
                           "sum_log_transition_lift_from_starts_last_12_months": 0.0}),
        # a customer owning nothing relates to nothing: neutral values, not nulls
        ("C3", "P1", APR, {"max_transition_lift_from_owned": 1.0, "sum_log_transition_lift_from_owned": 0.0,
                           "transition_lift_from_latest_started": 1.0,
                           "max_coownership_lift_with_owned": 1.0,
                           "mean_log_coownership_lift_with_owned": 0.0}),
        ("C4", "P2", MAY, {"max_transition_lift_from_owned": 1.0, "sum_log_transition_lift_from_owned": 0.0}),
        # life stage: no P4 adopter with a known age by January (C3's birth year is unknown), so the profile
        # is the prior: the January population's ages (C1 44, C5 24): mean 34, sd 10
        ("C1", "P4", JAN, {"age_gap_to_adopters_years": 10.0, "age_z_score_among_adopters": 1.0}),
        ("C5", "P4", JAN, {"age_gap_to_adopters_years": -10.0, "age_z_score_among_adopters": -1.0}),
        ("C1", "P4", JAN, {"age_log_lift_among_adopters": 0.0}),  # the prior alone: as typical as anyone
        ("C3", "P4", MAR, {"age_gap_to_adopters_years": None,  # unknown age
                           "age_log_lift_among_adopters": None}),
        ("C5", "P2", APR, {"age_log_lift_among_adopters": P2_APRIL_AGE_24_LOG_LIFT}),
        # popularity at the same ownership breadth, P4 at June from the March..May candidates: 1 of the
        # 12 adopted the month after (C3, owning nothing in April); breadth 0 (owning nothing): C3 in March
        # and April, C4 in May, 1 adoption: (1 + 20 / 12) / (3 + 20) = 8 / 69, lift 8 / 69 * 12 = 32 / 23;
        # breadth 1: 5 candidates, none adopted: (20 / 12) / 25 = 1 / 15; breadth 2 (2-3 owned): 4, none
        ("C4", "P4", JUN, {"adoption_rate_same_breadth_last_3_months": 8 / 69,
                           "adoption_lift_same_breadth_last_3_months": 32 / 23}),
        ("C2", "P4", JUN, {"adoption_rate_same_breadth_last_3_months": 1 / 15,
                           "adoption_lift_same_breadth_last_3_months": 0.8}),
        ("C1", "P4", JUN, {"adoption_rate_same_breadth_last_3_months": 5 / 72,
                           "adoption_lift_same_breadth_last_3_months": 5 / 6}),
    ],
)
def test_customer_product_features(marts: dict[str, pd.DataFrame], customer_id: str, product_id: str,
                                   snapshot_on: date, expected: dict[str, object]) -> None:
    actual = row(marts["feat_customer_product_monthly"], customer_id=customer_id, product_id=product_id,
                 event_timestamp=ts(snapshot_on))
    for column, value in expected.items():
        if value is None:
            assert pd.isna(actual[column]), column
        else:
            assert actual[column] == pytest.approx(value), column


def test_customer_product_features_have_the_candidate_keys(marts: dict[str, pd.DataFrame]) -> None:
    assert key_set(marts["feat_customer_product_monthly"]) == EXPECTED_CANDIDATES
    assert len(marts["feat_customer_product_monthly"]) == len(EXPECTED_CANDIDATES)


NEUTRAL_CROSS_SELL = {
    "max_transition_lift_from_owned": 1.0, "sum_log_transition_lift_from_owned": 0.0,
    "transition_lift_from_latest_started": 1.0, "transition_lift_from_recent_start": 1.0,
    "max_transition_lift_from_starts_last_12_months": 1.0,
    "sum_log_transition_lift_from_starts_last_12_months": 0.0,
    "max_coownership_lift_with_owned": 1.0,
    "mean_log_coownership_lift_with_owned": 0.0,
}


def test_cross_sell_covers_the_most_owned_products_of_a_catalogue_over_the_limit(
    tmp_path, marts: dict[str, pd.DataFrame]
) -> None:
    write_raw(tmp_path / "raw")
    settings = build(tmp_path, {"cross_sell_max_products": 1}, select="+feat_customer_product_monthly")
    covered = read_mart(settings, "int_products_cross_sold")
    assert covered.groupby("month_index").size().max() == 1  # the most owned product of each snapshot
    keys = read_mart(settings, "int_products_keyed")
    covered = covered.merge(keys[["product_key", "product_id"]], on="product_key")
    sets = read_mart(settings, "int_customer_owned_sets").explode("owned_product_keys")
    members = sets.merge(covered, left_on=["owned_product_keys", "month_index"],
                         right_on=["product_key", "month_index"], how="left")
    assert members["product_id"].notna().all()  # owned sets hold covered products only
    pairs = read_mart(settings, "feat_customer_product_monthly")
    key = ["customer_id", "product_id", "month_index"]
    covered_keys = covered[["product_id", "month_index"]].assign(is_covered=True)
    pairs = pairs.merge(covered_keys, on=key[1:], how="left")
    uncovered = pairs[pairs["is_covered"].isna()]
    assert len(uncovered) > 0
    for column, value in NEUTRAL_CROSS_SELL.items():
        assert (uncovered[column] == value).all(), column
    # every other feature is the one of the build covering the whole catalogue
    full = marts["feat_customer_product_monthly"].set_index(key).sort_index()
    limited = pairs.set_index(key).sort_index()[full.columns]
    others = [c for c in full.columns if c not in NEUTRAL_CROSS_SELL]
    pd.testing.assert_frame_equal(limited[others], full[others], check_dtype=False)


# --- the packed (online) layout of the customer x product features ----------------------------------------

def packed_row(marts: dict[str, pd.DataFrame], customer_id: str, snapshot_on: date) -> dict[str, list]:
    actual = row(marts["feat_customer_product_monthly_packed"], customer_id=customer_id,
                 event_timestamp=ts(snapshot_on))
    return {k: list(v) for k, v in actual.items() if k not in ("customer_id", "event_timestamp")}


def test_packed_model_has_one_row_per_population_customer_and_snapshot(
        marts: dict[str, pd.DataFrame]) -> None:
    packed, customers = marts["feat_customer_product_monthly_packed"], marts["feat_customer_monthly"]
    keys = {(r.customer_id, pd.Timestamp(r.event_timestamp)) for r in packed.itertuples()}
    assert keys == {(r.customer_id, pd.Timestamp(r.event_timestamp)) for r in customers.itertuples()}
    assert len(packed) == 24


@pytest.mark.parametrize(
    ("customer_id", "snapshot_on", "products"),
    [("C1", JAN, ["P2", "P4"]), ("C1", MAR, ["P4"]), ("C2", MAR, ["P3", "P4"]), ("C2", MAY, ["P1", "P4"]),
     ("C3", APR, ["P1", "P4"]), ("C5", JUN, ["P4"])],
)
def test_packed_model_lists_the_candidates_sorted(marts: dict[str, pd.DataFrame], customer_id: str,
                                                  snapshot_on: date, products: list[str]) -> None:
    assert packed_row(marts, customer_id, snapshot_on)["candidate_product_ids"] == products


def test_packed_lists_are_aligned_with_the_products_and_encode_null_as_nan(
        marts: dict[str, pd.DataFrame]) -> None:
    c5_feb = packed_row(marts, "C5", FEB)  # candidates P2 (held in January) and P4
    assert c5_feb["candidate_product_ids"] == ["P2", "P4"]
    assert c5_feb["is_previously_held"] == [1.0, 0.0]
    assert c5_feb["months_since_last_held"][0] == 1.0 and np.isnan(c5_feb["months_since_last_held"][1])
    assert c5_feb["share_segment_owning"][0] == 0.0
    c3_mar = packed_row(marts, "C3", MAR)  # candidates P1 (never held) and P4 (closed in February)
    assert c3_mar["candidate_product_ids"] == ["P1", "P4"]
    assert np.isnan(c3_mar["months_since_last_held"][0]) and c3_mar["months_since_last_held"][1] == 1.0
    assert c3_mar["share_segment_owning"][0] == pytest.approx(0.5)


MONTH_ORDERED_TABLES = [
    "int_customers_in_population", "int_owned_sets_cross_sold", "int_customer_category_activity_windowed"
]


@pytest.mark.parametrize("table", MONTH_ORDERED_TABLES)
def test_tables_the_packer_reads_a_month_at_a_time_are_stored_in_month_order(
    built: Settings, table: str
) -> None:
    """The packer computes the pair view one snapshot at a time; the tables it joins on month_index are
    written in month order so that DuckDB's row-group statistics skip the other months (rowid: the
    physical row order)."""
    with duckdb.connect(str(built.build_dir / "nextbest.duckdb"), read_only=True) as con:
        months = [m for (m,) in con.sql(f"select month_index from {table} order by rowid").fetchall()]
    assert len(set(months)) > 1 and months == sorted(months)


@pytest.mark.parametrize(("divisor", "reported"), [(1, "3 results"), (2, "1 result")])
def test_unpacks_to_fails_on_each_packed_row_that_differs_from_the_pair_model(
    built: Settings, divisor: int, reported: str
) -> None:
    """The packed file corrupted in three places (a value changed in one list, C5's; one candidate dropped
    from every list of another row, C1's; a third row's first candidate listed twice, values and all,
    lengths still aligned, C3's): the build's unpacks_to test reports exactly those three. With
    unpacks_to_sample_divisor 2 it checks the middle half of the (sampled) customers in id order, C2 and
    C3, and reports C3's row only."""
    path = mart_path(built, "feat_customer_product_monthly_packed")
    original = pq.read_table(path)
    rows = original.to_pylist()
    for r in rows:
        if r["customer_id"] == "C5" and r["event_timestamp"] == ts(FEB):
            assert r["is_previously_held"] == [1.0, 0.0]
            r["is_previously_held"] = [0.0, 0.0]
        if r["customer_id"] == "C1" and r["event_timestamp"] == ts(JAN):
            assert r["candidate_product_ids"] == ["P2", "P4"]
            for name in original.column_names[2:]:
                r[name] = r[name][:1]
        if r["customer_id"] == "C3" and r["event_timestamp"] == ts(MAR):
            assert r["candidate_product_ids"] == ["P1", "P4"]
            for name in original.column_names[2:]:
                r[name] = r[name][:1] + r[name]
    try:
        pq.write_table(pa.Table.from_pylist(rows, schema=original.schema), path)
        with pytest.raises(DbtError, match=f"Got {reported}") as failed:
            build(built.home, {"unpacks_to_sample_divisor": divisor}, select="test_name:unpacks_to")
        assert "unpacks_to_feat_customer_product_monthly_packed" in str(failed.value)
    finally:
        pq.write_table(original, path)
    build(built.home, {"unpacks_to_sample_divisor": divisor}, select="test_name:unpacks_to")  # restored


def test_point_in_time_guard_reports_each_wrong_feature_and_candidate(built: Settings) -> None:
    """feat_customer_monthly corrupted to say C1 owned 2 products at January (P1 only: P2 starts in March),
    and fct_candidates given P1, which C1 owns, as a January candidate: assert_no_feature_after_snapshot
    (every fixture customer is in its sample) returns exactly those 2 rows, and passes once restored."""
    features_path = mart_path(built, "feat_customer_monthly")
    candidates_path = mart_path(built, "fct_candidates")
    features, candidates = pq.read_table(features_path), pq.read_table(candidates_path)
    wrong = features.to_pandas()
    c1_jan = (wrong["customer_id"] == "C1") & (wrong["event_timestamp"] == ts(JAN))
    assert wrong.loc[c1_jan, "count_products_owned"].tolist() == [1]
    wrong.loc[c1_jan, "count_products_owned"] = 2
    extra = candidates.to_pandas()
    owned = extra[(extra["customer_id"] == "C1") & (extra["event_timestamp"] == ts(JAN))].head(1)
    extra = pd.concat([extra, owned.assign(product_id="P1")], ignore_index=True)
    try:
        for frame, original, path in ((wrong, features, features_path), (extra, candidates, candidates_path)):
            pq.write_table(pa.Table.from_pandas(frame, schema=original.schema, preserve_index=False), path)
        with pytest.raises(DbtError, match="Got 2 results") as failed:
            build(built.home, select="assert_no_feature_after_snapshot")
        assert "assert_no_feature_after_snapshot" in str(failed.value)
    finally:
        pq.write_table(features, features_path)
        pq.write_table(candidates, candidates_path)
    build(built.home, select="assert_no_feature_after_snapshot")


def test_population_guard_reports_an_open_product_without_its_candidate_row(built: Settings) -> None:
    """int_candidates_eligible without C1's January candidate P2 (open: C1 owns P1 only then): the
    population guard (assert_population_is_every_joined_customer_not_dormant, every fixture customer in its
    sample) returns exactly that row, and passes once restored."""
    database = str(built.build_dir / "nextbest.duckdb")
    the_row = """
        from int_candidates_eligible
        where customer_key = (select customer_key from int_customers_keyed where customer_id = 'C1')
            and product_key = (select product_key from int_products_keyed where product_id = 'P2')
            and month_index = (select month_index from int_snapshots_spined where snapshot_on = '2024-01-31')
    """
    with duckdb.connect(database) as con:
        dropped = con.sql(f"select * {the_row}").df()
        assert len(dropped) == 1
        con.execute(f"delete {the_row}")
    try:
        with pytest.raises(DbtError, match="Got 1 result") as failed:
            build(built.home, select="assert_population_is_every_joined_customer_not_dormant")
        assert "assert_population_is_every_joined_customer_not_dormant" in str(failed.value)
    finally:
        with duckdb.connect(database) as con:
            con.register("dropped", dropped)
            con.execute("insert into int_candidates_eligible select * from dropped")
            # stored in month order again, as the model writes it (the packer's row-group skipping)
            con.execute("create or replace table int_candidates_eligible as"
                        " select * from int_candidates_eligible order by month_index")
    build(built.home, select="assert_population_is_every_joined_customer_not_dormant")


@pytest.mark.parametrize("threads", [1, 2])
def test_pair_view_column_tests_run_on_the_sampled_customers_and_fail_on_a_bad_value(
    built: Settings, threads: int
) -> None:
    """The pair view's column tests have where: "__sampled_customers__" (every fixture customer: modulo 1).
    With one dbt thread each (the 5 accepted_range tests run here) reads the view's sampled rows from
    the one table sampled_relation fills per dbt invocation (gone after it); with two, each filters the
    view by a literal list of the customers. With P1's owner counts raised above its population
    counts, share_segment_owning exceeds 1 on each P1 candidate that has a count, and the accepted_range
    test reports exactly those rows; restored, the next invocation samples the view again and passes."""
    database = str(built.build_dir / "nextbest.duckdb")
    with duckdb.connect(database, read_only=True) as con:
        expected = con.sql(
            "select count(*) from feat_customer_product_monthly"
            " where product_id = 'P1' and share_segment_owning is not null"
        ).fetchall()[0][0]
    assert expected > 0
    update = "update int_product_ownership_counted set count_owners = count_owners {} where product_id = 'P1'"
    select = "feat_customer_product_monthly,test_name:accepted_range"
    with duckdb.connect(database) as con:
        con.execute(update.format("+ count_population + 1"))
    try:
        with pytest.raises(DbtError, match=f"Got {expected} results") as failed:
            build(built.home, select=select, threads=threads)
        assert "accepted_range_feat_customer_product_monthly_share_segment_owning" in str(failed.value)
    finally:
        with duckdb.connect(database) as con:
            con.execute(update.format("- count_population - 1"))
    compiled = list(built.build_dir.glob("dbt_target/compiled/**/feat_customer_product_monthly.yml/*.sql"))
    sample = '"test_samples"."feat_customer_product_monthly"' if threads == 1 else "customer_id in ('C1', "
    ranges = [f for f in compiled if f.name.startswith("accepted_range")]  # compiled by this invocation
    assert len(compiled) == 18 and len(ranges) == 5 and all(sample in f.read_text() for f in ranges)
    if threads == 2:  # and on the view's customer_key (int_customers_keyed: C1 is 1), which reaches retrieval
        assert all("and customer_key in (1, 2, " in f.read_text() for f in ranges)
    build(built.home, select=select, threads=threads)  # restored: passes
    with duckdb.connect(database, read_only=True) as con:
        schemas = con.sql("select schema_name from duckdb_schemas()").fetchall()
    assert ("test_samples",) not in schemas


def test_dim_products(marts: dict[str, pd.DataFrame]) -> None:
    products = marts["dim_products"].set_index("product_id")
    assert sorted(products.index) == ["P1", "P2", "P3", "P4"]
    assert products.loc["P2", "min_age"] == 18
    assert products.loc["P3", "max_age"] == 17
    assert products.loc["P3", "category"] == "savings"


# --- the candidate retrieval stage of large catalogues -------------------------------------------------

def test_without_retrieval_every_eligible_candidate_is_kept_and_nothing_is_counted(
        built: Settings, marts: dict[str, pd.DataFrame]) -> None:
    """4 products, at most candidate_retrieval_above_products (1,000): the stage is off."""
    recall = read_mart(built, "fct_candidate_retrieval_recall")
    assert recall.empty and "count_adoptions_retrieved" in recall.columns
    eligible = read_mart(built, "int_candidates_eligible")
    assert len(marts["fct_candidates"]) == len(eligible)


@pytest.fixture(scope="module")
def retrieval_built(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The fixture with a catalogue of 4 over a threshold of 2: each customer-month keeps its 1 best."""
    home = tmp_path_factory.mktemp("dbt_retrieval")
    write_raw(home / "raw")
    return build(home, {"candidate_retrieval_above_products": 2, "candidate_retrieval_top_n": 1})


def test_retrieval_keeps_each_customer_months_best_ranked_eligible_candidate(
        retrieval_built: Settings, marts: dict[str, pd.DataFrame]) -> None:
    settings = retrieval_built
    ranked = read_mart(settings, "int_products_ranked_by_recent_adoption")
    keys = read_mart(settings, "int_products_keyed")[["product_key", "product_id"]]
    spine = read_mart(settings, "int_snapshots_spined")[["month_index", "event_timestamp"]]
    ranked = ranked.merge(keys, on="product_key").merge(spine, on="month_index")
    ranked["event_timestamp"] = pd.to_datetime(ranked["event_timestamp"])
    # the exhaustive build's candidates (the module's other build), each with its product's rank
    every = marts["fct_candidates"].assign(event_timestamp=lambda f: pd.to_datetime(f["event_timestamp"]))
    every = every.merge(ranked[["product_id", "event_timestamp", "retrieval_rank"]],
                        on=["product_id", "event_timestamp"])
    best = every.sort_values("retrieval_rank").groupby(["customer_id", "event_timestamp"]).head(1)
    kept = read_mart(settings, "fct_candidates")
    assert key_set(kept) == key_set(best)
    assert kept.groupby(["customer_id", "event_timestamp"]).size().max() == 1
    # the online lists and the pair features hold the kept candidates only
    packed = read_mart(settings, "feat_customer_product_monthly_packed")
    listed = {(r.customer_id, p, pd.Timestamp(r.event_timestamp))
              for r in packed.itertuples() for p in r.candidate_product_ids}
    assert listed == key_set(kept)
    assert key_set(read_mart(settings, "feat_customer_product_monthly")) == key_set(kept)


def test_retrieval_stage_is_a_window_not_a_top_n_aggregate_of_whole_rows(retrieval_built: Settings) -> None:
    """DuckDB turns a row_number() <= n filter into an aggregate keeping each partition's top n rows in
    memory (arg_min with n), which ran a 35M-candidate labels mart out of memory; rank() stays a window."""
    database = str(retrieval_built.build_dir / "nextbest.duckdb")
    with duckdb.connect(database, read_only=True) as con:
        rows = con.sql("explain select * from int_candidates_retrieved").fetchall()
    plan = "\n".join(row[1] for row in rows)
    assert "rank() over" in plan.lower() and "arg_min" not in plan.lower()


def test_retrieval_recall_counts_each_groups_adoptions_the_stage_kept(
        retrieval_built: Settings, marts: dict[str, pd.DataFrame]) -> None:
    """Per customer x labelled snapshot: the exhaustive build's candidates and positives, and the
    retrieval build's."""
    settings = retrieval_built
    recall = read_mart(settings, "fct_candidate_retrieval_recall")
    recall["event_timestamp"] = pd.to_datetime(recall["event_timestamp"])
    every, kept = marts["fct_ranking_labels"].copy(), read_mart(settings, "fct_ranking_labels")
    assert len(kept) < len(every)
    key = ["customer_id", "event_timestamp"]
    for frame in (every, kept):
        frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"])
    expected = every.groupby(key)["label"].agg(count_candidates_eligible="size", count_adoptions="sum")
    expected = expected.join(
        kept.groupby(key)["label"].agg(count_candidates_retrieved="size", count_adoptions_retrieved="sum")
    )
    actual = recall.set_index(key).sort_index()[expected.columns]
    pd.testing.assert_frame_equal(actual, expected.sort_index(), check_dtype=False)
    # the fixture's four adoptions (C1 P2 in March, C2 P3 in April, C3 P4 in May, C5 P2 in June)
    assert recall["count_adoptions"].sum() == 4


def test_adoption_counts_are_the_eligible_candidates_grouped_with_or_without_the_stage(
        built: Settings, retrieval_built: Settings) -> None:
    """int_product_adoptions_counted is counted from the population and the holding states, not from
    int_candidates_eligible's rows: the exhaustive build's eligible candidates grouped by product, breadth
    and month give it exactly, and the retrieval build (whose eligible table holds only each customer's
    reach) counts the same."""
    eligible = read_mart(built, "int_candidates_eligible")
    month, next_start = eligible["month_index"], eligible["next_start_month_index"].astype(float)
    grouped = eligible.assign(
        count_candidates=1,
        count_adopted_next_month=(next_start <= month + 1).astype(int),
        count_adopted_within_3_months=(next_start <= month + 3).astype(int),
        count_adopted_within_12_months=(next_start <= month + 12).astype(int),
    ).groupby(["product_key", "ownership_breadth", "month_index"], as_index=False)[
        ["count_candidates", "count_adopted_next_month", "count_adopted_within_3_months",
         "count_adopted_within_12_months"]
    ].sum()
    assert grouped["count_adopted_within_12_months"].sum() > 0
    order = ["product_key", "ownership_breadth", "month_index"]
    for settings in (built, retrieval_built):
        counted = read_mart(settings, "int_product_adoptions_counted")
        pd.testing.assert_frame_equal(
            counted.sort_values(order).reset_index(drop=True)[grouped.columns],
            grouped.sort_values(order).reset_index(drop=True), check_dtype=False,
        )


def test_with_retrieval_each_customer_month_is_expanded_only_within_its_reach(
        built: Settings, retrieval_built: Settings) -> None:
    """Top 1 of 4 products, two of them age-bounded (P2 from 18, P3 to 17): a customer-month's eligible
    rows are the exhaustive build's of rank <= 1 + products owned + the bounded products its age
    excludes (one of them for a known age, both for C3's unknown age)."""
    ranked = read_mart(retrieval_built, "int_products_ranked_by_recent_adoption")
    population = read_mart(retrieval_built, "int_customers_in_population")
    key = ["customer_key", "product_key", "month_index"]
    every = read_mart(built, "int_candidates_eligible").merge(ranked, on=["product_key", "month_index"])
    every = every.merge(population[["customer_key", "month_index", "count_products_owned"]],
                        on=["customer_key", "month_index"])
    excluded_by_age = np.where(every["age_years"].isna(), 2, 1)
    within = every[every["retrieval_rank"] <= 1 + every["count_products_owned"] + excluded_by_age]
    reached = read_mart(retrieval_built, "int_candidates_eligible")
    assert set(map(tuple, reached[key].to_numpy())) == set(map(tuple, within[key].to_numpy()))
    assert len(within) < len(every)


def test_retrieval_guard_reports_an_eligible_candidate_passed_over(retrieval_built: Settings) -> None:
    """C1's best-ranked January candidate removed from int_candidates_eligible: the retrieval view keeps
    the next best within C1's reach, if any, and assert_retrieval_keeps_at_most_top_n_candidates
    (counting eligible products without that table) reports the customer-month, whether as a better
    product passed over or as fewer kept than eligible; it passes once restored."""
    settings = retrieval_built
    database = str(settings.build_dir / "nextbest.duckdb")
    the_row = """
        from int_candidates_eligible
        where customer_key = (select customer_key from int_customers_keyed where customer_id = 'C1')
            and month_index = (select month_index from int_snapshots_spined where snapshot_on = '2024-01-31')
            and product_key = (
                select customer_retrieved.product_key from int_candidates_retrieved as customer_retrieved
                where customer_retrieved.customer_key = int_candidates_eligible.customer_key
                    and customer_retrieved.month_index = int_candidates_eligible.month_index
            )
    """
    with duckdb.connect(database) as con:
        dropped = con.sql(f"select * {the_row}").df()
        assert len(dropped) == 1
        con.execute(f"delete {the_row}")
    try:
        with pytest.raises(DbtError, match="Got 1 result") as failed:
            build(settings.home, {"candidate_retrieval_above_products": 2, "candidate_retrieval_top_n": 1},
                  select="assert_retrieval_keeps_at_most_top_n_candidates")
        assert "assert_retrieval_keeps_at_most_top_n_candidates" in str(failed.value)
    finally:
        with duckdb.connect(database) as con:
            con.register("dropped", dropped)
            con.execute("insert into int_candidates_eligible select * from dropped")
            con.execute("create or replace table int_candidates_eligible as"
                        " select * from int_candidates_eligible order by month_index")
    build(settings.home, {"candidate_retrieval_above_products": 2, "candidate_retrieval_top_n": 1},
          select="assert_retrieval_keeps_at_most_top_n_candidates")


# --- error cases ---------------------------------------------------------------------------------------

def test_overlapping_holdings_fail_the_build(tmp_path) -> None:
    """A duplicated holdings row breaks the holdings grain: the build fails instead of double counting."""
    write_raw(tmp_path / "raw", holdings=[*HOLDINGS, HOLDINGS[0]])
    with pytest.raises(DbtError, match="unique_combination_of_columns_stg_raw__holdings"):
        build(tmp_path, select="stg_raw__holdings")


def test_empty_transactions_are_allowed(tmp_path) -> None:
    """Without transactions the spine starts at the earliest joined_on / started_on (2023-01)."""
    write_raw(tmp_path / "raw", transactions=[])
    settings = build(tmp_path, select="+feat_customer_monthly")
    features = read_mart(settings, "feat_customer_monthly")
    timestamps = pd.to_datetime(features["event_timestamp"])
    assert timestamps.min() == pd.Timestamp(datetime(2023, 2, 1))
    assert timestamps.max() == ts(JUN)
    assert (features["count_transactions_last_12_months"] == 0).all()
    assert features["months_since_last_transaction"].isna().all()
