"""Assign the audience to arms: seeded, stratified by probability decile, reproducible and auditable.

``assign_arms`` sorts the audience into a canonical order (customer, product), cuts it into strata of
equal size by calibrated probability (deciles by default), shuffles each stratum with a generator seeded
by ``seed`` and deals its positions to the arms by their shares, so every stratum is split in the planned
ratio (to within one customer per arm) and the same seed always gives the same assignment, whatever the
input order. ``srm_check`` is the sample-ratio-mismatch test (chi-square of the arm counts against the
planned shares, ``scipy.stats.chisquare``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import chisquare

from nextbest.campaigns.errors import CampaignError, CampaignStepMissingError
from nextbest.campaigns.files import atomic_write_json, atomic_write_parquet, read_table
from nextbest.campaigns.plan import AUDIENCE_COLUMNS, CampaignPlan
from nextbest.columns import CUSTOMER_ID, PROBABILITY, PRODUCT_ID

ARM = "arm"
"""The arm a customer is assigned to: ``treatment``, ``control`` or ``business_rule``."""
STRATUM = "stratum"
"""The customer's probability stratum, 1 (lowest) .. n_strata (highest)."""

ASSIGNMENT_FILE = "assignment.parquet"
ASSIGNMENT_META_FILE = "assignment.json"
SRM_P_THRESHOLD = 0.001
"""A sample ratio mismatch is flagged below this chi-square p-value (the usual, strict, choice)."""


def probability_strata(probability: np.ndarray, n_strata: int = 10) -> np.ndarray:
    """Stratum 1..``n_strata`` of each row: equal-size groups by ascending probability (ties by position).

    With fewer rows than strata, each row is its own stratum.
    """
    n = len(probability)
    order = np.argsort(np.asarray(probability, dtype=float), kind="stable")
    strata = np.empty(n, dtype=np.int64)
    strata[order] = np.arange(n) * min(n_strata, max(n, 1)) // max(n, 1) + 1
    return strata


def assign_arms(
    audience: pd.DataFrame, shares: Mapping[str, float], seed: int, n_strata: int = 10
) -> pd.DataFrame:
    """The audience with its ``stratum`` and ``arm``, in canonical (customer_id, product_id) order.

    Args:
        audience: customer_id, product_id, probability (one row per customer).
        shares: arm -> share of the audience (summing to 1), e.g. ``{"treatment": .5, "control": .5}``.
        seed: the random seed; the same seed and audience give the same arms.
        n_strata: probability strata (deciles by default).
    """
    if abs(sum(shares.values()) - 1) > 1e-9 or min(shares.values()) <= 0:
        raise CampaignError(f"arm shares {dict(shares)} must be positive and sum to 1")
    frame = audience[list(AUDIENCE_COLUMNS)].sort_values([CUSTOMER_ID, PRODUCT_ID], kind="mergesort")
    frame = frame.reset_index(drop=True)
    strata = probability_strata(frame[PROBABILITY].to_numpy(), n_strata)
    names = list(shares)
    index = stratified_arm_index(strata, [shares[a] for a in names], np.random.default_rng(seed))
    frame[STRATUM] = strata
    frame[ARM] = np.asarray(names, dtype=object)[index]
    return frame


def stratified_arm_index(strata: np.ndarray, shares: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Per row, the index of its arm in ``shares``: each stratum shuffled by ``rng`` and dealt by the shares.

    A stratum of ``m`` rows gives arm ``a`` ``m * shares[a]`` rows, rounded up or down at random.
    """
    keys = rng.random(len(strata))
    offsets = rng.random(int(strata.max(initial=0)) + 1)  # which arm gets a stratum's odd customer
    order = np.lexsort((keys, strata))
    sorted_strata = strata[order]
    starts = np.searchsorted(sorted_strata, sorted_strata, side="left")
    sizes = np.bincount(sorted_strata)[sorted_strata]
    position = (np.arange(len(order)) - starts + offsets[sorted_strata]) / sizes  # in [0, 1) per stratum
    bounds = np.cumsum(shares)
    index = np.empty(len(strata), dtype=np.int64)
    index[order] = np.minimum(np.searchsorted(bounds, position, side="right"), len(shares) - 1)
    return index


@dataclass(frozen=True)
class SrmResult:
    """Sample-ratio-mismatch check: observed arm counts against the planned shares."""

    counts: dict[str, int]
    expected: dict[str, float]
    chi2: float
    p_value: float
    mismatch: bool

    def line(self) -> str:
        seen = ", ".join(f"{a} {n:,} (expected {self.expected[a]:,.0f})" for a, n in self.counts.items())
        flag = "SAMPLE RATIO MISMATCH" if self.mismatch else "no sample ratio mismatch"
        return f"{flag}: {seen}; chi-square {self.chi2:.2f}, p = {self.p_value:.3g}"


def srm_check(
    counts: Mapping[str, int], shares: Mapping[str, float], threshold: float = SRM_P_THRESHOLD
) -> SrmResult:
    """Chi-square goodness of fit of the arm ``counts`` to the planned ``shares``; flagged if p < threshold.

    E.g. 4,500 vs 5,500 customers planned 50/50: chi-square 100, p ~ 1.5e-23 -> mismatch.
    """
    arms = list(shares)
    observed = np.array([counts.get(a, 0) for a in arms], dtype=float)
    total = observed.sum()
    expected = np.array([shares[a] for a in arms]) * total
    chi2, p_value = chisquare(observed, expected)
    return SrmResult(
        counts={a: int(c) for a, c in zip(arms, observed, strict=True)},
        expected={a: float(e) for a, e in zip(arms, expected, strict=True)},
        chi2=float(chi2),
        p_value=float(p_value),
        mismatch=bool(p_value < threshold),
    )


def arm_counts(assignment: pd.DataFrame) -> dict[str, int]:
    """Customers per arm."""
    return {str(k): int(v) for k, v in assignment[ARM].value_counts(sort=False).items()}


@dataclass(frozen=True)
class AssignmentRecord:
    """The sidecar of an assignment: how to reproduce it and what it was for."""

    seed: int
    n_strata: int
    shares: dict[str, float]
    counts: dict[str, int]
    srm_p_value: float
    created_at: str
    plan: dict[str, Any]


def write_assignment(
    directory: Path, plan: CampaignPlan, audience: pd.DataFrame, seed: int, n_strata: int = 10
) -> tuple[pd.DataFrame, AssignmentRecord, SrmResult]:
    """Assign ``audience`` with ``seed``; write ``assignment.parquet`` and ``assignment.json`` (seed, shares,
    counts and the plan), each all or nothing."""
    shares = plan.shares.as_dict()
    frame = assign_arms(audience, shares, seed, n_strata)
    counts = arm_counts(frame)
    srm = srm_check(counts, shares)
    record = AssignmentRecord(
        seed=seed,
        n_strata=n_strata,
        shares=shares,
        counts=counts,
        srm_p_value=srm.p_value,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        plan=plan.to_dict(),
    )
    atomic_write_parquet(frame, directory / ASSIGNMENT_FILE)
    atomic_write_json(asdict(record), directory / ASSIGNMENT_META_FILE)
    return frame, record, srm


def read_assignment(directory: Path) -> tuple[pd.DataFrame, AssignmentRecord]:
    """The assignment and its sidecar written by ``write_assignment``.

    Raises:
        CampaignStepMissingError: none in ``directory`` (run ``nextbest campaign assign`` first).
        CampaignError: the file lacks a column.
    """
    meta = directory / ASSIGNMENT_META_FILE
    if not meta.is_file() or not (directory / ASSIGNMENT_FILE).is_file():
        raise CampaignStepMissingError(
            f"no assignment in {directory}: run `nextbest campaign assign {directory}` first"
        )
    frame = read_table(directory / ASSIGNMENT_FILE, [*AUDIENCE_COLUMNS, STRATUM, ARM], "assignment")
    record = AssignmentRecord(**json.loads(meta.read_text(encoding="utf-8")))
    return frame, record
