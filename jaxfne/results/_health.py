"""Health checks: silent, runaway and non-finite networks, with remedies."""

from __future__ import annotations

import dataclasses

import numpy as np

SILENT_HZ = 1.0
RUNAWAY_HZ = 50.0

REMEDIES = {
    "silent": "Silent network (< 1 Hz): increase the external input current (Configuration.drive(current=...)) "
              "or the noise; a different seed or the 'tonic_spiking' emitter preset helps only when the drive "
              "is already near threshold.",
    "runaway": "Runaway network (> 50 Hz): increase the inhibitory coupling strength "
               "(connectivity(strength={'I->E': ...})) or lower the drive (Configuration.drive(current=...)); "
               "a preset with stronger adaptation (e.g. 'spike_frequency_adaptation') helps less. "
               "('chattering' bursts, and usually fires faster.)",
    "non_finite": "NaN/Inf in output: reduce the time step to 0.01 ms, use dtype='float64', or check the "
                  "Izhikevich parameter bounds.",
}


@dataclasses.dataclass(frozen=True)
class HealthReport:
    """``status`` is 'ok', 'silent', 'runaway' or 'non_finite' (per member for ensembles)."""

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
    rate = np.asarray(spk.astype(float).mean(other)) / (signals.dt_ms / 1000.0)
    finite = np.ones_like(rate, dtype=bool)
    for name in signals:
        if name == "SPK":
            continue
        da = signals[name]
        finite &= np.asarray(np.isfinite(da).all([d for d in da.dims if d != "member"]))
    if "state_finite" in spk.coords:   # the final (v, u), when the driver recorded it
        finite &= np.asarray(spk.coords["state_finite"].values, dtype=bool)
    status = np.where(~finite, "non_finite", np.where(rate < SILENT_HZ, "silent",
                                                      np.where(rate > RUNAWAY_HZ, "runaway", "ok")))
    messages = tuple(REMEDIES[s] for s in dict.fromkeys(np.atleast_1d(status).tolist()) if s != "ok")
    if status.ndim == 0:
        return HealthReport(str(status), float(rate), bool(finite), messages)
    return HealthReport(status, rate, finite, messages)
