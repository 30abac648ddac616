"""Import betterproto2 without importing pydantic, which mcbackend's messages never use.

betterproto2 imports pydantic whenever it is installed (``try: import pydantic``), whatever the
generated code asks for, and asks ``pydantic.dataclasses.is_pydantic_dataclass`` on every
message it encodes or parses. Our messages are plain dataclasses (generated without the
``pydantic_dataclasses`` option), yet the first metadata round trip in a process paid about
0.1 s importing pydantic and its dataclass machinery.

So betterproto2 is imported while ``pydantic`` is hidden, and then gets a stand-in that answers
as pydantic would: no class is a pydantic dataclass until pydantic has been imported; from
then on (someone else's pydantic messages in the same process) the real module answers, and
betterproto2 keeps validating those exactly as before.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

__all__ = ["import_betterproto2"]


class _PydanticWhenImported:
    """betterproto2's ``pydantic`` and ``pydantic_core`` until pydantic is really imported."""

    def __init__(self, module: ModuleType, name: str) -> None:
        self._betterproto2 = module
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        if "pydantic" not in sys.modules:
            if self._name == "pydantic" and attribute == "dataclasses":
                return _NoPydanticDataclasses
            raise AttributeError(f"pydantic is not imported (looked up {attribute!r})")
        import pydantic
        import pydantic.dataclasses
        import pydantic_core

        # From now on betterproto2 uses the real modules directly.
        setattr(self._betterproto2, "pydantic", pydantic)  # noqa: B010 (mypy: no such attribute)
        setattr(self._betterproto2, "pydantic_core", pydantic_core)  # noqa: B010
        return getattr(sys.modules[self._name], attribute)


class _NoPydanticDataclasses:
    @staticmethod
    def is_pydantic_dataclass(cls: type) -> bool:
        return False  # pydantic is not imported, so no class can be one of its dataclasses


def import_betterproto2() -> ModuleType:
    """betterproto2, imported without pydantic unless pydantic is imported already."""
    if "betterproto2" in sys.modules or "pydantic" in sys.modules:
        import betterproto2

        return betterproto2
    sys.modules["pydantic"] = None  # type: ignore[assignment]  # makes `import pydantic` fail
    try:
        module = importlib.import_module("betterproto2")
    except ImportError:  # a betterproto2 that needs pydantic
        module = None
    finally:
        del sys.modules["pydantic"]
    if module is None:
        return importlib.import_module("betterproto2")
    if getattr(module, "pydantic", object()) is None:  # the layout this module knows
        for name in ("pydantic", "pydantic_core"):
            setattr(module, name, _PydanticWhenImported(module, name))
    return module


import_betterproto2()  # mcbackend/__init__.py imports this module before any generated code
