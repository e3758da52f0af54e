"""Training constants that are not column names (those are ``nextbest.columns``)."""

from __future__ import annotations

DEFAULT_K = 7
"""The cut-off used for NDCG@k / MAP@k and early stopping (a customer sees about 7 offers)."""

CALIBRATION_PRIOR_ROWS = 20.0
"""How many rows at the base rate an isotonic calibrator's prior is worth (``calibration.fit_isotonic``)."""
