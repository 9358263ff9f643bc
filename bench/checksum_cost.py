"""What the stores' CRC-32C costs: the same streamed run with and without it, side by side.

Runs the tutorial network ensemble streamed to a Zarr store, alternately with the crc32c codec (the
default) and without it (``jaxfne.sinks._store.CHECKSUMS = False``, the store as before checksums),
in one process, several times, and prints per pair the ratio (with / without) of

* the streamed ``simulate`` (compute overlapped with compression, checksum and writing),
* reading the store back (``open_signals``, then the SPK total and the mean of each float probe:
  every chunk decoded, with the integrity checks of the read path),
* and, for the checksummed store, ``verify_store`` (every chunk read once more);

then, to take the simulation out, the codec alone: the chunks of one 50-ms simulation chunk of 256
members (an SPK raster with 1.5% spikes, Vm of 10 cells as float32) written to and read from a
local folder with and without the CRC, alternating, min of ``--codec-repeats``.

The machine is noisy: read the per-pair ratios and their median, not the absolute times.

    python bench/checksum_cost.py                                     # ~2 minutes on a 2-core box
    python bench/checksum_cost.py --members 64 --neurons 0            # full Vm of every neuron
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--members", type=int, default=256)
    ap.add_argument("--duration-ms", type=float, default=1000.0)
    ap.add_argument("--chunk-ms", type=float, default=50.0)
    ap.add_argument("--probes", nargs="+", default=["SPK", "Vm"])
    ap.add_argument("--neurons", type=int, default=5, help="float probes of this many cells per type (0: all)")
    ap.add_argument("--repeats", type=int, default=4, help="pairs, alternating which runs first")
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--codec-repeats", type=int, default=15)
    ap.add_argument("--codec-only", action="store_true", help="only the codec section")
    args = ap.parse_args(argv)

    import jaxfne as jtfne
    from jaxfne.bench._suite import tutorial
    from jaxfne.sinks import _store

    probes = tutorial(args.duration_ms).probes(list(args.probes), **({"neurons": args.neurons} if args.neurons else {}))
    model = jtfne.construct(probes.ensemble(seeds=list(range(args.members))))
    work = Path(tempfile.mkdtemp(prefix="jaxfne-crc-"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    print(f"# jaxfne {jtfne.__version__} ({commit}), {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, "
          f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    print(f"# {args.members} members x 100 neurons, {args.duration_ms:g} ms in {args.chunk_ms:g}-ms chunks, "
          f"probes {' '.join(args.probes)} ({'all' if not args.neurons else args.neurons} cells per type for "
          f"float probes), engine {args.engine}")

    def run(checksums: bool) -> dict:
        _store.CHECKSUMS = checksums
        path = work / f"run-{'crc' if checksums else 'plain'}.zarr"
        shutil.rmtree(path, ignore_errors=True)
        t = time.perf_counter()
        jtfne.simulate(model, store=path, chunk_ms=args.chunk_ms, engine=args.engine)
        write = time.perf_counter() - t
        t = time.perf_counter()
        signals = jtfne.open_signals(path)
        total = int(signals["SPK"].sum())
        for name in signals:
            if name != "SPK":
                float(signals[name].mean())
        read = time.perf_counter() - t
        out = {"write": write, "read": read, "bytes": disk_bytes(path), "spikes": total}
        if checksums:
            t = time.perf_counter()
            assert jtfne.verify_store(path, record=False).intact
            out["verify"] = time.perf_counter() - t
        return out

    try:
        codec_only(work, args.codec_repeats)
        if args.codec_only:
            return 0
        run(True)                                   # warm-up: compilation, the native kernel build
        pairs = []
        for r in range(args.repeats):
            order = (True, False) if r % 2 == 0 else (False, True)
            got = {c: run(c) for c in order}
            assert got[True]["spikes"] == got[False]["spikes"]
            pairs.append(got)
            print(f"pair {r + 1} ({'crc first' if order[0] else 'plain first'}): write {got[True]['write']:.2f} / "
                  f"{got[False]['write']:.2f} s = x{got[True]['write'] / got[False]['write']:.3f}; read "
                  f"{got[True]['read']:.2f} / {got[False]['read']:.2f} s = x{got[True]['read'] / got[False]['read']:.3f}; "
                  f"verify {got[True]['verify']:.2f} s")
        w = [p[True]["write"] / p[False]["write"] for p in pairs]
        rd = [p[True]["read"] / p[False]["read"] for p in pairs]
        b = pairs[0][True]["bytes"] / pairs[0][False]["bytes"]
        print(f"# with / without crc32c, median of {len(pairs)} pairs: streamed simulate x{statistics.median(w):.3f} "
              f"(range {min(w):.3f}-{max(w):.3f}), reading back x{statistics.median(rd):.3f} (range "
              f"{min(rd):.3f}-{max(rd):.3f}); bytes on disk x{b:.4f} ({pairs[0][True]['bytes'] / 2**20:.1f} MiB); "
              f"verify_store {statistics.median(p[True]['verify'] for p in pairs):.2f} s (median)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def codec_only(work: Path, repeats: int) -> None:
    """Write and read the probe chunks of one simulation chunk, with and without the CRC (min of repeats)."""
    import numpy as np
    import zarr

    from jaxfne.sinks import _store
    rng = np.random.default_rng(0)
    members, steps = 256, 500
    data = {"SPK": (rng.random((members, steps, 100)) < 0.015, _store.SPK_COMPRESSOR),
            "Vm": ((-65 + 5 * rng.standard_normal((members, steps, 10))).astype(np.float32), _store.FLOAT_COMPRESSOR)}
    best = {}
    for r in range(repeats):
        for checksums in ((True, False) if r % 2 == 0 else (False, True)):
            _store.CHECKSUMS = checksums
            for name, (values, compressor) in data.items():
                path = work / f"codec-{name}-{checksums}.zarr"
                shutil.rmtree(path, ignore_errors=True)
                arr = zarr.create_array(path, shape=values.shape, chunks=values.shape, dtype=values.dtype,
                                        compressors=_store.compressors(compressor), config=_store.WRITE_ALL)
                t = time.perf_counter()
                arr[...] = values
                w = time.perf_counter() - t
                t = time.perf_counter()
                back = arr[...]
                rd = time.perf_counter() - t
                assert np.array_equal(back, values)
                key = (name, checksums)
                best[key] = (min(best.get(key, (w, rd))[0], w), min(best.get(key, (w, rd))[1], rd))
    _store.CHECKSUMS = True
    for name, (values, _) in data.items():
        (wc, rc), (wp, rp) = best[(name, True)], best[(name, False)]
        print(f"# codec only, {name} {values.shape} {values.dtype} ({values.nbytes / 2**20:.1f} MiB raw), min of "
              f"{repeats}: write {wc * 1e3:.1f} / {wp * 1e3:.1f} ms = x{wc / wp:.3f}, read {rc * 1e3:.1f} / "
              f"{rp * 1e3:.1f} ms = x{rc / rp:.3f} (with / without crc32c)")


if __name__ == "__main__":
    raise SystemExit(main())
