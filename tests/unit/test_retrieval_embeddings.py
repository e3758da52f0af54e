"""The embedding marts: one row per product / per customer x snapshot, a list<float> column that reads
back to the vectors written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from nextbest.columns import CUSTOMER_ID, EVENT_TIMESTAMP, PRODUCT_ID, SNAPSHOT_ON
from nextbest.retrieval.data import Groups
from nextbest.retrieval.embeddings import (
    EMBEDDING,
    FEAT_CUSTOMER_EMBEDDING_MONTHLY,
    FEAT_PRODUCT_EMBEDDING,
    read_embeddings,
    write_embedding_marts,
)


def test_marts_round_trip(tmp_path: Path) -> None:
    keys = pd.DataFrame(
        {
            CUSTOMER_ID: ["C1", "C2", "C1"],
            EVENT_TIMESTAMP: pd.to_datetime(["2024-02-01", "2024-02-01", "2024-03-01"]),
            SNAPSHOT_ON: pd.to_datetime(["2024-01-31", "2024-01-31", "2024-02-29"]),
            "is_labelled": [True, True, False],
        }
    )
    empty = np.zeros((3, 1))
    groups = Groups(keys, empty, empty, empty, empty, empty)
    customers = np.arange(6, dtype=np.float32).reshape(3, 2)
    items = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    marts = write_embedding_marts(
        tmp_path, np.array(["P1", "P2"], dtype=object), items, pd.Timestamp("2024-02-01"), groups, customers
    )
    assert marts.products.name == f"{FEAT_PRODUCT_EMBEDDING}.parquet" and marts.product_rows == 2
    assert marts.customers.name == f"{FEAT_CUSTOMER_EMBEDDING_MONTHLY}.parquet" and marts.customer_rows == 3
    assert pq.read_schema(marts.customers).field(EMBEDDING).type == pa.list_(pa.float32())
    got_keys, got = read_embeddings(marts.customers)
    assert (
        got_keys[[CUSTOMER_ID, EVENT_TIMESTAMP]].values.tolist()
        == keys[[CUSTOMER_ID, EVENT_TIMESTAMP]].values.tolist()
    )
    np.testing.assert_array_equal(got, customers)
    product_keys, product_vecs = read_embeddings(marts.products)
    assert product_keys[PRODUCT_ID].tolist() == ["P1", "P2"]
    assert (product_keys[EVENT_TIMESTAMP] == pd.Timestamp("2024-02-01")).all()
    np.testing.assert_array_equal(product_vecs, items)
