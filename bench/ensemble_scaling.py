"""Ensemble scaling: neuron-steps per second of the tutorial network, 16 to 4096 members.

Runs jaxfne and the plain-JAX dense baseline (bench/_baseline.py) side by side
in one process and prints their throughput and ratio. Every spike is
recorded (jaxfne returns the full raster to the host; the baseline copies it
to the host chunk by chunk).

    python bench/ensemble_scaling.py                      # 16..1024 members, 200 ms
    python bench/ensemble_scaling.py --members 16 256 4096 --duration-ms 1000
    XLA_FLAGS=--xla_force_host_platform_device_count=2 python bench/ensemble_scaling.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import jaxfne as jtfne  # noqa: E402
from _baseline import make_dense_baseline  # noqa: E402


def tutorial(duration_ms):
    return (jtfne.Configuration().runtime(seed=42, duration_ms=duration_ms, dt_ms=0.1)
            .column(name="L2/3_column", layers=["L2/3"], n=100).cell_types({"E": 0.75, "I": 0.25})
            .connectivity().set_emitter(family="izhikevich", preset="cortical_eig").probes(["SPK"]))


def timed(fn, repeats=2):
    fn()                                   # compile and warm up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", type=int, nargs="+", default=[16, 64, 256, 1024])
    ap.add_argument("--duration-ms", type=float, default=200.0)
    ap.add_argument("--chunk-ms", type=float, default=100.0)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--json", help="also write the table as JSON to this path")
    args = ap.parse_args(argv)
    n_steps = int(round(args.duration_ms / 0.1))
    chunk_steps = int(round(args.chunk_ms / 0.1))
    print(f"# jaxfne {jtfne.__version__}, jax {jax.__version__}, {len(jax.devices())} x {jax.devices()[0].platform}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"100-neuron tutorial network, {args.duration_ms:.0f} ms at 0.1 ms")
    print(f"{'members':>8} {'jaxfne n-steps/s':>18} {'syn events/s':>14} {'baseline n-steps/s':>20} {'ratio':>7}")
    rows = []
    for members in args.members:
        model = jtfne.construct(tutorial(args.duration_ms).ensemble(seeds=list(range(members))))
        t_j, sig = timed(lambda: jtfne.simulate(model, chunk_ms=args.chunk_ms))
        n_spikes = int(np.asarray(sig["SPK"]).sum())
        ns = members * 100 * n_steps
        row = {"members": members, "jaxfne_neuron_steps_per_s": ns / t_j,
               "synaptic_events_per_s": n_spikes * 99 / t_j}
        if not args.no_baseline:
            run = make_dense_baseline(model, chunk_steps)
            t_b, _ = timed(lambda: run(n_steps), repeats=1)
            row["baseline_neuron_steps_per_s"] = ns / t_b
            row["ratio"] = t_b / t_j
        rows.append(row)
        print(f"{members:>8} {row['jaxfne_neuron_steps_per_s']:>18.3g} {row['synaptic_events_per_s']:>14.3g} "
              f"{row.get('baseline_neuron_steps_per_s', float('nan')):>20.3g} {row.get('ratio', float('nan')):>7.2f}",
              flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return rows


if __name__ == "__main__":
    main()
