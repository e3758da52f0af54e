"""The raw data contract: file and column names, types, per-file rules (pandera) and the error type.

This module is the single source of the contract documented in README.md ("The raw data contract").
Other packages import the constants from here instead of repeating column names.

What lives here:
    * names: ``CUSTOMERS_FILE`` ... and ``*_COLUMNS`` tuples (contract columns, in the stored order);
    * ``FILE_CONTRACTS``: each file's columns with their logical type and nullability;
    * ``accepted_source_type`` : which arrow types are accepted for a logical type before normalisation;
    * ``pandera_schema``: the per-row rules of one file, checked on normalised data;
    * ``ContractError`` / ``Violation``: how a broken rule is reported;
    * sanity rules: ``NON_EMPTY_FILES``, ``DateWindow`` (plausible dates, default 1900-01-01 .. today
      + 1 year) and ``meta_violations`` (``observed_until`` and ``burn_in_months`` against the data);
    * ``DatasetMeta`` / ``parse_dataset_meta``: the optional ``dataset.json``.

Time zone aware timestamps keep their local calendar date in a date column and become naive UTC in a
timestamp column (see ``nextbest.ingest.store``).

Cross-file and cross-row rules (uniqueness, references, overlapping intervals) are SQL and live in
``nextbest.ingest.store`` because they run in DuckDB over whole files.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow

from nextbest.errors import UserError

# ---------------------------------------------------------------- names

CUSTOMERS_FILE = "customers.parquet"
PRODUCTS_FILE = "products.parquet"
HOLDINGS_FILE = "holdings.parquet"
TRANSACTIONS_FILE = "transactions.parquet"
ORACLE_FILE = "oracle.parquet"
CHURN_ORACLE_FILE = "churn_oracle.parquet"
DATASET_META_FILE = "dataset.json"

REQUIRED_FILES: tuple[str, ...] = (CUSTOMERS_FILE, PRODUCTS_FILE, HOLDINGS_FILE)
"""Files a dataset must contain."""
OPTIONAL_PARQUET_FILES: tuple[str, ...] = (TRANSACTIONS_FILE, ORACLE_FILE, CHURN_ORACLE_FILE)
"""Parquet files a dataset may contain; a missing transactions file is ingested as an empty table."""
KNOWN_FILES: tuple[str, ...] = (*REQUIRED_FILES, *OPTIONAL_PARQUET_FILES, DATASET_META_FILE)

META_NAME = "name"
META_OBSERVED_UNTIL = "observed_until"
META_BURN_IN_MONTHS = "burn_in_months"

BIRTH_YEAR_MIN, BIRTH_YEAR_MAX = 1900, 2100


# ---------------------------------------------------------------- types


class LogicalType(enum.StrEnum):
    """The contract's column types; each maps to one stored arrow type."""

    ID = "id"
    STRING = "string"
    DATE = "date"
    TIMESTAMP = "timestamp"
    INT = "int"
    FLOAT = "float"


STORED_ARROW_TYPES: Mapping[LogicalType, pa_arrow.DataType] = {
    LogicalType.ID: pa_arrow.string(),
    LogicalType.STRING: pa_arrow.string(),
    LogicalType.DATE: pa_arrow.date32(),
    LogicalType.TIMESTAMP: pa_arrow.timestamp("us"),
    LogicalType.INT: pa_arrow.int64(),
    LogicalType.FLOAT: pa_arrow.float64(),
}
"""The arrow type each logical type has after ingest (timestamps are naive, microseconds)."""

ACCEPTED_SOURCE_TYPES: Mapping[LogicalType, str] = {
    LogicalType.ID: "string or integer",
    LogicalType.STRING: "string",
    LogicalType.DATE: "date or timestamp",
    LogicalType.TIMESTAMP: "timestamp or date",
    LogicalType.INT: "integer (or float holding whole numbers)",
    LogicalType.FLOAT: "float, integer or decimal",
}
"""Human-readable list of the arrow types accepted on ingest, used in error messages."""


@dataclass(frozen=True)
class ContractColumn:
    """One contract column: its name, logical type and whether nulls are allowed."""

    name: str
    type: LogicalType
    nullable: bool


@dataclass(frozen=True)
class FileContract:
    """The contract columns of one parquet file; extra columns are allowed and kept after these."""

    file: str
    columns: tuple[ContractColumn, ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        """Contract column names in stored order."""
        return tuple(c.name for c in self.columns)


def _col(name: str, type_: LogicalType, nullable: bool = False) -> ContractColumn:
    return ContractColumn(name=name, type=type_, nullable=nullable)


T = LogicalType
FILE_CONTRACTS: Mapping[str, FileContract] = {
    CUSTOMERS_FILE: FileContract(
        CUSTOMERS_FILE,
        (
            _col("customer_id", T.ID),
            _col("joined_on", T.DATE),
            _col("birth_year", T.INT, nullable=True),
            _col("income", T.FLOAT, nullable=True),
            _col("segment", T.STRING, nullable=True),
            _col("region", T.STRING, nullable=True),
        ),
    ),
    PRODUCTS_FILE: FileContract(
        PRODUCTS_FILE,
        (
            _col("product_id", T.ID),
            _col("product_name", T.STRING),
            _col("category", T.STRING),
            _col("min_age", T.INT, nullable=True),
            _col("max_age", T.INT, nullable=True),
        ),
    ),
    HOLDINGS_FILE: FileContract(
        HOLDINGS_FILE,
        (
            _col("customer_id", T.ID),
            _col("product_id", T.ID),
            _col("started_on", T.DATE),
            _col("ended_on", T.DATE, nullable=True),
        ),
    ),
    TRANSACTIONS_FILE: FileContract(
        TRANSACTIONS_FILE,
        (
            _col("customer_id", T.ID),
            _col("product_id", T.ID, nullable=True),
            _col("occurred_at", T.TIMESTAMP),
            _col("amount", T.FLOAT),
        ),
    ),
    ORACLE_FILE: FileContract(
        ORACLE_FILE,
        (
            _col("customer_id", T.ID),
            _col("snapshot_on", T.DATE),
            _col("product_id", T.ID),
            _col("probability", T.FLOAT),
        ),
    ),
    CHURN_ORACLE_FILE: FileContract(  # synthetic data: the true probability of the churn label
        CHURN_ORACLE_FILE,
        (
            _col("customer_id", T.ID),
            _col("snapshot_on", T.DATE),
            _col("churn_hazard", T.FLOAT),
            _col("probability", T.FLOAT),
        ),
    ),
}
del T

CUSTOMERS_COLUMNS: tuple[str, ...] = FILE_CONTRACTS[CUSTOMERS_FILE].column_names
"""customer_id, joined_on, birth_year, income, segment, region"""
PRODUCTS_COLUMNS: tuple[str, ...] = FILE_CONTRACTS[PRODUCTS_FILE].column_names
"""product_id, product_name, category, min_age, max_age"""
HOLDINGS_COLUMNS: tuple[str, ...] = FILE_CONTRACTS[HOLDINGS_FILE].column_names
"""customer_id, product_id, started_on, ended_on"""
TRANSACTIONS_COLUMNS: tuple[str, ...] = FILE_CONTRACTS[TRANSACTIONS_FILE].column_names
"""customer_id, product_id, occurred_at, amount"""
ORACLE_COLUMNS: tuple[str, ...] = FILE_CONTRACTS[ORACLE_FILE].column_names
"""customer_id, snapshot_on, product_id, probability"""


def stored_arrow_schema(file: str) -> pa_arrow.Schema:
    """The arrow schema of a file's contract columns after ingest (extra columns follow them)."""
    return pa_arrow.schema(
        [pa_arrow.field(c.name, STORED_ARROW_TYPES[c.type]) for c in FILE_CONTRACTS[file].columns]
    )


def _is_string_like(arrow_type: pa_arrow.DataType) -> bool:
    if pa_arrow.types.is_dictionary(arrow_type):
        return _is_string_like(arrow_type.value_type)
    return (
        pa_arrow.types.is_string(arrow_type)
        or pa_arrow.types.is_large_string(arrow_type)
        or (pa_arrow.types.is_string_view(arrow_type))
    )


def accepted_source_type(logical: LogicalType, arrow_type: pa_arrow.DataType, nullable: bool) -> bool:
    """Whether a source column of ``arrow_type`` can be normalised to ``logical``.

    An all-null column (arrow ``null`` type, as pandas writes an all-None object column) is accepted for
    nullable columns only.
    """
    types = pa_arrow.types
    if types.is_null(arrow_type):
        return nullable
    if logical is LogicalType.ID:
        return _is_string_like(arrow_type) or types.is_integer(arrow_type)
    if logical is LogicalType.STRING:
        return _is_string_like(arrow_type)
    if logical in (LogicalType.DATE, LogicalType.TIMESTAMP):
        return types.is_date(arrow_type) or types.is_timestamp(arrow_type)
    if logical is LogicalType.INT:
        return types.is_integer(arrow_type) or types.is_floating(arrow_type)
    if logical is LogicalType.FLOAT:
        return types.is_integer(arrow_type) or types.is_floating(arrow_type) or types.is_decimal(arrow_type)
    raise AssertionError(logical)


# ---------------------------------------------------------------- errors


def _format_value(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


@dataclass(frozen=True)
class Violation:
    """One broken rule.

    Attributes:
        file: the file name, e.g. ``holdings.parquet``.
        column: the column the rule is about (``None`` for file-level rules such as a missing file).
        rule: the rule, e.g. ``ended_on > started_on`` or ``non-null``.
        count: number of offending rows (``None`` when the rule is not about rows, e.g. a type).
        examples: up to 5 offending rows as column -> value dicts.
        detail: extra text, e.g. the type that was found.
    """

    file: str
    column: str | None
    rule: str
    count: int | None = None
    examples: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)
    detail: str = ""

    def headline(self) -> str:
        """The violation in one line, without example rows, e.g.

        ``holdings.parquet: column 'ended_on': rule 'ended_on > started_on' violated by 3 rows``
        """
        where = f"{self.file}: column '{self.column}'" if self.column else self.file
        text = f"{where}: rule '{self.rule}' violated"
        if self.count is not None:
            text += f" by {self.count} row{'s' if self.count != 1 else ''}"
        if self.detail:
            text += f": {' '.join(self.detail.split())}"
        return text

    def describe(self) -> str:
        """The headline, then the example rows, e.g.

        ``holdings.parquet: column 'ended_on': rule 'ended_on > started_on' violated by 3 rows, e.g.: ...``
        """
        text = self.headline()
        if self.examples:
            rows = "\n".join(
                "    " + repr({k: _format_value(v) for k, v in row.items()}) for row in self.examples
            )
            text += f", e.g.:\n{rows}"
        return text


class ContractError(UserError, ValueError):
    """A dataset breaks the raw data contract; ``violations`` lists every broken rule found."""

    def __init__(self, violations: Sequence[Violation]) -> None:
        if not violations:
            raise ValueError("ContractError needs at least one violation")
        self.violations: tuple[Violation, ...] = tuple(violations)
        super().__init__("\n".join(v.describe() for v in self.violations))


# ---------------------------------------------------------------- pandera

MAX_EXAMPLES = 5
NON_NULL_RULE = "non-null"
"""Rule name reported for a null in a non-null column (pandera calls it ``not_nullable``)."""

_PANDERA_RULE_NAMES = {"not_nullable": NON_NULL_RULE}


@dataclass(frozen=True)
class RowRule:
    """A rule over several columns of one row, reported under ``column``."""

    column: str
    rule: str
    holds: Callable[[pd.DataFrame], pd.Series]


def _both_set_then(left: str, right: str, op: Callable[[pd.Series, pd.Series], pd.Series]) -> Callable:
    def holds(df: pd.DataFrame) -> pd.Series:
        return df[left].isna() | df[right].isna() | op(df[left], df[right])

    return holds


ROW_RULES: Mapping[str, tuple[RowRule, ...]] = {
    PRODUCTS_FILE: (
        RowRule("max_age", "min_age <= max_age", _both_set_then("min_age", "max_age", pd.Series.le)),
    ),
    HOLDINGS_FILE: (
        RowRule("ended_on", "ended_on > started_on", _both_set_then("ended_on", "started_on", pd.Series.gt)),
    ),
}
"""Multi-column per-row rules; ``rule`` is also the pandera check name."""

_COLUMN_CHECKS: Mapping[tuple[str, str], tuple[pa.Check, ...]] = {
    (CUSTOMERS_FILE, "birth_year"): (
        pa.Check(
            lambda s: (s >= BIRTH_YEAR_MIN) & (s <= BIRTH_YEAR_MAX),
            name=f"{BIRTH_YEAR_MIN} <= birth_year <= {BIRTH_YEAR_MAX}",
        ),
    ),
    (CUSTOMERS_FILE, "income"): (pa.Check(lambda s: s >= 0, name="income >= 0"),),
    (ORACLE_FILE, "probability"): (pa.Check(lambda s: (s >= 0) & (s <= 1), name="0 <= probability <= 1"),),
    (CHURN_ORACLE_FILE, "probability"): (
        pa.Check(lambda s: (s >= 0) & (s <= 1), name="0 <= probability <= 1"),
    ),
}


def pandera_schema(file: str) -> pa.DataFrameSchema:
    """Per-row rules of one contract file, for batches of its normalised contract columns.

    Types are not checked here (they are checked on the arrow schema before normalisation); nor are
    uniqueness and references, which need the whole file and run in DuckDB.
    """
    contract = FILE_CONTRACTS[file]
    columns = {
        c.name: pa.Column(
            nullable=c.nullable,
            checks=list(_COLUMN_CHECKS.get((file, c.name), ())),
            required=True,
            coerce=False,
        )
        for c in contract.columns
    }
    checks = [pa.Check(r.holds, name=r.rule) for r in ROW_RULES.get(file, ())]
    return pa.DataFrameSchema(columns, checks=checks, name=file, strict=False)


def rule_column(file: str, check_name: str, reported_column: str | None) -> str | None:
    """The column a failed pandera check is reported under (multi-column rules name their own)."""
    for r in ROW_RULES.get(file, ()):
        if r.rule == check_name:
            return r.column
    return reported_column


def rule_name(check_name: str) -> str:
    """Readable rule name for a pandera check name (``not_nullable`` -> ``non-null``)."""
    return _PANDERA_RULE_NAMES.get(check_name, check_name)


# ---------------------------------------------------------------- sanity rules

NON_EMPTY_RULE = "non-empty"
"""Rule name reported for a required file with no rows."""
NON_EMPTY_FILES: tuple[str, ...] = REQUIRED_FILES
"""Files that must hold at least one row (transactions and oracle may be empty)."""

EARLIEST_PLAUSIBLE_DATE = dt.date(1900, 1, 1)
"""Default first plausible date in the data."""
PLAUSIBLE_YEARS_AHEAD = 1
"""Default last plausible date in the data: today plus this many years."""


def _years_later(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February -> 28 February
        return day.replace(year=day.year + years, day=28)


@dataclass(frozen=True)
class DateWindow:
    """The plausible dates: every date (and every timestamp's day) in the data lies in [earliest, latest].

    A date outside it is a typo or a corrupt value (``9999-12-31``, a bit-flipped year 4,152,292), which
    would otherwise make the monthly snapshot spine run away or silently shift ``observed_until``.
    """

    earliest: dt.date
    latest: dt.date

    def __post_init__(self) -> None:
        if self.earliest > self.latest:
            raise ValueError(f"empty date window: {self.earliest} > {self.latest}")

    @classmethod
    def default(cls, today: dt.date | None = None) -> DateWindow:
        """1900-01-01 .. today + 1 year."""
        today = today or dt.date.today()
        return cls(EARLIEST_PLAUSIBLE_DATE, _years_later(today, PLAUSIBLE_YEARS_AHEAD))

    def rule(self, column: str) -> str:
        """The rule's name for ``column``, e.g. ``1900-01-01 <= joined_on <= 2027-11-30``."""
        return f"{self.earliest.isoformat()} <= {column} <= {self.latest.isoformat()}"


def date_columns(file: str) -> tuple[str, ...]:
    """The contract columns of ``file`` holding dates or timestamps (checked against the ``DateWindow``)."""
    kinds = (LogicalType.DATE, LogicalType.TIMESTAMP)
    return tuple(c.name for c in FILE_CONTRACTS[file].columns if c.type in kinds)


def months_observed(first_day: dt.date, observed_until: dt.date) -> int:
    """Month ends in [first_day, observed_until]: the monthly snapshots the build can make (>= 0).

    ``months_observed(date(2020, 1, 15), date(2020, 3, 31))`` is 3; ``(.., date(2020, 3, 30))`` is 2.
    """
    months = (observed_until.year - first_day.year) * 12 + observed_until.month - first_day.month
    is_month_end = (observed_until + dt.timedelta(days=1)).day == 1
    return max(0, months + int(is_month_end))


OBSERVED_UNTIL_NOT_FUTURE_RULE = "observed_until <= today"
OBSERVED_UNTIL_AFTER_START_RULE = "observed_until >= first day observed"
BURN_IN_RULE = "0 <= burn_in_months < months observed"


def meta_violations(
    meta: DatasetMeta, first_day: dt.date, today: dt.date, derived: bool = False
) -> list[Violation]:
    """The rules tying ``dataset.json`` to the data.

    Args:
        meta: the completed metadata.
        first_day: the first day observed, as the build's snapshot spine counts it: the first
            transaction's day, else the earliest ``joined_on`` / ``started_on``.
        today: the current date; ``observed_until`` may not be after it.
        derived: ``observed_until`` was not given but taken from the latest date in the data.

    Returns:
        Violations of: ``observed_until <= today``; ``observed_until >= first day observed``;
        ``0 <= burn_in_months < months observed`` (at least one snapshot is labelled).
    """
    until = meta.observed_until
    source = " (the latest date in the data; set observed_until in dataset.json)" if derived else ""
    violations: list[Violation] = []
    if until > today:
        violations.append(
            _with_detail(
                _meta_violation(META_OBSERVED_UNTIL, OBSERVED_UNTIL_NOT_FUTURE_RULE, until.isoformat()),
                f"{source}; today is {today.isoformat()}",
            )
        )
    if until < first_day:
        violations.append(
            _with_detail(
                _meta_violation(META_OBSERVED_UNTIL, OBSERVED_UNTIL_AFTER_START_RULE, until.isoformat()),
                f"{source}; the data starts on {first_day.isoformat()}",
            )
        )
    elif until <= today:
        months = months_observed(first_day, until)
        if meta.burn_in_months >= months:
            violations.append(
                _with_detail(
                    _meta_violation(META_BURN_IN_MONTHS, BURN_IN_RULE, meta.burn_in_months),
                    f"; {months} month end{'s' if months != 1 else ''} observed "
                    f"from {first_day.isoformat()} to {until.isoformat()}",
                )
            )
    return violations


def _with_detail(violation: Violation, more: str) -> Violation:
    return Violation(violation.file, violation.column, violation.rule, detail=violation.detail + more)


# ---------------------------------------------------------------- meta


@dataclass(frozen=True)
class DatasetMeta:
    """The dataset's ``dataset.json`` after ingest.

    Attributes:
        name: a label for reports.
        observed_until: the last day the data is complete.
        burn_in_months: months (>= 0) at the start in which first holdings are not real adoptions.
    """

    name: str
    observed_until: dt.date
    burn_in_months: int

    def to_json_dict(self) -> dict[str, Any]:
        """The three keys as JSON values (date as ``YYYY-MM-DD``)."""
        return {
            META_NAME: self.name,
            META_OBSERVED_UNTIL: self.observed_until.isoformat(),
            META_BURN_IN_MONTHS: self.burn_in_months,
        }


@dataclass(frozen=True)
class PartialMeta:
    """A parsed ``dataset.json`` before defaults: ``observed_until`` may still be unknown."""

    name: str | None
    observed_until: dt.date | None
    burn_in_months: int
    extra: Mapping[str, Any] = field(default_factory=dict)


def _meta_violation(key: str, rule: str, found: Any) -> Violation:
    return Violation(DATASET_META_FILE, key, rule, detail=f"found {found!r}")


def parse_dataset_meta(raw: Any) -> PartialMeta:
    """Validate the decoded JSON of ``dataset.json``; unknown keys are kept in ``extra``.

    Raises:
        ContractError: not an object, ``name`` not a string, ``observed_until`` not ``YYYY-MM-DD``,
            ``burn_in_months`` not an integer >= 0.
    """
    if not isinstance(raw, dict):
        raise ContractError([Violation(DATASET_META_FILE, None, "a JSON object", detail=f"found {raw!r}")])
    violations: list[Violation] = []
    name = raw.get(META_NAME)
    if name is not None and not isinstance(name, str):
        violations.append(_meta_violation(META_NAME, "string", name))
    observed_until: dt.date | None = None
    raw_until = raw.get(META_OBSERVED_UNTIL)
    if raw_until is not None:
        try:
            if not isinstance(raw_until, str) or len(raw_until) != 10:
                raise ValueError(raw_until)
            observed_until = dt.date.fromisoformat(raw_until)
        except ValueError:
            violations.append(_meta_violation(META_OBSERVED_UNTIL, "date YYYY-MM-DD", raw_until))
    burn_in = raw.get(META_BURN_IN_MONTHS, 0)
    if burn_in is None:
        burn_in = 0
    if isinstance(burn_in, bool) or not isinstance(burn_in, int) or burn_in < 0:
        violations.append(_meta_violation(META_BURN_IN_MONTHS, "integer >= 0", burn_in))
    if violations:
        raise ContractError(violations)
    extra = {k: v for k, v in raw.items() if k not in (META_NAME, META_OBSERVED_UNTIL, META_BURN_IN_MONTHS)}
    return PartialMeta(name=name, observed_until=observed_until, burn_in_months=burn_in, extra=extra)
