"""Copy a run between any two backends, chain by chain and batch by batch."""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile

from .core import Backend, Run
from .meta import RunMeta

__all__ = ["copy_run", "export_archive"]


def copy_run(run: Run, destination: Backend, *, batch: int = 1000, progress: bool = False) -> Run:
    """Copy metadata and every chain of ``run`` into ``destination``; returns the new run.

    At most ``batch`` draws of one chain are in memory at a time. The copy keeps the run id.
    """
    meta = RunMeta.parse(bytes(run.meta))
    chains = run.get_chains()
    lengths = [len(c) for c in chains]
    target = destination.init_run(meta)  # refusals (the run exists...) come before any bar
    bar = _progress(sum(lengths), f"copy {meta.rid}", progress)
    try:
        for chain, length in zip(chains, lengths):
            out = target.init_chain(chain.cmeta.chain_number)
            var_names = [v.name for v in meta.variables]
            stat_names = [s.name for s in meta.sample_stats]
            for lo in range(0, length, batch):
                slc = slice(lo, min(lo + batch, length))
                draws = {n: chain.get_draws(n, slc) for n in var_names}
                stats = {n: chain.get_stats(n, slc) for n in stat_names}
                out.append_many(draws, stats if stat_names else None)
                bar.update(slc.stop - slc.start)
            out.close()
    finally:
        bar.close()
        target.close()
    return target


def export_archive(run: Run, archive: str, fmt: str = "zarr", *, progress: bool = False) -> None:
    """Write ``run`` as one zip ``archive`` (a ``fmt`` run directory, uncompressed entries) that
    ``open_run("zip://<rid>::archive")`` opens. The archive appears whole or not at all."""
    from .urls import open_backend

    with tempfile.TemporaryDirectory() as tmp:
        copy_run(run, open_backend(f"{fmt}+{tmp}"), progress=progress)
        partial = f"{archive}.partial"
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as z:
            for folder, _, files in os.walk(tmp):
                for name in files:
                    path = os.path.join(folder, name)
                    z.write(path, os.path.relpath(path, tmp))
        shutil.move(partial, archive)


def _progress(total: int, description: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="draw", disable=not enabled)
