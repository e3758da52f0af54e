"""Ingest end to end on disk: a valid dataset lands in the raw dir; a failing ingest (at any stage) leaves
the previous raw dir byte-for-byte intact with no temporary directory behind; a re-ingest replaces it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import nextbest.ingest.store as store
from nextbest.ingest.contract import (
    CUSTOMERS_FILE,
    DATASET_META_FILE,
    HOLDINGS_FILE,
    ORACLE_FILE,
    TRANSACTIONS_FILE,
    ContractError,
    stored_arrow_schema,
)
from nextbest.ingest.store import OLD_PREFIX, TMP_PREFIX, ingest_directory, read_dataset_meta
from nextbest.settings import Settings
from tests.data.raw_builders import (
    TINY_LATEST_DATE,
    TINY_ROWS,
    tiny_frames,
    write_frames,
    write_scale_dataset,
)

pytestmark = pytest.mark.integration


def _tree_hashes(directory: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``directory``."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith((TMP_PREFIX, OLD_PREFIX))]


def _source(path: Path, frames: dict[str, pd.DataFrame], **extra: pd.DataFrame) -> Path:
    return write_frames(path, frames, {"name": path.name, "burn_in_months": 1}, **extra)


@pytest.fixture
def ingested(settings: Settings, tmp_path: Path) -> Path:
    """A first valid ingest into ``settings.raw_dir`` (with an oracle file)."""
    oracle = pd.DataFrame(
        {
            "customer_id": ["c1"],
            "snapshot_on": pd.to_datetime(["2021-01-31"]),
            "product_id": ["p3"],
            "probability": [0.1],
        }
    )
    ingest_directory(_source(tmp_path / "first", tiny_frames(), oracle=oracle), settings.raw_dir)
    return settings.raw_dir


def test_valid_ingest_writes_the_normalised_dataset(ingested: Path) -> None:
    assert sorted(p.name for p in ingested.iterdir()) == sorted([*TINY_ROWS, ORACLE_FILE, DATASET_META_FILE])
    for file, rows in TINY_ROWS.items():
        table = pq.read_table(ingested / file)
        assert table.num_rows == rows, file
        assert table.schema.types == stored_arrow_schema(file).types, file
    meta = read_dataset_meta(ingested)
    assert (meta.name, meta.observed_until, meta.burn_in_months) == ("first", TINY_LATEST_DATE, 1)
    assert _leftovers(ingested.parent) == []


def test_ingested_values_round_trip(ingested: Path) -> None:
    expected = tiny_frames()["holdings"]
    holdings = pq.read_table(ingested / HOLDINGS_FILE).to_pandas()
    pd.testing.assert_frame_equal(holdings, expected, check_dtype=False)


def _break_type(frames: dict[str, pd.DataFrame]) -> None:
    frames["transactions"]["amount"] = frames["transactions"]["amount"].astype(str)


def _break_row_rule(frames: dict[str, pd.DataFrame]) -> None:
    frames["customers"].loc[0, "income"] = -5.0


def _break_reference(frames: dict[str, pd.DataFrame]) -> None:
    frames["holdings"].loc[0, "customer_id"] = "nobody"


@pytest.mark.parametrize(
    "breaks",
    [_break_type, _break_row_rule, _break_reference],
    ids=["type check", "row rule (pandera)", "reference (duckdb)"],
)
def test_failed_ingest_leaves_previous_raw_dir_intact(ingested: Path, tmp_path: Path, breaks) -> None:
    before = _tree_hashes(ingested)
    frames = tiny_frames()
    frames["customers"] = frames["customers"].iloc[:3].copy()  # a different dataset...
    frames["holdings"] = frames["holdings"].iloc[:4].copy()
    frames["transactions"] = frames["transactions"].iloc[:3].copy()
    breaks(frames)  # ...with one broken rule

    with pytest.raises(ContractError):
        ingest_directory(_source(tmp_path / "second", frames), ingested)

    assert _tree_hashes(ingested) == before
    assert _leftovers(ingested.parent) == []


def test_missing_required_file_leaves_previous_raw_dir_intact(ingested: Path, tmp_path: Path) -> None:
    before = _tree_hashes(ingested)
    source = _source(tmp_path / "second", tiny_frames())
    (source / CUSTOMERS_FILE).unlink()

    with pytest.raises(ContractError, match="customers.parquet"):
        ingest_directory(source, ingested)

    assert _tree_hashes(ingested) == before
    assert _leftovers(ingested.parent) == []


def test_reingest_replaces_the_whole_raw_dir(ingested: Path, tmp_path: Path) -> None:
    frames = tiny_frames()
    frames["customers"] = frames["customers"].iloc[:3].copy()
    frames["holdings"] = frames["holdings"].iloc[:4].copy()
    del frames["transactions"]

    summary = ingest_directory(_source(tmp_path / "second", frames), ingested)

    assert dict(summary.rows) == {
        "customers.parquet": 3,
        "products.parquet": 3,
        "holdings.parquet": 4,
        "transactions.parquet": 0,
    }
    assert not (ingested / ORACLE_FILE).exists()  # not carried over from the first ingest
    assert pq.read_metadata(ingested / TRANSACTIONS_FILE).num_rows == 0
    assert read_dataset_meta(ingested).name == "second"
    assert _leftovers(ingested.parent) == []


def test_failed_swap_puts_the_previous_raw_dir_back(
    ingested: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rename of the new dir into place fails (e.g. a full or read-only disk): the old one comes back."""
    before = _tree_hashes(ingested)
    real_rename = os.rename

    def rename(src: os.PathLike, dst: os.PathLike) -> None:
        if Path(src).name.startswith(TMP_PREFIX):
            raise OSError("simulated failure renaming the new raw dir into place")
        real_rename(src, dst)

    monkeypatch.setattr(store.os, "rename", rename)

    with pytest.raises(OSError, match="simulated"):
        ingest_directory(_source(tmp_path / "second", tiny_frames()), ingested)

    assert _tree_hashes(ingested) == before
    assert _leftovers(ingested.parent) == []


def test_first_ingest_creates_the_raw_dir(settings: Settings, tmp_path: Path) -> None:
    assert not settings.home.exists()

    ingest_directory(_source(tmp_path / "only", tiny_frames()), settings.raw_dir)

    assert (settings.raw_dir / DATASET_META_FILE).is_file()
    assert sorted(p.name for p in settings.home.iterdir()) == ["raw"]


@pytest.mark.slow
def test_ingest_at_scale_streams_a_large_dataset(tmp_path: Path) -> None:
    """200k customers, 800k holdings, 5M transactions (1/5 of the 1M x 25M target)."""
    source = write_scale_dataset(tmp_path / "scale", n_customers=200_000, n_transactions=5_000_000)

    summary = ingest_directory(source, tmp_path / "raw")

    assert dict(summary.rows) == {
        "customers.parquet": 200_000,
        "products.parquet": 30,
        "holdings.parquet": 800_000,
        "transactions.parquet": 5_000_000,
    }
    assert summary.seconds < 120
