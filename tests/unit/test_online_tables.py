"""The double-list decoder of ``nextbest.features.online_tables``: the numbers protobuf itself parses
from Feast's value bytes, and None (parse the proto) for any other layout."""

from __future__ import annotations

import numpy as np
import pytest
from feast.protos.feast.types.Value_pb2 import DoubleList, StringList
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from nextbest.features.online_tables import double_list, plain_value, proto_value


@pytest.mark.parametrize(
    "values",  # 40 doubles: a two-byte length varint
    [[], [1.0], [1.0, float("nan"), -2.5, 1e300, 0.0], [float(i) / 7 for i in range(40)]],
)
def test_double_lists_decode_to_protobufs_numbers(values: list[float]) -> None:
    raw = ValueProto(double_list_val=DoubleList(val=values)).SerializeToString()
    got = double_list(raw)
    assert got is not None and got.dtype == np.float64 and got.flags.writeable
    expected = np.asarray(proto_value(ValueProto.FromString(raw)), dtype=np.float64)
    np.testing.assert_array_equal(got, expected)
    assert got.tobytes() == expected.tobytes()  # bit for bit, NaN included


def test_the_known_bytes_of_a_two_element_list() -> None:
    raw = bytes.fromhex("7a120a10" + "000000000000f03f" + "000000000000f87f")  # [1.0, nan]
    np.testing.assert_array_equal(double_list(raw), [1.0, np.nan])


def test_other_layouts_are_left_to_protobuf() -> None:
    strings = ValueProto(string_list_val=StringList(val=["a", "b"])).SerializeToString()
    assert double_list(strings) is None
    assert list(plain_value(strings)) == ["a", "b"]
    assert double_list(ValueProto(double_val=1.5).SerializeToString()) is None
    assert plain_value(ValueProto(double_val=1.5).SerializeToString()) == 1.5
    unpacked = bytes.fromhex("7a0909" + "000000000000f03f")  # one element, not packed
    assert double_list(unpacked) is None
    np.testing.assert_array_equal(np.asarray(plain_value(unpacked)), [1.0])
    assert double_list(b"") is None
    assert plain_value(ValueProto().SerializeToString()) is None  # null
