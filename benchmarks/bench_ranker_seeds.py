"""How much of the ranker's test figure is its seed, and what would ordering or averaging change?

On a built ``NEXTBEST_HOME`` (any dataset; ``nextbest build`` done), trains the ranker ``--seeds`` times
with the config ``nextbest train`` picks for it (the ablation off: it changes no score), seed ``s`` for
both the negatives' down-sampling and LightGBM's row and column sampling, and prints for each seed, on
the same test rows:

- ``ndcg``: nDCG@k of the ranker's score (what serving ranks by), and with an oracle
  (``oracle.parquet``, synthetic data) ``e_dcg``: its expected DCG@k over the oracle's, the oracle's
  probabilities as gains (far less noisy than the labels' nDCG);
- ``by probability``: the same figures when each customer's products are ordered by the per-product
  calibrated probability instead (ties: the score). The calibrators are monotone in the score within a
  product, so only the order across products changes;
- ``with pooled``: the products ordered by the ranker's score plus the pooled classifier's log-odds,
  each standardised within its ranking group (a blend of the listwise ranker and the pointwise
  baseline fitted on the same rows; printed when the config has the pooled baseline);

then the seeds' mean and spread, and ``average of seeds``: the products ordered by the mean of the
seeds' scores, each standardised within its ranking group (a bag of rankers), with its paired
difference in nDCG@k against the first seed. ``--set NAME=VALUE`` (repeatable) changes a ranker
hyper-parameter of the config for every seed (a JSON value; ``extra.NAME`` for LightGBM's own), to
compare variants on the same rows.

    python benchmarks/bench_ranker_seeds.py --home DIR --seeds 4
    python benchmarks/bench_ranker_seeds.py --home DIR --seeds 1 --set extra.objective='"rank_xendcg"'
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

BAG = "__average_of_seeds"
BY_PROBABILITY = "__by_probability"
WITH_POOLED = "__with_pooled"


def ranker_overrides(pairs: list[str]) -> dict[str, Any]:
    """``NAME=VALUE`` pairs (JSON values) as ranker config fields; ``extra.NAME`` goes to ``extra``.
    A pair that is not one exits with a one-line message."""
    from nextbest.training.config import RankerConfig

    fields: dict[str, Any] = {}
    for item in pairs:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected NAME=VALUE")
        if not name.startswith("extra.") and name not in RankerConfig.model_fields:
            known = ", ".join(RankerConfig.model_fields)
            raise SystemExit(f"--set {item!r}: {name!r} is not a ranker field ({known})")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            quoted = "NAME='\"text\"'"
            raise SystemExit(f"--set {item!r}: not a JSON value (quote a string: {quoted})") from None
        if name.startswith("extra."):
            fields.setdefault("extra", {})[name.removeprefix("extra.")] = parsed
        else:
            fields[name] = parsed
    return fields


def train_seed(seed: int, overrides: dict[str, Any] | None = None) -> tuple[pd.DataFrame, int]:
    """The scored test frame of ``nextbest train`` with ``seed`` (ablation off) and the ranker's
    ``overrides``, and the config's k."""
    from nextbest.settings import Settings
    from nextbest.training.cli import resolve_config_path
    from nextbest.training.config import load_config
    from nextbest.training.train import train

    settings = Settings()
    config = load_config(resolve_config_path(settings, None))
    fields = dict(overrides or {})
    if "extra" in fields:
        fields["extra"] = {**config.ranker.extra, **fields["extra"]}
    config = config.model_copy(
        update={
            "seed": seed,
            "ranker": config.ranker.model_validate(config.ranker.model_dump() | fields | {"seed": seed}),
            "ablation": config.ablation.model_copy(update={"enabled": False}),
        }
    )
    return train(settings, config).scored_test, config.k


def standardised(scored: pd.DataFrame, column: str) -> np.ndarray:
    """``column`` minus its ranking group's mean, over its group's sd (1 for a group of one row or ties)."""
    from nextbest.training.evaluate import GROUP_COLS

    groups = scored.groupby([scored[c] for c in GROUP_COLS], sort=False)[column]
    sd = groups.transform("std").fillna(1.0).replace(0.0, 1.0)
    return ((scored[column] - groups.transform("mean")) / sd).to_numpy(dtype=float)


def figures(scored: pd.DataFrame, column: str, k: int) -> dict[str, float]:
    """nDCG@k of ``column`` and, with the oracle's probabilities on every row, its expected DCG@k share."""
    from nextbest.columns import ORACLE_PROBABILITY
    from nextbest.training import evaluate as ev

    out = {"ndcg": ev.ndcg_mean_and_se(scored, column, k)[0]}
    if ORACLE_PROBABILITY in scored.columns and scored[ORACLE_PROBABILITY].notna().all():
        out["e_dcg"] = ev.expected_dcg_over_oracle(scored, column, k)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, required=True, help="a built NEXTBEST_HOME")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE",
        help="a ranker hyper-parameter for every seed (JSON value; extra.NAME for LightGBM's)",
    )
    args = parser.parse_args()
    overrides = ranker_overrides(args.set)
    os.environ["NEXTBEST_HOME"] = str(args.home.resolve())
    from nextbest.columns import PROBABILITY
    from nextbest.training import evaluate as ev

    score = ev.score_col(ev.RANKER)
    first: pd.DataFrame | None = None
    keys = [*ev.GROUP_COLS, "product_id"]
    standard: list[np.ndarray] = []
    rows: dict[str, dict[str, float]] = {}
    k = 0
    for seed in range(args.seeds):
        scored, k = train_seed(seed, overrides)
        if first is None:
            first = scored
        elif not scored[keys].equals(first[keys]):
            raise SystemExit("the test rows came back in another order: the seeds cannot be compared")
        by_probability = scored[PROBABILITY] + 1e-12 * scored[score]  # ties: the score
        reordered = figures(scored.assign(**{BY_PROBABILITY: by_probability}), BY_PROBABILITY, k)
        rows[f"seed {seed}"] = figures(scored, score, k) | {
            f"{name} by probability": value for name, value in reordered.items()
        }
        ranker_standardised = standardised(scored, score)
        pooled = ev.score_col(ev.POOLED)
        if pooled in scored.columns:
            chance = scored[pooled].clip(1e-9, 1 - 1e-9)
            log_odds = scored.assign(**{WITH_POOLED: np.log(chance / (1 - chance))})
            blend = ranker_standardised + standardised(log_odds, WITH_POOLED)
            rows[f"seed {seed}"] |= {
                f"{name} with pooled": value
                for name, value in figures(scored.assign(**{WITH_POOLED: blend}), WITH_POOLED, k).items()
            }
        standard.append(ranker_standardised)
        print(f"seed {seed}: " + ", ".join(f"{n} {v:.4f}" for n, v in rows[f"seed {seed}"].items()))
    assert first is not None
    bagged = first.assign(**{BAG: np.mean(standard, axis=0)})
    diff, se = ev.paired_ndcg_difference(bagged, BAG, score, k)
    print(f"\n{args.home}: {first.groupby(list(ev.GROUP_COLS)).ngroups:,} test groups, k = {k}")
    for name in rows[next(iter(rows))]:
        values = [row[name] for row in rows.values()]
        spread = statistics.stdev(values) if len(values) > 1 else float("nan")
        print(
            f"{name:<24} mean {statistics.fmean(values):.4f}  sd {spread:.4f}  "
            f"range {min(values):.4f}..{max(values):.4f}"
        )
    bag = figures(bagged, BAG, k)
    print("average of seeds         " + ", ".join(f"{n} {v:.4f}" for n, v in bag.items()))
    print(f"average of seeds - seed 0: nDCG@{k} {diff:+.4f} (paired s.e. {se:.4f})")


if __name__ == "__main__":
    main()
