"""Calibrated probabilities of every candidate at a snapshot, through the one scoring path.

The served model bundle (``NEXTBEST_SERVING_MODEL_PATH``, else the latest bundle) scores the
``fct_candidates`` rows of the snapshot with their point-in-time features from the offline store: the
training path's ``entity_frame`` + ``retrieve_features`` and ``rank_candidates`` (``score_bundle`` and the
one tie-break rule), which ``nextbest score-batch`` shares, chunk by chunk of customers.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd

from nextbest.campaigns.errors import CampaignError, CampaignStepMissingError
from nextbest.campaigns.files import read_table
from nextbest.columns import CUSTOMER_ID, PROBABILITY, PRODUCT_ID, RANK, SNAPSHOT_ON
from nextbest.features.store import get_store
from nextbest.marts import FCT_CANDIDATES
from nextbest.settings import Settings
from nextbest.training.artifacts import ModelBundle, latest_bundle, load_bundle
from nextbest.training.datasets import entity_frame, mart_snapshots, retrieve_features
from nextbest.training.scoring import rank_candidates

SCORED_COLUMNS: tuple[str, ...] = (CUSTOMER_ID, PRODUCT_ID, SNAPSHOT_ON, PROBABILITY, RANK)


def served_bundle_path(settings: Settings) -> Path:
    """The bundle serving would load: ``settings.serving.model_path``, else the latest one."""
    path = settings.serving.model_path or latest_bundle(settings.models_dir)
    if path is None:
        raise CampaignStepMissingError(
            f"no model bundle in {settings.models_dir}: run `nextbest train` first"
        )
    return Path(path)


def resolve_snapshot(settings: Settings, snapshot: date | None) -> date:
    """``snapshot`` if candidates exist there, else the latest snapshot with candidates."""
    known = mart_snapshots(settings, FCT_CANDIDATES)
    if not known:
        raise CampaignStepMissingError("fct_candidates is empty: run `nextbest build` first")
    if snapshot is None:
        return known[-1]
    if snapshot not in known:
        raise CampaignError(
            f"no candidate at snapshot {snapshot}; snapshots: {', '.join(map(str, known[-6:]))} (latest 6)"
        )
    return snapshot


def read_scores(path: Path, snapshot: date | None) -> tuple[date, pd.DataFrame]:
    """The rows of ``snapshot`` (default: the file's latest) of a ``nextbest score-batch`` file.

    Raises:
        CampaignError: the file is missing, lacks a column or holds no row of the snapshot.
    """
    scored = read_table(path, SCORED_COLUMNS, "scores")
    if scored.empty:
        raise CampaignError(f"scores file {path} holds no row")
    chosen = snapshot or max(scored[SNAPSHOT_ON])
    rows = scored[scored[SNAPSHOT_ON] == chosen]
    if rows.empty:
        raise CampaignError(f"scores file {path} holds no row of snapshot {chosen}")
    return chosen, rows


def score_snapshot(
    settings: Settings, snapshot: date, bundle: ModelBundle | None = None, chunk_customers: int = 20_000
) -> pd.DataFrame:
    """Every candidate at ``snapshot``: customer_id, product_id, snapshot_on, probability, rank."""
    bundle = bundle or load_bundle(served_bundle_path(settings))
    entities = entity_frame(settings, [snapshot], mart=FCT_CANDIDATES, with_oracle=False)
    store = get_store(settings)
    customers = entities[CUSTOMER_ID].drop_duplicates().to_numpy()
    parts = []
    for start in range(0, len(customers), chunk_customers):
        part = entities[entities[CUSTOMER_ID].isin(customers[start : start + chunk_customers])]
        frame = retrieve_features(store, part, bundle.feature_service_name)
        ranked = rank_candidates(bundle, frame)
        parts.append(ranked.assign(**{SNAPSHOT_ON: snapshot})[list(SCORED_COLUMNS)])
    if not parts:
        return pd.DataFrame(columns=list(SCORED_COLUMNS))
    return pd.concat(parts, ignore_index=True)
