"""Baselines the ranker is compared with, each scoring exactly the same candidate rows.

Every baseline has ``fit(train_df) -> self`` and ``score(df) -> np.ndarray`` (one score per row of
``df``, in its order, higher = more likely adopted), so evaluation can put any of them in the
``score`` column and call the same metrics.

- ``PopularityBaseline``: the adoption rate of each product among its candidates in training.
- ``PerProductModels``: one binary LightGBM per product — the approach the ranker replaces; its
  probabilities are put on one scale (``calibrate``, per-product Platt scaling on the validation
  months) before they rank one customer's products against each other.
- ``PooledClassifier``: one binary LightGBM over all products, the product a categorical feature.
- ``OracleBaseline``: the true probability of synthetic data (an upper bound, not a model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from nextbest.columns import LABEL, ORACLE_PROBABILITY, PRODUCT_ID
from nextbest.training.config import BaselineConfig
from nextbest.training.pointwise import binary_classifier
from nextbest.training.ranker import Categories, build_feature_frame, learn_categories


def _require(df: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(f"baseline: missing column(s) {missing}")


def _labels(df: pd.DataFrame) -> np.ndarray:
    _require(df, [LABEL])
    y = df[LABEL].to_numpy()
    if len(y) == 0:
        raise ValueError("baseline: the training frame is empty")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"{LABEL!r} must be 0/1")
    return y.astype(int)


def _classifier(params: BaselineConfig) -> lgb.LGBMClassifier:
    leaves = (params.num_leaves, params.min_child_samples)
    return binary_classifier(params.n_estimators, params.learning_rate, *leaves, params.n_jobs, params.seed)


class PopularityBaseline:
    """Score = the product's adoption rate among its candidate rows in the training data (0..1).

    A product unseen in training gets the overall adoption rate.
    """

    def __init__(self, product_col: str = PRODUCT_ID) -> None:
        self.product_col = product_col
        self.rates: pd.Series | None = None
        self.overall_rate: float = float("nan")

    def fit(self, train_df: pd.DataFrame) -> PopularityBaseline:
        """Learn the per-product adoption rates."""
        y = _labels(train_df)
        _require(train_df, [self.product_col])
        products = train_df[self.product_col].astype(str).to_numpy()
        self.rates = pd.Series(y, index=products).groupby(level=0).mean()
        self.overall_rate = float(y.mean())
        return self

    def score(self, df: pd.DataFrame) -> np.ndarray:
        """The adoption rate of each row's product."""
        if self.rates is None:
            raise RuntimeError("PopularityBaseline.score called before fit")
        _require(df, [self.product_col])
        rates = df[self.product_col].astype(str).map(self.rates)
        return rates.fillna(self.overall_rate).to_numpy(dtype=float)


def rows_by_product(products: pd.Series) -> dict[str, np.ndarray]:
    """Product (as a string) -> the positions of its rows, ascending; one sort, not a scan per product
    (2,378 product types x 5M rows was minutes)."""
    values = products.astype(str).to_numpy()
    if not len(values):
        return {}
    order = np.argsort(values, kind="stable")
    distinct, starts = np.unique(values[order], return_index=True)
    return dict(zip(distinct.tolist(), np.split(order, starts[1:]), strict=True))


_LOGIT_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=float), _LOGIT_EPS, 1 - _LOGIT_EPS)
    return np.log(q / (1 - q))


@dataclass(frozen=True)
class PlattMap:
    """``sigmoid(intercept + slope * logit(p))``: a strictly increasing map of a probability (slope > 0)."""

    intercept: float
    slope: float

    def apply(self, p: np.ndarray) -> np.ndarray:
        """The mapped probabilities (0..1), in the order of ``p``."""
        return 1.0 / (1.0 + np.exp(-(self.intercept + self.slope * _logit(p))))


def fit_platt(p: np.ndarray, y: np.ndarray) -> PlattMap | None:
    """Platt scaling of probabilities ``p`` against 0/1 labels ``y`` (logistic regression on logit(p),
    lightly regularised); None when ``y`` has one class or the fitted slope is not positive (a map
    that would reverse or flatten the order)."""
    y = np.asarray(y, dtype=int)
    if len(np.unique(y)) < 2:
        return None
    model = LogisticRegression(C=1.0).fit(_logit(p).reshape(-1, 1), y)
    slope = float(model.coef_[0, 0])
    return PlattMap(float(model.intercept_[0]), slope) if slope > 0 else None


@dataclass
class PerProductModels:
    """One binary LightGBM classifier per product: the many-models approach the ranker replaces.

    A product with fewer than ``min_positives`` positives (or negatives) in training gets no
    model and scores its base rate; ``fallback_products`` lists them after ``fit``. A product
    unseen in training scores the overall rate.

    Each classifier is fitted on its own product's training rows (the ranker's: groups with an
    adoption, negatives down-sampled per group), so their probabilities are on different scales: a
    product's sampling rate and its model's over-confidence differ. Ranking one customer's products
    by them is the many-models approach only once each model is calibrated on held-out rows, as a
    team running one model per product would do before comparing offers: ``calibrate`` fits, on
    the validation months (every group, never down-sampled), a Platt map per product with at
    least ``min_positives`` validation positives and negatives, and one pooled map for the others.
    The maps are strictly increasing, so each product's order of customers (its AUC) is unchanged.
    """

    feature_cols: Sequence[str]
    min_positives: int = 20
    params: BaselineConfig = field(default_factory=BaselineConfig)
    product_col: str = PRODUCT_ID
    models: dict[str, lgb.LGBMClassifier] = field(default_factory=dict, init=False)
    base_rates: dict[str, float] = field(default_factory=dict, init=False)
    fallback_products: list[str] = field(default_factory=list, init=False)
    categories: Categories = field(default_factory=dict, init=False)
    overall_rate: float = field(default=float("nan"), init=False)
    platt: dict[str, PlattMap] = field(default_factory=dict, init=False)
    pooled_platt: PlattMap | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.feature_cols = [c for c in self.feature_cols if c != self.product_col]

    def fit(self, train_df: pd.DataFrame) -> PerProductModels:
        """Fit one classifier per product with enough positives; record the base rates and fallbacks."""
        y = _labels(train_df)
        _require(train_df, [self.product_col, *self.feature_cols])
        self.categories = learn_categories(train_df, self.feature_cols)
        self.overall_rate = float(y.mean())
        self.models, self.base_rates, self.fallback_products = {}, {}, []
        for product, rows in rows_by_product(train_df[self.product_col]).items():
            y_p = y[rows]
            self.base_rates[product] = float(y_p.mean())
            if y_p.sum() < self.min_positives or (len(y_p) - y_p.sum()) < self.min_positives:
                self.fallback_products.append(product)
                continue
            features = build_feature_frame(train_df.iloc[rows], self.feature_cols, self.categories)
            self.models[product] = _classifier(self.params).fit(features, y_p)
        return self

    def calibrate(self, valid_df: pd.DataFrame, min_positives: int = 30) -> PerProductModels:
        """Fit the Platt maps of ``score`` on held-out rows (``valid_df``: label, product, features).

        A product with at least ``min_positives`` positives and negatives in ``valid_df`` gets its
        own map; every other product (and one whose own fit is degenerate) shares the pooled map
        fitted on all rows. Without any usable fit, scores stay the raw probabilities.
        """
        y = _labels(valid_df)
        raw = self.raw_score(valid_df)
        self.pooled_platt = fit_platt(raw, y)
        self.platt = {}
        for product, rows in rows_by_product(valid_df[self.product_col]).items():
            positives = int(y[rows].sum())
            if positives < min_positives or len(rows) - positives < min_positives:
                continue
            fitted = fit_platt(raw[rows], y[rows])
            if fitted is not None:
                self.platt[product] = fitted
        return self

    def score(self, df: pd.DataFrame) -> np.ndarray:
        """Each row's calibrated probability (``raw_score`` through its product's Platt map, else the
        pooled one; the raw probability before ``calibrate``)."""
        raw = self.raw_score(df)
        if self.pooled_platt is None and not self.platt:
            return raw
        out = raw.copy()
        for product, rows in rows_by_product(df[self.product_col]).items():
            mapping = self.platt.get(product, self.pooled_platt)
            if mapping is not None:
                out[rows] = mapping.apply(raw[rows])
        return out

    def raw_score(self, df: pd.DataFrame) -> np.ndarray:
        """Each row scored by its product's classifier (probability), or its base rate on fallback."""
        if not self.base_rates:
            raise RuntimeError("PerProductModels.score called before fit")
        _require(df, [self.product_col, *self.feature_cols])
        out = np.full(len(df), self.overall_rate, dtype=float)
        for product, rows in rows_by_product(df[self.product_col]).items():
            if product in self.models:
                features = build_feature_frame(df.iloc[rows], self.feature_cols, self.categories)
                out[rows] = self.models[product].predict_proba(features)[:, 1]
            elif product in self.base_rates:
                out[rows] = self.base_rates[product]
        return out


@dataclass
class PooledClassifier:
    """One binary LightGBM over all (customer, product) rows, with the product a categorical feature."""

    feature_cols: Sequence[str]
    params: BaselineConfig = field(default_factory=BaselineConfig)
    product_col: str = PRODUCT_ID
    model: lgb.LGBMClassifier | None = field(default=None, init=False)
    categories: Categories = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        cols = list(self.feature_cols)
        self.feature_cols = cols if self.product_col in cols else [self.product_col, *cols]

    def fit(self, train_df: pd.DataFrame) -> PooledClassifier:
        """Fit the pooled classifier."""
        y = _labels(train_df)
        _require(train_df, self.feature_cols)
        frame = train_df.assign(**{self.product_col: train_df[self.product_col].astype(str)})
        self.categories = learn_categories(frame, self.feature_cols)
        features = build_feature_frame(frame, self.feature_cols, self.categories)
        self.model = _classifier(self.params).fit(features, y)
        return self

    def score(self, df: pd.DataFrame) -> np.ndarray:
        """The pooled classifier's adoption probability of each row."""
        if self.model is None:
            raise RuntimeError("PooledClassifier.score called before fit")
        features = build_feature_frame(df, self.feature_cols, self.categories)  # the product as a string
        return np.asarray(self.model.predict_proba(features)[:, 1], dtype=float)


@dataclass
class OracleBaseline:
    """Reads a given true-probability column (synthetic data only): the best any model could do."""

    probability_col: str = ORACLE_PROBABILITY

    def fit(self, train_df: pd.DataFrame) -> OracleBaseline:
        """Nothing to learn."""
        return self

    def score(self, df: pd.DataFrame) -> np.ndarray:
        """The true probability of each row; fails if the column is absent or has nulls."""
        _require(df, [self.probability_col])
        values = df[self.probability_col].to_numpy(dtype=float)
        if np.isnan(values).any():
            raise ValueError(
                f"{self.probability_col!r} has missing values: the oracle covers every candidate"
            )
        return values
