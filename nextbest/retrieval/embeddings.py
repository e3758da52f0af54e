"""The embeddings as marts: parquet files beside the dbt marts of the build, one list-of-float column.

* ``feat_product_embedding``: one row per product (``product_id``, ``event_timestamp`` = the end of the
  model's training data, ``embedding``, ``retrieval_model``);
* ``feat_customer_embedding_monthly``: one row per customer x snapshot of ``fct_candidates`` (the latest
  included), ``embedding`` computed from that snapshot's point-in-time inputs only, ``retrieval_model``.

``embedding`` is a list of float32 of the model's dimension; rows are unit vectors, so the two-tower
similarity of a customer and a candidate is their dot product, in [-1, 1]. ``retrieval_model`` names the
saved model that wrote the row. The marts are registered in Feast as the ``customer_embedding`` and
``product_embedding`` views (``nextbest.features.embeddings``, which owns these names).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from nextbest.columns import CUSTOMER_ID, EVENT_TIMESTAMP, PRODUCT_ID
from nextbest.features.embeddings import (
    EMBEDDING,
    FEAT_CUSTOMER_EMBEDDING_MONTHLY,
    FEAT_PRODUCT_EMBEDDING,
    RETRIEVAL_MODEL,
)
from nextbest.marts import mart_file
from nextbest.retrieval.data import Groups

__all__ = [
    "EMBEDDING",
    "FEAT_CUSTOMER_EMBEDDING_MONTHLY",
    "FEAT_PRODUCT_EMBEDDING",
    "RETRIEVAL_MODEL",
    "EmbeddingMarts",
    "read_embeddings",
    "write_embedding_marts",
    "write_embedding_table",
]


@dataclass(frozen=True)
class EmbeddingMarts:
    """Where the embeddings were written and how many rows each has."""

    products: Path
    customers: Path
    product_rows: int
    customer_rows: int


def _table(keys: pd.DataFrame, vectors: np.ndarray) -> pa.Table:
    dim = vectors.shape[1]
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
    lists = pa.ListArray.from_arrays(pa.array(np.arange(0, len(keys) * dim + 1, dim, dtype=np.int32)), flat)
    return pa.Table.from_pandas(keys.reset_index(drop=True), preserve_index=False).append_column(
        EMBEDDING, lists
    )


def _write(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, coerce_timestamps="us")  # microseconds, as every mart (Spark reads no ns)
    tmp.replace(path)


def write_embedding_table(keys: pd.DataFrame, vectors: np.ndarray, path: Path) -> None:
    """Write ``keys`` with the ``embedding`` list column of ``vectors`` (float32 [rows, dim]) to ``path``
    (replaced in one step)."""
    _write(_table(keys, vectors), path)


def write_embedding_marts(
    marts_dir: Path,
    product_ids: np.ndarray,
    item_vecs: np.ndarray,
    trained_until: pd.Timestamp,
    groups: Groups,
    customer_vecs: np.ndarray,
    model_id: str,
) -> EmbeddingMarts:
    """Write both embedding marts into ``marts_dir`` (each replaced in one step); ``model_id`` (the saved
    model's name) goes into every row's ``retrieval_model``."""
    products = pd.DataFrame({PRODUCT_ID: product_ids.astype(str), EVENT_TIMESTAMP: trained_until})
    products[RETRIEVAL_MODEL] = model_id
    customers = groups.keys[[CUSTOMER_ID, EVENT_TIMESTAMP]].copy()
    customers[RETRIEVAL_MODEL] = model_id
    product_path = mart_file(marts_dir, FEAT_PRODUCT_EMBEDDING)
    customer_path = mart_file(marts_dir, FEAT_CUSTOMER_EMBEDDING_MONTHLY)
    write_embedding_table(products, item_vecs, product_path)
    write_embedding_table(customers, customer_vecs, customer_path)
    return EmbeddingMarts(product_path, customer_path, len(products), len(customers))


def read_embeddings(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """The keys and the float32 [rows, dim] embeddings of an embedding mart."""
    table = pq.read_table(path)
    column = table.column(EMBEDDING).combine_chunks()
    dim = len(column[0]) if len(column) else 0
    vectors = column.flatten().to_numpy().astype(np.float32).reshape(len(column), dim)
    return table.drop_columns([EMBEDDING]).to_pandas(), vectors
