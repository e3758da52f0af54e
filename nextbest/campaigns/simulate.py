"""Simulated campaigns on the synthetic bank's true probabilities: proof that plan, assign and readout work.

The synthetic bank's ``oracle.parquet`` holds the true probability ``p`` that a customer adopts a
candidate product in the month after a snapshot. A simulated campaign treats the assigned treatment arm:
a treated customer adopts the offered product with probability ``min(1, p * (1 + uplift))``, anyone else
with ``p``. The true effect of the campaign on its audience is then known (``true_effect``), so running
plan -> assign -> simulate -> readout over many seeds measures the readout's CI coverage, its false
positive rate (uplift 0) and its power (uplift = the planned MDE) (``simulate_campaigns``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from nextbest.campaigns.assign import ARM, probability_strata, stratified_arm_index
from nextbest.campaigns.errors import CampaignError
from nextbest.campaigns.plan import CONTROL, TREATMENT, CampaignPlan
from nextbest.campaigns.readout import CONVERTED, compare_proportions, cuped_effect
from nextbest.columns import CUSTOMER_ID, PROBABILITY, PRODUCT_ID, SNAPSHOT_ON

TRUE_PROBABILITY = "true_probability"
"""The oracle's adoption probability of the offered product (without treatment)."""


def oracle_probabilities(oracle: Path, snapshot: date, audience: pd.DataFrame) -> pd.DataFrame:
    """The audience with the oracle's ``true_probability`` of its (customer, product) at ``snapshot``.

    Raises:
        CampaignError: the oracle is missing, or has no row for some audience customer.
    """
    if not Path(oracle).is_file():
        raise CampaignError(
            f"no oracle at {oracle}: simulation needs the synthetic bank's true probabilities"
        )
    con = duckdb.connect()
    try:
        con.register("audience", audience)
        frame = con.execute(
            f"select a.*, o.probability::double as {TRUE_PROBABILITY} from audience a "
            f"left join read_parquet(?) o on o.{CUSTOMER_ID} = a.{CUSTOMER_ID} "
            f"and o.{PRODUCT_ID} = a.{PRODUCT_ID} and o.{SNAPSHOT_ON} = ? order by a.{CUSTOMER_ID}",
            [str(oracle), snapshot],
        ).df()
    finally:
        con.close()
    missing = frame[frame[TRUE_PROBABILITY].isna()]
    if len(missing):
        hint = ""
        if len(missing) == len(frame):
            hint = (
                f": the oracle ends at {_last_snapshot(oracle)} (its outcome month must be generated); "
                "plan with `--snapshot` at or before it"
            )
        raise CampaignError(
            f"oracle {oracle}: {len(missing)} audience rows have no true probability at {snapshot} "
            f"(e.g. {', '.join(missing[CUSTOMER_ID].head(3))}){hint}"
        )
    return frame


def _last_snapshot(oracle: Path) -> date | None:
    """The oracle's latest snapshot."""
    con = duckdb.connect()
    try:
        return con.execute(f"select max({SNAPSHOT_ON}) from read_parquet(?)", [str(oracle)]).fetchone()[0]
    finally:
        con.close()


def treated_probability(true_probability: np.ndarray, treated: np.ndarray, uplift: float) -> np.ndarray:
    """Adoption probability under the campaign: ``p * (1 + uplift)`` if treated (capped at 1), else ``p``."""
    p = np.asarray(true_probability, dtype=float)
    return np.where(treated, np.minimum(p * (1 + uplift), 1.0), p)


def true_effect(true_probability: np.ndarray, uplift: float) -> float:
    """The campaign's true effect on its audience: mean treated minus untreated probability (absolute)."""
    p = np.asarray(true_probability, dtype=float)
    return float(np.mean(treated_probability(p, np.ones(len(p), bool), uplift) - p))


def simulate_outcomes(
    assignment: pd.DataFrame, true_probability: np.ndarray, uplift: float, rng: np.random.Generator
) -> pd.DataFrame:
    """One draw of the outcomes: customer_id, converted (0/1), in ``assignment``'s row order.

    ``true_probability`` is aligned with ``assignment``'s rows.
    """
    treated = (assignment[ARM] == TREATMENT).to_numpy()
    p = treated_probability(true_probability, treated, uplift)
    converted = (rng.random(len(p)) < p).astype(np.int64)
    return pd.DataFrame({CUSTOMER_ID: assignment[CUSTOMER_ID].astype(str).to_numpy(), CONVERTED: converted})


@dataclass(frozen=True)
class SimulationResult:
    """Per run: one readout estimate of the difference, its CI and p-value; against the true effect."""

    method: str
    true_effect: float
    alpha: float
    difference: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    p_value: np.ndarray

    @property
    def runs(self) -> int:
        return len(self.difference)

    @property
    def coverage(self) -> float:
        """Share of runs whose CI holds the true effect (should be ~ 1 - alpha)."""
        return float(np.mean((self.ci_low <= self.true_effect) & (self.true_effect <= self.ci_high)))

    @property
    def rejection_rate(self) -> float:
        """Share of runs significant at alpha: the false positive rate without effect, else the power."""
        return float(np.mean(self.p_value < self.alpha))

    def line(self) -> str:
        return (
            f"{self.method}: {self.runs} runs, true effect {self.true_effect:+.4f}, "
            f"mean estimate {self.difference.mean():+.4f}, CI coverage {self.coverage:.3f}, "
            f"rejection rate {self.rejection_rate:.3f} at alpha {self.alpha}"
        )


Row = tuple[float, float, float, float]
"""One run's estimate, CI low, CI high and p-value."""


def _result(method: str, effect: float, alpha: float, rows: list[Row]) -> SimulationResult:
    d, lo, hi, p = (np.array(c, dtype=float) for c in zip(*rows, strict=True)) if rows else [np.empty(0)] * 4
    return SimulationResult(method, effect, alpha, d, lo, hi, p)


def simulate_campaigns(
    audience: pd.DataFrame,
    plan: CampaignPlan,
    uplift: float,
    seeds: Sequence[int],
    n_strata: int = 10,
    cuped: bool = False,
) -> dict[str, SimulationResult]:
    """Assign, simulate and read out the campaign once per seed (the seed drives both draws).

    The assignment is ``assign_arms``' (its stratified core on the audience's strata), the outcomes
    ``simulate_outcomes``' draw, the readout ``compare_proportions`` (the z-test and CI of ``read_out``)
    and, with ``cuped``, ``cuped_effect`` on the calibrated probability.

    Args:
        audience: customer_id, product_id, probability (calibrated, used for the strata) and
            ``true_probability`` (the oracle's).
        plan: the campaign plan (arm shares, alpha).
        uplift: the true relative uplift of a treated customer's adoption probability.

    Returns:
        ``{"z-test": ..., "cuped": ...}`` (the latter with ``cuped``).
    """
    canonical = audience.sort_values([CUSTOMER_ID, PRODUCT_ID], kind="mergesort").reset_index(drop=True)
    true_p = canonical[TRUE_PROBABILITY].to_numpy(dtype=float)
    calibrated = canonical[PROBABILITY].to_numpy(dtype=float)
    strata = probability_strata(calibrated, n_strata)
    names = list(plan.shares.as_dict().values())
    arms = list(plan.shares.as_dict())
    t_index, c_index = arms.index(TREATMENT), arms.index(CONTROL)
    z_rows: list[Row] = []
    cuped_rows: list[Row] = []
    for seed in seeds:
        index = stratified_arm_index(strata, names, np.random.default_rng(seed))
        treated, control = index == t_index, index == c_index
        p = treated_probability(true_p, treated, uplift)
        converted = (np.random.default_rng([seed, 1]).random(len(p)) < p).astype(np.int64)
        test = compare_proportions(
            int(converted[treated].sum()),
            int(treated.sum()),
            int(converted[control].sum()),
            int(control.sum()),
            plan.alpha,
        )
        z_rows.append((test.difference, *test.difference_ci, test.p_value))
        if cuped:
            pair = treated | control
            adjusted = cuped_effect(converted[pair], treated[pair], calibrated[pair], PROBABILITY, plan.alpha)
            cuped_rows.append((adjusted.difference, *adjusted.difference_ci, adjusted.p_value))
    effect = true_effect(true_p, uplift)
    results = {"z-test": _result("z-test", effect, plan.alpha, z_rows)}
    if cuped:
        results["cuped"] = _result("cuped", effect, plan.alpha, cuped_rows)
    return results
