"""nextbest.features.packing.unpack:
the one decoder of the packed customer x product layout (known answers)."""

from __future__ import annotations

import numpy as np
import pytest

from nextbest.features.packing import PackingError, unpack


class TestUnpack:
    def test_elements_follow_rows_in_list_order(self) -> None:
        out = unpack(
            [["P1", "P3"], [], ["P2"]],
            {"held": [[1.0, 0.0], [], [np.nan]], "channel": [["web", ""], [], ["branch"]]},
            string_features=["channel"],
        )
        assert out.row.tolist() == [0, 0, 2]
        assert out.product_id.tolist() == ["P1", "P3", "P2"]
        np.testing.assert_array_equal(out.features["held"], [1.0, 0.0, np.nan])
        assert out.features["channel"].tolist() == ["web", None, "branch"]  # '' travels for null
        assert len(out) == 3

    def test_missing_packed_row_has_no_element(self) -> None:
        out = unpack([None, ["P1"]], {"held": [None, [1.0]]})
        assert out.row.tolist() == [1]
        assert out.product_id.tolist() == ["P1"]

    def test_no_row_at_all(self) -> None:
        out = unpack([], {"held": []})
        assert len(out) == 0 and out.features["held"].dtype == np.float64

    def test_arrays_and_lists_decode_alike(self) -> None:
        from_arrays = unpack([np.array(["P1", "P2"], dtype=object)], {"x": [np.array([1.5, np.nan])]})
        from_lists = unpack([["P1", "P2"]], {"x": [[1.5, float("nan")]]})
        np.testing.assert_array_equal(from_arrays.features["x"], from_lists.features["x"])
        assert from_arrays.product_id.tolist() == from_lists.product_id.tolist()

    def test_misaligned_list_names_feature_and_row(self) -> None:
        with pytest.raises(PackingError, match=r"feature 'held', packed row 1: 1 values for 2 candidate"):
            unpack([["P1"], ["P1", "P2"]], {"held": [[1.0], [0.0]]})

    def test_wrong_number_of_rows(self) -> None:
        with pytest.raises(PackingError, match="feature 'held': 1 packed rows, expected 2"):
            unpack([["P1"], ["P2"]], {"held": [[1.0]]})


class TestUnpackArrow:
    """Offline, Feast returns arrow list columns; they must decode exactly like the online Python lists."""

    def test_arrow_lists_decode_like_python_lists(self) -> None:
        import pyarrow as pa

        products = [["P1", "P3"], None, [], ["P2"]]
        held = [[1.0, None], None, [], [float("nan")]]
        channel = [["web", ""], None, [], [None]]
        as_arrow = unpack(
            pa.chunked_array([pa.array(products[:2]), pa.array(products[2:])]),
            {"held": pa.chunked_array([pa.array(held)]), "channel": pa.array(channel)},
            string_features=["channel"],
        )
        as_lists = unpack(products, {"held": held, "channel": channel}, string_features=["channel"])
        assert as_arrow.row.tolist() == as_lists.row.tolist() == [0, 0, 3]
        assert as_arrow.product_id.tolist() == as_lists.product_id.tolist() == ["P1", "P3", "P2"]
        np.testing.assert_array_equal(as_arrow.features["held"], [1.0, np.nan, np.nan])
        np.testing.assert_array_equal(as_lists.features["held"], [1.0, np.nan, np.nan])
        assert (
            as_arrow.features["channel"].tolist()
            == as_lists.features["channel"].tolist()
            == ["web", None, None]
        )

    def test_a_sliced_arrow_array_keeps_its_own_rows(self) -> None:
        import pyarrow as pa

        products = pa.array([["A"], ["B", "C"], ["D"]]).slice(1, 2)
        out = unpack(products, {"x": pa.array([[0.0], [1.0, 2.0], [3.0]]).slice(1, 2)})
        assert out.product_id.tolist() == ["B", "C", "D"] and out.row.tolist() == [0, 0, 1]
        assert out.features["x"].tolist() == [1.0, 2.0, 3.0]

    def test_misaligned_arrow_lists_are_rejected(self) -> None:
        import pyarrow as pa

        with pytest.raises(PackingError, match="packed row 0"):
            unpack(pa.array([["A", "B"]]), {"x": pa.array([[1.0]])})
