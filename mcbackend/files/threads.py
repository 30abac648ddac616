"""Thread pools that still take work at interpreter exit.

``atexit`` handlers run after ``concurrent.futures`` stopped every thread pool from taking new
work, so a flush at exit would fail wherever a pool is involved: our writer threads, and the
event loop fsspec runs object-store requests on (aiobotocore opens connections through
``asyncio.to_thread``). ``CallerRunsExecutor`` runs such work in the submitting thread
instead; ``keep_fsspec_working`` installs one as the default executor of fsspec's loop.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["CallerRunsExecutor", "keep_fsspec_working"]

T = TypeVar("T")


class CallerRunsExecutor(ThreadPoolExecutor):
    """A thread pool that, once pools refuse work (interpreter exit), runs it in the caller."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        try:
            return super().submit(fn, *args, **kwargs)
        except RuntimeError:  # "cannot schedule new futures after (interpreter) shutdown"
            future: Future[T] = Future()
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as ex:
                future.set_exception(ex)
            return future


def keep_fsspec_working() -> None:
    """Let fsspec's event loop run blocking helpers in its own thread from now on."""
    if "fsspec.asyn" not in sys.modules:
        return  # no async filesystem was used
    from fsspec.asyn import get_loop

    get_loop().set_default_executor(CallerRunsExecutor(1, thread_name_prefix="mcbackend-exit"))
