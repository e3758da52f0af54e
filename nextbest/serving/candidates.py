"""The candidate rule of serving: which of a customer's listed products may be ranked."""

from __future__ import annotations

import numpy as np


def candidate_mask(listed: np.ndarray, customer_ts: int, list_ts: int) -> np.ndarray:
    """Which listed products are candidates: THE serving implementation of the candidate rule.

    dbt (the one implementation of "not owned and eligible") writes, per customer and snapshot, the
    candidate products into the customer's candidate list, and an (empty) list for a customer without
    any, so the list is refreshed at every snapshot. A listed product is a candidate iff the list is
    from the same snapshot as the customer's latest ``customer_monthly`` row: an older list is out of
    date, and nothing is ranked. ``nextbest.features.online.OnlineReader.candidates`` applies it.

    Args:
        listed: per product asked about, True when it is in the customer's candidate list.
        customer_ts: event timestamp (epoch seconds; 0 = no row) of the customer's customer row.
        list_ts: event timestamp (epoch seconds; 0 = no row) of the customer's candidate list.

    Returns:
        A boolean array shaped like ``listed``, True for candidates.
    """
    listed = np.asarray(listed, dtype=bool)
    return listed & bool(customer_ts > 0 and list_ts == customer_ts)
