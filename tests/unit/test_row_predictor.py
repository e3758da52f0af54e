"""RowPredictor gives exactly Booster.predict's numbers on every path (single rows, one direct call,
Booster.predict), with missing values, categorical splits, a tree limit and raw scores."""

from __future__ import annotations

import pickle

import lightgbm as lgb
import numpy as np
import pytest

from nextbest.training.calibration import MonotoneCalibrator
from nextbest.training.row_predictor import MAX_ROWS_ONE_THREAD, MAX_ROWS_SINGLE, RowPredictor, predict_each


@pytest.fixture(scope="module")
def booster() -> lgb.Booster:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2000, 4))
    x[:, 3] = rng.integers(0, 5, size=2000)  # a categorical column (codes)
    x[rng.random(2000) < 0.1, 1] = np.nan
    y = ((x[:, 0] + (x[:, 3] == 2) + np.nan_to_num(x[:, 1]) * 0.5 + rng.normal(size=2000)) > 0.5).astype(int)
    data = lgb.Dataset(x, y, categorical_feature=[3], free_raw_data=False)
    params = {"objective": "binary", "num_leaves": 7, "verbose": -1, "seed": 1, "deterministic": True}
    return lgb.train(params, data, num_boost_round=40)


def rows(n: int) -> np.ndarray:
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 4))
    x[:, 3] = rng.integers(0, 6, size=n)  # 5 is a category never seen in training
    x[::3, 1] = np.nan
    return x


@pytest.mark.parametrize("n", [1, MAX_ROWS_SINGLE, MAX_ROWS_SINGLE + 1, 30, MAX_ROWS_ONE_THREAD + 1])
@pytest.mark.parametrize(("num_iteration", "raw_score"), [(None, False), (10, False), (25, True)])
def test_same_numbers_as_booster_predict(
    booster: lgb.Booster, n: int, num_iteration: int | None, raw_score: bool
) -> None:
    x = rows(n)
    expected = booster.predict(x, num_iteration=num_iteration, raw_score=raw_score)
    got = RowPredictor(booster, num_iteration=num_iteration, raw_score=raw_score).predict(x)
    np.testing.assert_array_equal(got, expected)


def test_non_contiguous_rows_and_empty_input(booster: lgb.Booster) -> None:
    wide = np.repeat(rows(6), 2, axis=1)[:, ::2]  # a strided view
    predictor = RowPredictor(booster)
    np.testing.assert_array_equal(predictor.predict(wide), booster.predict(np.ascontiguousarray(wide)))
    few = wide[:2]
    np.testing.assert_array_equal(predictor.predict(few), booster.predict(np.ascontiguousarray(few)))
    assert predictor.predict(np.empty((0, 4))).shape == (0,)


def test_wrong_width_is_refused(booster: lgb.Booster) -> None:
    with pytest.raises(ValueError, match=r"expected \(n, 4\)"):
        RowPredictor(booster).predict(np.zeros((2, 3)))


def test_calibrator_pickles_without_its_predictor() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 2))
    y = (x[:, 0] + rng.normal(size=500) > 0).astype(int)
    model = lgb.LGBMClassifier(n_estimators=20, num_leaves=4, verbose=-1, monotone_constraints=[1, 0])
    model.fit(x, y)
    calibrator = MonotoneCalibrator(["score", "f"], model)
    before = calibrator.predict(x[:3])
    again = pickle.loads(pickle.dumps(calibrator))
    np.testing.assert_array_equal(again.predict(x[:3]), before)
    np.testing.assert_array_equal(before, model.booster_.predict(x[:3]))


def test_predict_each_scores_every_row_with_its_own_booster(booster: lgb.Booster) -> None:
    """Rows alternating between two models (the fixture's; another with fewer trees, as raw scores)
    get exactly what each model's own ``Booster.predict`` gives them."""
    x = rows(7)
    rng = np.random.default_rng(8)
    other = lgb.train(
        {"objective": "binary", "num_leaves": 4, "verbose": -1, "seed": 2},
        lgb.Dataset(x[:, :4].repeat(40, axis=0) + rng.normal(size=(280, 4)), rng.integers(0, 2, 280)),
        num_boost_round=12,
    )
    first, second = RowPredictor(booster), RowPredictor(other, raw_score=True)
    predictors = [first, second, second, first, first, second, first]
    got = predict_each(predictors, x)
    expected = np.where(
        [p is first for p in predictors], booster.predict(x), other.predict(x, raw_score=True)
    )
    np.testing.assert_array_equal(got, expected)
    assert predict_each([], np.empty((0, 4))).shape == (0,)


def test_predict_each_refuses_a_predictor_per_row_mismatch(booster: lgb.Booster) -> None:
    with pytest.raises(ValueError, match="one predictor per row"):
        predict_each([RowPredictor(booster)], rows(2))
    with pytest.raises(ValueError, match=r"expect \[4\] columns"):
        predict_each([RowPredictor(booster)], np.zeros((1, 3)))
