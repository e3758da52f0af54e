"""nextbest.training.calibration:
monotone per-product calibrators recover true probabilities on simulated data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nextbest.training.calibration import Calibrators, fit_calibrators
from nextbest.training.metrics import brier_score, expected_calibration_error


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def simulate(n: int, seed: int, rare_rows: int = 150) -> pd.DataFrame:
    """Products A and B (common) and R (rare); true p = sigmoid(prior + 1.5 z + x).

    ``score`` = sigmoid(3 z): monotone in the truth at fixed x, but over-confident and blind to x
    and to the product prior. ``true_p`` is the real probability.
    """
    rng = np.random.default_rng(seed)
    product = np.array(["A"] * (n // 2) + ["B"] * (n - n // 2 - rare_rows) + ["R"] * rare_rows)
    prior = pd.Series({"A": -1.0, "B": -2.0, "R": -2.5})[product].to_numpy()
    z = rng.normal(size=n)
    x = rng.normal(size=n)
    true_p = _sigmoid(prior + 1.5 * z + x)
    return pd.DataFrame(
        {
            "product_id": product,
            "score": _sigmoid(3 * z),
            "z": z,
            "x": x,
            "segment": rng.choice(["s1", "s2"], n),
            "true_p": true_p,
            "label": (rng.random(n) < true_p).astype(int),
        }
    )


@pytest.fixture(scope="module")
def fit_data() -> pd.DataFrame:
    return simulate(30_000, seed=0)


@pytest.fixture(scope="module")
def test_data() -> pd.DataFrame:
    return simulate(30_000, seed=1)


@pytest.fixture(scope="module")
def with_features(fit_data: pd.DataFrame) -> Calibrators:
    return fit_calibrators(fit_data, feature_cols=["x", "segment"], min_positives=50)


class TestIsotonic:
    def test_recovers_calibration_of_score_only_truth(self) -> None:
        # Truth depends on the score only: p = sigmoid(-1 + 1.5 z), score = sigmoid(3 z).
        rng = np.random.default_rng(3)
        z = rng.normal(size=60_000)
        p = _sigmoid(-1 + 1.5 * z)
        df = pd.DataFrame(
            {"product_id": "A", "score": _sigmoid(3 * z), "label": (rng.random(z.size) < p).astype(int)}
        )
        fit, test = df.iloc[:30_000], df.iloc[30_000:]
        calibrators = fit_calibrators(fit, min_positives=50)
        prob = calibrators.predict_proba(test)
        assert expected_calibration_error(test["score"], test["label"]) > 0.1
        assert expected_calibration_error(prob, test["label"]) < 0.02
        assert np.abs(prob - p[30_000:]).mean() < 0.03
        assert set(calibrators.per_product) == {"A"}

    def test_predicts_what_isotonic_regression_predicts_beyond_its_ends_too(
        self, fit_data: pd.DataFrame
    ) -> None:
        calibrators = fit_calibrators(fit_data, min_positives=50)
        score = np.r_[-1.0, fit_data["score"].to_numpy()[:500], 2.0]  # below and above every fitted score
        frame = pd.DataFrame({"product_id": "A", "score": score})
        expected = calibrators.per_product["A"].model.predict(score)
        np.testing.assert_allclose(calibrators.predict_proba(frame), expected, rtol=0, atol=1e-12)

    def test_monotone_in_score(self, fit_data: pd.DataFrame) -> None:
        calibrators = fit_calibrators(fit_data, min_positives=50)
        grid = pd.DataFrame({"product_id": "A", "score": np.linspace(0, 1, 201)})
        assert (np.diff(calibrators.predict_proba(grid)) >= 0).all()


class TestWithFeatures:
    def test_ece_drops_and_probabilities_approach_truth(
        self, with_features: Calibrators, test_data: pd.DataFrame
    ) -> None:
        prob = with_features.predict_proba(test_data)
        assert expected_calibration_error(test_data["score"], test_data["label"]) > 0.1
        assert expected_calibration_error(prob, test_data["label"]) < 0.02
        assert np.abs(prob - test_data["true_p"]).mean() < 0.04
        assert ((prob >= 0) & (prob <= 1)).all()

    def test_features_improve_on_score_only(
        self, fit_data: pd.DataFrame, with_features: Calibrators, test_data: pd.DataFrame
    ) -> None:
        score_only = fit_calibrators(fit_data, min_positives=50).predict_proba(test_data)
        with_x = with_features.predict_proba(test_data)
        assert brier_score(with_x, test_data["label"]) < brier_score(score_only, test_data["label"]) - 0.005

    @pytest.mark.parametrize("product", ["A", "B", "R"])
    @pytest.mark.parametrize("x", [-1.5, 0.0, 1.5])
    def test_monotone_in_score_at_fixed_features(
        self, with_features: Calibrators, product: str, x: float
    ) -> None:
        grid = pd.DataFrame({"product_id": product, "score": np.linspace(0, 1, 301), "x": x, "segment": "s2"})
        assert (np.diff(with_features.predict_proba(grid)) >= -1e-12).all()

    def test_rare_product_uses_pooled_calibrator(
        self, with_features: Calibrators, test_data: pd.DataFrame
    ) -> None:
        assert with_features.pooled_products == ["R"]
        assert set(with_features.per_product) == {"A", "B"}
        rare = test_data[test_data["product_id"] == "R"]
        # LightGBM's own pandas path on the pooled calibrator's fitting inputs is the reference
        inputs = with_features._inputs(rare, with_product=True)
        pooled = with_features.pooled.model.predict_proba(inputs)[:, 1]
        np.testing.assert_allclose(with_features.predict_proba(rare), pooled)
        # Pooled is coarser for R (too few rows to learn its own offset) but far better than the raw score.
        prob = with_features.predict_proba(rare)
        assert (
            abs(prob.mean() - rare["true_p"].mean()) < 0.1 < abs(rare["score"].mean() - rare["true_p"].mean())
        )
        assert brier_score(prob, rare["label"]) < brier_score(rare["score"], rare["label"]) - 0.05

    def test_unseen_product_uses_pooled_calibrator(
        self, with_features: Calibrators, test_data: pd.DataFrame
    ) -> None:
        rows = test_data.head(100).assign(product_id="NEW")
        prob = with_features.predict_proba(rows)
        assert np.isfinite(prob).all() and ((prob >= 0) & (prob <= 1)).all()

    def test_row_order_invariant(self, with_features: Calibrators, test_data: pd.DataFrame) -> None:
        shuffled = test_data.sample(frac=1.0, random_state=0)
        by_index = pd.Series(with_features.predict_proba(shuffled), index=shuffled.index).sort_index()
        np.testing.assert_allclose(by_index.to_numpy(), with_features.predict_proba(test_data))


class TestErrors:
    def test_missing_column(self, fit_data: pd.DataFrame, with_features: Calibrators) -> None:
        with pytest.raises(KeyError, match="income"):
            fit_calibrators(fit_data, feature_cols=["income"])
        with pytest.raises(KeyError, match="x"):
            with_features.predict_proba(fit_data.drop(columns="x"))

    def test_single_class(self, fit_data: pd.DataFrame) -> None:
        with pytest.raises(ValueError, match="both positive and negative"):
            fit_calibrators(fit_data.assign(label=0))

    def test_product_listed_as_feature(self, fit_data: pd.DataFrame) -> None:
        with pytest.raises(ValueError, match="product column"):
            fit_calibrators(fit_data, feature_cols=["product_id"])
