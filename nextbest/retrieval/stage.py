"""The retrieval stage on a build: train on its marts, evaluate recall, write the embedding marts.

``train_retrieval`` fits on the training groups (every labelled snapshot whose label window ends by the
latest labelled one), scores recall on the latest labelled snapshot against popularity and co-occurrence,
saves the model under ``<models_dir>/retrieval/<UTC stamp>/`` and writes the embedding marts into the
build's marts; ``embed_build`` writes a saved model's embedding marts for the live build (after a rebuild)
and ``publish_embeddings`` registers them in Feast and loads them into the online store.
``evaluate_retrieval`` re-scores a saved model on the same held-out snapshot. ``index_bundle`` ships a
saved model's item embeddings in a ranker's model bundle (``nextbest.retrieval.bundle``), so serving
retrieves before it ranks, reading each customer's embedding from the online store.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from nextbest.columns import EVENT_TIMESTAMP
from nextbest.errors import UserError
from nextbest.features.embeddings import FEAT_CUSTOMER_EMBEDDING_MONTHLY, RETRIEVAL_MODEL, view_names
from nextbest.features.store import MaterializationRun, apply_definitions, materialize
from nextbest.marts import DIM_PRODUCTS, FCT_CANDIDATES, FCT_RANKING_LABELS, mart_path
from nextbest.retrieval.bundle import DEFAULT_TOP_N, write_index
from nextbest.retrieval.data import Groups, load_catalogue, load_groups, split_train_test
from nextbest.retrieval.embeddings import EmbeddingMarts, write_embedding_marts
from nextbest.retrieval.evaluate import RECALL_KS, CooccurrenceRetrieval, RecallRow, recall_table
from nextbest.retrieval.train import (
    DEFAULT_CONFIG,
    RetrievalModel,
    TrainConfig,
    fit,
    latest_model,
    load_model,
    save_model,
)
from nextbest.settings import Settings

RETRIEVAL_MODELS_DIR = "retrieval"
"""The directory of the saved retrieval models, under ``settings.models_dir``."""


class RetrievalError(UserError):
    """The retrieval stage cannot run on what is there (no build, no model, nothing to train on)."""


@dataclass(frozen=True)
class RetrievalRun:
    """What one training run made: the model, where it went, its recall, the embedding marts."""

    model: RetrievalModel
    model_path: Path
    recall: list[RecallRow]
    marts: EmbeddingMarts
    load_seconds: float


def models_dir(settings: Settings) -> Path:
    """Where retrieval models are saved."""
    return settings.models_dir / RETRIEVAL_MODELS_DIR


def load_split(settings: Settings) -> tuple[Groups, Groups, Groups]:
    """All groups of the build, its training groups and its held-out groups.

    Raises:
        RetrievalError: a mart is missing or no snapshot is labelled.
    """
    _require_marts(settings)
    catalogue = load_catalogue(settings.marts_dir)
    groups = load_groups(settings.marts_dir, settings.raw_dir, catalogue)
    try:
        train, test = split_train_test(groups, settings.build.horizon_months)
    except ValueError as err:
        raise RetrievalError(f"{settings.marts_dir}: {err}") from err
    if train.positives.sum() < 2:
        raise RetrievalError(
            f"{settings.marts_dir}: {int(train.positives.sum())} adoptions in the training snapshots: "
            "at least 2 are needed"
        )
    return groups, train, test


def train_retrieval(
    settings: Settings,
    config: TrainConfig = DEFAULT_CONFIG,
    ks: tuple[int, ...] = RECALL_KS,
    progress: Callable[[str], None] = lambda _: None,
) -> RetrievalRun:
    """Fit, evaluate, save and write the embedding marts of the build ``settings`` reads."""
    started = time.perf_counter()
    groups, train, test = load_split(settings)
    load_seconds = time.perf_counter() - started
    progress(
        f"{len(train):,} training groups, {int(train.positives.sum()):,} adoptions; {len(test):,} held out"
    )
    model = fit(train, load_catalogue(settings.marts_dir), config, progress)
    recall = recall_table(
        model.customer_embeddings(test),
        model.item_embeddings(),
        model.popularity,
        test,
        ks,
        CooccurrenceRetrieval.fit(train),
    )
    path = save_model(model, models_dir(settings))
    marts = _write_marts(settings, path, model, groups)
    return RetrievalRun(model, path, recall, marts, load_seconds)


def _write_marts(settings: Settings, path: Path, model: RetrievalModel, groups: Groups) -> EmbeddingMarts:
    return write_embedding_marts(
        settings.marts_dir,
        model.catalogue.product_ids,
        model.item_embeddings(),
        pd.Timestamp(model.trained_until),
        groups,
        model.customer_embeddings(groups),
        model_id=path.name,
    )


def embed_build(settings: Settings, model_path: Path | None = None) -> tuple[Path, EmbeddingMarts]:
    """Write the embedding marts of a saved model (default: the latest) for the live build: every
    customer x snapshot of its ``fct_candidates``, from that snapshot's point-in-time inputs.

    Raises:
        RetrievalError: no build, no saved model, or a model of another catalogue.
    """
    _require_marts(settings)
    path, model = _saved_model(settings, model_path)
    groups = load_groups(settings.marts_dir, settings.raw_dir, model.catalogue)
    return path, _write_marts(settings, path, model, groups)


def publish_embeddings(settings: Settings, progress: bool = False) -> list[MaterializationRun]:
    """Register the build's embedding marts in Feast (``apply_definitions``: the ``customer_embedding``
    and ``product_embedding`` views, service ``retrieval_v1``) and load them into the online store."""
    apply_definitions(settings)
    return materialize(settings, progress=progress, views=view_names())


def _require_marts(settings: Settings) -> None:
    for model in (DIM_PRODUCTS, FCT_CANDIDATES, FCT_RANKING_LABELS):
        if not mart_path(settings, model).exists():
            raise RetrievalError(f"{mart_path(settings, model)} is missing: run `nextbest build` first")


def evaluate_retrieval(
    settings: Settings, model_path: Path | None = None, ks: tuple[int, ...] = RECALL_KS
) -> tuple[Path, list[RecallRow]]:
    """Recall@k of a saved model (default: the latest) on the build's held-out snapshot.

    Raises:
        RetrievalError: no saved model, or its catalogue is not the build's.
    """
    path, model = _saved_model(settings, model_path)
    _, train, test = load_split(settings)
    return path, recall_table(
        model.customer_embeddings(test),
        model.item_embeddings(),
        model.popularity,
        test,
        ks,
        CooccurrenceRetrieval.fit(train),
    )


def _saved_model(settings: Settings, model_path: Path | None) -> tuple[Path, RetrievalModel]:
    """A saved model (default: the latest) whose catalogue is the build's ``dim_products``.

    Raises:
        RetrievalError: no saved model, or its catalogue is not the build's.
    """
    path = model_path or latest_model(models_dir(settings))
    if path is None:
        raise RetrievalError(f"no retrieval model in {models_dir(settings)}: run `nextbest retrieval train`")
    model = load_model(path)
    if list(model.catalogue.product_ids) != list(load_catalogue(settings.marts_dir).product_ids):
        raise RetrievalError(f"{path}: its catalogue is not the build's dim_products: retrain")
    return path, model


def index_bundle(
    settings: Settings, bundle_path: Path, model_path: Path | None = None, top_n: int = DEFAULT_TOP_N
) -> tuple[Path, int]:
    """Write the retrieval index of a saved model (default: the latest) into the ranker bundle
    ``bundle_path``: its item embeddings and its name. Serving reads each customer's embedding from
    the online store's ``customer_embedding`` view, so the live build's embedding marts must be this
    model's. Returns the index directory and the number of customers embedded at the latest snapshot.

    Raises:
        RetrievalError: no build, no saved model, a model of another catalogue, no ranker bundle, or
            the build's customer embeddings missing or written by another model.
    """
    if not (bundle_path / "bundle.json").is_file():
        raise RetrievalError(f"{bundle_path} is not a model bundle (no bundle.json): run `nextbest train`")
    if top_n < 1:
        raise RetrievalError(f"--top-n must be >= 1, got {top_n}")
    _require_marts(settings)
    path, model = _saved_model(settings, model_path)
    customers = mart_path(settings, FEAT_CUSTOMER_EMBEDDING_MONTHLY)
    written = _latest_writers(customers)
    if written is None or written[0] != {path.name}:
        by = "missing" if written is None else f"written by {sorted(written[0])}"
        raise RetrievalError(
            f"{customers}: {by}, not by model {path.name}: run `nextbest retrieval embed --model {path}`"
        )
    out = write_index(
        bundle_path,
        [str(p) for p in model.catalogue.product_ids],
        model.item_embeddings(),
        top_n,
        model_id=path.name,
    )
    return out, written[1]


def _latest_writers(path: Path) -> tuple[set[str], int] | None:
    """The ``retrieval_model`` values of a customer embedding mart's latest snapshot and its row count;
    None when the file is missing."""
    if not path.is_file():
        return None
    if RETRIEVAL_MODEL not in pq.read_schema(path).names:
        return {"an unnamed model (no retrieval_model column)"}, 0
    frame = pd.read_parquet(path, columns=[EVENT_TIMESTAMP, RETRIEVAL_MODEL])
    latest = frame[frame[EVENT_TIMESTAMP] == frame[EVENT_TIMESTAMP].max()]
    return set(latest[RETRIEVAL_MODEL].astype(str)), len(latest)
