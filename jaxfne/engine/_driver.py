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
from ..model._size import EVENT_SLOTS
from ..model._size import event_capacity as default_event_capacity
from ._chunk import (EVENTS, ChunkEvents, chunk_function, events_from_buffers, events_from_raster,
                     first_nonfinite_function, unpack_spikes, xla_variant)
from ._mesh import _put, local_host, member_mesh, place_on_mesh

@dataclasses.dataclass
class Chunk:
    """One finished chunk, on the host: the real members this process holds, in member order.

    ``t0``: the global index of its first step; ``n_steps``: how many steps of
    it are inside the run (the last chunk is trimmed); ``outputs``: probe ->
    array (members, samples, ...) trimmed to those steps (spikes may still be
    bit-packed on accelerators: uint8, see ``unpack_spikes``); ``state``: the
    NetState after the chunk; ``finite``: per member, whether the membrane
    state (v, u) is finite after the chunk, computed on the device;
    ``first_nonfinite``: per member, the global step at whose end its state
    first became non-finite, when that happened in this chunk, else -1
    (found by replaying the chunk on the device: ``first_nonfinite_function``).
    """

    t0: int
    n_steps: int
    outputs: dict
    state: object
    finite: np.ndarray
    first_nonfinite: np.ndarray | None = None
    #: the chunk's spikes as events (its steps inside the run), when the sink asked for them (``spike_events``)
    events: ChunkEvents | None = None


class Sink(Protocol):
    """Where chunks go. ``put`` may block (back-pressure); ``close(ok)`` ends the run (``ok`` False: aborted).

    ``packed_spikes``: the sink takes bit-packed spikes as the device made them
    (it unpacks them itself, straight into its buffers).
    """

    packed_spikes: bool
    #: (optional attribute, default False) the sink takes each chunk's spikes as events (``Chunk.events``)
    spike_events: bool
    #: (optional attribute, default True) the sink reads the SPK raster; False (with ``spike_events``): the
    #: chunks may come without it (``Chunk.outputs`` has no "SPK" when the native kernel gave the events)
    spike_raster: bool

    def put(self, chunk: Chunk) -> None: ...

    def close(self, ok: bool) -> None: ...


#: where the spikes of a sink that takes events are compacted (``run_chunks``' ``events``): "auto" (the
#: devices on accelerators, the native kernel as it runs on CPUs, the host for the XLA engine on CPUs),
#: "device" (with the native engine: the kernel) or "host"
SINK_EVENTS = "auto"


def drive(model: Model, sink: Sink, chunk_steps: int, *, start_step: int = 0, state=None, devices=None,
          engine: str = "xla") -> None:
    """The one loop: run ``model`` chunk by chunk from ``start_step`` (and ``state``) into ``sink``."""
    ok = False
    try:
        for chunk in run_chunks(model, chunk_steps, start_step=start_step, state=state, devices=devices,
                                engine=engine, unpack=not sink.packed_spikes,
                                events=SINK_EVENTS if getattr(sink, "spike_events", False) else None,
                                spike_raster=getattr(sink, "spike_raster", True)):
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
               engine: str = "xla", unpack: bool = True, events: str | None = None,
               event_capacity: int | None = None, spike_raster: bool = True):
    """Advance ``model`` chunk by chunk; a generator of :class:`Chunk` s (real members only).

    Chunk k+1 is dispatched before chunk k is yielded, so the devices compute
    while the caller transfers and writes.

    The member axis is sharded over ``devices`` (default: all); an ensemble
    whose size is not a multiple of the device count is padded internally with
    inert members. ``state`` (host or device arrays, real members only) and
    ``start_step`` resume a run from a chunk boundary. ``engine`` is "xla" or
    "native" (already resolved, see ``simulate``). ``unpack=False`` leaves
    spikes that the device packed to bits (uint8, see ``unpack_spikes``) packed.

    ``events``: each Chunk also carries its spikes as events (``Chunk.events``),
    compacted on the devices ("device"; with the native engine the kernel
    writes them as it runs, no raster is compacted), from the host raster
    ("host"), or "auto": the devices on accelerators, the kernel with the
    native engine on CPUs, the host with the XLA engine on CPUs (where the
    XLA compaction costs ~10x the chunk: ``compact_spikes``). None: no
    events. ``spike_raster`` False: the caller needs no SPK raster, so when the
    native kernel gives the events the chunks' outputs have no "SPK" (the
    kernel writes no raster, nothing is copied; measured on 2 cores, 512
    tutorial networks x 500 ms: the raster's copy to the host 1.3 s and its
    compaction 0.7 s of a 10 s streamed run). ``event_capacity``: the device
    buffer's slots per member at first (default ``default_event_capacity``); a chunk in which a member fires more
    is computed again with a larger buffer, kept for the rest of the run, so no
    spike is ever dropped.
    """
    layout = model.layout
    mesh = member_mesh(devices)
    n_dev = mesh.devices.size
    n_real = model.n_members
    n_pad = (-n_real) % n_dev
    params, state = place_on_mesh(model, mesh, n_pad, state)
    variant = xla_variant(layout, mesh, (n_real + n_pad) // n_dev) if engine == "xla" else {}
    spikes = _EventTaker(events, layout, chunk_steps, mesh, event_capacity, engine, spike_raster)
    fn = chunk_function(layout, chunk_steps, mesh, engine, **variant, **spikes.variant())
    t0 = start_step
    pending_events = None

    def rerun(start, t0, capacity):     # a chunk again, from its start state, with a larger event buffer
        again = chunk_function(layout, chunk_steps, mesh, engine, **variant, **spikes.variant(capacity))
        out = again(jax.tree_util.tree_map(jnp.copy, start), params, _put(np.int32(t0), mesh, P()))[1]
        return {k: local_host(v, n_real) for k, v in out[EVENTS].items()}

    pending = None
    # members whose non-finite state was reported (once each), and how to find the step it began
    reported = np.zeros(0, bool)

    def locate(start, t0, want):
        if engine == "xla":
            replay = first_nonfinite_function(layout, chunk_steps, mesh)
            return local_host(replay(start, params, _put(np.int32(t0), mesh, P())), n_real)
        # the native kernel is bit-identical to the XLA step on finite states (tests/test_conformance.py),
        # but not always on the way to an overflow (one step apart, seen in tests/test_nonfinite.py):
        # replay it one step at a time with the kernel itself, recording nothing
        one = chunk_function(dataclasses.replace(layout, probes=("SPK",), sample_neurons=None, sample_every=1),
                             1, mesh, engine)
        first = np.full(n_real, -1, np.int64)
        st = start
        for k in range(chunk_steps):
            st, _, ok = one(jax.tree_util.tree_map(jnp.copy, st), params, _put(np.int32(t0 + k), mesh, P()))
            ok = local_host(ok, n_real)
            first = np.where((first < 0) & ~ok, t0 + k, first)
            if (first[want] >= 0).all():
                break                    # every member that ended the chunk non-finite has its step
        return first

    while t0 < layout.n_steps:
        # fn donates its state argument: pass a copy, so the state yielded with the previous
        # chunk (still pending) stays valid after this dispatch; ``start`` is kept for a replay
        # when the chunk ends non-finite
        start = state
        if spikes.grown:      # an earlier chunk overflowed its event buffer: the larger one from now on
            fn = chunk_function(layout, chunk_steps, mesh, engine, **variant, **spikes.variant())
        events_from = (t0, state)
        state, out, finite = fn(jax.tree_util.tree_map(jnp.copy, state), params, _put(np.int32(t0), mesh, P()))
        events_from += (out.pop(EVENTS, None),)
        current = (t0, min(chunk_steps, layout.n_steps - t0), out, state, finite, n_real, n_pad, start)
        del start
        if pending is not None:
            done, pending = _finish(pending, layout, unpack, locate, reported), None   # buffers go once copied
            done.events = spikes.take(done, *pending_events, rerun, n_real)
            yield done
            del done
        pending, pending_events = current, events_from
        del out, current, events_from
        t0 += chunk_steps
    if pending is not None:
        done = _finish(pending, layout, unpack, locate, reported)
        done.events = spikes.take(done, *pending_events, rerun, n_real)
        yield done

def _finish(pending, layout, unpack: bool, locate, reported: np.ndarray):
    t0, keep, out, state, finite, n_real, n_pad, start = pending
    # every probe trimmed to the steps inside the run (sampled probes: the samples taken in them)
    out = {k: local_host(v, n_real)[:, :-(-keep // layout.geometry(k)["stride"])] for k, v in out.items()}
    if unpack and "SPK" in out and out["SPK"].dtype == np.uint8:   # packed on the device (xla_variant)
        out["SPK"] = unpack_spikes(out["SPK"], layout.n)
    state = jax.tree_util.tree_map(lambda x: local_host(x, n_real), state)
    finite = local_host(finite, n_real)
    first = np.full(finite.shape, -1, np.int64)
    if reported.shape != finite.shape:
        reported.resize(finite.shape, refcheck=False)
    new = ~finite & ~reported
    if new.any():
        first = np.where(new, locate(start, t0, new), -1).astype(np.int64)
        reported |= new
        bad = np.flatnonzero(new)
        where = ", ".join(f"member {m} at step {first[m]} (t = {first[m] * layout.dt_ms:g} ms)" for m in bad[:5])
        more = f" and {bad.size - 5} more" if bad.size > 5 else ""
        warnings.warn(f"simulate: the membrane state became non-finite (NaN/Inf): {where}{more}; reduce dt_ms "
                      "(e.g. 0.01), use dtype='float64', weaken the drive, or check the Izhikevich parameters",
                      RuntimeWarning, stacklevel=4)
    return Chunk(t0, keep, out, state, finite, first)


class _EventTaker:
    """Turns each finished chunk's spikes into ChunkEvents, as ``run_chunks``' ``events`` says.

    "device": from the buffers ``compact_spikes`` filled on the device; a chunk
    whose busiest member overflowed them is computed again from its start state
    with room for twice that member's spikes, and that capacity is kept
    (``grown`` tells the loop to rebuild its chunk function once). ``redone``
    counts the chunks computed again. "host": from the host raster. With the
    native engine "device" means the kernel's own events, and then, unless
    ``spike_raster``, no SPK raster at all.
    """

    def __init__(self, mode: str | None, layout: Layout, chunk_steps: int, mesh, capacity: int | None,
                 engine: str = "xla", spike_raster: bool = True):
        if mode == "auto":
            on_cpu = mesh.devices.flat[0].platform == "cpu"
            mode = "host" if on_cpu and engine != "native" else "device"
        if mode not in (None, "device", "host"):
            raise SimulationError(f"run_chunks: events={mode!r} is invalid; use 'device', 'host', 'auto' or None")
        self.mode, self.layout, self.chunk_steps = mode, layout, chunk_steps
        self.capacity = default_event_capacity(layout, chunk_steps) if capacity is None else int(capacity)
        if mode == "device" and not 1 <= self.capacity:
            raise SimulationError(f"run_chunks: event_capacity={capacity!r} is invalid; at least 1 slot is required")
        self.grown, self.redone = False, 0
        # the raster is left out only where the kernel gives the events (the other paths compact it)
        self.spike_raster = spike_raster or not (mode == "device" and engine == "native")

    def variant(self, capacity: int | None = None) -> dict:
        """chunk_function's keywords for the events: ``capacity`` slots (default: the current ones)."""
        if capacity is None:
            self.grown = False
        if self.mode != "device":
            return {}
        out = {"event_capacity": self.capacity if capacity is None else capacity}
        return out if self.spike_raster else {**out, "spike_raster": False}

    def take(self, chunk: Chunk, t0: int, start, buffers, rerun, n_real: int) -> ChunkEvents | None:
        if self.mode is None:
            return None
        if self.mode == "host":
            spk = chunk.outputs["SPK"]
            if spk.dtype == np.uint8:          # bit-packed on the device
                spk = unpack_spikes(spk, self.layout.n)
            return events_from_raster(spk, chunk.n_steps, self.chunk_steps)
        host = {k: local_host(v, n_real) for k, v in buffers.items()}
        capacity = host["neuron"].shape[1]
        busiest = int(host["count"].max(initial=0))
        if busiest > capacity:                 # overflow: the chunk again, with room for every spike
            grown = min(self.layout.n * self.chunk_steps, -(-2 * busiest // EVENT_SLOTS) * EVENT_SLOTS)
            if grown > self.capacity:
                self.capacity, self.grown = grown, True
            host, capacity = rerun(start, t0, self.capacity), self.capacity
            self.redone += 1
        return events_from_buffers(host, capacity, chunk.n_steps)
