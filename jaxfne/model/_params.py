"""The arrays of one network: its parameters and its state.

Written for one network (a leading member axis is added when batched).
``build_network`` (model/_network.py) makes the parameters, ``initial_state``
the state at t = 0; the engines read both.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

class NetParams(NamedTuple):
    """Arrays of one network (leading member axis once batched)."""

    a: jax.Array
    b: jax.Array
    c: jax.Array
    d: jax.Array
    is_exc: jax.Array          # (N,) bool
    w: jax.Array               # (N + 1, N) [pre, post], >= 0; sign from the pre type; last row 0;
                               # (C, N + 1, N) with one matrix per delay class when delays differ
    i_mean: jax.Array          # (N,) constant drive
    noise_scale: jax.Array     # (N,) sigma / sqrt(dt): current noise std per step
    decay_exc: jax.Array       # exp(-dt / tau_exc)
    decay_inh: jax.Array
    dt_ms: jax.Array
    noise_key: jax.Array       # raw uint32[2] key of the noise stream
    lfp_kernel: jax.Array      # (C, N) contact-by-neuron weights of the LFP proxy
    active: jax.Array          # False for padding members

class NetState(NamedTuple):
    v: jax.Array
    u: jax.Array
    s_exc: jax.Array           # excitatory synaptic current
    s_inh: jax.Array           # inhibitory synaptic current (enters with a minus sign)
    pend_exc: jax.Array        # (D, N) delayed excitatory input waiting to arrive (D = 0: no delays)
    pend_inh: jax.Array        # (D, N) delayed inhibitory input

def initial_state(params: NetParams, delay_slots: int = 0) -> NetState:
    v = jnp.full_like(params.a, -65.0)
    pend = jnp.zeros((delay_slots,) + v.shape, v.dtype)
    return NetState(v=v, u=params.b * v, s_exc=jnp.zeros_like(v), s_inh=jnp.zeros_like(v),
                    pend_exc=pend, pend_inh=pend)
