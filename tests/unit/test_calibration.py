"""nextbest.training.calibration:
monotone per-product calibrators recover true probabilities on simulated data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.isotonic import IsotonicRegression

from nextbest.training.calibration import Calibrators, fit_calibrators, fit_isotonic
from nextbest.training.config import CalibrationConfig
from nextbest.training.metrics import brier_score, expected_calibration_error, log_loss


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


class TestIsotonicPrior:
    def test_each_step_is_shrunk_toward_the_base_rate(self) -> None:
        # plain isotonic: steps {1, 2} at 0/2 and {3, 4} at 2/2; base rate 1/2, prior worth 2 rows:
        # (0 + 2 * 0.5) / (2 + 2) = 0.25 and (2 + 2 * 0.5) / (2 + 2) = 0.75; linear between the steps
        model = fit_isotonic(np.array([1.0, 2.0, 3.0, 4.0]), np.array([0, 0, 1, 1]), prior_rows=2)
        np.testing.assert_allclose(model.predict([0.0, 1.0, 2.0, 2.5, 3.0, 4.0, 9.0]),
                                   [0.25, 0.25, 0.25, 0.5, 0.75, 0.75, 0.75])

    def test_a_step_shrunk_below_the_one_before_is_pooled_with_it(self) -> None:
        # plain isotonic: 100 rows at score 0 with no positive, 100 at score 1 with 80, one at score 2
        # with 1: steps at 0, 0.8 and 1. The base rate b = 81/201 and a prior worth 20 rows give the
        # middle step (80 + 20b) / 120 but the top one only (1 + 20b) / 21: the two are pooled,
        # (81 + 40b) / 141, weighted by their rows plus the prior's.
        score = np.r_[np.zeros(100), np.ones(100), 2.0]
        label = np.r_[np.zeros(100), np.ones(80), np.zeros(20), 1.0]
        b = 81 / 201
        model = fit_isotonic(score, label, prior_rows=20)
        np.testing.assert_allclose(model.predict([0.0, 1.0, 2.0]),
                                   [20 * b / 120, (81 + 40 * b) / 141, (81 + 40 * b) / 141])

    def test_no_prior_is_plain_isotonic_regression(self) -> None:
        rng = np.random.default_rng(5)
        score, label = rng.normal(size=2_000), (rng.random(2_000) < 0.1).astype(int)
        plain = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(score, label)
        grid = np.linspace(-4, 4, 101)
        no_prior = fit_isotonic(score, label, prior_rows=0)
        np.testing.assert_array_equal(no_prior.predict(grid), plain.predict(grid))

    @settings(max_examples=60, deadline=None)
    @given(
        labels=st.lists(st.integers(0, 1), min_size=2, max_size=200).filter(lambda y: 0 < sum(y) < len(y)),
        seed=st.integers(0, 2**16),
        prior_rows=st.floats(0.5, 500),
    )
    def test_monotone_and_strictly_between_0_and_1(
        self, labels: list[int], seed: int, prior_rows: float
    ) -> None:
        score = np.round(np.random.default_rng(seed).normal(size=len(labels)), 1)  # ties too
        model = fit_isotonic(score, np.array(labels), prior_rows)
        prob = model.predict(np.linspace(-5, 5, 201))
        assert (np.diff(prob) >= -1e-12).all()
        assert ((prob > 0) & (prob < 1)).all()

    def test_a_rare_products_empty_low_step_is_small_not_zero(self) -> None:
        # 20,000 rows at a 0.5 % base rate whose lowest scores never adopted: plain isotonic regression
        # says 0 there, and one adoption there costs log(1e15) = 34.5 of log loss.
        rng = np.random.default_rng(7)
        z = rng.normal(size=40_000)
        truth = _sigmoid(-6.5 + 1.5 * z)
        df = pd.DataFrame({"product_id": "A", "score": z, "label": (rng.random(z.size) < truth).astype(int)})
        fit, test = df.iloc[:20_000], df.iloc[20_000:]
        plain = fit_calibrators(fit, min_positives=20, params=CalibrationConfig(prior_rows=0))
        prior = fit_calibrators(fit, min_positives=20)
        low = pd.DataFrame({"product_id": "A", "score": [fit["score"].min()]})
        assert plain.predict_proba(low)[0] == 0.0
        assert 0.0 < prior.predict_proba(low)[0] < fit["label"].mean() / 10
        y = test["label"]
        assert log_loss(prior.predict_proba(test), y) < log_loss(plain.predict_proba(test), y)


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
