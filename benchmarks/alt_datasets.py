"""Alternative datasets in the raw contract, with mechanisms unlike ``nextbest/ingest/synthetic.py``: an
independent check that the ranker trained with the default config reaches the oracle.

``generate_alt(out_dir, variant, customers, months, seed)`` simulates month by month one of
``VARIANTS`` (``telecom``: 18 products in 5 categories; ``insurer``: 16 products in 5 categories) and
writes customers, products, holdings, transactions, ``oracle.parquet`` and ``dataset.json`` (name
``acme-<variant>``, ``burn_in_months`` 0). The files are shaped unlike the synthetic bank: integer
customer and product ids, ``joined_on`` as a timestamp with a time of day, ``birth_year`` partly null.

The adoption logit of candidate product j for customer i at month-end snapshot s (month index m) is a
sum of additive terms, each a mechanism the synthetic bank does not have in this form:

* **life stage**: ``age_weight_j * exp(-((age - age_peak_j) / age_width_j)^2)`` with
  ``age = year(s) - birth_year``; an unknown age gets ``UNKNOWN_AGE_SHARE`` of the weight;
* **seasonality**: ``season_j[calendar month of m + 1]`` (travel in summer, devices in Nov/Dec, ...);
* **tenure**: ``early_j`` while ``1 <= tenure <= EARLY_TENURE_MONTHS`` (early upgrades) and ``loyal_j``
  once ``tenure >= LOYALTY_TENURE_MONTHS`` (loyalty offers), tenure = months from the join month to m;
* **category spend**: ``spend_beta_j * log1p(spend_3m(i, category_j) / SPEND_SCALE)`` where spend_3m is
  the amount of transactions naming a product of j's category in months m-2..m;
* **sequences**: ``boost`` while ``0 <= m - (start month of the latest holding of a) < window`` for each
  rule ``a -> j`` (product j follows product a within a few months; a step, not a decay);
* **first product**: ``entry_j`` while the customer has never held a product (prospects);
* income (``income_beta_j * log(income / median)``, 0 when null) and segment offsets.

Per month k (state at s_{k-1}): the candidates of the population at s_{k-1} adopt with ``u < p``
(``p`` as float32 = the oracle value) on a uniform day of month k; products owned at s_{k-1} close
with their monthly churn on a uniform day of month k; customers joining in month k open an entry product
on the join day, except ``prospect_share`` of them who open nothing; then month k's transactions are
drawn: each owned product with a transaction rate (scaled by a hidden customer x category affinity, so
category spend varies) on days it is owned, and product-less payments at a customer rate (zero for a
share of customers, who can become dormant). Only population candidates adopt.

Population, candidates and labels follow the README exactly: population at s = ``joined_on <= s`` and
not dormant (dormant = held a product on or before s, owns nothing at s and no transaction in the 3
calendar months ending with s's month); candidate = not owned at s and eligible (a product with an age
bound needs a known age within ``[min_age, max_age]``); an adoption = a holding starting in the month
after s. Customers joined before month 0 hold products started before it; no transaction predates
month 0, so the snapshots (from the first transaction month) start at month 0. Deterministic for a
(variant, seed).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ACTIVITY_LOOKBACK_MONTHS = 3
"""Calendar months (ending with the snapshot's) in which a transaction keeps a customer out of dormancy."""
EARLY_TENURE_MONTHS = 6
LOYALTY_TENURE_MONTHS = 24
UNKNOWN_AGE_SHARE = 0.3
SPEND_SCALE = 20.0
PRE_WINDOW_YEARS = 8
"""Customers joined before the window joined within this many years before month 0."""
CUSTOMER_ID_OFFSET = 700_000
LOGIT_TERMS = ("base", "income", "segment", "life_stage", "season", "tenure", "spend", "sequence", "entry")
"""The adoption logit's additive terms (``_Sim.logit_terms``), in the order they are summed."""


@dataclass(frozen=True)
class AltProduct:
    """One product and its adoption mechanism terms (logit units); see the module docstring."""

    product_id: int
    name: str
    category: str
    base: float
    min_age: int | None = None
    max_age: int | None = None
    age_peak: float = 40.0
    age_width: float = 20.0
    age_weight: float = 0.0
    season: Mapping[int, float] = field(default_factory=dict)
    early: float = 0.0
    loyal: float = 0.0
    spend_beta: float = 0.0
    entry: float = 0.0
    income_beta: float = 0.0
    churn: float = 0.02
    txn_rate: float = 0.0
    txn_amount: float = 0.0


@dataclass(frozen=True)
class AltVariant:
    """A dataset family: products, sequence rules ``(a, b, boost, window_months)``, segment offsets."""

    name: str
    start: date
    products: tuple[AltProduct, ...]
    sequences: tuple[tuple[int, int, float, int], ...]
    segments: Mapping[str, Mapping[int, float]]
    prospect_share: float
    pre_window_share: float
    birth_year_null_share: float
    general_txn_zero_share: float


P = AltProduct
SUMMER = {6: 1.6, 7: 2.2, 8: 1.5, 12: 0.6}
TELECOM = AltVariant(
    name="telecom",
    start=date(2022, 1, 1),
    products=(
        P(101, "prepaid sim", "mobile", -5.0, age_peak=22, age_width=10, age_weight=1.5, entry=3.0,
          income_beta=-0.5, churn=0.04, txn_rate=3.0, txn_amount=10.0),
        P(102, "postpaid plan", "mobile", -5.2, age_peak=35, age_width=15, age_weight=1.0, entry=2.5,
          churn=0.015, txn_rate=1.0, txn_amount=35.0),
        P(103, "family plan", "mobile", -6.5, min_age=25, age_peak=40, age_width=8, age_weight=1.8,
          loyal=0.8, churn=0.01, txn_rate=1.0, txn_amount=60.0),
        P(104, "data add-on", "mobile", -5.0, age_peak=25, age_width=12, age_weight=1.0, early=1.5,
          spend_beta=0.35, churn=0.08, txn_rate=2.0, txn_amount=8.0),
        P(105, "roaming pass", "mobile", -7.0, season=SUMMER, spend_beta=0.2, churn=0.5,
          txn_rate=2.0, txn_amount=15.0),
        P(201, "smartphone", "devices", -6.0, age_peak=30, age_width=15, age_weight=0.8,
          season={11: 1.2, 12: 1.6}, loyal=1.0, income_beta=0.4, churn=0.03),
        P(202, "tablet", "devices", -7.0, age_peak=45, age_width=15, age_weight=0.8,
          season={11: 1.3, 12: 1.8}, income_beta=0.5, churn=0.02),
        P(203, "smartwatch", "devices", -7.2, min_age=16, max_age=70, age_peak=32, age_width=10,
          age_weight=1.2, season={12: 1.2}, income_beta=0.4, churn=0.03),
        P(204, "device insurance", "devices", -7.5, spend_beta=0.3, churn=0.02, txn_rate=1.0,
          txn_amount=8.0),
        P(301, "fiber broadband", "home", -6.3, min_age=18, age_peak=38, age_width=14, age_weight=1.0,
          early=1.0, entry=1.0, churn=0.012, txn_rate=1.0, txn_amount=45.0),
        P(302, "tv package", "home", -7.3, age_peak=50, age_width=18, age_weight=1.0, spend_beta=0.3,
          churn=0.015, txn_rate=1.0, txn_amount=30.0),
        P(303, "landline", "home", -7.0, min_age=45, age_peak=70, age_width=12, age_weight=1.5,
          churn=0.02, txn_rate=1.0, txn_amount=15.0),
        P(304, "smart home", "home", -7.5, age_peak=40, age_width=12, age_weight=0.8, spend_beta=0.4,
          churn=0.02, txn_rate=1.0, txn_amount=10.0),
        P(401, "music streaming", "entertainment", -6.0, max_age=60, age_peak=24, age_width=10,
          age_weight=1.5, spend_beta=0.5, churn=0.05, txn_rate=1.0, txn_amount=10.0),
        P(402, "video streaming", "entertainment", -6.0, age_peak=35, age_width=20, age_weight=0.8,
          season={1: 0.6, 11: 0.3, 12: 0.6}, spend_beta=0.5, churn=0.04, txn_rate=1.0,
          txn_amount=12.0),
        P(403, "gaming pass", "entertainment", -6.8, min_age=13, max_age=45, age_peak=20, age_width=8,
          age_weight=1.5, spend_beta=0.5, churn=0.06, txn_rate=2.0, txn_amount=8.0),
        P(501, "cloud storage", "services", -7.0, spend_beta=0.2, churn=0.02, txn_rate=1.0,
          txn_amount=3.0),
        P(502, "device financing", "services", -7.5, min_age=18, max_age=75, churn=0.01, txn_rate=1.0,
          txn_amount=30.0),
        P(503, "loyalty bundle", "services", -7.5, loyal=2.5, churn=0.01),
    ),
    sequences=(
        (201, 204, 3.0, 2), (202, 204, 2.0, 2), (201, 502, 3.5, 1), (201, 501, 1.5, 3),
        (301, 302, 2.5, 3), (301, 304, 1.5, 6), (102, 103, 1.2, 4),
    ),
    segments={"youth": {101: 0.8, 401: 0.6, 403: 0.8, 303: -1.0}, "business": {102: 0.6, 202: 0.8,
              501: 1.0, 403: -1.0}, "consumer": {}},
    prospect_share=0.3,
    pre_window_share=0.6,
    birth_year_null_share=0.08,
    general_txn_zero_share=0.4,
)
INSURER = AltVariant(
    name="insurer",
    start=date(2021, 7, 1),
    products=(
        P(11, "car insurance", "motor", -6.0, min_age=18, age_peak=30, age_width=12, age_weight=1.5,
          entry=2.5, churn=0.015, txn_rate=1.0, txn_amount=60.0),
        P(12, "roadside assistance", "motor", -7.5, churn=0.03, txn_rate=1.0, txn_amount=6.0),
        P(13, "motorbike insurance", "motor", -7.5, min_age=18, max_age=70, age_peak=25, age_width=8,
          age_weight=1.5, season={3: 1.0, 4: 1.5, 5: 1.2}, churn=0.05, txn_rate=1.0, txn_amount=25.0),
        P(21, "home insurance", "property", -6.5, min_age=21, age_peak=38, age_width=10, age_weight=2.0,
          entry=1.5, income_beta=0.5, churn=0.008, txn_rate=1.0, txn_amount=35.0),
        P(22, "contents insurance", "property", -6.0, age_peak=26, age_width=8, age_weight=1.5,
          entry=1.5, churn=0.03, txn_rate=1.0, txn_amount=12.0),
        P(23, "legal protection", "property", -7.5, churn=0.02, txn_rate=1.0, txn_amount=8.0),
        P(24, "pet insurance", "property", -7.0, age_peak=35, age_width=15, age_weight=0.8,
          season={6: 0.5}, churn=0.03, txn_rate=1.0, txn_amount=20.0),
        P(31, "term life", "life", -7.0, min_age=18, max_age=65, age_peak=34, age_width=6,
          age_weight=2.5, income_beta=0.4, churn=0.005, txn_rate=1.0, txn_amount=25.0),
        P(32, "income protection", "life", -7.2, min_age=18, max_age=60, age_peak=40, age_width=8,
          age_weight=1.5, churn=0.01, txn_rate=1.0, txn_amount=30.0),
        P(33, "funeral plan", "life", -7.5, min_age=50, age_peak=68, age_width=8, age_weight=2.0,
          loyal=0.8, churn=0.005, txn_rate=1.0, txn_amount=15.0),
        P(41, "health insurance", "health", -6.8, age_peak=45, age_width=15, age_weight=1.0, early=1.2,
          loyal=0.6, spend_beta=0.3, income_beta=0.6, churn=0.02, txn_rate=1.5, txn_amount=50.0),
        P(42, "dental plan", "health", -7.0, spend_beta=0.5, churn=0.03, txn_rate=1.0, txn_amount=15.0),
        P(43, "optical plan", "health", -7.5, min_age=40, age_peak=60, age_width=15, age_weight=1.0,
          spend_beta=0.4, churn=0.02, txn_rate=1.0, txn_amount=10.0),
        P(51, "single-trip travel", "travel", -7.5, season=SUMMER, spend_beta=0.5, income_beta=0.3,
          churn=0.7, txn_rate=1.0, txn_amount=20.0),
        P(52, "annual travel", "travel", -8.0, season={1: 1.0, 6: 1.0, 7: 1.0}, loyal=1.0,
          spend_beta=0.6, income_beta=0.6, churn=0.02, txn_rate=1.0, txn_amount=10.0),
        P(53, "ski cover", "travel", -8.0, max_age=65, season={12: 2.0, 1: 2.5, 2: 2.0},
          spend_beta=0.4, churn=0.6, txn_rate=1.0, txn_amount=25.0),
    ),
    sequences=(
        (11, 12, 3.0, 2), (21, 23, 2.0, 4), (11, 23, 1.0, 4), (21, 31, 1.8, 3), (31, 32, 1.5, 3),
        (41, 42, 2.2, 3), (41, 43, 1.0, 6), (51, 52, 1.5, 6),
    ),
    segments={"broker": {21: 0.5, 31: 0.6, 32: 0.6}, "affinity": {24: 1.0, 51: 0.5}, "direct": {}},
    prospect_share=0.4,
    pre_window_share=0.5,
    birth_year_null_share=0.15,
    general_txn_zero_share=0.6,
)
del P
VARIANTS: Mapping[str, AltVariant] = {v.name: v for v in (TELECOM, INSURER)}
REGIONS = ("north", "south", "east", "west", "capital")


@dataclass(frozen=True)
class AltSummary:
    """What ``generate_alt`` wrote: counts, the last observed day, the dataset name."""

    name: str
    customers: int
    holdings: int
    transactions: int
    oracle_rows: int
    adoptions: int
    observed_until: date


@dataclass
class _Arrays:
    """The product table as arrays (one entry per product, catalogue order)."""

    ids: np.ndarray
    cat: np.ndarray
    n_cat: int
    base: np.ndarray
    min_age: np.ndarray
    max_age: np.ndarray
    has_bound: np.ndarray
    age_peak: np.ndarray
    age_width: np.ndarray
    age_weight: np.ndarray
    season: np.ndarray  # (12, P): month of year 1..12 at row month - 1
    early: np.ndarray
    loyal: np.ndarray
    spend_beta: np.ndarray
    entry: np.ndarray
    income_beta: np.ndarray
    churn: np.ndarray
    txn_rate: np.ndarray
    txn_amount: np.ndarray


def _arrays(variant: AltVariant) -> _Arrays:
    prods = variant.products
    cats = sorted({p.category for p in prods})

    def arr(attr: str) -> np.ndarray:
        return np.array([getattr(p, attr) for p in prods], dtype=float)

    season = np.zeros((12, len(prods)))
    for j, p in enumerate(prods):
        for month, value in p.season.items():
            season[month - 1, j] = value
    min_age = np.array([-1 if p.min_age is None else p.min_age for p in prods])
    max_age = np.array([999 if p.max_age is None else p.max_age for p in prods])
    return _Arrays(
        ids=np.array([p.product_id for p in prods], dtype=np.int64),
        cat=np.array([cats.index(p.category) for p in prods]),
        n_cat=len(cats),
        base=arr("base"),
        min_age=min_age,
        max_age=max_age,
        has_bound=np.array([p.min_age is not None or p.max_age is not None for p in prods]),
        age_peak=arr("age_peak"),
        age_width=arr("age_width"),
        age_weight=arr("age_weight"),
        season=season,
        early=arr("early"),
        loyal=arr("loyal"),
        spend_beta=arr("spend_beta"),
        entry=arr("entry"),
        income_beta=arr("income_beta"),
        churn=arr("churn"),
        txn_rate=arr("txn_rate"),
        txn_amount=arr("txn_amount"),
    )


def _month_start(month_index: int) -> np.datetime64:
    return np.datetime64(f"{month_index // 12:04d}-{month_index % 12 + 1:02d}-01", "D")


def _days(month_index: int) -> tuple[int, int]:
    """First and last epoch day of a running month index (year * 12 + month - 1)."""
    first = _month_start(month_index).astype(np.int64)
    return int(first), int(_month_start(month_index + 1).astype(np.int64)) - 1


def _month_of_day(days: np.ndarray) -> np.ndarray:
    months = np.asarray(days).astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    return months + 1970 * 12


def logit_of(terms: Mapping[str, np.ndarray]) -> np.ndarray:
    """The adoption logit: the sum of ``_Sim.logit_terms``, in ``LOGIT_TERMS`` order."""
    total = terms[LOGIT_TERMS[0]]
    for name in LOGIT_TERMS[1:]:
        total = total + terms[name]
    return total


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _uniform_day(rng: np.random.Generator, lo: np.ndarray, hi: int) -> np.ndarray:
    """A uniform integer day in ``[lo, hi]`` per element."""
    lo = np.asarray(lo, dtype=np.int64)
    return lo + np.floor(rng.random(lo.shape) * (hi - lo + 1)).astype(np.int64)


class _Sim:
    """The simulation state: customers x products, plus the rows written so far."""

    def __init__(self, variant: AltVariant, n: int, months: int, rng: np.random.Generator) -> None:
        self.v, self.a, self.rng, self.n, self.months = variant, _arrays(variant), rng, n, months
        a, n_p = self.a, len(variant.products)
        self.m0 = variant.start.year * 12 + variant.start.month - 1
        first0, _ = _days(self.m0)
        # customers
        pre = rng.random(n) < variant.pre_window_share
        pre_day = first0 - 1 - np.floor(rng.random(n) * 365.25 * PRE_WINDOW_YEARS).astype(np.int64)
        bounds = np.array([_days(self.m0 + k) for k in range(months + 1)])  # first, last day per month
        join_k = np.floor(rng.random(n) * months).astype(np.int64)
        in_day = bounds[join_k, 0] + np.floor(rng.random(n) * (bounds[join_k, 1] - bounds[join_k, 0] + 1))
        in_day = in_day.astype(np.int64)
        self.joined_day = np.where(pre, pre_day, in_day)
        self.joined_seconds = np.floor(rng.random(n) * 86_400).astype(np.int64)
        self.joined_month = _month_of_day(self.joined_day)
        age0 = 18 + 62 * rng.beta(1.6, 2.2, n)
        self.birth_year = (variant.start.year - np.round(age0)).astype(np.int64)
        self.age_known = rng.random(n) >= variant.birth_year_null_share
        income = np.exp(rng.normal(np.log(32_000), 0.5, n)).round(-2)
        self.income = np.where(rng.random(n) < 0.1, np.nan, income)
        seg_names = sorted(variant.segments)
        self.segment = rng.choice(len(seg_names), size=n, p=[0.2, 0.5, 0.3][: len(seg_names)])
        self.region = rng.integers(0, len(REGIONS), n)
        self.prospect = (~pre) & (rng.random(n) < variant.prospect_share)
        self.affinity = np.exp(rng.normal(0.0, 0.8, (n, a.n_cat)))
        general = rng.gamma(1.5, 1.0, n)
        self.general_rate = np.where(rng.random(n) < variant.general_txn_zero_share, 0.0, general)
        # static logit part (no age, season, tenure, spend, sequence, entry)
        inc = np.where(np.isnan(self.income), 0.0, np.log(np.nan_to_num(self.income, nan=32_000) / 32_000))
        seg_off = np.zeros((len(seg_names), n_p))
        for s, name in enumerate(seg_names):
            for pid, value in variant.segments[name].items():
                seg_off[s, list(a.ids).index(pid)] = value
        self.static_terms = {
            "base": np.broadcast_to(a.base[None, :], (n, n_p)),
            "income": inc[:, None] * a.income_beta[None, :],
            "segment": seg_off[self.segment],
        }
        self.static = self.static_terms["base"] + self.static_terms["income"] + self.static_terms["segment"]
        self.seq = [(list(a.ids).index(x), list(a.ids).index(y), b, w) for x, y, b, w in variant.sequences]
        # state
        self.owned = np.zeros((n, n_p), dtype=bool)
        self.open_start = np.zeros((n, n_p), dtype=np.int64)
        self.last_start_month = np.full((n, n_p), -10_000, dtype=np.int64)
        self.ever_held = np.zeros(n, dtype=bool)
        self.txn_count = np.zeros((months, n), dtype=np.int64)
        self.cat_spend = np.zeros((months, n, a.n_cat))
        self.holdings: list[tuple[np.ndarray, ...]] = []
        self.transactions: list[tuple[np.ndarray, ...]] = []
        self.adoptions = 0

    # ------------------------------------------------------------------ mechanisms

    def ages(self, month_index: int) -> np.ndarray:
        return (month_index // 12) - self.birth_year

    def eligible(self, month_index: int) -> np.ndarray:
        a, age = self.a, self.ages(month_index)[:, None]
        within = (age >= a.min_age[None, :]) & (age <= a.max_age[None, :]) & self.age_known[:, None]
        return np.where(a.has_bound[None, :], within, True)

    def logit_terms(self, k: int) -> dict[str, np.ndarray]:
        """The logit's additive terms at the snapshot of window month k, one per mechanism of the module
        docstring (``LOGIT_TERMS``; customers x products, or broadcastable to it)."""
        a, m = self.a, self.m0 + k
        age = self.ages(m)[:, None]
        life = a.age_weight * np.exp(-(((age - a.age_peak) / a.age_width) ** 2))
        life = np.where(self.age_known[:, None], life, UNKNOWN_AGE_SHARE * a.age_weight[None, :])
        season = a.season[(m + 1) % 12][None, :]
        tenure = (m - self.joined_month)[:, None]
        tenure_term = (
            a.early[None, :] * ((tenure >= 1) & (tenure <= EARLY_TENURE_MONTHS))
            + a.loyal[None, :] * (tenure >= LOYALTY_TENURE_MONTHS)
        )
        spend = self.cat_spend[max(0, k - ACTIVITY_LOOKBACK_MONTHS + 1): k + 1].sum(axis=0)
        spend_term = a.spend_beta[None, :] * np.log1p(spend[:, a.cat] / SPEND_SCALE)
        seq = np.zeros_like(life)
        for x, y, boost, window in self.seq:
            since = m - self.last_start_month[:, x]
            seq[:, y] += boost * ((since >= 0) & (since < window))
        entry = a.entry[None, :] * (~self.ever_held)[:, None]
        return self.static_terms | {
            "life_stage": life, "season": season, "tenure": tenure_term, "spend": spend_term,
            "sequence": seq, "entry": entry,
        }

    def population(self, k: int) -> np.ndarray:
        _, last = _days(self.m0 + k)
        lo = max(0, k - ACTIVITY_LOOKBACK_MONTHS + 1)
        active = self.txn_count[lo: k + 1].sum(axis=0) > 0
        dormant = self.ever_held & ~self.owned.any(axis=1) & ~active
        return (self.joined_day <= last) & ~dormant

    # ------------------------------------------------------------------ events

    def start(self, who: np.ndarray, prod: np.ndarray, day: np.ndarray) -> None:
        self.owned[who, prod] = True
        self.open_start[who, prod] = day
        self.last_start_month[who, prod] = _month_of_day(day)
        self.ever_held[who] = True

    def close(self, who: np.ndarray, prod: np.ndarray, day: np.ndarray) -> None:
        self.holdings.append((who, prod, self.open_start[who, prod].copy(), day))
        self.owned[who, prod] = False

    def entry_choice(self, who: np.ndarray, month_index: int) -> np.ndarray:
        """An entry product per customer, drawn by softmax over eligible products' static + life + entry."""
        a = self.a
        age = self.ages(month_index)[who, None]
        life = np.where(self.age_known[who, None],
                        a.age_weight * np.exp(-(((age - a.age_peak) / a.age_width) ** 2)), 0.0)
        score = self.static[who] + life + 2.0 * a.entry[None, :] - 3.0 * (a.churn[None, :] > 0.3)
        score = np.where(self.eligible(month_index)[who], score, -np.inf)
        gumbel = -np.log(-np.log(self.rng.random(score.shape)))
        return np.argmax(score + gumbel, axis=1)

    def initial_state(self) -> None:
        """Customers joined before month 0: an entry product on joining, some more products since."""
        rng, a = self.rng, self.a
        pre = np.flatnonzero(self.joined_day < _days(self.m0)[0])
        first0 = _days(self.m0)[0]
        self.start(pre, self.entry_choice(pre, self.m0 - 1), self.joined_day[pre])
        extra_p = _sigmoid(self.static[pre] + 4.0) * (a.churn[None, :] < 0.3)
        extra_p = extra_p * self.eligible(self.m0 - 1)[pre]
        extra = (rng.random(extra_p.shape) < extra_p) & ~self.owned[pre]
        who, prod = np.nonzero(extra)
        who = pre[who]
        day = _uniform_day(rng, self.joined_day[who], first0 - 1)
        self.start(who, prod, day)

    def month(self, k: int, adopt: tuple[np.ndarray, np.ndarray] | None) -> None:
        """Month k: adoptions decided at s_{k-1}, churn, joiners, transactions."""
        rng, a, m = self.rng, self.a, self.m0 + k
        first, last = _days(m)
        owned_before = self.owned.copy()
        if adopt is not None:
            who, prod = adopt
            self.start(who, prod, _uniform_day(rng, np.full(len(who), first), last))
            self.adoptions += len(who)
        churn = owned_before & (rng.random(self.owned.shape) < a.churn[None, :])
        who, prod = np.nonzero(churn)
        self.close(who, prod, _uniform_day(rng, np.full(len(who), first), last))
        joiners = np.flatnonzero((self.joined_day >= first) & (self.joined_day <= last) & ~self.prospect)
        self.start(joiners, self.entry_choice(joiners, m), self.joined_day[joiners])
        # product transactions on the days each product is owned at the month end
        who, prod = np.nonzero(self.owned & (a.txn_rate[None, :] > 0))
        lam = a.txn_rate[prod] * self.affinity[who, a.cat[prod]]
        count = rng.poisson(lam)
        who, prod = np.repeat(who, count), np.repeat(prod, count)
        lo = np.maximum(self.open_start[who, prod], first)
        amount = a.txn_amount[prod] * np.exp(rng.normal(0.0, 0.4, len(who)))
        self._transactions(k, who, prod, _uniform_day(rng, lo, last), amount)
        # product-less payments
        joined = self.joined_day <= last
        count = rng.poisson(self.general_rate * joined)
        who = np.repeat(np.arange(self.n), count)
        lo = np.maximum(self.joined_day[who], first)
        amount = np.exp(rng.normal(np.log(15.0), 0.7, len(who)))
        self._transactions(k, who, np.full(len(who), -1), _uniform_day(rng, lo, last), amount)

    def _transactions(self, k: int, who: np.ndarray, prod: np.ndarray, day: np.ndarray,
                      amount: np.ndarray) -> None:
        amount = np.round(amount, 2)
        np.add.at(self.txn_count[k], who, 1)
        named = prod >= 0
        np.add.at(self.cat_spend[k], (who[named], self.a.cat[prod[named]]), amount[named])
        seconds = np.floor(self.rng.random(len(who)) * 86_400).astype(np.int64)
        self.transactions.append((who, prod, day * 86_400 + seconds, amount))


def _write(path: Path, table: pa.Table) -> None:
    pq.write_table(table, path)


def generate_alt(out_dir: Path, variant: str = "telecom", customers: int = 12_000, months: int = 30,
                 seed: int = 0, terms_path: Path | None = None) -> AltSummary:
    """Simulate ``variant`` and write the dataset (with ``oracle.parquet``) into ``out_dir``.

    Args:
        out_dir: created if missing; existing files of the dataset are overwritten.
        variant: a key of ``VARIANTS``.
        customers: customers, >= 1.
        months: simulated months, >= 2 (snapshots: their last days; the oracle covers all but the last).
        seed: the random seed (the data is a function of variant, customers, months and seed).
        terms_path: if given, also write there (outside the dataset: not part of the raw contract) the
            oracle's rows with each of their ``LOGIT_TERMS`` (float64; they sum to the probability's logit).
    """
    if months < 2:
        raise ValueError("months must be >= 2")
    spec = VARIANTS[variant]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, list(VARIANTS).index(variant)])
    sim = _Sim(spec, customers, months, rng)
    a = sim.a
    cust_ids = CUSTOMER_ID_OFFSET + np.arange(customers, dtype=np.int64)
    sim.initial_state()
    oracle_schema = pa.schema([("customer_id", pa.int64()), ("snapshot_on", pa.date32()),
                               ("product_id", pa.int64()), ("probability", pa.float32())])
    terms_schema = pa.schema([*oracle_schema][:3] + [(name, pa.float64()) for name in LOGIT_TERMS])
    oracle_rows = 0
    adopt = None
    with contextlib.ExitStack() as stack:
        oracle = stack.enter_context(pq.ParquetWriter(out_dir / "oracle.parquet", oracle_schema))
        terms_out = None
        if terms_path is not None:
            terms_out = stack.enter_context(pq.ParquetWriter(terms_path, terms_schema))
        for k in range(months):
            sim.month(k, adopt)
            if k == months - 1:
                break
            m = sim.m0 + k
            cand = sim.population(k)[:, None] & ~sim.owned & sim.eligible(m)
            terms = sim.logit_terms(k)
            p = _sigmoid(logit_of(terms)).astype(np.float32)
            who, prod = np.nonzero(cand)
            prob = p[who, prod]
            hit = rng.random(len(who)) < prob
            adopt = (who[hit], prod[hit])
            keys = {"customer_id": cust_ids[who],
                    "snapshot_on": pa.array(np.full(len(who), _days(m)[1], dtype=np.int32), pa.date32()),
                    "product_id": a.ids[prod]}
            oracle.write_table(pa.table(keys | {"probability": prob}, schema=oracle_schema))
            if terms_out is not None:
                values = {name: np.broadcast_to(terms[name], p.shape)[who, prod] for name in LOGIT_TERMS}
                terms_out.write_table(pa.table(keys | values, schema=terms_schema))
            oracle_rows += len(who)
    # customers
    year = np.where(sim.age_known, sim.birth_year, 0)
    joined_us = (sim.joined_day * 86_400 + sim.joined_seconds) * 1_000_000
    seg_names = sorted(spec.segments)
    _write(out_dir / "customers.parquet", pa.table({
        "customer_id": cust_ids,
        "joined_on": pa.array(joined_us, pa.timestamp("us")),
        "birth_year": pa.array(year, pa.int64(), mask=~sim.age_known),
        "income": pa.array(sim.income, pa.float64(), from_pandas=True),
        "segment": np.array(seg_names, dtype=object)[sim.segment],
        "region": np.array(REGIONS, dtype=object)[sim.region],
    }))
    _write(out_dir / "products.parquet", pa.table({
        "product_id": a.ids,
        "product_name": [p.name for p in spec.products],
        "category": [p.category for p in spec.products],
        "min_age": pa.array([p.min_age for p in spec.products], pa.int64()),
        "max_age": pa.array([p.max_age for p in spec.products], pa.int64()),
    }))
    who, prod = np.nonzero(sim.owned)
    sim.holdings.append((who, prod, sim.open_start[who, prod], np.full(len(who), -1, np.int64)))
    h_who, h_prod, h_start, h_end = (np.concatenate(c) for c in zip(*sim.holdings, strict=True))
    order = np.lexsort((h_start, h_prod, h_who))
    _write(out_dir / "holdings.parquet", pa.table({
        "customer_id": cust_ids[h_who[order]],
        "product_id": a.ids[h_prod[order]],
        "started_on": pa.array(h_start[order].astype(np.int32), pa.date32()),
        "ended_on": pa.array(h_end[order].astype(np.int32), pa.date32(), mask=h_end[order] < 0),
    }))
    t_who, t_prod, t_sec, t_amount = (np.concatenate(c) for c in zip(*sim.transactions, strict=True))
    order = np.lexsort((t_sec, t_who))
    _write(out_dir / "transactions.parquet", pa.table({
        "customer_id": cust_ids[t_who[order]],
        "product_id": pa.array(a.ids[np.maximum(t_prod[order], 0)], pa.int64(), mask=t_prod[order] < 0),
        "occurred_at": pa.array(t_sec[order] * 1_000_000, pa.timestamp("us")),
        "amount": t_amount[order],
    }))
    observed_until = date.fromordinal(date(1970, 1, 1).toordinal() + _days(sim.m0 + months - 1)[1])
    name = f"acme-{variant}"
    (out_dir / "dataset.json").write_text(json.dumps(
        {"name": name, "observed_until": observed_until.isoformat(), "burn_in_months": 0}, indent=2) + "\n")
    return AltSummary(name=name, customers=customers, holdings=len(h_who), transactions=len(t_who),
                      oracle_rows=oracle_rows, adoptions=sim.adoptions, observed_until=observed_until)
