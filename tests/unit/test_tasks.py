"""Tasks declared by dbt label models, the binary tasks' evaluation: known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nextbest.training.tasks import (
    CLASSIFIER,
    bootstrap_auc,
    evaluate_binary,
    rule_scores,
    task_specs_from_manifest,
)


def test_task_specs_come_from_models_whose_meta_names_a_task() -> None:
    manifest = {
        "nodes": {
            "model.nextbest.fct_churn_labels": {
                "resource_type": "model", "name": "fct_churn_labels", "description": "Churn\n  labels.",
                "meta": {"task": "churn", "entity": "customer", "kind": "binary"},
            },
            "model.nextbest.fct_ranking_labels": {
                "resource_type": "model", "name": "fct_ranking_labels",
                "config": {
                    "meta": {"task": "product_propensity", "entity": "customer_product", "kind": "ranking"}
                },
            },
            "model.nextbest.dim_products": {"resource_type": "model", "name": "dim_products", "meta": {}},
            "test.nextbest.x": {"resource_type": "test", "name": "x", "meta": {"task": "not_a_model"}},
        }
    }
    specs = task_specs_from_manifest(manifest)
    assert list(specs) == ["churn", "product_propensity"]
    assert specs["churn"].model == "fct_churn_labels" and specs["churn"].description == "Churn labels."
    ranking = specs["product_propensity"]
    assert (ranking.entity, ranking.kind) == ("customer_product", "ranking")


def test_rule_scores_fill_missing_then_sign() -> None:
    frame = pd.DataFrame({"months": pd.array([1, None, 3], dtype="Int32")})
    assert rule_scores(frame, "months", 1.0, 1e6).tolist() == [1.0, 1e6, 3.0]
    assert rule_scores(frame, "months", -1.0, 0.0).tolist() == [-1.0, 0.0, -3.0]


def test_bootstrap_auc_of_a_perfect_score_is_one_with_no_spread() -> None:
    label = np.array([0, 0, 1, 1, 0, 1] * 10)
    perfect = label + 0.5
    flipped = -perfect
    customers = np.arange(len(label)) // 2
    out = bootstrap_auc(label, {"a": perfect, "b": flipped}, customers, reference="a", samples=50)
    assert out["a"]["auroc"] == 1.0 and out["a"]["auroc_se"] == 0.0
    assert out["a"]["auroc_below_reference"] == 0.0 and out["a"]["auroc_below_reference_se"] == 0.0
    assert out["b"]["auroc"] == 0.0 and out["b"]["auroc_below_reference"] == 1.0


def test_evaluate_binary_flags_a_baseline_beaten_by_more_than_two_standard_errors() -> None:
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, 600)
    good = label + rng.normal(0, 0.5, 600)
    noise = rng.normal(0, 1, 600)
    test = pd.DataFrame({"customer_id": [f"c{i}" for i in range(600)], "label": label})
    out = evaluate_binary(test, {CLASSIFIER: good, "noise": noise}, probability=np.clip(good, 0, 1))
    assert out["rows"] == 600 and out["customers"] == 600
    assert out["models"]["noise"]["reference_wins_by_2se"] is True
    assert out["models"][CLASSIFIER]["auroc"] > 0.8 > 0.6 > out["models"]["noise"]["auroc"]
    assert {"brier", "ece"} <= set(out["models"][CLASSIFIER]) and "brier" not in out["models"]["noise"]
    with pytest.raises(KeyError):
        out["models"][CLASSIFIER]["reference_wins_by_2se"]
