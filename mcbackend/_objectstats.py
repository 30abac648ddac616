"""Sampler stats that hold Python objects (PyMC's ``warning``: a ``SamplerWarning`` or None),
stored as JSON text any language reads. Nothing read from storage is ever unpickled.

A warning becomes a JSON object of its fields (``{"kind": "DIVERGENCE", "message": ...,
"level": ..., "step": ..., "divergence_info": {...}, ...}``); named tuples as objects too, enums
by name, arrays as nested lists, non-finite floats as "nan"/"inf"/"-inf" (strict JSON has no
such numbers), exceptions as their type and message, anything else by ``repr``. None is
``null``; a draw that lacks the stat is ``""``.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from typing import Any

import numpy as np

__all__ = ["from_json", "to_json"]


def to_json(value: Any) -> str:
    """JSON text of an object stat (a dataclass such as ``SamplerWarning``, a mapping, None)."""
    return json.dumps(_plain(value), allow_nan=False)


def from_json(text: str) -> Any:
    """The plain value (dict, list, str, number or None) stored by ``to_json``; ``""`` (no value
    recorded) reads as None."""
    return json.loads(text) if text else None


def _plain(value: Any) -> Any:
    """``value`` as JSON-ready data: named fields (dataclasses, named tuples) as objects."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf", "-inf": strict JSON has no such numbers
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, (np.ndarray, np.generic)):
        return _plain(value.tolist())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, BaseException):
        return {"type": type(value).__name__, "message": str(value)}
    return repr(value)
