"""The ranker trained on a Dask cluster (``lightgbm.dask.DaskLGBMRanker``): the same model, more machines.

``fit_ranker_dask`` is ``nextbest.training.ranker.fit_ranker`` for a cluster: the same prepared
``RankingData`` (rows sorted by group, categoricals with the training category lists), the same
LightGBM parameters (``lambdarank_kwargs``), the same ``FittedRanker`` out, so calibration, evaluation,
the bundle and serving do not know where the ranker was trained.

What differs, and why:
  - the training rows are cut into partitions on group boundaries (a ranking group must not straddle
    two partitions: LightGBM's lambdarank needs each query whole on one worker), and the group sizes
    travel as a Dask array chunked like the rows;
  - ``lightgbm.dask`` has no early stopping, so the model is trained to ``n_estimators`` trees and the
    number of trees kept (``best_iteration``) is chosen afterwards on the validation groups: NDCG@k of
    the booster cut at every ``selection_step`` trees, the cut with the best validation NDCG averaged over
    ``early_stopping_window`` trees wins (ties: fewer trees);
  - the seasonal offset (``ranker.fit_with_season``) travels as LightGBM's initial score, cut like the
    rows; the trees are chosen on the validation NDCG of the trees plus the offset.
The cluster is the caller's (``distributed.Client``); ``local_client`` starts a ``LocalCluster`` when
none is given (one worker per core, one thread each, as LightGBM's socket network wants).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

import numpy as np

from nextbest.columns import SEASONAL_INDEX
from nextbest.settings import TrainingSettings
from nextbest.training.config import ConfigError, RankerConfig
from nextbest.training.constants import DEFAULT_K
from nextbest.training.ranker import (
    FittedRanker,
    RankingData,
    add_parts,
    best_window_centre,
    check_same_features,
    fit_ranker,
    fit_with_season,
    lambdarank_kwargs,
    valid_ndcg,
)
from nextbest.training.seasonal import log_index

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client


class RankerFit(Protocol):
    """``(train, valid, params, k, *, select_trees=True) -> FittedRanker``: how the ranker is fitted
    (``ranker_fitter``); ``select_trees=False`` keeps every tree of ``params.n_estimators``."""

    def __call__(
        self,
        train: RankingData,
        valid: RankingData,
        params: RankerConfig,
        k: int,
        *,
        select_trees: bool = True,
    ) -> FittedRanker: ...


def group_partitions(group_sizes: np.ndarray, n_partitions: int) -> list[tuple[int, int]]:
    """``n_partitions`` (or fewer, never empty) consecutive ranges of whole groups, as (first group,
    end group) pairs, balanced by rows: the cut after group g is where the rows so far pass the next
    multiple of total / n_partitions."""
    if n_partitions < 1:
        raise ValueError("n_partitions must be >= 1")
    ends = np.cumsum(np.asarray(group_sizes, dtype=np.int64))
    if len(ends) == 0:
        return []
    targets = ends[-1] * np.arange(1, n_partitions) / n_partitions
    cuts = np.unique(np.searchsorted(ends, targets, side="left") + 1)
    bounds = [0, *[int(c) for c in cuts if 0 < c < len(ends)], len(ends)]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def dask_inputs(
    data: RankingData, client: Client, n_partitions: int, init_score: np.ndarray | None = None
) -> tuple[object, object, object, object]:
    """(features, label, group sizes, initial scores or None) as Dask collections cut on group
    boundaries, each part scattered to the cluster once (not embedded in the task graph): a DataFrame
    and arrays whose partitions / chunks line up (the rows of partition i are the groups of chunk i)."""
    import dask.array as da
    import dask.dataframe as dd

    parts = group_partitions(data.group_sizes, n_partitions)
    row_ends = np.concatenate([[0], np.cumsum(data.group_sizes)]).astype(np.int64)
    label = np.asarray(data.label, dtype=np.float64)
    sizes = np.asarray(data.group_sizes, dtype=np.int64)
    rows = [slice(int(row_ends[a]), int(row_ends[b])) for a, b in parts]
    # unhashed: two fits of the same rows (a refit's folds) must not share keys that the first releases
    frames = client.scatter([data.features.iloc[r] for r in rows], hash=False)
    labels = client.scatter([label[r] for r in rows], hash=False)
    groups = client.scatter([sizes[a:b] for a, b in parts], hash=False)
    features = dd.from_delayed(frames, meta=data.features.iloc[:0], verify_meta=False)
    def chunked(futures: list, lengths: list[int], dtype: type) -> object:
        return da.concatenate(
            [da.from_delayed(f, shape=(n,), dtype=dtype) for f, n in zip(futures, lengths, strict=True)]
        )

    row_counts = [r.stop - r.start for r in rows]
    label_array = chunked(labels, row_counts, np.float64)
    group_array = chunked(groups, [b - a for a, b in parts], np.int64)
    if init_score is None:
        return features, label_array, group_array, None
    inits = client.scatter([np.asarray(init_score, dtype=np.float64)[r] for r in rows], hash=False)
    return features, label_array, group_array, chunked(inits, row_counts, np.float64)


def select_iteration(
    ranker: FittedRanker, valid: RankingData, n_trees: int, step: int, window: int = 1
) -> tuple[int, float]:
    """The number of trees (a multiple of ``step``, or ``n_trees``) with the best validation
    NDCG@``ranker.eval_at`` averaged over the cuts within ``window // 2`` trees either side (full
    windows only, as ``ranker.SmoothedEarlyStopping`` chooses; every cut when there are too few), and
    the NDCG at it; ties go to fewer trees."""
    cuts = sorted({*range(step, n_trees, step), n_trees})
    scores = [valid_ndcg(ranker, valid, trees) for trees in cuts]
    best = best_window_centre(scores, (window // 2) // step)
    return cuts[best], scores[best]


def fit_ranker_dask(
    train: RankingData,
    valid: RankingData,
    client: Client,
    params: RankerConfig | None = None,
    eval_at: int = DEFAULT_K,
    n_partitions: int | None = None,
    selection_step: int = 10,
    select_trees: bool = True,
) -> FittedRanker:
    """``fit_ranker`` on the cluster of ``client`` (see the module docstring): ``n_estimators`` trees,
    then ``best_iteration`` chosen on ``valid`` every ``selection_step`` trees (``select_trees=False``:
    every tree kept, ``best_valid_ndcg`` NaN).

    Args:
        n_partitions: row partitions (default: one per worker).
    """
    params = params or RankerConfig()
    check_same_features(train, valid)
    if valid.n_groups == 0:
        raise ValueError("the validation split has no group")
    partitions = n_partitions or max(len(client.scheduler_info()["workers"]), 1)

    def trees(offset: float) -> FittedRanker:
        ranker = _fit_trees_dask(train, client, params, eval_at, partitions, offset)
        if select_trees:
            n_trees = ranker.booster.num_trees()
            cut, ndcg = select_iteration(ranker, valid, n_trees, selection_step, params.early_stopping_window)
            ranker.best_iteration, ranker.best_valid_ndcg = cut, float(ndcg)
        return ranker

    ranker = fit_with_season(trees, train, params)
    return add_parts(ranker, train, valid if select_trees else None, params)


def _fit_trees_dask(
    train: RankingData, client: Client, params: RankerConfig, eval_at: int, partitions: int, offset: float
) -> FittedRanker:
    """``n_estimators`` LambdaMART trees on the cluster, on top of ``offset`` x ln(``SEASONAL_INDEX``)
    (0: none), every one kept."""
    from lightgbm.dask import DaskLGBMRanker

    init = offset * log_index(train.frame, SEASONAL_INDEX) if offset else None
    features, label, groups, init_score = dask_inputs(train, client, partitions, init)
    kwargs = lambdarank_kwargs(params)
    kwargs.pop("n_jobs")  # each worker uses its own threads; the cluster is the parallelism
    model = DaskLGBMRanker(client=client, **kwargs)
    with warnings.catch_warnings():  # lightgbm.dask names every thread alias it overrides
        warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
        model.fit(
            features, label, group=groups, init_score=init_score, eval_at=[eval_at],
            categorical_feature=train.categorical_cols,
        )
    booster = model.to_local().booster_
    return FittedRanker(
        booster=booster,
        feature_cols=list(train.feature_cols),
        categories={k: list(v) for k, v in train.categories.items()},
        best_iteration=booster.num_trees(),
        best_valid_ndcg=float("nan"),
        eval_at=eval_at,
        seasonal_offset=offset,
    )


@contextmanager
def local_client(n_workers: int = 2) -> Iterator[Client]:
    """A ``LocalCluster`` of ``n_workers`` single-threaded worker processes and its client, closed on exit."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, Client(cluster) as client:
        yield client


@contextmanager
def dask_client(scheduler: str | None = None, n_workers: int = 2) -> Iterator[Client]:
    """A client of the Dask scheduler at ``scheduler`` (e.g. ``tcp://10.0.0.5:8786``), or of a new
    ``local_client(n_workers)`` when None."""
    if scheduler is None:
        with local_client(n_workers) as client:
            yield client
        return
    from distributed import Client

    try:
        client = Client(scheduler, timeout="10s")
    except OSError as err:
        raise ConfigError(f"dask scheduler {scheduler!r}: cannot connect ({err})") from err
    with client:
        yield client


@contextmanager
def ranker_fitter(engine: TrainingSettings) -> Iterator[RankerFit]:
    """The ranker's fit on ``engine`` (the settings' ``training`` branch), for as long as the block runs:
    ``local`` is ``fit_ranker`` (this process, early stopping); ``dask`` is ``fit_ranker_dask`` on
    ``dask_client(engine.dask_scheduler, engine.dask_workers)``.

    Raises:
        ConfigError: a scheduler that cannot be reached.
    """
    if engine.engine == "local":
        yield fit_ranker
        return
    with dask_client(engine.dask_scheduler, engine.dask_workers) as client:

        def fit(
            train: RankingData, valid: RankingData, params: RankerConfig, k: int, *, select_trees: bool = True
        ) -> FittedRanker:
            return fit_ranker_dask(train, valid, client, params, k, select_trees=select_trees)

        yield fit
