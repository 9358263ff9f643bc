"""The public entry points: ``construct``, ``simulate``, ``open_signals``, and the ``Model`` users hold.

The top of the package's core: it picks a sink (memory or a Zarr store),
runs the driver into it and wraps the result in ``Signals``.
"""

from __future__ import annotations

import numpy as np

from ._errors import SimulationError
from .engine import default_devices, drive, local_member_indices, process_blocks, resolve_engine
from .engine import chunk_steps as _chunk_steps
from .model import Model as _BaseModel
from .model import construct as _construct
from .model import check_run, precision, with_runtime
from .results import Signals, check_health, compute_readout, manifest
from .sinks import MemorySink, build_dataset, simulate_to_store


class Model(_BaseModel):
    """A constructed model (see ``jaxfne.model.Model``) with the tutorial page's conveniences."""

    def compute_readout(self, signals, specs):
        return compute_readout(signals, specs)

    def manifest(self, signals=None, readouts=None):
        return manifest(self, signals=signals, readouts=readouts)

    def health(self, signals):
        return check_health(signals)


def construct(cfg) -> Model:
    """Turn a configuration into a Model (arrays on the default device)."""
    base = _construct(cfg)
    return Model(**{f: getattr(base, f) for f in base.__dataclass_fields__})


def simulate(model: Model, duration_ms=None, dt_ms=None, seed=None, *, chunk_ms=None, store=None,
             overwrite=False, progress=False, devices=None, engine="auto"):
    """Run ``model`` and return its Signals.

    ``duration_ms``, ``dt_ms`` and ``seed`` override the configuration's runtime
    (``jaxfne.model.with_runtime``: the one place a model's runtime is replaced). ``chunk_ms`` sets how much
    simulated time one compiled call advances. With ``store=PATH`` the outputs
    stream chunk by chunk into a Zarr v3 store (resuming an interrupted run
    there) and lazily backed Signals are returned. The member axis is sharded
    over ``devices`` (default: every device JAX sees, but no more devices than
    members on a single process). ``engine`` picks the implementation of the
    step (docs/engines.md): "xla" (the pure JAX step, every platform),
    "native" (the fused C++ CPU kernel) or "auto" (native on CPU devices when
    it builds, else xla).

    Before anything is placed on a device the run's memory is estimated
    (parameters, state, two chunks of outputs, and without a store the whole
    run's arrays) and a run that cannot fit is refused with a SimulationError
    naming the estimate and the remedy (docs/troubleshooting.md).
    """
    if not isinstance(model, _BaseModel):
        raise SimulationError(f"simulate: model={type(model).__name__} is invalid; pass the result of jaxfne.construct")
    model = with_runtime(model, duration_ms, dt_ms, seed)
    layout = model.layout
    if devices is None:
        devices = default_devices(model.n_members)
    engine = resolve_engine(engine, devices, layout)
    chunk_steps = _chunk_steps(layout, chunk_ms, model.n_members)
    members = local_member_indices(model, devices)
    # before anything is placed: refuse a run that cannot fit (model/_size.py, docs/troubleshooting.md)
    check_run(model, chunk_steps, devices, engine=engine, in_memory=store is None, n_local=len(members))
    if store is not None:
        with precision(layout.dtype):
            return Signals(simulate_to_store(model, store, chunk_steps, overwrite=overwrite, progress=progress,
                                             devices=devices, engine=engine, manifest=manifest(model),
                                             **process_blocks(model, devices)))
    sink = MemorySink(model, progress)
    with precision(layout.dtype):
        drive(model, sink, chunk_steps, devices=devices, engine=engine)
    full_finite = np.ones(model.n_members, bool)
    full_finite[members] = sink.finite
    ds = build_dataset(sink.arrays, model, squeeze_member=not model.ensemble, members=members,
                       state_finite=full_finite)
    ds.attrs["engine"] = engine
    return Signals(ds, events=None if sink.events is None else sink.events.with_members(members))
