"""Campaign readout (``nextbest.campaigns.readout``): the tests' known answers, CUPED, decisions, outcomes."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nextbest.campaigns.assign import assign_arms, srm_check
from nextbest.campaigns.errors import CampaignError
from nextbest.campaigns.plan import AudienceRule, make_plan
from nextbest.campaigns.readout import (
    GO,
    INCONCLUSIVE,
    NO_GO,
    Calibration,
    compare_means,
    compare_proportions,
    cuped_effect,
    decide,
    outcomes_from_holdings,
    read_out,
    read_outcomes,
)

HALVES = {"treatment": 0.5, "control": 0.5}
BALANCED = srm_check({"treatment": 1000, "control": 1000}, HALVES)


def test_two_proportion_z_test_and_intervals_known_answer() -> None:
    test = compare_proportions(120, 1000, 100, 1000, alpha=0.05)
    assert test.z == pytest.approx(1.4293, abs=1e-4)
    assert test.p_value == pytest.approx(0.1529, abs=1e-4)
    assert test.difference == pytest.approx(0.02)
    assert test.difference_ci == pytest.approx((-0.007411, 0.047411), abs=1e-6)  # 0.02 -+ 1.96 * 0.013983
    assert test.relative_lift == pytest.approx(0.2)
    lo, hi = test.relative_lift_ci
    assert lo < 0 < 0.2 < hi


def test_no_conversion_at_all_is_no_evidence() -> None:
    test = compare_proportions(0, 500, 0, 500)
    assert test.p_value == 1.0 and np.isnan(test.relative_lift)


def test_cuped_removes_the_variance_a_pre_period_covariate_explains() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    covariate = rng.normal(size=n)
    treated = rng.random(n) < 0.5
    outcome = 0.3 * treated + covariate + rng.normal(scale=0.5, size=n)
    adjusted = cuped_effect(outcome, treated, covariate, "pre", alpha=0.05)
    plain = compare_means("y", outcome[treated], outcome[~treated])
    assert adjusted.difference == pytest.approx(0.3, abs=0.05)
    assert adjusted.variance_reduction == pytest.approx(0.8, abs=0.05)  # var(x) / var(x + noise) = 1 / 1.25
    assert adjusted.difference_ci[1] - adjusted.difference_ci[0] < 0.5 * (
        plain.difference_ci[1] - plain.difference_ci[0]
    )
    with pytest.raises(CampaignError, match="covariate pre: 1 values are missing"):
        cuped_effect(outcome, treated, np.where(np.arange(n) == 0, np.nan, covariate), "pre")


@pytest.mark.parametrize(
    ("treated", "control", "verdict", "reason"),
    [
        (150, 100, GO, "> 0"),
        (60, 100, NO_GO, "converts worse"),
        (101, 100, NO_GO, "below the MDE"),
        (115, 100, INCONCLUSIVE, "holds both 0 and the MDE"),
    ],
)
def test_decision_rules(treated: int, control: int, verdict: str, reason: str) -> None:
    # 1,000 per arm, baseline 10%; MDE 3 points (the CI of +0.1 points is about -/+ 2.6 points wide)
    decision = decide(compare_proportions(treated, 1000, control, 1000), 0.05, 0.03, BALANCED)
    assert decision.verdict == verdict and reason in decision.reasons[0]


def test_a_sample_ratio_mismatch_or_a_broken_guardrail_overrides_a_winning_test() -> None:
    winning = compare_proportions(150, 1000, 100, 1000)
    mismatch = srm_check({"treatment": 4500, "control": 5500}, HALVES)
    assert decide(winning, 0.05, 0.02, mismatch).verdict == INCONCLUSIVE
    worse = compare_means(
        "closures",
        np.r_[np.ones(200), np.zeros(800)],
        np.r_[np.ones(100), np.zeros(900)],
        alternative="larger",
    )
    decision = decide(winning, 0.05, 0.02, BALANCED, guardrail=worse)
    assert decision.verdict == NO_GO and "guardrail closures" in decision.reasons[0]


def planned(n: int = 2000) -> tuple[pd.DataFrame, object]:
    rng = np.random.default_rng(4)
    audience = pd.DataFrame(
        {"customer_id": [f"C{i:04d}" for i in range(n)], "product_id": "A", "probability": rng.beta(2, 12, n)}
    )
    plan = make_plan(audience, AudienceRule(product="A", top=1.0), "2024-03-31", "m", 0.3, relative=True)
    return assign_arms(audience, HALVES, seed=5), plan


def test_read_out_compares_the_arms_of_the_assignment() -> None:
    assignment, plan = planned()
    rng = np.random.default_rng(9)
    converted = (rng.random(len(assignment)) < assignment["probability"]).astype(int)
    outcomes = pd.DataFrame(
        {
            "customer_id": assignment["customer_id"],
            "converted": converted,
            "closures": rng.poisson(0.1, len(assignment)),
        }
    )
    result = read_out(assignment, outcomes, plan, covariate="probability", guardrail="closures")
    treated = (assignment["arm"] == "treatment").to_numpy()
    expected = compare_proportions(
        converted[treated].sum(), treated.sum(), converted[~treated].sum(), (~treated).sum()
    )
    assert result.primary == expected
    assert result.adjusted is not None and result.adjusted.variance_reduction > 0
    assert result.guardrail is not None and result.guardrail.alternative == "larger"
    assert result.decision.verdict in (NO_GO, INCONCLUSIVE)  # no effect was simulated
    assert result.calibration.predicted == pytest.approx(assignment.loc[~treated, "probability"].mean())
    assert any(line.startswith("decision: ") for line in result.lines())
    with pytest.raises(CampaignError, match="'spend' is not a column"):
        read_out(assignment, outcomes, plan, secondary=("spend",))


def test_outcome_files_are_checked_in_one_line(tmp_path: Path) -> None:
    assignment, _ = planned(20)
    good = pd.DataFrame({"customer_id": assignment["customer_id"], "converted": 0})
    with pytest.raises(CampaignError, match="does not exist"):
        read_outcomes(tmp_path / "nope.parquet", assignment)
    good.drop(columns="converted").to_parquet(tmp_path / "a.parquet")
    with pytest.raises(CampaignError, match="missing column.s. converted"):
        read_outcomes(tmp_path / "a.parquet", assignment)
    good.assign(converted=[2] + [0] * 19).to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(CampaignError, match="must be 0 or 1; 1 rows are not .e.g. C0000=2"):
        read_outcomes(tmp_path / "b.csv", assignment)
    good.iloc[1:].to_parquet(tmp_path / "c.parquet")
    with pytest.raises(CampaignError, match="1 assigned customers have no row .e.g. C0000"):
        read_outcomes(tmp_path / "c.parquet", assignment)
    pd.concat([good, good.head(1)]).to_parquet(tmp_path / "d.parquet")
    with pytest.raises(CampaignError, match="1 customers appear twice"):
        read_outcomes(tmp_path / "d.parquet", assignment)
    (tmp_path / "e.parquet").write_text("not parquet")
    with pytest.raises(CampaignError, match="not readable"):
        read_outcomes(tmp_path / "e.parquet", assignment)
    good.to_parquet(tmp_path / "ok.parquet")
    assert read_outcomes(tmp_path / "ok.parquet", assignment)["converted"].sum() == 0


def test_outcomes_from_raw_holdings_count_starts_of_the_offered_product_in_the_window(tmp_path: Path) -> None:
    d = date.fromisoformat
    pd.DataFrame(
        {
            "customer_id": ["C1", "C1", "C2", "C3", "C3"],
            "product_id": ["A", "B", "A", "A", "B"],
            "started_on": [
                d("2024-04-10"),
                d("2024-04-20"),
                d("2024-03-31"),
                d("2024-05-01"),
                d("2023-01-01"),
            ],
            "ended_on": [None, None, None, None, d("2024-04-15")],
        }
    ).to_parquet(tmp_path / "holdings.parquet")
    pd.DataFrame(
        {
            "customer_id": ["C1", "C2"],
            "product_id": ["A", None],
            "occurred_at": pd.to_datetime(["2024-04-11 09:00", "2024-04-30 23:00"]),
            "amount": [10.0, 5.0],
        }
    ).to_parquet(tmp_path / "transactions.parquet")
    assignment = pd.DataFrame({"customer_id": ["C1", "C2", "C3"], "product_id": ["A", "A", "A"]})
    out = outcomes_from_holdings(tmp_path, assignment, d("2024-03-31"), d("2024-04-30"))
    # C1 started A in April; C2 started it on the snapshot day (before the window); C3 on May 1st (after)
    assert out["converted"].tolist() == [1, 0, 0]
    assert out["products_started"].tolist() == [2, 0, 0]
    assert out["closures"].tolist() == [0, 0, 1]
    assert out["spend"].tolist() == [10.0, 5.0, 0.0]
    with pytest.raises(CampaignError, match=r"ends after the data's last observed day 2024-04-29"):
        outcomes_from_holdings(tmp_path, assignment, d("2024-03-31"), d("2024-04-30"), d("2024-04-29"))


def test_no_conversion_at_all_is_inconclusive() -> None:
    decision = decide(compare_proportions(0, 700, 0, 700), 0.05, 0.01, BALANCED)
    assert decision.verdict == INCONCLUSIVE and "no conversion" in decision.reasons[0]


def test_calibration_is_judged_only_on_the_label_horizon() -> None:
    on_horizon = Calibration(0.05, 0.06, (0.045, 0.075))
    assert on_horizon.line().endswith("(prediction inside the 95% interval)")
    assert Calibration(0.03, 0.06, (0.045, 0.075)).line().endswith("(prediction OUTSIDE the 95% interval)")
    longer = Calibration(0.03, 0.06, (0.045, 0.075), window_is_horizon=False)
    assert "OUTSIDE" not in longer.line()
    assert longer.line().endswith(
        "(not checked: the window is not the label horizon the probabilities are for)"
    )
