"""Ranking candidates with a model bundle: the one scoring path shared by evaluation and serving."""

from __future__ import annotations

import numpy as np
import pandas as pd

from nextbest.training.artifacts import ModelBundle
from nextbest.training.constants import CUSTOMER_ID, EVENT_TIMESTAMP, PROBABILITY, PRODUCT_ID, SCORE

RANK = "rank"
"""1-based position of a product in its customer's ranking (1 = offer first)."""


def rank_candidates(bundle: ModelBundle, frame: pd.DataFrame) -> pd.DataFrame:
    """Score and rank each customer's candidate products.

    Args:
        bundle: a trained bundle (ranker, optional calibrators).
        frame: one row per candidate: ``customer_id``, ``product_id``, optionally ``event_timestamp``
            (then a group is one customer at one snapshot) and every feature of ``bundle.feature_cols``.
            It must only hold candidates (products the customer does not own and is eligible for);
            rows are scored independently, so their order does not matter.

    Returns:
        customer_id, [event_timestamp,] product_id, ``score`` (unbounded), ``probability`` (calibrated,
        0..1; NaN without calibrators) and ``rank`` (1..n per group, by descending score, ties by
        product_id), sorted by group then rank. An empty frame gives an empty ranking.

    Raises:
        KeyError: a key or feature column is missing.
        ValueError: a (customer, [snapshot,] product) pair appears twice.
    """
    group_cols = [CUSTOMER_ID, EVENT_TIMESTAMP] if EVENT_TIMESTAMP in frame.columns else [CUSTOMER_ID]
    missing = [c for c in (*group_cols, PRODUCT_ID, *bundle.feature_cols) if c not in frame.columns]
    if missing:
        raise KeyError(f"rank_candidates: missing column(s) {missing}")
    out_cols = [*group_cols, PRODUCT_ID, SCORE, PROBABILITY, RANK]
    if frame.empty:
        empty = frame[[*group_cols, PRODUCT_ID]].iloc[0:0].copy()
        empty[SCORE] = pd.Series(dtype=float)
        empty[PROBABILITY] = pd.Series(dtype=float)
        empty[RANK] = pd.Series(dtype="int64")
        return empty[out_cols].reset_index(drop=True)
    if frame.duplicated([*group_cols, PRODUCT_ID]).any():
        raise ValueError("rank_candidates: duplicate candidate rows")
    scored = frame.reset_index(drop=True)
    scored[SCORE] = bundle.ranker.score(scored)
    if bundle.calibrators is not None:
        scored[PROBABILITY] = bundle.calibrators.predict_proba(scored)
    else:
        scored[PROBABILITY] = np.nan
    scored = scored.sort_values(
        [*group_cols, SCORE, PRODUCT_ID], ascending=[True] * len(group_cols) + [False, True], kind="mergesort"
    )
    scored[RANK] = scored.groupby(group_cols, sort=False).cumcount().to_numpy() + 1
    return scored[out_cols].reset_index(drop=True)
