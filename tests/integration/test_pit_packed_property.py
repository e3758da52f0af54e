"""Point-in-time retrieval through a PACKED view equals a brute-force oracle (hypothesis, real Feast).

Packed rows (customer, event_timestamp, candidate_product_ids, aligned value lists) are generated on a
coarse time grid with ttl boundaries; entity rows ask for (customer, product, time), many per group. The
oracle, written here independently of ``nextbest.features.packing``: the valid packed
row is the customer's latest
with event_timestamp <= t <= event_timestamp + ttl; the value is the product's element in it, null when
the product is not listed, the element is NaN / '', or no row is valid.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from nextbest.columns import EVENT_TIMESTAMP
from nextbest.features.definitions import build_definitions
from nextbest.features.manifest import FeatureViewSpec, FieldSpec
from nextbest.features.online import online_features
from nextbest.features.retrieval import historical_features
from nextbest.features.store import apply_definitions, get_store, materialize
from nextbest.settings import Settings

pytestmark = pytest.mark.integration

BASE = datetime(2024, 1, 1)
TTL = timedelta(days=3)
CUSTOMERS = ["a", "b", "c"]
PRODUCTS = ["p1", "p2", "p3"]


def packed_spec(marts_dir: Path) -> FeatureViewSpec:
    return FeatureViewSpec(
        view="pairs",
        model="feat_pairs_packed",
        parquet_path=(marts_dir / "feat_pairs_packed.parquet").resolve(),
        entities=("customer",),
        join_keys=("customer_id",),
        ttl=TTL,
        fields=(
            FieldSpec("score", "double", "Float64", "a nullable double"),
            FieldSpec("count", "integer", "Int32", "a nullable integer"),
            FieldSpec("channel", "varchar", "String", "a nullable string"),
        ),
        description="one row per customer x event_timestamp, lists aligned with candidate_product_ids",
        packs="feat_pairs",
    )


def grid_time(day: int, second: int) -> datetime:
    return BASE + timedelta(days=day, seconds=second)


element = st.tuples(
    st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)),
    st.one_of(st.none(), st.integers(-1000, 1000)),
    st.one_of(st.none(), st.sampled_from(["web", "branch"])),
)
packed_rows = st.lists(
    st.tuples(
        st.sampled_from(CUSTOMERS),
        st.integers(0, 8),  # day
        st.sampled_from([0, 1]),  # second
        st.dictionaries(st.sampled_from(PRODUCTS), element, max_size=3),  # candidate -> values
    ),
    max_size=12,
    unique_by=lambda r: (r[0], r[1], r[2]),  # the packed model's grain: customer x event_timestamp
)
entity_rows = st.lists(
    st.tuples(
        st.sampled_from([*CUSTOMERS, "zz"]),
        st.sampled_from([*PRODUCTS, "p9"]),
        st.integers(0, 9),
        st.sampled_from([0, 1, 2]),
        st.booleans(),  # shifted by exactly the ttl
    ),
    min_size=1,
    max_size=20,
)


def write_packed(rows: list[tuple], path: Path) -> None:
    """The packed mart as the pack_features macro writes it (sorted products, NaN / '' for null)."""
    out: dict[str, list] = {k: [] for k in ("customer_id", EVENT_TIMESTAMP, "candidate_product_ids")}
    out |= {"score": [], "count": [], "channel": []}
    for customer, day, second, elements in rows:
        products = sorted(elements)
        out["customer_id"].append(customer)
        out[EVENT_TIMESTAMP].append(grid_time(day, second))
        out["candidate_product_ids"].append(products)
        out["score"].append([float("nan") if elements[p][0] is None else elements[p][0] for p in products])
        out["count"].append(
            [float("nan") if elements[p][1] is None else float(elements[p][1]) for p in products]
        )
        out["channel"].append(["" if elements[p][2] is None else elements[p][2] for p in products])
    schema = pa.schema(
        [
            ("customer_id", pa.string()),
            (EVENT_TIMESTAMP, pa.timestamp("us")),
            ("candidate_product_ids", pa.list_(pa.string())),
            ("score", pa.list_(pa.float64())),
            ("count", pa.list_(pa.float64())),
            ("channel", pa.list_(pa.string())),
        ]
    )
    pq.write_table(pa.table(out, schema=schema), path)


def oracle(rows: list[tuple], customer: str, product: str, at: datetime) -> tuple:
    valid = [
        r for r in rows if r[0] == customer and grid_time(r[1], r[2]) <= at <= grid_time(r[1], r[2]) + TTL
    ]
    if not valid:
        return (None, None, None)
    latest = max(valid, key=lambda r: grid_time(r[1], r[2]))
    return latest[3].get(product, (None, None, None))


@pytest.fixture(scope="module")
def packed_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, FeatureViewSpec]:
    settings = Settings(home=tmp_path_factory.mktemp("pit_packed"))
    settings.marts_dir.mkdir(parents=True)
    spec = packed_spec(settings.marts_dir)
    write_packed([("a", 0, 0, {"p1": (1.0, 1, "web")})], spec.parquet_path)
    apply_definitions(settings, "sqlite", definitions=build_definitions([spec]))
    return settings, spec


def as_tuples(frame: pd.DataFrame) -> list[tuple]:
    return [
        (
            None if pd.isna(s) else float(s),
            None if pd.isna(n) else int(n),
            None if pd.isna(ch) else str(ch),
        )
        for s, n, ch in zip(frame["score"], frame["count"], frame["channel"], strict=True)
    ]


@given(rows=packed_rows, entities=entity_rows)
@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_historical_features_of_a_packed_view_equal_the_oracle(
    packed_store: tuple[Settings, FeatureViewSpec], rows: list[tuple], entities: list[tuple]
) -> None:
    settings, spec = packed_store
    write_packed(rows, spec.parquet_path)
    at = [grid_time(day, sec) + (TTL if shifted else timedelta(0)) for _, _, day, sec, shifted in entities]
    entity_df = pd.DataFrame(
        {
            "customer_id": [e[0] for e in entities],
            "product_id": [e[1] for e in entities],
            EVENT_TIMESTAMP: pd.to_datetime(at),
        }
    )
    out = historical_features(get_store(settings, "sqlite"), entity_df)
    assert out["count"].dtype == "Int64" and out["channel"].dtype == "string"
    expected = [oracle(rows, e[0], e[1], t) for e, t in zip(entities, at, strict=True)]
    mismatches = [(e, x, g) for e, x, g in zip(entities, expected, as_tuples(out), strict=True) if x != g]
    assert mismatches == []


@given(rows=packed_rows.filter(bool))
@hsettings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_online_values_of_a_packed_view_are_the_latest_rows_elements(
    packed_store: tuple[Settings, FeatureViewSpec], rows: list[tuple]
) -> None:
    settings, spec = packed_store
    write_packed(rows, spec.parquet_path)
    materialize(settings, "sqlite", progress=False, full=True)
    store = get_store(settings, "sqlite")
    for customer in {r[0] for r in rows}:
        latest = max((r for r in rows if r[0] == customer), key=lambda r: grid_time(r[1], r[2]))
        frame = online_features(store, customer, [*PRODUCTS, "p9"]).frame
        expected = [latest[3].get(p, (None, None, None)) for p in [*PRODUCTS, "p9"]]
        assert as_tuples(frame) == expected, customer
