"""Training end to end: split by snapshot, fit the ranker and baselines, calibrate, evaluate, save.

``train(settings, config)`` is the whole job (what ``nextbest train`` runs). Its stages are public
functions a notebook can call one by one:

    split = split_snapshots(labelled_snapshots(settings), config.split)
    frames = load_frames(settings, config, split)
    models = fit_models(
        frames.train, frames.valid, frames.feature_cols, config, train_sampled=frames.train_sampled
    )
    scored = score_test(models, frames.test)
    ablation = ablate_feature_groups(models, scored, frames.feature_groups, config)
    evaluation = evaluate_scored(scored, models, config, frames.feature_groups, ablation)
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nextbest.columns import EVENT_TIMESTAMP, LABEL, ORACLE_PROBABILITY, PROBABILITY, PRODUCT_ID, SCORE
from nextbest.features.store import check_applied_build, get_store
from nextbest.marts import FCT_CANDIDATE_RETRIEVAL_RECALL, build_record, manifest_path, mart_path
from nextbest.settings import BuildVars, Settings, TrainingSettings
from nextbest.training import evaluate as ev
from nextbest.training.artifacts import ModelBundle, file_sha256, save_bundle
from nextbest.training.baselines import OracleBaseline, PerProductModels, PooledClassifier, PopularityBaseline
from nextbest.training.calibration import Calibrators, fit_calibrators
from nextbest.training.config import ConfigError, RankerConfig, SplitConfig, TrainingConfig
from nextbest.training.datasets import (
    feature_columns,
    feature_groups,
    labelled_snapshots,
    sampled_training_frame,
    served_columns,
    training_frame,
)
from nextbest.training.distributed import RankerFit, ranker_fitter
from nextbest.training.evaluate import Evaluation
from nextbest.training.metrics import ndcg_at_k_counting_missed
from nextbest.training.ranker import (
    FittedRanker,
    RankingData,
    Sampling,
    fit_ranker,
    prepare_groups,
    same_season,
)
from nextbest.training.report import reports_dir, write_report
from nextbest.training.scoring import score_bundle

Progress = Callable[[str], None]


BEFORE_REFIT = "ranker_before_refit"
"""The scored test frame's column of the ranker's scores before its refit (``config.refit``; not a
``score__`` model column): what the report's before/after line and the ablation compare with."""


class QualityRegressionError(RuntimeError):
    """A metric fell below its ``expected_metrics`` minimum (the report was written, no bundle saved)."""


# --------------------------------------------------------------------------- split


@dataclass(frozen=True)
class SnapshotSplit:
    """Labelled snapshot dates (month ends) of each split, ascending, pairwise disjoint."""

    train: list[date]
    valid: list[date]
    test: list[date]

    def describe(self) -> str:
        """One line: each split's first..last date and its number of snapshots."""
        parts = []
        for name in ("train", "valid", "test"):
            dates = getattr(self, name)
            span = f"{dates[0]}" if len(dates) == 1 else f"{dates[0]}..{dates[-1]}"
            parts.append(f"{name} {span} ({len(dates)})")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, str]:
        """First/last date of each split as ISO strings (the bundle's ``data_range``)."""
        out = {}
        for name in ("train", "valid", "test"):
            dates = getattr(self, name)
            out[f"{name}_start"], out[f"{name}_end"] = dates[0].isoformat(), dates[-1].isoformat()
        return out


def fitted_split(n_snapshots: int, split: SplitConfig) -> SplitConfig:
    """``split`` with validation and test snapshots given up, one at a time (validation first, down to
    1 each), until ``split.min_train_snapshots`` training snapshots remain of ``n_snapshots``; unchanged
    without ``min_train_snapshots`` or when the history is long enough."""
    if split.min_train_snapshots is None:
        return split
    valid, test = split.valid_snapshots, split.test_snapshots
    give_valid = True
    while n_snapshots - valid - test - 2 * split.gap_snapshots < split.min_train_snapshots:
        if valid == 1 and test == 1:
            break
        if (give_valid and valid > 1) or test == 1:
            valid -= 1
        else:
            test -= 1
        give_valid = not give_valid
    return split.model_copy(update={"valid_snapshots": valid, "test_snapshots": test})


def split_snapshots(snapshots: Sequence[date], split: SplitConfig) -> SnapshotSplit:
    """Split labelled snapshots by time: ... train | gap | valid | gap | test (the latest).

    With ``split.min_train_snapshots``, a history too short for it shrinks validation, then test
    (alternately, down to 1 snapshot each; see ``fitted_split``).

    Raises:
        ValueError: fewer snapshots than test + valid + 2 gaps + 1 training snapshot.
    """
    ordered = sorted(set(snapshots))
    split = fitted_split(len(ordered), split)
    needed = split.test_snapshots + split.valid_snapshots + 2 * split.gap_snapshots + 1
    if len(ordered) < needed:
        raise ConfigError(
            f"{len(ordered)} labelled snapshot(s); the split needs at least {needed} "
            f"(test {split.test_snapshots}, valid {split.valid_snapshots}, gaps 2 x {split.gap_snapshots}, "
            "train >= 1)"
        )
    end_valid = len(ordered) - split.test_snapshots - split.gap_snapshots
    start_valid = end_valid - split.valid_snapshots
    end_train = start_valid - split.gap_snapshots
    start_train = 0 if split.max_train_snapshots is None else max(0, end_train - split.max_train_snapshots)
    return SnapshotSplit(
        train=ordered[start_train:end_train],
        valid=ordered[start_valid:end_valid],
        test=ordered[len(ordered) - split.test_snapshots :],
    )


def candidate_retrieval_groups(settings: Settings, snapshots: Sequence[date]) -> pd.DataFrame | None:
    """The ranking groups at ``snapshots`` of a large catalogue's candidate retrieval stage
    (``fct_candidate_retrieval_recall``): customer, event timestamp, their adoptions, the ones retrieved
    and ``missed`` (left out: no ranker can find them). None with the stage off (the mart has no row) or
    a build older than the mart."""
    path = mart_path(settings, FCT_CANDIDATE_RETRIEVAL_RECALL)
    if not path.exists():
        return None
    groups = pd.read_parquet(path)
    groups = groups[pd.to_datetime(groups["snapshot_on"]).dt.date.isin(set(snapshots))]
    if groups.empty:
        return None
    return groups.assign(missed=groups["count_adoptions"] - groups["count_adoptions_retrieved"])


def _timestamps_like(values: pd.Series, like: pd.Series) -> pd.Series:
    """``values`` (naive UTC or aware timestamps) in the dtype of ``like``, so that the two join."""
    values = pd.to_datetime(values)
    tz = getattr(like.dtype, "tz", None)
    if tz is not None:
        values = (values.dt.tz_localize("UTC") if values.dt.tz is None else values).dt.tz_convert(tz)
    elif values.dt.tz is not None:
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    return values.astype(like.dtype)


def candidate_retrieval_summary(groups: pd.DataFrame | None) -> dict[str, Any] | None:
    """``adoptions``, ``adoptions_retrieved`` and their ``recall`` over ``candidate_retrieval_groups``."""
    if groups is None:
        return None
    adoptions, kept = int(groups["count_adoptions"].sum()), int(groups["count_adoptions_retrieved"].sum())
    return {
        "adoptions": adoptions,
        "adoptions_retrieved": kept,
        "recall": kept / adoptions if adoptions else None,
    }


@dataclass
class Frames:
    """Retrieved feature frames of each split (sorted by event_timestamp, customer, product)."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    feature_cols: list[str]
    feature_groups: dict[str, str] = field(default_factory=dict)
    """Feature -> feature group (see ``nextbest.training.datasets.feature_groups``)."""
    train_sampled: Sampling | None = None
    """The sampling ``train`` went through before its features were read (``sampled_training_frame``)."""

    @property
    def has_oracle(self) -> bool:
        """True when every test row carries the synthetic oracle's probability."""
        return ORACLE_PROBABILITY in self.test.columns and bool(self.test[ORACLE_PROBABILITY].notna().all())


def load_frames(
    settings: Settings, config: TrainingConfig, split: SnapshotSplit, progress: Progress | None = None
) -> Frames:
    """Labels + point-in-time features of every split (through the FeatureService)."""
    say = progress or (lambda _msg: None)
    store = get_store(settings)
    cols = feature_columns(store, config)
    check_applied_build(settings, store)  # features and labels from one build
    # before the minutes of retrieval: a misspelt excluded group fails at once
    groups = kept_feature_groups(feature_groups(settings, cols), config.exclude_feature_groups)
    say(f"retrieval: train ({len(split.train)} snapshot(s), sampled)")
    train, sampled = sampled_training_frame(settings, config, split.train, progress)
    parts = {}
    for name in ("valid", "test"):
        say(f"retrieval: {name} ({len(getattr(split, name))} snapshot(s))")
        parts[name] = training_frame(settings, config, getattr(split, name), progress)
    return Frames(train, parts["valid"], parts["test"], list(groups), groups, sampled)


def kept_feature_groups(groups: dict[str, str], excluded: Sequence[str]) -> dict[str, str]:
    """``groups`` (feature -> group, in feature order) without the features of the ``excluded`` groups.

    Raises:
        ConfigError: an excluded group that no feature belongs to (a typo would silently keep it).
    """
    unknown = sorted(set(excluded) - set(groups.values()))
    if unknown:
        known = ", ".join(sorted(set(groups.values())))
        raise ConfigError(f"exclude_feature_groups: no feature group {unknown}; the groups are: {known}")
    return {feature: group for feature, group in groups.items() if group not in excluded}


# --------------------------------------------------------------------------- fit


@dataclass
class FittedModels:
    """The ranker, its calibrators and every baseline, fitted on the same training rows
    (``valid_data``: the validation groups of early stopping)."""

    ranker: FittedRanker
    calibrators: Calibrators | None
    baselines: dict[str, Any]
    train_data: RankingData
    valid_groups: int
    seconds: dict[str, float] = field(default_factory=dict)
    valid_data: RankingData | None = None
    selection: GroupSelection | None = None
    refit: Refit | None = None


def fit_models(
    train_df: pd.DataFrame,
    valid_df: pd.DataFrame,
    feature_cols: Sequence[str],
    config: TrainingConfig,
    with_oracle: bool = False,
    progress: Progress | None = None,
    fit: RankerFit = fit_ranker,
    groups: Mapping[str, str] | None = None,
    train_sampled: Sampling | None = None,
) -> FittedModels:
    """Fit the ranker (early stopping on ``valid_df``), the baselines and the calibrators.

    With ``config.feature_selection.enabled``, the feature groups (``groups``: feature -> group; None:
    every feature its own group) that the validation months say hurt are dropped and the ranker is
    refitted without them (``select_feature_groups``); the baselines keep every feature.

    Training groups without a positive are dropped (no lambdarank gradient) and negatives are
    down-sampled per ``config.max_negatives_per_group``; the baselines are fitted on exactly the kept
    rows, and the per-product models are calibrated on ``valid_df`` (``PerProductModels.calibrate``:
    their probabilities rank one customer's products only once on one scale). Validation groups
    without a positive are left out of early stopping only; the calibrators are fitted on the whole
    validation frame (never down-sampled) scored by the ranker.
    """
    say = progress or (lambda _msg: None)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    train = prepare_groups(
        train_df, feature_cols, True, config.max_negatives_per_group, config.seed, sampled=train_sampled
    )
    valid = prepare_groups(valid_df, feature_cols, True, categories=train.categories)
    say(
        f"fit: ranker on {len(train.frame):,} rows, {train.n_groups:,} groups "
        f"({train.n_groups_dropped:,} without positive dropped; negative keep rate "
        f"{train.negative_keep_rate:.3f}), valid {valid.n_groups:,} groups"
    )
    ranker = fit(train, valid, config.ranker, config.k)
    seconds["ranker"] = time.perf_counter() - started
    say(f"fit: ranker best iteration {ranker.tree_counts}, valid ndcg {ranker.best_valid_ndcg:.4f}")
    if config.ranker.seasonal_offset:
        say(f"fit: seasonal offset {ranker.seasonal_offset:.3f} x ln(seasonal index), weight "
            f"{ranker.seasonal_weight:g} in log-rate units, the trees fitted on top of it (0: no index "
            "known in the training months)")
    if ranker.stalled:
        say("fit: WARNING the ranker stopped growing before early stopping: a tree found no split that meets "
            "the rules (lower ranker.min_child_samples or reg_lambda)")
    selection = None
    if config.feature_selection.enabled:
        started = time.perf_counter()
        selection = select_feature_groups(train, valid, ranker, groups or {}, config, say)
        if selection.dropped:
            keep = features_without(train.feature_cols, groups or {}, selection.dropped)
            train, valid = _without_features(train, keep), _without_features(valid, keep)
            ranker = fit(train, valid, config.ranker, config.k)
            say(f"fit: ranker without {', '.join(selection.dropped)}: best iteration {ranker.best_iteration}")
        seconds["feature_selection"] = time.perf_counter() - started

    refit = None
    if config.refit.enabled:
        started = time.perf_counter()
        refit = refit_on_validation(fit, train, valid, valid_df, ranker, config, say)
        ranker, train = refit.ranker, refit.train_data
        seconds["refit"] = time.perf_counter() - started

    if refit is None:
        baselines = fit_baselines(train.frame, feature_cols, config, with_oracle, say, seconds)
    else:  # the per-product models' Platt calibration needs months they did not see: training months only
        others = [b for b in config.baselines if b != ev.PER_PRODUCT]
        shared = config.model_copy(update={"baselines": others})
        baselines = fit_baselines(train.frame, feature_cols, shared, with_oracle, say, seconds)
        if ev.PER_PRODUCT in config.baselines:
            only = config.model_copy(update={"baselines": [ev.PER_PRODUCT]})
            rows = refit.selected_data.frame
            baselines |= fit_baselines(rows, feature_cols, only, with_oracle, say, seconds)
    if ev.PER_PRODUCT in baselines:  # one scale before one customer's products are compared
        started = time.perf_counter()
        baselines[ev.PER_PRODUCT].calibrate(valid_df, config.calibration.min_positives)
        seconds[ev.PER_PRODUCT] += time.perf_counter() - started

    started = time.perf_counter()
    say(f"calibration: {len(valid_df):,} validation rows, {config.calibration.feature_cols or 'score only'}")
    if refit is not None:
        calib_frame = refit.out_of_fold
    else:
        calib_frame = valid_df.copy(deep=False)
        calib_frame[SCORE] = scores_by_block(ranker.score, valid_df)
    calibrators = fit_calibrators(
        calib_frame,
        feature_cols=config.calibration.feature_cols,
        min_positives=config.calibration.min_positives,
        params=config.calibration,
    )
    seconds["calibration"] = time.perf_counter() - started
    return FittedModels(
        ranker, calibrators, baselines, train, valid.n_groups, seconds, valid_data=valid, selection=selection,
        refit=refit,
    )


@dataclass
class Refit:
    """The ranker refitted on training + validation groups (``config.refit``).

    Attributes:
        ranker: the refit, ``n_trees`` trees; the model that is saved and evaluated.
        train_data: its groups (training + validation months, sampled like the training months).
        selected: the ranker early-stopped on validation, fitted on the training months only.
        selected_data: the training groups of ``selected``.
        n_trees: ``selected.best_iteration`` scaled by the groups the refit gains.
        out_of_fold: the whole validation frame with ``score`` from refits that did not see each row's
            month (training + the other validation months): what the calibrators are fitted on.
    """

    ranker: FittedRanker
    train_data: RankingData
    selected: FittedRanker
    selected_data: RankingData
    n_trees: int
    out_of_fold: pd.DataFrame


def groups_with(train: RankingData, frame: pd.DataFrame, config: TrainingConfig) -> RankingData:
    """``train``'s groups plus those of ``frame`` (sampled as the training months), as one training set
    with its own categories."""
    both = pd.concat([train.frame, frame], ignore_index=True)
    data = prepare_groups(both, train.feature_cols, True, config.max_negatives_per_group, config.seed)
    return replace(data, n_groups_dropped=data.n_groups_dropped + train.n_groups_dropped)


def scaled_trees(trees: int, selected_data: RankingData, data: RankingData, cap: int) -> int:
    """``trees`` (chosen on ``selected_data``) scaled by how many more groups ``data`` has (1..``cap``)."""
    return min(cap, max(1, round(trees * data.n_groups / selected_data.n_groups)))


def fit_trees(
    fit: RankerFit,
    data: RankingData,
    params: RankerConfig,
    selected: FittedRanker,
    selected_data: RankingData,
    k: int,
) -> FittedRanker:
    """``fit`` on ``data`` of ``selected``'s trees, each part's count scaled by the groups ``data`` gains
    over ``selected_data`` (``scaled_trees``), every one kept (no early stopping, no validation read)."""
    trees = scaled_trees(selected.best_iteration, selected_data, data, params.n_estimators)
    fixed = same_season(params, selected).model_copy(update={"n_estimators": trees})
    if params.pointwise is not None and selected.pointwise_trees:
        part = params.pointwise
        trees = scaled_trees(selected.pointwise_trees, selected_data, data, part.n_estimators)
        fixed = fixed.model_copy(update={"pointwise": part.model_copy(update={"n_estimators": trees})})
    return fit(data, data, fixed, k, select_trees=False)


def refit_on_validation(
    fit: RankerFit,
    train: RankingData,
    valid: RankingData,
    valid_df: pd.DataFrame,
    selected: FittedRanker,
    config: TrainingConfig,
    progress: Progress | None = None,
) -> Refit:
    """Refit ``selected`` (early-stopped on ``valid``) on training + validation groups, and score each
    validation month with a refit on training + the other validation months (``Refit.out_of_fold``).

    One validation month: its out-of-fold scores are ``selected``'s own (trained without it).
    """
    say = progress or (lambda _msg: None)
    k = config.k
    data = groups_with(train, valid.frame, config)
    ranker = fit_trees(fit, data, config.ranker, selected, train, k)
    say(f"refit: ranker on training + validation, {data.n_groups:,} groups, {ranker.tree_counts} trees")
    ranker.best_valid_ndcg = selected.best_valid_ndcg  # the held-out estimate, not the refit's own
    months = sorted(valid_df[EVENT_TIMESTAMP].unique())
    parts = []
    for i, month in enumerate(months, start=1):
        held_out = valid_df[valid_df[EVENT_TIMESTAMP] == month].copy(deep=False)
        others = valid.frame[valid.frame[EVENT_TIMESTAMP] != month]
        if len(months) == 1:
            scorer = selected
        else:
            fold = groups_with(train, others, config)
            say(f"refit: calibration fold {i}/{len(months)}, without {pd.Timestamp(month):%Y-%m}")
            scorer = fit_trees(fit, fold, config.ranker, selected, train, k)
        held_out[SCORE] = scores_by_block(scorer.score, held_out)
        parts.append(held_out)
    out_of_fold = pd.concat(parts, ignore_index=True)
    return Refit(ranker, data, selected, train, ranker.best_iteration, out_of_fold)


def fit_baselines(
    train_rows: pd.DataFrame,
    feature_cols: Sequence[str],
    config: TrainingConfig,
    with_oracle: bool,
    progress: Progress | None = None,
    seconds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The configured baselines fitted on ``train_rows`` (the ranker's own training rows)."""
    say = progress or (lambda _msg: None)
    seconds = seconds if seconds is not None else {}
    features = [c for c in feature_cols if c != PRODUCT_ID]
    params = config.baseline_params
    makers: dict[str, Callable[[], Any]] = {
        ev.POPULARITY: PopularityBaseline,
        ev.PER_PRODUCT: lambda: PerProductModels(
            features, min_positives=config.baseline_params.per_product_min_positives, params=params
        ),
        ev.POOLED: lambda: PooledClassifier(features, params=params),
        ev.ORACLE: OracleBaseline,
    }
    fitted = {}
    for name in config.baselines:
        if name == ev.ORACLE and not with_oracle:
            continue
        say(f"baselines: {name}")
        started = time.perf_counter()
        fitted[name] = makers[name]().fit(train_rows)
        seconds[name] = time.perf_counter() - started
    return fitted


# --------------------------------------------------------------------------- evaluate


def score_test(models: FittedModels, test_df: pd.DataFrame) -> pd.DataFrame:
    """``test_df`` plus ``score__<model>`` for the ranker and each baseline, the calibrated
    ``probability`` and, after a refit, ``BEFORE_REFIT`` (rows and order unchanged; groups without
    positive kept)."""
    scored = test_df.copy(deep=False)  # new columns, the same feature columns (no copy of them)
    scored.index = pd.RangeIndex(len(scored))
    blocks = row_blocks(len(scored))
    ranker = [score_bundle(models, scored.iloc[rows]) for rows in blocks]
    scored[ev.score_col(ev.RANKER)] = np.concatenate([r.score for r in ranker])
    scored[SCORE] = scored[ev.score_col(ev.RANKER)]
    for name, baseline in models.baselines.items():
        scored[ev.score_col(name)] = scores_by_block(baseline.score, scored)
    if models.calibrators is not None:
        scored[PROBABILITY] = np.concatenate([r.probability for r in ranker])
    if models.refit is not None:
        scored[BEFORE_REFIT] = scores_by_block(models.refit.selected.score, scored)
    return scored


SCORING_BLOCK_ROWS = 1_000_000
"""Rows scored at once in training and evaluation: a model's input matrix is ~8 bytes per row and feature,
so one 5.2M-row month of The Complete Journey's product types would need GBs per model at once."""


def row_blocks(n_rows: int, size: int | None = None) -> list[slice]:
    """Consecutive slices covering ``range(n_rows)``, each of at most ``size`` rows (default
    ``SCORING_BLOCK_ROWS``; one empty slice for no rows)."""
    size = size or SCORING_BLOCK_ROWS
    return [slice(start, min(start + size, n_rows)) for start in range(0, n_rows, size)] or [slice(0, 0)]


def scores_by_block(score: Callable[[pd.DataFrame], np.ndarray], frame: pd.DataFrame) -> np.ndarray:
    """``score(frame)`` computed on ``row_blocks`` of ``frame`` (rows are scored independently), as floats."""
    blocks = row_blocks(len(frame))
    return np.concatenate([np.asarray(score(frame.iloc[rows]), dtype=float) for rows in blocks])


def _without_features(data: RankingData, keep: Sequence[str]) -> RankingData:
    """``data`` restricted to the features ``keep`` (same rows, groups and labels)."""
    return replace(
        data,
        features=data.features[list(keep)],
        feature_cols=list(keep),
        categories={c: v for c, v in data.categories.items() if c in keep},
    )


def group_members(features: Sequence[str], groups: Mapping[str, str]) -> dict[str, list[str]]:
    """Group -> its features, in ``features`` order (a feature missing from ``groups`` is its own group)."""
    members: dict[str, list[str]] = {}
    for feature in features:
        members.setdefault(groups.get(feature, feature), []).append(feature)
    return members


def features_without(features: Sequence[str], groups: Mapping[str, str], dropped: Sequence[str]) -> list[str]:
    """``features`` without those whose group is in ``dropped`` (a feature missing from ``groups`` is its
    own group), in order."""
    return [f for f in features if groups.get(f, f) not in dropped]


def refittable_groups(members: Mapping[str, Sequence[str]], skip: Sequence[str]) -> list[str]:
    """The groups of ``members`` a ranker can be refitted without: not in ``skip`` and not holding every
    feature, in ``members`` order."""
    n_features = sum(len(features) for features in members.values())
    return [g for g in members if g not in skip and len(members[g]) < n_features]


def refit_params(config: TrainingConfig, full: FittedRanker) -> RankerConfig:
    """The ranker's parameters for a refit without a group: trees capped at ``config.ablation.n_estimators``,
    default twice the ``full`` ranker's ``best_iteration`` (>= early_stopping_rounds, <= n_estimators),
    on top of its season (``same_season``)."""
    n_estimators = config.ablation.n_estimators or min(
        config.ranker.n_estimators, max(2 * full.best_iteration, config.ranker.early_stopping_rounds)
    )
    return same_season(config.ranker, full).model_copy(update={"n_estimators": n_estimators})


def refit_without_groups(
    train: RankingData,
    valid: RankingData,
    members: Mapping[str, Sequence[str]],
    todo: Sequence[str],
    params: RankerConfig,
    k: int,
    progress: Progress | None = None,
    stage: str = "ablation",
) -> dict[str, FittedRanker]:
    """Group -> the ranker refitted on ``train`` without that group's features (early stopping on
    ``valid``), for each group of ``todo``."""
    say = progress or (lambda _msg: None)
    features = train.feature_cols
    out = {}
    for i, group in enumerate(todo, start=1):
        keep = [f for f in features if f not in members[group]]
        say(f"{stage} {i}/{len(todo)}: without {group} ({len(members[group])} feature(s))")
        out[group] = fit_ranker(_without_features(train, keep), _without_features(valid, keep), params, k)
    return out


@dataclass
class GroupSelection:
    """Which feature groups the validation months dropped (``select_feature_groups``).

    Attributes:
        table: index ``group``; ``n_features``, ``valid_ndcg@k_diff`` (refit without the group minus
            the full ranker, over the validation groups with a positive), ``valid_ndcg@k_diff_se``
            (paired), ``best_iteration`` and ``dropped``.
        dropped: the groups dropped, in feature order ([] = the full ranker stays).
        refits: group -> the ranker refitted without it (every other feature).
    """

    table: pd.DataFrame
    dropped: list[str]
    refits: dict[str, FittedRanker]


def select_feature_groups(
    train: RankingData,
    valid: RankingData,
    full: FittedRanker,
    groups: Mapping[str, str],
    config: TrainingConfig,
    progress: Progress | None = None,
) -> GroupSelection:
    """Refit the ranker without each feature group and drop those whose refit beats ``full`` on the
    validation groups by more than ``config.feature_selection.min_gain_se`` paired standard errors.

    Several such groups: the refit without all of them is kept if it scores at least as well on
    validation as the best refit without one of them, else only that one group is dropped. Groups in
    ``feature_selection.skip_groups`` and a group holding every feature are never dropped.
    """
    k, rule = config.k, config.feature_selection
    members = group_members(train.feature_cols, groups)
    todo = refittable_groups(members, rule.skip_groups)
    params = refit_params(config, full)
    refits = refit_without_groups(train, valid, members, todo, params, k, progress, "feature selection")
    frame = valid.frame[[*ev.GROUP_COLS, LABEL]].copy()
    frame["__full"] = full.score(valid.frame)
    diff_col, se_col = f"valid_ndcg@{k}_diff", f"valid_ndcg@{k}_diff_se"
    rows = {}
    for group, ranker in refits.items():
        frame["__without"] = ranker.score(valid.frame)
        diff, se = ev.paired_ndcg_difference(frame, "__without", "__full", k)
        rows[group] = {"n_features": len(members[group]), diff_col: diff, se_col: se}
        rows[group]["best_iteration"] = ranker.best_iteration
    columns = ["n_features", diff_col, se_col, "best_iteration"]
    table = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    table.index.name = "group"
    gaining = [g for g in todo if rows[g][diff_col] > rule.min_gain_se * rows[g][se_col] > 0]
    dropped = gaining
    if len(gaining) > 1:
        best = max(gaining, key=lambda g: rows[g][diff_col])
        keep = features_without(train.feature_cols, groups, gaining)
        joint = fit_ranker(_without_features(train, keep), _without_features(valid, keep), params, k)
        frame["__joint"] = joint.score(valid.frame)
        joint_diff, _ = ev.paired_ndcg_difference(frame, "__joint", "__full", k)
        dropped = gaining if joint_diff >= rows[best][diff_col] else [best]
    table["dropped"] = [g in dropped for g in table.index]
    return GroupSelection(table, dropped, refits)


@dataclass
class Ablation:
    """The ranker refitted without each feature group (same rows, params and early stopping).

    Attributes:
        scores: group -> test scores of its refit, aligned with the scored test frame.
        n_features: group -> number of features dropped.
        best_iterations: group -> the refit's early-stopping optimum.
        n_estimators: the refits' tree cap.
        seconds: wall time of all refits.
    """

    scores: dict[str, np.ndarray]
    n_features: dict[str, int]
    best_iterations: dict[str, int]
    n_estimators: int
    seconds: float


def ablate_feature_groups(
    models: FittedModels,
    scored: pd.DataFrame,
    groups: Mapping[str, str],
    config: TrainingConfig,
    progress: Progress | None = None,
) -> Ablation:
    """Refit the ranker without each feature group and score ``scored`` (the test frame) with each refit.

    Every refit trains on the full ranker's training groups (``models.train_data``) with the same
    parameters and early stopping on the same validation groups (``models.valid_data``); the trees
    are capped (``refit_params``). With ``models.refit`` the full ranker is the one before the refit
    (training months only), whose test scores ``score_test`` put in ``BEFORE_REFIT``. Groups in
    ``config.ablation.skip_groups`` and a group holding every feature are not ablated; a feature
    missing from ``groups`` is its own group. The refits of a feature selection that dropped nothing
    are these refits, and are reused.
    """
    if models.valid_data is None:
        raise ValueError("models have no validation groups (fit them with fit_models)")
    started = time.perf_counter()
    full, train = models.ranker, models.train_data
    if models.refit is not None:  # like for like: the ranker before its refit, on the training months
        full, train = models.refit.selected, models.refit.selected_data
    features = train.feature_cols
    members = group_members(features, groups)
    params = refit_params(config, full)
    todo = refittable_groups(members, config.ablation.skip_groups)
    selection = models.selection
    reused = dict(selection.refits) if selection is not None and not selection.dropped else {}
    refits = {g: reused[g] for g in todo if g in reused}
    refits |= refit_without_groups(
        train, models.valid_data, members, [g for g in todo if g not in refits], params, config.k, progress
    )
    out = Ablation({}, {}, {}, params.n_estimators, 0.0)
    for group in todo:
        out.scores[group] = scores_by_block(refits[group].score, scored)
        out.n_features[group] = len(members[group])
        out.best_iterations[group] = refits[group].best_iteration
    out.seconds = time.perf_counter() - started
    return out


def evaluate_scored(
    scored: pd.DataFrame,
    models: FittedModels,
    config: TrainingConfig,
    groups: Mapping[str, str] | None = None,
    ablation: Ablation | None = None,
    missed: pd.DataFrame | None = None,
) -> Evaluation:
    """Every model on the same test groups, per product, calibration, drift, feature groups, ablation,
    cold-start segments, expected-metric checks.

    ``groups`` maps features to feature groups (None: every feature is its own group); ``ablation``
    comes from ``ablate_feature_groups`` (None: no ablation table); ``missed``
    (``candidate_retrieval_groups``: the test groups' adoptions a candidate retrieval stage left out)
    adds each model's ``ndcg@{k}_end_to_end``, which counts them.
    """
    k, bins = config.k, config.calibration.n_bins
    train_frame = models.train_data.frame
    popularity = train_frame.groupby(PRODUCT_ID, observed=True)[LABEL].sum().astype(float)
    popularity.index = popularity.index.astype(str)
    table = ev.compare_models(scored, k, bins, popularity)
    flat = ev.flatten(table)
    oracle_gap = None
    if ev.score_col(ev.ORACLE) in scored.columns:
        oracle_gap = ev.paired_ndcg_difference(scored, ev.score_col(ev.RANKER), ev.score_col(ev.ORACLE), k)
        flat[f"ranker.ndcg@{k}_minus_oracle"] = oracle_gap[0]
        flat[f"ranker.ndcg@{k}_minus_oracle_se"] = oracle_gap[1]
        if scored[ORACLE_PROBABILITY].notna().all():
            for model in ev.models_in(scored):
                share = ev.expected_dcg_over_oracle(scored, ev.score_col(model), k)
                flat[f"{model}.expected_dcg@{k}_over_oracle"] = share
    flat |= ev.derived_metrics(flat, k)
    if missed is not None:
        missed = missed.assign(
            **{EVENT_TIMESTAMP: _timestamps_like(missed[EVENT_TIMESTAMP], scored[EVENT_TIMESTAMP])}
        )
        for model in ev.models_in(scored):
            flat[f"{model}.ndcg@{k}_end_to_end"] = ndcg_at_k_counting_missed(
                scored, missed, k, score_col=ev.score_col(model)
            )
    if models.refit is not None:  # what the refit on the validation months changed on the test months
        flat[f"{ev.RANKER}.before_refit.ndcg@{k}"] = ev.ndcg_mean_and_se(scored, BEFORE_REFIT, k)[0]
        diff, se = ev.paired_ndcg_difference(scored, ev.score_col(ev.RANKER), BEFORE_REFIT, k)
        flat[f"{ev.RANKER}.ndcg@{k}_minus_before_refit"] = diff
        flat[f"{ev.RANKER}.ndcg@{k}_minus_before_refit_se"] = se
    per_product = ev.per_product_table(scored, k, n_bins=bins)
    if "ndcg_diff" in per_product.columns:
        flat["ranker.products_won_vs_per_product"] = float(len(ev.products_won(per_product)))
        flat["products"] = float(len(per_product))
        share, n_eligible = ev.share_products_won(per_product, ev.WIN_MIN_POSITIVES)
        flat[f"products_min{ev.WIN_MIN_POSITIVES}"] = float(n_eligible)
        if n_eligible:
            flat[f"ranker.share_products_won_vs_per_product_min{ev.WIN_MIN_POSITIVES}"] = share
            share_auc, _ = ev.share_products_won(per_product, ev.WIN_MIN_POSITIVES, diff="auc_diff")
            flat[f"ranker.share_products_won_auc_vs_per_product_min{ev.WIN_MIN_POSITIVES}"] = share_auc
            won, lost = ev.products_decided(per_product, ev.WIN_MIN_POSITIVES)
            flat[f"ranker.products_won_2se_vs_per_product_min{ev.WIN_MIN_POSITIVES}"] = float(won)
            flat[f"ranker.products_lost_2se_vs_per_product_min{ev.WIN_MIN_POSITIVES}"] = float(lost)
        flat |= ev.contributions_by_frequency(per_product, ev.WIN_MIN_POSITIVES)
    if "ece" in per_product.columns:
        flat["ranker.ece_per_product_median"] = float(per_product["ece"].median())
        flat["ranker.ece_per_product_worst"] = float(per_product["ece"].max())
    importance = models.ranker.feature_importance("gain")
    groups = dict(groups) if groups is not None else {str(f): str(f) for f in importance.index}
    ablation_frame = pd.DataFrame()
    if ablation is not None:
        reference = scored  # the refits are compared with the ranker before the refit, if any
        if models.refit is not None:
            reference = scored.assign(**{ev.score_col(ev.RANKER): scored[BEFORE_REFIT]})
        ablation_frame = ev.ablation_table(reference, ablation.scores, ablation.n_features, k)
        ablation_frame["best_iteration"] = pd.Series(ablation.best_iterations, dtype=int)
        flat |= ev.flatten_ablation(ablation_frame, k)
    selection = pd.DataFrame()
    if models.selection is not None:
        selection = models.selection.table
        flat["ranker.feature_groups_dropped"] = float(len(models.selection.dropped))
    segments, segment_note, cold_per_product = {}, "", pd.DataFrame()
    if ev.COLD_START_FEATURE in scored.columns:
        segments, counts = ev.cold_start_split(scored, k, bins, popularity)
        if ev.COLD_START in segments and counts[f"{ev.COLD_START}.groups_with_positive"]:
            cold_rows = scored[ev.cold_start_mask(scored).to_numpy()]
            cold_per_product = ev.per_product_table(cold_rows, k, n_bins=bins)
        flat |= counts | ev.flatten_segments(segments)
        if ev.COLD_START not in segments:
            segment_note = f"no cold-start group in the test month ({ev.COLD_START_FEATURE} == 0 nowhere)"
        elif not counts[f"{ev.COLD_START}.groups_with_positive"]:
            segment_note = "no cold-start group adopts anything in the test month: nDCG, recall undefined"
    else:
        segment_note = f"{ev.COLD_START_FEATURE} is not a feature: cold-start groups cannot be told apart"
    return Evaluation(
        models=table,
        flat=flat,
        per_product=per_product,
        reliability=ev.reliability_by_product(scored, n_bins=bins) if PROBABILITY in scored else {},
        gains=ev.gains_curve(scored, max_k=10),
        drift=ev.drift_table(scored, k, bins),
        feature_importance=importance,
        oracle_gap=oracle_gap,
        failures=ev.check_expected(flat, config.expected_metrics),
        feature_groups=groups,
        importance_groups=ev.importance_by_group(importance, groups),
        ablation=ablation_frame,
        feature_selection=selection,
        product_wins=ev.product_wins(per_product),
        segments=segments,
        segment_note=segment_note,
        cold_start_per_product=cold_per_product,
    )


# --------------------------------------------------------------------------- the job


@dataclass
class TrainResult:
    """What ``train`` produced.

    Attributes:
        bundle: the model bundle (saved unless quality regressed).
        bundle_path: where it was saved, None when ``expected_metrics`` failed.
        report_dir: the HTML/JSON report directory.
        split: the snapshot split used.
        evaluation: test-month metrics of every model.
        scored_test: the test frame with every model's scores and the calibrated probability.
        models: the fitted ranker, calibrators, baselines and the ranker's training groups.
        train_rows, train_groups, train_groups_dropped: the ranker's training set.
        seconds: wall time per stage.
    """

    bundle: ModelBundle
    bundle_path: Path | None
    report_dir: Path
    split: SnapshotSplit
    evaluation: Evaluation
    scored_test: pd.DataFrame
    models: FittedModels
    train_rows: int
    train_groups: int
    train_groups_dropped: int
    seconds: dict[str, float]


def service_version(name: str) -> int:
    """The N of a FeatureService named ``..._v<N>`` (1 when there is no suffix)."""
    match = re.search(r"_v(\d+)$", name)
    return int(match.group(1)) if match else 1


def recorded_build_vars(settings: Settings) -> dict[str, Any]:
    """The build vars the warehouse was built with, as the build recorded them ({} when it did not)."""
    recorded = BuildVars.read(settings.build_vars_path)
    return {} if recorded is None else recorded.model_dump()


def recorded_dbt_vars(settings: Settings) -> dict[str, Any]:
    """The dbt vars of the build (horizon, look-back, burn-in, observed_until); {} for the flat layout."""
    record = build_record(settings)
    return {} if record is None else dict(record.dbt_vars)


def _manifest_hash(settings: Settings) -> str | None:
    path = manifest_path(settings)
    return file_sha256(path) if path.exists() else None


def build_bundle(
    settings: Settings,
    config: TrainingConfig,
    models: FittedModels,
    split: SnapshotSplit,
    evaluation: Evaluation,
) -> ModelBundle:
    """The model bundle of a trained ranker with its provenance (not yet saved)."""
    store = get_store(settings)
    service = store.get_feature_service(config.feature_service)
    training_config = config.model_dump(mode="json") | {
        "feature_list_sha": service.tags.get("feature_list_sha"),
        "negative_keep_rate": models.train_data.negative_keep_rate,
        "train_groups_dropped_without_positive": models.train_data.n_groups_dropped,
        "train_rows": len(models.train_data.frame),
        "train_groups": models.train_data.n_groups,
    }
    return ModelBundle(
        ranker=models.ranker,
        calibrators=models.calibrators,
        feature_service_name=config.feature_service,
        feature_service_version=service_version(config.feature_service),
        dbt_manifest_hash=_manifest_hash(settings),
        training_config=training_config,
        data_range=split.as_dict(),
        build_vars=recorded_build_vars(settings),
        build_id=settings.current_build_id,
        dbt_vars=recorded_dbt_vars(settings),
        metrics={k: v for k, v in evaluation.flat.items() if np.isfinite(v)},
        unused_features=[f for f in served_columns(store, config) if f not in models.ranker.feature_cols],
    )


def train(
    settings: Settings,
    config: TrainingConfig,
    progress: Progress | None = None,
    engine: TrainingSettings | None = None,
) -> TrainResult:
    """Train, evaluate and save the ranker for the built warehouse and the applied feature store; the
    ranker itself where ``engine`` says (default: ``settings.training``; ``local``, or ``dask`` on a
    scheduler or a LocalCluster: ``nextbest.training.distributed``).

    Raises:
        QualityRegressionError: an ``expected_metrics`` minimum was not met (report written first).
    """

    say = progress or (lambda _msg: None)
    settings = settings.pinned()  # the build live now, even if another build finishes meanwhile
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    split = split_snapshots(labelled_snapshots(settings), config.split)
    say(f"split: {split.describe()}")
    frames = load_frames(settings, config, split, progress)
    seconds["retrieval"] = time.perf_counter() - started

    started = time.perf_counter()
    with ranker_fitter(engine or settings.training) as fit:
        models = fit_models(
            frames.train, frames.valid, frames.feature_cols, config, frames.has_oracle, progress, fit,
            frames.feature_groups, frames.train_sampled,
        )
    seconds["fit_total"] = time.perf_counter() - started
    frames.valid = frames.valid.iloc[:0]  # done with: its groups with a positive are in models.valid_data
    seconds |= {f"fit_{k}": v for k, v in models.seconds.items()}

    started = time.perf_counter()
    say(f"evaluation: {len(frames.test):,} test rows")
    scored = score_test(models, frames.test)
    ablation = None
    if config.ablation.enabled:
        ablation = ablate_feature_groups(models, scored, frames.feature_groups, config, progress)
        seconds["ablation"] = ablation.seconds
    retrieval = candidate_retrieval_groups(settings, split.test)
    evaluation = evaluate_scored(scored, models, config, frames.feature_groups, ablation, retrieval)
    seconds["evaluation"] = time.perf_counter() - started

    bundle = build_bundle(settings, config, models, split, evaluation)
    report_dir = reports_dir(settings) / bundle.version
    write_report(
        report_dir,
        evaluation,
        context={
            "dataset": config.name,
            "k": config.k,
            "bundle_version": bundle.version,
            "feature_service": config.feature_service,
            "data_range": split.as_dict(),
            "train": ev.frame_summary(models.train_data.frame) | {
                "groups_dropped_without_positive": float(models.train_data.n_groups_dropped),
                "negative_keep_rate": models.train_data.negative_keep_rate,
            },
            "test": ev.frame_summary(frames.test),
            "best_iteration": models.ranker.best_iteration,
            "pointwise_trees": models.ranker.pointwise_trees,
            "seasonal_offset": models.ranker.seasonal_offset,
            "seasonal_weight": models.ranker.seasonal_weight,
            "refit": None if models.refit is None else {
                "selected_best_iteration": models.refit.selected.best_iteration,
                "selected_train_groups": float(models.refit.selected_data.n_groups),
                "n_trees": models.refit.n_trees,
            },
            "ranker_stalled": models.ranker.stalled,
            "candidate_retrieval": candidate_retrieval_summary(retrieval),
            "ablation_n_estimators": ablation.n_estimators if ablation else None,
            "seconds": seconds,
        },
    )
    say(f"report: {report_dir}")
    if evaluation.failures:
        raise QualityRegressionError(
            "quality below expected_metrics (no bundle saved; report in "
            f"{report_dir}):\n  " + "\n  ".join(evaluation.failures)
        )
    bundle_path = save_bundle(bundle, settings.models_dir)
    say(f"bundle: {bundle_path}")
    return TrainResult(
        bundle=bundle,
        bundle_path=bundle_path,
        report_dir=report_dir,
        split=split,
        evaluation=evaluation,
        scored_test=scored,
        models=models,
        train_rows=len(models.train_data.frame),
        train_groups=models.train_data.n_groups,
        train_groups_dropped=models.train_data.n_groups_dropped,
        seconds=seconds,
    )


# --------------------------------------------------------------------------- re-evaluation


def evaluate_bundle(
    settings: Settings, bundle_path: Path, progress: Progress | None = None
) -> tuple[ModelBundle, pd.DataFrame]:
    """Re-score a saved bundle on its test snapshot(s) with features retrieved now.

    The bundle is loaded only if its feature list matches the live FeatureService
    (``BundleMismatchError`` otherwise). Returns the bundle and a one-row ``compare_models`` table
    (index ``ranker``; ECE/Brier from the bundle's calibrators).
    """
    from nextbest.training.artifacts import load_bundle

    meta_config = load_bundle(bundle_path).training_config
    config = TrainingConfig.model_validate(
        {k: v for k, v in meta_config.items() if k in TrainingConfig.model_fields}
    )
    bundle = load_bundle(
        bundle_path,
        expected_features=served_columns(get_store(settings), config),
        expected_service=config.feature_service,
    )
    start = date.fromisoformat(bundle.data_range["test_start"])
    end = date.fromisoformat(bundle.data_range["test_end"])
    snapshots = [d for d in labelled_snapshots(settings) if start <= d <= end]
    if not snapshots:
        raise ValueError(f"the warehouse has no labelled snapshot in the bundle's test range {start}..{end}")
    test = training_frame(settings, config, snapshots, progress)
    scored = score_bundle(bundle, test)
    test[ev.score_col(ev.RANKER)] = scored.score
    test[SCORE] = test[ev.score_col(ev.RANKER)]
    if scored.probability is not None:
        test[PROBABILITY] = scored.probability
    return bundle, ev.compare_models(test, config.k, config.calibration.n_bins)
