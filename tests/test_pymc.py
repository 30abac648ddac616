"""PyMC end to end: real pm.sample into every backend."""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

pm = pytest.importorskip("pymc")

import mcbackend as mcb  # noqa: E402
from mcbackend.pymc import PyMCVersionWarning, TraceBackend  # noqa: E402

pytestmark = pytest.mark.pymc

CITIES = ["Aachen", "Bonn", "Köln"]
TUNE, DRAWS = 60, 40
WARNING_KINDS = {k.name for k in pm.stats.convergence.WarningType}


OBSERVED = np.array([0.4, -0.5, 3.1])


def model(observed_container: bool) -> pm.Model:
    """Constant data, a vector with dims and coords, a Deterministic, observed data either in a
    ``pm.Data`` container (recorded by PyMC itself) or as a plain array (TraceBackend adds it)."""
    with pm.Model(coords={"city": CITIES}) as m:
        x = pm.Data("exposure", np.array([1.0, 2.0, 3.0]), dims="city")
        effect = pm.Normal("effect", 0, 1, dims="city")
        sigma = pm.HalfNormal("sigma", 1)
        pm.Deterministic("scaled", 2 * effect, dims="city")
        observed = pm.Data("y_obs", OBSERVED, dims="city") if observed_container else OBSERVED
        pm.Normal("y", effect * x, sigma, observed=observed, dims="city")
    return m


def sample(trace, **kwargs):
    with model(observed_container=not isinstance(trace, TraceBackend)):
        return pm.sample(
            tune=TUNE, draws=DRAWS, chains=2, cores=1, trace=trace, random_seed=7,
            progressbar=False, compute_convergence_checks=False, **kwargs,
        )  # fmt: skip


def backends(tmp_path):
    yield "numpy", mcb.NumPyBackend()
    yield "zarr", mcb.ZarrBackend(str(tmp_path / "zarr"))
    yield "parquet", mcb.ParquetBackend(str(tmp_path / "parquet"))


@pytest.fixture(params=["numpy", "zarr", "parquet", "clickhouse"])
def backend(request, tmp_path):
    if request.param == "clickhouse":
        database = request.getfixturevalue("clickhouse_database")
        from .test_backend_clickhouse import connect

        return mcb.ClickHouseBackend(connect(database))
    return dict(backends(tmp_path))[request.param]


def check_run(run, idata, observed_name="y"):
    """The stored run holds what PyMC returned, split into warm-up and posterior."""
    dt = run.to_inferencedata()
    assert dt["posterior"].sizes == {"chain": 2, "draw": DRAWS, "city": 3}
    assert dt["warmup_posterior"].sizes["draw"] == TUNE
    for name in ["effect", "sigma", "scaled"]:
        np.testing.assert_array_equal(dt["posterior"][name].values, idata.posterior[name].values)
    assert dt["posterior"]["effect"].dims == ("chain", "draw", "city")
    assert list(dt["posterior"]["city"].values) == CITIES
    np.testing.assert_array_equal(dt["constant_data"]["exposure"].values, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(dt["observed_data"][observed_name].values, OBSERVED)
    assert dt["observed_data"][observed_name].dims == ("city",)
    stats = dt["sample_stats"]
    np.testing.assert_array_equal(stats["diverging"].values, idata.sample_stats["diverging"].values)


def test_pm_sample_into_every_backend(backend):
    before = set(backend.get_runs().rid)  # the ClickHouse database is shared by tests
    idata = sample(backend)
    (rid,) = set(backend.get_runs().rid) - before
    check_run(backend.get_run(rid), idata)


def test_trace_backend_into_every_backend(backend):
    trace = TraceBackend(backend, verbose=False)
    idata = sample(trace)
    check_run(backend.get_run(trace.run_id), idata)


def test_each_pm_sample_stores_a_new_run():
    backend = mcb.NumPyBackend()
    trace = TraceBackend(backend, verbose=False)
    first_id = trace.run_id
    first = sample(trace)
    second = sample(trace)
    assert trace.run_id != first_id
    assert set(backend.get_runs().rid) == {first_id, trace.run_id}
    check_run(backend.get_run(first_id), first)
    check_run(backend.get_run(trace.run_id), second)


def test_compound_step_and_var_names(tmp_path):
    """Two step methods (stats of both samplers, object stats as JSON) and a subset of variables."""
    backend = mcb.ZarrBackend(str(tmp_path))
    trace = TraceBackend(backend, verbose=False)
    with pm.Model():
        rate = pm.HalfNormal("rate", 2)
        count = pm.Poisson("count", rate)
        pm.Deterministic("twice", 2 * count)
        idata = pm.sample(
            tune=30, draws=20, chains=2, cores=1, trace=trace, random_seed=3, var_names=["count"],
            progressbar=False, compute_convergence_checks=False, discard_tuned_samples=False,
        )  # fmt: skip
    run = backend.get_run(trace.run_id)
    assert [v.name for v in run.meta.variables] == ["count"]
    stats = {v.name for v in run.meta.sample_stats}
    assert {"sampler_0__diverging", "sampler_1__accept", "in_warmup"} <= stats
    dt = run.to_inferencedata()
    np.testing.assert_array_equal(dt["posterior"]["count"].values, idata.posterior["count"].values)
    np.testing.assert_array_equal(
        dt["warmup_posterior"]["count"].values, idata.warmup_posterior["count"].values
    )
    warnings = run.get_chains()[0].get_stats("sampler_0__warning")  # JSON text
    assert len(warnings) == 50
    assert all(w == "null" or json.loads(w)["kind"] in WARNING_KINDS for w in warnings)
    # NUTS inside a CompoundStep does not report model_logp: stored as 0, as PyMC's own trace
    assert (run.get_chains()[0].get_stats("sampler_0__model_logp") == 0).all()


def test_compound_step_into_bare_backend():
    """PyMC's own adapter passes only the stats a sampler reported; the rest are stored as 0,
    as PyMC's default trace holds them."""
    backend = mcb.NumPyBackend()
    with pm.Model():
        rate = pm.HalfNormal("rate", 2)
        pm.Poisson("count", rate)
        idata = pm.sample(
            tune=10, draws=10, chains=1, trace=backend, random_seed=3, progressbar=False,
            compute_convergence_checks=False,
        )  # fmt: skip
    (chain,) = backend.get_run(backend.get_runs().rid.iloc[0]).get_chains()
    np.testing.assert_array_equal(chain.get_draws("count")[10:], idata.posterior["count"][0])
    assert (chain.get_stats("sampler_0__model_logp") == 0).all()


@pytest.mark.parametrize("include_transformed", [False, True])
def test_transformed_values_only_on_request(include_transformed):
    backend = mcb.NumPyBackend()
    trace = TraceBackend(backend, verbose=False)
    idata = sample(trace, idata_kwargs={"include_transformed": include_transformed})
    run = backend.get_run(trace.run_id)
    names = [v.name for v in run.meta.variables]
    assert ("sigma_log__" in names) == include_transformed
    assert ("sigma_log__" in idata.posterior) == include_transformed
    if include_transformed:
        stored = run.to_inferencedata()["posterior"]["sigma_log__"].values
        np.testing.assert_array_equal(stored, idata.posterior["sigma_log__"].values)


def test_trace_backend_records_run_id_and_attributes(tmp_path, capsys):
    trace = TraceBackend(mcb.ZarrBackend(str(tmp_path)))
    rid = trace.run_id  # known before sampling, as in the seed's README
    idata = sample(trace)
    assert trace.run_id == rid
    assert f"storing run {rid}" in capsys.readouterr().out
    run = mcb.open_run(str(tmp_path / trace.run_id))
    check_run(run, idata)
    attrs = run.to_inferencedata().attrs
    assert attrs["inference_library"] == "pymc"
    assert attrs["pymc_version"] == pm.__version__
    assert (attrs["tune"], attrs["draws"], attrs["chains"]) == (TUNE, DRAWS, 2)
    assert attrs["sampler"] == "NUTS"
    assert attrs["created_at"].startswith("20")


@pytest.mark.parametrize("fmt", ["zarr", "parquet"])
def test_run_is_written_when_pm_sample_returns(tmp_path, fmt):
    """Chains finished early are written in the background; the last close waits for all."""
    backend = {"zarr": mcb.ZarrBackend, "parquet": mcb.ParquetBackend}[fmt](str(tmp_path))
    trace = TraceBackend(backend, verbose=False)
    mtrace = sample(trace, return_inferencedata=False)
    run = mcb.open_run(str(tmp_path / trace.run_id))  # from storage, not the writing handles
    assert [len(c) for c in run.get_chains()] == [TUNE + DRAWS] * 2
    stored = run.get_chains()[1].get_draws("sigma", slice(TUNE, None))
    np.testing.assert_array_equal(stored, mtrace.get_values("sigma", chains=[1]))
    # Reading the returned trace: windows on the stored chains, warm-up already dropped.
    assert len(mtrace) == DRAWS
    assert mtrace.point(0)["effect"].shape == (3,)


@pytest.mark.s3
def test_sample_to_s3_then_reopen_in_fresh_process(s3_bucket, s3_options):
    trace = TraceBackend(mcb.ZarrBackend(f"{s3_bucket}/runs", s3_options))
    idata = sample(trace)
    url = f"{s3_bucket}/runs/{trace.run_id}"
    code = (
        "import json, sys, mcbackend as mcb\n"
        "run = mcb.open_run(sys.argv[1], json.loads(sys.argv[2]))\n"
        "dt = run.to_inferencedata()\n"
        "print(json.dumps(dt['posterior']['effect'].values.tolist()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, url, json.dumps(s3_options)],
        capture_output=True, text=True, check=True, env={**os.environ},
    )  # fmt: skip
    np.testing.assert_array_equal(json.loads(out.stdout), idata.posterior["effect"].values)


def test_bad_backends_fail_before_sampling(tmp_path):
    backend = mcb.ZarrBackend(str(tmp_path))
    sample(TraceBackend(backend, run_id="taken", verbose=False))
    with pytest.raises(ValueError, match="'taken' already exists"):
        sample(TraceBackend(backend, run_id="taken", verbose=False))
    closed = mcb.ZarrBackend(str(tmp_path))
    closed.close()
    with pytest.raises(RuntimeError, match="is closed"):
        sample(closed)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError, match="Cannot write the run"):
        sample(mcb.ZarrBackend(str(blocker / "runs")))
    assert len(mcb.ZarrBackend(str(tmp_path)).get_runs()) == 1


def test_parallel_chains_into_zarr(tmp_path):
    """PyMC's default on multi-core machines: chains in worker processes, recorded here."""
    backend = mcb.ZarrBackend(str(tmp_path))
    with model(observed_container=True):
        idata = pm.sample(
            tune=TUNE, draws=DRAWS, chains=2, cores=2, trace=backend, random_seed=3,
            progressbar=False, compute_convergence_checks=False,
        )  # fmt: skip
    check_run(backend.get_run(backend.get_runs().rid.iloc[0]), idata)


def test_stage_draws_is_a_deprecated_name_of_flush_every():
    trace = TraceBackend(mcb.NumPyBackend(), verbose=False)
    with pytest.warns(DeprecationWarning, match="'stage_draws' is deprecated; use 'flush_every'"):
        trace.stage_draws = 5
    assert trace.flush_every == 5
    with pytest.warns(DeprecationWarning, match="'stage_seconds' is deprecated"):
        assert trace.stage_seconds == trace.flush_seconds == 1.0


def test_pm_sample_settings_are_found_in_this_pymc():
    """TraceBackend reads what PyMC does not hand a trace (tune/draw split, chains, step methods,
    var_names, idata_kwargs) from the arguments of PyMC's init_traces and pm.sample. When a PyMC
    release moves them, sampling here raises PyMCVersionWarning naming that PyMC version."""
    backend = mcb.NumPyBackend()
    trace = TraceBackend(backend, verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PyMCVersionWarning)
        sample(trace, var_names=["effect", "scaled"], idata_kwargs={"include_transformed": True})
    run = backend.get_run(trace.run_id)
    attrs = run.to_inferencedata().attrs
    assert (attrs["tune"], attrs["draws"], attrs["chains"]) == (TUNE, DRAWS, 2)
    assert attrs["sampler"] == "NUTS"
    assert [v.name for v in run.meta.variables] == ["effect", "scaled"]  # var_names
    stats = {s.name: s for s in run.meta.sample_stats}
    assert not stats["sampler_0__step_size"].undefined_ndim  # shapes from the step method
    assert len(run.get_chains()) == 2


def test_changed_pymc_warns_naming_its_version():
    """A pm.sample that no longer calls init_traces (as a future PyMC might): the run is still
    stored, with what the trace alone knows, and the warning says which PyMC it is."""
    namespace = {"__name__": "pymc.sampling.mcmc"}
    exec("def sample(trace, m):\n    with m:\n        trace.setup(10, 0, [])\n", namespace)
    trace = TraceBackend(mcb.NumPyBackend(), verbose=False)
    with pytest.warns(PyMCVersionWarning, match=f"PyMC {pm.__version__} no longer passes"):
        namespace["sample"](trace, model(observed_container=False))
    assert trace.run is not None
    assert "tune" not in trace.run.meta.attributes
    assert [v.name for v in trace.run.meta.variables] == ["effect", "sigma", "scaled"]


def test_changed_pymc_warns_for_bare_backend_too():
    """pm.sample(trace=backend) reads pm.sample's settings in the same place: PyMC's adapter
    called by a pm.sample that no longer calls init_traces warns naming the PyMC version, and
    the run is still created with the adapter's model data and without the tune/draw counts."""
    from pymc.backends.mcbackend import make_runmeta_and_point_fn

    adapter = {"__name__": "pymc.backends.mcbackend"}
    code = (
        "def init_chain_adapters(backend, meta, model, step):\n    return backend.init_run(meta)\n"
    )
    exec(code, adapter)
    pm_sample = {"__name__": "pymc.sampling.mcmc", "adapters": adapter["init_chain_adapters"]}
    code = (
        "def sample(backend, meta, model, step):\n    return adapters(backend, meta, model, step)\n"
    )
    exec(code, pm_sample)
    m = model(observed_container=False)
    with m:
        step = pm.NUTS()
    meta, _ = make_runmeta_and_point_fn(initial_point=m.initial_point(), step=step, model=m)
    with pytest.warns(PyMCVersionWarning, match=f"PyMC {pm.__version__} no longer passes"):
        run = pm_sample["sample"](mcb.NumPyBackend(), meta, m, step)
    assert "tune" not in run.meta.attributes
    assert "pymc_version" in run.meta.attributes
    assert {d.name for d in run.meta.data} == {"exposure", "y"}


def funnel() -> pm.Model:
    """Neal's funnel: NUTS diverges here within a few draws."""
    with pm.Model() as m:
        v = pm.Normal("v", 0, 3)
        pm.Normal("x", 0, pm.math.exp(v / 2), shape=5)
    return m


def warning_summary(warnings) -> list:
    return [None if w is None else (w.kind.name, w.message, w.step) for w in warnings.ravel()]


@pytest.mark.parametrize("how", ["trace", "bare"])
def test_warnings_stored_as_json_and_given_to_pymc_as_objects(tmp_path, how):
    """Storage holds the warning's fields as JSON text (no pickles); PyMC, during pm.sample,
    still gets its SamplerWarning objects (``keep_warning_stat=True`` returns them)."""
    kwargs = dict(
        tune=20, draws=30, chains=2, cores=1, random_seed=5, nuts_sampler="pymc",
        progressbar=False, compute_convergence_checks=False, keep_warning_stat=True,
        discard_tuned_samples=False,
    )  # fmt: skip
    with funnel():
        expected = pm.sample(**kwargs)
    backend = mcb.ZarrBackend(str(tmp_path))
    trace = TraceBackend(backend, verbose=False) if how == "trace" else backend
    with funnel():
        idata = pm.sample(trace=trace, **kwargs)
    want = [
        [warning_summary(expected[g]["warning"].values[c]) for c in range(2)]
        for g in ("warmup_sample_stats", "sample_stats")
    ]
    got = [
        [warning_summary(idata[g]["warning"].values[c]) for c in range(2)]
        for g in ("warmup_sample_stats", "sample_stats")
    ]
    assert got == want
    (rid,) = backend.get_runs().rid
    found = []
    for c, chain in enumerate(mcb.open_run(str(tmp_path / rid)).get_chains()):
        # PyMC's adapter declares the stat of undefined shape: per-draw str arrays then
        texts = [str(text) for text in chain.get_stats("sampler_0__warning")]
        plain = [json.loads(text) for text in texts]  # strict JSON, as any language reads it
        summary = [None if w is None else (w["kind"], w["message"], w["step"]) for w in plain]
        assert summary == want[0][c] + want[1][c]
        found += [w for w in plain if w is not None]
    assert found, "the funnel did not diverge"
    divergence = found[0]
    assert {"kind", "message", "level", "step", "divergence_info"} <= divergence.keys()
