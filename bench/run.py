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
    python bench/run.py --profile               # cost of the step's parts and of NOTES.md's prototypes
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
    from jaxfne.bench._suite import SEED_PROBES, Case, inputs_p
    d, c = args.duration_ms, args.chunk_ms
    engines = list(dict.fromkeys(args.engines))

    def per_engine(case, where="one"):
        """The case once per engine, timed in alternation when there are several."""
        return [(dataclasses.replace(case, engine=e), where) for e in engines]

    singles, groups = [], []
    if not args.no_seed:
        groups.append(per_engine(Case("seed", probes=SEED_PROBES, duration_ms=d, chunk_ms=c)))
    groups += [per_engine(Case("ensemble", members=b, duration_ms=d, chunk_ms=c)) for b in args.members]
    groups += [per_engine(Case("ensemble", members=b, shared=True, duration_ms=d, chunk_ms=c))
               for b in args.shared_members]
    groups += [per_engine(Case("network", neurons=n, p=inputs_p(n, args.inputs_per_cell), duration_ms=d, chunk_ms=c))
               for n in args.neurons]

    def stream_pair(b, cells, where, engine):
        mem = Case("ensemble", members=b, probes=tuple(args.stream_probes), duration_ms=d, chunk_ms=c,
                   vm_cells=cells or None, engine=engine)
        return [(mem, where), (dataclasses.replace(mem, store=True), where)]

    groups += [stream_pair(b, cells, "one", e) for b in args.stream_members for cells in args.stream_vm_cells
               for e in engines]
    last = (args.stream_vm_cells or [0])[-1]
    multi = [[(Case("ensemble", members=b, duration_ms=d, chunk_ms=c, engine=e), "one"),
              (Case("ensemble", members=b, duration_ms=d, chunk_ms=c, engine=e), "all")]
             for b in args.multi_device_members for e in engines]
    multi += [stream_pair(b, last, "all", e) for b in args.stream_members for e in engines]
    return singles, groups, multi


def _groups_to_json(groups) -> list:
    return [[{**dataclasses.asdict(case), "where": where} for case, where in g] for g in groups]


def _groups_from_json(data, devices) -> list:
    from jaxfne.bench._suite import Case
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

    from jaxfne.bench._suite import run_side_by_side
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
    from jaxfne.bench._suite import Case
    return [Case("network" if b == 1 else "ensemble", members=b, duration_ms=args.duration_ms,
                 chunk_ms=args.chunk_ms) for b in args.peer_members]


def run_peers(args, baselines, jaxfne_rows, start_index: int, total: int, out) -> list:
    import peers
    from jaxfne.bench._suite import case_row, format_row, measure_baseline
    from jaxfne import construct
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
        probes += f", engine {a.get('engine')}" if a.get("engine") == b.get("engine") else ""
        if a.get("engine") != b.get("engine"):
            xla, nat = (a, b) if a.get("engine") == "xla" else (b, a)
            lines.append(f"native / xla engine, {a['case']}, {a['members']} x {a['neurons']}, {a['devices']} "
                         f"device(s): x{nat['neuron_steps_per_s'] / xla['neuron_steps_per_s']:.2f} "
                         f"({nat['neuron_steps_per_s']:.3g} vs {xla['neuron_steps_per_s']:.3g} neuron-steps/s; "
                         f"rates {nat['rate_hz']:.1f} vs {xla['rate_hz']:.1f} Hz)")
        elif a["store"] != b["store"]:
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
            for engine in ("native", "xla"):
                rj = find(members=rp["members"], neurons=rp["neurons"], devices=1, store=False, kind=rp["kind"],
                          probes=rp["probes"], engine=engine)
                if rj:
                    lines.append(f"jaxfne ({engine}, 1 device) / {rp['case']}, {rp['members']} x {rp['neurons']}: "
                                 f"x{rj['neuron_steps_per_s'] / rp['neuron_steps_per_s']:.2f} "
                                 f"(rates {rj['rate_hz']:.1f} vs {rp['rate_hz']:.1f} Hz)")
    compile_s = [r["compile_s"] for r in rows if "peer" not in r and r.get("compile_s") is not None]
    if compile_s:
        lines.append(f"simulate compile time (JAX's trace + lower + compile events in the first call): max "
                     f"{max(compile_s):.2f} s over jaxfne rows; "
                     f"construct: max {max(r.get('construct_s') or 0 for r in rows):.2f} s")
    return lines


# -- --profile: what the step's parts cost, and the NOTES.md prototypes side by side ------------------


def _prototypes():
    """Replacements of one piece of jaxfne/engine/_step.py each (bench/NOTES.md), patched in while tracing."""
    import jax.numpy as jnp
    from jax import lax

    from jaxfne.engine._step import _mix32, neuron_counters, noise_sample

    def recurrent_argmax(params, spiked):              # the event loop before 485d0c9 (argmax + mask)
        n = spiked.shape[0]
        zero = jnp.zeros_like(spiked, dtype=params.w.dtype)
        index = jnp.arange(n)

        def body(c):
            acc_e, acc_i, remaining = c
            j = jnp.argmax(remaining)
            row, exc = params.w[..., j, :], params.is_exc[j]
            return acc_e + jnp.where(exc, row, 0.0), acc_i + jnp.where(exc, 0.0, row), remaining & (index != j)

        acc_e, acc_i, _ = lax.while_loop(lambda c: jnp.any(c[2]), body, (zero, zero, spiked))
        return acc_e, acc_i

    coef_c = (2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087, -0.00125372503,
              -0.00417768164, 0.246640727, 1.50140941)
    coef_t = (-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773, -0.0076224613,
              0.00943887047, 1.00167406, 2.83297682)

    def noise_log(params, step):                       # P4: Giles erfinv with log((1-x)(1+x)), not log1p
        k = params.noise_key
        s = _mix32(_mix32(k[0] ^ step.astype(jnp.uint32)) + k[1])
        h = _mix32(s ^ neuron_counters(params.a.shape[0]))
        x = (2 * (h >> 8).astype(jnp.int32) + (1 - (1 << 24))).astype(params.a.dtype) * (1.0 / 16777216.0)
        w = -jnp.log((1.0 - x) * (1.0 + x))
        p, q = jnp.full_like(x, coef_c[0]), jnp.full_like(x, coef_t[0])
        for c in coef_c[1:]:
            p = c + p * (w - 2.5)
        for c in coef_t[1:]:
            q = c + q * (jnp.sqrt(w) - 3.0)
        return jnp.sqrt(jnp.asarray(2.0, x.dtype)) * jnp.where(w < 5.0, p, q) * x

    return {
        "P4 erfinv via log": {"noise_sample": noise_log},
        "P5 noise materialised once": {"noise_sample": lambda p, t: lax.optimization_barrier(noise_sample(p, t))},
        "P4 + P5": {"noise_sample": lambda p, t: lax.optimization_barrier(noise_log(p, t))},
        "old argmax event loop": {"recurrent_input": recurrent_argmax},
    }, recurrent_argmax


def profile(args) -> int:
    """Single-threaded XLA, CPU time, round-robin: costs per neuron-step of the step's parts (steady state)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen=false" not in flags:     # must be set before JAX starts: re-run ourselves
        env = {**os.environ, "XLA_FLAGS": (flags + " --xla_cpu_multi_thread_eigen=false"
                                           " intra_op_parallelism_threads=1").strip()}
        return subprocess.run([sys.executable, __file__, *sys.argv[1:]], env=env).returncode
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    import jaxfne as jtfne
    from jaxfne.bench._suite import tutorial
    from jaxfne.model import initial_state
    from jaxfne.engine import param_axes
    from jaxfne.engine._step import noise_sample, recurrent_input, step
    b, t_steps, warm = args.profile_members, args.profile_steps, int(round(args.profile_warm_ms / 0.1))
    model = jtfne.construct(tutorial(10.0).ensemble(seeds=list(range(b))))
    params, axes = model.params, param_axes(model.layout)
    import contextlib

    import jaxfne.engine._step as step_module
    variants, recurrent_argmax = _prototypes()

    @contextlib.contextmanager
    def patched(replacements):
        saved = {k: getattr(step_module, k) for k in replacements}
        for k, v in replacements.items():
            setattr(step_module, k, v)
        try:
            yield
        finally:
            for k, v in saved.items():
                setattr(step_module, k, v)

    def scan_step(fn, n, outputs):
        vstep = jax.vmap(fn, in_axes=(0, axes, None))

        @jax.jit
        def run(st, p, t0):
            def body(s, k):
                s, obs = vstep(s, p, (t0 + k).astype(jnp.uint32))
                return s, tuple(obs[o] for o in outputs)
            return lax.scan(body, st, jnp.arange(n))
        return run

    state0 = jax.vmap(initial_state, in_axes=(axes,))(params)
    state = jax.block_until_ready(scan_step(step, warm, ())(state0, params, 0)[0])      # steady state
    raster = jnp.asarray(np.asarray(scan_step(step, t_steps, ("spikes",))(state, params, warm)[1][0]))
    zeros = jnp.zeros((b, model.layout.n))

    def alone(fn, batched_args):
        @jax.jit
        def run(p, xs):
            def body(acc, x):
                out = jax.vmap(fn, in_axes=(axes, batched_args))(p, x)
                return acc + (out[0] - out[1] if isinstance(out, tuple) else out), None
            return lax.scan(body, zeros, xs)[0]
        return run

    @jax.jit
    def update_only(st, p):
        def body(c, _):
            v, u = c
            vn = v + p.dt_ms[:, None] * (0.04 * v * v + 5.0 * v + 140.0 - u + p.i_mean)
            un = u + p.dt_ms[:, None] * (p.a * (p.b * v - u))
            s = vn >= 30.0
            return (jnp.where(s, p.c, vn), jnp.where(s, un + p.d, un)), s
        return lax.scan(body, (st.v, st.u), jnp.arange(t_steps))

    steps = (warm + jnp.arange(t_steps)).astype(jnp.uint32)
    def variant(replacements):                 # compiled now, while the replacement is patched in
        fn = scan_step(step, t_steps, ("spikes", "v"))
        with patched(replacements):
            jax.block_until_ready(fn(state, params, warm))
        return fn

    parts = {
        "whole step, SPK+Vm stacked (committed)": (scan_step(step, t_steps, ("spikes", "v")), (state, params, warm)),
        "whole step, SPK stacked": (scan_step(step, t_steps, ("spikes",)), (state, params, warm)),
        "whole step, no outputs": (scan_step(step, t_steps, ()), (state, params, warm)),
        "noise_sample alone": (alone(noise_sample, None), (params, steps)),
        "recurrent_input alone (recorded raster)": (alone(recurrent_input, 0), (params, raster)),
        "old argmax event loop alone (recorded raster)": (alone(recurrent_argmax, 0), (params, raster)),
        "neuron update alone (+SPK stacked)": (update_only, (state, params)),
        **{f"whole step, SPK+Vm, {k}": (variant(v), (state, params, warm)) for k, v in variants.items()},
    }
    ref = None
    for name, (fn, a) in parts.items():
        out = jax.block_until_ready(fn(*a))
        if name.startswith("whole step, SPK+Vm"):
            spk = np.asarray(out[1][0])
            ref = spk if ref is None else ref
            if spk is not ref:
                print(f"  {name}: spike trains identical to the committed step: {np.array_equal(spk, ref)}")
    times = {name: [] for name in parts}
    for _ in range(args.profile_rounds):
        for name, (fn, a) in parts.items():
            t = time.process_time()
            jax.block_until_ready(fn(*a))
            times[name].append(time.process_time() - t)
    print(f"# {b} members x {model.layout.n} neurons, {t_steps} steps after {args.profile_warm_ms:g} ms, "
          f"{float(raster.sum()) / (t_steps * b):.3f} spikes per member-step, busiest member "
          f"{float(raster.sum(-1).max(-1).mean()):.2f} per step; single-threaded XLA, CPU time, median of "
          f"{args.profile_rounds} round-robin rounds")
    base = np.median(times["whole step, SPK+Vm stacked (committed)"])
    for name, ts in times.items():
        m = np.median(ts)
        print(f"{name:58s} {m / (b * model.layout.n * t_steps) * 1e9:6.2f} ns/neuron-step"
              + (f"   x{base / m:.2f}" if name.startswith("whole step, SPK+Vm") else ""))
    return 0


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
    ap.add_argument("--engines", nargs="+", default=["xla", "native"], choices=["xla", "native", "auto"],
                    help="simulate(engine=...) variants, timed in alternation (default: xla and native)")
    ap.add_argument("--no-seed", action="store_true", help="skip the seed-network row")
    ap.add_argument("--no-baseline", action="store_true", help="skip the plain-JAX dense baseline")
    ap.add_argument("--baseline-budget-s", type=float, default=5.0,
                    help="stop a baseline run after this many seconds (its cost does not depend on activity)")
    ap.add_argument("--repeats", type=int, default=1, help="timed calls per row after the first (best is kept)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="alternating timed calls per variant of a side-by-side pair (memory/store, 1/N devices)")
    ap.add_argument("--quick", action="store_true", help="small smoke run: 100 ms, few rows, no peers")
    ap.add_argument("--json", help="write machine info and rows as JSON here ('-' for standard output)")
    ap.add_argument("--profile", action="store_true",
                    help="instead of the table: cost of the step's parts and of the NOTES.md prototypes")
    ap.add_argument("--profile-members", type=int, default=1024)
    ap.add_argument("--profile-steps", type=int, default=300)
    ap.add_argument("--profile-warm-ms", type=float, default=200.0)
    ap.add_argument("--profile-rounds", type=int, default=5)
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
    if args.profile:
        return profile(args)
    import jax

    from jaxfne.bench._suite import (header_line, machine_info, run_cases, run_side_by_side, table_header,
                               write_json)
    from jaxfne.bench._suite import format_row
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
          f"baseline = plain-JAX dense (jaxfne/bench/_baseline.py) on {jax.devices()[0].platform}, x base = jaxfne / "
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
                from jaxfne.bench._suite import Case, measure_baseline
                case = Case(**{k: row[k] if k != "probes" else tuple(row[k]) for k in
                               ("kind", "members", "neurons", "p", "probes", "store", "shared", "duration_ms",
                                "chunk_ms", "vm_cells", "engine")})
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
