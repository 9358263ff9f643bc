"""Spikes as events (issue 14): the target case side by side in one process, and store bytes per spike.

1024 tutorial networks, 1 s, SPK + Vm of 10 cells, 50-ms chunks: the kernel alone (outputs copied to the
host and dropped), in memory, streamed to Zarr with spikes as events (schema 2, the default), the same
with the events compacted on the device, and streamed with spikes as a dense raster (schema 1's layout).
Prints the seconds (best of the rounds), neuron-steps/s, the ratios to in-memory and to the kernel
alone, and each store's bytes, its spike arrays' bytes per spike and its bytes per simulated second.

    python bench/spike_events.py                        # ~5 minutes on a quiet 2-core box
    python bench/spike_events.py --members 64 --duration-ms 200 --rounds 1     # smoke run

Host devices: ``--devices`` CPU devices (default 2 per core, what ``use_host_devices`` gives the XLA
engine), set here before JAX's backend starts, and checked. ``jaxfne.engine.use_host_devices()``, which
this script called before 2026-12-01, sets nothing when a C++ compiler is present (the native engine
then threads over the cores on one device), so those runs had one device whatever the comment said.
With the native engine each device runs ``cores // devices`` kernel threads (at least 1).

``--cpu``: instead, the process's CPU seconds (user + system, ``os.times``) of the kernel alone, in
memory, and streamed with events or with the raster, alternated: on a machine shared with other work
the wall-clock ratios move with the others' load, the CPU a run costs much less.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=1024)
    ap.add_argument("--duration-ms", type=float, default=1000.0)
    ap.add_argument("--vm-cells", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--devices", type=int, default=2 * (os.cpu_count() or 1),
                    help="CPU devices (default: 2 per core)")
    ap.add_argument("--cpu", action="store_true", help="CPU seconds per variant instead (see above)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import jax

    jax.config.update("jax_num_cpu_devices", args.devices)     # before the backend starts (nothing ran yet)
    if len(jax.devices("cpu")) != args.devices:
        raise SystemExit(f"--devices={args.devices} did not take effect: JAX has {len(jax.devices('cpu'))} CPU "
                         "devices (XLA_FLAGS or JAX_NUM_CPU_DEVICES set elsewhere?)")
    if args.cpu:
        return cpu_table(args)
    from jaxfne.bench._suite import spike_event_table
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    out = spike_event_table(args.members, args.duration_ms, args.vm_cells, rounds=args.rounds)
    out["uptime_before"], out["uptime_after"] = uptime, subprocess.run(["uptime"], capture_output=True,
                                                                       text=True).stdout.strip()
    m = out["machine"]
    print(f"# {args.members} members x {args.duration_ms:g} ms, SPK + Vm of {args.vm_cells} cells, engine "
          f"{out['engine']}, {m['devices']} {m['platform']} devices, {m['cores']} cores ({m['cpu_model']}), "
          f"commit {m['commit']}, {m['date']}; {out['spikes']} spikes; best of {args.rounds} rounds")
    print(f"# uptime before: {out['uptime_before']}\n# uptime after:  {out['uptime_after']}")
    print("| run | s | neuron-steps/s | x in memory | x kernel alone | store MB | spike bytes/spike | "
          "store MB per simulated s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in out["rows"].items():
        store = (f"{r['store_bytes'] / 1e6:.1f} | {r['spike_bytes_per_spike']:.2f} | "
                 f"{r['store_bytes_per_simulated_s'] / 1e6:.1f}") if "store_bytes" in r else "- | - | -"
        print(f"| {name} | {r['seconds']:.2f} | {r['neuron_steps_per_s']:.3g} | {r['vs_memory']:.2f} | "
              f"{r['vs_kernel']:.2f} | {store} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


def cpu_table(args) -> int:
    """CPU seconds (user + system of this process) and wall seconds of each variant, best of the rounds."""
    import jaxfne
    from jaxfne.bench._suite import machine_info, tutorial
    from jaxfne.engine import chunk_steps, default_devices, resolve_engine, run_chunks
    from jaxfne.model import precision
    from jaxfne.sinks import _store

    cfg = (tutorial(args.duration_ms, probes=("SPK", "Vm")).probes(["SPK", "Vm"], neurons=args.vm_cells)
           .ensemble(seeds=list(range(args.members))))
    model = jaxfne.construct(cfg)
    devices = default_devices(args.members)
    engine = resolve_engine("auto", devices, model.layout)
    work = tempfile.mkdtemp(prefix="jaxfne-events-cpu-")

    def kernel():
        with precision(model.layout.dtype):
            for _ in run_chunks(model, chunk_steps(model.layout, 50.0, args.members), devices=devices, engine=engine):
                pass

    def memory():
        jaxfne.simulate(model, chunk_ms=50.0, devices=devices, engine=engine)

    def zarr(encoding):
        def run():
            shutil.rmtree(f"{work}/run.zarr", ignore_errors=True)
            before, _store.SPK_ENCODING = _store.SPK_ENCODING, encoding
            try:
                jaxfne.simulate(model, chunk_ms=50.0, devices=devices, engine=engine, store=f"{work}/run.zarr")
            finally:
                _store.SPK_ENCODING = before
        return run

    variants = {"kernel": kernel, "memory": memory, "zarr events": zarr("events"), "zarr raster": zarr("bool")}
    best: dict = {}
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    try:
        variants["zarr events"]()                            # compiles the chunk (the same for all four)
        order = list(variants)
        for r in range(args.rounds):
            for name in order[r % len(order):] + order[:r % len(order)]:
                t, c = time.perf_counter(), os.times()
                variants[name]()
                c2 = os.times()
                cpu = (c2.user - c.user) + (c2.system - c.system)
                wall = time.perf_counter() - t
                old = best.get(name, (float("inf"), float("inf")))
                best[name] = (min(old[0], cpu), min(old[1], wall))
                print(f"  round {r + 1}: {name} cpu {cpu:.2f} s, wall {wall:.2f} s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    m = machine_info(devices)
    print(f"# --cpu: {args.members} members x {args.duration_ms:g} ms, SPK + Vm of {args.vm_cells} cells, engine "
          f"{engine}, {m['devices']} {m['platform']} devices, {m['cores']} cores, commit {m['commit']}, {m['date']}; "
          f"best of {args.rounds} rounds")
    print(f"# uptime before: {uptime}\n# uptime after:  "
          f"{subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print("| run | CPU s | x kernel alone (CPU) | x in memory (CPU) | wall s |\n| --- | ---: | ---: | ---: | ---: |")
    for name, (cpu, wall) in best.items():
        print(f"| {name} | {cpu:.2f} | {cpu / best['kernel'][0]:.2f} | {cpu / best['memory'][0]:.2f} | {wall:.2f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"cpu_s": {k: v[0] for k, v in best.items()}, "wall_s": {k: v[1] for k, v in best.items()},
                       "machine": m, "uptime_before": uptime}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
