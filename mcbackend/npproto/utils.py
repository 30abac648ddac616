"""Conversion between NumPy arrays and ``npproto.Ndarray`` messages.

Element bytes are stored as NumPy holds them (``str`` as fixed-width UCS-4, datetimes as int64),
which keeps messages written by earlier mcbackend releases readable. Object arrays (coordinate
labels: PyMC keeps dates as ``pd.Timestamp`` objects) become the typed array xarray would make
of them; labels of mixed plain types (str, int, float, bool, None) are stored as a JSON list
with dtype ``"object"``, readable in any language, and come back as an object array.
"""

import datetime
import json
from typing import Literal

import numpy as np

from ..pb.npproto import Ndarray

OBJECT_DTYPE = "object"
_JSON_TYPES = (str, int, float, bool, type(None))
_DATETIME_TYPES = (datetime.datetime, datetime.date, np.datetime64)
_DURATION_TYPES = (datetime.timedelta, np.timedelta64)


def _as_storable(arr: np.ndarray) -> np.ndarray:
    """A typed array for an object array where its elements share a type (as xarray converts
    them: ``pd.Timestamp``/``datetime`` -> datetime64, ``timedelta`` -> timedelta64); other
    object arrays are returned as they are."""
    if arr.dtype.kind != "O" or not arr.size:
        return arr.astype(str) if arr.dtype.kind == "O" else arr
    items = list(arr.flat)
    if all(isinstance(v, str) for v in items):
        return arr.astype(str)
    if all(isinstance(v, _DATETIME_TYPES) for v in items) or all(
        isinstance(v, _DURATION_TYPES) for v in items
    ):
        import pandas as pd

        converted = np.asarray(pd.Series(arr.ravel())).reshape(arr.shape)
        if converted.dtype.kind in "Mm":
            return converted
    if all(isinstance(v, (bool, np.bool_)) for v in items):
        return arr.astype(bool)
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items):
        return np.asarray(items).reshape(arr.shape)
    return arr


def _json_scalar(value):
    value = value.item() if isinstance(value, np.generic) else value
    if not isinstance(value, _JSON_TYPES):
        raise TypeError(
            "Object arrays are stored when their elements are datetimes, durations or plain "
            f"str/int/float/bool/None values; got an element of type {type(value).__name__}."
        )
    return value


def ndarray_from_numpy(arr) -> Ndarray:
    """Encode any numeric, bool, str, datetime64 or timedelta64 array (C- or F-ordered)."""
    arr = _as_storable(np.asarray(arr))
    if arr.dtype.kind == "O":
        items = [_json_scalar(v) for v in arr.flat]
        return Ndarray(
            data=json.dumps(items, allow_nan=True).encode(),
            dtype=OBJECT_DTYPE,
            shape=list(arr.shape),
            strides=[],
            order="C",
        )
    order: Literal["C", "F"] = "F" if arr.flags.f_contiguous and not arr.flags.c_contiguous else "C"
    arr = np.asarray(arr, order=order)
    return Ndarray(
        data=arr.tobytes(order=order),
        dtype=str(arr.dtype),
        shape=list(arr.shape),
        strides=list(arr.strides),
        order=order,
    )


def ndarray_to_numpy(nda: Ndarray) -> np.ndarray:
    """Decode an ``Ndarray`` message into a writable NumPy array."""
    if nda.dtype == OBJECT_DTYPE:
        arr = np.empty(len(json.loads(nda.data)), dtype=object)
        arr[:] = json.loads(nda.data)
        return arr.reshape(tuple(nda.shape))
    dtype = np.dtype(nda.dtype)
    # Earlier releases wrote ``bytes(arr.data)``, which is C-ordered whatever the strides say,
    # and left ``order`` empty: so an empty order means C.
    if nda.order not in ("", "C", "F"):
        raise ValueError(f"Unknown memory order {nda.order!r} of an Ndarray message.")
    order: Literal["C", "F"] = "F" if nda.order == "F" else "C"
    flat = np.frombuffer(nda.data, dtype=dtype) if nda.data else np.empty(0, dtype=dtype)
    return flat.reshape(tuple(nda.shape), order=order).copy(order="K")
