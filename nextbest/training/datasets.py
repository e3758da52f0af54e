"""The training frame: dbt labels -> Feast point-in-time features -> one sorted frame.

``entity_frame`` reads the entity rows (customer, product, snapshot, label) of chosen labelled
snapshots from the ``fct_ranking_labels`` mart with DuckDB, joining the synthetic oracle's true
probability when ``oracle.parquet`` exists. ``training_frame`` retrieves the FeatureService's
features for them through Feast (``get_historical_features``, one call per snapshot, or per block of
customers when a snapshot has more than ``RETRIEVAL_CHUNK_ROWS`` rows, to bound memory), normalises
the dtypes and sorts rows by (event_timestamp, customer_id, product_id).
A data scientist's notebook needs only these two functions plus ``labelled_snapshots``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from feast import FeatureStore

from nextbest.columns import (
    CUSTOMER_ID,
    LABEL,
    ORACLE_PROBABILITY,
    PRODUCT_ID,
    SEASONAL_INDEX,
    SNAPSHOT_ON,
    SORT_COLS,
)
from nextbest.features.manifest import feature_groups as manifest_feature_groups
from nextbest.features.retrieval import historical_features, service_dtypes, service_feature_views
from nextbest.features.schema import normalise_dtypes
from nextbest.features.store import get_store, load_specs
from nextbest.marts import FCT_CANDIDATES, FCT_RANKING_LABELS, existing_mart
from nextbest.settings import Settings
from nextbest.training.config import TrainingConfig
from nextbest.training.ranker import Sampling, sample_groups

ORACLE_FILE = "oracle.parquet"

RETRIEVAL_CHUNK_ROWS = 2_000_000
"""Most entity rows of one Feast retrieval (whole customers; a customer with more rows is one call).
A retrieval's transient memory is ~2 KB per row over its result's: The Complete Journey's 5.2M-row
product-type month peaked at 13.4 GB in one call."""

Progress = Callable[[str], None]
"""A callback receiving one human-readable progress line."""


def oracle_path(settings: Settings) -> Path | None:
    """The raw dataset's oracle file, or None (real data has none)."""
    path = settings.raw_dir / ORACLE_FILE
    return path if path.exists() else None


def labelled_snapshots(settings: Settings) -> list[date]:
    """The distinct snapshot dates of ``fct_ranking_labels``, ascending."""
    return mart_snapshots(settings, FCT_RANKING_LABELS)


def mart_snapshots(settings: Settings, mart: str = FCT_CANDIDATES) -> list[date]:
    """The distinct snapshot dates of a mart (``fct_candidates`` includes the latest, unlabelled one)."""
    con = duckdb.connect()
    try:
        rows = con.execute(
            f"select distinct {SNAPSHOT_ON} from read_parquet(?) order by 1",
            [str(existing_mart(settings, mart))],
        ).fetchall()
    finally:
        con.close()
    return [r[0] for r in rows]


def _entity_query(with_label: bool, with_oracle: bool) -> str:
    """Entity rows of the mart (parameter 1: its path), the oracle's (parameter 2) joined when asked;
    the last parameter is the list of snapshot dates."""
    label = f", l.{LABEL}" if with_label else ""
    if not with_oracle:
        return (
            f"select l.{CUSTOMER_ID}, l.{PRODUCT_ID}, l.{SNAPSHOT_ON}, l.event_timestamp{label} "
            f"from read_parquet(?) l where l.{SNAPSHOT_ON} in (select unnest(?::date[]))"
        )
    return (
        f"select l.{CUSTOMER_ID}, l.{PRODUCT_ID}, l.{SNAPSHOT_ON}, l.event_timestamp{label}, "
        f"o.probability as {ORACLE_PROBABILITY} "
        f"from read_parquet(?) l left join read_parquet(?) o "
        f"on o.{CUSTOMER_ID} = l.{CUSTOMER_ID} and o.{PRODUCT_ID} = l.{PRODUCT_ID} "
        f"and o.{SNAPSHOT_ON} = l.{SNAPSHOT_ON} "
        f"where l.{SNAPSHOT_ON} in (select unnest(?::date[]))"
    )


def entity_frame(
    settings: Settings, snapshots: Sequence[date], mart: str = FCT_RANKING_LABELS, with_oracle: bool = True
) -> pd.DataFrame:
    """Entity rows of ``snapshots`` from a dbt mart, sorted by (event_timestamp, customer, product).

    Args:
        settings: where the marts and the raw dataset live.
        snapshots: snapshot dates (month ends) to read; unknown dates give no rows.
        mart: ``fct_ranking_labels`` (with ``label``) or ``fct_candidates`` (no label, every snapshot).
        with_oracle: join ``oracle_probability`` when ``oracle.parquet`` exists in the raw dir.

    Returns:
        customer_id, product_id (strings), snapshot_on (date), event_timestamp (naive UTC),
        label (int, labels mart only), oracle_probability (float, NaN where the oracle has no row).
    """
    path = existing_mart(settings, mart)
    oracle = oracle_path(settings) if with_oracle else None
    con = duckdb.connect()
    try:
        con.execute("set timezone = 'UTC'")
        query = _entity_query(mart == FCT_RANKING_LABELS, oracle is not None)
        sql = query + " order by event_timestamp, 1, 2"
        files = [str(path)] if oracle is None else [str(path), str(oracle)]
        frame = con.execute(sql, [*files, [d.isoformat() for d in snapshots]]).df()
    finally:
        con.close()
    if LABEL in frame.columns:
        frame[LABEL] = frame[LABEL].astype("int8")
    return frame


def served_columns(store: FeatureStore, config: TrainingConfig) -> list[str]:
    """``product_id`` (if configured) then every feature of the service, in the service's order."""
    served = [f for feats in service_feature_views(store, config.feature_service).values() for f in feats]
    return [PRODUCT_ID, *served] if config.use_product_id else served


def feature_columns(store: FeatureStore, config: TrainingConfig) -> list[str]:
    """The ranker's ordered feature list: ``served_columns`` except ``SEASONAL_INDEX`` (read beside them:
    the ranker's seasonal offset, never a split)."""
    return [f for f in served_columns(store, config) if f != SEASONAL_INDEX]


def feature_groups(settings: Settings, feature_cols: Sequence[str]) -> dict[str, str]:
    """Feature -> feature group of the ranker's features, in ``feature_cols`` order.

    The group is the dbt column's ``meta.feature_group``, else the feature view's name, read from the
    dbt manifest of the last build (the one the FeatureService was applied from); ``product_id`` (the
    categorical product feature) is group ``product_id``.
    """
    return manifest_feature_groups(load_specs(settings), feature_cols)


def retrieve_features(
    store: FeatureStore, entities: pd.DataFrame, service: str, progress: Progress | None = None
) -> pd.DataFrame:
    """Point-in-time features of ``entities`` through ``service``, one retrieval per snapshot.

    Every entity row must be a candidate (listed in its customer's packed ``candidate_product_ids``).

    Returns ``entities``' columns plus the service's features in canonical nullable dtypes, keys as
    strings and ``event_timestamp`` as UTC, sorted by (event_timestamp, customer_id, product_id).
    """
    dtypes = service_dtypes(store, service)
    if entities.empty:
        return normalise_dtypes(historical_features(store, entities, service), dtypes)
    parts = []
    snapshots = sorted(entities["event_timestamp"].unique())
    for i, ts in enumerate(snapshots, start=1):
        part = entities[entities["event_timestamp"] == ts]
        for rows in customer_blocks(part[CUSTOMER_ID], RETRIEVAL_CHUNK_ROWS):
            features = historical_features(store, part.iloc[rows], service, candidates_only=True)
            parts.append(normalise_dtypes(features, dtypes))
        if progress:
            progress(f"features {i}/{len(snapshots)}: {pd.Timestamp(ts).date()} ({len(part):,} rows)")
    frame = pd.concat(parts, ignore_index=True)
    return frame.sort_values(list(SORT_COLS), kind="mergesort").reset_index(drop=True)


def customer_blocks(customers: pd.Series, max_rows: int) -> list[slice]:
    """Consecutive row slices of ``customers`` (rows of one customer adjacent) that never split a
    customer, each of at most ``max_rows`` rows unless one customer alone has more."""
    values = customers.to_numpy()
    n = len(values)
    if n <= max_rows:
        return [slice(0, n)]
    edges = np.r_[np.flatnonzero(np.r_[True, values[1:] != values[:-1]]), n]  # customer starts, then n
    blocks, begin = [], 0
    for i in range(1, len(edges)):
        if edges[i] - begin > max_rows and edges[i - 1] > begin:
            blocks.append(slice(begin, int(edges[i - 1])))
            begin = int(edges[i - 1])
    blocks.append(slice(begin, n))
    return blocks


def training_frame(
    settings: Settings,
    config: TrainingConfig,
    snapshots: Sequence[date],
    progress: Progress | None = None,
    mart: str = FCT_RANKING_LABELS,
) -> pd.DataFrame:
    """Labelled entity rows of ``snapshots`` with the FeatureService's point-in-time features.

    One row per (customer_id, product_id, event_timestamp), sorted by those columns; ``label``
    (labels mart), ``snapshot_on``, ``oracle_probability`` when the dataset has an oracle, then
    every feature of ``config.feature_service`` in canonical dtypes (missing = NA).
    """
    store = get_store(settings)
    entities = entity_frame(settings, snapshots, mart=mart)
    return retrieve_features(store, entities, config.feature_service, progress)


def sampled_training_frame(
    settings: Settings, config: TrainingConfig, snapshots: Sequence[date], progress: Progress | None = None
) -> tuple[pd.DataFrame, Sampling]:
    """``training_frame`` of the training snapshots, sampled on the labels before the features are read:
    the rows ``prepare_groups`` would keep of it (``sample_groups``: groups with a positive, every
    positive, ``config.max_negatives_per_group`` negatives per group, ``config.seed``), and that sampling.
    The same rows as sampling after retrieval, without reading the others' features: The Complete
    Journey's 2,378 product types have ~2,200 candidates per group, and its 3 training months' 14M rows
    of features ran ``nextbest train`` out of 24 GiB.
    """
    store = get_store(settings)
    entities = entity_frame(settings, snapshots)
    entities, sampling = sample_groups(entities, True, config.max_negatives_per_group, config.seed)
    return retrieve_features(store, entities, config.feature_service, progress), sampling
