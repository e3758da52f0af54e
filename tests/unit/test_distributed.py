"""nextbest.training.distributed: partitions on group boundaries, and a ranker trained on a 2-worker
LocalCluster that scores as well as the single-machine ranker on the same split."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from nextbest.columns import SCORE, SEASONAL_INDEX
from nextbest.settings import Settings, TrainingSettings
from nextbest.training.cli import with_engine
from nextbest.training.config import ConfigError, PointwiseConfig, RankerConfig
from nextbest.training.distributed import (
    dask_inputs,
    fit_ranker_dask,
    group_partitions,
    local_client,
    ranker_fitter,
)
from nextbest.training.metrics import ndcg_at_k
from nextbest.training.ranker import FittedRanker, build_feature_frame, fit_ranker, prepare_groups
from tests.unit.test_ranker import FEATURES, SNAPSHOTS, simulate

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client


def test_partitions_hold_whole_groups_balanced_by_rows() -> None:
    sizes = np.array([5, 5, 5, 5, 30, 5, 5])
    parts = group_partitions(sizes, 3)
    assert parts[0][0] == 0 and parts[-1][1] == len(sizes)
    assert all(a < b for a, b in parts)
    assert all(p[1] == q[0] for p, q in zip(parts, parts[1:], strict=False))
    assert parts == [(0, 4), (4, 5), (5, 7)]  # cuts where the rows pass 20 and 40 of 60
    assert group_partitions(np.array([7]), 4) == [(0, 1)]
    assert group_partitions(np.array([], dtype=int), 2) == []
    with pytest.raises(ValueError, match="n_partitions"):
        group_partitions(sizes, 0)


def test_dask_inputs_line_up_rows_and_groups() -> None:
    df = simulate(n_customers=60, n_products=6)
    data = prepare_groups(df, FEATURES, drop_groups_without_positive=True)
    with local_client(1) as client:
        features, label, groups, init = dask_inputs(data, client, 3)
        check_partitions(data, features, label, groups)
        assert init is None
        scores = np.arange(len(data.frame), dtype=float) / 7
        *_, init = dask_inputs(data, client, 3, scores)
        assert init.chunks == label.chunks  # the initial scores are cut as the rows are
        np.testing.assert_array_equal(init.compute(), scores)


def check_partitions(data, features, label, groups) -> None:  # noqa: ANN001 - dask collections
    row_chunks = label.chunks[0]
    group_chunks = groups.chunks[0]
    assert len(row_chunks) == len(group_chunks) == features.npartitions
    ends = np.cumsum([0, *group_chunks])
    sizes = data.group_sizes
    assert [int(sizes[a:b].sum()) for a, b in zip(ends[:-1], ends[1:], strict=True)] == list(row_chunks)
    partitions = [features.get_partition(i).compute() for i in range(features.npartitions)]
    assert [len(p) for p in partitions] == list(row_chunks)
    assert all((p.dtypes == data.features.dtypes).all() for p in partitions)
    np.testing.assert_array_equal(label.compute(), data.label)
    np.testing.assert_array_equal(groups.compute(), data.group_sizes)


def test_dask_ranker_matches_single_machine_ndcg() -> None:
    df = simulate(n_customers=500, n_products=12, seed=1)
    train_df = df[df.event_timestamp < SNAPSHOTS[1]]
    valid_df = df[df.event_timestamp == SNAPSHOTS[1]]
    test_df = df[df.event_timestamp == SNAPSHOTS[2]]
    train = prepare_groups(train_df, FEATURES, True)
    valid = prepare_groups(valid_df, FEATURES, True, categories=train.categories)
    params = RankerConfig(n_estimators=120, learning_rate=0.05, num_leaves=15, min_child_samples=20,
                          early_stopping_rounds=30)
    single = fit_ranker(train, valid, params, eval_at=5)
    with local_client(2) as client:
        distributed = fit_ranker_dask(train, valid, client, params, eval_at=5, selection_step=10)
        twenty = params.model_copy(update={"n_estimators": 20})
        every_tree = fit_ranker_dask(train, valid, client, twenty, eval_at=5, select_trees=False)
        part = PointwiseConfig(n_estimators=40, weight=0.5)
        pointwise = params.model_copy(update={"pointwise": part})
        with_part = fit_ranker_dask(train, valid, client, pointwise, eval_at=5)
        seasonal, flagged = fit_on_a_false_season(train_df, valid_df, client, params)
    assert every_tree.best_iteration == every_tree.booster.num_trees() == 20
    # the pointwise part is the single machine's, after the trees the cluster chose
    alone = fit_ranker(train, valid, pointwise, eval_at=5)
    assert with_part.pointwise_trees == alone.pointwise_trees
    assert with_part.booster.num_trees() == with_part.n_trees
    # the same classifier's trees on both, each scaled to its own LambdaMART trees' spread (a cluster's
    # LambdaMART trees can differ from one run to the next: each model's own are taken out)

    def part_of(ranker: FittedRanker) -> np.ndarray:
        features = build_feature_frame(test_df, FEATURES, ranker.categories)
        return ranker.score(test_df) - ranker.booster.predict(features, num_iteration=ranker.best_iteration)

    ratio = part_of(with_part) / part_of(alone)
    assert np.ptp(ratio) < 1e-6 * np.abs(ratio).mean()
    assert np.isnan(every_tree.best_valid_ndcg)
    assert 10 <= distributed.best_iteration <= 120
    assert distributed.best_valid_ndcg > 0
    single_ndcg = ndcg_at_k(test_df.assign(**{SCORE: single.score(test_df)}), 5)
    dask_ndcg = ndcg_at_k(test_df.assign(**{SCORE: distributed.score(test_df)}), 5)
    oracle = ndcg_at_k(test_df.assign(**{SCORE: test_df.oracle_probability}), 5)
    assert dask_ndcg >= 0.97 * single_ndcg, (dask_ndcg, single_ndcg, oracle)
    assert dask_ndcg <= oracle + 0.02
    # the cluster's trees were fitted on top of the seasonal offset: they take back most of a season the
    # index claims for a fifth of the products (a feature names them) and the labels never show
    assert seasonal.seasonal_offset == 1.0
    assert flagged < -0.75  # of the offset's 1.5


def fit_on_a_false_season(
    train_df: pd.DataFrame, valid_df: pd.DataFrame, client: Client, params: RankerConfig
) -> tuple[FittedRanker, float]:
    """A cluster fit whose index says ln 1.5 more on every fifth product, a season no label shows (the
    offset weighs 1 score unit per log rate): the ranker and its trees' mean score on those products'
    training rows less on the others'."""

    def flag(df: pd.DataFrame) -> pd.DataFrame:
        flagged = (df["product_id"].str[1:].astype(int) % 5 == 0) * 1.0
        return df.assign(flagged=flagged, **{SEASONAL_INDEX: np.exp(1.5 * flagged)})

    features = [*FEATURES, "flagged"]
    train = prepare_groups(flag(train_df), features, True)
    valid = prepare_groups(flag(valid_df), features, True, categories=train.categories)
    season = params.model_copy(update={"seasonal_offset": 1.0, "seasonal_units": 1.0, "n_estimators": 300})
    ranker = fit_ranker_dask(train, valid, client, season, eval_at=5, selection_step=10)
    trees = ranker.booster.predict(train.features, num_iteration=ranker.n_trees)
    on = train.frame["flagged"].to_numpy() == 1
    return ranker, float(trees[on].mean() - trees[~on].mean())


def test_the_engine_comes_from_the_settings_unless_the_command_line_gives_one() -> None:
    settings = Settings(home=Path("/tmp/nextbest-engine"))
    assert with_engine(settings, None, None) is settings
    chosen = with_engine(settings, "dask", "tcp://10.0.0.5:8786").training
    assert (chosen.engine, chosen.dask_scheduler, chosen.dask_workers) == ("dask", "tcp://10.0.0.5:8786", 2)
    with ranker_fitter(TrainingSettings()) as fit:
        assert fit is fit_ranker


def test_an_unreachable_scheduler_is_a_config_error() -> None:
    engine = TrainingSettings(engine="dask", dask_scheduler="tcp://127.0.0.1:9")
    with pytest.raises(ConfigError, match=r"dask scheduler 'tcp://127.0.0.1:9': cannot connect"):  # noqa: SIM117
        with ranker_fitter(engine):
            pass
