"""nextbest.features.packing.unpack:
the one decoder of the packed customer x product layout (known answers)."""

from __future__ import annotations

import numpy as np
import pytest

from nextbest.features.packing import PackingError, element_positions, unpack


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

    def test_positions_decode_only_those_elements_in_their_order(self) -> None:
        out = unpack(
            [["P1", "P2", "P3"], None, ["P4", "P5"]],
            {"held": [[1.0, 2.0, 3.0], None, [4.0, 5.0]], "channel": [["", "web", "app"], None, ["x", ""]]},
            string_features=["channel"],
            positions=[np.array([2, 0]), np.array([], dtype=np.int64), np.array([1])],
        )
        assert out.row.tolist() == [0, 0, 2]
        assert out.product_id.tolist() == ["P3", "P1", "P5"]
        assert out.features["held"].tolist() == [3.0, 1.0, 5.0]
        assert out.features["channel"].tolist() == ["app", None, None]

    def test_positions_are_checked_against_each_rows_list(self) -> None:
        with pytest.raises(PackingError, match="packed row 1: position 1 outside its 1 elements"):
            unpack([["P1", "P2"], ["P3"]], {"held": [[1.0, 2.0], [3.0]]}, positions=[[1], [1]])
        with pytest.raises(PackingError, match="feature 'held', packed row 0: 1 values for 2"):
            unpack([["P1", "P2"]], {"held": [[1.0]]}, positions=[[0]])
        with pytest.raises(PackingError, match="1 position lists for 2 packed rows"):
            unpack([["P1"], ["P2"]], {"held": [[1.0], [2.0]]}, positions=[[0]])


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


class TestPack:
    """pack_sorted_rows / pack_sorted_batches / write_packed_parquet: the encoder of the packed layout."""

    KEYS = ("customer_id", "event_timestamp")

    @staticmethod
    def rows():
        import pyarrow as pa

        return pa.table(
            {
                "customer_id": ["a", "a", "b", "c", "c", "c", "c"],
                "event_timestamp": [1, 1, 1, 1, 1, 2, 2],
                "product_id": ["P1", "P2", None, "P1", "P3", "P1", "P4"],
                "held": [1.0, np.nan, np.nan, 3.0, 4.0, 5.0, 6.0],
                "channel": ["web", "", "", "branch", "web", "", "app"],
            }
        )

    EXPECTED = [
        {"customer_id": "a", "event_timestamp": 1, "candidate_product_ids": ["P1", "P2"],
         "held": [1.0, None], "channel": ["web", ""]},
        {"customer_id": "b", "event_timestamp": 1, "candidate_product_ids": [], "held": [], "channel": []},
        {"customer_id": "c", "event_timestamp": 1, "candidate_product_ids": ["P1", "P3"],
         "held": [3.0, 4.0], "channel": ["branch", "web"]},
        {"customer_id": "c", "event_timestamp": 2, "candidate_product_ids": ["P1", "P4"],
         "held": [5.0, 6.0], "channel": ["", "app"]},
    ]

    @staticmethod
    def plain(rows: list[dict]) -> list[dict]:
        """NaN -> None, so that rows compare with ==."""
        return [
            {k: [None if isinstance(x, float) and np.isnan(x) else x for x in v] if isinstance(v, list) else v
             for k, v in row.items()}
            for row in rows
        ]

    def test_one_row_per_key_lists_aligned_and_empty_for_a_null_product(self) -> None:
        from nextbest.features.packing import pack_sorted_rows

        packed = pack_sorted_rows(self.rows(), self.KEYS, "product_id")
        assert packed.column_names == [*self.KEYS, "candidate_product_ids", "held", "channel"]
        assert self.plain(packed.to_pylist()) == self.EXPECTED

    def test_batches_split_inside_a_group_pack_the_group_once(self) -> None:
        import pyarrow as pa

        from nextbest.features.packing import pack_sorted_batches

        for size in (1, 2, 3, 7):
            batches = self.rows().to_batches(max_chunksize=size)
            tables = list(pack_sorted_batches(batches, self.KEYS, "product_id"))
            assert self.plain(pa.concat_tables(tables).to_pylist()) == self.EXPECTED, size

    def test_packed_rows_unpack_to_the_element_rows(self) -> None:
        from nextbest.features.packing import pack_sorted_rows

        rows = self.rows()
        packed = pack_sorted_rows(rows, self.KEYS, "product_id")
        out = unpack(
            packed.column("candidate_product_ids"),
            {"held": packed.column("held"), "channel": packed.column("channel")},
            string_features=["channel"],
        )
        present = [i for i, p in enumerate(rows.column("product_id").to_pylist()) if p is not None]
        assert out.product_id.tolist() == [rows.column("product_id")[i].as_py() for i in present]
        assert out.row.tolist() == [0, 0, 2, 2, 3, 3]
        np.testing.assert_array_equal(out.features["held"], [1.0, np.nan, 3.0, 4.0, 5.0, 6.0])
        assert out.features["channel"].tolist() == ["web", None, "branch", "web", None, "app"]

    def test_no_rows_give_an_empty_table_of_the_packed_schema(self) -> None:
        import pyarrow as pa

        from nextbest.features.packing import pack_sorted_rows

        packed = pack_sorted_rows(self.rows().slice(0, 0), self.KEYS, "product_id")
        assert packed.num_rows == 0
        assert packed.schema.field("held").type == pa.list_(pa.float64())
        assert packed.schema.field("candidate_product_ids").type == pa.list_(pa.string())

    def test_write_packed_parquet_sorts_each_chunk_and_writes_one_file(self, tmp_path) -> None:
        import duckdb
        import pyarrow.parquet as pq

        from nextbest.features.packing import write_packed_parquet

        con = duckdb.connect()
        shuffled = self.rows().take([6, 3, 0, 2, 5, 4, 1])  # DuckDB must sort every chunk
        con.register("element_rows", shuffled)
        path = tmp_path / "packed.parquet"
        written = write_packed_parquet(
            con, "select * from element_rows", path, self.KEYS, "product_id", "event_timestamp",
            [(1, 1), (2, 2)], batch_rows=2,
        )
        assert written == 4
        table = pq.read_table(path).sort_by([("event_timestamp", "ascending"), ("customer_id", "ascending")])
        assert self.plain(table.to_pylist()) == self.EXPECTED

    def test_dictionaries_for_keys_and_product_ids_statistics_for_keys_only(self, tmp_path) -> None:
        import duckdb
        import pyarrow.parquet as pq

        from nextbest.features.packing import write_packed_parquet

        con = duckdb.connect()
        con.register("element_rows", self.rows())
        path = tmp_path / "packed.parquet"
        write_packed_parquet(
            con, "select * from element_rows", path, self.KEYS, "product_id", "event_timestamp", [(1, 2)]
        )
        group = pq.ParquetFile(path).metadata.row_group(0)
        columns = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
        dictionary = {name for name, c in columns.items() if "RLE_DICTIONARY" in c.encodings}
        with_statistics = {name for name, c in columns.items() if c.is_stats_set}
        assert dictionary == {"customer_id", "event_timestamp", "candidate_product_ids.list.element"}
        assert with_statistics == {"customer_id", "event_timestamp"}
        assert "held.list.element" in columns

    def test_a_chunk_column_of_its_own_cuts_the_work_and_is_not_written(self, tmp_path) -> None:
        import duckdb
        import pyarrow as pa
        import pyarrow.parquet as pq

        from nextbest.features.packing import write_packed_parquet

        con = duckdb.connect()
        rows = self.rows()
        month = pa.array([100 * t for t in rows.column("event_timestamp").to_pylist()], type=pa.int64())
        con.register("element_rows", rows.append_column("month_index", month).take([6, 3, 0, 2, 5, 4, 1]))
        path = tmp_path / "packed.parquet"
        written = write_packed_parquet(
            con, "select * from element_rows", path, self.KEYS, "product_id", "month_index", [(100, 100)],
        )
        table = pq.read_table(path)
        assert "month_index" not in table.column_names
        assert written == 3  # month 100 only: 3 of the 4 packed rows
        assert self.plain(table.to_pylist()) == [r for r in self.EXPECTED if r["event_timestamp"] == 1]

    def test_integer_sort_keys_order_the_lists_and_are_not_written(self, tmp_path) -> None:
        import duckdb
        import pyarrow as pa
        import pyarrow.parquet as pq

        from nextbest.features.packing import write_packed_parquet

        con = duckdb.connect()
        rows = self.rows()
        # numbered in customer_id / product_id order, as int_customers_keyed and int_products_keyed do
        customer_key = pa.array([{"a": 1, "b": 2, "c": 3}[c] for c in rows.column("customer_id").to_pylist()])
        products = {None: None, "P1": 1, "P2": 2, "P3": 3, "P4": 4}
        product_key = pa.array([products[p] for p in rows.column("product_id").to_pylist()], type=pa.int32())
        keyed = rows.append_column("customer_key", customer_key).append_column("product_key", product_key)
        con.register("element_rows", keyed.take([6, 3, 0, 2, 5, 4, 1]))
        path = tmp_path / "packed.parquet"
        written = write_packed_parquet(
            con, "select * from element_rows", path, self.KEYS, "product_id", "event_timestamp",
            [(1, 2)], sort_keys=["customer_key", "product_key"],
        )
        table = pq.read_table(path)
        assert written == 4
        assert {"customer_key", "product_key"}.isdisjoint(table.column_names)
        assert self.plain(table.to_pylist()) == sorted(
            self.EXPECTED, key=lambda r: (r["event_timestamp"], r["customer_id"])
        )
        with pytest.raises(ValueError, match="stand in for the keys and product"):
            write_packed_parquet(
                con, "select * from element_rows", path, self.KEYS, "product_id", "event_timestamp",
                [(1, 2)], sort_keys=["customer_id", "product_key"],
            )

    def test_the_chunk_column_cannot_be_the_product(self, tmp_path) -> None:
        import duckdb

        from nextbest.features.packing import write_packed_parquet

        with pytest.raises(ValueError, match="chunk column 'product_id' is the product column"):
            write_packed_parquet(
                duckdb.connect(), "select 1", tmp_path / "x.parquet", self.KEYS, "product_id", "product_id",
                [],
            )


def test_chunk_ranges_keep_to_the_budget_and_cover_every_value() -> None:
    from nextbest.features.packing import chunk_ranges

    sizes = [("a", 3), ("b", 3), ("c", 5), ("d", 1), ("e", 1)]
    assert chunk_ranges(sizes, 6) == [("a", "b"), ("c", "d"), ("e", "e")]
    assert chunk_ranges(sizes, 4) == [("a", "a"), ("b", "b"), ("c", "c"), ("d", "e")]  # c alone exceeds 4
    assert chunk_ranges(sizes, 100) == [("a", "e")]
    assert chunk_ranges([], 10) == []


def test_duckdb_setting_is_restored_after_the_block_even_on_error() -> None:
    import duckdb

    from nextbest.features.packing import duckdb_setting

    con = duckdb.connect()
    con.execute("set disabled_optimizers = 'join_order'")

    def current() -> str:
        return con.execute("select current_setting('disabled_optimizers')").fetchall()[0][0]

    with pytest.raises(RuntimeError), duckdb_setting(con, "disabled_optimizers", "build_side_probe_side"):
        assert current() == "build_side_probe_side"
        raise RuntimeError("a chunk failed")
    assert current() == "join_order"


def test_each_wanted_element_is_found_in_its_own_rows_elements() -> None:
    element_row = np.array([0, 0, 0, 1, 1])
    element_product = np.array(["a", "b", "c", "b", "d"], dtype=object)
    wanted_row = np.array([0, 0, 1, 1, 1])
    wanted = ["c", "a", "d", "a", "b"]  # "a" is not listed in row 1
    pos = element_positions(element_row, element_product, wanted_row, wanted)
    np.testing.assert_array_equal(pos, [2, 0, 4, -1, 3])


def test_a_row_without_elements_finds_nothing() -> None:
    pos = element_positions(np.array([1, 1]), ["a", "b"], np.array([0, 1]), ["a", "a"])
    np.testing.assert_array_equal(pos, [-1, 0])
    empty = element_positions(np.array([], dtype=np.int64), [], np.array([0]), ["a"])
    np.testing.assert_array_equal(empty, [-1])


def test_a_product_listed_twice_in_one_row_is_found_at_its_last_position() -> None:
    pos = element_positions(np.array([0, 0, 0]), ["a", "b", "a"], np.array([0, 0]), ["a", "b"])
    np.testing.assert_array_equal(pos, [2, 1])
