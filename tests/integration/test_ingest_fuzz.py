"""Ingest under random datasets with random violations (hypothesis), and builds of accepted datasets.

The property (issue 11): an ingest either rejects the dataset with a ContractError naming a broken rule,
leaving the raw dir already in place byte-for-byte unchanged, or accepts it, and then the real dbt build
succeeds. Hypothesis draws a small valid dataset (``random_small_frames``) and 0-2 violations from
``MUTATIONS``; with none the ingest must succeed, with some it must be rejected naming one of them. The
build half runs real dbt once, on an accepted dataset full of edge cases, in a NEXTBEST_HOME whose path
holds a quote and a space (paths must reach SQL quoted, never pasted raw).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa_arrow
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from nextbest.ingest.contract import (
    BURN_IN_RULE,
    NON_EMPTY_RULE,
    OBSERVED_UNTIL_AFTER_START_RULE,
    OBSERVED_UNTIL_NOT_FUTURE_RULE,
    ContractError,
    Violation,
)
from nextbest.ingest.store import ingest_directory
from nextbest.marts import FCT_RANKING_LABELS
from nextbest.pipeline import build_warehouse
from nextbest.settings import Settings
from nextbest.training.datasets import entity_frame, labelled_snapshots
from tests.data.raw_builders import random_small_frames, write_raw_dataset, write_tiny_dataset

pytestmark = pytest.mark.integration

Frames = dict[str, pd.DataFrame]
TODAY = dt.date(2026, 11, 30)


@dataclass(frozen=True)
class Mutation:
    """One violation: how it breaks a dataset (frames and meta before writing, or files after) and the
    rule a rejection must then name (``file``, ``column`` and a test of the rule's name)."""

    name: str
    file: str
    column: str | None
    rule: Callable[[str], bool]
    frames: Callable[[Frames, dict[str, Any]], None] = lambda f, m: None
    files: Callable[[Path], None] = lambda source: None

    def named_by(self, v: Violation) -> bool:
        return v.file == self.file and v.column == self.column and self.rule(v.rule)


def _is(name: str) -> Callable[[str], bool]:
    return lambda rule: rule == name


def _truncate(file: str) -> Callable[[Path], None]:
    def change(source: Path) -> None:
        pq.write_table(pq.read_schema(source / file).empty_table(), source / file)

    return change


def _duplicate_segment(source: Path) -> None:
    table = pq.read_table(source / "customers.parquet")
    column = pa_arrow.array(["x"] * table.num_rows, pa_arrow.string())
    pq.write_table(
        table.append_column(pa_arrow.field("segment", pa_arrow.string()), column),
        source / "customers.parquet",
    )


def _set(frame: str, column: str, value: Any) -> Callable[[Frames, dict[str, Any]], None]:
    def change(f: Frames, meta: dict[str, Any]) -> None:
        f[frame].loc[len(f[frame]) - 1, column] = value

    return change


def _meta(key: str, value: Any) -> Callable[[Frames, dict[str, Any]], None]:
    return lambda f, meta: meta.update({key: value})


def _duplicate_first_customer(f: Frames, meta: dict[str, Any]) -> None:
    f["customers"] = pd.concat([f["customers"], f["customers"].iloc[[0]]], ignore_index=True)


def _end_before_start(f: Frames, meta: dict[str, Any]) -> None:
    f["holdings"].loc[0, "ended_on"] = f["holdings"].loc[0, "started_on"]


MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        "0-row customers",
        "customers.parquet",
        None,
        _is(NON_EMPTY_RULE),
        files=_truncate("customers.parquet"),
    ),
    Mutation(
        "0-row products", "products.parquet", None, _is(NON_EMPTY_RULE), files=_truncate("products.parquet")
    ),
    Mutation(
        "0-row holdings", "holdings.parquet", None, _is(NON_EMPTY_RULE), files=_truncate("holdings.parquet")
    ),
    Mutation(
        "duplicate column",
        "customers.parquet",
        "segment",
        _is("unique column name"),
        files=_duplicate_segment,
    ),
    Mutation(
        "duplicate customer",
        "customers.parquet",
        "customer_id",
        _is("unique"),
        frames=_duplicate_first_customer,
    ),
    Mutation(
        "unknown holder",
        "holdings.parquet",
        "customer_id",
        _is("customer_id exists in customers.parquet"),
        frames=_set("holdings", "customer_id", "nobody"),
    ),
    Mutation(
        "joined_on 9999-12-31",
        "customers.parquet",
        "joined_on",
        lambda rule: rule.startswith("1900-01-01 <= joined_on <= "),
        frames=_set("customers", "joined_on", dt.date(9999, 12, 31)),
    ),
    Mutation(
        "ended_on = started_on",
        "holdings.parquet",
        "ended_on",
        _is("ended_on > started_on"),
        frames=_end_before_start,
    ),
    Mutation(
        "null joined_on",
        "customers.parquet",
        "joined_on",
        lambda rule: rule in ("non-null", "type date"),  # all null (one customer): an arrow null column
        frames=_set("customers", "joined_on", None),
    ),
    Mutation(
        "negative income",
        "customers.parquet",
        "income",
        _is("income >= 0"),
        frames=_set("customers", "income", -1.0),
    ),
    Mutation(
        "observed_until 1990",
        "dataset.json",
        "observed_until",
        _is(OBSERVED_UNTIL_AFTER_START_RULE),
        frames=_meta("observed_until", "1990-12-31"),
    ),
    Mutation(
        "observed_until in the future",
        "dataset.json",
        "observed_until",
        _is(OBSERVED_UNTIL_NOT_FUTURE_RULE),
        frames=_meta("observed_until", "2099-12-31"),
    ),
    Mutation(
        "burn_in 1e20",
        "dataset.json",
        "burn_in_months",
        _is(BURN_IN_RULE),
        frames=_meta("burn_in_months", 10**20),
    ),
)


def _tree_hashes(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _write(source: Path, frames: Frames, meta: dict[str, Any]) -> Path:
    f = frames
    return write_raw_dataset(
        source, f["customers"], f["products"], f["holdings"], f["transactions"], meta=meta
    )


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A raw dir with a valid dataset in place; the examples ingest over it."""
    base = tmp_path_factory.mktemp("fuzz")
    ingest_directory(write_tiny_dataset(base / "tiny"), base / "home" / "raw", today=TODAY)
    return base / "home" / "raw"


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rng=st.randoms(use_true_random=False),
    mutations=st.lists(st.sampled_from(MUTATIONS), max_size=2, unique_by=lambda m: m.name),
)
def test_an_ingest_is_a_named_rejection_leaving_the_raw_dir_intact_or_a_success(
    raw_dir: Path, rng: random.Random, mutations: list[Mutation]
) -> None:
    frames, meta = random_small_frames(rng)
    for mutation in mutations:
        mutation.frames(frames, meta)
    before = _tree_hashes(raw_dir)
    with tempfile.TemporaryDirectory() as tmp:
        source = _write(Path(tmp) / "src", frames, meta)
        for mutation in mutations:
            mutation.files(source)
        try:
            summary = ingest_directory(source, raw_dir, today=TODAY)
        except ContractError as error:
            assert _tree_hashes(raw_dir) == before
            assert mutations, f"a valid dataset was rejected: {error}"
            named = [m.name for m in mutations if any(m.named_by(v) for v in error.violations)]
            assert named, f"none of {[m.name for m in mutations]} named by: {error}"
            return
    assert not mutations, f"accepted despite {[m.name for m in mutations]}"
    assert summary.rows["customers.parquet"] == len(frames["customers"])


def _edge_case_dataset(source: Path) -> Path:
    """A valid dataset on the edges of the contract: a customer who joined on 1900-01-01, time zone
    aware (Asia/Tokyo, midnight but the first) joined_on, products split into parts with mergeable types,
    an oracle, and burn_in_months one below the months observed (so exactly one snapshot is labelled)."""
    frames, meta = random_small_frames(random.Random(11))
    customers = frames["customers"]
    # noon on the first day: in 1900 pandas' zone data gives Tokyo +09:19 (local mean time), DuckDB's +09:00
    joined = [
        dt.datetime(1900, 1, 1, 12),
        *(dt.datetime.combine(d, dt.time()) for d in customers["joined_on"][1:]),
    ]
    customers["joined_on"] = pd.to_datetime(joined).tz_localize("Asia/Tokyo")
    frames["transactions"] = pd.DataFrame(
        {
            "customer_id": [customers["customer_id"].iloc[0]],
            "product_id": [None],
            "occurred_at": pd.to_datetime(["2020-01-15 10:00"]),
            "amount": [1.0],
        }
    )
    meta["burn_in_months"] = 23  # month ends 2020-01-31 .. 2021-12-31: 24 observed
    oracle = pd.DataFrame(
        {
            "customer_id": customers["customer_id"].tolist(),
            "snapshot_on": [dt.date(2021, 11, 30)] * len(customers),
            "product_id": [frames["products"]["product_id"].iloc[0]] * len(customers),
            "probability": [0.25] * len(customers),
        }
    )
    _write(source, frames, meta)
    oracle.to_parquet(source / "oracle.parquet", index=False)
    products = pq.read_table(source / "products.parquet")
    (source / "products.parquet").unlink()
    (source / "products.parquet").mkdir()
    narrow = products.schema.set(3, pa_arrow.field("min_age", pa_arrow.int32()))  # int32 here, int64 there
    pq.write_table(products.slice(0, 1).cast(narrow), source / "products.parquet" / "part-0.parquet")
    pq.write_table(products.slice(1), source / "products.parquet" / "part-1.parquet")
    return source


def test_an_accepted_edge_case_dataset_builds_in_a_home_with_a_quote_and_a_space(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "it's a home")

    summary = ingest_directory(_edge_case_dataset(tmp_path / "edges"), settings.raw_dir, today=TODAY)
    build_warehouse(settings, quiet=True)

    assert summary.burn_in_months == 23
    assert pq.read_table(settings.raw_dir / "customers.parquet").column("joined_on")[0].as_py() == dt.date(
        1900, 1, 1
    )
    assert labelled_snapshots(settings) == [dt.date(2021, 11, 30)]
    entities = entity_frame(settings, labelled_snapshots(settings), mart=FCT_RANKING_LABELS)
    assert len(entities) > 0 and entities["oracle_probability"].notna().any()
