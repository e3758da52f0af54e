"""The campaign readout page (``nextbest.campaigns.report``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from nextbest.campaigns.assign import assign_arms
from nextbest.campaigns.plan import ArmShares, AudienceRule, make_plan
from nextbest.campaigns.readout import read_out
from nextbest.campaigns.report import CONVERSION_PLOT, arm_rates, write_readout_page


def test_the_page_shows_the_decision_and_conversion_by_arm_with_cis(tmp_path: Path) -> None:
    audience = pd.DataFrame(
        {"customer_id": [f"C{i:03d}" for i in range(300)], "product_id": "A", "probability": 0.2}
    )
    shares = ArmShares(treatment=0.4, business_rule=0.2)
    plan = make_plan(audience, AudienceRule(next_best=True), "2024-05-31", "m", 0.5, True, shares=shares)
    assignment = assign_arms(audience, shares.as_dict(), seed=2)
    converted = (assignment["arm"] == "treatment").astype(int)  # every treated customer converts, nobody else
    outcomes = pd.DataFrame({"customer_id": assignment["customer_id"], "converted": converted})
    readout = read_out(assignment, outcomes, plan)
    rates = {arm: rate for arm, rate, _, _ in arm_rates(readout)}
    assert rates == pytest.approx({"treatment": 1.0, "control": 0.0, "business_rule": 0.0})
    page = write_readout_page(tmp_path, plan, readout).read_text()
    assert "Campaign readout: GO" in page and "model vs business rule" in page
    assert (tmp_path / CONVERSION_PLOT).stat().st_size > 1000
