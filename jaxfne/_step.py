"""The simulation step: a pure function of (state, params, step index).

Written for one network; the driver vmaps it over members and scans it over
time. No I/O, no callbacks, no globals.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._network import NetParams, NetState

V_PEAK_MV = 30.0


def noise_sample(params: NetParams, step):
    """Standard normal noise of one network at one step: a function of
    (noise key, step) only, so it is independent of chunking and batch layout."""
    key = jax.random.fold_in(params.noise_key, step)
    return jax.random.normal(key, params.a.shape, dtype=params.a.dtype)


def recurrent_input(params: NetParams, spiked):
    """Synaptic increments (excitatory, inhibitory) caused by this step's spikes."""
    x = spiked.astype(params.w.dtype)
    xe = jnp.where(params.is_exc, x, 0.0)
    xi = x - xe
    both = params.w @ jnp.stack([xe, xi], axis=1)            # (N, 2)
    return both[:, 0], both[:, 1]


def step(state: NetState, params: NetParams, t):
    """Advance one network by one forward-Euler step of dt.

    Returns the new state and the per-step observations: spikes (bool), the
    membrane potential with spikes shown at their 30 mV peak, and the net
    synaptic current (the ``source`` probe).
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
    inc_exc, inc_inh = recurrent_input(params, spiked)
    new = NetState(v=v_new, u=u_new,
                   s_exc=state.s_exc * params.decay_exc + inc_exc,
                   s_inh=state.s_inh * params.decay_inh + inc_inh)
    return new, {"SPK": spiked, "Vm": v_obs, "source": i_syn}
