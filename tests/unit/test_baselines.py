"""nextbest.training.baselines:
every baseline scores the same rows; known answers and the expected ordering."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nextbest.training.baselines import (
    OracleBaseline,
    PerProductModels,
    PlattMap,
    PooledClassifier,
    PopularityBaseline,
    fit_platt,
    rows_by_product,
)
from nextbest.training.config import BaselineConfig
from nextbest.training.metrics import ndcg_at_k, per_product_metrics

FEATURES = ["segment", "income", "affinity"]
FAST = BaselineConfig(n_estimators=60, learning_rate=0.1)


def simulate(n_customers: int = 400, seed: int = 0) -> pd.DataFrame:
    """8 common products and one rare product ("P_RARE"); ``affinity`` drives adoption.

    Two snapshots (train: January, test: February); ``oracle_probability`` is the truth.
    """
    rng = np.random.default_rng(seed)
    products = [f"P{j}" for j in range(8)] + ["P_RARE"]
    prior = np.array([-3.0, -2.6, -2.2, -1.8, -1.6, -1.4, -1.2, -1.0, -6.0])
    segment = rng.choice(["young", "family", "senior"], n_customers)
    income = rng.lognormal(10, 0.5, n_customers)
    frames = []
    for snapshot in ("2024-01-31", "2024-02-29"):
        c = np.repeat(np.arange(n_customers), len(products))
        p = np.tile(np.arange(len(products)), n_customers)
        affinity = rng.normal(size=c.size)
        prob = 1 / (1 + np.exp(-(prior[p] + 2.0 * affinity)))
        frames.append(
            pd.DataFrame(
                {
                    "customer_id": [f"C{i}" for i in c],
                    "product_id": [products[j] for j in p],
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
def split() -> tuple[pd.DataFrame, pd.DataFrame]:
    df = simulate()
    return df[df["event_timestamp"] < "2024-02-01"], df[df["event_timestamp"] > "2024-02-01"]


class TestPopularity:
    def test_known_rates(self) -> None:
        train = pd.DataFrame({"product_id": ["a", "a", "a", "a", "b", "b"], "label": [1, 0, 0, 0, 0, 1]})
        model = PopularityBaseline().fit(train)
        scores = model.score(pd.DataFrame({"product_id": ["b", "a", "unseen"]}))
        np.testing.assert_allclose(scores, [0.5, 0.25, 2 / 6])  # unseen product: the overall rate
        train2 = pd.DataFrame({"product_id": ["a", "a", "a", "b"], "label": [1, 1, 0, 0]})
        np.testing.assert_allclose(
            PopularityBaseline().fit(train2).score(pd.DataFrame({"product_id": ["a", "b"]})), [2 / 3, 0]
        )

    def test_score_before_fit(self) -> None:
        with pytest.raises(RuntimeError, match="before fit"):
            PopularityBaseline().score(pd.DataFrame({"product_id": ["a"]}))


class TestPerProductModels:
    def test_rare_product_falls_back_to_base_rate(self, split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        train, test = split
        model = PerProductModels(FEATURES, min_positives=20, params=FAST).fit(train)
        assert model.fallback_products == ["P_RARE"]
        assert set(model.models) == {f"P{j}" for j in range(8)}
        rare = test["product_id"] == "P_RARE"
        rare_rate = train.loc[train["product_id"] == "P_RARE", "label"].mean()
        np.testing.assert_allclose(model.score(test)[rare.to_numpy()], rare_rate)

    def test_product_col_is_not_a_feature_of_per_product_models(self) -> None:
        assert PerProductModels(["product_id", "income"]).feature_cols == ["income"]

    def test_score_before_fit(self, split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        with pytest.raises(RuntimeError, match="before fit"):
            PerProductModels(FEATURES).score(split[1])


class TestPlatt:
    def test_calibrated_probabilities_map_to_themselves(self) -> None:
        rng = np.random.default_rng(1)
        p = rng.uniform(0.01, 0.6, 40_000)
        fitted = fit_platt(p, (rng.random(p.size) < p).astype(int))
        assert fitted is not None
        assert fitted.intercept == pytest.approx(0.0, abs=0.08)
        assert fitted.slope == pytest.approx(1.0, abs=0.05)

    def test_known_map_of_an_over_confident_score(self) -> None:
        # true logit = -1 + 0.5 * logit(p): p is over-confident and twice too high in odds
        rng = np.random.default_rng(2)
        p = rng.uniform(0.02, 0.98, 40_000)
        truth = PlattMap(-1.0, 0.5).apply(p)
        fitted = fit_platt(p, (rng.random(p.size) < truth).astype(int))
        assert fitted is not None
        assert fitted.intercept == pytest.approx(-1.0, abs=0.08)
        assert fitted.slope == pytest.approx(0.5, abs=0.05)

    def test_one_class_or_a_reversing_fit_gives_no_map(self) -> None:
        p = np.linspace(0.1, 0.9, 50)
        assert fit_platt(p, np.zeros(50, dtype=int)) is None
        assert fit_platt(p, (p < 0.5).astype(int)) is None  # higher score, fewer adoptions


class TestPerProductCalibration:
    def test_one_scale_across_products_and_each_products_order_kept(self) -> None:
        # a strictly increasing map per product: each product's order of customers (AUC) is
        # unchanged, and each product's mean probability on the held-out rows is its adoption rate
        df = simulate(n_customers=1000, seed=3)
        train, valid = df[df["event_timestamp"] < "2024-02-01"], df[df["event_timestamp"] > "2024-02-01"]
        model = PerProductModels(FEATURES, min_positives=20, params=FAST).fit(train)
        raw = model.score(valid)
        model.calibrate(valid, min_positives=30)
        calibrated = model.score(valid)
        assert set(model.platt) == {f"P{j}" for j in range(8)}  # P_RARE: pooled map
        assert model.pooled_platt is not None and model.pooled_platt.slope > 0
        scored = valid.assign(raw=raw, calibrated=calibrated)
        auc_raw = per_product_metrics(scored, score_col="raw")["auc"]
        auc_cal = per_product_metrics(scored, score_col="calibrated")["auc"]
        np.testing.assert_allclose(auc_cal.drop("P_RARE"), auc_raw.drop("P_RARE"), atol=1e-9)
        means = scored.groupby("product_id")[["calibrated", "label"]].mean().drop("P_RARE")
        np.testing.assert_allclose(means["calibrated"], means["label"], atol=0.01)  # logistic: mean matches

    def test_calibration_corrects_a_product_whose_training_rate_was_inflated(self) -> None:
        df = simulate(n_customers=1000, seed=4)
        train, valid = df[df["event_timestamp"] < "2024-02-01"], df[df["event_timestamp"] > "2024-02-01"]
        p0 = train["product_id"] == "P0"
        extra = train[p0 & (train["label"] == 1)]  # P0's positives 4x: as if its negatives were sampled
        inflated = pd.concat([train, extra, extra, extra], ignore_index=True)
        model = PerProductModels(FEATURES, min_positives=20, params=FAST).fit(inflated)
        rows = (valid["product_id"] == "P0").to_numpy()
        rate = valid.loc[rows, "label"].mean()
        assert model.score(valid)[rows].mean() > 1.4 * rate  # raw: over-states P0
        model.calibrate(valid, min_positives=30)
        assert model.score(valid)[rows].mean() == pytest.approx(rate, abs=0.01)

    def test_uncalibrated_score_is_the_raw_probability(
        self, split: tuple[pd.DataFrame, pd.DataFrame]
    ) -> None:
        train, test = split
        model = PerProductModels(FEATURES, min_positives=20, params=FAST).fit(train)
        np.testing.assert_array_equal(model.score(test), model.raw_score(test))


class TestPooledClassifier:
    def test_adds_product_as_categorical(self, split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        model = PooledClassifier(FEATURES, params=FAST).fit(split[0])
        assert model.feature_cols[0] == "product_id"
        assert model.categories["product_id"][-1] == "P_RARE"
        scores = model.score(split[1])
        assert ((scores > 0) & (scores < 1)).all()


class TestOracle:
    def test_reads_the_column(self) -> None:
        df = pd.DataFrame({"oracle_probability": [0.1, 0.7]})
        np.testing.assert_array_equal(OracleBaseline().fit(df).score(df), [0.1, 0.7])

    def test_missing_or_null(self) -> None:
        with pytest.raises(KeyError, match="oracle_probability"):
            OracleBaseline().score(pd.DataFrame({"x": [1]}))
        with pytest.raises(ValueError, match="missing values"):
            OracleBaseline().score(pd.DataFrame({"oracle_probability": [0.1, None]}))


class TestComparison:
    def test_all_baselines_score_the_same_rows_and_order_as_expected(
        self, split: tuple[pd.DataFrame, pd.DataFrame]
    ) -> None:
        train, test = split
        models = {
            "popularity": PopularityBaseline(),
            "per_product": PerProductModels(FEATURES, min_positives=20, params=FAST),
            "pooled": PooledClassifier(FEATURES, params=FAST),
            "oracle": OracleBaseline(),
        }
        ndcg = {}
        for name, model in models.items():
            scores = model.fit(train).score(test)
            assert scores.shape == (len(test),) and np.isfinite(scores).all()
            ndcg[name] = ndcg_at_k(test.assign(score=scores))
        assert ndcg["popularity"] + 0.1 < ndcg["pooled"] <= ndcg["oracle"] + 0.01
        assert ndcg["popularity"] + 0.1 < ndcg["per_product"] <= ndcg["oracle"] + 0.01

    def test_labels_must_be_binary(self) -> None:
        with pytest.raises(ValueError, match="0/1"):
            PopularityBaseline().fit(pd.DataFrame({"product_id": ["a"], "label": [3]}))
        with pytest.raises(ValueError, match="empty"):
            PopularityBaseline().fit(pd.DataFrame({"product_id": [], "label": []}))


def test_rows_by_product_lists_each_products_rows_in_order() -> None:
    rows = rows_by_product(pd.Series(["b", "a", "b", "c", "a", "b"]))
    assert list(rows) == ["a", "b", "c"]
    assert {p: r.tolist() for p, r in rows.items()} == {"a": [1, 4], "b": [0, 2, 5], "c": [3]}
    assert list(rows_by_product(pd.Series([7, 10, 7]))) == ["10", "7"]  # products as strings
    assert rows_by_product(pd.Series([], dtype=object)) == {}


def test_per_product_scores_follow_their_rows_in_any_order(split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, test = split[0], split[1].reset_index(drop=True)
    model = PerProductModels(FEATURES, min_positives=5, params=FAST).fit(train).calibrate(test)
    shuffled = test.sample(frac=1.0, random_state=1)
    np.testing.assert_allclose(model.score(shuffled), model.score(test)[shuffled.index.to_numpy()])
