"""Read the compiled dbt manifest into typed feature-view specs.

The dbt model yml is the single source of truth for the feature list: a feature mart declares
``config: meta: feast: {entities: [...], ttl_days: N, view: <name>}``; the key columns
(``customer_id``, ``product_id``) and ``event_timestamp`` are recognised by name and every other
column is a feature with a ``data_type`` and a description. Nothing in this module touches Feast,
so it is pure and cheap to test.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

EVENT_TIMESTAMP = "event_timestamp"
"""The one timestamp column of every feature mart: the moment the row became knowable."""

ENTITY_JOIN_KEYS: dict[str, str] = {"customer": "customer_id", "product": "product_id"}
"""Entity name -> join key column."""

DbtType = Literal["varchar", "integer", "bigint", "double", "boolean"]
FeastType = Literal["String", "Int32", "Int64", "Float64", "Bool"]

DBT_TO_FEAST: dict[str, FeastType] = {
    "varchar": "String",
    "integer": "Int32",
    "bigint": "Int64",
    "double": "Float64",
    "boolean": "Bool",
}
"""Accepted dbt ``data_type`` values (lower case) and the Feast type each becomes."""


class ManifestError(ValueError):
    """The manifest does not describe a valid feature mart (the message names the model and column)."""


@dataclass(frozen=True)
class FieldSpec:
    """One feature column of a feature mart."""

    name: str
    dbt_type: str
    feast_type: FeastType
    description: str


@dataclass(frozen=True)
class FeatureViewSpec:
    """Everything needed to declare one Feast feature view for one dbt feature mart.

    Attributes:
        view: Feast feature view name (from ``meta.feast.view``), e.g. ``customer_monthly``.
        model: dbt model name, e.g. ``feat_customer_monthly``.
        parquet_path: absolute path of the external parquet mart.
        entities: Feast entity names, in the order declared in the yml.
        join_keys: the entities' join key columns, same order.
        ttl: how long a row stays valid after its ``event_timestamp``.
        fields: feature columns in yml order (keys and ``event_timestamp`` excluded).
        description: the dbt model description (states the grain).
        created_timestamp_column: optional column (``meta.feast.created_timestamp_column``) saying when
            a row was written; among rows with the same keys and event_timestamp (a restatement) the
            latest created wins, offline and online. Without it, keys x event_timestamp must be unique
            (the marts' grain tests enforce it) since Feast would pick one of the tied rows arbitrarily.
    """

    view: str
    model: str
    parquet_path: Path
    entities: tuple[str, ...]
    join_keys: tuple[str, ...]
    ttl: timedelta
    fields: tuple[FieldSpec, ...]
    description: str
    created_timestamp_column: str | None = None

    @property
    def source_name(self) -> str:
        """Name of the Feast data source feeding this view (``<view>_source``)."""
        return f"{self.view}_source"

    @property
    def feature_names(self) -> list[str]:
        """Feature column names in yml order."""
        return [f.name for f in self.fields]


def load_manifest(manifest_path: Path) -> dict[str, Any]:
    """Parse a dbt ``manifest.json``; raise FileNotFoundError with a hint when it is missing."""
    if not manifest_path.exists():
        raise FileNotFoundError(f"dbt manifest not found at {manifest_path}: run dbt build first")
    with manifest_path.open() as f:
        return json.load(f)


def _feast_meta(node: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ``feast`` block of a model's meta (``config.meta`` first, then the node-level ``meta``)."""
    for meta in ((node.get("config") or {}).get("meta") or {}, node.get("meta") or {}):
        if "feast" in meta:
            return meta["feast"]
    return None


def _field_spec(model: str, column: Mapping[str, Any]) -> FieldSpec:
    """A FieldSpec from one manifest column entry; raise ManifestError on an unknown or missing type."""
    name = column["name"]
    dbt_type = (column.get("data_type") or "").strip().lower()
    if dbt_type not in DBT_TO_FEAST:
        raise ManifestError(
            f"model {model}: column {name!r} has data_type {column.get('data_type')!r}; "
            f"expected one of {sorted(DBT_TO_FEAST)}"
        )
    description = (column.get("description") or "").strip()
    if not description:
        raise ManifestError(f"model {model}: column {name!r} has no description")
    return FieldSpec(name=name, dbt_type=dbt_type, feast_type=DBT_TO_FEAST[dbt_type], description=description)


def spec_from_node(node: Mapping[str, Any], marts_dir: Path) -> FeatureViewSpec | None:
    """The FeatureViewSpec of one manifest model node, or None if the model carries no ``meta.feast``.

    Raises:
        ManifestError: unknown entity, non-positive ttl, missing key column in the yml, a feature
            without a valid data_type or description, or a view without any feature.
    """
    feast = _feast_meta(node)
    if feast is None:
        return None
    model = node["name"]
    entities = tuple(feast.get("entities") or ())
    unknown = [e for e in entities if e not in ENTITY_JOIN_KEYS]
    if not entities or unknown:
        raise ManifestError(
            f"model {model}: meta.feast.entities {list(entities)} must be a non-empty subset "
            f"of {sorted(ENTITY_JOIN_KEYS)}"
        )
    ttl_days = feast.get("ttl_days")
    if not isinstance(ttl_days, int | float) or isinstance(ttl_days, bool) or ttl_days <= 0:
        raise ManifestError(f"model {model}: meta.feast.ttl_days must be a positive number, got {ttl_days!r}")
    view = feast.get("view") or model.removeprefix("feat_")
    join_keys = tuple(ENTITY_JOIN_KEYS[e] for e in entities)
    columns: Mapping[str, Mapping[str, Any]] = node.get("columns") or {}
    missing = [k for k in (*join_keys, EVENT_TIMESTAMP) if k not in columns]
    if missing:
        raise ManifestError(f"model {model}: the yml does not document key column(s) {missing}")
    created = feast.get("created_timestamp_column")
    if created is not None and created not in columns:
        raise ManifestError(f"model {model}: created_timestamp_column {created!r} is not documented")
    all_keys = set(ENTITY_JOIN_KEYS.values()) | {EVENT_TIMESTAMP, created}
    fields = tuple(_field_spec(model, col) for name, col in columns.items() if name not in all_keys)
    if not fields:
        raise ManifestError(f"model {model}: no feature columns documented")
    return FeatureViewSpec(
        view=view,
        model=model,
        parquet_path=(marts_dir / f"{model}.parquet").resolve(),
        entities=entities,
        join_keys=join_keys,
        ttl=timedelta(days=ttl_days),
        fields=fields,
        description=(node.get("description") or "").strip(),
        created_timestamp_column=created,
    )


def feature_specs_from_dict(manifest: Mapping[str, Any], marts_dir: Path) -> list[FeatureViewSpec]:
    """Specs of every model in a parsed manifest that carries ``meta.feast``, sorted by view name.

    Raises:
        ManifestError: a spec is invalid, two models claim the same view, two views share a feature
            name (plain feature names must be unique across the feature service), or none is found.
    """
    specs = [
        spec
        for node in (manifest.get("nodes") or {}).values()
        if node.get("resource_type") == "model"
        if (spec := spec_from_node(node, marts_dir)) is not None
    ]
    if not specs:
        raise ManifestError("no model in the manifest carries meta.feast: nothing to register in Feast")
    seen_views: dict[str, str] = {}
    seen_features: dict[str, str] = {}
    for spec in specs:
        if spec.view in seen_views:
            raise ManifestError(f"models {seen_views[spec.view]} and {spec.model} both declare {spec.view!r}")
        seen_views[spec.view] = spec.model
        for name in spec.feature_names:
            if name in seen_features:
                raise ManifestError(
                    f"feature {name!r} is declared by both {seen_features[name]} and {spec.model}; "
                    "feature names must be unique across views"
                )
            seen_features[name] = spec.model
    return sorted(specs, key=lambda s: s.view)


def feature_specs_from_manifest(manifest_path: Path, marts_dir: Path) -> list[FeatureViewSpec]:
    """Specs of every feature mart in the dbt manifest at ``manifest_path`` (see feature_specs_from_dict)."""
    return feature_specs_from_dict(load_manifest(manifest_path), marts_dir)
