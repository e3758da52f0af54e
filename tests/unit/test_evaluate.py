"""nextbest.training.evaluate and the report's new sections:
feature groups, ablation, product wins, cold start.

Known answers on hand-made frames (nDCG of a positive ranked second = 1 / log2(3)), then one small
simulated fit through ``fit_models`` -> ``ablate_feature_groups`` -> ``evaluate_scored`` -> report.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nextbest.training import evaluate as ev
from nextbest.training import train as train_module
from nextbest.training.config import TrainingConfig
from nextbest.training.ranker import fit_ranker, prepare_groups
from nextbest.training.report import (
    REPORT_HTML,
    REPORT_JSON,
    details_text,
    load_report,
    report_payload,
    write_report,
)
from nextbest.training.train import ablate_feature_groups, evaluate_scored, fit_models, score_test

SECOND = 1 / math.log2(3)
"""nDCG@k of a group whose one positive is ranked second."""


def scored_frame(groups: dict[str, dict[str, list]]) -> pd.DataFrame:
    """A scored frame from {customer: {"label": [...], "<column>": [...]}}; products P0, P1, ..."""
    rows = []
    snapshot = pd.Timestamp("2024-02-01")
    for customer, cols in groups.items():
        for i in range(len(cols["label"])):
            keys = {"customer_id": customer, "event_timestamp": snapshot, "product_id": f"P{i}"}
            rows.append(keys | {name: values[i] for name, values in cols.items()})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- feature importance


def test_importance_is_summed_per_group_largest_first() -> None:
    importance = pd.Series({"product_id": 10.0, "a": 6.0, "b": 2.0, "c": 2.0})
    table = ev.importance_by_group(importance, {"a": "g1", "b": "g1", "c": "g2"})
    assert table.index.tolist() == ["product_id", "g1", "g2"]
    assert table["n_features"].tolist() == [1, 2, 1]
    assert table["gain"].tolist() == [10.0, 8.0, 2.0]
    assert table["share"].tolist() == pytest.approx([0.5, 0.4, 0.1])


def test_importance_table_lists_features_with_their_group() -> None:
    table = ev.importance_table(pd.Series({"a": 1.0, "b": 3.0}), {"a": "g1", "b": "g2"})
    assert table.index.tolist() == ["b", "a"]
    assert table["group"].tolist() == ["g2", "g1"]
    assert table["share"].tolist() == [0.75, 0.25]


# --------------------------------------------------------------------------- ablation


def test_ablation_delta_and_paired_standard_error_known_answer() -> None:
    # full ranker: A's positive first (1), B's positive first (1); C has no positive (left out).
    # without g_mixed: A second (1/log2 3), B first (1)  -> diffs (1/log2 3 - 1, 0)
    # without g_none: the same scores as the full ranker -> diffs (0, 0)
    df = scored_frame(
        {
            "A": {"label": [1, 0], "score__ranker": [2.0, 1.0]},
            "B": {"label": [0, 1], "score__ranker": [1.0, 2.0]},
            "C": {"label": [0, 0], "score__ranker": [1.0, 2.0]},
        }
    )
    ablated = {"g_mixed": np.array([1.0, 2.0, 1.0, 2.0, 0.0, 0.0]), "g_none": df["score__ranker"].to_numpy()}
    table = ev.ablation_table(df, ablated, {"g_mixed": 3, "g_none": 1}, k=7)
    half_loss = (1 - SECOND) / 2
    row = table.loc["g_mixed"]
    assert row["n_features"] == 3
    assert row["ndcg@7_without"] == pytest.approx((SECOND + 1) / 2)
    assert row["ndcg@7_diff"] == pytest.approx(-half_loss)
    # diffs (-2h, 0): sd = 2h / sqrt(2), s.e. = sd / sqrt(2) = h
    assert row["ndcg@7_diff_se"] == pytest.approx(half_loss)
    assert row["diff_over_se"] == pytest.approx(-1.0)
    none = table.loc["g_none"]
    assert none["ndcg@7_diff"] == 0.0 and none["ndcg@7_diff_se"] == 0.0 and math.isnan(none["diff_over_se"])
    assert ev.flatten_ablation(table, 7) == {
        "ranker.ablation.g_mixed.ndcg@7_diff": pytest.approx(-half_loss),
        "ranker.ablation.g_mixed.ndcg@7_diff_se": pytest.approx(half_loss),
        "ranker.ablation.g_none.ndcg@7_diff": 0.0,
        "ranker.ablation.g_none.ndcg@7_diff_se": 0.0,
    }


def test_expected_dcg_over_oracle_known_answer_weighs_every_group_by_what_it_can_give() -> None:
    # A: ranked 0.1 first, 0.3 second: DCG 0.1 + 0.3 s, ideal 0.3 + 0.1 s (s = 1/log2 3)
    # B (nobody adopted): ranked as the oracle, DCG = ideal = 0.2 + 0.05 s; k=1 keeps the first of each
    df = scored_frame(
        {
            "A": {"label": [0, 1], "oracle_probability": [0.1, 0.3], "score__ranker": [2.0, 1.0]},
            "B": {"label": [0, 0], "oracle_probability": [0.2, 0.05], "score__ranker": [2.0, 1.0]},
        }
    )
    expected = (0.1 + 0.3 * SECOND + 0.2 + 0.05 * SECOND) / (0.3 + 0.1 * SECOND + 0.2 + 0.05 * SECOND)
    assert ev.expected_dcg_over_oracle(df, "score__ranker", k=7) == pytest.approx(expected)
    assert ev.expected_dcg_over_oracle(df, "score__ranker", k=1) == pytest.approx((0.1 + 0.2) / (0.3 + 0.2))
    df["score__oracle"] = df["oracle_probability"]
    assert ev.expected_dcg_over_oracle(df, "score__oracle", k=7) == pytest.approx(1.0)


def test_ablation_table_without_groups_is_empty_with_its_columns() -> None:
    df = scored_frame({"A": {"label": [1, 0], "score__ranker": [2.0, 1.0]}})
    table = ev.ablation_table(df, {}, {}, k=7)
    assert table.empty and "ndcg@7_diff_se" in table.columns


# --------------------------------------------------------------------------- product wins


PER_PRODUCT = pd.DataFrame(
    {
        "positives": [10, 100, 50, 49, 60],
        "ndcg": [0.3, 0.2, 0.1, 0.6, 0.1],
        "per_product_ndcg": [0.1, 0.1, 0.1, 0.1, 0.2],
        "ndcg_diff": [0.2, 0.1, 0.0, 0.5, -0.1],
        "auc_diff": [0.01, -0.02, 0.03, 0.0, 0.05],
    },
    index=pd.Index(["e", "a", "c", "d", "b"], name="product_id"),
)


def test_share_won_counts_products_with_50_positives_and_a_tie_is_no_win() -> None:
    # eligible: a (100, won), b (60, lost), c (50, tie); d (49) and e (10) are too rare
    assert ev.share_products_won(PER_PRODUCT, 50) == (pytest.approx(1 / 3), 3)
    assert ev.share_products_won(PER_PRODUCT, 10) == (pytest.approx(3 / 5), 5)
    share, n = ev.share_products_won(PER_PRODUCT, 101)
    assert math.isnan(share) and n == 0
    share, n = ev.share_products_won(PER_PRODUCT.drop(columns="ndcg_diff"))
    assert math.isnan(share) and n == 0


def test_share_won_on_auc_judges_each_products_targeting() -> None:
    # eligible: a (100, AUC lost), b (60, won), c (50, won)
    assert ev.share_products_won(PER_PRODUCT, 50, diff="auc_diff") == (pytest.approx(2 / 3), 3)


def test_products_decided_counts_differences_beyond_two_se() -> None:
    # eligible: a (100: 0.1 / 0.04 = 2.5 won), b (60: -0.1 / 0.01 lost), c (50: 0, within noise)
    table = PER_PRODUCT.assign(ndcg_diff_se=[0.1, 0.04, 0.03, 0.1, 0.01])
    assert ev.products_decided(table, 50) == (1, 1)
    assert ev.products_decided(table, 50, z=3.0) == (0, 1)
    assert ev.products_decided(table, 10) == (2, 1)  # d: 0.5 / 0.1 won; e: 0.2 / 0.1 = 2 is not beyond
    assert ev.products_decided(PER_PRODUCT, 50) == (0, 0)  # no s.e. column


def test_contributions_by_frequency_sum_the_frequent_products_and_the_rest() -> None:
    # frequent (>= 50): a, c, b -> ranker 0.2 + 0.1 + 0.1, per-product 0.1 + 0.1 + 0.2; rest: e, d
    out = ev.contributions_by_frequency(PER_PRODUCT, 50)
    assert out == pytest.approx(
        {
            "ranker.ndcg_contribution_min50": 0.4,
            "ranker.ndcg_contribution_below50": 0.9,
            "per_product.ndcg_contribution_min50": 0.4,
            "per_product.ndcg_contribution_below50": 0.2,
        }
    )
    assert ev.contributions_by_frequency(PER_PRODUCT[["positives", "ndcg"]]) == {}


def test_product_wins_lists_every_product_most_positives_first() -> None:
    wins = ev.product_wins(PER_PRODUCT)
    assert wins.index.tolist() == ["a", "b", "c", "d", "e"]
    assert wins["positives"].tolist() == [100, 60, 50, 49, 10]
    assert wins["won"].tolist() == [True, False, False, True, True]
    assert list(wins.columns) == ["positives", "ndcg", "per_product_ndcg", "ndcg_diff", "auc_diff", "won"]
    assert ev.product_wins(PER_PRODUCT[["positives", "ndcg"]]).empty


# --------------------------------------------------------------------------- cold start


COLD = scored_frame(
    {
        # cold (owns nothing): ranker puts the positive first, popularity second
        "A": {"label": [0, 1], "count_products_owned": [0, 0], "score__ranker": [1.0, 2.0],
              "score__popularity": [2.0, 1.0]},
        # cold, no adoption
        "C": {"label": [0, 0], "count_products_owned": [0, 0], "score__ranker": [1.0, 2.0],
              "score__popularity": [2.0, 1.0]},
        # warm: ranker first, popularity second
        "B": {"label": [1, 0], "count_products_owned": [2, 2], "score__ranker": [2.0, 1.0],
              "score__popularity": [1.0, 2.0]},
        # unknown ownership counts as warm: both rank the positive second
        "D": {"label": [0, 1], "count_products_owned": [pd.NA, pd.NA], "score__ranker": [2.0, 1.0],
              "score__popularity": [2.0, 1.0]},
    }
).astype({"count_products_owned": "Int64"})


def test_cold_start_mask_marks_whole_groups_owning_nothing() -> None:
    assert ev.cold_start_mask(COLD).tolist() == [True, True, True, True, False, False, False, False]
    with pytest.raises(KeyError, match="count_products_owned"):
        ev.cold_start_mask(COLD.drop(columns="count_products_owned"))


def test_cold_start_split_known_answer() -> None:
    tables, counts = ev.cold_start_split(COLD, k=7)
    assert counts == {
        "cold_start.groups": 2.0,
        "cold_start.groups_with_positive": 1.0,
        "warm.groups": 2.0,
        "warm.groups_with_positive": 2.0,
    }
    cold, warm = tables["cold_start"], tables["warm"]
    assert cold.loc["ranker", "ndcg@7"] == 1.0
    assert cold.loc["popularity", "ndcg@7"] == pytest.approx(SECOND)
    assert cold.loc["ranker", "recall@1"] == 1.0 and cold.loc["popularity", "recall@1"] == 0.0
    assert cold.loc["ranker", "map@7"] == 0.5  # C adopts nothing: counts 0 in MAP
    assert warm.loc["ranker", "ndcg@7"] == pytest.approx((1 + SECOND) / 2)
    assert warm.loc["popularity", "ndcg@7"] == pytest.approx(SECOND)
    assert warm.loc["ranker", "recall@1"] == 0.5
    flat = ev.flatten_segments(tables)
    assert flat["ranker.cold_start.ndcg@7"] == 1.0
    assert flat["popularity.cold_start.ndcg@7"] == pytest.approx(SECOND)
    assert flat["ranker.warm.ndcg@7"] == pytest.approx((1 + SECOND) / 2)
    assert flat["ranker.cold_start.recall@7"] == 1.0


def test_without_cold_start_groups_only_warm_is_reported() -> None:
    warm_only = COLD.assign(count_products_owned=3)
    tables, counts = ev.cold_start_split(warm_only, k=7)
    assert list(tables) == ["warm"]
    assert counts["cold_start.groups"] == 0.0 and counts["warm.groups"] == 4.0


# --------------------------------------------------------------------------- a small fit


FEATURES = ["product_id", "affinity", "noise_a", "noise_b", "count_products_owned"]
GROUPS = {"affinity": "signal", "noise_a": "noise", "noise_b": "noise", "count_products_owned": "owned"}


def simulate(n_customers: int = 300, n_products: int = 8, seed: int = 0) -> pd.DataFrame:
    """Three monthly snapshots; ``affinity`` drives adoption, ``noise_*`` carry nothing; 20% of the
    customers own nothing."""
    rng = np.random.default_rng(seed)
    owned = np.where(rng.random(n_customers) < 0.2, 0, rng.integers(1, 5, n_customers))
    frames = []
    for snapshot in ("2024-02-01", "2024-03-01", "2024-04-01"):
        c = np.repeat(np.arange(n_customers), n_products)
        p = np.tile(np.arange(n_products), n_customers)
        affinity = rng.normal(size=c.size)
        prob = 1 / (1 + np.exp(-(-3.0 + 2.5 * affinity + 0.2 * p)))
        frames.append(
            pd.DataFrame(
                {
                    "customer_id": [f"C{i:04d}" for i in c],
                    "product_id": [f"P{j}" for j in p],
                    "event_timestamp": pd.Timestamp(snapshot),
                    "affinity": affinity,
                    "noise_a": rng.normal(size=c.size),
                    "noise_b": rng.normal(size=c.size),
                    "count_products_owned": pd.array(owned[c], dtype="Int64"),
                    "label": (rng.random(c.size) < prob).astype("int8"),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def fitted() -> dict:
    data = simulate()
    ts = data["event_timestamp"]
    train, valid, test = (data[ts == t].reset_index(drop=True) for t in sorted(ts.unique()))
    config = TrainingConfig.model_validate(
        {
            "ranker": {"n_estimators": 60, "early_stopping_rounds": 10, "n_jobs": 1},
            "baselines": ["popularity", "per_product"],
            "baseline_params": {"n_estimators": 20, "per_product_min_positives": 5},
            "calibration": {"min_positives": 10},
            "ablation": {"n_estimators": 40},
        }
    )
    models = fit_models(train, valid, FEATURES, config)
    scored = score_test(models, test)
    ablation = ablate_feature_groups(models, scored, GROUPS, config)
    evaluation = evaluate_scored(scored, models, config, GROUPS | {"product_id": "product_id"}, ablation)
    return {
        "config": config, "models": models, "scored": scored, "ablation": ablation, "evaluation": evaluation,
        "train": train, "valid": valid,
    }


def test_ablation_refits_each_group_except_product_id_on_the_same_groups(fitted: dict) -> None:
    ablation = fitted["ablation"]
    assert list(ablation.scores) == ["signal", "noise", "owned"]
    assert ablation.n_features == {"signal": 1, "noise": 2, "owned": 1}
    assert ablation.n_estimators == 40
    assert all(1 <= it <= 40 for it in ablation.best_iterations.values())
    # the refit is exactly a ranker fitted on the same groups without the group's features
    keep = ["product_id", "affinity", "count_products_owned"]
    train = prepare_groups(fitted["train"], keep)
    valid = prepare_groups(fitted["valid"], keep, categories=train.categories)
    params = fitted["config"].ranker.model_copy(update={"n_estimators": 40})
    manual = fit_ranker(train, valid, params, 7).score(fitted["scored"])
    np.testing.assert_allclose(ablation.scores["noise"], manual)


def test_scoring_in_blocks_of_rows_gives_the_scores_of_one_block(
    fitted: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole, models = fitted["scored"], fitted["models"]
    test = whole[[c for c in whole.columns if not c.startswith("score") and c != "probability"]]
    monkeypatch.setattr(train_module, "SCORING_BLOCK_ROWS", 37)  # blocks that cut through groups
    assert len(test) > 3 * 37
    blocks = score_test(models, test)
    pd.testing.assert_frame_equal(blocks, whole)
    assert "score" not in test.columns  # the input frame gains no column
    ablation = ablate_feature_groups(models, blocks, GROUPS, fitted["config"])
    for group, scores in ablation.scores.items():
        np.testing.assert_allclose(scores, fitted["ablation"].scores[group])


def test_dropping_the_signal_hurts_and_dropping_noise_does_not(fitted: dict) -> None:
    table = fitted["evaluation"].ablation
    assert table.loc["signal", "ndcg@7_diff"] < 0
    assert table.loc["signal", "diff_over_se"] < -3
    assert abs(table.loc["noise", "diff_over_se"]) < 3
    full = fitted["evaluation"].flat["ranker.ndcg@7"]
    assert table.loc["signal", "ndcg@7_without"] == pytest.approx(full + table.loc["signal", "ndcg@7_diff"])


def test_evaluation_carries_groups_wins_and_cold_start(fitted: dict) -> None:
    evaluation = fitted["evaluation"]
    flat = evaluation.flat
    groups = evaluation.importance_groups
    assert set(groups.index) == {"product_id", "signal", "noise", "owned"}
    assert groups.loc["noise", "n_features"] == 2
    assert groups["gain"].sum() == pytest.approx(evaluation.feature_importance.sum())
    assert groups.index[0] == "signal"
    assert len(evaluation.product_wins) == 8
    assert "ranker.share_products_won_vs_per_product_min50" in flat
    assert 0.0 <= flat["ranker.share_products_won_auc_vs_per_product_min50"] <= 1.0
    assert flat["products_min50"] == float((evaluation.per_product["positives"] >= 50).sum())
    cold = ev.cold_start_mask(fitted["scored"])
    n_cold = fitted["scored"][cold.to_numpy()].groupby("customer_id").ngroups
    assert flat["cold_start.groups"] == n_cold > 0
    for key in ("ranker.cold_start.ndcg@7", "popularity.cold_start.ndcg@7", "ranker.warm.ndcg@7",
                "ranker.cold_start.recall@7", "ranker.ablation.signal.ndcg@7_diff"):
        assert key in flat, key
    assert evaluation.segment_note == ""


def test_cold_start_section_says_why_it_has_no_table(fitted: dict) -> None:
    scored, models, config = fitted["scored"], fitted["models"], fitted["config"]
    warm = evaluate_scored(scored.assign(count_products_owned=2), models, config)
    assert list(warm.segments) == ["warm"] and warm.flat["cold_start.groups"] == 0
    assert warm.segment_note.startswith("no cold-start group in the test month")
    assert warm.ablation.empty and "ranker.ablation.signal.ndcg@7_diff" not in warm.flat
    unknown = evaluate_scored(scored.drop(columns="count_products_owned"), models, config)
    assert unknown.segments == {} and "cannot be told apart" in unknown.segment_note
    text = details_text(report_payload(unknown, {"k": 7}))
    assert "count_products_owned is not a feature" in text


def test_report_json_html_and_text_show_the_new_sections(fitted: dict, tmp_path: Path) -> None:
    write_report(tmp_path, fitted["evaluation"], {"dataset": "sim", "k": 7, "ablation_n_estimators": 40})
    report = load_report(tmp_path)
    assert [r["group"] for r in report["ablation"]] == ["signal", "noise", "owned"]
    groups = {r["group"] for r in report["feature_importance_groups"]}
    assert groups == {"product_id", "signal", "noise", "owned"}
    assert report["feature_groups"]["noise_b"] == "noise"
    assert len(report["product_wins"]) == 8 and "won" in report["product_wins"][0]
    assert set(report["cold_start"]["segments"]) == {"cold_start", "warm"}
    json.dumps(report)  # plain JSON
    html = (tmp_path / REPORT_HTML).read_text()
    for heading in ("Feature-group ablation", "Cold-start customers", "Ranker vs one model per product"):
        assert heading in html
    assert (tmp_path / REPORT_JSON).exists()
    text = details_text(report)
    assert "feature-group ablation" in text and "signal" in text
    assert "ranker.share_products_won_vs_per_product_min50 = " in text
    assert "cold_start: " in text and "warm: " in text


def test_the_test_snapshots_retrieval_groups_are_read_from_the_mart_and_reported(tmp_path: Path) -> None:
    """fct_candidate_retrieval_recall of a build with the stage on: the test snapshots' groups only."""
    from datetime import date

    from nextbest.settings import Settings

    settings = Settings(home=tmp_path)
    settings.marts_dir.mkdir(parents=True)
    pd.DataFrame(
        {
            "customer_id": ["a", "a", "b"],
            "snapshot_on": [date(2024, 1, 31), date(2024, 2, 29), date(2024, 3, 31)],
            "event_timestamp": pd.to_datetime(["2024-02-01", "2024-03-01", "2024-04-01"]),
            "count_adoptions": [100, 40, 60],
            "count_adoptions_retrieved": [10, 30, 45],
        }
    ).to_parquet(settings.marts_dir / "fct_candidate_retrieval_recall.parquet")
    test = [date(2024, 2, 29), date(2024, 3, 31)]
    groups = train_module.candidate_retrieval_groups(settings, test)
    assert groups["missed"].tolist() == [10, 15]
    retrieval = train_module.candidate_retrieval_summary(groups)
    assert retrieval == {"adoptions": 100, "adoptions_retrieved": 75, "recall": 0.75}
    metrics = {"ranker.ndcg@7_end_to_end": 0.25, "popularity.ndcg@7_end_to_end": 0.2}
    text = details_text({"context": {"candidate_retrieval": retrieval, "k": 7}, "metrics": metrics})
    assert "hold 75 of their 100 adoptions (recall 75.0%)" in text
    assert "(the adoptions left out count as never found): ranker 0.2500, popularity 0.2000" in text
    assert train_module.candidate_retrieval_groups(Settings(home=tmp_path / "none"), test) is None
    assert "candidate retrieval" not in details_text({"context": {"candidate_retrieval": None}})


def test_end_to_end_ndcg_counts_the_adoptions_left_out_on_the_scored_test_frame(fitted: dict) -> None:
    """With nothing missed it is the nDCG of the retrieved rows; each group's missed adoption lowers it."""
    scored, models, config = fitted["scored"], fitted["models"], fitted["config"]
    groups = scored[["customer_id", "event_timestamp"]].drop_duplicates()
    none = groups.assign(missed=0, event_timestamp=groups["event_timestamp"].astype("datetime64[us]"))
    evaluation = evaluate_scored(scored, models, config, missed=none)
    flat = evaluation.flat
    assert flat["ranker.ndcg@7_end_to_end"] == pytest.approx(flat["ranker.ndcg@7"])
    evaluation = evaluate_scored(scored, models, config, missed=none.assign(missed=1))
    assert evaluation.flat["ranker.ndcg@7_end_to_end"] < flat["ranker.ndcg@7"]
    assert "popularity.ndcg@7_end_to_end" in evaluation.flat


# --------------------------------------------------------------------------- feature selection


def with_stale_feature(data: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    """``data`` plus ``stale``: the label itself (with a little noise) in the first snapshot, noise in
    the later ones, i.e. a relation that held in training and stopped (what the validation months catch)."""
    rng = np.random.default_rng(seed)
    first = data["event_timestamp"] == data["event_timestamp"].min()
    noise = rng.normal(size=len(data))
    return data.assign(stale=np.where(first, 3.0 * data["label"] + noise, noise))


def test_feature_selection_drops_a_group_that_hurts_on_validation_and_keeps_the_signal() -> None:
    data = with_stale_feature(simulate())
    ts = data["event_timestamp"]
    train, valid, test = (data[ts == t].reset_index(drop=True) for t in sorted(ts.unique()))
    groups = GROUPS | {"stale": "stale"}
    config = TrainingConfig.model_validate(
        {
            "ranker": {"n_estimators": 60, "early_stopping_rounds": 10, "n_jobs": 1},
            "baselines": ["popularity"],
            "calibration": {"min_positives": 10},
            "ablation": {"n_estimators": 40},
            "feature_selection": {"enabled": True, "min_gain_se": 2.0},
        }
    )
    models = fit_models(train, valid, [*FEATURES, "stale"], config, groups=groups)
    table = models.selection.table
    assert list(table.index) == ["signal", "noise", "owned", "stale"]  # product_id is never dropped
    dropped = models.selection.dropped  # the stale group, maybe also one that carries nothing
    assert "stale" in dropped and set(dropped) <= {"stale", "noise", "owned"}
    assert table["dropped"].tolist() == [g in dropped for g in table.index]
    assert table.loc["stale", "valid_ndcg@7_diff"] > 2 * table.loc["stale", "valid_ndcg@7_diff_se"] > 0
    assert table.loc["signal", "valid_ndcg@7_diff"] < 0 and not table.loc["signal", "dropped"]
    assert "stale" not in models.ranker.feature_cols and "affinity" in models.ranker.feature_cols
    # the final ranker is a plain refit without the dropped groups (same rows, full parameters)
    keep = [f for f in FEATURES if groups.get(f, f) not in dropped]
    manual_train = prepare_groups(train, keep, True)
    manual_valid = prepare_groups(valid, keep, True, categories=manual_train.categories)
    manual = fit_ranker(manual_train, manual_valid, config.ranker, 7)
    np.testing.assert_allclose(models.ranker.score(test), manual.score(test))
    # the ablation is that ranker's: the dropped group is not in it, the others are refitted anew
    scored = score_test(models, test)
    ablation = ablate_feature_groups(models, scored, groups, config)
    assert list(ablation.scores) == [g for g in ("signal", "noise", "owned") if g not in dropped]
    evaluation = evaluate_scored(scored, models, config, groups | {"product_id": "product_id"}, ablation)
    assert evaluation.flat["ranker.feature_groups_dropped"] == float(len(dropped))
    text = details_text(report_payload(evaluation, {"k": 7}))
    assert f"feature selection on the validation months (dropped: {', '.join(dropped)})" in text
    unselected = evaluate_scored(scored, replace(models, selection=None), config)
    assert "ranker.feature_groups_dropped" not in unselected.flat


def test_feature_selection_that_drops_nothing_hands_its_refits_to_the_ablation(fitted: dict) -> None:
    config = fitted["config"].model_copy(
        update={"feature_selection": fitted["config"].feature_selection.model_copy(update={"enabled": True})}
    )
    models = fit_models(fitted["train"], fitted["valid"], FEATURES, config, groups=GROUPS)
    assert models.selection.dropped == [] and not models.selection.table["dropped"].any()
    assert models.ranker.feature_cols == fitted["models"].ranker.feature_cols
    ablation = ablate_feature_groups(models, fitted["scored"], GROUPS, config)
    for group, scores in fitted["ablation"].scores.items():  # the same refits as an ablation of its own
        np.testing.assert_allclose(ablation.scores[group], scores)
        assert ablation.scores[group] is not scores
