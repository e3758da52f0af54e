"""The retrieval peers: item-item co-occurrence retrieval on a hand-computed case, and its recall next to
the two-tower's and popularity's in ``recall_table``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nextbest.columns import CUSTOMER_ID, EVENT_TIMESTAMP, SNAPSHOT_ON
from nextbest.retrieval.data import HISTORY_LIMIT, Groups
from nextbest.retrieval.evaluate import (
    POPULARITY_TIE_BREAK,
    CooccurrenceRetrieval,
    history_matrix,
    recall_table,
)

N_ITEMS = 3


def _groups(
    histories: list[list[int]], adopted: list[list[int]], owned: list[list[int]] | None = None
) -> Groups:
    """Groups with the given history items (weight 1 each), adoptions and owned (non-candidate) items."""
    n = len(histories)
    items = np.full((n, HISTORY_LIMIT), N_ITEMS, dtype=np.int32)
    weights = np.zeros((n, HISTORY_LIMIT), dtype=np.float32)
    candidates = np.ones((n, N_ITEMS), dtype=bool)
    positives = np.zeros((n, N_ITEMS), dtype=bool)
    for g, history in enumerate(histories):
        items[g, : len(history)], weights[g, : len(history)] = history, 1.0
        positives[g, adopted[g]] = True
        candidates[g, (owned or [[]] * n)[g]] = False
    keys = pd.DataFrame(
        {
            CUSTOMER_ID: [f"C{g}" for g in range(n)],
            EVENT_TIMESTAMP: pd.Timestamp("2024-02-01"),
            SNAPSHOT_ON: pd.Timestamp("2024-01-31"),
            "is_labelled": True,
        }
    )
    return Groups(keys, items, weights, np.zeros((n, 1), np.float32), candidates, positives)


# holders of 0 adopted 1 once and 2 once (2 holders); the one holder of 1 adopted 2
TRAIN = _groups([[0], [0], [1]], [[1], [2], [2]])


def test_history_matrix_puts_weights_at_items_and_drops_padding() -> None:
    np.testing.assert_array_equal(history_matrix(TRAIN, N_ITEMS), [[1, 0, 0], [1, 0, 0], [0, 1, 0]])


def test_cooccurrence_rates_and_scores_known_answer() -> None:
    model = CooccurrenceRetrieval.fit(TRAIN)
    # rate[i, j] = holders of i that adopted j / (holders of i + 1)
    np.testing.assert_allclose(model.rate, [[0, 1 / 3, 1 / 3], [0, 0, 1 / 2], [0, 0, 0]], rtol=1e-6)
    np.testing.assert_array_equal(model.popularity, [0, 1, 2])
    scores = model.scores(_groups([[0, 1], []], [[], []]))
    tie = POPULARITY_TIE_BREAK * np.array([0, 0.5, 1.0])
    np.testing.assert_allclose(scores[0], np.array([0, 1 / 3, 1 / 3 + 1 / 2]) + tie, rtol=1e-6)
    # no history: popularity order
    assert list(np.argsort(-scores[1])) == [2, 1, 0]


def test_recall_table_measures_cooccurrence_within_candidates() -> None:
    # the test customer holds 0 and owns 2 (not a candidate): co-occurrence retrieves 1 first, the
    # customer adopted 1 -> recall@1 = 1; popularity (2 is out) also retrieves 1 first
    test = _groups([[0]], [[1]], owned=[[2]])
    vecs = np.eye(N_ITEMS, dtype=np.float32)
    customer = np.array([[1.0, 0.0, 0.0]], dtype=np.float32)  # the two-tower retrieves item 0 first
    rows = recall_table(
        customer, vecs, np.array([0.0, 1.0, 2.0]), test, (1, 2), CooccurrenceRetrieval.fit(TRAIN)
    )
    assert [(r.k, r.two_tower, r.popularity, r.cooccurrence) for r in rows] == [
        (1, 0.0, 1.0, 1.0),
        (2, 1.0, 1.0, 1.0),
    ]


def test_recall_table_without_cooccurrence_reports_nan() -> None:
    test = _groups([[0]], [[1]])
    rows = recall_table(
        np.ones((1, 2), np.float32), np.ones((N_ITEMS, 2), np.float32), np.ones(3), test, (1,)
    )
    assert np.isnan(rows[0].cooccurrence)
    assert rows[0].popularity == pytest.approx(0.0)
