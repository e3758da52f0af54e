"""The contract's sanity rules (issue 11): datasets that are well typed but would wreck a build are
rejected naming file, column and rule; the raw dir already in place is left byte-for-byte intact.

Cases: 0-row required files; dates outside the plausible window (``9999-12-31``, a bit-flipped year);
``observed_until`` in the future or before the data; ``burn_in_months`` not below the months observed;
part files with conflicting types; a duplicated column name; time zone aware dates (local day kept).
Each test writes a copy of ``tiny_frames()`` with one change and ingests it with the real DuckDB.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import struct
from pathlib import Path

import pandas as pd
import pyarrow as pa_arrow
import pyarrow.parquet as pq
import pytest

from nextbest.ingest.contract import (
    BURN_IN_RULE,
    CUSTOMERS_FILE,
    DATASET_META_FILE,
    HOLDINGS_FILE,
    NON_EMPTY_RULE,
    OBSERVED_UNTIL_AFTER_START_RULE,
    OBSERVED_UNTIL_NOT_FUTURE_RULE,
    PRODUCTS_FILE,
    TRANSACTIONS_FILE,
    ContractError,
    DateWindow,
    Violation,
    months_observed,
)
from nextbest.ingest.store import ingest_directory, read_dataset_meta
from tests.data.raw_builders import TINY_LATEST_DATE, tiny_frames, write_frames

D = dt.date.fromisoformat
TODAY = D("2026-11-30")
"""A fixed 'today' for the rules that depend on it (the default window ends on TODAY + 1 year)."""
WINDOW_RULE = "1900-01-01 <= {} <= 2027-11-30"
TINY_FIRST_DAY = D("2020-01-05")
"""First day observed in ``tiny_frames()``: its first transaction."""
TINY_MONTHS_OBSERVED = 18
"""Month ends 2020-01-31 .. 2021-06-30 in ``tiny_frames()``."""

Frames = dict[str, pd.DataFrame]


def _write(path: Path, frames: Frames, meta: dict | None = None) -> Path:
    return write_frames(path, frames, meta)


def _tree_hashes(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    """A raw dir holding a valid ingest of ``tiny_frames()``: every rejection must leave it intact."""
    raw = tmp_path / "home" / "raw"
    ingest_directory(_write(tmp_path / "first", tiny_frames()), raw, today=TODAY)
    return raw


def _rejected(raw: Path, source: Path, **kwargs) -> ContractError:
    """Ingest ``source`` over ``raw``; assert it is rejected and ``raw`` unchanged; return the error."""
    before = _tree_hashes(raw)
    with pytest.raises(ContractError) as error:
        ingest_directory(source, raw, today=TODAY, **kwargs)
    assert _tree_hashes(raw) == before
    return error.value


def _truncate(source: Path, *files: str) -> Path:
    """Rewrite ``files`` of ``source`` with no rows and their column types kept."""
    for file in files:
        pq.write_table(pq.read_table(source / file).slice(0, 0), source / file)
    return source


def _only(error: ContractError) -> Violation:
    assert len(error.violations) == 1, str(error)
    return error.violations[0]


# ------------------------------------------------------------------------------------------ 0-row files


@pytest.mark.parametrize("frame", ["customers", "products", "holdings"])
def test_a_required_file_without_rows_is_rejected(raw: Path, tmp_path: Path, frame: str) -> None:
    source = _truncate(_write(tmp_path / "src", tiny_frames()), f"{frame}.parquet")

    violation = _only(_rejected(raw, source))

    assert (violation.file, violation.column, violation.rule) == (f"{frame}.parquet", None, NON_EMPTY_RULE)
    assert f"{frame}.parquet: rule 'non-empty' violated: the file holds no rows" in violation.describe()


def test_all_files_without_rows_name_every_required_file(raw: Path, tmp_path: Path) -> None:
    files = (CUSTOMERS_FILE, PRODUCTS_FILE, HOLDINGS_FILE, TRANSACTIONS_FILE)
    meta = {"observed_until": "2021-06-30"}  # nothing left to derive it from: given, as a user would
    source = _truncate(_write(tmp_path / "src", tiny_frames(), meta), *files)

    error = _rejected(raw, source)

    assert [(v.file, v.rule) for v in error.violations] == [
        (CUSTOMERS_FILE, NON_EMPTY_RULE),
        (PRODUCTS_FILE, NON_EMPTY_RULE),
        (HOLDINGS_FILE, NON_EMPTY_RULE),
    ]


def test_empty_transactions_are_still_accepted(tmp_path: Path) -> None:
    source = _truncate(_write(tmp_path / "src", tiny_frames()), TRANSACTIONS_FILE)

    summary = ingest_directory(source, tmp_path / "raw", today=TODAY)

    assert summary.rows[TRANSACTIONS_FILE] == 0


# ------------------------------------------------------------------------------------------ date window


@pytest.mark.parametrize(
    ("frame", "row", "column", "value"),
    [
        ("customers", 2, "joined_on", D("9999-12-31")),
        ("customers", 0, "joined_on", D("1899-12-31")),
        ("holdings", 0, "started_on", D("1850-01-01")),
        ("holdings", 1, "ended_on", D("2027-12-01")),
        ("transactions", 3, "occurred_at", pd.Timestamp("2027-12-01 00:00")),
    ],
    ids=["joined_on 9999-12-31", "joined_on 1899", "started_on 1850", "ended_on after window", "occurred_at"],
)
def test_a_date_outside_the_plausible_window_is_rejected(
    raw: Path, tmp_path: Path, frame: str, row: int, column: str, value: object
) -> None:
    frames = tiny_frames()
    frames[frame].loc[row, column] = value

    violation = _only(_rejected(raw, _write(tmp_path / "src", frames)))

    assert (violation.file, violation.column) == (f"{frame}.parquet", column)
    assert (violation.rule, violation.count) == (WINDOW_RULE.format(column), 1)
    assert violation.examples[0][column] in (value, getattr(value, "to_pydatetime", lambda: None)())


def test_the_last_day_of_the_window_is_accepted(tmp_path: Path) -> None:
    frames = tiny_frames()
    frames["holdings"].loc[1, "ended_on"] = D("2027-11-30")  # a scheduled end, within today + 1 year

    meta = {"observed_until": TINY_LATEST_DATE.isoformat()}
    summary = ingest_directory(_write(tmp_path / "src", frames, meta), tmp_path / "raw", today=TODAY)

    assert summary.observed_until == TINY_LATEST_DATE


def test_the_date_window_is_configurable(raw: Path, tmp_path: Path) -> None:
    frames = tiny_frames()
    frames["customers"].loc[0, "joined_on"] = D("1850-06-01")  # an old bank's first customer
    source = _write(tmp_path / "src", frames)
    _rejected(raw, source)

    ingest_directory(source, raw, today=TODAY, date_window=DateWindow(D("1800-01-01"), D("2030-12-31")))

    assert read_dataset_meta(raw).observed_until == TINY_LATEST_DATE


def test_the_default_window_is_1900_to_a_year_after_today() -> None:
    assert DateWindow.default(D("2024-02-29")) == DateWindow(D("1900-01-01"), D("2025-02-28"))
    assert DateWindow.default(TODAY).rule("joined_on") == WINDOW_RULE.format("joined_on")


C1_JOINED_DAYS = (D("2019-01-15") - D("1970-01-01")).days
FLIPPED_DAYS = C1_JOINED_DAYS | 1 << 30


def _bit_flipped_customers(path: Path) -> None:
    """Rewrite ``path`` plain-encoded without statistics, then flip bit 30 of c1's joined_on in the data
    page: the footer stays valid, the date becomes a year in the millions (as a bad disk would)."""
    table = pq.read_table(path)
    pq.write_table(table, path, compression="none", use_dictionary=False, write_statistics=False)
    data = bytearray(path.read_bytes())
    at = data.find(struct.pack("<i", C1_JOINED_DAYS))
    assert at > 0 and data.find(struct.pack("<i", C1_JOINED_DAYS), at + 1) == -1
    data[at : at + 4] = struct.pack("<i", FLIPPED_DAYS)
    path.write_bytes(bytes(data))


def test_a_bit_flipped_date_with_a_valid_footer_is_rejected(raw: Path, tmp_path: Path) -> None:
    source = _write(tmp_path / "src", tiny_frames())
    _bit_flipped_customers(source / CUSTOMERS_FILE)
    flipped = pq.read_table(source / CUSTOMERS_FILE).column("joined_on").cast(pa_arrow.int32())[0].as_py()
    assert flipped == FLIPPED_DAYS  # the footer is valid: the file reads, with a day in year ~2.9 million

    violation = _only(_rejected(raw, source))

    assert (violation.file, violation.column, violation.rule) == (
        CUSTOMERS_FILE,
        "joined_on",
        WINDOW_RULE.format("joined_on"),
    )
    assert violation.examples[0]["customer_id"] == "c1"


# ------------------------------------------------------------------------------------------ dataset.json


def test_months_observed_counts_month_ends() -> None:
    assert months_observed(D("2020-01-15"), D("2020-03-31")) == 3
    assert months_observed(D("2020-01-15"), D("2020-03-30")) == 2
    assert months_observed(D("2020-01-31"), D("2020-01-31")) == 1
    assert months_observed(D("2020-01-15"), D("2020-01-30")) == 0
    assert months_observed(TINY_FIRST_DAY, TINY_LATEST_DATE) == TINY_MONTHS_OBSERVED


def test_observed_until_before_the_data_is_rejected(raw: Path, tmp_path: Path) -> None:
    source = _write(tmp_path / "src", tiny_frames(), {"observed_until": "1990-12-31"})

    violation = _only(_rejected(raw, source))

    assert (violation.file, violation.column) == (DATASET_META_FILE, "observed_until")
    assert violation.rule == OBSERVED_UNTIL_AFTER_START_RULE
    assert "found '1990-12-31'; the data starts on 2020-01-05" in violation.detail


def test_observed_until_after_today_is_rejected(raw: Path, tmp_path: Path) -> None:
    source = _write(tmp_path / "src", tiny_frames(), {"observed_until": "2026-12-31"})

    violation = _only(_rejected(raw, source))

    assert (violation.column, violation.rule) == ("observed_until", OBSERVED_UNTIL_NOT_FUTURE_RULE)
    assert "today is 2026-11-30" in violation.detail


def test_a_derived_observed_until_after_today_says_to_set_it(raw: Path, tmp_path: Path) -> None:
    frames = tiny_frames()
    frames["holdings"].loc[1, "ended_on"] = D("2027-03-31")  # a scheduled end date, in the window

    violation = _only(_rejected(raw, _write(tmp_path / "src", frames)))

    assert violation.rule == OBSERVED_UNTIL_NOT_FUTURE_RULE
    assert "set observed_until in dataset.json" in violation.detail


@pytest.mark.parametrize("burn_in", [TINY_MONTHS_OBSERVED, 10**20], ids=["months observed", "1e20"])
def test_burn_in_not_below_the_months_observed_is_rejected(raw: Path, tmp_path: Path, burn_in: int) -> None:
    source = _write(tmp_path / "src", tiny_frames(), {"burn_in_months": burn_in})

    violation = _only(_rejected(raw, source))

    assert (violation.file, violation.column, violation.rule) == (
        DATASET_META_FILE,
        "burn_in_months",
        BURN_IN_RULE,
    )
    assert "18 month ends observed from 2020-01-05 to 2021-06-30" in violation.detail


def test_burn_in_one_below_the_months_observed_is_accepted(tmp_path: Path) -> None:
    source = _write(tmp_path / "src", tiny_frames(), {"burn_in_months": TINY_MONTHS_OBSERVED - 1})

    summary = ingest_directory(source, tmp_path / "raw", today=TODAY)

    assert summary.burn_in_months == TINY_MONTHS_OBSERVED - 1


def test_burn_in_as_a_float_in_json_is_rejected(raw: Path, tmp_path: Path) -> None:
    source = _write(tmp_path / "src", tiny_frames())
    (source / DATASET_META_FILE).write_text('{"burn_in_months": 1e20}')

    violation = _only(_rejected(raw, source))

    assert (violation.column, violation.rule) == ("burn_in_months", "integer >= 0")


# ------------------------------------------------------------------------------------------ parts, columns


def test_parts_with_conflicting_types_are_named(raw: Path, tmp_path: Path) -> None:
    frames = tiny_frames()
    customers = frames.pop("customers")
    source = _write(tmp_path / "src", {**frames, "customers": customers.iloc[:0]})
    (source / CUSTOMERS_FILE).unlink()
    parts = source / CUSTOMERS_FILE
    parts.mkdir()
    customers.iloc[:2].to_parquet(parts / "part-0.parquet", index=False)
    other = customers.iloc[2:].assign(customer_id=[3, 4])  # ints in one part, strings in the other
    other.to_parquet(parts / "part-1.parquet", index=False)

    violation = _only(_rejected(raw, source))

    assert (violation.file, violation.column, violation.rule) == (
        CUSTOMERS_FILE,
        "customer_id",
        "one type in every part",
    )
    assert violation.detail == "found part-0.parquet: string, part-1.parquet: int64"


def test_parts_with_mergeable_types_are_accepted(tmp_path: Path) -> None:
    frames = tiny_frames()
    holdings = frames.pop("holdings")
    source = _write(tmp_path / "src", {**frames, "holdings": holdings})
    (source / HOLDINGS_FILE).unlink()
    parts = source / HOLDINGS_FILE
    parts.mkdir()
    holdings.iloc[:2].to_parquet(parts / "part-0.parquet", index=False)  # ended_on: one null -> date
    holdings.iloc[[3]].to_parquet(parts / "part-1.parquet", index=False)  # ended_on all null -> null type
    holdings.iloc[[2, 4]].to_parquet(parts / "part-2.parquet", index=False)

    summary = ingest_directory(source, tmp_path / "raw", today=TODAY)

    assert summary.rows[HOLDINGS_FILE] == 5


def test_a_duplicated_column_name_is_named(raw: Path, tmp_path: Path) -> None:
    source = _write(tmp_path / "src", tiny_frames())
    table = pq.read_table(source / CUSTOMERS_FILE)
    table = table.append_column(pa_arrow.field("segment", pa_arrow.string()), table.column("region"))
    pq.write_table(table, source / CUSTOMERS_FILE)

    violation = _only(_rejected(raw, source))

    assert (violation.file, violation.column, violation.rule) == (
        CUSTOMERS_FILE,
        "segment",
        "unique column name",
    )
    assert violation.detail == "found 2 times"


# ------------------------------------------------------------------------------------------ time zones


@pytest.mark.parametrize("zone", ["Asia/Tokyo", "+09:00", "America/Los_Angeles"])
def test_a_time_zone_aware_date_keeps_its_local_calendar_day(tmp_path: Path, zone: str) -> None:
    frames = tiny_frames()
    local = ["2019-01-15 00:00", "2019-06-01 23:59:59", "2020-02-29 09:00", "2020-12-31 00:00"]
    frames["customers"]["joined_on"] = pd.to_datetime(local, format="ISO8601").tz_localize(zone)

    ingest_directory(_write(tmp_path / "src", frames), tmp_path / "raw", today=TODAY)

    joined = pq.read_table(tmp_path / "raw" / CUSTOMERS_FILE).column("joined_on").to_pylist()
    assert joined == [D("2019-01-15"), D("2019-06-01"), D("2020-02-29"), D("2020-12-31")]


def test_meta_is_still_written_with_the_checked_values(tmp_path: Path) -> None:
    meta = {"name": "tiny", "observed_until": "2021-06-30", "burn_in_months": 3}

    ingest_directory(_write(tmp_path / "src", tiny_frames(), meta), tmp_path / "raw", today=TODAY)

    assert json.loads((tmp_path / "raw" / DATASET_META_FILE).read_text()) == meta
