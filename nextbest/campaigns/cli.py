"""``nextbest campaign plan|assign|simulate|readout``: parse options, delegate to ``nextbest.campaigns``.

A campaign is a directory: ``plan`` writes ``plan.json`` + ``audience.parquet``, ``assign`` writes
``assignment.parquet`` + ``assignment.json`` (seed, shares, counts, the plan), ``readout`` writes
``readout.json`` and ``readout.html`` (with ``conversion_by_arm.png``). ``simulate`` (synthetic bank only)
draws outcomes from the oracle for a known uplift.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from nextbest.settings import get_settings

app = typer.Typer(
    help="Plan, assign and read out a targeted offer campaign (an A/B test).", no_args_is_help=True
)
console = Console(soft_wrap=True)

Directory = Annotated[Path, typer.Argument(help="The campaign's directory (created by `plan`).")]
READOUT_FILE = "readout.json"


def _snapshot(text: str | None) -> date | None:
    from nextbest.campaigns.errors import CampaignError

    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CampaignError(f"--snapshot {text!r}: expected a date YYYY-MM-DD") from None


@app.command("plan")
def plan_command(
    directory: Directory,
    product: Annotated[str | None, typer.Option(help="Offer this product ...")] = None,
    top: Annotated[str | None, typer.Option(help="... to the top share of its candidates, e.g. 5%.")] = None,
    next_best: Annotated[bool, typer.Option("--next-best", help="Offer each customer their top-1.")] = False,
    snapshot: Annotated[str | None, typer.Option(help="Snapshot YYYY-MM-DD [default: the latest].")] = None,
    scores: Annotated[
        Path | None, typer.Option(help="A `nextbest score-batch` file instead of scoring here.")
    ] = None,
    mde: Annotated[float, typer.Option(help="Minimum detectable effect (relative unless --absolute).")] = 0.1,
    absolute: Annotated[bool, typer.Option("--absolute", help="The MDE is in conversion points.")] = False,
    alpha: Annotated[float, typer.Option(help="Two-sided significance level.")] = 0.05,
    power: Annotated[float, typer.Option(help="Power at the MDE.")] = 0.8,
    treatment_share: Annotated[float, typer.Option(help="Share of the audience treated.")] = 0.5,
    business_rule_share: Annotated[
        float, typer.Option(help="Share offered by the business rule instead (a third arm).")
    ] = 0.0,
) -> None:
    """Select the audience from calibrated probabilities; power analysis for the MDE; write the plan."""
    from nextbest.campaigns.plan import (
        ArmShares,
        AudienceRule,
        make_plan,
        parse_share,
        select_audience,
        write_plan,
    )
    from nextbest.campaigns.scores import read_scores, resolve_snapshot, score_snapshot, served_bundle_path

    rule = AudienceRule(product, None if top is None else parse_share(top), next_best)
    settings = get_settings()
    if scores is not None:
        chosen, scored = read_scores(scores, _snapshot(snapshot))
        model = f"scores file {scores}"
    else:
        chosen = resolve_snapshot(settings, _snapshot(snapshot))
        bundle_path = served_bundle_path(settings)
        with console.status(f"scoring the candidates of {chosen} with {bundle_path.name} ..."):
            scored = score_snapshot(settings, chosen)
        model = bundle_path.name
    audience = select_audience(scored, rule)
    plan = make_plan(
        audience,
        rule,
        str(chosen),
        model,
        mde,
        relative=not absolute,
        alpha=alpha,
        power=power,
        shares=ArmShares(treatment_share, business_rule_share),
    )
    write_plan(directory, plan, audience)
    for line in plan.lines():
        console.print(line, markup=False)
    console.print(f"plan: {directory}")


@app.command("assign")
def assign_command(
    directory: Directory,
    seed: Annotated[int, typer.Option(help="The random seed (recorded with the assignment).")] = 0,
    strata: Annotated[int, typer.Option(min=1, help="Probability strata (10 = deciles).")] = 10,
) -> None:
    """Seeded, stratified split of the planned audience into arms; sample-ratio-mismatch check."""
    from nextbest.campaigns.assign import write_assignment
    from nextbest.campaigns.plan import read_plan

    plan, audience = read_plan(directory)
    _, record, srm = write_assignment(directory, plan, audience, seed, strata)
    console.print(
        f"seed {record.seed}, {record.n_strata} strata: "
        + ", ".join(f"{arm} {n:,}" for arm, n in record.counts.items()),
        markup=False,
    )
    console.print(srm.line(), markup=False)
    console.print(f"assignment: {directory}")


@app.command("simulate")
def simulate_command(
    directory: Directory,
    out: Annotated[Path, typer.Option(help="Where to write the simulated outcomes (parquet).")],
    uplift: Annotated[float, typer.Option(help="True relative uplift of a treated customer.")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the outcome draw.")] = 0,
) -> None:
    """Synthetic bank only: draw the assigned customers' outcomes from the oracle's true probabilities."""
    import numpy as np

    from nextbest.campaigns.assign import read_assignment
    from nextbest.campaigns.files import atomic_write_parquet
    from nextbest.campaigns.simulate import TRUE_PROBABILITY, oracle_probabilities, simulate_outcomes

    assignment, record = read_assignment(directory)
    snapshot = date.fromisoformat(record.plan["snapshot_on"])
    truth = oracle_probabilities(get_settings().raw_dir / "oracle.parquet", snapshot, assignment)
    outcomes = simulate_outcomes(
        truth, truth[TRUE_PROBABILITY].to_numpy(), uplift, np.random.default_rng(seed)
    )
    atomic_write_parquet(outcomes, out)
    console.print(f"{len(outcomes):,} outcomes (uplift {uplift:+.1%}, seed {seed}): {out}", markup=False)


def _month_end(day: date, months: int) -> date:
    """The last day of the month ``months`` after ``day``'s."""
    year, month = divmod(day.month - 1 + months, 12)
    year += day.year
    return date(year, month + 1, calendar.monthrange(year, month + 1)[1])


@app.command("readout")
def readout_command(
    directory: Directory,
    outcomes: Annotated[
        Path | None, typer.Option(help="customer_id, converted (0/1) [+ metrics]; default: the raw holdings.")
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="From raw holdings: window end YYYY-MM-DD [default: the label horizon]."),
    ] = None,
    covariate: Annotated[
        str | None, typer.Option(help="A pre-period column for CUPED, e.g. probability.")
    ] = None,
    guardrail: Annotated[str | None, typer.Option(help="A metric where higher is worse.")] = None,
    secondary: Annotated[list[str] | None, typer.Option(help="Secondary metrics (repeatable).")] = None,
) -> None:
    """Test conversion treatment vs control (z-test, CIs, optional CUPED), guardrail; go / no-go."""
    from nextbest.campaigns.assign import read_assignment
    from nextbest.campaigns.files import atomic_write_json
    from nextbest.campaigns.plan import CampaignPlan
    from nextbest.campaigns.readout import (
        CLOSURES,
        PRODUCTS_STARTED,
        SPEND,
        outcomes_from_holdings,
        read_out,
        read_outcomes,
    )
    from nextbest.campaigns.report import (
        copy_beside_training_report,
        record_window,
        write_readout_page,
    )
    from nextbest.ingest.store import read_dataset_meta
    from nextbest.training.report import reports_dir

    settings = get_settings()
    assignment, record = read_assignment(directory)
    plan = CampaignPlan.from_dict(record.plan)
    window_is_horizon = True
    if outcomes is not None:
        frame = read_outcomes(outcomes, assignment)
    else:
        snapshot = date.fromisoformat(plan.snapshot_on)
        horizon_end = _month_end(snapshot, settings.build.horizon_months)
        end = _snapshot(until) or horizon_end
        window_is_horizon = end == horizon_end
        observed = read_dataset_meta(settings.raw_dir).observed_until
        frame = outcomes_from_holdings(settings.raw_dir, assignment, snapshot, end, observed)
        console.print(f"outcomes from the raw holdings in ({snapshot}, {end}]", markup=False)
        guardrail = guardrail or CLOSURES
        secondary = secondary or [PRODUCTS_STARTED, SPEND]
    result = read_out(
        assignment, frame, plan, covariate, guardrail, tuple(secondary or ()), window_is_horizon
    )
    for line in result.lines():
        console.print(line, markup=False)
    report = {"read_at": datetime.now().astimezone().isoformat(timespec="seconds"), **result.to_dict()}
    atomic_write_json(report, directory / READOUT_FILE)
    windows = None if outcomes is not None else record_window(directory, str(end), result)
    page = write_readout_page(directory, plan, result, windows)
    console.print(f"readout: {directory / READOUT_FILE}, {page}", markup=False)
    beside = copy_beside_training_report(reports_dir(settings), plan.model, directory)
    if beside is not None:
        console.print(f"readout page beside the training report: {beside}", markup=False)
