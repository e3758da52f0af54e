"""``nextbest retrieval train | embed | recall | index``: parse options, delegate to the stage module.

``app`` is mounted by the root command as ``nextbest retrieval``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from nextbest.settings import get_settings

app = typer.Typer(help="The two-tower retrieval stage (needs the `retrieval` extra).", no_args_is_help=True)
console = Console()

KsOption = Annotated[list[int] | None, typer.Option("--k", min=1, help="Cut-offs K of recall@K [10 50 100].")]
FeastOption = Annotated[
    bool,
    typer.Option(
        "--feast/--no-feast",
        help="Register the embedding marts in Feast (views customer_embedding, product_embedding) and "
        "materialize them to the online store.",
    ),
]
ModelOption = Annotated[
    Path | None, typer.Option(exists=True, file_okay=False, help="A saved retrieval model directory.")
]


def _publish(feast: bool) -> None:
    if not feast:
        console.print("not registered in Feast (--no-feast): run `nextbest features apply` and `materialize`")
        return
    from nextbest.retrieval.stage import publish_embeddings

    for run in publish_embeddings(get_settings()):
        console.print(f"materialized {run.view} ({run.mode}) in {run.seconds:.1f}s")


def _print_recall(rows: list) -> None:  # list[RecallRow]
    console.print(
        f"{'K':>5} {'two-tower':>10} {'popularity':>11} {'ratio':>7} {'co-occurrence':>14}   "
        "groups with an adoption"
    )
    for row in rows:
        console.print(
            f"{row.k:>5} {row.two_tower:>10.4f} {row.popularity:>11.4f} {row.ratio:>7.3f} "
            f"{row.cooccurrence:>14.4f}   {row.groups:,}"
        )


@app.command("train")
def retrieval_train(
    epochs: Annotated[int, typer.Option(min=1)] = 20,
    seed: int = 0,
    ks: KsOption = None,
    feast: FeastOption = True,
) -> None:
    """Fit the two towers on the live build; print held-out recall@K vs popularity; write the embedding
    marts and load them into Feast."""
    from nextbest.retrieval.evaluate import RECALL_KS
    from nextbest.retrieval.stage import train_retrieval
    from nextbest.retrieval.train import TrainConfig

    run = train_retrieval(
        get_settings(), TrainConfig(epochs=epochs, seed=seed), tuple(ks or RECALL_KS), progress=console.log
    )
    _print_recall(run.recall)
    console.print(
        f"fit {run.model.fit_seconds:.1f}s (data {run.load_seconds:.1f}s); model: {run.model_path}",
        soft_wrap=True,
    )
    console.print(f"{run.marts.product_rows:,} rows -> {run.marts.products}", soft_wrap=True)
    console.print(f"{run.marts.customer_rows:,} rows -> {run.marts.customers}", soft_wrap=True)
    _publish(feast)


@app.command("embed")
def retrieval_embed(model: ModelOption = None, feast: FeastOption = True) -> None:
    """Write a saved model's (default: the latest) embedding marts for the live build (e.g. after a
    rebuild) and load them into Feast, without retraining."""
    from nextbest.retrieval.stage import embed_build

    path, marts = embed_build(get_settings(), model)
    console.print(f"model: {path}", soft_wrap=True)
    console.print(f"{marts.product_rows:,} rows -> {marts.products}", soft_wrap=True)
    console.print(f"{marts.customer_rows:,} rows -> {marts.customers}", soft_wrap=True)
    _publish(feast)


@app.command("recall")
def retrieval_recall(
    model: ModelOption = None,
    ks: KsOption = None,
) -> None:
    """Recall@K of a saved model (default: the latest) vs popularity on the held-out snapshot."""
    from nextbest.retrieval.evaluate import RECALL_KS
    from nextbest.retrieval.stage import evaluate_retrieval

    path, rows = evaluate_retrieval(get_settings(), model, tuple(ks or RECALL_KS))
    console.print(f"model: {path}", soft_wrap=True)
    _print_recall(rows)


@app.command("index")
def retrieval_index(
    bundle: Annotated[
        Path, typer.Option(exists=True, file_okay=False, help="The ranker's model bundle to ship it in.")
    ],
    model: ModelOption = None,
    top_n: Annotated[int, typer.Option(min=1, help="Candidates kept per customer before ranking.")] = 100,
) -> None:
    """Ship a retrieval model (default: the latest) in a ranker bundle: serving then ranks only each
    customer's top-N retrieved candidates (its embedding read from Feast's customer_embedding view)."""
    from nextbest.retrieval.stage import index_bundle

    out, customers = index_bundle(get_settings(), bundle, model, top_n)
    console.print(
        f"retrieval index (top {top_n}; {customers:,} customers embedded at the latest snapshot) -> {out}",
        soft_wrap=True,
    )
