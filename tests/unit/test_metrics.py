"""Known-answer tests of nextbest.training.metrics (hand-computed values, Wikipedia, sklearn cross-checks)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import ndcg_score

from nextbest.training.metrics import (
    brier_score,
    expected_calibration_error,
    gain_share_at_k,
    log_loss,
    map_at_k,
    ndcg_at_k,
    ndcg_per_group,
    per_product_metrics,
    per_product_ndcg_difference,
    precision_at_k,
    precision_at_top_fraction,
    recall_at_k,
    recsys2025_composite,
    recsys2025_diversity,
    recsys2025_novelty,
    recsys2025_score,
    reliability_curve,
)

LOG2_3 = math.log2(3)
LOG2_5 = math.log2(5)


def _frame(groups: dict[str, tuple[list[float], list[int]]]) -> pd.DataFrame:
    """A long frame from {customer: (scores, labels)}; products are P0, P1, ... in list order."""
    rows = [
        {
            "customer_id": c,
            "event_timestamp": pd.Timestamp("2024-01-31"),
            "product_id": f"P{i}",
            "score": s,
            "label": y,
        }
        for c, (scores, labels) in groups.items()
        for i, (s, y) in enumerate(zip(scores, labels, strict=True))
    ]
    return pd.DataFrame(rows)


# Group A: ranked labels 0,1,0,1. Group B: no positive. Group C: the positive on top.
HAND = _frame(
    {
        "A": ([0.9, 0.8, 0.7, 0.6], [0, 1, 0, 1]),
        "B": ([0.5, 0.4], [0, 0]),
        "C": ([0.5, 0.4, 0.3], [1, 0, 0]),
    }
)


class TestGainShare:
    def test_binary_gains_known_answer_sums_over_groups_before_dividing(self) -> None:
        # A: DCG 1/log2 3 + 1/log2 5, ideal 1 + 1/log2 3; B gives nothing; C: DCG = ideal = 1
        dcg = 1 / LOG2_3 + 1 / LOG2_5 + 1
        ideal = 1 + 1 / LOG2_3 + 1
        assert gain_share_at_k(HAND, k=7) == pytest.approx(dcg / ideal)
        # nDCG averages the groups' ratios instead: a different number
        assert gain_share_at_k(HAND, k=7) != pytest.approx(ndcg_at_k(HAND, k=7))

    def test_no_gain_anywhere_is_nan(self) -> None:
        assert math.isnan(gain_share_at_k(HAND[HAND["customer_id"] == "B"], k=7))


class TestNdcg:
    def test_wikipedia_graded_example(self) -> None:
        # https://en.wikipedia.org/wiki/Discounted_cumulative_gain: ranked relevances 3,2,3,0,1,2 and two
        # more relevant documents (3, 2) ranked below the cut-off: DCG@6 = 6.861, IDCG@6 = 8.740.
        df = _frame({"u": ([8, 7, 6, 5, 4, 3, 2, 1], [3, 2, 3, 0, 1, 2, 3, 2])})
        assert ndcg_at_k(df, k=6) == pytest.approx(0.785, abs=5e-4)
        # Only the six listed documents: IDCG@6 = 7.141.
        assert ndcg_at_k(df.head(6), k=6) == pytest.approx(6.861 / 7.141, abs=5e-4)

    def test_binary_hand_example(self) -> None:
        group_a = (1 / LOG2_3 + 1 / LOG2_5) / (1 + 1 / LOG2_3)
        per_group = ndcg_per_group(HAND, k=7)
        assert per_group.tolist() == pytest.approx([group_a, 1.0])  # B (no positive) is left out
        assert ndcg_at_k(HAND, k=7) == pytest.approx((group_a + 1.0) / 2)

    def test_cut_off_excludes_lower_ranks(self) -> None:
        # k=1: group A's top item is irrelevant -> 0; group C -> 1.
        assert ndcg_at_k(HAND, k=1) == pytest.approx(0.5)

    def test_row_order_does_not_matter(self) -> None:
        shuffled = HAND.sample(frac=1.0, random_state=3)
        assert ndcg_at_k(shuffled) == pytest.approx(ndcg_at_k(HAND))

    @pytest.mark.parametrize("k", [1, 3, 7, 10])
    def test_matches_sklearn_on_random_groups(self, k: int) -> None:
        rng = np.random.default_rng(k)
        n_groups, size = 200, 10
        labels = (rng.random((n_groups, size)) < 0.2).astype(int)
        labels[np.arange(n_groups), rng.integers(0, size, n_groups)] = 1  # >= 1 positive per group
        scores = rng.normal(size=(n_groups, size))
        df = pd.DataFrame(
            {
                "customer_id": np.repeat(np.arange(n_groups), size).astype(str),
                "event_timestamp": pd.Timestamp("2024-01-31"),
                "label": labels.ravel(),
                "score": scores.ravel(),
            }
        )
        assert ndcg_at_k(df, k=k) == pytest.approx(ndcg_score(labels, scores, k=k))

    def test_perfect_and_worst_ranking_bounds(self) -> None:
        df = _frame({"u": ([3, 2, 1], [1, 0, 0]), "v": ([3, 2, 1], [0, 0, 1])})
        assert ndcg_per_group(df, k=3).tolist() == pytest.approx([1.0, 0.5])
        assert ndcg_per_group(df, k=2).tolist() == pytest.approx([1.0, 0.0])

    def test_no_positive_anywhere_is_nan(self) -> None:
        assert math.isnan(ndcg_at_k(_frame({"u": ([1, 2], [0, 0])})))

    def test_errors(self) -> None:
        with pytest.raises(ValueError, match="k must be"):
            ndcg_at_k(HAND, k=0)
        with pytest.raises(KeyError, match="score"):
            ndcg_at_k(HAND.drop(columns="score"))
        with pytest.raises(ValueError, match="NaN"):
            ndcg_at_k(HAND.assign(score=np.nan))


class TestMapAtK:
    def test_kaggle_definition_with_empty_group_counting_zero(self) -> None:
        # A: P(2)=1/2, P(4)=2/4 -> AP = (0.5 + 0.5) / min(7, 2) = 0.5; B: 0; C: 1.
        assert map_at_k(HAND, k=7) == pytest.approx((0.5 + 0.0 + 1.0) / 3)

    def test_only_groups_with_positive(self) -> None:
        assert map_at_k(HAND, k=7, include_groups_without_positive=False) == pytest.approx(0.75)

    def test_denominator_is_min_k_positives(self) -> None:
        # 3 positives ranked 1, 2, 5; k=2 -> (1 + 1) / min(2, 3) = 1.0; k=7 -> (1 + 1 + 3/5) / 3.
        df = _frame({"u": ([5, 4, 3, 2, 1], [1, 1, 0, 0, 1])})
        assert map_at_k(df, k=2) == pytest.approx(1.0)
        assert map_at_k(df, k=7) == pytest.approx((1 + 1 + 0.6) / 3)

    def test_graded_labels_rejected(self) -> None:
        with pytest.raises(ValueError, match="binary"):
            map_at_k(_frame({"u": ([2, 1], [2, 0])}))


class TestRecallPrecision:
    def test_hand_example(self) -> None:
        # k=2: A has 1 of 2 positives in its top 2, C has 1 of 1.
        assert recall_at_k(HAND, k=2) == pytest.approx((0.5 + 1.0) / 2)
        assert precision_at_k(HAND, k=2) == pytest.approx((0.5 + 0.5) / 2)

    def test_k_larger_than_groups(self) -> None:
        assert recall_at_k(HAND, k=10) == pytest.approx(1.0)
        assert precision_at_k(HAND, k=10) == pytest.approx((2 / 10 + 1 / 10) / 2)


class TestPerProduct:
    def test_hand_example(self) -> None:
        out = per_product_metrics(HAND, k=2)
        # P0: rows A(0.9, 0), B(0.5, 0), C(0.5, 1). P1: A(0.8, 1), B(0.4, 0), C(0.4, 0).
        # P3: A(0.6, 1) ranked 4th -> not in top 2.
        assert out.loc["P0", "n"] == 3 and out.loc["P0", "positives"] == 1
        assert out.loc["P0", "base_rate"] == pytest.approx(1 / 3)
        assert out.loc["P0", "recall_at_k"] == pytest.approx(1.0)
        assert out.loc["P3", "recall_at_k"] == pytest.approx(0.0)
        assert math.isnan(out.loc["P2", "recall_at_k"])
        assert out.loc["P1", "auc"] == pytest.approx(1.0)
        assert out.loc["P0", "auc"] == pytest.approx(0.25)  # 0.5 ties with one negative, below 0.9
        assert math.isnan(out.loc["P2", "auc"])  # single class

    def test_contributions_sum_to_ndcg(self) -> None:
        rng = np.random.default_rng(0)
        n = 3000
        df = pd.DataFrame(
            {
                "customer_id": rng.integers(0, 300, n).astype(str),
                "event_timestamp": pd.Timestamp("2024-01-31"),
                "product_id": [f"P{i}" for i in rng.integers(0, 12, n)],
                "label": (rng.random(n) < 0.2).astype(int),
                "score": rng.normal(size=n),
            }
        ).drop_duplicates(["customer_id", "product_id"])
        out = per_product_metrics(df, k=7)
        assert out["ndcg_contribution"].sum() == pytest.approx(ndcg_at_k(df, k=7))
        assert out["n"].sum() == len(df)


class TestPerProductDifference:
    def test_hand_example_paired_over_groups_with_a_positive(self) -> None:
        # a puts each group's first product first, b the second: g1 adopts P0, g2 adopts P1, g3 nothing
        df = _frame({"g1": ([2.0, 1.0], [1, 0]), "g2": ([2.0, 1.0], [0, 1]), "g3": ([2.0, 1.0], [0, 0])})
        df["b"] = -df["score"]
        out = per_product_ndcg_difference(df, "score", "b", k=7)
        d = 1 - 1 / LOG2_3  # rank 1 vs rank 2, IDCG 1
        # P0: d in g1, 0 in g2 (g3 has no positive: not counted); P1: 0 in g1, -d in g2
        assert out.loc["P0", "diff"] == pytest.approx(d / 2)
        assert out.loc["P1", "diff"] == pytest.approx(-d / 2)
        se = np.std([d, 0.0], ddof=1) / math.sqrt(2)
        assert out.loc["P0", "diff_se"] == pytest.approx(se)
        assert out.loc["P1", "diff_se"] == pytest.approx(se)

    def test_diff_is_the_difference_of_contributions(self) -> None:
        rng = np.random.default_rng(1)
        n = 3000
        df = pd.DataFrame(
            {
                "customer_id": rng.integers(0, 300, n).astype(str),
                "event_timestamp": pd.Timestamp("2024-01-31"),
                "product_id": [f"P{i}" for i in rng.integers(0, 12, n)],
                "label": (rng.random(n) < 0.2).astype(int),
                "score": rng.normal(size=n),
                "other": rng.normal(size=n),
            }
        ).drop_duplicates(["customer_id", "product_id"])
        out = per_product_ndcg_difference(df, "score", "other", k=7)
        a = per_product_metrics(df, k=7)["ndcg_contribution"]
        b = per_product_metrics(df, k=7, score_col="other")["ndcg_contribution"]
        np.testing.assert_allclose(out["diff"], a - b, atol=1e-12)
        assert (out["diff_se"] > 0).all()


class TestPrecisionAtTopFraction:
    def test_hand_example(self) -> None:
        df = pd.DataFrame(
            {
                "product_id": ["X"] * 10 + ["Y"] * 4,
                "score": list(range(10, 0, -1)) + [4, 3, 2, 1],
                "label": [1, 0, 1, 1, 0, 0, 0, 0, 0, 0] + [0, 1, 1, 1],
            }
        )
        top20 = precision_at_top_fraction(df, 0.2)
        assert top20["X"] == pytest.approx(0.5)  # top 2 of 10
        assert top20["Y"] == pytest.approx(0.0)  # ceil(0.8) = 1 row
        assert precision_at_top_fraction(df, 1.0)["X"] == pytest.approx(0.3)

    @pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
    def test_fraction_out_of_range(self, fraction: float) -> None:
        with pytest.raises(ValueError, match="fraction"):
            precision_at_top_fraction(HAND, fraction)


class TestCalibrationMetrics:
    def test_ece_and_brier_hand_example(self) -> None:
        prob = np.array([0.1, 0.1, 0.9, 0.9])
        label = np.array([0, 1, 1, 1])
        # bin 1: |0.1 - 0.5| * 2/4; bin 9: |0.9 - 1.0| * 2/4.
        assert expected_calibration_error(prob, label) == pytest.approx(0.25)
        assert brier_score(prob, label) == pytest.approx((0.01 + 0.81 + 0.01 + 0.01) / 4)

    def test_log_loss_hand_example_and_a_contradicted_zero(self) -> None:
        # -(ln 0.9 + ln 0.9 + ln 0.1 + ln 0.9) / 4 for the labels 0, 0, 1, 1 at 0.1, 0.1, 0.1, 0.9
        prob, label = np.array([0.1, 0.1, 0.1, 0.9]), np.array([0, 0, 1, 1])
        assert log_loss(prob, label) == pytest.approx(-(3 * math.log(0.9) + math.log(0.1)) / 4)
        assert log_loss(np.array([0.0, 1.0]), np.array([1, 0])) == pytest.approx(-math.log(1e-15), rel=1e-4)
        assert log_loss(np.array([0.0, 1.0]), np.array([0, 1])) == pytest.approx(0.0, abs=1e-12)

    def test_ece_of_perfect_calibration_is_near_zero(self) -> None:
        rng = np.random.default_rng(1)
        prob = rng.random(200_000)
        label = (rng.random(prob.size) < prob).astype(int)
        assert expected_calibration_error(prob, label) < 0.01

    def test_ece_of_miscalibration(self) -> None:
        rng = np.random.default_rng(2)
        prob = rng.random(100_000)
        label = (rng.random(prob.size) < prob).astype(int)
        assert expected_calibration_error(prob**3, label) > 0.15

    def test_reliability_curve(self) -> None:
        curve = reliability_curve(np.array([0.05, 0.15, 0.15, 1.0]), np.array([0, 1, 0, 1]), n_bins=10)
        assert curve["bin"].tolist() == [0, 1, 9]  # 1.0 falls in the last bin; empty bins left out
        assert curve["count"].tolist() == [1, 2, 1]
        assert curve["observed_rate"].tolist() == pytest.approx([0.0, 0.5, 1.0])
        assert curve["lower"].tolist() == pytest.approx([0.0, 0.1, 0.9])

    def test_errors(self) -> None:
        with pytest.raises(ValueError, match="\\[0, 1\\]"):
            expected_calibration_error(np.array([1.2]), np.array([1]))
        with pytest.raises(ValueError, match="equal length"):
            brier_score(np.array([0.2, 0.3]), np.array([1]))
        with pytest.raises(ValueError, match="empty"):
            brier_score(np.array([]), np.array([]))


class TestRecsys2025:
    def test_hand_example(self) -> None:
        df = _frame({"u1": ([0.8, 0.2], [1, 0]), "u2": ([0.3, 0.6], [0, 1])})
        popularity = pd.Series({"P0": 3.0, "P1": 1.0})
        out = recsys2025_score(df, popularity, k=1, logits=False)
        # AUROC: both products perfectly separated. Diversity: mean entropy of [.8,.2] and [1/3,2/3].
        diversity = (0.7219280948873623 + 0.9182958340544896) / 2
        # Novelty: popularity / 3 -> [1, 1/3]; top-1: 0.8 * 1 and 0.6 * 1/3 -> mean 0.5.
        assert out["auroc"] == pytest.approx(1.0)
        assert out["diversity"] == pytest.approx(diversity, abs=1e-6)
        assert out["novelty"] == pytest.approx(0.5**100)
        assert out["score"] == pytest.approx(0.8 + 0.1 * 0.5**100 + 0.1 * diversity, abs=1e-6)

    def test_logits_pass_through_sigmoid(self) -> None:
        df = _frame({"u1": ([0.0, 0.0], [1, 0])})
        out = recsys2025_score(df, pd.Series({"P0": 1.0, "P1": 1.0}), k=2)
        assert out["diversity"] == pytest.approx(1.0, abs=1e-6)  # equal predictions = maximal entropy

    def test_unknown_product_rejected(self) -> None:
        with pytest.raises(ValueError, match="popularity"):
            recsys2025_score(HAND, pd.Series({"P0": 1.0, "P1": 2.0}))


class TestRecsys2025Parts:
    """Novelty and diversity as in Synerise's recsys2025 ``training_pipeline/metrics.py``, by hand."""

    def test_diversity_uniform_is_one_and_one_hot_is_zero(self) -> None:
        assert recsys2025_diversity(np.array([[1.0, 1.0, 1.0, 1.0]])) == pytest.approx(1.0, abs=1e-8)
        assert recsys2025_diversity(np.array([[0.7, 0.0, 0.0, 0.0]])) == pytest.approx(0.0, abs=1e-8)
        # mean over users: (1 + 0) / 2
        both = np.array([[0.3, 0.3, 0.3, 0.3], [0.0, 0.9, 0.0, 0.0]])
        assert recsys2025_diversity(both) == pytest.approx(0.5, abs=1e-8)

    def test_diversity_normalises_each_row_then_divides_by_log2_items(self) -> None:
        # [0.2, 0.1, 0.1] -> [1/2, 1/4, 1/4]: entropy 0.5*1 + 2*0.25*2 = 1.5 bits, / log2(3)
        assert recsys2025_diversity(np.array([[0.2, 0.1, 0.1]])) == pytest.approx(1.5 / LOG2_3, abs=1e-8)

    def test_novelty_weights_the_top_k_by_popularity_normalised_by_the_k_largest(self) -> None:
        popularity = np.array([100.0, 100.0, 1.0, 1.0])  # / (100 + 100) -> .5, .5, .005, .005
        # user 1: top 2 = items 2, 3 at 1.0 -> 0.01; user 2: item 2 at 1.0, item 0 at 0.02 -> 0.015
        predictions = np.array([[0.0, 0.0, 1.0, 1.0], [0.02, 0.0, 1.0, 0.0]])
        assert recsys2025_novelty(predictions, popularity, k=2) == pytest.approx((1 - 0.0125) ** 100)
        assert recsys2025_novelty(predictions[:1], popularity, k=2) == pytest.approx(0.99**100)

    def test_novelty_bounds(self) -> None:
        popularity = np.array([0.0, 0.0, 10.0, 10.0])
        # only never-bought items: 1; the k most popular at probability 1: 0
        assert recsys2025_novelty(np.array([[0.9, 0.8, 0.0, 0.0]]), popularity, k=2) == 1.0
        assert recsys2025_novelty(np.array([[0.0, 0.0, 1.0, 1.0]]), popularity, k=2) == pytest.approx(0.0)
        # k is capped at the number of items (the reference's min(k, len(popularity)))
        capped = recsys2025_novelty(np.array([[0.0, 0.0, 0.5, 0.5]]), popularity, k=10)
        assert capped == pytest.approx(0.5**100)

    def test_composite_weights(self) -> None:
        assert recsys2025_composite(0.75, 0.5, 0.2) == pytest.approx(0.8 * 0.75 + 0.05 + 0.02)

    def test_shapes_are_checked(self) -> None:
        with pytest.raises(ValueError, match="items"):
            recsys2025_diversity(np.array([[1.0]]))
        with pytest.raises(ValueError, match="popularity per item"):
            recsys2025_novelty(np.array([[1.0, 0.0]]), np.array([1.0, 2.0, 3.0]))
