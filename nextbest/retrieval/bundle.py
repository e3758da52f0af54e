"""The retrieval index shipped in a ranker's model bundle, and the serving-time retrieval stage it answers.

``nextbest retrieval index`` writes ``<bundle>/retrieval/``:

* ``items.npy``: the item embeddings, float32 [items, dim], unit rows, in ``product_ids`` order;
* ``customers.parquet``: the customer embeddings of the build's latest snapshot (``customer_id``,
  ``event_timestamp``, ``embedding``: the ``feat_customer_embedding_monthly`` rows of that snapshot);
* ``index.json``: ``product_ids``, ``top_n`` (candidates kept per customer), the retrieval model it came
  from and the snapshot.

A Scorer whose bundle holds the directory retrieves before it ranks (``RetrievalIndex.narrow``): the
customer's candidates (owned and ineligible products already removed by the candidate rule) are ordered
by the affinity ``<u, v>`` and only the ``top_n`` best are read and ranked. The search is exact
(``index.top_k``; its tie rule: higher affinity, then the lower item index). A customer without an
embedding at the snapshot being served (new since the index was written, or a later snapshot) keeps all
its candidates: retrieval narrows, it never hides a customer. This module imports no JAX: serving loads
it without the ``retrieval`` extra.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nextbest.columns import CUSTOMER_ID, EVENT_TIMESTAMP, PRODUCT_ID
from nextbest.retrieval.embeddings import read_embeddings, write_embedding_table
from nextbest.retrieval.index import top_k

INDEX_DIR = "retrieval"
"""The retrieval index's directory inside a model bundle."""

INDEX_META_FILE = "index.json"
ITEMS_FILE = "items.npy"
CUSTOMERS_FILE = "customers.parquet"

DEFAULT_TOP_N = 100
"""Candidates a customer keeps after retrieval unless ``nextbest retrieval index --top-n`` says otherwise."""


def _epoch_seconds(timestamps: pd.Series) -> np.ndarray:
    """int64 epoch seconds of naive-UTC or aware timestamps."""
    stamps = pd.to_datetime(timestamps, utc=True)
    return (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy().astype(np.int64)


@dataclass(frozen=True)
class RetrievalIndex:
    """The item embeddings and the latest customer embeddings of one bundle.

    Attributes:
        product_ids: the items, in row order of ``item_vecs``.
        item_vecs: float32 [items, dim], unit rows.
        customer_row: customer id -> row of ``customer_vecs`` / ``customer_ts``.
        customer_vecs: float32 [customers, dim], unit rows.
        customer_ts: int64 [customers], epoch seconds of each embedding's snapshot (``event_timestamp``).
        top_n: candidates kept per customer (>= 1).
    """

    product_ids: tuple[str, ...]
    item_vecs: np.ndarray
    customer_row: dict[str, int]
    customer_vecs: np.ndarray
    customer_ts: np.ndarray
    top_n: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "_position", {p: i for i, p in enumerate(self.product_ids)})

    def embedding(self, customer_id: str, customer_ts: int) -> np.ndarray | None:
        """The customer's embedding at snapshot ``customer_ts`` (epoch seconds), or None when the index
        has none for that customer at that snapshot."""
        row = self.customer_row.get(str(customer_id))
        if row is None or int(self.customer_ts[row]) != int(customer_ts):
            return None
        return self.customer_vecs[row]

    def narrow(self, customer_id: str, candidates: Sequence[str], customer_ts: int) -> list[str]:
        """The ``top_n`` of ``candidates`` of highest affinity to the customer, best first (ties: the
        lower item index); all ``candidates``, in their order, when the customer has no embedding at
        ``customer_ts`` or there are at most ``top_n`` of them. Products outside the index are kept
        after the retrieved ones (never silently dropped)."""
        u = self.embedding(customer_id, customer_ts)
        if u is None or len(candidates) <= self.top_n:
            return list(candidates)
        position = self._position  # type: ignore[attr-defined]
        known = [p for p in candidates if p in position]
        unknown = [p for p in candidates if p not in position]
        rows = np.fromiter((position[p] for p in known), dtype=np.int64, count=len(known))
        order = top_k((self.item_vecs @ u)[None, :], self.top_n, _mask(rows, len(self.product_ids)))[0]
        return [self.product_ids[i] for i in order[: min(self.top_n, len(known))]] + unknown

    def narrow_frame(self, candidates: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``candidates`` (``customer_id``, ``product_id``, ``event_timestamp``; one snapshot
        or several) that ``narrow`` keeps for their customer at their snapshot, in their order: what a
        batch scores when serving retrieves (the same top-N the Scorer reads online)."""
        if candidates.empty:
            return candidates
        stamps = _epoch_seconds(candidates[EVENT_TIMESTAMP])
        keep = np.zeros(len(candidates), dtype=bool)
        customers = candidates[CUSTOMER_ID].astype(str).to_numpy()
        products = candidates[PRODUCT_ID].astype(str).to_numpy()
        groups = pd.DataFrame({"c": customers, "t": stamps}).groupby(["c", "t"], sort=False).indices
        for (customer, stamp), rows in groups.items():
            kept = set(self.narrow(customer, products[rows].tolist(), int(stamp)))
            keep[rows] = [p in kept for p in products[rows]]
        return candidates[keep]


def _mask(rows: np.ndarray, n_items: int) -> np.ndarray:
    """bool [1, n_items]: True at ``rows``."""
    out = np.zeros((1, n_items), dtype=bool)
    out[0, rows] = True
    return out


def write_index(
    bundle_path: Path,
    product_ids: Sequence[str],
    item_vecs: np.ndarray,
    customers: pd.DataFrame,
    customer_vecs: np.ndarray,
    top_n: int = DEFAULT_TOP_N,
    source: str = "",
) -> Path:
    """Write the retrieval index into ``bundle_path/retrieval/`` (replacing one already there); its path.

    Args:
        bundle_path: a ranker's model bundle directory.
        product_ids: the items of ``item_vecs``' rows.
        item_vecs: float32 [items, dim].
        customers: ``customer_id`` and ``event_timestamp`` of each row of ``customer_vecs``.
        customer_vecs: float32 [customers, dim].
        top_n: candidates kept per customer (>= 1).
        source: where the embeddings came from (the retrieval model's directory), recorded.
    """
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    out = bundle_path / INDEX_DIR
    out.mkdir(exist_ok=True)
    np.save(out / ITEMS_FILE, np.ascontiguousarray(item_vecs, dtype=np.float32))
    write_embedding_table(customers[[CUSTOMER_ID, EVENT_TIMESTAMP]], customer_vecs, out / CUSTOMERS_FILE)
    snapshots = sorted({pd.Timestamp(t).isoformat() for t in customers[EVENT_TIMESTAMP]})
    meta = {
        "product_ids": [str(p) for p in product_ids],
        "top_n": int(top_n),
        "source": source,
        "snapshots": snapshots,
        "customers": len(customers),
    }
    (out / INDEX_META_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return out


def load_index(bundle_path: Path, top_n: int | None = None) -> RetrievalIndex | None:
    """The retrieval index of ``bundle_path`` (None when the bundle holds none); ``top_n`` overrides the
    bundle's."""
    directory = bundle_path / INDEX_DIR
    if not (directory / INDEX_META_FILE).is_file():
        return None
    meta = json.loads((directory / INDEX_META_FILE).read_text(encoding="utf-8"))
    keys, vectors = read_embeddings(directory / CUSTOMERS_FILE)
    return RetrievalIndex(
        product_ids=tuple(meta["product_ids"]),
        item_vecs=np.load(directory / ITEMS_FILE).astype(np.float32),
        customer_row={str(c): i for i, c in enumerate(keys[CUSTOMER_ID])},
        customer_vecs=vectors,
        customer_ts=_epoch_seconds(keys[EVENT_TIMESTAMP]),
        top_n=int(top_n or meta["top_n"]),
    )
