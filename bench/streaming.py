"""Streaming benchmark: the ensemble benchmark with streaming to Zarr off and on.

Prints, for an ensemble of the tutorial network (100 neurons, 0.1 ms steps):

1. neuron-steps per second in memory and streamed to a Zarr store, and their ratio
   (the cost of streaming: transfer, compression and writing, overlapped with compute);
2. bytes on disk per neuron-second, per probe and in all;
3. lazy-analysis throughput on the store (raster elements per second of each jaxfne.analysis
   function, default Dask scheduler);
4. peak memory (max RSS of a child process) of a run and of a 10x longer run, streamed and in
   memory: streamed runs stay flat, in-memory runs grow with the recording.

    python bench/streaming.py                                   # < 2 minutes on a 2-core box
    python bench/streaming.py --members 256 --duration-ms 10000 --probes SPK Vm
    python bench/streaming.py --no-memory --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def ensemble(members: int, duration_ms: float, probes):
    import jaxfne as jtfne
    from jaxfne.bench._suite import tutorial
    cfg = tutorial(duration_ms).probes(list(probes)).ensemble(seeds=list(range(members)))
    return jtfne.construct(cfg)


def disk_bytes(path: Path, sub: str | None = None) -> int:
    root = path if sub is None else path / sub
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def vm_hwm_kib() -> int:
    """Peak RSS of this process image (VmHWM; getrusage's ru_maxrss survives exec, so a child would
    report its parent's peak if that were higher)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(args) -> None:
    """Run once (streamed or in memory) and print the peak RSS in KiB."""
    import jaxfne as jtfne
    model = ensemble(args.members, args.duration_ms, args.probes)
    jtfne.simulate(model, chunk_ms=args.chunk_ms, store=args.child_store or None)
    print(vm_hwm_kib())


def peak_rss_mib(members, duration_ms, chunk_ms, probes, store) -> float:
    cmd = [sys.executable, __file__, "--child", "--members", str(members), "--duration-ms", str(duration_ms),
           "--chunk-ms", str(chunk_ms), "--probes", *probes, "--child-store", str(store or "")]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) / 1024


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--members", type=int, default=32)
    ap.add_argument("--duration-ms", type=float, default=3000.0)
    ap.add_argument("--chunk-ms", type=float, default=250.0)
    ap.add_argument("--probes", nargs="+", default=["SPK", "Vm"])
    ap.add_argument("--memory-members", type=int, default=4, help="ensemble size of the memory section")
    ap.add_argument("--memory-ms", type=float, default=2000.0, help="short run of the memory section (x10 long)")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory section")
    ap.add_argument("--json", help="write the results as JSON here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child-store", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return 0

    import jax

    import jaxfne as jtfne
    from jaxfne import analysis as A
    devs = jax.devices()
    print(f"# jaxfne {jtfne.__version__}, jax {jax.__version__}, {len(devs)} x {devs[0].platform}, "
          f"{platform.machine()}, {os.cpu_count()} cores")
    model = ensemble(args.members, args.duration_ms, args.probes)
    n_steps = model.layout.n_steps
    neuron_steps = args.members * 100 * n_steps
    print(f"# {args.members} members x 100 neurons, {args.duration_ms:g} ms at 0.1 ms ({n_steps} steps), "
          f"chunks of {args.chunk_ms:g} ms, probes {' '.join(args.probes)}")
    results = {"members": args.members, "duration_ms": args.duration_ms, "chunk_ms": args.chunk_ms,
               "probes": args.probes}
    work = Path(tempfile.mkdtemp(prefix="jaxfne-bench-"))
    try:
        jtfne.simulate(model, chunk_ms=args.chunk_ms)                      # compile
        t_mem = t_store = float("inf")
        for rep in range(2):                                               # best of two, alternating
            t = time.perf_counter()
            jtfne.simulate(model, chunk_ms=args.chunk_ms)
            t_mem = min(t_mem, time.perf_counter() - t)
            store = work / f"run{rep}.zarr"
            t = time.perf_counter()
            signals = jtfne.simulate(model, chunk_ms=args.chunk_ms, store=store)
            t_store = min(t_store, time.perf_counter() - t)
        results.update(memory_neuron_steps_per_s=neuron_steps / t_mem, store_neuron_steps_per_s=neuron_steps / t_store,
                       streaming_overhead=t_store / t_mem)
        print("\n## throughput")
        print(f"{'in memory':>12} {neuron_steps / t_mem / 1e6:10.2f} M neuron-steps/s ({t_mem:.2f} s)")
        print(f"{'streamed':>12} {neuron_steps / t_store / 1e6:10.2f} M neuron-steps/s ({t_store:.2f} s)")
        print(f"{'overhead':>12} {t_store / t_mem:10.2f} x (streamed time / in-memory time)")

        neuron_s = args.members * 100 * args.duration_ms / 1000.0
        print("\n## bytes on disk per neuron-second")
        per_probe = {p: disk_bytes(store, p) / neuron_s for p in args.probes}
        for p, b in per_probe.items():
            print(f"{p:>12} {b:10.1f} B   (raw {n_steps / args.duration_ms * 1000 * (1 if p == 'SPK' else 4):.0f} B)")
        total = disk_bytes(store) / neuron_s
        print(f"{'all':>12} {total:10.1f} B   ({disk_bytes(store) / 2**20:.1f} MiB in all)")
        results.update(bytes_per_neuron_second=total, bytes_per_neuron_second_by_probe=per_probe)

        print("\n## lazy analysis of the store (default Dask scheduler)")
        elements = neuron_steps
        analyses = {"firing_rate": lambda s: A.firing_rate(s), "cv_isi": lambda s: A.cv_isi(s),
                    "fano_factor": lambda s: A.fano_factor(s), "synchrony": lambda s: A.synchrony(s),
                    "population_rate": lambda s: A.population_rate(s),
                    "rate_spectrum": lambda s: A.rate_spectrum(s)}
        results["analysis_elements_per_s"] = {}
        for name, fn in analyses.items():
            t = time.perf_counter()
            fn(signals).compute()
            dt = time.perf_counter() - t
            results["analysis_elements_per_s"][name] = elements / dt
            print(f"{name:>16} {elements / dt / 1e6:10.1f} M raster elements/s ({dt:.2f} s)")

        if not args.no_memory:
            short, long = args.memory_ms, 10 * args.memory_ms
            mm = args.memory_members
            print(f"\n## peak memory (max RSS of a child), {mm} members, {' '.join(args.probes)}, chunks of "
                  f"{args.chunk_ms:g} ms")
            rows = {}
            for label, use_store in (("streamed", True), ("in memory", False)):
                rss = []
                for dur in (short, long):
                    path = work / f"mem-{dur:g}.zarr" if use_store else None
                    rss.append(peak_rss_mib(mm, dur, args.chunk_ms, args.probes, path))
                    if path is not None:
                        shutil.rmtree(path, ignore_errors=True)
                rows[label] = rss
                print(f"{label:>12} {short:>7g} ms: {rss[0]:7.0f} MiB   {long:>7g} ms: {rss[1]:7.0f} MiB   "
                      f"ratio {rss[1] / rss[0]:.2f}")
            results["peak_rss_mib"] = {k: dict(zip(("short", "long"), v)) for k, v in rows.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
