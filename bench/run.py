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


def build_cases(args):
    """(single cases of this process, side-by-side groups of this process, groups of the multi-device process).

    A group is a list of (case, "one" | "all") variants timed in alternation; "one" = the first device.
    """
    from jaxfne._bench import SEED_PROBES, Case, inputs_p
    d, c = args.duration_ms, args.chunk_ms
    singles = []
    if not args.no_seed:
        singles.append(Case("seed", probes=SEED_PROBES, duration_ms=d, chunk_ms=c))
    singles += [Case("ensemble", members=b, duration_ms=d, chunk_ms=c) for b in args.members]
    singles += [Case("ensemble", members=b, shared=True, duration_ms=d, chunk_ms=c) for b in args.shared_members]
    singles += [Case("network", neurons=n, p=inputs_p(n, args.inputs_per_cell), duration_ms=d, chunk_ms=c)
                for n in args.neurons]

    def stream_pair(b, cells, where):
        mem = Case("ensemble", members=b, probes=tuple(args.stream_probes), duration_ms=d, chunk_ms=c,
                   vm_cells=cells or None)
        return [(mem, where), (dataclasses.replace(mem, store=True), where)]

    groups = [stream_pair(b, cells, "one") for b in args.stream_members for cells in args.stream_vm_cells]
    last = (args.stream_vm_cells or [0])[-1]
    multi = [[(Case("ensemble", members=b, duration_ms=d, chunk_ms=c), "one"),
              (Case("ensemble", members=b, duration_ms=d, chunk_ms=c), "all")] for b in args.multi_device_members]
    multi += [stream_pair(b, last, "all") for b in args.stream_members]
    return singles, groups, multi


def _groups_to_json(groups) -> list:
    return [[{**dataclasses.asdict(case), "where": where} for case, where in g] for g in groups]


def _groups_from_json(data, devices) -> list:
    from jaxfne._bench import Case
    out = []
    for g in data:
        group = []
        for v in g:
            where = v.pop("where")
            group.append((Case(**{**v, "probes": tuple(v["probes"])}), devices[:1] if where == "one" else devices))
        out.append(group)
    return out


def worker(args) -> int:
    """Run the side-by-side groups given as JSON on stdin in this process; rows as JSON on stdout."""
    import jax

    from jaxfne._bench import run_side_by_side
    groups = _groups_from_json(json.loads(sys.stdin.read()), jax.devices())
    rows = run_side_by_side(groups, baseline=False, out=None, progress=sys.stderr, rounds=args.rounds,
                            start_index=args.start_index, total=args.total)
    print(json.dumps(rows, default=float))
    return 0


def run_multi_device(groups, n_devices: int, args, start_index: int, total: int) -> list:
    env = {**os.environ, "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") +
                                       f" --xla_force_host_platform_device_count={n_devices}").strip()}
    cmd = [sys.executable, __file__, "--worker", "--rounds", str(args.rounds), "--start-index", str(start_index),
           "--total", str(total)]
    proc = subprocess.run(cmd, input=json.dumps(_groups_to_json(groups)), stdout=subprocess.PIPE,
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
    """Ratios measured side by side in this run."""
    lines = []
    pairs = {}
    for r in rows:
        if r.get("pair") is not None and not r.get("skipped"):
            pairs.setdefault(r["pair"], []).append(r)
    for group in pairs.values():
        if len(group) != 2:
            continue
        a, b = group
        probes = "+".join(a["probes"]) + ("" if a.get("vm_cells") is None else f" (Vm of {a['vm_cells']} cells/type)")
        if a["store"] != b["store"]:
            mem, st = (a, b) if b["store"] else (b, a)
            lines.append(f"streaming overhead, {mem['members']} members, {probes}, {mem['devices']} device(s): "
                         f"x{st['seconds'] / mem['seconds']:.2f} time (store {st['seconds']:.2f} s, memory "
                         f"{mem['seconds']:.2f} s, best of {min(st['timed_calls'], mem['timed_calls'])} alternating "
                         f"calls; reopening the store {st.get('open_signals_s', 0):.2f} s)")
        elif a["devices"] != b["devices"]:
            one, many = (a, b) if a["devices"] < b["devices"] else (b, a)
            lines.append(f"{many['devices']} forced CPU devices vs {one['devices']} (same process), {one['members']} "
                         f"members, {probes}: x{many['neuron_steps_per_s'] / one['neuron_steps_per_s']:.2f}")

    def find(**kw):
        for r in rows:
            if not r.get("skipped") and all(r.get(k) == v for k, v in kw.items()):
                return r
        return None

    for rp in rows:
        if "peer" in rp and not rp.get("skipped"):
            rj = find(members=rp["members"], neurons=rp["neurons"], devices=1, store=False, kind=rp["kind"],
                      probes=rp["probes"])
            if rj:
                lines.append(f"jaxfne (1 device, XLA threads) / {rp['case']}, {rp['members']} x {rp['neurons']}: "
                             f"x{rj['neuron_steps_per_s'] / rp['neuron_steps_per_s']:.2f} "
                             f"(rates {rj['rate_hz']:.1f} vs {rp['rate_hz']:.1f} Hz)")
    compile_s = [r["compile_s"] for r in rows if "peer" not in r and r.get("compile_s") is not None]
    if compile_s:
        lines.append(f"simulate compile time (first call - best call): max {max(compile_s):.2f} s over jaxfne rows; "
                     f"construct: max {max(r.get('construct_s') or 0 for r in rows):.2f} s")
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
    ap.add_argument("--stream-vm-cells", type=int, nargs="+", default=[5],
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
    ap.add_argument("--rounds", type=int, default=2,
                    help="alternating timed calls per variant of a side-by-side pair (memory/store, 1/N devices)")
    ap.add_argument("--quick", action="store_true", help="small smoke run: 100 ms, few rows, no peers")
    ap.add_argument("--json", help="write machine info and rows as JSON here ('-' for standard output)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--start-index", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--total", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.duration_ms = min(args.duration_ms, 100.0)
        args.members, args.neurons, args.stream_members, args.stream_vm_cells = [16, 256], [1000], [256], [5]
        args.rounds = 1
        args.multi_device_members, args.peers, args.baseline_budget_s = [], [], 3.0
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    import jax

    from jaxfne._bench import (header_line, machine_info, run_cases, run_side_by_side, table_header,
                               write_json)
    from jaxfne._bench import format_row
    out = sys.stderr if args.json == "-" else sys.stdout
    singles, groups, multi_groups = build_cases(args)
    multi = [n for n in args.devices if n > 1]
    on_cpu = jax.devices()[0].platform == "cpu"
    n_main = (len(singles) + sum(len(g) for g in groups)) if 1 in args.devices else 0
    n_multi = len(multi) * sum(len(g) for g in multi_groups) if on_cpu else 0
    total = n_main + n_multi + len(args.peers) * len(args.peer_members)
    info = machine_info()
    print(header_line(info), file=out)
    print(f"# {args.duration_ms:g} ms at 0.1 ms per run, chunks of {args.chunk_ms:g} ms, outputs to the host; "
          f"baseline = plain-JAX dense (jaxfne/_baseline.py) on {jax.devices()[0].platform}, x base = jaxfne / "
          "baseline (same process); dev = devices (threads for peers); memory/store and 1/N-device pairs are timed "
          f"in alternation ({args.rounds} rounds)", file=out)
    print(table_header(), file=out, flush=True)
    baselines, rows, done = {}, [], 0
    if 1 in args.devices:
        rows += run_cases(singles, devices=jax.devices()[:1], baseline=not args.no_baseline,
                          baseline_budget_s=args.baseline_budget_s, repeats=args.repeats, out=out,
                          baselines=baselines, total=total)
        done += len(singles)
        one = jax.devices()[:1]
        rows += run_side_by_side([[(case, one) for case, _ in g] for g in groups], baseline=not args.no_baseline,
                                 baseline_budget_s=args.baseline_budget_s, rounds=args.rounds, out=out,
                                 baselines=baselines, start_index=done, total=total)
        done += sum(len(g) for g in groups)
    for n in multi:
        if not on_cpu:
            print(f"# {n} forced CPU devices: skipped (this run is on {jax.devices()[0].platform})", file=out)
            continue
        sub = run_multi_device(multi_groups, n, args, done, total)
        done += sum(len(g) for g in multi_groups)
        for row in sub:
            row["pair"] = f"{n}dev-{row['pair']}"
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
