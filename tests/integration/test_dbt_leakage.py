"""Point-in-time: data dated after a snapshot cannot change any feature or candidate row of that snapshot.

Build the fixture, then build a copy with holdings and transactions dated after snapshot X = 2024-03-31
(event_timestamp 2024-04-01), with the same observed_until, and compare the two builds row by row.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest

from nextbest.settings import Settings
from tests.integration.dbt_fixtures import HOLDINGS, TRANSACTIONS, build, read_mart, write_raw

pytestmark = pytest.mark.integration

CUTOFF = pd.Timestamp(datetime(2024, 4, 1))  # event_timestamp of the snapshot X = 2024-03-31
FUTURE_HOLDINGS = [
    ("C1", "P4", date(2024, 4, 15), None),  # C1 adopts the mortgage after X
    ("C4", "P1", date(2024, 5, 20), None),  # C4 enters the population after X
]
FUTURE_TRANSACTIONS = [
    ("C3", "P4", datetime(2024, 4, 1, 0, 0), 999.0),  # the first instant after X
    ("C1", "P2", datetime(2024, 6, 3, 8, 0), 77.0),
]
FEATURE_MARTS = {
    "feat_customer_monthly": ["customer_id", "event_timestamp"],
    "feat_product_monthly": ["product_id", "event_timestamp"],
    "feat_customer_product_monthly": ["customer_id", "product_id", "event_timestamp"],
    "fct_candidates": ["customer_id", "product_id", "event_timestamp"],
}


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Settings]:
    base_home: Path = tmp_path_factory.mktemp("leakage_base")
    future_home: Path = tmp_path_factory.mktemp("leakage_future")
    write_raw(base_home / "raw")
    write_raw(future_home / "raw", holdings=HOLDINGS + FUTURE_HOLDINGS,
              transactions=TRANSACTIONS + FUTURE_TRANSACTIONS)
    return build(base_home), build(future_home)


def up_to_cutoff(settings: Settings, name: str) -> pd.DataFrame:
    """The mart's rows with event_timestamp <= CUTOFF, sorted by key, with a clean index."""
    frame = read_mart(settings, name)
    frame = frame[pd.to_datetime(frame["event_timestamp"]) <= CUTOFF]
    return frame.sort_values(FEATURE_MARTS[name]).reset_index(drop=True)


@pytest.mark.parametrize("name", sorted(FEATURE_MARTS))
def test_rows_up_to_the_snapshot_are_identical(builds: tuple[Settings, Settings], name: str) -> None:
    base, future = (up_to_cutoff(settings, name) for settings in builds)
    assert len(base) > 0
    # values compared exactly; dtypes may differ when a column is null only after the cutoff in one build
    # (pandas reads an integer column with nulls as float)
    pd.testing.assert_frame_equal(base, future, check_dtype=False)


@pytest.mark.parametrize("name", sorted(FEATURE_MARTS))
def test_the_future_data_does_change_later_rows(builds: tuple[Settings, Settings], name: str) -> None:
    """Guards the test above against comparing two identical builds."""
    base, future = (read_mart(settings, name) for settings in builds)
    keys = FEATURE_MARTS[name]
    base = base.sort_values(keys).reset_index(drop=True)
    future = future.sort_values(keys).reset_index(drop=True)
    assert not base.equals(future)


def test_the_future_adoption_is_a_label_of_the_snapshot(builds: tuple[Settings, Settings]) -> None:
    """Labels of X may (and must) see the future: C1 starts P4 in April."""
    base, future = (read_mart(settings, "fct_ranking_labels") for settings in builds)

    def label(frame: pd.DataFrame) -> int:
        match = frame[(frame["customer_id"] == "C1") & (frame["product_id"] == "P4")
                      & (pd.to_datetime(frame["event_timestamp"]) == CUTOFF)]
        return int(match["label"].item())

    assert (label(base), label(future)) == (0, 1)


def test_the_future_adoption_reaches_cross_sell_features_only_after_it(
        builds: tuple[Settings, Settings]) -> None:
    """C1 (owning P1 and P2) starts P4 in April: from the April snapshot on, owners of P1 look likelier to
    adopt P4 (C5 owns P1); at March and before, the transition lift is the same in both builds."""
    base, future = (read_mart(settings, "feat_customer_product_monthly") for settings in builds)

    def lift(frame: pd.DataFrame, at: datetime) -> float:
        match = frame[(frame["customer_id"] == "C5") & (frame["product_id"] == "P4")
                      & (pd.to_datetime(frame["event_timestamp"]) == pd.Timestamp(at))]
        return float(match["max_transition_lift_from_owned"].item())

    for at in (datetime(2024, 3, 1), CUTOFF):
        assert lift(future, at) == lift(base, at)
    for at in (datetime(2024, 5, 1), datetime(2024, 6, 1)):
        assert lift(future, at) > lift(base, at)
