"""The ranker's seasonal offset: a product's seasonal index (dbt ``int_product_seasonal_indices``) added
to the ranker's score in log space, at a scale the ranker's own scores set.

With two years of monthly snapshots, a product x calendar-month effect is seen once in training: the
trees weigh it by what one year shows them, and the seasonal index of the same month last year (known
only in the second year) is missing from most training rows. The index is the multiplicative season of a
seasonal-naive forecast, shrunk by its prior (``seasonal_index_prior_adoptions``). The ranker's trees are
fitted on top of w x ln(index) in the units of a log adoption rate
(``nextbest.training.ranker.fit_with_season``), converted to score units by how a first fit's score moves
with the log of a product's base rate within a group (``log_base_rates``, ``within_group_slopes``).
"""

from __future__ import annotations

import numpy as np

from nextbest.training.encoding import Columns, float_column


def log_index(data: Columns, column: str) -> np.ndarray:
    """ln of the seasonal index ``column`` of ``data``; 0 where it is missing or not positive (no season
    known: the score is left as it is)."""
    values = float_column(data[column])
    out = np.zeros(len(values))
    known = np.isfinite(values) & (values > 0)
    out[known] = np.log(values[known])
    return out


def log_base_rates(product_ids: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Per row, ln of its product's adoption rate over these rows, (positives + 1) / (rows + 2)."""
    codes, inverse = np.unique(np.asarray(product_ids).astype(str), return_inverse=True)
    positives = np.bincount(inverse, weights=np.asarray(label, dtype=float), minlength=len(codes))
    rows = np.bincount(inverse, minlength=len(codes))
    return np.log((positives + 1.0) / (rows + 2.0))[inverse]


def within_group_slopes(y: np.ndarray, x: np.ndarray, group_sizes: np.ndarray) -> np.ndarray:
    """The least-squares coefficients of ``y`` on the columns of ``x`` (rows x k), every column centred
    within consecutive groups of ``group_sizes`` (how ``y`` moves with each inside a group, the others
    held); a column that never varies inside a group gets 0."""
    sizes = np.asarray(group_sizes, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])

    def centred(values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        means = np.add.reduceat(values, starts, axis=0) / sizes.reshape(-1, *([1] * (values.ndim - 1)))
        return values - np.repeat(means, sizes, axis=0)

    xc, yc = centred(np.asarray(x, dtype=float).reshape(len(y), -1)), centred(y)
    varies = (xc**2).sum(axis=0) > 1e-12
    out = np.zeros(xc.shape[1])
    if varies.any():
        out[varies] = np.linalg.lstsq(xc[:, varies], yc, rcond=None)[0]
    return out
