"""Known answers of the seasonal offset's helpers (``nextbest.training.seasonal``)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from nextbest.training.seasonal import log_base_rates, log_index, within_group_slopes


def test_log_index_is_zero_where_the_season_is_unknown() -> None:
    data = {"index": pd.Series([math.e, 1.0, None, 0.0, 0.5], dtype="Float64")}
    np.testing.assert_allclose(log_index(data, "index"), [1.0, 0.0, 0.0, 0.0, math.log(0.5)])
    assert log_index({"index": [None, 2.0]}, "index").tolist() == [0.0, math.log(2.0)]


def test_log_base_rates_shrink_each_product_by_one_positive_and_one_negative() -> None:
    products = np.array(["a", "b", "a", "a", "b", "c"])
    label = np.array([1, 0, 0, 1, 0, 0])
    # a: (2 + 1) / (3 + 2); b: (0 + 1) / (2 + 2); c: 1 / 3
    expected = np.log([3 / 5, 1 / 4, 3 / 5, 3 / 5, 1 / 4, 1 / 3])
    np.testing.assert_allclose(log_base_rates(products, label), expected)


def test_within_group_slopes_ignore_what_groups_share() -> None:
    sizes = np.array([3, 2])
    # two groups; y = 2x + a group's own level: the slope within groups is 2
    x = np.array([0.0, 1.0, 2.0, 5.0, 7.0])
    y = 2 * x + np.array([10.0, 10.0, 10.0, -3.0, -3.0])
    np.testing.assert_allclose(within_group_slopes(y, x, sizes), [2.0])
    # x constant inside each group (it only says which group): no slope
    assert within_group_slopes(y, np.array([1.0, 1.0, 1.0, 4.0, 4.0]), sizes).tolist() == [0.0]
    # by hand: group 1 x-centred (-1, 0, 1), y-centred (1, -2, 1) -> 0; group 2 (-1, 1), (-1, 1) -> 2 / 2
    x2 = np.array([0.0, 1.0, 2.0, 0.0, 2.0])
    y2 = np.array([3.0, 0.0, 3.0, 0.0, 2.0])
    np.testing.assert_allclose(within_group_slopes(y2, x2, sizes), [2 / 4])


def test_within_group_slopes_hold_the_other_columns() -> None:
    # y = 2 x1 + 3 x2 + a group level, x1 and x2 correlated: each coefficient is recovered
    rng = np.random.default_rng(0)
    sizes = np.array([4, 5, 3])
    x1 = rng.normal(size=12)
    x2 = 0.5 * x1 + rng.normal(size=12)
    y = 2 * x1 + 3 * x2 + np.repeat([1.0, -2.0, 7.0], sizes)
    np.testing.assert_allclose(within_group_slopes(y, np.column_stack([x1, x2]), sizes), [2.0, 3.0])
    # a column constant inside every group gets 0 and leaves the other's coefficient alone
    level = np.repeat([1.0, 2.0, 3.0], sizes)
    slopes = within_group_slopes(2 * x1 + level, np.column_stack([x1, level]), sizes)
    np.testing.assert_allclose(slopes, [2.0, 0.0])
