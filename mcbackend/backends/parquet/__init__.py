"""Runs as Parquet files on any fsspec filesystem (layouts: ``formats/parquet.md``).

Version 2 (``v2``, the default for new runs) is a hive-partitioned dataset other tools read as
it is; version 1 (``v1``) stays readable, resumable and writable (``format_version=1``). The
run marker's ``format_version`` says which module opens a run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...errors import FormatVersionError
from ...files import MAX_UNSTORED_BYTES, FileBackend, FileRun
from ...files.lease import DEFAULT_LEASE_SECONDS
from ...meta import RunMeta
from .v1 import COMPACT_BELOW, FORMAT, ParquetChain, ParquetRun
from .v2 import ParquetChainV2, ParquetRunV2

__all__ = [
    "COMPACT_BELOW",
    "DEFAULT_FORMAT_VERSION",
    "FORMAT",
    "FORMAT_VERSION",
    "ParquetBackend",
    "ParquetChain",
    "ParquetChainV2",
    "ParquetRun",
    "ParquetRunV2",
]

#: Run class of each layout version.
RUN_CLASSES: dict[int, type[ParquetRun]] = {1: ParquetRun, 2: ParquetRunV2}
FORMAT_VERSION = max(RUN_CLASSES)  # the newest layout this code reads
DEFAULT_FORMAT_VERSION = 2  # the layout of new runs


class ParquetBackend(FileBackend):
    """Stores each run as Parquet files under ``<url_or_path>/<rid>`` on any fsspec filesystem.

    Parameters
    ----------
    url_or_path, storage_options
        Root directory (local path or fsspec URL) and fsspec options.
    flush_every, flush_seconds
        Flush (write one file) when the chain length reaches a multiple of ``flush_every``
        (default: about 32 MiB of draws, at most 16384), or at the first append
        ``flush_seconds`` after the oldest unflushed draw.
    compression
        Parquet compression codec (``"zstd"``, ``"snappy"``, ``None``...).
    compact
        Merge a chain's files into one when this handle closes it after writing it, if they
        average under 8 MiB.
    background_flush
        Write count/time-triggered flushes in a background thread while appends go on
        (``flush()``, reads and closing wait for it). Up to four flushes per chain are under
        way at once (256 MiB of buffers at most); an append that would hand over a fifth
        waits for the oldest. A crash loses at most these and the unflushed buffer.
    max_unstored_bytes
        While writes fail (storage away, disk full), each chain keeps the draws not yet
        stored in memory up to this many bytes (default 256 MiB) and retries; beyond it
        ``append`` raises ``DrawNotKeptError`` and does not keep the draw.
    read_only
        Open runs for reading only (runs in zip archives and on web servers always are).
    create_bucket
        Create the S3 bucket of ``url_or_path`` if it does not exist (by default a missing
        bucket is an error: a typo should not make a new bucket).
    format_version
        Layout of new runs: 2 (default; a dataset pandas/pyarrow/DuckDB/polars read) or 1.
        Existing runs are read and resumed in the layout they were written in.
    lease_seconds
        A chain has one writer at a time, holding a lease renewed as it writes (and while it
        waits); a second handle's ``init_chain``/``append`` raises ``ChainLockedError``. A
        lease not renewed for this long (its writer crashed on another machine, or stalled)
        may be taken over; one of a process gone on this machine, at once.
    """

    format = FORMAT
    format_version = FORMAT_VERSION
    run_class = RUN_CLASSES[DEFAULT_FORMAT_VERSION]

    def __init__(
        self,
        url_or_path: str,
        storage_options: Mapping[str, Any] | None = None,
        *,
        flush_every: int | None = None,
        flush_seconds: float | None = 10.0,
        compression: str | None = "zstd",
        compact: bool = True,
        background_flush: bool = True,
        max_unstored_bytes: int = MAX_UNSTORED_BYTES,
        read_only: bool = False,
        format_version: int = DEFAULT_FORMAT_VERSION,
        create_bucket: bool = False,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        if format_version not in RUN_CLASSES:
            raise ValueError(
                f"format_version={format_version!r}: Parquet layouts are {sorted(RUN_CLASSES)}."
            )
        super().__init__(
            url_or_path,
            storage_options,
            create_bucket=create_bucket,
            flush_every=flush_every,
            flush_seconds=flush_seconds,
            compression=compression,
            compact=compact,
            background_flush=background_flush,
            max_unstored_bytes=max_unstored_bytes,
            read_only=read_only,
            lease_seconds=lease_seconds,
        )
        self._write_version = format_version

    @classmethod
    def run_class_for(cls, version: int) -> type[FileRun]:
        if version not in RUN_CLASSES:
            raise FormatVersionError(
                f"Parquet layout v{version} is unknown; this mcbackend reads {sorted(RUN_CLASSES)}."
            )
        return RUN_CLASSES[version]

    @classmethod
    def hides_sidecars(cls, version: int) -> bool:
        return version >= 2

    def _check_meta(self, meta: RunMeta) -> None:
        RUN_CLASSES[self.write_version].check_meta(meta)
