"""The Feast feature store end to end: apply -> materialize -> online == offline, on real Feast + DuckDB.

Two kinds of data:
- ``handmade``: three small parquet marts written here plus a manifest-shaped dict (fast, every edge
  case chosen: nulls of every type, a churned customer, a product without candidates);
- ``dbt_built``: a synthetic raw dataset built by the real dbt project (the contract test and the
  parity test on the real marts).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nextbest.columns import EVENT_TIMESTAMP, PAIR_JOIN_COLUMNS
from nextbest.features.definitions import FEATURE_SERVICE_NAME, feature_list_sha
from nextbest.features.online import online_features
from nextbest.features.repo import cli_definitions
from nextbest.features.retrieval import historical_features
from nextbest.features.schema import normalise
from nextbest.features.staleness import stale_views, staleness_report
from nextbest.features.store import (
    apply_definitions,
    get_store,
    load_definitions,
    load_specs,
    materialize,
    repo_config,
    sqlite_path,
    status,
)
from nextbest.marts import manifest_path
from nextbest.settings import FEATURE_REPO_DIR, Settings
from tests.integration.dbt_fixtures import read_mart

pytestmark = pytest.mark.integration

SNAPSHOTS = pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01"])
LATEST = SNAPSHOTS[-1]
CUSTOMERS = [f"c{i:02d}" for i in range(12)]
PRODUCTS = ["p0", "p1", "p2", "p3"]
CHURNED = "c11"
"""Present only at the first snapshot: its online value is 60 days old at LATEST, older than the ttl."""
TTL_DAYS = 40

FEATURE_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "feat_customer_monthly": [
        ("tenure_months", "integer"),
        ("income", "double"),
        ("segment", "varchar"),
        ("has_transactions", "boolean"),
    ],
    "feat_product_monthly": [("count_owners", "bigint"), ("share_population_owning", "double")],
    "feat_customer_product_monthly": [
        ("is_previously_held", "integer"),
        ("months_since_last_held", "integer"),
        ("share_segment_owning", "double"),
    ],
}
VIEWS = {
    "feat_customer_monthly": (["customer"], "customer_monthly"),
    "feat_product_monthly": (["product"], "product_monthly"),
    "feat_customer_product_monthly_packed": (["customer"], "customer_product_monthly"),
}
"""Feature model -> (entities, Feast view). The customer x product model reaches Feast packed."""
PAIR_MODEL, PACKED_MODEL = "feat_customer_product_monthly", "feat_customer_product_monthly_packed"


# --------------------------------------------------------------------------- hand-made marts


def _manifest(columns: dict[str, list[tuple[str, str]]]) -> dict:
    """A manifest-shaped dict for the three feature marts plus one non-feature model."""
    keys = {"customer": "customer_id", "product": "product_id"}
    nodes: dict[str, dict] = {
        "model.nextbest.dim_products": {
            "resource_type": "model",
            "name": "dim_products",
            "config": {"meta": {}},
            "columns": {},
        }
    }
    models = {**VIEWS, PAIR_MODEL: (["customer", "product"], None)}
    for model, (entities, view) in models.items():
        own = [("candidate_product_ids", "varchar[]")] if model == PACKED_MODEL else columns[model]
        cols = [(keys[e], "varchar") for e in entities] + [(EVENT_TIMESTAMP, "timestamp"), *own]
        feast = {"entities": entities, "ttl_days": TTL_DAYS, "view": view}
        feast |= {"packs": PAIR_MODEL} if model == PACKED_MODEL else {}
        nodes[f"model.nextbest.{model}"] = {
            "resource_type": "model",
            "name": model,
            "description": f"One row per {' x '.join(entities)} x snapshot.",
            "config": {"meta": {"feast": feast} if view else {}},
            "columns": {n: {"name": n, "data_type": t, "description": f"{n} (test)"} for n, t in cols},
        }
    return {"metadata": {"dbt_version": "1.11"}, "nodes": nodes}


def _customer_frame(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for k, ts in enumerate(SNAPSHOTS):
        for i, cid in enumerate(CUSTOMERS):
            if cid == CHURNED and k > 0:
                continue
            rows.append(
                (
                    cid,
                    ts,
                    i + k,
                    None if i % 4 == 0 else float(rng.integers(1000, 9000)) + 0.25,
                    None if i % 5 == 0 else ("mass", "affluent")[i % 2],
                    None if i % 6 == 0 else bool((i + k) % 2),
                )
            )
    df = pd.DataFrame(
        rows,
        columns=["customer_id", EVENT_TIMESTAMP, "tenure_months", "income", "segment", "has_transactions"],
    )
    df["tenure_months"] = df["tenure_months"].astype("int32")
    df["has_transactions"] = df["has_transactions"].astype("boolean")
    return df


def _product_frame() -> pd.DataFrame:
    rows = [
        (p, ts, j * 10 + k, None if j == 3 else (j + 1) / 10)
        for k, ts in enumerate(SNAPSHOTS)
        for j, p in enumerate(PRODUCTS)
    ]
    return pd.DataFrame(
        rows, columns=["product_id", EVENT_TIMESTAMP, "count_owners", "share_population_owning"]
    )


def _customer_product_frame(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for k, ts in enumerate(SNAPSHOTS):
        for i, cid in enumerate(CUSTOMERS):
            if cid == CHURNED and k > 0:
                continue
            for j, pid in enumerate(PRODUCTS[:3]):  # p3 is never a candidate
                if (i + j + k) % 4 == 0:  # owned at this snapshot: not a candidate
                    continue
                held = int((i * j + k) % 3 == 0)
                rows.append((cid, pid, ts, held, k + j if held else None, round(float(rng.random()), 6)))
    df = pd.DataFrame(
        rows,
        columns=[
            "customer_id",
            "product_id",
            EVENT_TIMESTAMP,
            "is_previously_held",
            "months_since_last_held",
            "share_segment_owning",
        ],
    )
    df["is_previously_held"] = df["is_previously_held"].astype("int32")
    df["months_since_last_held"] = df["months_since_last_held"].astype("Int32")
    return df


def _packed_frame(customers: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """The pair rows packed per customer x snapshot as the pack_features macro does, written here
    independently: every customer row gets a row, products sorted, null -> NaN (numbers)."""
    features = [c for c, _ in FEATURE_COLUMNS[PAIR_MODEL]]
    rows = []
    for (cid, ts), _ in customers.groupby(["customer_id", EVENT_TIMESTAMP], sort=True):
        mine = pairs[(pairs["customer_id"] == cid) & (pairs[EVENT_TIMESTAMP] == ts)].sort_values("product_id")
        row = {"customer_id": cid, EVENT_TIMESTAMP: ts, "candidate_product_ids": mine["product_id"].tolist()}
        for f in features:
            row[f] = [np.nan if pd.isna(v) else float(v) for v in mine[f]]
        rows.append(row)
    return pd.DataFrame(rows)


def write_handmade(settings: Settings, seed: int = 7) -> None:
    """Write the marts and the manifest where a dbt build would leave them."""
    rng = np.random.default_rng(seed)
    settings.marts_dir.mkdir(parents=True, exist_ok=True)
    manifest_path(settings).parent.mkdir(parents=True, exist_ok=True)
    customers = _customer_frame(rng)
    customers.to_parquet(settings.marts_dir / "feat_customer_monthly.parquet", index=False)
    _product_frame().to_parquet(settings.marts_dir / "feat_product_monthly.parquet", index=False)
    pairs = _customer_product_frame(rng)
    pairs.to_parquet(settings.marts_dir / f"{PAIR_MODEL}.parquet", index=False)
    _packed_frame(customers, pairs).to_parquet(settings.marts_dir / f"{PACKED_MODEL}.parquet", index=False)
    manifest_path(settings).write_text(json.dumps(_manifest(FEATURE_COLUMNS)))


@pytest.fixture
def handmade(settings: Settings) -> Settings:
    """Hand-made marts + manifest under a fresh NEXTBEST_HOME, applied to a sqlite store."""
    write_handmade(settings)
    return settings


@pytest.fixture
def redis_db(require_redis: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty redis database (db 13) for the test, selected through NEXTBEST_REDIS_URL."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, db=13)
    client.flushdb()
    monkeypatch.setenv("NEXTBEST_REDIS_URL", "127.0.0.1:6379,db=13")
    yield "redis"
    client.flushdb()


# --------------------------------------------------------------------------- helpers


def latest_candidates(settings: Settings) -> pd.DataFrame:
    """customer_id, product_id, event_timestamp of every candidate at the latest snapshot."""
    cp = read_mart(settings, "feat_customer_product_monthly")
    latest = cp[EVENT_TIMESTAMP].max()
    return cp.loc[cp[EVENT_TIMESTAMP] == latest, ["customer_id", "product_id", EVENT_TIMESTAMP]].reset_index(
        drop=True
    )


def online_frame(settings: Settings, online: str, candidates: pd.DataFrame) -> pd.DataFrame:
    """Online features of every (customer, its candidate products), in ``candidates`` order."""
    store = get_store(settings, online)
    parts = []
    for cid, group in candidates.groupby("customer_id", sort=False):
        res = online_features(store, str(cid), group["product_id"].tolist())
        parts.append(res.frame.set_index(group.index))
    return pd.concat(parts).loc[candidates.index]


def assert_online_equals_offline(settings: Settings, online: str, candidates: pd.DataFrame) -> None:
    """Every feature value read online equals the point-in-time value at the latest snapshot."""
    specs = load_specs(settings)
    features = [f.name for s in specs for f in s.fields]
    offline = normalise(historical_features(get_store(settings, online), candidates), specs)
    online_df = normalise(online_frame(settings, online, candidates), specs)
    pd.testing.assert_frame_equal(
        online_df[features].reset_index(drop=True), offline[features].reset_index(drop=True)
    )


def registry_specs(settings: Settings) -> dict[str, bytes]:
    """Serialized spec of every registered object (no meta timestamps), keyed by kind:name."""
    store = get_store(settings, "sqlite")
    objs = {f"view:{v.name}": v for v in store.list_feature_views()}
    objs |= {f"source:{s.name}": s for s in store.list_data_sources()}
    objs |= {f"entity:{e.name}": e for e in store.list_entities()}
    objs |= {f"service:{s.name}": s for s in store.list_feature_services()}
    return {k: _without_meta(o.to_proto()).SerializeToString(deterministic=True) for k, o in objs.items()}


def _without_meta(proto):  # noqa: ANN001, ANN202 - any protobuf message
    """``proto`` with every nested ``meta`` (created/updated timestamps) cleared, recursively."""
    for field, value in proto.ListFields():
        if field.name == "meta":
            proto.ClearField("meta")
        elif field.type == field.TYPE_MESSAGE:
            values = value if field.is_repeated else [value]
            for item in values:
                if hasattr(item, "ListFields"):
                    _without_meta(item)
    return proto


# --------------------------------------------------------------------------- contract


class TestDefinitions:
    def test_apply_registers_one_view_per_feature_mart_with_the_yml_columns(self, handmade: Settings) -> None:
        apply_definitions(handmade, "sqlite")
        store = get_store(handmade, "sqlite")
        views = {v.name: v for v in store.list_feature_views()}
        assert set(views) == {"customer_monthly", "product_monthly", "customer_product_monthly"}
        for model, (entities, view) in VIEWS.items():
            fv = views[view]
            packed = model == PACKED_MODEL
            expected = [c for c, _ in FEATURE_COLUMNS[PAIR_MODEL if packed else model]]
            assert [f.name for f in fv.features] == ["candidate_product_ids"] * packed + expected
            assert fv.entities == entities
            assert fv.ttl == timedelta(days=TTL_DAYS)
            assert fv.tags["dbt_model"] == model
            assert fv.batch_source.name == f"{view}_source"
            assert Path(fv.batch_source.path).is_absolute()
            assert fv.batch_source.tags["dbt_model"] == model
        types = {f.name: str(f.dtype) for fv in views.values() for f in fv.features}
        assert types["tenure_months"] == "Int32" and types["count_owners"] == "Int64"
        assert types["income"] == "Float64" and types["segment"] == "String"
        assert types["has_transactions"] == "Bool"
        assert types["candidate_product_ids"] == "Array(String)"
        assert types["is_previously_held"] == types["share_segment_owning"] == "Array(Float64)"
        assert views["customer_product_monthly"].tags["packs"] == PAIR_MODEL

    def test_feature_service_lists_every_feature_of_every_view(self, handmade: Settings) -> None:
        apply_definitions(handmade, "sqlite")
        service = get_store(handmade, "sqlite").get_feature_service(FEATURE_SERVICE_NAME)
        served = {(p.name, f.name) for p in service.feature_view_projections for f in p.features}
        view_of = {m: v for m, (_, v) in VIEWS.items()} | {PAIR_MODEL: VIEWS[PACKED_MODEL][1]}
        expected = {(view_of[m], c) for m, cols in FEATURE_COLUMNS.items() for c, _ in cols}
        assert served == expected | {("customer_product_monthly", "candidate_product_ids")}
        assert service.tags["feature_list_sha"] == feature_list_sha(load_specs(handmade))

    def test_a_new_yml_column_reaches_the_service_without_python_edits(self, handmade: Settings) -> None:
        apply_definitions(handmade, "sqlite")
        sha_before = get_store(handmade, "sqlite").get_feature_service(FEATURE_SERVICE_NAME).tags
        columns = {
            **FEATURE_COLUMNS,
            "feat_product_monthly": [
                *FEATURE_COLUMNS["feat_product_monthly"],
                ("count_new_owners_last_1_months", "integer"),
            ],
        }
        prod = _product_frame()
        prod["count_new_owners_last_1_months"] = np.arange(len(prod), dtype="int32")
        prod.to_parquet(handmade.marts_dir / "feat_product_monthly.parquet", index=False)
        manifest_path(handmade).write_text(json.dumps(_manifest(columns)))
        apply_definitions(handmade, "sqlite")
        service = get_store(handmade, "sqlite").get_feature_service(FEATURE_SERVICE_NAME)
        served = {f.name for p in service.feature_view_projections for f in p.features}
        assert "count_new_owners_last_1_months" in served
        assert service.tags["feature_list_sha"] != sha_before["feature_list_sha"]

    def test_a_view_removed_from_the_manifest_is_removed_from_the_registry(self, handmade: Settings) -> None:
        apply_definitions(handmade, "sqlite")
        manifest = _manifest(FEATURE_COLUMNS)
        del manifest["nodes"]["model.nextbest.feat_product_monthly"]
        manifest_path(handmade).write_text(json.dumps(manifest))
        apply_definitions(handmade, "sqlite")
        names = {v.name for v in get_store(handmade, "sqlite").list_feature_views()}
        assert names == {"customer_monthly", "customer_product_monthly"}

    def test_apply_is_idempotent(self, handmade: Settings) -> None:
        apply_definitions(handmade, "sqlite")
        first = registry_specs(handmade)
        apply_definitions(handmade, "sqlite")
        assert registry_specs(handmade) == first

    def test_apply_without_a_dbt_build_names_the_missing_manifest(self, settings: Settings) -> None:
        with pytest.raises(FileNotFoundError, match="manifest"):
            apply_definitions(settings, "sqlite")

    def test_the_committed_feature_store_yaml_describes_the_same_store(
        self, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from feast.repo_config import load_repo_config

        monkeypatch.setenv("NEXTBEST_HOME", str(settings.home))
        from_yaml = load_repo_config(FEATURE_REPO_DIR, FEATURE_REPO_DIR / "feature_store.yaml")
        in_code = repo_config(settings, "sqlite")
        assert from_yaml.project == in_code.project
        assert Path(from_yaml.registry.path).resolve() == Path(in_code.registry.path)
        assert from_yaml.registry.registry_store_type == in_code.registry.registry_store_type
        assert from_yaml.registry.serve_features_while_materializing
        assert in_code.registry.serve_features_while_materializing
        assert Path(from_yaml.online_store.path).resolve() == Path(in_code.online_store.path)
        assert from_yaml.offline_store.type == in_code.offline_store.type == "duckdb"
        assert from_yaml.batch_engine.type == in_code.batch_engine.type == "local"
        assert from_yaml.materialization_config == in_code.materialization_config
        assert from_yaml.entity_key_serialization_version == in_code.entity_key_serialization_version

    def test_the_spark_engine_selects_feasts_spark_stores(self, settings: Settings) -> None:
        spark = Settings(home=settings.home, engine="spark", spark_master="spark://10.0.0.5:7077")
        for kind, engine in (("sqlite", "local"), ("redis", "spark.engine")):
            config = repo_config(spark, kind)
            assert config.offline_store.type == "spark"
            assert config.offline_store.spark_conf["spark.master"] == "spark://10.0.0.5:7077"
            assert config.batch_engine.type == engine  # sqlite is a file Spark's tasks cannot share
        assert repo_config(spark, "redis").batch_engine.spark_conf == config.offline_store.spark_conf

    def test_unknown_online_store_is_rejected(
        self, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        with pytest.raises(ValueError, match="memcached"):
            repo_config(settings, "memcached")  # type: ignore[arg-type]
        monkeypatch.setenv("NEXTBEST_ONLINE_STORE", "memcached")
        with pytest.raises(ValueError, match="NEXTBEST_ONLINE_STORE"):
            repo_config(Settings(home=settings.home))

    def test_online_store_kind_comes_from_the_environment(
        self, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("NEXTBEST_ONLINE_STORE", "redis")
        monkeypatch.setenv("NEXTBEST_REDIS_URL", "redis://10.0.0.5:6380")
        config = repo_config(Settings(home=settings.home))
        assert config.online_store.type == "redis"
        assert config.online_store.connection_string == "10.0.0.5:6380"
        assert settings.online.kind == "sqlite", "settings are read once, when they are created"
        monkeypatch.delenv("NEXTBEST_ONLINE_STORE")
        sqlite = repo_config(Settings(home=settings.home)).online_store
        assert sqlite.path == str(sqlite_path(settings).resolve())


# --------------------------------------------------------------------------- materialize + parity


class TestMaterialize:
    def test_status_before_and_after_materialize(self, handmade: Settings) -> None:
        apply_definitions(handmade, "sqlite")
        before = {s.view: s for s in status(handmade, "sqlite")}
        assert before["customer_monthly"].offline_rows == len(CUSTOMERS) * 3 - 2
        assert before["product_monthly"].offline_rows == len(PRODUCTS) * 3
        assert all(s.online_until is None and not s.online_is_current for s in before.values())
        runs = materialize(handmade, "sqlite", progress=False)
        assert {r.mode for r in runs} == {"full"}
        assert all(r.start == SNAPSHOTS[0].tz_localize("UTC") for r in runs)
        after = status(handmade, "sqlite")
        assert all(s.online_until == LATEST.tz_localize("UTC") and s.online_is_current for s in after)

    def test_online_equals_historical_at_the_latest_snapshot_sqlite(self, handmade: Settings) -> None:
        apply_definitions(handmade, "sqlite")
        materialize(handmade, "sqlite", progress=False)
        assert_online_equals_offline(handmade, "sqlite", latest_candidates(handmade))

    @pytest.mark.redis
    def test_online_equals_historical_at_the_latest_snapshot_redis(
        self, handmade: Settings, redis_db: str
    ) -> None:
        handmade = Settings(home=handmade.home)  # settings read now: NEXTBEST_REDIS_URL selects db 13
        apply_definitions(handmade, "redis")
        runs = materialize(handmade, "redis", progress=False)
        assert {r.mode for r in runs} == {"full"}
        assert_online_equals_offline(handmade, "redis", latest_candidates(handmade))

    def test_a_view_being_materialized_elsewhere_still_serves_its_last_values(
        self, handmade: Settings
    ) -> None:
        """Feast marks a view MATERIALIZING in the registry while one process materializes it (and leaves
        the mark when that process is killed); another process's online read and training retrieval read
        the registry meanwhile and must still get the last materialized values, not an error."""
        from feast.feature_view import FeatureViewState

        apply_definitions(handmade, "sqlite")
        materialize(handmade, "sqlite", progress=False)
        candidates = latest_candidates(handmade)
        before = online_frame(handmade, "sqlite", candidates)
        writer = get_store(handmade, "sqlite")
        for name in ("customer_monthly", "product_monthly", "customer_product_monthly"):
            view = writer.registry.get_feature_view(name, writer.project)
            view.state = FeatureViewState.MATERIALIZING
            writer.registry.apply_feature_view(view, writer.project, commit=True)
        reader = get_store(Settings(home=handmade.home), "sqlite")  # another process: reads the file
        assert reader.registry.get_feature_view("customer_monthly", reader.project).state == (
            FeatureViewState.MATERIALIZING
        )
        pd.testing.assert_frame_equal(online_frame(handmade, "sqlite", candidates), before)
        entity_df = pd.DataFrame(
            {"customer_id": ["c03"], "product_id": ["p1"], EVENT_TIMESTAMP: pd.to_datetime(["2024-03-01"])}
        )
        assert historical_features(reader, entity_df)["tenure_months"].tolist() == [3 + 2]

    def test_materialize_twice_gives_the_same_online_values(self, handmade: Settings) -> None:
        apply_definitions(handmade, "sqlite")
        materialize(handmade, "sqlite", progress=False)
        candidates = latest_candidates(handmade)
        first = online_frame(handmade, "sqlite", candidates)
        runs = materialize(handmade, "sqlite", progress=False)
        assert {r.mode for r in runs} == {"incremental"}
        pd.testing.assert_frame_equal(online_frame(handmade, "sqlite", candidates), first)

    def test_a_restated_latest_snapshot_is_rewritten_by_the_incremental_run(self, handmade: Settings) -> None:
        apply_definitions(handmade, "sqlite")
        materialize(handmade, "sqlite", progress=False)
        path = handmade.marts_dir / "feat_product_monthly.parquet"
        prod = pd.read_parquet(path)
        prod.loc[prod[EVENT_TIMESTAMP] == LATEST, "count_owners"] += 1000
        prod.to_parquet(path, index=False)
        runs = materialize(handmade, "sqlite", progress=False)
        assert {r.mode for r in runs} == {"incremental"}
        served = online_features(get_store(handmade, "sqlite"), "c01", ["p0", "p1"]).frame["count_owners"]
        assert served.tolist() == [2 + 1000, 12 + 1000]

    def test_a_deleted_online_store_is_rebuilt_by_the_next_materialize(self, handmade: Settings) -> None:
        apply_definitions(handmade, "sqlite")
        materialize(handmade, "sqlite", progress=False)
        candidates = latest_candidates(handmade)
        before = online_frame(handmade, "sqlite", candidates)
        churned_before = online_features(get_store(handmade, "sqlite"), CHURNED, ["p1"]).frame
        sqlite_path(handmade).unlink()
        runs = materialize(handmade, "sqlite", progress=False)
        assert {r.mode for r in runs} == {"full"}
        pd.testing.assert_frame_equal(online_frame(handmade, "sqlite", candidates), before)
        pd.testing.assert_frame_equal(
            online_features(get_store(handmade, "sqlite"), CHURNED, ["p1"]).frame, churned_before
        )

    def test_materialize_without_apply_does_nothing(self, handmade: Settings) -> None:
        assert materialize(handmade, "sqlite", progress=False) == []


# --------------------------------------------------------------------------- retrieval


class TestRetrieval:
    def test_historical_features_keep_the_entity_df_order_index_and_extra_columns(
        self, handmade: Settings
    ) -> None:
        apply_definitions(handmade, "sqlite")
        entity_df = pd.DataFrame(
            {
                "customer_id": ["c03", "c01", "c03", "c01", "c03"],
                "product_id": ["p1", "p2", "p1", "p2", "p9"],
                EVENT_TIMESTAMP: pd.to_datetime(
                    ["2024-03-01", "2024-01-15", "2024-02-01", "2024-03-01", "2024-03-01"]
                ),
                "label": [1, 0, 0, 1, 0],
            },
            index=[50, 40, 30, 20, 10],
        )
        out = historical_features(get_store(handmade, "sqlite"), entity_df)
        pd.testing.assert_frame_equal(out[entity_df.columns], entity_df)
        # tenure_months = customer index + snapshot index; 2024-01-15 sees the 2024-01-01 row
        assert out["tenure_months"].tolist() == [3 + 2, 1 + 0, 3 + 1, 1 + 2, 3 + 2]
        # count_owners = 10 * product index + snapshot index; p9 does not exist
        assert out["count_owners"].tolist()[:4] == [12, 20, 11, 22]
        assert out["count_owners"].isna().tolist() == [False, False, False, False, True]

    def test_a_value_older_than_the_ttl_is_null_offline(self, handmade: Settings) -> None:
        apply_definitions(handmade, "sqlite")
        entity_df = pd.DataFrame(
            {
                "customer_id": [CHURNED, CHURNED],
                "product_id": ["p1", "p1"],
                EVENT_TIMESTAMP: [
                    SNAPSHOTS[0] + timedelta(days=TTL_DAYS),
                    SNAPSHOTS[0] + timedelta(days=TTL_DAYS, seconds=1),
                ],
            }
        )
        out = historical_features(get_store(handmade, "sqlite"), entity_df)
        assert out["tenure_months"].isna().tolist() == [False, True]

    def test_historical_features_need_an_event_timestamp(self, handmade: Settings) -> None:
        apply_definitions(handmade, "sqlite")
        with pytest.raises(ValueError, match="event_timestamp"):
            historical_features(get_store(handmade, "sqlite"), pd.DataFrame({"customer_id": ["c01"]}))

    def test_online_features_of_an_unknown_customer_are_missing_and_stale(self, handmade: Settings) -> None:
        apply_definitions(handmade, "sqlite")
        materialize(handmade, "sqlite", progress=False)
        res = online_features(get_store(handmade, "sqlite"), "nobody", ["p0"])
        assert res.frame["tenure_months"].isna().all()
        assert res.feature_timestamps["customer_monthly"] is None
        report = staleness_report(res.feature_timestamps, load_specs(handmade), LATEST.tz_localize("UTC"))
        assert set(stale_views(report)) == {"customer_monthly", "customer_product_monthly"}

    def test_online_features_for_no_products_has_the_same_columns_and_dtypes(
        self, handmade: Settings
    ) -> None:
        apply_definitions(handmade, "sqlite")
        materialize(handmade, "sqlite", progress=False)
        store = get_store(handmade, "sqlite")
        empty, one = online_features(store, "c01", []).frame, online_features(store, "c01", ["p1"]).frame
        assert empty.empty and len(one) == 1
        pd.testing.assert_series_equal(empty.dtypes, one.dtypes)

    def test_staleness_flags_an_online_value_older_than_the_ttl(self, handmade: Settings) -> None:
        apply_definitions(handmade, "sqlite")
        materialize(handmade, "sqlite", progress=False)
        store = get_store(handmade, "sqlite")
        now = LATEST.tz_localize("UTC").to_pydatetime()
        churned = online_features(store, CHURNED, ["p1"])
        # Feast serves the churned customer's 2024-01-01 row although it is 60 days old ...
        assert churned.frame["tenure_months"].tolist() == [CUSTOMERS.index(CHURNED)]
        assert churned.feature_timestamps["customer_monthly"] == datetime(2024, 1, 1, tzinfo=UTC)
        report = {r.view: r for r in staleness_report(churned.feature_timestamps, load_specs(handmade), now)}
        # ... and the report flags it, as the offline join would return null
        assert report["customer_monthly"].is_stale and report["customer_monthly"].age == timedelta(days=60)
        assert not report["product_monthly"].is_stale
        fresh = online_features(store, "c01", ["p1", "p2"])
        assert stale_views(staleness_report(fresh.feature_timestamps, load_specs(handmade), now)) == []


# --------------------------------------------------------------------------- the real dbt marts


@pytest.fixture(scope="module")
def dbt_built(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A small synthetic bank built by the real dbt project, applied and materialized to sqlite."""
    from nextbest.dbt import run_dbt
    from nextbest.ingest.synthetic import generate_synthetic

    home = tmp_path_factory.mktemp("dbt_feast")
    settings = Settings(home=home)
    generate_synthetic(settings.raw_dir, customers=300, months=8, seed=11)
    meta = json.loads((settings.raw_dir / "dataset.json").read_text())
    dbt_vars = {k: meta[k] for k in ("observed_until", "burn_in_months") if meta.get(k) is not None}
    run_dbt(["build"], settings, dbt_vars, quiet=True)
    old = os.environ.get("NEXTBEST_HOME")
    apply_definitions(settings, "sqlite")
    materialize(settings, "sqlite", progress=False)
    assert old == os.environ.get("NEXTBEST_HOME")
    return settings


class TestOnRealDbtMarts:
    def test_feast_fields_equal_the_dbt_yml_columns(self, dbt_built: Settings) -> None:
        manifest = json.loads(manifest_path(dbt_built).read_text())
        store = get_store(dbt_built, "sqlite")
        views = {v.tags["dbt_model"]: v for v in store.list_feature_views()}
        feature_models = {
            n["name"]: n
            for n in manifest["nodes"].values()
            if n.get("resource_type") == "model" and n["name"].startswith("feat_")
        }
        assert set(views) == set(VIEWS) == set(feature_models) - {PAIR_MODEL}
        keys = {"customer_id", "product_id", EVENT_TIMESTAMP}
        # the pair model's month_index and integer keys are for joins and the packer, not features
        not_features = keys | set(PAIR_JOIN_COLUMNS)
        pair_yml = [c for c in feature_models[PAIR_MODEL]["columns"] if c not in not_features]
        for model in views:
            yml = [c for c in feature_models[model]["columns"] if c not in keys]
            if model == PACKED_MODEL:  # its own yml documents the product list; the features are the pair's
                assert yml == ["candidate_product_ids"]
                yml = yml + pair_yml
            assert [f.name for f in views[model].features] == yml, model
            parquet_cols = set(pd.read_parquet(dbt_built.marts_dir / f"{model}.parquet").columns)
            assert set(yml) | {k for k in keys if k in parquet_cols} == parquet_cols, model
        pair_cols = set(read_mart(dbt_built, PAIR_MODEL).columns)  # a view: read from nextbest.duckdb
        assert pair_cols == set(pair_yml) | not_features
        service = store.get_feature_service(FEATURE_SERVICE_NAME)
        served = {(p.name, f.name) for p in service.feature_view_projections for f in p.features}
        assert served == {(v.name, f.name) for v in views.values() for f in v.features}

    def test_feast_apply_on_the_feature_repo_registers_every_view(self, dbt_built: Settings) -> None:
        """The ``feast`` CLI imports every module of ``feature_repo/``: its explicit, greppable objects
        (each bound to a name equal to its own) must be exactly the definitions built from the manifest."""
        import runpy

        env = {**os.environ, "NEXTBEST_HOME": str(dbt_built.home), "PYTHONPATH": str(FEATURE_REPO_DIR.parent)}
        feast = Path(sys.executable).parent / "feast"
        result = subprocess.run(
            [str(feast), "apply"], cwd=FEATURE_REPO_DIR, env=env, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
        definitions = load_definitions(dbt_built)
        store = get_store(dbt_built, "sqlite")
        assert {v.name for v in store.list_feature_views()} == {v.name for v in definitions.views}
        assert [s.name for s in store.list_feature_services()] == [FEATURE_SERVICE_NAME]
        old = os.environ.get("NEXTBEST_HOME")
        os.environ["NEXTBEST_HOME"] = str(dbt_built.home)
        cli_definitions.cache_clear()
        try:
            declared = {}
            for module in ("entities", "data_sources", "feature_views", "feature_services"):
                names = runpy.run_path(str(FEATURE_REPO_DIR / f"{module}.py"))
                declared |= {k: v for k, v in names.items() if hasattr(v, "name") and not k.startswith("_")}
        finally:
            if old is None:
                os.environ.pop("NEXTBEST_HOME")
            else:
                os.environ["NEXTBEST_HOME"] = old
            cli_definitions.cache_clear()
        assert all(name == obj.name for name, obj in declared.items()), sorted(declared)
        assert set(declared) == {o.name for o in definitions.all()}

    def test_online_equals_historical_for_a_sample_of_customers(self, dbt_built: Settings) -> None:
        candidates = latest_candidates(dbt_built)
        sample = candidates["customer_id"].drop_duplicates().sample(n=25, random_state=3)
        subset = candidates[candidates["customer_id"].isin(sample)]
        assert len(subset) > 25
        assert_online_equals_offline(dbt_built, "sqlite", subset)
