"""nextbest.training.ranker: group preparation, categorical mapping, LambdaMART fit and scoring behaviour."""

from __future__ import annotations

from dataclasses import replace

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss

from nextbest.columns import LABEL, SEASONAL_INDEX
from nextbest.training.config import PointwiseConfig, RankerConfig
from nextbest.training.metrics import ndcg_at_k
from nextbest.training.ranker import (
    FittedRanker,
    SmoothedEarlyStopping,
    best_window_centre,
    build_feature_frame,
    eval_kwargs,
    fit_ranker,
    lambdarank_kwargs,
    learn_categories,
    lightgbm_kwargs,
    prepare_groups,
    rate_units,
    same_season,
    sample_groups,
)

FEATURES = ["product_id", "segment", "income", "affinity"]


SNAPSHOTS = ("2024-01-31", "2024-02-29", "2024-03-31")


def simulate(n_customers: int = 400, n_products: int = 12, seed: int = 0) -> pd.DataFrame:
    """Candidates where ``affinity`` (customer x product) drives adoption on top of a product prior.

    80% of (customer, product) pairs are candidates at each snapshot; income has 10% NaN; seniors
    adopt every third product more. ``oracle_probability`` is the true adoption probability.
    """
    rng = np.random.default_rng(seed)
    prior = np.linspace(-4.0, -1.5, n_products)
    segment = rng.choice(["young", "family", "senior"], n_customers)
    income = rng.lognormal(10, 0.5, n_customers)
    income[rng.random(n_customers) < 0.1] = np.nan
    frames = []
    for snapshot in SNAPSHOTS:
        c = np.repeat(np.arange(n_customers), n_products)
        p = np.tile(np.arange(n_products), n_customers)
        keep = rng.random(c.size) > 0.2
        c, p = c[keep], p[keep]
        affinity = rng.normal(size=c.size)
        logit = prior[p] + 2.0 * affinity + np.where((segment[c] == "senior") & (p % 3 == 0), 1.0, 0.0)
        prob = 1 / (1 + np.exp(-logit))
        frames.append(
            pd.DataFrame(
                {
                    "customer_id": [f"C{i:05d}" for i in c],
                    "product_id": [f"P{j:02d}" for j in p],
                    "event_timestamp": pd.Timestamp(snapshot),
                    "segment": segment[c],
                    "income": income[c],
                    "affinity": affinity,
                    "oracle_probability": prob,
                    "label": (rng.random(c.size) < prob).astype(int),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return simulate()


@pytest.fixture(scope="module")
def fitted(data: pd.DataFrame) -> FittedRanker:
    train = prepare_groups(data[data["event_timestamp"] < "2024-03-01"], FEATURES)
    valid = prepare_groups(
        data[data["event_timestamp"] > "2024-03-01"], FEATURES, categories=train.categories
    )
    return fit_ranker(train, valid, RankerConfig(n_estimators=200, early_stopping_rounds=20, n_jobs=1))


TINY = pd.DataFrame(
    {
        "event_timestamp": pd.to_datetime(
            ["2024-02-29", "2024-01-31", "2024-01-31", "2024-01-31", "2024-01-31"]
        ),
        "customer_id": ["a", "b", "a", "a", "b"],
        "product_id": ["x", "x", "y", "x", "y"],
        "label": [1, 0, 0, 1, 0],
        "segment": ["s1", "s2", "s1", "s1", None],
    }
)


class TestPrepareGroups:
    def test_sorted_and_group_sizes(self) -> None:
        data = prepare_groups(TINY, ["segment"], drop_groups_without_positive=False)
        keys = list(
            zip(
                data.frame["event_timestamp"].dt.strftime("%m"),
                data.frame["customer_id"],
                data.frame["product_id"],
                strict=True,
            )
        )
        assert keys == [
            ("01", "a", "x"),
            ("01", "a", "y"),
            ("01", "b", "x"),
            ("01", "b", "y"),
            ("02", "a", "x"),
        ]
        assert data.group_sizes.tolist() == [2, 2, 1]
        assert data.label.tolist() == [1, 0, 0, 0, 1]
        assert data.n_groups_dropped == 0

    def test_groups_without_positive_dropped(self) -> None:
        data = prepare_groups(TINY, ["segment"])
        assert data.group_sizes.tolist() == [2, 1]
        assert data.n_groups_dropped == 1
        assert "b" not in set(data.frame["customer_id"])

    def test_group_sizes_sum_to_rows(self, data: pd.DataFrame) -> None:
        prepared = prepare_groups(data, FEATURES)
        assert prepared.group_sizes.sum() == len(prepared.frame) == len(prepared.features)
        assert (prepared.frame.groupby(["event_timestamp", "customer_id"])[LABEL].max() == 1).all()

    def test_downsampling_keeps_all_positives(self, data: pd.DataFrame) -> None:
        full = prepare_groups(data, FEATURES)
        sampled = prepare_groups(data, FEATURES, max_negatives_per_group=2, seed=7)
        assert sampled.label.sum() == full.label.sum()
        negatives = (
            sampled.frame[sampled.frame[LABEL] == 0].groupby(["event_timestamp", "customer_id"]).size()
        )
        assert negatives.max() <= 2
        expected_rate = (sampled.label == 0).sum() / (full.label == 0).sum()
        assert sampled.negative_keep_rate == pytest.approx(expected_rate)
        assert 0 < sampled.negative_keep_rate < 1
        assert sampled.group_sizes.sum() == len(sampled.frame)

    def test_downsampling_is_seeded(self, data: pd.DataFrame) -> None:
        a = prepare_groups(data, FEATURES, max_negatives_per_group=2, seed=1).frame
        b = prepare_groups(data, FEATURES, max_negatives_per_group=2, seed=1).frame
        c = prepare_groups(data, FEATURES, max_negatives_per_group=2, seed=2).frame
        pd.testing.assert_frame_equal(a, b)
        assert not a["product_id"].equals(c["product_id"]) or len(a) != len(c)

    def test_sampling_the_labels_first_keeps_the_same_rows_and_counts(self, data: pd.DataFrame) -> None:
        direct = prepare_groups(data, FEATURES, max_negatives_per_group=2, seed=3)
        keys = data[["event_timestamp", "customer_id", "product_id", LABEL]]  # the labels, before features
        kept, sampled = sample_groups(keys.sample(frac=1.0, random_state=0), True, 2, 3)  # any row order
        features = data.drop(columns=LABEL).merge(kept, on=["event_timestamp", "customer_id", "product_id"])
        later = prepare_groups(features, FEATURES, max_negatives_per_group=2, seed=3, sampled=sampled)
        pd.testing.assert_frame_equal(later.frame[direct.frame.columns], direct.frame)
        assert (later.n_groups_dropped, later.negative_keep_rate) == (
            direct.n_groups_dropped, direct.negative_keep_rate
        )
        assert 0 < sampled.negative_keep_rate < 1

    def test_categories_learned_and_unseen_mapped_to_nan(self) -> None:
        categories = learn_categories(TINY, ["segment", "label"])
        assert categories == {"segment": ["s1", "s2"]}  # numeric columns are not categorical
        features = build_feature_frame(
            TINY.assign(segment=["s1", "new", None, "s2", "s1"]), ["segment"], categories
        )
        assert list(features["segment"].cat.categories) == ["s1", "s2"]
        assert features["segment"].isna().tolist() == [False, True, True, False, False]

    def test_valid_uses_training_categories(self, data: pd.DataFrame) -> None:
        train = prepare_groups(data[data["segment"] != "senior"], FEATURES)
        valid = prepare_groups(data, FEATURES, categories=train.categories)
        assert "senior" not in train.categories["segment"]
        assert valid.features["segment"].isna().sum() == (valid.frame["segment"] == "senior").sum()

    def test_errors(self) -> None:
        with pytest.raises(KeyError, match="income"):
            prepare_groups(TINY, ["income"])
        with pytest.raises(ValueError, match="duplicate"):
            prepare_groups(pd.concat([TINY, TINY.head(1)]), ["segment"])
        with pytest.raises(ValueError, match="0/1"):
            prepare_groups(TINY.assign(label=[2, 0, 0, 1, 0]), ["segment"])
        with pytest.raises(ValueError, match="no group has a positive"):
            prepare_groups(TINY.assign(label=0), ["segment"])
        with pytest.raises(ValueError, match="no learned category"):
            build_feature_frame(TINY, ["segment"], {})


class TestFitRanker:
    def test_beats_popularity_on_ndcg(self, data: pd.DataFrame, fitted: FittedRanker) -> None:
        test = data[data["event_timestamp"] > "2024-03-01"]
        train = data[data["event_timestamp"] < "2024-03-01"]
        popularity = test["product_id"].map(train.groupby("product_id")[LABEL].mean())
        ranker_ndcg = ndcg_at_k(test.assign(score=fitted.score(test)))
        popularity_ndcg = ndcg_at_k(test.assign(score=popularity))
        oracle_ndcg = ndcg_at_k(test.assign(score=test["oracle_probability"]))
        assert ranker_ndcg > popularity_ndcg + 0.15
        assert ranker_ndcg > oracle_ndcg - 0.05

    def test_records_fit_metadata(self, fitted: FittedRanker) -> None:
        assert fitted.feature_cols == FEATURES
        assert fitted.categories["segment"] == ["family", "senior", "young"]
        assert 1 <= fitted.best_iteration <= 200
        assert 0 < fitted.best_valid_ndcg <= 1
        assert fitted.feature_importance().index[0] == "affinity"

    def test_scores_invariant_to_row_order(self, data: pd.DataFrame, fitted: FittedRanker) -> None:
        shuffled = data.sample(frac=1.0, random_state=5)
        by_index = pd.Series(fitted.score(shuffled), index=shuffled.index).sort_index()
        np.testing.assert_array_equal(by_index.to_numpy(), fitted.score(data))

    def test_scores_ignore_extra_columns_and_column_order(
        self, data: pd.DataFrame, fitted: FittedRanker
    ) -> None:
        head = data.head(50)
        reordered = head[list(reversed(head.columns))].assign(unrelated=1.0)
        np.testing.assert_array_equal(fitted.score(reordered), fitted.score(head))

    def test_directional_affinity_raises_score(self, data: pd.DataFrame, fitted: FittedRanker) -> None:
        rows = data.head(200)
        higher = fitted.score(rows.assign(affinity=rows["affinity"] + 2.0))
        assert (higher >= fitted.score(rows) - 1e-9).mean() > 0.95

    def test_scores_equal_lightgbms_own_pandas_path(self, data: pd.DataFrame, fitted: FittedRanker) -> None:
        rows = data.head(300).assign(segment=lambda d: d["segment"].where(d.index % 7 != 0, "brand-new"))
        frame = build_feature_frame(rows, fitted.feature_cols, fitted.categories)
        expected = fitted.booster.predict(frame, num_iteration=fitted.best_iteration)
        np.testing.assert_allclose(fitted.score(rows), expected, rtol=0, atol=1e-12)
        as_lists = {c: rows[c].tolist() for c in rows.columns}  # the online path's column mapping
        np.testing.assert_allclose(fitted.score(as_lists), expected, rtol=0, atol=1e-12)

    def test_missing_feature_is_a_key_error(self, data: pd.DataFrame, fitted: FittedRanker) -> None:
        with pytest.raises(KeyError, match="affinity"):
            fitted.score(data.drop(columns=["affinity"]))

    def test_unseen_category_scores_without_error(self, data: pd.DataFrame, fitted: FittedRanker) -> None:
        scores = fitted.score(data.head(10).assign(segment="brand-new", product_id="P99"))
        assert np.isfinite(scores).all()

    def test_mismatched_categories_rejected(self, data: pd.DataFrame) -> None:
        train = prepare_groups(data[data["event_timestamp"] < "2024-03-01"], FEATURES)
        valid = prepare_groups(
            data[data["event_timestamp"] > "2024-03-01"].query("segment != 'young'"), FEATURES
        )
        with pytest.raises(ValueError, match="categories"):
            fit_ranker(train, valid)

    def test_training_split_as_validation_rejected(self, data: pd.DataFrame) -> None:
        train = prepare_groups(data, FEATURES)
        with pytest.raises(ValueError, match="held-out"):
            fit_ranker(train, train)

    def test_without_tree_selection_every_tree_is_kept(self, data: pd.DataFrame) -> None:
        train = prepare_groups(data, FEATURES)
        params = RankerConfig(n_estimators=25, early_stopping_rounds=1, n_jobs=1)
        ranker = fit_ranker(train, train, params, select_trees=False)
        assert ranker.best_iteration == ranker.booster.current_iteration() == 25
        assert np.isnan(ranker.best_valid_ndcg)
        # the same trees as LightGBM's own fit without an evaluation set
        own = lgb.LGBMRanker(objective="lambdarank", **lightgbm_kwargs(params))
        categorical = ["product_id", "segment"]
        own.fit(train.features, train.label, group=train.group_sizes, categorical_feature=categorical)
        expected = own.booster_.predict(train.features)
        np.testing.assert_allclose(ranker.booster.predict(train.features), expected)

    def test_a_pointwise_part_is_the_classifiers_trees_scaled_to_the_rankers_spread(
        self, data: pd.DataFrame
    ) -> None:
        train = prepare_groups(data[data["event_timestamp"] < "2024-03-01"], FEATURES)
        valid = prepare_groups(
            data[data["event_timestamp"] > "2024-03-01"], FEATURES, categories=train.categories
        )
        alone = RankerConfig(n_estimators=60, early_stopping_rounds=20, n_jobs=1)
        part = PointwiseConfig(n_estimators=40, num_leaves=7, learning_rate=0.3, weight=0.5)
        ranker = fit_ranker(train, valid, alone.model_copy(update={"pointwise": part}))
        listwise = fit_ranker(train, valid, alone)  # the same LambdaMART trees (deterministic)
        # the classifier of every tree, by hand: the part keeps the trees of least validation log loss
        classifier = lgb.LGBMClassifier(
            n_estimators=40,
            num_leaves=7,
            learning_rate=0.3,
            min_child_samples=20,
            n_jobs=1,
            random_state=0,
            deterministic=True,
            force_col_wise=True,
            verbose=-1,
        ).fit(train.features, train.label, categorical_feature=["product_id", "segment"])
        losses = [
            log_loss(valid.label, classifier.booster_.predict(valid.features, num_iteration=i))
            for i in range(1, 41)
        ]
        n_trees = int(np.argmin(losses)) + 1
        assert 1 < n_trees < 40  # a learning rate of 0.3 over-fits before 40 trees
        assert ranker.best_iteration == listwise.best_iteration and ranker.pointwise_trees == n_trees
        assert ranker.booster.num_trees() == ranker.n_trees == listwise.best_iteration + n_trees

        def spread(scores: np.ndarray) -> float:  # the mean sd within the training groups
            groups = np.repeat(np.arange(train.n_groups), train.group_sizes)
            return float(pd.Series(scores).groupby(groups).std(ddof=0)[train.group_sizes > 1].mean())

        raw = classifier.booster_.predict(train.features, raw_score=True, num_iteration=n_trees)
        scale = 0.5 * spread(listwise.score(train.frame)) / spread(raw)
        test = data[data["event_timestamp"] > "2024-03-01"]
        features = build_feature_frame(test, FEATURES, train.categories)
        pointwise = classifier.booster_.predict(features, raw_score=True, num_iteration=n_trees)
        expected = listwise.score(test) + scale * pointwise
        np.testing.assert_allclose(ranker.score(test), expected, rtol=0, atol=1e-9)
        assert spread(ranker.score(train.frame) - listwise.score(train.frame)) == pytest.approx(
            0.5 * spread(listwise.score(train.frame))
        )
        # the validation NDCG is the whole model's; a refit (no tree selection) keeps the part's trees
        valid_groups = test.groupby(["event_timestamp", "customer_id"])[LABEL].transform("max") > 0
        assert ranker.best_valid_ndcg == pytest.approx(
            ndcg_at_k(test[valid_groups].assign(score=ranker.score(test[valid_groups])))
        )
        fixed = alone.model_copy(update={"n_estimators": 25, "pointwise": part})
        refit = fit_ranker(train, train, fixed, select_trees=False)
        assert (refit.best_iteration, refit.pointwise_trees, refit.booster.num_trees()) == (25, 40, 65)
        assert np.isnan(refit.best_valid_ndcg)

    def test_the_trees_are_fitted_on_top_of_the_seasonal_offset(self, data: pd.DataFrame) -> None:
        # an index the trees cannot see (no feature carries it), unknown (null) on a tenth of the rows
        rng = np.random.default_rng(5)
        index = np.exp(rng.normal(0, 0.3, len(data)))
        index[rng.random(len(data)) < 0.1] = np.nan
        seasonal = data.assign(**{SEASONAL_INDEX: index})
        train = prepare_groups(seasonal[seasonal["event_timestamp"] < "2024-03-01"], FEATURES)
        valid_df = seasonal[seasonal["event_timestamp"] > "2024-03-01"]
        valid = prepare_groups(valid_df, FEATURES, categories=train.categories)
        alone = RankerConfig(n_estimators=40, early_stopping_rounds=20, n_jobs=1)
        plain = fit_ranker(train, valid, alone)
        ranker = fit_ranker(train, valid, alone.model_copy(update={"seasonal_offset": 0.5}))
        assert SEASONAL_INDEX not in ranker.feature_cols and ranker.input_cols[-1] == SEASONAL_INDEX

        # a: by hand, the plain trees' training scores' slope on ln of each product's (positives + 1) /
        # (rows + 2), ln index (0 where unknown) held, all centred within groups; the offset is half of it
        # per unit of ln index
        frame = train.frame.assign(score=plain.score(train.frame))
        stats = frame.groupby("product_id")[LABEL].agg(["sum", "count"])
        rate = np.log((stats["sum"] + 1) / (stats["count"] + 2))
        frame["rate"] = frame["product_id"].map(rate).astype(float)
        frame["season"] = np.log(frame[SEASONAL_INDEX].fillna(1.0))
        cols = ["score", "rate", "season"]
        centred = frame[cols] - frame.groupby(["event_timestamp", "customer_id"])[cols].transform("mean")
        terms = centred[["rate", "season"]].to_numpy()
        a = float(np.linalg.lstsq(terms, centred["score"].to_numpy(), rcond=None)[0][0])
        assert a > 0 and rate_units(plain, train) == pytest.approx(a, rel=1e-9)
        assert ranker.seasonal_weight == 0.5 and ranker.seasonal_offset == pytest.approx(0.5 * a, rel=1e-9)

        # the trees are LightGBM's own fit from that initial score (validation too), and the score adds it
        in_train, in_valid = (np.log(d.frame[SEASONAL_INDEX].fillna(1.0)).to_numpy() for d in (train, valid))
        offset = ranker.seasonal_offset
        model = lgb.LGBMRanker(**lambdarank_kwargs(alone)).fit(
            train.features, train.label, group=train.group_sizes, init_score=offset * in_train,
            **eval_kwargs(valid.features, valid.label), eval_group=[valid.group_sizes],
            eval_init_score=[offset * in_valid], eval_at=[7],
            categorical_feature=train.categorical_cols,
            callbacks=[SmoothedEarlyStopping(alone.early_stopping_rounds, alone.early_stopping_window)],
        )
        assert ranker.best_iteration == model.best_iteration_
        trees = model.booster_.predict(valid.features, num_iteration=ranker.best_iteration)
        np.testing.assert_allclose(ranker.score(valid.frame), trees + offset * in_valid, atol=1e-9)
        # the validation NDCG is the whole model's, offset included
        valid_groups = valid_df.groupby(["event_timestamp", "customer_id"])[LABEL].transform("max") > 0
        assert ranker.best_valid_ndcg == pytest.approx(
            ndcg_at_k(valid_df[valid_groups].assign(score=ranker.score(valid_df[valid_groups])))
        )

        # a refit starts from the same season (no first fit measures it again)
        same = same_season(alone.model_copy(update={"seasonal_offset": 0.5}), ranker)
        assert same.seasonal_units == pytest.approx(a, rel=1e-9)
        refit = fit_ranker(train, train, same.model_copy(update={"n_estimators": 25}), select_trees=False)
        assert refit.seasonal_offset == pytest.approx(offset, rel=1e-12) and refit.best_iteration == 25
        # weight 0, a feature service without the column, or no index known (a first year): no offset
        assert plain.seasonal_offset == 0.0 and plain.input_cols == plain.feature_cols
        no_index = prepare_groups(data[data["event_timestamp"] < "2024-03-01"], FEATURES)
        without = fit_ranker(no_index, valid, alone.model_copy(update={"seasonal_offset": 0.5}))
        assert without.seasonal_offset == 0.0 and without.input_cols == without.feature_cols
        first_year = replace(train, frame=train.frame.assign(**{SEASONAL_INDEX: np.nan}))
        unknown = fit_ranker(first_year, valid, alone.model_copy(update={"seasonal_offset": 0.5}))
        assert unknown.seasonal_offset == 0.0
        np.testing.assert_allclose(unknown.score(valid.frame), plain.score(valid.frame))

    def test_trees_on_top_of_the_season_learn_what_it_leaves(self) -> None:
        """Adoption follows a season no feature carries; an index that overstates it by 1.5 (log) on every
        fifth product, which a feature names: the trees fitted on top of the offset take most of the
        overstatement back on those products' rows, against a fit on the true index."""
        rng = np.random.default_rng(11)
        df = simulate(n_customers=600, n_products=12, seed=3)
        products = df["product_id"].str[1:].astype(int).to_numpy()
        month = df["event_timestamp"].rank(method="dense").astype(int).to_numpy() - 1
        season = rng.normal(0, 0.8, (len(SNAPSHOTS), 12))[month, products]
        logit = np.log(df["oracle_probability"] / (1 - df["oracle_probability"])) + season
        overstated = products % 5 == 0
        label = (rng.random(len(df)) < 1 / (1 + np.exp(-logit))).astype(int)
        df = df.assign(label=label, flagged=overstated * 1.0)
        params = RankerConfig(n_estimators=300, early_stopping_rounds=50, n_jobs=1)
        params = params.model_copy(update={"seasonal_offset": 1.0, "seasonal_units": 1.0})
        features = [*FEATURES, "flagged"]

        def trees_of(index: np.ndarray) -> tuple[np.ndarray, pd.Series]:
            with_index = df.assign(**{SEASONAL_INDEX: index})
            early = with_index["event_timestamp"] < "2024-03-01"
            train = prepare_groups(with_index[early], features)
            valid = prepare_groups(with_index[~early], features, categories=train.categories)
            ranker = fit_ranker(train, valid, params)
            assert ranker.seasonal_offset == 1.0
            trees = ranker.booster.predict(train.features, num_iteration=ranker.n_trees)
            return trees, train.frame["flagged"]

        true_trees, flagged = trees_of(np.exp(season))
        over_trees, _ = trees_of(np.exp(np.where(overstated, season + 1.5, season)))
        moved = over_trees - true_trees
        taken_back = moved[flagged.to_numpy() == 1].mean() - moved[flagged.to_numpy() == 0].mean()
        assert taken_back < -0.75  # of the 1.5 the index added to those products (-1.21 on this seed)

    def test_the_pairwise_loss_settings_reach_lightgbm(self, data: pd.DataFrame) -> None:
        train = prepare_groups(data, FEATURES)
        default = RankerConfig(n_estimators=25, n_jobs=1)
        soft = default.model_copy(update={"lambdarank_norm": False, "sigmoid": 0.5})
        ranker = fit_ranker(train, train, soft, select_trees=False)
        params = ranker.booster.params
        assert (params["lambdarank_norm"], params["sigmoid"]) == (False, 0.5)
        categorical = ["product_id", "segment"]
        own = lgb.LGBMRanker(
            objective="lambdarank", lambdarank_norm=False, sigmoid=0.5, **lightgbm_kwargs(soft)
        )
        own.fit(train.features, train.label, group=train.group_sizes, categorical_feature=categorical)
        scores = ranker.booster.predict(train.features)
        np.testing.assert_allclose(scores, own.booster_.predict(train.features))
        normed = fit_ranker(train, train, default, select_trees=False)  # LightGBM's defaults: other trees
        assert not np.allclose(normed.booster.predict(train.features), scores)

    def test_extra_categories_are_ignored(self, data: pd.DataFrame) -> None:
        categories = {**learn_categories(data, FEATURES), "region": ["north", "south"]}
        train = prepare_groups(data[data["event_timestamp"] < "2024-03-01"], FEATURES, categories=categories)
        valid = prepare_groups(data[data["event_timestamp"] > "2024-03-01"], FEATURES, categories=categories)
        ranker = fit_ranker(train, valid, RankerConfig(n_estimators=20, n_jobs=1))
        assert np.isfinite(ranker.score(data.head(20))).all()


class TestStall:
    """LightGBM ends a fit when a tree finds no split that meets its rules; ``stalled`` says so."""

    def _split(self, data: pd.DataFrame):
        train = prepare_groups(data[data["event_timestamp"] < "2024-03-01"], FEATURES)
        later = data[data["event_timestamp"] > "2024-03-01"]
        valid = prepare_groups(later, FEATURES, categories=train.categories)
        return train, valid

    def test_a_leaf_size_no_split_can_meet_stalls_the_fit(self, data: pd.DataFrame) -> None:
        train, valid = self._split(data)
        params = RankerConfig(n_estimators=200, early_stopping_rounds=20, min_child_samples=len(train.frame))
        ranker = fit_ranker(train, valid, params)
        assert ranker.best_iteration == 1 and ranker.booster.num_trees() == 1
        assert ranker.stalled

    def test_early_stopping_and_a_cap_are_not_stalls(self, data: pd.DataFrame, fitted: FittedRanker) -> None:
        assert fitted.best_iteration < 200 and not fitted.stalled  # stopped by the validation months
        params = RankerConfig(n_estimators=5, early_stopping_rounds=20, n_jobs=1)
        capped = fit_ranker(*self._split(data), params)
        assert capped.best_iteration == 5 and not capped.stalled


def stop_on(scores: list[float], stopping_rounds: int, window: int) -> tuple[int, int]:
    """Feed ``scores`` (a validation NDCG per iteration) to the callback as LightGBM's loop does; the
    (0-based) iteration it stopped at and the one it chose."""
    callback = SmoothedEarlyStopping(stopping_rounds, window)
    for i, score in enumerate(scores):
        env = lgb.callback.CallbackEnv(
            model=None,
            params={},
            iteration=i,
            begin_iteration=0,
            end_iteration=len(scores),
            evaluation_result_list=[("valid_0", "ndcg@7", score, True)],
        )
        try:
            callback(env)
        except lgb.callback.EarlyStopException as stop:
            assert [tuple(r)[:3] for r in stop.best_score] == [
                ("valid_0", "ndcg@7", scores[stop.best_iteration])
            ]
            return i, stop.best_iteration
    raise AssertionError("the callback never stopped")


class TestSmoothedEarlyStopping:
    SPIKE_FIRST = [0.9, 0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0.4, 0.3, 0.2, 0.1, 0.1]
    """A first tree that happens to score high on validation, then a real rise and fall."""

    def test_a_spike_at_the_first_tree_is_not_chosen(self) -> None:
        # windows of 3 centred on 1..: 0.4, 0.2, 0.3, 0.4 (a tie is no gain), 0.467 (iteration 5), 0.467,
        # 0.4, 0.3, 0.2: four centres after 5 without a gain -> stopped when the window of 9 is complete (10)
        assert stop_on(self.SPIKE_FIRST, stopping_rounds=4, window=3) == (10, 5)

    def test_a_window_of_one_is_lightgbm_early_stopping(self) -> None:
        assert stop_on(self.SPIKE_FIRST, stopping_rounds=4, window=1) == (4, 0)

    def test_fewer_iterations_than_a_window_keep_the_best_one(self) -> None:
        assert stop_on([0.2, 0.5, 0.3], stopping_rounds=10, window=5) == (2, 1)

    def test_the_end_of_training_stops_at_the_best_window(self) -> None:
        assert stop_on([0.1, 0.2, 0.3, 0.4, 0.5], stopping_rounds=10, window=3) == (4, 3)

    def test_the_rule_on_a_whole_curve_is_the_callback_rule(self) -> None:
        assert best_window_centre(self.SPIKE_FIRST, 1) == 5  # as the callback chose, seeing the curve
        assert best_window_centre(self.SPIKE_FIRST, 0) == 0
        assert best_window_centre([0.2, 0.5, 0.3], 2) == 1  # too short for one window
        assert best_window_centre([0.1, 0.3, 0.3, 0.1, 0.3, 0.3, 0.1], 1) == 1  # the first of tied windows

    def test_a_window_of_one_fits_lightgbm_own_early_stopping(self, data: pd.DataFrame) -> None:
        train = prepare_groups(data[data["event_timestamp"] < "2024-03-01"], FEATURES)
        later = data[data["event_timestamp"] > "2024-03-01"]
        valid = prepare_groups(later, FEATURES, categories=train.categories)
        params = RankerConfig(n_estimators=200, early_stopping_rounds=20, n_jobs=1)
        ours = fit_ranker(train, valid, params)
        own = lgb.LGBMRanker(objective="lambdarank", **lightgbm_kwargs(params))
        own.fit(
            train.features,
            train.label,
            group=train.group_sizes,
            **eval_kwargs(valid.features, valid.label),
            eval_group=[valid.group_sizes],
            eval_at=[7],
            categorical_feature=["product_id", "segment"],
            callbacks=[lgb.early_stopping(20, first_metric_only=True, verbose=False)],
        )
        assert ours.best_iteration == own.best_iteration_
        assert ours.best_valid_ndcg == own.best_score_["valid_0"]["ndcg@7"]
        smoothed = fit_ranker(train, valid, params.model_copy(update={"early_stopping_window": 9}))
        assert smoothed.best_iteration >= 5  # the centre of a full window of 9
