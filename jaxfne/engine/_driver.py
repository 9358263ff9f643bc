"""The driver: the one host loop that advances a model chunk by chunk and hands each chunk to a sink.

``run_chunks`` dispatches chunk k+1 before handing chunk k over, so the
devices compute while the sink copies and writes; ``drive`` is the loop that
feeds a :class:`Sink` (memory, a Zarr store: jaxfne/sinks/) with
:class:`Chunk` s: start step, outputs, state and the device's finite flag.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from .._errors import SimulationError
from .._validate import parse_steps
from ..model import Layout, Model
from ._chunk import chunk_function, unpack_spikes, xla_variant
from ._mesh import _put, local_host, member_mesh, place_on_mesh

@dataclasses.dataclass
class Chunk:
    """One finished chunk, on the host: the real members this process holds, in member order.

    ``t0``: the global index of its first step; ``n_steps``: how many steps of
    it are inside the run (the last chunk is trimmed); ``outputs``: probe ->
    array (members, samples, ...) trimmed to those steps (spikes may still be
    bit-packed on accelerators: uint8, see ``unpack_spikes``); ``state``: the
    NetState after the chunk; ``finite``: per member, whether the membrane
    state (v, u) is finite after the chunk, computed on the device.
    """

    t0: int
    n_steps: int
    outputs: dict
    state: object
    finite: np.ndarray


class Sink(Protocol):
    """Where chunks go. ``put`` may block (back-pressure); ``close(ok)`` ends the run (``ok`` False: aborted).

    ``packed_spikes``: the sink takes bit-packed spikes as the device made them
    (it unpacks them itself, straight into its buffers).
    """

    packed_spikes: bool

    def put(self, chunk: Chunk) -> None: ...

    def close(self, ok: bool) -> None: ...


def drive(model: Model, sink: Sink, chunk_steps: int, *, start_step: int = 0, state=None, devices=None,
          engine: str = "xla") -> None:
    """The one loop: run ``model`` chunk by chunk from ``start_step`` (and ``state``) into ``sink``."""
    ok = False
    try:
        for chunk in run_chunks(model, chunk_steps, start_step=start_step, state=state, devices=devices,
                                engine=engine, unpack=not sink.packed_spikes):
            sink.put(chunk)
            del chunk                   # nothing here holds chunk k while chunk k+2 runs
        ok = True
    finally:
        sink.close(ok)


#: default chunk length when the caller gives none: at most this many steps ...
DEFAULT_CHUNK_STEPS = 10_000

#: ... and about this many bytes of recorded output per chunk (whole ensemble)
DEFAULT_CHUNK_BYTES = 64 * 2**20

def default_chunk_steps(layout: Layout, n_members: int) -> int:
    """Steps per chunk so that one chunk's outputs are about DEFAULT_CHUNK_BYTES.

    Each probe counts with what it records: SPK one byte per neuron and step,
    sampled probes only their neurons, every ``stride`` steps.
    """
    per_step = sum(layout.step_bytes(name) for name in layout.probes)
    steps = DEFAULT_CHUNK_BYTES // max(1, int(per_step * n_members))
    return int(min(DEFAULT_CHUNK_STEPS, max(100, steps)))

def _chunk_steps(layout: Layout, chunk_ms, n_members: int = 1) -> int:
    steps = _chunk_steps_unaligned(layout, chunk_ms, n_members)
    every = layout.sample_every
    if steps % every:
        if chunk_ms is not None:
            raise SimulationError(f"simulate: chunk_ms={chunk_ms!r} is invalid; it must be a multiple of the "
                                  f"probes' every_ms ({every * layout.dt_ms:g} ms)")
        steps = max(every, steps - steps % every)
    return steps

def _chunk_steps_unaligned(layout: Layout, chunk_ms, n_members: int = 1) -> int:
    if chunk_ms is None:
        return min(layout.n_steps, default_chunk_steps(layout, n_members))
    return min(parse_steps("simulate", "chunk_ms", chunk_ms, layout.dt_ms), layout.n_steps)

def run_chunks(model: Model, chunk_steps: int, *, start_step: int = 0, state=None, devices=None,
               engine: str = "xla", unpack: bool = True):
    """Advance ``model`` chunk by chunk; a generator of :class:`Chunk` s (real members only).

    Chunk k+1 is dispatched before chunk k is yielded, so the devices compute
    while the caller transfers and writes.

    The member axis is sharded over ``devices`` (default: all); an ensemble
    whose size is not a multiple of the device count is padded internally with
    inert members. ``state`` (host or device arrays, real members only) and
    ``start_step`` resume a run from a chunk boundary. ``engine`` is "xla" or
    "native" (already resolved, see ``simulate``). ``unpack=False`` leaves
    spikes that the device packed to bits (uint8, see ``unpack_spikes``) packed.
    """
    layout = model.layout
    mesh = member_mesh(devices)
    n_dev = mesh.devices.size
    n_real = model.n_members
    n_pad = (-n_real) % n_dev
    params, state = place_on_mesh(model, mesh, n_pad, state)
    variant = xla_variant(layout, mesh, (n_real + n_pad) // n_dev) if engine == "xla" else {}
    fn = chunk_function(layout, chunk_steps, mesh, engine, **variant)
    t0 = start_step
    pending = None
    while t0 < layout.n_steps:
        # fn donates its state argument: pass a copy, so the state yielded with the previous
        # chunk (still pending) stays valid after this dispatch
        state, out, finite = fn(jax.tree_util.tree_map(jnp.copy, state), params, _put(np.int32(t0), mesh, P()))
        current = (t0, min(chunk_steps, layout.n_steps - t0), out, state, finite, n_real, n_pad)
        if pending is not None:
            done, pending = _finish(pending, layout, unpack), None   # the device buffers go as soon as copied
            yield done
            del done
        pending = current
        del out, current
        t0 += chunk_steps
    if pending is not None:
        yield _finish(pending, layout, unpack)

def _finish(pending, layout, unpack: bool = True):
    t0, keep, out, state, finite, n_real, n_pad = pending
    # every probe trimmed to the steps inside the run (sampled probes: the samples taken in them)
    out = {k: local_host(v, n_real)[:, :-(-keep // layout.geometry(k)["stride"])] for k, v in out.items()}
    if unpack and out["SPK"].dtype == np.uint8:   # packed on the device (xla_variant)
        out["SPK"] = unpack_spikes(out["SPK"], layout.n)
    state = jax.tree_util.tree_map(lambda x: local_host(x, n_real), state)
    finite = local_host(finite, n_real)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        warnings.warn(f"simulate: non-finite membrane state in member(s) {bad[:10].tolist()} by step "
                      f"{t0 + keep}; reduce dt_ms (e.g. 0.01), use dtype='float64', or check the Izhikevich "
                      "parameters", RuntimeWarning, stacklevel=4)
    return Chunk(t0, keep, out, state, finite)
