"""The campaign chain proven on the synthetic bank's true probabilities (``nextbest.campaigns.simulate``).

plan -> assign -> simulate -> readout over many seeds on the oracle of a small generated bank: the
readout's 95% CI covers the true effect in ~95% of the runs, its false positive rate without effect is
~alpha, and its power at the planned size is ~the requested power. "~" is within 3 binomial standard
errors of the runs (the assignment is stratified while the z-test ignores the strata, which makes it
slightly conservative: about 96% coverage and a 4% false positive rate on this audience; the CUPED
estimate on the calibrated probability is not).
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from nextbest.campaigns.errors import CampaignError
from nextbest.campaigns.plan import AudienceRule, make_plan, select_audience
from nextbest.campaigns.simulate import (
    TRUE_PROBABILITY,
    oracle_probabilities,
    simulate_campaigns,
    treated_probability,
    true_effect,
)
from nextbest.columns import CUSTOMER_ID, PROBABILITY, RANK, SNAPSHOT_ON
from nextbest.ingest.synthetic import generate_synthetic

ALPHA, POWER = 0.05, 0.8


def within(rate: float, expected: float, runs: int) -> bool:
    """``rate`` lies within 3 binomial standard errors of ``expected`` over ``runs`` runs."""
    return abs(rate - expected) <= 3 * math.sqrt(expected * (1 - expected) / runs)


@pytest.fixture(scope="module")
def oracle_audience(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, object]:
    """The next-best audience at the last oracle snapshot, scored by the truth (perfectly calibrated)."""
    bank = tmp_path_factory.mktemp("bank")
    generate_synthetic(bank, customers=4000, months=6, seed=3, with_oracle=True)
    oracle = bank / "oracle.parquet"
    snapshot = duckdb.sql(f"select max({SNAPSHOT_ON}) from read_parquet('{oracle}')").fetchall()[0][0]
    scored = duckdb.sql(
        f"select *, row_number() over (partition by {CUSTOMER_ID} order by probability desc, product_id) "
        f"as {RANK} from read_parquet('{oracle}') where {SNAPSHOT_ON} = '{snapshot}'"
    ).df()
    audience = select_audience(scored, AudienceRule(next_best=True))
    return oracle_probabilities(Path(oracle), snapshot, audience), snapshot


def test_treated_customers_adopt_with_the_uplifted_probability_capped_at_one() -> None:
    p = np.array([0.1, 0.6, 0.2])
    assert treated_probability(p, np.array([True, True, False]), 1.0).tolist() == [0.2, 1.0, 0.2]
    assert true_effect(p, 1.0) == pytest.approx((0.1 + 0.4 + 0.2) / 3)
    assert true_effect(p, 0.0) == 0.0


def test_the_oracle_join_gives_every_audience_customer_its_true_probability(oracle_audience) -> None:
    audience, _ = oracle_audience
    assert len(audience) > 3000
    # scored by the oracle itself: the "calibrated" probability is the truth
    assert np.allclose(audience[PROBABILITY], audience[TRUE_PROBABILITY], atol=1e-6)


def test_coverage_false_positives_and_power_of_the_readout_over_many_seeds(oracle_audience) -> None:
    audience, snapshot = oracle_audience
    rule = AudienceRule(next_best=True)
    # plan for the smallest effect this audience detects with 80% power, then simulate exactly that effect
    probe = make_plan(audience, rule, str(snapshot), "oracle", 0.2, relative=True, alpha=ALPHA, power=POWER)
    plan = make_plan(
        audience,
        rule,
        str(snapshot),
        "oracle",
        probe.detectable_mde_relative,
        relative=True,
        alpha=ALPHA,
        power=POWER,
    )
    assert plan.required_treatment == pytest.approx(
        len(audience) / 2, abs=2
    )  # the planned size is the audience

    null = simulate_campaigns(audience, plan, 0.0, range(1000))["z-test"]
    assert null.true_effect == 0.0
    assert within(null.rejection_rate, ALPHA, null.runs), null.line()  # false positive rate ~ alpha
    assert within(null.coverage, 1 - ALPHA, null.runs), null.line()

    effect = simulate_campaigns(audience, plan, plan.mde_relative, range(1000, 1600))["z-test"]
    # p * (1 + uplift) is capped at 1, so a customer with p near 1 adds a little less than the plan's MDE
    assert effect.true_effect == pytest.approx(plan.mde_absolute, rel=0.01)
    assert within(effect.rejection_rate, POWER, effect.runs), effect.line()  # power ~ the requested power
    assert within(effect.coverage, 1 - ALPHA, effect.runs), effect.line()
    assert abs(effect.difference.mean() - effect.true_effect) < 3 * effect.difference.std() / math.sqrt(600)


def test_cuped_on_the_calibrated_probability_keeps_its_false_positive_rate_and_coverage(
    oracle_audience,
) -> None:
    audience, snapshot = oracle_audience
    plan = make_plan(audience, AudienceRule(next_best=True), str(snapshot), "oracle", 0.3, relative=True)
    cuped = simulate_campaigns(audience, plan, 0.0, range(300), cuped=True)["cuped"]
    assert within(cuped.rejection_rate, ALPHA, cuped.runs), cuped.line()
    assert within(cuped.coverage, 1 - ALPHA, cuped.runs), cuped.line()


def test_a_snapshot_beyond_the_oracle_names_its_last_snapshot(tmp_path: Path) -> None:
    oracle = tmp_path / "oracle.parquet"
    pd.DataFrame(
        {
            CUSTOMER_ID: ["C1", "C1"],
            SNAPSHOT_ON: [date(2024, 10, 31), date(2024, 11, 30)],
            "product_id": ["loan", "loan"],
            "probability": [0.1, 0.2],
        }
    ).to_parquet(oracle)
    audience = pd.DataFrame({CUSTOMER_ID: ["C1"], "product_id": ["loan"]})
    assert oracle_probabilities(oracle, date(2024, 11, 30), audience)[TRUE_PROBABILITY].tolist() == [0.2]
    expected = r"1 audience rows .* at 2024-12-31 .*ends at 2024-11-30.*--snapshot"
    with pytest.raises(CampaignError, match=expected):
        oracle_probabilities(oracle, date(2024, 12, 31), audience)
