"""nextbest.features.manifest, nextbest.features.schema and nextbest.features.staleness:
pure functions, known answers, error cases."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nextbest.features.definitions import FEATURE_SERVICE_NAME, build_definitions, feature_list_sha
from nextbest.features.manifest import (
    ManifestError,
    feature_groups,
    feature_specs_from_dict,
    feature_specs_from_manifest,
    spec_from_node,
)
from nextbest.features.schema import normalise
from nextbest.features.staleness import stale_views, staleness_report

MARTS = Path("/data/marts")


def column(name: str, data_type: str | None, description: str = "a column") -> dict:
    return {"name": name, "data_type": data_type, "description": description}


def model_node(
    name: str = "feat_customer_monthly",
    entities: list[str] | None = None,
    view: str | None = "customer_monthly",
    ttl_days: object = 40,
    features: list[tuple[str, str | None]] | None = None,
    meta_at: str = "config",
) -> dict:
    entities = ["customer"] if entities is None else entities
    keys = [
        {"customer": "customer_id", "product": "product_id"}[e]
        for e in entities
        if e in ("customer", "product")
    ]
    features = [("tenure_months", "integer"), ("income", "double")] if features is None else features
    cols = [column(k, "varchar") for k in keys] + [column("event_timestamp", "timestamp")]
    cols += [column(n, t) for n, t in features]
    feast = {"entities": entities, "ttl_days": ttl_days, **({"view": view} if view else {})}
    node = {
        "resource_type": "model",
        "name": name,
        "description": "One row per customer x snapshot.",
        "config": {"meta": {}},
        "meta": {},
        "columns": {c["name"]: c for c in cols},
    }
    if meta_at == "config":
        node["config"]["meta"]["feast"] = feast
    else:
        node["meta"]["feast"] = feast
    return node


def manifest(*nodes: dict) -> dict:
    return {"nodes": {f"model.nextbest.{n['name']}": n for n in nodes}}


THREE_MARTS = manifest(
    model_node(),
    model_node(
        "feat_product_monthly",
        ["product"],
        "product_monthly",
        features=[("count_owners", "bigint"), ("segment_name", "varchar")],
    ),
    model_node(
        "feat_customer_product_monthly",
        ["customer", "product"],
        "customer_product_monthly",
        features=[("is_previously_held", "integer"), ("is_eligible", "boolean")],
    ),
    {"resource_type": "model", "name": "dim_products", "config": {"meta": {}}, "columns": {}},
    {"resource_type": "test", "name": "not_null_x", "config": {"meta": {"feast": {"entities": ["bogus"]}}}},
)


class TestFeatureSpecs:
    def test_three_marts_give_three_specs_sorted_by_view(self) -> None:
        specs = feature_specs_from_dict(THREE_MARTS, MARTS)
        assert [s.view for s in specs] == ["customer_monthly", "customer_product_monthly", "product_monthly"]
        cp = specs[1]
        assert cp.model == "feat_customer_product_monthly"
        assert cp.entities == ("customer", "product") and cp.join_keys == ("customer_id", "product_id")
        assert cp.parquet_path == MARTS / "feat_customer_product_monthly.parquet"
        assert cp.source_name == "customer_product_monthly_source"
        assert cp.ttl == timedelta(days=40)
        assert cp.description == "One row per customer x snapshot."

    def test_fields_keep_yml_order_and_map_types(self) -> None:
        specs = {s.view: s for s in feature_specs_from_dict(THREE_MARTS, MARTS)}
        assert [(f.name, f.feast_type) for f in specs["customer_monthly"].fields] == [
            ("tenure_months", "Int32"),
            ("income", "Float64"),
        ]
        assert [(f.name, f.feast_type) for f in specs["product_monthly"].fields] == [
            ("count_owners", "Int64"),
            ("segment_name", "String"),
        ]
        assert specs["customer_product_monthly"].fields[1].feast_type == "Bool"

    def test_data_type_is_case_insensitive(self) -> None:
        spec = spec_from_node(model_node(features=[("income", "DOUBLE")]), MARTS)
        assert spec is not None and spec.fields[0].feast_type == "Float64"

    def test_node_level_meta_is_read_when_config_meta_has_no_feast(self) -> None:
        spec = spec_from_node(model_node(meta_at="node"), MARTS)
        assert spec is not None and spec.view == "customer_monthly"

    def test_view_name_defaults_to_the_model_name_without_prefix(self) -> None:
        spec = spec_from_node(model_node(view=None), MARTS)
        assert spec is not None and spec.view == "customer_monthly"

    def test_created_timestamp_column_is_not_a_feature(self) -> None:
        node = model_node(features=[("income", "double"), ("created_at", "timestamp")])
        node["config"]["meta"]["feast"]["created_timestamp_column"] = "created_at"
        spec = spec_from_node(node, MARTS)
        assert spec is not None and spec.created_timestamp_column == "created_at"
        assert spec.feature_names == ["income"]
        assert build_definitions([spec]).sources[0].created_timestamp_column == "created_at"

    def test_undocumented_created_timestamp_column_is_rejected(self) -> None:
        node = model_node()
        node["config"]["meta"]["feast"]["created_timestamp_column"] = "loaded_at"
        with pytest.raises(ManifestError, match="loaded_at"):
            spec_from_node(node, MARTS)

    def test_model_without_feast_meta_is_not_a_view(self) -> None:
        assert spec_from_node({"name": "dim_products", "config": {"meta": {}}, "columns": {}}, MARTS) is None

    def test_reads_a_manifest_file(self, tmp_path: Path) -> None:
        path = tmp_path / "manifest.json"
        path.write_text(json.dumps(THREE_MARTS))
        assert len(feature_specs_from_manifest(path, tmp_path)) == 3

    def test_missing_manifest_file_says_to_build(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError, match="dbt build"):
            feature_specs_from_manifest(tmp_path / "manifest.json", tmp_path)

    @pytest.mark.parametrize(
        ("node", "message"),
        [
            (model_node(features=[("income", "float")]), "income.*data_type 'float'"),
            (model_node(features=[("income", None)]), "income.*data_type None"),
            (model_node(entities=["household"]), "entities"),
            (model_node(entities=[]), "entities"),
            (model_node(ttl_days=0), "ttl_days"),
            (model_node(ttl_days="40"), "ttl_days"),
            (model_node(ttl_days=True), "ttl_days"),
            (model_node(features=[]), "no feature columns"),
        ],
    )
    def test_invalid_model_is_rejected_naming_the_problem(self, node: dict, message: str) -> None:
        with pytest.raises(ManifestError, match=message):
            spec_from_node(node, MARTS)

    def test_feature_without_description_is_rejected(self) -> None:
        node = model_node()
        node["columns"]["income"]["description"] = " "
        with pytest.raises(ManifestError, match="income.*no description"):
            spec_from_node(node, MARTS)

    def test_undocumented_key_column_is_rejected(self) -> None:
        node = model_node()
        del node["columns"]["customer_id"]
        with pytest.raises(ManifestError, match="customer_id"):
            spec_from_node(node, MARTS)

    def test_two_models_for_one_view_are_rejected(self) -> None:
        other = model_node("feat_customer_monthly_v2", features=[("age_years", "integer")])
        with pytest.raises(ManifestError, match="customer_monthly"):
            feature_specs_from_dict(manifest(model_node(), other), MARTS)

    def test_a_feature_name_in_two_views_is_rejected(self) -> None:
        other = model_node(
            "feat_product_monthly", ["product"], "product_monthly", features=[("income", "double")]
        )
        with pytest.raises(ManifestError, match="'income'.*unique"):
            feature_specs_from_dict(manifest(model_node(), other), MARTS)

    def test_a_manifest_without_feature_marts_is_rejected(self) -> None:
        with pytest.raises(ManifestError, match="no model"):
            feature_specs_from_dict(manifest({"resource_type": "model", "name": "dim_products"}), MARTS)


def pair_and_packed_nodes(pair_features: list[tuple[str, str | None]] | None = None) -> tuple[dict, dict]:
    """A customer x product model without meta.feast and the packed model that carries it to Feast."""
    pair = model_node(
        "feat_customer_product_monthly",
        ["customer", "product"],
        None,
        features=[("is_previously_held", "integer"), ("channel", "varchar")]
        if pair_features is None
        else pair_features,
    )
    del pair["config"]["meta"]["feast"]
    packed = model_node(
        "feat_customer_product_monthly_packed", ["customer"], "customer_product_monthly", features=[]
    )
    packed["columns"]["candidate_product_ids"] = column("candidate_product_ids", "varchar[]")
    packed["config"]["meta"]["feast"]["packs"] = "feat_customer_product_monthly"
    return pair, packed


class TestPackedSpecs:
    def test_packed_view_takes_the_pair_models_features_and_is_keyed_by_customer(self) -> None:
        pair, packed = pair_and_packed_nodes()
        specs = {s.view: s for s in feature_specs_from_dict(manifest(model_node(), pair, packed), MARTS)}
        assert set(specs) == {"customer_monthly", "customer_product_monthly"}
        spec = specs["customer_product_monthly"]
        assert spec.packed and spec.packs == "feat_customer_product_monthly"
        assert spec.model == "feat_customer_product_monthly_packed"
        assert spec.parquet_path == MARTS / "feat_customer_product_monthly_packed.parquet"
        assert spec.join_keys == ("customer_id",)
        assert spec.row_keys == ("customer_id", "product_id")
        assert [(f.name, f.feast_type) for f in spec.fields] == [
            ("is_previously_held", "Int32"),
            ("channel", "String"),
        ]
        assert not specs["customer_monthly"].packed

    def test_feast_fields_are_lists_tagged_with_their_element_type(self) -> None:
        pair, packed = pair_and_packed_nodes()
        spec = spec_from_node(packed, MARTS, manifest(pair, packed)["nodes"])
        assert spec is not None
        view = build_definitions([spec]).views[0]
        fields = {f.name: (str(f.dtype), f.tags.get("element_type")) for f in view.features}
        assert fields == {
            "candidate_product_ids": ("Array(String)", None),
            "is_previously_held": ("Array(Float64)", "Int32"),
            "channel": ("Array(String)", "String"),
        }
        assert [e.name for e in view.entity_columns] == ["customer_id"]

    def test_packing_changes_the_feature_list_sha(self) -> None:
        pair, packed = pair_and_packed_nodes()
        packed_spec = spec_from_node(packed, MARTS, manifest(pair, packed)["nodes"])
        plain = model_node(
            "feat_customer_product_monthly",
            ["customer", "product"],
            "customer_product_monthly",
            features=[("is_previously_held", "integer"), ("channel", "varchar")],
        )
        plain_spec = spec_from_node(plain, MARTS)
        assert packed_spec is not None and plain_spec is not None
        assert feature_list_sha([packed_spec]) != feature_list_sha([plain_spec])

    def test_packed_model_must_be_keyed_by_customer(self) -> None:
        pair, packed = pair_and_packed_nodes()
        packed["config"]["meta"]["feast"]["entities"] = ["customer", "product"]
        packed["columns"]["product_id"] = column("product_id", "varchar")
        with pytest.raises(ManifestError, match=r"must have entities \[customer\]"):
            spec_from_node(packed, MARTS, manifest(pair, packed)["nodes"])

    def test_packed_model_must_document_its_product_list(self) -> None:
        pair, packed = pair_and_packed_nodes()
        packed["columns"]["candidate_product_ids"]["data_type"] = "varchar"
        with pytest.raises(ManifestError, match="candidate_product_ids as data_type varchar\\[\\]"):
            spec_from_node(packed, MARTS, manifest(pair, packed)["nodes"])

    def test_unknown_pair_model_is_named(self) -> None:
        pair, packed = pair_and_packed_nodes()
        packed["config"]["meta"]["feast"]["packs"] = "feat_nope"
        with pytest.raises(ManifestError, match="'feat_nope', which is not a model"):
            spec_from_node(packed, MARTS, manifest(pair, packed)["nodes"])

    def test_pair_feature_without_type_is_rejected_naming_the_pair_model(self) -> None:
        pair, packed = pair_and_packed_nodes([("is_previously_held", None)])
        with pytest.raises(
            ManifestError, match="model feat_customer_product_monthly: column 'is_previously_held'"
        ):
            spec_from_node(packed, MARTS, manifest(pair, packed)["nodes"])


def with_group(node: dict, column_name: str, group: object, at: str = "config") -> dict:
    """``node`` with ``feature_group`` on one column, in ``config.meta`` (dbt 1.11) or ``meta``."""
    col = node["columns"][column_name]
    if at == "config":
        col.setdefault("config", {}).setdefault("meta", {})["feature_group"] = group
    else:
        col.setdefault("meta", {})["feature_group"] = group
    return node


class TestFeatureGroups:
    def test_group_is_the_view_name_without_meta(self) -> None:
        specs = feature_specs_from_dict(THREE_MARTS, MARTS)
        assert feature_groups(specs) == {
            "tenure_months": "customer_monthly",
            "income": "customer_monthly",
            "is_previously_held": "customer_product_monthly",
            "is_eligible": "customer_product_monthly",
            "count_owners": "product_monthly",
            "segment_name": "product_monthly",
        }

    @pytest.mark.parametrize("at", ["config", "column"])
    def test_column_meta_names_the_group_in_either_place(self, at: str) -> None:
        node = with_group(model_node(), "income", "demographics", at)
        spec = spec_from_node(node, MARTS)
        assert spec is not None
        assert [(f.name, f.group) for f in spec.fields] == [
            ("tenure_months", "customer_monthly"),
            ("income", "demographics"),
        ]

    def test_config_meta_wins_over_column_meta(self) -> None:
        node = with_group(with_group(model_node(), "income", "old", "column"), "income", "new", "config")
        spec = spec_from_node(node, MARTS)
        assert spec is not None and spec.feature_groups["income"] == "new"

    def test_packed_view_takes_the_pair_models_column_meta(self) -> None:
        pair, packed = pair_and_packed_nodes()
        with_group(pair, "channel", "channels")
        spec = spec_from_node(packed, MARTS, manifest(pair, packed)["nodes"])
        assert spec is not None
        assert spec.feature_groups == {
            "is_previously_held": "customer_product_monthly",
            "channel": "channels",
        }

    def test_requested_features_in_order_and_product_id_is_its_own_group(self) -> None:
        node = with_group(model_node(), "tenure_months", "tenure")
        specs = feature_specs_from_dict(manifest(node), MARTS)
        groups = feature_groups(specs, ["product_id", "income", "tenure_months"])
        assert list(groups.items()) == [
            ("product_id", "product_id"),
            ("income", "customer_monthly"),
            ("tenure_months", "tenure"),
        ]

    def test_a_hand_built_field_without_group_is_in_its_views_group(self) -> None:
        spec = spec_from_node(model_node(), MARTS)
        assert spec is not None
        bare = replace(spec, fields=tuple(replace(f, group="") for f in spec.fields))
        assert bare.feature_groups == {"tenure_months": "customer_monthly", "income": "customer_monthly"}

    @pytest.mark.parametrize("group", ["", "  ", 3, None])
    def test_an_invalid_group_is_rejected_naming_the_column(self, group: object) -> None:
        with pytest.raises(ManifestError, match="column 'income' has meta.feature_group"):
            spec_from_node(with_group(model_node(), "income", group), MARTS)

    def test_groups_do_not_change_the_feature_list_sha(self) -> None:
        plain = feature_specs_from_dict(manifest(model_node()), MARTS)
        grouped = feature_specs_from_dict(manifest(with_group(model_node(), "income", "money")), MARTS)
        assert feature_list_sha(plain) == feature_list_sha(grouped)


class TestDefinitions:
    def test_names_chain_source_view_service(self) -> None:
        defs = build_definitions(feature_specs_from_dict(THREE_MARTS, MARTS))
        assert [e.name for e in defs.entities] == ["customer", "product"]
        assert [s.name for s in defs.sources] == [f"{v.name}_source" for v in defs.views]
        assert defs.service.name == FEATURE_SERVICE_NAME
        assert [p.name for p in defs.service.feature_view_projections] == [v.name for v in defs.views]

    def test_feature_list_sha_changes_with_the_feature_list_only(self) -> None:
        specs = feature_specs_from_dict(THREE_MARTS, MARTS)
        assert feature_list_sha(specs) == feature_list_sha(list(reversed(specs)))
        assert len(feature_list_sha(specs)) == 12
        bigger = manifest(
            model_node(
                features=[("tenure_months", "integer"), ("income", "double"), ("age_years", "integer")]
            )
        )
        smaller = manifest(model_node())
        assert feature_list_sha(feature_specs_from_dict(bigger, MARTS)) != feature_list_sha(
            feature_specs_from_dict(smaller, MARTS)
        )


class TestNormalise:
    SPECS = feature_specs_from_dict(THREE_MARTS, MARTS)

    def test_offline_and_online_shapes_become_equal(self) -> None:
        offline = pd.DataFrame(
            {
                "customer_id": ["c1", "c2"],
                "event_timestamp": pd.to_datetime(["2024-03-01", "2024-03-01"]),
                "tenure_months": [3.0, np.nan],  # nullable int read offline: float64 + NaN
                "income": [1.5, np.nan],
                "segment_name": ["mass", None],
                "is_eligible": [True, None],
            }
        )
        online = pd.DataFrame(
            {
                "customer_id": pd.Series(["c1", "c2"], dtype="object"),
                "event_timestamp": pd.to_datetime(["2024-03-01", "2024-03-01"], utc=True),
                "tenure_months": pd.Series([3, None], dtype="object"),  # proto: int / None
                "income": pd.Series([1.5, None], dtype="object"),
                "segment_name": pd.Series(["mass", None], dtype="object"),
                "is_eligible": pd.Series([True, None], dtype="object"),
            }
        )
        a, b = normalise(offline, self.SPECS), normalise(online, self.SPECS)
        pd.testing.assert_frame_equal(a, b)
        assert a.dtypes.astype(str).to_dict() == {
            "customer_id": "string",
            "event_timestamp": "datetime64[ns, UTC]",
            "tenure_months": "Int64",
            "income": "Float64",
            "segment_name": "string",
            "is_eligible": "boolean",
        }

    def test_columns_outside_the_specs_are_untouched(self) -> None:
        df = pd.DataFrame({"label": [1, 0], "income": [1.0, 2.0]})
        out = normalise(df, self.SPECS)
        assert out["label"].dtype == np.int64 and str(out["income"].dtype) == "Float64"

    def test_non_integral_value_for_an_integer_feature_is_an_error(self) -> None:
        with pytest.raises(ValueError, match="tenure_months"):
            normalise(pd.DataFrame({"tenure_months": [1.5]}), self.SPECS)


class TestStaleness:
    SPECS = feature_specs_from_dict(THREE_MARTS, MARTS)
    NOW = datetime(2024, 3, 15, tzinfo=UTC)

    def test_age_exactly_the_ttl_is_fresh_and_one_second_more_is_stale(self) -> None:
        ttl = timedelta(days=40)
        stamps = {
            "customer_monthly": self.NOW - ttl,
            "product_monthly": self.NOW - ttl - timedelta(seconds=1),
            "customer_product_monthly": self.NOW,
        }
        report = {r.view: r for r in staleness_report(stamps, self.SPECS, self.NOW)}
        assert not report["customer_monthly"].is_stale and report["customer_monthly"].age == ttl
        assert report["product_monthly"].is_stale
        assert not report["customer_product_monthly"].is_stale
        assert stale_views(report.values()) == ["product_monthly"]

    def test_missing_views_are_stale(self) -> None:
        report = staleness_report({"customer_monthly": None}, self.SPECS, self.NOW)
        assert [(r.view, r.is_missing, r.is_stale) for r in report] == [
            ("customer_monthly", True, True),
            ("customer_product_monthly", True, True),
            ("product_monthly", True, True),
        ]

    def test_a_value_from_the_future_is_stale(self) -> None:
        stamps = {"customer_monthly": self.NOW + timedelta(days=1)}
        assert "customer_monthly" in stale_views(staleness_report(stamps, self.SPECS, self.NOW))

    def test_naive_times_are_rejected(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            staleness_report({}, self.SPECS, datetime(2024, 3, 15))
        with pytest.raises(ValueError, match="customer_monthly"):
            staleness_report({"customer_monthly": datetime(2024, 3, 1)}, self.SPECS, self.NOW)
