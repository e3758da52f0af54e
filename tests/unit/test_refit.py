"""nextbest.training.train with ``refit``: the ranker refitted on training + validation groups with the
trees validation chose, calibrators cross-fitted by validation month, the ablation against the ranker
before the refit. Known answers: each model equals the one fitted by hand on the rows it should see."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nextbest.columns import EVENT_TIMESTAMP, SCORE
from nextbest.training.baselines import PerProductModels, PopularityBaseline
from nextbest.training.calibration import fit_calibrators
from nextbest.training.config import TrainingConfig
from nextbest.training.metrics import ndcg_at_k
from nextbest.training.ranker import FittedRanker, RankingData, fit_ranker, prepare_groups
from nextbest.training.report import details_text
from nextbest.training.train import (
    BEFORE_REFIT,
    ablate_feature_groups,
    evaluate_scored,
    fit_models,
    score_test,
)
from tests.unit.test_ranker import FEATURES, simulate

GROUPS = {"segment": "profile", "income": "profile", "affinity": "signal"}


def months(n_months: int) -> pd.DataFrame:
    """``n_months`` month-end snapshots from 2024-01-31 (``simulate`` gives three at a time)."""
    parts = []
    for batch in range((n_months + 2) // 3):
        part = simulate(n_customers=300, seed=batch)
        part[EVENT_TIMESTAMP] = part[EVENT_TIMESTAMP] + pd.offsets.MonthEnd(3 * batch)
        parts.append(part)
    data = pd.concat(parts, ignore_index=True)
    snapshots = sorted(data[EVENT_TIMESTAMP].unique())[:n_months]
    return data[data[EVENT_TIMESTAMP].isin(snapshots)].reset_index(drop=True)


def config(refit: bool = True) -> TrainingConfig:
    return TrainingConfig.model_validate(
        {
            "ranker": {"n_estimators": 80, "early_stopping_rounds": 10, "n_jobs": 1},
            "max_negatives_per_group": 5,
            "baselines": ["popularity", "per_product"],
            "calibration": {"min_positives": 10},
            "ablation": {"n_estimators": 30},
            "refit": {"enabled": refit},
        }
    )


def split(data: pd.DataFrame, n_valid: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """train | ``n_valid`` validation months | the last month as test."""
    snapshots = sorted(data[EVENT_TIMESTAMP].unique())
    ts = data[EVENT_TIMESTAMP]
    valid = snapshots[-1 - n_valid : -1]
    return data[ts < valid[0]], data[ts.isin(valid)], data[ts == snapshots[-1]]


@pytest.fixture(scope="module")
def fitted() -> dict:
    train, valid, test = split(months(6), n_valid=2)
    models = fit_models(train, valid, FEATURES, config())
    return {"train": train, "valid": valid, "test": test, "models": models}


def by_hand(rows: pd.DataFrame, n_trees: int) -> tuple[RankingData, FittedRanker]:
    """The ranker fitted on ``rows`` (sampled as training rows) with ``n_trees`` trees, every one kept."""
    data = prepare_groups(rows, FEATURES, True, 5, 0)
    params = config().ranker.model_copy(update={"n_estimators": n_trees})
    return data, fit_ranker(data, data, params, 7, select_trees=False)


def test_the_refit_is_fitted_on_training_and_validation_groups_with_the_trees_validation_chose(
    fitted: dict,
) -> None:
    models, valid = fitted["models"], fitted["valid"]
    refit = models.refit
    selected_groups = refit.selected_data.n_groups
    valid_groups = prepare_groups(valid, FEATURES, True).n_groups
    assert models.train_data.n_groups == selected_groups + valid_groups
    expected_trees = round(refit.selected.best_iteration * (selected_groups + valid_groups) / selected_groups)
    assert refit.n_trees == min(80, expected_trees) == models.ranker.best_iteration
    assert models.ranker.booster.current_iteration() == refit.n_trees
    # the held-out estimate stays the selected ranker's, not the refit's score on rows it saw
    assert models.ranker.best_valid_ndcg == refit.selected.best_valid_ndcg
    _, manual = by_hand(pd.concat([refit.selected_data.frame, valid]), refit.n_trees)
    np.testing.assert_allclose(models.ranker.score(fitted["test"]), manual.score(fitted["test"]))
    # the baselines are fitted on the refit's rows, but for the per-product models (calibrated on
    # the validation months, which they must not have seen)
    np.testing.assert_allclose(
        models.baselines["popularity"].score(fitted["test"]),
        PopularityBaseline().fit(models.train_data.frame).score(fitted["test"]),
    )
    features = [c for c in FEATURES if c != "product_id"]
    params = config().baseline_params
    per_product = PerProductModels(features, min_positives=params.per_product_min_positives, params=params)
    per_product.fit(refit.selected_data.frame).calibrate(valid, config().calibration.min_positives)
    np.testing.assert_allclose(
        models.baselines["per_product"].score(fitted["test"]), per_product.score(fitted["test"])
    )


def test_each_validation_month_is_scored_by_a_refit_that_did_not_see_it(fitted: dict) -> None:
    models, valid = fitted["models"], fitted["valid"]
    refit = models.refit
    out_of_fold = refit.out_of_fold
    assert len(out_of_fold) == len(valid)  # every validation row, groups without an adoption too
    for month in sorted(valid[EVENT_TIMESTAMP].unique()):
        others = valid[valid[EVENT_TIMESTAMP] != month]
        rows = pd.concat([refit.selected_data.frame, others])
        data = prepare_groups(rows, FEATURES, True, 5, 0)
        trees = round(refit.selected.best_iteration * data.n_groups / refit.selected_data.n_groups)
        _, fold = by_hand(rows, min(80, trees))
        held_out = out_of_fold[out_of_fold[EVENT_TIMESTAMP] == month]
        np.testing.assert_allclose(held_out[SCORE].to_numpy(), fold.score(held_out))
    # the calibrators are those of the out-of-fold scores, applied to the refit's scores
    calibrators = fit_calibrators(out_of_fold, feature_cols=[], min_positives=10, params=config().calibration)
    scored = score_test(models, fitted["test"])
    expected = calibrators.predict_proba(scored, scored["score__ranker"].to_numpy())
    np.testing.assert_allclose(scored["probability"].to_numpy(), expected)


def test_one_validation_month_is_scored_by_the_selected_ranker() -> None:
    train, valid, _ = split(months(4), n_valid=1)
    models = fit_models(train, valid, FEATURES, config())
    np.testing.assert_allclose(
        models.refit.out_of_fold[SCORE].to_numpy(), models.refit.selected.score(models.refit.out_of_fold)
    )


def test_the_ablation_compares_with_the_ranker_before_the_refit(fitted: dict) -> None:
    models, test = fitted["models"], fitted["test"]
    scored = score_test(models, test)
    ablation = ablate_feature_groups(models, scored, GROUPS, config())
    np.testing.assert_allclose(scored[BEFORE_REFIT], models.refit.selected.score(scored))
    # each refit without a group is fitted on the training months only, as the selected ranker
    keep = ["product_id", "affinity"]
    train = prepare_groups(models.refit.selected_data.frame, keep)
    valid = prepare_groups(fitted["valid"], keep, True, categories=train.categories)
    params = config().ranker.model_copy(update={"n_estimators": 30})
    np.testing.assert_allclose(ablation.scores["profile"], fit_ranker(train, valid, params, 7).score(scored))


def test_without_refit_the_ranker_is_the_selected_one() -> None:
    train, valid, _ = split(months(4), n_valid=1)
    models = fit_models(train, valid, FEATURES, config(refit=False))
    assert models.refit is None
    assert models.train_data.frame[EVENT_TIMESTAMP].max() < valid[EVENT_TIMESTAMP].min()


def test_the_report_compares_the_test_months_before_and_after_the_refit(fitted: dict) -> None:
    models, test = fitted["models"], fitted["test"]
    scored = score_test(models, test)
    ablation = ablate_feature_groups(models, scored, GROUPS, config())
    evaluation = evaluate_scored(scored, models, config(), GROUPS | {"product_id": "product_id"}, ablation)
    flat = evaluation.flat
    before = ndcg_at_k(test.assign(score=models.refit.selected.score(test)), 7)
    after = ndcg_at_k(test.assign(score=models.ranker.score(test)), 7)
    assert flat["ranker.before_refit.ndcg@7"] == pytest.approx(before)
    assert flat["ranker.ndcg@7"] == pytest.approx(after)
    assert flat["ranker.ndcg@7_minus_before_refit"] == pytest.approx(after - before)
    flat |= {"ranker.expected_dcg@7_over_oracle": 0.91, "oracle.expected_dcg@7_over_oracle": 1.0}
    text = details_text({"metrics": flat, "context": {"k": 7}, "ablation": [{"group": "profile"}]})
    assert "expected DCG@7 over the oracle's (its probabilities as gains, every test group): " in text
    assert "ranker 0.9100, oracle 1.0000" in text
    assert "refit on training + validation months: test nDCG@7" in text
    assert "the ranker before its refit on the validation months" in text
