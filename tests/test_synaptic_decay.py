"""Each synaptic current decays as exp(-t / tau) with its own configured time constant (docs/model.md).

A two-cell float64 network without noise: cell 0 is E, cell 1 is I, both driven to fire regularly, and
connected E->I and I->E only (no self-connections, so E->E and I->I have no partner). The ``source``
probe (s_exc - s_inh at the start of each step) of cell 1 is then its excitatory current alone and that
of cell 0 minus its inhibitory current alone. Between arrivals each must shrink by exactly
exp(-dt / tau) per step (ratio of successive samples, 1e-12 relative, tau_exc = 3 ms and
tau_inh = 11 ms so that swapping them fails), and every arrival must add the same jump.

A spike in step j reaches ``source`` at step j + D, with D = max(1, round(delay_ms / dt_ms)): checked
without delays, with two delay classes (E->I 1 ms, I->E 0.5 ms: the ring-buffer path of both engines)
and with one uniform delay of 1 ms (which the XLA step once delivered after one step: fixed 2026-11-30).
"""

import numpy as np
import pytest

import jaxfne as jtfne
from conftest import needs_native

DT = 0.1
TAU_EXC, TAU_INH = 3.0, 11.0


def configuration(delay_exc_ms, delay_inh_ms):
    """E->I delayed by ``delay_exc_ms``, I->E by ``delay_inh_ms``; equal delays are set column-wide."""
    uniform = delay_exc_ms == delay_inh_ms
    pathways = {} if uniform else {"L2/3.E->L2/3.I": {"delay_ms": delay_exc_ms},
                                   "L2/3.I->L2/3.E": {"delay_ms": delay_inh_ms}}
    return (jtfne.Configuration()
            .runtime(seed=4, dtype="float64", duration_ms=300.0, dt_ms=DT)
            .column(n=2)
            .cell_types({"E": 0.5, "I": 0.5})
            .connectivity(p=1.0, strength={"E->E": 0.0, "E->I": 5.0, "I->E": 3.0, "I->I": 0.0},
                          tau_exc_ms=TAU_EXC, tau_inh_ms=TAU_INH, delay_ms=delay_exc_ms if uniform else 0.0,
                          pathways=pathways)
            .set_emitter(preset="regular_spiking")
            .drive(current={"E": 14.0, "I": 10.0}, noise=0.0)
            .probes(["SPK", "source"]))


def check_decay(current, pre_spikes, tau, delay_steps):
    """``current`` (T,) >= 0 made of jumps at pre_spikes + delay_steps and exponential decay in between."""
    decay = np.exp(-DT / tau)
    arrival = np.zeros(current.size, bool)
    hits = np.flatnonzero(pre_spikes) + delay_steps
    arrival[hits[hits < current.size]] = True
    k = np.arange(current.size - 1)
    between = ~arrival[k + 1] & (current[k] != 0.0)
    assert between.sum() > 1000 and arrival.sum() >= 5
    ratio = current[k + 1][between] / current[k][between]
    np.testing.assert_allclose(ratio, decay, rtol=1e-12, atol=0)
    # nothing before the first arrival, and every arrival adds the same weight
    assert not current[: np.flatnonzero(arrival)[0]].any()
    at = k[arrival[k + 1]]
    jumps = current[at + 1] - current[at] * decay
    assert jumps.min() > 0
    np.testing.assert_allclose(jumps, jumps[0], rtol=1e-12)


@pytest.mark.parametrize("engine", ["xla", pytest.param("native", marks=needs_native)])
@pytest.mark.parametrize("delays_ms", [(0.0, 0.0), (1.0, 0.5), (1.0, 1.0)], ids=["no-delay", "two-classes", "uniform"])
def test_each_current_decays_with_its_own_tau(engine, delays_ms):
    model = jtfne.construct(configuration(*delays_ms))
    assert list(model.neuron_coords["cell_type"][0]) == ["E", "I"]
    signals = jtfne.simulate(model, engine=engine)
    spk = np.asarray(signals["SPK"])
    src = np.asarray(signals["source"])
    assert src.dtype == np.float64
    d_exc, d_inh = (max(1, round(d / DT)) for d in delays_ms)
    # cell 1 (I) receives only excitation from cell 0, cell 0 (E) only inhibition from cell 1
    check_decay(src[:, 1], spk[:, 0], TAU_EXC, d_exc)
    check_decay(-src[:, 0], spk[:, 1], TAU_INH, d_inh)
