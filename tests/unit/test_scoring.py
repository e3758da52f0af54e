"""nextbest.training.scoring: the one ranking rule (known answers) and the one scoring function."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nextbest.columns import LABEL
from nextbest.training.calibration import fit_calibrators
from nextbest.training.config import RankerConfig
from nextbest.training.ranker import fit_ranker, prepare_groups
from nextbest.training.scoring import (
    input_columns,
    rank_within_groups,
    ranking_order,
    score_bundle,
)


class TestRankingOrder:
    def test_score_descending_ties_by_product_id(self) -> None:
        products = np.array(["p3", "p1", "p2", "p0"], dtype=object)
        score = np.array([0.5, 0.5, 0.9, 0.1])
        assert ranking_order(products, score).tolist() == [2, 1, 0, 3]

    def test_groups_outermost_first(self) -> None:
        customers = np.array(["b", "a", "b", "a"], dtype=object)
        products = np.array(["p1", "p1", "p2", "p2"], dtype=object)
        score = np.array([0.1, 0.1, 0.9, 0.2])
        assert ranking_order(products, score, [customers]).tolist() == [3, 1, 2, 0]


class TestRankWithinGroups:
    def test_known_answer_per_customer(self) -> None:
        customers = np.array(["b", "a", "b", "a", "b"], dtype=object)
        products = np.array(["p1", "p1", "p2", "p2", "p3"], dtype=object)
        score = np.array([0.5, 0.1, 0.9, 0.1, 0.5])
        # b: p2 (0.9) 1st, then p1 and p3 tie at 0.5 -> product id order; a: p1/p2 tie -> p1 first
        assert rank_within_groups([customers], products, score).tolist() == [2, 1, 1, 2, 3]

    def test_two_group_columns_rank_each_snapshot_apart(self) -> None:
        customers = np.array(["a", "a", "a", "a"], dtype=object)
        snapshots = np.array(["2024-01-31", "2024-02-29", "2024-01-31", "2024-02-29"], dtype="datetime64[D]")
        products = np.array(["p1", "p1", "p2", "p2"], dtype=object)
        score = np.array([0.1, 0.9, 0.2, 0.3])
        assert rank_within_groups([customers, snapshots], products, score).tolist() == [2, 1, 1, 2]

    def test_empty(self) -> None:
        empty = np.array([], dtype=object)
        assert rank_within_groups([empty], empty, np.array([])).tolist() == []


@pytest.fixture(scope="module")
def models() -> object:
    rng = np.random.default_rng(0)
    n_customers, products = 300, ["A", "B", "C", "D"]
    rows = pd.DataFrame(
        {
            "customer_id": np.repeat([f"C{i}" for i in range(n_customers)], len(products)),
            "product_id": products * n_customers,
            "event_timestamp": pd.Timestamp("2024-01-31"),
            "x": rng.normal(size=n_customers * len(products)),
        }
    )
    rows[LABEL] = (rng.random(len(rows)) < 1 / (1 + np.exp(-2 * rows["x"]))).astype(int)
    train = prepare_groups(rows.iloc[: len(rows) // 2], ["product_id", "x"])
    valid = prepare_groups(rows.iloc[len(rows) // 2 :], ["product_id", "x"], categories=train.categories)
    ranker = fit_ranker(train, valid, RankerConfig(n_estimators=20, n_jobs=1))
    held_out = rows.iloc[len(rows) // 2 :].assign(score=lambda d: ranker.score(d))
    calibrators = fit_calibrators(held_out, min_positives=20)

    class Fitted:
        pass

    fitted = Fitted()
    fitted.ranker, fitted.calibrators, fitted.rows = ranker, calibrators, rows  # type: ignore[attr-defined]
    return fitted


class TestScoreBundle:
    def test_equals_the_ranker_and_calibrators_on_frames_and_column_mappings(self, models) -> None:
        rows = models.rows.head(40)
        scored = score_bundle(models, rows)
        np.testing.assert_array_equal(scored.score, models.ranker.score(rows))
        np.testing.assert_array_equal(
            scored.probability, models.calibrators.predict_proba(rows.assign(score=scored.score))
        )
        as_lists = {c: rows[c].tolist() for c in input_columns(models)}
        online = score_bundle(models, as_lists, threads=1)
        np.testing.assert_allclose(online.score, scored.score, rtol=0, atol=1e-12)
        np.testing.assert_allclose(online.probability, scored.probability, rtol=0, atol=1e-12)
        assert ((scored.probability >= 0) & (scored.probability <= 1)).all()

    def test_no_rows_give_empty_arrays(self, models) -> None:
        scored = score_bundle(models, {c: [] for c in input_columns(models)})
        assert len(scored.score) == 0 and scored.probability is not None and len(scored.probability) == 0

    def test_missing_input_column_is_a_key_error(self, models) -> None:
        with pytest.raises(KeyError, match="x"):
            score_bundle(models, models.rows.drop(columns=["x"]))


class TestFloatColumn:
    def test_object_arrays_convert_like_float_with_none_as_nan(self) -> None:
        from nextbest.training.encoding import float_column

        values = [None, 1, 2.5, True, np.float64(3.0), np.int64(4), float("nan"), "1.5"]
        got = float_column(np.array(values, dtype=object))
        expected = np.array([np.nan, 1.0, 2.5, 1.0, 3.0, 4.0, np.nan, 1.5])
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(float_column(values), expected)  # the list path agrees
        assert got.dtype == np.float64

    def test_a_non_numeric_object_is_refused(self) -> None:
        from nextbest.training.encoding import float_column

        with pytest.raises(ValueError):
            float_column(np.array([1.0, "gold"], dtype=object))
