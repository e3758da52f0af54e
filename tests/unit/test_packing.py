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
    """pack_elements / write_packed_parquet: the encoder of the packed layout."""

    KEYS = ("customer_id", "event_timestamp")
    GROUP_KEYS = ("month_index", "customer_key")

    @staticmethod
    def population():
        import pyarrow as pa

        # customer_key numbered in customer_id order (int_customers_keyed); month 10 at time 1, 11 at 2
        return pa.table(
            {
                "customer_id": ["a", "b", "c", "c"],
                "event_timestamp": [1, 1, 1, 2],
                "month_index": [10, 10, 10, 11],
                "customer_key": [1, 2, 3, 3],
            }
        )

    @staticmethod
    def elements():
        import pyarrow as pa

        # sorted by (month_index, customer_key, product_key); customer b has no element
        return pa.table(
            {
                "month_index": [10, 10, 10, 10, 11, 11],
                "customer_key": [1, 1, 3, 3, 3, 3],
                "product_key": pa.array([1, 2, 1, 3, 1, 4], type=pa.int32()),
                "product_id": ["P1", "P2", "P1", "P3", "P1", "P4"],
                "held": [1.0, np.nan, 3.0, 4.0, 5.0, 6.0],
                "channel": ["web", "", "branch", "web", "", "app"],
            }
        )

    @staticmethod
    def products():
        import pyarrow as pa

        # product_key numbered in product_id order (int_products_keyed), in no particular row order
        return pa.table({"product_key": pa.array([3, 1, 4, 2], type=pa.int32()),
                         "product_id": ["P3", "P1", "P4", "P2"]})

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

    def pack(self, elements, size: int = 1 << 20):
        import pyarrow as pa

        from nextbest.features.packing import pack_elements

        reader = pa.RecordBatchReader.from_batches(elements.schema, elements.to_batches(max_chunksize=size))
        tables = list(pack_elements(self.population(), reader, self.KEYS, "product_id", self.GROUP_KEYS,
                                    ["product_key"]))
        return pa.concat_tables(tables)

    def test_one_row_per_population_row_lists_aligned_and_empty_without_elements(self) -> None:
        packed = self.pack(self.elements())
        assert packed.column_names == [*self.KEYS, "candidate_product_ids", "held", "channel"]
        assert self.plain(packed.to_pylist()) == self.EXPECTED

    def test_batches_split_inside_a_packed_row_pack_it_once(self) -> None:
        for size in (1, 2, 3, 5, 7):
            assert self.plain(self.pack(self.elements(), size).to_pylist()) == self.EXPECTED, size

    def test_population_rows_after_the_last_element_and_no_elements_at_all_get_empty_lists(self) -> None:
        elements = self.elements()
        only_a = self.pack(elements.slice(0, 2))
        assert [len(v) for v in only_a.column("candidate_product_ids").to_pylist()] == [2, 0, 0, 0]
        none = self.pack(elements.slice(0, 0))
        assert none.num_rows == 4
        assert none.schema.field("held").type.value_type == elements.schema.field("held").type

    def test_packed_rows_unpack_to_the_element_rows(self) -> None:
        packed = self.pack(self.elements())
        out = unpack(
            packed.column("candidate_product_ids"),
            {"held": packed.column("held"), "channel": packed.column("channel")},
            string_features=["channel"],
        )
        elements = self.elements()
        assert out.product_id.tolist() == elements.column("product_id").to_pylist()
        assert out.row.tolist() == [0, 0, 2, 2, 3, 3]
        np.testing.assert_array_equal(out.features["held"], [1.0, np.nan, 3.0, 4.0, 5.0, 6.0])
        assert out.features["channel"].tolist() == ["web", None, "branch", "web", None, "app"]

    def test_an_element_without_its_population_row_or_out_of_order_is_rejected(self) -> None:
        import pyarrow as pa

        elements = self.elements()
        stray = elements.set_column(1, "customer_key", pa.array([1, 1, 4, 4, 3, 3]))  # customer 4, month 10
        with pytest.raises(PackingError, match="2 element rows have no packed row in the population"):
            self.pack(stray)
        with pytest.raises(PackingError, match="not sorted by their packed row"):
            self.pack(elements.take([2, 3, 0, 1, 4, 5]), size=2)  # c before a, across batches
        with pytest.raises(PackingError, match="not sorted by their packed row"):
            self.pack(elements.take([2, 0, 1, 3, 4, 5]))  # within one batch

    def test_a_population_row_twice_is_rejected(self) -> None:
        import pyarrow as pa

        from nextbest.features.packing import pack_elements

        population = pa.concat_tables([self.population(), self.population().slice(3)])
        reader = pa.RecordBatchReader.from_batches(self.elements().schema, self.elements().to_batches())
        with pytest.raises(PackingError, match="population rows not unique and sorted"):
            list(pack_elements(population, reader, self.KEYS, "product_id", self.GROUP_KEYS))

    def write(self, tmp_path, chunks, batch_rows: int = 2, products=None):
        import duckdb
        import pyarrow.parquet as pq

        from nextbest.features.packing import write_packed_parquet

        con = duckdb.connect()
        con.register("population_rows", self.population().take([3, 1, 0, 2]))  # DuckDB must sort both
        con.register("element_rows", self.elements().drop_columns("product_id").take([5, 2, 0, 4, 1, 3]))
        con.register("product_rows", self.products() if products is None else products)
        path = tmp_path / "packed.parquet"
        written = write_packed_parquet(
            con, "select * from element_rows", "select * from population_rows", path, self.KEYS, "product_id",
            self.GROUP_KEYS, chunks, element_key="product_key", products_query="select * from product_rows",
            batch_rows=batch_rows,
        )
        return written, path, pq.read_table(path)

    def test_write_packed_parquet_sorts_each_chunk_and_writes_one_file_without_the_integer_keys(
        self, tmp_path
    ) -> None:
        written, _, table = self.write(tmp_path, [(10, 10), (11, 11)])
        assert written == 4
        assert {"month_index", "customer_key", "product_key"}.isdisjoint(table.column_names)
        assert self.plain(table.to_pylist()) == self.EXPECTED

    def test_only_the_chunks_months_are_written(self, tmp_path) -> None:
        written, _, table = self.write(tmp_path, [(10, 10)])
        assert written == 3
        assert self.plain(table.to_pylist()) == self.EXPECTED[:3]
        written, _, table = self.write(tmp_path, [])
        assert written == 0
        products = table.schema.field("candidate_product_ids").type
        assert products.value_type == table.schema.field("customer_id").type

    def test_the_product_or_element_key_cannot_be_a_group_key(self, tmp_path) -> None:
        import duckdb

        from nextbest.features.packing import write_packed_parquet

        for group_keys in (["month_index", "product_id"], ["month_index", "product_key"]):
            with pytest.raises(ValueError, match="not the product or element key"):
                write_packed_parquet(
                    duckdb.connect(), "select 1", "select 1", tmp_path / "x.parquet", self.KEYS, "product_id",
                    group_keys, [], element_key="product_key", products_query="select 1",
                )

    def test_an_element_key_without_its_product_is_an_error_naming_the_key(self, tmp_path) -> None:
        import pyarrow as pa

        products = pa.table({"product_key": [1, 2, 4], "product_id": ["P1", "P2", "P4"]})
        with pytest.raises(PackingError, match="product_key 3 has no product_id"):
            self.write(tmp_path, [(10, 11)], products=products)

    def test_a_product_key_with_two_products_is_an_error(self, tmp_path) -> None:
        import duckdb
        import pyarrow as pa

        from nextbest.features.packing import write_packed_parquet

        con = duckdb.connect()
        con.register("product_rows", pa.table({"product_key": [1, 1], "product_id": ["P1", "P9"]}))
        with pytest.raises(PackingError, match="product_key 1 has two product_ids"):
            write_packed_parquet(
                con, "select 1 as month_index", "select 1", tmp_path / "x.parquet", self.KEYS, "product_id",
                self.GROUP_KEYS, [], element_key="product_key", products_query="select * from product_rows",
            )

    def test_dictionaries_for_keys_and_product_ids_statistics_for_keys_only(self, tmp_path) -> None:
        import pyarrow.parquet as pq

        _, path, _ = self.write(tmp_path, [(10, 11)], batch_rows=1 << 20)
        group = pq.ParquetFile(path).metadata.row_group(0)
        columns = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
        dictionary = {name for name, c in columns.items() if "RLE_DICTIONARY" in c.encodings}
        with_statistics = {name for name, c in columns.items() if c.is_stats_set}
        assert dictionary == {"customer_id", "event_timestamp", "candidate_product_ids.list.element"}
        assert with_statistics == {"customer_id", "event_timestamp"}
        assert "held.list.element" in columns


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
