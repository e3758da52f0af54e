"""Batch scoring: every candidate of every customer at a snapshot (the top-N retrieved ones when the
bundle holds a retrieval index, as online), from the offline store, to parquet.

Features come from Feast's point-in-time retrieval (``historical_features``), the scores from
``score_bundle`` (the one scoring function) and the ranks from ``rank_within_groups``: the online path's
scoring and tie-break, so batch and online can only differ through their features.
"""

from __future__ import annotations

import os
import tempfile
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from feast import FeatureStore
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nextbest.columns import CUSTOMER_ID, EVENT_TIMESTAMP, PROBABILITY, PRODUCT_ID, RANK, SCORE, SNAPSHOT_ON
from nextbest.features.definitions import FEATURE_SERVICE_NAME
from nextbest.features.embeddings import customer_embeddings_at
from nextbest.features.retrieval import historical_features
from nextbest.features.store import get_store
from nextbest.marts import FCT_CANDIDATES, existing_mart
from nextbest.retrieval.bundle import load_index
from nextbest.serving.scorer import resolve_bundle_path
from nextbest.settings import ServingSettings, Settings, get_settings
from nextbest.training.artifacts import ModelBundle, load_bundle
from nextbest.training.scoring import rank_within_groups, score_bundle

console = Console()

BATCH_SCHEMA = pa.schema(
    [
        (CUSTOMER_ID, pa.string()),
        (PRODUCT_ID, pa.string()),
        (SNAPSHOT_ON, pa.date32()),
        (RANK, pa.int32()),
        (SCORE, pa.float64()),
        (PROBABILITY, pa.float64()),
    ]
)
"""One row per candidate of the snapshot; ``rank`` 1 = the customer's best product."""


def snapshot_candidates(settings: Settings, snapshot: date) -> pd.DataFrame:
    """``fct_candidates`` rows of ``snapshot`` (customer_id, product_id, snapshot_on, event_timestamp).

    Raises:
        ValueError: the snapshot has no candidate (the message lists the snapshots that have some).
    """
    path = existing_mart(settings, FCT_CANDIDATES)
    con = duckdb.connect()
    try:
        frame = con.execute(
            f"select {CUSTOMER_ID}, {PRODUCT_ID}, {SNAPSHOT_ON}, {EVENT_TIMESTAMP} from read_parquet(?) "
            f"where {SNAPSHOT_ON} = ? order by {CUSTOMER_ID}, {PRODUCT_ID}",
            [str(path), snapshot],
        ).df()
        if frame.empty:
            known = [
                str(r[0])
                for r in con.execute(
                    f"select distinct {SNAPSHOT_ON} from read_parquet(?) order by 1", [str(path)]
                ).fetchall()
            ]
            raise ValueError(f"no candidate at snapshot {snapshot}; snapshots with candidates: {known}")
    finally:
        con.close()
    return frame


def score_batch(
    snapshot: date,
    out: Path,
    chunk_size: int = 5_000,
    settings: Settings | None = None,
    serving: ServingSettings | None = None,
    progress: bool = True,
) -> int:
    """Score every candidate of every customer at ``snapshot`` from the offline store; write parquet.

    When the bundle holds a retrieval index and ``serving.retrieval`` is on, as online, only each
    customer's top-N retrieved candidates are scored (``RetrievalIndex.narrow_frame``, with the customer
    embeddings of the snapshot from Feast's offline store).

    Features come from Feast's historical retrieval through the FeatureService (point in time at the
    snapshot's event_timestamp), ``chunk_size`` customers at a time; scored by ``score_bundle`` and
    ranked by ``rank_within_groups`` (the online path's scoring and tie-break). The file is written
    beside ``out`` and renamed into place when complete.

    Returns:
        The number of rows written (candidates of the snapshot).
    """
    settings = settings or get_settings()
    serving = serving or settings.serving
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    candidates = snapshot_candidates(settings, snapshot)  # first: before a build, say to build
    bundle_path = resolve_bundle_path(settings, serving)
    index = load_index(bundle_path) if serving.retrieval else None
    bundle = load_bundle(bundle_path)
    store = get_store(settings, serving.online_store)
    if index is not None:  # the online path's retrieval stage: each customer's top-N candidates only
        keys = candidates[[CUSTOMER_ID, EVENT_TIMESTAMP]].drop_duplicates()
        embeddings = customer_embeddings_at(store, keys)
        candidates = index.narrow_frame(candidates, embeddings).reset_index(drop=True)
    customers = candidates[CUSTOMER_ID].drop_duplicates().to_numpy()
    chunks = [customers[i : i + chunk_size] for i in range(0, len(customers), chunk_size)]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    written = 0
    try:
        with pq.ParquetWriter(tmp_name, BATCH_SCHEMA) as writer, _progress(progress) as bar:
            task = bar.add_task(f"scoring {snapshot}", total=len(customers))
            for chunk in chunks:
                part = candidates[candidates[CUSTOMER_ID].isin(chunk)].reset_index(drop=True)
                writer.write_table(score_part(store, bundle, part))
                written += len(part)
                bar.advance(task, len(chunk))
        os.replace(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return written


def score_part(store: FeatureStore, bundle: ModelBundle, part: pd.DataFrame) -> pa.Table:
    """Historical features for ``part`` (candidate rows) -> scores, probabilities, ranks as a table."""
    keys = part[[CUSTOMER_ID, PRODUCT_ID, EVENT_TIMESTAMP]]
    frame = historical_features(store, keys, FEATURE_SERVICE_NAME)
    scored = score_bundle(bundle, frame)
    cids, pids = part[CUSTOMER_ID].to_numpy(dtype=object), part[PRODUCT_ID].to_numpy(dtype=object)
    probability = scored.probability if scored.probability is not None else np.full(len(part), np.nan)
    return pa.table(
        {
            CUSTOMER_ID: pa.array(cids.astype(str), pa.string()),
            PRODUCT_ID: pa.array(pids.astype(str), pa.string()),
            SNAPSHOT_ON: pa.array(pd.to_datetime(part[SNAPSHOT_ON]).dt.date, pa.date32()),
            RANK: pa.array(rank_within_groups([cids], pids, scored.score), pa.int32()),
            SCORE: pa.array(scored.score, pa.float64()),
            PROBABILITY: pa.array(probability, pa.float64()),
        },
        schema=BATCH_SCHEMA,
    )


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not enabled,
    )
