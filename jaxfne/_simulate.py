"""The host driver: chunking, transfer, progress and errors around a pure step."""

from __future__ import annotations

import concurrent.futures
import functools
import math
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ._errors import SimulationError
from ._fields import csd_proxy, lfp_proxy
from ._model import Layout, Model, construct, precision
from ._network import NetParams, initial_state
from ._progress import Progress
from ._signals import build_signals
from ._step import ORDERED_INPUT_MAX_N, step

#: default chunk length when the caller gives none: at most this many steps ...
DEFAULT_CHUNK_STEPS = 10_000
#: ... and about this many bytes of recorded output per chunk (whole ensemble)
DEFAULT_CHUNK_BYTES = 64 * 2**20


def param_axes(shared_weights: bool) -> NetParams:
    """vmap axes of NetParams: every leaf has a member axis except shared weights."""
    return NetParams(*[0] * len(NetParams._fields))._replace(w=None if shared_weights else 0)


def default_devices(n_members: int) -> list:
    """Every device, or on a single process no more devices than members (no idle padding)."""
    devices = jax.devices()
    if jax.process_count() == 1:
        devices = devices[:max(1, n_members)]
    return devices


def member_mesh(devices=None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: every device) with one axis, "member"."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise SimulationError("simulate: devices=[] is invalid; at least one device is required")
    return jax.make_mesh((len(devices),), ("member",), axis_types=(AxisType.Explicit,), devices=devices)


#: accelerators use the ordered recurrent input up to this many neurons per device (members x N):
#: measured on an H200 (bench/RESULTS.md), it takes 19 us per step against the event loop's 83 us at
#: 1024 x 100, but 266 against 162 us at 16384 x 100 (it reads N rows per step, the loop one per spike)
ORDERED_INPUT_MAX_SLOTS = 4096 * 128


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


@functools.lru_cache(maxsize=64)
def chunk_function(layout: Layout, n_steps: int, mesh: Mesh, engine: str = "xla", ordered_input: bool = False,
                   pack_spikes: bool = False):
    """A jitted function advancing a batch of networks by ``n_steps``.

    The batch is the member axis, sharded over ``mesh``; inside ``shard_map``
    each device advances only the members it holds (no communication). Cached
    on what fixes the program, so repeated runs and numeric sweeps of the same
    shapes reuse one compilation. ``engine`` "xla" scans the pure ``step``;
    "native" calls the fused CPU kernel (jaxfne/_native.py) once per chunk.
    ``ordered_input`` and ``pack_spikes``: see ``xla_variant``; packed spikes
    come out as uint8 (B, T, ceil(N / 8)), bits in big-endian order as
    ``np.packbits`` (``unpack_spikes`` undoes it).
    """
    probes = layout.probes
    need_source = any(p in probes for p in ("source", "LFP-proxy", "CSD-proxy"))
    axes = param_axes(layout.shared_weights)
    batched_step = jax.vmap(functools.partial(step, delay_steps=layout.delay_steps, ordered_input=ordered_input),
                            in_axes=(0, axes, None))
    threads = 1
    if engine == "native":
        from ._native import library, native_chunk, threads_per_device
        library()   # builds (once per machine) and registers the FFI targets
        local_devices = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
        threads = threads_per_device(len(local_devices))

    def xla_chunk(state, params, t0):
        def body(st, k):
            st, obs = batched_step(st, params, (t0 + k).astype(jnp.uint32))
            keep = {"SPK": obs["SPK"]}
            if "Vm" in probes:
                keep["Vm"] = obs["Vm"]
            if need_source:
                keep["source"] = obs["source"]
            return st, keep

        state, obs = lax.scan(body, state, jnp.arange(n_steps, dtype=jnp.int32))
        return state, {k: jnp.swapaxes(v, 0, 1) for k, v in obs.items()}   # (B, T, ...)

    def local_chunk(state, params, t0):
        if engine == "native":   # Vm comes out already sampled (stride and neurons)
            vm_index = layout.sample_neurons if layout.sample_neurons is not None else tuple(range(layout.n))
            state, out = native_chunk(state, params, t0, n_steps=n_steps, delay_steps=layout.delay_steps,
                                      shared_w=layout.shared_weights, vm_index=vm_index,
                                      vm_stride=layout.sample_every, want_vm="Vm" in probes,
                                      want_source=need_source, threads=threads)
        else:
            state, out = xla_chunk(state, params, t0)
        if "LFP-proxy" in probes or "CSD-proxy" in probes:
            lfp = lfp_proxy(out["source"], params.lfp_kernel)
            if "LFP-proxy" in probes:
                out["LFP-proxy"] = lfp
            if "CSD-proxy" in probes:
                out["CSD-proxy"] = csd_proxy(lfp, layout.contact_spacing_um)
        if "source" not in probes:
            out.pop("source", None)
        for name in ("Vm", "source", "LFP-proxy", "CSD-proxy"):
            if name in out and not (name == "Vm" and engine == "native"):
                geo = layout.geometry(name)
                if geo["stride"] > 1:
                    out[name] = out[name][:, ::geo["stride"]]
                if geo["last_dim"] == "neuron_sampled":
                    out[name] = out[name][:, :, np.asarray(layout.sample_neurons)]
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


def initial_states(layout: Layout):
    """The batched ``initial_state``: NetParams with a member axis -> NetState with a member axis."""
    return jax.vmap(functools.partial(initial_state, delay_slots=layout.delay_slots),
                    in_axes=(param_axes(layout.shared_weights),))


def pad_members(x, n_pad: int):
    """Append ``n_pad`` copies of the last member (made inert by active=False)."""
    if n_pad == 0:
        return x
    return np.concatenate([x, np.repeat(x[-1:], n_pad, axis=0)], axis=0)


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
             overwrite=False, progress=False, devices=None, engine="auto"):
    """Run ``model`` and return its Signals.

    ``duration_ms``, ``dt_ms`` and ``seed`` override the configuration's runtime
    (the model is constructed again with them). ``chunk_ms`` sets how much
    simulated time one compiled call advances. With ``store=PATH`` the outputs
    stream chunk by chunk into a Zarr v3 store (resuming an interrupted run
    there) and lazily backed Signals are returned. The member axis is sharded
    over ``devices`` (default: every device JAX sees, but no more devices than
    members on a single process). ``engine`` picks the implementation of the
    step (docs/engines.md): "xla" (the pure JAX step, every platform),
    "native" (the fused C++ CPU kernel) or "auto" (native on CPU devices when
    it builds, else xla).
    """
    if not isinstance(model, Model):
        raise SimulationError(f"simulate: model={type(model).__name__} is invalid; pass the result of jaxfne.construct")
    model = resolve_overrides(model, duration_ms, dt_ms, seed)
    layout: Layout = model.layout
    if devices is None:
        devices = default_devices(model.n_members)
    from ._native import resolve_engine
    engine = resolve_engine(engine, devices)
    chunk_steps = _chunk_steps(layout, chunk_ms, model.n_members)
    if store is not None:
        from ._stream import simulate_to_store
        with precision(layout.dtype):
            return simulate_to_store(model, store, chunk_steps, overwrite=overwrite, progress=progress,
                                     devices=devices, engine=engine, **process_blocks(model, devices))
    with precision(layout.dtype):
        arrays, finite = _run_in_memory(model, chunk_steps, progress, devices, engine)
    members = local_member_indices(model, devices)
    full_finite = np.ones(model.n_members, bool)
    full_finite[members] = finite
    signals = build_signals(arrays, model, squeeze_member=not model.ensemble, members=members,
                            state_finite=full_finite)
    signals.dataset.attrs["engine"] = engine
    return signals


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
    if isinstance(chunk_ms, bool) or not isinstance(chunk_ms, (int, float)) or not math.isfinite(chunk_ms) or chunk_ms <= 0:
        raise SimulationError(f"simulate: chunk_ms={chunk_ms!r} is invalid; a positive number of ms is required")
    steps = chunk_ms / layout.dt_ms
    if abs(steps - round(steps)) > 1e-6 * max(1.0, steps) or round(steps) < 1:
        raise SimulationError(f"simulate: chunk_ms={chunk_ms!r} is invalid; it must be a whole number of steps of dt_ms={layout.dt_ms}")
    return min(int(round(steps)), layout.n_steps)


def run_chunks(model: Model, chunk_steps: int, *, start_step: int = 0, state=None, devices=None,
               engine: str = "xla", unpack: bool = True):
    """Advance ``model`` chunk by chunk; a generator of per-chunk results.

    Yields ``(t0, n_keep, outputs, state)`` for each chunk: ``t0`` is the global
    index of the chunk's first step, ``n_keep`` how many of its ``chunk_steps``
    steps are inside the run (the last chunk may overrun and is trimmed),
    ``outputs`` a dict probe -> array (members, chunk_steps, ...) and ``state``
    the NetState after the chunk (members leading). Only real members are
    returned. Chunk k+1 is dispatched before chunk k is yielded, so the devices
    compute while the caller transfers and writes.

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


def place_on_mesh(model: Model, mesh: Mesh, n_pad: int = 0, state=None) -> tuple:
    """``model``'s parameters and a state (default: the initial one) as member-sharded arrays on ``mesh``.

    ``n_pad`` inert members (copies of the last, ``active`` False) are appended;
    shared weights are replicated.
    """
    axes = param_axes(model.layout.shared_weights)
    host_params = jax.tree_util.tree_map(np.asarray, model.params)
    if n_pad:
        host_params = NetParams(*[x if ax is None else pad_members(x, n_pad)
                                  for x, ax in zip(host_params, axes)])
        host_params = host_params._replace(active=host_params.active.copy())
        host_params.active[model.n_members:] = False
    params = NetParams(*[_put(x, mesh, P() if ax is None else P("member")) for x, ax in zip(host_params, axes)])
    if state is None:
        state = initial_states(model.layout)(model.params)
    state = jax.tree_util.tree_map(lambda x: _put(pad_members(np.asarray(x), n_pad), mesh, P("member")), state)
    return params, state


def _put(x, mesh, spec):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, NamedSharding(mesh, spec), lambda idx: x[idx])


def local_host(x, n_real: int) -> np.ndarray:
    """The members of a member-sharded array that this process holds, as numpy.

    Single process: every real member, in order. Under jax.distributed: the
    members on this process's devices (see ``local_members``), padding dropped.
    """
    if x.is_fully_addressable:
        return np.asarray(x)[:n_real]
    shards = sorted(x.addressable_shards, key=lambda sh: sh.index[0].start or 0)
    seen, parts = set(), []
    for sh in shards:
        start = sh.index[0].start or 0
        if start in seen:  # replicated copies of the same block
            continue
        seen.add(start)
        parts.append(np.asarray(sh.data))
    data = np.concatenate(parts, axis=0)
    idx = local_members_of(x)
    return data[idx < n_real]


def local_members_of(x) -> np.ndarray:
    """Global member indices held by this process for a member-sharded array."""
    starts = sorted({(sh.index[0].start or 0, sh.index[0].stop or x.shape[0]) for sh in x.addressable_shards})
    return np.concatenate([np.arange(a, b) for a, b in starts])


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
    return t0, keep, out, state


def process_blocks(model: Model, devices=None) -> dict:
    """How this process writes a store under jax.distributed: one member-block per process.

    Every process writes only the block of members on its own devices, so no
    two writers touch one stored object; process 0 creates the store.
    """
    if jax.process_count() == 1:
        return {}
    n_dev = member_mesh(devices).devices.size
    per = (model.n_members + (-model.n_members) % n_dev) // jax.process_count()
    local = local_member_indices(model, devices)
    return {"member_block": per, "blocks": sorted({int(i) // per for i in local}),
            "creator": jax.process_index() == 0}


def local_member_indices(model: Model, devices=None) -> np.ndarray:
    """Global indices of the (real) members this process simulates, ascending.

    All members on a single process; under ``jax.distributed`` the members
    whose shard lives on this process's devices.
    """
    mesh = member_mesh(devices)
    n_real = model.n_members
    n_total = n_real + (-n_real) % mesh.devices.size
    sharding = NamedSharding(mesh, P("member"))
    blocks = {(ix[0].start or 0, ix[0].stop if ix[0].stop is not None else n_total)
              for ix in sharding.addressable_devices_indices_map((n_total,)).values()}
    idx = np.concatenate([np.arange(a, b) for a, b in sorted(blocks)])
    return idx[idx < n_real]


def _run_in_memory(model: Model, chunk_steps: int, progress, devices=None, engine: str = "xla") -> dict:
    """Every chunk copied once into whole-run arrays allocated up front (no concatenation at the end:
    one copy of the outputs in host memory, not two)."""
    layout = model.layout
    arrays: dict[str, np.ndarray] = {}
    bar = Progress(layout.n_steps, layout.dt_ms, model.n_members, layout.n, enabled=bool(progress))
    finite = None
    for t0, keep, out, state in run_chunks(model, chunk_steps, devices=devices, engine=engine, unpack=False):
        for name, arr in out.items():
            geo = layout.geometry(name)
            packed = name == "SPK" and arr.dtype == np.uint8      # unpacked straight into the result
            if name not in arrays:
                tail = (layout.n,) if packed else arr.shape[2:]
                arrays[name] = np.empty((arr.shape[0], geo["n_time"]) + tail, bool if packed else arr.dtype)
            start = t0 // geo["stride"]
            target = arrays[name][:, start:start + arr.shape[1]]
            if packed:
                unpack_spikes(arr, layout.n, out=target)
            else:
                target[...] = arr
        ok = np.isfinite(state.v).all(axis=-1) & np.isfinite(state.u).all(axis=-1)
        finite = ok if finite is None else finite & ok
        bar.update(t0 + keep)
    bar.close()
    return arrays, finite
