"""The two-tower embeddings as Feast views, registered once the retrieval stage has written their marts.

``nextbest retrieval train`` (or ``embed``) writes two parquet marts beside the dbt marts of the live build
(``nextbest.retrieval.embeddings``). A model fitted after the build writes them, so they are not dbt models
and do not reach Feast through the manifest: this module declares their views from their fixed layout.

* ``customer_embedding`` (entity ``customer``) over ``feat_customer_embedding_monthly``: one row per
  customer x snapshot, computed from that snapshot's point-in-time inputs;
* ``product_embedding`` (entity ``product``) over ``feat_product_embedding``: one row per product.

Each has ``embedding`` (Array(Float32), a unit vector) and ``retrieval_model`` (the saved retrieval model
that wrote it: serving uses a customer's embedding only with the item vectors of the same model). The two
views form their own FeatureService, ``retrieval_v1``: they are the retrieval stage's input, not ranker
features, so ``ranker_v1`` stays the ranker's only feature list. Both are materialized like every view;
the customer view's ttl of one day keeps a point-in-time read to the embedding of the snapshot asked
for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from feast import Entity, FeatureService, FeatureStore, FeatureView, Field
from feast.data_source import DataSource
from feast.errors import FeatureViewNotFoundException
from feast.types import Array, Float32, String

from nextbest.columns import CUSTOMER_ID, EVENT_TIMESTAMP, PRODUCT_ID
from nextbest.features.sources import parquet_source
from nextbest.marts import mart_file
from nextbest.settings import Engine

EMBEDDING = "embedding"
"""The list-of-float column of both embedding marts (and the feature of both views)."""

RETRIEVAL_MODEL = "retrieval_model"
"""The column naming the saved retrieval model that wrote a row (its directory name)."""

FEAT_PRODUCT_EMBEDDING = "feat_product_embedding"
"""The item embeddings mart: one row per product."""

FEAT_CUSTOMER_EMBEDDING_MONTHLY = "feat_customer_embedding_monthly"
"""The customer embeddings mart: one row per customer x snapshot."""

CUSTOMER_EMBEDDING_VIEW = "customer_embedding"
PRODUCT_EMBEDDING_VIEW = "product_embedding"

RETRIEVAL_SERVICE_NAME = "retrieval_v1"
"""The FeatureService of the embedding views (the retrieval stage's input; not the ranker's)."""


@dataclass(frozen=True)
class EmbeddingView:
    """One embedding view: its name, mart, entity and join key."""

    view: str
    mart: str
    entity: str
    join_key: str
    description: str
    ttl: timedelta

    @property
    def refs(self) -> list[str]:
        """The view's Feast feature references."""
        return [f"{self.view}:{EMBEDDING}", f"{self.view}:{RETRIEVAL_MODEL}"]


EMBEDDING_VIEWS: tuple[EmbeddingView, ...] = (
    EmbeddingView(
        CUSTOMER_EMBEDDING_VIEW,
        FEAT_CUSTOMER_EMBEDDING_MONTHLY,
        "customer",
        CUSTOMER_ID,
        "Two-tower customer embedding at each snapshot (point in time); grain: customer x snapshot.",
        timedelta(days=1),  # a point-in-time read gets the embedding of the snapshot asked for, or none
    ),
    EmbeddingView(
        PRODUCT_EMBEDDING_VIEW,
        FEAT_PRODUCT_EMBEDDING,
        "product",
        PRODUCT_ID,
        "Two-tower item embedding of each product; grain: product.",
        timedelta(0),  # no limit: one row per product, stamped with the end of the model's training data
    ),
)


@dataclass(frozen=True)
class EmbeddingObjects:
    """The Feast objects of the embedding marts present in a build (all empty / None when none is)."""

    sources: list[DataSource]
    views: list[FeatureView]
    service: FeatureService | None


def embedding_objects(
    marts_dir: Path, entities: Mapping[str, Entity], engine: Engine = "duckdb"
) -> EmbeddingObjects:
    """A source (for ``engine``'s offline store) and a view per embedding mart present in ``marts_dir``
    (absolute path), and the ``retrieval_v1`` service over them (None when no mart is there)."""
    sources: list[DataSource] = []
    views: list[FeatureView] = []
    for spec in EMBEDDING_VIEWS:
        path = mart_file(marts_dir, spec.mart)
        if not path.is_file():
            continue
        source = parquet_source(
            f"{spec.view}_source",
            path.resolve(),
            f"retrieval stage mart {spec.mart}: {spec.description}",
            {"retrieval_mart": spec.mart},
            engine,
        )
        schema = [
            Field(name=spec.join_key, dtype=String),
            Field(name=EMBEDDING, dtype=Array(Float32), description="Unit vector of the two-tower model."),
            Field(name=RETRIEVAL_MODEL, dtype=String, description="The saved retrieval model that wrote it."),
        ]
        views.append(
            FeatureView(
                name=spec.view,
                entities=[entities[spec.entity]],
                ttl=spec.ttl,
                schema=schema,
                source=source,
                online=True,
                description=spec.description,
                tags={"retrieval_mart": spec.mart},
            )
        )
        sources.append(source)
    service = None
    if views:
        service = FeatureService(
            name=RETRIEVAL_SERVICE_NAME,
            features=views,
            description="The two-tower embeddings: the retrieval stage's input (not ranker features).",
        )
    return EmbeddingObjects(sources, views, service)


def embedding_vector(value: Any) -> np.ndarray | None:
    """A stored embedding (a list of floats, as read online or offline) as float32; None when missing."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return np.asarray(value, dtype=np.float32)


def customer_embeddings_at(store: FeatureStore, keys: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time customer embeddings from the offline store: ``keys`` (``customer_id``,
    ``event_timestamp``) with ``embedding`` (a list, or None) and ``retrieval_model`` of the customer's
    row at that snapshot (the view's one-day ttl keeps older snapshots out), in ``keys`` order; all None
    while the ``customer_embedding`` view is not registered."""
    out = keys[[CUSTOMER_ID, EVENT_TIMESTAMP]].reset_index(drop=True)
    try:
        store.get_feature_view(CUSTOMER_EMBEDDING_VIEW)
    except FeatureViewNotFoundException:
        out[EMBEDDING], out[RETRIEVAL_MODEL] = None, None
        return out
    entity = out.assign(_row=np.arange(len(out)))
    refs = next(v for v in EMBEDDING_VIEWS if v.view == CUSTOMER_EMBEDDING_VIEW).refs
    got = store.get_historical_features(entity_df=entity, features=refs).to_df()
    got = got.sort_values("_row").reset_index(drop=True)  # Feast does not keep row order
    out[EMBEDDING] = got[EMBEDDING].tolist()
    out[RETRIEVAL_MODEL] = got[RETRIEVAL_MODEL].tolist()
    return out


def view_names(views: Sequence[EmbeddingView] = EMBEDDING_VIEWS) -> list[str]:
    """The embedding views' names."""
    return [v.view for v in views]
