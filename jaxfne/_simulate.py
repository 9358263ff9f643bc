"""The host driver: chunking, transfer, progress and errors around a pure step."""

from __future__ import annotations

import functools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._errors import SimulationError
from ._fields import csd_proxy, lfp_proxy
from ._model import Layout, Model, construct, precision
from ._network import initial_state
from ._signals import build_signals
from ._step import step

#: default chunk length when the caller gives none
DEFAULT_CHUNK_STEPS = 10_000


@functools.lru_cache(maxsize=64)
def chunk_function(probes: tuple, contact_spacing_um: float, n_steps: int):
    """A jitted function advancing a batch of networks by ``n_steps``.

    Cached on what fixes the program, so repeated runs and numeric sweeps of the
    same shapes reuse one compilation.
    """
    need_source = any(p in probes for p in ("source", "LFP-proxy", "CSD-proxy"))

    def run_chunk(state, params, t0):
        batched_step = jax.vmap(step, in_axes=(0, 0, None))

        def body(st, k):
            st, obs = batched_step(st, params, (t0 + k).astype(jnp.uint32))
            keep = {"SPK": obs["SPK"]}
            if "Vm" in probes:
                keep["Vm"] = obs["Vm"]
            if need_source:
                keep["source"] = obs["source"]
            return st, keep

        state, obs = lax.scan(body, state, jnp.arange(n_steps, dtype=jnp.int32))
        out = {k: jnp.swapaxes(v, 0, 1) for k, v in obs.items()}   # (B, T, ...)
        if "LFP-proxy" in probes or "CSD-proxy" in probes:
            lfp = lfp_proxy(out["source"], params.lfp_kernel)
            if "LFP-proxy" in probes:
                out["LFP-proxy"] = lfp
            if "CSD-proxy" in probes:
                out["CSD-proxy"] = csd_proxy(lfp, contact_spacing_um)
        if "source" not in probes:
            out.pop("source", None)
        finite = jnp.all(jnp.isfinite(state.v), axis=-1) & jnp.all(jnp.isfinite(state.u), axis=-1)
        return state, out, finite

    return jax.jit(run_chunk, donate_argnums=(0,))


def resolve_overrides(model: Model, duration_ms=None, dt_ms=None, seed=None) -> Model:
    """Apply simulate()'s runtime overrides by constructing again when they differ."""
    rt = model.config.runtime_spec
    changes = {k: v for k, v in (("duration_ms", duration_ms), ("dt_ms", dt_ms), ("seed", seed))
               if v is not None and v != getattr(rt, k)}
    if not changes:
        return model
    if model.ensemble and "seed" in changes:
        raise SimulationError("simulate: seed= cannot override the seeds of an ensemble; set them in ensemble(seeds=...)")
    cfg = model.config.runtime(**changes)
    if model.ensemble:
        from ._ensemble import construct_ensemble
        return construct_ensemble(cfg)
    return construct(cfg)


def simulate(model: Model, duration_ms=None, dt_ms=None, seed=None, *, chunk_ms=None, store=None,
             overwrite=False, progress=False):
    """Run ``model`` and return its Signals.

    ``duration_ms``, ``dt_ms`` and ``seed`` override the configuration's runtime
    (the model is constructed again with them). ``chunk_ms`` sets how much
    simulated time one compiled call advances. With ``store=PATH`` the outputs
    stream chunk by chunk into a Zarr v3 store (resuming an interrupted run
    there) and lazily backed Signals are returned.
    """
    if not isinstance(model, Model):
        raise SimulationError(f"simulate: model={type(model).__name__} is invalid; pass the result of jaxfne.construct")
    model = resolve_overrides(model, duration_ms, dt_ms, seed)
    layout: Layout = model.layout
    chunk_steps = _chunk_steps(layout, chunk_ms)
    if store is not None:
        from ._stream import simulate_to_store
        with precision(layout.dtype):
            return simulate_to_store(model, store, chunk_steps, overwrite=overwrite, progress=progress)
    with precision(layout.dtype):
        arrays = _run_in_memory(model, chunk_steps, progress)
    return build_signals(arrays, model, squeeze_member=not model.ensemble)


def _chunk_steps(layout: Layout, chunk_ms) -> int:
    if chunk_ms is None:
        return min(layout.n_steps, DEFAULT_CHUNK_STEPS)
    if isinstance(chunk_ms, bool) or not isinstance(chunk_ms, (int, float)) or not math.isfinite(chunk_ms) or chunk_ms <= 0:
        raise SimulationError(f"simulate: chunk_ms={chunk_ms!r} is invalid; a positive number of ms is required")
    steps = chunk_ms / layout.dt_ms
    if abs(steps - round(steps)) > 1e-6 * max(1.0, steps) or round(steps) < 1:
        raise SimulationError(f"simulate: chunk_ms={chunk_ms!r} is invalid; it must be a whole number of steps of dt_ms={layout.dt_ms}")
    return min(int(round(steps)), layout.n_steps)


def run_chunks(model: Model, chunk_steps: int, *, start_step: int = 0, state=None):
    """Advance ``model`` chunk by chunk; a generator of per-chunk results.

    Yields ``(t0, n_keep, outputs, state)`` for each chunk: ``t0`` is the global
    index of the chunk's first step, ``n_keep`` how many of its ``chunk_steps``
    steps are inside the run (the last chunk may overrun and is trimmed),
    ``outputs`` a dict probe -> device array (members, chunk_steps, ...) and
    ``state`` the NetState after the chunk (members leading). Only real members
    are returned. Chunk k+1 is dispatched before chunk k is yielded, so the
    device computes while the caller transfers and writes.

    ``state`` (a NetState of host or device arrays) and ``start_step`` resume a
    run from a chunk boundary; by default the run starts from the initial state.
    """
    layout = model.layout
    fn = chunk_function(layout.probes, layout.contact_spacing_um, chunk_steps)
    params = model.params
    if state is None:
        state = jax.vmap(initial_state)(params)
    else:
        state = jax.tree_util.tree_map(jnp.asarray, state)
    t0 = start_step
    pending = None
    while t0 < layout.n_steps:
        state, out, finite = fn(state, params, jnp.int32(t0))
        current = (t0, min(chunk_steps, layout.n_steps - t0), out, state, finite)
        if pending is not None:
            yield _finish(model, pending)
        pending = current
        t0 += chunk_steps
    if pending is not None:
        yield _finish(model, pending)


def _finish(model, pending):
    t0, keep, out, state, finite = pending
    finite = np.asarray(finite)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        warnings.warn(f"simulate: non-finite membrane state in member(s) {bad[:10].tolist()} by step "
                      f"{t0 + keep}; reduce dt_ms (e.g. 0.01), use dtype='float64', or check the Izhikevich "
                      "parameters", RuntimeWarning, stacklevel=4)
    return t0, keep, out, state


def _run_in_memory(model: Model, chunk_steps: int, progress) -> dict:
    layout = model.layout
    pieces: dict[str, list] = {}
    for t0, keep, out, _state in run_chunks(model, chunk_steps):
        for name, arr in out.items():
            pieces.setdefault(name, []).append(np.asarray(arr)[:, :keep])
        if progress:
            print(f"\rjaxfne: {(t0 + keep) * layout.dt_ms:.0f}/{layout.n_steps * layout.dt_ms:.0f} ms",
                  end="", flush=True)
    if progress:
        print()
    return {name: np.concatenate(parts, axis=1) for name, parts in pieces.items()}
