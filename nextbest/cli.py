"""The ``nextbest`` command: each stage's Typer app mounted here, plus the commands that span stages.

Mounted: ``nextbest ingest ...`` (``nextbest.ingest.cli``), ``nextbest features ...``
(``nextbest.features.cli``), ``nextbest train`` / ``evaluate`` (``nextbest.training.cli``) and
``nextbest serve`` / ``rank`` / ``score-batch`` (``nextbest.serving.cli``). Declared here, because they
run several stages: ``build`` (dbt, then Feast), ``summary`` and ``demo``. Every command only parses its
options and delegates to library code.
"""

from __future__ import annotations

import warnings
from typing import Annotated

import typer
from rich.console import Console

from nextbest.features import cli as features_cli
from nextbest.ingest import cli as ingest_cli
from nextbest.serving import cli as serving_cli
from nextbest.settings import BuildVars, get_settings
from nextbest.training import cli as training_cli

app = typer.Typer(help="nextbest: one LambdaMART ranker for the next best product.", no_args_is_help=True)
app.add_typer(ingest_cli.app, name="ingest")
app.add_typer(features_cli.app, name="features")
app.add_typer(training_cli.app)
app.add_typer(serving_cli.app)
console = Console()

THIRD_PARTY_NOISE = r"fetch_arrow_table\(\) is deprecated"
"""A DeprecationWarning raised inside ibis (used by Feast's DuckDB offline store) on every query."""


@app.callback()
def _main() -> None:
    """nextbest: one LambdaMART ranker for the next best product."""
    warnings.filterwarnings("ignore", message=THIRD_PARTY_NOISE, category=DeprecationWarning)


Horizon = Annotated[
    int | None,
    typer.Option(
        min=1, help="Label horizon in months [default: the previous build's, else dbt_project.yml's]."
    ),
]
Lookback = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Activity look-back for the snapshot population, months [default: the previous build's, "
        "else dbt_project.yml's].",
    ),
]


@app.command()
def build(
    horizon_months: Horizon = None,
    activity_lookback_months: Lookback = None,
    feast: Annotated[bool, typer.Option(help="Also apply the Feast definitions and materialize.")] = True,
) -> None:
    """dbt build (features, candidates, labels, tests), then Feast apply + materialize, then summarise.

    The build vars are kept beside the warehouse: a later ``nextbest build`` without them reuses them."""
    from nextbest.pipeline import build_warehouse

    settings = get_settings()
    chosen = settings.build.replace(
        horizon_months=horizon_months, activity_lookback_months=activity_lookback_months
    )
    console.print(f"build vars: {chosen.model_dump()}")
    build_warehouse(settings, chosen)
    summary()
    if feast:
        features_cli.features_apply()
        features_cli.features_materialize()


@app.command()
def summary() -> None:
    """Rows per mart, snapshots, candidates per group and the positive rate."""
    from nextbest.pipeline import summarize_warehouse

    for line in summarize_warehouse(get_settings()).lines():
        console.print(line)


@app.command()
def demo(
    customers: Annotated[int, typer.Option(min=1)] = 5_000,
    months: Annotated[int, typer.Option(min=3)] = 18,
    seed: int = 0,
) -> None:
    """The main job end to end on the embedded default (the synthetic bank)."""
    from nextbest.pipeline import latest_event_timestamp, sample_latest_customers

    settings = get_settings()
    ingest_cli.ingest_synthetic(customers=customers, months=months, seed=seed, oracle=True)
    defaults = BuildVars.defaults()  # the demo always builds with dbt_project.yml's vars
    build(defaults.horizon_months, defaults.activity_lookback_months)
    code = training_cli.run_training(settings, training_cli.resolve_config_path(settings, None))
    if code:
        raise typer.Exit(code)
    console.rule("ranked online (Feast online store -> candidates -> score -> calibrate)")
    # the synthetic bank is dated in the past: judge feature staleness as of its latest snapshot
    serving = settings.serving.model_copy(update={"as_of": latest_event_timestamp(settings)})
    for customer_id in sample_latest_customers(settings, n=3, seed=seed):
        serving_cli.rank(customer_id, k=5, settings=settings, serving=serving)


if __name__ == "__main__":
    app()
