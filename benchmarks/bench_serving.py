"""Serving latency and batch throughput, measured next to Feast's own feature server in the same run.

For one customer with all candidate products, prints p50/p99 (ms) of
  - in-process ``Scorer.rank``: total and each part (fetch, filter, predict, calibrate);
  - HTTP ``POST /rank`` of our API (uvicorn subprocess on 127.0.0.1);
  - HTTP ``POST /get-online-features`` of ``feast serve`` (subprocess, same registry and online store)
    answering only the feature fetch, with the same two reads the Scorer does, timed together: the
    customer's views (customer features + the packed candidate lists) for the customer, then the product
    view for the candidate products listed in the first answer;
for the sqlite and the redis online store (redis: a throw-away redis-server on a free port), the ratio
of our /rank p99 to feast serve's fetch-only p99, and the throughput (customers/s) of ``score_batch``.
Targets (issue 5, ~24 candidates): in-process p99 <= 3 ms, HTTP p99 <= 6 ms, ratio <= 1.0.

Closed-loop load (issue 12; sqlite store): ``nextbest serve`` with 1 and 2 worker processes, 1 / 8 / 50
clients on loopback (``benchmarks/_load.py``: each client sends its next POST /rank as soon as the
previous answer arrived, over customers in turn) for ``--load-seconds`` each: requests/s, p50/p99 and
errors, and the rate as a ratio to the single-thread in-process ``Scorer.rank`` rate measured in the same
run (over the same customers). Targets: 50 clients >= 1,000 requests/s with p99 <= 50 ms and 0 errors,
ratio >= 1.5; 1 client p99 <= 3 ms; in-process p99 <= 1.5 ms. Issue 18: two servers, with the operating
features off and on (API key + rate limit, metrics, JSON access log), both up at once; each client count
runs in turns (off, on, on, off; half of ``--load-seconds`` each, so load from elsewhere hits both
alike), and ``on/off`` is the ratio of their request rates. ``ops_overhead`` measures the same in process.

    python benchmarks/bench_serving.py                      # build a small bank in a temp dir
    python benchmarks/bench_serving.py --home /tmp/srv/home # reuse a built deployment (with a bundle)
    python benchmarks/bench_serving.py --requests 2000 --no-redis
    python benchmarks/bench_serving.py --home /tmp/srv/home --load-only --workers 1,2 --clients 1,8,50
    python benchmarks/bench_serving.py --home /tmp/srv/home --peer-root /work/main  # this vs main, in process
    python benchmarks/bench_serving.py --retrieval-home /path/to/cj_home  # retrieve 100 then rank vs all
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._load import LoadResult, closed_loop  # noqa: E402
from nextbest.features.packing import PACKED_PRODUCTS  # noqa: E402
from nextbest.features.store import apply_definitions, materialize  # noqa: E402
from nextbest.serving.auth import add_key  # noqa: E402
from nextbest.serving.batch import score_batch  # noqa: E402
from nextbest.serving.scorer import Scorer  # noqa: E402
from nextbest.settings import FEATURE_REPO_DIR, ServingSettings, Settings  # noqa: E402
from tests.integration.serving_fixtures import (  # noqa: E402
    RedisServer,
    build_deployment,
    free_port,
    latest_candidates,
    wait_for_port,
)

PARTS = ("fetch", "filter", "predict", "calibrate", "total")


def pct(values: list[float]) -> tuple[float, float]:
    """(p50, p99) of ``values``."""
    arr = np.asarray(values, dtype=float)
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def in_process(scorer: Scorer, customer: str, n: int) -> dict[str, tuple[float, float]]:
    """p50/p99 (ms) of each part of ``Scorer.rank`` over ``n`` calls (after a warm-up)."""
    for _ in range(20):
        scorer.rank(customer, k=100)
    timings = [scorer.rank(customer, k=100).timings_ms for _ in range(n)]
    return {part: pct([t[part] for t in timings]) for part in PARTS}


def http_loop(url: str, body: dict, n: int) -> tuple[float, float]:
    """p50/p99 (ms) of ``n`` sequential POSTs of ``body`` on one keep-alive connection."""
    with httpx.Client(timeout=30.0) as client:
        for _ in range(20):
            client.post(url, json=body).raise_for_status()
        times = []
        for _ in range(n):
            start = time.perf_counter()
            client.post(url, json=body).raise_for_status()
            times.append((time.perf_counter() - start) * 1e3)
    return pct(times)


def feast_two_reads(client: httpx.Client, url: str, customer: str, refs: tuple[list[str], list[str]]) -> int:
    """``feast serve``'s fetch of what ``Scorer.fetch`` reads: the customer-keyed views' features for the
    customer, then the product views' features for the candidates listed in the first answer (their
    count is returned)."""
    first = client.post(url, json={"features": refs[0], "entities": {"customer_id": [customer]}})
    first.raise_for_status()
    body = first.json()
    names = body["metadata"]["feature_names"]
    listed = body["results"][names.index(PACKED_PRODUCTS)]["values"][0] or []
    second = client.post(url, json={"features": refs[1], "entities": {"product_id": listed}})
    second.raise_for_status()
    second.json()
    return len(listed)


def feast_loop(url: str, customer: str, refs: tuple[list[str], list[str]], n: int) -> tuple[float, float]:
    """p50/p99 (ms) of ``n`` sequential ``feast_two_reads`` on one keep-alive connection."""
    with httpx.Client(timeout=30.0) as client:
        for _ in range(20):
            feast_two_reads(client, url, customer, refs)
        times = []
        for _ in range(n):
            start = time.perf_counter()
            feast_two_reads(client, url, customer, refs)
            times.append((time.perf_counter() - start) * 1e3)
    return pct(times)


def fetch_refs(scorer: Scorer) -> tuple[list[str], list[str]]:
    """Feast references of the Scorer's two reads: customer-keyed views, then product-keyed views."""
    customer = [r for v in scorer.views if v.join_keys == ("customer_id",) for r in v.refs]
    product = [r for v in scorer.views if v.join_keys == ("product_id",) for r in v.refs]
    others = [v.name for v in scorer.views if v.join_keys not in (("customer_id",), ("product_id",))]
    if others:
        raise RuntimeError(f"views {others} are keyed neither by customer nor by product")
    return customer, product


def start(cmd: list[str], env: dict[str, str], port: int, cwd: Path | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, timeout_s=300)  # a loaded 2-core machine takes minutes to import and load
    except TimeoutError:
        proc.terminate()
        raise
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def feast_repo(tmp: Path, online: str, redis_url: str) -> Path:
    """A copy of feature_repo/ whose feature_store.yaml points at the chosen online store."""
    repo = tmp / f"feature_repo_{online}"
    shutil.copytree(FEATURE_REPO_DIR, repo, dirs_exist_ok=True)
    if online == "redis":
        yaml = (repo / "feature_store.yaml").read_text()
        head = yaml.split("online_store:")[0]
        tail = yaml.split("entity_key_serialization_version")[1]
        online_block = (
            f'online_store:\n  type: redis\n  connection_string: "{redis_url}"\n  skip_dedup: true\n'
        )
        (repo / "feature_store.yaml").write_text(
            head + online_block + "entity_key_serialization_version" + tail
        )
    return repo


def bench_store(settings: Settings, online: str, customer: str, args, tmp: Path) -> dict:
    """In-process, our HTTP and feast serve's HTTP figures for one online store kind."""
    env = {
        **os.environ,
        "NEXTBEST_HOME": str(settings.home),
        "NEXTBEST_SERVING_ONLINE_STORE": online,
        "NEXTBEST_ONLINE_STORE": online,
        "PYTHONPATH": str(ROOT),
    }
    scorer = Scorer(settings, ServingSettings(online_store=online))  # type: ignore[arg-type]
    result: dict = {"in_process": in_process(scorer, customer, args.requests)}
    result["candidates"] = scorer.rank(customer, k=100).n_candidates

    port = free_port()
    ours = start(
        [sys.executable, "-c", f"from nextbest.serving.cli import serve; serve('127.0.0.1', {port})"],
        env,
        port,
    )
    try:
        result["http_rank"] = http_loop(
            f"http://127.0.0.1:{port}/rank", {"customer_id": customer, "k": 100}, args.requests
        )
    finally:
        stop(ours)

    port = free_port()
    repo = feast_repo(tmp, online, os.environ.get("NEXTBEST_REDIS_URL", ""))
    feast_cmd = [str(Path(sys.executable).parent / "feast"), "serve", "-h", "127.0.0.1", "-p", str(port)]
    feast = start([*feast_cmd, "--no-access-log"], env, port, cwd=repo)
    try:
        url = f"http://127.0.0.1:{port}/get-online-features"
        refs = fetch_refs(scorer)
        with httpx.Client(timeout=30.0) as client:
            listed = feast_two_reads(client, url, customer, refs)
        if listed != result["candidates"]:
            raise RuntimeError(f"feast serve listed {listed} candidates, the Scorer {result['candidates']}")
        result["feast_serve"] = feast_loop(url, customer, refs, args.requests)
    finally:
        stop(feast)
    return result


def in_process_rate(scorer: Scorer, customers: list[str], seconds: float) -> tuple[float, float, float]:
    """(customers/s, p50 ms, p99 ms) of single-thread ``Scorer.rank`` calls over ``customers`` in turn
    for ``seconds`` (after a warm-up): the peer of the HTTP load figures."""
    gc.collect()  # not this loop's to pay: what earlier sections left (e.g. ops_overhead's two apps)
    for c in customers[:50]:
        scorer.rank(c)
    times = []
    start = time.perf_counter()
    i = 0
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        scorer.rank(customers[i % len(customers)])
        times.append((time.perf_counter() - t0) * 1e3)
        i += 1
    p50, p99 = pct(times)
    return i / (time.perf_counter() - start), p50, p99


PEER_WORKER = """
import json, sys, time, warnings
warnings.filterwarnings("ignore")
from pathlib import Path
import numpy as np
from nextbest.serving.scorer import Scorer
from nextbest.settings import ServingSettings, Settings
scorer = Scorer(Settings(home=Path(sys.argv[1])), ServingSettings(online_store="sqlite"))
import nextbest
print(json.dumps({"code": str(Path(nextbest.__file__).parent.parent)}), flush=True)
customers = json.loads(Path(sys.argv[2]).read_text())
for c in customers[:200]:
    scorer.rank(c)
i = 0
for line in sys.stdin:  # one block per line: run that many seconds, print the figures
    seconds, times, start, cpu = float(line), [], time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        scorer.rank(customers[i % len(customers)])
        times.append((time.perf_counter() - t0) * 1e3)
        i += 1
    cpu_ms = (time.process_time() - cpu) * 1e3 / len(times)
    print(json.dumps({"times": times, "cpu_ms": cpu_ms}), flush=True)
"""
"""A process holding one ``Scorer`` of the checkout on its PYTHONPATH; each line read is a block of that
many seconds of single-thread ``Scorer.rank`` calls over the customers in turn; it answers the latencies
(ms) and the CPU ms per call."""


def peer_in_process(
    settings: Settings, customers: list[str], peer_root: Path, blocks: int, seconds: float, tmp: Path
) -> None:
    """In-process ``Scorer.rank`` of this checkout against the checkout at ``peer_root`` (e.g. the main
    branch), same deployment and customers: two processes, run in alternating blocks (this, peer, peer,
    this, ...) so load from elsewhere on the machine hits both alike; prints p50/p99 (ms), calls/s, CPU ms
    per call (process time: less sensitive to other load) and the ratios."""
    path = tmp / "peer_customers.json"
    path.write_text(json.dumps(customers))
    procs = {}
    for name, root in (("this", ROOT), ("peer", peer_root.resolve())):
        env = {**os.environ, "PYTHONPATH": str(root), "OMP_WAIT_POLICY": "PASSIVE"}
        procs[name] = subprocess.Popen(
            [sys.executable, "-c", PEER_WORKER, str(settings.home), str(path)],
            env=env,
            cwd=root,  # `python -c` puts the working directory first on sys.path: the checkout's own code
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
    figures: dict[str, dict[str, list[float]]] = {n: {"times": [], "cpu_ms": []} for n in procs}
    try:
        code = {n: json.loads(p.stdout.readline())["code"] for n, p in procs.items()}  # type: ignore[union-attr]
        if code["this"] == code["peer"]:
            raise RuntimeError(f"both processes import nextbest from {code['this']}")
        for block in range(blocks):
            for name in ("this", "peer") if block % 2 == 0 else ("peer", "this"):
                proc = procs[name]
                proc.stdin.write(f"{seconds}\n")  # type: ignore[union-attr]
                proc.stdin.flush()  # type: ignore[union-attr]
                got = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
                figures[name]["times"] += got["times"]
                figures[name]["cpu_ms"].append(got["cpu_ms"])
    finally:
        for proc in procs.values():
            proc.stdin.close()  # type: ignore[union-attr]
            proc.wait(timeout=30)
    print(
        f"\nin-process Scorer.rank, this checkout ({code['this']}) vs {code['peer']} ({blocks} alternating "
        f"blocks of {seconds:.0f} s, {len(customers):,} customers in turn)"
    )
    print(f"{'checkout':<9} {'calls/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'cpu ms/call':>12}")
    out = {}
    for name, fig in figures.items():
        p50, p99 = pct(fig["times"])
        rate = len(fig["times"]) / (blocks * seconds)
        cpu = float(np.median(fig["cpu_ms"]))
        out[name] = (rate, p50, p99, cpu)
        print(f"{name:<9} {rate:>8,.0f} {p50:>8.2f} {p99:>8.2f} {cpu:>12.3f}")
    (r1, a1, b1, c1), (r2, a2, b2, c2) = out["this"], out["peer"]
    print(
        f"{'gain':<9} {r1 / r2:>7.2f}x {a2 / a1:>7.2f}x {b2 / b1:>7.2f}x {c2 / c1:>11.2f}x  "
        "(peer / this; rate: this / peer; > 1: this is faster)"
    )


OPS_MODES = ("off", "on")
"""Load with the operating features off (no key, no metrics, no access log) and on (an API key checked
and rate-limited on every request, metrics, one JSON access-log line per request), side by side."""


def ops_env(mode: str, tmp: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(server environment, request headers) of an ops mode (see ``OPS_MODES``)."""
    if mode == "off":
        return {"NEXTBEST_SERVING_METRICS": "false", "NEXTBEST_SERVING_ACCESS_LOG": "false"}, {}
    path = tmp / "bench_keys.yaml"
    path.unlink(missing_ok=True)
    key = add_key(path, "bench", ["rank"], rate_per_s=1e6)  # checked and counted, never refused
    env = {"NEXTBEST_API_KEYS": path.read_text(), "NEXTBEST_SERVING_ACCESS_LOG": "true"}
    return env, {"Authorization": f"Bearer {key}"}


async def _asgi_call(app: Any, method: str, path: str, body: bytes, headers: list) -> int:
    """One request straight into the ASGI app (no socket, no client library): its status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *headers,
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }
    sent = False
    status = 0

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def ops_overhead(settings: Settings, customers: list[str], tmp: Path, blocks: int, per_block: int) -> None:
    """Per-request cost of the operating features, in process: two apps over the same deployment, ops
    off and on (see ``OPS_MODES``; the access log written to /dev/null), called straight through ASGI in
    alternating blocks of ``per_block`` requests (so load on the machine hits both alike); prints the
    median over blocks of the mean ms per request, for GET /health (no store) and POST /rank."""
    import asyncio

    from nextbest.serving.api import create_app

    path = tmp / "overhead_keys.yaml"
    path.unlink(missing_ok=True)
    key = add_key(path, "bench", ["rank"], rate_per_s=1e6)
    off = ServingSettings(online_store="sqlite", metrics=False, access_log=False)
    on = ServingSettings(online_store="sqlite", api_keys_file=path)
    auth = [(b"authorization", f"Bearer {key}".encode())]
    bodies = [json.dumps({"customer_id": c}).encode() for c in customers]

    async def run() -> dict[tuple[str, str], list[float]]:
        apps = {"off": create_app(settings, off), "on": create_app(settings, on)}
        times: dict[tuple[str, str], list[float]] = {}
        devnull = open(os.devnull, "w")  # noqa: SIM115 - closed below
        async with (
            apps["off"].router.lifespan_context(apps["off"]),
            apps["on"].router.lifespan_context(apps["on"]),
        ):
            for handler in logging.getLogger("nextbest.access").handlers:
                handler.setStream(devnull)  # type: ignore[attr-defined]
            for block in range(blocks + 1):  # block 0 warms up
                for mode in OPS_MODES if block % 2 else OPS_MODES[::-1]:  # each goes first in turn
                    headers = auth if mode == "on" else []
                    for route, method in (("/health", "GET"), ("/rank", "POST")):
                        start = time.perf_counter()
                        for i in range(per_block):
                            body = bodies[i % len(bodies)] if method == "POST" else b""
                            if await _asgi_call(apps[mode], method, route, body, headers) != 200:
                                raise RuntimeError(f"{method} {route} with ops {mode} did not answer 200")
                        ms = (time.perf_counter() - start) / per_block * 1e3
                        if block:
                            times.setdefault((route, mode), []).append(ms)
        devnull.close()
        return times

    times = asyncio.run(run())
    print(
        f"\nops overhead in process (ASGI calls, {blocks} alternating blocks of {per_block} requests; "
        "median over blocks of ms/request)"
    )
    print(f"{'route':<10} {'ops off':>9} {'ops on':>9} {'on - off':>9} {'on/off':>7}")
    for route in ("/health", "/rank"):
        off_ms, on_ms = (float(np.median(times[route, m])) for m in OPS_MODES)
        print(f"{route:<10} {off_ms:>9.4f} {on_ms:>9.4f} {on_ms - off_ms:>9.4f} {on_ms / off_ms:>7.2f}")


def merged(results: list[LoadResult]) -> LoadResult:
    """Several runs' results as one (statuses and latencies pooled, seconds added)."""
    out = LoadResult()
    for r in results:
        out.statuses.update(r.statuses)
        out.errors += r.errors
        out.latencies_ms += r.latencies_ms
        out.seconds += r.seconds
    return out


def load_section(settings: Settings, customers: list[str], args, tmp: Path) -> None:
    """The closed-loop load figures (see the module docstring), printed as a table: each worker count
    and client count with the operating features off and on."""
    scorer = Scorer(settings, ServingSettings(online_store="sqlite"))
    rate, p50, p99 = in_process_rate(scorer, customers, args.load_seconds)
    bodies = [{"customer_id": c} for c in customers]
    rows: list[tuple[int, int, str, LoadResult]] = []
    for workers in [int(w) for w in args.workers.split(",")]:
        servers: dict[str, tuple[subprocess.Popen, int, dict[str, str]]] = {}
        try:
            for mode in OPS_MODES:  # both servers up at once; their runs alternate (off on on off)
                extra, headers = ops_env(mode, tmp)
                port = free_port()
                env = {
                    **os.environ,
                    "NEXTBEST_HOME": str(settings.home),
                    "NEXTBEST_SERVING_ONLINE_STORE": "sqlite",
                    "NEXTBEST_SERVING_WORKERS": str(workers),
                    "PYTHONPATH": str(ROOT),
                    **extra,
                }
                code = f"from nextbest.serving.cli import serve; serve('127.0.0.1', {port})"
                servers[mode] = (start([sys.executable, "-c", code], env, port), port, headers)
            for _, port, headers in servers.values():
                closed_loop(port, "/rank", bodies, 8, 2.0, headers)  # warm-up (every worker)
            for clients in [int(c) for c in args.clients.split(",")]:
                halves: dict[str, list[LoadResult]] = {mode: [] for mode in OPS_MODES}
                for mode in (*OPS_MODES, *OPS_MODES[::-1]):
                    _, port, headers = servers[mode]
                    half = closed_loop(port, "/rank", bodies, clients, args.load_seconds / 2, headers)
                    halves[mode].append(half)
                rows += [(workers, clients, mode, merged(halves[mode])) for mode in OPS_MODES]
        finally:
            for server, _, _ in servers.values():
                stop(server)
    print(
        f"\nclosed-loop load, sqlite store, {len(customers):,} customers in turn, "
        f"{args.load_seconds:.0f} s each; ops off = no key, no metrics, no access log; "
        "on = API key + rate limit + metrics + JSON access log"
    )
    print(
        f"in-process Scorer.rank, 1 thread: {rate:,.0f} customers/s, p50 {p50:.2f} ms, "
        f"p99 {p99:.2f} ms (target p99 <= 1.5)"
    )
    print(
        f"{'workers':>7} {'clients':>7} {'ops':>4} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'non-200':>8} "
        f"{'errors':>7} {'ratio':>6} {'on/off':>7}  targets"
    )
    off_rate = {(w, c): r.rate for w, c, m, r in rows if m == "off"}
    for workers, clients, mode, res in rows:
        bad = res.answered - res.statuses.get(200, 0)
        target = {1: "p99 <= 3 ms", 50: ">= 1000/s, p99 <= 50 ms, 0 errors, ratio >= 1.5"}.get(clients, "")
        versus = f"{res.rate / off_rate[workers, clients]:>7.2f}" if mode == "on" else f"{'':>7}"
        print(
            f"{workers:>7} {clients:>7} {mode:>4} {res.rate:>8,.0f} {res.pct(50):>8.2f} {res.pct(99):>8.2f} "
            f"{bad:>8} {len(res.errors):>7} {res.rate / rate:>6.2f} {versus}  {target}"
        )


def retrieval_section(home: Path, requests: int, top_n: int, epochs: int, tmp: Path) -> None:
    """In-process ``Scorer.rank`` with a retrieval index in the bundle (issue 17) against rank-all, on the
    same built deployment, customers and run (interleaved), and the retrieval stage alone at 2,378 items.

    A two-tower model is fitted on the build's marts; its embedding marts are written into ``home``'s
    build and loaded into Feast (the customer embedding is read online, as in production); the latest
    bundle is copied to ``tmp`` and the index written into the copy. The 2,378-item figure is the
    stage's own cost (``RetrievalIndex.narrow``: a customer's 2,300 candidates -> top-N) over random unit
    item vectors: the ranker's part stays that of N candidates, measured above.
    """
    import pandas as pd

    from nextbest.columns import EVENT_TIMESTAMP
    from nextbest.retrieval.bundle import RetrievalIndex, write_index
    from nextbest.retrieval.data import load_catalogue, load_groups, split_train_test
    from nextbest.retrieval.embeddings import write_embedding_marts
    from nextbest.retrieval.stage import publish_embeddings
    from nextbest.retrieval.train import TrainConfig, fit
    from nextbest.training.artifacts import latest_bundle

    settings = Settings(home=home)
    catalogue = load_catalogue(settings.marts_dir)
    groups = load_groups(settings.marts_dir, settings.raw_dir, catalogue)
    train, _ = split_train_test(groups, settings.build.horizon_months)
    model = fit(train, catalogue, TrainConfig(epochs=epochs))
    latest = groups.subset((groups.keys[EVENT_TIMESTAMP] == groups.keys[EVENT_TIMESTAMP].max()).to_numpy())
    model_id = "bench-serving"
    items = model.item_embeddings()
    vecs = model.customer_embeddings(latest)
    until = pd.Timestamp(model.trained_until)
    write_embedding_marts(settings.marts_dir, catalogue.product_ids, items, until, latest, vecs, model_id)
    publish_embeddings(settings)
    bundle = tmp / "bundle-with-retrieval"
    shutil.copytree(latest_bundle(settings.models_dir), bundle)
    ids = [str(p) for p in catalogue.product_ids]
    write_index(bundle, ids, items, top_n, model_id)
    serving = ServingSettings(online_store="sqlite", model_path=bundle)
    scorers = {
        "rank-all": Scorer(settings, serving.model_copy(update={"retrieval": False})),
        f"retrieve {top_n}, rank": Scorer(settings, serving),
    }
    customers = [str(c) for c in latest.keys["customer_id"]][: max(requests, 1)]
    times: dict[str, list[float]] = {name: [] for name in scorers}
    parts: dict[str, list[dict[str, float]]] = {name: [] for name in scorers}
    candidates: dict[str, list[int]] = {name: [] for name in scorers}
    for scorer in scorers.values():  # warm-up
        for customer in customers[:20]:
            scorer.rank(customer)
    for customer in customers:
        for name, scorer in scorers.items():
            started = time.perf_counter()
            ranking = scorer.rank(customer)
            times[name].append((time.perf_counter() - started) * 1e3)
            parts[name].append(ranking.timings_ms)
            candidates[name].append(ranking.n_candidates)
    print(
        f"\nretrieval in serving (in-process Scorer.rank, sqlite, k=7, {len(customers)} customers, "
        f"{len(ids):,} items, two-tower {epochs} epochs):"
    )
    for name in scorers:
        p50, p99 = pct(times[name])
        ranked = np.mean(candidates[name])
        print(f"   {name:<20} p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   candidates ranked {ranked:.0f}")
        print("   " + " " * 20 + "   ".join(
            f"{part} p50 {pct([t[part] for t in parts[name]])[0]:.2f}" for part in PARTS if part != "total"
        ))
    rng = np.random.default_rng(0)
    items = rng.standard_normal((2_378, 32)).astype(np.float32)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    index = RetrievalIndex(
        product_ids=tuple(f"p{i:04d}" for i in range(len(items))), item_vecs=items, top_n=top_n, model_id="r"
    )
    listed = [index.product_ids[i] for i in np.sort(rng.choice(len(items), 2_300, replace=False))]
    stage = []
    for _ in range(requests + 20):
        started = time.perf_counter()
        index.narrow(listed, items[0])
        stage.append((time.perf_counter() - started) * 1e3)
    p50, p99 = pct(stage[20:])
    print(
        f"   retrieval stage alone, 2,378 items, 2,300 candidates -> {top_n}: "
        f"p50 {p50:.3f} ms   p99 {p99:.3f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, help="a built deployment to reuse (default: build one)")
    parser.add_argument("--customers", type=int, default=1500)
    parser.add_argument("--months", type=int, default=8)
    parser.add_argument("--requests", type=int, default=300, help="timed requests per measurement")
    parser.add_argument("--no-redis", action="store_true")
    parser.add_argument("--load-only", action="store_true", help="only the closed-loop load section")
    parser.add_argument("--no-load", action="store_true", help="skip the closed-loop load section")
    parser.add_argument("--load-seconds", type=float, default=10.0, help="seconds per load measurement")
    parser.add_argument("--workers", default="1,2", help="server worker counts to load, comma-separated")
    parser.add_argument("--clients", default="1,8,50", help="client counts, comma-separated")
    parser.add_argument("--overhead-only", action="store_true", help="only the in-process ops overhead")
    parser.add_argument(
        "--peer-root", type=Path, help="only: in-process Scorer.rank of this checkout vs the one at PATH"
    )
    parser.add_argument("--peer-blocks", type=int, default=8, help="alternating blocks of --peer-root")
    parser.add_argument(
        "--retrieval-home",
        type=Path,
        help="only the retrieval section, on this built deployment (with a bundle and a sqlite store)",
    )
    parser.add_argument("--retrieval-top-n", type=int, default=100, help="candidates kept by retrieval")
    parser.add_argument(
        "--retrieval-epochs", type=int, default=5, help="two-tower epochs (latency does not depend on them)"
    )
    args = parser.parse_args()
    # Feast's DuckDB offline store (through ibis) calls a DuckDB API deprecated in DuckDB 2.0.
    warnings.filterwarnings("ignore", message=".*fetch_arrow_table", category=DeprecationWarning)

    with tempfile.TemporaryDirectory(prefix="nextbest-bench-serving-") as tmp_name:
        tmp = Path(tmp_name)
        if args.retrieval_home:
            top_n, epochs = args.retrieval_top_n, args.retrieval_epochs
            retrieval_section(args.retrieval_home, args.requests, top_n, epochs, tmp)
            return
        if args.home:
            settings = Settings(home=args.home)
        else:
            print(f"building {args.customers:,} customers x {args.months} months ...", flush=True)
            settings = build_deployment(tmp / "home", customers=args.customers, months=args.months)
        candidates = latest_candidates(settings)
        if args.peer_root:
            customers = sorted(candidates["customer_id"].unique())
            peer_in_process(settings, customers, args.peer_root, args.peer_blocks, args.load_seconds / 2, tmp)
            return
        if args.overhead_only:
            ops_overhead(settings, sorted(candidates["customer_id"].unique()), tmp, 10, 300)
            return
        if args.load_only:
            ops_overhead(settings, sorted(candidates["customer_id"].unique()), tmp, 10, 300)
            load_section(settings, sorted(candidates["customer_id"].unique()), args, tmp)
            return
        counts = candidates.groupby("customer_id").size()
        customer = str(counts.idxmax())
        scorer = Scorer(settings, ServingSettings(online_store="sqlite"))
        print(f"customer {customer}: {counts.max()} candidates of {len(scorer.product_ids)} products")

        results = {"sqlite": bench_store(settings, "sqlite", customer, args, tmp)}
        if not args.no_redis and shutil.which("redis-server"):
            redis = RedisServer(free_port())
            redis.start()
            os.environ["NEXTBEST_REDIS_URL"] = redis.url
            settings = Settings(home=settings.home)  # the settings tree reads the redis address now
            try:
                apply_definitions(settings, "redis")
                materialize(settings, "redis", progress=False)
                results["redis"] = bench_store(settings, "redis", customer, args, tmp)
            finally:
                redis.stop()

        snapshot = (candidates["event_timestamp"].max() - np.timedelta64(1, "D")).date()
        n_customers = candidates["customer_id"].nunique()
        start_batch = time.perf_counter()
        rows = score_batch(
            snapshot, tmp / "batch.parquet", chunk_size=5_000, settings=settings, progress=False
        )
        batch_s = time.perf_counter() - start_batch
        report(results, n_customers, rows, batch_s)
        ops_overhead(settings, sorted(candidates["customer_id"].unique()), tmp, 10, 300)
        if not args.no_load:  # inside the with: the deployment lives in tmp
            load_section(settings, sorted(candidates["customer_id"].unique()), args, tmp)


def report(results: dict[str, Any], n_customers: int, rows: int, batch_s: float) -> None:
    """The latency table of each store and the batch scoring rate."""
    print(f"\n{'store':<7} {'measurement':<34} {'p50 ms':>8} {'p99 ms':>8} {'target p99':>11}")
    print("-" * 72)
    for store, res in results.items():
        for part in PARTS:
            target = "3" if part == "total" else ""
            p50, p99 = res["in_process"][part]
            print(f"{store:<7} {'in-process ' + part:<34} {p50:>8.2f} {p99:>8.2f} {target:>11}")
        p50, p99 = res["http_rank"]
        print(f"{store:<7} {'HTTP POST /rank (ours)':<34} {p50:>8.2f} {p99:>8.2f} {'6':>11}")
        p50, p99 = res["feast_serve"]
        print(f"{store:<7} {'HTTP feast serve fetch (2 reads)':<34} {p50:>8.2f} {p99:>8.2f} {'':>11}")
        ratio = res["http_rank"][1] / res["feast_serve"][1]
        print(f"{store:<7} {'ratio p99 ours / feast serve':<34} {'':>8} {ratio:>8.2f} {'<= 1.0':>11}")
    print(
        f"\nscore_batch: {n_customers:,} customers ({rows:,} candidate rows) in {batch_s:.1f} s = "
        f"{n_customers / batch_s:,.0f} customers/s"
    )


if __name__ == "__main__":
    main()
