"""A synthetic retail bank in the raw contract, with the true adoption probabilities (the oracle).

``generate_synthetic`` simulates customers month by month: every month each population customer
adopts each product it does not own and is eligible for with a probability ``p`` given by a known
logistic propensity model of its state at the previous month-end; owned products close with a small
product-specific monthly probability; new customers join and open one product, except a share
``COLD_START_SHARE`` of them who join owning nothing and adopt a first product later; owned
transactional products produce transactions. ``oracle.parquet`` holds, for every month-end snapshot
but the last, one row per (population customer, candidate product) with exactly the ``p`` that was
used, so evaluation can compare a model against the best achievable ranking.

Churn: every month a customer owning a product churns with a known probability (``churn_logit``: more
likely the longer since its last transaction, with fewer products, in its first year, when young); a
churner closes every holding on the first day of the month, so it transacts no more, and adopts from
then on with the lowest logit (it has left). ``churn_oracle.parquet`` holds, for every snapshot whose
``CHURN_HORIZON_MONTHS`` months are generated (all but the last two), one row per population customer
with its monthly churn hazard and the probability of the dbt project's churn label (``inactivity``: no
transaction and no new holding within the horizon; ``_churn_label_probability``), so a churn model can
be compared with the best achievable AUROC.

The propensity (``adoption_logit``) adds to a product's intercept: age / income / segment effects;
static complements (an offset while another product is owned); follow-on boosts that decay after
another product was adopted (``boost * exp(-m / FOLLOW_ON_TAU_MONTHS)``, ``m`` = months from the start
day of the current holding of that product to the snapshot, e.g. home insurance just after a
mortgage); a first-product offset while the customer owns nothing (a current account above all); recent
spend; re-adopting a product held before; tenure, momentum and saturation terms.

Definitions shared with the dbt project (``fct_candidates`` / ``fct_ranking_labels``), for a month-end
snapshot ``s``:

* owned at ``s``: ``started_on <= s`` and (``ended_on`` is null or ``s < ended_on``);
* held on or before ``s``: some holding with ``started_on <= s``;
* population: ``joined_on <= s`` and not dormant, i.e. (owns >= 1 product at ``s`` or has a transaction
  whose *date* lies in ``(s - 3 months, s]`` or has never held any product on or before ``s``);
  ``s - 3 months`` clamps the day like DuckDB, e.g. 2023-04-30 -> 2023-01-30. A customer who held a
  product before, owns nothing now and has not transacted in the lookback is dormant; a customer who
  never held one is in from joining on (the dbt project's prospect window var, unbounded by default,
  is not modelled here);
* candidate: population customer, product not owned at ``s`` and eligible (a product with an age bound
  requires a known ``age = year(s) - birth_year`` with ``min_age <= age <= max_age``);
* label 1 iff a holding of the product starts in ``(s, last_day(s + 1 month)]``.

Simulation order for month ``k`` (state at ``s_{k-1}`` = last day of month ``k - 1``): customers churn
with their hazard ``h``; candidates who did not churn adopt with ``u < p`` (the stored oracle value is
``(1 - h) p``, rounded to float32) on a uniform day of month ``k``;
products owned at ``s_{k-1}`` close with ``u < c`` on a uniform day of month ``k`` (so a product closed
in month ``k`` is not re-adopted in month ``k``, and a product adopted in month ``k`` does not close in
it); customers joining in month ``k`` open one product on ``joined_on`` (not an adoption: they were not
in the population at ``s_{k-1}``), except the cold starts, who open nothing, are in the population from
``s_k`` on and adopt like everybody else (their first adoption is in month ``k + 1`` at the earliest);
then month ``k``'s transactions are drawn for the days each transactional product was owned. Customers
who joined before month 0 all opened a product on joining (so they have held one), and no transactions
exist before month 0.

Determinism: all randomness comes from one ``numpy`` generator per block of ``RNG_BLOCK`` customers,
seeded by ``SeedSequence(seed).spawn``-style keys ``(seed, block index)``, and every block draws the
same sequence whatever chunk it is processed in. ``chunk_size`` is rounded up to a multiple of
``RNG_BLOCK``; the generated data does not depend on it (only the parquet row groups, and the row order
of ``oracle.parquet``, which is written chunk by chunk for each snapshot, do).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

RNG_BLOCK = 1000
"""Customers per random-number block; chunks are whole blocks so results do not depend on chunk_size."""

ACTIVITY_LOOKBACK_MONTHS = 3
"""A customer owning nothing who held a product before is in the population if it transacted in the
last this many months (otherwise it is dormant)."""

FOLLOW_ON_TAU_MONTHS = 3.0
"""Decay time (months) of a follow-on boost: ``boost * exp(-months_since_start_of_q / TAU)``."""

COLD_START_SHARE = 0.35
"""Share of customers joining during the window who open no product on joining (they own nothing)."""

DAYS_PER_MONTH = 30.4375
"""Days per month when a duration in days is expressed in months (tenure, months since a start)."""

SEGMENTS: tuple[str, ...] = ("mass", "affluent", "student", "senior", "business")
REGIONS: tuple[str, ...] = (
    "london", "south-east", "south-west", "east", "midlands",
    "north-west", "north-east", "yorkshire", "scotland", "wales",
)
_REGION_WEIGHTS = np.array([0.16, 0.14, 0.09, 0.10, 0.14, 0.11, 0.05, 0.08, 0.08, 0.05])

DATASET_NAME = "synthetic-bank"
_INCOME_LOG_MEAN = 10.3  # log of a ~30k median income
_INCOME_LOG_SD = 0.6
_SPEND_LOG_CENTRE = 4.5
_SPEND_LOG_SCALE = 2.0
_PRESTART_JOIN_YEARS = 10.0
_NULL_PRODUCT_TXN_SHARE = 0.10
_LOGIT_MIN, _LOGIT_MAX = -12.0, 6.0


@dataclass(frozen=True)
class ProductSpec:
    """One product of the synthetic bank and its behaviour.

    Attributes:
        product_id: contract id, readable (``current_account``).
        product_name: display name.
        category: one of accounts, savings, cards, loans, mortgages, investments, insurance, pensions.
        min_age: youngest eligible age in years, or None.
        max_age: oldest eligible age in years, or None.
        base: intercept of the monthly adoption logit.
        initial: logit offset (relative to ``base``) of owning the product at the start for customers
            who joined before the first month.
        close: monthly probability in [0, 1) that an owned product closes.
        txn_rate: mean transactions per owned month for an average-activity customer (0 = none).
        amount_mu: log-scale mean of one transaction's amount (currency units).
        age_peak: age (years) at which the age effect peaks.
        age_width: width (years) of the Gaussian age effect.
        age_amp: logit amplitude of the age effect.
        b_income: logit per standard deviation of log income.
        b_spend: logit per standard unit of log recent spend.
        segment: logit offsets by segment.
        complements: logit offsets by other product owned at the snapshot.
        follow_ons: logit boosts by other product ``q`` the customer adopted recently:
            ``boost * exp(-m / FOLLOW_ON_TAU_MONTHS)`` while ``q`` is owned at the snapshot, ``m`` =
            months from the start day of the current holding of ``q`` to the snapshot.
        first: logit offset applied only when the customer owns no product at the snapshot (the
            first product of a customer who joined without one, or of one who closed everything).
    """

    product_id: str
    product_name: str
    category: str
    min_age: int | None
    max_age: int | None
    base: float
    initial: float
    close: float
    txn_rate: float = 0.0
    amount_mu: float = 3.5
    age_peak: float = 40.0
    age_width: float = 25.0
    age_amp: float = 0.0
    b_income: float = 0.0
    b_spend: float = 0.0
    segment: Mapping[str, float] = field(default_factory=dict)
    complements: Mapping[str, float] = field(default_factory=dict)
    follow_ons: Mapping[str, float] = field(default_factory=dict)
    first: float = 0.0


PRODUCTS: tuple[ProductSpec, ...] = (
    ProductSpec("current_account", "Current account", "accounts", None, None, -2.2, 3.5, 0.004,
                txn_rate=1.0, amount_mu=3.4, b_spend=0.0, complements={"junior_account": -1.0}, first=1.5),
    ProductSpec("joint_account", "Joint current account", "accounts", 18, None, -4.6, 0.5, 0.006,
                txn_rate=0.4, amount_mu=3.8, age_peak=40, age_width=15, age_amp=1.0,
                complements={"mortgage": 0.5, "current_account": 0.5}, follow_ons={"mortgage": 1.5}),
    ProductSpec("business_account", "Business account", "accounts", 18, None, -6.6, -0.5, 0.005,
                txn_rate=1.5, amount_mu=5.0, b_income=0.3, segment={"business": 3.5}),
    ProductSpec("junior_account", "Junior saver account", "accounts", None, 17, -3.2, 1.0, 0.004,
                txn_rate=0.3, amount_mu=2.5, age_peak=8, age_width=6, age_amp=1.2, first=3.0),
    ProductSpec("student_account", "Student account", "accounts", 18, 25, -3.8, 0.5, 0.01,
                txn_rate=0.8, amount_mu=3.0, segment={"student": 2.5}, first=1.5),
    ProductSpec("savings_account", "Savings account", "savings", None, None, -4.0, 1.5, 0.008,
                b_income=0.4, b_spend=0.3, complements={"current_account": 0.6, "instant_saver": -0.6},
                follow_ons={"current_account": 0.8}),
    ProductSpec("instant_saver", "Instant access saver", "savings", None, None, -4.0, 0.8, 0.01,
                b_income=0.3, b_spend=0.3, complements={"current_account": 0.7, "savings_account": -0.6},
                first=1.0),
    ProductSpec("isa", "Tax-free savings (ISA)", "savings", 18, None, -4.6, 0.2, 0.006,
                b_income=0.6, segment={"affluent": 0.8}, complements={"savings_account": 0.5},
                follow_ons={"savings_account": 1.0}),
    ProductSpec("fixed_deposit", "Fixed-term deposit", "savings", 18, None, -5.2, 0.0, 0.02,
                age_peak=65, age_width=20, age_amp=1.2, b_income=0.5,
                complements={"savings_account": 0.9, "isa": 0.5}),
    ProductSpec("senior_saver", "Senior saver", "savings", 60, None, -4.0, 0.5, 0.006,
                segment={"senior": 1.2}, complements={"savings_account": 0.5}),
    ProductSpec("credit_card", "Credit card", "cards", 18, None, -4.0, 1.5, 0.008,
                txn_rate=0.7, amount_mu=3.8, age_peak=35, age_width=20, age_amp=0.8, b_income=0.3,
                b_spend=0.5, complements={"current_account": 1.0, "premium_card": -1.0},
                follow_ons={"current_account": 1.0}, first=0.5),
    ProductSpec("premium_card", "Premium credit card", "cards", 18, None, -6.2, -1.0, 0.006,
                txn_rate=1.0, amount_mu=4.3, b_income=1.1, b_spend=0.6,
                segment={"affluent": 1.4, "student": -1.5}, complements={"credit_card": 1.0},
                follow_ons={"credit_card": 1.0}),
    ProductSpec("overdraft", "Arranged overdraft", "loans", 18, None, -5.5, 0.8, 0.015,
                age_peak=28, age_width=12, age_amp=0.8, b_income=-0.3, b_spend=0.6,
                complements={"current_account": 2.3, "student_account": 0.8},
                follow_ons={"current_account": 1.0, "student_account": 1.0}),
    ProductSpec("personal_loan", "Personal loan", "loans", 18, None, -5.0, 0.0, 0.03,
                age_peak=35, age_width=15, age_amp=0.8, b_spend=0.4,
                complements={"current_account": 0.6, "credit_card": 0.5, "overdraft": 0.5}),
    ProductSpec("car_loan", "Car loan", "loans", 18, None, -5.8, 0.0, 0.025,
                age_peak=38, age_width=15, age_amp=1.0, b_income=0.3, complements={"car_insurance": 1.0}),
    ProductSpec("mortgage", "Mortgage", "mortgages", 18, 75, -7.0, 2.5, 0.004,
                age_peak=34, age_width=9, age_amp=1.6, b_income=0.9, segment={"student": -2.0},
                complements={"joint_account": 0.8, "savings_account": 0.4}),
    ProductSpec("remortgage", "Remortgage", "mortgages", 18, 80, -8.5, -1.0, 0.003,
                b_income=0.4, complements={"mortgage": 5.5}),
    ProductSpec("pension", "Personal pension", "pensions", 18, 74, -6.8, 0.2, 0.002,
                age_peak=45, age_width=12, age_amp=1.2, b_income=0.8, segment={"affluent": 0.6},
                complements={"investment_fund": 0.4}, follow_ons={"investment_fund": 0.8}),
    ProductSpec("investment_fund", "Investment fund", "investments", 18, None, -6.2, 0.0, 0.01,
                age_peak=50, age_width=18, age_amp=0.6, b_income=1.0, segment={"affluent": 1.2},
                complements={"isa": 0.5, "stock_trading": 0.7}, follow_ons={"isa": 1.5}),
    ProductSpec("stock_trading", "Share dealing account", "investments", 18, None, -6.2, -0.2, 0.012,
                age_peak=32, age_width=12, age_amp=1.0, b_income=0.8, segment={"affluent": 0.8},
                complements={"investment_fund": 0.4}, follow_ons={"investment_fund": 1.5}),
    ProductSpec("home_insurance", "Home insurance", "insurance", 18, None, -6.0, 1.0, 0.012,
                age_peak=45, age_width=20, age_amp=0.6, complements={"mortgage": 1.5},
                follow_ons={"mortgage": 2.5}),
    ProductSpec("car_insurance", "Car insurance", "insurance", 18, None, -5.0, 1.0, 0.02,
                age_peak=40, age_width=20, age_amp=0.6, complements={"car_loan": 1.0},
                follow_ons={"car_loan": 2.5}),
    ProductSpec("life_insurance", "Life insurance", "insurance", 18, None, -5.8, 0.5, 0.008,
                age_peak=40, age_width=12, age_amp=1.0, complements={"mortgage": 1.0},
                follow_ons={"mortgage": 1.5}),
    ProductSpec("travel_insurance", "Travel insurance", "insurance", 18, None, -4.5, 0.0, 0.06,
                b_income=0.5, b_spend=0.4, complements={"premium_card": 0.5, "credit_card": 0.4},
                follow_ons={"premium_card": 2.0}),
)

_GENERIC_PREV_HELD = 1.2  # logit bonus for re-adopting a product held before
_GENERIC_RECENT_ADD = 0.35  # logit per product added in the last 3 months (momentum, capped at 3)
_GENERIC_COUNT = -0.10  # logit per product owned (saturation)
_GENERIC_NEW_CUSTOMER = 0.6  # logit bonus during the first 6 months of tenure
_AGED_OUT_CLOSE = 0.5  # monthly closure probability of a product the customer is no longer eligible for
_CHURN_BASE = -4.0  # monthly churn logit of a customer with one product, active this month
_CHURN_PER_INACTIVE_MONTH = 0.5  # per month since the last transaction (capped)
_CHURN_INACTIVE_CAP = 4
_CHURN_PER_EXTRA_PRODUCT = -0.3  # per product owned beyond the first
_CHURN_NEW = 0.7  # tenure under 12 months
_CHURN_YOUNG = 0.4  # known age under 30

CHURN_HORIZON_MONTHS = 2
"""Months after a snapshot over which ``churn_oracle.parquet`` gives the probability of the churn label
(the dbt var ``churn_horizon_months``' default)."""

CUSTOMER_SCHEMA = pa.schema([
    ("customer_id", pa.string()),
    ("joined_on", pa.date32()),
    ("birth_year", pa.int64()),
    ("income", pa.float64()),
    ("segment", pa.string()),
    ("region", pa.string()),
    ("email_opt_in", pa.bool_()),
])
PRODUCT_SCHEMA = pa.schema([
    ("product_id", pa.string()),
    ("product_name", pa.string()),
    ("category", pa.string()),
    ("min_age", pa.int64()),
    ("max_age", pa.int64()),
])
HOLDING_SCHEMA = pa.schema([
    ("customer_id", pa.string()),
    ("product_id", pa.string()),
    ("started_on", pa.date32()),
    ("ended_on", pa.date32()),
])
TRANSACTION_SCHEMA = pa.schema([
    ("customer_id", pa.string()),
    ("product_id", pa.string()),
    ("occurred_at", pa.timestamp("us")),
    ("amount", pa.float64()),
])
ORACLE_SCHEMA = pa.schema([
    ("customer_id", pa.string()),
    ("snapshot_on", pa.date32()),
    ("product_id", pa.string()),
    ("probability", pa.float32()),
])
CHURN_ORACLE_SCHEMA = pa.schema([
    ("customer_id", pa.string()),
    ("snapshot_on", pa.date32()),
    ("churn_hazard", pa.float32()),
    ("probability", pa.float32()),
])


@dataclass(frozen=True)
class SyntheticSummary:
    """What ``generate_synthetic`` wrote: row counts per file and wall-clock seconds."""

    out_dir: Path
    customers: int
    months: int
    seed: int
    first_snapshot_on: date
    observed_until: date
    holdings: int
    transactions: int
    oracle_rows: int
    adoptions: int
    seconds: float
    churns: int = 0
    churn_oracle_rows: int = 0


# --------------------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class ProductModel:
    """The product table as arrays, shape (P,) or (P, P); ``*_t[q, p]`` = effect of ``q`` on ``p``."""

    ids: tuple[str, ...]
    min_age: np.ndarray  # float, nan = no bound
    max_age: np.ndarray
    base: np.ndarray
    initial: np.ndarray
    close: np.ndarray
    txn_rate: np.ndarray
    amount_mu: np.ndarray
    age_peak: np.ndarray
    age_width: np.ndarray
    age_amp: np.ndarray
    b_income: np.ndarray
    b_spend: np.ndarray
    segment: np.ndarray  # (len(SEGMENTS) + 1, P), last row = unknown segment (0)
    complement_t: np.ndarray  # (P, P): owned @ complement_t gives the complement logit
    follow_on_t: np.ndarray  # (P, P): follow_on_t[q, p] = boost of p shortly after adopting q
    first: np.ndarray  # (P,) logit offset when the customer owns nothing

    def index(self, product_id: str) -> int:
        """Column index of ``product_id``."""
        return self.ids.index(product_id)


def build_model(products: tuple[ProductSpec, ...] = PRODUCTS) -> ProductModel:
    """Turn the product specs into arrays; raises ValueError on an unknown product or segment name."""
    ids = tuple(p.product_id for p in products)
    n = len(ids)
    seg = np.zeros((len(SEGMENTS) + 1, n))
    comp_t = np.zeros((n, n))
    follow_t = np.zeros((n, n))
    for j, p in enumerate(products):
        for s, v in p.segment.items():
            if s not in SEGMENTS:
                raise ValueError(f"{p.product_id}: unknown segment {s!r}")
            seg[SEGMENTS.index(s), j] = v
        for q, v in p.complements.items():
            if q not in ids:
                raise ValueError(f"{p.product_id}: unknown complement {q!r}")
            comp_t[ids.index(q), j] = v
        for q, v in p.follow_ons.items():
            if q not in ids:
                raise ValueError(f"{p.product_id}: unknown follow-on {q!r}")
            follow_t[ids.index(q), j] = v

    def arr(name: str) -> np.ndarray:
        return np.array([np.nan if getattr(p, name) is None else getattr(p, name) for p in products], float)

    return ProductModel(
        ids=ids, min_age=arr("min_age"), max_age=arr("max_age"), base=arr("base"), initial=arr("initial"),
        close=arr("close"), txn_rate=arr("txn_rate"), amount_mu=arr("amount_mu"), age_peak=arr("age_peak"),
        age_width=arr("age_width"), age_amp=arr("age_amp"), b_income=arr("b_income"),
        b_spend=arr("b_spend"), segment=seg, complement_t=comp_t, follow_on_t=follow_t, first=arr("first"),
    )


# ------------------------------------------------------------------------------------------ calendar


@dataclass(frozen=True)
class _Calendar:
    """Month arithmetic in epoch days. Month k = 0 is the first generated month; k = -1 the one before."""

    m0: np.datetime64  # datetime64[M] of month 0

    def first_day(self, k: int) -> int:
        """Epoch day of the first day of month k."""
        return int((self.m0 + k).astype("datetime64[D]").astype(np.int64))

    def last_day(self, k: int) -> int:
        """Epoch day of the last day of month k (the snapshot s_k)."""
        return self.first_day(k + 1) - 1

    def n_days(self, k: int) -> int:
        """Number of days in month k (28..31)."""
        return self.first_day(k + 1) - self.first_day(k)

    def year(self, k: int) -> int:
        """Calendar year of month k."""
        return 1970 + (int(self.m0.astype(np.int64)) + k) // 12

    def minus_months(self, k: int, n: int) -> int:
        """Epoch day of ``s_k - n months`` with DuckDB's day clamping (2023-04-30 - 3 months = 2023-01-30)."""
        return self.first_day(k - n) + min(self.n_days(k), self.n_days(k - n)) - 1


def _year_start_day(years: np.ndarray) -> np.ndarray:
    """Epoch day of 1 January of each year (int64 array)."""
    return (years - 1970).astype("datetime64[Y]").astype("datetime64[D]").astype(np.int64)


def _day_year(days: np.ndarray) -> np.ndarray:
    """Calendar year of each epoch day."""
    return days.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970


def to_date(epoch_day: int) -> date:
    """Epoch day number -> ``datetime.date``."""
    return np.datetime64(int(epoch_day), "D").astype(date)


# ------------------------------------------------------------------------------------------- random


class _BlockRng:
    """Random draws for a chunk made of whole RNG blocks, identical whatever the chunking.

    Each block of ``RNG_BLOCK`` customers owns one generator; every draw method draws each block's part
    from that block's generator and concatenates the parts in customer order.
    """

    def __init__(self, seed: int, first_block: int, n_customers: int) -> None:
        self.sizes = [min(RNG_BLOCK, n_customers - i) for i in range(0, n_customers, RNG_BLOCK)]
        self.gens = [np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, first_block + b])))
                     for b in range(len(self.sizes))]
        self.bounds = np.cumsum([0, *self.sizes])

    def uniform(self, *shape: int) -> np.ndarray:
        """Uniform [0, 1) of shape (n_customers, *shape)."""
        return np.concatenate([g.random((n, *shape)) for g, n in zip(self.gens, self.sizes, strict=True)])

    def normal(self, *shape: int) -> np.ndarray:
        """Standard normal of shape (n_customers, *shape)."""
        return np.concatenate([g.standard_normal((n, *shape))
                               for g, n in zip(self.gens, self.sizes, strict=True)])

    def gamma(self, shape_k: float, scale: float) -> np.ndarray:
        """Gamma(shape_k, scale) per customer."""
        return np.concatenate([g.gamma(shape_k, scale, n)
                               for g, n in zip(self.gens, self.sizes, strict=True)])

    def poisson(self, lam: np.ndarray) -> np.ndarray:
        """Poisson counts with per-cell means ``lam`` (first axis = customers)."""
        return np.concatenate([g.poisson(lam[a:b]) for g, a, b in
                               zip(self.gens, self.bounds[:-1], self.bounds[1:], strict=True)])

    def per_event(self, counts: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Uniform (sum(counts), width) and standard normal (sum(counts),) for customer-major events.

        ``counts`` has one entry per customer (events of customer i come before those of i + 1).
        """
        u, z = [], []
        for g, a, b in zip(self.gens, self.bounds[:-1], self.bounds[1:], strict=True):
            m = int(counts[a:b].sum())
            u.append(g.random((m, width)))
            z.append(g.standard_normal(m))
        return np.concatenate(u), np.concatenate(z)


# -------------------------------------------------------------------------------------- customers


@dataclass
class _Customers:
    """Attributes of a chunk of customers; birth_year -1 = unknown, segment/region -1 = unknown."""

    idx: np.ndarray  # global customer index
    joined: np.ndarray  # epoch day
    join_month: np.ndarray  # month index of joined (< 0 before the first generated month)
    birth_year: np.ndarray  # observed, -1 unknown
    true_birth_year: np.ndarray
    income: np.ndarray  # nan unknown
    segment: np.ndarray
    region: np.ndarray
    email_opt_in: np.ndarray
    activity: np.ndarray  # transaction intensity multiplier, mean 1
    opens_on_joining: np.ndarray  # bool; False for the COLD_START_SHARE of window joiners


def _generate_customers(rng: _BlockRng, idx: np.ndarray, cal: _Calendar, months: int) -> _Customers:
    """Draw customer attributes; about ``min(0.5, 0.0125 * months)`` of customers join during the window.

    Of those joiners, ``COLD_START_SHARE`` open no product on joining; everybody else opens one.
    """
    n = len(idx)
    u = rng.uniform(15)
    z = rng.normal(2)
    activity = rng.gamma(2.0, 0.5)
    ref_year = cal.year(-1)
    # age at the month before the start: 7% minors, 12% 18-25, the rest 26-90
    age = np.where(u[:, 0] < 0.07, np.floor(u[:, 1] * 18),
                   np.where(u[:, 0] < 0.19, 18 + np.floor(u[:, 1] * 8),
                            26 + np.floor(64 * _beta_like(u[:, 1], u[:, 2]))))
    true_by = (ref_year - age).astype(np.int64)
    birth_year = np.where(u[:, 3] < 0.03, -1, true_by)
    adult = age >= 18
    hump = np.exp(-(((age - 48) / 18) ** 2))
    log_income = np.where(adult, _INCOME_LOG_MEAN - 0.3 + 0.6 * hump + _INCOME_LOG_SD * z[:, 0],
                          7.0 + z[:, 0])
    income = np.exp(log_income)
    income[(u[:, 4] < 0.10) | (~adult & (u[:, 4] < 0.6))] = np.nan
    seg = np.full(n, SEGMENTS.index("mass"))
    seg[np.exp(log_income) > 55_000] = SEGMENTS.index("affluent")
    seg[(u[:, 5] < 0.08) & adult] = SEGMENTS.index("business")
    seg[(age >= 18) & (age <= 25) & (u[:, 6] < 0.6)] = SEGMENTS.index("student")
    seg[(age >= 63) & (u[:, 6] < 0.7)] = SEGMENTS.index("senior")
    seg[u[:, 7] < 0.05] = -1
    region = np.searchsorted(np.cumsum(_REGION_WEIGHTS), u[:, 8] * _REGION_WEIGHTS.sum(), side="right")
    region = np.minimum(region, len(REGIONS) - 1)
    region[u[:, 9] < 0.04] = -1
    # joining: new customers uniformly over the window, the others up to 10 years before it
    joiner_share = min(0.5, 0.0125 * months)
    is_joiner = u[:, 10] < joiner_share
    join_month = np.where(is_joiner, np.floor(u[:, 11] * months).astype(np.int64), -1)
    starts = np.array([cal.first_day(k) for k in range(months + 1)], np.int64)
    lengths = np.diff(starts)
    jm = np.clip(join_month, 0, months - 1)
    joined_new = starts[jm] + np.floor(u[:, 12] * lengths[jm]).astype(np.int64)
    last = cal.last_day(-1)
    joined_old = last - np.floor(u[:, 12] * _PRESTART_JOIN_YEARS * 365.25).astype(np.int64)
    joined_old = np.maximum(joined_old, _year_start_day(true_by))
    joined = np.where(is_joiner, joined_new, joined_old)
    return _Customers(idx=idx, joined=joined, join_month=join_month, birth_year=birth_year,
                      true_birth_year=true_by, income=income, segment=seg, region=region,
                      email_opt_in=u[:, 13] < 0.6, activity=activity,
                      opens_on_joining=~is_joiner | (u[:, 14] >= COLD_START_SHARE))


def _beta_like(u1: np.ndarray, u2: np.ndarray) -> np.ndarray:
    """A right-skewed value in [0, 1) from two uniforms (mean ~0.4): min of two uniforms blended."""
    return 0.5 * np.minimum(u1, u2) + 0.5 * (u1 + u2) / 2


# ------------------------------------------------------------------------------------- propensity


def _ages(cust: _Customers, year: int) -> np.ndarray:
    """Observed age in years at ``year`` (float, nan when birth_year is unknown)."""
    return np.where(cust.birth_year >= 0, year - cust.birth_year, np.nan).astype(float)


def _eligible(model: ProductModel, age: np.ndarray) -> np.ndarray:
    """(n, P) eligibility: products with a bound need a known age within [min_age, max_age]."""
    a = age[:, None]
    has_bound = ~np.isnan(model.min_age) | ~np.isnan(model.max_age)
    ok_min = np.isnan(model.min_age) | (a >= model.min_age)
    ok_max = np.isnan(model.max_age) | (a <= model.max_age)
    return (ok_min & ok_max & ~np.isnan(a)) | ~has_bound


def _static_logit(model: ProductModel, cust: _Customers, age: np.ndarray) -> np.ndarray:
    """(n, P) logit part from age, income and segment (0 for unknown values)."""
    known = ~np.isnan(age)
    a = np.where(known, age, 0.0)[:, None]
    age_eff = model.age_amp * (np.exp(-(((a - model.age_peak) / model.age_width) ** 2)) - 0.5)
    age_eff = np.where(known[:, None], age_eff, 0.0)
    z_inc = np.where(np.isnan(cust.income), 0.0,
                     (np.log(np.maximum(cust.income, 1.0)) - _INCOME_LOG_MEAN) / _INCOME_LOG_SD)
    return age_eff + z_inc[:, None] * model.b_income + model.segment[cust.segment]


def follow_on_logit(model: ProductModel, owned: np.ndarray, months_since_start: np.ndarray) -> np.ndarray:
    """(n, P) follow-on part of the adoption logit: sum over owned q of ``boost[q, p] * exp(-m_q / TAU)``.

    Args:
        model: product arrays (``follow_on_t[q, p]`` = boost of ``p`` after adopting ``q``).
        owned: (n, P) bool, owned at the snapshot.
        months_since_start: (n, P) months from the start day of the current holding to the snapshot,
            >= 0 where owned (ignored elsewhere).

    Returns:
        logit boosts, >= 0 when all boosts are (at most the sum of the boosts, decaying with e-folding
        time ``FOLLOW_ON_TAU_MONTHS``).
    """
    recency = np.where(owned, np.exp(-np.maximum(months_since_start, 0.0) / FOLLOW_ON_TAU_MONTHS), 0.0)
    return recency @ model.follow_on_t


def adoption_logit(model: ProductModel, static: np.ndarray, owned: np.ndarray, months_since_start: np.ndarray,
                   prev_held: np.ndarray, tenure_months: np.ndarray, spend_3m: np.ndarray,
                   recent_adds: np.ndarray) -> np.ndarray:
    """Monthly adoption logit (n, P) given the state at a month-end snapshot.

    Args:
        model: product arrays.
        static: (n, P) age / income / segment part from ``_static_logit``.
        owned: (n, P) bool, owned at the snapshot (no product owned adds ``model.first``).
        months_since_start: (n, P) months (days / ``DAYS_PER_MONTH``) from the start day of the current
            holding to the snapshot, >= 0 where owned, ignored elsewhere (see ``follow_on_logit``).
        prev_held: (n, P) bool, a holding of the product ended on or before the snapshot.
        tenure_months: (n,) months since joined_on, >= 0.
        spend_3m: (n,) sum of transaction amounts in the last 3 months, >= 0.
        recent_adds: (n,) holdings started in the last 3 months, >= 0.

    Returns:
        logits clipped to [-12, 6] (probabilities ~6e-6 .. 0.9975).
    """
    n_owned = owned.sum(axis=1, dtype=np.float64)
    z_spend = (np.log1p(spend_3m) - _SPEND_LOG_CENTRE) / _SPEND_LOG_SCALE
    generic = (_GENERIC_COUNT * n_owned + _GENERIC_RECENT_ADD * np.minimum(recent_adds, 3)
               + _GENERIC_NEW_CUSTOMER * (tenure_months < 6) - 0.08 * np.log1p(tenure_months))
    owns_nothing = ~owned.any(axis=1)
    logit = (model.base + static + owned.astype(np.float64) @ model.complement_t
             + follow_on_logit(model, owned, months_since_start) + owns_nothing[:, None] * model.first
             + z_spend[:, None] * model.b_spend + generic[:, None] + _GENERIC_PREV_HELD * prev_held)
    return np.clip(logit, _LOGIT_MIN, _LOGIT_MAX)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def churn_logit(n_owned: np.ndarray, months_inactive: np.ndarray, tenure_months: np.ndarray,
                age: np.ndarray) -> np.ndarray:
    """Monthly churn logit (n,) of a customer at a month-end snapshot: the log-odds that it leaves the
    bank in the next month (closes every holding on the month's first day and stops transacting).

    Args:
        n_owned: products owned at the snapshot (more products: stickier).
        months_inactive: calendar months since the month of the last transaction (0 = this month), capped
            at ``_CHURN_INACTIVE_CAP``; 0 for a customer owning no transactional product.
        tenure_months: months since joined_on (under 12: likelier to leave).
        age: age in years (nan = unknown; under 30: likelier to leave).

    Returns:
        logits; about -3.9 (2%) for an active customer with 3 products, -1.5 (18%) for a new, young
        customer with one product and no transaction for 4 months.
    """
    young = np.where(np.isnan(age), False, age < 30)
    return (_CHURN_BASE + _CHURN_PER_INACTIVE_MONTH * np.minimum(months_inactive, _CHURN_INACTIVE_CAP)
            + _CHURN_PER_EXTRA_PRODUCT * np.maximum(n_owned - 1, 0) + _CHURN_NEW * (tenure_months < 12)
            + _CHURN_YOUNG * young)


def quiet_month_probability(p_adopt: np.ndarray, owned_txn: np.ndarray, close_txn: np.ndarray,
                            lam_txn: np.ndarray, n_days: int) -> np.ndarray:
    """P(no adoption and no transaction in a month) (n,) of a customer who does not churn in it.

    Adoptions, closures and transactions of different products are independent: no adoption has
    probability prod(1 - p_adopt); an owned transactional product with monthly rate ``lam`` gives no
    transaction with probability ``(1 - c) exp(-lam) + c mean_d exp(-lam d / n_days)``: it stays open the
    whole month, or closes (probability ``c``) after ``d`` days, d uniform on 0 .. n_days - 1.

    Args:
        p_adopt: (n, P) adoption probability of each candidate (0 elsewhere).
        owned_txn: (n, T) owned, for the transactional products.
        close_txn: (n, T) monthly closure probability of those products.
        lam_txn: (n, T) expected transactions of a whole owned month (> 0).
        n_days: days in the month.
    """
    no_adoption = np.prod(1.0 - p_adopt, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        partial = np.where(lam_txn > 0, np.expm1(-lam_txn) / (n_days * np.expm1(-lam_txn / n_days)), 1.0)
    no_txn = np.where(owned_txn, (1.0 - close_txn) * np.exp(-lam_txn) + close_txn * partial, 1.0)
    return no_adoption * no_txn.prod(axis=1)


# ------------------------------------------------------------------------------------- simulation


@dataclass
class _Rows:
    """Column buffers of one output table, as integer codes (strings are built at write time)."""

    cols: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, **arrays: np.ndarray) -> None:
        for k, v in arrays.items():
            self.cols.setdefault(k, []).append(v)

    def get(self, key: str, dtype: type) -> np.ndarray:
        parts = self.cols.get(key, [])
        return np.concatenate(parts) if parts else np.zeros(0, dtype)


class _Writers:
    """Lazily opened ParquetWriters for the streamed files."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.writers: dict[str, pq.ParquetWriter] = {}

    def write(self, name: str, table: pa.Table) -> None:
        if name not in self.writers:
            self.writers[name] = pq.ParquetWriter(self.out_dir / f"{name}.parquet", table.schema)
        if table.num_rows:
            self.writers[name].write_table(table)

    def close(self) -> None:
        for w in self.writers.values():
            w.close()


def _string_take(dictionary: pa.Array, codes: np.ndarray, null_mask: np.ndarray | None = None) -> pa.Array:
    """Plain string array ``dictionary[codes]`` (null where ``null_mask``)."""
    idx = pa.array(codes.astype(np.int64), mask=null_mask)
    return dictionary.take(idx)


def _date_array(days: np.ndarray, null_mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(days.astype("datetime64[D]"), type=pa.date32(), mask=null_mask)


@dataclass
class _ChunkResult:
    holdings: int
    transactions: int
    oracle_rows: int
    adoptions: int
    churns: int = 0
    churn_oracle_rows: int = 0


def _simulate_chunk(model: ProductModel, cal: _Calendar, months: int, seed: int, first_index: int, n: int,
                    id_width: int, writers: _Writers, with_oracle: bool) -> _ChunkResult:
    """Simulate customers [first_index, first_index + n) over all months and write their rows."""
    rng = _BlockRng(seed, first_index // RNG_BLOCK, n)
    idx = np.arange(first_index, first_index + n)
    cust = _generate_customers(rng, idx, cal, months)
    cust_ids = pa.array([f"C{i + 1:0{id_width}d}" for i in idx], pa.string())
    prod_ids = pa.array(model.ids, pa.string())
    n_prod = len(model.ids)
    txn_products = np.flatnonzero(model.txn_rate > 0)

    holdings = _Rows()
    owned, start_day, ever_closed = _initial_state(model, cal, cust, rng, holdings)
    spend = np.zeros((n, ACTIVITY_LOOKBACK_MONTHS))
    adds = np.zeros((n, ACTIVITY_LOOKBACK_MONTHS))
    last_txn = np.full(n, np.iinfo(np.int64).min // 2)
    last_txn_month = np.full(n, -1)  # month index of the last transaction (the month before month 0: active)
    lapsed = np.zeros(n, bool)  # churned: owns nothing, adopts with the lowest logit from then on
    txns = _Rows()
    oracle_rows = adoptions = churns = churn_oracle_rows = 0
    # every customer who joined before month 0 opened a product; there are no transactions before month 0
    ever_held = cust.join_month < 0
    population = (cust.joined <= cal.last_day(-1)) & (owned.any(axis=1) | ~ever_held)

    for k in range(months):
        s_prev = cal.last_day(k - 1)
        first, n_days = cal.first_day(k), cal.n_days(k)
        # ---- adoption and closure in month k from the state at s_{k-1}
        age = _ages(cust, cal.year(k - 1))
        eligible = _eligible(model, age)
        candidate = population[:, None] & ~owned & eligible
        tenure = np.maximum((s_prev - cust.joined) / DAYS_PER_MONTH, 0.0)
        since_start = (s_prev - start_day) / DAYS_PER_MONTH
        logit = adoption_logit(model, _static_logit(model, cust, age), owned, since_start,
                               ever_closed & ~owned, tenure, spend.sum(axis=1), adds.sum(axis=1))
        logit[lapsed] = _LOGIT_MIN
        p = _sigmoid(logit).astype(np.float32)
        u = rng.uniform(n_prod)
        # ---- churn in month k, decided on the state at s_{k-1}
        n_owned = owned.sum(axis=1)
        has_txn_product = owned[:, txn_products].any(axis=1)
        inactive = np.where(has_txn_product, np.minimum(k - 1 - last_txn_month, _CHURN_INACTIVE_CAP), 0)
        at_risk = population & ~lapsed & (n_owned > 0)  # a customer owning something may leave
        hazard = np.where(at_risk, _sigmoid(churn_logit(n_owned, inactive, tenure, age)), 0.0)
        churn = rng.uniform() < hazard
        close_p = np.where(eligible, model.close, np.maximum(model.close, _AGED_OUT_CLOSE))
        if with_oracle and k >= 1:
            ci, pi = np.nonzero(candidate)
            adopt_p = (p[ci, pi].astype(np.float64) * (1.0 - hazard[ci])).astype(np.float32)
            writers.write("oracle", pa.table({
                "customer_id": cust_ids.take(pa.array(ci)),
                "snapshot_on": _date_array(np.full(len(ci), s_prev)),
                "product_id": prod_ids.take(pa.array(pi)),
                "probability": pa.array(adopt_p, pa.float32()),
            }, schema=ORACLE_SCHEMA))
            oracle_rows += len(ci)
        if with_oracle and 1 <= k <= months - CHURN_HORIZON_MONTHS:
            prob = _churn_label_probability(
                model, cal, cust, k, np.where(candidate, p, 0.0), hazard, close_p, owned, start_day,
                ever_closed, ever_held, lapsed, spend, adds, last_txn, last_txn_month, txn_products)
            who = np.flatnonzero(population)
            writers.write("churn_oracle", pa.table({
                "customer_id": cust_ids.take(pa.array(who)),
                "snapshot_on": _date_array(np.full(len(who), s_prev)),
                "churn_hazard": pa.array(hazard[who], pa.float32()),
                "probability": pa.array(prob[who], pa.float32()),
            }, schema=CHURN_ORACLE_SCHEMA))
            churn_oracle_rows += len(who)
        pf = p.astype(np.float64)
        adopt = candidate & (u < pf) & ~churn[:, None]
        close = owned & ((u < close_p) | churn[:, None])
        adopt_day = first + np.minimum(np.floor(u / np.where(adopt, pf, 1.0) * n_days), n_days - 1)
        close_day = first + np.minimum(np.floor(u / np.where(close, close_p, 1.0) * n_days), n_days - 1)
        close_day = np.where(churn[:, None], first, close_day)  # a churner closes everything on day 1
        adopt_day = adopt_day.astype(np.int64)
        close_day = close_day.astype(np.int64)
        ci, pi = np.nonzero(close)
        holdings.add(c=ci, p=pi, start=start_day[ci, pi], end=close_day[ci, pi])
        adoptions += int(adopt.sum())
        churns += int(churn.sum())
        lapsed |= churn
        # ---- customers joining in month k open one product on joined_on (but the cold starts)
        joiners = np.flatnonzero((cust.join_month == k) & cust.opens_on_joining)
        opened = np.zeros_like(owned)
        if len(joiners):
            opening = _opening_product(model, cust, joiners, rng.uniform()[joiners])
            opened[joiners, opening] = True
        open_day = np.where(opened, cust.joined[:, None], 0)
        # ---- transactions in month k over the days each transactional product was owned
        lo = np.where(adopt, adopt_day, np.where(opened, open_day, first))[:, txn_products]
        hi = np.where(close, close_day, first + n_days)[:, txn_products]
        active = (owned | adopt | opened)[:, txn_products] & (hi > lo)
        lam = np.where(active, model.txn_rate[txn_products] * cust.activity[:, None]
                       * (hi - lo) / n_days, 0.0)
        counts = rng.poisson(lam)
        month_spend, month_last = _transactions(model, cust, txn_products, counts, lo, hi, rng, txns)
        # ---- state at s_k
        new = adopt | opened
        owned = (owned & ~close) | new
        start_day = np.where(adopt, adopt_day, np.where(opened, open_day, start_day))
        ever_closed |= close
        ever_held |= new.any(axis=1)
        slot = k % ACTIVITY_LOOKBACK_MONTHS
        spend[:, slot] = month_spend
        adds[:, slot] = new.sum(axis=1)
        last_txn = np.maximum(last_txn, month_last)
        last_txn_month[month_last >= first] = k
        s_k = cal.last_day(k)
        recent_txn = last_txn > cal.minus_months(k, ACTIVITY_LOOKBACK_MONTHS)
        population = (cust.joined <= s_k) & (owned.any(axis=1) | recent_txn | ~ever_held)

    ci, pi = np.nonzero(owned)
    holdings.add(c=ci, p=pi, start=start_day[ci, pi], end=np.full(len(ci), -1))
    n_hold = _write_holdings(holdings, cust_ids, prod_ids, writers)
    n_txn = _write_transactions(txns, cust_ids, prod_ids, writers)
    _write_customers(cust, cust_ids, writers)
    return _ChunkResult(holdings=n_hold, transactions=n_txn, oracle_rows=oracle_rows, adoptions=adoptions,
                        churns=churns, churn_oracle_rows=churn_oracle_rows)


def _churn_label_probability(model: ProductModel, cal: _Calendar, cust: _Customers, k: int,
                             p_adopt: np.ndarray, hazard: np.ndarray, close_p: np.ndarray, owned: np.ndarray,
                             start_day: np.ndarray, ever_closed: np.ndarray, ever_held: np.ndarray,
                             lapsed: np.ndarray, spend: np.ndarray, adds: np.ndarray, last_txn: np.ndarray,
                             last_txn_month: np.ndarray, txn_products: np.ndarray) -> np.ndarray:
    """P(churn label at s_{k-1}) (n,): no transaction and no new holding in months k and k + 1.

    ``h0 + (1 - h0) q0 (h1 + (1 - h1) q1)``: churning in month k (hazard ``h0``, decided on the state at
    s_{k-1}) leaves both months quiet; otherwise month k must be quiet (``q0``, exact:
    ``quiet_month_probability``), then the customer churns in month k + 1 (``h1``) or month k + 1 is
    quiet too (``q1``). ``h1`` and ``q1`` are those of the state at s_k after a quiet month k in which no
    holding closed (closures, about 1% of holdings a month, are ignored there): one month older, no spend
    and no adoption in month k, one more month since the last transaction.
    """
    lookback = ACTIVITY_LOOKBACK_MONTHS
    txn_rate = model.txn_rate[txn_products]
    lam = txn_rate * cust.activity[:, None]
    q0 = quiet_month_probability(p_adopt, owned[:, txn_products], close_p[:, txn_products], lam,
                                 cal.n_days(k))
    # the state at s_k after a quiet month k without churn or closure
    s_k = cal.last_day(k)
    age1 = _ages(cust, cal.year(k))
    eligible1 = _eligible(model, age1)
    tenure1 = np.maximum((s_k - cust.joined) / DAYS_PER_MONTH, 0.0)
    spend1, adds1 = spend.copy(), adds.copy()
    spend1[:, k % lookback] = 0.0
    adds1[:, k % lookback] = 0.0
    recent1 = last_txn > cal.minus_months(k, lookback)
    population1 = (cust.joined <= s_k) & (owned.any(axis=1) | recent1 | ~ever_held)
    since_start1 = (s_k - start_day) / DAYS_PER_MONTH
    logit1 = adoption_logit(model, _static_logit(model, cust, age1), owned, since_start1,
                            ever_closed & ~owned, tenure1, spend1.sum(axis=1), adds1.sum(axis=1))
    logit1[lapsed] = _LOGIT_MIN
    p1 = np.where(population1[:, None] & ~owned & eligible1, _sigmoid(logit1).astype(np.float32), 0.0)
    close1 = np.where(eligible1, model.close, np.maximum(model.close, _AGED_OUT_CLOSE))
    q1 = quiet_month_probability(p1, owned[:, txn_products], close1[:, txn_products], lam, cal.n_days(k + 1))
    has_txn_product = owned[:, txn_products].any(axis=1)
    inactive1 = np.where(has_txn_product, np.minimum(k - last_txn_month, _CHURN_INACTIVE_CAP), 0)
    h1 = np.where(population1 & ~lapsed & owned.any(axis=1),
                  _sigmoid(churn_logit(owned.sum(axis=1), inactive1, tenure1, age1)), 0.0)
    return hazard + (1.0 - hazard) * q0 * (h1 + (1.0 - h1) * q1)


def _opening_product(model: ProductModel, cust: _Customers, who: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Product index each customer in ``who`` opens on joined_on, chosen by its age in the joining year.

    Known minors open a junior account, 18-25 year olds a student account half of the time, everybody
    else a current account (88%) or an instant saver.
    """
    age = np.where(cust.birth_year[who] >= 0, _day_year(cust.joined[who]) - cust.birth_year[who], -1)
    out = np.where(u < 0.88, model.index("current_account"), model.index("instant_saver"))
    out = np.where((age >= 18) & (age <= 25) & (u < 0.5), model.index("student_account"), out)
    out = np.where((age >= 0) & (age <= 17), model.index("junior_account"), out)
    return out


def _initial_state(model: ProductModel, cal: _Calendar, cust: _Customers, rng: _BlockRng,
                   holdings: _Rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Holdings of customers who joined before month 0, as of the day before month 0.

    Every such customer opened one product on joined_on (5% closed it since); other eligible products
    are owned with probability sigmoid(base + initial + static part + current-account complement),
    started uniformly between the first eligible day and the day before month 0; not-owned products were
    held and closed before with a quarter of that probability. Closed intervals are added to ``holdings``.

    Returns:
        owned (n, P) bool, start_day (n, P) epoch day of the open interval, ever_closed (n, P) bool.
    """
    n, n_prod = len(cust.idx), len(model.ids)
    u = rng.uniform(n_prod, 4)
    u_open = rng.uniform(2)
    last = cal.last_day(-1)
    old = cust.join_month < 0
    age = _ages(cust, cal.year(-1))
    eligible = _eligible(model, age) & old[:, None]
    # the first day each product could have been held: joined_on, or 1 January of the min_age year
    by = np.where(cust.birth_year >= 0, cust.birth_year, 1900)
    min_age = np.where(np.isnan(model.min_age), -200, model.min_age).astype(np.int64)
    lo = np.maximum(cust.joined[:, None], _year_start_day(by[:, None] + min_age[None, :]))
    span = last - lo  # days available before month 0 (>= 0 when eligible)
    eligible &= span >= 0

    opening = np.full(n, -1)
    who = np.flatnonzero(old)
    opening[who] = _opening_product(model, cust, who, u_open[who, 0])
    has_opening = np.zeros((n, n_prod), bool)
    has_opening[who, opening[who]] = True

    static = _static_logit(model, cust, age)
    logit = (model.base + model.initial + static
             + has_opening.astype(float) @ model.complement_t)
    p_own = _sigmoid(logit)
    owned = eligible & (u[:, :, 0] < p_own) & ~has_opening
    start = lo + np.floor(u[:, :, 1] * (span + 1)).astype(np.int64)
    start = np.where(has_opening, cust.joined[:, None], start)
    # the opening product stays open for 95%
    opening_closed = has_opening & (u_open[:, 1:2] < 0.05) & (last - cust.joined[:, None] >= 1)
    owned |= has_opening & ~opening_closed
    # earlier, closed intervals: [a, b) with lo <= a < b <= last
    prev = (eligible & ~owned & ~has_opening & (u[:, :, 2] < 0.25 * p_own) & (span >= 1)) | opening_closed
    a = np.where(has_opening, cust.joined[:, None], lo + np.floor(u[:, :, 3] * span).astype(np.int64))
    b = a + 1 + np.floor(u[:, :, 2] / np.maximum(0.25 * p_own, 1e-12) * (last - a)).astype(np.int64)
    b = np.where(opening_closed, a + 1 + np.floor(u_open[:, 1:2] / 0.05 * (last - a)).astype(np.int64), b)
    b = np.minimum(b, last)
    ci, pi = np.nonzero(prev)
    holdings.add(c=ci, p=pi, start=a[ci, pi], end=b[ci, pi])
    return owned, np.where(owned, start, 0), prev.copy()


def _transactions(model: ProductModel, cust: _Customers, txn_products: np.ndarray, counts: np.ndarray,
                  lo: np.ndarray, hi: np.ndarray, rng: _BlockRng,
                  out: _Rows) -> tuple[np.ndarray, np.ndarray]:
    """Draw one month's transactions of a chunk; returns per-customer spend and last transaction day."""
    n = len(cust.idx)
    flat = counts.ravel()
    u, z = rng.per_event(counts.sum(axis=1), 3)
    cell = np.repeat(np.arange(flat.size), flat)
    c = cell // len(txn_products)
    j = cell % len(txn_products)
    p = txn_products[j]
    lo_e, hi_e = lo.ravel()[cell], hi.ravel()[cell]
    day = lo_e + np.floor(u[:, 0] * (hi_e - lo_e)).astype(np.int64)
    seconds = np.floor(u[:, 1] * 86_400).astype(np.int64)
    z_inc = np.where(np.isnan(cust.income[c]), 0.0,
                     (np.log(np.maximum(cust.income[c], 1.0)) - _INCOME_LOG_MEAN) / _INCOME_LOG_SD)
    amount = np.round(np.exp(model.amount_mu[p] + 0.3 * z_inc + 0.9 * z), 2)
    product = np.where(u[:, 2] < _NULL_PRODUCT_TXN_SHARE, -1, p)
    out.add(c=c, p=product, ts=(day * 86_400 + seconds) * 1_000_000, amount=amount)
    month_spend = np.bincount(c, weights=amount, minlength=n)
    month_last = np.full(n, np.iinfo(np.int64).min // 2)
    np.maximum.at(month_last, c, day)
    return month_spend, month_last


def _write_holdings(rows: _Rows, cust_ids: pa.Array, prod_ids: pa.Array, writers: _Writers) -> int:
    c, p = rows.get("c", np.int64), rows.get("p", np.int64)
    start, end = rows.get("start", np.int64), rows.get("end", np.int64)
    order = np.lexsort((start, p, c))
    c, p, start, end = c[order], p[order], start[order], end[order]
    writers.write("holdings", pa.table({
        "customer_id": _string_take(cust_ids, c),
        "product_id": _string_take(prod_ids, p),
        "started_on": _date_array(start),
        "ended_on": _date_array(np.maximum(end, 0), null_mask=end < 0),
    }, schema=HOLDING_SCHEMA))
    return len(c)


def _write_transactions(rows: _Rows, cust_ids: pa.Array, prod_ids: pa.Array, writers: _Writers) -> int:
    c, p = rows.get("c", np.int64), rows.get("p", np.int64)
    ts, amount = rows.get("ts", np.int64), rows.get("amount", np.float64)
    order = np.lexsort((p, ts, c))
    c, p, ts, amount = c[order], p[order], ts[order], amount[order]
    writers.write("transactions", pa.table({
        "customer_id": _string_take(cust_ids, c),
        "product_id": _string_take(prod_ids, np.maximum(p, 0), null_mask=p < 0),
        "occurred_at": pa.array(ts.astype("datetime64[us]"), pa.timestamp("us")),
        "amount": pa.array(amount, pa.float64()),
    }, schema=TRANSACTION_SCHEMA))
    return len(c)


def _write_customers(cust: _Customers, cust_ids: pa.Array, writers: _Writers) -> None:
    segs = pa.array(SEGMENTS, pa.string())
    regions = pa.array(REGIONS, pa.string())
    writers.write("customers", pa.table({
        "customer_id": cust_ids,
        "joined_on": _date_array(cust.joined),
        "birth_year": pa.array(cust.birth_year, pa.int64(), mask=cust.birth_year < 0),
        "income": pa.array(cust.income, pa.float64(), mask=np.isnan(cust.income)),
        "segment": _string_take(segs, np.maximum(cust.segment, 0), null_mask=cust.segment < 0),
        "region": _string_take(regions, np.maximum(cust.region, 0), null_mask=cust.region < 0),
        "email_opt_in": pa.array(cust.email_opt_in, pa.bool_()),
    }, schema=CUSTOMER_SCHEMA))


def products_table(products: tuple[ProductSpec, ...] = PRODUCTS) -> pa.Table:
    """The products file: one row per product with its contract columns."""
    return pa.table({
        "product_id": [p.product_id for p in products],
        "product_name": [p.product_name for p in products],
        "category": [p.category for p in products],
        "min_age": [p.min_age for p in products],
        "max_age": [p.max_age for p in products],
    }, schema=PRODUCT_SCHEMA)


def _chunks(customers: int, chunk_size: int) -> Iterator[tuple[int, int]]:
    """(first index, size) of each chunk; chunk_size is rounded up to a multiple of RNG_BLOCK."""
    size = -(-chunk_size // RNG_BLOCK) * RNG_BLOCK
    for first in range(0, customers, size):
        yield first, min(size, customers - first)


def generate_synthetic(out_dir: Path, customers: int = 20_000, months: int = 24, seed: int = 0,
                       start_month: date = date(2023, 1, 1), chunk_size: int = 50_000,
                       with_oracle: bool = True) -> SyntheticSummary:
    """Write a synthetic bank dataset in the raw contract to ``out_dir`` (created if missing).

    Files: customers, products, holdings, transactions, oracle (if ``with_oracle``) parquet and
    dataset.json (``observed_until`` = last day of the last month, ``burn_in_months`` = 0).

    Args:
        out_dir: target directory; existing files of the same names are overwritten.
        customers: number of customers, >= 1 (ids ``C0000001`` ...).
        months: generated months, >= 2 (snapshots: the last day of each; the oracle covers all but the last).
        seed: any non-negative integer; the output is a pure function of (seed, customers, months,
            start_month).
        start_month: any day of the first generated month.
        chunk_size: customers simulated at once (memory ~ chunk_size x 24 products x a few hundred bytes).
        with_oracle: write oracle.parquet (about 20 rows per customer and snapshot).

    Returns:
        A summary with the row counts and the seconds taken.

    Raises:
        ValueError: on customers < 1, months < 2, seed < 0 or chunk_size < 1.
    """
    if customers < 1 or months < 2 or seed < 0 or chunk_size < 1:
        raise ValueError(f"need customers >= 1, months >= 2, seed >= 0, chunk_size >= 1; got "
                         f"customers={customers}, months={months}, seed={seed}, chunk_size={chunk_size}")
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = build_model()
    cal = _Calendar(np.datetime64(start_month, "M"))
    id_width = max(7, len(str(customers)))
    if not with_oracle:
        for name in ("oracle", "churn_oracle"):
            (out_dir / f"{name}.parquet").unlink(missing_ok=True)
    pq.write_table(products_table(), out_dir / "products.parquet")
    writers = _Writers(out_dir)
    totals = _ChunkResult(0, 0, 0, 0)
    try:
        for first, size in _chunks(customers, chunk_size):
            r = _simulate_chunk(model, cal, months, seed, first, size, id_width, writers, with_oracle)
            totals = _ChunkResult(totals.holdings + r.holdings, totals.transactions + r.transactions,
                                  totals.oracle_rows + r.oracle_rows, totals.adoptions + r.adoptions,
                                  totals.churns + r.churns, totals.churn_oracle_rows + r.churn_oracle_rows)
        if with_oracle and "oracle" not in writers.writers:
            writers.write("oracle", ORACLE_SCHEMA.empty_table())
        if with_oracle and "churn_oracle" not in writers.writers:
            writers.write("churn_oracle", CHURN_ORACLE_SCHEMA.empty_table())
    finally:
        writers.close()
    observed_until = to_date(cal.last_day(months - 1))
    meta = {"name": DATASET_NAME, "observed_until": observed_until.isoformat(), "burn_in_months": 0}
    (out_dir / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    return SyntheticSummary(
        out_dir=out_dir, customers=customers, months=months, seed=seed,
        first_snapshot_on=to_date(cal.last_day(0)), observed_until=observed_until,
        holdings=totals.holdings, transactions=totals.transactions, oracle_rows=totals.oracle_rows,
        adoptions=totals.adoptions, seconds=time.perf_counter() - t0, churns=totals.churns,
        churn_oracle_rows=totals.churn_oracle_rows,
    )
