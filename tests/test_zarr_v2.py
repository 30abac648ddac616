"""Zarr layout v2 (formats/zarr.md, "Version 2"): what plain xarray/ArviZ readers see, chains
written by separate processes, damage detection, warm-up routing, CLI."""

from __future__ import annotations

import gc
import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

import mcbackend as mcb
from mcbackend.cli import main as cli
from mcbackend.errors import CorruptRunError
from mcbackend.meta import Coordinate, DataVariable, RunMeta, Variable
from mcbackend.npproto.utils import ndarray_from_numpy

ROOT = os.path.dirname(os.path.dirname(__file__))

#: Run in a subprocess: mcbackend cannot be imported there.
BLOCK_MCBACKEND = """
import importlib.abc, sys
class NoMcbackend(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "mcbackend" or name.startswith("mcbackend."):
            raise ImportError("mcbackend is blocked in this check")
sys.meta_path.insert(0, NoMcbackend())
"""


def model_meta(rid: str) -> RunMeta:
    """Eight schools, PyMC-like: stats with a warm-up stat, coords, observed/constant data."""
    schools = np.array([f"school {i}" for i in range(8)])
    return RunMeta(
        rid=rid,
        variables=[
            Variable("mu", "float64", []),
            Variable("theta", "float64", [8], dims=["school"]),
            Variable("z", "float32", [3, 2]),
        ],
        sample_stats=[
            Variable("in_warmup", "bool", []),
            Variable("lp", "float64", []),
            Variable("n_steps", "int64", []),
        ],
        coordinates=[Coordinate("school", ndarray_from_numpy(schools))],
        data=[
            DataVariable("y", ndarray_from_numpy(np.arange(8.0)), ["school"], True),
            DataVariable("sigma", ndarray_from_numpy(np.full(8, 2.0)), ["school"], False),
        ],
        attributes={"inference_library": mcb.ExtendedValue(string_value="demo")},
    )


def chain_values(c: int, n: int) -> tuple[dict, dict]:
    rng = np.random.default_rng(c)
    mu = rng.normal(size=n)
    draws = {
        "mu": mu,
        "theta": mu[:, None] + rng.normal(size=(n, 8)),
        "z": rng.normal(size=(n, 3, 2)).astype("float32"),
    }
    stats = {"lp": rng.normal(size=n), "n_steps": rng.integers(1, 16, size=n)}
    return draws, stats


def write_run(url, meta, chains=4, tune=30, draws=170, options=None, **kwargs):
    backend = mcb.ZarrBackend(url, options, format_version=2, flush_seconds=None, **kwargs)
    run = backend.init_run(meta)
    for c in range(chains):
        values, stats = chain_values(c, tune + draws)
        chain = run.init_chain(c)
        chain.append_many(values, {**stats, "in_warmup": np.arange(tune + draws) < tune})
        chain.close()
    return run


def plain_read(code: str, *args: str) -> str:
    """Run ``code`` in a fresh interpreter where mcbackend cannot be imported."""
    script = BLOCK_MCBACKEND + textwrap.dedent(code)
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, cwd="/", timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_plain_xarray_and_arviz_read_a_finished_run(tmp_path):
    """A finished run is ArviZ data without mcbackend, equal to ``to_inferencedata()``."""
    write_run(str(tmp_path), model_meta("eight"), chunk_bytes=256, flush_every=16)
    url = str(tmp_path / "eight")
    out = tmp_path / "plain.pickle"
    stdout = plain_read(
        """
        import json, pickle, sys
        import arviz as az, xarray as xr
        tree = xr.open_datatree(sys.argv[1], engine="zarr", consolidated=False)
        idata = az.from_zarr(sys.argv[1])
        summary = az.summary(idata, var_names=["mu", "theta"])
        ess = float(az.ess(idata, var_names=["mu"])["mu"])
        rhat = float(az.rhat(idata, var_names=["mu"])["mu"])
        groups = {g: dict(tree[g].to_dataset().sizes) for g in tree.children}
        with open(sys.argv[2], "wb") as f:
            pickle.dump(tree.load(), f)
        print(json.dumps({"groups": groups, "summary_rows": len(summary), "ess": ess,
                          "rhat": rhat, "attrs": tree["posterior"].attrs}))
        """,
        url,
        str(out),
    )
    seen = json.loads(stdout)
    assert set(seen["groups"]) == {
        "posterior", "sample_stats", "warmup_posterior", "warmup_sample_stats",
        "observed_data", "constant_data",
    }  # fmt: skip
    assert seen["groups"]["posterior"] == {"chain": 4, "draw": 170, "school": 8,
                                           "z_dim_0": 3, "z_dim_1": 2}  # fmt: skip
    assert seen["groups"]["warmup_sample_stats"] == {"chain": 4, "draw": 30}
    assert seen["summary_rows"] == 9 and seen["ess"] > 100 and 0.9 < seen["rhat"] < 1.1
    assert seen["attrs"]["inference_library"] == "demo"
    assert seen["attrs"]["sample_dims"] == ["chain", "draw"]

    with open(out, "rb") as f:
        plain = pickle.load(f)  # written by the subprocess above: only xarray objects
    ours = mcb.open_run(url).to_inferencedata()
    for group in ["posterior", "sample_stats", "warmup_posterior", "warmup_sample_stats",
                  "observed_data", "constant_data"]:  # fmt: skip
        a, b = plain[group].to_dataset(), ours[group].to_dataset()
        assert set(a.data_vars) == set(b.data_vars), group
        for name in a.data_vars:
            assert a[name].dims == b[name].dims, (group, name)
            np.testing.assert_array_equal(a[name].values, b[name].values)
        for coord in b.coords:
            np.testing.assert_array_equal(a[coord].values, b[coord].values)
    np.testing.assert_array_equal(plain["posterior"]["school"], [f"school {i}" for i in range(8)])


WRITER = """
import sys, numpy as np, json, mcbackend as mcb
url, options, c, n = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
run = mcb.ZarrBackend(url, options, format_version=2, chunk_bytes=512, flush_every=25,
                      flush_seconds=None).get_run("many")
chain = run.init_chain(c)
for i in range(n):
    chain.append({"a": np.array(c * 10000.0 + i)}, {"in_warmup": np.array(i < 20)})
chain.close()
"""


@pytest.mark.s3
def test_four_processes_write_four_chains_on_s3(s3_bucket, s3_options):
    """Chains of one run written by separate processes all land, shapes exact; neither the
    number of chains nor of draws was known at init_run (capacity grows past 1024)."""
    url = f"{s3_bucket}/runs"
    meta = RunMeta(
        rid="many",
        variables=[Variable("a", "float64", [])],
        sample_stats=[Variable("in_warmup", "bool", [])],
    )
    mcb.ZarrBackend(url, s3_options, format_version=2).init_run(meta)
    lengths = [1300, 900, 1500, 700]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url, json.dumps(s3_options), str(c), str(n)],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for c, n in enumerate(lengths)
    ]
    for proc in procs:
        assert proc.wait(300) == 0, proc.stderr.read()
    run = mcb.open_run(f"{url}/many", s3_options)
    assert [len(c) for c in run.get_chains()] == lengths
    assert run.verify() == []
    tree = xr.open_datatree(
        f"{url}/many", engine="zarr", consolidated=False, storage_options=s3_options
    )
    post = tree["posterior"]["a"].values
    assert post.shape == (4, max(lengths) - 20)
    assert tree["warmup_posterior"]["a"].shape == (4, 20)
    for c, n in enumerate(lengths):
        np.testing.assert_array_equal(post[c, : n - 20], c * 10000.0 + np.arange(20, n))
        assert np.isnan(post[c, n - 20 :]).all()


def small_run(tmp_path):
    meta = model_meta("damaged")
    write_run(str(tmp_path), meta, chains=2, chunk_bytes=256, flush_every=16)
    return tmp_path / "damaged"


def test_deleted_chunk_raises_and_is_reported(tmp_path):
    run_dir = small_run(tmp_path)
    chunk = run_dir / "posterior/mu/c/1/2"
    chunk.unlink()
    run = mcb.open_run(str(run_dir))
    problems = run.verify()
    assert len(problems) == 1 and "posterior/mu/c/1/2" in problems[0] and "missing" in problems[0]
    chain = run.get_chains()[1]
    with pytest.raises(CorruptRunError, match="posterior/mu/c/1/2.*missing"):
        chain.get_draws("mu")
    with pytest.raises(CorruptRunError, match="missing"):
        run.to_inferencedata()["posterior"]["mu"].load()
    chain.get_draws("theta")  # other arrays read fine


def test_byte_flipped_chunk_raises_and_is_reported(tmp_path):
    run_dir = small_run(tmp_path)
    chunk = run_dir / "sample_stats/lp/c/0/1"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    run = mcb.open_run(str(run_dir))
    (problem,) = run.verify()
    assert "sample_stats/lp/c/0/1" in problem and "CRC" in problem
    with pytest.raises(CorruptRunError, match="sample_stats/lp/c/0/1"):
        run.get_chains()[0].get_stats("lp")


def test_damaged_segment_of_an_open_chain(tmp_path):
    backend = mcb.ZarrBackend(str(tmp_path), format_version=2, chunk_bytes=256, flush_seconds=None)
    run = backend.init_run(model_meta("open"))
    chain = run.init_chain(0)
    values, stats = chain_values(0, 50)
    chain.append_many(values, {**stats, "in_warmup": np.arange(50) < 10})
    chain.flush()
    (segment,) = (tmp_path / "open/_mcbackend/chains/0").glob("seg-*")
    assert mcb.open_run(str(tmp_path / "open")).verify() == []
    segment.unlink()
    reader = mcb.open_run(str(tmp_path / "open"))
    assert any("segment" in p for p in reader.verify())
    with pytest.raises(CorruptRunError):
        reader.get_chains()[0].get_draws("mu")


def test_warmup_routed_as_draws_arrive_and_late_warmup_refused(tmp_path):
    backend = mcb.ZarrBackend(str(tmp_path), format_version=2, chunk_bytes=64, flush_every=3)
    meta = RunMeta(
        rid="w",
        variables=[Variable("a", "float64", [])],
        sample_stats=[Variable("tune", "bool", [])],
    )
    chain = backend.init_run(meta).init_chain(0)
    for i in range(10):
        chain.append({"a": float(i)}, {"tune": i < 4})
    with pytest.raises(ValueError, match="warm-up.*after posterior draws"):
        chain.append({"a": 99.0}, {"tune": True})
    with pytest.raises(ValueError, match="warm-up.*after posterior draws"):
        chain.append_many({"a": [10.0, 11.0]}, {"tune": [False, True]})
    chain.append({"a": 10.0}, {"tune": False})
    chain.close()
    tree = xr.open_datatree(str(tmp_path / "w"), engine="zarr", consolidated=False)
    np.testing.assert_array_equal(tree["warmup_posterior"]["a"].values, [[0, 1, 2, 3]])
    np.testing.assert_array_equal(tree["posterior"]["a"].values, [np.arange(4.0, 11.0)])
    (read,) = mcb.open_run(str(tmp_path / "w")).get_chains()
    np.testing.assert_array_equal(read.get_draws("a"), np.arange(11.0))


def test_plain_reader_mid_run_sees_complete_chunks_then_fill(tmp_path):
    backend = mcb.ZarrBackend(str(tmp_path), format_version=2, chunk_bytes=80, flush_seconds=None)
    meta = RunMeta(rid="live", variables=[Variable("a", "float64", [])])
    chain = backend.init_run(meta).init_chain(0)
    chain.append_many({"a": np.arange(25.0)}, {})
    chain.flush()
    tree = xr.open_datatree(str(tmp_path / "live"), engine="zarr", consolidated=False)
    a = tree["posterior"]["a"].values[0]
    assert len(a) == 1024  # the capacity while the chain is open
    np.testing.assert_array_equal(a[:20], np.arange(20.0))  # two complete chunks of 10
    assert np.isnan(a[20:]).all()  # the staged tail reads as fill
    np.testing.assert_array_equal(
        mcb.open_run(str(tmp_path / "live")).get_chains()[0].get_draws("a"), np.arange(25.0)
    )


def test_cli_info_shows_version_and_copy_turns_v1_into_v2(tmp_path):
    meta = model_meta("v1run")
    run = mcb.ZarrBackend(str(tmp_path / "v1"), format_version=1).init_run(meta)
    values, stats = chain_values(0, 40)
    chain = run.init_chain(0)
    chain.append_many(values, {**stats, "in_warmup": np.arange(40) < 10})
    chain.close()
    runner = CliRunner()
    done = runner.invoke(cli, ["info", str(tmp_path / "v1/v1run")])
    assert done.exit_code == 0, done.output
    assert "format:   zarr v1" in done.output
    done = runner.invoke(
        cli, ["copy", str(tmp_path / "v1/v1run"), str(tmp_path / "v2"), "--format-version", "2"]
    )
    assert done.exit_code == 0, done.output
    done = runner.invoke(cli, ["info", str(tmp_path / "v2/v1run")])
    assert "format:   zarr v2" in done.output
    copied = mcb.open_run(str(tmp_path / "v2/v1run"))
    np.testing.assert_array_equal(copied.get_chains()[0].get_draws("theta"), values["theta"])
    tree = xr.open_datatree(str(tmp_path / "v2/v1run"), engine="zarr", consolidated=False)
    np.testing.assert_array_equal(tree["posterior"]["mu"].values, [values["mu"][10:]])
    assert run.to_inferencedata()["posterior"].equals(copied.to_inferencedata()["posterior"])


def test_unknown_format_version_refused(tmp_path):
    with pytest.raises(mcb.errors.FormatVersionError, match="v3"):
        mcb.ZarrBackend(str(tmp_path), format_version=3)
    run = mcb.ZarrBackend(str(tmp_path), format_version=2).init_run(model_meta("x"))
    marker = json.loads((tmp_path / "x/mcbackend.json").read_text())
    (tmp_path / "x/mcbackend.json").write_text(json.dumps({**marker, "format_version": 3}))
    with pytest.raises(mcb.errors.FormatVersionError, match="layout v3"):
        mcb.open_run(str(tmp_path / "x"))
    assert run.meta.rid == "x"


def test_variable_named_like_a_dimension_refused_at_init_run(tmp_path):
    """v2 keeps a dim's coordinate array beside the group's variables: a clash would fail every
    flush, so init_run refuses it and writes nothing."""
    meta = mcb.RunMeta(
        rid="clash",
        variables=[mcb.Variable("date", "float64", [3], dims=["date"])],
        sample_stats=[mcb.Variable("in_warmup", "bool", [])],
    )
    backend = mcb.ZarrBackend(str(tmp_path))
    with pytest.raises(ValueError, match=r"named like a dimension: \['date'\]"):
        backend.init_run(meta)
    assert not (tmp_path / "clash").exists()
    mcb.ZarrBackend(str(tmp_path), format_version=1).init_run(meta)  # v1 stores it


def staged_index(path) -> dict[str, list[int]]:
    """The index of a segment file: ``{array key: [offset, length, first_row, rows]}``."""
    blob = path.read_bytes()
    size = int.from_bytes(blob[-8:], "little")
    return json.loads(blob[-8 - size : -8])


def test_each_flush_stages_only_its_new_rows_and_every_reader_sees_them(tmp_path):
    """A partial chunk is not re-staged by every flush: a segment holds the rows new in its
    flush (until MAX_SEGMENTS are live, then one segment restages them all); readers in
    other handles, resumed writers and ``verify`` take each row from the newest segment."""
    from mcbackend.backends.zarr.v2chain import MAX_SEGMENTS

    backend = mcb.ZarrBackend(str(tmp_path), format_version=2, flush_every=10, flush_seconds=None)
    run = backend.init_run(model_meta("deltas"))  # 4 MiB chunks: nothing completes
    chain = run.init_chain(0)
    n = 10 * (MAX_SEGMENTS + 2)
    values, stats = chain_values(0, n)
    flags = np.arange(n) < 15  # warm-up ends inside the second flush
    chain.append_many(
        {k: v[:50] for k, v in values.items()},
        {**{k: v[:50] for k, v in stats.items()}, "in_warmup": flags[:50]},
    )
    chain.flush()
    folder = tmp_path / "deltas/_mcbackend/chains/0"
    record = json.loads((tmp_path / "deltas/_mcbackend/chains/0.json").read_bytes())
    # one per flush; the first one's warm-up rows went into final chunks at draw 15
    assert record["segments"][0] == "seg-000000000010-000000000020"
    assert len(record["segments"]) == 4
    newest = staged_index(folder / record["segments"][-1])
    assert newest["posterior/mu"][2:] == [25, 10]  # draws 40..49: posterior rows 25..34
    assert "warmup_posterior/mu" not in newest  # warm-up chunks were final at draw 15
    reader = mcb.open_run(str(tmp_path / "deltas"))
    assert reader.verify() == []
    np.testing.assert_array_equal(reader.get_chains()[0].get_draws("theta"), values["theta"][:50])

    chain.append_many(
        {k: v[50:] for k, v in values.items()},
        {**{k: v[50:] for k, v in stats.items()}, "in_warmup": flags[50:]},
    )
    chain.flush()
    record = json.loads((tmp_path / "deltas/_mcbackend/chains/0.json").read_bytes())
    assert len(record["segments"]) <= MAX_SEGMENTS
    assert sorted(p.name for p in folder.glob("seg-*")) == sorted(record["segments"])
    restaged = [staged_index(folder / s)["posterior/mu"][2] for s in record["segments"]]
    assert restaged[0] == 0  # the restaging segment holds the whole partial chunk
    (live,) = mcb.open_run(str(tmp_path / "deltas")).get_chains()
    np.testing.assert_array_equal(live.get_draws("z"), values["z"])

    # a new writer resumes from the segments (as after a crash) and restages in its first flush
    del chain, run  # the first writer goes without closing the chain (its lease is freed)
    gc.collect()
    (resumed,) = backend.get_run("deltas").get_chains()
    more, more_stats = chain_values(1, 10)
    resumed.append_many(more, {**more_stats, "in_warmup": np.zeros(10, bool)})
    resumed.flush()
    record = json.loads((tmp_path / "deltas/_mcbackend/chains/0.json").read_bytes())
    assert len(record["segments"]) == 1
    assert staged_index(folder / record["segments"][0])["posterior/mu"][2:] == [0, n - 15 + 10]
    resumed.close()
    (closed,) = mcb.open_run(str(tmp_path / "deltas")).get_chains()
    np.testing.assert_array_equal(
        closed.get_draws("mu"), np.concatenate([values["mu"], more["mu"]])
    )
    assert not list(folder.glob("seg-*"))


def test_default_flush_is_about_16_mib(tmp_path):
    """Fewer, larger flushes: each costs a record, a segment and a shape check whatever its size."""
    meta = RunMeta(rid="f", variables=[Variable("z", "float32", [100, 100])])
    run = mcb.ZarrBackend(str(tmp_path)).init_run(meta)
    assert run.flush_every == 256  # 40 KB draws: the power of two under 16 MiB


def test_a_convergence_to_the_same_shapes_rewrites_only_changed_documents(tmp_path):
    """Locally, converging again to shapes written before leaves documents holding the same
    bytes untouched (a rewrite costs a rename, which ext4 makes slow), and still repairs a
    document another writer left with an older shape."""
    backend = mcb.ZarrBackend(str(tmp_path), format_version=2, flush_seconds=None)
    run = backend.init_run(model_meta("same-shapes"))
    chains = [run.init_chain(c) for c in range(3)]  # chain 2 stays open: capacities stay
    values, stats = chain_values(0, 10)
    for chain in chains[:2]:  # each grows the posterior to its capacity: 1024 draws
        chain.append_many(values, {**stats, "in_warmup": np.zeros(10, bool)})
        chain.flush()
    doc = tmp_path / "same-shapes" / "posterior" / "mu" / "zarr.json"
    assert json.loads(doc.read_text())["shape"][:2] == [3, 1024]
    inode = doc.stat().st_ino
    chains[1].close()  # converges to the same shapes
    assert doc.stat().st_ino == inode  # not rewritten
    older = json.loads(doc.read_text())
    older["shape"][1] = 0  # as a writer that saw older records leaves it
    doc.write_text(json.dumps(older))
    chains[0].close()
    assert json.loads(doc.read_text())["shape"][:2] == [3, 1024]
