"""Churn on the synthetic bank against its oracle: how much of the achievable AUROC the churn model earns.

Generates the synthetic bank (its churn mechanism writes the true probability of the churn label per
customer and snapshot to ``churn_oracle.parquet``), ingests it, runs ``dbt build``, applies and
materializes Feast, trains the churn task as ``nextbest train --task churn`` does
(``train_binary_task`` with the default training config), then scores the bundle's held-out test
months and prints, on the SAME rows (the test rows of ``fct_churn_labels``, all of which the oracle
covers), the AUROC of the churn model, of the oracle and of the one-feature rules, and the ratio
model / oracle (target >= 0.95), with bootstrap standard errors over customers; then the task's own
evaluation (the model against logistic regression on the same features and the rules, with paired s.e.).

    python benchmarks/bench_tasks.py                       # 20k customers x 24 months
    python benchmarks/bench_tasks.py --customers 5000 --months 18
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SNAPSHOT_ON = "snapshot_on"


def main() -> None:
    from nextbest.features.store import apply_definitions, materialize
    from nextbest.ingest.store import ingest_directory
    from nextbest.ingest.synthetic import generate_synthetic
    from nextbest.pipeline import build_warehouse
    from nextbest.settings import Settings
    from nextbest.training.cli import resolve_config_path
    from nextbest.training.config import load_config
    from nextbest.training.tasks import (
        CLASSIFIER,
        TASK_RULES,
        bootstrap_auc,
        customer_features,
        rule_scores,
        task_labels,
        task_spec,
        train_binary_task,
    )

    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    # raised inside ibis (Feast's DuckDB offline store) on every query (as in pyproject's pytest filters);
    # set after the imports, which reset the filters
    warnings.filterwarnings("ignore", r"fetch_arrow_table\(\) is deprecated", DeprecationWarning)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--home", type=Path, default=None, help="keep the deployment here (default: temp)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_tasks_") as tmp:
        home = args.home or Path(tmp)
        settings = Settings(home=home)
        source = home / "source"
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

        started = time.perf_counter()
        spec = task_spec(settings, "churn")
        config = load_config(resolve_config_path(settings, None))  # what `nextbest train --task churn` uses
        result = train_binary_task(settings, spec, config)
        timings["train churn"] = time.perf_counter() - started

        labels = task_labels(settings, spec)
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

        print(f"synthetic bank {args.customers:,} customers x {args.months} months, seed {args.seed}: "
              f"{summary.churns:,} churns; churn test months {result.split['test_start']}.."
              f"{result.split['test_end']}")
        print(f"test rows {len(frame):,} ({int(covered.sum()):,} of {len(covered):,} covered by the oracle), "
              f"{frame['customer_id'].nunique():,} customers, churn rate {frame['label'].mean():.3%}, "
              f"mean oracle probability {frame['oracle'].mean():.3%}")
        print(f"{'model':34s} {'AUROC':>8s} {'s.e.':>7s} {'/ oracle':>9s} {'oracle - it':>12s} {'s.e.':>7s}")
        oracle_auc = aucs["oracle"]["auroc"]
        for name, row in aucs.items():
            print(f"{name:34s} {row['auroc']:8.4f} {row['auroc_se']:7.4f} {row['auroc'] / oracle_auc:9.3f} "
                  f"{row['auroc_below_reference']:12.4f} {row['auroc_below_reference_se']:7.4f}")
        ratio = aucs[CLASSIFIER]["auroc"] / oracle_auc
        verdict = "meets" if ratio >= 0.95 else "MISSES"
        print(f"churn model / oracle AUROC = {ratio:.3f} ({verdict} the 0.95 target)")
        print("the task's own evaluation (its test rows, with the logistic baseline and the rules):")
        for line in result.lines():
            print(f"  {line}")
        print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
        print(f"bundle {result.bundle_path}; mean |oracle - label| calibration: "
              f"{abs(frame['oracle'].mean() - frame['label'].mean()):.4f} "
              f"(binomial s.e. {np.sqrt((frame['oracle'] * (1 - frame['oracle'])).sum()) / len(frame):.4f})")


if __name__ == "__main__":
    main()
