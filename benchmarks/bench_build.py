"""Ingest + dbt build cost for synthetic banks of growing size and for The Complete Journey.

Prints wall time and peak memory (whole process tree, dbt included) per stage (ingest; dbt build with
its tests, without Feast: see bench_feature_store.py), the growth ratio against the smallest synthetic
size, and one summary line per dataset: ``customers, months, dbt_s, pack_s, total_s, peak_rss_gib``
(pack_s: the packed model's own time in dbt's run_results.json). Per build it also prints the seconds
dbt's nodes ran, summed per kind (models, tests, ...: the work its threads share), the products and
candidate rows (with the candidate retrieval stage's counts when it was on) and the 12 slowest nodes.
Target: 1M customers x 24 months builds in under 10 minutes within 8 GiB on the 2-core machine.
``--cj-grains`` builds The Complete Journey at several product grains in one run: at 2,378 product types
and 92,331 SKUs the retrieval stage bounds the candidates, so the build should not grow with the
catalogue (compare the ``x time vs first`` column).

``--peer-vars NAME=VALUE`` (repeatable) builds each ingest a second time, as a peer in the same run, from a
copy of the dbt project whose var NAME is VALUE (a JSON value), and prints its time and peak memory with
the ratio of the build to it: what the models that var turns off or on cost, on the same data and machine
state (``sequence_start_history_months=0``: the build without the sequence features from recent starts).

``--engines duckdb spark`` builds each ingest on both engines (``NEXTBEST_ENGINE``; Spark ``local[2]``), one
after the other on the same raw files, and prints each build's time, peak memory, seconds per 1,000
customers and its ratio to the DuckDB build of the same dataset measured in the same run.

``--peer`` also runs, on the same build and machine state, the old pair path as a peer: the pair mart
written to parquet (``feat_customer_product_monthly`` was a parquet mart) and packed with DuckDB's
``list()`` of structs (the old ``pack_features``), times both and checks that the old packed file holds
exactly the new one's rows.

    python benchmarks/bench_build.py                                # 10k, 100k, 1M + Complete Journey
    python benchmarks/bench_build.py --sizes 10000 --no-cj          # quick look
    python benchmarks/bench_build.py --sizes --cj-grains product_category product_type product  # 303-92k
    python benchmarks/bench_build.py --sizes 200000 --no-cj --peer  # new pack vs the old path
    python benchmarks/bench_build.py --sizes 10000 100000 --no-cj --engines duckdb spark
    python benchmarks/bench_build.py --sizes 1000000 --no-cj --peer-vars sequence_start_history_months=0
    NEXTBEST_SPARK_DRIVER_MEMORY=10g NEXTBEST_SPARK_SHUFFLE_PARTITIONS=16 \
        python benchmarks/bench_build.py --sizes 1000000 --no-cj --engines spark  # one engine alone
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import Measured, measure  # noqa: E402

NEXTBEST = [sys.executable, "-m", "nextbest.cli"]
DBT_PROJECT = Path(__file__).resolve().parents[1] / "dbt_project"
BUILD_FROM_PROJECT = (
    "import sys; from pathlib import Path; from nextbest.pipeline import build_warehouse;"
    " from nextbest.settings import Settings;"
    " build_warehouse(Settings(), quiet=True, project_dir=Path(sys.argv[1]))"
)
PAIR_MODEL = "feat_customer_product_monthly"
PACKED_MODEL = "feat_customer_product_monthly_packed"
KEYS = ("customer_id", "event_timestamp")


def live_build_dir(home: Path) -> Path:
    """The live build's directory under ``home``."""
    warehouse = home / "warehouse"
    build_id = json.loads((warehouse / "current.json").read_text())["build_id"]
    return warehouse / "builds" / build_id


def run_results(build_dir: Path) -> list[dict]:
    """The node results of dbt's run_results.json of the build in ``build_dir``."""
    return json.loads((build_dir / "dbt_target" / "run_results.json").read_text())["results"]


def slowest_nodes(build_dir: Path, n: int = 8) -> list[tuple[str, float]]:
    """The ``n`` slowest dbt nodes (models and tests) of the build, with their seconds."""
    results = run_results(build_dir)
    timed = sorted(((r["unique_id"], r["execution_time"]) for r in results), key=lambda t: -t[1])
    return timed[:n]


def failed_nodes(home: Path) -> list[str]:
    """``node: message`` of every node that errored or failed in the newest build under ``home`` (a
    failed build is not live, and the temp home goes with the case: say why here)."""
    builds = sorted((home / "warehouse" / "builds").glob("*/dbt_target/run_results.json"))
    if not builds:
        return []
    results = run_results(builds[-1].parents[1])
    return [
        f"{r['unique_id']}: {' '.join(str(r.get('message')).split())[:400]}"
        for r in results
        if r["status"] in ("error", "fail")
    ]


def thread_seconds(build_dir: Path) -> dict[str, float]:
    """Execution seconds summed over dbt's nodes, per kind (model, test, unit_test, ...): the work the
    build's threads share, against which the wall time shows how well it fills them."""
    totals: dict[str, float] = {}
    for r in run_results(build_dir):
        kind = r["unique_id"].split(".")[0]
        totals[kind] = totals.get(kind, 0.0) + r["execution_time"]
    return totals


def model_seconds(build_dir: Path) -> dict[str, float]:
    """Execution seconds per model of the build (dbt's run_results.json)."""
    models = (r for r in run_results(build_dir) if r["unique_id"].startswith("model."))
    return {r["unique_id"].split(".")[-1]: r["execution_time"] for r in models}


def candidate_summary(build_dir: Path) -> str:
    """Products, candidate rows (fct_candidates) and, when the build's candidate retrieval stage was on,
    the eligible candidates it never expanded and the share of adoptions it kept (labelled snapshots)."""
    marts = build_dir / "marts"
    with duckdb.connect() as con:
        products = con.execute(f"select count(*) from '{marts / 'dim_products.parquet'}'").fetchone()[0]
        candidates = con.execute(f"select count(*) from '{marts / 'fct_candidates.parquet'}'").fetchone()[0]
        eligible, kept, adoptions, adoptions_kept = con.execute(
            "select sum(count_candidates_eligible), sum(count_candidates_retrieved), sum(count_adoptions),"
            f" sum(count_adoptions_retrieved) from '{marts / 'fct_candidate_retrieval_recall.parquet'}'"
        ).fetchone()
    text = f"{products:,} products, {candidates:,} candidate rows"
    if eligible:
        text += (
            f"; retrieval stage on: {kept:,} of {eligible:,} eligible at the labelled snapshots,"
            f" {adoptions_kept / adoptions:.1%} of the adoptions kept"
        )
    return text


def old_pack_sql(packed: duckdb.DuckDBPyRelation, pairs_file: str) -> str:
    """The old pack_features: one list() of structs per customer x snapshot, sorted, then one
    list_transform per feature; left-joined to the population (the packed model's own rows)."""
    features = [c for c in packed.columns if c not in (*KEYS, "candidate_product_ids")]
    strings = {c for c, t in zip(packed.columns, packed.types, strict=True) if str(t) == "VARCHAR[]"}

    def element(c: str) -> str:
        if c in strings:
            return f"coalesce(cast({c} as varchar), '')"
        return f"coalesce(cast({c} as double), 'nan'::double)"

    def empty(c: str) -> str:
        return "[]::varchar[]" if c in strings else "[]::double[]"

    struct = ", ".join(["'product_id': product_id", *(f"'{c}': {element(c)}" for c in features)])
    lists = ",\n".join(
        f"coalesce(list_transform(p.elements, lambda e: e.{c}), {empty(c)}) as {c}" for c in features
    )
    return f"""
        with packed as (
            select customer_id, event_timestamp, list_sort(list({{{struct}}})) as elements
            from read_parquet('{pairs_file}') group by customer_id, event_timestamp
        )
        select pop.customer_id, pop.event_timestamp,
            coalesce(list_transform(p.elements, lambda e: e.product_id), []::varchar[])
                as candidate_product_ids,
            {lists}
        from population as pop left join packed as p using (customer_id, event_timestamp)
    """


def old_path_peer(build_dir: Path, out: Path) -> dict[str, float]:
    """Time the old pair path on ``build_dir``'s warehouse: write the pair view to parquet, pack it with
    list(); check the old packed rows equal the new packed file's. Seconds per step."""
    con = duckdb.connect(str(build_dir / "nextbest.duckdb"), read_only=True)
    con.execute(f"set temp_directory = '{out}/tmp'")
    pairs_file, old_file = str(out / "pairs.parquet"), str(out / "packed_old.parquet")
    new_file = str(build_dir / "marts" / f"{PACKED_MODEL}.parquet")
    start = time.perf_counter()
    con.execute(f"copy (select * from {PAIR_MODEL}) to '{pairs_file}' (format parquet, compression zstd)")
    write_s = time.perf_counter() - start
    packed = con.sql(f"select * from read_parquet('{new_file}')")
    con.execute(f"create temp view population as select {', '.join(KEYS)} from read_parquet('{new_file}')")
    start = time.perf_counter()
    old_sql = old_pack_sql(packed, pairs_file)
    con.execute(f"copy ({old_sql}) to '{old_file}' (format parquet, compression zstd)")
    pack_s = time.perf_counter() - start
    old, new = f"read_parquet('{old_file}')", f"read_parquet('{new_file}')"
    differ = con.execute(
        f"select count(*) from ((select * from {old} except all select * from {new})"
        f" union all (select * from {new} except all select * from {old}))"
    ).fetchone()[0]
    return {"old_pair_write_s": write_s, "old_pack_s": pack_s, "rows_differing": float(differ)}


def parse_peer_vars(items: list[str]) -> dict[str, object]:
    """``NAME=VALUE`` pairs (VALUE a JSON value) as dbt var overrides, each NAME a var of the project."""
    known = yaml.safe_load((DBT_PROJECT / "dbt_project.yml").read_text(encoding="utf-8"))["vars"]
    overrides: dict[str, object] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--peer-vars {item!r}: expected NAME=VALUE")
        if name not in known:
            raise SystemExit(f"--peer-vars {item!r}: {name!r} is not a var of dbt_project.yml")
        try:
            overrides[name] = json.loads(value)
        except json.JSONDecodeError:
            raise SystemExit(f"--peer-vars {item!r}: not a JSON value") from None
    return overrides


def peer_project(out: Path, overrides: dict[str, object]) -> Path:
    """A copy of the dbt project under ``out`` whose vars take ``overrides`` (the peer build's project)."""
    project = out / "dbt_project_peer"
    shutil.copytree(DBT_PROJECT, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    path = project / "dbt_project.yml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["vars"].update(overrides)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return project


def peer_build(home: Path, project: Path) -> Measured:
    """Build ``home``'s ingest again from ``project`` (no Feast), measured like ``nextbest build``."""
    env = {**os.environ, "NEXTBEST_HOME": str(home)}
    return measure([sys.executable, "-c", BUILD_FROM_PROJECT, str(project)], env)


def run_case(
    label: str, ingest_args: list[str], home: Path, engines: tuple[str, ...] = ("duckdb",)
) -> dict[str, Measured]:
    """Ingest once, then build on each engine (stage ``build``, or ``build-<engine>`` for several)."""
    env = {**os.environ, "NEXTBEST_HOME": str(home)}
    out = {"ingest": measure([*NEXTBEST, "ingest", *ingest_args], env)}
    if out["ingest"].returncode != 0:
        print(f"{label}: ingest failed (exit {out['ingest'].returncode})")
        return out
    for engine in engines:
        stage = "build" if len(engines) == 1 else f"build-{engine}"
        out[stage] = measure([*NEXTBEST, "build", "--no-feast"], {**env, "NEXTBEST_ENGINE": engine})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--no-cj", action="store_true", help="skip The Complete Journey")
    parser.add_argument(
        "--cj-grains",
        nargs="+",
        default=["product_category"],
        help="Complete Journey product grains to build (product_category, department, product_type, product)",
    )
    parser.add_argument("--oracle", action="store_true", help="also write the oracle (slower)")
    parser.add_argument("--peer", action="store_true", help="also time the old pair path on each build")
    parser.add_argument(
        "--engines", nargs="+", default=["duckdb"], choices=["duckdb", "spark"], help="build on each engine"
    )
    parser.add_argument(
        "--peer-vars",
        nargs="+",
        default=[],
        metavar="NAME=VALUE",
        help="also build each ingest from the project with these dbt vars, as a peer (see above)",
    )
    args = parser.parse_args()
    peer_vars = parse_peer_vars(args.peer_vars)
    if len(args.engines) > 1:
        if peer_vars:
            raise SystemExit("--peer-vars builds on one engine: give --engines one engine with it")
        engines_main(args)
        return

    cases: list[tuple[str, list[str], int | None]] = [
        (
            f"synthetic {n:,} x {args.months}m" + ("" if args.engines == ["duckdb"] else " on spark"),
            [
                "synthetic",
                "--customers",
                str(n),
                "--months",
                str(args.months),
                "--oracle" if args.oracle else "--no-oracle",
            ],
            n,
        )
        for n in args.sizes
    ]
    if not args.no_cj:
        for grain in args.cj_grains:
            cases.append((f"completejourney ({grain})", ["completejourney", "--grain", grain], None))

    header = f"{'dataset':<36} {'stage':<7} {'seconds':>9} {'peak GiB':>9} {'x time vs first':>16}"
    print(header)
    print("-" * len(header))
    first: dict[str, float] = {}
    summaries = []
    for label, ingest_args, customers in cases:
        with tempfile.TemporaryDirectory(prefix="nextbest-bench-") as tmp:
            results = run_case(label, ingest_args, Path(tmp), tuple(args.engines))
            for stage, m in results.items():
                first.setdefault(stage, m.seconds)
                status = "" if m.returncode == 0 else f"  FAILED exit {m.returncode}"
                print(
                    f"{label:<36} {stage:<7} {m.seconds:>9.1f} {m.peak_gib:>9.2f} "
                    f"{m.seconds / first[stage]:>16.1f}{status}",
                    flush=True,
                )
            total = sum(m.seconds for m in results.values())
            print(f"{label:<36} {'total':<7} {total:>9.1f}", flush=True)
            build = results.get("build")
            if build is None or build.returncode != 0:
                for line in failed_nodes(Path(tmp)):
                    print(f"{label:<36}   failed: {line}", flush=True)
                continue
            build_dir = live_build_dir(Path(tmp))
            pack_s = model_seconds(build_dir).get(PACKED_MODEL, float("nan"))
            kinds = sorted(thread_seconds(build_dir).items(), key=lambda t: -t[1])
            print(
                f"{label:<36}   thread-seconds: "
                + ", ".join(f"{kind} {seconds:.1f}" for kind, seconds in kinds)
                + f" (sum {sum(s for _, s in kinds):.1f}; build wall {build.seconds:.1f})",
                flush=True,
            )
            print(f"{label:<36}   candidates: {candidate_summary(build_dir)}", flush=True)
            for node, seconds in slowest_nodes(build_dir, 12):
                print(f"{label:<36}   slowest: {seconds:>7.1f} s  {node}", flush=True)
            peak = max(m.peak_gib for m in results.values())
            months = args.months if customers else "-"
            summaries.append(
                f"{customers or label}, {months}, {build.seconds:.1f}, {pack_s:.1f}, {total:.1f}, {peak:.2f}"
            )
            if args.peer:
                peer = old_path_peer(build_dir, Path(tmp))
                old_s = peer["old_pair_write_s"] + peer["old_pack_s"]
                print(
                    f"{label:<36} old pair path on the same build: pair parquet "
                    f"{peer['old_pair_write_s']:.1f} s + list() pack {peer['old_pack_s']:.1f} s"
                    f" = {old_s:.1f} s"
                    f" vs packed_parquet {pack_s:.1f} s ({old_s / pack_s:.2f}x); "
                    f"packed rows differing: {int(peer['rows_differing'])}",
                    flush=True,
                )
            if peer_vars:
                build_models = model_seconds(build_dir)
                peer_m = peer_build(Path(tmp), peer_project(Path(tmp), peer_vars))
                settings = " ".join(f"{k}={json.dumps(v)}" for k, v in peer_vars.items())
                status = "" if peer_m.returncode == 0 else f"  FAILED exit {peer_m.returncode}"
                print(
                    f"{label:<36} peer build ({settings}): {peer_m.seconds:.1f} s,"
                    f" peak {peer_m.peak_gib:.2f} GiB;"
                    f" build / peer {build.seconds / peer_m.seconds:.2f}x time,"
                    f" {build.peak_gib / peer_m.peak_gib:.2f}x memory{status}",
                    flush=True,
                )
                if peer_m.returncode == 0:
                    peer_models = model_seconds(live_build_dir(Path(tmp)))
                    names = build_models.keys() | peer_models.keys()
                    gaps = {n: build_models.get(n, 0.0) - peer_models.get(n, 0.0) for n in names}
                    for name, gap in sorted(gaps.items(), key=lambda t: -abs(t[1]))[:8]:
                        print(f"{label:<36}   build - peer: {gap:>+7.1f} s  {name}", flush=True)
    print("\ncustomers, months, dbt_s, pack_s, total_s, peak_rss_gib")
    for line in summaries:
        print(line)


def engines_main(args: argparse.Namespace) -> None:
    """Each synthetic size built on every engine of ``args.engines`` from one ingest (see the docstring)."""
    engines = tuple(args.engines)
    header = (
        f"{'dataset':<28} {'stage':<14} {'seconds':>9} {'peak GiB':>9} {'s / 1k customers':>17} "
        f"{'x duckdb':>9}"
    )
    print(header)
    print("-" * len(header))
    summaries = []
    for n in args.sizes:
        label = f"synthetic {n:,} x {args.months}m"
        ingest = ["synthetic", "--customers", str(n), "--months", str(args.months), "--no-oracle"]
        with tempfile.TemporaryDirectory(prefix="nextbest-bench-") as tmp:
            results = run_case(label, ingest, Path(tmp), engines)
            duckdb_s = results["build-duckdb"].seconds if "build-duckdb" in results else float("nan")
            for stage, m in results.items():
                status = "" if m.returncode == 0 else f"  FAILED exit {m.returncode}"
                ratio = m.seconds / duckdb_s if stage.startswith("build") else float("nan")
                print(
                    f"{label:<28} {stage:<14} {m.seconds:>9.1f} {m.peak_gib:>9.2f} "
                    f"{m.seconds / n * 1000:>17.3f} {ratio:>9.2f}{status}",
                    flush=True,
                )
                if stage.startswith("build"):
                    summaries.append(f"{n}, {args.months}, {stage[6:]}, {m.seconds:.1f}, {m.peak_gib:.2f}")
            if any(m.returncode != 0 for m in results.values()):
                for line in failed_nodes(Path(tmp)):
                    print(f"{label:<28}   failed: {line}", flush=True)
    print("\ncustomers, months, engine, build_s, peak_rss_gib")
    for line in summaries:
        print(line)


if __name__ == "__main__":
    main()
