"""Ingest + dbt build cost for synthetic banks of growing size and for The Complete Journey.

Prints wall time and peak memory (whole process tree, dbt included) per stage (ingest; dbt build with
its tests, without Feast: see bench_feature_store.py), and the growth ratio
against the smallest synthetic size, so cost growth is visible. Target: 1M customers x 24 months
builds in under 10 minutes within 8 GiB on the 2-core machine.

    python benchmarks/bench_build.py                       # 10k, 100k, 1M + Complete Journey
    python benchmarks/bench_build.py --sizes 10000 --no-cj # quick look
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import Measured, measure  # noqa: E402

NEXTBEST = [sys.executable, "-m", "nextbest.cli"]


def run_case(label: str, ingest_args: list[str], home: Path) -> dict[str, Measured]:
    env = {**os.environ, "NEXTBEST_HOME": str(home)}
    out = {"ingest": measure([*NEXTBEST, "ingest", *ingest_args], env)}
    if out["ingest"].returncode != 0:
        print(f"{label}: ingest failed (exit {out['ingest'].returncode})")
        return out
    out["build"] = measure([*NEXTBEST, "build", "--no-feast"], env)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--no-cj", action="store_true", help="skip The Complete Journey")
    parser.add_argument("--oracle", action="store_true", help="also write the oracle (slower)")
    args = parser.parse_args()

    cases: list[tuple[str, list[str], int | None]] = [
        (
            f"synthetic {n:,} x {args.months}m",
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
        cases.append(("completejourney (product_category)", ["completejourney"], None))

    header = f"{'dataset':<36} {'stage':<7} {'seconds':>9} {'peak GiB':>9} {'x time vs first':>16}"
    print(header)
    print("-" * len(header))
    first: dict[str, float] = {}
    for label, ingest_args, _ in cases:
        with tempfile.TemporaryDirectory(prefix="nextbest-bench-") as tmp:
            results = run_case(label, ingest_args, Path(tmp))
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


if __name__ == "__main__":
    main()
