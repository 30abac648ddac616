import numpy as np
import pytest

emcee = pytest.importorskip("emcee")

import mcbackend as mcb  # noqa: E402
from mcbackend.emcee import sample_emcee, store_emcee  # noqa: E402


def log_prob(theta):
    return -0.5 * np.sum((theta - np.array([1.0, -1.0, 0.5])) ** 2)


@pytest.mark.parametrize("kind", ["numpy", "zarr", "parquet"])
def test_emcee_walkers_as_chains(kind, tmp_path):
    backend = {
        "numpy": mcb.NumPyBackend,
        "zarr": lambda: mcb.ZarrBackend(str(tmp_path)),
        "parquet": lambda: mcb.ParquetBackend(str(tmp_path)),
    }[kind]()
    rng = np.random.default_rng(1)
    sampler = emcee.EnsembleSampler(6, 3, log_prob)
    run = sample_emcee(
        sampler, rng.normal(size=(6, 3)), 50, backend, tune=10,
        variables={"mu": (), "tau": (2,)}, dims={"tau": ["k"]}, coords={"k": ["a", "b"]},
    )  # fmt: skip
    if kind != "numpy":
        run = mcb.open_run(f"{tmp_path}/{run.meta.rid}")
    dt = run.to_inferencedata()
    chain = sampler.get_chain()  # (steps, walkers, ndim)
    assert dt["posterior"].sizes == {"chain": 6, "draw": 40, "k": 2}
    np.testing.assert_array_equal(dt["posterior"]["mu"].values, chain[10:, :, 0].T)
    np.testing.assert_array_equal(
        dt["posterior"]["tau"].values, chain[10:, :, 1:].transpose(1, 0, 2)
    )
    np.testing.assert_array_equal(
        dt["sample_stats"]["log_prob"].values, sampler.get_log_prob()[10:].T
    )
    accepted = dt["sample_stats"]["accepted"].values.sum(axis=1) + dt["warmup_sample_stats"][
        "accepted"
    ].values.sum(axis=1)
    np.testing.assert_array_equal(accepted, np.round(sampler.acceptance_fraction * 50))
    assert dt.attrs["inference_library"] == "emcee"


def test_store_finished_sampler_and_bad_variables():
    sampler = emcee.EnsembleSampler(6, 3, log_prob)
    sampler.run_mcmc(np.random.default_rng(2).normal(size=(6, 3)), 20)
    run = store_emcee(sampler, mcb.NumPyBackend())  # each walker's steps as one batch
    np.testing.assert_array_equal(run.get_chains()[2].get_draws("theta"), sampler.get_chain()[:, 2])
    stored = np.array([c.get_stats("accepted") for c in run.get_chains()])  # (walkers, steps)
    assert stored[:, 0].all()  # the first step's start is unknown: counted as accepted
    assert (stored[:, 1:].sum(axis=1) <= sampler.backend.accepted).all()
    assert (sampler.backend.accepted <= stored.sum(axis=1)).all()
    with pytest.raises(ValueError, match="hold 2 values, but the sampler has ndim=3"):
        store_emcee(sampler, mcb.NumPyBackend(), variables={"a": (2,)})
