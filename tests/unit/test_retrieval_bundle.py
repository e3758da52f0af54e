"""The serving-time retrieval stage: ``RetrievalIndex.narrow`` keeps the top-N candidates by affinity (known
order, ties by item index), only among the candidates it is given (owned / ineligible products stay out),
and keeps every candidate of a customer it has no embedding for at the served snapshot; the index
round-trips through a bundle directory."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nextbest.columns import CUSTOMER_ID, EVENT_TIMESTAMP, PRODUCT_ID
from nextbest.retrieval.bundle import INDEX_DIR, RetrievalIndex, load_index, write_index

PRODUCTS = ("a", "b", "c", "d", "e")
# unit item vectors in 2-d; the customer u = (1, 0) has affinities a 1.0, b 0.6, c 0.6, d 0.0, e -1.0
ITEMS = np.array([[1, 0], [0.6, 0.8], [0.6, -0.8], [0, 1], [-1, 0]], dtype=np.float32)
SNAPSHOT = pd.Timestamp("2024-03-01")
TS = int(SNAPSHOT.timestamp())


def _index(top_n: int) -> RetrievalIndex:
    return RetrievalIndex(
        product_ids=PRODUCTS,
        item_vecs=ITEMS,
        customer_row={"u": 0},
        customer_vecs=np.array([[1, 0]], dtype=np.float32),
        customer_ts=np.array([TS], dtype=np.int64),
        top_n=top_n,
    )


def test_keeps_the_top_n_by_affinity_ties_by_item_index() -> None:
    assert _index(3).narrow("u", list(PRODUCTS), TS) == ["a", "b", "c"]
    assert _index(2).narrow("u", ["e", "d", "c", "b"], TS) == ["b", "c"]


def test_retrieves_only_among_the_given_candidates() -> None:
    # "a" (the best item) is owned: not a candidate, so never retrieved; the next ones fill the top 2
    assert _index(2).narrow("u", ["b", "c", "d", "e"], TS) == ["b", "c"]
    assert _index(2).narrow("u", ["d", "e", "c"], TS) == ["c", "d"]


def test_every_candidate_kept_when_no_more_than_top_n() -> None:
    assert _index(3).narrow("u", ["e", "d"], TS) == ["e", "d"]


@pytest.mark.parametrize(("customer", "ts"), [("new", TS), ("u", TS + 86_400 * 31)])
def test_no_embedding_at_the_served_snapshot_keeps_every_candidate(customer: str, ts: int) -> None:
    assert _index(1).narrow(customer, ["e", "d", "a"], ts) == ["e", "d", "a"]


def test_products_outside_the_index_are_kept_after_the_retrieved() -> None:
    assert _index(2).narrow("u", ["z", "e", "a", "d"], TS) == ["a", "d", "z"]


def test_a_candidate_table_keeps_each_customers_narrowed_rows_in_order() -> None:
    later = SNAPSHOT + pd.DateOffset(months=1)
    candidates = pd.DataFrame(
        {
            CUSTOMER_ID: ["u"] * 5 + ["new"] * 3 + ["u"] * 3,
            PRODUCT_ID: ["a", "b", "c", "d", "e", "c", "d", "e", "c", "d", "e"],
            EVENT_TIMESTAMP: [SNAPSHOT] * 8 + [later] * 3,
        }
    )
    kept = _index(2).narrow_frame(candidates)
    # u at the indexed snapshot: its top 2 (a, b); "new" and u at a later snapshot have no embedding: all
    assert kept[PRODUCT_ID].tolist() == ["a", "b", "c", "d", "e", "c", "d", "e"]
    assert kept.index.tolist() == [0, 1, 5, 6, 7, 8, 9, 10]
    assert _index(2).narrow_frame(candidates.iloc[:0]).empty


def test_write_load_round_trip(tmp_path) -> None:
    customers = pd.DataFrame({CUSTOMER_ID: ["u", "v"], EVENT_TIMESTAMP: [SNAPSHOT, SNAPSHOT]})
    vecs = np.array([[1, 0], [0, 1]], dtype=np.float32)
    out = write_index(tmp_path, PRODUCTS, ITEMS, customers, vecs, top_n=2, source="model-x")
    assert out == tmp_path / INDEX_DIR
    index = load_index(tmp_path)
    assert index is not None and index.top_n == 2 and index.product_ids == PRODUCTS
    np.testing.assert_array_equal(index.item_vecs, ITEMS)
    np.testing.assert_array_equal(index.embedding("v", TS), [0, 1])
    assert index.narrow("v", list(PRODUCTS), TS) == ["d", "b"]
    assert load_index(tmp_path, top_n=4).top_n == 4


def test_a_bundle_without_an_index_has_none(tmp_path) -> None:
    assert load_index(tmp_path) is None


def test_top_n_below_one_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="top_n"):
        write_index(
            tmp_path, PRODUCTS, ITEMS, pd.DataFrame({CUSTOMER_ID: [], EVENT_TIMESTAMP: []}), ITEMS[:0], 0
        )
