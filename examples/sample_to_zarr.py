"""The main job: sample a small PyMC model straight into a local Zarr archive, reopen it
from its path, and print its ArviZ summary.

    python examples/sample_to_zarr.py [ROOT]      (default ROOT: ./demo-runs)
"""

import sys

import arviz as az
import numpy as np
import pymc as pm

import mcbackend as mcb
from mcbackend.pymc import TraceBackend


def main(root: str = "demo-runs") -> None:
    rng = np.random.default_rng(2026)
    cities = ["Aachen", "Bonn", "Köln"]
    exposure = np.array([1.0, 2.0, 3.0])
    observed = rng.normal(exposure * [0.5, -0.2, 1.0], 0.3)

    with pm.Model(coords={"city": cities}):
        x = pm.Data("exposure", exposure, dims="city")
        effect = pm.Normal("effect", 0, 1, dims="city")
        sigma = pm.HalfNormal("sigma", 1)
        pm.Deterministic("scaled", 2 * effect, dims="city")
        pm.Normal("y", effect * x, sigma, observed=observed, dims="city")
        trace = TraceBackend(mcb.ZarrBackend(root))
        pm.sample(tune=500, draws=500, chains=2, trace=trace, random_seed=1, progressbar=False)

    url = f"{root}/{trace.run_id}"
    run = mcb.open_run(url)
    print(f"\nRun {run.meta.rid} stored at {url}; chains: {[len(c) for c in run.get_chains()]}")
    print(az.summary(run.to_inferencedata(), ci_kind="hdi"))


if __name__ == "__main__":
    main(*sys.argv[1:])
