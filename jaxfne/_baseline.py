"""The plain-JAX dense baseline: what a JAX user would write first.

The same Izhikevich E/I network as jaxfne's (same equations, exponential
current synapses, Gaussian noise), but with a dense per-member weight matrix
(vmap over members of a matrix-vector product), jax.random.normal noise and the
spike raster copied to the host after each chunk.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def make_dense_baseline(model, chunk_steps: int):
    p = jax.tree_util.tree_map(np.asarray, model.params)
    w = jnp.asarray(np.swapaxes(p.w[:, :-1, :], 1, 2))     # (B, post, pre)
    exc = jnp.asarray(p.is_exc, jnp.float32)
    a, b, c, d = (jnp.asarray(x) for x in (p.a, p.b, p.c, p.d))
    i_mean, noise = jnp.asarray(p.i_mean), jnp.asarray(p.noise_scale)
    dec_e, dec_i, dt = jnp.asarray(p.decay_exc), jnp.asarray(p.decay_inh), float(model.layout.dt_ms)
    keys = jax.random.split(jax.random.PRNGKey(0), p.a.shape[0])

    def one_step(state, t):
        v, u, se, si = state

        def member(v, u, se, si, w, exc, a, b, c, d, im, ns, de, di, key):
            xi = jax.random.normal(jax.random.fold_in(key, t), v.shape)
            i = im + se - si + ns * xi
            vn = v + dt * (0.04 * v * v + 5 * v + 140 - u + i)
            un = u + dt * a * (b * v - u)
            s = vn >= 30.0
            vn, un = jnp.where(s, c, vn), jnp.where(s, un + d, un)
            x = s.astype(jnp.float32)
            se = se * de + w @ (x * exc)
            si = si * di + w @ (x * (1 - exc))
            return vn, un, se, si, s

        v, u, se, si, s = jax.vmap(member)(v, u, se, si, w, exc, a, b, c, d, i_mean, noise, dec_e, dec_i, keys)
        return (v, u, se, si), s

    @jax.jit
    def chunk(state, t0):
        return lax.scan(one_step, state, t0 + jnp.arange(chunk_steps))

    def run(n_steps):
        state = (jnp.full_like(a, -65.0), b * -65.0, jnp.zeros_like(a), jnp.zeros_like(a))
        total = 0
        for t0 in range(0, n_steps, chunk_steps):
            state, spikes = chunk(state, t0)
            total += int(np.asarray(spikes).sum())          # spikes copied to the host
        return total

    return run
