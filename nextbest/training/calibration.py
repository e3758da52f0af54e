"""Per-product calibration: ranker score (+ a few customer features) -> adoption probability.

A ranker's scores order products within a customer but are not probabilities. For each product we
fit a calibrator on held-out rows (score, features) -> label that is monotone increasing in the
score, so calibration never changes the order of customers for a product at fixed features:
  - with no extra feature: ``IsotonicRegression`` on the score;
  - with features: a small LightGBM binary classifier with ``monotone_constraints`` = +1 on the
    score and 0 on the others.
Products with fewer than ``min_positives`` positives (or negatives) share one pooled calibrator
fitted on all products (with the product as a categorical feature when features are used).
Fit the calibrators on rows that were NOT negative-down-sampled: the base rate must be the real one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from nextbest.columns import LABEL, PRODUCT_ID, SCORE
from nextbest.training.config import CalibrationConfig
from nextbest.training.encoding import Columns, MatrixSpec, float_column, require_columns
from nextbest.training.ranker import Categories, build_feature_frame, learn_categories
from nextbest.training.row_predictor import MAX_ROWS_SINGLE, RowPredictor, predict_each


@dataclass
class MonotoneCalibrator:
    """One calibrator: probability = f(score, features), non-decreasing in score at fixed features.

    Attributes:
        input_cols: the model inputs, score column first.
        model: an ``IsotonicRegression`` (score only) or an ``LGBMClassifier``.
    """

    input_cols: list[str]
    model: IsotonicRegression | lgb.LGBMClassifier

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Probabilities in [0, 1] for an input matrix (column 0 = score, then the encoded
        ``input_cols[1:]``; see ``Calibrators.predict_proba``), on one thread (``RowPredictor``)."""
        if isinstance(self.model, IsotonicRegression):
            return self.isotonic(inputs[:, 0])
        return self.row_predictor().predict(inputs)  # type: ignore[union-attr]

    def isotonic(self, score: np.ndarray) -> np.ndarray:
        """An isotonic calibrator's probabilities of ``score``: its piecewise-linear fit, constant beyond
        its end points (as ``IsotonicRegression.predict`` with ``out_of_bounds="clip"``), by ``np.interp``
        (scipy's ``interp1d`` costs ~25 us a call, and a request calls one calibrator per product)."""
        model = self.model
        return np.interp(np.asarray(score, dtype=float), model.X_thresholds_, model.y_thresholds_)

    def row_predictor(self) -> RowPredictor | None:
        """The LightGBM model's single-row predictor, built once (None for an isotonic calibrator)."""
        if isinstance(self.model, IsotonicRegression):
            return None
        if "_rows" not in self.__dict__:
            self.__dict__["_rows"] = RowPredictor(self.model.booster_)
        return self.__dict__["_rows"]

    def __getstate__(self) -> dict:
        """Pickled without the row predictor (a C handle of this process)."""
        state = dict(self.__dict__)
        state.pop("_rows", None)
        return state


def _isotonic() -> IsotonicRegression:
    return IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")


def fit_isotonic(score: np.ndarray, label: np.ndarray, prior_rows: float) -> IsotonicRegression:
    """Isotonic regression of the 0/1 ``label`` on ``score`` whose steps are shrunk toward the rows'
    base rate, then made monotone again.

    Plain isotonic regression gives each step its observed rate. A step at the low end with no
    positive (thousands of rows of a rare product) gets exactly 0, and a short step at the high end
    with only positives gets 1. Neither is a probability to plan a campaign with. Here each step of
    ``n`` rows with ``k`` positives gets ``(k + prior_rows * base_rate) / (n + prior_rows)`` (a Beta
    prior at the base rate worth ``prior_rows`` rows), and isotonic regression weighted by
    ``n + prior_rows`` over the steps restores monotonicity. Long steps barely move. ``prior_rows = 0``
    is plain isotonic regression. The result is an ordinary ``IsotonicRegression`` on the steps' end
    points, so it predicts and pickles as one.
    """
    score, label = np.asarray(score, dtype=float), np.asarray(label, dtype=float)
    plain = _isotonic().fit(score, label)
    if prior_rows <= 0:
        return plain
    order = np.argsort(score, kind="stable")
    fitted, x, y = plain.predict(score[order]), score[order], label[order]
    starts = np.flatnonzero(np.r_[True, fitted[1:] != fitted[:-1]])
    ends = np.r_[starts[1:], len(x)] - 1
    rows = np.diff(np.r_[starts, len(x)]).astype(float)
    rate = (np.add.reduceat(y, starts) + prior_rows * y.mean()) / (rows + prior_rows)
    weight = (rows + prior_rows) / 2  # each step's weight split over its two end points
    return _isotonic().fit(
        np.r_[x[starts], x[ends]], np.r_[rate, rate], sample_weight=np.r_[weight, weight]
    )


def _fit_one(inputs: pd.DataFrame, label: np.ndarray, params: CalibrationConfig) -> MonotoneCalibrator:
    cols = list(inputs.columns)
    if len(cols) == 1:
        isotonic = fit_isotonic(inputs.iloc[:, 0].to_numpy(dtype=float), label, params.prior_rows)
        return MonotoneCalibrator(cols, isotonic)
    model = lgb.LGBMClassifier(
        objective="binary",
        n_estimators=params.n_estimators,
        learning_rate=params.learning_rate,
        num_leaves=params.num_leaves,
        min_child_samples=params.min_child_samples,
        monotone_constraints=[1] + [0] * (len(cols) - 1),
        n_jobs=params.n_jobs,
        random_state=params.seed,
        deterministic=True,
        force_col_wise=True,
        verbose=-1,
    )
    model.fit(inputs, label)
    return MonotoneCalibrator(cols, model)


@dataclass
class Calibrators:
    """Per-product calibrators with a pooled fallback.

    Attributes:
        product_col, score_col: the columns read by ``predict_proba``.
        feature_cols: extra calibration features (customer features), possibly empty.
        categories: categorical mapping of ``feature_cols`` (and of the product in the pooled model).
        per_product: product -> its own calibrator.
        pooled: the calibrator shared by every other product (including products unseen in fitting).
        pooled_products: products seen in fitting that fell back to ``pooled`` (too few positives).
        min_positives: the threshold used.
    """

    product_col: str
    score_col: str
    feature_cols: list[str]
    categories: Categories
    per_product: dict[str, MonotoneCalibrator]
    pooled: MonotoneCalibrator
    pooled_products: list[str] = field(default_factory=list)
    min_positives: int = 0

    def _inputs(self, df: pd.DataFrame, with_product: bool) -> pd.DataFrame:
        cols = [*self.feature_cols, self.product_col] if with_product else list(self.feature_cols)
        features = build_feature_frame(df, cols, self.categories)
        features.insert(0, self.score_col, df[self.score_col].to_numpy(dtype=float))
        return features

    def __getstate__(self) -> dict:
        """Pickled without the encoding cache (keyed by object ids of this process)."""
        state = dict(self.__dict__)
        state.pop("_matrix_specs", None)
        return state

    def _rows_by_calibrator(self, products: Any) -> list[tuple[MonotoneCalibrator, np.ndarray]]:
        """Each calibrator used by ``products`` (one per row) and its rows, ascending: a product's own
        calibrator, else the pooled one."""
        if isinstance(products, pd.Series):  # a frame: few products, many rows, grouped in numpy
            distinct, inverse = np.unique(products.astype(str).to_numpy(dtype=object), return_inverse=True)
            numbers: dict[int, int] = {}
            calibrators: list[MonotoneCalibrator] = []
            for product in distinct:
                calibrator = self.per_product.get(str(product), self.pooled)
                if numbers.setdefault(id(calibrator), len(numbers)) == len(calibrators):
                    calibrators.append(calibrator)
            number_of = np.asarray([numbers[id(self.per_product.get(str(p), self.pooled))] for p in distinct])
            group = number_of[inverse.ravel()]
            order = np.argsort(group, kind="stable")
            bounds = np.searchsorted(group[order], np.arange(len(calibrators) + 1))
            return [(c, order[bounds[g] : bounds[g + 1]]) for g, c in enumerate(calibrators)]
        per_row = [self.per_product.get(str(p), self.pooled) for p in products]  # a short list (online)
        rows: dict[int, list[int]] = {}
        by_id: dict[int, MonotoneCalibrator] = {}
        for i, calibrator in enumerate(per_row):
            rows.setdefault(id(calibrator), []).append(i)
            by_id[id(calibrator)] = calibrator
        return [(by_id[key], np.asarray(idx)) for key, idx in rows.items()]

    def matrix_spec(self, calibrator: MonotoneCalibrator) -> MatrixSpec:
        """The input encoding of ``calibrator``'s features (everything after the score), built once."""
        cache = self.__dict__.setdefault("_matrix_specs", {})
        key = id(calibrator)
        if key not in cache:
            booster = getattr(calibrator.model, "booster_", None)
            cache[key] = (calibrator, MatrixSpec.of(calibrator.input_cols[1:], self.categories, booster))
        return cache[key][1]

    def predict_proba(self, data: Columns, score: np.ndarray | None = None) -> np.ndarray:
        """Calibrated adoption probabilities in [0, 1] for the rows of ``data``, in its order.

        ``data`` (a DataFrame or any column mapping) needs the product column, ``feature_cols`` and,
        unless ``score`` gives the ranker's scores, the score column.

        Raises:
            KeyError: a column is missing.
        """
        needed = [self.product_col, *self.feature_cols, *([self.score_col] if score is None else [])]
        require_columns(data, needed, "calibration")
        score = float_column(data[self.score_col]) if score is None else np.asarray(score, dtype=float)
        n = len(score)
        out = np.empty(n, dtype=float)
        if n == 0:
            return out
        encoded: list[tuple[MatrixSpec, np.ndarray]] = []  # every per-product calibrator shares one
        few: dict[int, list[tuple[RowPredictor, np.ndarray]]] = {}  # encoding number -> single rows
        for calibrator, idx in self._rows_by_calibrator(data[self.product_col]):
            if isinstance(calibrator.model, IsotonicRegression):  # the score alone: no input matrix
                out[idx] = calibrator.isotonic(score[idx])
                continue
            spec = self.matrix_spec(calibrator)
            number = next((i for i, (s, _) in enumerate(encoded) if s == spec), None)
            if number is None:
                number = len(encoded)
                encoded.append((spec, spec.matrix(data, n)))
            predictor = calibrator.row_predictor()
            if predictor is not None and len(idx) <= MAX_ROWS_SINGLE:
                few.setdefault(number, []).append((predictor, idx))
                continue
            matrix = encoded[number][1]
            out[idx] = calibrator.predict(np.column_stack([score[idx], matrix[idx]]))
        for number, parts in few.items():  # the calibrators with few rows: one C call per row
            rows = np.concatenate([idx for _, idx in parts])
            predictors = [p for p, idx in parts for _ in range(len(idx))]
            matrix = encoded[number][1]
            out[rows] = predict_each(predictors, np.column_stack([score[rows], matrix[rows]]))
        return np.clip(out, 0.0, 1.0)


def fit_calibrators(
    df: pd.DataFrame,
    product_col: str = PRODUCT_ID,
    feature_cols: Sequence[str] = (),
    score_col: str = SCORE,
    label_col: str = LABEL,
    min_positives: int = 50,
    params: CalibrationConfig | None = None,
) -> Calibrators:
    """Fit one monotone calibrator per product, and a pooled one for products with too few positives.

    Args:
        df: held-out rows with the ranker's score, the 0/1 label, the product and ``feature_cols``.
        product_col: the product column.
        feature_cols: customer features used besides the score (empty -> isotonic regression).
        score_col, label_col: the score and label columns.
        min_positives: a product needs at least this many positives and negatives for its own
            calibrator; others use the pooled one.
        params: LightGBM calibrator hyper-parameters.
    """
    params = params or CalibrationConfig()
    missing = [c for c in (product_col, score_col, label_col, *feature_cols) if c not in df.columns]
    if missing:
        raise KeyError(f"calibration: missing column(s) {missing}")
    if product_col in feature_cols:
        raise ValueError(f"{product_col!r} is the product column; do not list it in feature_cols")
    label = df[label_col].to_numpy()
    if not np.isin(label, (0, 1)).all():
        raise ValueError(f"{label_col!r} must be 0/1")
    if len(np.unique(label)) < 2:
        raise ValueError("calibration needs both positive and negative rows")
    if df[score_col].isna().any():
        raise ValueError(f"{score_col!r} has NaN")
    feature_cols = list(feature_cols)
    with_product = bool(feature_cols)
    categories = learn_categories(df, [*feature_cols, product_col])
    calibrators = Calibrators(
        product_col=product_col,
        score_col=score_col,
        feature_cols=feature_cols,
        categories=categories,
        per_product={},
        pooled=MonotoneCalibrator([score_col], IsotonicRegression()),  # replaced below
        min_positives=min_positives,
    )
    calibrators.pooled = _fit_one(calibrators._inputs(df, with_product=with_product), label, params)
    products = df[product_col].astype(str)
    stats = (
        pd.DataFrame({"product": products.to_numpy(), "y": label})
        .groupby("product")["y"]
        .agg(["sum", "size"])
    )
    for product, row in stats.iterrows():
        positives, negatives = int(row["sum"]), int(row["size"] - row["sum"])
        if positives < min_positives or negatives < min_positives:
            calibrators.pooled_products.append(str(product))
            continue
        mask = (products == product).to_numpy()
        inputs = calibrators._inputs(df[mask], with_product=False)
        calibrators.per_product[str(product)] = _fit_one(inputs, label[mask], params)
    return calibrators
