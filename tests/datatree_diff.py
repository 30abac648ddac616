"""One exhaustive comparison of two DataTrees: every difference, not just the first."""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import xarray as xr

#: Attributes that hold the time of conversion or sampling: their values differ by nature.
TIMING_ATTRS = frozenset({"created_at", "sampling_time"})
#: PyMC's sample stats that time each draw (compared but for their values).
TIMING_VARIABLES = frozenset({"perf_counter_diff", "perf_counter_start", "process_time_diff"})


def diff_datatrees(
    actual: xr.DataTree,
    expected: xr.DataTree,
    *,
    timing_attrs: Collection[str] = TIMING_ATTRS,
    timing_variables: Collection[str] = TIMING_VARIABLES,
    compare_root_attrs: bool = True,
) -> list[str]:
    """Every difference between ``actual`` and ``expected``: group set, and per group its
    variables and coordinates (names, dims, dtypes, shapes, values, attrs) and attrs. Values
    of ``timing_attrs`` and ``timing_variables`` are not compared (all else about them is)."""
    found: list[str] = []
    groups_a = {node.path: node for node in actual.subtree}
    groups_e = {node.path: node for node in expected.subtree}
    for path in sorted(groups_e.keys() - groups_a.keys()):
        found.append(f"group {path}: missing")
    for path in sorted(groups_a.keys() - groups_e.keys()):
        found.append(f"group {path}: unexpected")
    for path in sorted(groups_a.keys() & groups_e.keys()):
        ds_a = groups_a[path].to_dataset(inherit=False)
        ds_e = groups_e[path].to_dataset(inherit=False)
        if path != "/" or compare_root_attrs:
            found += _diff_attrs(f"{path} attrs", ds_a.attrs, ds_e.attrs, timing_attrs)
        found += _diff_variables(path, ds_a, ds_e, timing_variables)
    return found


def _diff_variables(
    path: str, ds_a: xr.Dataset, ds_e: xr.Dataset, timing: Collection[str]
) -> list[str]:
    found = []
    for kind, names_a, names_e in [
        ("variable", set(ds_a.data_vars), set(ds_e.data_vars)),
        ("coordinate", set(ds_a.coords), set(ds_e.coords)),
    ]:
        for name in sorted(names_e - names_a, key=str):
            found.append(f"{path}: {kind} {name!r} missing")
        for name in sorted(names_a - names_e, key=str):
            found.append(f"{path}: {kind} {name!r} unexpected")
        for name in sorted(names_a & names_e, key=str):
            where = f"{path}: {kind} {name!r}"
            found += _diff_variable(where, ds_a[name], ds_e[name], name not in timing)
    return found


def _diff_variable(where: str, a: xr.DataArray, e: xr.DataArray, values: bool) -> list[str]:
    found = []
    if a.dims != e.dims:
        found.append(f"{where}: dims {a.dims} != {e.dims}")
    if a.dtype != e.dtype:
        found.append(f"{where}: dtype {a.dtype} != {e.dtype}")
    if a.shape != e.shape:
        found.append(f"{where}: shape {a.shape} != {e.shape}")
    elif values and not _values_equal(a.values, e.values):
        found.append(f"{where}: values differ")
    found += _diff_attrs(f"{where} attrs", a.attrs, e.attrs, ())
    return found


def _values_equal(a: np.ndarray, e: np.ndarray) -> bool:
    if a.dtype.kind == "O" or e.dtype.kind == "O":
        return all(_same(x, y) for x, y in zip(a.ravel().tolist(), e.ravel().tolist()))
    try:
        return bool(np.array_equal(a, e, equal_nan=a.dtype.kind in "fc"))
    except TypeError:
        return bool(np.array_equal(a, e))


def _same(x, y) -> bool:
    if isinstance(x, float) and isinstance(y, float) and np.isnan(x) and np.isnan(y):
        return True
    return type(x) is type(y) and bool(np.all(x == y))


def _diff_attrs(where: str, a: dict, e: dict, timing: Collection[str]) -> list[str]:
    found = []
    for key in sorted(e.keys() - a.keys()):
        found.append(f"{where}: {key!r} missing")
    for key in sorted(a.keys() - e.keys()):
        found.append(f"{where}: {key!r} unexpected ({a[key]!r})")
    for key in sorted(a.keys() & e.keys()):
        if key in timing:
            continue
        va, ve = a[key], e[key]
        if type(va) is not type(ve) or not _attr_equal(va, ve):
            found.append(f"{where}: {key!r} is {va!r} ({type(va).__name__}), PyMC's {ve!r}")
    return found


def _attr_equal(a, e) -> bool:
    if isinstance(a, np.ndarray):
        return np.array_equal(a, e)
    return a == e
