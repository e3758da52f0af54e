"""``nextbest campaign plan|assign|readout`` on a small synthetic bank built through the real pipeline.

Generate -> ingest -> dbt build -> Feast apply + materialize -> a model bundle (``serving_fixtures``), then
the commands as a user runs them (the entry point ``nextbest.cli.main`` in this process): the plan's
probabilities are the served bundle's (the same as ``nextbest score-batch``'s), the files are written,
the readout reads an outcomes file or the raw holdings, and every user error is one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from nextbest.campaigns.simulate import simulate_outcomes
from nextbest.settings import Settings
from tests.integration.serving_fixtures import build_deployment
from tests.integration.test_cli_errors import BAD_INPUT, STEP_FAILED, Runner, one_line, run  # noqa: F401 (run: the fixture)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return build_deployment(tmp_path_factory.mktemp("campaigns") / "home", customers=1500, months=8, seed=5)


def snapshots(settings: Settings) -> list:
    path = settings.marts_dir / "fct_candidates.parquet"
    return [
        r[0]
        for r in duckdb.sql(f"select distinct snapshot_on from read_parquet('{path}') order by 1").fetchall()
    ]


def test_plan_assign_and_read_out_a_next_best_campaign(
    deployment: Settings,
    run: Runner,  # noqa: F811 (the CLI runner fixture of test_cli_errors)
    tmp_path: Path,
) -> None:
    home, camp = deployment.home, tmp_path / "next-best"
    latest = snapshots(deployment)[-1]
    batch = tmp_path / "scores.parquet"
    assert run(home, "score-batch", "--snapshot", str(latest), "--out", str(batch)).returncode == 0

    planned = run(home, "campaign", "plan", str(camp), "--next-best", "--mde", "0.3")
    assert planned.returncode == 0, planned.stderr
    assert "detectable MDE" in planned.stdout and "Cohen's h" in planned.stdout
    plan = json.loads((camp / "plan.json").read_text())
    audience = pd.read_parquet(camp / "audience.parquet")
    # the audience is every customer's top-1 by the served bundle: what score-batch ranks first
    top1 = pd.read_parquet(batch).query("rank == 1").sort_values("customer_id")
    assert plan["snapshot_on"] == str(latest) and plan["audience_size"] == len(top1) == len(audience)
    mine = audience.sort_values("customer_id")
    assert mine["customer_id"].tolist() == top1["customer_id"].tolist()
    assert mine["product_id"].tolist() == top1["product_id"].tolist()
    assert np.allclose(mine["probability"], top1["probability"], atol=1e-9)
    assert plan["expected_conversions"] == pytest.approx(audience["probability"].sum())
    from_file = run(
        home,
        "campaign",
        "plan",
        str(tmp_path / "from-file"),
        "--next-best",
        "--mde",
        "0.3",
        "--scores",
        str(batch),
    )
    assert from_file.returncode == 0, from_file.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "from-file" / "audience.parquet"), audience)

    assigned = run(home, "campaign", "assign", str(camp), "--seed", "3")
    assert assigned.returncode == 0 and "no sample ratio mismatch" in assigned.stdout
    assignment = pd.read_parquet(camp / "assignment.parquet")
    record = json.loads((camp / "assignment.json").read_text())
    assert record["seed"] == 3 and record["plan"] == plan
    assert sorted(assignment["customer_id"]) == sorted(audience["customer_id"])

    outcomes = simulate_outcomes(
        assignment, assignment["probability"].to_numpy(), 1.0, np.random.default_rng(0)
    )
    outcomes.to_parquet(tmp_path / "outcomes.parquet")
    readout = run(
        home,
        "campaign",
        "readout",
        str(camp),
        "--outcomes",
        str(tmp_path / "outcomes.parquet"),
        "--covariate",
        "probability",
    )
    assert readout.returncode == 0, readout.stderr
    assert readout.stdout.startswith("decision: ") and "CUPED on probability" in readout.stdout
    saved = json.loads((camp / "readout.json").read_text())
    page = (camp / "readout.html").read_text()
    assert f"Campaign readout: {saved['decision']['verdict'].upper()}" in page
    assert (camp / "conversion_by_arm.png").stat().st_size > 1000
    treated = assignment["arm"] == "treatment"
    assert saved["primary"]["n_a"] == int(treated.sum())
    assert saved["primary"]["conversions_a"] == int(outcomes.loc[treated.to_numpy(), "converted"].sum())
    assert saved["decision"]["verdict"] in ("go", "no-go", "inconclusive")


def test_read_out_from_the_raw_holdings_after_an_earlier_snapshot(
    deployment: Settings,
    run: Runner,  # noqa: F811 (the CLI runner fixture of test_cli_errors)
    tmp_path: Path,
) -> None:
    home, camp = deployment.home, tmp_path / "product"
    earlier = snapshots(deployment)[-3]
    planned = run(
        home,
        "campaign",
        "plan",
        str(camp),
        "--product",
        "current_account",
        "--top",
        "50%",
        "--snapshot",
        str(earlier),
        "--mde",
        "0.05",
        "--absolute",
    )
    assert planned.returncode == 0, planned.stderr
    assert run(home, "campaign", "assign", str(camp), "--seed", "1").returncode == 0
    readout = run(home, "campaign", "readout", str(camp))
    assert readout.returncode == 0, readout.stderr
    assert "guardrail closures" in readout.stdout and "secondary products_started" in readout.stdout
    saved = json.loads((camp / "readout.json").read_text())
    assignment = pd.read_parquet(camp / "assignment.parquet")
    # conversion = a holding of current_account started in the month after the snapshot (horizon 1)
    holdings = deployment.raw_dir / "holdings.parquet"
    converted = duckdb.sql(
        f"select distinct customer_id from read_parquet('{holdings}') where product_id = 'current_account' "
        f"and started_on > DATE '{earlier}' and started_on <= last_day(DATE '{earlier}' + interval 1 month)"
    ).df()["customer_id"]
    in_arm = assignment[assignment["arm"] == "control"]["customer_id"]
    assert saved["primary"]["conversions_b"] == int(in_arm.isin(converted).sum())


def test_user_errors_are_one_line(
    deployment: Settings,
    run: Runner,  # noqa: F811 (the CLI runner fixture of test_cli_errors)
    tmp_path: Path,
) -> None:
    home, camp = deployment.home, tmp_path / "errors"
    line = one_line(run(home, "campaign", "assign", str(camp)), STEP_FAILED)
    assert "no campaign plan" in line and "nextbest campaign plan" in line
    line = one_line(run(home, "campaign", "plan", str(camp), "--product", "yacht", "--top", "5%"), BAD_INPUT)
    assert "product 'yacht'" in line and "current_account" in line
    line = one_line(run(home, "campaign", "plan", str(camp), "--product", "isa", "--top", "lots"), BAD_INPUT)
    assert "--top 'lots'" in line
    line = one_line(
        run(home, "campaign", "plan", str(camp), "--next-best", "--snapshot", "1999-01-31"), BAD_INPUT
    )
    assert "no candidate at snapshot 1999-01-31" in line
    assert run(home, "campaign", "plan", str(camp), "--next-best", "--mde", "0.5").returncode == 0
    line = one_line(run(home, "campaign", "readout", str(camp)), STEP_FAILED)
    assert "no assignment" in line
    assert run(home, "campaign", "assign", str(camp)).returncode == 0
    line = one_line(
        run(home, "campaign", "simulate", str(camp), "--out", str(tmp_path / "o.parquet")), BAD_INPUT
    )
    assert "no oracle at" in line  # the bank was generated without its oracle
    line = one_line(run(home, "campaign", "readout", str(camp)), BAD_INPUT)  # the latest snapshot's window
    assert "ends after the data's last observed day" in line and "--outcomes" in line
    pd.DataFrame({"customer_id": ["C1"], "bought": [1]}).to_parquet(tmp_path / "bad.parquet")
    line = one_line(
        run(home, "campaign", "readout", str(camp), "--outcomes", str(tmp_path / "bad.parquet")), BAD_INPUT
    )
    assert "bad.parquet: missing column(s) converted" in line
