"""The plain-JAX dense baseline: what a JAX user would write first.

The same Izhikevich E/I network as jaxfne's (same equations, exponential
current synapses, Gaussian noise), but with a dense weight matrix (vmap over
members of a matrix-vector product; one (B, N) x (N, N) product when the
connectivity is shared), jax.random.normal noise and the spike raster copied
to the host after each chunk. Its cost does not depend on the activity, so a
run may stop early (``max_seconds``) and still give a fair rate.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def make_dense_baseline(model, chunk_steps: int, device=None):
    """``run(n_steps, max_seconds=None) -> (steps done, spikes)`` for ``model``'s members.

    ``device`` (default: JAX's default device) holds every array; the baseline
    is not sharded. Only single-delay models are supported (a (C, N + 1, N)
    weight array raises ValueError).
    """
    p = jax.tree_util.tree_map(np.asarray, model.params)
    if model.layout.delay_steps != (1,):
        raise ValueError("dense baseline: delayed (multi-class) weights are not supported")
    put = (lambda x: jax.device_put(x, device)) if device is not None else jnp.asarray
    shared = model.layout.shared_weights
    if shared:
        w = put(np.ascontiguousarray(p.w[:-1, :]))                   # (pre, post): x @ w
    else:
        w = put(np.ascontiguousarray(np.swapaxes(p.w[:, :-1, :], 1, 2)))   # (B, post, pre)
    exc = put(np.asarray(p.is_exc, np.float32))
    a, b, c, d = (put(x) for x in (p.a, p.b, p.c, p.d))
    i_mean, noise = put(p.i_mean), put(p.noise_scale)
    dec_e, dec_i, dt = put(p.decay_exc), put(p.decay_inh), float(model.layout.dt_ms)
    keys = put(np.asarray(jax.random.split(jax.random.PRNGKey(0), p.a.shape[0])))

    def one_step(state, t):
        v, u, se, si = state

        def member(v, u, se, si, a, b, c, d, im, ns, key):
            xi = jax.random.normal(jax.random.fold_in(key, t), v.shape)
            i = im + se - si + ns * xi
            vn = v + dt * (0.04 * v * v + 5 * v + 140 - u + i)
            un = u + dt * a * (b * v - u)
            s = vn >= 30.0
            return jnp.where(s, c, vn), jnp.where(s, un + d, un), s

        v, u, s = jax.vmap(member)(v, u, se, si, a, b, c, d, i_mean, noise, keys)
        x = s.astype(jnp.float32)
        if shared:
            inc_e, inc_i = (x * exc) @ w, (x * (1 - exc)) @ w
        else:
            inc_e = jnp.einsum("bij,bj->bi", w, x * exc)
            inc_i = jnp.einsum("bij,bj->bi", w, x * (1 - exc))
        se = se * dec_e[:, None] + inc_e
        si = si * dec_i[:, None] + inc_i
        return (v, u, se, si), s

    @jax.jit
    def chunk(state, t0):
        return lax.scan(one_step, state, t0 + jnp.arange(chunk_steps))

    def run(n_steps: int, max_seconds: float | None = None):
        state = (jnp.full_like(a, -65.0), b * -65.0, jnp.zeros_like(a), jnp.zeros_like(a))
        total, done, start = 0, 0, time.perf_counter()
        for t0 in range(0, n_steps, chunk_steps):
            state, spikes = chunk(state, t0)
            keep = min(chunk_steps, n_steps - t0)
            total += int(np.asarray(spikes)[:keep].sum())          # spikes copied to the host
            done += keep
            if max_seconds is not None and time.perf_counter() - start > max_seconds:
                break
        return done, total

    return run
