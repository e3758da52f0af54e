"""Column names shared by every stage: the keys, the snapshot timestamp, labels, scores and ranks.

A ranking *group* (a query) is one customer at one snapshot; its *documents* are the candidate
products. Every candidate frame has one row per (customer, product, snapshot).
"""

from __future__ import annotations

CUSTOMER_ID = "customer_id"
"""The customer key (string); the join key of the Feast entity ``customer``."""

PRODUCT_ID = "product_id"
"""The product key (string); the join key of the Feast entity ``product``."""

EVENT_TIMESTAMP = "event_timestamp"
"""The snapshot: the moment the features of the row became knowable (Feast's timestamp name)."""

MONTH_INDEX = "month_index"
"""The snapshot's calendar month as a running integer (dbt macro ``month_index``): the time key the
customer x product relations are joined on in dbt; the pair model documents it, but it is never a feature."""

PAIR_JOIN_COLUMNS: tuple[str, ...] = (MONTH_INDEX, "customer_key", "product_key")
"""The columns the pair model keeps for the packer, never features: the snapshot's month and the integer
surrogate keys of customer and product (numbered in ``customer_id`` / ``product_id`` order), which the
packer joins and sorts on instead of the string ids (dbt macro ``pair_join_columns``)."""

SNAPSHOT_ON = "snapshot_on"
"""The snapshot date (month end) of a row; ``event_timestamp`` is the day after, 00:00 UTC."""

LABEL = "label"
"""1 if the customer adopted the candidate product within the horizon after the snapshot, else 0."""

SCORE = "score"
"""A model's ranking score (unbounded for the ranker; higher = rank first)."""

PROBABILITY = "probability"
"""A calibrated adoption probability in [0, 1]."""

RANK = "rank"
"""1-based position of a product in its customer's ranking (1 = offer first)."""

SEASONAL_INDEX = "seasonal_index_label_month"
"""A product's seasonal index for the label window's calendar month, from earlier years (dbt
``int_product_seasonal_indices``, served in ``feat_product_monthly``; null in the first year). Never a
tree feature: the ranker adds ``seasonal_offset`` x ln(index) to its score (``FittedRanker.score``)."""

ORACLE_PROBABILITY = "oracle_probability"
"""The true adoption probability of synthetic data (``oracle.parquet``), used by evaluation only."""

ENTITY_JOIN_KEYS: dict[str, str] = {"customer": CUSTOMER_ID, "product": PRODUCT_ID}
"""Feast entity name -> its join key column."""

GROUP_COLS: tuple[str, ...] = (CUSTOMER_ID, EVENT_TIMESTAMP)
"""The columns that identify one ranking group (one customer at one snapshot)."""

SORT_COLS: tuple[str, ...] = (EVENT_TIMESTAMP, CUSTOMER_ID, PRODUCT_ID)
"""The canonical row order of a ranking frame: groups contiguous, products sorted inside a group."""

KEY_COLS: tuple[str, ...] = SORT_COLS
"""The unique key of a candidate row."""

CATEGORY = "category"
"""A product category (``products.category``): the item of the ``category_propensity`` task."""
