"""Conversion between NumPy arrays and ``npproto.Ndarray`` messages.

Element bytes are stored as NumPy holds them (``str`` as fixed-width UCS-4, datetimes as int64),
which keeps messages written by earlier mcbackend releases readable.
"""

from typing import Literal

import numpy as np

from ..pb.npproto import Ndarray


def _as_storable(arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind != "O":
        return arr
    if all(isinstance(v, str) for v in arr.flat):
        return arr.astype(str)
    raise TypeError(
        "Object arrays can only be stored when every element is a str; "
        f"got elements of types {sorted({type(v).__name__ for v in arr.flat})}."
    )


def ndarray_from_numpy(arr) -> Ndarray:
    """Encode any numeric, bool, str, datetime64 or timedelta64 array (C- or F-ordered)."""
    arr = _as_storable(np.asarray(arr))
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
    dtype = np.dtype(nda.dtype)
    # Earlier releases wrote ``bytes(arr.data)``, which is C-ordered whatever the strides say,
    # and left ``order`` empty: so an empty order means C.
    if nda.order not in ("", "C", "F"):
        raise ValueError(f"Unknown memory order {nda.order!r} of an Ndarray message.")
    order: Literal["C", "F"] = "F" if nda.order == "F" else "C"
    flat = np.frombuffer(nda.data, dtype=dtype) if nda.data else np.empty(0, dtype=dtype)
    return flat.reshape(tuple(nda.shape), order=order).copy(order="K")
