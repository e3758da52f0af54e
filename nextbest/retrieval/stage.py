"""The retrieval stage on a build: train on its marts, evaluate recall, write the embedding marts.

``train_retrieval`` fits on the training groups (every labelled snapshot whose label window ends by the
latest labelled one), scores recall on the latest labelled snapshot against popularity and co-occurrence,
saves the model under ``<models_dir>/retrieval/<UTC stamp>/`` and writes the embedding marts into the
build's marts.
``evaluate_retrieval`` re-scores a saved model on the same held-out snapshot. ``index_bundle`` ships a
saved model's item embeddings and the latest snapshot's customer embeddings in a ranker's model bundle
(``nextbest.retrieval.bundle``), so serving retrieves before it ranks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from nextbest.columns import EVENT_TIMESTAMP
from nextbest.errors import UserError
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
    for model in (DIM_PRODUCTS, FCT_CANDIDATES, FCT_RANKING_LABELS):
        if not mart_path(settings, model).exists():
            raise RetrievalError(f"{mart_path(settings, model)} is missing: run `nextbest build` first")
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
    marts = write_embedding_marts(
        settings.marts_dir,
        model.catalogue.product_ids,
        model.item_embeddings(),
        pd.Timestamp(model.trained_until),
        groups,
        model.customer_embeddings(groups),
    )
    return RetrievalRun(model, path, recall, marts, load_seconds)


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
    ``bundle_path``: its item embeddings and the customer embeddings of the build's latest snapshot.
    Returns the index directory and the number of customers embedded.

    Raises:
        RetrievalError: no build, no saved model, a model of another catalogue, or no ranker bundle.
    """
    if not (bundle_path / "bundle.json").is_file():
        raise RetrievalError(f"{bundle_path} is not a model bundle (no bundle.json): run `nextbest train`")
    if top_n < 1:
        raise RetrievalError(f"--top-n must be >= 1, got {top_n}")
    for model in (DIM_PRODUCTS, FCT_CANDIDATES, FCT_RANKING_LABELS):
        if not mart_path(settings, model).exists():
            raise RetrievalError(f"{mart_path(settings, model)} is missing: run `nextbest build` first")
    path, model = _saved_model(settings, model_path)
    groups = load_groups(settings.marts_dir, settings.raw_dir, model.catalogue)
    latest = groups.subset((groups.keys[EVENT_TIMESTAMP] == groups.keys[EVENT_TIMESTAMP].max()).to_numpy())
    out = write_index(
        bundle_path,
        [str(p) for p in model.catalogue.product_ids],
        model.item_embeddings(),
        latest.keys,
        model.customer_embeddings(latest),
        top_n,
        source=str(path),
    )
    return out, len(latest)
