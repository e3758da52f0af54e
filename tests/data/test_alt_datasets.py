"""The alt benchmark datasets (benchmarks/alt_datasets.py): contract, oracle = the candidate rule
recomputed independently from the files, determinism per seed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.alt_datasets import LOGIT_TERMS, VARIANTS, generate_alt
from nextbest.ingest.store import ingest_directory

CUSTOMERS, MONTHS = 300, 8
FILES = ("customers", "products", "holdings", "transactions", "oracle")


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def dataset(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp(request.param)
    generate_alt(out, request.param, customers=CUSTOMERS, months=MONTHS, seed=3)
    return request.param, out


def _read_table(directory: Path, name: str) -> pa.Table:
    return pq.read_table(directory / f"{name}.parquet")


def _read(directory: Path, name: str) -> pd.DataFrame:
    return _read_table(directory, name).to_pandas(date_as_object=False)


def expected_candidates(directory: Path) -> pd.DataFrame:
    """The README rules by brute force: population x products, not owned, eligible, for every
    month-end snapshot from the first transaction month to the one before ``observed_until``."""
    customers, products = _read(directory, "customers"), _read(directory, "products")
    holdings, transactions = _read(directory, "holdings"), _read(directory, "transactions")
    observed_until = pd.Timestamp(json.loads((directory / "dataset.json").read_text())["observed_until"])
    first = transactions["occurred_at"].min().to_period("M")
    snapshots = pd.period_range(first, observed_until.to_period("M"), freq="M")[:-1]
    joined = customers["joined_on"].dt.normalize()
    txn_month = transactions["occurred_at"].dt.to_period("M")
    rows = []
    for period in snapshots:
        s = period.to_timestamp(how="end").normalize()
        started = holdings["started_on"] <= s
        owned = holdings[started & (holdings["ended_on"].isna() | (s < holdings["ended_on"]))]
        held = set(holdings.loc[started, "customer_id"])
        active = set(transactions.loc[(txn_month > period - 3) & (txn_month <= period), "customer_id"])
        owners = set(owned["customer_id"])
        ids = customers["customer_id"]
        dormant = ids.isin(held) & ~ids.isin(owners) & ~ids.isin(active)
        population = customers[(joined <= s) & ~dormant]
        pairs = population.merge(products, how="cross")
        age = s.year - pairs["birth_year"]
        bounded = pairs["min_age"].notna() | pairs["max_age"].notna()
        within = age.notna() & (age >= pairs["min_age"].fillna(-1)) & (age <= pairs["max_age"].fillna(999))
        pairs = pairs[~bounded | within]
        owned_keys = set(zip(owned["customer_id"], owned["product_id"], strict=True))
        keep = [k not in owned_keys for k in zip(pairs["customer_id"], pairs["product_id"], strict=True)]
        pairs = pairs[keep].assign(snapshot_on=s)
        rows.append(pairs[["customer_id", "snapshot_on", "product_id"]])
    return pd.concat(rows, ignore_index=True)


def test_files_pass_the_contract(dataset: tuple[str, Path], tmp_path: Path) -> None:
    variant, directory = dataset
    summary = ingest_directory(directory, tmp_path / "raw", threads=1)
    assert summary.name == f"acme-{variant}"
    assert "synthetic" not in summary.name and "completejourney" not in summary.name
    assert summary.burn_in_months == 0
    assert summary.rows["oracle.parquet"] > 0


def test_oracle_rows_are_exactly_the_candidates(dataset: tuple[str, Path]) -> None:
    _, directory = dataset
    key = ["customer_id", "snapshot_on", "product_id"]
    expected = expected_candidates(directory).sort_values(key).reset_index(drop=True)
    oracle = _read(directory, "oracle")
    assert oracle["probability"].between(0, 1).all()
    got = oracle[key].sort_values(key).reset_index(drop=True)
    assert len(got) == len(expected) > 0
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_every_next_month_start_is_a_candidate_or_a_joiner(dataset: tuple[str, Path]) -> None:
    """A holding starting in month s+1 is an adoption of a candidate at s, or opened by a customer who
    joined after s (not in the population at s)."""
    _, directory = dataset
    oracle, holdings = _read(directory, "oracle"), _read(directory, "holdings")
    customers = _read(directory, "customers")
    candidates = set(zip(oracle["customer_id"], oracle["snapshot_on"], oracle["product_id"], strict=True))
    starts = holdings.merge(customers[["customer_id", "joined_on"]], on="customer_id")
    snapshot = (starts["started_on"].dt.to_period("M") - 1).dt.to_timestamp(how="end").dt.normalize()
    in_window = snapshot.isin(set(oracle["snapshot_on"]))
    starts, snapshot = starts[in_window], snapshot[in_window]
    is_candidate = pd.Series(
        [(c, s, p) in candidates for c, s, p in zip(starts["customer_id"], snapshot,
                                                            starts["product_id"], strict=True)],
        index=starts.index,
    )
    joined_after = starts["joined_on"].dt.normalize() > snapshot
    assert is_candidate.sum() > 0
    assert (is_candidate | joined_after).all()
    assert not (is_candidate & joined_after).any()


def test_deterministic_for_a_seed(dataset: tuple[str, Path], tmp_path: Path) -> None:
    variant, directory = dataset
    generate_alt(tmp_path / "same", variant, customers=CUSTOMERS, months=MONTHS, seed=3)
    generate_alt(tmp_path / "other", variant, customers=CUSTOMERS, months=MONTHS, seed=4)
    for name in FILES:
        assert pq.read_table(tmp_path / "same" / f"{name}.parquet").equals(
            pq.read_table(directory / f"{name}.parquet")
        ), name
    assert not pq.read_table(tmp_path / "other" / "holdings.parquet").equals(
        pq.read_table(directory / "holdings.parquet")
    )


def test_the_terms_file_sums_to_the_oracle_and_changes_nothing_else(
    dataset: tuple[str, Path], tmp_path: Path
) -> None:
    variant, directory = dataset
    terms_path = tmp_path / "terms.parquet"
    same = tmp_path / "same"
    generate_alt(same, variant, customers=CUSTOMERS, months=MONTHS, seed=3, terms_path=terms_path)
    for name in FILES:
        assert pq.read_table(same / f"{name}.parquet").equals(_read_table(directory, name)), name
    oracle, terms = _read(directory, "oracle"), pq.read_table(terms_path).to_pandas()
    keys = ["customer_id", "snapshot_on", "product_id"]
    assert terms[keys].astype(str).equals(oracle[keys].astype(str))
    logit = terms[list(LOGIT_TERMS)].sum(axis=1).to_numpy()
    assert abs(1 / (1 + np.exp(-logit)) - oracle["probability"].to_numpy()).max() < 1e-6
    assert (terms[list(LOGIT_TERMS)].std() > 0).sum() >= 6  # the mechanisms vary between rows
