"""The compiled chunk: the pure step scanned over a chunk of time, batched over members, sharded.

``chunk_function`` builds (and caches, per shape) one jitted program that
advances a member-sharded batch by ``n_steps`` and returns the new state,
the chunk's probe recordings (members, time, ...) and, per member, whether
the membrane state stayed finite. Which raw observations the step keeps and
how probes are derived from them is read from the probe definitions
(jaxfne/_probes.py).
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from .._errors import SimulationError
from .._probes import RAW, REGISTRY
from ..model import Layout
from ._mesh import param_axes
from ._native import EVENTS_RAW, library, native_chunk, threads_per_device
from ._step import ORDERED_INPUT_MAX_N, step

#: accelerators use the ordered recurrent input up to this many neurons per device (members x N):
#: measured on an H200 (bench/RESULTS.md), it takes 19 us per step against the event loop's 83 us at
#: 1024 x 100, but 266 against 162 us at 16384 x 100 (it reads N rows per step, the loop one per spike)
ORDERED_INPUT_MAX_SLOTS = 4096 * 128


def step_options(layout) -> dict:
    """The static options of ``step`` a layout fixes: delays, integration scheme, noise hold."""
    return {"delay_steps": layout.delay_steps, "integrator": layout.integrator,
            "noise_hold": layout.noise_hold_steps, "conductance": layout.conductance}

def xla_variant(layout: Layout, mesh: Mesh, members_per_device: int = 1) -> dict:
    """How the XLA step is compiled for ``mesh``'s platform (same results either way).

    On accelerators: recurrent input without a data-dependent loop (the ordered
    form of _step.py, same bits) for small networks in small batches, where
    the event loop's trips, each waiting on the host, dominate; and spike
    rasters packed to bits on the device before the transfer (8x fewer bytes
    over the host link). On CPUs: the event loop and plain booleans.
    """
    accel = mesh.devices.flat[0].platform != "cpu"
    ordered = (accel and layout.n <= ORDERED_INPUT_MAX_N
               and members_per_device * layout.n <= ORDERED_INPUT_MAX_SLOTS)
    return {"ordered_input": ordered, "pack_spikes": accel}

class DeriveContext(NamedTuple):
    """What a probe's ``derive`` may read besides the raw observations (see jaxfne/_probes.py)."""

    lfp_kernel: jax.Array          # (B, contacts, N) contact-by-neuron weights
    contact_spacing_um: float | tuple


def raw_modes(layout: Layout) -> dict:
    """The raw observations the layout's probes need: "full" (every step, every neuron) or "sampled" (only
    the steps and neurons the probes' sampling keeps). A raw observation is full when any probe needs it
    so: an unsampled probe (SPK) or a field proxy, which sums over every neuron."""
    modes: dict = {}
    for name in layout.probes:
        p = REGISTRY[name]
        want = "sampled" if p.sampled and not p.is_field else "full"
        for r in p.raw:
            modes[r] = "full" if "full" in (modes.get(r), want) else "sampled"
    return {r: modes[r] for r in RAW if r in modes}


def sample(x, layout: Layout):
    """A (B, T, N) observation at the probes' sampling: every ``sample_every``-th step (from the chunk's first),
    the sampled neurons only."""
    if layout.sample_every > 1:
        x = x[:, ::layout.sample_every]
    if layout.sample_neurons is not None:
        x = x[:, :, np.asarray(layout.sample_neurons)]
    return x


def derive_probes(raw: dict, modes: dict, layout: Layout, ctx: DeriveContext) -> dict:
    """Every probe of ``layout`` from the raw observations, as its definition says (jaxfne/_probes.py)."""
    out = {}
    for name in layout.probes:
        p = REGISTRY[name]
        if p.derive is None:
            x = raw[p.raw[0]]
            if p.sampled and modes[p.raw[0]] == "full":
                x = sample(x, layout)
        else:
            x = p.derive(raw, ctx)
            if p.sampled and layout.sample_every > 1:
                x = x[:, ::layout.sample_every]
        out[name] = x
    return out


def raster_needed(layout: Layout) -> bool:
    """Whether a probe other than SPK reads the raw spikes (then the native kernel writes the raster even when
    it gives the spikes as events and the SPK raster itself is not asked for)."""
    return any(RAW[0] in REGISTRY[p].raw for p in layout.probes if p != "SPK")


@functools.lru_cache(maxsize=64)
def chunk_function(layout: Layout, n_steps: int, mesh: Mesh, engine: str = "xla", ordered_input: bool = False,
                   pack_spikes: bool = False, event_capacity: int = 0, spike_raster: bool = True):
    """A jitted function advancing a batch of networks by ``n_steps``.

    The batch is the member axis, sharded over ``mesh``; inside ``shard_map``
    each device advances only the members it holds (no communication). Cached
    on what fixes the program, so repeated runs and numeric sweeps of the same
    shapes reuse one compilation. ``engine`` "xla" scans the pure ``step``;
    "native" calls the fused CPU kernel (jaxfne/engine/_native.py) once per chunk.
    ``ordered_input`` and ``pack_spikes``: see ``xla_variant``; packed spikes
    come out as uint8 (B, T, ceil(N / 8)), bits in big-endian order as
    ``np.packbits`` (``unpack_spikes`` undoes it). ``event_capacity`` > 0:
    the outputs also hold ``EVENTS``, the chunk's spikes compacted on the
    device into ``event_capacity`` slots per member (``compact_spikes``); with
    the native engine the kernel writes them itself as it runs (the same
    buffers, bit for bit: no raster is compacted). ``spike_raster`` False
    (native engine with events only): the outputs have no "SPK" raster, and
    the kernel writes none unless another probe reads the raw spikes
    (``raster_needed``); the driver's sink then takes SPK as events alone.
    """
    kernel_events = engine == "native" and event_capacity > 0
    if not spike_raster and not kernel_events:
        raise SimulationError(f"chunk_function: spike_raster=False is invalid with engine={engine!r} and "
                              f"event_capacity={event_capacity!r}; it needs engine='native' and event_capacity > 0")
    modes = raw_modes(layout)
    axes = param_axes(layout)
    batched_step = jax.vmap(functools.partial(step, ordered_input=ordered_input, **step_options(layout)),
                            in_axes=(0, axes, None))
    threads = 1
    if engine == "native":
        library()   # builds (once per machine) and registers the FFI targets
        local_devices = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
        threads = threads_per_device(len(local_devices))
    sample_index = (tuple(range(layout.n)) if layout.sample_neurons is None else layout.sample_neurons)

    def xla_chunk(state, params, t0):
        def body(st, k):
            st, obs = batched_step(st, params, (t0 + k).astype(jnp.uint32))
            return st, {r: obs[r] for r in modes}

        state, obs = lax.scan(body, state, jnp.arange(n_steps, dtype=jnp.int32))
        raw = {r: jnp.swapaxes(v, 0, 1) for r, v in obs.items()}   # (B, T, N)
        return state, {r: x if modes[r] == "full" else sample(x, layout) for r, x in raw.items()}

    def local_chunk(state, params, t0):
        if engine == "native":
            # -- native call begin
            state, raw = native_chunk(state, params, t0, n_steps=n_steps, integrator=layout.integrator,
                                      noise_hold=layout.noise_hold_steps, delay_steps=layout.delay_steps,
                                      shared_w=layout.shared_weights, modes=modes, sample_index=sample_index,
                                      sample_stride=layout.sample_every, threads=threads,
                                      conductance=layout.conductance, event_capacity=event_capacity,
                                      spike_raster=spike_raster or raster_needed(layout))
            # -- native call end
        else:
            state, raw = xla_chunk(state, params, t0)
        events = raw.pop(EVENTS_RAW, None)
        out = derive_probes(raw, modes, layout, DeriveContext(params.lfp_kernel, layout.contact_spacing_um))
        if kernel_events:      # written by the kernel as it ran
            out[EVENTS] = events
            if not spike_raster:
                del out["SPK"]
        elif event_capacity:   # the chunk's spikes as events too, compacted here from the raster
            out[EVENTS] = compact_spikes(out["SPK"], event_capacity)
        if pack_spikes:
            out["SPK"] = jnp.packbits(out["SPK"], axis=-1)
        finite = jnp.all(jnp.isfinite(state.v), axis=-1) & jnp.all(jnp.isfinite(state.u), axis=-1)
        return state, out, finite

    member = P("member")
    pspec = jax.tree_util.tree_map(lambda ax: P() if ax is None else member, axes,
                                   is_leaf=lambda x: x is None)
    sharded = jax.shard_map(local_chunk, mesh=mesh, in_specs=(member, pspec, P()),
                            out_specs=(member, member, member))
    return jax.jit(sharded, donate_argnums=(0,))

def unpack_spikes(packed: np.ndarray, n: int, out: np.ndarray | None = None) -> np.ndarray:
    """Bit-packed spikes (members, ..., ceil(n / 8)) uint8 -> booleans (members, ..., n).

    The inverse of the device-side packing, in blocks of members spread over
    host threads (numpy releases the GIL here): at 1e10 neuron-steps/s the
    host writes 10 GB/s of booleans, more than one core does. ``out``: a
    boolean array (or view) to unpack into.
    """
    if out is None:
        out = np.empty(packed.shape[:-1] + (n,), bool)
    per_member = max(1, out[0].nbytes if len(out) else 1)
    block = max(1, (4 << 20) // per_member)          # ~4 MiB of booleans per task: the temporary stays in cache
    starts = range(0, len(out), block)

    def one(start):
        out[start:start + block] = np.unpackbits(packed[start:start + block], axis=-1, count=n).view(bool)

    if len(starts) == 1:
        one(0)
    else:
        list(_unpack_pool().map(one, starts))
    return out

@functools.lru_cache(maxsize=1)
def _unpack_pool():
    return concurrent.futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1), thread_name_prefix="jaxfne-unpack")


@functools.lru_cache(maxsize=8)
def first_nonfinite_function(layout: Layout, n_steps: int, mesh: Mesh):
    """A jitted function replaying a chunk with the XLA step, giving per member the step at whose end the
    membrane state (v, u) was first non-finite (global step index), or -1.

    Called only when a chunk ended non-finite, from that chunk's start state: the run itself keeps no
    per-step check (it would cost a reduction over every neuron each step). Both engines give the same
    bits (tests/test_conformance.py), so the replay finds the exact step for a native run too. A NaN
    never leaves the state again (no comparison with NaN is true, so the reset never fires), and an
    overflow to inf in v fires and is reset within the step, so a state non-finite at a chunk's end
    was non-finite from the step found here on.
    """
    axes = param_axes(layout)
    batched_step = jax.vmap(functools.partial(step, **step_options(layout)), in_axes=(0, axes, None))

    def local(state, params, t0):
        def body(carry, k):
            st, first = carry
            st, _ = batched_step(st, params, (t0 + k).astype(jnp.uint32))
            ok = jnp.all(jnp.isfinite(st.v), axis=-1) & jnp.all(jnp.isfinite(st.u), axis=-1)
            first = jnp.where((first < 0) & ~ok, t0 + k, first)
            return (st, first), None

        first = jnp.zeros_like(state.v[:, 0], dtype=jnp.int32) - 1     # varying over members, as the carry
        (_, first), _ = lax.scan(body, (state, first), jnp.arange(n_steps, dtype=jnp.int32))
        return first

    member = P("member")
    pspec = jax.tree_util.tree_map(lambda ax: P() if ax is None else member, axes, is_leaf=lambda x: x is None)
    return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(member, pspec, P()), out_specs=member))


# -- spikes as events ------------------------------------------------------------------------------

#: the outputs' key of the events compacted on the device (not a probe: the driver takes it out)
EVENTS = "SPK events"


def neuron_dtype(n: int) -> np.dtype:
    """The narrowest dtype of a neuron index in a network of ``n`` neurons: uint16 up to 65536, else int32."""
    return np.dtype(np.uint16) if n <= 2**16 else np.dtype(np.int32)


def step_dtype(chunk_steps: int) -> np.dtype:
    """The narrowest dtype of a step index within a chunk of ``chunk_steps`` steps (as ``neuron_dtype``)."""
    return np.dtype(np.uint16) if chunk_steps <= 2**16 else np.dtype(np.int32)


class ChunkEvents(NamedTuple):
    """The spikes of one chunk as events, members in a row (compressed sparse rows).

    ``counts`` (int64, per member): how many spikes each member fired in the
    chunk; ``neuron`` and ``step`` (``neuron_dtype``, ``step_dtype``): the
    events of member 0, then member 1, ..., each member's sorted by step, then
    neuron; ``step`` counts from the chunk's first step. Member m's events are
    ``[offsets[m], offsets[m + 1])`` with ``offsets = [0, cumsum(counts)]``.
    """

    counts: np.ndarray
    neuron: np.ndarray
    step: np.ndarray

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.counts, dtype=np.int64)])

    def rows(self, rows: slice) -> "ChunkEvents":
        """The events of the members ``rows`` (a slice of step 1)."""
        off = self.offsets
        start, stop, _ = rows.indices(len(self.counts))
        a, b = int(off[start]), int(off[stop])
        return ChunkEvents(self.counts[start:stop], self.neuron[a:b], self.step[a:b])


def compact_spikes(spikes, capacity: int) -> dict:
    """A (B, T, N) boolean raster -> its events in ``capacity`` slots per member, on the device.

    Returns {"neuron": (B, capacity), "step": (B, capacity), "count": (B,) int32}:
    each member's first ``min(count, capacity)`` slots hold its spikes in
    (step, neuron) order, the rest 0. ``count`` is the member's true number of
    spikes, so ``count > capacity`` (an overflow) is seen by the driver, which
    then computes the chunk again with room for all (never a dropped spike).

    Cost measured on the CPU (2 cores, XLA 0.10.2, 1024 x 500 x 100 booleans,
    ~0.1% spiking): 1.05 s per chunk, against ~0.1 s for the native kernel's
    chunk itself and ~0.03 s for ``events_from_raster`` on the host; so CPUs
    compact on the host by default and accelerators here (jaxfne/engine/_driver.py),
    and the native kernel writes the same buffers itself as it runs (no raster read).
    """
    n_dt, s_dt = neuron_dtype(spikes.shape[2]), step_dtype(spikes.shape[1])

    def one(raster):
        step_i, neuron_i = jnp.nonzero(raster, size=capacity, fill_value=0)
        return neuron_i.astype(n_dt), step_i.astype(s_dt)

    neuron, step_i = jax.vmap(one)(spikes)
    return {"neuron": neuron, "step": step_i, "count": jnp.sum(spikes, axis=(1, 2), dtype=jnp.int32)}


def events_from_buffers(buffers: dict, capacity: int, keep: int) -> ChunkEvents:
    """The host copy of ``compact_spikes``' buffers (members, capacity) -> ChunkEvents of the steps below ``keep``.

    Raises ValueError on an overflow (a count above ``capacity``): the caller recomputes the chunk.
    """
    count = np.asarray(buffers["count"]).astype(np.int64)
    if (count > capacity).any():
        raise ValueError(f"event buffer overflow: {int(count.max())} spikes in a member, capacity {capacity}")
    step_i, neuron = np.asarray(buffers["step"]), np.asarray(buffers["neuron"])
    valid = np.arange(capacity)[None, :] < count[:, None]
    valid &= step_i < keep                                  # the last chunk: steps past the run are dropped
    return ChunkEvents(valid.sum(axis=1).astype(np.int64), neuron[valid], step_i[valid])


def events_from_raster(raster: np.ndarray, n_steps: int | None = None, chunk_steps: int | None = None) -> ChunkEvents:
    """A host raster (members, T, N) bool -> ChunkEvents of its first ``n_steps`` steps (default all);
    steps as ``step_dtype(chunk_steps)`` (default T).

    Skips zero 8-byte words first, so its cost follows the spikes more than the
    raster: 0.03 s for 1024 x 500 x 100 at ~0.1% spiking on one core, where
    ``np.nonzero`` takes 0.25 s.
    """
    m, t, n = raster.shape
    keep = t if n_steps is None else min(int(n_steps), t)
    raster = np.ascontiguousarray(raster[:, :keep]).view(np.uint8)
    flat = raster.reshape(-1)
    if flat.size % 8 == 0 and flat.size:
        words = np.flatnonzero(flat.view(np.uint64))
        block = flat.reshape(-1, 8)[words]
        w, b = np.nonzero(block)
        idx = words[w] * 8 + b
    else:
        idx = np.flatnonzero(flat)
    per_member = keep * n
    member = idx // per_member if per_member else idx
    rem = idx - member * per_member
    counts = np.bincount(member, minlength=m).astype(np.int64) if m else np.zeros(0, np.int64)
    return ChunkEvents(counts, (rem % n).astype(neuron_dtype(n)),
                       (rem // n).astype(step_dtype(max(t if chunk_steps is None else chunk_steps, 1))))
