"""Benchmark the Feast feature store: PIT retrieval vs DuckDB, materialization vs the old layout, latency.

Prints figures and ratios. Small defaults finish in a few minutes on 2 cores:

    PYTHONPATH=. python benchmarks/bench_feature_store.py
    PYTHONPATH=. python benchmarks/bench_feature_store.py --entity-rows 100000,1000000 \
        --mat-customers 10000,100000 --skip peer
    PYTHONPATH=. python benchmarks/bench_feature_store.py --skip historical,peer,latency \
        --mat-customers 10000,100000 --engines duckdb spark

Sections:
1. point-in-time retrieval of the ranker_v1 service: ours (Feast through
   ``nextbest.features.retrieval.historical_features``: one Feast PIT call per join-key group on the DISTINCT
   (keys, ts) rows, packed lists unpacked) vs a direct DuckDB query over the same parquet marts (one
   ASOF join per plain view; the packed view ASOF-joined on the customer, unnested and joined on the
   product), for N entity rows (= candidate rows sampled from fct_candidates of a dbt build of the
   synthetic bank). Outputs verified equal after ``normalise``; rows/s, seconds, peak RSS, the ratio,
   and how many entity rows Feast was actually sent.
2. materialization keys/s into sqlite and redis of marts shaped like the real ones (the manifest of the
   dbt build, random values; the packed view with ``candidates_per_customer`` aligned list elements) at
   C customers x 3 snapshots, with the online store size; with ``--engines duckdb spark`` the same
   materialization with ``NEXTBEST_ENGINE=spark`` (Feast's Spark offline store; its Spark batch engine
   for redis, its local engine for sqlite), with its time ratio to the DuckDB stack's; then the PEER: the
   previous layout, one online key per customer x candidate (a view keyed by [customer, product] over the
   same values exploded),
   and the ratios old/new (skip it with ``--skip peer``: ~9 min at 100k customers in sqlite).
3. online fetch latency p50/p99 for one customer + all its candidates:
   ``nextbest.features.online.online_rows``
   (sqlite, redis) and the same two reads over HTTP against ``feast serve`` on 127.0.0.1 (started here,
   bounded loop, then stopped).
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
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from nextbest.columns import CUSTOMER_ID, EVENT_TIMESTAMP, PRODUCT_ID
from nextbest.features.manifest import FeatureViewSpec, FieldSpec
from nextbest.features.online import customer_read, online_rows
from nextbest.features.packing import PACKED_PRODUCTS
from nextbest.features.retrieval import historical_features, served_views
from nextbest.features.schema import normalise
from nextbest.features.store import (
    apply_definitions,
    get_store,
    load_specs,
    materialize,
    sqlite_path,
)
from nextbest.marts import manifest_path
from nextbest.settings import ENGINES, FEATURE_REPO_DIR, Settings

REDIS_DB = 14
SQL_TYPES = {"Int32": "integer", "Int64": "bigint", "Float64": "double", "Bool": "boolean"}
"""Feast type name -> DuckDB type of a non-string pair feature."""
PEER_VIEW = "customer_product_pairs"
"""The old layout's customer x product view (one online key per customer x candidate)."""


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
    from nextbest.dbt import run_dbt
    from nextbest.ingest.synthetic import generate_synthetic

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
    """About ``n`` (customer, product, event_timestamp) rows of fct_candidates: whole ranking groups
    (customer x snapshot, all its candidates, as training and batch scoring ask), drawn at random with
    replacement, the last group cut at ``n`` rows."""
    con = duckdb.connect()
    cands = con.execute(
        "select customer_id, product_id, event_timestamp from read_parquet(?) "
        "order by customer_id, event_timestamp, product_id",
        [str(settings.marts_dir / "fct_candidates.parquet")],
    ).df()
    con.close()
    starts = np.flatnonzero(
        (
            cands["customer_id"].ne(cands["customer_id"].shift())
            | cands["event_timestamp"].ne(cands["event_timestamp"].shift())
        ).to_numpy()
    )
    sizes = np.diff(np.append(starts, len(cands)))
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(starts), int(n / sizes.mean()) + 2)
    idx = np.concatenate([np.arange(starts[g], starts[g] + sizes[g]) for g in picks])
    while len(idx) < n:  # a short draw: add groups until n rows
        g = rng.integers(0, len(starts))
        idx = np.concatenate([idx, np.arange(starts[g], starts[g] + sizes[g])])
    return cands.iloc[idx[:n]].reset_index(drop=True)


def decoded_element(field: FieldSpec, column: str) -> str:
    """SQL decoding one packed list element ``column`` back to the pair model's value and type:
    '' -> null for strings, NaN -> null for numbers (written here,
    independently of nextbest.features.packing)."""
    if field.feast_type == "String":
        return f"nullif({column}, '')"
    sql_type = SQL_TYPES[field.feast_type]
    return f"cast(case when isnan({column}) then null else {column} end as {sql_type})"


def unnest_packed_sql(spec: FeatureViewSpec, rows_sql: str, extra: tuple[str, ...] = ()) -> str:
    """SQL turning packed rows (``rows_sql``: the packed columns + ``extra`` pass-through columns) into
    one row per (customer, candidate product) with the decoded feature values."""
    names = spec.feature_names
    unnests = ", ".join(
        [f"unnest({PACKED_PRODUCTS}) as {PRODUCT_ID}", *[f"unnest({n}) as {n}" for n in names]]
    )
    decoded = ", ".join(decoded_element(f, f.name) + f" as {f.name}" for f in spec.fields)
    passed = ", ".join([CUSTOMER_ID, *extra])
    return f"select {passed}, {PRODUCT_ID}, {decoded} from (select {passed}, {unnests} from ({rows_sql}))"


# --------------------------------------------------------------------------- 1. historical


def duckdb_pit(specs: list[FeatureViewSpec], entity_df: pd.DataFrame) -> pd.DataFrame:
    """The same PIT join as ours, written directly in DuckDB SQL.

    A plain view: one ASOF LEFT JOIN on its keys + the ttl check. The packed view: the distinct
    (customer, ts) of the entity rows ASOF-joined to the packed parquet on the customer (+ ttl), the
    candidate list unnested with the feature lists, then LEFT JOINed on (customer, ts, product): a
    product that is not a candidate, or no valid packed row, gives nulls.
    """
    con = duckdb.connect()
    con.execute("set timezone = 'UTC'")
    ent = entity_df.reset_index(drop=True).assign(__row=np.arange(len(entity_df)))
    con.register("entity", ent)
    selects, joins = ["e.*"], []
    for i, spec in enumerate(specs):
        alias = f"f{i}"
        ttl_s = int(spec.ttl.total_seconds())
        path = str(spec.parquet_path)
        if spec.packed:
            lists = ", ".join([PACKED_PRODUCTS, *spec.feature_names])
            hits = (
                f"select k.{CUSTOMER_ID}, k.{EVENT_TIMESTAMP} as entity_ts, {lists} "
                f"from (select distinct {CUSTOMER_ID}, {EVENT_TIMESTAMP} from entity) k "
                f"asof join (select {CUSTOMER_ID}, {EVENT_TIMESTAMP} as packed_ts, {lists} "
                f"from read_parquet('{path}')) p "
                f"on k.{CUSTOMER_ID} = p.{CUSTOMER_ID} and k.{EVENT_TIMESTAMP} >= p.packed_ts "
                f"where p.packed_ts + to_seconds({ttl_s}) >= k.{EVENT_TIMESTAMP}"
            )
            joins.append(
                f"left join ({unnest_packed_sql(spec, hits, ('entity_ts',))}) {alias} "
                f"on e.{CUSTOMER_ID} = {alias}.{CUSTOMER_ID} and e.{EVENT_TIMESTAMP} = {alias}.entity_ts "
                f"and e.{PRODUCT_ID} = {alias}.{PRODUCT_ID}"
            )
            selects += [f"{alias}.{f.name}" for f in spec.fields]
            continue
        keys = " and ".join(f"e.{k} = {alias}.{k}" for k in spec.join_keys)
        joins.append(
            f"asof left join read_parquet('{path}') {alias} "
            f"on {keys} and e.{EVENT_TIMESTAMP} >= {alias}.{EVENT_TIMESTAMP}"
        )
        valid = f"{alias}.{EVENT_TIMESTAMP} + to_seconds({ttl_s}) >= e.{EVENT_TIMESTAMP}"
        selects += [f"case when {valid} then {alias}.{f.name} end as {f.name}" for f in spec.fields]
    sql = f"select {', '.join(selects)} from entity e {' '.join(joins)} order by e.__row"
    out = con.execute(sql).df().drop(columns="__row")
    con.close()
    return out


def feast_entity_rows(store: Any, entity_df: pd.DataFrame) -> dict[tuple[str, ...], int]:
    """Join keys -> entity rows ours sends to Feast for them: the distinct (keys, event_timestamp)."""
    groups = dict.fromkeys(v.join_keys for v in served_views(store))
    return {keys: len(entity_df[[*keys, EVENT_TIMESTAMP]].drop_duplicates()) for keys in groups}


def bench_historical(settings: Settings, sizes: list[int]) -> None:
    print("\n== 1. point-in-time retrieval (ranker_v1, all views; entity rows = candidate rows) ==")
    specs = load_specs(settings)
    store = get_store(settings, "sqlite")
    features = [f.name for s in specs for f in s.fields]
    historical_features(store, entity_rows(settings, 100, seed=1))  # warm-up: registry, imports
    for n in sizes:
        ent = entity_rows(settings, n)
        sent = feast_entity_rows(store, ent)
        ours, o_s, o_mib = timed(lambda ent=ent: historical_features(store, ent))
        duck, d_s, d_mib = timed(lambda ent=ent: duckdb_pit(specs, ent))
        a = normalise(ours, specs)[features].reset_index(drop=True)
        b = normalise(duck, specs)[features].reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b)
        detail = " + ".join(f"{m:,} ({', '.join(k)}, ts)" for k, m in sent.items())
        print(f"{n:>10,} entity rows; Feast was sent {sum(sent.values()):,} entity rows = {detail}")
        print(
            f"{'':>10} ours (Feast via nextbest.features.retrieval.historical_features) "
            f"{n / o_s:>10,.0f} rows/s "
            f"({o_s:7.2f} s, +{o_mib:6.0f} MiB RSS)"
        )
        print(
            f"{'':>10} direct DuckDB (asof + unnest of the packed view)        {n / d_s:>10,.0f} rows/s "
            f"({d_s:7.2f} s, +{d_mib:6.0f} MiB RSS)"
        )
        print(f"{'':>10} ours/duckdb time x{o_s / d_s:.1f}; outputs equal after normalise")
        del ours, duck, a, b


# --------------------------------------------------------------------------- 2. materialization


def _random_values(field: FieldSpec, m: int, rng: np.random.Generator, packed: bool) -> np.ndarray:
    """``m`` random values of ``field``'s type; packed: the transport encoding (doubles with ~5% NaN,
    strings with ~5% '')."""
    if field.feast_type == "String":
        values = rng.choice(["a", "b", "c"], m).astype(object)
        if packed:
            values[rng.random(m) < 0.05] = ""
        return values
    if field.feast_type in ("Int32", "Int64"):
        values = rng.integers(0, 100, m)
    elif field.feast_type == "Bool":
        values = rng.random(m) < 0.5
    else:
        values = rng.random(m)
    if not packed:
        return values.astype({"Int32": "int32", "Int64": "int64"}.get(field.feast_type, values.dtype))
    out = values.astype(np.float64)
    out[rng.random(m) < 0.05] = np.nan
    return out


def _timestamps(t: pd.Timestamp, m: int) -> pa.Array:
    return pa.array(np.full(m, t.to_datetime64()).astype("datetime64[us]"))


def _one_chunk(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``pa.array`` may return a ChunkedArray for large inputs; ``ListArray.from_arrays`` needs one array."""
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def packed_table(
    spec: FeatureViewSpec,
    cust_ids: np.ndarray,
    prod_ids: np.ndarray,
    picks: np.ndarray,
    ts: pd.DatetimeIndex,
    rng: np.random.Generator,
) -> pa.Table:
    """The packed mart: per customer x snapshot, ``candidate_product_ids`` = ``prod_ids[picks[c]]``
    (sorted) and one aligned list per feature (random values in the transport encoding)."""
    customers, k = picks.shape
    offsets = pa.array(np.arange(customers + 1, dtype=np.int32) * k)
    listed = pa.ListArray.from_arrays(offsets, _one_chunk(pa.array(prod_ids[picks.ravel()].astype(object))))
    tables = []
    for t in ts:
        columns = {
            CUSTOMER_ID: pa.array(cust_ids),
            EVENT_TIMESTAMP: _timestamps(t, customers),
            PACKED_PRODUCTS: listed,
        }
        for f in spec.fields:
            values = _one_chunk(pa.array(_random_values(f, customers * k, rng, packed=True)))
            columns[f.name] = pa.ListArray.from_arrays(offsets, values)
        tables.append(pa.table(columns))
    return pa.concat_tables(tables)


def write_scaled_marts(
    settings: Settings,
    specs: list[FeatureViewSpec],
    customers: int,
    products: int = 24,
    candidates_per_customer: int = 20,
    snapshots: int = 3,
    seed: int = 0,
) -> dict[str, int]:
    """Marts with the real schemas and random values; returns the online keys per view.

    A packed spec gets the packed shape: per customer x snapshot, ``candidates_per_customer`` sorted
    products (the same per customer across snapshots) and aligned feature lists of that length.
    """
    rng = np.random.default_rng(seed)
    settings.marts_dir.mkdir(parents=True, exist_ok=True)
    ts = pd.date_range("2024-01-01", periods=snapshots, freq="MS")
    cust_ids = np.array([f"C{i:07d}" for i in range(customers)])
    prod_ids = np.array([f"P{j:02d}" for j in range(products)])
    keys: dict[str, int] = {}
    for spec in specs:
        if spec.packed:
            k = min(candidates_per_customer, products)
            picks = np.sort(np.argsort(rng.random((customers, products)), axis=1)[:, :k], axis=1)
            pq.write_table(packed_table(spec, cust_ids, prod_ids, picks, ts, rng), spec.parquet_path)
            keys[spec.view] = customers
            continue
        if spec.join_keys == (CUSTOMER_ID,):
            base = pd.DataFrame({CUSTOMER_ID: cust_ids})
        elif spec.join_keys == (PRODUCT_ID,):
            base = pd.DataFrame({PRODUCT_ID: prod_ids})
        else:
            raise ValueError(f"view {spec.view}: unexpected join keys {spec.join_keys}")
        keys[spec.view] = len(base)
        frames = []
        for t in ts:
            df = base.copy()
            df[EVENT_TIMESTAMP] = t
            for f in spec.fields:
                df[f.name] = _random_values(f, len(df), rng, packed=False)
            frames.append(df)
        # timestamps in microseconds, as the dbt marts (Spark cannot read nanoseconds)
        frame = pd.concat(frames, ignore_index=True)
        frame.to_parquet(spec.parquet_path, index=False, coerce_timestamps="us")
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


def store_size_mib(settings: Settings, kind: str, redis_before: int) -> float:
    """Online store size: the sqlite file, or redis ``used_memory`` above ``redis_before`` (MiB)."""
    if kind == "sqlite":
        return sqlite_path(settings).stat().st_size / 2**20
    return (redis_client().info("memory")["used_memory"] - redis_before) / 2**20


@dataclass(frozen=True)
class MatResult:
    """One full materialization: online keys per view, seconds (total and per view), RSS, store size."""

    keys: dict[str, int]
    seconds: float
    view_seconds: dict[str, float]
    rss_mib: float
    store_mib: float

    @property
    def total_keys(self) -> int:
        return sum(self.keys.values())

    def line(self) -> str:
        per_view = "  ".join(f"{v} {self.keys[v] / s:,.0f}/s" for v, s in self.view_seconds.items() if s > 0)
        keys, secs, store = self.total_keys, self.seconds, self.store_mib
        return (
            f"{keys:>10,} keys in {secs:7.1f} s = {keys / secs:>8,.0f} keys/s, store {store:7.1f} MiB "
            f"({store * 2**20 / keys:5.0f} B/key), +{self.rss_mib:5.0f} MiB RSS | {per_view}"
        )


def run_materialize(settings: Settings, kind: str, keys: dict[str, int]) -> MatResult:
    """A full materialization of every registered view into ``kind`` (redis db REDIS_DB flushed before
    and after), measured."""
    before = 0
    if kind == "redis":
        redis_client().flushdb()
        before = redis_client().info("memory")["used_memory"]
    with quiet_feast():
        runs, secs, mib = timed(lambda: materialize(settings, kind, progress=False, full=True))
    size = store_size_mib(settings, kind, before)
    if kind == "redis":
        redis_client().flushdb()
    return MatResult(keys, secs, {r.view: r.seconds for r in runs}, mib, size)


def write_exploded(packed: FeatureViewSpec, path: Path) -> int:
    """The packed mart's values exploded to one row per (customer, candidate, snapshot) with the pair
    model's types (the previous layout's parquet); returns the rows written."""
    lists = ", ".join([PACKED_PRODUCTS, *packed.feature_names])
    rows_sql = f"select {CUSTOMER_ID}, {EVENT_TIMESTAMP}, {lists} from read_parquet('{packed.parquet_path}')"
    con = duckdb.connect()
    try:
        exploded = unnest_packed_sql(packed, rows_sql, (EVENT_TIMESTAMP,))
        con.execute(f"copy ({exploded}) to '{path}' (format parquet)")
        return int(con.execute("select count(*) from read_parquet(?)", [str(path)]).fetchone()[0])
    finally:
        con.close()


def peer_objects(specs: list[FeatureViewSpec], exploded: Path) -> list[Any]:
    """The previous layout's Feast objects: the same plain views, and instead of the packed view a view
    keyed by [customer, product] over ``exploded`` (one online key per customer x candidate)."""
    from feast import FeatureView, Field, FileSource
    from feast.types import String

    from nextbest.features.definitions import FEAST_TYPES, build_entities, build_source, build_view

    entities = build_entities()
    plain = [s for s in specs if not s.packed]
    sources = [build_source(s) for s in plain]
    views = [build_view(s, entities, src) for s, src in zip(plain, sources, strict=True)]
    packed = next(s for s in specs if s.packed)
    source = FileSource(name=f"{PEER_VIEW}_source", path=str(exploded), timestamp_field=EVENT_TIMESTAMP)
    schema = [Field(name=CUSTOMER_ID, dtype=String), Field(name=PRODUCT_ID, dtype=String)]
    schema += [Field(name=f.name, dtype=FEAST_TYPES[f.feast_type]) for f in packed.fields]
    pairs = FeatureView(
        name=PEER_VIEW,
        entities=[entities["customer"], entities["product"]],
        ttl=packed.ttl,
        schema=schema,
        source=source,
        online=True,
    )
    return [*entities.values(), *sources, source, *views, pairs]


def bench_materialize(
    built: Settings,
    work: Path,
    sizes: list[int],
    with_redis: bool,
    with_peer: bool,
    candidates_per_customer: int = 20,
    engines: tuple[str, ...] = ("duckdb",),
) -> None:
    print(
        f"\n== 2. materialization (full backfill, 3 snapshots, 24 products, {candidates_per_customer} "
        "candidates per customer) =="
    )
    kinds = ["sqlite", *(["redis"] if with_redis else [])]
    for customers in sizes:
        home = work / f"mat_{customers}"
        shutil.rmtree(home, ignore_errors=True)
        settings = Settings(home=home)
        manifest_path(settings).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(manifest_path(built), manifest_path(settings))
        specs = load_specs(settings)
        keys = write_scaled_marts(settings, specs, customers, candidates_per_customer=candidates_per_customer)
        packed = next(s for s in specs if s.packed)
        if with_peer:
            peer = Settings(home=work / f"peer_{customers}")
            shutil.rmtree(peer.home, ignore_errors=True)
            peer.marts_dir.mkdir(parents=True)
            exploded = peer.marts_dir / f"{PEER_VIEW}.parquet"
            rows = write_exploded(packed, exploded)
            peer_keys = {k: v for k, v in keys.items() if k != packed.view}
            peer_keys[PEER_VIEW] = rows // 3
            objects = peer_objects(specs, exploded)
        for kind in kinds:
            apply_definitions(settings, kind)
            new = run_materialize(settings, kind, keys)
            print(f"{customers:>9,} customers {kind:6s} new: 1 key per customer   {new.line()}")
            for engine in engines:
                if engine == "duckdb":  # the line above: Feast's local engine over the DuckDB store
                    continue
                on_engine = Settings(home=home, engine=engine)
                apply_definitions(on_engine, kind)
                other = run_materialize(on_engine, kind, keys)
                apply_definitions(settings, kind)
                print(
                    f"{'':>26} {engine} stack:             {other.line()}\n{'':>26} {engine}/duckdb: "
                    f"time x{other.seconds / new.seconds:.2f} (RSS: this process only, not the JVM)"
                )
            if not with_peer:
                continue
            get_store(peer, kind).apply(objects)
            old = run_materialize(peer, kind, peer_keys)
            print(f"{'':>26} old: 1 key per candidate  {old.line()}")
            pair_s, packed_s = old.view_seconds[PEER_VIEW], new.view_seconds[packed.view]
            print(
                f"{'':>26} old/new: time x{old.seconds / new.seconds:.1f}, store size "
                f"x{old.store_mib / new.store_mib:.1f}, keys x{old.total_keys / new.total_keys:.1f}; "
                f"the pair data alone: {peer_keys[PEER_VIEW]:,} keys in {pair_s:.1f} s vs "
                f"{keys[packed.view]:,} packed keys in {packed_s:.1f} s (x{pair_s / packed_s:.1f})"
            )


# --------------------------------------------------------------------------- 3. online latency


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sdk_latency(settings: Settings, kind: str, customer: str, n: int) -> tuple[list[float], int]:
    """Seconds per ``online_rows(store, customer, None)`` (customer + all its candidates) over ``n``
    calls after a warm-up, and the candidates returned."""
    store = get_store(settings, kind)
    rows = online_rows(store, customer, None)  # warm-up: registry load, connections
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        online_rows(store, customer, None)
        samples.append(time.perf_counter() - t0)
    return samples, len(rows.columns[PRODUCT_ID])


def customer_read_latency(settings: Settings, kind: str, customer: str, n: int) -> tuple[list[float], int]:
    """Seconds per ``customer_read`` (the customer's views incl. the packed candidate lists: the one read
    a request makes when the Scorer's product cache is warm), and the candidates listed."""
    store = get_store(settings, kind)
    views = served_views(store)
    row = customer_read(store, views, customer)  # warm-up
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        customer_read(store, views, customer)
        samples.append(time.perf_counter() - t0)
    return samples, len(row[PACKED_PRODUCTS][0])


@contextmanager
def feast_serve(settings: Settings):
    """``feast serve`` (sqlite online store of ``settings``) on a free 127.0.0.1 port; yields its URL."""
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
    try:
        deadline = time.time() + 90
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                pass
            if time.time() > deadline or proc.poll() is not None:
                err = proc.stderr.read().decode()[-2000:] if proc.poll() is not None else ""
                raise RuntimeError(f"feast serve did not listen on port {port}: {err}")
            time.sleep(0.3)
        yield f"http://127.0.0.1:{port}/get-online-features"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def http_two_reads(client: Any, url: str, customer: str, refs: tuple[list[str], list[str]]) -> list[str]:
    """The same two reads as ours over HTTP: the customer-keyed views for the customer, then the
    product-keyed views for the candidates listed in the first answer; returns those candidates."""
    first = client.post(url, json={"features": refs[0], "entities": {CUSTOMER_ID: [customer]}})
    first.raise_for_status()
    body = first.json()
    names = body["metadata"]["feature_names"]
    listed = body["results"][names.index(PACKED_PRODUCTS)]["values"][0] or []
    second = client.post(url, json={"features": refs[1], "entities": {PRODUCT_ID: listed}})
    second.raise_for_status()
    second.json()
    return listed


def http_latency(settings: Settings, customer: str, n: int) -> tuple[list[float], int]:
    """Seconds per pair of reads (``http_two_reads``) against ``feast serve`` over ``n`` iterations, and
    the candidates read."""
    import httpx

    views = served_views(get_store(settings, "sqlite"))
    customer_refs = [r for v in views if v.join_keys == (CUSTOMER_ID,) for r in v.refs]
    product_refs = [r for v in views if v.join_keys == (PRODUCT_ID,) for r in v.refs]
    others = [v.name for v in views if v.join_keys not in ((CUSTOMER_ID,), (PRODUCT_ID,))]
    if others:
        raise RuntimeError(f"views {others} are keyed neither by customer nor by product")
    refs = (customer_refs, product_refs)
    with feast_serve(settings) as url, httpx.Client(timeout=10) as client:
        deadline = time.time() + 60
        while True:  # the port may open before the app is ready
            try:
                listed = http_two_reads(client, url, customer, refs)
                break
            except httpx.HTTPError:
                if time.time() > deadline:
                    raise
                time.sleep(0.3)
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            http_two_reads(client, url, customer, refs)
            samples.append(time.perf_counter() - t0)
    return samples, len(listed)


def bench_latency(settings: Settings, n: int, with_redis: bool) -> None:
    print("\n== 3. online fetch: one customer + all its candidates, all ranker_v1 features (2 reads) ==")
    con = duckdb.connect()
    cands = con.execute(
        "select customer_id, count(*) as n from read_parquet(?) "
        "where event_timestamp = (select max(event_timestamp) from read_parquet(?)) "
        "group by customer_id order by n desc, customer_id limit 1",
        [str(settings.marts_dir / "fct_candidates.parquet")] * 2,
    ).fetchone()
    con.close()
    customer, expected = str(cands[0]), int(cands[1])
    print(f"customer {customer} with {expected} candidates in fct_candidates at the latest snapshot")

    def show(label: str, result: tuple[list[float], int], note: str = "") -> None:
        samples, got = result
        if got != expected:
            raise RuntimeError(f"{label}: read {got} candidates, expected {expected}")
        print(f"{label:<44} {percentiles(samples)}{note}")

    show("ours online_rows(customer, None)  sqlite", sdk_latency(settings, "sqlite", customer, n))
    show("ours customer_read only           sqlite", customer_read_latency(settings, "sqlite", customer, n))
    if with_redis:
        redis_client().flushdb()
        with quiet_feast():
            materialize(settings, "redis", progress=False, full=True)
        show("ours online_rows(customer, None)  redis", sdk_latency(settings, "redis", customer, n))
        show("ours customer_read only           redis", customer_read_latency(settings, "redis", customer, n))
        redis_client().flushdb()
    show("feast serve HTTP, same 2 reads     sqlite", http_latency(settings, customer, n), "  (1 worker)")


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
    p.add_argument("--candidates", type=int, default=20, help="candidates per customer in section 2")
    p.add_argument("--requests", type=int, default=200, help="online requests per client")
    p.add_argument(
        "--engines",
        nargs="+",
        choices=ENGINES,
        default=("duckdb",),
        help="section 2 also materializes with each other engine's Feast stack (spark: the Spark offline "
        "store, and for redis Feast's Spark batch engine), printing its time against the DuckDB one's",
    )
    p.add_argument(
        "--skip",
        default="",
        help="comma list of sections to skip: historical,materialize,peer,latency (peer: the old-layout "
        "materialization of section 2)",
    )
    args = p.parse_args(argv)
    # Feast's DuckDB offline store (through ibis) calls a DuckDB API deprecated in DuckDB 2.0.
    warnings.filterwarnings("ignore", message=".*fetch_arrow_table", category=DeprecationWarning)
    skip = set(filter(None, args.skip.split(",")))
    unknown = skip - {"historical", "materialize", "peer", "latency"}
    if unknown:
        p.error(f"unknown section(s) to skip: {sorted(unknown)}")
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
        bench_materialize(
            built,
            args.work,
            args.mat_customers,
            with_redis,
            "peer" not in skip,
            args.candidates,
            tuple(args.engines),
        )
    if "latency" not in skip:
        bench_latency(built, args.requests, with_redis)


if __name__ == "__main__":
    main()
