"""The two-tower model: the sampled-softmax loss on hand-computed cases, and a planted co-adoption
pattern that the model must learn far better than popularity retrieval."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from nextbest.columns import CUSTOMER_ID, EVENT_TIMESTAMP, SNAPSHOT_ON
from nextbest.retrieval.data import HISTORY_LIMIT, Catalogue, Groups
from nextbest.retrieval.index import recall_at_k, retrieve, top_k
from nextbest.retrieval.model import sampled_softmax_loss
from nextbest.retrieval.train import TrainConfig, fit, load_model, save_model

EYE = jnp.eye(2)


class TestSampledSoftmaxLoss:
    def test_uniform_popularity_is_plain_softmax(self) -> None:
        # logits = I / 1 - log(1/2): each row softmaxes [1 + ln2, ln2] -> -log(e / (e + 1)) = ln(1 + 1/e)
        loss = sampled_softmax_loss(EYE, EYE, jnp.array([0, 1]), jnp.log(jnp.array([0.5, 0.5])), 1.0)
        assert float(loss) == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)

    def test_log_popularity_correction(self) -> None:
        # q = (0.8, 0.2): row 0 logits [1 - ln .8, -ln .2], row 1 [-ln .8, 1 - ln .2]
        q = jnp.array([0.8, 0.2])
        loss = sampled_softmax_loss(EYE, EYE, jnp.array([0, 1]), jnp.log(q), 1.0)
        row0 = math.log(math.exp(1) / 0.8 + 1 / 0.2) - (1 - math.log(0.8))
        row1 = math.log(1 / 0.8 + math.exp(1) / 0.2) - (1 - math.log(0.2))
        assert float(loss) == pytest.approx((row0 + row1) / 2, rel=1e-6)
        # the rare item, as a negative, weighs more than under uniform sampling: row 0 loses more
        assert row0 > math.log(1 + math.exp(-1))

    def test_temperature_scales_the_affinity(self) -> None:
        loss = sampled_softmax_loss(EYE, EYE, jnp.array([0, 1]), jnp.zeros(2), 0.5)
        assert float(loss) == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-6)

    def test_accidental_hits_are_not_negatives(self) -> None:
        # both rows adopted item 7: neither is the other's negative, so each row's softmax is over itself
        u = jnp.array([[1.0, 0.0], [0.6, 0.8]])
        loss = sampled_softmax_loss(u, u[::-1], jnp.array([7, 7]), jnp.zeros(2), 1.0)
        assert float(loss) == pytest.approx(0.0, abs=1e-6)

    def test_non_candidates_are_not_negatives(self) -> None:
        # row 0 may not see item 1 (say it owns it): its softmax is over itself alone; row 1 as uniform
        allowed = jnp.array([[True, False], [True, True]])
        loss = sampled_softmax_loss(EYE, EYE, jnp.array([0, 1]), jnp.zeros(2), 1.0, allowed)
        assert float(loss) == pytest.approx(math.log(1 + math.exp(-1)) / 2, rel=1e-6)


def _planted(n_groups: int, seed: int) -> Groups:
    """Customers whose one past item is 2p adopt 2p + 1 next (10 pairs, 20 items, uniform pairs)."""
    rng = np.random.default_rng(seed)
    pair = rng.integers(0, 10, size=n_groups)
    items = np.full((n_groups, HISTORY_LIMIT), 20, dtype=np.int32)
    weights = np.zeros((n_groups, HISTORY_LIMIT), dtype=np.float32)
    items[:, 0], weights[:, 0] = 2 * pair, 1.0
    candidates = np.ones((n_groups, 20), dtype=bool)
    candidates[np.arange(n_groups), 2 * pair] = False
    positives = np.zeros_like(candidates)
    positives[np.arange(n_groups), 2 * pair + 1] = True
    keys = pd.DataFrame(
        {
            CUSTOMER_ID: [f"C{i}" for i in range(n_groups)],
            EVENT_TIMESTAMP: pd.Timestamp("2024-02-01"),
            SNAPSHOT_ON: pd.Timestamp("2024-01-31"),
            "is_labelled": True,
        }
    )
    return Groups(keys, items, weights, np.zeros((n_groups, 1), np.float32), candidates, positives)


CATALOGUE = Catalogue(
    product_ids=np.array([f"P{i:02d}" for i in range(20)], dtype=object),
    categories=np.zeros(20, dtype=np.int32),
    category_names=("all",),
)
SMALL = TrainConfig(epochs=8, batch_size=64, learning_rate=1e-2, hidden=16, dim=8, seed=0)


@pytest.fixture(scope="module")
def planted_model():
    return fit(_planted(640, seed=1), CATALOGUE, SMALL)


def test_learns_a_planted_co_adoption_far_above_popularity(planted_model) -> None:
    test = _planted(300, seed=2)
    learned = retrieve(
        planted_model.customer_embeddings(test), planted_model.item_embeddings(), 1, test.candidates
    )
    popular = top_k(np.broadcast_to(planted_model.popularity, test.candidates.shape), 1, test.candidates)
    assert recall_at_k(learned, test.positives, 1) >= 0.9
    assert recall_at_k(popular, test.positives, 1) <= 0.3


def test_same_seed_same_model_and_save_load_round_trip(planted_model, tmp_path) -> None:
    again = fit(_planted(640, seed=1), CATALOGUE, SMALL)
    np.testing.assert_array_equal(again.item_embeddings(), planted_model.item_embeddings())
    loaded = load_model(save_model(planted_model, tmp_path))
    test = _planted(20, seed=3)
    np.testing.assert_array_equal(loaded.customer_embeddings(test), planted_model.customer_embeddings(test))
    np.testing.assert_array_equal(loaded.item_embeddings(), planted_model.item_embeddings())


def test_too_few_adoptions_is_an_error() -> None:
    one = _planted(1, seed=0)
    with pytest.raises(ValueError, match="too few"):
        fit(one, CATALOGUE, SMALL)
