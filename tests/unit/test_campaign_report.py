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
    LIFT_PLOT,
    READOUT_PAGE,
    arm_rates,
    copy_beside_training_report,
    record_window,
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


def test_several_readout_windows_add_a_lift_over_time_plot(tmp_path: Path) -> None:
    audience = pd.DataFrame(
        {"customer_id": [f"C{i:03d}" for i in range(400)], "product_id": "A", "probability": 0.2}
    )
    plan = make_plan(audience, AudienceRule(next_best=True), "2024-05-31", "m", 0.5, True)
    assignment = assign_arms(audience, {"treatment": 0.5, "control": 0.5}, seed=1)
    index = assignment["customer_id"].str[1:].astype(int)
    treated = assignment["arm"] == "treatment"

    def readout_where(every: int):  # treated customers convert one in `every`, control one in 10
        converted = ((index % every == 0) & treated) | ((index % 10 == 0) & ~treated)
        frame = pd.DataFrame({"customer_id": assignment["customer_id"], "converted": converted.astype(int)})
        return read_out(assignment, frame, plan)

    one = record_window(tmp_path, "2024-06-30", readout_where(10))
    page = write_readout_page(tmp_path, plan, readout_where(10), one).read_text()
    assert len(one) == 1 and LIFT_PLOT not in page  # one window: no lift over time
    record_window(tmp_path, "2024-08-31", readout_where(4))
    windows = record_window(tmp_path, "2024-07-31", readout_where(5))
    assert [w["window_end"] for w in windows] == ["2024-06-30", "2024-07-31", "2024-08-31"]
    rerun = record_window(tmp_path, "2024-07-31", readout_where(5))  # re-reading a window replaces it
    assert rerun == windows
    lifts = [w["relative_lift"] for w in windows]
    assert lifts[0] < lifts[1] < lifts[2]
    assert all(w["relative_lift_ci"][0] < w["relative_lift"] < w["relative_lift_ci"][1] for w in windows)
    page = write_readout_page(tmp_path, plan, readout_where(4), windows).read_text()
    assert f"src='{LIFT_PLOT}'" in page
    assert (tmp_path / LIFT_PLOT).stat().st_size > 1000
