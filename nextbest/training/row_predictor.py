"""LightGBM predictions for a few rows without the Python wrapper's per-call cost.

``lgb.Booster.predict`` costs ~0.1 ms per call before any tree is walked (parameter copies, a new C++
predictor per call). Online scoring calls it once for the ranker and once per calibrated product, on one
to a few dozen rows, so that fixed cost is most of the request. ``RowPredictor`` sets LightGBM's own
single-row predictor up once (``LGBM_BoosterPredictForMatSingleRowFastInit``) and walks one to a few
rows through it (``LGBM_BoosterPredictForMatSingleRowFast``); a few dozen rows go through one direct
``LGBM_BoosterPredictForMat`` call on one thread; many rows through ``Booster.predict`` on every core.
The same trees and the same code in LightGBM, so the same numbers as ``Booster.predict`` (tested to
equality). LightGBM serialises single-row predictions of one booster with its own lock, so one predictor
may be shared by threads. Make ONE ``RowPredictor`` per booster: LightGBM keeps one single-row set-up
per booster, and a second predictor of the same booster (another ``num_iteration`` or ``raw_score``)
changes what the first computes.

``predict_each`` walks each row of a matrix through its own predictor (e.g. each candidate product's
calibrator) with one C call per row and no per-booster Python work: what the online path needs for a
customer's ~20 products, each with a calibrator of its own.

The C functions are LightGBM's public C API; the library handle and error check are taken from the
``lightgbm`` package (``lightgbm.basic``), which has no Python wrapper for this fast path.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import lightgbm as lgb
import numpy as np
from lightgbm.basic import _LIB, _c_str, _safe_call

MAX_ROWS_SINGLE = 4
"""Up to this many rows go one by one through the single-row predictor (~10 us a row plus the trees);
more, through one ``LGBM_BoosterPredictForMat`` call on one thread (~0.1 ms set-up, then fast per row)."""
MAX_ROWS_ONE_THREAD = 256
"""More rows than this go through ``Booster.predict`` on every core."""

_DTYPE_FLOAT64 = 1  # C_API_DTYPE_FLOAT64
_PREDICT_NORMAL, _PREDICT_RAW_SCORE = 0, 1  # C_API_PREDICT_NORMAL / C_API_PREDICT_RAW_SCORE


class RowPredictor:
    """Predictions of one booster on float64 matrices whose columns are the booster's features, in
    order: probabilities for a binary objective unless ``raw_score`` (a ranker's scores are raw either
    way), from its first ``num_iteration`` trees (None: as ``Booster.predict``, its ``best_iteration``,
    all trees when that is 0)."""

    def __init__(
        self, booster: lgb.Booster, num_iteration: int | None = None, raw_score: bool = False
    ) -> None:
        self.booster = booster  # keeps the C booster alive as long as the fast config that points at it
        self.num_iteration = booster.best_iteration if num_iteration is None else num_iteration
        self.raw_score = raw_score
        self.n_features = booster.num_feature()
        self._predict_type = _PREDICT_RAW_SCORE if raw_score else _PREDICT_NORMAL
        self._config = ctypes.c_void_p()
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(self._predict_type),
                ctypes.c_int(0),
                ctypes.c_int(self.num_iteration),
                ctypes.c_int(_DTYPE_FLOAT64),
                ctypes.c_int32(self.n_features),
                _c_str("num_threads=1"),
                ctypes.byref(self._config),
            )
        )
        self._out_len = ctypes.c_int64(0)

    def __del__(self) -> None:
        config = getattr(self, "_config", None)
        if config is not None and config.value and _LIB is not None:  # _LIB is None at interpreter exit
            _LIB.LGBM_FastConfigFree(config)
            self._config = None

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """One prediction per row of ``matrix`` ((n, n_features) numbers).

        Raises:
            ValueError: the matrix does not have the booster's number of columns.
        """
        if matrix.ndim != 2 or matrix.shape[1] != self.n_features:
            raise ValueError(f"expected (n, {self.n_features}) rows, got shape {matrix.shape}")
        n = matrix.shape[0]
        if n > MAX_ROWS_ONE_THREAD:
            return np.asarray(
                self.booster.predict(matrix, num_iteration=self.num_iteration, raw_score=self.raw_score),
                dtype=float,
            )
        rows = np.ascontiguousarray(matrix, dtype=np.float64)
        out = np.empty(n, dtype=np.float64)
        if n == 0:
            return out
        if n > MAX_ROWS_SINGLE:
            _safe_call(
                _LIB.LGBM_BoosterPredictForMat(
                    self.booster._handle, rows.ctypes.data_as(ctypes.c_void_p), ctypes.c_int(_DTYPE_FLOAT64),
                    ctypes.c_int32(n), ctypes.c_int32(self.n_features), ctypes.c_int(1),  # row-major
                    ctypes.c_int(self._predict_type), ctypes.c_int(0), ctypes.c_int(self.num_iteration),
                    _c_str("num_threads=1"), ctypes.byref(self._out_len),
                    out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
                )
            )
            return out
        _single_rows([self] * n, rows, out)
        return out


def _single_rows(predictors: Sequence[RowPredictor], rows: np.ndarray, out: np.ndarray) -> None:
    """Row ``i`` of the C-contiguous float64 ``rows`` through ``predictors[i]``'s single-row predictor,
    into ``out[i]``: one C call per row."""
    base, stride, out_base = rows.ctypes.data, rows.strides[0], out.ctypes.data
    predict_row = _LIB.LGBM_BoosterPredictForMatSingleRowFast
    out_len = ctypes.byref(ctypes.c_int64(0))
    void_p = ctypes.c_void_p
    for i, predictor in enumerate(predictors):
        if predict_row(predictor._config, void_p(base + i * stride), out_len, void_p(out_base + 8 * i)):
            _safe_call(-1)  # raises LightGBM's last error


def predict_each(predictors: Sequence[RowPredictor], matrix: np.ndarray) -> np.ndarray:
    """Row ``i`` of ``matrix`` through ``predictors[i]`` (each as its ``predict`` would score it), with one
    single-row C call per row: for a few rows that each have their own model.

    Raises:
        ValueError: not one predictor per row, or a predictor expects another number of columns.
    """
    if matrix.ndim != 2 or len(predictors) != matrix.shape[0]:
        raise ValueError(f"expected one predictor per row, got {len(predictors)} for shape {matrix.shape}")
    wrong = {p.n_features for p in predictors} - {matrix.shape[1]}
    if wrong:
        raise ValueError(f"predictors expect {sorted(wrong)} columns, the matrix has {matrix.shape[1]}")
    rows = np.ascontiguousarray(matrix, dtype=np.float64)
    out = np.empty(len(predictors), dtype=np.float64)
    _single_rows(predictors, rows, out)
    return out
