"""The scaling benchmark behind ``jaxfne bench`` and ``bench/ensemble_scaling.py``."""

from __future__ import annotations

import json
import os
import platform
import sys
import time

import numpy as np


def tutorial(duration_ms: float):
    from ._config import Configuration
    return (Configuration().runtime(seed=42, duration_ms=duration_ms, dt_ms=0.1)
            .column(name="L2/3_column", layers=["L2/3"], n=100).cell_types({"E": 0.75, "I": 0.25})
            .connectivity().set_emitter(family="izhikevich", preset="cortical_eig").probes(["SPK"]))


def timed(fn, repeats: int = 2):
    """Best wall time of ``repeats`` calls after one warm-up (compilation) call."""
    fn()
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def scaling_table(members=(16, 64, 256, 1024), duration_ms=200.0, chunk_ms=100.0, devices=None,
                  json_path=None, baseline=True, out=sys.stdout) -> list:
    """Neuron-steps/s of ensembles of the tutorial network, with the dense baseline side by side."""
    import jax

    from . import __version__
    from ._baseline import make_dense_baseline
    from ._model import construct
    from ._simulate import simulate
    devs = jax.devices() if devices is None else list(devices)
    n_steps = int(round(duration_ms / 0.1))
    print(f"# jaxfne {__version__}, jax {jax.__version__}, {len(devs)} x {devs[0].platform} "
          f"({devs[0].device_kind}), {platform.machine()}, {os.cpu_count()} cores; "
          f"100-neuron tutorial network, {duration_ms:g} ms at 0.1 ms, full spike raster to host", file=out)
    print(f"{'members':>8} {'jaxfne n-steps/s':>17} {'syn events/s':>13} {'dense baseline':>15} {'ratio':>6}",
          file=out, flush=True)
    rows = []
    for i, b in enumerate(members):
        model = construct(tutorial(duration_ms).ensemble(seeds=list(range(b))))
        t_j, sig = timed(lambda: simulate(model, chunk_ms=chunk_ms, devices=devs))
        n_syn = int(np.asarray(sig["SPK"]).sum()) * 99          # all-to-all: 99 targets per spike
        row = {"members": b, "devices": len(devs), "neuron_steps_per_s": b * 100 * n_steps / t_j,
               "synaptic_events_per_s": n_syn / t_j, "seconds": t_j}
        if baseline:
            run = make_dense_baseline(model, int(round(chunk_ms / 0.1)))
            t_b, _ = timed(lambda: run(n_steps), repeats=1)
            row["baseline_neuron_steps_per_s"] = b * 100 * n_steps / t_b
            row["ratio"] = t_b / t_j
        rows.append(row)
        print(f"{b:>8} {row['neuron_steps_per_s']:>17.3g} {row['synaptic_events_per_s']:>13.3g} "
              f"{row.get('baseline_neuron_steps_per_s', float('nan')):>15.3g} {row.get('ratio', float('nan')):>6.2f}"
              f"   [{i + 1}/{len(members)}]", file=out, flush=True)
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(rows, fh, indent=2)
    return rows
