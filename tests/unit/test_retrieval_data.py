"""Point-in-time inputs of the two-tower model, from hand-made marts and raw holdings (no dbt):
known history bags and weights, the train/test split, and embeddings of snapshot t that do not move
when data after t is added."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nextbest.columns import CUSTOMER_ID, EVENT_TIMESTAMP, LABEL, PRODUCT_ID
from nextbest.ingest.contract import HOLDINGS_FILE
from nextbest.marts import DIM_PRODUCTS, FCT_CANDIDATES, FCT_RANKING_LABELS, mart_file
from nextbest.retrieval.data import (
    CUSTOMER_FEATURES,
    FEAT_CUSTOMER_MONTHLY,
    HISTORY_LIMIT,
    load_catalogue,
    load_groups,
    popularity_buckets,
    split_train_test,
)
from nextbest.retrieval.index import recall_at_k, top_k
from nextbest.retrieval.train import TrainConfig, fit

JAN, FEB, MAR = pd.Timestamp("2024-02-01"), pd.Timestamp("2024-03-01"), pd.Timestamp("2024-04-01")
PRODUCTS = ["P1", "P2", "P3", "P4"]

# C1 started P1 on 2023-07-31 (6 months before the January snapshot) and P2 on 2024-01-10; adopts P3 in
# February. C2 started P4 on 2024-01-31 (the snapshot day: known at the January snapshot).
HOLDINGS = [
    ("C1", "P1", date(2023, 7, 31), None),
    ("C1", "P2", date(2024, 1, 10), None),
    ("C1", "P3", date(2024, 2, 5), None),
    ("C2", "P4", date(2024, 1, 31), None),
]
FUTURE = [("C1", "P4", date(2024, 2, 20), None), ("C2", "P1", date(2024, 2, 1), None)]


def _write(dirs: tuple[Path, Path], holdings: list[tuple]) -> None:
    marts, raw = dirs
    marts.mkdir(exist_ok=True)
    raw.mkdir(exist_ok=True)
    pd.DataFrame({PRODUCT_ID: PRODUCTS, "category": ["a", "a", "b", "b"]}).to_parquet(
        mart_file(marts, DIM_PRODUCTS)
    )
    cands = [
        ("C1", "P3", JAN), ("C1", "P4", JAN), ("C2", "P1", JAN), ("C2", "P2", JAN), ("C2", "P3", JAN),
        ("C1", "P4", FEB), ("C2", "P1", FEB), ("C2", "P2", FEB), ("C2", "P3", FEB),
        ("C1", "P4", MAR), ("C2", "P2", MAR), ("C2", "P3", MAR),
    ]  # fmt: skip
    frame = pd.DataFrame(cands, columns=[CUSTOMER_ID, PRODUCT_ID, EVENT_TIMESTAMP])
    frame.to_parquet(mart_file(marts, FCT_CANDIDATES))
    labelled = frame[frame[EVENT_TIMESTAMP] < MAR].copy()
    labelled[LABEL] = [1, 0, 0, 0, 0, 1, 1, 0, 0]
    labelled.to_parquet(mart_file(marts, FCT_RANKING_LABELS))
    feats = pd.DataFrame(
        [(c, t) for c in ("C1", "C2") for t in (JAN, FEB, MAR)], columns=[CUSTOMER_ID, EVENT_TIMESTAMP]
    )
    for i, col in enumerate(CUSTOMER_FEATURES):
        feats[col] = np.where(feats[CUSTOMER_ID] == "C1", float(i), np.nan)
    feats.to_parquet(mart_file(marts, FEAT_CUSTOMER_MONTHLY))
    pd.DataFrame(holdings, columns=[CUSTOMER_ID, PRODUCT_ID, "started_on", "ended_on"]).to_parquet(
        raw / HOLDINGS_FILE
    )


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    pair = (tmp_path / "marts", tmp_path / "raw")
    _write(pair, HOLDINGS)
    return pair


def test_history_bags_and_weights_known_answer(dirs) -> None:
    catalogue = load_catalogue(dirs[0])
    groups = load_groups(*dirs, catalogue)
    assert list(catalogue.product_ids) == PRODUCTS and list(catalogue.categories) == [0, 0, 1, 1]
    assert groups.keys[[CUSTOMER_ID, EVENT_TIMESTAMP]].values.tolist() == [
        ["C1", JAN], ["C2", JAN], ["C1", FEB], ["C2", FEB], ["C1", MAR], ["C2", MAR],
    ]  # fmt: skip
    assert groups.keys["is_labelled"].tolist() == [True, True, True, True, False, False]
    pad = catalogue.size
    # C1 at January: P2 (0 months ago, weight 1) then P1 (6 months ago, weight 0.5); P3 not yet started
    assert groups.history_items[0, :3].tolist() == [1, 0, pad]
    np.testing.assert_allclose(groups.history_weights[0, :3], [1.0, 0.5, 0.0])
    # C2 at January: P4 started on the snapshot day is known
    assert groups.history_items[1, :2].tolist() == [3, pad]
    # C1 at February: P3 (started 2024-02-05) is now in the bag, most recent first
    assert groups.history_items[2, :4].tolist() == [2, 1, 0, pad]
    assert groups.history_items.shape == (6, HISTORY_LIMIT)
    assert groups.positives[0].tolist() == [False, False, True, False]
    assert groups.candidates[1].tolist() == [True, True, True, False]
    # features: log1p of C1's values; C2's nulls are 0
    np.testing.assert_allclose(groups.features[0], np.log1p(np.arange(len(CUSTOMER_FEATURES))), rtol=1e-6)
    assert not groups.features[1].any()


def test_split_keeps_training_labels_before_the_test_snapshot(dirs) -> None:
    groups = load_groups(*dirs, load_catalogue(dirs[0]))
    train, test = split_train_test(groups, horizon_months=1)
    assert set(train.keys[EVENT_TIMESTAMP]) == {JAN} and set(test.keys[EVENT_TIMESTAMP]) == {FEB}
    # a 2-month horizon: January's labels reach past the February snapshot: nothing left to train on
    train2, _ = split_train_test(groups, horizon_months=2)
    assert len(train2) == 0


def test_popularity_buckets_rank_items() -> None:
    assert popularity_buckets(np.array([0.0, 5.0, 1.0, 5.0]), buckets=4).tolist() == [0, 2, 1, 2]


def test_embeddings_at_t_ignore_data_after_t(dirs, tmp_path: Path) -> None:
    catalogue = load_catalogue(dirs[0])
    before = load_groups(*dirs, catalogue)
    model = fit(
        before.subset(before.keys["is_labelled"].to_numpy()),
        catalogue,
        # untrained (epochs=0: no gradient step to compile): embeddings still depend on every input
        TrainConfig(epochs=0, batch_size=2, hidden=8, dim=4),
    )
    later = (tmp_path / "marts2", tmp_path / "raw2")
    _write(later, HOLDINGS + FUTURE)
    after = load_groups(*later, catalogue)
    at_jan = (before.keys[EVENT_TIMESTAMP] == JAN).to_numpy()
    np.testing.assert_array_equal(after.history_items[at_jan], before.history_items[at_jan])
    np.testing.assert_array_equal(
        model.customer_embeddings(after.subset(at_jan)), model.customer_embeddings(before.subset(at_jan))
    )
    # the later snapshots do see the new starts (the test can fail)
    assert not np.array_equal(after.history_items[~at_jan], before.history_items[~at_jan])


def test_top_k_tie_rule_allowed_set_and_recall() -> None:
    scores = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    allowed = np.array([[True, True, True, True], [False, True, True, True]])
    assert top_k(scores, 2).tolist() == [[1, 2], [0, 1]]
    assert top_k(scores, 2, allowed).tolist() == [[1, 2], [1, 2]]
    assert top_k(scores, 9).shape == (2, 4)
    positives = np.array([[True, False, False, True], [False, False, False, False]])
    # row 0: 1 of its 2 positives (items 0, 3) in the top 3 (items 1, 2, 0); row 1 has none: left out
    assert recall_at_k(top_k(scores, 3), positives, 3) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        top_k(scores, 0)
