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
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: Settings | None = None,
    workers: int | None = None,
    allow_unauthenticated: bool = False,
) -> None:
    """Run the HTTP API with uvicorn (blocks until stopped).

    ``workers`` > 1 starts that many processes, each building its app (bundle, catalogue) from the
    environment's settings through ``nextbest.serving.api:app_from_env``, so ``settings`` must then be
    None (a process cannot be handed a Settings object); their metrics are shared through Prometheus'
    multiprocess mode. Default: the environment's ``serving.workers`` without ``settings``, one worker
    with them.

    Raises:
        UnauthenticatedStartError: ``host`` is not loopback, no API key is configured and
            ``allow_unauthenticated`` is off.
    """
    import uvicorn

    from nextbest.serving.api import create_app
    from nextbest.serving.auth import check_can_start, load_keyring
    from nextbest.serving.metrics import multiprocess_metrics
    from nextbest.serving.scorer import Scorer

    chosen = settings or get_settings()
    keyring = load_keyring(chosen)
    check_can_start(host, keyring, allow_unauthenticated)
    # fail here, in one line, rather than inside uvicorn's start-up: what each worker will load must load
    scorer = Scorer(chosen)
    workers = workers or (1 if settings is not None else chosen.serving.workers)
    common = {"host": host, "port": port, "timeout_keep_alive": KEEP_ALIVE_S, "access_log": False}
    if workers > 1:
        if settings is not None:
            raise ValueError("several workers read their settings from the environment: pass settings=None")
        with multiprocess_metrics():
            uvicorn.run("nextbest.serving.api:app_from_env", factory=True, workers=workers, **common)
    else:
        uvicorn.run(create_app(chosen, scorer=scorer, keyring=keyring), **common)  # the scorer loaded once


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
serve_app = typer.Typer(help="Start the HTTP API; `serve keys add` creates an API key.")
keys_app = typer.Typer(help="API keys of the HTTP API (stored hashed).", no_args_is_help=True)
decisions_app = typer.Typer(help="The decisions log (what the service answered).", no_args_is_help=True)
app.add_typer(serve_app, name="serve")
app.add_typer(decisions_app, name="decisions")
serve_app.add_typer(keys_app, name="keys")


@serve_app.callback(invoke_without_command=True)
def serve_command(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Worker processes (default: NEXTBEST_SERVING_WORKERS, 2)."),
    ] = None,
    allow_unauthenticated: Annotated[
        bool,
        typer.Option(
            "--allow-unauthenticated", help="Serve a non-loopback interface without any API key."
        ),
    ] = False,
) -> None:
    """Start the HTTP API (POST /rank, POST /rank/batch, GET /health, GET /ready, GET /products,
    GET /metrics). Off loopback, it refuses to start without an API key."""
    if ctx.invoked_subcommand is None:
        serve(host, port, workers=workers, allow_unauthenticated=allow_unauthenticated)


@keys_app.command("add")
def keys_add_command(
    key_id: Annotated[str, typer.Option("--id", help="The key's name, shown in logs and metrics.")],
    scopes: Annotated[str, typer.Option(help="Comma-separated scopes: rank, batch, score, admin.")],
    rate_per_s: Annotated[
        float | None, typer.Option(min=0, help="This key's request rate (default: the settings').")
    ] = None,
) -> None:
    """Create an API key: printed once; the key file keeps only its sha256."""
    from nextbest.serving.auth import add_key, keys_path

    settings = get_settings()
    path = keys_path(settings)
    key = add_key(path, key_id, [s.strip() for s in scopes.split(",") if s.strip()], rate_per_s)
    console.print(f"key {key_id!r} added to {path}; it is shown only now:", highlight=False)
    print(key)


@decisions_app.command("replay")
def decisions_replay_command(
    path: Annotated[Path, typer.Argument(help="A decisions parquet file or a decisions log directory.")],
) -> None:
    """Re-rank the logged customers with the logged bundle at the logged snapshot; exit 1 if any
    ranking differs from what was offered."""
    from nextbest.serving.decisions import replay

    report = replay(get_settings(), path)
    for line in report.differing:
        console.print(f"[red]differs[/red] {line}", highlight=False)
    console.print(f"{report.same:,} of {report.decisions:,} decisions replay to the same ranking")
    if not report.ok:
        raise typer.Exit(1)


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
        str | None, typer.Option(help="A task to score (churn, category_propensity, ...); default: ranking.")
    ] = None,
    decisions: Annotated[
        bool, typer.Option(help="Also append the answer to the decisions log (see log_batch_decisions).")
    ] = True,
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
    if decisions:
        logged = log_batch_decisions(get_settings(), out)
        console.print(f"decisions logged -> {logged}")


def log_batch_decisions(settings: Settings, batch_file: Path) -> Path:
    """Append a ``score-batch`` output to the decisions log (``serving.decisions_log_dir``, else
    ``<home>/decisions``), with the served bundle's version; the file written."""
    import uuid

    from nextbest.features.definitions import FEATURE_SERVICE_NAME
    from nextbest.serving.decisions import log_batch
    from nextbest.serving.scorer import resolve_bundle_path

    directory = settings.serving.decisions_log_dir or settings.home / "decisions"
    version = resolve_bundle_path(settings, settings.serving).name
    run_id = f"batch-{uuid.uuid4().hex}"
    return log_batch(settings, batch_file, directory, version, FEATURE_SERVICE_NAME, run_id)


def _iso_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"--snapshot must be a date YYYY-MM-DD, got {value!r}") from exc
