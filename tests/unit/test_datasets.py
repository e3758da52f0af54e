"""nextbest.training.datasets: the blocks of customers one Feast retrieval reads (known answers)."""

from __future__ import annotations

import pandas as pd

from nextbest.training.datasets import customer_blocks


def test_blocks_hold_whole_customers_up_to_the_row_limit() -> None:
    customers = pd.Series(["a", "a", "b", "b", "b", "c", "d", "d"])
    assert customer_blocks(customers, 4) == [slice(0, 2), slice(2, 6), slice(6, 8)]
    assert customer_blocks(customers, 5) == [slice(0, 5), slice(5, 8)]
    assert customer_blocks(customers, 8) == [slice(0, 8)]


def test_a_customer_with_more_rows_than_the_limit_is_a_block_of_its_own() -> None:
    customers = pd.Series(["a", "b", "b", "b", "c"])
    assert customer_blocks(customers, 2) == [slice(0, 1), slice(1, 4), slice(4, 5)]
    assert customer_blocks(pd.Series([], dtype=object), 2) == [slice(0, 0)]
