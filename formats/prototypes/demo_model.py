"""The prototypes' demo model and its deterministic draws (imports numpy only)."""

import numpy as np

VARIABLES = [  # (name, dtype, shape, dims)
    ("mu", "float64", (), ()),
    ("theta", "float64", (8,), ("school",)),
    ("z", "float32", (20, 20), ("z_dim_0", "z_dim_1")),
]
STATS = [("tune", "bool", (), ()), ("lp", "float64", (), ()), ("diverging", "bool", (), ())]
COORDS = {
    "school": [f"s{i}" for i in range(8)],
    "z_dim_0": list(range(20)),
    "z_dim_1": list(range(20)),
}
WARMUP_STAT = "tune"


def synthetic_chain(chain: int, tune: int, draws: int):
    """An AR(1) series per value, so ESS and R-hat are meaningful."""
    rng = np.random.default_rng(chain)
    n = tune + draws

    def ar(shape):
        x = np.empty((n, *shape))
        x[0] = rng.normal(size=shape)
        for i in range(1, n):
            x[i] = 0.5 * x[i - 1] + np.sqrt(0.75) * rng.normal(size=shape)
        return x

    values = {name: ar(shape).astype(dtype) for name, dtype, shape, _ in VARIABLES}
    stats = {"tune": np.arange(n) < tune, "lp": ar(()), "diverging": np.zeros(n, bool)}
    return values, stats
