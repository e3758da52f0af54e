"""Two-tower retrieval against popularity retrieval, measured in the same run on the same held-out groups.

For each built dataset (a NEXTBEST_HOME whose live build has the marts; nothing is written into it):
recall@K (K in 10, 50, 100 by default) of the two-tower model and of popularity retrieval on the latest
labelled snapshot, both restricted to each group's candidates, and their ratio; the time to read the
marts, the fit time and the process's peak memory; then the cost of the brute-force vector search
(one customer against the catalogue, and against 10^4 / 10^5 random items) that decides whether an
approximate index would earn its place.

    python benchmarks/bench_retrieval.py --synthetic 5000        # ingest + build a synthetic bank first
    python benchmarks/bench_retrieval.py --home /path/to/cj_home # an existing build (Complete Journey)
    python benchmarks/bench_retrieval.py --home A --home B --epochs 20 --k 10 50 100
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nextbest.retrieval.data import load_catalogue  # noqa: E402
from nextbest.retrieval.evaluate import recall_table  # noqa: E402
from nextbest.retrieval.index import retrieve  # noqa: E402
from nextbest.retrieval.stage import load_split  # noqa: E402
from nextbest.retrieval.train import TrainConfig, fit  # noqa: E402
from nextbest.settings import Settings  # noqa: E402

NEXTBEST = [sys.executable, "-m", "nextbest.cli"]


def build_synthetic(home: Path, customers: int) -> None:
    """Generate, ingest and build (no Feast) a synthetic bank of ``customers`` customers in ``home``."""
    env = {**os.environ, "NEXTBEST_HOME": str(home)}
    for args in (["ingest", "synthetic", "--customers", str(customers)], ["build", "--no-feast"]):
        subprocess.run([*NEXTBEST, *args], env=env, check=True, stdout=subprocess.DEVNULL)


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (GiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def query_micros(items: int, dim: int, k: int, repeats: int = 300, seed: int = 0) -> tuple[float, float]:
    """p50 and p99 (microseconds) of one brute-force top-k query over ``items`` random unit vectors."""
    rng = np.random.default_rng(seed)
    item_vecs = rng.standard_normal((items, dim)).astype(np.float32)
    item_vecs /= np.linalg.norm(item_vecs, axis=1, keepdims=True)
    queries = item_vecs[rng.integers(0, items, size=repeats)]
    times = []
    for q in queries:
        started = time.perf_counter()
        retrieve(q[None, :], item_vecs, min(k, items))
        times.append((time.perf_counter() - started) * 1e6)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def bench_home(label: str, home: Path, config: TrainConfig, ks: tuple[int, ...]) -> None:
    os.environ["NEXTBEST_HOME"] = str(home)
    settings = Settings()
    started = time.perf_counter()
    _, train, test = load_split(settings)
    load_seconds = time.perf_counter() - started
    model = fit(train, load_catalogue(settings.marts_dir), config)
    rows = recall_table(model.customer_embeddings(test), model.item_embeddings(), model.popularity, test, ks)
    print(
        f"\n== {label}: {model.catalogue.size:,} items, {len(train):,} training groups "
        f"({int(train.positives.sum()):,} adoptions), {len(test):,} held-out groups "
        f"({rows[0].groups:,} with an adoption), "
        f"{test.candidates.sum(axis=1).mean():.0f} candidates per group"
    )
    print(
        f"   read marts {load_seconds:.1f}s   fit {model.fit_seconds:.1f}s ({config.epochs} epochs, "
        f"loss {model.losses[0]:.3f} -> {model.losses[-1]:.3f})   peak RSS {peak_rss_gib():.2f} GiB"
    )
    print(f"   {'K':>5} {'two-tower':>10} {'popularity':>11} {'ratio':>7}")
    for row in rows:
        print(f"   {row.k:>5} {row.two_tower:>10.4f} {row.popularity:>11.4f} {row.ratio:>7.3f}")
    p50, p99 = query_micros(model.catalogue.size, model.shape.dim, max(ks))
    print(f"   brute-force query over its {model.catalogue.size:,} items: p50 {p50:.0f} us, p99 {p99:.0f} us")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, action="append", default=[], help="A built NEXTBEST_HOME.")
    parser.add_argument(
        "--synthetic", type=int, default=0, help="Also build a synthetic bank of N customers."
    )
    parser.add_argument("--epochs", type=int, default=TrainConfig().epochs)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, nargs="+", default=[10, 50, 100])
    args = parser.parse_args()
    config = TrainConfig(epochs=args.epochs, seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as tmp:
        homes = [(str(h), h) for h in args.home]
        if args.synthetic:
            home = Path(tmp) / "synthetic"
            started = time.perf_counter()
            build_synthetic(home, args.synthetic)
            print(
                f"synthetic bank of {args.synthetic:,} customers built in "
                f"{time.perf_counter() - started:.0f}s"
            )
            homes.insert(0, (f"synthetic bank, {args.synthetic:,} customers", home))
        if not homes:
            parser.error("nothing to measure: give --home and/or --synthetic")
        for label, home in homes:
            bench_home(label, home, config, tuple(args.k))
    print("\nbrute-force top-100 query cost by catalogue size (dim 32, one customer):")
    for items in (1_000, 10_000, 100_000):
        p50, p99 = query_micros(items, 32, 100)
        print(f"   {items:>8,} items: p50 {p50:8.0f} us   p99 {p99:8.0f} us")


if __name__ == "__main__":
    main()
