"""Retrieval recall of the two-tower model against popularity retrieval, on the same held-out groups.

Both retrieve from each group's candidates only (owned and ineligible products removed: the candidate
rule applies to retrieval too), so the two can only differ through their scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nextbest.retrieval.data import Groups
from nextbest.retrieval.index import recall_at_k, retrieve, top_k

RECALL_KS: tuple[int, ...] = (10, 50, 100)
"""The default cut-offs K of recall@K."""


@dataclass(frozen=True)
class RecallRow:
    """Recall@k of both retrievals on the same groups.

    Attributes:
        k: the cut-off.
        two_tower, popularity: recall@k (min=0, max=1) of each.
        groups: groups with at least one adoption (the mean's rows).
    """

    k: int
    two_tower: float
    popularity: float
    groups: int

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
) -> list[RecallRow]:
    """Recall@k for each k of ``ks``: two-tower (``customer_vecs`` x ``item_vecs``) vs ``popularity``.

    Args:
        customer_vecs: float [groups, dim], the embeddings of ``groups``.
        item_vecs: float [items, dim].
        popularity: float [items], the popularity peer's scores (training adoptions).
        groups: held-out groups, with their candidates and adoptions.
    """
    deepest = max(ks)
    learned = retrieve(customer_vecs, item_vecs, deepest, groups.candidates)
    popular = top_k(np.broadcast_to(popularity, groups.candidates.shape), deepest, groups.candidates)
    with_positive = int((groups.positives.sum(axis=1) > 0).sum())
    return [
        RecallRow(
            k=k,
            two_tower=recall_at_k(learned, groups.positives, k),
            popularity=recall_at_k(popular, groups.positives, k),
            groups=with_positive,
        )
        for k in ks
    ]
