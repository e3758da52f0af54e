"""LightGBM predictions for a few rows without the Python wrapper's per-call cost.

``lgb.Booster.predict`` costs ~0.1 ms per call before any tree is walked (parameter copies, a new C++
predictor per call). Online scoring calls it once for the ranker and once per calibrated product, on one
to a few dozen rows, so that fixed cost is most of the request. ``RowPredictor`` sets LightGBM's own
single-row predictor up once (``LGBM_BoosterPredictForMatSingleRowFastInit``) and walks one to a few
rows through it (``LGBM_BoosterPredictForMatSingleRowFast``); a few dozen rows go through one direct
``LGBM_BoosterPredictForMat`` call on one thread; many rows through ``Booster.predict`` on every core.
The same trees and the same code in LightGBM, so the same numbers as ``Booster.predict`` (tested to
equality). LightGBM serialises single-row predictions of one booster with its own lock, so one predictor
may be shared by threads.

The C functions are LightGBM's public C API; the library handle and error check are taken from the
``lightgbm`` package (``lightgbm.basic``), which has no Python wrapper for this fast path.
"""

from __future__ import annotations

import ctypes

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
        if config is not None and config.value:
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
        base, stride, out_base = rows.ctypes.data, rows.strides[0], out.ctypes.data
        predict_row = _LIB.LGBM_BoosterPredictForMatSingleRowFast
        out_len = ctypes.byref(self._out_len)
        for i in range(n):
            _safe_call(
                predict_row(self._config, ctypes.c_void_p(base + i * stride), out_len,
                            ctypes.c_void_p(out_base + 8 * i))
            )
        return out
