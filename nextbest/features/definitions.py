"""Feast objects built from the dbt feature-mart specs: entities, sources, views, the one service.

Names chain source -> view -> service: ``customer_monthly_source`` -> ``customer_monthly`` ->
``ranker_v1``. Every source and view is tagged with the dbt model it comes from. Paths are resolved
from the settings when the objects are built (at apply time), never committed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, ValueType
from feast.data_source import DataSource
from feast.types import Array, Bool, FeastType, Float64, Int32, Int64, String

from nextbest.columns import ENTITY_JOIN_KEYS
from nextbest.features.embeddings import EmbeddingObjects, embedding_objects
from nextbest.features.manifest import FeatureViewSpec, FieldSpec
from nextbest.features.packing import ELEMENT_TYPE_TAG, PACKED_PRODUCTS, transport_type
from nextbest.features.sources import parquet_source
from nextbest.settings import Engine

FEATURE_SERVICE_NAME = "ranker_v1"
"""The only feature list training and serving use. Bump the version when the feature list changes
in a way a stored model cannot follow (the service's ``feature_list_sha`` tag changes with any
change of the list, and the model bundle records it)."""

FEAST_TYPES: dict[str, FeastType] = {
    "String": String,
    "Int32": Int32,
    "Int64": Int64,
    "Float64": Float64,
    "Bool": Bool,
}

ENTITY_DESCRIPTIONS = {
    "customer": "A bank customer (raw contract customers.customer_id).",
    "product": "A product of the catalogue (raw contract products.product_id).",
}


@dataclass(frozen=True)
class Definitions:
    """All Feast objects of the repo, ready for ``FeatureStore.apply``: the dbt feature marts' views and
    their one service (the ranker's feature list), and the retrieval stage's embedding views with their
    own service when the build has them (``nextbest.features.embeddings``)."""

    entities: list[Entity]
    sources: list[DataSource]
    views: list[FeatureView]
    service: FeatureService
    embeddings: EmbeddingObjects = field(default_factory=lambda: EmbeddingObjects([], [], None))

    def all(self) -> list[Entity | DataSource | FeatureView | FeatureService]:
        """Every object, in apply order."""
        emb = self.embeddings
        return [
            *self.entities,
            *self.sources,
            *emb.sources,
            *self.views,
            *emb.views,
            self.service,
            *([emb.service] if emb.service is not None else []),
        ]

    @property
    def view_names(self) -> set[str]:
        """Every view defined (the ranker's and the embedding views)."""
        return {v.name for v in [*self.views, *self.embeddings.views]}

    @property
    def service_names(self) -> set[str]:
        """Every service defined."""
        return {self.service.name} | ({self.embeddings.service.name} if self.embeddings.service else set())

    @property
    def feature_names(self) -> list[str]:
        """Every feature as the model sees it (a packed view's product list excluded), in view order."""
        return [f.name for v in self.views for f in v.features if f.name != PACKED_PRODUCTS]

    def entity(self, name: str) -> Entity:
        """The entity called ``name``; KeyError naming the ones there are."""
        return _named(self.entities, name, "entity")

    def source(self, name: str) -> DataSource:
        """The data source called ``name`` (``<view>_source``); KeyError naming the ones there are."""
        return _named(self.sources, name, "data source")

    def view(self, name: str) -> FeatureView:
        """The feature view called ``name``; KeyError naming the ones there are."""
        return _named(self.views, name, "feature view")


def _named(objects: list, name: str, kind: str):  # noqa: ANN001, ANN202 - any named Feast object
    """The object of ``objects`` whose ``name`` is ``name``, else KeyError listing the names."""
    for obj in objects:
        if obj.name == name:
            return obj
    names = [o.name for o in objects]
    raise KeyError(f"no {kind} {name!r} in the definitions built from the dbt manifest; there are {names}")


def build_entities() -> dict[str, Entity]:
    """The ``customer`` and ``product`` entities keyed by name (join keys customer_id / product_id)."""
    return {
        name: Entity(
            name=name,
            join_keys=[join_key],
            value_type=ValueType.STRING,
            description=ENTITY_DESCRIPTIONS[name],
        )
        for name, join_key in ENTITY_JOIN_KEYS.items()
    }


def build_source(spec: FeatureViewSpec, engine: Engine = "duckdb") -> DataSource:
    """The parquet source of one feature mart (absolute path, tagged with its dbt model) for ``engine``'s
    offline store (``nextbest.features.sources``)."""
    return parquet_source(
        spec.source_name,
        spec.parquet_path,
        f"dbt model {spec.model}: {spec.description}",
        {"dbt_model": spec.model},
        engine,
        spec.created_timestamp_column or "",
    )


def packed_transport_type(field: FieldSpec) -> FeastType:
    """The Feast list type carrying a packed feature: an Array of ``packing.transport_type`` (strings as
    Array(String), anything else as Array(Float64) with NaN for null)."""
    return Array(FEAST_TYPES[transport_type(field.feast_type)])


def build_fields(spec: FeatureViewSpec) -> list[Field]:
    """The view's feature fields. A packed view gets ``candidate_product_ids`` and one list field per
    pair feature, tagged with its element type."""
    if not spec.packed:
        return [
            Field(name=f.name, dtype=FEAST_TYPES[f.feast_type], description=f.description)
            for f in spec.fields
        ]
    listed = Field(
        name=PACKED_PRODUCTS,
        dtype=Array(String),
        description="The customer's candidate products; element i of every feature list is for element i.",
    )
    return [listed] + [
        Field(
            name=f.name,
            dtype=packed_transport_type(f),
            description=f.description,
            tags={ELEMENT_TYPE_TAG: f.feast_type},
        )
        for f in spec.fields
    ]


def build_view(spec: FeatureViewSpec, entities: dict[str, Entity], source: DataSource) -> FeatureView:
    """The FeatureView of one mart, with an explicit schema (keys + features) taken from the yml."""
    schema = [Field(name=key, dtype=String) for key in spec.join_keys] + build_fields(spec)
    return FeatureView(
        name=spec.view,
        entities=[entities[e] for e in spec.entities],
        ttl=spec.ttl,
        schema=schema,
        source=source,
        online=True,
        description=spec.description,
        tags={"dbt_model": spec.model} | ({"packs": spec.packs} if spec.packs else {}),
    )


def feature_list_sha(specs: list[FeatureViewSpec]) -> str:
    """A 12-hex-digit fingerprint of the feature list (view:feature:type[:packed], sorted)."""
    refs = sorted(
        f"{s.view}:{f.name}:{f.feast_type}" + (":packed" if s.packed else "") for s in specs for f in s.fields
    )
    return hashlib.sha256("\n".join(refs).encode()).hexdigest()[:12]


def build_service(views: list[FeatureView], specs: list[FeatureViewSpec]) -> FeatureService:
    """The one FeatureService ``ranker_v<N>`` listing every feature of every view."""
    return FeatureService(
        name=FEATURE_SERVICE_NAME,
        features=views,
        description="Every feature of every dbt feature mart: the ranker's only feature list.",
        tags={"feature_list_sha": feature_list_sha(specs)},
    )


def build_definitions(
    specs: list[FeatureViewSpec], marts_dir: Path | None = None, engine: Engine = "duckdb"
) -> Definitions:
    """Entities, one source and one view per spec, and the feature service over all views; with
    ``marts_dir``, also the views of the embedding marts found there and their service. The sources are
    for ``engine``'s offline store."""
    entities = build_entities()
    sources = [build_source(s, engine) for s in specs]
    views = [build_view(s, entities, src) for s, src in zip(specs, sources, strict=True)]
    embeddings = (
        embedding_objects(marts_dir, entities, engine)
        if marts_dir is not None
        else EmbeddingObjects([], [], None)
    )
    used = {e for s in specs for e in s.entities} | {e for v in embeddings.views for e in v.entities}
    return Definitions(
        entities=[entities[e] for e in sorted(used)],
        sources=sources,
        views=views,
        service=build_service(views, specs),
        embeddings=embeddings,
    )
