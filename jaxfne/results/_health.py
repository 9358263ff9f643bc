"""Health checks: silent, runaway, numerically unstable and non-finite networks, with remedies."""

from __future__ import annotations

import dataclasses

import numpy as np

SILENT_HZ = 1.0
RUNAWAY_HZ = 50.0
#: a neuron firing at this fraction of the step rate 1/dt or more (a spike every 4 steps) is not resolved by
#: the time step: forward Euler overshoots. Measured on an uncoupled tonic-spiking column (200 ms):
#: drive -1e4 gives 5000 Hz at dt = 0.1 ms (v overshoots to -1250 mV, then the quadratic term jumps it past
#: the peak in one step) and 0 Hz at dt = 0.01 ms; drive 1000 gives 3076 Hz at dt = 0.1 ms (0.31 of 1/dt)
#: against the converged 5084 / 5200 Hz at dt = 0.01 / 0.001 ms. Drive 100 gives 436 Hz (0.04 of 1/dt).
UNSTABLE_FRACTION_OF_STEP_RATE = 0.25

REMEDIES = {
    "silent": "Silent network (< 1 Hz): increase the external input current (Configuration.drive(current=...)) "
              "or the noise; a different seed or the 'tonic_spiking' emitter preset helps only when the drive "
              "is already near threshold.",
    "runaway": "Runaway network (> 50 Hz): increase the inhibitory coupling strength "
               "(connectivity(strength={'I->E': ...})) or lower the drive (Configuration.drive(current=...)); "
               "a preset with stronger adaptation (e.g. 'spike_frequency_adaptation') helps less. "
               "('chattering' bursts, and usually fires faster.)",
    "unstable": "Numerical instability: some neurons fire at 1/4 or more of the step rate 1/dt (a spike every "
                "few steps), which the time step cannot resolve (forward Euler overshoots; a strongly negative "
                "drive can make v jump past the spike peak in one step). Reduce dt_ms (e.g. 0.01) or weaken the "
                "drive (Configuration.drive(current=...)); more inhibition does not fix this.",
    "non_finite": "NaN/Inf in output: reduce the time step to 0.01 ms, use dtype='float64', or check the "
                  "Izhikevich parameter bounds.",
}


@dataclasses.dataclass(frozen=True)
class HealthReport:
    """``status`` is 'ok', 'silent', 'runaway', 'unstable' or 'non_finite' (per member for ensembles).

    ``rate_hz``: the mean rate over neurons; 'unstable' looks at the fastest neuron (see
    UNSTABLE_FRACTION_OF_STEP_RATE) and takes precedence over 'runaway' and 'silent'.
    """

    status: object
    rate_hz: object
    finite: object
    messages: tuple

    @property
    def ok(self) -> bool:
        return bool(np.all(np.asarray(self.status) == "ok"))

    def to_dict(self) -> dict:
        conv = (lambda x: x.tolist() if isinstance(x, np.ndarray) else x)
        return {"status": conv(self.status), "rate_hz": conv(self.rate_hz), "finite": conv(self.finite),
                "messages": list(self.messages)}


def check_health(signals) -> HealthReport:
    spk = signals["SPK"]
    other = [d for d in spk.dims if d != "member"]
    time_dims = [d for d in other if d != "neuron"]
    per_neuron = spk.astype(float).mean(time_dims) / (signals.dt_ms / 1000.0)
    rate = np.asarray(per_neuron.mean("neuron"))
    fastest = np.asarray(per_neuron.max("neuron"))
    unstable = fastest >= UNSTABLE_FRACTION_OF_STEP_RATE * 1000.0 / signals.dt_ms
    finite = np.ones_like(rate, dtype=bool)
    for name in signals:
        if name == "SPK":
            continue
        da = signals[name]
        finite &= np.asarray(np.isfinite(da).all([d for d in da.dims if d != "member"]))
    if "state_finite" in spk.coords:   # the final (v, u), when the driver recorded it
        finite &= np.asarray(spk.coords["state_finite"].values, dtype=bool)
    status = np.where(~finite, "non_finite", np.where(unstable, "unstable", np.where(
        rate < SILENT_HZ, "silent", np.where(rate > RUNAWAY_HZ, "runaway", "ok"))))
    messages = tuple(REMEDIES[s] for s in dict.fromkeys(np.atleast_1d(status).tolist()) if s != "ok")
    if status.ndim == 0:
        return HealthReport(str(status), float(rate), bool(finite), messages)
    return HealthReport(status, rate, finite, messages)
