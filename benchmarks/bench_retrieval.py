"""Two-tower retrieval against popularity retrieval, measured in the same run on the same held-out groups.

For each built dataset (a NEXTBEST_HOME whose live build has the marts; nothing is written into it):
recall@K (K in 10, 50, 100 by default) of the two-tower model and of popularity retrieval on the latest
labelled snapshot, both restricted to each group's candidates, and their ratio; the time to read the
marts, the fit time and the process's peak memory; then the cost of the brute-force vector search
(one customer against the catalogue, and against 10^4 / 10^5 random items) that decides whether an
approximate index would earn its place. With ``--ablation``: NDCG@7 of a LambdaMART ranker on the
feature marts with and without the two-tower similarity of each candidate (see ``ablation``).

    python benchmarks/bench_retrieval.py --synthetic 5000        # ingest + build a synthetic bank first
    python benchmarks/bench_retrieval.py --home /path/to/cj_home # an existing build (Complete Journey)
    python benchmarks/bench_retrieval.py --home A --home B --epochs 20 --k 10 50 100
    python benchmarks/bench_retrieval.py --home /path/to/cj_home --ablation
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

import duckdb
import lightgbm as lgb
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nextbest.columns import (  # noqa: E402
    CUSTOMER_ID,
    EVENT_TIMESTAMP,
    GROUP_COLS,
    KEY_COLS,
    LABEL,
    PRODUCT_ID,
    SCORE,
    SNAPSHOT_ON,
    SORT_COLS,
)
from nextbest.marts import FCT_RANKING_LABELS, mart_file  # noqa: E402
from nextbest.retrieval.data import Catalogue, Groups, load_catalogue, load_groups  # noqa: E402
from nextbest.retrieval.evaluate import recall_table  # noqa: E402
from nextbest.retrieval.index import retrieve  # noqa: E402
from nextbest.retrieval.stage import load_split  # noqa: E402
from nextbest.retrieval.train import TrainConfig, fit  # noqa: E402
from nextbest.settings import Settings  # noqa: E402
from nextbest.training.metrics import ndcg_per_group  # noqa: E402

NEXTBEST = [sys.executable, "-m", "nextbest.cli"]

SIMILARITY = "two_tower_similarity"
"""The candidate feature the ablation adds: the dot product of the customer and item embeddings."""


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


ABLATION_SQL = """
with labels as (
    select customer_id, product_id, event_timestamp, label from read_parquet(?)
),
customer as (
    select * exclude (segment, region) from read_parquet(?)
),
product as (
    select * from read_parquet(?)
),
pair as (
    select * from feat_customer_product_monthly  -- a view of the build's DuckDB file
),
final as (
    select *
    from labels
    join customer using (customer_id, event_timestamp)
    join product using (product_id, event_timestamp)
    join pair using (customer_id, product_id, event_timestamp)
)
select * from final
"""


def ranker_frame(marts_dir: Path) -> pd.DataFrame:
    """``fct_ranking_labels`` with the numeric features of the three feature marts (read directly: the
    parquet files Feast's offline store reads, and the pair model's view in the build's DuckDB file,
    joined on the exact snapshot)."""
    names = [FCT_RANKING_LABELS, "feat_customer_monthly", "feat_product_monthly"]
    with duckdb.connect(str(marts_dir.parent / "nextbest.duckdb"), read_only=True) as con:
        frame = con.execute(ABLATION_SQL, [str(mart_file(marts_dir, n)) for n in names]).df()
    return frame.sort_values(list(SORT_COLS)).reset_index(drop=True)


def _lambdarank(train: pd.DataFrame, valid: pd.DataFrame, features: list[str]) -> lgb.LGBMRanker:
    sizes = lambda f: f.groupby(list(GROUP_COLS), sort=False).size().to_numpy()  # noqa: E731
    model = lgb.LGBMRanker(
        objective="lambdarank",
        n_estimators=300,
        learning_rate=0.1,
        num_leaves=31,
        n_jobs=2,
        random_state=0,
        verbose=-1,
    )
    model.fit(
        train[features],
        train[LABEL],
        group=sizes(train),
        eval_set=[(valid[features], valid[LABEL])],
        eval_group=[sizes(valid)],
        eval_at=[7],
        callbacks=[lgb.early_stopping(30, verbose=False)],
    )
    return model


def cross_fitted_similarity(
    groups: Groups, in_train: np.ndarray, catalogue: Catalogue, config: TrainConfig, folds: int = 2
) -> np.ndarray:
    """float [groups, items]: each customer's similarities from a model fitted on the other folds'
    customers (folds by a hash of the customer id), so no customer is scored by a model that saw it."""
    fold = pd.util.hash_array(groups.keys[CUSTOMER_ID].to_numpy(dtype=object)) % folds
    out = np.zeros((len(groups), catalogue.size), dtype=np.float32)
    for f in range(folds):
        model = fit(groups.subset(in_train & (fold != f)), catalogue, config)
        mine = fold == f
        out[mine] = model.customer_embeddings(groups.subset(mine)) @ model.item_embeddings().T
    return out


def ablation(home: Path, config: TrainConfig) -> None:
    """NDCG@7 of a LambdaMART ranker on the marts' features with and without the two-tower similarity.

    Labelled snapshots s1 < ... < sn: the two-tower models and the ranker train on all but the last
    three, the ranker stops early on s(n-2), both are tested on s(n-1) and sn (never seen by either).
    The similarity is cross-fitted (``cross_fitted_similarity``), so the ranker's training rows carry it
    out of sample, as its test rows do.
    """
    os.environ["NEXTBEST_HOME"] = str(home)
    settings = Settings()
    catalogue = load_catalogue(settings.marts_dir)
    groups = load_groups(settings.marts_dir, settings.raw_dir, catalogue)
    labelled = sorted(groups.keys.loc[groups.keys["is_labelled"], EVENT_TIMESTAMP].unique())
    if len(labelled) < 4:
        print(f"ablation: {len(labelled)} labelled snapshots, 4 needed")
        return
    train_ts, valid_ts, test_ts = labelled[:-3], labelled[-3], labelled[-2:]
    horizon = settings.build.horizon_months
    window_end = pd.to_datetime(groups.keys[SNAPSHOT_ON]) + pd.DateOffset(months=horizon)
    in_train = (
        groups.keys["is_labelled"] & (window_end <= pd.Timestamp(valid_ts) - pd.Timedelta(days=1))
    ).to_numpy()
    similarity_of_group = cross_fitted_similarity(groups, in_train, catalogue, config)
    frame = ranker_frame(settings.marts_dir)
    group_row = pd.Series(
        np.arange(len(groups)), index=pd.MultiIndex.from_frame(groups.keys[[CUSTOMER_ID, EVENT_TIMESTAMP]])
    )
    g = group_row.loc[pd.MultiIndex.from_frame(frame[[CUSTOMER_ID, EVENT_TIMESTAMP]])].to_numpy()
    i = catalogue.index_of(frame[PRODUCT_ID])
    frame[SIMILARITY] = similarity_of_group[g, i]
    frame[PRODUCT_ID] = pd.Categorical(frame[PRODUCT_ID], categories=list(catalogue.product_ids))
    base = [c for c in frame.columns if c not in (*KEY_COLS, LABEL, SNAPSHOT_ON, SIMILARITY)] + [PRODUCT_ID]
    has_pos = frame.groupby(list(GROUP_COLS))[LABEL].transform("max") > 0
    train = frame[frame[EVENT_TIMESTAMP].isin(train_ts) & has_pos]
    valid = frame[(frame[EVENT_TIMESTAMP] == valid_ts) & has_pos]
    test = frame[frame[EVENT_TIMESTAMP].isin(test_ts)].copy()
    per_group = {}
    for name, features in (("without", base), ("with", [*base, SIMILARITY])):
        ranker = _lambdarank(train, valid, features)
        test[SCORE] = ranker.predict(test[features])
        per_group[name] = ndcg_per_group(test, k=7)
    delta = per_group["with"] - per_group["without"]
    print(
        f"\n== ablation on {home}: ranker trained on {len(train_ts)} snapshots ({len(train):,} rows), "
        f"early stopping on {pd.Timestamp(valid_ts).date()}, tested on {len(test_ts)} ({delta.size:,} groups "
        "with an adoption)"
    )
    print(
        f"   NDCG@7 without {per_group['without'].mean():.4f}, with two-tower similarity "
        f"{per_group['with'].mean():.4f}: delta {delta.mean():+.4f} "
        f"(paired s.e. {delta.std(ddof=1) / np.sqrt(delta.size):.4f})"
    )


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
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="Instead: refit a LambdaMART ranker with / without the similarity.",
    )
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
            if args.ablation:
                ablation(home, config)
            else:
                bench_home(label, home, config, tuple(args.k))
    if args.ablation:
        return
    print("\nbrute-force top-100 query cost by catalogue size (dim 32, one customer):")
    for items in (1_000, 10_000, 100_000):
        p50, p99 = query_micros(items, 32, 100)
        print(f"   {items:>8,} items: p50 {p50:8.0f} us   p99 {p99:8.0f} us")


if __name__ == "__main__":
    main()
