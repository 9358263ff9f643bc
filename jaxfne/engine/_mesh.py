"""Placement of the member axis on devices: the mesh, padding, and this process's share of members.

The member axis is the only sharded axis: a 1-D mesh "member" over the
devices, members padded to a multiple of the device count with inert copies
(``active`` False). Under ``jax.distributed`` each process holds the members
on its own devices.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .._errors import SimulationError
from ..model import Model, NetParams, initial_state, param_axes

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

def initial_states(layout):
    """The batched ``initial_state``: NetParams with a member axis -> NetState with a member axis."""
    return jax.vmap(functools.partial(initial_state, delay_slots=layout.delay_slots),
                    in_axes=(param_axes(layout),))

def pad_members(x, n_pad: int):
    """Append ``n_pad`` copies of the last member (made inert by active=False)."""
    if n_pad == 0:
        return x
    return np.concatenate([x, np.repeat(x[-1:], n_pad, axis=0)], axis=0)

def place_on_mesh(model: Model, mesh: Mesh, n_pad: int = 0, state=None) -> tuple:
    """``model``'s parameters and a state (default: the initial one) as member-sharded arrays on ``mesh``.

    ``n_pad`` inert members (copies of the last, ``active`` False) are appended;
    shared weights are replicated.
    """
    axes = param_axes(model.layout)
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

def process_blocks(model: Model, devices=None) -> dict:
    """How this process writes a store under jax.distributed: one member-block per process.

    Every process writes only the block of members on its own devices, so no
    two writers touch one stored object; process 0 creates the store.
    """
    if jax.process_count() == 1:
        return {}
    n_dev = member_mesh(devices).devices.size
    n_proc = jax.process_count()
    per = (model.n_members + (-model.n_members) % n_dev) // n_proc
    if model.n_members <= per * (n_proc - 1):
        # the last process would hold padding only, and write no block: refused on every process alike,
        # before any work (seen: 6 members on 4 one-device processes failed in process 3's writer)
        raise SimulationError(
            f"simulate: {model.n_members} members over {n_proc} processes ({n_dev} devices, {per} members per "
            f"process after padding) leave process {n_proc - 1} no real member; writing a store under "
            f"jax.distributed needs every process to hold one: use at least {per * (n_proc - 1) + 1} members "
            f"or fewer processes")
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
