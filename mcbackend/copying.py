"""Copy a run between any two backends, chain by chain and batch by batch."""

from __future__ import annotations

from .core import Backend, Run
from .meta import RunMeta

__all__ = ["copy_run"]


def copy_run(run: Run, destination: Backend, *, batch: int = 1000, progress: bool = False) -> Run:
    """Copy metadata and every chain of ``run`` into ``destination``; returns the new run.

    At most ``batch`` draws of one chain are in memory at a time. The copy keeps the run id.
    """
    meta = RunMeta.parse(bytes(run.meta))
    chains = run.get_chains()
    lengths = [len(c) for c in chains]
    bar = _progress(sum(lengths), f"copy {meta.rid}", progress)
    target = destination.init_run(meta)
    try:
        for chain, length in zip(chains, lengths):
            out = target.init_chain(chain.cmeta.chain_number)
            var_names = [v.name for v in meta.variables]
            stat_names = [s.name for s in meta.sample_stats]
            for lo in range(0, length, batch):
                slc = slice(lo, min(lo + batch, length))
                draws = {n: chain.get_draws(n, slc) for n in var_names}
                stats = {n: chain.get_stats(n, slc) for n in stat_names}
                for i in range(slc.stop - slc.start):
                    out.append(
                        {n: v[i] for n, v in draws.items()},
                        {n: v[i] for n, v in stats.items()} if stat_names else None,
                    )
                bar.update(slc.stop - slc.start)
            out.close()
    finally:
        bar.close()
        target.close()
    return target


def _progress(total: int, description: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="draw", disable=not enabled)
