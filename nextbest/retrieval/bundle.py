"""The retrieval index shipped in a ranker's model bundle, and the serving-time retrieval stage it answers.

``nextbest retrieval index`` writes ``<bundle>/retrieval/``:

* ``items.npy``: the item embeddings, float32 [items, dim], unit rows, in ``product_ids`` order;
* ``index.json``: ``product_ids``, ``top_n`` (candidates kept per customer) and ``model_id``, the saved
  retrieval model the item embeddings come from.

The customer embeddings are not in the bundle: they are features, read from Feast's ``customer_embedding``
view (``nextbest.features.embeddings``) at the customer's snapshot, online by the Scorer (one read for the
customers of a call, under the online reader's timeout and circuit breaker) and from the offline store by
a batch. A Scorer whose bundle holds the index retrieves before it ranks (``RetrievalIndex.keep``): the
customer's candidates (owned and ineligible products already removed by the candidate rule) are ordered
by the affinity ``<u, v>`` and only the ``top_n`` best are read and ranked. The search is exact
(``index.top_k``; its tie rule: higher affinity, then the lower item index). A customer whose embedding is
missing at the snapshot being served, or was written by another retrieval model than the index's, keeps
all its candidates: retrieval narrows, it never hides a customer. This module imports no JAX: serving
loads it without the ``retrieval`` extra.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nextbest.columns import CUSTOMER_ID, EVENT_TIMESTAMP, PRODUCT_ID
from nextbest.features.embeddings import CUSTOMER_EMBEDDING_VIEW, EMBEDDING, RETRIEVAL_MODEL, embedding_vector
from nextbest.retrieval.index import top_k

INDEX_DIR = "retrieval"
"""The retrieval index's directory inside a model bundle."""

INDEX_META_FILE = "index.json"
ITEMS_FILE = "items.npy"

DEFAULT_TOP_N = 100
"""Candidates a customer keeps after retrieval unless ``nextbest retrieval index --top-n`` says otherwise."""


@dataclass(frozen=True)
class RetrievalIndex:
    """The item embeddings of one bundle and how many candidates a customer keeps.

    Attributes:
        product_ids: the items, in row order of ``item_vecs``.
        item_vecs: float32 [items, dim], unit rows.
        top_n: candidates kept per customer (>= 1).
        model_id: the retrieval model the item embeddings come from; a customer embedding is used only
            when its ``retrieval_model`` is this one.
        view: the customer-keyed Feast view holding the customer embeddings (what the online reader reads
            for ``keep``).
    """

    product_ids: tuple[str, ...]
    item_vecs: np.ndarray
    top_n: int
    model_id: str
    view: str = CUSTOMER_EMBEDDING_VIEW
    _position: _Positions = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_position", _Positions((p, i) for i, p in enumerate(self.product_ids)))

    def embedding(self, value: Any, model_id: Any) -> np.ndarray | None:
        """A stored customer embedding as float32 when it was written by this index's model and has the
        items' dimension; else None."""
        u = embedding_vector(value)
        if u is None or str(model_id) != self.model_id or u.shape != (self.item_vecs.shape[1],):
            return None
        return u

    def narrow(self, candidates: Sequence[str], u: np.ndarray | None) -> list[str]:
        """The ``top_n`` of ``candidates`` of highest affinity to the customer embedding ``u``, best first
        (ties: the lower item index); all ``candidates``, in their order, when ``u`` is None or there are
        at most ``top_n`` of them. Products outside the index are kept after the retrieved ones (never
        silently dropped)."""
        return [candidates[i] for i in self.narrow_positions(candidates, u)]

    def narrow_positions(self, candidates: Sequence[str], u: np.ndarray | None) -> np.ndarray:
        """``narrow``'s choice as positions in ``candidates`` (int64; a product listed twice counts at
        its last position), so the caller takes the kept candidates' rows without looking them up."""
        if u is None or len(candidates) <= self.top_n:
            return np.arange(len(candidates), dtype=np.int64)
        position = self._position.__getitem__  # -1 outside the index
        found = np.fromiter(map(position, candidates), dtype=np.int64, count=len(candidates))
        known = np.flatnonzero(found >= 0)
        rows = found[known]
        order = top_k((self.item_vecs @ u)[None, :], self.top_n, _mask(rows, len(self.product_ids)))[0]
        at = np.empty(len(self.product_ids), dtype=np.int64)
        at[rows] = known
        return np.concatenate([at[order[: min(self.top_n, len(rows))]], np.flatnonzero(found < 0)])

    def keep(self, candidates: list[str], row: Mapping[str, list[Any]], customer_ts: int) -> np.ndarray:
        """``narrow_positions`` with the customer's one-key online read of ``view`` (``embedding``,
        ``retrieval_model`` and ``embedding__ts``): the embedding counts only when it is of the snapshot
        served, ``customer_ts`` (epoch seconds of the customer's feature row)."""
        values = row.get(EMBEDDING) or [None]
        stamp = int((row.get(f"{EMBEDDING}__ts") or [0])[0] or 0)
        model = (row.get(RETRIEVAL_MODEL) or [None])[0]
        u = self.embedding(values[0], model) if stamp == int(customer_ts) else None
        return self.narrow_positions(candidates, u)

    def narrow_frame(self, candidates: pd.DataFrame, embeddings: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``candidates`` (``customer_id``, ``product_id``, ``event_timestamp``; one snapshot
        or several) that ``narrow`` keeps for their customer at their snapshot, in their order: what a
        batch scores when serving retrieves (the same top-N the Scorer reads online). ``embeddings``
        holds each (``customer_id``, ``event_timestamp``)'s point-in-time ``embedding`` and
        ``retrieval_model`` (``nextbest.features.embeddings.customer_embeddings_at``)."""
        if candidates.empty:
            return candidates
        vec_of = {
            (str(c), pd.Timestamp(t)): self.embedding(v, m)
            for c, t, v, m in zip(
                embeddings[CUSTOMER_ID],
                embeddings[EVENT_TIMESTAMP],
                embeddings[EMBEDDING],
                embeddings[RETRIEVAL_MODEL],
                strict=True,
            )
        }
        keep = np.zeros(len(candidates), dtype=bool)
        customers = candidates[CUSTOMER_ID].astype(str).to_numpy()
        products = candidates[PRODUCT_ID].astype(str).to_numpy()
        stamps = candidates[EVENT_TIMESTAMP].to_numpy()
        groups = pd.DataFrame({"c": customers, "t": stamps}).groupby(["c", "t"], sort=False).indices
        for (customer, stamp), rows in groups.items():
            u = vec_of.get((customer, pd.Timestamp(stamp)))
            kept = set(self.narrow(products[rows].tolist(), u))
            keep[rows] = [p in kept for p in products[rows]]
        return candidates[keep]


class _Positions(dict):
    """Product -> item index; -1 for a product outside the index (looked up in C, ``map`` over a list)."""

    def __missing__(self, key: str) -> int:
        return -1


def _mask(rows: np.ndarray, n_items: int) -> np.ndarray:
    """bool [1, n_items]: True at ``rows``."""
    out = np.zeros((1, n_items), dtype=bool)
    out[0, rows] = True
    return out


def write_index(
    bundle_path: Path,
    product_ids: Sequence[str],
    item_vecs: np.ndarray,
    top_n: int = DEFAULT_TOP_N,
    model_id: str = "",
) -> Path:
    """Write the retrieval index into ``bundle_path/retrieval/`` (replacing one already there); its path.

    Args:
        bundle_path: a ranker's model bundle directory.
        product_ids: the items of ``item_vecs``' rows.
        item_vecs: float32 [items, dim].
        top_n: candidates kept per customer (>= 1).
        model_id: the retrieval model the embeddings come from (its directory name).
    """
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    out = bundle_path / INDEX_DIR
    out.mkdir(exist_ok=True)
    np.save(out / ITEMS_FILE, np.ascontiguousarray(item_vecs, dtype=np.float32))
    meta = {"product_ids": [str(p) for p in product_ids], "top_n": int(top_n), "model_id": model_id}
    (out / INDEX_META_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return out


def load_index(bundle_path: Path, top_n: int | None = None) -> RetrievalIndex | None:
    """The retrieval index of ``bundle_path`` (None when the bundle holds none); ``top_n`` overrides the
    bundle's."""
    directory = bundle_path / INDEX_DIR
    if not (directory / INDEX_META_FILE).is_file():
        return None
    meta = json.loads((directory / INDEX_META_FILE).read_text(encoding="utf-8"))
    return RetrievalIndex(
        product_ids=tuple(meta["product_ids"]),
        item_vecs=np.load(directory / ITEMS_FILE).astype(np.float32),
        top_n=int(top_n or meta["top_n"]),
        model_id=str(meta.get("model_id", "")),
    )
