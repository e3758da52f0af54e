"""The tasks of issue 13 measured: churn against the synthetic churn oracle, category propensity
against popularity, the reuse of one feature retrieval by ``--task all``, and churn on The Complete
Journey against the issue's reference rules.

Synthetic bank (default). Generates the bank (its churn mechanism writes the true probability of the
churn label per customer and snapshot to ``churn_oracle.parquet``), ingests it, runs ``dbt build``,
applies and materializes Feast, then trains the classification tasks as ``nextbest train --task``
does (``train_tasks`` with the dataset's shipped training config): each task alone (one retrieval of
the customer features each, as two separate ``--task NAME`` runs), then both together (one retrieval,
as ``--task all``), and prints the seconds of each run and of its retrievals, and the features the
tasks share (with each other and with the ranker's FeatureService). On the together run's bundles it
prints, on the SAME rows (the test rows of ``fct_churn_labels``, all covered by the oracle), the AUROC
of the churn model, of the oracle and of the one-feature rules, and the ratio model / oracle (target
>= 0.95), with bootstrap standard errors over customers; then each task's own evaluation (churn
against logistic regression and the rules; category propensity against popularity and a recency rule,
per category and as a ranking of categories).

The Complete Journey (``--completejourney-home HOME``: a deployment where ``nextbest ingest
completejourney`` and ``nextbest build`` ran). Trains the tasks alone and together as above, then scores
the latest churn bundle's test rows and, on the same rows, the issue's reference rules computed from the raw
transactions (days since the last transaction at the snapshot; minus the transactions of the 3 months
ending at it), with the paired bootstrap standard error of each rule's margin under the model.

    python benchmarks/bench_tasks.py                       # 20k customers x 24 months
    python benchmarks/bench_tasks.py --customers 5000 --months 18
    python benchmarks/bench_tasks.py --completejourney-home ~/.nextbest-cj
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SNAPSHOT_ON = "snapshot_on"
TASKS = ("churn", "category_propensity")


def build_bank(settings: Any, source: Path, args: argparse.Namespace) -> tuple[Any, dict[str, float]]:
    """Generate, ingest, build and materialize the synthetic bank; its summary and the seconds."""
    from nextbest.features.store import apply_definitions, materialize
    from nextbest.ingest.store import ingest_directory
    from nextbest.ingest.synthetic import generate_synthetic
    from nextbest.pipeline import build_warehouse

    timings: dict[str, float] = {}
    started = time.perf_counter()
    summary = generate_synthetic(source, customers=args.customers, months=args.months, seed=args.seed)
    ingest_directory(source, settings.raw_dir)
    timings["generate + ingest"] = time.perf_counter() - started
    started = time.perf_counter()
    build_warehouse(settings, quiet=True)
    apply_definitions(settings, "sqlite")
    materialize(settings, "sqlite", progress=False)
    timings["dbt build + feast"] = time.perf_counter() - started
    return summary, timings


def reuse(settings: Any, config: Any) -> dict[str, Any]:
    """Each task trained alone (two runs, two retrievals), then all together (one run, one retrieval,
    as ``--task all``); prints seconds and shared features; returns the together run's results."""
    from nextbest.features.retrieval import service_feature_views
    from nextbest.features.store import get_store
    from nextbest.training.tasks import customer_feature_count, task_spec, train_tasks

    specs = [task_spec(settings, name) for name in TASKS]
    alone: dict[str, tuple[float, float, float]] = {}
    for spec in specs:
        started = time.perf_counter()
        (result,) = train_tasks(settings, [spec], config)
        alone[spec.name] = (time.perf_counter() - started, result.seconds["retrieval"], result.seconds["fit"])
    started = time.perf_counter()
    together = train_tasks(settings, specs, config)
    together_s = time.perf_counter() - started
    separate_s = sum(s for s, _, _ in alone.values())

    views = service_feature_views(get_store(settings), config.feature_service)
    ranker = {feature for features in views.values() for feature in features}
    shared = set.intersection(*(set(r.model.feature_cols) for r in together))
    print(f"feature reuse: {customer_feature_count(together)} features read by every classification task, "
          f"{len(shared & ranker)} of them also by the ranker ({config.feature_service}: {len(ranker)} "
          "features); features per task: "
          + ", ".join(f"{r.spec.name} {len(r.model.feature_cols)}" for r in together))
    for name, (seconds, retrieval, fit) in alone.items():
        print(f"  train --task {name:<22s} alone: {seconds:7.1f} s (its retrieval {retrieval:6.1f} s, "
              f"fit + evaluation {fit:6.1f} s)")
    print(f"  sum of the separate runs:                {separate_s:7.1f} s "
          f"(retrievals {sum(r for _, r, _ in alone.values()):6.1f} s)")
    fits = ", ".join(f"{r.spec.name} {r.seconds['fit']:.1f} s" for r in together)
    print(f"  both together (one retrieval, --task all): {together_s:5.1f} s "
          f"(its retrieval {together[0].seconds['retrieval']:6.1f} s; fit + evaluation: {fits})")
    print(f"  saved: {separate_s - together_s:.1f} s ({1 - together_s / separate_s:.1%} of the separate "
          f"runs; together / separate = {together_s / separate_s:.3f}; run order: alone, alone, together)")
    return {r.spec.name: r for r in together}


def churn_vs_oracle(settings: Any, config: Any, result: Any, source: Path) -> float:
    """The churn bundle, the oracle and the rules on the same test rows; prints them; the ratio."""
    from nextbest.training.tasks import (
        CLASSIFIER,
        TASK_RULES,
        bootstrap_auc,
        customer_features,
        rule_scores,
        task_labels,
    )

    labels = task_labels(settings, result.spec)
    first, last = (date.fromisoformat(result.split[k]) for k in ("test_start", "test_end"))
    test = labels[(labels[SNAPSHOT_ON] >= first) & (labels[SNAPSHOT_ON] <= last)]
    frame = customer_features(settings, test, config.feature_service)
    oracle = duckdb.sql(
        f"select customer_id, snapshot_on, probability as oracle "
        f"from read_parquet('{source / 'churn_oracle.parquet'}')"
    ).df()
    oracle["snapshot_on"] = pd.to_datetime(oracle["snapshot_on"]).dt.date
    frame = frame.merge(oracle, on=["customer_id", "snapshot_on"], how="left")
    covered = frame["oracle"].notna()
    frame = frame[covered].reset_index(drop=True)
    scores = {CLASSIFIER: result.model.score(frame), "oracle": frame["oracle"].to_numpy(float)}
    for name, (feature, sign, missing) in TASK_RULES["churn"].items():
        scores[name] = rule_scores(frame, feature, sign, missing)
    aucs = bootstrap_auc(frame["label"].to_numpy(), scores, frame["customer_id"].to_numpy(), "oracle")

    print(f"churn test months {result.split['test_start']}..{result.split['test_end']}: rows {len(frame):,} "
          f"({int(covered.sum()):,} of {len(covered):,} covered by the oracle), "
          f"{frame['customer_id'].nunique():,} customers, churn rate {frame['label'].mean():.3%}, "
          f"mean oracle probability {frame['oracle'].mean():.3%} (binomial s.e. "
          f"{np.sqrt((frame['oracle'] * (1 - frame['oracle'])).sum()) / len(frame):.4f})")
    print(f"{'model':34s} {'AUROC':>8s} {'s.e.':>7s} {'/ oracle':>9s} {'oracle - it':>12s} {'s.e.':>7s}")
    oracle_auc = aucs["oracle"]["auroc"]
    for name, row in aucs.items():
        print(f"{name:34s} {row['auroc']:8.4f} {row['auroc_se']:7.4f} {row['auroc'] / oracle_auc:9.3f} "
              f"{row['auroc_below_reference']:12.4f} {row['auroc_below_reference_se']:7.4f}")
    ratio = aucs[CLASSIFIER]["auroc"] / oracle_auc
    verdict = "meets" if ratio >= 0.95 else "MISSES"
    print(f"churn model / oracle AUROC = {ratio:.3f} ({verdict} the 0.95 target)")
    return ratio


def completejourney_reference(home: Path) -> None:
    """The latest churn bundle of a Complete Journey deployment against the issue's reference rules
    (from the raw transactions) on its test rows, with paired bootstrap standard errors."""
    from nextbest.settings import Settings
    from nextbest.training.tasks import (
        CLASSIFIER,
        bootstrap_auc,
        customer_features,
        latest_task_bundle,
        load_task_bundle,
        task_labels,
        task_spec,
    )

    settings = Settings(home=home).pinned()
    spec = task_spec(settings, "churn")
    path = latest_task_bundle(settings, "churn")
    if path is None:
        sys.exit(f"no churn bundle under {home}: run `nextbest train --task churn` there first")
    model, meta = load_task_bundle(path)
    span = meta["data_range"]
    labels = task_labels(settings, spec)
    day = labels[SNAPSHOT_ON].astype(str)
    test = labels[(day >= span["test_start"]) & (day <= span["test_end"])].reset_index(drop=True)
    frame = customer_features(settings, test, "ranker_v1")
    rules = duckdb.sql(
        f"""
        with rows as (select distinct customer_id, cast(snapshot_on as date) as snapshot_on from frame)
        select
            rows.customer_id, rows.snapshot_on,
            date_diff('day', max(cast(t.occurred_at as date)), rows.snapshot_on) as days_since_last,
            count(t.occurred_at) filter (
                where cast(t.occurred_at as date) > rows.snapshot_on - interval 3 month
            ) as transactions_last_3_months
        from rows
        left join read_parquet('{settings.raw_dir / 'transactions.parquet'}') as t
            on t.customer_id = rows.customer_id and cast(t.occurred_at as date) <= rows.snapshot_on
        group by rows.customer_id, rows.snapshot_on
        """
    ).df()
    rules["snapshot_on"] = pd.to_datetime(rules["snapshot_on"]).dt.date
    frame = frame.merge(rules, on=["customer_id", "snapshot_on"], how="left", validate="one_to_one")
    scores = {
        CLASSIFIER: model.score(frame),
        "days_since_last_transaction": frame["days_since_last"].astype(float).fillna(1e6).to_numpy(),
        "minus_transactions_last_3_months": -frame["transactions_last_3_months"].astype(float).to_numpy(),
    }
    label = frame["label"].to_numpy()
    aucs = bootstrap_auc(label, scores, frame["customer_id"].to_numpy(), CLASSIFIER)
    print(f"The Complete Journey ({home}), churn bundle {path.name}: test {span['test_start']}.."
          f"{span['test_end']}, {len(frame):,} rows, {frame['customer_id'].nunique():,} households, "
          f"{int(label.sum()):,} churners")
    print(f"{'model':34s} {'AUROC':>8s} {'s.e.':>7s} {'model - it':>11s} {'s.e.':>7s} {'> 2 s.e.':>9s}")
    for name, row in aucs.items():
        margin, se = row["auroc_below_reference"], row["auroc_below_reference_se"]
        verdict = "" if name == CLASSIFIER else ("yes" if row["reference_wins_by_2se"] else "no")
        print(f"{name:34s} {row['auroc']:8.4f} {row['auroc_se']:7.4f} {margin:11.4f} {se:7.4f} {verdict:>9s}")


def main() -> None:
    from nextbest.settings import Settings
    from nextbest.training.cli import resolve_config_path
    from nextbest.training.config import load_config

    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    # raised inside ibis (Feast's DuckDB offline store) on every query (as in pyproject's pytest filters);
    # set after the imports, which reset the filters
    warnings.filterwarnings("ignore", r"fetch_arrow_table\(\) is deprecated", DeprecationWarning)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--home", type=Path, default=None, help="keep the deployment here (default: temp)")
    parser.add_argument("--completejourney-home", type=Path, default=None,
                        help="only the Complete Journey reference comparison, on this deployment")
    args = parser.parse_args()
    if args.completejourney_home:
        settings = Settings(home=args.completejourney_home)
        reuse(settings, load_config(resolve_config_path(settings, None)))
        completejourney_reference(args.completejourney_home)
        return

    with tempfile.TemporaryDirectory(prefix="bench_tasks_") as tmp:
        home = args.home or Path(tmp)
        settings = Settings(home=home)
        source = home / "source"
        summary, timings = build_bank(settings, source, args)
        print(f"synthetic bank {args.customers:,} customers x {args.months} months, seed {args.seed}: "
              f"{summary.churns:,} churns")
        config = load_config(resolve_config_path(settings, None))  # what `nextbest train --task` uses
        started = time.perf_counter()
        results = reuse(settings, config)
        timings["train: alone, alone, together"] = time.perf_counter() - started
        churn_vs_oracle(settings, config, results["churn"], source)
        for result in results.values():
            print(f"the task's own evaluation ({result.spec.name}; bundle {result.bundle_path}):")
            for line in result.lines():
                print(f"  {line}")
        print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))


if __name__ == "__main__":
    main()
