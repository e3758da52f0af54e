"""Retrieval recall of the two-tower model against two peers, on the same held-out groups.

The peers: popularity retrieval (training adoptions per item) and item-item co-occurrence retrieval
(``CooccurrenceRetrieval``: how often a holder of each history item adopted the item next, in the
training groups). All retrieve from each group's candidates only (owned and ineligible products removed:
the candidate rule applies to retrieval too), so they can only differ through their scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nextbest.retrieval.data import Groups
from nextbest.retrieval.index import recall_at_k, retrieve, top_k

RECALL_KS: tuple[int, ...] = (10, 50, 100)
"""The default cut-offs K of recall@K."""

COOCCURRENCE_PRIOR = 1.0
"""Pseudo-holders added to each history item's holder count in ``CooccurrenceRetrieval`` (shrinks a rate
seen on few holders towards 0)."""

POPULARITY_TIE_BREAK = 1e-6
"""Weight of the normalised popularity added to co-occurrence scores: orders items the history says
nothing about (a customer without history gets popularity retrieval)."""


def history_matrix(groups: Groups, n_items: int) -> np.ndarray:
    """float32 [groups, items]: each group's recency weight of every item of its history (0 elsewhere)."""
    out = np.zeros((len(groups), n_items + 1), dtype=np.float32)
    rows = np.repeat(np.arange(len(groups)), groups.history_items.shape[1])
    np.add.at(out, (rows, groups.history_items.reshape(-1)), groups.history_weights.reshape(-1))
    return out[:, :n_items]


@dataclass(frozen=True)
class CooccurrenceRetrieval:
    """Item-item co-occurrence retrieval: ``score(g, j) = sum_i h[g, i] * rate[i, j]`` where ``h`` is the
    group's recency-weighted history and ``rate[i, j]`` = (training groups holding i that adopted j) /
    (groups holding i + ``COOCCURRENCE_PRIOR``), in [0, 1); popularity breaks ties.

    Attributes:
        rate: float32 [items, items].
        popularity: float64 [items], training adoptions per item.
    """

    rate: np.ndarray
    popularity: np.ndarray

    @classmethod
    def fit(cls, train: Groups) -> CooccurrenceRetrieval:
        """The rates of the training groups (point in time: histories known at each snapshot, adoptions
        after it)."""
        n_items = train.positives.shape[1]
        held = history_matrix(train, n_items) > 0
        counts = held.T.astype(np.float32) @ train.positives.astype(np.float32)
        rate = counts / (held.sum(axis=0)[:, None] + COOCCURRENCE_PRIOR)
        return cls(rate=rate.astype(np.float32), popularity=train.positives.sum(axis=0).astype(np.float64))

    def scores(self, groups: Groups) -> np.ndarray:
        """float64 [groups, items]: higher = retrieve first."""
        history = history_matrix(groups, len(self.popularity))
        tie = POPULARITY_TIE_BREAK * self.popularity / max(self.popularity.max(), 1.0)
        return (history @ self.rate).astype(np.float64) + tie[None, :]


@dataclass(frozen=True)
class RecallRow:
    """Recall@k of both retrievals on the same groups.

    Attributes:
        k: the cut-off.
        two_tower, popularity, cooccurrence: recall@k (min=0, max=1) of each (co-occurrence: NaN when
            not measured).
        groups: groups with at least one adoption (the mean's rows).
    """

    k: int
    two_tower: float
    popularity: float
    groups: int
    cooccurrence: float = float("nan")

    @property
    def ratio(self) -> float:
        """two_tower / popularity (NaN when popularity is 0)."""
        return self.two_tower / self.popularity if self.popularity > 0 else float("nan")


def recall_table(
    customer_vecs: np.ndarray,
    item_vecs: np.ndarray,
    popularity: np.ndarray,
    groups: Groups,
    ks: tuple[int, ...] = RECALL_KS,
    cooccurrence: CooccurrenceRetrieval | None = None,
) -> list[RecallRow]:
    """Recall@k for each k of ``ks``: two-tower (``customer_vecs`` x ``item_vecs``) vs ``popularity``
    (and vs ``cooccurrence`` when given).

    Args:
        customer_vecs: float [groups, dim], the embeddings of ``groups``.
        item_vecs: float [items, dim].
        popularity: float [items], the popularity peer's scores (training adoptions).
        groups: held-out groups, with their candidates and adoptions.
    """
    deepest = max(ks)
    learned = retrieve(customer_vecs, item_vecs, deepest, groups.candidates)
    popular = top_k(np.broadcast_to(popularity, groups.candidates.shape), deepest, groups.candidates)
    co = None
    if cooccurrence is not None:
        co = top_k(cooccurrence.scores(groups), deepest, groups.candidates)
    with_positive = int((groups.positives.sum(axis=1) > 0).sum())
    return [
        RecallRow(
            k=k,
            two_tower=recall_at_k(learned, groups.positives, k),
            popularity=recall_at_k(popular, groups.positives, k),
            groups=with_positive,
            cooccurrence=float("nan") if co is None else recall_at_k(co, groups.positives, k),
        )
        for k in ks
    ]
