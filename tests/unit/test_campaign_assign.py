"""Campaign assignment (``nextbest.campaigns.assign``): reproducible, balanced per stratum, SRM, files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nextbest.campaigns.assign import (
    ARM,
    ASSIGNMENT_FILE,
    ASSIGNMENT_META_FILE,
    STRATUM,
    assign_arms,
    probability_strata,
    read_assignment,
    srm_check,
    write_assignment,
)
from nextbest.campaigns.errors import CampaignError, CampaignStepMissingError
from nextbest.campaigns.plan import ArmShares, AudienceRule, make_plan

HALVES = {"treatment": 0.5, "control": 0.5}


def audience(n: int = 2003, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(n)],
            "product_id": rng.choice(["A", "B", "C"], n),
            "probability": rng.beta(1, 12, n),
        }
    )


def test_strata_are_equal_size_probability_deciles() -> None:
    p = np.arange(100)[::-1] / 100.0
    strata = probability_strata(p, 10)
    assert np.bincount(strata)[1:].tolist() == [10] * 10
    assert strata[np.argmax(p)] == 10 and strata[np.argmin(p)] == 1
    assert probability_strata(np.array([0.3, 0.1]), 10).tolist() == [2, 1]  # fewer rows than strata


def test_the_same_seed_gives_the_same_assignment_whatever_the_input_order() -> None:
    first = assign_arms(audience(), HALVES, seed=7)
    shuffled = assign_arms(audience().sample(frac=1, random_state=3), HALVES, seed=7)
    pd.testing.assert_frame_equal(first, shuffled)
    other = assign_arms(audience(), HALVES, seed=8)
    assert (first[ARM] != other[ARM]).mean() > 0.3


def test_every_stratum_is_split_in_the_planned_ratio_to_within_one_customer() -> None:
    shares = {"treatment": 0.4, "control": 0.4, "business_rule": 0.2}
    frame = assign_arms(audience(), shares, seed=1)
    for _, stratum in frame.groupby(STRATUM):
        counts = stratum[ARM].value_counts()
        for arm, share in shares.items():
            assert abs(counts.get(arm, 0) - share * len(stratum)) <= 1
    assert set(frame.columns) == {"customer_id", "product_id", "probability", STRATUM, ARM}


def test_bad_shares_are_refused() -> None:
    with pytest.raises(CampaignError, match="sum to 1"):
        assign_arms(audience(), {"treatment": 0.5, "control": 0.6}, seed=0)


def test_srm_flags_a_45_55_split_of_10k() -> None:
    srm = srm_check({"treatment": 4500, "control": 5500}, HALVES)
    assert srm.chi2 == pytest.approx(100.0)
    assert srm.p_value < 1e-20 and srm.mismatch
    assert "SAMPLE RATIO MISMATCH" in srm.line()


def test_srm_accepts_a_split_within_chance() -> None:
    srm = srm_check({"treatment": 4950, "control": 5050}, HALVES)
    assert srm.chi2 == pytest.approx(1.0)
    assert srm.p_value == pytest.approx(0.3173, abs=1e-4) and not srm.mismatch


def test_an_assignment_is_written_atomically_with_its_seed_and_plan(tmp_path: Path) -> None:
    crowd = audience()
    plan = make_plan(crowd, AudienceRule(next_best=True), "2024-05-31", "m", 0.5, True, shares=ArmShares(0.5))
    with pytest.raises(CampaignStepMissingError, match="campaign assign"):
        read_assignment(tmp_path)
    frame, record, srm = write_assignment(tmp_path, plan, crowd, seed=11)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ASSIGNMENT_META_FILE,
        ASSIGNMENT_FILE,
    ]  # no temp file
    meta = json.loads((tmp_path / ASSIGNMENT_META_FILE).read_text())
    assert meta["seed"] == 11 and meta["plan"]["audience_size"] == len(crowd)
    assert meta["counts"] == {
        "treatment": int((frame[ARM] == "treatment").sum()),
        "control": int((frame[ARM] == "control").sum()),
    }
    assert not srm.mismatch
    again, record_again = read_assignment(tmp_path)
    pd.testing.assert_frame_equal(again, frame)
    assert record_again == record
    pd.testing.assert_frame_equal(assign_arms(crowd, record.shares, record.seed), frame)  # reproducible
