"""``nextbest serve``, ``nextbest rank`` and ``nextbest score-batch``: parse options, delegate.

``app`` is mounted by the root command (``nextbest.cli``). ``serve`` and ``rank`` are also plain functions
(the benchmarks and ``nextbest demo`` call them); batch scoring is ``nextbest.serving.batch``.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from nextbest.settings import Settings, get_settings

if TYPE_CHECKING:
    from nextbest.serving.results import Ranking
    from nextbest.settings import ServingSettings

console = Console()


KEEP_ALIVE_S = 30
"""Idle keep-alive connections live this long (uvicorn's 5 s default races with busy clients' reuse)."""


def serve(
    host: str = "127.0.0.1", port: int = 8000, settings: Settings | None = None, workers: int | None = None
) -> None:
    """Run the HTTP API with uvicorn (blocks until stopped).

    ``workers`` > 1 starts that many processes, each building its app (bundle, catalogue) from the
    environment's settings through ``nextbest.serving.api:app_from_env``, so ``settings`` must then be
    None (a process cannot be handed a Settings object). Default: the environment's ``serving.workers``
    without ``settings``, one worker with them.
    """
    import uvicorn

    from nextbest.serving.api import create_app
    from nextbest.serving.scorer import Scorer

    chosen = settings or get_settings()
    # fail here, in one line, rather than inside uvicorn's start-up: what each worker will load must load
    scorer = Scorer(chosen)
    workers = workers or (1 if settings is not None else chosen.serving.workers)
    common = {"host": host, "port": port, "timeout_keep_alive": KEEP_ALIVE_S, "access_log": False}
    if workers > 1:
        if settings is not None:
            raise ValueError("several workers read their settings from the environment: pass settings=None")
        uvicorn.run("nextbest.serving.api:app_from_env", factory=True, workers=workers, **common)
    else:
        uvicorn.run(create_app(chosen, scorer=scorer), **common)  # the scorer loaded once


def ranking_table(ranking: Ranking) -> Table:
    """A rich table of one ranking (rank, product, probability, score)."""
    table = Table(title=f"customer {ranking.customer_id} at {ranking.snapshot_at:%Y-%m-%d}")
    table.add_column("rank", justify="right")
    table.add_column("product")
    table.add_column("probability", justify="right")
    table.add_column("score", justify="right")
    for p in ranking.products:
        prob = "-" if p.probability is None else f"{p.probability:.2%}"
        table.add_row(str(p.rank), p.product_id, prob, f"{p.score:.3f}")
    return table


def rank(
    customer_id: str, k: int = 7, settings: Settings | None = None, serving: ServingSettings | None = None
) -> Ranking:
    """Rank one customer through the online path and print the result as a table."""
    from nextbest.serving.scorer import Scorer
    scorer = Scorer(settings or get_settings(), serving)
    ranking = scorer.rank(customer_id, k)
    console.print(ranking_table(ranking))
    if ranking.reason:
        console.print(f"[yellow]{ranking.reason}[/yellow]")
    if ranking.stale_views:
        stale = ", ".join(ranking.stale_views)
        console.print(f"[yellow]stale views (older than their ttl): {stale}[/yellow]")
    console.print(f"model {scorer.model_version}; {ranking.n_candidates} candidates")
    return ranking


app = typer.Typer(help="Serve the ranker: HTTP API, one customer, batch scoring.", no_args_is_help=True)


@app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option(help="Interface to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Worker processes (default: NEXTBEST_SERVING_WORKERS, 2)."),
    ] = None,
) -> None:
    """Start the HTTP API (POST /rank, POST /rank/batch, GET /health, GET /ready, GET /products)."""
    serve(host, port, workers=workers)


@app.command("rank")
def rank_command(
    customer_id: Annotated[str, typer.Argument(help="The customer to rank products for.")],
    k: Annotated[int, typer.Option(min=1, help="Products to show.")] = 7,
) -> None:
    """Rank one customer's candidate products through the online store and print a table.

    A request the service refuses (unknown customer or product, no model, store down, stale features)
    ends in one line on stderr naming the reason and exit code 1 (``nextbest.cli.main``), not a traceback."""
    rank(customer_id, k)


@app.command("score-batch")
def score_batch_command(
    snapshot: Annotated[
        str | None,
        typer.Option(help="Snapshot date (month end), YYYY-MM-DD (a task's default: its latest)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Output parquet file (a task's default: $NEXTBEST_HOME/scores/<task>/...)."),
    ] = None,
    chunk_size: Annotated[int, typer.Option(min=1, help="Customers per chunk (the ranking).")] = 5_000,
    task: Annotated[
        str | None, typer.Option(help="A binary customer task to score (e.g. churn); default: the ranking.")
    ] = None,
) -> None:
    """Score every customer's candidates at a snapshot from the offline store into one parquet file, or,
    with --task, the task's population at a snapshot (calibrated probabilities)."""
    when = None if snapshot is None else _iso_date(snapshot)
    if task is not None and task != "product_propensity":
        from nextbest.serving.tasks import score_task_batch

        batch = score_task_batch(task, when, out, progress=console.print)
        console.print(
            f"[green]wrote[/green] {batch.rows:,} {task} scores at {batch.snapshot_on} "
            f"(model {batch.model_version}) -> {batch.path}"
        )
        return
    if when is None or out is None:
        raise typer.BadParameter("the ranking needs --snapshot and --out (or give --task)")
    from nextbest.serving.batch import score_batch

    rows = score_batch(when, out, chunk_size)
    console.print(f"[green]wrote[/green] {rows:,} rows -> {out}")


def _iso_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"--snapshot must be a date YYYY-MM-DD, got {value!r}") from exc
