"""Training cost vs training rows: the LambdaMART ranker against one-LightGBM-per-product.

Running the whole pipeline (dbt + Feast retrieval) to 20M training rows takes too long on the 2-core
machine, so this benchmark SIMULATES ranking frames shaped like the synthetic bank's training set
after groups without an adoption are dropped: groups of 12-24 candidates out of 24 products, 30
numeric features (a few nulls) plus ``product_id`` as a categorical, one or more positives per group
drawn from a logistic model. Each (size, model) runs in its own process so that its peak memory
(RSS of the process, sampled) is its own. Every model gets a fixed number of trees (no early stopping)
so the times compare like with like; ``ranker_dask`` is the same ranker trained by ``lightgbm.dask`` on a
LocalCluster (``nextbest.training.distributed``), the way a cluster would, to show its overhead on one
machine.

    python benchmarks/bench_training.py                         # 200k and 1M rows
    python benchmarks/bench_training.py --sizes 1000000 5000000 20000000
    python benchmarks/bench_training.py --sizes 1000000 --models ranker ranker_dask --n-jobs 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

N_PRODUCTS = 24
N_FEATURES = 30


def simulate(rows: int, seed: int = 0) -> pd.DataFrame:
    """A ranking frame of about ``rows`` rows: keys, label, product_id and N_FEATURES features."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(12, 25, size=rows // 18 + 1)
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), rows) + 1]
    n = int(sizes.sum())
    group = np.repeat(np.arange(len(sizes)), sizes)
    within = np.arange(n) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    offset = rng.integers(0, N_PRODUCTS, size=len(sizes))
    product = (within + np.repeat(offset, sizes)) % N_PRODUCTS
    features = rng.standard_normal((n, N_FEATURES)).astype(np.float64)
    features[rng.random((n, N_FEATURES)) < 0.05] = np.nan
    weights = rng.standard_normal((N_PRODUCTS, 5))
    logit = -3.0 + np.linspace(-1, 1, N_PRODUCTS)[product]
    logit += np.einsum("ij,ij->i", np.nan_to_num(features[:, :5]), weights[product])
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int32)
    # every group needs a positive (the ranker's training set): promote each group's likeliest row
    has_pos = np.bincount(group, weights=label, minlength=len(sizes)) > 0
    order = np.lexsort((-logit, group))
    first = order[np.concatenate([[0], np.cumsum(sizes)[:-1]])]
    label[first[~has_pos]] = 1
    frame = pd.DataFrame(features, columns=[f"f{i:02d}" for i in range(N_FEATURES)])
    names = [f"p{i:02d}" for i in range(N_PRODUCTS)]
    frame.insert(0, "product_id", pd.Categorical.from_codes(product, names))
    frame.insert(0, "label", label)
    frame.insert(0, "group", group)
    return frame


def worker(rows: int, model: str, trees: int, n_jobs: int) -> dict[str, float]:
    """Fit one model on a simulated frame of ``rows`` rows; return the fit seconds."""
    from nextbest.training.baselines import PerProductModels
    from nextbest.training.config import BaselineConfig, RankerConfig
    from nextbest.training.ranker import RankingData, fit_ranker

    frame = simulate(rows)
    feature_cols = ["product_id", *[c for c in frame.columns if c.startswith("f")]]
    categories = {"product_id": list(frame["product_id"].cat.categories)}
    started = time.perf_counter()
    if model in ("ranker", "ranker_dask"):
        cut = int(frame["group"].searchsorted(frame["group"].iloc[-1] * 0.9))
        parts = [frame.iloc[:cut], frame.iloc[cut:]]
        data = [
            RankingData(
                frame=p, features=p[feature_cols].reset_index(drop=True), label=p["label"].to_numpy(),
                group_sizes=p.groupby("group", sort=False).size().to_numpy(), feature_cols=feature_cols,
                categories=categories,
            )
            for p in parts
        ]
        params = RankerConfig(n_estimators=trees, early_stopping_rounds=trees + 1, n_jobs=n_jobs)
        if model == "ranker":
            fit_ranker(data[0], data[1], params)
        else:
            from nextbest.training.distributed import fit_ranker_dask, local_client

            with local_client(n_jobs) as client:
                started = time.perf_counter()  # the cluster's start-up is not the fit
                fit_ranker_dask(data[0], data[1], client, params, selection_step=trees)
    else:
        PerProductModels(feature_cols, params=BaselineConfig(n_estimators=trees, n_jobs=n_jobs)).fit(frame)
    return {"rows": float(len(frame)), "fit_seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--trees", type=int, default=100, help="trees of every model (fixed)")
    parser.add_argument("--n-jobs", type=int, default=1, help="LightGBM threads of every model")
    parser.add_argument(
        "--models", nargs="+", default=["ranker", "ranker_dask", "per_product"],
        help="ranker (one process), ranker_dask (DaskLGBMRanker on a LocalCluster of --n-jobs single-thread "
        "workers: the peak memory is the client's only), per_product",
    )
    parser.add_argument("--worker", nargs=3, metavar=("ROWS", "MODEL", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = worker(int(args.worker[0]), args.worker[1], args.trees, args.n_jobs)
        Path(args.worker[2]).write_text(json.dumps(result))
        return

    from _measure import measure

    print(f"{'rows':>12} {'model':>12} {'fit s':>8} {'wall s':>8} {'peak GiB':>9} {'s / 1M rows':>12}")
    for rows in args.sizes:
        for model in args.models:
            with tempfile.TemporaryDirectory() as tmp:
                out_path = Path(tmp) / "result.json"
                cmd = [sys.executable, __file__, "--worker", str(rows), model, str(out_path)]
                measured = measure([*cmd, "--trees", str(args.trees), "--n-jobs", str(args.n_jobs)])
                if measured.returncode != 0:
                    print(f"{rows:>12,} {model:>12} failed (exit {measured.returncode})")
                    continue
                fit = json.loads(out_path.read_text())
            print(
                f"{rows:>12,} {model:>12} {fit['fit_seconds']:>8.1f} {measured.seconds:>8.1f} "
                f"{measured.peak_gib:>9.2f} {fit['fit_seconds'] / rows * 1e6:>12.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
