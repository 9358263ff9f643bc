"""The counter-based noise generator: distribution, independence, layout-free."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxfne as jtfne
from jaxfne.engine._step import noise_sample


def draws(seed=0, steps=2000, n=500, start=0):
    model = jtfne.construct(jtfne.Configuration().column(n=n).runtime(seed=seed))
    params = model.member_params(0)
    f = jax.jit(jax.vmap(lambda t: noise_sample(params, t)))
    return np.asarray(f(jnp.arange(start, start + steps, dtype=jnp.uint32)), dtype=np.float64)


def test_moments_match_a_standard_normal():
    x = draws().ravel()                         # 1e6 samples
    n = x.size
    assert abs(x.mean()) < 5 / np.sqrt(n)
    assert abs(x.var() - 1.0) < 5 * np.sqrt(2.0 / n)
    skew = ((x - x.mean()) ** 3).mean() / x.std() ** 3
    kurt = ((x - x.mean()) ** 4).mean() / x.var() ** 2 - 3.0
    assert abs(skew) < 5 * np.sqrt(6.0 / n)
    assert abs(kurt) < 5 * np.sqrt(24.0 / n)
    # tail probabilities against the normal CDF (within 5 binomial standard errors)
    for z, p in ((1.0, 0.158655), (2.0, 0.0227501), (3.0, 0.0013499)):
        frac = (x > z).mean()
        assert abs(frac - p) < 5 * np.sqrt(p * (1 - p) / n), (z, frac)


def test_kolmogorov_smirnov():
    from math import erf
    x = np.sort(draws(steps=200).ravel())
    cdf = 0.5 * (1.0 + np.vectorize(erf)(x / np.sqrt(2.0)))
    emp = np.arange(1, x.size + 1) / x.size
    d = np.max(np.abs(emp - cdf))
    assert d < 1.63 / np.sqrt(x.size)           # 1 % critical value


@pytest.mark.parametrize("axis", [0, 1])
def test_no_correlation_between_neighbouring_steps_and_neurons(axis):
    x = draws(steps=2000, n=200)
    a = np.take(x, np.arange(x.shape[axis] - 1), axis=axis).ravel()
    b = np.take(x, np.arange(1, x.shape[axis]), axis=axis).ravel()
    r = np.corrcoef(a, b)[0, 1]
    assert abs(r) < 5 / np.sqrt(a.size)


def test_members_are_independent():
    a, b = draws(seed=1, steps=1000, n=200).ravel(), draws(seed=2, steps=1000, n=200).ravel()
    assert abs(np.corrcoef(a, b)[0, 1]) < 5 / np.sqrt(a.size)
    assert not np.array_equal(a, b)


def test_stream_depends_only_on_step_index():
    whole = draws(steps=300, n=50)
    tail = draws(steps=100, n=50, start=200)
    np.testing.assert_array_equal(whole[200:], tail)


def test_never_infinite_over_many_draws():
    """2^26 draws (several times the 2^24 levels): all finite, bounded by the top level (5.42)."""
    model = jtfne.construct(jtfne.Configuration().column(n=4096).runtime(seed=3))
    params = model.member_params(0)

    @jax.jit
    def extremes(steps):
        z = jax.vmap(lambda t: noise_sample(params, t))(steps)
        return jnp.max(jnp.abs(z)), jnp.all(jnp.isfinite(z))

    worst = 0.0
    for start in range(0, 16384, 2048):
        m, ok = extremes(jnp.arange(start, start + 2048, dtype=jnp.uint32))
        assert bool(ok)
        worst = max(worst, float(m))
    assert 4.5 < worst <= 5.43
