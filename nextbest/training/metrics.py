"""Ranking and calibration metrics as pure functions over DataFrames.

Every ranking metric takes a long frame with one row per (group, product): the group columns
(default: customer and snapshot), a relevance ``label`` (binary 0/1, or graded for NDCG) and a
``score`` (higher = ranked first). Ties in the score are broken by the frame's row order (a
stable sort), so callers that want reproducible numbers pass frames in a canonical order.
All computations are vectorised (no Python loop over groups).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from nextbest.columns import GROUP_COLS, LABEL, PRODUCT_ID, SCORE
from nextbest.training.constants import DEFAULT_K

_RANK = "_rank"
_GROUP = "_group"


def _check_columns(df: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(f"metrics: missing column(s) {missing}; frame has {list(df.columns)}")


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def _ranked(
    df: pd.DataFrame,
    group_cols: Sequence[str],
    label_col: str,
    score_col: str,
    extra_cols: Sequence[str] = (),
) -> pd.DataFrame:
    """Rows with a dense group index ``_group`` and a 1-based rank ``_rank`` by descending score.

    Ties keep the input order (stable sort).
    """
    _check_columns(df, [*group_cols, label_col, score_col, *extra_cols])
    out = df[[*group_cols, label_col, score_col, *extra_cols]].reset_index(drop=True)
    if out[score_col].isna().any():
        raise ValueError(f"metrics: column {score_col!r} has NaN scores")
    out[_GROUP] = out.groupby(list(group_cols), sort=False, dropna=False).ngroup().to_numpy()
    order = np.lexsort((np.arange(len(out)), -out[score_col].to_numpy(dtype=float), out[_GROUP].to_numpy()))
    out = out.iloc[order].reset_index(drop=True)
    out[_RANK] = out.groupby(_GROUP, sort=False).cumcount().to_numpy() + 1
    return out


def _discount(rank: np.ndarray, k: int) -> np.ndarray:
    """1 / log2(rank + 1) for rank <= k, else 0."""
    return np.where(rank <= k, 1.0 / np.log2(rank + 1.0), 0.0)


def _ideal_dcg(ranked: pd.DataFrame, label_col: str, k: int) -> pd.Series:
    """Per ``_group``: the DCG@k of the ideal ordering (labels sorted descending)."""
    labels = ranked[[_GROUP, label_col]].sort_values([_GROUP, label_col], ascending=[True, False])
    ideal_rank = labels.groupby(_GROUP, sort=False).cumcount().to_numpy() + 1
    gains = labels[label_col].to_numpy(dtype=float) * _discount(ideal_rank, k)
    return pd.Series(gains).groupby(labels[_GROUP].to_numpy()).sum()


def _dcg_and_ideal(
    df: pd.DataFrame, k: int, group_cols: Sequence[str], label_col: str, score_col: str
) -> tuple[pd.Series, pd.Series]:
    """Per ``_group``: DCG@k of the ``score_col`` ordering and of the ideal one, ``label_col`` as gains."""
    _check_k(k)
    ranked = _ranked(df, group_cols, label_col, score_col)
    gains = ranked[label_col].to_numpy(dtype=float) * _discount(ranked[_RANK].to_numpy(), k)
    dcg = pd.Series(gains).groupby(ranked[_GROUP].to_numpy()).sum()
    return dcg, _ideal_dcg(ranked, label_col, k).reindex(dcg.index)


def ndcg_per_group(
    df: pd.DataFrame,
    k: int = DEFAULT_K,
    group_cols: Sequence[str] = GROUP_COLS,
    label_col: str = LABEL,
    score_col: str = SCORE,
) -> pd.Series:
    """nDCG@k of each group with at least one relevant row (min=0, max=1).

    DCG@k = sum_{i<=k} rel_i / log2(i + 1) with linear gains (Järvelin & Kekäläinen 2002; the
    Wikipedia "Discounted cumulative gain" article), nDCG = DCG / IDCG. Indexed by the dense
    group number in first-appearance order; groups whose labels are all 0 are left out.
    """
    dcg, idcg = _dcg_and_ideal(df, k, group_cols, label_col, score_col)
    keep = idcg > 0
    return (dcg[keep] / idcg[keep]).rename("ndcg")


def gain_share_at_k(
    df: pd.DataFrame,
    k: int = DEFAULT_K,
    group_cols: Sequence[str] = GROUP_COLS,
    gain_col: str = LABEL,
    score_col: str = SCORE,
) -> float:
    """Sum over groups of DCG@k by ``score_col`` over the sum of the ideal DCG@k (min=0, max=1).

    With expected gains (e.g. true adoption probabilities) it is the share of the best achievable
    expected discounted adoptions that ``score_col``'s ordering captures, each group weighted by what
    it can give. NaN when every gain is 0.
    """
    dcg, idcg = _dcg_and_ideal(df, k, group_cols, gain_col, score_col)
    ideal = float(idcg.sum())
    return float(dcg.sum()) / ideal if ideal > 0 else math.nan


def ndcg_at_k(
    df: pd.DataFrame,
    k: int = DEFAULT_K,
    group_cols: Sequence[str] = GROUP_COLS,
    label_col: str = LABEL,
    score_col: str = SCORE,
) -> float:
    """Mean nDCG@k over groups with at least one relevant row (min=0, max=1).

    Linear gains rel_i and log2(i + 1) discount; binary labels give the usual binary nDCG, graded
    labels (e.g. 0..3) are supported too. NaN when no group has a relevant row.
    """
    per_group = ndcg_per_group(df, k, group_cols, label_col, score_col)
    return float(per_group.mean()) if len(per_group) else math.nan


def ndcg_at_k_counting_missed(
    df: pd.DataFrame,
    missed: pd.DataFrame,
    k: int = DEFAULT_K,
    group_cols: Sequence[str] = GROUP_COLS,
    label_col: str = LABEL,
    score_col: str = SCORE,
) -> float:
    """Mean nDCG@k over groups with a positive, counting positives left out of the groups' rows.

    ``missed`` has the group columns and ``missed`` (positives a retrieval stage did not put among the
    group's rows). They raise the group's ideal DCG as if ranked first and are never found, so a group
    whose positives were all left out scores 0, also one absent from ``df``. Binary labels; with no
    positive missed it equals ``ndcg_at_k``. NaN when no group has a positive.
    """
    _check_k(k)
    ranked = _ranked(df, group_cols, label_col, score_col)
    rel = ranked[label_col].to_numpy()
    if not np.isin(rel, (0, 1)).all():
        raise ValueError(f"metrics: {label_col!r} must be binary 0/1 for this metric")
    per_group = ranked.assign(_gain=rel * _discount(ranked[_RANK].to_numpy(), k))
    per_group = per_group.groupby(_GROUP, sort=True).agg(
        **{name: (name, "first") for name in group_cols}, dcg=("_gain", "sum"), positives=(label_col, "sum")
    )
    both = per_group.merge(missed[[*group_cols, "missed"]], on=list(group_cols), how="outer")
    both = both.fillna({"dcg": 0.0, "positives": 0, "missed": 0})
    total = (both["positives"] + both["missed"]).to_numpy(dtype=int)
    ideal = np.concatenate([[0.0], np.cumsum(_discount(np.arange(1, k + 1), k))])
    keep = total > 0
    if not keep.any():
        return math.nan
    return float(np.mean(both["dcg"].to_numpy()[keep] / ideal[np.minimum(total[keep], k)]))


def _hits(
    df: pd.DataFrame, k: int, group_cols: Sequence[str], label_col: str, score_col: str
) -> pd.DataFrame:
    """Per group: number of positives, hits in the top k, and AP@k numerator (binary labels)."""
    _check_k(k)
    ranked = _ranked(df, group_cols, label_col, score_col)
    rel = ranked[label_col].to_numpy()
    if not np.isin(rel, (0, 1)).all():
        raise ValueError(f"metrics: {label_col!r} must be binary 0/1 for this metric")
    rel = rel.astype(float)
    rank = ranked[_RANK].to_numpy()
    in_top = rank <= k
    cum_hits = pd.Series(rel).groupby(ranked[_GROUP].to_numpy()).cumsum().to_numpy()
    precision_at_i = cum_hits / rank
    frame = pd.DataFrame(
        {
            _GROUP: ranked[_GROUP].to_numpy(),
            "positives": rel,
            "hits": rel * in_top,
            "ap_sum": precision_at_i * rel * in_top,
            "size": 1,
        }
    )
    return frame.groupby(_GROUP, sort=True).sum()


def map_at_k(
    df: pd.DataFrame,
    k: int = DEFAULT_K,
    include_groups_without_positive: bool = True,
    group_cols: Sequence[str] = GROUP_COLS,
    label_col: str = LABEL,
    score_col: str = SCORE,
) -> float:
    """Mean average precision at k, Kaggle "Santander Product Recommendation" definition (min=0, max=1).

    AP@k = sum_{i<=k} P(i) * rel(i) / min(k, number of positives of the group), where P(i) is the
    precision of the top i. With ``include_groups_without_positive`` (Kaggle's convention) a group
    without any positive contributes AP = 0 to the mean; otherwise the mean is over groups with at
    least one positive. Binary labels only.
    """
    per = _hits(df, k, group_cols, label_col, score_col)
    denom = np.minimum(per["positives"].to_numpy(), k)
    ap = np.divide(per["ap_sum"].to_numpy(), denom, out=np.zeros(len(per)), where=denom > 0)
    if not include_groups_without_positive:
        ap = ap[denom > 0]
    return float(ap.mean()) if len(ap) else math.nan


def recall_at_k(
    df: pd.DataFrame,
    k: int = DEFAULT_K,
    group_cols: Sequence[str] = GROUP_COLS,
    label_col: str = LABEL,
    score_col: str = SCORE,
) -> float:
    """Mean over groups with >= 1 positive of (positives in the top k) / (positives) (min=0, max=1)."""
    per = _hits(df, k, group_cols, label_col, score_col)
    per = per[per["positives"] > 0]
    return float((per["hits"] / per["positives"]).mean()) if len(per) else math.nan


def precision_at_k(
    df: pd.DataFrame,
    k: int = DEFAULT_K,
    group_cols: Sequence[str] = GROUP_COLS,
    label_col: str = LABEL,
    score_col: str = SCORE,
) -> float:
    """Mean over groups with >= 1 positive of (positives in the top k) / k (min=0, max=1).

    The denominator is k even when a group has fewer than k candidates (the usual definition), so
    the maximum is only reachable when groups have at least k positives.
    """
    per = _hits(df, k, group_cols, label_col, score_col)
    per = per[per["positives"] > 0]
    return float((per["hits"] / k).mean()) if len(per) else math.nan


def _auc_or_nan(label: np.ndarray, score: np.ndarray) -> float:
    if len(np.unique(label)) < 2:
        return math.nan
    return float(roc_auc_score(label, score))


def per_product_metrics(
    df: pd.DataFrame,
    k: int = DEFAULT_K,
    product_col: str = PRODUCT_ID,
    group_cols: Sequence[str] = GROUP_COLS,
    label_col: str = LABEL,
    score_col: str = SCORE,
) -> pd.DataFrame:
    """Per product: how well the ranking serves that product. One row per product, sorted by product.

    Columns:
      - ``n``: candidate rows; ``positives``: adoptions; ``base_rate`` = positives / n (0..1).
      - ``ndcg_contribution``: the product's share of the mean nDCG@k, i.e. the sum over groups with a
        positive of (the product's gain / IDCG of the group) divided by the number of such groups.
        Contributions sum to ``ndcg_at_k`` over products (each 0..1).
      - ``recall_at_k``: among the product's positive rows, the share ranked within the top k of its
        group (0..1; NaN without positives).
      - ``auc``: ROC AUC of score vs label within the product's rows (0..1; NaN when one class only).
    """
    _check_k(k)
    ranked = _ranked(df, group_cols, label_col, score_col, extra_cols=[product_col])
    rel = ranked[label_col].to_numpy(dtype=float)
    rank = ranked[_RANK].to_numpy()
    idcg = _ideal_dcg(ranked, label_col, k)
    n_groups_with_pos = int((idcg > 0).sum())
    row_idcg = idcg.reindex(ranked[_GROUP].to_numpy()).to_numpy()
    gain = rel * _discount(rank, k)
    share = np.divide(gain, row_idcg, out=np.zeros(len(ranked)), where=row_idcg > 0)
    parts = pd.DataFrame(
        {
            "product": ranked[product_col].to_numpy(),
            "n": 1,
            "positives": rel,
            "hit": rel * (rank <= k),
            "share": share,
        }
    )
    agg = parts.groupby("product", sort=True).sum()
    aucs = {
        product: _auc_or_nan(g[label_col].to_numpy(), g[score_col].to_numpy())
        for product, g in ranked.groupby(product_col, sort=True)
    }
    out = pd.DataFrame(index=agg.index.rename(product_col))
    out["n"] = agg["n"].astype(int)
    out["positives"] = agg["positives"].astype(int)
    out["base_rate"] = agg["positives"] / agg["n"]
    out["ndcg_contribution"] = agg["share"] / n_groups_with_pos if n_groups_with_pos else math.nan
    out["recall_at_k"] = np.where(
        agg["positives"] > 0, agg["hit"] / agg["positives"].where(agg["positives"] > 0), np.nan
    )
    out["auc"] = pd.Series(aucs).reindex(out.index).to_numpy()
    return out


def _ndcg_share_per_row(
    df: pd.DataFrame, k: int, group_cols: Sequence[str], label_col: str, score_col: str
) -> np.ndarray:
    """Per row of ``df`` (its order): the row's gain / IDCG@k of its group (0 without a positive)."""
    frame = df[[*group_cols, label_col, score_col]].reset_index(drop=True)
    frame["_row"] = np.arange(len(frame))
    ranked = _ranked(frame, group_cols, label_col, score_col, extra_cols=["_row"])
    idcg = _ideal_dcg(ranked, label_col, k)
    row_idcg = idcg.reindex(ranked[_GROUP].to_numpy()).to_numpy()
    gain = ranked[label_col].to_numpy(dtype=float) * _discount(ranked[_RANK].to_numpy(), k)
    share = np.divide(gain, row_idcg, out=np.zeros(len(ranked)), where=row_idcg > 0)
    out = np.empty(len(ranked))
    out[ranked["_row"].to_numpy()] = share
    return out


def per_product_ndcg_difference(
    df: pd.DataFrame,
    score_a: str,
    score_b: str,
    k: int = DEFAULT_K,
    product_col: str = PRODUCT_ID,
    group_cols: Sequence[str] = GROUP_COLS,
    label_col: str = LABEL,
) -> pd.DataFrame:
    """Per product: the difference of its nDCG@k contributions (``per_product_metrics``), a minus b,
    with its standard error paired over the groups with a positive.

    Per group g with a positive, d_g = (gain of the product's row under a - under b) / IDCG_g (0 when
    the product is not adopted in g); the difference is the mean of d_g over the N such groups, its
    s.e. std(d_g) / sqrt(N). Columns ``diff`` and ``diff_se``, one row per product, sorted.
    """
    _check_k(k)
    _check_columns(df, [product_col])
    d = _ndcg_share_per_row(df, k, group_cols, label_col, score_a) - _ndcg_share_per_row(
        df, k, group_cols, label_col, score_b
    )
    has_pos = df.groupby(list(group_cols), sort=False)[label_col].transform("max").to_numpy() > 0
    n = int(df.loc[has_pos, list(group_cols)].drop_duplicates().shape[0])
    parts = pd.DataFrame({"product": df[product_col].to_numpy(), "d": d, "d2": d * d})
    agg = parts.groupby("product", sort=True)[["d", "d2"]].sum()
    out = pd.DataFrame(index=agg.index.rename(product_col))
    if n == 0:
        out["diff"], out["diff_se"] = math.nan, math.nan
        return out
    mean = agg["d"] / n
    var = (agg["d2"] / n - mean**2) * n / (n - 1) if n > 1 else mean * math.nan
    out["diff"] = mean
    out["diff_se"] = np.sqrt(var.clip(lower=0) / n)
    return out


def precision_at_top_fraction(
    df: pd.DataFrame,
    fraction: float,
    product_col: str = PRODUCT_ID,
    label_col: str = LABEL,
    score_col: str = SCORE,
) -> pd.Series:
    """Per product: the share of positives among its top ``fraction`` of rows by score (min=0, max=1).

    For each product, its candidate rows (customers) are sorted by descending score (typically the
    calibrated probability for that product; ties keep row order) and the top ceil(fraction * n)
    are kept; the value is their mean label — the "precision in the top x%" used for campaign
    targeting. Indexed by product, sorted.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    _check_columns(df, [product_col, label_col, score_col])
    frame = df[[product_col, label_col, score_col]].reset_index(drop=True)
    order = np.lexsort((np.arange(len(frame)), -frame[score_col].to_numpy(dtype=float)))
    frame = frame.iloc[order]
    rank = frame.groupby(product_col, sort=False).cumcount().to_numpy() + 1
    size = frame.groupby(product_col, sort=False)[label_col].transform("size").to_numpy()
    top = frame[rank <= np.ceil(fraction * size - 1e-9)]
    return top.groupby(product_col, sort=True)[label_col].mean().astype(float).rename("precision")


def _as_prob_label(
    prob: np.ndarray | pd.Series, label: np.ndarray | pd.Series
) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(prob, dtype=float)
    y = np.asarray(label, dtype=float)
    if p.shape != y.shape or p.ndim != 1:
        raise ValueError(f"prob and label must be 1-d of equal length, got {p.shape} and {y.shape}")
    if len(p) == 0:
        raise ValueError("prob and label are empty")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("prob must lie in [0, 1] without NaN")
    return p, y


def reliability_curve(
    prob: np.ndarray | pd.Series, label: np.ndarray | pd.Series, n_bins: int = 10
) -> pd.DataFrame:
    """Reliability diagram data: equal-width probability bins on [0, 1], non-empty bins only.

    Columns: ``bin`` (0..n_bins-1), ``lower``, ``upper`` (bin edges), ``mean_prob`` (mean predicted
    probability), ``observed_rate`` (mean label), ``count``. A probability of exactly 1 falls in
    the last bin.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    p, y = _as_prob_label(prob, label)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    frame = pd.DataFrame({"bin": bins, "p": p, "y": y})
    agg = frame.groupby("bin", sort=True).agg(
        mean_prob=("p", "mean"), observed_rate=("y", "mean"), count=("p", "size")
    )
    agg = agg.reset_index()
    agg.insert(1, "lower", agg["bin"] / n_bins)
    agg.insert(2, "upper", (agg["bin"] + 1) / n_bins)
    return agg


def expected_calibration_error(
    prob: np.ndarray | pd.Series, label: np.ndarray | pd.Series, n_bins: int = 10
) -> float:
    """Expected calibration error with equal-width bins (min=0, max=1).

    ECE = sum_b (n_b / N) * |mean predicted probability in b - observed rate in b| (Naeini et al.
    2015; Guo et al. 2017). 0 for perfect calibration (up to sampling noise).
    """
    curve = reliability_curve(prob, label, n_bins)
    weights = curve["count"] / curve["count"].sum()
    return float((weights * (curve["mean_prob"] - curve["observed_rate"]).abs()).sum())


def brier_score(prob: np.ndarray | pd.Series, label: np.ndarray | pd.Series) -> float:
    """Brier score: mean squared error of the probability against the 0/1 label (min=0, max=1)."""
    p, y = _as_prob_label(prob, label)
    return float(np.mean((p - y) ** 2))


LOG_LOSS_FLOOR = 1e-15
"""The smallest probability ``log_loss`` charges (sklearn's clip): a 0 given to an adoption costs 34.5."""


def log_loss(prob: np.ndarray | pd.Series, label: np.ndarray | pd.Series) -> float:
    """Mean negative log-likelihood of the 0/1 labels under the probabilities (min=0). Unlike Brier and
    ECE it punishes a probability of 0 (or 1) that the outcome contradicts: the flaw of an
    unsmoothed calibrator's empty steps."""
    p, y = _as_prob_label(prob, label)
    p = np.clip(p, LOG_LOSS_FLOOR, 1.0 - LOG_LOSS_FLOOR)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


RECSYS2025_WEIGHTS = {"auroc": 0.8, "novelty": 0.1, "diversity": 0.1}
"""The RecSys Challenge 2025 propensity-task score: 0.8 * AUROC + 0.1 * novelty + 0.1 * diversity."""
_RECSYS_EPS = 10e-10  # the reference's epsilon inside log2 (sic: 10e-10 = 1e-9)


def recsys2025_diversity(predictions: np.ndarray) -> float:
    """RecSys Challenge 2025 diversity of a (users x items) matrix of predictions in [0, 1] (min=0, max=1).

    As ``Diversity`` in ``training_pipeline/metrics.py`` of Synerise's recsys2025 repository (after its
    sigmoid): each user's row is normalised to sum to 1, its entropy is -sum p log2(p + 1e-9), and the
    mean entropy over users is divided by log2(number of items). 1 = every item predicted equally; near
    0 = all the mass on one item. A row of zeros (no prediction) has entropy 0.
    """
    matrix = np.asarray(predictions, dtype=float)
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] < 2:
        raise ValueError(f"recsys2025_diversity needs users x (>= 2) items, got shape {matrix.shape}")
    totals = matrix.sum(axis=1, keepdims=True)
    normalised = matrix / np.where(totals > 0, totals, 1.0)
    entropy = -(normalised * np.log2(normalised + _RECSYS_EPS)).sum(axis=1)
    return float(entropy.mean() / np.log2(matrix.shape[1]))


def recsys2025_novelty(predictions: np.ndarray, popularity: np.ndarray, k: int = 10) -> float:
    """RecSys Challenge 2025 novelty of a (users x items) matrix of predictions in [0, 1] (min=0, max=1).

    As ``Novelty`` in ``training_pipeline/metrics.py`` of Synerise's recsys2025 repository (after its
    sigmoid): ``popularity`` (per item, e.g. its purchases in the training data, column order of the
    matrix) is divided by the sum of its k largest values; per user, the k highest predictions are
    weighted by their items' normalised popularity and summed; novelty = (1 - mean over users) ** 100.
    k is capped at the number of items. 1 = only never-bought items predicted; 0 = the k most
    popular items predicted with probability 1.
    """
    _check_k(k)
    matrix = np.asarray(predictions, dtype=float)
    pop = np.asarray(popularity, dtype=float)
    if matrix.ndim != 2 or matrix.shape[0] == 0 or pop.shape != (matrix.shape[1],):
        raise ValueError(
            f"recsys2025_novelty needs users x items predictions and one popularity per item, got "
            f"{matrix.shape} and {pop.shape}"
        )
    k_eff = min(k, len(pop))
    pop = pop / np.sort(pop)[-k_eff:].sum()
    top = np.argsort(-matrix, axis=1, kind="stable")[:, :k_eff]
    mean_pop = float((np.take_along_axis(matrix, top, axis=1) * pop[top]).sum(axis=1).mean())
    return float((1.0 - mean_pop) ** 100)


def recsys2025_composite(auroc: float, novelty: float, diversity: float) -> float:
    """0.8 * AUROC + 0.1 * novelty + 0.1 * diversity (``RECSYS2025_WEIGHTS``; min=0, max=1)."""
    parts = {"auroc": auroc, "novelty": novelty, "diversity": diversity}
    return float(sum(RECSYS2025_WEIGHTS[name] * value for name, value in parts.items()))


def recsys2025_score(
    df: pd.DataFrame,
    popularity: pd.Series,
    k: int = 10,
    logits: bool = True,
    product_col: str = PRODUCT_ID,
    group_cols: Sequence[str] = GROUP_COLS,
    label_col: str = LABEL,
    score_col: str = SCORE,
) -> dict[str, float]:
    """RecSys Challenge 2025 (Synerise) propensity score = 0.8 * AUROC + 0.1 * novelty + 0.1 * diversity.

    Follows ``training_pipeline/metrics.py`` (``Novelty``, ``Diversity``) and
    ``training_pipeline/metric_calculators.py`` (``PropensityMetricCalculator``) of Synerise's
    ``recsys2025`` repository (read from its public forks colorblank/recsys2025 and
    xyizhan/recsys2025-main_v2, which carry the file unchanged); the weights are the challenge's
    (its README's "Evaluation"). With a matrix of per-user, per-item predictions (rows: groups;
    columns: the items of ``popularity``, e.g. products or categories via ``product_col``):

      - predictions are passed through a sigmoid (the reference treats model outputs as logits; pass
        ``logits=False`` when ``score_col`` already holds probabilities);
      - AUROC: macro average over items of the per-item ROC AUC (torchmetrics multilabel AUROC);
        items whose labels have a single class are skipped (min=0, max=1);
      - diversity: ``recsys2025_diversity``; novelty: ``recsys2025_novelty`` (top ``k``).

    Deviation forced by candidate sets: a (group, item) pair that is not a candidate (the customer
    owns it, is not eligible, or was active in the category) gets prediction 0 in the matrix, and is
    left out of the AUROC. ``popularity`` maps every item to its number of adoptions in the training
    data. Returns ``{"auroc", "novelty", "diversity", "score"}``.
    """
    _check_k(k)
    _check_columns(df, [*group_cols, product_col, label_col, score_col])
    products = list(popularity.index)
    unknown = set(df[product_col].unique()) - set(products)
    if unknown:
        raise ValueError(f"recsys2025_score: products without popularity: {sorted(unknown)[:10]}")
    if len(products) < 2:
        raise ValueError("recsys2025_score needs at least 2 products")
    pred = df[score_col].to_numpy(dtype=float)
    pred = _sigmoid(pred) if logits else pred
    group = df.groupby(list(group_cols), sort=False, dropna=False).ngroup().to_numpy()
    matrix = np.zeros((group.max() + 1, len(products)))
    matrix[group, pd.Index(products).get_indexer(df[product_col])] = pred

    aucs = [
        _auc_or_nan(g[label_col].to_numpy(), g[score_col].to_numpy())
        for _, g in df.groupby(product_col, sort=True, observed=True)
    ]
    auroc = float(np.nanmean(aucs)) if not np.isnan(aucs).all() else math.nan
    novelty = recsys2025_novelty(matrix, popularity.to_numpy(dtype=float), k)
    diversity = recsys2025_diversity(matrix)
    return {"auroc": auroc, "novelty": novelty, "diversity": diversity,
            "score": recsys2025_composite(auroc, novelty, diversity)}
