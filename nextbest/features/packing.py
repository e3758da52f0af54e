"""The packed customer x product layout: its encoding (defined here, once) and its one decoder.

The dbt macro ``pack_features`` stores a customer's candidate products (``PACKED_PRODUCTS``) and, aligned
with them, one list per pair feature. Lists carry no nulls, because Feast's online store turns a null
element into 0: numbers and booleans travel as double with NaN for null (``NUMBER_NULL``), strings with
'' for null (``STRING_NULL``); ``transport_type`` names the Feast element type a feature travels as and
``ELEMENT_TYPE_TAG`` tags the Feast field with the type the model sees. ``manifest`` and ``definitions``
import these; ``unpack`` is the one decoder, used by the offline retrieval (training) and the online
read (``nextbest.features.online``), so both see identical values and neither training nor serving sees
the layout. (The macro in ``dbt_project/macros/pack_features.sql`` writes the same encoding in SQL.)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

if TYPE_CHECKING:
    import duckdb

PACKED_PRODUCTS = "candidate_product_ids"
"""The list column of a packed model: the customer's candidate products, aligned with every feature list."""

PACKED_PRODUCTS_DBT_TYPE = "varchar[]"
"""The dbt ``data_type`` of ``PACKED_PRODUCTS`` in the packed model's yml."""

STRING_NULL = ""
"""How a null string element travels in a packed list."""

NUMBER_NULL = float("nan")
"""How a null number or boolean element travels in a packed list (as a double)."""

STRING_TYPE: Literal["String"] = "String"
"""The Feast type of features whose elements travel as strings; every other type travels as a double."""

NUMBER_TRANSPORT: Literal["Float64"] = "Float64"
"""The Feast element type numbers and booleans travel as."""

ELEMENT_TYPE_TAG = "element_type"
"""Field tag of a packed feature: the Feast type name of one element as the model sees it."""


def transport_type(feast_type: str) -> Literal["String", "Float64"]:
    """The Feast element type a packed feature of ``feast_type`` travels as (strings stay strings,
    numbers and booleans become doubles with ``NUMBER_NULL`` for null)."""
    return STRING_TYPE if feast_type == STRING_TYPE else NUMBER_TRANSPORT


class PackingError(ValueError):
    """A packed row is malformed (a feature list's length differs from its product list's)."""


@dataclass(frozen=True)
class Unpacked:
    """Customer x product rows decoded from packed rows.

    Attributes:
        row: per element, the index of the packed row it came from (int64).
        product_id: per element, the candidate product (object array of str).
        features: feature name -> per-element values: float64 (NaN = missing) for numbers and booleans,
            object (None = missing) for strings.
    """

    row: np.ndarray
    product_id: np.ndarray
    features: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.row)


def _flatten(values: Any, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """(per-row lengths, all elements in order) of a column of lists: a pyarrow list array (null row =
    no element; fast, no per-row Python) or a sequence of lists / arrays / None."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], type=values.type)
    if isinstance(values, pa.ListArray | pa.LargeListArray):
        lengths = values.value_lengths().fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        return lengths, np.asarray(values.flatten().to_numpy(zero_copy_only=False), dtype=dtype)
    lengths = np.fromiter((0 if v is None else len(v) for v in values), dtype=np.int64, count=len(values))
    parts = [np.asarray(v, dtype=dtype) for v, n in zip(values, lengths, strict=True) if n > 0]
    return lengths, np.concatenate(parts) if parts else np.empty(0, dtype=dtype)


def unpack(
    products: Sequence[Any],
    lists: Mapping[str, Sequence[Any]],
    string_features: Sequence[str] = (),
    positions: Sequence[np.ndarray] | None = None,
) -> Unpacked:
    """Decode packed rows into customer x product elements.

    Args:
        products: per packed row, its ``candidate_product_ids`` (a list or array; None = no row), or a
            pyarrow list array of them (offline: flattened without a per-row loop).
        lists: feature name -> per packed row, the feature's list, aligned with ``products``' list
            (same kinds of input).
        string_features: the features whose elements are strings ('' decodes to None); every other
            feature is numeric (NaN = missing).
        positions: per packed row, the positions of the elements to decode, in the order wanted
            (default: every element in list order); the caller knows them, so no product is looked up
            (serving: the candidates a retrieval stage kept of a customer's 2,300 listed products).

    Raises:
        PackingError: a feature list of some row is not as long as that row's product list, or a
            position is outside its row's list.
    """
    lengths, product_id = _flatten(products, object)
    take = None
    if positions is None:
        row = np.repeat(np.arange(len(products), dtype=np.int64), lengths)
    else:
        row, take = _element_indices(lengths, positions)
        product_id = product_id[take]
    strings = set(string_features)
    features: dict[str, np.ndarray] = {}
    for name, values in lists.items():
        if len(values) != len(products):
            raise PackingError(f"feature {name!r}: {len(values)} packed rows, expected {len(products)}")
        got, flat = _flatten(values, object if name in strings else np.float64)
        bad = np.flatnonzero(got != lengths)
        if len(bad):
            i = int(bad[0])
            raise PackingError(
                f"feature {name!r}, packed row {i}: {got[i]} values for {lengths[i]} candidate products "
                f"({len(bad)} row(s) misaligned)"
            )
        if take is not None:
            flat = flat[take]
        if name in strings:
            flat[flat == STRING_NULL] = None
        features[name] = flat
    return Unpacked(row=row, product_id=product_id, features=features)


def _element_indices(
    lengths: np.ndarray, positions: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """(packed row, index among all rows' elements, i.e. their lists concatenated) of each row's
    ``positions``, in order."""
    if len(positions) != len(lengths):
        raise PackingError(f"{len(positions)} position lists for {len(lengths)} packed rows")
    counts = np.fromiter((len(p) for p in positions), dtype=np.int64, count=len(positions))
    at = np.concatenate([np.asarray(p, dtype=np.int64) for p in positions] or [np.empty(0, np.int64)])
    row = np.repeat(np.arange(len(lengths), dtype=np.int64), counts)
    bad = np.flatnonzero((at < 0) | (at >= lengths[row]))
    if len(bad):
        i = int(bad[0])
        raise PackingError(
            f"packed row {int(row[i])}: position {int(at[i])} outside its {int(lengths[row[i]])} elements"
        )
    return row, (np.cumsum(lengths) - lengths)[row] + at


def element_positions(
    element_row: np.ndarray,
    element_product: Sequence[Any] | np.ndarray,
    wanted_row: np.ndarray,
    wanted_product: Sequence[Any] | np.ndarray,
) -> np.ndarray:
    """Per wanted (packed row, product), the position of the same pair among ``unpack``'s elements
    (``element_row``, ``element_product``); -1 when it is not there, the last one when a row lists a
    product twice. One integer key per pair and one hash lookup for all of them."""
    elements = np.asarray(element_product, dtype=object)
    wanted = np.asarray(wanted_product, dtype=object)
    codes, uniques = pd.factorize(np.concatenate([elements, wanted]))
    n_codes = np.int64(max(len(uniques), 1))
    element_keys = np.asarray(element_row, dtype=np.int64) * n_codes + codes[: len(elements)]
    wanted_keys = np.asarray(wanted_row, dtype=np.int64) * n_codes + codes[len(elements) :]
    kept = np.flatnonzero(~pd.Index(element_keys).duplicated(keep="last"))
    if not len(kept):
        return np.full(len(wanted), -1, dtype=np.int64)
    found = pd.Index(element_keys[kept]).get_indexer(wanted_keys)
    return np.where(found >= 0, kept[np.maximum(found, 0)], -1)


PACKED_COMPRESSION = "zstd"
"""Parquet compression of a packed file (as the dbt marts: ``parquet_file`` writes zstd)."""


def packed_writer_options(keys: Sequence[str]) -> dict[str, Any]:
    """``pq.ParquetWriter`` options of a packed file with key columns ``keys``: dictionary pages and
    min/max statistics for the keys (and the product ids' dictionary), none for the feature lists.
    Encoding ~20 nested lists is the packer's slowest step and the writer's dictionary attempts and
    statistics on the numbers cost a fifth of it: three months of the 1M-customer bank took 17.2 s of
    writer time instead of 21.5 s, and the whole packed model of the 1M x 24 build 409 s instead of 437 s,
    for a file 9-12 % larger."""
    return {
        "compression": PACKED_COMPRESSION,
        "use_dictionary": [*keys, f"{PACKED_PRODUCTS}.list.element"],
        "write_statistics": list(keys),
    }


PACK_BATCH_ROWS = 1 << 20
"""Unpacked rows fetched from DuckDB per Arrow batch while packing (bounds the packer's memory)."""

PACK_CHUNK_ROWS = 8_000_000
"""Element rows (customer x snapshot x candidate, plus one per customer x snapshot without candidates) per
chunk the packer has DuckDB compute and sort at once: a few snapshots of a small bank, one of a large bank
(~10M candidates a month at 1M customers) or of a large catalogue (~5M a month for The Complete Journey's
2,378 product types, ~2,260 candidates per customer). Each chunk pays a query's set-up once, so chunks are
as large as memory allows; counting packed rows instead would put every month of a large catalogue in
one chunk (64M rows to sort)."""


def _packed_row_codes(table: pa.Table | pa.RecordBatch, group_keys: Sequence[str], lows: np.ndarray,
                      strides: np.ndarray) -> np.ndarray:
    """One int64 per row for its integer ``group_keys`` tuple, ordered as the tuples (``_code_scheme``)."""
    codes = np.zeros(table.num_rows, dtype=np.int64)
    for key, low, stride in zip(group_keys, lows, strides, strict=True):
        codes += (table.column(key).to_numpy(zero_copy_only=False).astype(np.int64) - low) * stride
    return codes


def _code_scheme(population: pa.Table, group_keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(lows, strides) coding the ``group_keys`` tuples of ``population`` as one ordered int64 each."""
    if population.num_rows == 0:
        return np.zeros(len(group_keys), dtype=np.int64), np.ones(len(group_keys), dtype=np.int64)
    lows, spans = [], []
    for key in group_keys:
        column = population.column(key)
        if not pa.types.is_integer(column.type):
            raise PackingError(f"group key {key!r} is {column.type}, not an integer")
        if column.null_count:
            raise PackingError(f"group key {key!r} has {column.null_count} null rows in the population")
        low, high = (int(v.as_py()) for v in pc.min_max(column).values())
        lows.append(low)
        spans.append(high - low + 1)
    if float(np.prod([float(s) for s in spans])) >= 2.0**62:
        raise PackingError(f"group keys {list(group_keys)} span too many values to code one chunk's rows")
    strides = np.cumprod([1, *spans[:0:-1]])[::-1].astype(np.int64)
    return np.array(lows, dtype=np.int64), strides


def packed_schema(population: pa.Schema, elements: pa.Schema, keys: Sequence[str], product: str,
                  left_out: Sequence[str] = ()) -> pa.Schema:
    """The packed layout's schema: the ``keys`` (from ``population``), then ``PACKED_PRODUCTS`` and one
    list per other column of ``elements`` (but ``left_out``), in ``elements``' order."""
    fields = [population.field(k) for k in keys]
    fields.append(pa.field(PACKED_PRODUCTS, pa.list_(elements.field(product).type)))
    written = {*keys, product, *left_out}
    fields += [pa.field(f.name, pa.list_(f.type)) for f in elements if f.name not in written]
    return pa.schema(fields)


def _pack_rows(population: pa.Table, elements: pa.Table, rows: np.ndarray, schema: pa.Schema,
               keys: Sequence[str], product: str) -> pa.Table:
    """Packed rows of ``population`` (one each), with the ``elements`` whose packed row is ``rows``
    (indices into ``population``, non-decreasing): lists built from the row offsets over the elements'
    own value buffers, without a per-row loop. A population row without elements gets empty lists."""
    ends = np.cumsum(np.bincount(rows, minlength=population.num_rows))
    if len(ends) and ends[-1] >= 2**31:
        raise PackingError(f"{ends[-1]} elements in one batch: too many for 32-bit list offsets")
    offsets = pa.array(np.concatenate([[0], ends]), type=pa.int32())
    out: list[pa.Array] = [population.column(k).combine_chunks() for k in keys]
    for name in schema.names[len(keys):]:
        values = elements.column(product if name == PACKED_PRODUCTS else name).combine_chunks()
        out.append(pa.ListArray.from_arrays(offsets, values))
    return pa.Table.from_arrays(out, schema=schema)


def pack_elements(
    population: pa.Table,
    elements: pa.RecordBatchReader,
    keys: Sequence[str],
    product: str,
    group_keys: Sequence[str],
    left_out: Sequence[str] = (),
) -> Iterator[pa.Table]:
    """Pack element rows into the packed layout: one row per ``population`` row, in its order.

    Args:
        population: the packed rows' ``keys`` (customer_id, event_timestamp) and integer ``group_keys``
            (e.g. month_index, customer_key), one row per packed row, sorted by ``group_keys``.
        elements: the element rows (customer x snapshot x candidate), each with the ``group_keys`` of its
            packed row, ``product`` and one already encoded feature per other column (no nulls:
            ``NUMBER_NULL``, ``STRING_NULL``), sorted by ``group_keys`` then in list order.
        keys: the columns identifying a packed row; taken from ``population``.
        product: the element's product column; it becomes ``PACKED_PRODUCTS``.
        group_keys: integer columns matching an element to its packed row; not written.
        left_out: other element columns not written (e.g. the integer product key elements are sorted by).

    Yields:
        Tables of ``packed_schema``, in ``population``'s order; a population row without elements gets
        empty lists. A packed row whose elements span batches is packed once, whole.

    Raises:
        PackingError: an element whose packed row is not in ``population``, or elements out of order.
    """
    lows, strides = _code_scheme(population, group_keys)
    population_codes = _packed_row_codes(population, group_keys, lows, strides)
    if np.any(np.diff(population_codes) <= 0):
        raise PackingError(f"population rows not unique and sorted by {list(group_keys)}")
    schema = packed_schema(population.schema, elements.schema, keys, product, [*group_keys, *left_out])
    carry = elements.schema.empty_table()  # elements of the last packed row seen, which may go on
    done = 0  # population rows packed so far
    for batch in elements:
        table = pa.concat_tables([carry, pa.Table.from_batches([batch])])
        if table.num_rows == 0:
            continue
        table = table.combine_chunks()
        rows = _population_rows(population_codes, _packed_row_codes(table, group_keys, lows, strides), done)
        last = int(rows[-1])
        cut = int(np.searchsorted(rows, last))
        if last > done:
            yield _pack_rows(population.slice(done, last - done), table.slice(0, cut), rows[:cut] - done,
                             schema, keys, product)
            done = last
        carry = table.slice(cut)
    rows = _population_rows(population_codes, _packed_row_codes(carry, group_keys, lows, strides), done)
    if population.num_rows > done:
        yield _pack_rows(population.slice(done), carry, rows - done, schema, keys, product)


def _sorted_positions(sorted_codes: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The index of each of ``codes`` in the sorted, unique ``sorted_codes``, and whether it is there."""
    at = np.searchsorted(sorted_codes, codes)
    found = at < len(sorted_codes)
    found[found] = sorted_codes[at[found]] == codes[found]
    return at, found


def _population_rows(population_codes: np.ndarray, codes: np.ndarray, first: int) -> np.ndarray:
    """The population row of each element code: sorted elements from row ``first`` on, all found."""
    rows, found = _sorted_positions(population_codes, codes)
    if not found.all():
        raise PackingError(f"{int((~found).sum())} element rows have no packed row in the population")
    if len(rows) and (rows[0] < first or np.any(np.diff(rows) < 0)):
        raise PackingError("element rows are not sorted by their packed row")
    return rows


def chunk_ranges(sizes: Sequence[tuple[Any, int]], budget: int) -> list[tuple[Any, Any]]:
    """Cut ordered values into consecutive (first, last) ranges of at most ``budget`` rows.

    Args:
        sizes: (value, rows) in ascending value order, e.g. (snapshot, population rows at it).
        budget: rows per range; a value with more rows than this is a range of its own.

    Returns:
        The ranges, in order, covering every value once.
    """
    ranges: list[tuple[Any, Any]] = []
    first, last, rows = None, None, 0
    for value, n in sizes:
        if first is not None and rows + n > budget:
            ranges.append((first, last))
            first, rows = None, 0
        if first is None:
            first = value
        last, rows = value, rows + n
    if first is not None:
        ranges.append((first, last))
    return ranges


PACK_WRITES_PENDING = 3
"""Packed tables (one per Arrow batch, ~1M elements) queued for the writer thread at most: pyarrow encodes
and compresses with the GIL released, so writing overlaps the packing of the next batches and DuckDB's
next chunk, within a few hundred MB."""

PACK_DISABLED_OPTIMIZERS = "build_side_probe_side"
"""DuckDB optimizers off while a chunk runs. Filtered to one month, the pair relations' rows look tiny
to DuckDB's estimates (at 1M customers it expects ~220k candidates where there are 9.6M), so it swaps
every left join to build its hash table on the candidate side: five such tables, each holding the whole
chunk with every column, ran out of memory (5.5 GiB). Without the swap each join builds on the relation
it joins (one month of it) and the candidates stream through: 15 s and within the limit for that chunk."""


@contextmanager
def duckdb_setting(con: duckdb.DuckDBPyConnection, name: str, value: str) -> Iterator[None]:
    """Set a DuckDB setting on ``con`` for the ``with`` block, then restore its value (``con`` is shared:
    inside dbt, it is the build's connection)."""
    before = con.execute(f"select current_setting('{name}')").fetchall()[0][0]
    con.execute(f"set {name} = ?", [value])
    try:
        yield
    finally:
        con.execute(f"set {name} = ?", [before])


@dataclass(frozen=True)
class ElementLabels:
    """The product of each element key (e.g. product_key -> product_id), looked up per Arrow batch."""

    key: str
    product: str
    keys: np.ndarray  # sorted, unique
    products: pa.Array  # aligned with keys

    @classmethod
    def read(cls, con: duckdb.DuckDBPyConnection, query: str, key: str, product: str) -> ElementLabels:
        """The (``key``, ``product``) rows of ``query``, one per key."""
        table = con.sql(f"select {key}, {product} from ({query}) as products order by {key}").to_arrow_table()
        keys = table.column(key).to_numpy().astype(np.int64)
        twice = np.flatnonzero(np.diff(keys) == 0)
        if len(twice):
            raise PackingError(f"{key} {int(keys[twice[0]])} has two {product}s")
        return cls(key, product, keys, table.column(product).combine_chunks())

    def labelled_schema(self, elements: pa.Schema) -> pa.Schema:
        """``elements``' schema with ``product`` appended."""
        if self.product in elements.names:
            raise PackingError(f"the elements carry {self.product!r}: it comes from their {self.key}")
        return elements.append(pa.field(self.product, self.products.type))

    def label(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` with the ``product`` of each row's ``key`` appended."""
        wanted = batch.column(self.key).to_numpy(zero_copy_only=False).astype(np.int64)
        at, found = _sorted_positions(self.keys, wanted)
        if not found.all():
            raise PackingError(f"{self.key} {int(wanted[~found][0])} has no {self.product}")
        return batch.append_column(self.product, self.products.take(pa.array(at)))


def write_packed_parquet(
    con: duckdb.DuckDBPyConnection,
    elements_query: str,
    population_query: str,
    path: Path,
    keys: Sequence[str],
    product: str,
    group_keys: Sequence[str],
    chunks: Sequence[tuple[Any, Any]],
    element_key: str,
    products_query: str,
    batch_rows: int = PACK_BATCH_ROWS,
) -> int:
    """Write the packed layout of ``elements_query``'s element rows to one parquet file, chunk by chunk.

    ``population_query`` gives the packed rows: the ``keys`` (customer_id, event_timestamp) and the
    integer ``group_keys`` (month_index, customer_key), one row per packed row, whether or not it has
    elements (so that the online store's latest row of a customer is always the latest snapshot's).
    ``elements_query`` gives the elements (customer x snapshot x candidate): the ``group_keys`` of their
    packed row, the integer ``element_key`` ordering a row's list (product_key, numbered in product id
    order) and one encoded feature per other column. ``products_query`` gives each element key's
    ``product`` (one row per key), which the lists carry instead: DuckDB sorts the elements without a
    string on every row (one month of the 1M-customer bank: 8.3 s of CPU instead of 9.4-10.5 s), and
    the ids are looked up per Arrow batch. Neither the group keys nor the element key are written.

    Each chunk (the rows whose first group key, e.g. the snapshot's month, lies in one (first, last)
    range of ``chunks``: see ``chunk_ranges``) has DuckDB sort its elements on the integer keys and
    stream them as Arrow batches into ``pack_elements``, which matches them to the chunk's population
    rows in NumPy (the population is never joined to the elements in SQL: at 1M customers that join
    built its hash table on a month's 10M elements), so memory holds one chunk in DuckDB and a few
    batches in Python, never the whole layout. A thread writes the packed tables in order (at most
    ``PACK_WRITES_PENDING`` queued), so writing overlaps packing and DuckDB's next chunk. A filter on the
    snapshot's month reaches the scans of every relation the pair model joins on it, so each chunk joins
    its own months only.

    Returns:
        The number of packed rows written.

    Raises:
        PackingError: an element without its packed row in the population, a population row twice, or an
            element key without its product.
    """
    if {product, element_key} & set(group_keys):
        raise ValueError(
            f"group keys {list(group_keys)} identify a packed row: not the product or element key"
        )
    chunk_column, order = group_keys[0], ", ".join(group_keys)
    population_chunk = f"select {', '.join([*keys, *group_keys])} from ({population_query}) as population"
    elements_chunk = f"select * from ({elements_query}) as elements"
    labels = ElementLabels.read(con, products_query, element_key, product)
    elements_schema = labels.labelled_schema(con.sql(f"{elements_chunk} limit 0").to_arrow_table().schema)
    schema = packed_schema(
        con.sql(f"{population_chunk} limit 0").to_arrow_table().schema, elements_schema,
        keys, product, [*group_keys, element_key],
    )
    in_chunk = f"where {chunk_column} between ? and ? order by {order}"
    written = 0
    pending: deque[Future[None]] = deque()
    with (
        duckdb_setting(con, "disabled_optimizers", PACK_DISABLED_OPTIMIZERS),
        pq.ParquetWriter(path, schema, **packed_writer_options(keys)) as writer,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="packed-writer") as write_thread,
    ):
        for first, last in chunks:
            population = con.sql(f"{population_chunk} {in_chunk}", params=[first, last]).to_arrow_table()
            elements = con.sql(f"{elements_chunk} {in_chunk}, {element_key}", params=[first, last])
            with elements.to_arrow_reader(batch_rows) as stream:  # closed on error too: con is shared
                labelled = pa.RecordBatchReader.from_batches(elements_schema, map(labels.label, stream))
                for table in pack_elements(population, labelled, keys, product, group_keys, [element_key]):
                    pending.append(write_thread.submit(writer.write_table, table))
                    written += table.num_rows
                    while len(pending) > PACK_WRITES_PENDING:
                        pending.popleft().result()  # re-raises a failed write here
        while pending:
            pending.popleft().result()
    return written
