"""The synthetic bank generator: determinism, the raw contract, realism and the exactness of the oracle.

The oracle tests recompute population, candidates and labels from the written files with pandas, using
only the definitions of the README / dbt project, and compare them with oracle.parquet.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from nextbest.ingest.synthetic import (
    COLD_START_SHARE,
    CUSTOMER_SCHEMA,
    DAYS_PER_MONTH,
    FOLLOW_ON_TAU_MONTHS,
    HOLDING_SCHEMA,
    ORACLE_SCHEMA,
    PRODUCT_SCHEMA,
    PRODUCTS,
    TRANSACTION_SCHEMA,
    ProductSpec,
    SyntheticSummary,
    adoption_logit,
    build_model,
    follow_on_logit,
    generate_synthetic,
)

FILES = ("customers", "products", "holdings", "transactions", "oracle")


def _read(path: Path, name: str) -> pd.DataFrame:
    return pq.read_table(path / f"{name}.parquet").to_pandas()


def _month_ends(first: date, months: int) -> list[pd.Timestamp]:
    start = pd.Timestamp(first).to_period("M")
    return [(start + k).to_timestamp(how="end").normalize() for k in range(months)]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SyntheticSummary]:
    """800 customers x 8 months over a new year: small enough to recompute everything row by row."""
    out = tmp_path_factory.mktemp("small")
    return out, generate_synthetic(out, customers=800, months=8, seed=7, start_month=date(2023, 9, 1))


@pytest.fixture(scope="module")
def medium(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """20k customers x 12 months with each oracle row labelled from holdings (the statistical tests)."""
    out = tmp_path_factory.mktemp("medium")
    generate_synthetic(out, customers=20_000, months=12, seed=1)
    return out, _labelled_oracle(out)


def _labelled_oracle(path: Path) -> pd.DataFrame:
    """oracle rows with y = 1 iff a holding of the product starts in (s, last_day(s + 1 month)].

    Ids come back as pandas categoricals (fast for millions of rows).
    """
    con = duckdb.connect()
    try:
        table = con.sql(f"""
            with starts as (  -- a start in month m+1 is the label of the snapshot at the end of month m
                select distinct customer_id, product_id,
                       last_day(started_on - interval 1 month) as snapshot_on, 1 as y
                from read_parquet('{path / "holdings.parquet"}')
            )
            select o.customer_id, o.product_id, o.probability,
                   cast(o.snapshot_on as timestamp) as snapshot_on, coalesce(s.y, 0) as y
            from read_parquet('{path / "oracle.parquet"}') as o
            left join starts as s using (customer_id, product_id, snapshot_on)
        """).arrow()
    finally:
        con.close()
    if isinstance(table, pa.RecordBatchReader):
        table = table.read_all()
    for name in ("customer_id", "product_id"):
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, table.column(name).dictionary_encode())
    return table.to_pandas()


def _cold_starts(path: Path, window_start: date) -> pd.DataFrame:
    """Customers who joined on or after ``window_start`` without a holding starting on joined_on, with
    the start of their first holding (NaT if none)."""
    customers, holdings = _read(path, "customers"), _read(path, "holdings")
    joiners = customers[pd.to_datetime(customers["joined_on"]) >= pd.Timestamp(window_start)]
    opened = holdings.merge(joiners[["customer_id", "joined_on"]], on="customer_id")
    opened = set(opened.loc[opened["started_on"] == opened["joined_on"], "customer_id"])
    cold = joiners.loc[~joiners["customer_id"].isin(opened), ["customer_id", "joined_on"]]
    first = holdings.groupby("customer_id", as_index=False)["started_on"].min()
    cold = cold.merge(first.rename(columns={"started_on": "first_started_on"}), on="customer_id", how="left")
    for col in ("joined_on", "first_started_on"):
        cold[col] = pd.to_datetime(cold[col])
    return cold


def _candidates(path: Path, snapshots: list[pd.Timestamp]) -> pd.DataFrame:
    """The candidate set recomputed from the raw files with the README / dbt definitions."""
    customers = _read(path, "customers")
    products = _read(path, "products")
    holdings = _read(path, "holdings")
    txns = _read(path, "transactions")
    started = pd.to_datetime(holdings["started_on"])
    ended = pd.to_datetime(holdings["ended_on"])
    txn_day = pd.to_datetime(txns["occurred_at"]).dt.normalize()
    joined = pd.to_datetime(customers["joined_on"])
    rows = []
    for s in snapshots:
        owned_mask = (started <= s) & (ended.isna() | (s < ended))
        owned = holdings.loc[owned_mask, ["customer_id", "product_id"]].drop_duplicates()
        cutoff = s - pd.DateOffset(months=3)  # clamps the day like DuckDB: 2023-04-30 -> 2023-01-30
        active = set(txns.loc[(txn_day > cutoff) & (txn_day <= s), "customer_id"])
        ever_held = set(holdings.loc[started <= s, "customer_id"])
        not_dormant = customers["customer_id"].isin(set(owned["customer_id"]) | active) | ~customers[
            "customer_id"].isin(ever_held)
        pop = customers[(joined <= s) & not_dormant]
        age = s.year - pop["birth_year"]
        pairs = pop[["customer_id"]].assign(age=age.to_numpy()).merge(products, how="cross")
        bounded = pairs["min_age"].notna() | pairs["max_age"].notna()
        ok = (
            (~bounded | pairs["age"].notna())
            & (pairs["min_age"].isna() | (pairs["age"] >= pairs["min_age"]))
            & (pairs["max_age"].isna() | (pairs["age"] <= pairs["max_age"]))
        )
        pairs = pairs[ok.fillna(False).astype(bool)]
        pairs = pairs.merge(owned.assign(o=1), on=["customer_id", "product_id"], how="left")
        rows.append(pairs.loc[pairs["o"].isna(), ["customer_id", "product_id"]].assign(snapshot_on=s))
    return pd.concat(rows, ignore_index=True)


# ------------------------------------------------------------------------------------ determinism


class TestDeterminism:
    def test_same_arguments_write_identical_bytes(self, tmp_path: Path) -> None:
        for name in ("a", "b"):
            generate_synthetic(tmp_path / name, customers=300, months=4, seed=3)
        for f in (*FILES, "dataset"):
            suffix = ".json" if f == "dataset" else ".parquet"
            a, b = (tmp_path / d / f"{f}{suffix}" for d in ("a", "b"))
            assert a.read_bytes() == b.read_bytes(), f

    def test_a_different_seed_gives_different_data(self, tmp_path: Path) -> None:
        generate_synthetic(tmp_path / "a", customers=300, months=4, seed=3)
        generate_synthetic(tmp_path / "b", customers=300, months=4, seed=4)
        for f in ("customers", "holdings", "transactions", "oracle"):
            assert not _read(tmp_path / "a", f).equals(_read(tmp_path / "b", f)), f

    def test_chunk_size_does_not_change_the_data(self, tmp_path: Path) -> None:
        generate_synthetic(tmp_path / "one", customers=2500, months=4, seed=5, chunk_size=10_000)
        generate_synthetic(tmp_path / "many", customers=2500, months=4, seed=5, chunk_size=1)
        keys = ["snapshot_on", "customer_id", "product_id"]
        for f in FILES:
            a, b = _read(tmp_path / "one", f), _read(tmp_path / "many", f)
            if f == "oracle":  # written per snapshot and chunk: same rows, another order
                a, b = (x.sort_values(keys, ignore_index=True) for x in (a, b))
            pd.testing.assert_frame_equal(a, b, obj=f)
        assert len(_cold_starts(tmp_path / "one", date(2023, 1, 1))) > 0, "no cold start to compare"


# --------------------------------------------------------------------------------------- contract


class TestContract:
    def test_files_have_the_exact_contract_types_and_an_extra_column(self, small) -> None:
        path, _ = small
        expected = {"customers": CUSTOMER_SCHEMA, "products": PRODUCT_SCHEMA, "holdings": HOLDING_SCHEMA,
                    "transactions": TRANSACTION_SCHEMA, "oracle": ORACLE_SCHEMA}
        for name, schema in expected.items():
            assert pq.read_schema(path / f"{name}.parquet").remove_metadata().equals(schema), name
        assert CUSTOMER_SCHEMA.field("email_opt_in").type == pa.bool_()
        assert CUSTOMER_SCHEMA.field("birth_year").type == pa.int64()
        assert TRANSACTION_SCHEMA.field("occurred_at").type == pa.timestamp("us")

    def test_dataset_json_ends_on_the_last_generated_day(self, small) -> None:
        path, summary = small
        meta = json.loads((path / "dataset.json").read_text())
        assert meta == {"name": "synthetic-bank", "observed_until": "2024-04-30", "burn_in_months": 0}
        assert summary.observed_until == date(2024, 4, 30)
        assert summary.first_snapshot_on == date(2023, 9, 30)

    def test_keys_are_unique_non_null_and_referenced(self, small) -> None:
        path, _ = small
        customers, products = _read(path, "customers"), _read(path, "products")
        holdings, txns = _read(path, "holdings"), _read(path, "transactions")
        assert customers["customer_id"].is_unique and customers["customer_id"].notna().all()
        assert customers["customer_id"].iloc[0] == "C0000001" and len(customers) == 800
        assert products["product_id"].is_unique and len(products) == len(PRODUCTS) == 24
        assert holdings["customer_id"].isin(customers["customer_id"]).all()
        assert holdings["product_id"].isin(products["product_id"]).all()
        assert txns["customer_id"].isin(customers["customer_id"]).all()
        assert txns["product_id"].dropna().isin(products["product_id"]).all()
        assert customers["joined_on"].notna().all() and holdings["started_on"].notna().all()

    def test_value_rules_hold(self, small) -> None:
        path, _ = small
        customers, products = _read(path, "customers"), _read(path, "products")
        by = customers["birth_year"].dropna()
        assert by.between(1900, 2100).all()
        assert (customers["income"].dropna() >= 0).all()
        both = products.dropna(subset=["min_age", "max_age"])
        assert (both["min_age"] <= both["max_age"]).all()
        assert set(products["category"]) == {"accounts", "savings", "cards", "loans", "mortgages",
                                             "investments", "insurance", "pensions"}

    def test_intervals_are_positive_and_never_overlap(self, small) -> None:
        path, _ = small
        h = _read(path, "holdings").sort_values(["customer_id", "product_id", "started_on"])
        closed = h["ended_on"].notna()
        assert (h.loc[closed, "ended_on"] > h.loc[closed, "started_on"]).all()
        nxt = h.groupby(["customer_id", "product_id"])["started_on"].shift(-1)
        has_next = nxt.notna()
        # a later interval starts on or after the end of the previous one, which must be closed
        assert h.loc[has_next, "ended_on"].notna().all()
        assert (nxt[has_next] >= h.loc[has_next, "ended_on"]).all()
        assert (h.groupby(["customer_id", "product_id"]).size() > 1).any(), "no re-held product"

    def test_holdings_start_on_or_after_joining(self, small) -> None:
        path, _ = small
        h = _read(path, "holdings").merge(_read(path, "customers"), on="customer_id")
        assert (h["started_on"] >= h["joined_on"]).all()

    @pytest.mark.integration
    def test_the_project_validator_accepts_the_dataset(self, small, tmp_path: Path) -> None:
        store = pytest.importorskip("nextbest.ingest.store")
        path, _ = small
        summary = store.ingest_directory(path, tmp_path / "raw", threads=1)
        assert summary.rows["holdings.parquet"] == len(_read(path, "holdings"))
        assert "email_opt_in" in pq.read_schema(tmp_path / "raw" / "customers.parquet").names


# ---------------------------------------------------------------------------------------- realism


class TestRealism:
    def test_junior_accounts_start_only_for_known_minors(self, small) -> None:
        path, _ = small
        h = _read(path, "holdings").merge(_read(path, "customers"), on="customer_id")
        junior = h[h["product_id"] == "junior_account"]
        assert len(junior) > 0
        assert junior["birth_year"].notna().all()
        # age at the snapshot the start is decided on (the month-end before started_on)
        decided = (pd.to_datetime(junior["started_on"]).dt.to_period("M") - 1).dt.year
        assert ((decided - junior["birth_year"]) <= 17).all()

    def test_student_accounts_start_only_between_18_and_25(self, small) -> None:
        path, _ = small
        h = _read(path, "holdings").merge(_read(path, "customers"), on="customer_id")
        student = h[h["product_id"] == "student_account"]
        age = pd.to_datetime(student["started_on"]).dt.year - student["birth_year"]
        assert len(student) > 0 and age.between(18, 26).all()  # 26: decided at a December snapshot

    def test_attribute_null_shares_are_realistic(self, medium) -> None:
        path, _ = medium
        c = _read(path, "customers")
        assert 0.02 < c["birth_year"].isna().mean() < 0.045
        assert 0.08 < c["income"].isna().mean() < 0.2
        assert 0.035 < c["segment"].isna().mean() < 0.065
        assert c["region"].nunique() == 10 and c["region"].isna().any()
        assert c["email_opt_in"].dtype == bool
        assert (pd.to_datetime(c["joined_on"]) < pd.Timestamp("2023-01-01")).mean() > 0.5

    def test_transaction_volume_and_null_products(self, medium) -> None:
        path, _ = medium
        t = _read(path, "transactions")
        per_customer_month = len(t) / (20_000 * 12)
        assert 0.8 < per_customer_month < 2.0
        assert 0.08 < t["product_id"].isna().mean() < 0.12
        assert (t["amount"] > 0).all()

    def test_current_account_is_common_and_mortgage_rare(self, medium) -> None:
        path, labelled = medium
        h = _read(path, "holdings")
        open_at_end = h[h["ended_on"].isna()]
        banking = open_at_end["customer_id"].nunique()  # the customers still banking (churners own nothing)
        share = open_at_end.groupby("product_id")["customer_id"].nunique() / banking
        assert share["current_account"] > 0.8
        assert share["mortgage"] < 0.05 and share["pension"] < 0.05
        rate = labelled.groupby("product_id", observed=True)["probability"].mean()
        assert rate["mortgage"] < 0.003 and rate["remortgage"] < 0.003
        assert rate["current_account"] > 10 * rate["mortgage"]

    def test_overall_adoption_rate_is_one_to_three_percent(self, medium) -> None:
        _, labelled = medium
        assert 0.01 <= labelled["y"].mean() <= 0.03


# ----------------------------------------------------------------------------------------- oracle


class TestOracle:
    def test_rows_are_exactly_the_candidates(self, small) -> None:
        path, _ = small
        snapshots = _month_ends(date(2023, 9, 1), 8)[:-1]  # every month-end but the last
        expected = _candidates(path, snapshots)
        oracle = _read(path, "oracle")
        oracle["snapshot_on"] = pd.to_datetime(oracle["snapshot_on"])
        keys = ["snapshot_on", "customer_id", "product_id"]
        assert not oracle.duplicated(keys).any()
        got = oracle[keys].sort_values(keys, ignore_index=True)
        pd.testing.assert_frame_equal(got, expected[keys].sort_values(keys, ignore_index=True))
        assert sorted(oracle["snapshot_on"].unique()) == snapshots

    def test_probabilities_are_strictly_between_0_and_1(self, small) -> None:
        path, _ = small
        p = _read(path, "oracle")["probability"]
        assert p.dtype == np.float32 and ((p > 0) & (p < 1)).all()

    def test_every_adoption_after_the_first_month_is_an_oracle_row(self, small) -> None:
        path, _ = small
        labelled = _labelled_oracle(path)
        h = _read(path, "holdings").merge(_read(path, "customers"), on="customer_id")
        started = pd.to_datetime(h["started_on"])
        # starts in months 2..8 that are not the opening holding of a customer joining that month
        later = (started >= pd.Timestamp("2023-10-01")) & (h["started_on"] != h["joined_on"])
        assert labelled["y"].sum() == later.sum() > 0

    def test_observed_adoptions_match_oracle_per_product_within_4_sigma(self, medium) -> None:
        _, labelled = medium
        g = labelled.groupby("product_id", observed=True).agg(
            observed=("y", "sum"), expected=("probability", "sum"),
            variance=("probability", lambda p: float((p.astype(float) * (1 - p.astype(float))).sum())))
        z = (g["observed"] - g["expected"]) / np.sqrt(g["variance"])
        assert (z.abs() < 4).all(), z.sort_values().to_string()
        total_z = (g["observed"].sum() - g["expected"].sum()) / np.sqrt(g["variance"].sum())
        assert abs(total_z) < 4

    def test_oracle_ranks_adoptions_well(self, medium) -> None:
        _, labelled = medium
        assert roc_auc_score(labelled["y"], labelled["probability"]) > 0.75

    def test_without_oracle_no_oracle_file_is_left(self, tmp_path: Path) -> None:
        generate_synthetic(tmp_path, customers=50, months=3, seed=0)
        assert (tmp_path / "oracle.parquet").exists()
        summary = generate_synthetic(tmp_path, customers=50, months=3, seed=0, with_oracle=False)
        assert not (tmp_path / "oracle.parquet").exists() and summary.oracle_rows == 0
        assert summary.holdings == len(_read(tmp_path, "holdings"))


# ------------------------------------------------------------------------------------- cold start


class TestColdStart:
    def test_the_cold_start_share_of_joiners_open_nothing(self, medium) -> None:
        path, _ = medium
        customers = _read(path, "customers")
        joiners = (pd.to_datetime(customers["joined_on"]) >= pd.Timestamp("2023-01-01")).sum()
        cold = _cold_starts(path, date(2023, 1, 1))
        assert joiners > 2000
        assert abs(len(cold) / joiners - COLD_START_SHARE) < 0.04  # ~4 sigma at ~3000 joiners

    def test_cold_starts_are_in_the_oracle_from_joining_until_they_adopt(self, small) -> None:
        path, _ = small
        snapshots = _month_ends(date(2023, 9, 1), 8)[:-1]
        cold = _cold_starts(path, date(2023, 9, 1))
        assert len(cold) > 10
        oracle = _read(path, "oracle")
        oracle["snapshot_on"] = pd.to_datetime(oracle["snapshot_on"])
        rows = oracle[oracle["customer_id"].isin(set(cold["customer_id"]))].merge(cold, on="customer_id")
        never_held = rows["first_started_on"].isna() | (rows["snapshot_on"] < rows["first_started_on"])
        got = set(map(tuple, rows.loc[never_held, ["customer_id", "snapshot_on"]].to_numpy()))
        expected = {(c.customer_id, s) for c in cold.itertuples() for s in snapshots
                    if c.joined_on <= s and (pd.isna(c.first_started_on) or s < c.first_started_on)}
        assert got == expected and len(expected) > len(cold) / 2
        assert (rows["snapshot_on"] >= rows["joined_on"]).all()
        # owning nothing, every product without an age bound is a candidate (current account first)
        current = rows[never_held & (rows["product_id"] == "current_account")]
        assert len(current) == len(expected)

    def test_some_cold_starts_adopt_a_first_product_after_their_joining_month(self, small) -> None:
        path, _ = small
        cold = _cold_starts(path, date(2023, 9, 1))
        adopted = cold.dropna(subset=["first_started_on"])
        assert len(adopted) > len(cold) / 2  # most within the window; the latest joiners cannot yet
        joining_month_end = adopted["joined_on"].dt.to_period("M").dt.to_timestamp(how="end").dt.normalize()
        assert (adopted["first_started_on"] > joining_month_end).all()

    def test_owning_nothing_is_a_visible_share_of_the_oracle(self, medium) -> None:
        path, labelled = medium
        cold = _cold_starts(path, date(2023, 1, 1))
        rows = labelled[labelled["customer_id"].isin(set(cold["customer_id"]))].merge(
            cold, on="customer_id")
        nothing = rows[rows["first_started_on"].isna() | (rows["snapshot_on"] < rows["first_started_on"])]
        assert 0.003 < len(nothing) / len(labelled) < 0.05
        # their first product is mostly a current account, and the oracle says so
        by_product = nothing.groupby("product_id", observed=True)["probability"].mean()
        assert by_product.idxmax() in {"current_account", "junior_account"}
        assert by_product["current_account"] > 0.2


# ------------------------------------------------------------------------------------- propensity


def _two_products(first: float = 1.5) -> tuple[ProductSpec, ProductSpec]:
    """Product ``a`` (follow-on +2 after ``b``, first-product offset ``first``) and a plain ``b``."""
    a = ProductSpec("a", "A", "accounts", None, None, -3.0, 0.0, 0.01, follow_ons={"b": 2.0}, first=first)
    b = ProductSpec("b", "B", "accounts", None, None, -4.0, 0.0, 0.01)
    return a, b


def _logit(products: tuple[ProductSpec, ...], owned: list[list[bool]],
           months: list[list[float]]) -> np.ndarray:
    """adoption_logit with everything but ownership and months since start equal across rows."""
    model = build_model(products)
    own = np.array(owned, bool)
    n = len(own)
    return adoption_logit(model, np.zeros(own.shape), own, np.array(months, float), np.zeros(own.shape, bool),
                          np.full(n, 12.0), np.full(n, 100.0), np.zeros(n))


class TestPropensity:
    def test_follow_on_logit_is_the_boost_decayed_by_months_since_the_start(self) -> None:
        model = build_model(_two_products())
        owned = np.array([[False, True], [False, True], [False, False], [True, False]])
        months = np.array([[0.0, 0.0], [0.0, 3.0], [0.0, 0.0], [0.0, 0.0]])
        got = follow_on_logit(model, owned, months)
        decayed = 2.0 * np.exp(-3.0 / FOLLOW_ON_TAU_MONTHS)
        expected = np.array([[2.0, 0.0], [decayed, 0.0], [0.0, 0.0], [0.0, 0.0]])
        np.testing.assert_allclose(got, expected, rtol=1e-12)
        assert FOLLOW_ON_TAU_MONTHS == 3.0

    def test_a_follow_on_is_likelier_just_after_the_adoption_than_much_later(self) -> None:
        logit = _logit(_two_products(), [[False, True], [False, True]], [[0.0, 0.5], [0.0, 24.0]])
        assert logit[0, 0] - logit[1, 0] == pytest.approx(2.0 * (np.exp(-0.5 / 3.0) - np.exp(-24.0 / 3.0)))
        assert logit[0, 1] == logit[1, 1]  # b has no follow-on

    def test_first_product_offset_applies_only_when_nothing_is_owned(self) -> None:
        owned, months = [[False, False], [False, True], [True, False]], [[0.0] * 2, [0.0, 30.0], [30.0, 0.0]]
        with_first = _logit(_two_products(1.5), owned, months)
        without = _logit(_two_products(0.0), owned, months)
        np.testing.assert_allclose(with_first - without, [[1.5, 0.0], [0.0, 0.0], [0.0, 0.0]], atol=1e-12)

    def test_the_bank_has_realistic_follow_ons_and_first_products(self) -> None:
        pairs = {(q, p.product_id): v for p in PRODUCTS for q, v in p.follow_ons.items()}
        assert 10 <= len(pairs) <= 14 and all(v > 0 for v in pairs.values())
        assert pairs[("mortgage", "home_insurance")] >= 2.0 and pairs[("car_loan", "car_insurance")] >= 2.0
        first = {p.product_id: p.first for p in PRODUCTS}
        assert max(first, key=first.get) == "junior_account"  # only minors are eligible
        adult = {k: v for k, v in first.items() if k != "junior_account"}
        assert max(adult, key=adult.get) in {"current_account", "student_account"}

    def test_an_unknown_follow_on_raises(self) -> None:
        bad = dataclasses.replace(_two_products()[0], follow_ons={"zzz": 1.0})
        with pytest.raises(ValueError, match="unknown follow-on 'zzz'"):
            build_model((bad, _two_products()[1]))

    @pytest.mark.parametrize(("q", "p"), [("mortgage", "home_insurance"), ("car_loan", "car_insurance")])
    def test_oracle_favours_a_follow_on_in_the_months_after_the_adoption(self, medium, q: str,
                                                                         p: str) -> None:
        path, labelled = medium
        h = _read(path, "holdings")
        h = h[h["product_id"] == q]
        rows = labelled[labelled["product_id"] == p].merge(h[["customer_id", "started_on", "ended_on"]],
                                                             on="customer_id")
        started, ended = pd.to_datetime(rows["started_on"]), pd.to_datetime(rows["ended_on"])
        rows = rows[(started <= rows["snapshot_on"]) & (ended.isna() | (rows["snapshot_on"] < ended))]
        months = (rows["snapshot_on"] - pd.to_datetime(rows["started_on"])).dt.days / DAYS_PER_MONTH
        recent, later = rows.loc[months < 1, "probability"], rows.loc[months >= 6, "probability"]
        assert len(recent) > 50 and len(later) > 50
        assert recent.mean() > 3 * later.mean()


# ----------------------------------------------------------------------------------------- errors


class TestArguments:
    @pytest.mark.parametrize("kwargs", [{"customers": 0}, {"months": 1}, {"seed": -1}, {"chunk_size": 0}])
    def test_invalid_arguments_raise(self, tmp_path: Path, kwargs: dict[str, int]) -> None:
        with pytest.raises(ValueError, match="need customers >= 1"):
            generate_synthetic(tmp_path, **{"customers": 10, "months": 3, **kwargs})
        assert not (tmp_path / "customers.parquet").exists()
