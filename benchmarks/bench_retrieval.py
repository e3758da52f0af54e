"""Two-tower retrieval against popularity retrieval, measured in the same run on the same held-out groups.

For each built dataset (a NEXTBEST_HOME whose live build has the marts; nothing is written into it):
recall@K (K in 10, 50, 100, 200 by default) of the two-tower model, of popularity retrieval and of
item-item co-occurrence retrieval on the latest labelled snapshot, all restricted to each group's
candidates, and the two-tower's ratios to both; the time to read the marts, the fit times and the
process's peak memory; then the cost of the brute-force vector search
(one customer against the catalogue, and against 10^4 / 10^5 random items) that decides whether an
approximate index would earn its place. With ``--ablation``: NDCG@7 of a LambdaMART ranker on the
feature marts with and without the two-tower similarity of each candidate (see ``ablation``).

    python benchmarks/bench_retrieval.py --synthetic 5000        # ingest + build a synthetic bank first
    python benchmarks/bench_retrieval.py --home /path/to/cj_home # an existing build (Complete Journey)
    python benchmarks/bench_retrieval.py --completejourney product_type  # 2,378 items: retrieval marts only
    python benchmarks/bench_retrieval.py --home A --home B --epochs 20 --k 10 50 100
    python benchmarks/bench_retrieval.py --home /path/to/cj_home --ablation
    python benchmarks/bench_retrieval.py --home /path/to/cj_home --end-to-end 100  # retrieve 100, then rank
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
from nextbest.dbt import run_dbt  # noqa: E402
from nextbest.marts import FCT_RANKING_LABELS, mart_file  # noqa: E402
from nextbest.pipeline import dbt_vars_for, new_build_id, switch_live_build  # noqa: E402
from nextbest.retrieval.data import Catalogue, Groups, load_catalogue, load_groups  # noqa: E402
from nextbest.retrieval.evaluate import CooccurrenceRetrieval, recall_table  # noqa: E402
from nextbest.retrieval.index import recall_at_k, retrieve, top_k  # noqa: E402
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


RETRIEVAL_MARTS: tuple[str, ...] = (
    "dim_products",
    "fct_candidates",
    "fct_ranking_labels",
    "feat_customer_monthly",
)
"""The marts retrieval reads (``load_split``); a large-catalogue bench builds only these and their parents."""


def build_completejourney(home: Path, grain: str) -> None:
    """Ingest The Complete Journey at ``grain`` into ``home`` and build only ``RETRIEVAL_MARTS`` (and their
    parents) as its live build: at product_type grain the pair features (``feat_customer_product_monthly``,
    one row per candidate) are not needed to measure retrieval. The dbt project's own candidate retrieval
    stage (``candidate_retrieval_above_products``) is off: the retrievers are measured over every eligible
    product."""
    env = {**os.environ, "NEXTBEST_HOME": str(home)}
    ingest = [*NEXTBEST, "ingest", "completejourney", "--grain", grain]
    subprocess.run(ingest, env=env, check=True, stdout=subprocess.DEVNULL)
    os.environ["NEXTBEST_HOME"] = str(home)
    settings = Settings()
    build_id = new_build_id()
    target = settings.model_copy(update={"build_id": build_id})
    select = " ".join(f"+{m}" for m in RETRIEVAL_MARTS)
    build = ["build", "--select", select, "--indirect-selection", "cautious"]
    dbt_vars = {**dbt_vars_for(settings, settings.build), "candidate_retrieval_above_products": None}
    run_dbt(build, target, dbt_vars, quiet=True)
    settings.build.write(target.build_vars_path)
    switch_live_build(settings, build_id)


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
    started = time.perf_counter()
    cooccurrence = CooccurrenceRetrieval.fit(train)
    co_seconds = time.perf_counter() - started
    rows = recall_table(
        model.customer_embeddings(test), model.item_embeddings(), model.popularity, test, ks, cooccurrence
    )
    print(
        f"\n== {label}: {model.catalogue.size:,} items, {len(train):,} training groups "
        f"({int(train.positives.sum()):,} adoptions), {len(test):,} held-out groups "
        f"({rows[0].groups:,} with an adoption), "
        f"{test.candidates.sum(axis=1).mean():.0f} candidates per group"
    )
    print(
        f"   read marts {load_seconds:.1f}s   fit {model.fit_seconds:.1f}s ({config.epochs} epochs, "
        f"loss {model.losses[0]:.3f} -> {model.losses[-1]:.3f})   co-occurrence fit {co_seconds:.1f}s   "
        f"peak RSS {peak_rss_gib():.2f} GiB"
    )
    print(f"   {'K':>5} {'two-tower':>10} {'popularity':>11} {'ratio':>7} {'co-occurrence':>14} {'ratio':>7}")
    for row in rows:
        co_ratio = row.two_tower / row.cooccurrence if row.cooccurrence > 0 else float("nan")
        print(
            f"   {row.k:>5} {row.two_tower:>10.4f} {row.popularity:>11.4f} {row.ratio:>7.3f} "
            f"{row.cooccurrence:>14.4f} {co_ratio:>7.3f}"
        )
    # an experiment, not the product: the affinity / temperature plus the log popularity prior
    prior = np.log((model.popularity + 1.0) / (model.popularity + 1.0).sum())
    logits = model.customer_embeddings(test) @ model.item_embeddings().T / config.temperature + prior
    blended = top_k(logits, max(ks), test.candidates)
    print(
        "   two-tower + log-popularity prior: "
        + "   ".join(
            f"@{row.k} {recall_at_k(blended, test.positives, row.k):.4f} "
            f"({recall_at_k(blended, test.positives, row.k) / row.popularity:.3f}x popularity)"
            for row in rows
        )
    )
    print("   loss by epoch: " + " ".join(f"{loss:.3f}" for loss in model.losses))
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


def end_to_end(home: Path, config: TrainConfig, top_n: int = 100) -> None:
    """NDCG@7 of retrieve-top-``top_n``-then-rank against rank-all (and popularity), on the same groups.

    The same split as ``ablation``: the two-tower model and a LambdaMART ranker (the marts' features)
    train on all labelled snapshots but the last three, the ranker stops early on s(n-2), both are
    tested on s(n-1) and sn. Retrieve-then-rank keeps the ranker's order among each group's ``top_n``
    candidates of highest two-tower affinity and puts the others last (an adoption outside them is lost);
    nDCG's ideal DCG counts every adoption of the group either way, so the two differ only by retrieval.
    """
    os.environ["NEXTBEST_HOME"] = str(home)
    settings = Settings()
    catalogue = load_catalogue(settings.marts_dir)
    groups = load_groups(settings.marts_dir, settings.raw_dir, catalogue)
    labelled = sorted(groups.keys.loc[groups.keys["is_labelled"], EVENT_TIMESTAMP].unique())
    if len(labelled) < 4:
        print(f"end-to-end: {len(labelled)} labelled snapshots, 4 needed")
        return
    train_ts, valid_ts, test_ts = labelled[:-3], labelled[-3], labelled[-2:]
    window_end = pd.to_datetime(groups.keys[SNAPSHOT_ON]) + pd.DateOffset(
        months=settings.build.horizon_months
    )
    in_train = (
        groups.keys["is_labelled"] & (window_end <= pd.Timestamp(valid_ts) - pd.Timedelta(days=1))
    ).to_numpy()
    started = time.perf_counter()
    model = fit(groups.subset(in_train), catalogue, config)
    fit_seconds = time.perf_counter() - started
    in_test = groups.keys[EVENT_TIMESTAMP].isin(test_ts).to_numpy()
    test_groups = groups.subset(in_test)
    kept = np.zeros(test_groups.candidates.shape, dtype=bool)
    retrieved = retrieve(
        model.customer_embeddings(test_groups), model.item_embeddings(), top_n, test_groups.candidates
    )
    np.put_along_axis(kept, retrieved, True, axis=1)
    kept &= test_groups.candidates
    frame = ranker_frame(settings.marts_dir)
    frame[PRODUCT_ID] = pd.Categorical(frame[PRODUCT_ID], categories=list(catalogue.product_ids))
    base = [c for c in frame.columns if c not in (*KEY_COLS, LABEL, SNAPSHOT_ON)]
    has_pos = frame.groupby(list(GROUP_COLS))[LABEL].transform("max") > 0
    train = frame[frame[EVENT_TIMESTAMP].isin(train_ts) & has_pos]
    valid = frame[(frame[EVENT_TIMESTAMP] == valid_ts) & has_pos]
    test = frame[frame[EVENT_TIMESTAMP].isin(test_ts)].copy()
    ranker = _lambdarank(train, valid, base)
    test[SCORE] = ranker.predict(test[base])
    group_row = pd.Series(
        np.arange(len(test_groups)),
        index=pd.MultiIndex.from_frame(test_groups.keys[[CUSTOMER_ID, EVENT_TIMESTAMP]]),
    )
    g = group_row.loc[pd.MultiIndex.from_frame(test[[CUSTOMER_ID, EVENT_TIMESTAMP]])].to_numpy()
    i = catalogue.index_of(test[PRODUCT_ID].astype(str))
    rank_all = ndcg_per_group(test, k=7)
    narrowed = test.assign(**{SCORE: np.where(kept[g, i], test[SCORE], -1e9)})
    retrieve_rank = ndcg_per_group(narrowed, k=7)
    popular = ndcg_per_group(test.assign(**{SCORE: model.popularity[i]}), k=7)
    delta = retrieve_rank - rank_all
    lost = 1 - retrieve_rank.mean() / rank_all.mean()
    print(
        f"\n== end to end on {home}: {catalogue.size:,} items, "
        f"{test_groups.candidates.sum(axis=1).mean():.0f} candidates per group, "
        f"two-tower fit {fit_seconds:.1f}s on {int(in_train.sum()):,} groups; "
        f"ranker on {len(train_ts)} snapshots, tested on {len(test_ts)} "
        f"({rank_all.size:,} groups with an adoption)"
    )
    print(
        f"   NDCG@7 rank-all {rank_all.mean():.4f}   "
        f"retrieve top-{top_n} then rank {retrieve_rank.mean():.4f} "
        f"(delta {delta.mean():+.4f}, paired s.e. {delta.std(ddof=1) / np.sqrt(delta.size):.4f}; "
        f"{100 * lost:.2f} % lost)   popularity {popular.mean():.4f}"
    )
    inside = test_groups.positives[kept].sum() / max(test_groups.positives.sum(), 1)
    print(f"   adoptions inside the retrieved top-{top_n}: {inside:.4f}")


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
    parser.add_argument("--k", type=int, nargs="+", default=[10, 50, 100, 200])
    parser.add_argument(
        "--completejourney",
        metavar="GRAIN",
        help="Also ingest The Complete Journey at GRAIN (e.g. product_type) and build its retrieval marts.",
    )
    parser.add_argument(
        "--end-to-end",
        type=int,
        metavar="N",
        default=0,
        help="Instead: NDCG@7 of retrieve-top-N-then-rank vs rank-all (a LambdaMART ranker on the marts).",
    )
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
        if args.completejourney:
            home = Path(tmp) / f"cj-{args.completejourney}"
            started = time.perf_counter()
            build_completejourney(home, args.completejourney)
            print(f"Complete Journey ({args.completejourney}) built in {time.perf_counter() - started:.0f}s")
            homes.insert(0, (f"Complete Journey, {args.completejourney}", home))
        if not homes:
            parser.error("nothing to measure: give --home and/or --synthetic")
        for label, home in homes:
            if args.end_to_end:
                end_to_end(home, config, args.end_to_end)
            elif args.ablation:
                ablation(home, config)
            else:
                bench_home(label, home, config, tuple(args.k))
    if args.ablation or args.end_to_end:
        return
    print("\nbrute-force top-100 query cost by catalogue size (dim 32, one customer):")
    for items in (1_000, 10_000, 100_000):
        p50, p99 = query_micros(items, 32, 100)
        print(f"   {items:>8,} items: p50 {p50:8.0f} us   p99 {p99:8.0f} us")


if __name__ == "__main__":
    main()
