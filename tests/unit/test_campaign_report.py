"""The campaign readout page (``nextbest.campaigns.report``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from nextbest.campaigns.assign import assign_arms
from nextbest.campaigns.plan import ArmShares, AudienceRule, make_plan
from nextbest.campaigns.readout import read_out
from nextbest.campaigns.report import (
    CONVERSION_PLOT,
    READOUT_PAGE,
    arm_rates,
    copy_beside_training_report,
    write_readout_page,
)


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


def test_the_page_is_copied_beside_the_training_report_of_its_bundle(tmp_path: Path) -> None:
    campaign = tmp_path / "spring"
    campaign.mkdir()
    (campaign / READOUT_PAGE).write_text("<html>GO</html>")
    (campaign / CONVERSION_PLOT).write_bytes(b"png")
    reports = tmp_path / "reports"
    (reports / "v1").mkdir(parents=True)
    page = copy_beside_training_report(reports, "v1", campaign)
    assert page == reports / "v1" / "campaigns" / "spring" / READOUT_PAGE
    assert page.read_text() == "<html>GO</html>"
    assert (page.parent / CONVERSION_PLOT).read_bytes() == b"png"
    # no training report for a scores file: nothing is copied
    assert copy_beside_training_report(reports, "scores file s.parquet", campaign) is None
    assert sorted(p.name for p in reports.iterdir()) == ["v1"]
