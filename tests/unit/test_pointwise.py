"""nextbest.training.pointwise: boosters merged into one (known sums), the within-group spread."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from nextbest.training.pointwise import merge_boosters, within_group_sd


@pytest.fixture(scope="module")
def frame() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(1200, 3)), columns=["a", "b", "c"])
    x["kind"] = pd.Categorical(rng.choice(["p", "q", "r", "s"], len(x)))
    y = (x["a"] + (x["kind"] == "q") + rng.normal(size=len(x)) > 1).astype(int).to_numpy()
    return x, y


def test_the_merged_booster_predicts_the_weighted_sum(frame: tuple[pd.DataFrame, np.ndarray]) -> None:
    x, y = frame
    ranker = lgb.LGBMRanker(objective="lambdarank", n_estimators=30, verbose=-1).fit(x, y, group=[12] * 100)
    classifier = lgb.LGBMClassifier(n_estimators=20, num_leaves=7, verbose=-1).fit(x, y)
    merged = merge_boosters([(ranker.booster_, 25, 1.0), (classifier.booster_, None, 0.3)])
    assert merged.num_trees() == 45 and merged.feature_name() == ["a", "b", "c", "kind"]
    pointwise = classifier.booster_.predict(x, raw_score=True)
    expected = ranker.booster_.predict(x, num_iteration=25) + 0.3 * pointwise
    np.testing.assert_allclose(merged.predict(x), expected, rtol=0, atol=1e-12)
    # the pandas categories travel with the first booster's text: a category string maps as before
    assert merged.pandas_categorical == ranker.booster_.pandas_categorical
    # and the text round-trips through LightGBM's own loader
    again = lgb.Booster(model_str=merged.model_to_string())
    np.testing.assert_allclose(again.predict(x), expected, rtol=0, atol=1e-12)


def test_boosters_of_other_features_are_refused(frame: tuple[pd.DataFrame, np.ndarray]) -> None:
    x, y = frame
    one = lgb.LGBMClassifier(n_estimators=2, verbose=-1).fit(x, y).booster_
    other = lgb.LGBMClassifier(n_estimators=2, verbose=-1).fit(x[["a", "b"]], y).booster_
    with pytest.raises(ValueError, match="different features"):
        merge_boosters([(one, None, 1.0), (other, None, 1.0)])


def test_within_group_sd_known_answers() -> None:
    # groups [1, 3] (sd 1), [5] (one row: left out), [2, 2] (sd 0)
    assert within_group_sd(np.array([1.0, 3.0, 5.0, 2.0, 2.0]), np.array([2, 1, 2])) == pytest.approx(0.5)
    assert within_group_sd(np.array([1.0, 1.0]), np.array([2])) == 1.0  # every group a tie
    assert within_group_sd(np.array([4.0]), np.array([1])) == 1.0  # no group of two rows
