"""One benchmark run, one table: jaxfne against the plain-JAX dense baseline and peer simulators.

Rows (each: neuron-steps/s, synaptic events/s, firing rate, compile time, run
time, the dense baseline measured in the same run and the ratio jaxfne/baseline):

* the seed network alone (1 member, the tutorial's five probes);
* ensembles of the 100-neuron tutorial network, 16 to 4096 members (spikes);
* single networks of 100 to 10,000 neurons with ~100 inputs per cell
  (connectivity(p=100/(n-1)); jaxfne stores weights dense, (N+1) x N float32
  per member, so a row that would not fit in memory is skipped and says so);
* the target case, 1024 members with spikes + Vm, in memory and streamed to a
  Zarr store (simulate(model, store=..., chunk_ms=...));
* the same with 4 forced CPU devices: those rows run in a subprocess of this
  script started with XLA_FLAGS=--xla_force_host_platform_device_count=4
  (the flag must be set before JAX starts); the parent's baseline, measured on
  one device, is their reference;
* Brian2 (C++ standalone) and NEST on the same model when importable (see
  bench/peers.py), skipped with the reason otherwise.

    python bench/run.py                         # defaults: a few minutes on a 2-core box
    python bench/run.py --quick                 # smoke run (< 1 min)
    python bench/run.py --members 1024 4096 16384 --shared-members 16384 --neurons 1000 10000 \\
        --duration-ms 1000 --devices 1 --json out.json    # bigger, e.g. on a GPU

The table goes to standard output as rows finish; progress lines go to standard error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def build_cases(args) -> tuple[list, list]:
    """(cases of this process, cases of the multi-device subprocess)."""
    from jaxfne._bench import SEED_PROBES, Case, inputs_p
    d, c = args.duration_ms, args.chunk_ms
    main = []
    if not args.no_seed:
        main.append(Case("seed", probes=SEED_PROBES, duration_ms=d, chunk_ms=c))
    main += [Case("ensemble", members=b, duration_ms=d, chunk_ms=c) for b in args.members]
    main += [Case("ensemble", members=b, shared=True, duration_ms=d, chunk_ms=c) for b in args.shared_members]
    main += [Case("network", neurons=n, p=inputs_p(n, args.inputs_per_cell), duration_ms=d, chunk_ms=c)
             for n in args.neurons]
    stream = []
    for b in args.stream_members:
        for cells in args.stream_vm_cells:
            for store in (False, True):
                stream.append(Case("ensemble", members=b, probes=tuple(args.stream_probes), store=store, duration_ms=d,
                                   chunk_ms=c, vm_cells=cells or None))
    main += stream
    last = (args.stream_vm_cells or [0])[-1] or None
    multi = [Case("ensemble", members=b, duration_ms=d, chunk_ms=c) for b in args.multi_device_members]
    multi += [s for s in stream if s.vm_cells == last]
    return main, multi


def case_to_json(case) -> dict:
    return dataclasses.asdict(case)


def worker(args) -> int:
    """Run the cases given as JSON on stdin in this process (all its devices); rows as JSON on stdout."""
    from jaxfne._bench import Case, run_cases
    cases = [Case(**{**c, "probes": tuple(c["probes"])}) for c in json.loads(sys.stdin.read())]
    rows = run_cases(cases, baseline=False, out=None, progress=sys.stderr, repeats=args.repeats,
                     start_index=args.start_index, total=args.total)
    print(json.dumps(rows, default=float))
    return 0


def run_multi_device(cases, n_devices: int, args, start_index: int, total: int) -> list:
    env = {**os.environ, "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") +
                                       f" --xla_force_host_platform_device_count={n_devices}").strip()}
    cmd = [sys.executable, __file__, "--worker", "--repeats", str(args.repeats), "--start-index", str(start_index),
           "--total", str(total)]
    proc = subprocess.run(cmd, input=json.dumps([case_to_json(c) for c in cases]), stdout=subprocess.PIPE,
                          stderr=None, text=True, env=env, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peer_cases(args):
    from jaxfne._bench import Case
    return [Case("network" if b == 1 else "ensemble", members=b, duration_ms=args.duration_ms,
                 chunk_ms=args.chunk_ms) for b in args.peer_members]


def run_peers(args, baselines, jaxfne_rows, start_index: int, total: int, out) -> list:
    import peers
    from jaxfne._bench import case_row, format_row, measure_baseline
    from jaxfne._model import construct
    rows = []
    cases = peer_cases(args)
    for peer in args.peers:
        ok, why = peers.available(peer)
        for case in cases:
            start_index += 1
            row = {**case_row(case, 1), "case": f"{peer} ({args.peer_threads} thr)", "peer": peer,
                   "devices": args.peer_threads}
            if not ok:
                row["skipped"] = f"{peer} not importable: {why}"
                rows.append(row)
                print(format_row(row), file=out, flush=True)
                continue
            print(f"[{start_index}/{total}] {peer}: {case.members} x {case.neurons} neurons, {case.duration_ms:g} ms, "
                  f"{args.peer_threads} thread(s) ...", file=sys.stderr, flush=True)
            model = construct(case.configuration())
            try:
                res = peers.run_peer(peer, model, threads=args.peer_threads)
            except Exception as exc:  # noqa: BLE001 - a broken peer must not end the table
                row["skipped"] = str(exc)[:200]
                rows.append(row)
                print(format_row(row), file=out, flush=True)
                continue
            neuron_steps = case.members * case.neurons * res["n_steps"]
            events = res["spikes"] * (res["synapses"] / (case.members * case.neurons))   # mean out-degree
            row.update(peer_result=res, seconds=res["run_s"], compile_s=res["build_s"],
                       neuron_steps_per_s=neuron_steps / res["run_s"], synaptic_events_per_s=events / res["run_s"],
                       rate_hz=res["spikes"] / (neuron_steps * 1e-4), spikes=res["spikes"])
            if not args.no_baseline:
                if case.baseline_key not in baselines:
                    baselines[case.baseline_key] = measure_baseline(case, budget_s=args.baseline_budget_s)
                row.update(baselines[case.baseline_key])
                row["ratio"] = row["neuron_steps_per_s"] / row["baseline_neuron_steps_per_s"]
            rows.append(row)
            print(format_row(row), file=out, flush=True)
    return rows


def summary(rows) -> list[str]:
    """Side-by-side ratios measured in this run."""
    lines = []

    def find(**kw):
        for r in rows:
            if not r.get("skipped") and all(r.get(k) == v for k, v in kw.items()):
                return r
        return None

    for st in rows:
        if st.get("store") and not st.get("skipped"):
            b, dev = st["members"], st["devices"]
            mem = find(members=b, store=False, devices=dev, kind="ensemble", probes=st["probes"],
                       vm_cells=st.get("vm_cells"))
            if mem:
                vm = "" if st.get("vm_cells") is None else f" (Vm of {st['vm_cells']} cells/type)"
                lines.append(f"streaming overhead, {b} members, {'+'.join(st['probes'])}{vm}, {dev} device(s): "
                             f"x{st['seconds'] / mem['seconds']:.2f} time (store {st['seconds']:.2f} s, memory "
                             f"{mem['seconds']:.2f} s; reopening the store {st.get('open_signals_s', 0):.2f} s)")
    for r4 in rows:
        if r4.get("devices", 1) > 1 and "peer" not in r4 and not r4.get("skipped"):
            r1 = find(members=r4["members"], neurons=r4["neurons"], store=r4["store"], probes=r4["probes"],
                      devices=1, shared=r4["shared"], kind=r4["kind"], vm_cells=r4.get("vm_cells"))
            if r1:
                vm = "" if r4.get("vm_cells") is None else f"[{r4['vm_cells']}/type]"
                lines.append(f"{r4['devices']} forced CPU devices vs 1, {r4['members']} members"
                             f"{' -> zarr' if r4['store'] else ''} ({'+'.join(r4['probes'])}{vm}): "
                             f"x{r4['neuron_steps_per_s'] / r1['neuron_steps_per_s']:.2f}")
    for rp in rows:
        if "peer" in rp and not rp.get("skipped"):
            rj = find(members=rp["members"], neurons=rp["neurons"], devices=1, store=False, kind=rp["kind"])
            if rj:
                lines.append(f"jaxfne (all cores) / {rp['case']}, {rp['members']} x {rp['neurons']}: "
                             f"x{rj['neuron_steps_per_s'] / rp['neuron_steps_per_s']:.2f} "
                             f"(rates {rj['rate_hz']:.1f} vs {rp['rate_hz']:.1f} Hz)")
    compile_s = [r["compile_s"] for r in rows if "peer" not in r and r.get("compile_s") is not None]
    if compile_s:
        lines.append(f"compile time (first call - best call): max {max(compile_s):.2f} s over jaxfne rows")
    return lines


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration-ms", type=float, default=200.0, help="simulated time per run (default 200)")
    ap.add_argument("--chunk-ms", type=float, default=50.0, help="simulated time per compiled call (default 50)")
    ap.add_argument("--members", type=int, nargs="*", default=[16, 64, 256, 1024, 4096],
                    help="ensemble sizes of the 100-neuron tutorial network")
    ap.add_argument("--shared-members", type=int, nargs="*", default=[],
                    help="ensemble sizes with connectivity(shared=True) (one weight matrix for all members)")
    ap.add_argument("--neurons", type=int, nargs="*", default=[100, 1000, 3000, 10000],
                    help="single-network sizes")
    ap.add_argument("--inputs-per-cell", type=int, default=100, help="p = inputs / (n - 1) for single networks")
    ap.add_argument("--stream-members", type=int, nargs="*", default=[1024],
                    help="ensemble sizes run in memory and streamed to Zarr")
    ap.add_argument("--stream-probes", nargs="+", default=["SPK", "Vm"])
    ap.add_argument("--stream-vm-cells", type=int, nargs="+", default=[0, 5],
                    help="streaming rows: Vm of every cell (0) and/or of k cells per type (probes(neurons=k)); "
                         "the multi-device rows use the last value")
    ap.add_argument("--devices", type=int, nargs="+", default=[1, 4],
                    help="device counts: 1 = this process; N > 1 = a subprocess with N forced CPU devices")
    ap.add_argument("--multi-device-members", type=int, nargs="*", default=[1024],
                    help="ensemble sizes also run on the forced multi-device CPU (with the streaming rows)")
    ap.add_argument("--peers", nargs="*", default=["brian2", "nest"], choices=["brian2", "nest"])
    ap.add_argument("--peer-members", type=int, nargs="*", default=[1, 64])
    ap.add_argument("--peer-threads", type=int, default=1, help="threads given to each peer (default 1)")
    ap.add_argument("--no-seed", action="store_true", help="skip the seed-network row")
    ap.add_argument("--no-baseline", action="store_true", help="skip the plain-JAX dense baseline")
    ap.add_argument("--baseline-budget-s", type=float, default=5.0,
                    help="stop a baseline run after this many seconds (its cost does not depend on activity)")
    ap.add_argument("--repeats", type=int, default=1, help="timed calls per row after the first (best is kept)")
    ap.add_argument("--quick", action="store_true", help="small smoke run: 100 ms, few rows, no peers")
    ap.add_argument("--json", help="write machine info and rows as JSON here ('-' for standard output)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--start-index", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--total", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.duration_ms = min(args.duration_ms, 100.0)
        args.members, args.neurons, args.stream_members, args.stream_vm_cells = [16, 256], [1000], [256], [5]
        args.multi_device_members, args.peers, args.baseline_budget_s = [], [], 3.0
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    import jax

    from jaxfne._bench import format_row, header_line, machine_info, run_cases, table_header, write_json
    out = sys.stderr if args.json == "-" else sys.stdout
    main_cases, multi_cases = build_cases(args)
    multi = [n for n in args.devices if n > 1]
    n_peer = len(args.peers) * len(args.peer_members)
    total = (len(main_cases) if 1 in args.devices else 0) + len(multi) * len(multi_cases) + n_peer
    info = machine_info()
    print(header_line(info), file=out)
    print(f"# {args.duration_ms:g} ms at 0.1 ms per run, chunks of {args.chunk_ms:g} ms, outputs to the host; "
          f"baseline = plain-JAX dense (jaxfne/_baseline.py) on {jax.devices()[0].platform}, x base = jaxfne / "
          "baseline (same process); dev = devices (threads for peers)", file=out)
    print(table_header(), file=out, flush=True)
    baselines, rows, done = {}, [], 0
    if 1 in args.devices:
        rows += run_cases(main_cases, devices=jax.devices()[:1], baseline=not args.no_baseline,
                          baseline_budget_s=args.baseline_budget_s, repeats=args.repeats, out=out,
                          baselines=baselines, total=total)
        done += len(main_cases)
    for n in multi:
        if jax.devices()[0].platform != "cpu":
            print(f"# {n} forced CPU devices: skipped (this run is on {jax.devices()[0].platform})", file=out)
            continue
        sub = run_multi_device(multi_cases, n, args, done, total)
        done += len(multi_cases)
        for row in sub:
            if not args.no_baseline and not row.get("skipped"):
                from jaxfne._bench import Case, measure_baseline
                case = Case(**{k: row[k] if k != "probes" else tuple(row[k]) for k in
                               ("kind", "members", "neurons", "p", "probes", "store", "shared", "duration_ms",
                                "chunk_ms", "vm_cells")})
                if case.baseline_key not in baselines:
                    baselines[case.baseline_key] = measure_baseline(case, budget_s=args.baseline_budget_s)
                row.update(baselines[case.baseline_key])
                row["ratio"] = row["neuron_steps_per_s"] / row["baseline_neuron_steps_per_s"]
            print(format_row(row), file=out, flush=True)
        rows += sub
    if args.peers:
        rows += run_peers(args, baselines, rows, done, total, out)
    print("\n# one table:", file=out)
    print(table_header(), file=out)
    for row in rows:
        print(format_row(row), file=out)
    print(file=out)
    for line in summary(rows):
        print(f"# {line}", file=out)
    if args.json:
        write_json(args.json, {**info, "args": vars(args)}, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
