import datetime

import numpy as np
import pytest

import mcbackend as mcb
from mcbackend._inferencedata import extended_value_to_python, python_to_extended_value
from mcbackend.npproto import Ndarray
from mcbackend.npproto.utils import ndarray_from_numpy, ndarray_to_numpy
from mcbackend.testing import NUMERIC_DTYPES


@pytest.mark.parametrize(
    "dtype",
    [*NUMERIC_DTYPES, "<U3", "datetime64[ns]", "datetime64[D]", "timedelta64[s]", ">f8", ">i4"],
)
@pytest.mark.parametrize("order", ["C", "F"])
def test_roundtrip(dtype, order):
    arr = np.asarray(
        np.arange(12).reshape(3, 4) % 3 == 0 if dtype == "bool" else np.arange(12).reshape(3, 4),
        order=order,
    )
    arr = arr.astype(dtype, order=order)
    msg = Ndarray.parse(bytes(ndarray_from_numpy(arr)))
    back = ndarray_to_numpy(msg)
    assert back.dtype == arr.dtype
    assert back.flags.f_contiguous == (order == "F")
    np.testing.assert_array_equal(back, arr)
    back[0, 0] = back[1, 1]  # writable


def test_non_contiguous_and_empty_and_scalar():
    arr = np.arange(20.0).reshape(4, 5)[::2, 1::2]
    np.testing.assert_array_equal(ndarray_to_numpy(ndarray_from_numpy(arr)), arr)
    empty = ndarray_to_numpy(ndarray_from_numpy(np.zeros((0, 3), "int16")))
    assert empty.shape == (0, 3) and empty.dtype == np.int16
    assert ndarray_to_numpy(ndarray_from_numpy(np.float32(2.5))).shape == ()


def test_object_strings_become_str_and_other_objects_refused():
    back = ndarray_to_numpy(ndarray_from_numpy(np.array(["a", "bb"], dtype=object)))
    assert back.dtype.kind == "U"
    with pytest.raises(TypeError, match="Object arrays"):
        ndarray_from_numpy(np.array([{}, 1], dtype=object))


def test_reads_messages_without_order_field():
    """Earlier releases wrote C-ordered bytes (``bytes(memoryview)``) with the array's strides."""
    arr = np.asfortranarray(np.arange(6, dtype="int32").reshape(2, 3))
    legacy = Ndarray(data=bytes(arr.data), dtype="int32", shape=[2, 3], strides=list(arr.strides))
    np.testing.assert_array_equal(ndarray_to_numpy(legacy), arr)


def test_runmeta_wire_compatible_with_published_schema():
    """Bytes hand-encoded per the published field numbers parse into the same fields."""
    # RunMeta{rid=1:"r", variables=3:{name=1:"x", dtype=2:"f8", shape=3:[2]}, sample_stats=6:{name=1:"s"}}
    var = b"\n\x01x\x12\x02f8\x1a\x01\x02"
    stat = b"\n\x01s"
    raw = b"\n\x01r" + b"\x1a" + bytes([len(var)]) + var + b"\x32" + bytes([len(stat)]) + stat
    meta = mcb.RunMeta.parse(raw)
    assert meta.rid == "r"
    assert meta.variables[0].name == "x" and meta.variables[0].shape == [2]
    assert meta.sample_stats[0].name == "s"
    assert bytes(meta) == raw


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        3.5,
        7,
        "text",
        datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        datetime.timedelta(seconds=90),
    ],
)
def test_extended_values(value):
    ev = mcb.ExtendedValue.parse(bytes(python_to_extended_value(value)))
    back = extended_value_to_python(ev)
    if isinstance(value, datetime.datetime):
        assert back == value.isoformat()
    elif isinstance(value, datetime.timedelta):
        assert back == 90.0
    else:
        assert back == value


def test_extended_value_array():
    ev = python_to_extended_value(np.arange(3, dtype="uint8"))
    back = extended_value_to_python(mcb.ExtendedValue.parse(bytes(ev)))
    assert back.dtype == np.uint8


def test_generated_code_is_up_to_date():
    """mcbackend/pb is what protobufs/generate.py makes of the committed schemas."""
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("grpc_tools")
    script = Path(__file__).resolve().parent.parent / "protobufs" / "generate.py"
    result = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "up to date" in result.stdout
