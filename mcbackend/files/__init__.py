"""What the file backends (Zarr, Parquet) share, one module per concern:

- ``location``: directories on any fsspec filesystem, atomic whole-file writes;
- ``layout``: a run's directory, marker, claim and metadata sidecar (read, list runs);
- ``creation``: creating a run's directory, one creator per run id;
- ``base``: ``FileBackend`` and ``FileRun``, the classes formats subclass;
- ``buffer``: ``DrawBuffer``, draws not yet written and when to write them;
- ``pipeline``: ``WritePipeline``, a chain's writer thread, counters and lock;
- ``encoding``: the encode pool, two workers every chain's flushes encode on;
- ``flusher``: flushing idle chains, and every chain at interpreter exit;
- ``threads``: thread pools that still take work at interpreter exit;
- ``storage``: finite S3 timeouts, buckets made only on request, read-only archives;
- ``chain``: ``BufferedChain``, appends and reads on top of buffer and pipeline.
"""

from .base import MAX_UNSTORED_BYTES, FileBackend, FileRun
from .buffer import DrawBuffer, auto_flush_every
from .chain import BufferedChain
from .layout import MARKER, SIDECAR, RunInfo, check_rid, list_runs, read_run_info
from .location import Location
from .pipeline import WriteFailed, WritePipeline

__all__ = [
    "MARKER",
    "MAX_UNSTORED_BYTES",
    "SIDECAR",
    "BufferedChain",
    "DrawBuffer",
    "FileBackend",
    "FileRun",
    "Location",
    "RunInfo",
    "WriteFailed",
    "WritePipeline",
    "auto_flush_every",
    "check_rid",
    "list_runs",
    "read_run_info",
]
