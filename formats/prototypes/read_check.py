"""Open a prototype Zarr v2 run as a user without mcbackend would; check every value.

    python formats/prototypes/read_check.py URL [--storage-options JSON] [--mid-run]

mcbackend is made unimportable first, so nothing here can lean on it.
"""

import argparse
import importlib.abc
import json
import sys


class NoMcbackend(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "mcbackend" or name.startswith("mcbackend."):
            raise ImportError("mcbackend is blocked in this check")


sys.meta_path.insert(0, NoMcbackend())

import arviz as az
import numpy as np
import xarray as xr
from demo_model import synthetic_chain

parser = argparse.ArgumentParser()
parser.add_argument("url")
parser.add_argument("--storage-options", default="{}")
parser.add_argument("--chains", type=int, default=4)
parser.add_argument("--tune", type=int, default=200)
parser.add_argument("--draws", type=int, default=1000)
parser.add_argument("--mid-run", action="store_true")
args = parser.parse_args()
so = json.loads(args.storage_options)
kw = {"storage_options": so} if so else {}

tree = xr.open_datatree(args.url, engine="zarr", **kw)
print("groups:", sorted(tree.children))
post = tree["posterior"].to_dataset()
print("posterior:", dict(post.sizes), "coords:", list(post.coords), "attrs:", sorted(post.attrs))
print("theta dims:", post["theta"].dims, "school:", post["school"].values[:3].tolist())
if args.mid_run:
    mu = post["mu"].values
    print("mid-run mu shape", mu.shape, "non-NaN per chain:", (~np.isnan(mu)).sum(axis=1).tolist())
    sys.exit(0)
idata = az.from_zarr(args.url, **kw)
for c in range(args.chains):
    values, stats = synthetic_chain(c, args.tune, args.draws)
    for name, v in values.items():
        np.testing.assert_array_equal(idata["posterior"][name].values[c], v[args.tune :])
        np.testing.assert_array_equal(idata["warmup_posterior"][name].values[c], v[: args.tune])
    np.testing.assert_array_equal(idata["sample_stats"]["lp"].values[c], stats["lp"][args.tune :])
    np.testing.assert_array_equal(
        idata["warmup_sample_stats"]["tune"].values[c], stats["tune"][: args.tune]
    )
print(
    "all values equal the written draws: posterior, warmup_posterior, sample_stats, warmup_sample_stats"
)
print(az.summary(idata, var_names=["mu", "theta"]).head(4).to_string())
print(
    "ess(mu) =",
    float(az.ess(idata, var_names=["mu"])["mu"]),
    " rhat(mu) =",
    float(az.rhat(idata, var_names=["mu"])["mu"]),
)
print("mcbackend imported:", any(m.startswith("mcbackend") for m in sys.modules))
