"""Keywords renamed for consistency keep working for a while, with a ``DeprecationWarning``."""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["RenamedAttribute", "renamed", "warn_renamed"]


def renamed(old: str, new: str, old_value: Any, new_value: Any, default: Any = None) -> Any:
    """The value of keyword ``new``, or of ``old`` (with a warning) when only that was given."""
    if old_value is None:
        return new_value
    if new_value != default:
        raise TypeError(f"Pass {new!r} only; {old!r} is its deprecated name.")
    warn_renamed(old, new, stacklevel=4)
    return old_value


def warn_renamed(old: str, new: str, stacklevel: int = 3) -> None:
    warnings.warn(
        f"{old!r} is deprecated; use {new!r} (the same setting).",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


class RenamedAttribute:
    """A deprecated attribute name that reads and writes the attribute ``new``."""

    def __init__(self, new: str) -> None:
        self.new = new
        self.old = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.old = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        warn_renamed(self.old, self.new)
        return getattr(obj, self.new)

    def __set__(self, obj: Any, value: Any) -> None:
        warn_renamed(self.old, self.new)
        setattr(obj, self.new, value)
