"""Scoring the churn and category_propensity tasks in batch and online on a real deployment (synthetic
bank -> dbt -> Feast -> both bundles trained by ``train_tasks`` on one retrieval): ``score-batch --task
churn``, ``POST /score/churn`` and their category_propensity counterparts.

Known answers: the batch scores exactly the latest snapshot's at-risk customers (``fct_churn_population``)
or (customer, category) rows (``fct_category_propensity_population``), and its probability for a customer
equals the online route's (the online store holds the latest snapshot: both paths can only differ through
their features, which must agree).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from nextbest.cli import main
from nextbest.serving.api import create_app
from nextbest.serving.tasks import EmptySnapshotError, score_task_batch
from nextbest.settings import ServingSettings, Settings
from nextbest.training.artifacts import BundleMismatchError
from nextbest.training.config import RankerConfig, TrainingConfig
from nextbest.training.tasks import latest_task_bundle, task_spec, train_tasks
from tests.integration.serving_fixtures import build_deployment

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = build_deployment(tmp_path_factory.mktemp("serving_tasks"), customers=1000, months=9)
    config = TrainingConfig.model_validate({"name": "churn-test", "split": {"max_train_snapshots": 5}})
    params = RankerConfig(n_estimators=80, learning_rate=0.1, early_stopping_rounds=20, n_jobs=1)
    specs = [task_spec(settings, "churn"), task_spec(settings, "category_propensity")]
    train_tasks(settings, specs, config, params=params)
    return settings


@pytest.fixture(scope="module")
def client(deployment: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(deployment, ServingSettings(online_store="sqlite"))) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def population(deployment: Settings) -> pd.DataFrame:
    path = deployment.marts_dir / "fct_churn_population.parquet"
    return duckdb.sql(
        f"select customer_id, snapshot_on from read_parquet('{path}') "
        f"where snapshot_on = (select max(snapshot_on) from read_parquet('{path}')) order by customer_id"
    ).df()


@pytest.fixture(scope="module")
def batch(deployment: Settings, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("churn_batch") / "churn.parquet"
    written = score_task_batch("churn", None, out, settings=deployment)
    assert written.rows > 0 and written.path == out
    return pd.read_parquet(out)


# --------------------------------------------------------------------------- batch


def test_batch_scores_the_latest_at_risk_population(batch: pd.DataFrame, population: pd.DataFrame) -> None:
    assert list(batch.columns) == ["customer_id", "snapshot_on", "probability", "score"]
    assert batch["customer_id"].tolist() == population["customer_id"].tolist()
    assert set(pd.to_datetime(batch["snapshot_on"])) == set(pd.to_datetime(population["snapshot_on"]))
    assert batch["probability"].between(0, 1).all() and batch["probability"].nunique() > 1


def test_batch_equals_the_online_route(batch: pd.DataFrame, client: TestClient) -> None:
    for row in batch.iloc[:: max(1, len(batch) // 5)].itertuples():
        body = client.post("/score/churn", json={"customer_id": row.customer_id}).json()
        assert body["probability"] == pytest.approx(row.probability, abs=1e-9)
        assert body["score"] == pytest.approx(row.score, abs=1e-9)
        assert pd.Timestamp(body["snapshot_at"]).date() == row.snapshot_on + pd.Timedelta(days=1)


def test_cli_scores_a_snapshot_and_names_the_snapshots_when_one_is_empty(
    deployment: Settings, population: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("NEXTBEST_HOME", str(deployment.home))
    with pytest.raises(SystemExit) as done:
        main(["score-batch", "--task", "churn"])
    assert done.value.code == 0
    latest = pd.Timestamp(population["snapshot_on"].iloc[0]).date()
    written = pd.read_parquet(deployment.home / "scores" / "churn" / f"{latest}.parquet")
    assert len(written) == len(population)
    with pytest.raises(SystemExit) as exit_:
        main(["score-batch", "--task", "churn", "--snapshot", "1999-01-31", "--out", str(tmp_path / "x.pq")])
    assert exit_.value.code == 2  # bad input
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nobody is in fct_churn_population at snapshot 1999-01-31" in err[0]
    assert str(latest) in err[0] and not (tmp_path / "x.pq").exists()
    with pytest.raises(EmptySnapshotError):
        score_task_batch("churn", date(1999, 1, 31), tmp_path / "y.parquet", settings=deployment)


def test_a_bundle_of_another_build_is_refused_in_batch_and_not_served_online(
    deployment: Settings, tmp_path: Path
) -> None:
    bundle = latest_task_bundle(deployment, "churn")
    assert bundle is not None
    other = bundle.with_name("99990101T000000000000Z")  # sorts last: the one served
    shutil.copytree(bundle, other)
    try:
        meta = json.loads((other / "task.json").read_text())
        (other / "task.json").write_text(json.dumps(meta | {"build_id": "another-build"}))
        with pytest.raises(BundleMismatchError, match="trained on build another-build"):
            score_task_batch("churn", None, tmp_path / "z.parquet", settings=deployment)
        # online: the stale task is not served (404 saying why); the ranking still is
        with TestClient(create_app(deployment, ServingSettings(online_store="sqlite"))) as stale:
            response = stale.post("/score/churn", json={"customer_id": "C0000001"})
            assert response.status_code == 404
            assert "trained on build another-build" in response.json()["detail"]
            assert stale.get("/health").status_code == 200
    finally:
        shutil.rmtree(other)


# --------------------------------------------------------------------------- POST /score/{task}


def test_score_answers_the_task_probability_version_and_snapshot(
    client: TestClient, population: pd.DataFrame, deployment: Settings
) -> None:
    customer = population["customer_id"].iloc[0]
    response = client.post("/score/churn", json={"customer_id": customer})
    assert response.status_code == 200
    body = response.json()
    assert body["task"] == "churn" and body["customer_id"] == customer
    assert 0.0 <= body["probability"] <= 1.0
    bundle = latest_task_bundle(deployment, "churn")
    assert bundle is not None and body["model_version"] == bundle.name


@pytest.mark.parametrize("task", ["nope", "product_propensity"])
def test_unknown_or_unscored_task_is_404(client: TestClient, population: pd.DataFrame, task: str) -> None:
    response = client.post(f"/score/{task}", json={"customer_id": population["customer_id"].iloc[0]})
    assert response.status_code == 404
    detail = response.json()["detail"]
    assert detail.startswith(f"task {task!r} is not served (")
    assert detail.endswith("served tasks: category_propensity, churn")
    assert ("POST /rank" in detail) == (task == "product_propensity")


def test_unknown_customer_is_404(client: TestClient) -> None:
    response = client.post("/score/churn", json={"customer_id": "NOBODY"})
    assert response.status_code == 404 and "unknown customer 'NOBODY'" in response.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [{}, {"customer_id": 42}, {"customer_id": ""}, {"customer_id": "C1", "k": 3}, {"customer_ids": ["C1"]}],
)
def test_malformed_body_is_422(client: TestClient, body: dict) -> None:
    response = client.post("/score/churn", json=body)
    assert response.status_code == 422


def test_batch_route_scores_known_customers_and_flags_unknown_ones(
    client: TestClient, population: pd.DataFrame
) -> None:
    known = population["customer_id"].iloc[:2].tolist()
    response = client.post("/score/churn/batch", json={"customer_ids": [known[0], "NOBODY", known[1]]})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["customer_id"] for r in results] == [known[0], "NOBODY", known[1]]
    assert results[1]["score"] is None and "unknown customer" in results[1]["error"]
    single = client.post("/score/churn", json={"customer_id": known[1]}).json()
    assert results[2]["score"]["probability"] == pytest.approx(single["probability"])
    assert client.post("/score/churn/batch", json={"customer_ids": []}).status_code == 422


def test_a_store_known_to_be_down_is_503_with_retry_after(
    client: TestClient, population: pd.DataFrame
) -> None:
    """The task route reads through the ranker's OnlineReader: its open circuit breaker answers 503."""
    customer = {"customer_id": population["customer_id"].iloc[0]}
    breaker = client.app.state.tasks.scorers["churn"].reader.breaker
    assert breaker is client.app.state.scorer.reader.breaker  # one breaker per store, shared
    try:
        for _ in range(breaker.failures):
            breaker.failure()
        response = client.post("/score/churn", json=customer)
        assert response.status_code == 503 and int(response.headers["Retry-After"]) >= 1
        assert "unreachable" in response.json()["detail"]
    finally:
        breaker.success()
    assert client.post("/score/churn", json=customer).status_code == 200


# --------------------------------------------------------------------------- category_propensity


@pytest.fixture(scope="module")
def category_population(deployment: Settings) -> pd.DataFrame:
    path = deployment.marts_dir / "fct_category_propensity_population.parquet"
    return duckdb.sql(
        f"select customer_id, snapshot_on, category from read_parquet('{path}') "
        f"where snapshot_on = (select max(snapshot_on) from read_parquet('{path}')) "
        "order by customer_id, category"
    ).df()


@pytest.fixture(scope="module")
def category_batch(deployment: Settings, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("category_batch") / "category_propensity.parquet"
    written = score_task_batch("category_propensity", None, out, settings=deployment)
    assert written.rows > 0 and written.path == out
    return pd.read_parquet(out)


def test_category_batch_scores_every_population_row_and_ranks_each_customers_categories(
    category_batch: pd.DataFrame, category_population: pd.DataFrame
) -> None:
    assert list(category_batch.columns) == ["customer_id", "snapshot_on", "category", "probability", "score",
                                            "rank"]
    keys = ["customer_id", "category"]
    assert category_batch[keys].values.tolist() == category_population[keys].values.tolist()
    snapshots = [set(pd.to_datetime(f["snapshot_on"])) for f in (category_batch, category_population)]
    assert snapshots[0] == snapshots[1] and len(snapshots[0]) == 1
    assert category_batch["probability"].between(0, 1).all() and category_batch["probability"].nunique() > 1
    for _, rows in category_batch.groupby("customer_id"):
        ranked = rows.sort_values("rank")
        assert ranked["rank"].tolist() == list(range(1, len(rows) + 1))
        assert ranked["score"].is_monotonic_decreasing and ranked["probability"].is_monotonic_decreasing


def test_category_online_ranking_equals_the_batch(category_batch: pd.DataFrame, client: TestClient) -> None:
    customers = category_batch["customer_id"].drop_duplicates()
    for customer in customers.iloc[:: max(1, len(customers) // 5)]:
        response = client.post("/score/category_propensity", json={"customer_id": customer})
        assert response.status_code == 200
        body = response.json()
        assert body["task"] == "category_propensity" and body["customer_id"] == customer
        expected = category_batch[category_batch["customer_id"] == customer].sort_values("rank")
        assert [c["category"] for c in body["categories"]] == expected["category"].tolist()
        assert [c["rank"] for c in body["categories"]] == expected["rank"].tolist()
        assert [c["probability"] for c in body["categories"]] == pytest.approx(
            expected["probability"].tolist(), abs=1e-9
        )
        assert [c["score"] for c in body["categories"]] == pytest.approx(expected["score"].tolist(), abs=1e-9)


def test_category_unknown_customer_is_404_and_flagged_in_a_batch(
    client: TestClient, category_batch: pd.DataFrame
) -> None:
    response = client.post("/score/category_propensity", json={"customer_id": "NOBODY"})
    assert response.status_code == 404
    assert "unknown customer 'NOBODY': not in fct_category_propensity_population" in response.json()["detail"]
    known = category_batch["customer_id"].iloc[0]
    response = client.post("/score/category_propensity/batch", json={"customer_ids": ["NOBODY", known]})
    assert response.status_code == 200
    results = response.json()["results"]
    assert results[0]["score"] is None and "unknown customer" in results[0]["error"]
    assert results[1]["score"]["categories"][0]["rank"] == 1


def test_openapi_documents_both_answers_of_the_score_route(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    answer = json.dumps(schema["paths"]["/score/{task}"]["post"]["responses"]["200"])
    assert "TaskScoreResponse" in answer and "CategoryRankingResponse" in answer
    assert schema["components"]["schemas"]["CategoryRankingResponse"]["examples"]


def test_cli_scores_the_category_population_to_its_default_file(
    deployment: Settings, category_population: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEXTBEST_HOME", str(deployment.home))
    with pytest.raises(SystemExit) as done:
        main(["score-batch", "--task", "category_propensity"])
    assert done.value.code == 0
    latest = pd.Timestamp(category_population["snapshot_on"].iloc[0]).date()
    written = pd.read_parquet(deployment.home / "scores" / "category_propensity" / f"{latest}.parquet")
    assert len(written) == len(category_population) and written["rank"].min() == 1
