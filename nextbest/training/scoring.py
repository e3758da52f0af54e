"""Scoring and ranking with a model bundle: the one path of training evaluation, batch and online serving.

``score_bundle`` is the single scoring function: ranker scores (``FittedRanker.score``) then calibrated
probabilities (``Calibrators.predict_proba``), both through the one input encoding of
``nextbest.training.encoding``. ``ranking_order`` holds the one tie-break rule (score descending, then
product id ascending) that ``rank_within_groups``, ``rank_candidates`` and the online top-k share.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from nextbest.columns import CUSTOMER_ID, EVENT_TIMESTAMP, PROBABILITY, PRODUCT_ID, RANK, SCORE
from nextbest.training.calibration import Calibrators
from nextbest.training.encoding import Columns, require_columns
from nextbest.training.ranker import FittedRanker


class Scorable(Protocol):
    """What ``score_bundle`` needs: a ``ModelBundle``, or the freshly fitted models before one exists."""

    ranker: FittedRanker
    calibrators: Calibrators | None


@dataclass(frozen=True)
class ScoredFrame:
    """``score_bundle``'s output, in the input's row order.

    Attributes:
        score: raw ranker scores (unbounded; higher ranks first).
        probability: calibrated adoption probabilities in [0, 1] (None without calibrators).
        predict_ms, calibrate_ms: wall milliseconds of the two steps.
    """

    score: np.ndarray
    probability: np.ndarray | None
    predict_ms: float
    calibrate_ms: float


def input_columns(bundle: Scorable) -> list[str]:
    """Every column ``score_bundle`` reads: the ranker's (``FittedRanker.input_cols``), the product,
    calibration features."""
    cols = dict.fromkeys(bundle.ranker.input_cols)
    cal = bundle.calibrators
    if cal is not None:
        cols.update(dict.fromkeys([cal.product_col, *cal.feature_cols]))
    return list(cols)


def score_bundle(bundle: Scorable, data: Columns, threads: int | None = None) -> ScoredFrame:
    """Raw scores and calibrated probabilities for every row of ``data``, in row order.

    Args:
        bundle: a ``ModelBundle`` (or fitted models with ``ranker`` and ``calibrators``).
        data: a DataFrame or a column mapping holding ``input_columns(bundle)``; rows are scored
            independently.
        threads: LightGBM threads for the ranker (1 online: small frames; None: every core).

    Raises:
        KeyError: an input column is missing.
    """
    require_columns(data, input_columns(bundle), "score_bundle")
    start = time.perf_counter()
    score = bundle.ranker.score(data, threads=threads)
    mid = time.perf_counter()
    cal = bundle.calibrators
    probability = None if cal is None else cal.predict_proba(data, score)
    end = time.perf_counter()
    return ScoredFrame(score, probability, (mid - start) * 1e3, (end - mid) * 1e3)


def ranking_order(
    product_ids: Sequence[str] | np.ndarray, score: np.ndarray, groups: Sequence[np.ndarray] = ()
) -> np.ndarray:
    """Row positions in ranking order: by ``groups`` (each compared as strings, first = outermost),
    then score descending, ties by product id ascending. THE tie-break rule of every ranking.

    Groups are compared as numbers or datetimes when they are, else as strings."""
    keys = [_sort_key(product_ids), -np.asarray(score, dtype=float)]
    keys += [_sort_key(g) for g in reversed(groups)]
    return np.lexsort(keys)


def rank_within_groups(
    groups: Sequence[np.ndarray], product_ids: Sequence[str] | np.ndarray, score: np.ndarray
) -> np.ndarray:
    """Per row, its rank (1 = best, int32) among the rows of the same ``groups`` values (e.g. the
    customer, or customer and snapshot), by ``ranking_order``."""
    order = ranking_order(product_ids, score, groups)
    n = len(order)
    starts = np.zeros(n, dtype=bool)
    if n:
        starts[0] = True
        for g in groups:
            values = _sort_key(g)[order]
            starts[1:] |= values[1:] != values[:-1]
    group_start = np.maximum.accumulate(np.where(starts, np.arange(n), 0)) if n else np.empty(0, int)
    ranks = np.empty(n, dtype=np.int32)
    ranks[order] = np.arange(n) - group_start + 1
    return ranks


def rank_candidates(bundle: Scorable, frame: pd.DataFrame, threads: int | None = None) -> pd.DataFrame:
    """Score and rank each customer's candidate products (``score_bundle`` + ``rank_within_groups``).

    Args:
        bundle: a trained bundle (ranker, optional calibrators).
        frame: one row per candidate: ``customer_id``, ``product_id``, optionally ``event_timestamp``
            (then a group is one customer at one snapshot) and ``input_columns(bundle)``. It must only
            hold candidates (products the customer does not own and is eligible for); rows are scored
            independently, so their order does not matter.
        threads: LightGBM threads (None: every core).

    Returns:
        customer_id, [event_timestamp,] product_id, ``score`` (unbounded), ``probability`` (calibrated,
        0..1; NaN without calibrators) and ``rank`` (1..n per group, by descending score, ties by
        product_id), sorted by group then rank. An empty frame gives an empty ranking.

    Raises:
        KeyError: a key or feature column is missing.
        ValueError: a (customer, [snapshot,] product) pair appears twice.
    """
    group_cols = [CUSTOMER_ID, EVENT_TIMESTAMP] if EVENT_TIMESTAMP in frame.columns else [CUSTOMER_ID]
    require_columns(frame, [*group_cols, PRODUCT_ID, *input_columns(bundle)], "rank_candidates")
    out_cols = [*group_cols, PRODUCT_ID, SCORE, PROBABILITY, RANK]
    if frame.duplicated([*group_cols, PRODUCT_ID]).any():
        raise ValueError("rank_candidates: duplicate candidate rows")
    ranked = frame[[*group_cols, PRODUCT_ID]].reset_index(drop=True)
    scored = score_bundle(bundle, frame.reset_index(drop=True), threads)
    ranked[SCORE] = scored.score
    ranked[PROBABILITY] = np.nan if scored.probability is None else scored.probability
    ranked[PROBABILITY] = ranked[PROBABILITY].astype(float)
    groups = [_group_key(ranked[c]) for c in group_cols]
    order = ranking_order(ranked[PRODUCT_ID].to_numpy(), scored.score, groups)
    ranked[RANK] = rank_within_groups(groups, ranked[PRODUCT_ID].to_numpy(), scored.score).astype("int64")
    return ranked.iloc[order][out_cols].reset_index(drop=True)


def _group_key(values: pd.Series) -> np.ndarray:
    """A group column as a sortable array: timestamps as datetime64 (UTC), anything else as strings."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.to_numpy()
    return values.astype(str).to_numpy(dtype=object)


def _sort_key(values: np.ndarray | Sequence[object]) -> np.ndarray:
    """``values`` as a key ``np.lexsort`` can compare: numbers and datetimes as they are, else strings."""
    arr = np.asarray(values)
    return arr if arr.dtype.kind in "biufmM" else arr.astype(object).astype(str)

