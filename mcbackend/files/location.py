"""Directories on any fsspec filesystem, and whole-file atomic writes to them.

On local disk a file is written to a temporary name and renamed; several files go to a pool of
writer threads (file system calls release the GIL). Elsewhere each file is one PUT.
"""

from __future__ import annotations

import contextlib
import functools
import os
import posixpath
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import fsspec

from .storage import with_storage_defaults
from .threads import CallerRunsExecutor

__all__ = ["PARTIAL", "Location"]

PARTIAL = ".partial"  # ending of local temporary files; readers ignore such names

_made_folders: set[str] = set()  # local folders known to exist


@dataclass(frozen=True)
class Location:
    """A directory on an fsspec filesystem."""

    fs: fsspec.AbstractFileSystem
    path: str
    storage_options: Mapping[str, Any]

    @classmethod
    def from_url(cls, url_or_path: str, storage_options: Mapping[str, Any] | None = None):
        options = with_storage_defaults(str(url_or_path), storage_options)
        fs, path = fsspec.core.url_to_fs(str(url_or_path), **options)
        return cls(fs, path.rstrip("/") or "/", options)

    @property
    def is_local(self) -> bool:
        return "file" in _protocols(self.fs)

    def child(self, name: str) -> Location:
        return Location(self.fs, posixpath.join(self.path, name), self.storage_options)

    def url(self, name: str | None = None) -> str:
        path = posixpath.join(self.path, name) if name else self.path
        return self.fs.unstrip_protocol(path)

    def file(self, name: str) -> str:
        return posixpath.join(self.path, name)

    def listdir(self) -> list[str]:
        """Names of the entries in this directory, never from a stale listing cache."""
        self.fs.invalidate_cache(self.path)
        if not self.fs.exists(self.path):
            return []
        names = [e.rstrip("/").rsplit("/", 1)[-1] for e in self.fs.ls(self.path, detail=False)]
        if {"http", "https"} & set(_protocols(self.fs)):  # links in an index page are quoted
            names = [urllib.parse.unquote(n) for n in names]
        return names

    def exists(self, name: str) -> bool:
        return self.fs.exists(self.file(name))

    def read_bytes(self, name: str) -> bytes:
        return self.fs.cat_file(self.file(name))

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write a whole file, atomically (see ``write_many``)."""
        self.write_many({name: data})

    def write_many(self, files: Mapping[str, bytes]) -> None:
        """Write files (paths relative to this directory), each atomically: on local disk via
        a temporary file and a rename, elsewhere as one PUT per file, issued concurrently."""
        if not files:
            return
        if self.is_local:
            _write_local_many([(self.file(name), data) for name, data in files.items()])
        else:
            self.fs.pipe({self.file(name): data for name, data in files.items()})

    def create_file(self, name: str, data: bytes) -> None:
        """Create a file unless it exists (``FileExistsError``): exactly one of several
        concurrent creators wins (S3 ``If-None-Match: *``; locally ``O_EXCL`` + link)."""
        target = self.file(name)
        if not self.is_local:
            self.fs.pipe_file(target, data, mode="create")
            return

        def link(tmp: str) -> None:
            try:
                os.link(tmp, target)
            finally:
                os.remove(tmp)

        tmp = f"{target}.{os.getpid()}.{threading.get_ident()}{PARTIAL}"
        _via_temporary(tmp, data, link)

    def remove(self, names: list[str]) -> None:
        """Delete files (paths relative to this directory); absent ones are no error."""
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self.file(name))

    def files(self) -> list[str]:
        """Every file below this directory (paths relative to it), never from a stale cache."""
        self.fs.invalidate_cache(self.path)
        root = self.fs._strip_protocol(self.path).rstrip("/") + "/"
        found = self.fs.find(self.path) if self.fs.exists(self.path) else []
        return [self.fs._strip_protocol(p).removeprefix(root) for p in found]

    def remove_empty_folders(self) -> None:
        """Remove this directory and the folders below it that are empty, deepest first (local
        disk; object stores have no folders). Folders that hold files stay."""
        if not self.is_local:
            return
        for folder, _, _ in sorted(os.walk(self.path), key=lambda w: -len(w[0])):
            with contextlib.suppress(OSError):
                os.rmdir(folder)
                _made_folders.discard(folder)

    def read_many(self, names: list[str], missing_ok: bool = False) -> dict[str, bytes]:
        """Read files (paths relative to this directory) in one batch of requests; with
        ``missing_ok`` absent files are left out of the result."""
        if not names:
            return {}
        paths = {self.fs._strip_protocol(self.file(n)): n for n in names}
        found = self.fs.cat(list(paths), on_error="omit" if missing_ok else "raise")
        return {paths[self.fs._strip_protocol(p)]: data for p, data in found.items()}

    def __str__(self) -> str:
        return self.url()


def _write_local(target: str, data: bytes) -> None:
    """Write a local file atomically: a temporary file, then a rename. The temporary name starts
    with ``_`` so dataset readers (pyarrow, DuckDB, polars) listing the folder skip it."""
    folder, name = os.path.split(target)
    if folder not in _made_folders:
        os.makedirs(folder, exist_ok=True)
        _made_folders.add(folder)
    tmp = os.path.join(folder, f"_{name}.{os.getpid()}.{threading.get_ident()}{PARTIAL}")
    _via_temporary(tmp, data, lambda written: os.replace(written, target))


def _via_temporary(tmp: str, data: bytes, finish: Callable[[str], None]) -> None:
    """Write ``data`` to the local file ``tmp``, then ``finish(tmp)`` (rename or link it). A
    failure (a full disk) removes ``tmp``: no ``.partial`` debris outlives a failed write."""
    try:
        try:
            f = open(tmp, "wb")  # noqa: SIM115
        except FileNotFoundError:  # the folder was removed since it was made
            os.makedirs(os.path.dirname(tmp), exist_ok=True)
            f = open(tmp, "wb")  # noqa: SIM115
        with f:
            f.write(data)
        finish(tmp)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _write_local_many(files: list[tuple[str, bytes]]) -> None:
    """Several local files at once (file system calls release the GIL). Returns or raises
    only when every write has ended: a failed batch leaves no write (nor temporary file)
    behind to land after the caller retried or gave up."""
    if len(files) == 1:
        _write_local(*files[0])
        return
    futures = [_local_writers(os.getpid()).submit(_write_local, *file) for file in files]
    wait(futures)  # a failure is raised once no write of the batch runs on
    for future in futures:
        future.result()


@functools.cache
def _local_writers(pid: int) -> ThreadPoolExecutor:
    """The writer threads of this process (a forked child gets its own)."""
    return CallerRunsExecutor(max_workers=8, thread_name_prefix="mcbackend-write")


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)
