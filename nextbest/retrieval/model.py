"""The two towers (Flax) and the in-batch sampled-softmax loss with log-popularity correction.

* Customer tower: the recency-weighted mean of the embeddings of the customer's history items, next to
  the standardised customer features, through a small MLP; plus the recency-weighted mean of the history
  items' item-tower embeddings; L2-normalised.
* Item tower: the sum of the item's id, category and popularity-bucket embeddings, through a small MLP,
  L2-normalised.

The affinity of customer u and item v is the cosine ``<u, v>`` in [-1, 1]; the loss divides it by a
temperature.
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp

MASKED_LOGIT = -1e9
"""The logit of an in-batch negative that is the row's own positive item (an accidental hit)."""


@dataclass(frozen=True)
class TowerShape:
    """Sizes of the two towers.

    Attributes:
        n_items: catalogue size (history index ``n_items`` is the padding slot).
        n_categories: distinct item categories.
        n_popularity_buckets: item popularity buckets.
        n_features: customer features.
        hidden: width of the embeddings and the hidden layer.
        dim: output embedding dimension.
    """

    n_items: int
    n_categories: int
    n_popularity_buckets: int
    n_features: int
    hidden: int = 64
    dim: int = 32


def _normalise(x: jax.Array) -> jax.Array:
    return x / (jnp.linalg.norm(x, axis=-1, keepdims=True) + 1e-6)


class TwoTower(nn.Module):
    """Customer and item towers sharing nothing but the output space."""

    shape: TowerShape

    def setup(self) -> None:
        s = self.shape
        self.history_embed = nn.Embed(s.n_items + 1, s.hidden, name="history_embed")
        self.item_embed = nn.Embed(s.n_items, s.hidden, name="item_embed")
        self.category_embed = nn.Embed(s.n_categories, s.hidden, name="category_embed")
        self.popularity_embed = nn.Embed(s.n_popularity_buckets, s.hidden, name="popularity_embed")
        self.customer_hidden = nn.Dense(s.hidden, name="customer_hidden")
        self.customer_out = nn.Dense(s.dim, name="customer_out")
        self.item_hidden = nn.Dense(s.hidden, name="item_hidden")
        self.item_out = nn.Dense(s.dim, name="item_out")

    def customers(
        self,
        history_items: jax.Array,
        history_weights: jax.Array,
        features: jax.Array,
        item_categories: jax.Array,
        item_buckets: jax.Array,
    ) -> jax.Array:
        """Customer embeddings [B, dim], unit length.

        The MLP's output plus the recency-weighted mean of the history items' own item-tower
        embeddings (so "like what I adopted" is expressible without the MLP learning it).

        Args:
            history_items: int [B, H] item indices (``n_items`` = padding).
            history_weights: float [B, H] recency weights (0 = padding).
            features: float [B, F] standardised customer features.
            item_categories, item_buckets: int [n_items], the catalogue's category and popularity bucket.
        """
        total = jnp.sum(history_weights, axis=1, keepdims=True)
        share = history_weights / jnp.maximum(total, 1e-6)
        bag = jnp.einsum("bh,bhd->bd", share, self.history_embed(history_items))
        x = jnp.concatenate([bag, features, jnp.log1p(total)], axis=-1)
        ids = jnp.minimum(history_items, self.shape.n_items - 1)
        pooled = jnp.einsum("bh,bhd->bd", share, self.items(ids, item_categories, item_buckets))
        return _normalise(self.customer_out(nn.relu(self.customer_hidden(x))) + pooled)

    def items(self, item_ids: jax.Array, item_categories: jax.Array, item_buckets: jax.Array) -> jax.Array:
        """Item embeddings [..., dim], unit length, of int [...] ids (catalogue arrays: see ``customers``)."""
        x = (
            self.item_embed(item_ids)
            + self.category_embed(item_categories[item_ids])
            + self.popularity_embed(item_buckets[item_ids])
        )
        return _normalise(self.item_out(nn.relu(self.item_hidden(x))))

    def __call__(
        self,
        history_items: jax.Array,
        history_weights: jax.Array,
        features: jax.Array,
        item_ids: jax.Array,
        item_categories: jax.Array,
        item_buckets: jax.Array,
    ) -> tuple[jax.Array, jax.Array]:
        """Both towers: (customer embeddings [B, dim], item embeddings of ``item_ids`` [B, dim])."""
        return (
            self.customers(history_items, history_weights, features, item_categories, item_buckets),
            self.items(item_ids, item_categories, item_buckets),
        )


def sampled_softmax_loss(
    customer_vecs: jax.Array,
    item_vecs: jax.Array,
    item_ids: jax.Array,
    log_q: jax.Array,
    temperature: float,
    allowed: jax.Array | None = None,
) -> jax.Array:
    """In-batch sampled softmax with log-popularity (logQ) correction; a mean over the batch (>= 0).

    Row i of the batch is a (customer, adopted item) pair; the other rows' items are its negatives.
    ``logits[i, j] = <u_i, v_j> / temperature - log_q[j]`` where ``log_q[j]`` is the log of the
    probability that item j appears in a batch (its share of the training positives): subtracting it
    stops popular items, over-sampled as negatives, from being pushed down (Yi et al., RecSys 2019).
    A negative j with the same item as row i is masked (an accidental hit), and so is one that is not
    among row i's candidates when ``allowed`` is given (an owned or ineligible product can never be the
    next adoption, and retrieval never returns it: no need to learn to push it down). The loss is
    ``mean_i(logsumexp_j logits[i, j] - logits[i, i])``.

    Args:
        customer_vecs: float [B, D].
        item_vecs: float [B, D], row i the positive of customer i.
        item_ids: int [B], the item of each row (for accidental hits).
        log_q: float [B], log sampling probability of each row's item.
        temperature: > 0.
        allowed: optional bool [B, B]: ``allowed[i, j]`` = row j's item is a candidate of row i.
    """
    logits = customer_vecs @ item_vecs.T / temperature - log_q[None, :]
    same_item = item_ids[:, None] == item_ids[None, :]
    masked = same_item if allowed is None else same_item | ~allowed
    masked = masked & ~jnp.eye(len(item_ids), dtype=bool)
    logits = jnp.where(masked, MASKED_LOGIT, logits)
    return jnp.mean(jax.nn.logsumexp(logits, axis=1) - jnp.diagonal(logits))
