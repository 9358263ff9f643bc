"""Spikes as events (issue 14): the target case side by side in one process, and store bytes per spike.

1024 tutorial networks, 1 s, SPK + Vm of 10 cells, 50-ms chunks: the kernel alone (outputs copied to the
host and dropped), in memory, streamed to Zarr with spikes as events (schema 2, the default), the same
with the events compacted on the device, and streamed with spikes as a dense raster (schema 1's layout).
Prints the seconds (best of the rounds), neuron-steps/s, the ratios to in-memory and to the kernel
alone, and each store's bytes, its spike arrays' bytes per spike and its bytes per simulated second.

    python bench/spike_events.py                        # ~5 minutes on a 2-core box
    python bench/spike_events.py --members 64 --duration-ms 200 --rounds 1     # smoke run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=1024)
    ap.add_argument("--duration-ms", type=float, default=1000.0)
    ap.add_argument("--vm-cells", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from jaxfne.engine import use_host_devices
    use_host_devices()                              # as the CLI: 2 CPU devices per core
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


if __name__ == "__main__":
    sys.exit(main())
