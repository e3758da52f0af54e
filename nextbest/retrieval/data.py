"""Point-in-time arrays for the two-tower model, read from the dbt marts and the raw holdings.

A *group* is one customer at one snapshot (the ranker's group). For each group:

* its **history**: the ``HISTORY_LIMIT`` products it most recently started a holding of on or before
  ``snapshot_on`` (raw holdings, ``started_on <= snapshot_on``: what is known at ``event_timestamp``),
  each weighted by recency ``0.5 ** (months_ago / HALF_LIFE_MONTHS)``;
* its **customer features**: ``CUSTOMER_FEATURES`` of ``feat_customer_monthly`` at the same
  ``event_timestamp`` (log1p of the non-negative value, 0 for null);
* its **candidates** (``fct_candidates``) and, at a labelled snapshot, its **positives**: the candidates
  with label 1 in ``fct_ranking_labels`` (adopted within the horizon after the snapshot).

Items are the products of ``dim_products`` in product-id order; an item's attributes are its category
and a popularity bucket learned from the training positives (``popularity_buckets``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from nextbest.columns import CUSTOMER_ID, EVENT_TIMESTAMP, LABEL, PRODUCT_ID, SNAPSHOT_ON
from nextbest.ingest.contract import HOLDINGS_FILE
from nextbest.marts import DIM_PRODUCTS, FCT_CANDIDATES, FCT_RANKING_LABELS, mart_file

FEAT_CUSTOMER_MONTHLY = "feat_customer_monthly"
"""The customer feature mart the customer tower reads a few columns of."""

CUSTOMER_FEATURES: tuple[str, ...] = (
    "tenure_months",
    "age_years",
    "count_products_owned",
    "count_holdings_started_ever",
    "months_since_last_holding_start",
    "count_transactions_last_3_months",
    "sum_spend_last_3_months",
)
"""Customer features of the customer tower (columns of ``feat_customer_monthly``)."""

HISTORY_LIMIT = 50
"""Most recently started products kept in a group's history bag."""

HALF_LIFE_MONTHS = 6.0
"""A start ``HALF_LIFE_MONTHS`` months before the snapshot weighs half as much as one in its month."""

POPULARITY_BUCKETS = 8
"""Popularity buckets of the item tower (quantiles of training adoptions; 0 = least adopted)."""


@dataclass(frozen=True)
class Catalogue:
    """The items the model embeds, in product-id order.

    Attributes:
        product_ids: product ids, sorted (item index i is ``product_ids[i]``).
        categories: category index of each item, in ``[0, len(category_names))``.
        category_names: the distinct categories, sorted.
    """

    product_ids: np.ndarray
    categories: np.ndarray
    category_names: tuple[str, ...]

    @property
    def size(self) -> int:
        """Number of items."""
        return len(self.product_ids)

    def index_of(self, product_ids: pd.Series) -> np.ndarray:
        """Item index of each product id (all must be in the catalogue)."""
        index = np.searchsorted(self.product_ids, product_ids.to_numpy(dtype=object))
        index = np.minimum(index, self.size - 1)
        if not (self.product_ids[index] == product_ids.to_numpy(dtype=object)).all():
            raise ValueError("a product id is not in dim_products")
        return index.astype(np.int32)


@dataclass(frozen=True)
class Groups:
    """Customers at snapshots, with their point-in-time model inputs.

    Attributes:
        keys: ``customer_id``, ``snapshot_on``, ``event_timestamp`` of each group (row g = group g).
        history_items: int32 [groups, HISTORY_LIMIT]: item indices, ``catalogue.size`` for padding.
        history_weights: float32 [groups, HISTORY_LIMIT]: recency weights in (0, 1], 0 for padding.
        features: float32 [groups, len(CUSTOMER_FEATURES)]: log1p(max(value, 0)), 0 for null.
        candidates: bool [groups, items]: the group's candidates (``fct_candidates``).
        positives: bool [groups, items]: candidates adopted within the horizon (all False when unlabelled).
    """

    keys: pd.DataFrame
    history_items: np.ndarray
    history_weights: np.ndarray
    features: np.ndarray
    candidates: np.ndarray
    positives: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)

    def subset(self, mask: np.ndarray) -> Groups:
        """The groups where ``mask`` is True."""
        return Groups(
            keys=self.keys[mask].reset_index(drop=True),
            history_items=self.history_items[mask],
            history_weights=self.history_weights[mask],
            features=self.features[mask],
            candidates=self.candidates[mask],
            positives=self.positives[mask],
        )


def load_catalogue(marts_dir: Path) -> Catalogue:
    """The products of ``dim_products`` with their category index."""
    products = pd.read_parquet(mart_file(marts_dir, DIM_PRODUCTS), columns=[PRODUCT_ID, "category"])
    products = products.sort_values(PRODUCT_ID).reset_index(drop=True)
    names, codes = np.unique(products["category"].astype(str).to_numpy(), return_inverse=True)
    return Catalogue(
        product_ids=products[PRODUCT_ID].to_numpy(dtype=object),
        categories=codes.astype(np.int32),
        category_names=tuple(str(n) for n in names),
    )


_GROUP_KEYS_SQL = f"""
with candidates as (
    select distinct {CUSTOMER_ID}, {EVENT_TIMESTAMP} from read_parquet(?)
),
labelled as (
    select distinct {CUSTOMER_ID}, {EVENT_TIMESTAMP} from read_parquet(?)
),
final as (
    select c.{CUSTOMER_ID}, c.{EVENT_TIMESTAMP}, l.{CUSTOMER_ID} is not null as is_labelled,
    from candidates as c
    left join labelled as l using ({CUSTOMER_ID}, {EVENT_TIMESTAMP})
)
select * from final order by {EVENT_TIMESTAMP}, {CUSTOMER_ID}
"""

_CANDIDATES_SQL = f"""
-- one row per candidate as (group index, item index, label): integers only, so a catalogue of
-- thousands of items (tens of millions of candidate rows) fits in memory
with candidates as (
    select {CUSTOMER_ID}, {PRODUCT_ID}, {EVENT_TIMESTAMP} from read_parquet(?)
),
labels as (
    select {CUSTOMER_ID}, {PRODUCT_ID}, {EVENT_TIMESTAMP}, {LABEL} from read_parquet(?)
),
final as (
    select
        cast(g.group_index as integer) as group_index,
        cast(i.item_index as integer) as item_index,
        coalesce(l.{LABEL}, 0) = 1 as is_positive,
    from candidates as c
    join groups_frame as g using ({CUSTOMER_ID}, {EVENT_TIMESTAMP})
    join items_frame as i using ({PRODUCT_ID})
    left join labels as l using ({CUSTOMER_ID}, {PRODUCT_ID}, {EVENT_TIMESTAMP})
)
select * from final
"""

_HISTORY_SQL = f"""
with groups as (
    select group_index, {CUSTOMER_ID}, cast({SNAPSHOT_ON} as date) as {SNAPSHOT_ON}, from groups_frame
),
holdings as (
    select {CUSTOMER_ID}, {PRODUCT_ID}, started_on, from read_parquet(?)
),
known as (
    -- point in time: holdings started on or before the snapshot day; a re-held product once, latest start
    select g.group_index, g.{SNAPSHOT_ON}, h.{PRODUCT_ID}, max(h.started_on) as started_on,
    from groups as g
    join holdings as h on h.{CUSTOMER_ID} = g.{CUSTOMER_ID} and h.started_on <= g.{SNAPSHOT_ON}
    group by all
),
ranked as (
    select group_index, {PRODUCT_ID}, date_diff('month', started_on, {SNAPSHOT_ON}) as months_ago,
        row_number() over (partition by group_index order by started_on desc, {PRODUCT_ID}) as recency_rank,
    from known
),
final as (
    select group_index, {PRODUCT_ID}, months_ago, from ranked where recency_rank <= ?
)
select * from final
"""


def _history(
    con: duckdb.DuckDBPyConnection, keys: pd.DataFrame, holdings: Path, catalogue: Catalogue
) -> tuple[np.ndarray, np.ndarray]:
    """History item indices and recency weights, [groups, HISTORY_LIMIT] each (padding: size, 0)."""
    groups_frame = keys[[CUSTOMER_ID, SNAPSHOT_ON]].assign(group_index=np.arange(len(keys)))
    con.register("groups_frame", groups_frame)
    rows = con.execute(_HISTORY_SQL, [str(holdings), HISTORY_LIMIT]).df()
    con.unregister("groups_frame")
    items = np.full((len(keys), HISTORY_LIMIT), catalogue.size, dtype=np.int32)
    weights = np.zeros((len(keys), HISTORY_LIMIT), dtype=np.float32)
    if len(rows):
        rows = rows.sort_values(["group_index", "months_ago", PRODUCT_ID], kind="stable")
        group = rows["group_index"].to_numpy()
        slot = rows.groupby("group_index").cumcount().to_numpy()
        items[group, slot] = catalogue.index_of(rows[PRODUCT_ID])
        months = np.maximum(rows["months_ago"].to_numpy(dtype=np.float64), 0.0)
        weights[group, slot] = (0.5 ** (months / HALF_LIFE_MONTHS)).astype(np.float32)
    return items, weights


def _features(con: duckdb.DuckDBPyConnection, keys: pd.DataFrame, marts_dir: Path) -> np.ndarray:
    """``CUSTOMER_FEATURES`` of each group, log1p(max(x, 0)), 0 for null or a missing row."""
    path = mart_file(marts_dir, FEAT_CUSTOMER_MONTHLY)
    cols = ", ".join(CUSTOMER_FEATURES)
    feats = con.execute(
        f"select {CUSTOMER_ID}, {EVENT_TIMESTAMP}, {cols} from read_parquet(?)", [str(path)]
    ).df()
    joined = keys[[CUSTOMER_ID, EVENT_TIMESTAMP]].merge(feats, on=[CUSTOMER_ID, EVENT_TIMESTAMP], how="left")
    values = joined[list(CUSTOMER_FEATURES)].to_numpy(dtype=np.float64, na_value=np.nan)
    return np.nan_to_num(np.log1p(np.maximum(values, 0.0)), nan=0.0).astype(np.float32)


def load_groups(marts_dir: Path, raw_dir: Path, catalogue: Catalogue) -> Groups:
    """Every group of ``fct_candidates`` (all snapshots, the latest included) with its inputs.

    Args:
        marts_dir: the build's marts (``settings.marts_dir``).
        raw_dir: the ingested dataset (``settings.raw_dir``); its holdings give the history bags.
        catalogue: ``load_catalogue(marts_dir)``.
    """
    con = duckdb.connect()
    con.execute("set enable_progress_bar = false")
    paths = [str(mart_file(marts_dir, FCT_CANDIDATES)), str(mart_file(marts_dir, FCT_RANKING_LABELS))]
    keys = con.execute(_GROUP_KEYS_SQL, paths).df()
    keys[SNAPSHOT_ON] = keys[EVENT_TIMESTAMP] - pd.Timedelta(days=1)
    group_index = np.arange(len(keys))
    item_index = np.arange(catalogue.size)
    con.register("groups_frame", keys[[CUSTOMER_ID, EVENT_TIMESTAMP]].assign(group_index=group_index))
    con.register(
        "items_frame", pd.DataFrame({PRODUCT_ID: catalogue.product_ids.astype(str), "item_index": item_index})
    )
    rows = con.execute(_CANDIDATES_SQL, paths).fetchnumpy()
    con.unregister("groups_frame")
    con.unregister("items_frame")
    row_group, row_item = rows["group_index"], rows["item_index"]
    candidates = np.zeros((len(keys), catalogue.size), dtype=bool)
    candidates[row_group, row_item] = True
    positives = np.zeros_like(candidates)
    is_pos = np.asarray(rows["is_positive"], dtype=bool)
    positives[row_group[is_pos], row_item[is_pos]] = True
    items, weights = _history(con, keys, raw_dir / HOLDINGS_FILE, catalogue)
    return Groups(
        keys=keys,
        history_items=items,
        history_weights=weights,
        features=_features(con, keys, marts_dir),
        candidates=candidates,
        positives=positives,
    )


def popularity_counts(groups: Groups) -> np.ndarray:
    """Adoptions per item over ``groups`` (float64 [items]): the popularity retrieval's scores."""
    return groups.positives.sum(axis=0).astype(np.float64)


def popularity_buckets(counts: np.ndarray, buckets: int = POPULARITY_BUCKETS) -> np.ndarray:
    """Bucket of each item in ``[0, buckets)`` by the rank of its adoption count (ties share the lower
    bucket; 0 = least adopted)."""
    ranks = pd.Series(counts).rank(method="min").to_numpy() - 1.0
    return np.minimum((ranks * buckets / max(len(counts), 1)).astype(np.int32), buckets - 1)


def split_train_test(groups: Groups, horizon_months: int) -> tuple[Groups, Groups]:
    """Training groups and the held-out test groups (the latest labelled snapshot).

    Training keeps labelled snapshots whose label window ends by the test snapshot
    (``snapshot_on + horizon_months`` months ``<=`` the test snapshot), so nothing the model learns
    from happened after the snapshot it is tested on.
    """
    labelled = groups.keys["is_labelled"].to_numpy()
    if not labelled.any():
        raise ValueError("no labelled snapshot: nothing to train on")
    snapshots = pd.to_datetime(groups.keys[SNAPSHOT_ON])
    test_snapshot = snapshots[labelled].max()
    window_end = snapshots + pd.DateOffset(months=horizon_months)
    train = labelled & (window_end <= test_snapshot).to_numpy()
    test = labelled & (snapshots == test_snapshot).to_numpy()
    return groups.subset(train), groups.subset(test)
