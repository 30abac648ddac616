"""Read-back fidelity: a stored PyMC run, opened in a fresh process, is the DataTree pm.sample
returns with PyMC's default trace (same model and seed), whichever way it was stored
(``TraceBackend(backend)`` or bare ``trace=backend``) and on every backend."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import xarray as xr

pm = pytest.importorskip("pymc")
az = pytest.importorskip("arviz")

import mcbackend as mcb  # noqa: E402
from mcbackend.pymc import TraceBackend  # noqa: E402

from .datatree_diff import diff_datatrees  # noqa: E402

pytestmark = pytest.mark.pymc

SAMPLING = dict(
    tune=25, draws=10, chains=2, cores=1, random_seed=11, nuts_sampler="pymc", progressbar=False,
    compute_convergence_checks=False, discard_tuned_samples=False,
)  # fmt: skip


def hierarchical():
    """``pm.Data`` (constant and observed), named dims and coords, group indexing."""
    with pm.Model(coords={"group": ["a", "b", "c"], "obs": np.arange(6)}) as model:
        idx = pm.Data("idx", np.array([0, 0, 1, 1, 2, 2]), dims="obs")
        x = pm.Data("x", np.linspace(0.0, 1.0, 6), dims="obs")
        y = pm.Data("y_data", np.array([0.1, 0.3, -0.2, 0.5, 1.0, 1.2]), dims="obs")
        mu = pm.Normal("mu", 0, 1)
        tau = pm.HalfNormal("tau", 1)
        a = pm.Normal("a", mu, tau, dims="group")
        pm.Normal("y", a[idx] * x, 1, observed=y, dims="obs")
    return model, None


def dated():
    """Date coordinates (PyMC keeps them as ``pd.Timestamp`` labels) and plain observed data."""
    with pm.Model(coords={"date": pd.date_range("2024-01-01", periods=4)}) as model:
        trend = pm.Normal("trend", 0, 1, dims="date")
        sigma = pm.HalfNormal("sigma", 1)
        pm.Normal("y", trend, sigma, observed=np.array([0.2, 0.1, 0.4, 0.3]), dims="date")
    return model, None


def compound():
    """NUTS and Metropolis in one CompoundStep: PyMC's per-sampler stat layout."""
    with pm.Model() as model:
        a = pm.Normal("a", 0, 1)
        b = pm.Normal("b", a, 1)
        steps = [pm.NUTS([a]), pm.Metropolis([b])]
    return model, steps


def discrete():
    """Discrete variables (sampled by Metropolis steps) and Deterministics."""
    with pm.Model() as model:
        rate = pm.HalfNormal("rate", 2)
        count = pm.Poisson("count", rate)
        flag = pm.Bernoulli("flag", 0.3)
        pm.Deterministic("twice", 2 * count)
        pm.Deterministic("total", count + flag + rate)
    return model, None


def unnamed_dims():
    """Vectors and a matrix without dims: PyMC indexes ``x_dim_0`` by 0..n-1."""
    with pm.Model() as model:
        x = pm.Normal("x", 0, 1, shape=3)
        pm.Normal("z", x.sum(), 1, shape=(2, 2))
    return model, None


MODELS = {f.__name__: f for f in [hierarchical, dated, compound, discrete, unnamed_dims]}


def sample(name: str, trace=None):
    model, steps = MODELS[name]()
    with model:
        return pm.sample(trace=trace, step=steps, **SAMPLING)


@pytest.fixture(scope="module")
def baselines() -> dict:
    """What pm.sample returns with PyMC's default trace, per model (sampled once)."""
    return {name: sample(name) for name in MODELS}


def store(backend, name: str, how: str) -> str:
    """Sample model ``name`` into ``backend`` (``how``: "trace" for TraceBackend, "bare"
    for PyMC's own adapter); returns the run id."""
    if how == "trace":
        trace = TraceBackend(backend, verbose=False)
        sample(name, trace)
        return trace.run_id
    before = set(backend.get_runs().rid)
    sample(name, backend)
    (rid,) = set(backend.get_runs().rid) - before
    return rid


READER = textwrap.dedent(
    """
    import json, pickle, sys
    import mcbackend as mcb

    locations = json.loads(sys.argv[1])
    trees = []
    for url, options in locations:
        trees.append(mcb.open_run(url, options).to_inferencedata().load())
    assert "pymc" not in sys.modules, "reading imported PyMC"
    with open(sys.argv[2], "wb") as f:
        pickle.dump(trees, f)
    """
)


def read_in_fresh_process(locations: list[tuple[str, dict | None]], tmp_path) -> list:
    """``open_run(url).to_inferencedata()`` of every location, in one new Python process
    (which never imports PyMC)."""
    out = tmp_path / "trees.pickle"
    subprocess.run(
        [sys.executable, "-c", READER, json.dumps(locations), str(out)],
        check=True, env={**os.environ}, timeout=600,
    )  # fmt: skip
    with open(out, "rb") as f:
        return pickle.load(f)


def assert_all_equal(cases: list[str], trees: list, baselines: dict) -> None:
    """Every case's tree equals PyMC's (all differences reported at once), and ArviZ's
    diagnostics on ``sample_stats.energy`` give what they give on PyMC's."""
    problems = []
    for case, tree in zip(cases, trees):
        expected = baselines[case.split("/")[0]]
        diff = diff_datatrees(tree, expected, compare_root_attrs=False)
        problems += [f"{case}: {d}" for d in diff]
        if "energy" in expected["sample_stats"]:
            bfmi, want = (az.bfmi(t)["energy"].values for t in (tree, expected))
            if not np.array_equal(bfmi, want):
                problems.append(f"{case}: az.bfmi {bfmi} != {want}")
    assert not problems, "\n".join(problems)


CASES = [(name, how) for name in MODELS for how in ("trace", "bare")]


def test_numpy_backend_matches_pymc(baselines):
    backend = mcb.NumPyBackend()
    cases, trees = [], []
    for name, how in CASES:
        rid = store(backend, name, how)
        cases.append(f"{name}/{how}")
        trees.append(backend.get_run(rid).to_inferencedata())
    assert_all_equal(cases, trees, baselines)


@pytest.mark.parametrize("fmt", ["zarr", "parquet"])
def test_file_backends_match_pymc_in_fresh_process(baselines, tmp_path, fmt):
    root = tmp_path / "runs"
    backend = {"zarr": mcb.ZarrBackend, "parquet": mcb.ParquetBackend}[fmt](str(root))
    cases, locations = [], []
    for name, how in CASES:
        rid = store(backend, name, how)
        cases.append(f"{name}/{how}")
        locations.append((str(root / rid), None))
    assert_all_equal(cases, read_in_fresh_process(locations, tmp_path), baselines)


@pytest.mark.clickhouse
def test_clickhouse_matches_pymc_in_fresh_process(baselines, tmp_path, clickhouse_database):
    from .test_backend_clickhouse import HOST, connect

    backend = mcb.ClickHouseBackend(connect(clickhouse_database))
    cases, locations = [], []
    for name, how in CASES:
        rid = store(backend, name, how)
        cases.append(f"{name}/{how}")
        locations.append((f"clickhouse://{HOST}:9000/{clickhouse_database}/{rid}", None))
    assert_all_equal(cases, read_in_fresh_process(locations, tmp_path), baselines)


@pytest.mark.s3
def test_zarr_on_s3_matches_pymc_in_fresh_process(baselines, tmp_path, s3_bucket, s3_options):
    backend = mcb.ZarrBackend(f"{s3_bucket}/runs", s3_options)
    cases, locations = [], []
    for how in ("trace", "bare"):
        rid = store(backend, "dated", how)
        cases.append(f"dated/{how}")
        locations.append((f"{s3_bucket}/runs/{rid}", s3_options))
    assert_all_equal(cases, read_in_fresh_process(locations, tmp_path), baselines)


# ---- Zarr v2 read without mcbackend -------------------------------------------------------


def stacked():
    """NUTS and two Metropolis steps: PyMC stacks the stats both Metropolis steps report
    (``accept``, ``accepted``, ``scaling``) along ``<name>_dim_0``."""
    with pm.Model() as model:
        a = pm.Normal("a", 0, 1)
        b = pm.Normal("b", a, 1)
        s = pm.HalfNormal("s", 1, shape=2)
        steps = [pm.NUTS([s]), pm.Metropolis([a]), pm.Metropolis([b])]
    return model, steps


PLAIN_MODELS = {"hierarchical": hierarchical, "compound": compound, "stacked": stacked}

PLAIN_READER = """
import pickle, sys
import xarray as xr

trees = [xr.open_datatree(url, engine="zarr", consolidated=False).load() for url in sys.argv[2:]]
with open(sys.argv[1], "wb") as f:
    pickle.dump(trees, f)
"""


def sample_plain(name: str, discard: bool, trace=None):
    model, steps = PLAIN_MODELS[name]()
    with model:
        return pm.sample(trace=trace, step=steps, **{**SAMPLING, "discard_tuned_samples": discard})


def pymc_reference(name: str, discard: bool) -> xr.DataTree:
    """PyMC's DataTree with its default trace. With ``discard_tuned_samples=True`` PyMC leaves
    the warm-up groups out while storage keeps every draw it was given: the stored run's
    warm-up groups are then compared with what PyMC returns keeping them."""
    tree = sample_plain(name, discard)
    if not discard:
        return tree
    kept = sample_plain(name, False)
    groups = {f"/{g}": tree[g].to_dataset() for g in tree.children}
    groups.update({f"/{g}": kept[g].to_dataset() for g in kept.children if g.startswith("warmup")})
    return xr.DataTree.from_dict(groups)


@pytest.mark.parametrize("discard", [False, True], ids=["keep_tuned", "discard_tuned"])
def test_zarr_v2_pymc_run_read_without_mcbackend_is_pymcs_datatree(tmp_path, discard):
    """A finished PyMC run stored as Zarr v2, opened by xarray in a process that cannot import
    mcbackend, equals ``open_run(url).to_inferencedata()`` and PyMC's own DataTree: stats named
    as PyMC names them, a stat several samplers report stacked, warm-up groups, attributes."""
    from .test_zarr_v2 import BLOCK_MCBACKEND

    backend = mcb.ZarrBackend(str(tmp_path))
    cases, urls = [], []
    for name in PLAIN_MODELS:
        for how in ("trace", "bare"):
            trace = TraceBackend(backend, verbose=False) if how == "trace" else backend
            before = set(backend.get_runs().rid)
            sample_plain(name, discard, trace)
            (rid,) = set(backend.get_runs().rid) - before
            cases.append((name, how))
            urls.append(str(tmp_path / rid))
    out = tmp_path / "plain.pickle"
    subprocess.run(
        [sys.executable, "-c", BLOCK_MCBACKEND + PLAIN_READER, str(out), *urls],
        check=True, cwd="/", timeout=600,
    )  # fmt: skip
    with open(out, "rb") as f:
        plain_trees = pickle.load(f)
    references = {name: pymc_reference(name, discard) for name in PLAIN_MODELS}
    problems = []
    for (name, how), url, plain in zip(cases, urls, plain_trees):
        ours = mcb.open_run(url).to_inferencedata()
        for against, tree in (("to_inferencedata", ours), ("PyMC", references[name])):
            diff = diff_datatrees(plain, tree, compare_root_attrs=False)
            problems += [f"{name}/{how} vs {against}: {d}" for d in diff]
    assert not problems, "\n".join(problems)
    stats = plain_trees[cases.index(("stacked", "trace"))]["sample_stats"]
    assert stats["accept"].dims == ("chain", "draw", "accept_dim_0")  # two Metropolis steps
    assert {"diverging", "energy", "lp", "tree_depth"} <= set(stats.data_vars)
