"""Two LightGBM boosters as one: the trees of each, scaled, in one booster (LightGBM's text format).

The ranker's pointwise part (``ranker.add_pointwise``) is a binary LightGBM fitted on the ranker's own
rows; its trees go into the ranker's booster, so that serving, the bundle and every scoring path see
one model. A booster's raw score is the sum of its trees' leaf values, so a tree whose leaf values are
multiplied by ``w`` adds ``w`` times its output: ``merge_boosters([(a, n, 1.0), (b, None, w)])``
predicts ``a``'s first ``n`` trees plus ``w`` times ``b``'s raw score, to float precision.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import lightgbm as lgb
import numpy as np

_TREE_START = re.compile(r"\n(?=Tree=\d+\n)")
_END_OF_TREES = "end of trees"


def _parts(model: str) -> tuple[str, list[str], str]:
    """A model text's header (without ``tree_sizes``, which the loader does not need), its tree
    blocks and everything after the trees (feature importances, parameters, pandas categories)."""
    head, _, rest = model.partition("\nTree=")
    trees, _, foot = ("Tree=" + rest).partition(_END_OF_TREES)
    header = "\n".join(line for line in head.split("\n") if not line.startswith("tree_sizes="))
    return header.rstrip("\n"), _TREE_START.split(trees.strip("\n")), foot


def _renumbered(tree: str, index: int, weight: float) -> str:
    lines = tree.strip("\n").split("\n")
    out = [f"Tree={index}"]
    for line in lines[1:]:
        if weight != 1.0 and line.startswith("leaf_value="):
            values = (float(v) * weight for v in line.removeprefix("leaf_value=").split(" "))
            line = "leaf_value=" + " ".join(repr(v) for v in values)
        out.append(line)
    return "\n".join(out)


def merge_boosters(parts: Sequence[tuple[lgb.Booster, int | None, float]]) -> lgb.Booster:
    """One booster holding, for each ``(booster, n_trees, weight)``, the first ``n_trees`` trees of
    ``booster`` (None: all) with their leaf values times ``weight``, in that order. The header and the
    parameters are the first booster's: the boosters must share one feature list (and encoding)."""
    if not parts:
        raise ValueError("merge_boosters needs at least one booster")
    names = {tuple(booster.feature_name()) for booster, _, _ in parts}
    if len(names) != 1:
        raise ValueError("merge_boosters: the boosters have different features")
    header, _, foot = _parts(parts[0][0].model_to_string())
    trees: list[str] = []
    for booster, n_trees, weight in parts:
        kept = _parts(booster.model_to_string(num_iteration=-1 if n_trees is None else n_trees))[1]
        trees += [_renumbered(tree, len(trees) + i, weight) for i, tree in enumerate(kept)]
    return lgb.Booster(model_str=f"{header}\n\n" + "\n\n".join(trees) + f"\n\n\n{_END_OF_TREES}{foot}")


def binary_classifier(
    n_estimators: int, learning_rate: float, num_leaves: int, min_child_samples: int, n_jobs: int, seed: int
) -> lgb.LGBMClassifier:
    """A deterministic, quiet binary LightGBM: the ranker's pointwise part and the binary baselines."""
    return lgb.LGBMClassifier(
        objective="binary",
        n_estimators=n_estimators,
        learning_rate=learning_rate,
        num_leaves=num_leaves,
        min_child_samples=min_child_samples,
        n_jobs=n_jobs,
        random_state=seed,
        deterministic=True,
        force_col_wise=True,
        verbose=-1,
    )


def within_group_sd(scores: np.ndarray, group_sizes: np.ndarray) -> float:
    """The mean standard deviation (ddof 0) of ``scores`` within consecutive groups of ``group_sizes``,
    over the groups of two rows or more (1.0 when there is none, or every group is a tie)."""
    sizes = np.asarray(group_sizes, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    values = np.asarray(scores, dtype=float)
    means = np.add.reduceat(values, starts) / sizes
    squares = np.add.reduceat(values**2, starts) / sizes
    sd = np.sqrt(np.clip(squares - means**2, 0.0, None))[sizes > 1]
    mean = float(sd.mean()) if len(sd) else 0.0
    return mean if mean > 0 else 1.0
