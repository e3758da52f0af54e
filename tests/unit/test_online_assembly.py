"""nextbest.features.online.element_positions: where each wanted (customer, product) sits among a
packed read's listed elements (known answers)."""

from __future__ import annotations

import numpy as np

from nextbest.features.online import element_positions


def test_each_wanted_element_is_found_in_its_own_customers_block() -> None:
    listed_row = np.array([0, 0, 0, 1, 1])
    listed = np.array(["a", "b", "c", "b", "d"], dtype=object)
    wanted_row = np.array([0, 0, 1, 1, 1])
    wanted = ["c", "a", "d", "a", "b"]  # "a" is not listed for customer 1
    np.testing.assert_array_equal(element_positions(listed_row, listed, wanted_row, wanted), [2, 0, 4, -1, 3])


def test_a_customer_without_listed_products_finds_nothing() -> None:
    listed_row, listed = np.array([1, 1]), ["a", "b"]
    pos = element_positions(listed_row, listed, np.array([0, 1]), ["a", "a"])
    np.testing.assert_array_equal(pos, [-1, 0])
    np.testing.assert_array_equal(element_positions(np.array([], dtype=int), [], np.array([0]), ["a"]), [-1])


def test_a_product_listed_twice_for_one_customer_is_found_at_its_last_position() -> None:
    pos = element_positions(np.array([0, 0, 0]), ["a", "b", "a"], np.array([0, 0]), ["a", "b"])
    np.testing.assert_array_equal(pos, [2, 1])
