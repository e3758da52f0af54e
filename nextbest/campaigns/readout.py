"""Read out a campaign: did the treated convert more than the control, by how much, and is it safe to go?

Primary metric: conversion = a holding of the offered product started within the window after the
snapshot (from an outcomes file, or from the raw holdings: ``outcomes_from_holdings``). It is tested with
statsmodels' two-proportion z-test (``proportions_ztest``); the difference and the relative lift get
95 % confidence intervals (``confint_proportions_2indep``: Wald for the difference, log-adjusted for the
ratio). With a pre-period covariate, CUPED by regression adjustment (``statsmodels`` OLS of the outcome
on the arm and the centred covariate, heteroscedasticity-robust HC1) gives the variance-reduced
estimate. Secondary metrics and the guardrail are compared as means (Welch t-test, ``CompareMeans``).
``decide`` turns it into go / no-go / inconclusive with the reasons.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import statsmodels.api as sm
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportions_ztest,
)
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from nextbest.campaigns.assign import ARM, SrmResult, arm_counts, srm_check
from nextbest.campaigns.errors import CampaignError
from nextbest.campaigns.files import read_table
from nextbest.campaigns.plan import BUSINESS_RULE, CONTROL, TREATMENT, CampaignPlan
from nextbest.columns import CUSTOMER_ID, PROBABILITY, PRODUCT_ID

CONVERTED = "converted"
"""1 if the customer started a holding of the offered product within the window, else 0."""
PRODUCTS_STARTED = "products_started"
"""Holdings of any product started within the window (secondary metric)."""
CLOSURES = "closures"
"""Holdings of any product ended within the window (the default guardrail: offers must not drive churn)."""
SPEND = "spend"
"""Sum of transaction amounts within the window (revenue proxy; 0 without transactions)."""

GO, NO_GO, INCONCLUSIVE = "go", "no-go", "inconclusive"


# ------------------------------------------------------------------------------------------ outcomes


def outcomes_from_holdings(
    raw_dir: Path, assignment: pd.DataFrame, after: date, until: date, observed_until: date | None = None
) -> pd.DataFrame:
    """Outcomes of the assigned customers from the raw data in the window (``after``, ``until``].

    Args:
        observed_until: the data's last complete day; a window ending later is refused (its outcomes are
            not observed yet).

    Returns:
        customer_id, converted (holding of the assigned product started in the window), products_started,
        closures, spend: one row per assigned customer.
    """
    if observed_until is not None and until > observed_until:
        raise CampaignError(
            f"the outcome window ({after}, {until}] ends after the data's last observed day "
            f"{observed_until}: read out once the data covers it, or pass --outcomes FILE"
        )
    holdings = raw_dir / "holdings.parquet"
    if not holdings.exists():
        raise CampaignError(f"no raw holdings at {holdings}: ingest the dataset first (`nextbest ingest`)")
    transactions = raw_dir / "transactions.parquet"
    con = duckdb.connect()
    try:
        con.register("assigned", assignment[[CUSTOMER_ID, PRODUCT_ID]])
        spend = (
            f"(select coalesce(sum(t.amount), 0) from read_parquet('{transactions}') t "
            f"where t.{CUSTOMER_ID} = a.{CUSTOMER_ID} and t.occurred_at::date > $after "
            f"and t.occurred_at::date <= $until)"
            if transactions.exists()
            else "0.0"
        )
        frame = con.execute(
            f"""
            with h as (select * from read_parquet('{holdings}'))
            select
                a.{CUSTOMER_ID},
                exists (select 1 from h where h.{CUSTOMER_ID} = a.{CUSTOMER_ID}
                        and h.{PRODUCT_ID} = a.{PRODUCT_ID}
                        and h.started_on > $after and h.started_on <= $until)::int as {CONVERTED},
                (select count(*) from h where h.{CUSTOMER_ID} = a.{CUSTOMER_ID}
                 and h.started_on > $after and h.started_on <= $until) as {PRODUCTS_STARTED},
                (select count(*) from h where h.{CUSTOMER_ID} = a.{CUSTOMER_ID}
                 and h.ended_on > $after and h.ended_on <= $until) as {CLOSURES},
                {spend}::double as {SPEND},
            from assigned a
            order by 1
            """,
            {"after": after, "until": until},
        ).df()
    finally:
        con.close()
    return frame


def read_outcomes(path: Path, assignment: pd.DataFrame) -> pd.DataFrame:
    """An outcomes file (parquet or csv): ``customer_id``, ``converted`` (0/1) and any other metric columns.

    Raises:
        CampaignError: missing file or column, a non-0/1 conversion, a customer twice, or assigned customers
            without a row (each named in one line with a few examples).
    """
    frame = read_table(path, [CUSTOMER_ID, CONVERTED], "outcomes")
    frame[CUSTOMER_ID] = frame[CUSTOMER_ID].astype(str)
    bad = frame[~frame[CONVERTED].isin([0, 1, True, False]) | frame[CONVERTED].isna()]
    if len(bad):
        shown = ", ".join(f"{c}={v!r}" for c, v in bad[[CUSTOMER_ID, CONVERTED]].head(3).to_numpy())
        raise CampaignError(
            f"outcomes file {path}: column {CONVERTED} must be 0 or 1; {len(bad)} rows are not (e.g. {shown})"
        )
    dup = frame[frame[CUSTOMER_ID].duplicated()][CUSTOMER_ID]
    if len(dup):
        raise CampaignError(
            f"outcomes file {path}: {dup.nunique()} customers appear twice (e.g. {', '.join(dup.head(3))})"
        )
    missing = sorted(set(assignment[CUSTOMER_ID].astype(str)) - set(frame[CUSTOMER_ID]))
    if missing:
        raise CampaignError(
            f"outcomes file {path}: {len(missing)} assigned customers have no row "
            f"(e.g. {', '.join(missing[:3])})"
        )
    frame[CONVERTED] = frame[CONVERTED].astype(int)
    return frame


# ------------------------------------------------------------------------------------------ statistics


@dataclass(frozen=True)
class ProportionTest:
    """Conversion of arm ``a`` (treated) against arm ``b`` (control); rates and differences in [0, 1]."""

    arm_a: str
    arm_b: str
    n_a: int
    conversions_a: int
    n_b: int
    conversions_b: int
    rate_a: float
    rate_b: float
    difference: float
    difference_ci: tuple[float, float]
    relative_lift: float
    relative_lift_ci: tuple[float, float]
    z: float
    p_value: float

    def line(self) -> str:
        lo, hi = self.difference_ci
        rlo, rhi = self.relative_lift_ci
        return (
            f"{self.arm_a} {self.conversions_a:,}/{self.n_a:,} = {self.rate_a:.4f} vs {self.arm_b} "
            f"{self.conversions_b:,}/{self.n_b:,} = {self.rate_b:.4f}: difference {self.difference:+.4f} "
            f"[{lo:+.4f}, {hi:+.4f}], lift {self.relative_lift:+.1%} [{rlo:+.1%}, {rhi:+.1%}], "
            f"z = {self.z:.2f}, p = {self.p_value:.3g}"
        )


def compare_proportions(
    conversions_a: int,
    n_a: int,
    conversions_b: int,
    n_b: int,
    alpha: float = 0.05,
    arms: tuple[str, str] = (TREATMENT, CONTROL),
) -> ProportionTest:
    """Two-sided two-proportion z-test (pooled) with (1 - alpha) CIs of the difference and relative lift.

    Known answer: 120/1000 vs 100/1000 -> z = 1.429, p = 0.153, difference 0.02 in [-0.0074, 0.0474].
    """
    if min(n_a, n_b) < 1:
        raise CampaignError(f"cannot compare arms of {n_a} and {n_b} customers: both need customers")
    rate_a, rate_b = conversions_a / n_a, conversions_b / n_b
    if conversions_a + conversions_b in (0, n_a + n_b):  # no variance: nothing to test
        z, p = 0.0, 1.0
    else:
        z, p = proportions_ztest([conversions_a, conversions_b], [n_a, n_b], alternative="two-sided")
    diff_ci = confint_proportions_2indep(
        conversions_a, n_a, conversions_b, n_b, method="wald", compare="diff", alpha=alpha
    )
    if conversions_b > 0:
        ratio_ci = confint_proportions_2indep(
            conversions_a, n_a, conversions_b, n_b, method="log-adjusted", compare="ratio", alpha=alpha
        )
        lift, lift_ci = rate_a / rate_b - 1, (float(ratio_ci[0]) - 1, float(ratio_ci[1]) - 1)
    else:
        lift, lift_ci = float("nan"), (float("nan"), float("nan"))
    return ProportionTest(
        arm_a=arms[0],
        arm_b=arms[1],
        n_a=int(n_a),
        conversions_a=int(conversions_a),
        n_b=int(n_b),
        conversions_b=int(conversions_b),
        rate_a=rate_a,
        rate_b=rate_b,
        difference=rate_a - rate_b,
        difference_ci=(float(diff_ci[0]), float(diff_ci[1])),
        relative_lift=lift,
        relative_lift_ci=lift_ci,
        z=float(z),
        p_value=float(p),
    )


@dataclass(frozen=True)
class AdjustedEffect:
    """CUPED: the treatment effect on conversion adjusted for a pre-period covariate (regression)."""

    covariate: str
    difference: float
    difference_ci: tuple[float, float]
    p_value: float
    variance_reduction: float
    """1 - (adjusted standard error / unadjusted standard error)^2: the share of variance removed."""

    def line(self) -> str:
        lo, hi = self.difference_ci
        return (
            f"CUPED on {self.covariate}: difference {self.difference:+.4f} [{lo:+.4f}, {hi:+.4f}], "
            f"p = {self.p_value:.3g}, variance reduced by {self.variance_reduction:.1%}"
        )


def cuped_effect(
    outcome: np.ndarray, treated: np.ndarray, covariate: np.ndarray, name: str, alpha: float = 0.05
) -> AdjustedEffect:
    """OLS of ``outcome`` on an intercept, ``treated`` (0/1) and the centred ``covariate`` (HC1 errors).

    The treated coefficient is the CUPED estimate (the covariate must be measured before the treatment);
    the variance reduction compares its standard error with the regression without the covariate.
    """
    y = np.asarray(outcome, dtype=float)
    t = np.asarray(treated, dtype=float)
    x = np.asarray(covariate, dtype=float)
    if not np.isfinite(x).all():
        raise CampaignError(f"covariate {name}: {int((~np.isfinite(x)).sum())} values are missing")
    adjusted = sm.OLS(y, np.column_stack([np.ones_like(t), t, x - x.mean()])).fit(cov_type="HC1")
    plain = sm.OLS(y, np.column_stack([np.ones_like(t), t])).fit(cov_type="HC1")
    ci = adjusted.conf_int(alpha=alpha)[1]
    reduction = 1 - (adjusted.bse[1] / plain.bse[1]) ** 2 if plain.bse[1] > 0 else 0.0
    return AdjustedEffect(
        covariate=name,
        difference=float(adjusted.params[1]),
        difference_ci=(float(ci[0]), float(ci[1])),
        p_value=float(adjusted.pvalues[1]),
        variance_reduction=float(reduction),
    )


@dataclass(frozen=True)
class MeanComparison:
    """A metric's mean in the treated arm against the control (Welch t-test)."""

    metric: str
    mean_a: float
    mean_b: float
    difference: float
    difference_ci: tuple[float, float]
    p_value: float
    alternative: str

    def line(self) -> str:
        lo, hi = self.difference_ci
        return (
            f"{self.metric}: {self.mean_a:.4g} vs {self.mean_b:.4g}, difference {self.difference:+.4g} "
            f"[{lo:+.4g}, {hi:+.4g}], p = {self.p_value:.3g} ({self.alternative})"
        )


def compare_means(
    metric: str, a: np.ndarray, b: np.ndarray, alpha: float = 0.05, alternative: str = "two-sided"
) -> MeanComparison:
    """Welch t-test of mean(a) - mean(b) (``alternative``: two-sided, larger, smaller) with its CI."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    means = CompareMeans(DescrStatsW(a), DescrStatsW(b))
    if np.var(a) + np.var(b) == 0:
        p, ci = 1.0, (a.mean() - b.mean(), a.mean() - b.mean())
    else:
        _, p, _ = means.ttest_ind(usevar="unequal", alternative=alternative)
        ci = means.tconfint_diff(alpha=alpha, usevar="unequal")
    return MeanComparison(
        metric,
        float(a.mean()),
        float(b.mean()),
        float(a.mean() - b.mean()),
        (float(ci[0]), float(ci[1])),
        float(p),
        alternative,
    )


# ------------------------------------------------------------------------------------------ decision


@dataclass(frozen=True)
class Calibration:
    """The targeted control's predicted conversion (mean calibrated probability) against the realised."""

    predicted: float
    realised: float
    realised_ci: tuple[float, float]
    window_is_horizon: bool = True
    """False: the outcome window is not the label horizon the probabilities are for (e.g. two months
    read out against one-month probabilities), so predicted and realised are not comparable."""

    def line(self) -> str:
        lo, hi = self.realised_ci
        head = (
            f"calibration in control: predicted {self.predicted:.4f}, realised {self.realised:.4f} "
            f"[{lo:.4f}, {hi:.4f}]"
        )
        if not self.window_is_horizon:
            return f"{head} (not checked: the window is not the label horizon the probabilities are for)"
        inside = "inside" if lo <= self.predicted <= hi else "OUTSIDE"
        return f"{head} (prediction {inside} the 95% interval)"


@dataclass(frozen=True)
class Decision:
    verdict: str
    reasons: list[str]


def decide(
    primary: ProportionTest,
    alpha: float,
    mde_absolute: float,
    srm: SrmResult,
    guardrail: MeanComparison | None = None,
    adjusted: AdjustedEffect | None = None,
) -> Decision:
    """go / no-go / inconclusive, with the reasons.

    Rules, in order: a sample ratio mismatch makes the test untrustworthy (inconclusive); a guardrail made
    significantly worse is a no-go; a significantly positive effect (CUPED's when given) is a go, a
    significantly negative one a no-go; a CI entirely below the MDE rules out a worthwhile effect (no-go);
    otherwise the test could not tell (inconclusive).
    """
    if srm.mismatch:
        return Decision(INCONCLUSIVE, [srm.line() + ": the split or the outcome logging is broken"])
    if primary.conversions_a + primary.conversions_b == 0:
        return Decision(INCONCLUSIVE, ["no conversion in either arm: are the outcomes complete?"])
    reasons: list[str] = []
    if guardrail is not None and guardrail.p_value < alpha:
        return Decision(NO_GO, [f"guardrail {guardrail.metric} is worse in treatment: {guardrail.line()}"])
    if guardrail is not None:
        reasons.append(f"guardrail {guardrail.metric} holds (p = {guardrail.p_value:.3g})")
    effect, (lo, hi), p = (
        (adjusted.difference, adjusted.difference_ci, adjusted.p_value)
        if adjusted is not None
        else (primary.difference, primary.difference_ci, primary.p_value)
    )
    which = "CUPED-adjusted difference" if adjusted is not None else "difference"
    if p < alpha and effect > 0:
        return Decision(GO, [f"{which} {effect:+.4f} [{lo:+.4f}, {hi:+.4f}] > 0 at p = {p:.3g}", *reasons])
    if p < alpha and effect < 0:
        return Decision(NO_GO, [f"treatment converts worse: {which} {effect:+.4f} at p = {p:.3g}", *reasons])
    if hi < mde_absolute:
        return Decision(
            NO_GO,
            [
                f"{which} CI [{lo:+.4f}, {hi:+.4f}] lies below the MDE {mde_absolute:+.4f}: "
                "no worthwhile effect",
                *reasons,
            ],
        )
    return Decision(
        INCONCLUSIVE,
        [
            f"{which} CI [{lo:+.4f}, {hi:+.4f}] holds both 0 and the MDE {mde_absolute:+.4f} (p = {p:.3g}): "
            "run longer or on a larger audience",
            *reasons,
        ],
    )


@dataclass(frozen=True)
class Readout:
    """Everything the readout found; ``lines()`` is its printed form."""

    decision: Decision
    primary: ProportionTest
    srm: SrmResult
    calibration: Calibration
    adjusted: AdjustedEffect | None = None
    guardrail: MeanComparison | None = None
    secondary: list[MeanComparison] = field(default_factory=list)
    versus_business_rule: ProportionTest | None = None

    def lines(self) -> list[str]:
        out = [f"decision: {self.decision.verdict.upper()}"]
        out += [f"  because {r}" for r in self.decision.reasons]
        out += [f"primary (conversion): {self.primary.line()}"]
        if self.adjusted is not None:
            out.append(self.adjusted.line())
        if self.versus_business_rule is not None:
            out.append(f"model vs business rule: {self.versus_business_rule.line()}")
        if self.guardrail is not None:
            out.append(f"guardrail {self.guardrail.line()}")
        out += [f"secondary {m.line()}" for m in self.secondary]
        out += [self.srm.line(), self.calibration.line()]
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_out(
    assignment: pd.DataFrame,
    outcomes: pd.DataFrame,
    plan: CampaignPlan,
    covariate: str | None = None,
    guardrail: str | None = None,
    secondary: tuple[str, ...] = (),
    window_is_horizon: bool = True,
) -> Readout:
    """The readout of an assigned campaign from its outcomes (one row per assigned customer).

    Args:
        assignment: ``assign_arms``' frame (customer_id, product_id, probability, stratum, arm).
        outcomes: customer_id, converted and any metric columns named below.
        plan: the campaign's plan (alpha, MDE, arm shares).
        covariate: a pre-period column of ``outcomes`` or the assignment (e.g. ``probability``) for CUPED.
        guardrail: a metric where higher is worse (e.g. ``closures``); tested one-sided.
        secondary: metrics compared two-sided (e.g. ``products_started``, ``spend``).
        window_is_horizon: the outcome window is the label horizon after the plan's snapshot (what the
            calibrated probabilities predict); otherwise the calibration check is reported, not judged.
    """
    alpha = plan.alpha
    frame = assignment.assign(**{CUSTOMER_ID: assignment[CUSTOMER_ID].astype(str)}).merge(
        outcomes.drop(columns=[c for c in (PRODUCT_ID, PROBABILITY) if c in outcomes.columns]),
        on=CUSTOMER_ID,
        how="left",
        validate="one_to_one",
    )
    if frame[CONVERTED].isna().any():
        raise CampaignError(f"{int(frame[CONVERTED].isna().sum())} assigned customers have no outcome")
    for name in [c for c in (covariate, guardrail, *secondary) if c is not None]:
        if name not in frame.columns:
            raise CampaignError(f"metric or covariate {name!r} is not a column of the outcomes or assignment")
    srm = srm_check(arm_counts(frame), plan.shares.as_dict())
    treated, control = frame[frame[ARM] == TREATMENT], frame[frame[ARM] == CONTROL]
    primary = compare_proportions(
        int(treated[CONVERTED].sum()), len(treated), int(control[CONVERTED].sum()), len(control), alpha
    )
    pair = frame[frame[ARM].isin([TREATMENT, CONTROL])]
    adjusted = (
        cuped_effect(
            pair[CONVERTED].to_numpy(),
            (pair[ARM] == TREATMENT).to_numpy(),
            pair[covariate].to_numpy(),
            covariate,
            alpha,
        )
        if covariate is not None
        else None
    )
    guard = (
        compare_means(guardrail, treated[guardrail], control[guardrail], alpha, alternative="larger")
        if guardrail is not None
        else None
    )
    rule = frame[frame[ARM] == BUSINESS_RULE]
    versus = (
        compare_proportions(
            int(treated[CONVERTED].sum()),
            len(treated),
            int(rule[CONVERTED].sum()),
            len(rule),
            alpha,
            arms=(TREATMENT, BUSINESS_RULE),
        )
        if len(rule)
        else None
    )
    lo, hi = proportion_confint(int(control[CONVERTED].sum()), len(control), alpha=0.05, method="wilson")
    calibration = Calibration(
        float(control[PROBABILITY].mean()),
        float(control[CONVERTED].mean()),
        (float(lo), float(hi)),
        window_is_horizon,
    )
    return Readout(
        decision=decide(primary, alpha, plan.mde_absolute, srm, guard, adjusted),
        primary=primary,
        srm=srm,
        calibration=calibration,
        adjusted=adjusted,
        guardrail=guard,
        secondary=[compare_means(m, treated[m], control[m], alpha) for m in secondary],
        versus_business_rule=versus,
    )
