"""Izhikevich (2003), "Simple model of spiking neurons": the paper's network in jaxfne, two ways.

    python tutorials/izhikevich2003.py [--out outputs/izhikevich2003] [--duration-ms 1000] [--seeds 3]

1. **As published** (dt = 1 ms, float64): the paper's random numbers drawn with numpy and passed in
   (per-neuron a, b, c, d; the weight matrix S with self-connections and delta synapses; the thalamic
   input as an array stimulus), with the paper's integration scheme. tests/test_izhikevich2003.py
   checks that this run's spike times equal a numpy transcription of the published program.
2. **As users would write it**: jaxfne's own random streams (drawn weights whose distribution is the
   paper's: 2 u g / N_pre with g = 200 from E and 100 from I over 800 and 200 cells is 0.5 U and U;
   the Izhikevich (2003) heterogeneity; the thalamic input as noise held for 1 ms), an ensemble of
   seeds at dt = 0.1 ms.

Writes a raster and a population spectrum of each (PNG) and prints their rates and spectral peaks.
Measured (docs/model.md): as published 7.2 Hz, peaks at ~8 Hz and ~30-35 Hz; at dt = 0.1 ms 8.4 Hz,
peaks at ~8.8 Hz and ~36-44 Hz (the paper's 1-ms step is not converged).
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

import jaxfne as jtfne

NE, NI = 800, 200
N = NE + NI


def as_published(seed: int, duration_ms: float) -> jtfne.Configuration:
    """The paper's network with its own random numbers (numpy), at its 1-ms step."""
    steps = int(duration_ms)
    rng = np.random.default_rng(seed)
    r_e, r_i = rng.random(NE), rng.random(NI)
    weights = np.hstack([0.5 * rng.random((N, NE)), -rng.random((N, NI))])          # S[post, pre]
    thalamic = np.hstack([5.0 * rng.standard_normal((steps, NE)), 2.0 * rng.standard_normal((steps, NI))])
    per_neuron = {"a": np.concatenate([0.02 * np.ones(NE), 0.02 + 0.08 * r_i]),
                  "b": np.concatenate([0.2 * np.ones(NE), 0.25 - 0.05 * r_i]),
                  "c": np.concatenate([-65 + 15 * r_e ** 2, -65 * np.ones(NI)]),
                  "d": np.concatenate([8 - 6 * r_e ** 2, 2 * np.ones(NI)])}
    return (jtfne.Configuration()
            .runtime(seed=seed, dtype="float64", duration_ms=float(steps), dt_ms=1.0, integrator="izhikevich2003")
            .column(n=N).cell_types({"E": 0.8, "I": 0.2})
            .connectivity(weights=weights, autapses=True, synapse="delta")
            .set_emitter(per_neuron=per_neuron)
            .drive(current=0.0, noise=0.0)
            .stimulus("thalamic", kind="array", values=thalamic)
            .probes(["SPK"]))


def as_users_write_it(seeds, duration_ms: float, dt_ms: float = 0.1) -> jtfne.Configuration:
    """The same network from jaxfne's own random streams: an ensemble of ``seeds``."""
    return (jtfne.Configuration()
            .runtime(duration_ms=duration_ms, dt_ms=dt_ms)
            .column(n=N).cell_types({"E": 0.8, "I": 0.2})
            .connectivity(p=1.0, autapses=True, synapse="delta",
                          strength={"E->E": 200.0, "E->I": 200.0, "I->E": 100.0, "I->I": 100.0})
            .set_emitter(params={"E": {"a": 0.02, "b": 0.2, "c": -65.0, "d": 8.0},
                                 "I": {"a": 0.02, "b": 0.25, "c": -65.0, "d": 2.0}},
                         heterogeneity={"E": {"c": (-65.0, 0.0, 15.0), "d": (8.0, 0.0, -6.0)},
                                        "I": {"a": (0.02, 0.08), "b": (0.25, -0.05)}})
            .drive(current=0.0, noise={"E": 5.0, "I": 2.0}, noise_hold_ms=1.0)
            .probes(["SPK"])
            .ensemble(seeds=list(seeds)))


def report(name: str, signals, out: pathlib.Path, duration_ms: float, member=None) -> None:
    rate = float(np.asarray(signals["SPK"]).mean() * 1000.0 / signals.attrs["dt_ms"])
    window = (200.0, duration_ms)                  # the synchronous start left out
    curves = jtfne.viz.population_spectrum(signals, member=member, time_window_ms=window)
    freq, psd, _ = curves["E"]
    slow = (freq >= 4) & (freq < 20)
    fast = (freq >= 25) & (freq <= 60)
    print(f"{name}: mean rate {rate:.2f} Hz; E population spectrum peaks at "
          f"{freq[slow][np.argmax(psd[slow])]:.1f} Hz (4-20 Hz) and {freq[fast][np.argmax(psd[fast])]:.1f} Hz (25-60 Hz)")
    jtfne.viz.raster(signals, member=member).savefig(out / f"raster_{name}.png", dpi=110)
    jtfne.viz.spectrum(signals, member=member, time_window_ms=window, max_hz=100.0).savefig(out / f"spectrum_{name}.png", dpi=110)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="outputs/izhikevich2003")
    parser.add_argument("--duration-ms", type=float, default=1000.0)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    published = jtfne.simulate(jtfne.construct(as_published(0, args.duration_ms)), engine="xla")
    report("as_published", published, out, args.duration_ms)
    ensemble = jtfne.simulate(jtfne.construct(as_users_write_it(range(args.seeds), args.duration_ms)), engine="xla")
    report("dt0.1_member0", ensemble, out, args.duration_ms, member=0)
    print(f"figures in {out}/")


if __name__ == "__main__":
    main()
