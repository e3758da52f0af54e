"""Point-in-time correctness of Feast retrieval, as nextbest configures it, against a brute-force oracle.

Randomised timelines on a coarse grid force the edge cases: a feature row exactly at the entity
timestamp (used), one second after it (not used), a row exactly ``ttl`` old (used) or ``ttl`` + 1 s
old (not used), and restated rows with the same keys and event_timestamp. Restatement rule (decided
and documented in ``nextbest.features.manifest.FeatureViewSpec``): the row with the latest
``created_timestamp_column`` wins, offline and online.

The oracle below is written independently of Feast: a plain Python scan over the rows.
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
from nextbest.features.schema import normalise
from nextbest.features.store import apply_definitions, get_store, materialize
from nextbest.settings import Settings

pytestmark = pytest.mark.integration

BASE = datetime(2024, 1, 1)
TTL = timedelta(days=3)
CUSTOMERS = ["a", "b", "c"]
CREATED = "created_at"
ONE_SECOND = timedelta(seconds=1)
ANCHOR_OFFSETS = [-ONE_SECOND, timedelta(0), ONE_SECOND, TTL, TTL + ONE_SECOND]


def timeline_spec(marts_dir: Path) -> FeatureViewSpec:
    """One customer-level view with a nullable double, a bigint and a created column."""
    return FeatureViewSpec(
        view="timeline",
        model="feat_timeline",
        parquet_path=(marts_dir / "feat_timeline.parquet").resolve(),
        entities=("customer",),
        join_keys=("customer_id",),
        ttl=TTL,
        fields=(
            FieldSpec("value", "double", "Float64", "a nullable double"),
            FieldSpec("version", "bigint", "Int64", "which generated row this is"),
        ),
        description="one row per customer x event_timestamp x restatement",
        created_timestamp_column=CREATED,
    )


def grid_time(day: int, second: int) -> datetime:
    """A point on the coarse grid: whole days plus 0, 1 or (ttl-boundary) seconds."""
    return BASE + timedelta(days=day, seconds=second)


feature_rows = st.lists(
    st.tuples(
        st.sampled_from(CUSTOMERS),
        st.integers(0, 8),  # day
        st.sampled_from([0, 1]),  # second
        st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)),  # value
    ),
    max_size=14,
)
entity_rows = st.lists(
    st.tuples(
        st.sampled_from([*CUSTOMERS, "zz"]),
        st.integers(0, 9),  # day
        st.sampled_from([0, 1, 2]),  # second
        st.booleans(),  # shifted by exactly the ttl: probes expiry at +0 s, +1 s, +2 s
    ),
    min_size=1,
    max_size=14,
)


def feature_frame(rows: list[tuple], created_order: list[int]) -> pd.DataFrame:
    """The mart: one row per generated tuple; ``version`` = position, ``created_at`` unique per row."""
    return pd.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            EVENT_TIMESTAMP: pd.to_datetime([grid_time(r[1], r[2]) for r in rows]),
            "value": pd.Series([r[3] for r in rows], dtype="float64"),
            "version": pd.Series(range(len(rows)), dtype="int64"),
            CREATED: pd.to_datetime([BASE + timedelta(minutes=c) for c in created_order]),
        }
    ).astype({"customer_id": "string"})


def write_mart(frame: pd.DataFrame, path: Path) -> None:
    """Write with the types a dbt external parquet has, also when there are no rows."""
    schema = pa.schema(
        [
            ("customer_id", pa.string()),
            (EVENT_TIMESTAMP, pa.timestamp("us")),
            ("value", pa.float64()),
            ("version", pa.int64()),
            (CREATED, pa.timestamp("us")),
        ]
    )
    pq.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False), path)


def oracle(features: pd.DataFrame, customer: str, at: datetime) -> tuple[float | None, int | None]:
    """The (value, version) valid for ``customer`` at ``at``: brute force over every row.

    Valid rows: same customer, event_timestamp <= at <= event_timestamp + ttl. Among them the latest
    event_timestamp wins; a tie goes to the latest created_at.
    """
    best = None
    for row in features.itertuples(index=False):
        ts = row.event_timestamp.to_pydatetime()
        if row.customer_id != customer or not (ts <= at <= ts + TTL):
            continue
        key = (ts, row.created_at.to_pydatetime())
        if best is None or key > best[0]:
            best = (key, row)
    if best is None:
        return None, None
    value = best[1].value
    return (None if pd.isna(value) else float(value)), int(best[1].version)


def latest_row(features: pd.DataFrame, customer: str) -> tuple[float | None, int | None]:
    """What the online store must hold after a full backfill: latest (event_timestamp, created_at), no ttl."""
    rows = features[features["customer_id"] == customer]
    if rows.empty:
        return None, None
    row = rows.sort_values([EVENT_TIMESTAMP, CREATED]).iloc[-1]
    return (None if pd.isna(row["value"]) else float(row["value"])), int(row["version"])


@pytest.fixture(scope="module")
def timeline_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, FeatureViewSpec]:
    """A registry with the single ``timeline`` view; each example rewrites its parquet in place."""
    settings = Settings(home=tmp_path_factory.mktemp("pit"))
    settings.marts_dir.mkdir(parents=True)
    spec = timeline_spec(settings.marts_dir)
    write_mart(feature_frame([("a", 0, 0, 1.0)], [0]), spec.parquet_path)
    apply_definitions(settings, "sqlite", definitions=build_definitions([spec]))
    return settings, spec


@given(rows=feature_rows, entities=entity_rows, data=st.data())
@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_historical_features_equal_the_oracle(
    timeline_store: tuple[Settings, FeatureViewSpec],
    rows: list[tuple],
    entities: list[tuple],
    data: st.DataObject,
) -> None:
    settings, spec = timeline_store
    created = data.draw(st.permutations(list(range(len(rows)))))
    features = feature_frame(rows, created)
    write_mart(features, spec.parquet_path)
    customers = [e[0] for e in entities]
    at = [grid_time(day, second) + (TTL if shifted else timedelta(0)) for _, day, second, shifted in entities]
    if rows:  # entity rows anchored on feature rows: exactly at, 1 s around, and exactly at / 1 s past expiry
        anchors = data.draw(
            st.lists(st.tuples(st.integers(0, len(rows) - 1), st.sampled_from(ANCHOR_OFFSETS)))
        )
        customers += [rows[i][0] for i, _ in anchors]
        at += [grid_time(rows[i][1], rows[i][2]) + offset for i, offset in anchors]
    entity_df = pd.DataFrame({"customer_id": customers, EVENT_TIMESTAMP: pd.to_datetime(at)})
    out = normalise(historical_features(get_store(settings, "sqlite"), entity_df), [spec])
    expected = [oracle(features, c, t) for c, t in zip(entity_df["customer_id"], at, strict=True)]
    got = [
        (None if pd.isna(v) else float(v), None if pd.isna(n) else int(n))
        for v, n in zip(out["value"], out["version"], strict=True)
    ]
    mismatches = [(c, t, x, g) for c, t, x, g in zip(customers, at, expected, got, strict=True) if x != g]
    assert mismatches == []


@given(rows=feature_rows.filter(bool), data=st.data())
@hsettings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_online_store_holds_the_latest_restatement_after_a_full_backfill(
    timeline_store: tuple[Settings, FeatureViewSpec], rows: list[tuple], data: st.DataObject
) -> None:
    settings, spec = timeline_store
    created = data.draw(st.permutations(list(range(len(rows)))))
    features = feature_frame(rows, created)
    write_mart(features, spec.parquet_path)
    materialize(settings, "sqlite", progress=False, full=True)
    store = get_store(settings, "sqlite")
    for customer in {r[0] for r in rows}:
        frame = online_features(store, customer, ["p"]).frame
        value, version = frame["value"].iloc[0], frame["version"].iloc[0]
        got = (None if pd.isna(value) else float(value), None if pd.isna(version) else int(version))
        assert got == latest_row(features, customer), customer
