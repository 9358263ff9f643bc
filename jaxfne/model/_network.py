"""Per-network parameters and state: the arrays one Izhikevich network needs.

``build_network`` is written for one network. ``construct`` vmaps it over the
member axis; every random draw derives from the member's own seed through
``fold_in`` with a fixed tag, never from its position in a batch.

Several columns: the draws of column c (heterogeneity, depth) and of the
block [post column a, pre column b] of the connectivity come from their own
streams, keyed by the column positions; column 0 and block [0, 0] use the
one-column streams. So the first column's arrays do not change when columns
are added after it.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._params import NetParams
from ._stimuli import TAG_STIMULUS_SPIKES, stimulus_targets

# fold_in tags: one independent stream per purpose
TAG_HETEROGENEITY = 1

TAG_CONNECTIVITY = 2

TAG_DEPTH = 3

TAG_NOISE = 4

class Knobs(NamedTuple):
    """Every per-member number a sweep may change (scalars per member)."""

    seed: jax.Array            # uint32 pair source: member seed (int)
    conn_seed: jax.Array       # seed used for connectivity (== seed unless shared)
    p: jax.Array               # (G, G) connection probability [post_group, pre_group]
    g: jax.Array               # (G, G) strength [post_group, pre_group]; group = 2 * layer + type
    tau_exc_ms: jax.Array
    tau_inh_ms: jax.Array
    coeffs: jax.Array          # (2, 4, 3) preset polynomial per type, parameter, power
    current: jax.Array         # (2,) per type
    noise: jax.Array           # (2,) per type
    dt_ms: jax.Array
    stim_steps: jax.Array      # (S, 7) uint32 timing of each stimulus in steps (model/_stimuli.py)
    stim_wave: jax.Array       # (S, 5) waveform of each stimulus
    stim_fraction: jax.Array   # (S,) fraction of its candidates each stimulus targets
    reversal: jax.Array        # (2,) reversal potentials (mV) of conductance synapses, per presynaptic type
    stim_onsets: jax.Array     # (S, O) uint32 onsets (steps) of the trials stimuli, UNBOUNDED-padded

def _raw_key(key):
    """The two uint32 words of a key (typed or raw)."""
    return jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key


def member_key(seed):
    """The root key of a member: a function of its seed only."""
    return jax.random.PRNGKey(seed)

def _per_column(key, sizes: tuple, dtype):
    """(N,) uniforms: column 0 from ``key`` itself, column c > 0 from fold_in(key, c)."""
    parts = [jax.random.uniform(key if c == 0 else jax.random.fold_in(key, c), (size,), dtype=dtype)
             for c, size in enumerate(sizes)]
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts)

def _per_block(key, sizes: tuple, dtype):
    """(N, N) uniforms: block [a, b] from fold_in(fold_in(key, a), b), block [0, 0] from ``key``."""
    if len(sizes) == 1:
        return jax.random.uniform(key, (sizes[0], sizes[0]), dtype=dtype)
    return jnp.block([[jax.random.uniform(key if a == b == 0 else jax.random.fold_in(jax.random.fold_in(key, a), b),
                                          (na, nb), dtype=dtype)
                       for b, nb in enumerate(sizes)] for a, na in enumerate(sizes)])

def fixed_indegree_mask(u, group, k, self_pair, n_groups: int):
    """(N, N) [post, pre] mask giving each neuron exactly ``k[post, pre]`` inputs from each presynaptic group.

    ``u`` (N, N) uniforms, ``group`` (N,) the group of each cell, ``k`` (N, N) the inputs a post cell takes
    from the group of each pre cell (at most its candidates), ``self_pair`` (N, N) the pairs that are not
    candidates (the diagonal without autapses). In each row the cells are sorted by (group, u), the
    non-candidates last within their group, and the first k of every group are chosen: those with the
    smallest uniforms, so the choice is a function of the member's connectivity stream only.
    """
    n = u.shape[0]
    key = group[None, :].astype(u.dtype) * 4.0 + jnp.where(self_pair, 2.0, u)    # u < 1 < 2 < 4
    order = jnp.argsort(key, axis=1, stable=True)
    counts = jnp.sum(group[None, :] == jnp.arange(n_groups)[:, None], axis=1)
    start = jnp.cumsum(counts) - counts                                            # first position of each group
    rank_sorted = jnp.arange(n)[None, :] - start[group[order]]
    rank = jnp.zeros_like(order).at[jnp.arange(n)[:, None], order].set(rank_sorted)
    return (rank < k) & ~self_pair


def pathway_flags(flags: tuple, is_exc):
    """(N, N) [post, pre] booleans of a per-pathway table ``flags`` ((E->E, E->I), (I->E, I->I)),
    [pre][post type]."""
    t = jnp.where(is_exc, 0, 1)
    return jnp.asarray(flags)[t[None, :], t[:, None]]


def delta_scaled(w_post_pre, is_exc, delta: tuple, dt):
    """W[post, pre] with the weights of delta-synapse pathways divided by dt: the current w / dt for one
    step moves v by about w (``delta``: ((E->E, E->I), (I->E, I->I)) are delta synapses)."""
    if not any(any(row) for row in delta):
        return w_post_pre
    return jnp.where(pathway_flags(delta, is_exc), w_post_pre / dt, w_post_pre)


def post_decay(flags: tuple, is_exc, decay):
    """(N,) decay of each postsynaptic neuron's accumulator of one presynaptic type: 0 (a delta synapse:
    the current lasts one step) where ``flags`` (post type E, I) says delta, else ``decay``."""
    return jnp.where(jnp.asarray(flags)[jnp.where(is_exc, 0, 1)], jnp.zeros_like(decay), decay)


def delta_targets(target, code, is_exc, delta: tuple, dt):
    """(S, N) stimulus targets with 1 / dt on the targets of a Poisson source (kind code 2: onto the E
    accumulator, 3: the I one) whose pathway to that neuron's type is a delta synapse: its spike then
    moves v by about its weight, as a recurrent delta synapse does."""
    if not any(any(row) for row in delta):
        return target
    t = jnp.where(is_exc, 0, 1)
    flags = jnp.asarray(delta)
    on_delta = jnp.where(code[:, None] == 2.0, flags[0][t][None, :],
                         jnp.where(code[:, None] == 3.0, flags[1][t][None, :], False))
    return jnp.where(on_delta, target / dt, target)


def weight_rows(w_post_pre, delay_class_of_pair, n_classes: int, dtype):
    """W[post, pre] >= 0 as the step reads it: pre-major rows plus a zero row, one matrix per delay class."""
    n = w_post_pre.shape[0]
    if n_classes == 1:
        return jnp.concatenate([w_post_pre.T, jnp.zeros((1, n), dtype)], axis=0)
    return jnp.stack([jnp.concatenate([jnp.where(delay_class_of_pair == c, w_post_pre, 0.0).T,
                                       jnp.zeros((1, n), dtype)], axis=0) for c in range(n_classes)])


def build_network(knobs: Knobs, is_exc, layer, depth_lo, depth_hi, contact_z, contact_column, delay_class,
                  stim_region=None, stim_type=None, stim_tag=None, neuron_values=None, neuron_mask=None, *,
                  dtype, r0_um, n_classes: int, column_sizes: tuple | None = None, rule: str = "probability",
                  autapses: bool = False, delta: tuple = ((False, False), (False, False)), noise_hold: int = 1,
                  random_weights: bool = True):
    """Arrays of one network from its knobs; ``is_exc``/``layer``/``depth_*`` are (N,).

    ``layer`` is each neuron's layer slot (one per layer of each column);
    ``contact_column`` (C,) the column of each contact, whose LFP proxy sums
    that column's neurons only; ``column_sizes`` the neurons per column
    (static; None: one column). ``delay_class`` (G, G) gives the delay class
    of each [post, pre] group pair. ``stim_region`` (S, N), ``stim_type`` (S,) and ``stim_tag`` (S,):
    the stimuli's target candidates (model/_stimuli.py ``stimulus_regions``; None: no stimuli).
    ``neuron_values`` (4, N) and ``neuron_mask`` (4,): per-neuron (a, b, c, d) replacing the parameters
    whose mask is True (``set_emitter(per_neuron=...)``; None: none). Static options: ``rule``
    ("probability" or "fixed_indegree"), ``autapses`` (self-connections allowed), ``delta`` (((E->E, E->I), (I->E, I->I)): the
    pathways with delta synapses: their weights are divided by dt and the postsynaptic accumulator of that
    presynaptic type decays to 0 in one step; a Poisson source onto one has 1 / dt on its targets),
    ``noise_hold`` (steps the noise is held: its std is sigma / sqrt(noise_hold * dt)),
    ``random_weights`` (False: w is left empty, the caller sets the user's matrix, ``weight_rows``).
    Returns (params, depth (N,), r (N,)): r ~ U(0, 1) is each neuron's heterogeneity draw, from the
    member's own stream (TAG_HETEROGENEITY), so it does not depend on the member's place in a batch.
    """
    n = is_exc.shape[0]
    sizes = (n,) if column_sizes is None else tuple(column_sizes)
    key = member_key(knobs.seed)
    r = _per_column(jax.random.fold_in(key, TAG_HETEROGENEITY), sizes, dtype)
    t = jnp.where(is_exc, 0, 1)
    coeffs = knobs.coeffs.astype(dtype)[t]                      # (N, 4, 3)
    # elementwise, in a fixed order (a reduction here could be reordered by XLA
    # differently for different batch sizes and break bit-identity across layouts)
    abcd = coeffs[..., 0] + coeffs[..., 1] * r[:, None] + coeffs[..., 2] * (r * r)[:, None]  # (N, 4)
    if neuron_values is not None:
        abcd = jnp.where(neuron_mask[None, :], neuron_values.T.astype(dtype), abcd)

    # connectivity: W[post, pre] = mask * 2 u * g[post, pre] / expected inputs
    ckey = jax.random.fold_in(member_key(knobs.conn_seed), TAG_CONNECTIVITY)
    kmask, kw = jax.random.split(ckey)
    u = _per_block(kw, sizes, dtype)
    group = 2 * layer + t                                          # (N,) group of each cell
    n_groups = knobs.g.shape[-1]
    group_size = jnp.sum(group[None, :] == jnp.arange(n_groups)[:, None], axis=1).astype(dtype)
    same = group[:, None] == group[None, :]
    pair = (group[:, None], group[None, :])                        # [post, pre]
    p = knobs.p.astype(dtype)[pair]
    self_pair = jnp.zeros((n, n), bool) if autapses else jnp.eye(n, dtype=bool)
    candidates = group_size[group][None, :] - (0.0 if autapses else same.astype(dtype))  # a cell is not its own input
    if rule == "fixed_indegree":
        expected = jnp.floor(p * candidates + 0.5)
        mask = fixed_indegree_mask(_per_block(kmask, sizes, dtype), group, expected, self_pair, n_groups)
    else:
        mask = (_per_block(kmask, sizes, dtype) < p) & ~self_pair
        expected = p * candidates
    g = knobs.g.astype(dtype)[pair]
    w = jnp.where(mask & (expected > 0), 2.0 * u * g / jnp.maximum(expected, 1e-30), 0.0).astype(dtype)
    dt = knobs.dt_ms.astype(dtype)
    w = delta_scaled(w, is_exc, delta, dt)
    w = weight_rows(w, delay_class[pair], n_classes, dtype) if random_weights else jnp.zeros((0, 0), dtype)

    depth = depth_lo + (depth_hi - depth_lo) * _per_column(jax.random.fold_in(key, TAG_DEPTH), sizes, dtype)
    dz = contact_z.astype(dtype)[:, None] - depth[None, :]
    kernel = r0_um / jnp.sqrt(dz * dz + r0_um * r0_um)
    if len(sizes) > 1:   # a contact sees the neurons of its own column only
        column = jnp.repeat(jnp.arange(len(sizes)), jnp.asarray(sizes), total_repeat_length=n)
        kernel = jnp.where(contact_column[:, None] == column[None, :], kernel, 0.0)

    noise_key = jax.random.fold_in(key, TAG_NOISE)
    params = NetParams(
        a=abcd[:, 0], b=abcd[:, 1], c=abcd[:, 2], d=abcd[:, 3], is_exc=is_exc,
        w=w, i_mean=knobs.current.astype(dtype)[t],
        noise_scale=knobs.noise.astype(dtype)[t] / jnp.sqrt(dt if noise_hold == 1 else dt * noise_hold),
        decay_exc=post_decay(delta[0], is_exc, jnp.exp(-dt / knobs.tau_exc_ms.astype(dtype))),
        decay_inh=post_decay(delta[1], is_exc, jnp.exp(-dt / knobs.tau_inh_ms.astype(dtype))),
        dt_ms=dt, noise_key=jax.random.key_data(noise_key) if jnp.issubdtype(noise_key.dtype, jax.dtypes.prng_key) else noise_key,
        lfp_kernel=kernel.astype(dtype), active=jnp.asarray(True),
        stim_target=(jnp.zeros((0, n), dtype) if stim_region is None else
                     delta_targets(stimulus_targets(key, is_exc, stim_region, stim_type, stim_tag,
                                                    knobs.stim_fraction.astype(dtype), dtype),
                                   knobs.stim_wave[:, 4], is_exc, delta, dt)),
        stim_steps=knobs.stim_steps.astype(jnp.uint32), stim_wave=knobs.stim_wave.astype(dtype),
        stim_key=_raw_key(jax.random.fold_in(key, TAG_STIMULUS_SPIKES)),
        stim_table=jnp.zeros((0, n), dtype),     # shared by every member: construct sets it
        rev_exc=knobs.reversal.astype(dtype)[0], rev_inh=knobs.reversal.astype(dtype)[1],
        stim_onsets=knobs.stim_onsets.astype(jnp.uint32),
    )
    return params, depth, r
