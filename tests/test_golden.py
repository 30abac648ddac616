"""Every committed golden archive (formats/golden/<format>-v<N>/) still reads back exactly."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import mcbackend as mcb

FORMATS = Path(__file__).resolve().parent.parent / "formats"
spec = importlib.util.spec_from_file_location("golden_runs", FORMATS / "golden_runs.py")
golden_runs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(golden_runs)

ARCHIVES = sorted(p for p in (FORMATS / "golden").iterdir() if p.is_dir())


def test_every_format_has_an_archive():
    assert {p.name for p in ARCHIVES} == {"zarr-v1", "zarr-v2", "parquet-v1", "parquet-v2"}


@pytest.mark.parametrize("archive", ARCHIVES, ids=lambda p: p.name)
def test_golden_archive_reads_back(archive):
    run = mcb.open_run(str(archive / golden_runs.RID), read_only=True)
    assert bytes(run.meta) == bytes(golden_runs.golden_meta())
    chains = run.get_chains()
    assert [len(c) for c in chains] == list(golden_runs.N_DRAWS)
    for c, chain in enumerate(chains):
        expected = [golden_runs.golden_draw(c, i) for i in range(len(chain))]
        for var in run.meta.variables:
            values = chain.get_draws(var.name)
            for i, (draw, _) in enumerate(expected):
                want = np.asarray(draw[var.name])
                got = np.asarray(values[i])
                assert got.shape == want.shape and got.dtype.kind == want.dtype.kind, (var.name, i)
                np.testing.assert_array_equal(got, want)
        for stat in run.meta.sample_stats:
            values = chain.get_stats(stat.name)
            np.testing.assert_array_equal(
                [np.asarray(v) for v in values], [s[stat.name] for _, s in expected]
            )
    dt = run.to_inferencedata()
    assert dt["posterior"].sizes["draw"] == min(golden_runs.N_DRAWS) - 4
    assert list(dt["posterior"]["city"].values) == ["Bonn", "Köln", "Jülich"]
    assert run.verify() == []


def test_zarr_golden_readable_by_xarray_alone():
    xr = pytest.importorskip("xarray")
    ds = xr.open_zarr(
        FORMATS / "golden" / "zarr-v1" / golden_runs.RID / "chain_0" / "draws", consolidated=False
    )
    assert ds["theta"].dims == ("draw", "city")
    np.testing.assert_array_equal(ds["theta"].values[5], golden_runs.golden_draw(0, 5)[0]["theta"])


def test_parquet_golden_readable_by_pyarrow_alone():
    ds = pytest.importorskip("pyarrow.dataset")
    table = ds.dataset(
        str(FORMATS / "golden" / "parquet-v1" / golden_runs.RID / "chain_1"), format="parquet"
    ).to_table()
    assert table.num_rows == golden_runs.N_DRAWS[1]
    assert table.column("stats/energy").to_pylist() == [
        -float(100 + i) for i in range(golden_runs.N_DRAWS[1])
    ]


def test_slash_names_are_escaped_in_arviz_data():
    run = mcb.open_run(str(ARCHIVES[0] / golden_runs.RID), read_only=True)
    posterior = run.to_inferencedata()["posterior"]
    assert "a%2Fb c" in posterior and posterior["a%2Fb c"].dims == (
        "chain",
        "draw",
        "a%2Fb c_dim_0",
        "a%2Fb c_dim_1",
    )


def test_zarr_v2_golden_readable_without_mcbackend():
    """The v2 golden archive is ArviZ data to a reader that cannot import mcbackend."""
    import json
    import subprocess
    import sys

    from .test_zarr_v2 import BLOCK_MCBACKEND

    code = BLOCK_MCBACKEND + (
        "import json, sys, arviz as az, xarray as xr\n"
        "tree = xr.open_datatree(sys.argv[1], engine='zarr', consolidated=False)\n"
        "post, warm = tree['posterior'], tree['warmup_sample_stats']\n"
        "az.summary(az.from_zarr(sys.argv[1]), var_names=['mu'])\n"
        "print(json.dumps({'groups': sorted(tree.children), 'mu': post['mu'].values.tolist(),\n"
        "    'theta_dims': list(post['theta'].dims), 'city': post['city'].values.tolist(),\n"
        "    'energy': warm['energy'].values.tolist(), 'y': tree['observed_data']['y'].values.tolist()}))\n"
    )
    url = str(FORMATS / "golden" / "zarr-v2" / golden_runs.RID)
    done = subprocess.run(
        [sys.executable, "-c", code, url], capture_output=True, text=True, cwd="/"
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["groups"] == [
        "constant_data", "observed_data", "posterior", "sample_stats",
        "warmup_posterior", "warmup_sample_stats",
    ]  # fmt: skip
    assert seen["theta_dims"] == ["chain", "draw", "city"]
    assert seen["city"] == ["Bonn", "Köln", "Jülich"]
    assert seen["y"] == [0.5, 1.5, -2.0]
    longest = max(golden_runs.N_DRAWS) - 4
    for c, n in enumerate(golden_runs.N_DRAWS):
        mu = [golden_runs.golden_draw(c, i)[0]["mu"] for i in range(4, n)]
        assert seen["mu"][c][: n - 4] == mu
        assert all(np.isnan(seen["mu"][c][n - 4 : longest]))  # shorter chain: NaN-padded
        assert seen["energy"][c] == [golden_runs.golden_draw(c, i)[1]["energy"] for i in range(4)]


def test_parquet_v2_golden_readable_without_mcbackend():
    """pandas, pyarrow and DuckDB read the v2 archive in a process that cannot import mcbackend."""
    import json
    import subprocess
    import sys

    run = FORMATS / "golden" / "parquet-v2" / golden_runs.RID
    code = f"""
import json, sys
sys.modules["mcbackend"] = None
import duckdb, pandas as pd, pyarrow.dataset as ds
run = {str(run)!r}
df = pd.read_parquet(run).sort_values(["chain", "draw"])
t = ds.dataset(run, partitioning="hive").to_table().sort_by([("chain", "ascending"), ("draw", "ascending")])
rows = duckdb.sql(
    f"SELECT chain, count(*), max(draw), count(*) FILTER (WHERE warmup) "
    f"FROM read_parquet('{{run}}/**/*.parquet', hive_partitioning=true) GROUP BY chain ORDER BY chain"
).fetchall()
print(json.dumps({{
    "pandas": [[int(c) for c in df["chain"]], df["draw"].tolist(), df["stats/energy"].tolist()],
    "theta": t.column("theta").combine_chunks().to_numpy_ndarray().tolist(),
    "run_id": sorted(set(map(str, t.column("run_id").to_pylist()))),
    "duckdb": rows,
}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    expected = [(c, i) for c, n in enumerate(golden_runs.N_DRAWS) for i in range(n)]
    assert out["pandas"][0] == [c for c, _ in expected]
    assert out["pandas"][1] == [i for _, i in expected]
    assert out["pandas"][2] == [golden_runs.golden_draw(c, i)[1]["energy"] for c, i in expected]
    theta = [golden_runs.golden_draw(c, i)[0]["theta"].tolist() for c, i in expected]
    assert out["theta"] == theta
    assert out["run_id"] == [golden_runs.RID]
    assert out["duckdb"] == [[c, n, n - 1, 4] for c, n in enumerate(golden_runs.N_DRAWS)]


def test_zarr_v2_pymc_run_of_stored_names_reads_back(tmp_path):
    """A PyMC run Zarr v2 stored before it named arrays as PyMC does (root without
    ``names``: one array per stored stat) reads back as it was written, and as PyMC's DataTree;
    the same run written now has PyMC's names in the arrays themselves."""
    import xarray as xr

    url = FORMATS / "golden" / "zarr-v2" / golden_runs.PYMC_RID
    old = mcb.open_run(str(url), read_only=True)
    new = mcb.ZarrBackend(str(tmp_path), chunk_bytes=32, flush_every=4).init_run(
        golden_runs.golden_pymc_meta()
    )
    for c, n in enumerate(golden_runs.PYMC_DRAWS):
        chain = new.init_chain(c)
        for i in range(n):
            chain.append(*golden_runs.golden_pymc_draw(c, i))
    new.close()
    for run in (old, mcb.open_run(str(tmp_path / golden_runs.PYMC_RID))):
        assert run.verify() == []
        for c, chain in enumerate(run.get_chains()):
            expected = [golden_runs.golden_pymc_draw(c, i) for i in range(len(chain))]
            for var in run.meta.variables:
                want = [d[var.name] for d, _ in expected]
                np.testing.assert_array_equal(chain.get_draws(var.name), want)
            for stat in run.meta.sample_stats:
                want = [s[stat.name] for _, s in expected]
                np.testing.assert_array_equal(chain.get_stats(stat.name), want)
        stats = run.to_inferencedata()["sample_stats"]
        assert set(stats.data_vars) == {"diverging", "lp", "accept"}
        assert stats["accept"].dims == ("chain", "draw", "accept_dim_0")
    plain = {
        name: xr.open_datatree(str(root / golden_runs.PYMC_RID), engine="zarr", consolidated=False)
        for name, root in (("old", url.parent), ("new", tmp_path))
    }
    assert "sampler_1__accept" in plain["old"]["sample_stats"]
    assert set(plain["new"]["sample_stats"].data_vars) == {"diverging", "lp", "accept"}
    assert list(plain["new"]["posterior"].data_vars) == ["mu"]  # sigma_log__ hidden, as PyMC
