"""A full disk, for real (a small tmpfs): failed writes leave no debris, a failed ``init_run``
leaves nothing that blocks its run id, and every draw survives until space returns."""

import os
import subprocess

import numpy as np
import pytest

import mcbackend as mcb
from mcbackend.errors import FlushError
from mcbackend.meta import DataVariable, RunMeta, Variable
from mcbackend.npproto.utils import ndarray_from_numpy

from .test_file_concurrency import LAYOUTS, backend_of


@pytest.fixture
def disk(tmp_path):
    """A 512 KiB tmpfs mounted at a fresh folder (needs root; skipped otherwise)."""
    path = tmp_path / "disk"
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a small tmpfs to fill ({mounted.stderr.strip()}): needs root")
    yield str(path)
    subprocess.run(["umount", str(path)], check=True)


def fill(disk: str, room: int = 0) -> str:
    """Fill the disk, leaving ``room`` bytes free; returns the filler file (delete it to free
    the space)."""
    filler = os.path.join(disk, "filler")
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    os.truncate(filler, max(0, os.path.getsize(filler) - room))
    return filler


def files_under(folder: str) -> list[str]:
    return sorted(os.path.join(d, f) for d, _, names in os.walk(folder) for f in names)


def partials(folder: str) -> list[str]:
    return [f for f in files_under(folder) if f.endswith(".partial")]


def big_meta(rid: str) -> RunMeta:
    """A run whose metadata (64 KiB of constant data) does not fit in a few pages."""
    return RunMeta(
        rid=rid,
        variables=[Variable("x", "float64", [])],
        data=[DataVariable("big", ndarray_from_numpy(np.arange(8192.0)), [], False)],
    )


@pytest.mark.parametrize("room", [0, 8192], ids=["no room", "room for the claim"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_failed_init_run_leaves_nothing_and_the_id_stays_usable(layout, disk, room):
    if layout.startswith("parquet"):
        pytest.importorskip("pyarrow")
    root = os.path.join(disk, "runs")
    os.mkdir(root)
    filler = fill(disk, room)
    backend = backend_of(layout, root, None)
    with pytest.raises(OSError, match="Cannot write the run to .*No space left on device"):
        backend.init_run(big_meta("r1"))
    assert files_under(root) == []  # no claim, sidecar or temporary file blocks "r1"
    os.remove(filler)
    run = backend.init_run(big_meta("r1"))
    run.init_chain(0).append({"x": 1.5})
    run.close()
    (chain,) = backend.get_run("r1").get_chains()
    assert chain.get_draws("x").tolist() == [1.5]


@pytest.mark.parametrize("layout", ["zarr1", "zarr2"])
def test_zarr_flushes_on_full_disk_recover_when_space_returns(layout, disk):
    """Failed flushes leave no temporary files behind (they would keep the disk full after
    space is freed); once it is, ``close()`` writes every draw."""
    root = os.path.join(disk, "runs")
    backend = backend_of(layout, root, None, flush_every=10)
    meta = RunMeta(rid="z", variables=[Variable("x", "float64", [20])])
    run = backend.init_run(meta)
    chain = run.init_chain(0)
    draws = np.random.default_rng(0).normal(size=(60, 20))
    for d in draws[:30]:
        chain.append({"x": d})
    chain.flush()
    filler = fill(disk)
    for d in draws[30:]:
        chain.append({"x": d})  # kept: the draws of a failed flush wait for the next one
    with pytest.raises(FlushError, match="No space left on device.*kept [(]60 in all[)]"):
        run.close()
    assert len(chain) == 60
    assert partials(disk) == []
    os.remove(filler)
    run.close()
    (chain,) = mcb.open_run(os.path.join(root, "z")).get_chains()
    np.testing.assert_array_equal(chain.get_draws("x"), draws)
    if layout == "zarr1":
        assert os.path.exists(os.path.join(root, "z", "chain_0", "zarr.json"))


def test_zarr2_close_on_full_disk_keeps_draws_and_can_be_retried(disk):
    """Closing writes the padded last chunks; failing that, no draw is lost (they stay in the
    committed segment) and ``close()`` again finishes the chain."""
    root = os.path.join(disk, "runs")
    backend = backend_of("zarr2", root, None, chunk_bytes=64)
    run = backend.init_run(RunMeta(rid="z", variables=[Variable("y", "float64", [])]))
    chain = run.init_chain(0)
    for i in range(13):  # chunks of 8 draws: 5 wait in a segment for the last chunk
        chain.append({"y": float(i)})
    chain.flush()
    filler = fill(disk)
    with pytest.raises(FlushError, match="last chunks .*No space left.*Every draw is safe"):
        run.close()
    assert partials(disk) == []
    assert mcb.open_run(os.path.join(root, "z")).get_chains()[0].get_draws("y").tolist() == list(
        range(13)
    )
    os.remove(filler)
    run.close()
    (chain,) = mcb.open_run(os.path.join(root, "z")).get_chains()
    assert chain.get_draws("y").tolist() == list(range(13))
    assert chain._record.closed
    assert not [f for f in files_under(root) if "/seg-" in f]  # the segment made way


@pytest.mark.parametrize("layout", ["parquet1", "parquet2"])
def test_parquet_compaction_on_full_disk_raises_flush_error_and_keeps_draws(layout, disk):
    pytest.importorskip("pyarrow")
    root = os.path.join(disk, "runs")
    backend = backend_of(layout, root, None, flush_every=5)
    run = backend.init_run(RunMeta(rid="p", variables=[Variable("x", "float64", [20])]))
    chain = run.init_chain(0)
    draws = np.random.default_rng(0).normal(size=(20, 20))
    for d in draws:
        chain.append({"x": d})
    chain.flush()  # four part files
    filler = fill(disk)
    with pytest.raises(FlushError, match="Compacting .*No space left.*Every draw is safe [(]20"):
        run.close()
    assert partials(disk) == []
    (reread,) = mcb.open_run(os.path.join(root, "p")).get_chains()
    np.testing.assert_array_equal(reread.get_draws("x"), draws)
    os.remove(filler)
    run.close()  # compacts now
    parquet_files = [os.path.basename(f) for f in files_under(root) if f.endswith(".parquet")]
    assert parquet_files == ["data-000000000000-000000000020.parquet"]
    (reread,) = mcb.open_run(os.path.join(root, "p")).get_chains()
    np.testing.assert_array_equal(reread.get_draws("x"), draws)


@pytest.mark.parametrize(
    "layout, room",
    # Parquet v1's chain marker is an empty file, which a full tmpfs still takes.
    [("zarr1", 0), ("zarr1", 4096), ("zarr2", 0), ("zarr2", 4096), ("parquet2", 0)],
)
def test_failed_init_chain_leaves_the_chain_number_usable(layout, room, disk):
    """With no room, or room for the chain's first file only (Zarr v2: its commit record)."""
    if layout.startswith("parquet"):
        pytest.importorskip("pyarrow")
    root = os.path.join(disk, "runs")
    backend = backend_of(layout, root, None)
    run = backend.init_run(big_meta("c"))
    filler = fill(disk, room)
    with pytest.raises(OSError, match="No space left on device"):
        run.init_chain(0)
    assert partials(disk) == []
    os.remove(filler)
    run.init_chain(0).append({"x": 2.5})
    run.close()
    (chain,) = backend.get_run("c").get_chains()
    assert chain.get_draws("x").tolist() == [2.5]
