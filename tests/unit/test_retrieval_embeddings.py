"""The embedding marts: one row per product / per customer x snapshot, a list<float> column that reads
back to the vectors written and the name of the model that wrote them; registered in Feast as two views
of their own service (not ranker features) once they exist."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from feast.types import Array, Float32, String

from nextbest.columns import CUSTOMER_ID, EVENT_TIMESTAMP, PRODUCT_ID, SNAPSHOT_ON
from nextbest.features.definitions import build_definitions
from nextbest.features.embeddings import (
    CUSTOMER_EMBEDDING_VIEW,
    PRODUCT_EMBEDDING_VIEW,
    RETRIEVAL_SERVICE_NAME,
)
from nextbest.retrieval.data import Groups
from nextbest.retrieval.embeddings import (
    EMBEDDING,
    FEAT_CUSTOMER_EMBEDDING_MONTHLY,
    FEAT_PRODUCT_EMBEDDING,
    RETRIEVAL_MODEL,
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
        tmp_path,
        np.array(["P1", "P2"], dtype=object),
        items,
        pd.Timestamp("2024-02-01"),
        groups,
        customers,
        model_id="20240201T000000Z",
    )
    assert marts.products.name == f"{FEAT_PRODUCT_EMBEDDING}.parquet" and marts.product_rows == 2
    assert marts.customers.name == f"{FEAT_CUSTOMER_EMBEDDING_MONTHLY}.parquet" and marts.customer_rows == 3
    assert pq.read_schema(marts.customers).field(EMBEDDING).type == pa.list_(pa.float32())
    for path in (marts.customers, marts.products):  # the marts' contract: Spark reads no nanoseconds
        assert pq.read_schema(path).field(EVENT_TIMESTAMP).type == pa.timestamp("us")
    got_keys, got = read_embeddings(marts.customers)
    assert (
        got_keys[[CUSTOMER_ID, EVENT_TIMESTAMP]].values.tolist()
        == keys[[CUSTOMER_ID, EVENT_TIMESTAMP]].values.tolist()
    )
    np.testing.assert_array_equal(got, customers)
    assert got_keys[RETRIEVAL_MODEL].tolist() == ["20240201T000000Z"] * 3
    product_keys, product_vecs = read_embeddings(marts.products)
    assert product_keys[PRODUCT_ID].tolist() == ["P1", "P2"]
    assert (product_keys[EVENT_TIMESTAMP] == pd.Timestamp("2024-02-01")).all()
    assert product_keys[RETRIEVAL_MODEL].tolist() == ["20240201T000000Z"] * 2
    np.testing.assert_array_equal(product_vecs, items)


def test_the_embedding_marts_become_feast_views_of_their_own_service(tmp_path: Path) -> None:
    assert build_definitions([], tmp_path).embeddings.service is None  # no marts: no views, no service
    empty = np.zeros((1, 1))
    keys = pd.DataFrame({CUSTOMER_ID: ["C1"], EVENT_TIMESTAMP: [pd.Timestamp("2024-02-01")]})
    vec = np.ones((1, 2), dtype=np.float32)
    groups = Groups(keys, empty, empty, empty, empty, empty)
    write_embedding_marts(
        tmp_path, np.array(["P1"]), vec, pd.Timestamp("2024-02-01"), groups, vec, model_id="m"
    )
    defs = build_definitions([], tmp_path)
    views = {v.name: v for v in defs.embeddings.views}
    assert set(views) == {CUSTOMER_EMBEDDING_VIEW, PRODUCT_EMBEDDING_VIEW}
    assert defs.embeddings.service is not None and defs.embeddings.service.name == RETRIEVAL_SERVICE_NAME
    assert defs.service_names == {"ranker_v1", RETRIEVAL_SERVICE_NAME}
    assert defs.feature_names == []  # not ranker features
    customer = views[CUSTOMER_EMBEDDING_VIEW]
    assert customer.entities == ["customer"] and customer.ttl == timedelta(days=1)
    assert {f.name: f.dtype for f in customer.features} == {
        EMBEDDING: Array(Float32),
        RETRIEVAL_MODEL: String,
    }
    assert (
        Path(customer.batch_source.path)
        == (tmp_path / f"{FEAT_CUSTOMER_EMBEDDING_MONTHLY}.parquet").resolve()
    )
    assert set(defs.all()) >= {*defs.embeddings.views, *defs.embeddings.sources, defs.embeddings.service}
