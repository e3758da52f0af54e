"""Campaign planning (``nextbest.campaigns.plan``): audience rules and the power analysis, known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.power import zt_ind_solve_power
from statsmodels.stats.proportion import proportion_effectsize

from nextbest.campaigns.errors import CampaignError
from nextbest.campaigns.plan import (
    ArmShares,
    AudienceRule,
    EmptyAudienceError,
    UnknownProductError,
    detectable_mde,
    make_plan,
    parse_share,
    required_sample,
    select_audience,
)


def rate_at_h(baseline: float, h: float) -> float:
    """The rate whose Cohen's h over ``baseline`` is ``h``."""
    return math.sin(math.asin(math.sqrt(baseline)) + h / 2) ** 2


@pytest.mark.parametrize(("h", "cohen_n"), [(0.2, 393), (0.5, 63), (0.8, 25)])
def test_sample_size_per_arm_matches_cohens_table(h: float, cohen_n: int) -> None:
    # Cohen (1988), table 6.4.1, alpha 0.05 two-sided, power 0.80: n = 392, 63, 25 (392.4 -> 393 rounded up)
    baseline = 0.3
    size = required_sample(baseline, rate_at_h(baseline, h) - baseline, alpha=0.05, power=0.8)
    assert size.effect_size == pytest.approx(h)
    assert (size.n_treatment, size.n_control) == (cohen_n, cohen_n)


def test_sample_size_equals_statsmodels_zt_ind_solve_power_to_three_significant_digits() -> None:
    baseline, mde = 0.10, 0.02
    size = required_sample(baseline, mde, alpha=0.05, power=0.8, control_ratio=2.0)
    reference = zt_ind_solve_power(
        effect_size=proportion_effectsize(0.12, 0.10), alpha=0.05, power=0.8, ratio=2.0
    )
    assert size.n_treatment == math.ceil(reference)
    assert float(f"{size.n_treatment:.3g}") == float(f"{reference:.3g}")  # 2,877
    assert size.n_control == math.ceil(reference * 2)


def test_detectable_mde_inverts_the_sample_size() -> None:
    size = required_sample(0.05, 0.01, alpha=0.05, power=0.8)
    assert detectable_mde(0.05, size.n_treatment, size.n_control, 0.05, 0.8) == pytest.approx(0.01, rel=1e-3)
    assert math.isnan(detectable_mde(0.05, 1, 1, 0.05, 0.8))  # nothing is detectable with one customer


@pytest.mark.parametrize(("baseline", "mde"), [(0.0, 0.01), (0.5, 0.6), (0.1, -0.01)])
def test_impossible_rates_are_user_errors(baseline: float, mde: float) -> None:
    with pytest.raises(CampaignError, match="both rates must lie"):
        required_sample(baseline, mde, 0.05, 0.8)


def scored_frame() -> pd.DataFrame:
    """Three customers x two products with known probabilities and ranks."""
    return pd.DataFrame(
        {
            "customer_id": ["C1", "C1", "C2", "C2", "C3", "C3"],
            "product_id": ["A", "B", "A", "B", "A", "B"],
            "probability": [0.30, 0.10, 0.05, 0.20, 0.30, 0.40],
            "rank": [1, 2, 2, 1, 2, 1],
        }
    )


def test_top_share_of_a_product_takes_the_highest_probabilities_ties_by_customer() -> None:
    audience = select_audience(scored_frame(), AudienceRule(product="A", top=0.5))
    assert audience["customer_id"].tolist() == ["C1", "C3"]  # ceil(0.5 * 3) = 2; C1 and C3 tie at 0.30
    assert audience["product_id"].tolist() == ["A", "A"]


def test_next_best_offers_every_customer_their_top_product() -> None:
    audience = select_audience(scored_frame(), AudienceRule(next_best=True))
    assert sorted(zip(audience["customer_id"], audience["product_id"], strict=True)) == [
        ("C1", "A"),
        ("C2", "B"),
        ("C3", "B"),
    ]


def test_audience_errors_name_the_problem() -> None:
    with pytest.raises(UnknownProductError, match=r"product 'Z' is no customer's candidate.*products: A, B"):
        select_audience(scored_frame(), AudienceRule(product="Z", top=0.05))
    with pytest.raises(EmptyAudienceError):
        select_audience(scored_frame().iloc[:0], AudienceRule(next_best=True))
    no_calibration = scored_frame().assign(probability=np.nan)
    with pytest.raises(CampaignError, match="no calibrated probability"):
        select_audience(no_calibration, AudienceRule(next_best=True))
    with pytest.raises(CampaignError, match="either --product"):
        AudienceRule(product="A", top=0.1, next_best=True)


@pytest.mark.parametrize(("text", "share"), [("5%", 0.05), ("0.05", 0.05), ("100%", 1.0)])
def test_top_accepts_a_percentage_or_a_fraction(text: str, share: float) -> None:
    assert parse_share(text) == pytest.approx(share)


@pytest.mark.parametrize("text", ["abc", "0", "150%", "-5%"])
def test_top_rejects_what_is_no_share(text: str) -> None:
    with pytest.raises(CampaignError, match="--top"):
        parse_share(text)


def test_plan_reports_expected_conversions_sizes_and_whether_the_audience_supports_them() -> None:
    audience = pd.DataFrame(
        {"customer_id": [f"C{i}" for i in range(10_000)], "product_id": "A", "probability": 0.10}
    )
    rule = AudienceRule(product="A", top=1.0)
    plan = make_plan(audience, rule, "2024-05-31", "model-x", mde=0.2, relative=True)
    assert plan.expected_conversions == pytest.approx(1000.0)
    assert plan.baseline_rate == pytest.approx(0.10)
    assert plan.mde_absolute == pytest.approx(0.02)
    reference = zt_ind_solve_power(proportion_effectsize(0.12, 0.10), None, 0.05, 0.8)
    assert plan.required_treatment == plan.required_control == math.ceil(reference) == 3835
    assert plan.supported  # 5,000 per arm >= 3,835
    assert plan.detectable_mde_absolute == pytest.approx(detectable_mde(0.10, 5000, 5000, 0.05, 0.8))
    assert 0.015 < plan.detectable_mde_absolute < 0.02
    small = make_plan(audience.head(2000), rule, "2024-05-31", "model-x", mde=0.2, relative=True)
    assert not small.supported and "TOO SMALL" in "\n".join(small.lines())
    assert "detectable MDE" in "\n".join(plan.lines())


def test_plan_with_a_business_rule_arm_powers_treatment_against_control() -> None:
    ids = [f"C{i}" for i in range(1000)]
    audience = pd.DataFrame({"customer_id": ids, "product_id": "A", "probability": 0.3})
    plan = make_plan(
        audience,
        AudienceRule(next_best=True),
        "2024-05-31",
        "m",
        mde=0.1,
        relative=False,
        shares=ArmShares(treatment=0.4, business_rule=0.2),
    )
    assert plan.shares.as_dict() == pytest.approx({"treatment": 0.4, "control": 0.4, "business_rule": 0.2})
    size = required_sample(0.3, 0.1, 0.05, 0.8)
    assert (plan.required_treatment, plan.required_control) == (size.n_treatment, size.n_control)
    assert plan.supported  # 400 per arm >= 356
    with pytest.raises(CampaignError, match="control share"):
        make_plan(audience, AudienceRule(next_best=True), "d", "m", 0.1, False, shares=ArmShares(0.7, 0.3))
