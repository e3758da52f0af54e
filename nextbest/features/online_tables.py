"""Reading Feast's online tables directly: what ``provider.online_read`` returns, for less.

Feast writes the online store (``materialize``) and stays the source of truth for its layout: the
entity-key bytes (``feast.infra.key_encoding_utils.serialize_entity_key``), the sqlite table name
(``compute_table_id``), the value encoding (a serialized ``ValueProto`` per feature) and the event
timestamp (stored by Feast's sqlite adapter, read back by its converter). This module reads the sqlite
table with the same query Feast runs, but without the per-row ``datetime`` conversions of Feast's
connection (``PARSE_DECLTYPES``): each distinct stored timestamp is converted once, by Feast's own
converter, and the result kept as epoch seconds. Other online stores (redis) go through
``provider.online_read``. Either way the answer is, per entity key, ``(event timestamp in epoch seconds,
feature -> ValueProto)`` or ``(0, None)`` when the key has no row; ``tests/integration`` compares it with
Feast's read on a real store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from feast import FeatureStore
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import compute_table_id
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

OnlineRow = tuple[int, dict[str, Any] | None]
"""One entity key's answer: (event timestamp in epoch seconds, 0 = no row; feature -> value, or None)."""

DOUBLE_LIST_TAG = (15 << 3) | 2
"""First byte of a serialized ``ValueProto`` holding a ``double_list_val`` (field 15, length-delimited)."""


def proto_value(value: Any) -> Any:
    """A Feast ``ValueProto`` as a Python value (None when null; a list's ``.val`` for list features)."""
    kind = value.WhichOneof("val")
    if kind is None or kind == "null_val":
        return None
    if kind.endswith("_list_val"):
        return getattr(value, kind).val
    return getattr(value, kind)


def _varint(raw: bytes, i: int) -> tuple[int, int]:
    """(value, next position) of the protobuf varint at ``raw[i]``."""
    shift = out = 0
    while True:
        byte = raw[i]
        out |= (byte & 0x7F) << shift
        i += 1
        if byte < 0x80:
            return out, i
        shift += 7


def double_list(raw: bytes) -> np.ndarray | None:
    """The doubles of a serialized ``ValueProto`` that holds only a ``double_list_val`` in protobuf's
    packed encoding (what Feast writes), read from the bytes as float64; None for any other layout (the
    caller then parses the proto)."""
    if not raw or raw[0] != DOUBLE_LIST_TAG:
        return None
    size, i = _varint(raw, 1)
    if i + size != len(raw):
        return None
    if size == 0:
        return np.empty(0, dtype=np.float64)
    if raw[i] != 0x0A:  # DoubleList.val (field 1, packed)
        return None
    length, j = _varint(raw, i + 1)
    if j + length != len(raw) or length % 8:
        return None
    return np.frombuffer(raw, dtype="<f8", count=length // 8, offset=j).astype(np.float64)


def plain_value(raw: bytes) -> Any:
    """A serialized ``ValueProto`` as ``proto_value`` gives it, but a double list as a float64 array
    decoded straight from the bytes (same numbers, no per-element Python objects)."""
    doubles = double_list(raw)
    return doubles if doubles is not None else proto_value(ValueProto.FromString(raw))


def epoch_seconds(ts: datetime | None) -> int:
    """Epoch seconds of a timestamp Feast's online read returned (naive = UTC, as Feast labels it);
    0 for None."""
    if ts is None:
        return 0
    return int((ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)).timestamp())


class OnlineTables:
    """Reads of a feature store's online tables, one view and many entity keys per call.

    Not thread-safe by itself for sqlite (it uses Feast's own sqlite connection, shared by threads):
    the caller serialises reads, as ``nextbest.features.online.OnlineReader`` does.
    """

    def __init__(self, store: FeatureStore) -> None:
        self.store = store
        self.kind: str = store.config.online_store.type
        self._ts_cache: dict[str, int] = {}
        self._sql: dict[str, str] = {}

    def read(self, view: Any, keys: Sequence[EntityKeyProto], names: Sequence[str]) -> list[OnlineRow]:
        """Per key of ``keys`` (in order), its row of the registered FeatureView ``view``: the event
        timestamp (epoch seconds; 0 = no row) and the stored features as ``ValueProto`` (sqlite: all of
        the view's; other stores: ``names``), or ``(0, None)``: what ``provider.online_read`` returns.

        Raises:
            sqlite3.Error, redis errors: the store cannot be read (the caller maps them).
        """
        if not keys:
            return []
        if self.kind != "sqlite":
            provider = self.store._get_provider()
            rows = provider.online_read(self.store.config, view, list(keys), list(names))
            return [(epoch_seconds(ts) if found is not None else 0, found) for ts, found in rows]
        return self._read_sqlite(view, keys, ValueProto.FromString)

    def read_values(
        self, view: Any, keys: Sequence[EntityKeyProto], names: Sequence[str]
    ) -> list[OnlineRow]:
        """``read`` with each value as a Python value (``proto_value``; double lists as float64 arrays,
        decoded from the stored bytes on sqlite)."""
        if not keys:
            return []
        if self.kind != "sqlite":
            return [
                (ts, None if found is None else {k: proto_value(v) for k, v in found.items()})
                for ts, found in self.read(view, keys, names)
            ]
        return self._read_sqlite(view, keys, plain_value)

    def _conn(self) -> sqlite3.Connection:
        """Feast's own sqlite connection (busy timeout and reopening are managed on it elsewhere)."""
        return self.store._get_provider().online_store._get_conn(self.store.config)

    def _query(self, view: Any, n: int) -> str:
        config = self.store.config
        versioning = bool(getattr(config.registry, "enable_online_feature_view_versioning", False))
        table = compute_table_id(config.project, view, versioning).replace('"', '""')
        key = f"{table}:{n}"
        sql = self._sql.get(key)
        if sql is None:
            # Feast's query, with the timestamp read as stored (an expression has no declared type, so
            # the connection's PARSE_DECLTYPES converter is not run on every row).
            sql = (
                f'SELECT entity_key, feature_name, value, CAST(event_ts AS TEXT) FROM "{table}" '
                f"WHERE entity_key IN ({','.join('?' * n)}) ORDER BY entity_key"
            )
            self._sql[key] = sql
        return sql

    def _epoch(self, raw: str | None) -> int:
        """Epoch seconds of a stored event timestamp, converted once per distinct value by the
        converter Feast's connection would apply (``sqlite3.converters['TIMESTAMP']``)."""
        if raw is None:
            return 0
        seconds = self._ts_cache.get(raw)
        if seconds is None:
            convert = sqlite3.converters.get("TIMESTAMP")
            ts = convert(raw.encode()) if convert is not None else datetime.fromisoformat(raw)
            seconds = epoch_seconds(ts)
            if len(self._ts_cache) < 10_000:
                self._ts_cache[raw] = seconds
        return seconds

    def _read_sqlite(
        self, view: Any, keys: Sequence[EntityKeyProto], decode: Callable[[bytes], Any]
    ) -> list[OnlineRow]:
        version = self.store.config.entity_key_serialization_version
        serialized = [serialize_entity_key(k, entity_key_serialization_version=version) for k in keys]
        rows = self._conn().execute(self._query(view, len(serialized)), serialized).fetchall()
        found: dict[bytes, tuple[dict[str, Any], str | None]] = {}
        for key, name, value, ts in rows:
            entry = found.get(key)
            if entry is None:
                entry = found[key] = ({}, ts)
            entry[0][name] = decode(value)
            found[key] = (entry[0], ts)  # Feast keeps the timestamp of the key's last row
        out: list[OnlineRow] = []
        for key in serialized:
            entry = found.get(key)
            out.append((0, None) if entry is None else (self._epoch(entry[1]), entry[0]))
        return out
