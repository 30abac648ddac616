"""The base classes of the file backends: a backend is a root directory of runs, a run a
directory of ``chain_<n>`` folders. Formats subclass both (Zarr, Parquet)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..core import MAX_UNSTORED_BYTES, Backend, Run, checked_unstored_bytes
from ..errors import FormatVersionError, ReadOnlyError, RunNotFoundError
from ..meta import ChainMeta, RunMeta
from .buffer import auto_flush_every
from .creation import create_run_dir
from .layout import list_runs, read_run_info, runs_dataframe
from .lease import DEFAULT_LEASE_SECONDS
from .location import Location
from .storage import check_bucket, is_read_only, reaching

if TYPE_CHECKING:
    import pandas

    from .chain import BufferedChain

__all__ = ["MAX_UNSTORED_BYTES", "FileBackend", "FileRun"]


class FileRun[ChainT: BufferedChain](Run):
    """What Zarr and Parquet runs share: a location, flush settings and ``chain_<n>`` folders.

    Subclasses set ``chain_class`` (called as ``chain_class(cmeta, run, created=...)``; a
    created chain makes its folder) and ``chain_marker``, the file a chain folder holds.
    """

    chain_class: type[ChainT]
    chain_marker: str
    flush_target_bytes: int = 4 << 20
    #: The folder of the chains' writer leases (``mcbackend.files.lease``).
    leases_folder = "_mcbackend/leases"

    @staticmethod
    def chain_folder(chain_number: int) -> str:
        """The folder of a chain inside the run directory."""
        return f"chain_{chain_number}"

    @staticmethod
    def chain_number_of(folder: str) -> int | None:
        """The chain number a folder name stands for, or ``None``."""
        number = folder.removeprefix("chain_")
        return int(number) if number.isdigit() and number != folder else None

    def __init__(
        self,
        meta: RunMeta,
        location: Location,
        *,
        flush_every: int | None = None,
        flush_seconds: float | None = 10.0,
        background_flush: bool = True,
        max_unstored_bytes: int = MAX_UNSTORED_BYTES,
        read_only: bool = False,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        super().__init__(meta)
        if not lease_seconds > 0:
            raise ValueError(f"lease_seconds must be positive, got {lease_seconds!r}.")
        self.location = location
        self.flush_every = flush_every or auto_flush_every(meta, self.flush_target_bytes)
        self.flush_seconds = flush_seconds
        self.background_flush = background_flush
        self.max_unstored_bytes = max_unstored_bytes
        self.read_only = read_only
        self.lease_seconds = float(lease_seconds)
        self._chains: dict[int, ChainT] = {}

    def lease_folder(self, chain_number: int) -> Location:
        """Where the writer lease files of a chain live."""
        return self.location.child(f"{self.leases_folder}/{chain_number}")

    @property
    def url(self) -> str:
        return self.location.url()

    def _init_chain(self, chain_number: int) -> ChainT:
        if self.read_only:
            raise ReadOnlyError(f"Run {self.meta.rid} at {self.location} is open read-only.")
        cmeta = ChainMeta(rid=self.meta.rid, chain_number=chain_number)
        self._chains[chain_number] = self.chain_class(cmeta, self, created=True)
        return self._chains[chain_number]

    def get_chains(self) -> list[ChainT]:
        for folder in self._load_chains():
            self._check_unmarked(folder)
        return [self._chains[n] for n in sorted(self._chains)]

    def _load_chains(self) -> list[str]:
        """Open every chain folder that holds its marker; the folders without one."""
        unmarked = []
        for name in self.location.listdir():
            number = self.chain_number_of(name)
            if number is None or number in self._chains:
                continue
            if self.location.exists(f"{name}/{self.chain_marker}"):
                cmeta = ChainMeta(rid=self.meta.rid, chain_number=number)
                self._chains[number] = self.chain_class(cmeta, self)
            else:
                unmarked.append(name)
        return unmarked

    def _check_unmarked(self, folder: str) -> None:
        """A chain folder without its marker is a chain being created, so it is skipped;
        formats that can tell a lost marker from that raise ``CorruptRunError``."""


class FileBackend(Backend):
    """What Zarr and Parquet backends share: runs at ``<root>/<rid>`` with marker and sidecar.

    Subclasses set ``format``, ``format_version`` (the newest layout this code reads) and
    ``run_class`` (called as ``run_class(meta, run_dir, **run_options)``), and may extend
    ``_prepare_run``. A format with several layout versions overrides ``run_class_for``; new
    runs get the layout ``write_version`` (default: ``format_version``).
    """

    format: str
    format_version: int
    run_class: type[FileRun]
    hidden_sidecars: bool = False  # marker and sidecar named ``_mcbackend.json``, ``_meta.pb``

    def __init__(
        self,
        url_or_path: str,
        storage_options: Mapping[str, Any] | None,
        *,
        create_bucket: bool = False,
        **run_options: Any,
    ) -> None:
        checked_unstored_bytes(run_options.get("max_unstored_bytes", MAX_UNSTORED_BYTES))
        self.location = Location.from_url(url_or_path, storage_options)
        self.create_bucket = create_bucket
        if is_read_only(self.location):
            run_options["read_only"] = True
        self._run_options = run_options
        self._write_version = self.format_version

    @classmethod
    def run_class_for(cls, version: int) -> type[FileRun]:
        """The run class that reads (and writes) layout ``version``."""
        return cls.run_class

    @classmethod
    def hides_sidecars(cls, version: int) -> bool:
        """Whether layout ``version`` names its marker and sidecar with a leading ``_``."""
        return cls.hidden_sidecars

    def _init_run(self, meta: RunMeta) -> Run:
        if self._run_options.get("read_only"):
            raise ReadOnlyError(f"{self.location} is read-only: runs cannot be created there.")
        self._check_meta(meta)
        version = self.write_version
        hidden = self.hides_sidecars(version)
        with reaching(self.location):
            check_bucket(self.location, create=self.create_bucket)
            run_dir = create_run_dir(
                self.location,
                meta,
                self.format,
                version,
                hidden=hidden,
                prepare=lambda run_dir: self._prepare_run(run_dir, meta),
            )
        return self.run_class_for(version)(meta, run_dir, **self._run_options)

    @property
    def write_version(self) -> int:
        """The layout version of new runs (``format_version``, the newest read, by default)."""
        return self._write_version

    def _check_meta(self, meta: RunMeta) -> None:
        """Refuse metadata the format cannot store, before anything is written."""

    def _prepare_run(self, run_dir: Location, meta: RunMeta) -> None:
        """Write format-specific files of a new run."""

    def get_run(self, rid: str) -> Run:
        return self.open_run_dir(self.location.child(rid), **self._run_options)

    @classmethod
    def open_run_dir(cls, run_dir: Location, **run_options: Any) -> Run:
        """Open the run in ``run_dir``, refusing other formats and newer layout versions.
        Runs in archives and on web servers open read-only."""
        with reaching(run_dir):
            info = read_run_info(run_dir)
        if info.format != cls.format:
            raise RunNotFoundError(f"{run_dir} holds a {info.format} run, not a {cls.format} run.")
        if info.format_version > cls.format_version:
            raise FormatVersionError(
                f"{run_dir} uses {cls.format} layout v{info.format_version}; this mcbackend "
                f"reads up to v{cls.format_version}. Upgrade mcbackend."
            )
        if is_read_only(run_dir):
            run_options["read_only"] = True
        return cls.run_class_for(info.format_version)(info.meta, run_dir, **run_options)

    def get_runs(self) -> pandas.DataFrame:
        """A DataFrame of the runs under the root: rid, created_at, format, meta."""
        with reaching(self.location):
            infos = list_runs(self.location)
        return runs_dataframe(i for i in infos if i.format == self.format)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location.url()!r})"
