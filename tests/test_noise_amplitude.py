"""The noise amplitude: over one step the noise moves v by sigma * sqrt(dt) * xi (docs/model.md).

Uncoupled float64 cells far below threshold (regular spiking with a hyperpolarising drive I = -10:
rest at -78.7 mV, the unstable fixed point at -41.3 mV, voltage noise of about 1.5 mV). The deterministic part of every step is recomputed in numpy from the recorded (v, u) of the step
before (u is also rebuilt in numpy from the v trace, u' = u + dt a (b v - u), and compared with the
``u`` probe); what is left is the noise increment, whose variance must be sigma^2 * dt per cell type.

Tolerance: with n independent standard normal xi, mean(r^2) / (sigma^2 dt) has the chi-square spread
sqrt(2 / n). n = 100 cells x 1000 steps per type gives 0.0045; the test allows 5 of those (0.022),
while a noise amplitude off by x1.1 moves the ratio by 0.21 (47 standard errors) and a lost or
doubled 1/sqrt(dt) by a factor dt or 1/dt.
"""

import numpy as np
import pytest

import jaxfne as jtfne
from conftest import needs_native

A_, B_ = 0.02, 0.2                        # regular spiking
SIGMA = {"E": 1.0, "I": 2.5}              # different per type: swapping them fails
CURRENT = -10.0                           # keeps v near -79 mV, far below threshold
N_PER_TYPE = 100
N_STEPS = 1000
N_SE = 5.0


def configuration(dt_ms, probes):
    return (jtfne.Configuration()
            .runtime(seed=11, dtype="float64", duration_ms=N_STEPS * dt_ms, dt_ms=dt_ms)
            .column(n=2 * N_PER_TYPE)
            .cell_types({"E": 0.5, "I": 0.5})
            .connectivity(strength={"E->E": 0.0, "E->I": 0.0, "I->E": 0.0, "I->I": 0.0})
            .set_emitter(preset="regular_spiking")
            .drive(current=CURRENT, noise=SIGMA)
            .probes(probes))


def noise_increments(v, u, dt, current=CURRENT):
    """r_k = v_k - (v_{k-1} + dt (0.04 v^2 + 5 v + 140 - u + I)) with (v_{-1}, u_{-1}) = (-65, b * -65)."""
    v_prev = np.concatenate([np.full((1, v.shape[1]), -65.0), v[:-1]])
    u_prev = np.concatenate([np.full((1, v.shape[1]), B_ * -65.0), u[:-1]])
    return v - (v_prev + dt * (0.04 * v_prev * v_prev + 5.0 * v_prev + 140.0 - u_prev + current))


def recovery_from_v(v, dt):
    """u after each step, from the v trace alone (no spikes, so no reset): u' = u + dt a (b v - u)."""
    u = np.empty_like(v)
    u_k, v_k = np.full(v.shape[1], B_ * -65.0), np.full(v.shape[1], -65.0)
    for k in range(v.shape[0]):
        u_k = u_k + dt * (A_ * (B_ * v_k - u_k))
        u[k] = u_k
        v_k = v[k]
    return u


def check_amplitude(signals, dt, recorded_u=None):
    spk = np.asarray(signals["SPK"])
    v = np.asarray(signals["Vm"])
    assert v.dtype == np.float64 and v.shape == (N_STEPS, 2 * N_PER_TYPE)
    assert not spk.any() and v.max() < -60.0 and v.min() > -95.0          # far below threshold: no spikes
    u = recovery_from_v(v, dt)
    if recorded_u is not None:
        np.testing.assert_allclose(recorded_u, u, rtol=1e-12, atol=1e-12)
    r = noise_increments(v, u, dt)
    types = np.asarray(signals["SPK"]["cell_type"].values)
    for t, sigma in SIGMA.items():
        x = r[:, types == t]
        n = x.size
        ratio = float(np.mean(x * x)) / (sigma * sigma * dt)
        se = np.sqrt(2.0 / n)
        assert abs(ratio - 1.0) < N_SE * se, (t, dt, ratio, se)
        # and no bias: mean of sigma sqrt(dt) xi over n samples
        assert abs(float(x.mean())) < N_SE * sigma * np.sqrt(dt / n), (t, dt, float(x.mean()))


@pytest.mark.parametrize("dt", [0.1, 0.05])
def test_noise_increment_variance_xla(dt):
    signals = jtfne.simulate(jtfne.construct(configuration(dt, ["SPK", "Vm", "u"])), engine="xla")
    check_amplitude(signals, dt, recorded_u=np.asarray(signals["u"]))


@needs_native
@pytest.mark.parametrize("dt", [0.1, 0.05])
def test_noise_increment_variance_native(dt):
    signals = jtfne.simulate(jtfne.construct(configuration(dt, ["SPK", "Vm"])), engine="native")
    check_amplitude(signals, dt)


def test_closed_form_catches_a_ten_percent_error():
    """The tolerance is tight enough: the same statistic on increments scaled by 1.1 is far outside it."""
    rng = np.random.default_rng(0)
    dt, n = 0.1, N_PER_TYPE * N_STEPS
    for scale, inside in ((1.0, True), (1.1, False), (1.0 / 1.1, False)):
        x = scale * np.sqrt(dt) * rng.standard_normal(n)
        assert (abs(float(np.mean(x * x)) / dt - 1.0) < N_SE * np.sqrt(2.0 / n)) == inside
