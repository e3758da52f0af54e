"""Operating the API on real servers over real Feast and sqlite: API keys (401/403), rate limits (429),
the refusal to serve a public interface without keys, /metrics parsed by prometheus_client (one worker in
a thread, and two worker processes sharing their figures), the JSON access log, and decisions logs
(online and score-batch) that replay to the same ranking.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from nextbest.serving.api import create_app
from nextbest.serving.auth import KeyRing, add_key, load_keyring
from nextbest.serving.batch import score_batch
from nextbest.serving.cli import log_batch_decisions
from nextbest.serving.decisions import read_decisions, replay
from nextbest.serving.logs import LOGGER_NAME
from nextbest.settings import PROJECT_ROOT, OnlineStoreSettings, ServingSettings, Settings
from tests.integration.serving_fixtures import build_deployment, free_port, latest_candidates, wait_for_port
from tests.integration.test_serving_faults import BlackHole, ServerThread

pytestmark = pytest.mark.integration

STARTUP_S = 180.0
"""Bound of a worker process' start (imports, bundle and catalogue; slow on a busy 2-core machine)."""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return build_deployment(tmp_path_factory.mktemp("serving_ops"), customers=400, months=6, seed=13)


@pytest.fixture(scope="module")
def customers(deployment: Settings) -> list[str]:
    return sorted(latest_candidates(deployment)["customer_id"].unique())


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A key file with four keys: rank only, batch + admin, a slow one (1/s, burst 2), admin only."""
    path = tmp_path_factory.mktemp("keys") / "keys.yaml"
    made = {
        "ranker": add_key(path, "ranker", ["rank"], rate_per_s=1000),
        "batcher": add_key(path, "batcher", ["batch", "admin"], rate_per_s=1000),
        "slow": add_key(path, "slow", ["rank"], rate_per_s=1),
        "ops": add_key(path, "ops", ["admin"], rate_per_s=1000),
    }
    return path, made


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition, by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def requests_of(text: str, route: str, status: str) -> float:
    return sum(
        v
        for (name, labels), v in samples(text).items()
        if name == "nextbest_http_requests_total"
        and ("route", route) in labels
        and ("status", status) in labels
    )


class Lines(logging.Handler):
    """Collects the access log's JSON lines."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines += [json.loads(line) for line in record.getMessage().splitlines()]


@pytest.fixture(scope="module")
def served(
    deployment: Settings, keys: tuple[Path, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, str], Lines, Path]]:
    """(base URL, keys, access-log lines, decisions dir) of a real uvicorn server with keys, the access
    log and the decisions log on (flushed after 1 s); the decisions are written when it stops."""
    decisions = tmp_path_factory.mktemp("decisions")
    serving = ServingSettings(
        online_store="sqlite",
        api_keys_file=keys[0],
        rate_limit_burst=2,
        decisions_log_dir=decisions,
        decisions_flush_s=1.0,
    )
    lines = Lines()
    logging.getLogger(LOGGER_NAME).addHandler(lines)
    try:
        with ServerThread(create_app(deployment, serving)) as server:
            yield server.url, keys[1], lines, decisions
    finally:
        logging.getLogger(LOGGER_NAME).removeHandler(lines)


class TestAuth:
    def test_no_key_or_an_unknown_key_is_401_and_health_stays_open(self, served) -> None:  # noqa: ANN001
        url, _, _, _ = served
        with httpx.Client(base_url=url) as c:
            for path in ("/ready", "/docs", "/openapi.json", "/metrics", "/products", "/nowhere"):
                response = c.get(path)
                assert response.status_code == 401, path
                assert response.headers["www-authenticate"] == "Bearer"
            assert c.post("/rank", json={"customer_id": "C1"}).status_code == 401
            assert c.post("/rank", json={"customer_id": "C1"}, headers=bearer("nbk_guess")).status_code == 401
            assert c.get("/health").status_code == 200

    def test_a_key_lacking_the_routes_scope_is_403(self, served, customers: list[str]) -> None:  # noqa: ANN001
        url, keys, _, _ = served
        with httpx.Client(base_url=url) as c:
            batch = {"customer_ids": customers[:2]}
            refused = c.post("/rank/batch", json=batch, headers=bearer(keys["ranker"]))
            assert refused.status_code == 403 and "'batch'" in refused.json()["detail"]
            assert c.get("/metrics", headers=bearer(keys["ranker"])).status_code == 403
            assert (
                c.post("/rank", json={"customer_id": customers[0]}, headers=bearer(keys["ops"])).status_code
                == 403
            )
            assert (
                c.post("/rank/batch", json=batch, headers={"X-API-Key": keys["batcher"]}).status_code == 200
            )
            ranked = c.post("/rank", json={"customer_id": customers[0]}, headers=bearer(keys["ranker"]))
            assert ranked.status_code == 200
            assert c.get("/openapi.json", headers=bearer(keys["ranker"])).status_code == 200

    def test_a_key_over_its_rate_is_429_with_retry_after(self, served, customers: list[str]) -> None:  # noqa: ANN001
        url, keys, _, _ = served
        with httpx.Client(base_url=url) as c:
            codes = [
                c.post("/rank", json={"customer_id": customers[0]}, headers=bearer(keys["slow"]))
                for _ in range(3)
            ]
            assert [r.status_code for r in codes] == [200, 200, 429]
            assert codes[2].headers["retry-after"] == "1"
            # another key is not slowed by it
            ok = c.post("/rank", json={"customer_id": customers[0]}, headers=bearer(keys["ranker"]))
            assert ok.status_code == 200
            time.sleep(1.05)
            again = c.post("/rank", json={"customer_id": customers[0]}, headers=bearer(keys["slow"]))
            assert again.status_code == 200


class TestMetricsAndLogs:
    def test_metrics_parse_and_move_under_load(self, served, customers: list[str]) -> None:  # noqa: ANN001
        url, keys, _, _ = served
        with httpx.Client(base_url=url, headers=bearer(keys["ranker"])) as c:
            before = c.get("/metrics", headers=bearer(keys["ops"]))
            assert before.status_code == 200 and before.headers["content-type"].startswith("text/plain")
            for customer in customers[:40]:
                assert c.post("/rank", json={"customer_id": customer, "k": 3}).status_code == 200
            assert c.post("/rank", json={"customer_id": "NOBODY"}).status_code == 404
            nobody = {"X-API-Key": "not-a-key"}  # a plain client: the one above sends the ranker's key
            assert httpx.post(f"{url}/rank", json={"customer_id": "C1"}, headers=nobody).status_code == 401
            assert httpx.get(f"{url}/nowhere", headers=nobody).status_code == 401
            slow = [
                c.post("/rank", json={"customer_id": customers[0]}, headers=bearer(keys["slow"]))
                for _ in range(3)
            ]
            assert slow[-1].status_code == 429
            after = c.get("/metrics", headers=bearer(keys["ops"])).text
        slow_ok = sum(r.status_code == 200 for r in slow)
        assert requests_of(after, "/rank", "200") - requests_of(before.text, "/rank", "200") == 40 + slow_ok
        assert requests_of(after, "/rank", "404") - requests_of(before.text, "/rank", "404") == 1
        assert requests_of(after, "/rank", "401") >= 1 and requests_of(after, "unmatched", "401") >= 1
        got = samples(after)
        latency = [k for k in got if k[0] == "nextbest_http_request_duration_seconds_count"]
        assert any(("route", "/rank") in labels for _, labels in latency)
        assert got[("nextbest_online_read_duration_seconds_count", ())] >= 41
        assert got[("nextbest_candidates_per_request_count", ())] >= 40
        assert got[("nextbest_candidates_per_request_sum", ())] > 0
        assert [k for k in got if k[0] == "nextbest_model_info" and got[k] == 1]
        ages = {
            dict(k[1])["view"]: v for k, v in got.items() if k[0] == "nextbest_feature_snapshot_age_seconds"
        }
        assert set(ages) == {"customer_monthly", "product_monthly", "customer_product_monthly"}
        assert all(v > 0 for v in ages.values())
        assert got[("nextbest_rate_limited_total", (("key_id", "slow"),))] >= 1

    def test_one_json_line_per_request_with_the_key_id_and_a_hashed_customer(
        self,
        served,
        customers: list[str],  # noqa: ANN001
    ) -> None:
        url, keys, lines, _ = served
        with httpx.Client(base_url=url) as c:
            mine = c.post(
                "/rank",
                json={"customer_id": customers[1], "k": 2},
                headers={**bearer(keys["ranker"]), "X-Request-ID": "trace-42"},
            )
            insane = c.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})
        assert mine.headers["x-request-id"] == "trace-42"
        generated = insane.headers["x-request-id"]
        assert generated != "bad id\twith spaces" and len(generated) == 32
        time.sleep(0.2)  # the writer thread
        line = next(x for x in lines.lines if x["request_id"] == "trace-42")
        assert line["key_id"] == "ranker" and line["route"] == "/rank" and line["status"] == 200
        assert line["latency_ms"] > 0 and line["model_version"] and line["snapshot"]
        assert line["customers"] != [customers[1]] and len(line["customers"][0]) == 16
        text = json.dumps(lines.lines)
        assert keys["ranker"] not in text and customers[1] not in text and "probability" not in text
        assert any(x["request_id"] == generated and x["key_id"] is None for x in lines.lines)


def test_open_routes_by_setting_one_line_per_request_omitted_customers_and_logged_scores(
    deployment: Settings, customers: list[str], keys: tuple[Path, dict[str, str]]
) -> None:
    """``open_routes`` opens /ready and the docs (the rest stays behind a key); every request, refused or
    not, is exactly one line; ``log_customer=omit`` drops the customer ids, ``log_scores`` adds the offers."""
    serving = ServingSettings(
        online_store="sqlite",
        api_keys_file=keys[0],
        open_routes=("/health", "/ready", "/docs", "/openapi.json"),
        log_customer="omit",
        log_scores=True,
    )
    lines = Lines()
    logging.getLogger(LOGGER_NAME).addHandler(lines)
    try:
        with ServerThread(create_app(deployment, serving)) as server, httpx.Client(base_url=server.url) as c:
            ranker = bearer(keys[1]["ranker"])
            rank = {"customer_id": customers[2], "k": 2}
            calls = {
                "once-ready": ("GET", "/ready", None, {}),
                "once-docs": ("GET", "/docs", None, {}),
                "once-metrics": ("GET", "/metrics", None, {}),
                "once-products": ("GET", "/products", None, {}),
                "once-forbidden": ("GET", "/metrics", None, ranker),
                "once-rank": ("POST", "/rank", rank, ranker),
            }
            sent = {
                request_id: c.request(
                    method, path, json=body, headers={**headers, "X-Request-ID": request_id}
                )
                for request_id, (method, path, body, headers) in calls.items()
            }
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not set(sent) <= {x["request_id"] for x in lines.lines}:
                time.sleep(0.05)
            time.sleep(0.2)  # a second line would come in the same or the next write
    finally:
        logging.getLogger(LOGGER_NAME).removeHandler(lines)
    statuses = {request_id: r.status_code for request_id, r in sent.items()}
    assert statuses == {
        "once-ready": 200,
        "once-docs": 200,
        "once-metrics": 401,
        "once-products": 401,
        "once-forbidden": 403,
        "once-rank": 200,
    }
    assert all(r.headers["x-request-id"] == request_id for request_id, r in sent.items())
    mine = [x for x in lines.lines if x["request_id"] in sent]
    assert sorted(x["request_id"] for x in mine) == sorted(sent)  # one line each
    assert {x["request_id"]: x["status"] for x in mine} == statuses
    assert {x["request_id"]: x["key_id"] for x in mine}["once-forbidden"] == "ranker"
    ranked = next(x for x in mine if x["request_id"] == "once-rank")
    assert "customers" not in ranked and customers[2] not in json.dumps(mine)
    answer = sent["once-rank"].json()["products"]
    assert ranked["offers"] == [[[p["product_id"], p["probability"], p["score"]] for p in answer]]


def test_store_timeouts_and_an_open_breaker_are_counted_on_metrics(
    deployment: Settings, customers: list[str]
) -> None:
    """A redis that never answers (a real socket): the first reads time out, then the breaker opens;
    ``/metrics`` counts both kinds and times every read."""
    hole = BlackHole()
    settings = Settings(
        home=deployment.home, online=OnlineStoreSettings(kind="redis", redis_url=f"127.0.0.1:{hole.port}")
    )
    serving = ServingSettings(
        online_store="redis",
        read_timeout_ms=100,
        breaker_failures=2,
        breaker_cooldown_s=30,
        ready_refresh_s=60,
    )
    try:
        with ServerThread(create_app(settings, serving)) as server, httpx.Client(base_url=server.url) as c:
            before = c.get("/metrics").text  # no key configured: every route is open
            codes = [c.post("/rank", json={"customer_id": customers[0]}).status_code for _ in range(5)]
            text = c.get("/metrics").text
    finally:
        hole.close()
    assert codes == [503] * 5
    # deltas: in prometheus' multiprocess mode (decided once per process, e.g. by an earlier test of the
    # suite) the values of every app this process built live in the same files
    start, end = samples(before), samples(text)

    def moved(name: str, labels: tuple[tuple[str, str], ...] = ()) -> float:
        return end.get((name, labels), 0.0) - start.get((name, labels), 0.0)

    timeouts = moved("nextbest_online_store_errors_total", (("kind", "timeout"),))
    refused = moved("nextbest_online_store_errors_total", (("kind", "circuit_open"),))
    assert timeouts >= 1 and refused >= 1 and timeouts + refused == 5  # one failed read per request
    assert moved("nextbest_online_read_duration_seconds_count") == 5
    assert moved("nextbest_online_read_duration_seconds_sum") >= timeouts * 0.1
    assert requests_of(text, "/rank", "503") - requests_of(before, "/rank", "503") == 5


def test_the_online_decisions_log_replays_to_the_same_ranking(
    served,
    deployment: Settings,
    customers: list[str],
    keys: tuple[Path, dict[str, str]],  # noqa: ANN001
) -> None:
    url, made, _, decisions = served
    with httpx.Client(base_url=url) as c:
        for customer in customers[:5]:
            c.post("/rank", json={"customer_id": customer, "k": 3}, headers=bearer(made["ranker"]))
        c.post("/rank/batch", json={"customer_ids": customers[5:9], "k": 2}, headers=bearer(made["batcher"]))
        candidates = latest_candidates(deployment)
        counts = candidates.groupby("customer_id").size()
        chosen = str(counts[counts >= 4].index.sort_values()[-1])
        named = sorted(candidates.loc[candidates["customer_id"] == chosen, "product_id"])[-3:]
        restricted = {"customer_id": chosen, "k": 2, "product_ids": named}  # the last 3 of its candidates
        assert c.post("/rank", json=restricted, headers=bearer(made["ranker"])).status_code == 200
    expected = set(customers[:9]) | {chosen}
    deadline = time.monotonic() + 20
    logged = pd.DataFrame({"customer_id": []})
    # flushed by time (1 s), off the request path, in as many files as it takes
    while time.monotonic() < deadline:
        if list(decisions.glob("decisions-*.parquet")):
            logged = read_decisions(decisions)
            if expected <= set(logged["customer_id"]):
                break
        time.sleep(0.2)
    assert expected <= set(logged["customer_id"])
    assert logged.loc[logged["customer_id"] == chosen, "restricted"].all()
    assert {"ranker", "batcher"} <= set(logged["key_id"])
    assert logged["request_id"].notna().all() and logged["model_version"].nunique() == 1
    report = replay(deployment, decisions)
    assert report.ok and report.decisions >= 10, report.differing
    # a forged decision is caught
    forged = logged[logged["customer_id"] == customers[0]].copy()
    forged["rank"] = forged["rank"].iloc[::-1].to_numpy()
    forged_file = decisions.parent / "forged.parquet"
    forged.to_parquet(forged_file)
    assert not replay(deployment, forged_file).ok


def test_score_batch_decisions_replay_to_the_same_ranking(deployment: Settings, tmp_path: Path) -> None:
    snapshot = latest_candidates(deployment)["event_timestamp"].max() - timedelta(days=1)
    out = tmp_path / "batch.parquet"
    score_batch(snapshot.date(), out, settings=deployment, progress=False)
    settings = deployment.model_copy(
        update={"serving": deployment.serving.model_copy(update={"decisions_log_dir": tmp_path / "log"})}
    )
    logged = log_batch_decisions(settings, out)
    frame = read_decisions(logged)
    assert len(frame) == len(pd.read_parquet(out)) and set(frame["source"]) == {"batch"}
    report = replay(settings, logged)
    assert report.ok and report.decisions == frame["customer_id"].nunique(), report.differing


def _env(deployment: Settings, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "NEXTBEST_HOME": str(deployment.home),
        "NEXTBEST_SERVING_ONLINE_STORE": "sqlite",
        "PYTHONPATH": str(PROJECT_ROOT),
        **extra,
    }


def test_serve_refuses_a_public_interface_without_keys(
    deployment: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``nextbest serve --host 0.0.0.0`` without any key stops before loading anything, in one line."""
    from nextbest.cli import main

    monkeypatch.setenv("NEXTBEST_HOME", str(deployment.home))
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--host", "0.0.0.0", "--port", str(free_port())])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "refusing to serve 0.0.0.0 without API keys" in err and "--allow-unauthenticated" in err


def test_serve_starts_on_a_public_interface_with_the_override(deployment: Settings) -> None:
    """``nextbest serve --host 0.0.0.0 --allow-unauthenticated`` without keys serves, every route open."""
    port = free_port()
    cmd = [sys.executable, "-m", "nextbest.cli", "serve", "--host", "0.0.0.0", "--port", str(port)]
    cmd += ["--workers", "1", "--allow-unauthenticated"]
    env = _env(deployment, NEXTBEST_SERVING_ACCESS_LOG="false")
    env.pop("NEXTBEST_API_KEYS", None)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, timeout_s=STARTUP_S)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            assert c.get("/health").status_code == 200
            assert c.get("/ready").status_code in (200, 503)  # not 401: no key is asked for
            assert c.get("/metrics").status_code == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert "refusing" not in err


def test_two_workers_share_their_metrics(deployment: Settings, customers: list[str], tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    key = add_key(path, "both", ["rank", "admin"], rate_per_s=0)
    assert load_keyring(deployment, ServingSettings(api_keys_file=path)) != KeyRing([])
    port = free_port()
    shared = tmp_path / "prometheus"
    shared.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()  # a process that has exited: its file is a previous run's, cleared at start
    previous = shared / f"counter_{gone.pid}.db"
    previous.write_bytes(b"a previous run's file")
    env = _env(
        deployment,
        NEXTBEST_API_KEYS=path.read_text(),
        NEXTBEST_SERVING_ACCESS_LOG="false",
        PROMETHEUS_MULTIPROC_DIR=str(shared),
    )
    code = f"from nextbest.serving.cli import serve; serve('127.0.0.1', {port}, workers=2)"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, timeout_s=STARTUP_S)
        url = f"http://127.0.0.1:{port}"
        n = 60
        with httpx.Client(base_url=url, headers=bearer(key), timeout=30) as c:
            deadline = time.monotonic() + STARTUP_S
            while c.get("/health").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            for i in range(n):  # a new connection each: both workers answer
                with httpx.Client(base_url=url, headers=bearer(key), timeout=30) as one:
                    assert (
                        one.post("/rank", json={"customer_id": customers[i % len(customers)]}).status_code
                        == 200
                    )
            text = c.get("/metrics").text
        assert requests_of(text, "/rank", "200") == n
        got = samples(text)
        assert got[("nextbest_online_read_duration_seconds_count", ())] >= n
        workers = {dict(k[1]).get("pid") for k in got if k[0] == "nextbest_model_info"}
        assert len(workers) == 2 and not previous.exists()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
