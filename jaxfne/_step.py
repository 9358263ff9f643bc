"""The simulation step: a pure function of (state, params, step index).

Written for one network; the driver vmaps it over members and scans it over
time. No I/O, no callbacks, no globals.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from ._network import NetParams, NetState

V_PEAK_MV = 30.0


def noise_sample(params: NetParams, step):
    """Standard normal noise of one network at one step: a function of
    (noise key, step) only, so it is independent of chunking and batch layout."""
    key = jax.random.fold_in(params.noise_key, step)
    return jax.random.normal(key, params.a.shape, dtype=params.a.dtype)


def recurrent_input(params: NetParams, spiked, capacity: int):
    """Synaptic increments (excitatory, inhibitory) caused by this step's spikes.

    Event-driven and exact: the indices of the spiking cells are gathered in
    ascending order into blocks of ``capacity``; the first block is always
    processed and further blocks only while spikes remain (a loop whose trip
    count is the number of spikes / capacity), so no spike is ever dropped. The
    outgoing weight rows are added one at a time in a fixed order, so a
    member's result does not depend on batch size or device layout.
    ``params.w`` is (N + 1, N): row j holds the weights from cell j onto every
    cell and the last row is zero (the target of unused slots).
    """
    n = spiked.shape[0]
    n_slots = -(-n // capacity) * capacity
    idx = jnp.nonzero(spiked, size=n_slots, fill_value=n)[0]
    count = jnp.sum(spiked, dtype=jnp.int32)
    is_exc = jnp.concatenate([params.is_exc, jnp.zeros((1,), bool)])

    def block(b, acc):
        ids = lax.dynamic_slice(idx, (b * capacity,), (capacity,))
        rows = params.w[ids]                                  # (capacity, N)
        exc = is_exc[ids]
        acc_e, acc_i = acc
        for k in range(capacity):                            # fixed summation order
            acc_e = acc_e + jnp.where(exc[k], rows[k], 0.0)
            acc_i = acc_i + jnp.where(exc[k], 0.0, rows[k])
        return acc_e, acc_i

    zero = jnp.zeros((n,), params.w.dtype)
    acc = block(0, (zero, zero))
    n_blocks = (count + capacity - 1) // capacity
    acc = lax.fori_loop(1, n_blocks, block, acc)
    return acc


def step(state: NetState, params: NetParams, t, capacity: int):
    """Advance one network by one forward-Euler step of dt.

    Returns the new state and the per-step observations: spikes (bool), the
    membrane potential with spikes shown at their 30 mV peak, and the net
    synaptic current (the ``source`` probe). Inactive (padding) networks keep
    their state and never spike.
    """
    dt = params.dt_ms
    v, u = state.v, state.u
    i_syn = state.s_exc - state.s_inh
    i_total = params.i_mean + i_syn + params.noise_scale * noise_sample(params, t)
    v_new = v + dt * (0.04 * v * v + 5.0 * v + 140.0 - u + i_total)
    u_new = u + dt * (params.a * (params.b * v - u))
    spiked = (v_new >= V_PEAK_MV) & params.active
    v_obs = jnp.where(spiked, V_PEAK_MV, v_new)
    v_new = jnp.where(spiked, params.c, v_new)
    u_new = jnp.where(spiked, u_new + params.d, u_new)
    inc_exc, inc_inh = recurrent_input(params, spiked, capacity)
    new = NetState(v=v_new, u=u_new,
                   s_exc=state.s_exc * params.decay_exc + inc_exc,
                   s_inh=state.s_inh * params.decay_inh + inc_inh)
    new = jax.tree_util.tree_map(lambda x_new, x_old: jnp.where(params.active, x_new, x_old), new, state)
    return new, {"SPK": spiked, "Vm": v_obs, "source": i_syn}
