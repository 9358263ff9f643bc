"""The simulation step: a pure function of (state, params, step index).

Written for one network; the driver vmaps it over members and scans it over
time. No I/O, no callbacks, no globals.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from ..model import NetParams, NetState
from ..model._params import V_PEAK_MV  # the model's constants are declared with its arrays


def _mix32(x):
    """lowbias32 (C. Wellons): a bijective 32-bit integer hash with strong avalanche."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def neuron_counters(n: int):
    """Per-neuron constants of the noise hash (a function of the index only)."""
    return _mix32(jnp.arange(n, dtype=jnp.uint32) * jnp.uint32(2) + jnp.uint32(1))


def noise_sample(params: NetParams, step):
    """Standard normal noise of one network at one step.

    A counter-based generator: a function of (the member's noise key, the
    global step index, the neuron index) only, so it does not depend on
    chunking, batch size, member order or device layout. The per-step word
    ``s = mix(mix(k0 ^ step) + k1)`` is combined with a per-neuron constant and
    hashed again; the top 24 bits k give x = (2k + 1 - 2^24) / 2^24, the odd
    multiples of 2^-24 in (-1, 1) (exact in float32, symmetric, never +-1),
    mapped to a normal by sqrt(2) erfinv(x) (|z| <= 5.42). About five times
    cheaper than threefry on a CPU; its moments and independence are tested
    in tests/test_noise.py.
    """
    k = params.noise_key
    s = _mix32(_mix32(k[0] ^ step.astype(jnp.uint32)) + k[1])
    h = _mix32(s ^ neuron_counters(params.a.shape[0]))
    level = (h >> 8).astype(jnp.int32)                                   # 0 .. 2^24 - 1
    x = (2 * level + (1 - (1 << 24))).astype(params.a.dtype) * (1.0 / 16777216.0)
    return jnp.sqrt(jnp.asarray(2.0, params.a.dtype)) * lax.erf_inv(x)


def recurrent_input(params: NetParams, spiked):
    """Synaptic increments (excitatory, inhibitory) caused by this step's spikes.

    Event-driven and exact: a loop visits the spiking cells in ascending index
    order (one integer min-reduction per spike) and adds each one's outgoing weight row, so
    no spike is ever dropped and a member's sums are formed in the same order
    whatever the batch size or device layout. Under ``vmap`` the loop runs as
    many times as the busiest member needs; finished members are left
    unchanged. ``params.w`` is (N + 1, N): row j holds the weights from cell j
    onto every cell (the last row is zero). With several delay classes ``w``
    is (C, N + 1, N) and the increments are (C, N), one row per class.
    """
    n = spiked.shape[0]
    zero = jnp.zeros_like(spiked, dtype=params.w.dtype)  # varies per member, like the loop's output
    if params.w.ndim == 3:
        zero = jnp.broadcast_to(zero, (params.w.shape[0], n))
    index = jnp.arange(n, dtype=jnp.int32)
    count = jnp.sum(spiked, dtype=jnp.int32)

    def body(carry):
        k, previous, acc_e, acc_i = carry
        # the next spiking cell after the previous one (an integer min: cheaper than argmax on a CPU)
        j = jnp.min(jnp.where(spiked & (index > previous), index, n))
        row = params.w[..., j, :]                    # j == n only past the last spike: the zero row
        exc = params.is_exc[jnp.minimum(j, n - 1)]
        return k + 1, j, acc_e + jnp.where(exc, row, 0.0), acc_i + jnp.where(exc, 0.0, row)

    _, _, acc_e, acc_i = lax.while_loop(lambda carry: carry[0] < count, body,
                                        (count * 0, count * 0 - 1, zero, zero))   # per-member counters
    return acc_e, acc_i


def recurrent_input_ordered(params: NetParams, spiked):
    """The same increments as ``recurrent_input``, without a data-dependent loop.

    Every presynaptic cell is visited in ascending index order and its row is
    added when it spiked, +0.0 otherwise. Adding +0.0 leaves a float unchanged
    and the spiking rows arrive in the same order, so the sums are bit for bit
    those of the event loop (tested). Unrolled over the N cells, it compiles
    to one fused kernel per step with no host round trip: the form for GPUs,
    where every trip of a while loop waits on the host, and for small
    networks (N <= ORDERED_INPUT_MAX_N); it reads N rows per step instead of
    one per spike.
    """
    n = spiked.shape[0]
    acc_e = jnp.zeros(params.w.shape[:-2] + (n,), params.w.dtype)
    acc_i = acc_e
    for j in range(n):
        row = params.w[..., j, :]
        acc_e = acc_e + jnp.where(spiked[j] & params.is_exc[j], row, 0.0)
        acc_i = acc_i + jnp.where(spiked[j] & ~params.is_exc[j], row, 0.0)
    return acc_e, acc_i


#: the largest network for which ``recurrent_input_ordered`` may be chosen: it unrolls over the N
#: cells, so compile time grows with N (XLA:CPU, 2 ensemble members: 2.3 s at N = 128, 4.9 s at 256,
#: 7.9 s at 240 with two delay classes; the event loop 0.8-1.2 s); its GPU gain was measured at N = 100
ORDERED_INPUT_MAX_N = 128


def deliver(pending, increments, t, delay_steps: tuple):
    """Schedule each delay class's increments and take out what arrives now.

    ``pending`` is a ring buffer (D, N): slot (t + d - 1) % D collects input
    that acts d steps after step t. Returns (arriving input, new buffer).
    """
    slots = pending.shape[0]
    for c, d in enumerate(delay_steps):
        pending = pending.at[(t + d - 1) % slots].add(increments[c])
    now = t % slots
    return pending[now], pending.at[now].set(0.0)


def stimulus_gate(params: NetParams, t):
    """(whether each stimulus is on at step ``t`` (S,), the steps since its onset k (S,) uint32)."""
    t = jnp.asarray(t).astype(jnp.uint32)
    onset, span, period, width = (params.stim_steps[:, j] for j in range(4))
    k = t - onset                                                   # wraps below onset: masked by t >= onset
    on = (t >= onset) & (k < span) & (k % period < width)
    listed = params.stim_onsets                                     # (S, O): trials stimuli's own onsets
    if listed.shape[1] > 0:                                         # static: some stimulus lists its onsets
        in_trial = jnp.any((t >= listed) & (t - listed < width[:, None]), axis=1)
        on = jnp.where(listed[:, 0] != jnp.uint32(2**32 - 1), in_trial, on)
    return on, k


def poisson_counts(params: NetParams, t, s: int, n_draws, threshold=None):
    """Spikes (N,) uint32 that stimulus ``s``'s sources send each neuron at step ``t``.

    ``n_draws``: its n_sources, or 0 when it is off or not a Poisson source. The count is
    Binomial(n_draws, threshold / 2^24), drawn from the member's ``stim_key`` stream by integer hashing
    (model/_stimuli.py gives the construction), so both engines draw the same bits. ``threshold``
    (uint32, scalar or (N,)): None is the stimulus's own (stim_steps column 4).
    """
    t = jnp.asarray(t).astype(jnp.uint32)
    key = params.stim_key
    tag = params.stim_steps[s, 6]
    threshold = params.stim_steps[s, 4] if threshold is None else threshold
    word = _mix32(_mix32(_mix32(key[0] ^ t) + key[1]) ^ tag)
    base = _mix32(word ^ neuron_counters(params.a.shape[0]))

    def body(j, count):
        h = _mix32(base + j.astype(jnp.uint32) * jnp.uint32(0x9E3779B9))
        return count + ((h >> 8) < threshold).astype(jnp.uint32)

    return lax.fori_loop(jnp.uint32(0), n_draws, body, jnp.zeros_like(base))


def poisson_input(params: NetParams, t):
    """(excitatory, inhibitory) input (N,) of the Poisson sources at step ``t``, or None without them.

    ``weight * count`` of each Poisson stimulus that is on, on its targets, summed in name order. An
    inhomogeneous source (stim_wave columns 1 and 2: its profile's first row in ``stim_table`` and the
    steps per row, > 0) draws with threshold ``floor(threshold * factor + 0.5)``, the factor of the
    current row, computed in the run's dtype.
    """
    n_stim = params.stim_target.shape[0]
    if n_stim == 0:
        return None
    on, k = stimulus_gate(params, t)
    weight, code = params.stim_wave[:, 0], params.stim_wave[:, 4]
    table = params.stim_table
    exc = inh = jnp.zeros_like(params.a)
    for s in range(n_stim):
        poisson = on[s] & ((code[s] == 2.0) | (code[s] == 3.0))
        threshold = None
        if table.shape[0] > 0:          # profiles exist in this run (static): this source may have one
            first, hold = params.stim_wave[s, 1], params.stim_wave[s, 2]
            row = first.astype(jnp.uint32) + k[s] // jnp.maximum(hold.astype(jnp.uint32), jnp.uint32(1))
            factor = table[jnp.minimum(row, jnp.uint32(table.shape[0] - 1))]
            base = params.stim_steps[s, 4]
            scaled = jnp.floor(base.astype(factor.dtype) * factor + 0.5).astype(jnp.uint32)
            threshold = jnp.where(hold > 0, scaled, base)
        count = poisson_counts(params, t, s, jnp.where(poisson, params.stim_steps[s, 5], jnp.uint32(0)), threshold)
        add = params.stim_target[s] * (weight[s] * count.astype(weight.dtype))
        exc = exc + jnp.where(code[s] == 2.0, add, 0.0)
        inh = inh + jnp.where(code[s] == 3.0, add, 0.0)
    return exc, inh


def stimulus_current(params: NetParams, t):
    """The stimuli's current into each neuron at step ``t`` (N,), or None without stimuli.

    As model/_stimuli.py says: each stimulus's gate is integer arithmetic on
    the global step (uint32), its value ``amplitude`` or, for a sine,
    ``amplitude * sin(omega * k + phase) + offset`` with k the steps since
    onset; the currents are summed over the stimuli in name order. A function
    of the step index and the member's arrays only: chunking, batching and
    devices do not change it.
    """
    n_stim = params.stim_target.shape[0]
    if n_stim == 0:
        return None
    on, k = stimulus_gate(params, t)
    amp, offset, omega, phase, code = (params.stim_wave[:, j] for j in range(5))
    wave = amp * jnp.sin(omega * k.astype(amp.dtype) + phase) + offset
    value = jnp.where(on & (code < 2.0), jnp.where(code == 1.0, wave, amp), jnp.zeros_like(amp))
    table = params.stim_table
    rows = table.shape[0]

    def term(s):
        """Stimulus s's current (N,): its targets times its value (an array stimulus: its table row)."""
        if rows == 0:                    # no array stimulus (static): scalar values only
            return params.stim_target[s] * value[s]
        row = params.stim_steps[s, 5] + k[s] // jnp.maximum(params.stim_steps[s, 4], jnp.uint32(1))
        from_table = amp[s] * table[jnp.minimum(row, jnp.uint32(rows - 1))]
        array_on = on[s] & (code[s] == 4.0)
        return params.stim_target[s] * jnp.where(array_on, from_table, value[s])

    current = term(0)
    for s in range(1, n_stim):                                      # in name order, one stimulus at a time
        current = current + term(s)
    return current


def synaptic_current(flags: tuple, is_exc, s, drive, current):
    """One presynaptic type's current into each neuron: ``s * drive`` (a conductance times its driving
    force) where that type's pathway to the neuron's type is a conductance (``flags``: post type E, I),
    ``current`` where it is a current synapse. Static flags: a uniform kind needs no select."""
    if flags[0] == flags[1]:
        return s * drive if flags[0] else current
    return jnp.where(is_exc, s * drive if flags[0] else current, current if flags[0] else s * drive)


def step(state: NetState, params: NetParams, t, delay_steps: tuple = (1,), ordered_input: bool = False,
         integrator: str = "euler", noise_hold: int = 1, conductance: tuple = ((False, False), (False, False))):
    """Advance one network by one step of dt (forward Euler, or the Izhikevich (2003) scheme).

    Returns the new state and the raw observations of the step (jaxfne/_probes.py
    ``RAW``): ``spikes`` (bool), ``v`` the membrane potential with spikes
    shown at their 30 mV peak, ``u`` the recovery variable after the reset,
    and ``i_syn`` the net synaptic current that drove the step. Inactive (padding) networks run
    on their own drive but never emit spikes, so they stay finite and cheap. ``delay_steps`` gives the delay of each class
    of a (C, N + 1, N) weight array. ``ordered_input`` selects
    ``recurrent_input_ordered`` (same bits, no data-dependent loop).
    ``integrator``: "euler", or "izhikevich2003": v advanced by two half steps of dt / 2 with the same
    input, then u by dt from the new v, each written as the paper's code writes it
    (``0.04 * v**2 + 5 * v + 140 - u + I``). ``noise_hold``: the noise sample of step t is that of step
    ``t // noise_hold`` (drawn once, held for noise_hold steps). ``conductance`` ((E->E, E->I), (I->E, I->I)), [pre][post
    type]: those pathways are conductances, the current into a neuron whose E (I) pathway is one
    ``s_exc (rev_exc - v)`` (``s_inh (rev_inh - v)``) from the v at the start of the step (current
    synapses: ``s_exc`` and ``-s_inh``).
    """
    dt = params.dt_ms
    v, u = state.v, state.u
    if not any(any(pre) for pre in conductance):
        i_syn = state.s_exc - state.s_inh
    else:
        i_syn = (synaptic_current(conductance[0], params.is_exc, state.s_exc, params.rev_exc - v, state.s_exc)
                 + synaptic_current(conductance[1], params.is_exc, state.s_inh, params.rev_inh - v, -state.s_inh))
    noise_step = t if noise_hold == 1 else t // noise_hold
    i_total = params.i_mean + i_syn + params.noise_scale * noise_sample(params, noise_step)
    i_stim = stimulus_current(params, t)
    if i_stim is not None:                     # the stimuli's current enters last
        i_total = i_total + i_stim
    if integrator == "izhikevich2003":
        half = 0.5 * dt
        v_half = v + half * (0.04 * (v * v) + 5.0 * v + 140.0 - u + i_total)
        v_new = v_half + half * (0.04 * (v_half * v_half) + 5.0 * v_half + 140.0 - u + i_total)
        u_new = u + dt * (params.a * (params.b * v_new - u))
    else:
        v_new = v + dt * (0.04 * v * v + 5.0 * v + 140.0 - u + i_total)
        u_new = u + dt * (params.a * (params.b * v - u))
    crossed = v_new >= V_PEAK_MV
    spiked = crossed & params.active           # padding members reset but never emit spikes
    v_obs = jnp.where(crossed, V_PEAK_MV, v_new)
    v_new = jnp.where(crossed, params.c, v_new)
    u_new = jnp.where(crossed, u_new + params.d, u_new)
    inc_exc, inc_inh = (recurrent_input_ordered if ordered_input else recurrent_input)(params, spiked)
    pend_exc, pend_inh = state.pend_exc, state.pend_inh
    if pend_exc.shape[0] > 0:   # synaptic delays: input travels through the ring buffers
        if params.w.ndim == 2:   # one delay class (longer than one step): its increments as class 0
            inc_exc, inc_inh = inc_exc[None], inc_inh[None]
        inc_exc, pend_exc = deliver(pend_exc, inc_exc, t, delay_steps)
        inc_inh, pend_inh = deliver(pend_inh, inc_inh, t, delay_steps)
    s_exc = state.s_exc * params.decay_exc + inc_exc
    s_inh = state.s_inh * params.decay_inh + inc_inh
    poisson = poisson_input(params, t)
    if poisson is not None:                    # the Poisson sources' spikes join after the recurrent input
        s_exc, s_inh = s_exc + poisson[0], s_inh + poisson[1]
    new = NetState(v=v_new, u=u_new, s_exc=s_exc, s_inh=s_inh, pend_exc=pend_exc, pend_inh=pend_inh)
    return new, {"spikes": spiked, "v": v_obs, "u": u_new, "i_syn": i_syn}
