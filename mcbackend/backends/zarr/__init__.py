"""Runs as Zarr v3 hierarchies on any fsspec filesystem (layouts: ``formats/zarr.md``).

The run marker's ``format_version`` picks the layout module: ``v1`` (a group per chain,
chunks as long as a flush; read forever, written on request) or v2 (``v2*`` modules: the
ArviZ-shaped hierarchy that xarray and ArviZ open without mcbackend).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...codec import Section, key_problem
from ...core import Run
from ...errors import FormatVersionError, RunNotFoundError
from ...files import MAX_UNSTORED_BYTES, FileBackend, FileRun, Location, read_run_info
from ...files.lease import DEFAULT_LEASE_SECONDS
from ...files.storage import is_read_only, reaching
from ...meta import RunMeta
from ...zarrio import Compression
from .v1 import FORMAT, ZarrChain, ZarrRun, chunk_length_for, open_store, prepare_v1_run
from .v2chain import ZarrV2Chain
from .v2layout import MAX_CHUNK_DRAWS, array_members
from .v2run import DEFAULT_CHUNK_BYTES, ZarrV2Run, create_v2_run

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ZarrBackend",
    "ZarrChain",
    "ZarrRun",
    "ZarrV2Chain",
    "ZarrV2Run",
    "chunk_length_for",
    "open_store",
]

#: The newest layout this mcbackend reads.
FORMAT_VERSION = 2
#: The layout new runs get unless ``format_version`` says otherwise.
DEFAULT_FORMAT_VERSION = 2
RUN_CLASSES: dict[int, type[FileRun]] = {1: ZarrRun, 2: ZarrV2Run}


class ZarrBackend(FileBackend):
    """Stores each run as a Zarr v3 hierarchy at ``<url_or_path>/<rid>`` on any fsspec
    filesystem.

    Parameters
    ----------
    url_or_path
        Root directory: a local path or any fsspec URL (``file://``, ``memory://``, ``s3://``...).
    storage_options
        Passed to fsspec (e.g. S3 credentials and ``endpoint_url``).
    format_version
        Layout of new runs: ``2`` (default; ArviZ groups ``posterior``, ``sample_stats``,
        ``warmup_*`` with arrays ``(chain, draw, ...)``, which xarray and ArviZ open as they
        are) or ``1`` (a group per chain, as mcbackend 0.6). Existing runs are read in their
        own layout.
    flush_every
        Flush whenever the chain length reaches a multiple of this many draws; by default a
        power of two giving about 16 MiB per flush in layout v2, 4 MiB in v1 (64 to 16384
        draws).
    flush_seconds
        Also flush at the first append this many seconds after the oldest unflushed draw.
    chunk_draws
        v1: draws per chunk; by default the largest divisor of ``flush_every`` giving chunks
        of at most 1 MiB.
    chunk_bytes
        v2: uncompressed bytes per chunk (default 4 MiB), independent of flushes.
    max_chunk_draws
        v2: at most this many draws per chunk (default 65536). Every flush stages each
        array's partial chunk, so a lower cap bounds what a flush rewrites for runs of many
        small variables.
    compression
        ``"blosc"`` (LZ4 with byte shuffle, default), ``"zstd"``, ``None``, or a ``Compression``.
        Every chunk also carries a CRC-32C checksum.
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
    lease_seconds
        A chain has one writer at a time, holding a lease renewed as it writes (and while it
        waits); a second handle's ``init_chain``/``append`` raises ``ChainLockedError``. A
        lease not renewed for this long (its writer crashed on another machine, or stalled)
        may be taken over; one of a process gone on this machine, at once.
    """

    format = FORMAT
    format_version = FORMAT_VERSION
    run_class: type[FileRun[Any]] = ZarrRun

    def __init__(
        self,
        url_or_path: str,
        storage_options: Mapping[str, Any] | None = None,
        *,
        format_version: int = DEFAULT_FORMAT_VERSION,
        flush_every: int | None = None,
        flush_seconds: float | None = 10.0,
        chunk_draws: int | None = None,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        max_chunk_draws: int = MAX_CHUNK_DRAWS,
        compression: str | Compression | None = "blosc",
        background_flush: bool = True,
        max_unstored_bytes: int = MAX_UNSTORED_BYTES,
        read_only: bool = False,
        create_bucket: bool = False,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        if format_version not in RUN_CLASSES:
            raise FormatVersionError(
                f"Zarr layout v{format_version} is unknown; this mcbackend writes "
                f"{sorted(RUN_CLASSES)}."
            )
        if int(chunk_bytes) < 1 or int(max_chunk_draws) < 1:
            raise ValueError(
                f"chunk_bytes and max_chunk_draws must be positive, got {chunk_bytes} and "
                f"{max_chunk_draws}."
            )
        if not isinstance(compression, Compression):
            compression = Compression(compression)
        super().__init__(
            url_or_path,
            storage_options,
            create_bucket=create_bucket,
            flush_every=flush_every,
            flush_seconds=flush_seconds,
            chunk_draws=chunk_draws,
            chunk_bytes=int(chunk_bytes),
            max_chunk_draws=int(max_chunk_draws),
            compression=compression,
            background_flush=background_flush,
            max_unstored_bytes=max_unstored_bytes,
            read_only=read_only,
            lease_seconds=lease_seconds,
        )
        self._write_version = format_version
        self.run_class = RUN_CLASSES[format_version]

    def _check_meta(self, meta: RunMeta) -> None:
        """Every name must make a node name a file can have (``key_problem``). Layout v2
        stores dims as coordinate arrays beside the variables of a group, so a variable or
        stat may not be named like a dimension of its group (or chain, draw)."""
        named = [("variable", v.name) for v in meta.variables]
        named += [("sample stat", s.name) for s in meta.sample_stats]
        if self.write_version != 1:  # v1 keeps data variables in meta.pb only
            named += [("data variable", d.name) for d in meta.data]
        for kind, name in named:
            problem = key_problem(name)
            if problem:
                raise ValueError(f"Zarr cannot store the {kind} {name!r}: {problem}. Rename it.")
        if self.write_version == 1:
            return
        for section in Section:
            members = array_members(meta, section)
            dims = {"chain", "draw"} | {d for m in members for d in m.dims}
            clashes = sorted(m.name for m in members if m.name in dims)
            if clashes:
                raise ValueError(
                    f"Zarr layout v2 cannot store {section.value} named like a dimension: "
                    f"{clashes}. Rename them (or use format_version=1)."
                )

    def _prepare_run(self, run_dir: Location, meta: RunMeta) -> None:
        if self.write_version == 1:
            prepare_v1_run(run_dir, meta)
            return
        options = self._run_options
        create_v2_run(
            run_dir,
            meta,
            options["chunk_bytes"],
            options["compression"],
            options["max_chunk_draws"],
        )

    @classmethod
    def run_class_for(cls, version: int) -> type[FileRun]:
        return RUN_CLASSES[version]

    @classmethod
    def open_run_dir(cls, run_dir: Location, **run_options: Any) -> Run:
        """Open the run in ``run_dir`` in the layout its marker names. Runs in archives and on
        web servers open read-only."""
        with reaching(run_dir):
            info = read_run_info(run_dir)
        if info.format != cls.format:
            raise RunNotFoundError(f"{run_dir} holds a {info.format} run, not a {cls.format} run.")
        if info.format_version not in RUN_CLASSES:
            raise FormatVersionError(
                f"{run_dir} uses {cls.format} layout v{info.format_version}; this mcbackend "
                f"reads v{min(RUN_CLASSES)} to v{max(RUN_CLASSES)}. Upgrade mcbackend."
            )
        if is_read_only(run_dir):
            run_options["read_only"] = True
        return RUN_CLASSES[info.format_version](info.meta, run_dir, **run_options)
