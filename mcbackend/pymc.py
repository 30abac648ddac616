"""PyMC integration: ``pm.sample(trace=TraceBackend(backend))``.

PyMC >= 6 adapts any ``mcbackend.Backend`` itself (``pm.sample(trace=backend)``). Wrapping the
backend in ``TraceBackend`` adds what a user wants to find afterwards: the run id, and run
attributes naming the sampler, library versions, creation time and tune/draw counts.
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from .core import Backend, Run
from .inferencedata import python_to_extended_value
from .meta import DataVariable, RunMeta
from .npproto.utils import ndarray_from_numpy

__all__ = ["TraceBackend"]

_LIBRARIES = ("mcbackend", "pymc", "pytensor", "numpy", "arviz")


class TraceBackend(Backend):
    """Wraps ``backend`` for ``pm.sample(trace=...)`` and remembers the run it stores.

    ``run_id`` names the run (PyMC otherwise picks a random id).
    """

    def __init__(
        self, backend: Backend, *, run_id: str | None = None, verbose: bool = True
    ) -> None:
        if isinstance(backend, TraceBackend):
            backend = backend.backend
        self.backend = backend
        self.requested_run_id = run_id
        self.verbose = verbose
        self.run: Run | None = None

    @property
    def run_id(self) -> str | None:
        """Id of the run stored by the last ``pm.sample`` (``None`` before sampling)."""
        return self.run.meta.rid if self.run is not None else None

    @property
    def closed(self) -> bool:
        return self.backend.closed

    def init_run(self, meta: RunMeta) -> Run:
        if self.requested_run_id:
            meta.rid = self.requested_run_id
        for key, value in run_attributes().items():
            meta.attributes.setdefault(key, python_to_extended_value(value))
        meta.data.extend(observed_arrays(meta))
        self.run = self.backend.init_run(meta)
        if self.verbose:
            where = getattr(self.run, "url", None) or type(self.backend).__name__
            print(f"mcbackend: storing run {meta.rid} in {where}")
        return self.run

    def get_run(self, rid: str) -> Run:
        return self.backend.get_run(rid)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)


def observed_arrays(meta: RunMeta) -> list[DataVariable]:
    """Observed data given to PyMC as plain arrays (PyMC records only ``pm.Data`` containers)."""
    try:
        import pymc as pm
        from pytensor.graph.basic import Constant

        model = pm.modelcontext(None)
    except (ImportError, TypeError):
        return []
    known = {d.name for d in meta.data}
    found = []
    for rv in model.observed_RVs:
        value = model.rvs_to_values.get(rv)
        if rv.name in known or not isinstance(value, Constant):
            continue
        dims = list(model.named_vars_to_dims.get(rv.name) or [])
        found.append(DataVariable(rv.name, ndarray_from_numpy(value.data), dims, True))
    return found


def run_attributes() -> dict[str, Any]:
    """Attributes describing a PyMC run: sampler, versions, time, tune/draw counts."""
    attrs: dict[str, Any] = {
        "created_at": datetime.datetime.now(datetime.UTC),
        "inference_library": "pymc",
        "python_version": platform.python_version(),
    }
    for lib in _LIBRARIES:
        with contextlib.suppress(PackageNotFoundError):
            attrs[f"{lib}_version"] = version(lib)
    attrs.update(_sampling_arguments())
    return attrs


def _sampling_arguments() -> dict[str, Any]:
    """``tune``, ``draws``, ``chains`` and the step method from the calling ``pm.sample``.

    PyMC does not pass these to backends, so they are read from the ``sample`` frame on the
    call stack; nothing is recorded when it is not there.
    """
    found: dict[str, Any] = {}
    for frame_info in inspect.stack(context=0):
        frame = frame_info.frame
        if frame.f_code.co_name != "sample" or "pymc" not in frame.f_code.co_filename:
            continue
        local = frame.f_locals
        for key in ("tune", "draws", "chains"):
            if isinstance(local.get(key), int):
                found[key] = local[key]
        step = local.get("step")
        if step is not None:
            methods = getattr(step, "methods", [step])
            found["sampler"] = ", ".join(type(m).__name__ for m in methods)
        break
    return found
