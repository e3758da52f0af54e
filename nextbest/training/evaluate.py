"""Evaluation of scored test frames: every model on the same groups, per product, calibration, drift.

Input is a *scored frame*: one row per (customer_id, product_id, event_timestamp) candidate of the
held-out month(s), with ``label``, ``product_id``, one score column per model (``score__<model>``,
higher = rank first) and the ranker's calibrated ``probability``. Every function is pure (frames
in, frames/dicts out) and built on ``nextbest.training.metrics``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from nextbest.columns import EVENT_TIMESTAMP, GROUP_COLS, LABEL, ORACLE_PROBABILITY, PROBABILITY, PRODUCT_ID
from nextbest.training import metrics as m
from nextbest.training.constants import DEFAULT_K

RANKER = "ranker"
PER_PRODUCT = "per_product"
POOLED = "pooled"
POPULARITY = "popularity"
ORACLE = "oracle"
MODEL_ORDER: tuple[str, ...] = (RANKER, PER_PRODUCT, POOLED, POPULARITY, ORACLE)
"""Display order of the models in tables."""

PROBABILITY_MODELS: frozenset[str] = frozenset({ORACLE})
"""Baselines whose scores are probabilities on the test population (ECE/Brier are meaningful).

Per-product and pooled classifiers are fitted on the ranker's training rows (groups with at least one
adoption), so their outputs are rates conditional on adopting something: not calibrated, not reported.
"""


@dataclass
class Evaluation:
    """Everything the report shows (built by ``nextbest.training.train.evaluate_scored``).

    Attributes:
        models: ``compare_models`` of every model on the test groups.
        flat: every metric as ``<model>.<metric>`` (what ``expected_metrics`` and the bundle read).
        per_product: ``per_product_table`` (the ranker against the per-product models).
        reliability, gains, drift: calibration curves per product, recall@k by k, metrics per month.
        feature_importance: the ranker's gain per feature (largest first).
        oracle_gap: ranker minus oracle nDCG@k and its paired s.e. (synthetic data only).
        failures: ``expected_metrics`` not met.
        feature_groups: feature -> group.
        importance_groups: ``importance_by_group`` (gain summed per group).
        ablation: ``ablation_table`` (empty when the ablation did not run).
        feature_selection: the validation months' verdict on each feature group
            (``nextbest.training.train.GroupSelection.table``; empty when no selection ran).
        product_wins: ``product_wins`` (every product, its positives, won or not).
        segments: ``cold_start_split`` tables (``cold_start`` / ``warm``, only non-empty ones).
        segment_note: why there is no cold-start table, or "".
        cold_start_per_product: ``per_product_table`` on the cold-start groups only (empty without any).
    """

    models: pd.DataFrame
    flat: dict[str, float]
    per_product: pd.DataFrame
    reliability: dict[str, pd.DataFrame]
    gains: pd.DataFrame
    drift: pd.DataFrame
    feature_importance: pd.Series
    oracle_gap: tuple[float, float] | None
    failures: list[str]
    feature_groups: dict[str, str] = field(default_factory=dict)
    importance_groups: pd.DataFrame = field(default_factory=pd.DataFrame)
    ablation: pd.DataFrame = field(default_factory=pd.DataFrame)
    feature_selection: pd.DataFrame = field(default_factory=pd.DataFrame)
    product_wins: pd.DataFrame = field(default_factory=pd.DataFrame)
    segments: dict[str, pd.DataFrame] = field(default_factory=dict)
    segment_note: str = ""
    cold_start_per_product: pd.DataFrame = field(default_factory=pd.DataFrame)


def score_col(model: str) -> str:
    """The column holding ``model``'s scores in a scored frame."""
    return f"score__{model}"


def models_in(df: pd.DataFrame) -> list[str]:
    """The models with a score column in ``df``, in ``MODEL_ORDER`` (unknown names last, sorted)."""
    present = [c.removeprefix("score__") for c in df.columns if c.startswith("score__")]
    known = [name for name in MODEL_ORDER if name in present]
    return known + sorted(set(present) - set(known))


def ndcg_mean_and_se(df: pd.DataFrame, score: str, k: int = DEFAULT_K) -> tuple[float, float]:
    """Mean nDCG@k over groups with a positive and its standard error (std / sqrt(groups))."""
    per_group = m.ndcg_per_group(df, k, score_col=score)
    n = len(per_group)
    if n == 0:
        return math.nan, math.nan
    se = float(per_group.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return float(per_group.mean()), se


def paired_ndcg_difference(df: pd.DataFrame, a: str, b: str, k: int = DEFAULT_K) -> tuple[float, float]:
    """Mean over groups of nDCG@k(a) - nDCG@k(b) and its standard error (paired over the same groups)."""
    diff = m.ndcg_per_group(df, k, score_col=a) - m.ndcg_per_group(df, k, score_col=b)
    n = len(diff)
    if n == 0:
        return math.nan, math.nan
    return float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan


def expected_dcg_over_oracle(df: pd.DataFrame, score: str, k: int = DEFAULT_K) -> float:
    """The expected DCG@k of ``score``'s ordering over the oracle's, the oracle's adoption probabilities
    (``oracle_probability``; synthetic data) as gains, summed over every test group
    (``metrics.gain_share_at_k``; the oracle scores 1). Unlike the label's nDCG it does not wait for
    the few groups that adopt, so it separates models on a test set too small for the label's s.e."""
    return m.gain_share_at_k(df, k, gain_col=ORACLE_PROBABILITY, score_col=score)


def ranking_metrics(df: pd.DataFrame, score: str, k: int = DEFAULT_K) -> dict[str, float]:
    """Ranking quality of one score column (each metric 0..1; NaN when undefined).

    Keys: ``ndcg@1``, ``ndcg@3``, ``ndcg@{k}`` (+ ``ndcg@{k}_se``), ``map@{k}`` (Kaggle: groups without
    an adoption count as 0), ``recall@1``, ``precision@1``, ``recall@{k}`` (over groups with a positive),
    ``groups``, ``groups_with_positive``.
    """
    ndcg_k, se = ndcg_mean_and_se(df, score, k)
    groups = df.groupby(list(GROUP_COLS), sort=False)[LABEL].max()
    return {
        "ndcg@1": m.ndcg_at_k(df, 1, score_col=score),
        "ndcg@3": m.ndcg_at_k(df, 3, score_col=score),
        f"ndcg@{k}": ndcg_k,
        f"ndcg@{k}_se": se,
        f"map@{k}": m.map_at_k(df, k, score_col=score),
        "recall@1": m.recall_at_k(df, 1, score_col=score),
        "precision@1": m.precision_at_k(df, 1, score_col=score),
        f"recall@{k}": m.recall_at_k(df, k, score_col=score),
        "groups": float(len(groups)),
        "groups_with_positive": float((groups > 0).sum()),
    }


def calibration_metrics(
    prob: np.ndarray | pd.Series, label: np.ndarray | pd.Series, n_bins: int = 10
) -> dict[str, float]:
    """ECE, Brier score, log loss, base rate and mean probability of probabilities against labels."""
    p = np.clip(np.asarray(prob, dtype=float), 0.0, 1.0)
    y = np.asarray(label, dtype=float)
    return {
        "ece": m.expected_calibration_error(p, y, n_bins),
        "brier": m.brier_score(p, y),
        "log_loss": m.log_loss(p, y),
        "base_rate": float(y.mean()),
        "mean_probability": float(p.mean()),
    }


def compare_models(
    df: pd.DataFrame,
    k: int = DEFAULT_K,
    n_bins: int = 10,
    popularity: pd.Series | None = None,
) -> pd.DataFrame:
    """One row per model present in ``df`` (``MODEL_ORDER``), columns = ``ranking_metrics`` keys, plus
    ``ece``/``brier``/``log_loss`` (the ranker's calibrated ``probability``; the oracle's own probability;
    NaN for models whose scores are not probabilities) and the RecSys 2025 ``recsys2025`` score when
    ``popularity`` (training adoptions per product) is given."""
    rows = {}
    for model in models_in(df):
        col = score_col(model)
        row = ranking_metrics(df, col, k)
        prob_col = PROBABILITY if model == RANKER else col if model in PROBABILITY_MODELS else None
        if prob_col is not None and prob_col in df.columns:
            cal = calibration_metrics(df[prob_col], df[LABEL], n_bins)
            row["ece"], row["brier"], row["log_loss"] = cal["ece"], cal["brier"], cal["log_loss"]
        else:
            row["ece"], row["brier"], row["log_loss"] = math.nan, math.nan, math.nan
        if popularity is not None and df[PRODUCT_ID].nunique() >= 2:
            pop = popularity.reindex(sorted(set(popularity.index) | set(df[PRODUCT_ID]))).fillna(0)
            row["recsys2025"] = m.recsys2025_score(
                df, pop, k=10, logits=model == RANKER, score_col=col
            )["score"]
        rows[model] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def calibration_by_product(df: pd.DataFrame, prob_col: str = PROBABILITY, n_bins: int = 10) -> pd.DataFrame:
    """Per product (sorted): n, positives, base_rate, mean_probability, ece, brier and log_loss of
    ``prob_col``."""
    rows = {
        str(product): {"n": len(g), "positives": int(g[LABEL].sum())}
        | calibration_metrics(g[prob_col], g[LABEL], n_bins)
        for product, g in df[[PRODUCT_ID, LABEL, prob_col]].groupby(PRODUCT_ID, sort=True, observed=True)
    }
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = PRODUCT_ID
    return out


def quantile_reliability(
    prob: np.ndarray | pd.Series, label: np.ndarray | pd.Series, n_bins: int = 10
) -> pd.DataFrame:
    """Reliability curve over equal-count bins (deciles by default) of the predicted probability.

    Equal-width bins put almost every row of a rare product (probabilities ~0.01) in the first bin;
    equal-count bins show the calibration where the rows are. Columns as
    ``metrics.reliability_curve``: bin, lower, upper (probability range of the bin), mean_prob,
    observed_rate, count.
    """
    p = np.clip(np.asarray(prob, dtype=float), 0.0, 1.0)
    y = np.asarray(label, dtype=float)
    if len(p) == 0:
        raise ValueError("prob and label are empty")
    order = np.argsort(p, kind="stable")
    bins = np.empty(len(p), dtype=int)
    bins[order] = np.minimum(np.arange(len(p)) * n_bins // len(p), n_bins - 1)
    frame = pd.DataFrame({"bin": bins, "p": p, "y": y})
    agg = frame.groupby("bin", sort=True).agg(
        lower=("p", "min"),
        upper=("p", "max"),
        mean_prob=("p", "mean"),
        observed_rate=("y", "mean"),
        count=("p", "size"),
    )
    return agg.reset_index()


def reliability_by_product(
    df: pd.DataFrame, prob_col: str = PROBABILITY, n_bins: int = 10
) -> dict[str, pd.DataFrame]:
    """Product -> its equal-count reliability curve (``quantile_reliability``) of ``prob_col``."""
    return {
        str(product): quantile_reliability(g[prob_col], g[LABEL], n_bins)
        for product, g in df[[PRODUCT_ID, LABEL, prob_col]].groupby(PRODUCT_ID, sort=True, observed=True)
    }


def per_product_table(
    df: pd.DataFrame,
    k: int = DEFAULT_K,
    reference: str = PER_PRODUCT,
    prob_col: str | None = PROBABILITY,
    n_bins: int = 10,
    top_fraction: float = 0.1,
) -> pd.DataFrame:
    """Per product: the ranker against the ``reference`` model (the per-product classifiers).

    Columns: n, positives, base_rate; ``ndcg``, ``recall@k``, ``auc`` of the ranker (``ndcg`` is the
    product's contribution to the mean nDCG@k, see ``metrics.per_product_metrics``); the same
    prefixed ``<reference>_``; ``ndcg_diff``, ``recall_diff``, ``auc_diff`` = ranker minus
    reference, ``ndcg_diff_se`` the s.e. of ``ndcg_diff`` paired over the groups with a positive
    (``metrics.per_product_ndcg_difference``); with ``prob_col``: ``ece``, ``brier``, ``mean_probability`` and
    ``precision_top_<x>pct`` of the calibrated probability.
    """
    def per(model: str) -> pd.DataFrame:
        t = m.per_product_metrics(df, k, score_col=score_col(model))
        return t.rename(columns={"ndcg_contribution": "ndcg", "recall_at_k": f"recall@{k}"})

    out = per(RANKER)[["n", "positives", "base_rate", "ndcg", f"recall@{k}", "auc"]]
    if score_col(reference) in df.columns:
        ref = per(reference)
        for col in ("ndcg", f"recall@{k}", "auc"):
            out[f"{reference}_{col}"] = ref[col]
        out["ndcg_diff"] = out["ndcg"] - out[f"{reference}_ndcg"]
        paired = m.per_product_ndcg_difference(df, score_col(RANKER), score_col(reference), k)
        out["ndcg_diff_se"] = paired["diff_se"].reindex(out.index)
        out["recall_diff"] = out[f"recall@{k}"] - out[f"{reference}_recall@{k}"]
        out["auc_diff"] = out["auc"] - out[f"{reference}_auc"]
    if prob_col is not None and prob_col in df.columns:
        cal = calibration_by_product(df, prob_col, n_bins)
        out = out.join(cal[["ece", "brier", "mean_probability"]])
        pct = round(top_fraction * 100)
        out[f"precision_top_{pct}pct"] = m.precision_at_top_fraction(df, top_fraction, score_col=prob_col)
    out.index = out.index.astype(str)
    return out


def gains_curve(df: pd.DataFrame, max_k: int = 10) -> pd.DataFrame:
    """Recall@k for k = 1..max_k of every model: the share of adoptions found in each customer's top k.

    Columns: k, then one column per model (0..1, non-decreasing in k).
    """
    rows = [
        {"k": k} | {model: m.recall_at_k(df, k, score_col=score_col(model)) for model in models_in(df)}
        for k in range(1, max_k + 1)
    ]
    return pd.DataFrame(rows)


def drift_table(df: pd.DataFrame, k: int = DEFAULT_K, n_bins: int = 10) -> pd.DataFrame:
    """Per test snapshot: the ranker's nDCG@k, MAP@k, and (if calibrated) ECE, Brier and base rate."""
    rows = {}
    for ts, g in df.groupby(EVENT_TIMESTAMP, sort=True):
        row = {f"ndcg@{k}": m.ndcg_at_k(g, k, score_col=score_col(RANKER)),
               f"map@{k}": m.map_at_k(g, k, score_col=score_col(RANKER)), "rows": float(len(g))}
        if PROBABILITY in g.columns:
            row |= calibration_metrics(g[PROBABILITY], g[LABEL], n_bins)
        rows[str(pd.Timestamp(ts).date())] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = EVENT_TIMESTAMP
    return out


def flatten(table: pd.DataFrame) -> dict[str, float]:
    """``compare_models`` output as ``{"<model>.<metric>": value}`` (NaN dropped)."""
    return {
        f"{model}.{metric}": float(value)
        for model, row in table.iterrows()
        for metric, value in row.items()
        if not pd.isna(value)
    }


def derived_metrics(flat: Mapping[str, float], k: int = DEFAULT_K) -> dict[str, float]:
    """Ratios of the ranker to the baselines: ``ranker.ndcg@k_over_<model>`` for every baseline present."""
    key = f"ndcg@{k}"
    ranker = flat.get(f"{RANKER}.{key}")
    out = {}
    for model in MODEL_ORDER[1:]:
        other = flat.get(f"{model}.{key}")
        if ranker is not None and other:
            out[f"{RANKER}.{key}_over_{model}"] = ranker / other
    return out


def check_expected(flat: Mapping[str, float], expected: Mapping[str, float]) -> list[str]:
    """Failures of ``expected`` minimums: one message per metric missing or below its minimum."""
    failures = []
    for name, minimum in sorted(expected.items()):
        value = flat.get(name)
        if value is None or math.isnan(value):
            failures.append(f"{name}: not computed (expected >= {minimum})")
        elif value < minimum:
            failures.append(f"{name} = {value:.4f} < expected minimum {minimum}")
    return failures


def products_won(per_product: pd.DataFrame, column: str = "ndcg_diff") -> list[str]:
    """Products on which the ranker beats the reference (``column`` > 0)."""
    if column not in per_product.columns:
        return []
    return sorted(per_product.index[per_product[column] > 0].astype(str))


def frame_summary(df: pd.DataFrame, columns: Sequence[str] = GROUP_COLS) -> dict[str, float]:
    """Rows, groups and positives of a frame (for the report's data section)."""
    groups = df.groupby(list(columns), sort=False)[LABEL].max() if len(df) else pd.Series(dtype=float)
    return {
        "rows": float(len(df)),
        "groups": float(len(groups)),
        "groups_with_positive": float((groups > 0).sum()),
        "positives": float(df[LABEL].sum()) if len(df) else 0.0,
    }


# --------------------------------------------------------------------------- feature groups


def importance_by_group(importance: pd.Series, groups: Mapping[str, str]) -> pd.DataFrame:
    """The ranker's feature importance summed per feature group, largest first.

    Args:
        importance: feature -> importance (e.g. total gain, >= 0).
        groups: feature -> group; a feature missing here is its own group.

    Returns:
        Index ``group``; columns ``n_features``, ``gain`` (the sum) and ``share`` (gain / total gain,
        0..1, NaN when the total is 0), sorted by gain descending, then group.
    """
    frame = pd.DataFrame(
        {"group": [groups.get(str(f), str(f)) for f in importance.index], "gain": importance.to_numpy(float)}
    )
    out = frame.groupby("group", sort=True).agg(n_features=("gain", "size"), gain=("gain", "sum"))
    total = float(out["gain"].sum())
    out["share"] = out["gain"] / total if total > 0 else math.nan
    out = out.reset_index().sort_values(["gain", "group"], ascending=[False, True], kind="mergesort")
    return out.set_index("group")


def importance_table(importance: pd.Series, groups: Mapping[str, str]) -> pd.DataFrame:
    """Per feature (largest first): ``group``, ``gain`` and ``share`` of the total (0..1)."""
    total = float(importance.sum())
    out = pd.DataFrame(
        {
            "group": [groups.get(str(f), str(f)) for f in importance.index],
            "gain": importance.to_numpy(float),
        },
        index=pd.Index([str(f) for f in importance.index], name="feature"),
    )
    out["share"] = out["gain"] / total if total > 0 else math.nan
    return out.sort_values("gain", ascending=False, kind="mergesort")


def ablation_table(
    scored: pd.DataFrame,
    ablated: Mapping[str, np.ndarray],
    n_features: Mapping[str, int],
    k: int = DEFAULT_K,
    full: str = RANKER,
) -> pd.DataFrame:
    """Feature-group ablation: nDCG@k of the ranker refitted without each group against the full ranker.

    Args:
        scored: the scored test frame (group columns, ``label`` and ``score__<full>``).
        ablated: group -> test scores of the ranker refitted without that group, aligned with ``scored``.
        n_features: group -> number of features dropped.
        k: the nDCG cut-off.
        full: the model the ablated rankers are compared with.

    Returns:
        Index ``group`` (in ``ablated`` order); columns ``n_features``, ``ndcg@k_without`` (0..1),
        ``ndcg@k_diff`` = ablated - full (negative: the group helps), ``ndcg@k_diff_se`` (paired
        over the test groups with a positive, see ``paired_ndcg_difference``) and ``diff_over_se``.
    """
    cols = [*GROUP_COLS, LABEL, score_col(full)]
    frame = scored[cols].copy()
    rows = {}
    for group, scores in ablated.items():
        frame["__ablated"] = np.asarray(scores, dtype=float)
        without, _ = ndcg_mean_and_se(frame, "__ablated", k)
        diff, se = paired_ndcg_difference(frame, "__ablated", score_col(full), k)
        rows[group] = {
            "n_features": int(n_features.get(group, 0)),
            f"ndcg@{k}_without": without,
            f"ndcg@{k}_diff": diff,
            f"ndcg@{k}_diff_se": se,
            "diff_over_se": diff / se if se and not math.isnan(se) else math.nan,
        }
    columns = ["n_features", f"ndcg@{k}_without", f"ndcg@{k}_diff", f"ndcg@{k}_diff_se", "diff_over_se"]
    out = pd.DataFrame.from_dict(rows, orient="index", columns=columns).astype({"n_features": int})
    out.index.name = "group"
    return out


def flatten_ablation(table: pd.DataFrame, k: int = DEFAULT_K) -> dict[str, float]:
    """``ranker.ablation.<group>.ndcg@k_diff`` and ``..._diff_se`` of an ``ablation_table`` (NaN dropped)."""
    out = {}
    for group, row in table.iterrows():
        for metric in (f"ndcg@{k}_diff", f"ndcg@{k}_diff_se"):
            if not pd.isna(row[metric]):
                out[f"{RANKER}.ablation.{group}.{metric}"] = float(row[metric])
    return out


# --------------------------------------------------------------------------- per product


WIN_MIN_POSITIVES = 50
"""Products need this many test positives to count in ``share_products_won`` (fewer: too noisy)."""


def product_wins(per_product: pd.DataFrame, reference: str = PER_PRODUCT) -> pd.DataFrame:
    """Every product of a ``per_product_table`` with its test positives, most positives first.

    Columns: ``positives``, ``ndcg`` (the ranker's per-product nDCG contribution), ``<reference>_ndcg``,
    ``ndcg_diff`` (ranker minus reference), ``ndcg_diff_se`` and ``auc_diff`` when the table has them,
    and ``won`` (diff > 0); empty without a reference.
    """
    cols = ["positives", "ndcg", f"{reference}_ndcg", "ndcg_diff"]
    if f"{reference}_ndcg" not in per_product.columns:
        return pd.DataFrame(columns=[*cols, "won"])
    cols += [c for c in ("ndcg_diff_se", "auc_diff") if c in per_product.columns]
    out = per_product[cols].copy()
    out["won"] = out["ndcg_diff"] > 0
    out = out.reset_index(names=PRODUCT_ID)
    out = out.sort_values(["positives", PRODUCT_ID], ascending=[False, True], kind="mergesort")
    return out.set_index(PRODUCT_ID)


def share_products_won(
    per_product: pd.DataFrame, min_positives: int = WIN_MIN_POSITIVES, diff: str = "ndcg_diff"
) -> tuple[float, int]:
    """Share of the products with >= ``min_positives`` test positives on which the ranker beats the
    reference on ``diff`` (a ``per_product_table`` difference column, ranker minus reference:
    ``ndcg_diff`` = the product's contribution to the mean nDCG@k, ``auc_diff`` = the AUC of the
    product's scores over its candidates, i.e. which customers to target, the per-product models'
    own task); a tie is not a win. Also how many products qualify. (NaN, 0) when none does or there
    is no reference."""
    if diff not in per_product.columns:
        return math.nan, 0
    eligible = per_product[per_product["positives"] >= min_positives]
    if eligible.empty:
        return math.nan, 0
    return float((eligible[diff] > 0).mean()), len(eligible)


def products_decided(
    per_product: pd.DataFrame, min_positives: int = WIN_MIN_POSITIVES, z: float = 2.0
) -> tuple[int, int]:
    """Of the products with >= ``min_positives`` test positives: how many the ranker wins and loses by
    more than ``z`` paired standard errors of ``ndcg_diff`` (``ndcg_diff_se``); the rest are within
    noise. (0, 0) without the columns."""
    if "ndcg_diff_se" not in per_product.columns or "ndcg_diff" not in per_product.columns:
        return 0, 0
    eligible = per_product[per_product["positives"] >= min_positives]
    ratio = eligible["ndcg_diff"] / eligible["ndcg_diff_se"].where(eligible["ndcg_diff_se"] > 0)
    return int((ratio > z).sum()), int((ratio < -z).sum())


def contributions_by_frequency(
    per_product: pd.DataFrame, min_positives: int = WIN_MIN_POSITIVES, reference: str = PER_PRODUCT
) -> dict[str, float]:
    """The nDCG@k contributions summed over the frequent products (>= ``min_positives`` test positives)
    and over the rest, for the ranker and ``reference``: where each model's nDCG comes from.

    Contributions are shares of one list of k slots per customer, so a model that gives more slots
    to frequent products wins more of them and loses the rare ones: a per-product share of wins is
    read with these sums. Keys ``ranker.ndcg_contribution_min<N>``, ``ranker.ndcg_contribution_below<N>``
    and the same for ``reference``; {} without the reference's column.
    """
    if f"{reference}_ndcg" not in per_product.columns:
        return {}
    frequent = per_product["positives"] >= min_positives
    out = {}
    for model, col in ((RANKER, "ndcg"), (reference, f"{reference}_ndcg")):
        out[f"{model}.ndcg_contribution_min{min_positives}"] = float(per_product.loc[frequent, col].sum())
        out[f"{model}.ndcg_contribution_below{min_positives}"] = float(per_product.loc[~frequent, col].sum())
    return out


# --------------------------------------------------------------------------- cold start


COLD_START_FEATURE = "count_products_owned"
"""The customer feature that marks a cold-start group: the customer owns nothing at the snapshot."""

COLD_START, WARM = "cold_start", "warm"
"""The two segments of ``cold_start_split``."""


def cold_start_mask(df: pd.DataFrame, feature: str = COLD_START_FEATURE) -> pd.Series:
    """Per row: True when the row's group is cold-start (``feature`` == 0 on any of its rows; the
    feature is a customer feature, constant within a group). A missing value is not cold-start.

    Raises:
        KeyError: ``feature`` is not a column of ``df``.
    """
    if feature not in df.columns:
        raise KeyError(f"{feature!r} is not in the frame: cannot tell cold-start groups")
    zero = pd.to_numeric(df[feature], errors="coerce").eq(0).fillna(False).astype(bool)
    return zero.groupby([df[c] for c in GROUP_COLS], sort=False).transform("max").astype(bool)


def cold_start_split(
    df: pd.DataFrame,
    k: int = DEFAULT_K,
    n_bins: int = 10,
    popularity: pd.Series | None = None,
    feature: str = COLD_START_FEATURE,
) -> tuple[dict[str, pd.DataFrame], dict[str, float]]:
    """``compare_models`` separately on cold-start groups (the customer owns nothing) and the rest.

    Returns:
        segment (``cold_start`` / ``warm``) -> its ``compare_models`` table, only for segments with
        rows; and the counts ``<segment>.groups`` and ``<segment>.groups_with_positive`` of both.
    """
    cold = cold_start_mask(df, feature)
    tables, counts = {}, {}
    for segment, rows in ((COLD_START, df[cold.to_numpy()]), (WARM, df[~cold.to_numpy()])):
        groups = rows.groupby(list(GROUP_COLS), sort=False)[LABEL].max()
        counts[f"{segment}.groups"] = float(len(groups))
        counts[f"{segment}.groups_with_positive"] = float((groups > 0).sum())
        if len(rows):
            tables[segment] = compare_models(rows, k, n_bins, popularity)
    return tables, counts


def flatten_segments(tables: Mapping[str, pd.DataFrame]) -> dict[str, float]:
    """``{"<model>.<segment>.<metric>": value}`` of ``cold_start_split`` tables (NaN dropped)."""
    out = {}
    for segment, table in tables.items():
        for key, value in flatten(table).items():
            model, metric = key.split(".", 1)
            out[f"{model}.{segment}.{metric}"] = value
    return out
