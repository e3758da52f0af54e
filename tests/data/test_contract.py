"""The raw data contract: every rule rejects a broken dataset with file, column and rule named; the
accepted quirks (int ids, timestamp dates, extra columns, missing transactions, null attributes) pass and
are normalised to the stored types.

Each test writes a copy of ``tiny_frames()`` with one change and ingests it with the real DuckDB.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nextbest.ingest.contract import (
    CUSTOMERS_FILE,
    FILE_CONTRACTS,
    HOLDINGS_FILE,
    ORACLE_FILE,
    PRODUCTS_FILE,
    TRANSACTIONS_FILE,
    ContractError,
    Violation,
    parse_dataset_meta,
    stored_arrow_schema,
)
from nextbest.ingest.store import ingest_directory, read_dataset_meta
from tests.data.raw_builders import TINY_LATEST_DATE, TINY_ROWS, tiny_frames, write_frames

Frames = dict[str, pd.DataFrame]


def _write(path: Path, frames: Frames, meta: dict | None = None, **extra: pd.DataFrame) -> Path:
    return write_frames(path, frames, meta, **extra)


def _ingest(tmp_path: Path, frames: Frames, **kwargs) -> Path:
    raw = tmp_path / "home" / "raw"
    ingest_directory(_write(tmp_path / "src", frames), raw, **kwargs)
    return raw


def _read(raw: Path, file: str) -> pd.DataFrame:
    return pq.read_table(raw / file).to_pandas()


def _only(error: pytest.ExceptionInfo[ContractError]) -> Violation:
    assert len(error.value.violations) == 1, str(error.value)
    return error.value.violations[0]


# ------------------------------------------------------------------------------------------ violations


def _set(frame: str, row: int, column: str, value) -> Callable[[Frames], None]:
    def change(f: Frames) -> None:
        f[frame].loc[row, column] = value

    return change


def _append(frame: str, **row) -> Callable[[Frames], None]:
    def change(f: Frames) -> None:
        f[frame] = pd.concat([f[frame], pd.DataFrame([row])], ignore_index=True)

    return change


def _replace_column(frame: str, column: str, values: list) -> Callable[[Frames], None]:
    def change(f: Frames) -> None:
        f[frame][column] = values

    return change


D = dt.date.fromisoformat

VIOLATIONS = {
    # name: (change, file, column, rule, offending row count)
    "duplicate customer_id": (
        _append("customers", customer_id="c1", joined_on=D("2020-01-01")),
        CUSTOMERS_FILE,
        "customer_id",
        "unique",
        2,
    ),
    "null joined_on": (_set("customers", 1, "joined_on", None), CUSTOMERS_FILE, "joined_on", "non-null", 1),
    "null customer_id": (
        _set("customers", 1, "customer_id", None),
        CUSTOMERS_FILE,
        "customer_id",
        "non-null",
        1,
    ),
    "negative income": (_set("customers", 0, "income", -0.01), CUSTOMERS_FILE, "income", "income >= 0", 1),
    "birth_year before 1900": (
        _set("customers", 0, "birth_year", 1899),
        CUSTOMERS_FILE,
        "birth_year",
        "1900 <= birth_year <= 2100",
        1,
    ),
    "duplicate product_id": (
        _append("products", product_id="p2", product_name="Other", category="loans"),
        PRODUCTS_FILE,
        "product_id",
        "unique",
        2,
    ),
    "null product_name": (
        _set("products", 0, "product_name", None),
        PRODUCTS_FILE,
        "product_name",
        "non-null",
        1,
    ),
    "min_age > max_age": (
        _set("products", 1, "min_age", 71),
        PRODUCTS_FILE,
        "max_age",
        "min_age <= max_age",
        1,
    ),
    "ended_on == started_on": (
        _set("holdings", 1, "ended_on", D("2019-09-01")),
        HOLDINGS_FILE,
        "ended_on",
        "ended_on > started_on",
        1,
    ),
    "ended_on < started_on": (
        _set("holdings", 4, "ended_on", D("2021-01-09")),
        HOLDINGS_FILE,
        "ended_on",
        "ended_on > started_on",
        1,
    ),
    "overlap after a closed interval": (
        _set("holdings", 3, "started_on", D("2020-05-31")),
        HOLDINGS_FILE,
        "started_on",
        "intervals of the same customer_id and product_id do not overlap",
        1,
    ),
    "overlap after an open interval": (
        _append("holdings", customer_id="c1", product_id="p1", started_on=D("2022-01-01"), ended_on=None),
        HOLDINGS_FILE,
        "started_on",
        "intervals of the same customer_id and product_id do not overlap",
        1,
    ),
    "unknown product in holdings": (
        _set("holdings", 0, "product_id", "p9"),
        HOLDINGS_FILE,
        "product_id",
        "product_id exists in products.parquet",
        1,
    ),
    "unknown customer in holdings": (
        _set("holdings", 0, "customer_id", "c9"),
        HOLDINGS_FILE,
        "customer_id",
        "customer_id exists in customers.parquet",
        1,
    ),
    "null started_on": (_set("holdings", 2, "started_on", None), HOLDINGS_FILE, "started_on", "non-null", 1),
    "unknown customer in transactions": (
        _set("transactions", 2, "customer_id", "c9"),
        TRANSACTIONS_FILE,
        "customer_id",
        "customer_id exists in customers.parquet",
        1,
    ),
    "unknown product in transactions": (
        _set("transactions", 1, "product_id", "p9"),
        TRANSACTIONS_FILE,
        "product_id",
        "product_id exists in products.parquet",
        1,
    ),
    "null amount": (_set("transactions", 0, "amount", None), TRANSACTIONS_FILE, "amount", "non-null", 1),
    "null occurred_at": (
        _set("transactions", 0, "occurred_at", pd.NaT),
        TRANSACTIONS_FILE,
        "occurred_at",
        "non-null",
        1,
    ),
}


@pytest.mark.parametrize("case", list(VIOLATIONS), ids=list(VIOLATIONS))
def test_rule_violation_is_rejected_naming_file_column_rule(tmp_path: Path, case: str) -> None:
    change, file, column, rule, count = VIOLATIONS[case]
    frames = tiny_frames()
    change(frames)

    with pytest.raises(ContractError) as error:
        _ingest(tmp_path, frames)

    violation = _only(error)
    assert (violation.file, violation.column, violation.rule, violation.count) == (file, column, rule, count)
    assert f"{file}: column '{column}': rule '{rule}' violated by {count} row" in str(error.value)
    assert len(violation.examples) == count


TYPE_ERRORS = {
    # name: (frame, column, values, file, found type)
    "string amount": ("transactions", "amount", ["1.0", "2", "3", "4"], TRANSACTIONS_FILE, "string"),
    "string joined_on": (
        "customers",
        "joined_on",
        ["2019-01-15", "2019-06-01", "2020-02-29", "2020-12-31"],
        CUSTOMERS_FILE,
        "string",
    ),
    "float customer_id": ("customers", "customer_id", [1.0, 2.0, 3.0, 4.0], CUSTOMERS_FILE, "double"),
    "bool income": ("customers", "income", [True, False, True, False], CUSTOMERS_FILE, "bool"),
    "int segment": ("customers", "segment", [1, 2, 3, 4], CUSTOMERS_FILE, "int64"),
    "string started_on": ("holdings", "started_on", ["2020-01-01"] * 5, HOLDINGS_FILE, "string"),
    "all-null product_name": ("products", "product_name", [None, None, None], PRODUCTS_FILE, "null"),
}


@pytest.mark.parametrize("case", list(TYPE_ERRORS), ids=list(TYPE_ERRORS))
def test_uncoercible_type_is_rejected_naming_found_type(tmp_path: Path, case: str) -> None:
    frame, column, values, file, found = TYPE_ERRORS[case]
    frames = tiny_frames()
    frames[frame][column] = values

    with pytest.raises(ContractError) as error:
        _ingest(tmp_path, frames)

    violation = _only(error)
    assert (violation.file, violation.column) == (file, column)
    assert f"found type {found}" in str(error.value)
    assert f"{file}: column '{column}': rule 'type " in str(error.value)


def test_non_whole_float_in_int_column_is_rejected(tmp_path: Path) -> None:
    frames = tiny_frames()
    frames["customers"]["birth_year"] = [1980.0, 1995.5, None, 2001.0]

    with pytest.raises(ContractError) as error:
        _ingest(tmp_path, frames)

    violation = _only(error)
    assert (violation.file, violation.column, violation.rule, violation.count) == (
        CUSTOMERS_FILE,
        "birth_year",
        "type int",
        1,
    )
    assert violation.examples == ({"birth_year": 1995.5},)
    assert "found type double with non-whole values" in str(error.value)


@pytest.mark.parametrize("missing", [CUSTOMERS_FILE, PRODUCTS_FILE, HOLDINGS_FILE])
def test_missing_required_file_is_named(tmp_path: Path, missing: str) -> None:
    source = _write(tmp_path / "src", tiny_frames())
    (source / missing).unlink()

    with pytest.raises(ContractError) as error:
        ingest_directory(source, tmp_path / "raw")

    violation = _only(error)
    assert (violation.file, violation.column, violation.rule) == (missing, None, "required file")
    assert str(error.value).startswith(f"{missing}: rule 'required file' violated")


def test_missing_required_column_is_named(tmp_path: Path) -> None:
    frames = tiny_frames()
    frames["customers"] = frames["customers"].drop(columns=["joined_on"])

    with pytest.raises(ContractError) as error:
        _ingest(tmp_path, frames)

    violation = _only(error)
    assert (violation.file, violation.column, violation.rule) == (
        CUSTOMERS_FILE, "joined_on", "required column",
    )


def test_absent_nullable_columns_are_stored_as_all_null_and_listed(tmp_path: Path) -> None:
    frames = tiny_frames()
    frames["customers"] = frames["customers"].drop(columns=["income", "region"])
    frames["holdings"] = frames["holdings"].drop(columns=["ended_on"])
    frames["holdings"] = frames["holdings"].drop_duplicates(["customer_id", "product_id"], keep="last")
    raw = tmp_path / "home" / "raw"

    summary = ingest_directory(_write(tmp_path / "src", frames), raw)

    assert summary.absent_columns == {CUSTOMERS_FILE: ("income", "region"), HOLDINGS_FILE: ("ended_on",)}
    customers = pq.read_table(raw / CUSTOMERS_FILE)
    assert customers.column_names[:6] == [
        "customer_id", "joined_on", "birth_year", "income", "segment", "region",
    ]
    assert customers.schema.field("income").type == pa.float64()
    assert customers.schema.field("region").type == pa.string()
    assert customers.column("income").null_count == customers.num_rows == len(frames["customers"])
    assert customers.column("region").null_count == customers.num_rows
    holdings = pq.read_table(raw / HOLDINGS_FILE)
    assert holdings.schema.field("ended_on").type == pa.date32()
    assert holdings.column("ended_on").null_count == holdings.num_rows > 0


def test_message_shows_the_offending_row(tmp_path: Path) -> None:
    frames = tiny_frames()
    frames["holdings"].loc[4, "ended_on"] = D("2021-01-09")

    with pytest.raises(ContractError) as error:
        _ingest(tmp_path, frames)

    assert str(error.value) == (
        "holdings.parquet: column 'ended_on': rule 'ended_on > started_on' violated by 1 row, e.g.:\n"
        "    {'customer_id': 'c4', 'product_id': 'p3', 'started_on': '2021-01-10', 'ended_on': '2021-01-09'}"
    )


def test_at_most_five_examples_but_every_row_counted(tmp_path: Path) -> None:
    frames = tiny_frames()
    frames["transactions"] = pd.DataFrame(
        {
            "customer_id": [f"x{i}" for i in range(7)],
            "product_id": [None] * 7,
            "occurred_at": pd.to_datetime(["2020-01-01"] * 7),
            "amount": [1.0] * 7,
        }
    )

    with pytest.raises(ContractError) as error:
        _ingest(tmp_path, frames)

    violation = _only(error)
    assert violation.count == 7
    assert len(violation.examples) == 5


def test_row_rules_count_across_batches(tmp_path: Path) -> None:
    frames = tiny_frames()
    frames["customers"]["income"] = [-1.0, 5.0, -2.0, -3.0]

    with pytest.raises(ContractError) as error:
        _ingest(tmp_path, frames, batch_rows=2)

    violation = _only(error)
    assert (violation.rule, violation.count) == ("income >= 0", 3)
    assert [row["income"] for row in violation.examples] == [-1.0, -2.0, -3.0]


def test_all_row_rule_violations_are_reported_together(tmp_path: Path) -> None:
    frames = tiny_frames()
    frames["customers"].loc[0, "income"] = -1.0
    frames["products"].loc[0, "category"] = None

    with pytest.raises(ContractError) as error:
        _ingest(tmp_path, frames)

    found = {(v.file, v.column, v.rule) for v in error.value.violations}
    assert found == {(CUSTOMERS_FILE, "income", "income >= 0"), (PRODUCTS_FILE, "category", "non-null")}


# ------------------------------------------------------------------------------------------ oracle


def _oracle(**overrides) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "customer_id": ["c1", "c2"],
            "snapshot_on": [D("2021-01-31"), D("2021-01-31")],
            "product_id": ["p2", "p3"],
            "probability": [0.25, 1.0],
        }
    )
    for column, values in overrides.items():
        frame[column] = values
    return frame


def test_oracle_is_normalised_and_copied(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    ingest_directory(_write(tmp_path / "src", tiny_frames(), oracle=_oracle()), raw)

    assert pq.read_schema(raw / ORACLE_FILE).types == stored_arrow_schema(ORACLE_FILE).types
    assert _read(raw, ORACLE_FILE)["probability"].tolist() == [0.25, 1.0]


@pytest.mark.parametrize(
    ("overrides", "column", "rule"),
    [
        ({"probability": [0.5, 1.5]}, "probability", "0 <= probability <= 1"),
        ({"probability": [None, 0.5]}, "probability", "non-null"),
        ({"product_id": ["p2", "p9"]}, "product_id", "product_id exists in products.parquet"),
        ({"snapshot_on": ["2021-01-31", "2021-01-31"]}, "snapshot_on", "type date"),
    ],
)
def test_oracle_violations_are_rejected(tmp_path: Path, overrides: dict, column: str, rule: str) -> None:
    with pytest.raises(ContractError) as error:
        ingest_directory(
            _write(tmp_path / "src", tiny_frames(), oracle=_oracle(**overrides)), tmp_path / "raw"
        )

    violation = _only(error)
    assert (violation.file, violation.column, violation.rule) == (ORACLE_FILE, column, rule)


# ------------------------------------------------------------------------------------------ accepted quirks


def test_tiny_dataset_known_answers(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    summary = ingest_directory(_write(tmp_path / "src", tiny_frames()), raw)

    assert dict(summary.rows) == TINY_ROWS
    assert (summary.name, summary.observed_until, summary.burn_in_months) == ("src", TINY_LATEST_DATE, 0)
    for file in (CUSTOMERS_FILE, PRODUCTS_FILE, HOLDINGS_FILE, TRANSACTIONS_FILE):
        assert pq.read_schema(raw / file).types == stored_arrow_schema(file).types, file
        assert tuple(pq.read_schema(raw / file).names) == FILE_CONTRACTS[file].column_names


def test_int_ids_are_stored_as_strings_and_match_string_references(tmp_path: Path) -> None:
    frames = tiny_frames()
    frames["customers"]["customer_id"] = [1, 2, 3, 4]
    frames["holdings"]["customer_id"] = ["1", "1", "2", "2", "4"]  # strings referencing int ids
    frames["transactions"]["customer_id"] = [1, 1, 2, 4]
    frames["products"]["product_id"] = pd.array([10, 20, 30], dtype="int32")
    frames["holdings"]["product_id"] = [10, 20, 10, 10, 30]
    frames["transactions"]["product_id"] = pd.array([10, None, 10, 30], dtype="Int64")

    raw = _ingest(tmp_path, frames)

    assert _read(raw, CUSTOMERS_FILE)["customer_id"].tolist() == ["1", "2", "3", "4"]
    assert _read(raw, PRODUCTS_FILE)["product_id"].tolist() == ["10", "20", "30"]
    assert _read(raw, TRANSACTIONS_FILE)["product_id"].tolist() == ["10", None, "10", "30"]


def test_timestamp_in_date_column_is_truncated_to_the_day(tmp_path: Path) -> None:
    frames = tiny_frames()
    frames["customers"]["joined_on"] = pd.to_datetime(
        ["2019-01-15 23:59:59", "2019-06-01 00:00", "2020-02-29 12:00", "2020-12-31 08:00"], format="ISO8601"
    )

    raw = _ingest(tmp_path, frames)

    assert _read(raw, CUSTOMERS_FILE)["joined_on"].tolist() == [
        D("2019-01-15"),
        D("2019-06-01"),
        D("2020-02-29"),
        D("2020-12-31"),
    ]


def test_date_in_timestamp_column_becomes_midnight(tmp_path: Path) -> None:
    frames = tiny_frames()
    frames["transactions"]["occurred_at"] = [
        D("2020-01-05"),
        D("2021-06-30"),
        D("2020-04-01"),
        D("2021-02-01"),
    ]

    raw = _ingest(tmp_path, frames)

    occurred = _read(raw, TRANSACTIONS_FILE)["occurred_at"]
    assert occurred.tolist()[0] == pd.Timestamp("2020-01-05 00:00:00")
    assert pq.read_schema(raw / TRANSACTIONS_FILE).field("occurred_at").type.unit == "us"


def test_timezone_aware_timestamps_are_stored_as_naive_utc(tmp_path: Path) -> None:
    frames = tiny_frames()
    frames["transactions"]["occurred_at"] = pd.to_datetime(
        ["2021-01-01 00:30", "2021-06-30 18:30", "2020-04-01 12:00", "2021-02-01 00:00"]
    ).tz_localize("Europe/Amsterdam")

    raw = _ingest(tmp_path, frames)

    occurred = _read(raw, TRANSACTIONS_FILE)["occurred_at"].tolist()
    assert occurred[0] == pd.Timestamp("2020-12-31 23:30:00")  # 00:30 CET = 23:30 UTC the day before
    assert pq.read_schema(raw / TRANSACTIONS_FILE).field("occurred_at").type.tz is None


def test_nanosecond_timestamps_are_rounded_to_microseconds(tmp_path: Path) -> None:
    frames = tiny_frames()
    frames["transactions"]["occurred_at"] = pd.to_datetime(
        ["2020-01-05 09:00:00.000001999", "2021-06-30 18:30", "2020-04-01 12:00", "2021-02-01 00:00"],
        format="ISO8601",
    )

    raw = _ingest(tmp_path, frames)

    assert _read(raw, TRANSACTIONS_FILE)["occurred_at"].tolist()[0] == pd.Timestamp(
        "2020-01-05 09:00:00.000002"
    )


def test_extra_columns_are_kept_after_the_contract_columns(tmp_path: Path) -> None:
    frames = tiny_frames()
    frames["customers"]["email"] = ["a@x", "b@x", None, "d@x"]
    frames["holdings"]["channel"] = [1, 2, 3, 4, 5]

    raw = _ingest(tmp_path, frames)

    customers = _read(raw, CUSTOMERS_FILE)
    assert list(customers.columns) == [*FILE_CONTRACTS[CUSTOMERS_FILE].column_names, "email"]
    assert customers["email"].tolist() == ["a@x", "b@x", None, "d@x"]
    assert _read(raw, HOLDINGS_FILE)["channel"].tolist() == [1, 2, 3, 4, 5]


def test_pandas_index_column_is_dropped(tmp_path: Path) -> None:
    source = _write(tmp_path / "src", tiny_frames())
    tiny_frames()["products"].set_index(pd.Index([7, 8, 9])).to_parquet(source / PRODUCTS_FILE, index=True)

    ingest_directory(source, tmp_path / "raw")

    assert pq.read_schema(tmp_path / "raw" / PRODUCTS_FILE).names == list(
        FILE_CONTRACTS[PRODUCTS_FILE].column_names
    )


def test_missing_transactions_become_an_empty_contract_table(tmp_path: Path) -> None:
    frames = tiny_frames()
    del frames["transactions"]

    raw = _ingest(tmp_path, frames)

    table = pq.read_table(raw / TRANSACTIONS_FILE)
    assert table.num_rows == 0
    assert table.schema.names == list(FILE_CONTRACTS[TRANSACTIONS_FILE].column_names)
    assert table.schema.types == stored_arrow_schema(TRANSACTIONS_FILE).types


def test_null_attributes_are_accepted(tmp_path: Path) -> None:
    frames = tiny_frames()
    frames["customers"]["birth_year"] = [None, None, None, None]  # all-null: arrow null type
    frames["customers"]["income"] = [None, None, None, None]
    frames["customers"]["segment"] = [None, None, None, None]
    frames["customers"]["region"] = [None, None, None, None]
    frames["products"]["min_age"] = [None, None, None]
    frames["products"]["max_age"] = [None, 70.0, None]  # float with NaN, as pandas writes nullable ints

    raw = _ingest(tmp_path, frames)

    customers = pq.read_table(raw / CUSTOMERS_FILE)
    assert customers.schema.types == stored_arrow_schema(CUSTOMERS_FILE).types
    assert customers.column("birth_year").null_count == 4
    assert pq.read_table(raw / PRODUCTS_FILE).column("max_age").to_pylist() == [None, 70, None]


def test_int_and_decimal_amounts_become_floats(tmp_path: Path) -> None:
    frames = tiny_frames()
    frames["transactions"]["amount"] = [-25, 100, -3, 12]

    raw = _ingest(tmp_path, frames)

    assert _read(raw, TRANSACTIONS_FILE)["amount"].tolist() == [-25.0, 100.0, -3.0, 12.0]


def test_parquet_file_may_be_a_directory_of_parts(tmp_path: Path) -> None:
    frames = tiny_frames()
    transactions = frames.pop("transactions")
    source = _write(tmp_path / "src", frames)
    parts = source / TRANSACTIONS_FILE
    parts.mkdir()
    transactions.iloc[:2].to_parquet(parts / "part-0.parquet", index=False)
    transactions.iloc[2:].to_parquet(parts / "part-1.parquet", index=False)

    summary = ingest_directory(source, tmp_path / "raw")

    assert summary.rows[TRANSACTIONS_FILE] == 4
    assert (tmp_path / "raw" / TRANSACTIONS_FILE).is_file()


def test_unknown_files_are_ignored_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = _write(tmp_path / "src", tiny_frames())
    (source / "notes.txt").write_text("hello")

    with caplog.at_level(logging.WARNING, logger="nextbest.ingest.store"):
        ingest_directory(source, tmp_path / "raw")

    assert "notes.txt" in caplog.text
    assert not (tmp_path / "raw" / "notes.txt").exists()


# ------------------------------------------------------------------------------------------ dataset.json


def test_observed_until_defaults_to_latest_date_and_is_written(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    ingest_directory(_write(tmp_path / "src", tiny_frames(), meta={"name": "tiny", "burn_in_months": 2}), raw)

    assert json.loads((raw / "dataset.json").read_text()) == {
        "name": "tiny",
        "observed_until": TINY_LATEST_DATE.isoformat(),
        "burn_in_months": 2,
    }
    meta = read_dataset_meta(raw)
    assert (meta.name, meta.observed_until, meta.burn_in_months) == ("tiny", TINY_LATEST_DATE, 2)


def test_latest_date_without_transactions_comes_from_holdings(tmp_path: Path) -> None:
    frames = tiny_frames()
    del frames["transactions"]

    raw = _ingest(tmp_path, frames)

    assert read_dataset_meta(raw).observed_until == D("2021-03-31")  # c1's p2 ended then


def test_given_meta_is_kept_with_extra_keys(tmp_path: Path) -> None:
    meta = {"name": "bank", "observed_until": "2021-12-31", "burn_in_months": 0, "seed": 7}
    raw = tmp_path / "raw"
    ingest_directory(_write(tmp_path / "src", tiny_frames(), meta=meta), raw)

    assert json.loads((raw / "dataset.json").read_text()) == meta
    assert read_dataset_meta(raw).observed_until == D("2021-12-31")


@pytest.mark.parametrize(
    ("meta", "key"),
    [
        ({"observed_until": "31/12/2021"}, "observed_until"),
        ({"observed_until": "2021-02-30"}, "observed_until"),
        ({"burn_in_months": -1}, "burn_in_months"),
        ({"burn_in_months": 1.5}, "burn_in_months"),
        ({"burn_in_months": True}, "burn_in_months"),
        ({"name": 3}, "name"),
    ],
)
def test_invalid_dataset_json_is_rejected(tmp_path: Path, meta: dict, key: str) -> None:
    with pytest.raises(ContractError) as error:
        ingest_directory(_write(tmp_path / "src", tiny_frames(), meta=meta), tmp_path / "raw")

    violation = _only(error)
    assert (violation.file, violation.column) == ("dataset.json", key)


def test_dataset_json_must_be_an_object() -> None:
    with pytest.raises(ContractError, match="dataset.json: rule 'a JSON object'"):
        parse_dataset_meta([1, 2])


def test_read_dataset_meta_without_ingest_fails(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="dataset.json"):
        read_dataset_meta(tmp_path)


def test_unreadable_parquet_is_named(tmp_path: Path) -> None:
    source = _write(tmp_path / "src", tiny_frames())
    (source / PRODUCTS_FILE).write_bytes(b"not a parquet file")

    with pytest.raises(ContractError) as error:
        ingest_directory(source, tmp_path / "raw")

    violation = _only(error)
    assert (violation.file, violation.rule) == (PRODUCTS_FILE, "parquet")
    assert not (tmp_path / "raw").exists()
