"""Validate a dataset directory against the raw contract and swap it, normalised, into the raw dir.

``ingest_directory(source, raw_dir)``:

1. finds the contract files (unknown files are ignored with a warning), reads ``dataset.json``;
2. checks every file's columns and types on the parquet schema (nothing is loaded);
3. normalises each file with DuckDB ``COPY (select casts ...) TO parquet`` into a temporary sibling
   directory ``raw_dir.parent/.raw-tmp-XXXX`` (streaming: big files never sit in pandas);
4. checks the per-row rules with pandera on arrow record batches of the normalised files;
5. checks the cross-row and cross-file rules (unique keys, references, overlapping holdings) in DuckDB;
6. completes and writes ``dataset.json`` (``observed_until`` defaults to the latest date in the data);
7. swaps the new directory in: rename the old raw dir away, rename the new one in, delete the old one.

Any failure raises before step 7 and removes the temporary directory, so the previous raw dir is left
byte-for-byte intact.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
import pyarrow.parquet as pq

from nextbest.ingest.contract import (
    ACCEPTED_SOURCE_TYPES,
    CHURN_ORACLE_FILE,
    CUSTOMERS_FILE,
    DATASET_META_FILE,
    FILE_CONTRACTS,
    HOLDINGS_FILE,
    KNOWN_FILES,
    MAX_EXAMPLES,
    NON_EMPTY_FILES,
    NON_EMPTY_RULE,
    ORACLE_FILE,
    PRODUCTS_FILE,
    REQUIRED_FILES,
    TRANSACTIONS_FILE,
    ContractColumn,
    ContractError,
    DatasetMeta,
    DateWindow,
    LogicalType,
    PartialMeta,
    Violation,
    accepted_source_type,
    date_columns,
    meta_violations,
    pandera_schema,
    parse_dataset_meta,
    rule_column,
    rule_name,
)
from nextbest.sqltext import sql_identifier, sql_literal

log = logging.getLogger(__name__)

TMP_PREFIX = ".raw-tmp-"
OLD_PREFIX = ".raw-old-"
_PANDAS_INDEX_COLUMN = re.compile(r"^__index_level_\d+__$")
_SQL_TYPES: Mapping[LogicalType, str] = {
    LogicalType.ID: "varchar",
    LogicalType.STRING: "varchar",
    LogicalType.DATE: "date",
    LogicalType.TIMESTAMP: "timestamp",
    LogicalType.INT: "bigint",
    LogicalType.FLOAT: "double",
}


@dataclass(frozen=True)
class IngestSummary:
    """What an ingest wrote.

    Attributes:
        raw_dir: the directory now holding the dataset.
        name: the dataset's label (``dataset.json`` ``name``, default: the source directory's name).
        observed_until: last complete day of the data.
        burn_in_months: months at the start whose first holdings are not adoptions (>= 0).
        rows: row count per parquet file written, e.g. ``{"customers.parquet": 1000, ...}``.
        seconds: wall-clock duration of the ingest.
        absent_columns: per file, the nullable contract columns the source lacked (stored as all null),
            e.g. ``{"customers.parquet": ("income",)}``; files lacking none are not listed.
    """

    raw_dir: Path
    name: str
    observed_until: dt.date
    burn_in_months: int
    rows: Mapping[str, int]
    seconds: float
    absent_columns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


# ---------------------------------------------------------------- sql helpers


def _parquet_parts(path: Path) -> list[Path]:
    """The parquet files behind a contract file: the file itself, or the ``*.parquet`` in a directory."""
    if path.is_dir():
        return sorted(p for p in path.glob("*.parquet") if not p.name.startswith((".", "_")))
    return [path]


READ_PARTS_SQL = "read_parquet(?, union_by_name = true)"
"""The parts of one contract file as a table; bind ``_part_names(path)`` to the ``?``."""


def _part_names(path: Path) -> list[str]:
    """The part file names of ``path``, as the parameter of ``READ_PARTS_SQL``."""
    return [str(p) for p in _parquet_parts(path)]


def _source_schema(path: Path) -> pa_arrow.Schema:
    """The arrow schema of a contract file, its parts' schemas unified.

    Raises:
        ContractError: no part, an unreadable part, a column name twice in a part, or a column whose
            types in two parts cannot be merged (e.g. int64 in one, string in another).
    """
    parts = _parquet_parts(path)
    if not parts:
        raise ContractError(
            [Violation(path.name, None, "parquet", detail="directory holds no *.parquet file")]
        )
    try:
        schemas = [pq.read_schema(p) for p in parts]
    except (pa_arrow.ArrowException, OSError) as exc:
        raise ContractError([Violation(path.name, None, "parquet", detail=f"unreadable: {exc}")]) from exc
    _raise_if(_duplicate_column_violations(path, parts, schemas))
    if len(schemas) == 1:
        return schemas[0]
    _raise_if(_part_conflict_violations(path, parts, schemas))
    return pa_arrow.unify_schemas(schemas, promote_options="permissive")


def _duplicate_column_violations(
    path: Path, parts: Sequence[Path], schemas: Sequence[pa_arrow.Schema]
) -> list[Violation]:
    """Column names that occur more than once in one part (arrow allows it; the contract does not)."""
    violations: list[Violation] = []
    seen: set[str] = set()
    for part, schema in zip(parts, schemas, strict=True):
        for name in dict.fromkeys(schema.names):
            times = schema.names.count(name)
            if times > 1 and name not in seen:
                seen.add(name)
                where = f" in part {part.name}" if part != path else ""
                violations.append(
                    Violation(path.name, name, "unique column name", detail=f"found {times} times{where}")
                )
    return violations


def _part_conflict_violations(
    path: Path, parts: Sequence[Path], schemas: Sequence[pa_arrow.Schema]
) -> list[Violation]:
    """Columns whose types in different parts cannot be merged into one (e.g. int64 and string)."""
    violations: list[Violation] = []
    names = dict.fromkeys(n for schema in schemas for n in schema.names)
    for name in names:
        fields = [
            (part, schema.field(name))
            for part, schema in zip(parts, schemas, strict=True)
            if name in schema.names
        ]
        try:
            pa_arrow.unify_schemas([pa_arrow.schema([f]) for _, f in fields], promote_options="permissive")
        except (pa_arrow.ArrowTypeError, pa_arrow.ArrowInvalid):
            found = ", ".join(f"{part.name}: {f.type}" for part, f in fields)
            violations.append(Violation(path.name, name, "one type in every part", detail=f"found {found}"))
    return violations


def _rows_as_dicts(relation: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [d[0] for d in relation.description]
    return [dict(zip(names, row, strict=True)) for row in relation.fetchall()]


def _connect(spill_dir: Path, memory_limit: str, threads: int | None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute("set TimeZone = 'UTC'")
    con.execute("set enable_progress_bar = false")
    con.execute(f"set memory_limit = {sql_literal(memory_limit)}")
    con.execute(f"set temp_directory = {sql_literal(spill_dir)}")
    if threads:
        con.execute(f"set threads = {int(threads)}")
    return con


# ---------------------------------------------------------------- discovery


def _locate_files(source: Path) -> dict[str, Path]:
    """Known contract files present in ``source``; warn about anything else."""
    if not source.is_dir():
        raise ContractError([Violation(str(source), None, "dataset directory", detail="not a directory")])
    found: dict[str, Path] = {}
    for entry in sorted(source.iterdir()):
        if entry.name in KNOWN_FILES:
            found[entry.name] = entry
        else:
            log.warning("ingest: ignoring unknown file %s (not part of the raw contract)", entry)
    missing = [f for f in REQUIRED_FILES if f not in found]
    if missing:
        raise ContractError(
            [Violation(f, None, "required file", detail=f"missing from {source}") for f in missing]
        )
    return found


def _read_partial_meta(path: Path | None) -> PartialMeta:
    if path is None:
        return PartialMeta(name=None, observed_until=None, burn_in_months=0)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ContractError([Violation(DATASET_META_FILE, None, "valid JSON", detail=str(exc))]) from exc
    return parse_dataset_meta(raw)


# ---------------------------------------------------------------- types


def absent_nullable_columns(file: str, schema: pa_arrow.Schema) -> tuple[str, ...]:
    """The nullable contract columns of ``file`` that its source lacks: ingested as all null."""
    return tuple(c.name for c in FILE_CONTRACTS[file].columns if c.nullable and c.name not in schema.names)


def _type_violations(file: str, schema: pa_arrow.Schema) -> list[Violation]:
    """Missing non-null contract columns and columns whose type cannot be normalised."""
    violations: list[Violation] = []
    names = set(schema.names)
    for column in FILE_CONTRACTS[file].columns:
        if column.name not in names:
            if not column.nullable:  # an absent nullable column is written as all null
                violations.append(
                    Violation(
                        file, column.name, "required column", detail=f"missing; found columns {schema.names}"
                    )
                )
            continue
        found = schema.field(column.name).type
        if not accepted_source_type(column.type, found, column.nullable):
            expected = ACCEPTED_SOURCE_TYPES[column.type]
            if pa_arrow.types.is_null(found):
                expected += ", non-null"
            violations.append(
                Violation(
                    file,
                    column.name,
                    f"type {column.type.value}",
                    detail=f"expected {expected}, found type {found}",
                )
            )
    return violations


def _whole_number_violations(
    con: duckdb.DuckDBPyConnection, file: str, path: Path, schema: pa_arrow.Schema
) -> list[Violation]:
    """INT columns that arrive as floats must hold whole numbers (as pandas writes nullable ints)."""
    violations: list[Violation] = []
    for column in FILE_CONTRACTS[file].columns:
        if column.type is not LogicalType.INT or column.name not in schema.names:
            continue
        found = schema.field(column.name).type
        if not pa_arrow.types.is_floating(found):
            continue
        q = sql_identifier(column.name)
        offending = (
            f"select {q}, count(*) over () as _n from {READ_PARTS_SQL} "
            f"where {q} is not null and not isnan({q}) and {q} <> trunc({q}) limit {MAX_EXAMPLES}"
        )
        rows = _rows_as_dicts(con.execute(offending, [_part_names(path)]))
        if rows:
            count = int(rows[0]["_n"])
            examples = tuple({k: v for k, v in r.items() if k != "_n"} for r in rows)
            violations.append(
                Violation(
                    file,
                    column.name,
                    f"type {column.type.value}",
                    count=count,
                    examples=examples,
                    detail=f"found type {found} with non-whole values",
                )
            )
    return violations


# ---------------------------------------------------------------- normalise


def _cast_sql(column: ContractColumn, found: pa_arrow.DataType) -> str:
    """SQL expression turning a source column of arrow type ``found`` into the contract's stored type.

    Time zone aware timestamps become naive UTC in a timestamp column, but keep their local calendar
    date in a date column (2021-01-01 00:00 Asia/Tokyo is 2021-01-01, not 2020-12-31); nanoseconds are
    rounded to microseconds; float NaN becomes null (so a NaN in a non-null column is reported as a null).
    """
    sql_type = _SQL_TYPES[column.type]
    q = sql_identifier(column.name)
    if pa_arrow.types.is_null(found):
        return f"cast(null as {sql_type}) as {q}"
    if column.type is LogicalType.DATE and pa_arrow.types.is_timestamp(found) and found.tz is not None:
        return f"cast({_local_time_sql(q, found.tz)} as date) as {q}"
    if column.type is LogicalType.FLOAT and pa_arrow.types.is_floating(found):
        return f"cast(case when isnan({q}) then null else {q} end as double) as {q}"
    if column.type is LogicalType.INT and pa_arrow.types.is_floating(found):
        return f"cast(case when isnan({q}) then null else {q} end as bigint) as {q}"
    if pa_arrow.types.is_timestamp(found) and found.tz is not None:
        # no direct cast TIMESTAMPTZ_NS -> TIMESTAMP; via TIMESTAMPTZ the session zone (UTC) applies
        return f"cast(cast({q} as timestamptz) as {sql_type}) as {q}"
    return f"cast({q} as {sql_type}) as {q}"


_FIXED_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")


def _local_time_sql(q: str, zone: str) -> str:
    """SQL for the naive local time of a time zone aware column ``q`` in ``zone``.

    ``zone`` is an arrow time zone: a name (``Asia/Tokyo``, via DuckDB's ICU) or a fixed offset
    (``+09:00``, which DuckDB does not name, so it is added as minutes).
    """
    instant = f"cast({q} as timestamptz)"
    offset = _FIXED_OFFSET.match(zone)
    if offset is None:
        return f"timezone({sql_literal(zone)}, {instant})"
    sign, hours, minutes = offset.groups()
    total = (1 if sign == "+" else -1) * (int(hours) * 60 + int(minutes))
    return f"(cast({instant} as timestamp) + interval ({total}) minute)"


def _normalise(
    con: duckdb.DuckDBPyConnection, file: str, source: Path, schema: pa_arrow.Schema, target: Path
) -> None:
    """Write ``target``: contract columns cast to their stored types (an absent nullable one as all null),
    then the extra columns as they are."""
    contract = FILE_CONTRACTS[file]
    selects = [
        _cast_sql(c, schema.field(c.name).type if c.name in schema.names else pa_arrow.null())
        for c in contract.columns
    ]
    extras = [n for n in schema.names if n not in contract.column_names and not _PANDAS_INDEX_COLUMN.match(n)]
    selects += [sql_identifier(n) for n in extras]
    try:
        con.execute(
            f"copy (select {', '.join(selects)} from {READ_PARTS_SQL}) "
            f"to {sql_literal(target)} (format parquet, compression zstd)",
            [_part_names(source)],
        )
    except duckdb.Error as exc:  # e.g. a corrupt page, or an unsigned id beyond bigint
        raise ContractError([Violation(file, None, "readable and normalisable", detail=str(exc))]) from exc


def _write_empty(con: duckdb.DuckDBPyConnection, file: str, target: Path) -> None:
    """Write a zero-row file with the contract columns of ``file``."""
    columns = FILE_CONTRACTS[file].columns
    selects = [f"cast(null as {_SQL_TYPES[c.type]}) as {sql_identifier(c.name)}" for c in columns]
    con.execute(f"copy (select {', '.join(selects)} where false) to {sql_literal(target)} (format parquet)")


# ---------------------------------------------------------------- row rules


@dataclass
class _Tally:
    """Offending rows of one rule so far: their number and the first few."""

    count: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)


def _failed_positions(file: str, cases: pd.DataFrame) -> list[tuple[tuple[str | None, str], list[int]]]:
    """Pandera failure cases -> ((column, rule), sorted row positions in the batch) per broken rule.

    A frame-level (multi-column) check reports one failure per column of each failing row; each row is
    counted once, under the column the rule names.
    """
    out: list[tuple[tuple[str | None, str], list[int]]] = []
    frame_level = cases["schema_context"] == "DataFrameSchema"
    for (column, check), group in cases[~frame_level].groupby(["column", "check"], sort=False):
        out.append(((str(column), rule_name(str(check))), _positions(group)))
    for check, group in cases[frame_level].groupby("check", sort=False):
        out.append(((rule_column(file, str(check), None), rule_name(str(check))), _positions(group)))
    return out


def _positions(group: pd.DataFrame) -> list[int]:
    return sorted({int(i) for i in group["index"].dropna()})


def _row_rule_violations(file: str, path: Path, batch_rows: int) -> list[Violation]:
    """Per-row rules of one normalised file, checked by pandera batch by batch (bounded memory)."""
    schema = pandera_schema(file)
    columns = list(FILE_CONTRACTS[file].column_names)
    tallies: dict[tuple[str | None, str], _Tally] = {}
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=columns):
        frame = batch.to_pandas(types_mapper=pd.ArrowDtype)  # zero-copy: no Python objects
        try:
            schema.validate(frame, lazy=True, inplace=True)
            continue
        except pa.errors.SchemaErrors as exc:
            cases = exc.failure_cases
        for key, positions in _failed_positions(file, cases):
            tally = tallies.setdefault(key, _Tally())
            tally.count += len(positions)
            need = MAX_EXAMPLES - len(tally.examples)
            if need > 0 and positions:
                tally.examples.extend(batch.take(positions[:need]).to_pylist())
    return [
        Violation(file, column, rule, count=t.count, examples=tuple(t.examples))
        for (column, rule), t in tallies.items()
    ]


# ---------------------------------------------------------------- cross-file rules


@dataclass(frozen=True)
class _SqlRule:
    """A rule checked in DuckDB: ``offending`` selects the rows that break it."""

    file: str
    column: str
    rule: str
    offending: str


def _cols(file: str, alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + sql_identifier(c) for c in FILE_CONTRACTS[file].column_names)


def _view(file: str) -> str:
    return file.removesuffix(".parquet")


def _unique_rule(file: str, key: str) -> _SqlRule:
    t = _view(file)
    return _SqlRule(
        file,
        key,
        "unique",
        f"select {_cols(file)} from {t} where {key} in "
        f"(select {key} from {t} group by {key} having count(*) > 1) order by {key}",
    )


def _reference_rule(file: str, key: str, parent_file: str) -> _SqlRule:
    t, parent = _view(file), _view(parent_file)
    return _SqlRule(
        file,
        key,
        f"{key} exists in {parent_file}",
        f"select {_cols(file, 'x')} from {t} as x where x.{key} is not null "
        f"and not exists (select 1 from {parent} as p where p.{key} = x.{key})",
    )


def _overlap_rule() -> _SqlRule:
    # a previous interval (ordered by start) that is open or ends after this one starts overlaps it;
    # the running max of earlier ends (open = far future) also catches overlaps with non-adjacent intervals
    return _SqlRule(
        HOLDINGS_FILE,
        "started_on",
        "intervals of the same customer_id and product_id do not overlap",
        f"""
        select * from (
            select
                {_cols(HOLDINGS_FILE)},
                max(coalesce(ended_on, date '9999-12-31')) over (
                    partition by customer_id, product_id
                    order by started_on, ended_on nulls last
                    rows between unbounded preceding and 1 preceding
                ) as previous_ended_on
            from holdings
        )
        where previous_ended_on > started_on
        order by customer_id, product_id, started_on
        """,
    )


def _date_window_rules(file: str, window: DateWindow) -> list[_SqlRule]:
    """Every date (and timestamp) column of ``file`` within the plausible window."""
    earliest, after = window.earliest.isoformat(), (window.latest + dt.timedelta(days=1)).isoformat()
    return [
        _SqlRule(
            file,
            column,
            window.rule(column),
            f"select {_cols(file)} from {_view(file)} "
            f"where {column} < date '{earliest}' or {column} >= date '{after}' order by {column}",
        )
        for column in date_columns(file)
    ]


def _sql_rules(present: Sequence[str], window: DateWindow) -> list[_SqlRule]:
    rules = [r for f in present for r in _date_window_rules(f, window)]
    rules += [
        _unique_rule(CUSTOMERS_FILE, "customer_id"),
        _unique_rule(PRODUCTS_FILE, "product_id"),
        _reference_rule(HOLDINGS_FILE, "customer_id", CUSTOMERS_FILE),
        _reference_rule(HOLDINGS_FILE, "product_id", PRODUCTS_FILE),
        _overlap_rule(),
        _reference_rule(TRANSACTIONS_FILE, "customer_id", CUSTOMERS_FILE),
        _reference_rule(TRANSACTIONS_FILE, "product_id", PRODUCTS_FILE),
    ]
    if CHURN_ORACLE_FILE in present:
        rules.append(_reference_rule(CHURN_ORACLE_FILE, "customer_id", CUSTOMERS_FILE))
    if ORACLE_FILE in present:
        rules += [
            _reference_rule(ORACLE_FILE, "customer_id", CUSTOMERS_FILE),
            _reference_rule(ORACLE_FILE, "product_id", PRODUCTS_FILE),
        ]
    return rules


def _sql_rule_violations(con: duckdb.DuckDBPyConnection, rules: Sequence[_SqlRule]) -> list[Violation]:
    violations: list[Violation] = []
    for r in rules:
        query = f"select *, count(*) over () as _n from ({r.offending}) limit {MAX_EXAMPLES}"
        rows = _rows_as_dicts(con.execute(query))
        if rows:
            examples = tuple({k: v for k, v in row.items() if k != "_n"} for row in rows)
            violations.append(
                Violation(r.file, r.column, r.rule, count=int(rows[0]["_n"]), examples=examples)
            )
    return violations


def _register_views(con: duckdb.DuckDBPyConnection, directory: Path, files: Sequence[str]) -> None:
    for file in files:
        path = sql_literal(directory / file)
        con.execute(f"create or replace view {_view(file)} as select * from read_parquet({path})")


def _first_day_observed(con: duckdb.DuckDBPyConnection) -> dt.date | None:
    """First day of the data as the dbt snapshot spine counts it (``int_snapshots_spined``): the first
    transaction's day, else the earliest joined_on or started_on."""
    row = con.execute(
        """
        select coalesce(
            (select min(cast(occurred_at as date)) from transactions),
            least((select min(joined_on) from customers), (select min(started_on) from holdings))
        )
        """
    ).fetchone()
    return None if row is None else row[0]


def _latest_date(con: duckdb.DuckDBPyConnection) -> dt.date | None:
    """Latest date in the data: max of joined_on, started_on, ended_on and occurred_at's day."""
    row = con.execute(
        """
        select max(d) from (
            select max(joined_on) as d from customers
            union all select max(started_on) from holdings
            union all select max(ended_on) from holdings
            union all select max(cast(occurred_at as date)) from transactions
        )
        """
    ).fetchone()
    return None if row is None else row[0]


# ---------------------------------------------------------------- swap


def _swap_in(new_dir: Path, raw_dir: Path) -> None:
    """Replace ``raw_dir`` by ``new_dir`` with renames; on failure the old directory is put back."""
    if not raw_dir.exists():
        os.rename(new_dir, raw_dir)
        return
    old = raw_dir.parent / f"{OLD_PREFIX}{uuid.uuid4().hex[:12]}"
    os.rename(raw_dir, old)
    try:
        os.rename(new_dir, raw_dir)
    except BaseException:
        os.rename(old, raw_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------- public


@contextmanager
def _stage(name: str) -> Iterator[None]:
    """Log how long an ingest stage took (INFO)."""
    started = time.perf_counter()
    yield
    log.info("ingest: %s took %.1fs", name, time.perf_counter() - started)


def _raise_if(violations: Sequence[Violation]) -> None:
    if violations:
        raise ContractError(violations)


def _empty_file_violations(found: Mapping[str, Path]) -> list[Violation]:
    """Required files without a row (read from the parquet footers, nothing is loaded)."""
    violations = []
    for file in NON_EMPTY_FILES:
        rows = sum(pq.ParquetFile(p).metadata.num_rows for p in _parquet_parts(found[file]))
        if rows == 0:
            violations.append(Violation(file, None, NON_EMPTY_RULE, detail="the file holds no rows"))
    return violations


def _write_validated(
    con: duckdb.DuckDBPyConnection,
    found: Mapping[str, Path],
    schemas: Mapping[str, pa_arrow.Schema],
    tmp: Path,
    batch_rows: int,
    window: DateWindow,
) -> list[str]:
    """Normalise every present parquet file into ``tmp`` and check all rules; return the files written."""
    present = [f for f in FILE_CONTRACTS if f in found]
    _raise_if([v for f in present for v in _whole_number_violations(con, f, found[f], schemas[f])])
    for f in present:
        with _stage(f"normalise {f}"):
            _normalise(con, f, found[f], schemas[f], tmp / f)
    if TRANSACTIONS_FILE not in found:
        _write_empty(con, TRANSACTIONS_FILE, tmp / TRANSACTIONS_FILE)
    written = [f for f in FILE_CONTRACTS if (tmp / f).exists()]
    with _stage("row rules (pandera)"):
        _raise_if([v for f in written for v in _row_rule_violations(f, tmp / f, batch_rows)])
    _register_views(con, tmp, written)
    with _stage("cross-file rules (duckdb)"):
        _raise_if(_sql_rule_violations(con, _sql_rules(written, window)))
    return written


def ingest_directory(
    source: Path,
    raw_dir: Path,
    *,
    batch_rows: int = 1_000_000,
    memory_limit: str = "4GB",
    threads: int | None = None,
    date_window: DateWindow | None = None,
    today: dt.date | None = None,
) -> IngestSummary:
    """Validate the dataset in ``source`` and atomically replace ``raw_dir`` with its normalised copy.

    Args:
        source: directory holding ``customers.parquet``, ``products.parquet``, ``holdings.parquet`` and
            optionally ``transactions.parquet``, ``oracle.parquet``, ``dataset.json``. A parquet "file"
            may also be a directory of ``*.parquet`` parts.
        raw_dir: destination; replaced only when the new dataset is complete and valid.
        batch_rows: rows per record batch for the pandera row rules (bounds memory).
        memory_limit: DuckDB memory limit (it spills to a temporary directory beyond it).
        threads: DuckDB threads; ``None`` = DuckDB's default (all cores).
        date_window: the plausible dates; ``None`` = ``DateWindow.default(today)``
            (1900-01-01 .. today + 1 year).
        today: the current date (``None`` = ``date.today()``); ``observed_until`` may not be after it.

    Returns:
        An ``IngestSummary`` with the row counts and the completed dataset metadata.

    Raises:
        ContractError: a required file or non-null column is missing, a required file is empty, a type
            cannot be normalised, or a rule of the raw contract is broken (including a date outside
            ``date_window`` and the rules of ``meta_violations``); the message names file, column, rule
            and up to 5 offending rows. (An absent nullable column is not an error: it is stored as all
            null and listed in the summary's ``absent_columns``.)
    """
    started = time.perf_counter()
    source, raw_dir = Path(source), Path(raw_dir)
    found = _locate_files(source)
    partial = _read_partial_meta(found.get(DATASET_META_FILE))
    parquet_files = [f for f in FILE_CONTRACTS if f in found]

    schemas = {f: _source_schema(found[f]) for f in parquet_files}
    _raise_if([v for f in parquet_files for v in _type_violations(f, schemas[f])])
    _raise_if(_empty_file_violations(found))
    today = today or dt.date.today()
    window = date_window or DateWindow.default(today)

    raw_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=raw_dir.parent))
    try:
        os.chmod(tmp, 0o755)
        con = _connect(tmp / ".spill", memory_limit, threads)
        try:
            written = _write_validated(con, found, schemas, tmp, batch_rows, window)
            meta = _complete_meta(partial, con, default_name=source.resolve().name, today=today)
        finally:
            con.close()
        shutil.rmtree(tmp / ".spill", ignore_errors=True)
        (tmp / DATASET_META_FILE).write_text(
            json.dumps({**meta.to_json_dict(), **partial.extra}, indent=2) + "\n", encoding="utf-8"
        )
        rows = {f: pq.ParquetFile(tmp / f).metadata.num_rows for f in written}
        _swap_in(tmp, raw_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary = IngestSummary(
        raw_dir=raw_dir,
        name=meta.name,
        observed_until=meta.observed_until,
        burn_in_months=meta.burn_in_months,
        rows=rows,
        seconds=time.perf_counter() - started,
        absent_columns={f: a for f in parquet_files if (a := absent_nullable_columns(f, schemas[f]))},
    )
    log.info("ingest: %s -> %s %s in %.1fs", source, raw_dir, dict(rows), summary.seconds)
    return summary


def _complete_meta(
    partial: PartialMeta, con: duckdb.DuckDBPyConnection, default_name: str, today: dt.date
) -> DatasetMeta:
    """``dataset.json`` with its defaults filled in, checked against the data (``meta_violations``)."""
    observed_until = partial.observed_until or _latest_date(con)
    first_day = _first_day_observed(con)
    if observed_until is None or first_day is None:
        raise ContractError(
            [Violation(DATASET_META_FILE, "observed_until", "derivable", detail="the dataset holds no dates")]
        )
    meta = DatasetMeta(
        name=partial.name or default_name,
        observed_until=observed_until,
        burn_in_months=partial.burn_in_months,
    )
    _raise_if(meta_violations(meta, first_day, today, derived=partial.observed_until is None))
    return meta


def read_dataset_meta(raw_dir: Path) -> DatasetMeta:
    """The completed ``dataset.json`` of an ingested raw dir.

    Raises:
        ContractError: the file is missing (nothing ingested yet) or lacks a key or holds a wrong value.
    """
    path = Path(raw_dir) / DATASET_META_FILE
    if not path.exists():
        raise ContractError(
            [
                Violation(
                    DATASET_META_FILE,
                    None,
                    "present after ingest",
                    detail=f"not found in {raw_dir}: run `nextbest ingest synthetic|completejourney|dir`",
                )
            ]
        )
    partial = _read_partial_meta(path)
    if partial.name is None or partial.observed_until is None:
        missing = "name" if partial.name is None else "observed_until"
        raise ContractError([Violation(DATASET_META_FILE, missing, "present after ingest", detail="missing")])
    return DatasetMeta(
        name=partial.name, observed_until=partial.observed_until, burn_in_months=partial.burn_in_months
    )
