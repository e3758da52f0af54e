"""The serving-time retrieval stage: ``RetrievalIndex.narrow`` keeps the top-N candidates by affinity (known
order, ties by item index), only among the candidates it is given (owned / ineligible products stay out);
a customer embedding counts only when it is of the served snapshot and was written by the index's model,
otherwise every candidate is kept; the index round-trips through a bundle directory."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nextbest.columns import CUSTOMER_ID, EVENT_TIMESTAMP, PRODUCT_ID
from nextbest.features.embeddings import EMBEDDING, RETRIEVAL_MODEL
from nextbest.retrieval.bundle import INDEX_DIR, RetrievalIndex, load_index, write_index

PRODUCTS = ("a", "b", "c", "d", "e")
# unit item vectors in 2-d; the customer u = (1, 0) has affinities a 1.0, b 0.6, c 0.6, d 0.0, e -1.0
ITEMS = np.array([[1, 0], [0.6, 0.8], [0.6, -0.8], [0, 1], [-1, 0]], dtype=np.float32)
U = np.array([1, 0], dtype=np.float32)
SNAPSHOT = pd.Timestamp("2024-03-01")
TS = int(SNAPSHOT.timestamp())
MODEL = "20240301T000000Z"


def _index(top_n: int) -> RetrievalIndex:
    return RetrievalIndex(product_ids=PRODUCTS, item_vecs=ITEMS, top_n=top_n, model_id=MODEL)


def _online_row(vector: list[float] | None, ts: int = TS, model: str = MODEL) -> dict[str, list]:
    """A one-key online read of the customer_embedding view, as the online reader gives it."""
    return {
        EMBEDDING: [vector],
        f"{EMBEDDING}__ts": [ts if vector is not None else 0],
        RETRIEVAL_MODEL: [model],
    }


def test_keeps_the_top_n_by_affinity_ties_by_item_index() -> None:
    assert _index(3).narrow(list(PRODUCTS), U) == ["a", "b", "c"]
    assert _index(2).narrow(["e", "d", "c", "b"], U) == ["b", "c"]


def test_retrieves_only_among_the_given_candidates() -> None:
    # "a" (the best item) is owned: not a candidate, so never retrieved; the next ones fill the top 2
    assert _index(2).narrow(["b", "c", "d", "e"], U) == ["b", "c"]
    assert _index(2).narrow(["d", "e", "c"], U) == ["c", "d"]


def test_every_candidate_kept_when_no_more_than_top_n_or_no_embedding() -> None:
    assert _index(3).narrow(["e", "d"], U) == ["e", "d"]
    assert _index(1).narrow(["e", "d", "a"], None) == ["e", "d", "a"]


def test_products_outside_the_index_are_kept_after_the_retrieved() -> None:
    assert _index(2).narrow(["z", "e", "a", "d"], U) == ["a", "d", "z"]


def test_positions_point_at_the_kept_candidates_in_the_given_list() -> None:
    # candidates in list order z, e, a, d, b: the top 2 known ones are a (2) then b (4); z (0) is kept last
    assert _index(2).narrow_positions(["z", "e", "a", "d", "b"], U).tolist() == [2, 4, 0]
    assert _index(3).narrow_positions(["e", "d"], U).tolist() == [0, 1]
    # a product listed twice counts at its last position
    assert _index(1).narrow_positions(["a", "e", "a"], U).tolist() == [2]


def test_the_online_embedding_counts_at_the_served_snapshot_from_the_same_model_only() -> None:
    index = _index(1)
    assert index.keep(["e", "d", "a"], _online_row([1.0, 0.0]), TS).tolist() == [2]  # "a"
    assert index.keep(["e", "d", "a"], _online_row([0.0, 1.0]), TS).tolist() == [1]  # "d"
    for row, ts in [
        (_online_row(None), TS),  # no embedding online
        (_online_row([1.0, 0.0]), TS + 86_400 * 31),  # an older snapshot's embedding
        (_online_row([1.0, 0.0], model="another-model"), TS),  # another model's vector space
        (_online_row([1.0, 0.0, 0.0]), TS),  # another dimension
        ({}, TS),  # the view is not registered
    ]:
        assert index.keep(["e", "d", "a"], row, ts).tolist() == [0, 1, 2]


def test_a_candidate_table_keeps_each_customers_narrowed_rows_in_order() -> None:
    later = SNAPSHOT + pd.DateOffset(months=1)
    candidates = pd.DataFrame(
        {
            CUSTOMER_ID: ["u"] * 5 + ["new"] * 3 + ["u"] * 3,
            PRODUCT_ID: ["a", "b", "c", "d", "e", "c", "d", "e", "c", "d", "e"],
            EVENT_TIMESTAMP: [SNAPSHOT] * 8 + [later] * 3,
        }
    )
    embeddings = pd.DataFrame(
        {
            CUSTOMER_ID: ["u", "new", "u"],
            EVENT_TIMESTAMP: [SNAPSHOT, SNAPSHOT, later],
            EMBEDDING: [[1.0, 0.0], None, [0.0, 1.0]],
            RETRIEVAL_MODEL: [MODEL, None, "another-model"],
        }
    )
    kept = _index(2).narrow_frame(candidates, embeddings)
    # u at the first snapshot: its top 2 (a, b); "new" has no embedding and u's later one is another
    # model's: all their candidates
    assert kept[PRODUCT_ID].tolist() == ["a", "b", "c", "d", "e", "c", "d", "e"]
    assert kept.index.tolist() == [0, 1, 5, 6, 7, 8, 9, 10]
    assert _index(2).narrow_frame(candidates.iloc[:0], embeddings).empty


def test_write_load_round_trip(tmp_path) -> None:
    out = write_index(tmp_path, PRODUCTS, ITEMS, top_n=2, model_id=MODEL)
    assert out == tmp_path / INDEX_DIR
    index = load_index(tmp_path)
    assert index is not None and index.top_n == 2 and index.product_ids == PRODUCTS
    assert index.model_id == MODEL
    np.testing.assert_array_equal(index.item_vecs, ITEMS)
    assert index.narrow(list(PRODUCTS), np.array([0, 1], dtype=np.float32)) == ["d", "b"]
    assert load_index(tmp_path, top_n=4).top_n == 4


def test_a_bundle_without_an_index_has_none(tmp_path) -> None:
    assert load_index(tmp_path) is None


def test_top_n_below_one_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="top_n"):
        write_index(tmp_path, PRODUCTS, ITEMS, 0)
