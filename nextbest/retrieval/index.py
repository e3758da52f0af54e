"""Vector search over the item embeddings and retrieval recall.

Search is exact brute force in numpy: one matrix product and a partial sort per query. At the
catalogues nextbest serves (24 to a few thousand items) it answers a query in tens of microseconds
(``benchmarks/bench_retrieval.py`` measures it), so an approximate index (faiss, usearch) would add a
dependency and an approximation for no measured gain; it earns its place beyond ~10^5 items.
Tie rule everywhere: higher score first, then the lower item index (product-id order).
"""

from __future__ import annotations

import numpy as np

DISALLOWED = -np.inf
"""The score given to an item outside a query's allowed set (never retrieved while k <= allowed)."""


def top_k(scores: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """The k best items of each row of ``scores`` (int [rows, min(k, items)]), best first.

    Args:
        scores: float [rows, items]; higher = retrieve first.
        k: items per row (>= 1).
        allowed: optional bool [rows, items]; items outside it are never ranked above allowed ones
            (a row with fewer than k allowed items ends with disallowed ones: check with ``allowed``).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    scores = np.asarray(scores, dtype=np.float64)
    if allowed is not None:
        scores = np.where(allowed, scores, DISALLOWED)
    k = min(k, scores.shape[1])
    if k == scores.shape[1]:
        return np.argsort(-scores, axis=1, kind="stable")
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(scores, part, axis=1).min(axis=1, keepdims=True)
    # where a tie straddles the cut, the partition's pick among the tied items is arbitrary: sort fully
    exact = (scores >= kth).sum(axis=1) == k
    out = np.empty(part.shape, dtype=np.int64)
    out[exact] = _sorted_by_score_then_index(scores[exact], part[exact])
    out[~exact] = np.argsort(-scores[~exact], axis=1, kind="stable")[:, :k]
    return out


def _sorted_by_score_then_index(scores: np.ndarray, part: np.ndarray) -> np.ndarray:
    """``part``'s items of each row ordered by score descending, then item index."""
    part = np.sort(part, axis=1)
    picked = np.take_along_axis(scores, part, axis=1)
    return np.take_along_axis(part, np.argsort(-picked, axis=1, kind="stable"), axis=1)


def retrieve(
    customer_vecs: np.ndarray, item_vecs: np.ndarray, k: int, allowed: np.ndarray | None = None
) -> np.ndarray:
    """The k items of highest affinity ``<u, v>`` for each customer (``top_k`` of ``U @ V.T``)."""
    return top_k(customer_vecs @ item_vecs.T, k, allowed)


def recall_at_k(retrieved: np.ndarray, positives: np.ndarray, k: int) -> float:
    """Mean over rows with >= 1 positive of (positives among the first k retrieved) / (positives).

    The retrieval recall of Covington et al. (min=0, max=1); rows without a positive are left out;
    NaN when no row has one.

    Args:
        retrieved: int [rows, >= k] item indices, best first (``top_k``).
        positives: bool [rows, items].
        k: the cut-off.
    """
    has = positives.sum(axis=1)
    hits = np.take_along_axis(positives, retrieved[:, :k], axis=1).sum(axis=1)
    rows = has > 0
    return float((hits[rows] / has[rows]).mean()) if rows.any() else float("nan")
