"""Which adoption mechanisms does the ranker miss? The oracle's logit, term by term, against the ranker.

On an alt dataset of ``alt_datasets.py`` (trained as ``bench_model_signal.py`` trains it: ``ingest dir ->
build -> train`` with no ``--config``) the true adoption logit of every test row is a sum of known terms
(``LOGIT_TERMS``: product base, income, segment, life stage, season, tenure, category spend, sequence,
first product). Only the order within a ranking group matters, so every score and term is centred on its
group's mean. Per term, the benchmark prints:

- ``sd``: the term's spread within groups (how much it can reorder a customer's products);
- ``weight``: the ranker's least-squares weight on it (all terms together), over its weight on the
  product base term. The oracle weighs every term 1; a term the ranker ignores weighs ~0;
- ``gain if used``: the ranker's expected DCG@7 over the oracle's (the oracle's probabilities as gains,
  as ``r_gain`` in ``bench_model_signal.py``) after adding what the ranker misses of that term alone
  (``(weight of base - weight of term) * term``). A first-order guide to where the missing signal is,
  not a model: the ranker's score is not linear in the terms.

    python benchmarks/bench_oracle_attribution.py --dataset insurer --customers 2000 --months 18 --seed 0
    python benchmarks/bench_oracle_attribution.py --dataset telecom --keep /tmp/attr  # rerun: train only
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from alt_datasets import LOGIT_TERMS, VARIANTS, generate_alt  # noqa: E402
from bench_model_signal import BUILT_MARKER, K, _ingest_and_build  # noqa: E402

KEYS = ["customer_id", "snapshot_on", "product_id"]
GROUP = ["customer_id", "snapshot_on"]


def built_home(variant: str, customers: int, months: int, seed: int, home: Path) -> Path:
    """``home`` ingested and built from the alt dataset (kept when built from the same arguments), and
    the path of its oracle's terms (written beside the home's sources, outside the raw data)."""
    stamp = json.dumps({"customers": customers, "months": months, "seed": seed})
    terms = home / "oracle_terms.parquet"
    built = home / BUILT_MARKER
    if built.is_file() and built.read_text(encoding="utf-8") == stamp and terms.is_file():
        return terms
    home.mkdir(parents=True, exist_ok=True)
    omp = os.environ.get("OMP_WAIT_POLICY", "PASSIVE")
    env = {**os.environ, "NEXTBEST_HOME": str(home), "OMP_WAIT_POLICY": omp}
    source = home / "sources" / f"acme-{variant}"
    generate_alt(source, variant, customers=customers, months=months, seed=seed, terms_path=terms)
    _ingest_and_build(["dir", str(source)], env, home / "bench.log", built, stamp)
    return terms


def scored_test(home: Path, variant: str) -> pd.DataFrame:
    """The test rows with every model's score, from ``nextbest train`` with the default config (the
    ablation off: it changes no score)."""
    os.environ["NEXTBEST_HOME"] = str(home)
    from nextbest.settings import Settings
    from nextbest.training.config import default_config_path, load_config
    from nextbest.training.train import train

    config = load_config(default_config_path(f"acme-{variant}"))
    config = config.model_copy(update={"ablation": config.ablation.model_copy(update={"enabled": False})})
    return train(Settings(), config).scored_test


def centred(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """``values`` minus their group's mean (``values``: rows, or rows x columns)."""
    frame = pd.DataFrame(values)
    return (frame - frame.groupby(group).transform("mean")).to_numpy()


def attribution(scored: pd.DataFrame, terms: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per term: within-group sd, the ranker's relative weight and its gain share if the term were used
    fully; and the gain shares of the ranker, popularity and the ranker with every term used fully."""
    from nextbest.training.evaluate import score_col
    from nextbest.training.metrics import gain_share_at_k

    frame = scored.astype({"customer_id": str, "product_id": str}).assign(
        snapshot_on=pd.to_datetime(scored["snapshot_on"])
    )
    columns = [f"term_{name}" for name in LOGIT_TERMS]  # "income", "segment" are features too
    terms = terms.astype({"customer_id": str, "product_id": str}).assign(
        snapshot_on=pd.to_datetime(terms["snapshot_on"])
    )
    terms = terms.rename(columns=dict(zip(LOGIT_TERMS, columns, strict=True)))
    frame = frame.merge(terms, on=KEYS, how="inner", validate="one_to_one")
    if len(frame) != len(scored):
        raise RuntimeError(f"{len(scored) - len(frame)} test rows have no oracle terms")
    group = frame.groupby(GROUP).ngroup().to_numpy()
    values = frame[columns].to_numpy()
    ranker = frame[score_col("ranker")].to_numpy(dtype=float)
    weights = np.linalg.lstsq(centred(values, group), centred(ranker, group).ravel(), rcond=None)[0]
    base = weights[LOGIT_TERMS.index("base")]

    def share(score: np.ndarray) -> float:
        return gain_share_at_k(frame.assign(_s=score), K, GROUP, "oracle_probability", "_s")

    rows = {
        name: {
            "sd": float(centred(values[:, i], group).std()),
            "weight": float(weights[i] / base),
            "gain if used": share(ranker + (base - weights[i]) * values[:, i]),
        }
        for i, name in enumerate(LOGIT_TERMS)
    }
    totals = {
        "ranker": share(ranker),
        "popularity": share(frame[score_col("popularity")].to_numpy(dtype=float)),
        "ranker, every term used": share(ranker + values @ (base - weights)),
    }
    return pd.DataFrame.from_dict(rows, orient="index"), totals


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", choices=sorted(VARIANTS), default="insurer")
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--months", type=int, default=18)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="home to build in and keep (a rerun trains only)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nextbest-attribution-") as tmp:
        home = args.keep or Path(tmp)
        terms_path = built_home(args.dataset, args.customers, args.months, args.seed, home)
        scored = scored_test(home, args.dataset)
        table, totals = attribution(scored, pd.read_parquet(terms_path))
    print(
        f"\n{args.dataset}: {args.customers:,} customers x {args.months} months, seed {args.seed}; "
        f"{scored.groupby(GROUP).ngroups:,} test groups; expected DCG@{K} over the oracle's"
    )
    print(f"{'term':<12} {'sd':>6} {'weight':>7} {'gain if used':>13}")
    for name, row in table.iterrows():
        print(f"{name:<12} {row['sd']:>6.3f} {row['weight']:>7.2f} {row['gain if used']:>13.4f}")
    print(", ".join(f"{name} {value:.4f}" for name, value in totals.items()))


if __name__ == "__main__":
    main()
