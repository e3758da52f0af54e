"""Plan a campaign: the audience from calibrated probabilities, and the power analysis of its A/B test.

``select_audience`` turns a scored frame (one row per candidate: customer_id, product_id, probability,
rank; what ``nextbest.campaigns.scores.score_snapshot`` and ``nextbest score-batch`` write) into the
audience: the top share of a product's candidates by probability, or every customer's top-1 product.
``required_sample`` and ``detectable_mde`` are statsmodels' power analysis of the two-sided
two-proportion test (Cohen's arcsine effect size ``proportion_effectsize`` with ``NormalIndPower``);
``make_plan`` puts them together for the audience.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

from nextbest.campaigns.errors import CampaignError, CampaignStepMissingError
from nextbest.campaigns.files import atomic_write_json, atomic_write_parquet
from nextbest.columns import CUSTOMER_ID, PROBABILITY, PRODUCT_ID, RANK

AUDIENCE_COLUMNS: tuple[str, ...] = (CUSTOMER_ID, PRODUCT_ID, PROBABILITY)
"""One row per targeted customer: the offered product and its calibrated adoption probability."""

TREATMENT, CONTROL, BUSINESS_RULE = "treatment", "control", "business_rule"
"""The arms: offered by the model, not offered, offered by the business rule (optional)."""

PLAN_FILE = "plan.json"
AUDIENCE_FILE = "audience.parquet"


class UnknownProductError(CampaignError):
    """The product is no candidate of any customer at the snapshot (or not in the catalogue)."""


class EmptyAudienceError(CampaignError):
    """The audience rule selects nobody."""


@dataclass(frozen=True)
class AudienceRule:
    """Who is targeted: the ``top`` share (0..1] of ``product``'s candidates, or (``next_best``) every
    customer with their top-1 product."""

    product: str | None = None
    top: float | None = None
    next_best: bool = False

    def __post_init__(self) -> None:
        if self.next_best == (self.product is not None):
            raise CampaignError("choose the audience with either --product P --top SHARE or --next-best")
        if self.product is not None and (self.top is None or not 0 < self.top <= 1):
            raise CampaignError(f"--top must be a share in (0, 100%], got {self.top}")

    def describe(self) -> str:
        if self.next_best:
            return "next best: every customer's top-1 product"
        return f"product {self.product}: top {self.top:.2%} of its candidates by calibrated probability"


def parse_share(text: str) -> float:
    """``"5%"`` -> 0.05, ``"0.05"`` -> 0.05 (a share in (0, 1]).

    Raises:
        CampaignError: not a number, or outside (0, 100%].
    """
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise CampaignError(f"--top {text!r}: expected a share such as 5% or 0.05") from None
    if not 0 < value <= 1:
        raise CampaignError(f"--top {text!r}: the share must lie in (0, 100%]")
    return value


def select_audience(scored: pd.DataFrame, rule: AudienceRule) -> pd.DataFrame:
    """The audience of ``rule`` from a scored frame, highest probability first (ties by customer id).

    Args:
        scored: one row per candidate with customer_id, product_id, probability (calibrated, 0..1) and,
            for ``next_best``, rank (1 = the customer's best product).
        rule: the audience rule.

    Returns:
        customer_id, product_id, probability: one row per customer.

    Raises:
        UnknownProductError: ``rule.product`` is no candidate at all (the message lists some that are).
        EmptyAudienceError: nobody is selected.
        CampaignError: a probability is missing (a bundle without calibrators).
    """
    if rule.next_best:
        rows = scored[scored[RANK] == 1]
    else:
        rows = scored[scored[PRODUCT_ID] == rule.product]
        if rows.empty:
            known = sorted(scored[PRODUCT_ID].astype(str).unique())
            shown = ", ".join(known[:10]) + (", ..." if len(known) > 10 else "")
            raise UnknownProductError(
                f"product {rule.product!r} is no customer's candidate at this snapshot; products: {shown}"
            )
    if rows[PROBABILITY].isna().any():
        raise CampaignError(
            f"{int(rows[PROBABILITY].isna().sum())} audience rows have no calibrated probability "
            "(the model bundle has no calibrators): retrain with calibration"
        )
    rows = rows.sort_values([PROBABILITY, CUSTOMER_ID], ascending=[False, True], kind="mergesort")
    if not rule.next_best:
        assert rule.top is not None
        rows = rows.head(math.ceil(rule.top * len(rows)))
    if rows.empty:
        raise EmptyAudienceError(f"the audience of {rule.describe()} is empty")
    rows = rows[list(AUDIENCE_COLUMNS)].reset_index(drop=True)
    return rows.astype({CUSTOMER_ID: object, PRODUCT_ID: object, PROBABILITY: float})


# ------------------------------------------------------------------------------------------ power


@dataclass(frozen=True)
class SampleSize:
    """Customers per arm for the two-sided two-proportion z-test of ``baseline`` vs ``baseline + mde``."""

    effect_size: float
    n_treatment: int
    n_control: int


def required_sample(
    baseline: float, mde_absolute: float, alpha: float, power: float, control_ratio: float = 1.0
) -> SampleSize:
    """Sample size per arm (statsmodels ``NormalIndPower`` on Cohen's h = ``proportion_effectsize``).

    Args:
        baseline: the control conversion rate, in (0, 1).
        mde_absolute: the smallest absolute difference in conversion to detect (> 0, baseline + mde < 1).
        alpha: two-sided significance level; power: 1 - type II error at the MDE.
        control_ratio: control size / treatment size.

    Returns:
        Cohen's h and the sizes, rounded up (e.g. h = 0.2, alpha 0.05, power 0.8: 393 per arm).
    """
    if not 0 < baseline < 1 or not 0 < baseline + mde_absolute < 1 or mde_absolute <= 0:
        raise CampaignError(
            f"cannot plan a test of {baseline:.4f} vs {baseline + mde_absolute:.4f}: both rates must lie "
            "in (0, 1) and the MDE be positive"
        )
    h = float(proportion_effectsize(baseline + mde_absolute, baseline))
    n1 = NormalIndPower().solve_power(
        effect_size=h, nobs1=None, alpha=alpha, power=power, ratio=control_ratio, alternative="two-sided"
    )
    n1 = float(np.asarray(n1).item())
    if not math.isfinite(n1):
        raise CampaignError(
            f"no sample size reaches power {power} for {baseline:.4f} vs {baseline + mde_absolute:.4f}"
        )
    return SampleSize(h, math.ceil(n1), math.ceil(n1 * control_ratio))


def detectable_mde(baseline: float, n_treatment: int, n_control: int, alpha: float, power: float) -> float:
    """The smallest absolute uplift over ``baseline`` the arms detect with ``power`` (NaN if none < 1).

    The inverse of ``required_sample``: ``NormalIndPower`` solves Cohen's h for the sizes, then the
    treatment rate with that h is found on (baseline, 1).
    """
    if n_treatment < 2 or n_control < 2 or not 0 < baseline < 1:
        return float("nan")
    h = NormalIndPower().solve_power(
        effect_size=None,
        nobs1=n_treatment,
        alpha=alpha,
        power=power,
        ratio=n_control / n_treatment,
        alternative="two-sided",
    )
    h = float(np.asarray(h).item())
    gap = lambda p1: float(proportion_effectsize(p1, baseline)) - h  # noqa: E731
    upper = 1 - 1e-12
    if gap(upper) < 0:
        return float("nan")
    return float(brentq(gap, baseline, upper, xtol=1e-12)) - baseline


@dataclass(frozen=True)
class ArmShares:
    """Shares of the audience per arm; control gets the rest."""

    treatment: float = 0.5
    business_rule: float = 0.0

    @property
    def control(self) -> float:
        return 1.0 - self.treatment - self.business_rule

    def as_dict(self) -> dict[str, float]:
        shares = {TREATMENT: self.treatment, CONTROL: self.control}
        if self.business_rule > 0:
            shares[BUSINESS_RULE] = self.business_rule
        return shares

    def validate(self) -> None:
        if not 0 < self.treatment < 1 or self.business_rule < 0 or self.control < 1e-9:
            raise CampaignError(
                f"arm shares treatment {self.treatment}, business rule {self.business_rule}: each must "
                "lie in [0, 1) and leave a control share > 0"
            )


@dataclass(frozen=True)
class CampaignPlan:
    """The plan of one campaign: who, when, what is expected, and how big the test must be.

    Rates are conversion probabilities within the label horizon after the snapshot (0..1).
    """

    snapshot_on: str
    audience_rule: str
    product: str | None
    top: float | None
    next_best: bool
    model: str
    audience_size: int
    expected_conversions: float
    baseline_rate: float
    mde_absolute: float
    mde_relative: float
    alpha: float
    power: float
    treatment_share: float
    business_rule_share: float
    effect_size: float
    required_treatment: int
    required_control: int
    supported: bool
    detectable_mde_absolute: float
    detectable_mde_relative: float

    @property
    def shares(self) -> ArmShares:
        return ArmShares(self.treatment_share, self.business_rule_share)

    def lines(self) -> list[str]:
        """A human summary, one fact per line."""
        verdict = (
            "the audience supports the test"
            if self.supported
            else "the audience is TOO SMALL for this MDE and power"
        )
        return [
            f"snapshot {self.snapshot_on}; model {self.model}",
            f"audience: {self.audience_rule}: {self.audience_size:,} customers",
            f"expected conversions (sum of calibrated probabilities): {self.expected_conversions:,.1f} "
            f"(baseline rate {self.baseline_rate:.4f})",
            f"MDE {self.mde_absolute:.4f} absolute ({self.mde_relative:.1%} relative), alpha {self.alpha}, "
            f"power {self.power}: Cohen's h {self.effect_size:.4f}",
            f"required per arm: treatment {self.required_treatment:,}, control {self.required_control:,}; "
            f"available: treatment {int(self.audience_size * self.treatment_share):,}, "
            f"control {int(self.audience_size * self.shares.control):,} -> {verdict}",
            f"detectable MDE with this audience: {self.detectable_mde_absolute:.4f} absolute "
            f"({self.detectable_mde_relative:.1%} relative)",
        ]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CampaignPlan:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def make_plan(
    audience: pd.DataFrame,
    rule: AudienceRule,
    snapshot_on: str,
    model: str,
    mde: float,
    relative: bool,
    alpha: float = 0.05,
    power: float = 0.8,
    shares: ArmShares = ArmShares(),
) -> CampaignPlan:
    """The plan for ``audience``: expected conversions, per-arm sizes for the MDE, and the MDE it supports.

    Args:
        audience: ``select_audience``'s frame (the probabilities are taken as calibrated).
        mde: minimum detectable effect, relative to the baseline (``relative``, e.g. 0.1 = +10 %) or
            absolute (e.g. 0.01 = +1 point of conversion).
        shares: the arms' shares of the audience; power compares treatment with control.
    """
    shares.validate()
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise CampaignError(f"alpha {alpha} and power {power} must lie in (0, 1)")
    if mde <= 0:
        raise CampaignError(f"the MDE must be positive, got {mde}")
    n = len(audience)
    expected = float(audience[PROBABILITY].sum())
    baseline = expected / n
    mde_abs = mde * baseline if relative else mde
    size = required_sample(baseline, mde_abs, alpha, power, shares.control / shares.treatment)
    n_t, n_c = int(n * shares.treatment), int(n * shares.control)
    detectable = detectable_mde(baseline, n_t, n_c, alpha, power)
    return CampaignPlan(
        snapshot_on=snapshot_on,
        audience_rule=rule.describe(),
        product=rule.product,
        top=rule.top,
        next_best=rule.next_best,
        model=model,
        audience_size=n,
        expected_conversions=expected,
        baseline_rate=baseline,
        mde_absolute=mde_abs,
        mde_relative=mde_abs / baseline,
        alpha=alpha,
        power=power,
        treatment_share=shares.treatment,
        business_rule_share=shares.business_rule,
        effect_size=size.effect_size,
        required_treatment=size.n_treatment,
        required_control=size.n_control,
        supported=n_t >= size.n_treatment and n_c >= size.n_control,
        detectable_mde_absolute=detectable,
        detectable_mde_relative=detectable / baseline,
    )


def write_plan(directory: Path, plan: CampaignPlan, audience: pd.DataFrame) -> None:
    """``plan.json`` and ``audience.parquet`` in ``directory``, each written beside and renamed in."""
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_parquet(audience, directory / AUDIENCE_FILE)
    atomic_write_json(plan.to_dict(), directory / PLAN_FILE)


def read_plan(directory: Path) -> tuple[CampaignPlan, pd.DataFrame]:
    """The plan and audience written by ``write_plan``.

    Raises:
        CampaignStepMissingError: no plan in ``directory`` (run ``nextbest campaign plan`` first).
    """
    path = directory / PLAN_FILE
    if not path.is_file() or not (directory / AUDIENCE_FILE).is_file():
        raise CampaignStepMissingError(
            f"no campaign plan in {directory}: run `nextbest campaign plan {directory} ...` first"
        )
    plan = CampaignPlan.from_dict(json.loads(path.read_text(encoding="utf-8")))
    return plan, pd.read_parquet(directory / AUDIENCE_FILE)
