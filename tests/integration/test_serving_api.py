"""The HTTP API on a real app (FastAPI TestClient), real Feast, sqlite and a real redis-server.

One small synthetic bank is built per module (generate -> ingest -> dbt -> Feast -> bundle). A customer
"owning everything" is added to the online store with Feast's own write path: its customer row is at
the latest snapshot, its customer x product rows are older or absent, so it has no candidate.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import duckdb
import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from nextbest.features.store import apply_definitions, get_store, materialize
from nextbest.serving.api import create_app
from nextbest.serving.errors import ServingError, UnknownCustomerError
from nextbest.serving.scorer import RankQuery, Scorer
from nextbest.settings import ServingSettings, Settings
from nextbest.training.artifacts import BundleMismatchError, latest_bundle
from tests.integration.serving_fixtures import RedisServer, build_deployment, latest_candidates

pytestmark = pytest.mark.integration

OWNS_ALL = "ZZ_OWNS_EVERYTHING"
STALE_LIST = "ZZ_STALE_CANDIDATE_LIST"


def _mart(settings: Settings, name: str) -> pd.DataFrame:
    return duckdb.sql(f"select * from read_parquet('{settings.marts_dir / name}.parquet')").df()


def add_customer_without_candidates(settings: Settings, online: str) -> None:
    """Write two customers online, each with a customer row at the latest snapshot:
    OWNS_ALL with a packed row at the latest snapshot listing nothing (what dbt writes for an owner of
    everything), and STALE_LIST with only a packed row one month older, listing products (a list that is
    out of date must not be ranked)."""
    store = get_store(settings, online)
    customers = _mart(settings, "feat_customer_monthly")
    latest = customers["event_timestamp"].max()
    row = customers[customers["event_timestamp"] == latest].head(1)
    store.write_to_online_store(
        "customer_monthly", pd.concat([row.assign(customer_id=OWNS_ALL), row.assign(customer_id=STALE_LIST)])
    )
    packed = _mart(settings, "feat_customer_product_monthly_packed")
    lists = [c for c in packed.columns if c not in ("customer_id", "event_timestamp")]
    empty = packed[packed["event_timestamp"] == latest].head(1).assign(customer_id=OWNS_ALL)
    for col in lists:
        empty[col] = [[]]
    older = packed[(packed["event_timestamp"] < latest) & (packed["candidate_product_ids"].map(len) > 2)]
    older = older[older["event_timestamp"] == older["event_timestamp"].max()].head(1)
    store.write_to_online_store(
        "customer_product_monthly", pd.concat([empty, older.assign(customer_id=STALE_LIST)])
    )


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = build_deployment(tmp_path_factory.mktemp("serving_api"), customers=1200, months=8)
    add_customer_without_candidates(settings, "sqlite")
    return settings


@pytest.fixture(scope="module")
def client(deployment: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(deployment, ServingSettings(online_store="sqlite"))) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def candidates(deployment: Settings) -> pd.DataFrame:
    return latest_candidates(deployment)


def answered_within(seconds: float, call: Callable[[], httpx.Response]) -> httpx.Response:
    """``call()`` repeated until it is not a 503 or ``seconds`` have passed (the circuit breaker may stay
    open up to its cool-down after a store comes back); the last response."""
    deadline = time.monotonic() + seconds
    response = call()
    while response.status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.05)
        response = call()
    return response


def a_customer(candidates: pd.DataFrame, min_candidates: int = 5) -> str:
    counts = candidates.groupby("customer_id").size()
    return str(counts[counts >= min_candidates].index.sort_values()[0])


# --------------------------------------------------------------------------- POST /rank


class TestRank:
    def test_ranks_the_customers_candidates_best_first(
        self, client: TestClient, candidates: pd.DataFrame
    ) -> None:
        customer = a_customer(candidates)
        response = client.post("/rank", json={"customer_id": customer, "k": 4})
        assert response.status_code == 200
        body = response.json()
        products = body["products"]
        assert [p["rank"] for p in products] == [1, 2, 3, 4]
        scores = [p["score"] for p in products]
        assert scores == sorted(scores, reverse=True)
        assert all(0.0 <= p["probability"] <= 1.0 for p in products)
        expected = set(candidates.loc[candidates["customer_id"] == customer, "product_id"])
        assert {p["product_id"] for p in products} <= expected
        assert body["n_candidates"] == len(expected)
        assert body["reason"] is None
        assert body["feature_service"] == "ranker_v1"

    def test_an_owned_or_ineligible_product_is_never_returned(
        self, client: TestClient, candidates: pd.DataFrame, deployment: Settings
    ) -> None:
        customer = a_customer(candidates)
        mine = set(candidates.loc[candidates["customer_id"] == customer, "product_id"])
        not_candidates = sorted(set(_mart(deployment, "dim_products")["product_id"]) - mine)
        assert not_candidates, "the customer should own or be ineligible for some product"
        body = client.post(
            "/rank",
            json={"customer_id": customer, "k": 50, "product_ids": [*not_candidates, sorted(mine)[0]]},
        ).json()
        assert [p["product_id"] for p in body["products"]] == [sorted(mine)[0]]

    def test_only_non_candidates_requested_gives_an_empty_list_with_a_reason(
        self, client: TestClient, candidates: pd.DataFrame, deployment: Settings
    ) -> None:
        customer = a_customer(candidates)
        mine = set(candidates.loc[candidates["customer_id"] == customer, "product_id"])
        others = sorted(set(_mart(deployment, "dim_products")["product_id"]) - mine)
        response = client.post("/rank", json={"customer_id": customer, "product_ids": others})
        assert response.status_code == 200
        assert response.json()["products"] == [] and "no candidate" in response.json()["reason"]

    def test_a_customer_owning_nothing_is_ranked_like_any_other(
        self, client: TestClient, candidates: pd.DataFrame, deployment: Settings
    ) -> None:
        features = _mart(deployment, "feat_customer_monthly")
        latest = features[features["event_timestamp"] == features["event_timestamp"].max()]
        prospects = sorted(latest.loc[latest["count_holdings_started_ever"] == 0, "customer_id"])
        assert prospects, "the synthetic bank has customers who joined without a product"
        customer = prospects[0]
        response = client.post("/rank", json={"customer_id": customer, "k": 3})
        assert response.status_code == 200
        body = response.json()
        expected = set(candidates.loc[candidates["customer_id"] == customer, "product_id"])
        assert body["n_candidates"] == len(expected) > 0
        assert len(body["products"]) == min(3, len(expected)) and body["reason"] is None

    def test_a_customer_owning_everything_gets_an_empty_list_with_a_reason(self, client: TestClient) -> None:
        response = client.post("/rank", json={"customer_id": OWNS_ALL, "k": 5})
        assert response.status_code == 200
        body = response.json()
        assert body["products"] == [] and body["n_candidates"] == 0
        assert "owns, or is not eligible for, every requested product" in body["reason"]
        # only its customer row and its (empty) list were served, so only those views are judged
        assert {v["view"] for v in body["staleness"]} == {"customer_monthly", "customer_product_monthly"}

    def test_a_candidate_list_older_than_the_customer_row_is_not_ranked(self, client: TestClient) -> None:
        body = client.post("/rank", json={"customer_id": STALE_LIST, "k": 5}).json()
        assert body["products"] == [] and body["n_candidates"] == 0

    def test_unknown_customer_is_404_with_a_message(self, client: TestClient) -> None:
        response = client.post("/rank", json={"customer_id": "NOBODY", "k": 3})
        assert response.status_code == 404
        assert "unknown customer 'NOBODY'" in response.json()["detail"]

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"k": 3},
            {"customer_id": ""},
            {"customer_id": "C0000001", "k": 0},
            {"customer_id": "C0000001", "k": "many"},
            {"customer_id": "C0000001", "k": 101},
            {"customer_id": "C0000001", "k": "3"},
            {"customer_id": "C0000001", "k": True},
            {"customer_id": "C0000001", "k": 3.0},
            {"customer_id": 1},
            {"customer_id": "x" * 129},
            {"customer_id": "C\u0000"},
            {"customer_id": "C0000001", "product_ids": []},
            {"customer_id": "C0000001", "product_ids": ["no_such_product"]},
            {"customer_id": "C0000001", "colour": "red"},
        ],
    )
    def test_malformed_body_is_422(self, client: TestClient, body: dict) -> None:
        assert client.post("/rank", json=body).status_code == 422

    def test_a_body_that_is_not_json_is_422(self, client: TestClient) -> None:
        response = client.post(
            "/rank", content=b"customer_id=1", headers={"content-type": "application/json"}
        )
        assert response.status_code == 422


class TestRankBatch:
    def test_each_customer_gets_its_ranking_and_an_unknown_one_an_error_item(
        self, client: TestClient, candidates: pd.DataFrame
    ) -> None:
        known = sorted(candidates["customer_id"].unique())[:3]
        response = client.post("/rank/batch", json={"customer_ids": [*known, "NOBODY"], "k": 2})
        assert response.status_code == 200
        results = response.json()["results"]
        assert [r["customer_id"] for r in results] == [*known, "NOBODY"]
        assert all(len(r["ranking"]["products"]) <= 2 and r["error"] is None for r in results[:3])
        assert results[3]["ranking"] is None and "unknown customer" in results[3]["error"]
        single = client.post("/rank", json={"customer_id": known[0], "k": 2}).json()
        assert results[0]["ranking"]["products"] == single["products"]

    def test_rank_many_answers_each_query_as_rank_does_one_by_one(
        self, deployment: Settings, candidates: pd.DataFrame
    ) -> None:
        scorer = Scorer(deployment, ServingSettings(online_store="sqlite"))
        customers = sorted(candidates["customer_id"].unique())[:12]
        mine = sorted(candidates.loc[candidates["customer_id"] == customers[1], "product_id"])
        queries = [RankQuery(c, k=1 + i % 5) for i, c in enumerate(customers)]
        queries += [
            RankQuery(customers[1], 3, mine[:2]),
            RankQuery("NOBODY", 3),
            RankQuery(OWNS_ALL, 3),
            RankQuery(customers[0], 0),
            RankQuery(customers[0], 3, ["no_such_product"]),
        ]
        together = scorer.rank_many(queries)
        assert len(together) == len(queries)
        for query, got in zip(queries, together, strict=True):
            try:
                alone = scorer.rank(query.customer_id, query.k, query.product_ids)
            except ServingError as exc:
                assert type(got) is type(exc) and str(got) == str(exc)
                continue
            assert got.products == alone.products and got.n_candidates == alone.n_candidates
            assert got.snapshot_at == alone.snapshot_at
            served = [(v.view, v.served_ts, v.is_missing) for v in alone.staleness]
            assert [(v.view, v.served_ts, v.is_missing) for v in got.staleness] == served
        assert {p.product_id for p in together[12].products} <= set(mine[:2])
        assert isinstance(together[13], UnknownCustomerError) and together[14].products == []

    def test_empty_batch_is_422(self, client: TestClient) -> None:
        assert client.post("/rank/batch", json={"customer_ids": []}).status_code == 422


class TestServiceRoutes:
    def test_health_is_liveness_with_model_and_service(
        self, client: TestClient, deployment: Settings
    ) -> None:
        body = client.get("/health").json()
        assert body == {
            "status": "ok",
            "model_version": latest_bundle(deployment.models_dir).name,
            "feature_service": "ranker_v1",
        }

    def test_ready_reports_the_store_holding_every_views_latest_snapshot(
        self, client: TestClient, deployment: Settings
    ) -> None:
        response = client.get("/ready")
        body = response.json()
        assert response.status_code == 200 and body["ready"] is True and body["reason"] is None
        assert body["online_store"] == "sqlite" and body["online_store_reachable"] is True
        assert {v["view"] for v in body["views"]} == {
            "customer_monthly",
            "product_monthly",
            "customer_product_monthly",
        }
        assert all(v["online_is_current"] and v["online_ts"] == v["offline_max_ts"] for v in body["views"])

    def test_products_lists_the_catalogue(self, client: TestClient, deployment: Settings) -> None:
        body = client.get("/products").json()
        assert [p["product_id"] for p in body] == sorted(_mart(deployment, "dim_products")["product_id"])

    def test_openapi_has_the_routes_and_examples(self, client: TestClient) -> None:
        schema = client.get("/openapi.json").json()
        assert {"/rank", "/rank/batch", "/health", "/products"} <= set(schema["paths"])
        assert schema["components"]["schemas"]["RankRequest"]["examples"]
        assert "404" in schema["paths"]["/rank"]["post"]["responses"]


# --------------------------------------------------------------------------- staleness and the bundle check


class TestStalenessAndBundle:
    def test_stale_features_are_reported_then_refused_when_configured(
        self, deployment: Settings, candidates: pd.DataFrame
    ) -> None:
        customer = a_customer(candidates)
        snapshot = pd.Timestamp(candidates["event_timestamp"].max()).tz_localize("UTC").to_pydatetime()
        fresh = ServingSettings(online_store="sqlite", refuse_stale=True, as_of=snapshot + timedelta(days=1))
        late = ServingSettings(online_store="sqlite", refuse_stale=True, as_of=snapshot + timedelta(days=60))
        report_only = ServingSettings(online_store="sqlite", as_of=snapshot + timedelta(days=60))
        with TestClient(create_app(deployment, fresh)) as c:
            body = c.post("/rank", json={"customer_id": customer}).json()
            assert body["stale_views"] == [] and body["products"]
        with TestClient(create_app(deployment, report_only)) as c:
            body = c.post("/rank", json={"customer_id": customer}).json()
            assert set(body["stale_views"]) == {
                "customer_monthly",
                "product_monthly",
                "customer_product_monthly",
            }
            assert body["products"]
        with TestClient(create_app(deployment, late)) as c:
            response = c.post("/rank", json={"customer_id": customer})
            assert response.status_code == 503 and "older than their ttl" in response.json()["detail"]

    def test_a_bundle_with_another_feature_list_is_refused(
        self, deployment: Settings, tmp_path: Path
    ) -> None:
        source = latest_bundle(deployment.models_dir)
        forged = tmp_path / "forged"
        shutil.copytree(source, forged)
        meta = json.loads((forged / "bundle.json").read_text())
        meta["feature_cols"] = [c for c in meta["feature_cols"] if c != "income"] + ["shoe_size"]
        (forged / "bundle.json").write_text(json.dumps(meta))
        with pytest.raises(BundleMismatchError, match="shoe_size"):
            Scorer(deployment, ServingSettings(online_store="sqlite", model_path=forged))


# ----------------------------------------------------------------- redis: 200, down -> 503, back -> 200


@pytest.fixture
def redis_env(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> RedisServer:
    """``redis_server`` (tests/conftest.py) exported as ``NEXTBEST_REDIS_URL``."""
    monkeypatch.setenv("NEXTBEST_REDIS_URL", redis_server.url)
    return redis_server


@pytest.mark.redis
class TestRedis:
    def test_redis_down_is_503_and_the_app_recovers_when_it_returns(
        self, deployment: Settings, candidates: pd.DataFrame, redis_env: RedisServer
    ) -> None:
        deployment = Settings(home=deployment.home)  # settings read now: NEXTBEST_REDIS_URL is our server
        apply_definitions(deployment, "redis")
        materialize(deployment, "redis", progress=False)
        add_customer_without_candidates(deployment, "redis")
        customer = a_customer(candidates)
        with TestClient(create_app(deployment, ServingSettings(online_store="redis"))) as c:
            ok = c.post("/rank", json={"customer_id": customer, "k": 3})
            assert ok.status_code == 200 and len(ok.json()["products"]) == 3
            assert c.post("/rank", json={"customer_id": "NOBODY"}).status_code == 404
            assert c.post("/rank", json={"customer_id": OWNS_ALL}).json()["products"] == []

            redis_env.stop()
            down = c.post("/rank", json={"customer_id": customer, "k": 3})
            assert down.status_code == 503
            assert "redis online store is unreachable" in down.json()["detail"]
            assert down.headers["retry-after"].isdigit()
            assert c.app.state.readiness.check().online_store_reachable is False
            assert c.get("/ready").status_code == 503

            redis_env.start()
            materialize(deployment, "redis", progress=False)
            back = answered_within(2.0, lambda: c.post("/rank", json={"customer_id": customer, "k": 3}))
            assert back.status_code == 200
            assert back.json()["products"] == ok.json()["products"]
            assert c.app.state.readiness.check().ready is True
            assert c.get("/ready").json()["ready"] is True
