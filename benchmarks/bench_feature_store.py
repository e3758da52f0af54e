"""Benchmark the Feast feature store: PIT retrieval vs a DuckDB ASOF join, materialization, online latency.

Prints figures and ratios. Small defaults finish in a few minutes on 2 cores:

    PYTHONPATH=. python benchmarks/bench_feature_store.py
    PYTHONPATH=. python benchmarks/bench_feature_store.py --entity-rows 100000,1000000 \
        --mat-customers 10000,100000

Sections:
1. get_historical_features rows/s and peak RSS for N entity rows (sampled from fct_candidates of a dbt
   build of the synthetic bank), side by side with one DuckDB ASOF join over the same parquet marts
   (outputs verified equal after ``normalise``), and the ratio.
2. materialization keys/s into sqlite and redis for marts shaped like the real ones (the manifest of the
   dbt build, random values) at C customers x 3 snapshots, with the online store size.
3. online fetch latency p50/p99 for one customer + all its candidates: SDK (sqlite, redis) and HTTP via
   ``feast serve`` on 127.0.0.1 (started here, bounded loop, then stopped).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import psutil

from features.manifest import EVENT_TIMESTAMP, FeatureViewSpec
from features.schema import normalise
from features.store import (
    apply_definitions,
    get_store,
    historical_features,
    load_specs,
    manifest_path,
    materialize,
    online_features,
    sqlite_path,
)
from nextbest.settings import FEATURE_REPO_DIR, Settings

REDIS_DB = 14


# --------------------------------------------------------------------------- measuring


class PeakRss:
    """Samples this process's RSS every 10 ms in a thread; ``peak_mib`` = peak above the start."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self._stop = threading.Event()
        self.start_rss = self._proc.memory_info().rss
        self.peak = self.start_rss
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(0.01)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def peak_mib(self) -> float:
        return (self.peak - self.start_rss) / 2**20


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, seconds, peak RSS increase in MiB) of ``fn()``."""
    with PeakRss() as mem:
        t0 = time.perf_counter()
        out = fn()
        secs = time.perf_counter() - t0
    return out, secs, mem.peak_mib


def percentiles(samples_s: list[float]) -> str:
    ms = np.array(samples_s) * 1000
    return f"p50 {np.percentile(ms, 50):7.2f} ms  p99 {np.percentile(ms, 99):7.2f} ms  (n={len(ms)})"


@contextmanager
def quiet_feast():
    """Silence Feast's progress prints."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        yield


# --------------------------------------------------------------------------- data


def ensure_built(home: Path, customers: int, months: int) -> Settings:
    """A dbt build of the synthetic bank under ``home`` (reused when the marts already exist)."""
    from ingest.synthetic import generate_synthetic
    from nextbest.dbt import run_dbt

    settings = Settings(home=home)
    if manifest_path(settings).exists() and (settings.marts_dir / "fct_candidates.parquet").exists():
        print(f"reusing the dbt build in {home}")
        return settings
    t0 = time.perf_counter()
    generate_synthetic(settings.raw_dir, customers=customers, months=months, seed=5)
    meta = json.loads((settings.raw_dir / "dataset.json").read_text())
    dbt_vars = {k: meta[k] for k in ("observed_until", "burn_in_months") if meta.get(k) is not None}
    t1 = time.perf_counter()
    run_dbt(["build"], settings, dbt_vars, quiet=True)
    print(
        f"synthetic {customers} customers x {months} months: generate {t1 - t0:.1f} s, dbt build "
        f"{time.perf_counter() - t1:.1f} s"
    )
    return settings


def entity_rows(settings: Settings, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` (customer, product, event_timestamp) rows sampled with replacement from fct_candidates."""
    con = duckdb.connect()
    cands = con.execute(
        "select customer_id, product_id, event_timestamp from read_parquet(?)",
        [str(settings.marts_dir / "fct_candidates.parquet")],
    ).df()
    con.close()
    idx = np.random.default_rng(seed).integers(0, len(cands), n)
    return cands.iloc[idx].reset_index(drop=True)


# --------------------------------------------------------------------------- 1. historical


def duckdb_asof(specs: list[FeatureViewSpec], entity_df: pd.DataFrame) -> pd.DataFrame:
    """The same PIT join as Feast, written directly: one ASOF LEFT JOIN per view + the ttl check."""
    con = duckdb.connect()
    con.execute("set timezone = 'UTC'")
    ent = entity_df.reset_index(drop=True).assign(__row=np.arange(len(entity_df)))
    con.register("entity", ent)
    selects, joins = ["e.*"], []
    for i, spec in enumerate(specs):
        alias = f"f{i}"
        keys = " and ".join(f"e.{k} = {alias}.{k}" for k in spec.join_keys)
        joins.append(
            f"asof left join read_parquet('{spec.parquet_path}') {alias} "
            f"on {keys} and e.{EVENT_TIMESTAMP} >= {alias}.{EVENT_TIMESTAMP}"
        )
        ttl_s = int(spec.ttl.total_seconds())
        valid = f"{alias}.{EVENT_TIMESTAMP} + to_seconds({ttl_s}) >= e.{EVENT_TIMESTAMP}"
        selects += [f"case when {valid} then {alias}.{f.name} end as {f.name}" for f in spec.fields]
    sql = f"select {', '.join(selects)} from entity e {' '.join(joins)} order by e.__row"
    out = con.execute(sql).df().drop(columns="__row")
    con.close()
    return out


def bench_historical(settings: Settings, sizes: list[int]) -> None:
    print("\n== 1. point-in-time retrieval (ranker_v1, all views) ==")
    specs = load_specs(settings)
    store = get_store(settings, "sqlite")
    features = [f.name for s in specs for f in s.fields]
    for n in sizes:
        ent = entity_rows(settings, n)
        feast_out, f_s, f_mib = timed(lambda ent=ent: historical_features(store, ent))
        duck_out, d_s, d_mib = timed(lambda ent=ent: duckdb_asof(specs, ent))
        a = normalise(feast_out, specs)[features].reset_index(drop=True)
        b = normalise(duck_out, specs)[features].reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b)
        print(
            f"{n:>9,} rows  feast {n / f_s:>10,.0f} rows/s ({f_s:6.1f} s, +{f_mib:6.0f} MiB)  "
            f"duckdb asof {n / d_s:>10,.0f} rows/s ({d_s:6.2f} s, +{d_mib:6.0f} MiB)  "
            f"feast/duckdb time x{f_s / d_s:5.1f}  outputs equal"
        )
        del feast_out, duck_out, a, b


# --------------------------------------------------------------------------- 2. materialization


def write_scaled_marts(
    settings: Settings,
    specs: list[FeatureViewSpec],
    customers: int,
    products: int = 24,
    candidates_per_customer: int = 20,
    snapshots: int = 3,
    seed: int = 0,
) -> dict[str, int]:
    """Marts with the real schemas and random values; returns the online keys per view."""
    rng = np.random.default_rng(seed)
    settings.marts_dir.mkdir(parents=True, exist_ok=True)
    ts = pd.date_range("2024-01-01", periods=snapshots, freq="MS")
    cust_ids = np.array([f"C{i:07d}" for i in range(customers)])
    prod_ids = np.array([f"P{j:02d}" for j in range(products)])
    keys: dict[str, int] = {}
    for spec in specs:
        if spec.join_keys == ("customer_id",):
            base = pd.DataFrame({"customer_id": cust_ids})
        elif spec.join_keys == ("product_id",):
            base = pd.DataFrame({"product_id": prod_ids})
        else:
            k = min(candidates_per_customer, products)
            picks = np.argsort(rng.random((customers, products)), axis=1)[:, :k]
            base = pd.DataFrame(
                {"customer_id": np.repeat(cust_ids, k), "product_id": prod_ids[picks.ravel()]}
            )
        keys[spec.view] = len(base)
        frames = []
        for t in ts:
            df = base.copy()
            df[EVENT_TIMESTAMP] = t
            m = len(df)
            for f in spec.fields:
                if f.feast_type == "String":
                    df[f.name] = rng.choice(["a", "b", "c"], m)
                elif f.feast_type in ("Int32", "Int64"):
                    df[f.name] = rng.integers(0, 100, m).astype(
                        "int32" if f.feast_type == "Int32" else "int64"
                    )
                elif f.feast_type == "Bool":
                    df[f.name] = rng.random(m) < 0.5
                else:
                    df[f.name] = rng.random(m)
            frames.append(df)
        pd.concat(frames, ignore_index=True).to_parquet(spec.parquet_path, index=False)
    return keys


def redis_client():
    import redis

    return redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)


def redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


def bench_materialize(
    built: Settings, work: Path, sizes: list[int], with_redis: bool
) -> dict[tuple[int, str], float]:
    print("\n== 2. materialization (full backfill, 3 snapshots, 24 products, 20 candidates per customer) ==")
    seconds: dict[tuple[int, str], float] = {}
    for customers in sizes:
        home = work / f"mat_{customers}"
        shutil.rmtree(home, ignore_errors=True)
        settings = Settings(home=home)
        manifest_path(settings).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(manifest_path(built), manifest_path(settings))
        specs = load_specs(settings)
        keys = write_scaled_marts(settings, specs, customers)
        kinds = ["sqlite", *(["redis"] if with_redis else [])]
        for kind in kinds:
            if kind == "redis":
                redis_client().flushdb()
                before = redis_client().info("memory")["used_memory"]
            apply_definitions(settings, kind)
            with quiet_feast():
                runs, secs, mib = timed(
                    lambda kind=kind, settings=settings: materialize(settings, kind, False)
                )
            per_view = "  ".join(f"{r.view} {keys[r.view] / r.seconds:,.0f}/s" for r in runs)
            total = sum(keys.values())
            if kind == "sqlite":
                size = sqlite_path(settings).stat().st_size / 2**20
            else:
                size = (redis_client().info("memory")["used_memory"] - before) / 2**20
            print(
                f"{customers:>8,} customers {kind:6s}: {total:>10,} keys in {secs:7.1f} s = "
                f"{total / secs:>8,.0f} keys/s, store {size:7.1f} MiB ({size * 2**20 / total:5.0f} B/key), "
                f"+{mib:5.0f} MiB RSS | {per_view}"
            )
            seconds[(customers, kind)] = secs
            if kind == "redis":
                redis_client().flushdb()
    return seconds


# --------------------------------------------------------------------------- 2b. online key design


def bench_key_split(
    work: Path, sizes: list[int], with_redis: bool, baseline: dict[tuple[int, str], float]
) -> None:
    """The proposed split: pair features carried as lists on the customer / product rows (keys ~ C + P)."""
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Array, Float64, Int32, String

    print("\n== 2b. online key design: customer x product view replaced by list features on customer rows ==")
    rng = np.random.default_rng(1)
    ts = pd.date_range("2024-01-01", periods=3, freq="MS")
    for customers in sizes:
        home = work / f"split_{customers}"
        shutil.rmtree(home, ignore_errors=True)
        settings = Settings(home=home)
        settings.marts_dir.mkdir(parents=True)
        frames = []
        for t in ts:
            held = rng.poisson(0.3, customers)
            df = pd.DataFrame({"customer_id": [f"C{i:07d}" for i in range(customers)], EVENT_TIMESTAMP: t})
            for j in range(19):  # the 19 scalar customer features
                df[f"x{j}"] = (
                    rng.random(customers) if j % 2 else rng.integers(0, 99, customers).astype("int32")
                )
            df["previously_held_product_ids"] = [[f"P{k:02d}" for k in range(h)] for h in held]
            df["months_since_last_held_by_product"] = [list(range(h)) for h in held]
            df["sum_spend_by_category_last_12_months"] = list(np.round(rng.random((customers, 8)) * 100, 2))
            frames.append(df)
        cust_path = settings.marts_dir / "customer_split.parquet"
        pd.concat(frames, ignore_index=True).to_parquet(cust_path, index=False)
        prod = pd.DataFrame(
            [(f"P{j:02d}", t, *rng.random(8), list(rng.random(6))) for t in ts for j in range(24)],
            columns=["product_id", EVENT_TIMESTAMP, *[f"y{k}" for k in range(8)], "share_owning_by_segment"],
        )
        prod_path = settings.marts_dir / "product_split.parquet"
        prod.to_parquet(prod_path, index=False)
        customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)
        product = Entity(name="product", join_keys=["product_id"], value_type=ValueType.STRING)
        cust_schema = [Field(name=f"x{j}", dtype=Float64 if j % 2 else Int32) for j in range(19)] + [
            Field(name="previously_held_product_ids", dtype=Array(String)),
            Field(name="months_since_last_held_by_product", dtype=Array(Int32)),
            Field(name="sum_spend_by_category_last_12_months", dtype=Array(Float64)),
        ]
        prod_schema = [Field(name=f"y{k}", dtype=Float64) for k in range(8)]
        prod_schema.append(Field(name="share_owning_by_segment", dtype=Array(Float64)))
        views = [
            FeatureView(
                name="customer_split",
                entities=[customer],
                ttl=pd.Timedelta(days=40),
                schema=cust_schema,
                source=FileSource(
                    name="customer_split_source", path=str(cust_path), timestamp_field=EVENT_TIMESTAMP
                ),
            ),
            FeatureView(
                name="product_split",
                entities=[product],
                ttl=pd.Timedelta(days=40),
                schema=prod_schema,
                source=FileSource(
                    name="product_split_source", path=str(prod_path), timestamp_field=EVENT_TIMESTAMP
                ),
            ),
        ]
        keys = customers + 24
        for kind in ["sqlite", *(["redis"] if with_redis else [])]:
            if kind == "redis":
                redis_client().flushdb()
                before = redis_client().info("memory")["used_memory"]
            store = get_store(settings, kind)
            store.apply([customer, product, *views])
            with quiet_feast():
                _, secs, mib = timed(
                    lambda store=store: store.materialize(ts[0].to_pydatetime(), ts[-1].to_pydatetime())
                )
            if kind == "sqlite":
                size = sqlite_path(settings).stat().st_size / 2**20
            else:
                size = (redis_client().info("memory")["used_memory"] - before) / 2**20
                redis_client().flushdb()
            base = baseline.get((customers, kind))
            vs = f", baseline (3 views) {base:.1f} s -> x{base / secs:.1f} faster" if base else ""
            print(
                f"{customers:>8,} customers {kind:6s}: {keys:>10,} keys in {secs:7.1f} s, "
                f"store {size:7.1f} MiB, "
                f"+{mib:5.0f} MiB RSS{vs}"
            )


# --------------------------------------------------------------------------- 3. online latency


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sdk_latency(settings: Settings, kind: str, customer: str, products: list[str], n: int) -> list[float]:
    store = get_store(settings, kind)
    online_features(store, customer, products)  # warm-up: registry load, connections
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        online_features(store, customer, products)
        samples.append(time.perf_counter() - t0)
    return samples


def http_latency(settings: Settings, customer: str, products: list[str], n: int) -> list[float]:
    import httpx

    port = free_port()
    env = {
        **os.environ,
        "NEXTBEST_HOME": str(settings.home.resolve()),
        "PYTHONPATH": str(FEATURE_REPO_DIR.parent),
    }
    feast = str(Path(sys.executable).parent / "feast")
    proc = subprocess.Popen(
        [feast, "serve", "-h", "127.0.0.1", "-p", str(port), "--no-access-log"],
        cwd=FEATURE_REPO_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    body = {
        "feature_service": "ranker_v1",
        "entities": {"customer_id": [customer] * len(products), "product_id": products},
    }
    url = f"http://127.0.0.1:{port}/get-online-features"
    try:
        with httpx.Client(timeout=10) as client:
            deadline = time.time() + 60
            while True:
                try:
                    if client.post(url, json=body).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.time() > deadline or proc.poll() is not None:
                    err = proc.stderr.read().decode()[-2000:] if proc.poll() is not None else ""
                    raise RuntimeError(f"feast serve did not answer on port {port}: {err}")
                time.sleep(0.3)
            samples = []
            for _ in range(n):
                t0 = time.perf_counter()
                resp = client.post(url, json=body)
                samples.append(time.perf_counter() - t0)
                resp.raise_for_status()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return samples


def bench_latency(settings: Settings, n: int, with_redis: bool) -> None:
    print("\n== 3. online fetch: one customer + all its candidates, all ranker_v1 features ==")
    con = duckdb.connect()
    cands = con.execute(
        "select customer_id, list(product_id order by product_id) as products from read_parquet(?) "
        "where event_timestamp = (select max(event_timestamp) from read_parquet(?)) "
        "group by customer_id order by len(products) desc, customer_id limit 1",
        [str(settings.marts_dir / "fct_candidates.parquet")] * 2,
    ).fetchone()
    con.close()
    customer, products = cands[0], list(cands[1])
    print(f"customer {customer} with {len(products)} candidates")
    print(f"SDK sqlite   {percentiles(sdk_latency(settings, 'sqlite', customer, products, n))}")
    if with_redis:
        redis_client().flushdb()
        with quiet_feast():
            materialize(settings, "redis", progress=False, full=True)
        print(f"SDK redis    {percentiles(sdk_latency(settings, 'redis', customer, products, n))}")
        redis_client().flushdb()
    print(
        f"HTTP sqlite  {percentiles(http_latency(settings, customer, products, n))}  (feast serve, 1 worker)"
    )


# --------------------------------------------------------------------------- main


def parse_sizes(text: str) -> list[int]:
    return [int(x.replace("_", "")) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("/tmp/nextbest_bench_feast"), help="scratch directory")
    p.add_argument("--customers", type=int, default=5000, help="synthetic customers of the dbt build")
    p.add_argument("--months", type=int, default=12, help="synthetic months of the dbt build")
    p.add_argument("--entity-rows", type=parse_sizes, default=[100_000], help="e.g. 100000,1000000")
    p.add_argument("--mat-customers", type=parse_sizes, default=[10_000], help="e.g. 10000,100000")
    p.add_argument("--requests", type=int, default=200, help="online requests per client")
    p.add_argument(
        "--skip", default="", help="comma list of sections to skip: historical,materialize,latency"
    )
    args = p.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    with_redis = redis_up()
    if with_redis:
        os.environ["NEXTBEST_REDIS_URL"] = f"127.0.0.1:6379,db={REDIS_DB}"
    else:
        print("redis is not listening on 127.0.0.1:6379: redis figures skipped")
    args.work.mkdir(parents=True, exist_ok=True)
    built = ensure_built(args.work / f"built_{args.customers}x{args.months}", args.customers, args.months)
    apply_definitions(built, "sqlite")
    with quiet_feast():
        runs, secs, _ = timed(lambda: materialize(built, "sqlite", progress=False))
    print(f"materialize the dbt build into sqlite: {secs:.1f} s ({', '.join(r.mode for r in runs)})")
    if "historical" not in skip:
        bench_historical(built, args.entity_rows)
    if "materialize" not in skip:
        baseline = bench_materialize(built, args.work, args.mat_customers, with_redis)
        bench_key_split(args.work, args.mat_customers, with_redis, baseline)
    if "latency" not in skip:
        bench_latency(built, args.requests, with_redis)


if __name__ == "__main__":
    main()
