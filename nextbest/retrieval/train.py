"""Fit the two-tower model (seeded, CPU), embed customers and items, save and load the fitted model.

Training pairs are (group, adopted item) of the training groups; a pair's negatives are the other
pairs' items that are candidates of its group. Each epoch shuffles the pairs with the config's seed and
takes batches of ``batch_size`` pairs (the last partial batch is dropped, so every step has one shape
and compiles once). Same data, same seed, same machine: the same parameters.
"""

from __future__ import annotations

import functools
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from flax import serialization

from nextbest.columns import EVENT_TIMESTAMP
from nextbest.retrieval.data import (
    POPULARITY_BUCKETS,
    Catalogue,
    Groups,
    popularity_buckets,
    popularity_counts,
)
from nextbest.retrieval.model import TowerShape, TwoTower, sampled_softmax_loss

META_FILE = "retrieval.json"
"""The saved model's metadata (config, shape, catalogue, standardisation), in its directory."""

PARAMS_FILE = "params.msgpack"
"""The saved model's Flax parameters, in its directory."""

EMBED_BATCH = 4096
"""Groups embedded per call when embedding many customers."""


@dataclass(frozen=True)
class TrainConfig:
    """Knobs of the fit.

    Attributes:
        epochs: passes over the training pairs.
        batch_size: pairs per step (the in-batch negatives of each pair: ``batch_size - 1``).
        learning_rate: Adam's step size.
        temperature: the cosine affinity is divided by it in the loss (> 0; smaller = sharper).
        hidden, dim: tower widths (``TowerShape``).
        seed: initialisation and shuffling seed.
    """

    epochs: int = 20
    batch_size: int = 512
    learning_rate: float = 3e-3
    temperature: float = 0.1
    hidden: int = 64
    dim: int = 32
    seed: int = 0


DEFAULT_CONFIG = TrainConfig()
"""The config of ``nextbest retrieval train`` without options."""


@dataclass(frozen=True)
class RetrievalModel:
    """A fitted two-tower model with what it needs to embed any group of the same catalogue.

    Attributes:
        shape: the towers' sizes.
        params: the Flax parameters (numpy arrays).
        catalogue: the items, in index order.
        popularity: training adoptions per item (float [items]); also the popularity peer's scores.
        feature_mean, feature_std: standardisation of the customer features (training groups).
        config: the fit's config.
        trained_until: latest ``event_timestamp`` of the training groups (ISO 8601).
        fit_seconds: wall time of the fit (compilation included).
        losses: mean training loss of each epoch.
    """

    shape: TowerShape
    params: dict
    catalogue: Catalogue
    popularity: np.ndarray
    feature_mean: np.ndarray
    feature_std: np.ndarray
    config: TrainConfig
    trained_until: str
    fit_seconds: float
    losses: tuple[float, ...]

    @property
    def buckets(self) -> np.ndarray:
        """Popularity bucket of each item (``popularity_buckets`` of ``popularity``)."""
        return popularity_buckets(self.popularity, self.shape.n_popularity_buckets)

    def item_embeddings(self) -> np.ndarray:
        """float32 [items, dim], unit rows, in catalogue order."""
        ids = jnp.arange(self.catalogue.size, dtype=jnp.int32)
        vecs = _item_tower(
            self.shape, self.params, ids, jnp.asarray(self.catalogue.categories), jnp.asarray(self.buckets)
        )
        return np.asarray(vecs, dtype=np.float32)

    def customer_embeddings(self, groups: Groups) -> np.ndarray:
        """float32 [groups, dim], unit rows: each group from its own point-in-time inputs only."""
        features = (groups.features - self.feature_mean) / self.feature_std
        out = [
            np.asarray(
                _embed_customers(
                    self,
                    groups.history_items[i : i + EMBED_BATCH],
                    groups.history_weights[i : i + EMBED_BATCH],
                    features[i : i + EMBED_BATCH],
                ),
                dtype=np.float32,
            )
            for i in range(0, len(groups), EMBED_BATCH)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.shape.dim), dtype=np.float32)


def _embed_customers(
    model: RetrievalModel, items: np.ndarray, weights: np.ndarray, features: np.ndarray
) -> jax.Array:
    return _customer_tower(
        model.shape,
        model.params,
        jnp.asarray(items),
        jnp.asarray(weights),
        jnp.asarray(features, dtype=jnp.float32),
        jnp.asarray(model.catalogue.categories),
        jnp.asarray(model.buckets),
    )


@functools.partial(jax.jit, static_argnums=0)
def _customer_tower(shape: TowerShape, params: dict, *inputs: jax.Array) -> jax.Array:
    """``TwoTower.customers`` compiled once per shape (eager Flax dispatches op by op)."""
    return TwoTower(shape).apply({"params": params}, *inputs, method=TwoTower.customers)


@functools.partial(jax.jit, static_argnums=0)
def _item_tower(shape: TowerShape, params: dict, *inputs: jax.Array) -> jax.Array:
    """``TwoTower.items`` compiled once per shape."""
    return TwoTower(shape).apply({"params": params}, *inputs, method=TwoTower.items)


def training_pairs(groups: Groups) -> tuple[np.ndarray, np.ndarray]:
    """(group index, item index) of every adoption in ``groups``, in group then item order."""
    group, item = np.nonzero(groups.positives)
    return group.astype(np.int32), item.astype(np.int32)


def fit(
    train: Groups,
    catalogue: Catalogue,
    config: TrainConfig = DEFAULT_CONFIG,
    progress: Callable[[str], None] = lambda _: None,
) -> RetrievalModel:
    """Fit the two towers on the adoptions of ``train`` (see the module docstring).

    Raises:
        ValueError: fewer than 2 adoptions (no in-batch negative).
    """
    started = time.perf_counter()
    group, item = training_pairs(train)
    batch = min(config.batch_size, len(group))
    if batch < 2:
        raise ValueError(f"{len(group)} adoptions in the training groups: too few to train on")
    counts = popularity_counts(train)
    shape = TowerShape(
        n_items=catalogue.size,
        n_categories=max(len(catalogue.category_names), 1),
        n_popularity_buckets=POPULARITY_BUCKETS,
        n_features=train.features.shape[1],
        hidden=config.hidden,
        dim=config.dim,
    )
    buckets = popularity_buckets(counts, shape.n_popularity_buckets)
    mean = train.features.mean(axis=0)
    std = np.where(train.features.std(axis=0) > 0, train.features.std(axis=0), 1.0).astype(np.float32)
    features = (train.features - mean) / std
    log_q = np.log(counts / counts.sum() + 1e-12).astype(np.float32)
    model = TwoTower(shape)
    key = jax.random.PRNGKey(config.seed)
    params = model.init(
        key,
        jnp.asarray(train.history_items[:1]),
        jnp.asarray(train.history_weights[:1]),
        jnp.asarray(features[:1]),
        jnp.zeros(1, jnp.int32),
        jnp.asarray(catalogue.categories),
        jnp.asarray(buckets),
    )["params"]
    optimiser = optax.adam(config.learning_rate)
    state = optimiser.init(params)
    categories, bucket_of = jnp.asarray(catalogue.categories), jnp.asarray(buckets)

    def loss_fn(params: dict, batch: tuple[jax.Array, ...]) -> jax.Array:
        hist, weights, feats, items, allowed = batch
        users, vecs = model.apply({"params": params}, hist, weights, feats, items, categories, bucket_of)
        return sampled_softmax_loss(
            users, vecs, items, jnp.asarray(log_q)[items], config.temperature, allowed
        )

    @jax.jit
    def step(params: dict, state: optax.OptState, batch: tuple[jax.Array, ...]):  # noqa: ANN202
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, state = optimiser.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    rng = np.random.default_rng(config.seed)
    losses: list[float] = []
    for epoch in range(config.epochs):
        order = rng.permutation(len(group))
        epoch_losses = []
        for start in range(0, len(order) - batch + 1, batch):
            rows = order[start : start + batch]
            g, items = group[rows], item[rows]
            # negatives only among each row's own candidates (see sampled_softmax_loss)
            allowed = train.candidates[g][:, items]
            batch_arrays = (train.history_items[g], train.history_weights[g], features[g], items, allowed)
            params, state, loss = step(params, state, batch_arrays)
            epoch_losses.append(float(loss))
        losses.append(float(np.mean(epoch_losses)))
        progress(f"epoch {epoch + 1}/{config.epochs}: loss {losses[-1]:.4f}")
    return RetrievalModel(
        shape=shape,
        params=jax.tree_util.tree_map(np.asarray, params),
        catalogue=catalogue,
        popularity=counts,
        feature_mean=mean.astype(np.float32),
        feature_std=std,
        config=config,
        trained_until=pd.Timestamp(train.keys[EVENT_TIMESTAMP].max()).isoformat(),
        fit_seconds=time.perf_counter() - started,
        losses=tuple(losses),
    )


def save_model(model: RetrievalModel, directory: Path) -> Path:
    """Write ``model`` to a new ``directory/<UTC stamp>/`` (written aside, renamed into place); its path."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=directory))
    meta = {
        "shape": asdict(model.shape),
        "config": asdict(model.config),
        "product_ids": [str(p) for p in model.catalogue.product_ids],
        "categories": model.catalogue.categories.tolist(),
        "category_names": list(model.catalogue.category_names),
        "popularity": model.popularity.tolist(),
        "feature_mean": model.feature_mean.tolist(),
        "feature_std": model.feature_std.tolist(),
        "trained_until": model.trained_until,
        "fit_seconds": model.fit_seconds,
        "losses": list(model.losses),
    }
    (tmp / META_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    (tmp / PARAMS_FILE).write_bytes(
        serialization.msgpack_serialize(serialization.to_state_dict(model.params))
    )
    tmp.rename(final)
    return final


def load_model(path: Path) -> RetrievalModel:
    """The model ``save_model`` wrote in ``path``."""
    meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    params = serialization.msgpack_restore((path / PARAMS_FILE).read_bytes())
    return RetrievalModel(
        shape=TowerShape(**meta["shape"]),
        params=jax.tree_util.tree_map(np.asarray, params),
        catalogue=Catalogue(
            product_ids=np.asarray(meta["product_ids"], dtype=object),
            categories=np.asarray(meta["categories"], dtype=np.int32),
            category_names=tuple(meta["category_names"]),
        ),
        popularity=np.asarray(meta["popularity"], dtype=np.float64),
        feature_mean=np.asarray(meta["feature_mean"], dtype=np.float32),
        feature_std=np.asarray(meta["feature_std"], dtype=np.float32),
        config=TrainConfig(**meta["config"]),
        trained_until=meta["trained_until"],
        fit_seconds=float(meta["fit_seconds"]),
        losses=tuple(meta["losses"]),
    )


def latest_model(directory: Path) -> Path | None:
    """The most recently saved model under ``directory`` (by name), or None."""
    if not directory.is_dir():
        return None
    saved = sorted(p for p in directory.iterdir() if (p / META_FILE).is_file() and not p.name.startswith("."))
    return saved[-1] if saved else None
