"""Tasks declared by dbt label models, the binary tasks' evaluation: known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nextbest.training.metrics import recsys2025_score
from nextbest.training.tasks import (
    CLASSIFIER,
    POPULARITY,
    TaskSpec,
    UnknownTaskError,
    bootstrap_auc,
    category_lines,
    category_popularity,
    check_trainable,
    evaluate_binary,
    evaluate_categories,
    evaluation_lines,
    rule_scores,
    task_specs_from_manifest,
    with_customer_features,
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


def test_a_label_models_own_features_are_its_columns_marked_task_feature() -> None:
    manifest = {"nodes": {"model.nextbest.fct_category_propensity_labels": {
        "resource_type": "model", "name": "fct_category_propensity_labels",
        "meta": {"task": "category_propensity", "entity": "customer_category", "kind": "multi_label"},
        "columns": {
            "customer_id": {"meta": {}},
            "months_since_category_activity": {"config": {"meta": {"task_feature": True}}},
            "sum_spend_category_last_12_months": {"meta": {"task_feature": True}},
            "label": {},
        },
    }}}
    spec = task_specs_from_manifest(manifest)["category_propensity"]
    assert spec.features == ("months_since_category_activity", "sum_spend_category_last_12_months")
    assert spec.keys == ("customer_id", "category")
    check_trainable(spec)  # a multi-label customer x category task trains


def test_a_ranking_task_does_not_train_as_a_classifier() -> None:
    spec = TaskSpec("product_propensity", "fct_ranking_labels", "customer_product", "ranking")
    assert spec.keys == ("customer_id",)
    with pytest.raises(UnknownTaskError, match="'product_propensity' is a ranking task on customer_product"):
        check_trainable(spec)


def test_customer_features_join_on_customer_and_snapshot_keeping_row_order() -> None:
    labels = pd.DataFrame(
        {"customer_id": ["b", "a", "b"], "snapshot_on": [1, 1, 2], "category": ["x", "y", "x"]}
    )
    customer = pd.DataFrame({"customer_id": ["a", "b", "b"], "snapshot_on": [1, 1, 2],
                             "event_timestamp": [0, 0, 0], "age": [30, 40, 41]})
    out = with_customer_features(labels, customer)
    assert out["age"].tolist() == [40, 30, 41] and "event_timestamp" not in out
    with pytest.raises(pd.errors.MergeError):  # one customer row per snapshot, never two
        with_customer_features(labels, pd.concat([customer, customer]))


def test_category_popularity_is_the_training_adoption_rate_of_the_category() -> None:
    train = pd.DataFrame({"category": ["x", "x", "x", "x", "y", "y"], "label": [1, 0, 0, 0, 1, 1]})
    test = pd.DataFrame({"category": ["y", "x", "z"]})
    # x: 1/4, y: 2/2; z unseen: the overall rate 3/6
    assert category_popularity(train, test).tolist() == [1.0, 0.25, 0.5]


def test_evaluate_categories_by_category_as_a_ranking_and_by_the_recsys_composite() -> None:
    # two customers at one snapshot, three categories; the classifier ranks each customer's positive first
    test = pd.DataFrame({
        "customer_id": ["a", "a", "a", "b", "b", "b"], "snapshot_on": [1] * 6,
        "category": ["x", "y", "z", "x", "y", "z"], "label": [1, 0, 0, 0, 1, 0],
    })
    train = pd.DataFrame({"category": ["x", "x", "y", "z"], "label": [1, 1, 1, 0]})
    classifier = np.array([2.0, 1.0, 0.0, -1.0, 3.0, 0.5])
    popularity = category_popularity(train, test)  # x 1, y 1, z 0
    out = evaluate_categories(test, {CLASSIFIER: classifier, POPULARITY: popularity}, train, k=1)
    assert out["ranking"][CLASSIFIER] == {"ndcg": 1.0, "recall": 1.0}
    # popularity ties x and y (stable order: x first): a hit for a, a miss for b
    assert out["ranking"][POPULARITY] == {"ndcg": 0.5, "recall": 0.5}
    assert out["per_category"]["x"] == {"rows": 2, "positives": 1, CLASSIFIER: 1.0, POPULARITY: 0.5}
    assert np.isnan(out["per_category"]["z"][CLASSIFIER])  # no positive: no AUROC
    frame = test.assign(score=classifier)
    expected = recsys2025_score(frame, pd.Series({"x": 2.0, "y": 1.0, "z": 0.0}), product_col="category",
                                group_cols=("customer_id", "snapshot_on"))
    assert out["recsys2025"][CLASSIFIER] == pytest.approx(expected)
    assert out["recsys2025"][CLASSIFIER]["auroc"] == 1.0  # x and y separated, z skipped


def test_category_lines_show_the_ranking_the_recsys_parts_and_one_line_per_category() -> None:
    categories = {
        "k": 3,
        "ranking": {CLASSIFIER: {"ndcg": 0.5, "recall": 0.75}, POPULARITY: {"ndcg": 0.25, "recall": 0.5},
                    "rule": {"ndcg": 0.125, "recall": 0.25}},
        "recsys2025": {CLASSIFIER: {"score": 0.7, "auroc": 0.8, "novelty": 0.1, "diversity": 0.6}},
        "per_category": {"x": {"rows": 1200, "positives": 3, CLASSIFIER: 0.9, POPULARITY: 0.5, "rule": 0.6},
                         "y": {"rows": 5, "positives": 0, CLASSIFIER: float("nan")}},
    }
    lines = category_lines(categories)
    assert lines[0].split() == ["ranking", "of", "categories", "nDCG@3", "rec@3", "RecSys25", "AUROC",
                                "novelty", "divers."]
    assert lines[1].split() == [CLASSIFIER, "0.5000", "0.7500", "0.7000", "0.8000", "0.1000", "0.6000"]
    assert lines[3].split() == ["rule", "0.1250", "0.2500"]  # no RecSys score for a rule
    assert lines[4].split() == ["AUROC", "by", "category", "rows", "pos.", CLASSIFIER, "rule"]
    assert lines[5].split() == ["x", "1,200", "3", "0.9000", "0.6000"]
    assert lines[6].split() == ["y", "5", "0", "nan", "nan"]


def test_evaluation_lines_say_whether_the_classifier_beats_each_baseline_by_two_standard_errors() -> None:
    spec = TaskSpec(name="churn", model="fct_churn_labels", entity="customer", kind="binary")
    row = {"auroc_se": 0.01, "pr_auc": 0.2}
    ev = {
        "rows": 1000, "customers": 900, "positive_rate": 0.05,
        "models": {
            CLASSIFIER: row | {"auroc": 0.85, "auroc_below_reference": 0.0, "auroc_below_reference_se": 0.0,
                               "brier": 0.04, "ece": 0.01},
            "recency_rule": row | {"auroc": 0.78, "auroc_below_reference": 0.07,
                                   "auroc_below_reference_se": 0.02, "reference_wins_by_2se": True},
            "logistic_regression": row | {"auroc": 0.84, "auroc_below_reference": 0.01,
                                          "auroc_below_reference_se": 0.01, "reference_wins_by_2se": False},
        },
    }
    lines = evaluation_lines(spec, ev, best_iteration=120)
    assert lines[0] == "task churn (fct_churn_labels): test 1,000 rows, 900 customers, positive rate 5.00%"
    assert lines[1].split()[-2:] == ["beaten", ">2se"]
    assert lines[2].split() == [CLASSIFIER, "0.8500", "0.0100", "0.2000"]
    assert lines[3].split() == ["recency_rule", "0.7800", "0.0100", "0.2000", "-0.0700", "±", "0.0200", "yes"]
    assert lines[4].split()[-1] == "no"
    assert lines[5] == "calibrated classifier: Brier 0.0400, ECE 0.0100; best iteration 120"
