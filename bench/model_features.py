"""What each stimulus kind and each synapse/connectivity kind costs, against the plain network (issue 15).

One process, one table. Every case is an ensemble of ``--members`` tutorial networks (100 Izhikevich
cells, 75% E, all-to-all, jaxfne/bench/_suite.py ``tutorial``), ``--duration-ms`` at dt 0.1 ms, SPK only,
in memory, with one feature added: a step, a pulse train, a sine, Poisson sources (25 at 40 Hz; and
again with weight 0, their cost without the spikes they add; and with a rate profile), an array-driven
current (1-D, one sample per ms), delta or conductance synapses, fixed in-degree connectivity, the
user's weight matrix (shared, next to connectivity(shared=True)), per-neuron parameters, the 2003
integrator, or noise held for 1 ms. Each case runs on ``engine="auto"`` (native when it supports the
feature; the table says which engine ran) and on ``engine="xla"``.

Compilation is excluded: each (case, engine) runs once untimed first. Then ``--rounds`` rounds, each
running every (case, engine) once in an order rotated from round to round; the table gives the median
seconds and the median over rounds of (case / plain on the same engine in the same round). The machine
is shared and noisy (absolute times move 2x from run to run, bench/RESULTS.md section 3): read the ratios.
Compilations during the timed rounds are counted (jax.monitoring) and printed: 0 is expected.

Last, the no-recompile fact: an ensemble sweeping a step's amplitude is constructed and run, then again
with other amplitudes; the XLA compilations (and jaxfne chunk-program cache misses) of the second
construct + simulate are counted, on each engine.

    python bench/model_features.py                 # ~10 minutes at load 6-8 on a 2-core box
    python bench/model_features.py --members 8 --duration-ms 50 --rounds 1 --cases "stimulus step"  # smoke
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def feature_cases(tutorial, plain_model, duration_ms: float) -> dict:
    """name -> (what is added, Configuration without its ensemble). Numbers keep activity near the plain
    network's: the per-neuron parameters and the user's weights are member 0's own, delta strengths carry
    the exponential synapses' charge (strength x tau)."""
    base = tutorial(duration_ms)
    p = plain_model.params
    a, b, c, d = (np.asarray(getattr(p, k))[0] for k in "abcd")
    exc = np.asarray(p.is_exc)[0].astype(bool)
    n = a.size
    w = np.asarray(p.w)[0, :n]                                     # row j: the (unsigned) weights from cell j
    user_w = w.T * np.where(exc, 1.0, -1.0)[None, :]              # [post, pre], signed by the source's type
    n_samples = int(round(duration_ms))
    course = 3.0 * np.sin(2 * np.pi * 10.0 * np.arange(n_samples) / 1000.0)   # the sine case's current, per ms
    on_ms, for_ms = round(0.2 * duration_ms, 1), round(0.4 * duration_ms, 1)
    members = plain_model.n_members
    return {
        "plain": ("the tutorial network", base),
        "shared weights": ("connectivity(shared=True) (reference for the user matrix)",
                           base.connectivity(shared=True)),
        "stimulus step": (f"step 5.0 from {on_ms:g} ms for {for_ms:g} ms, every cell",
                          base.stimulus("s", kind="step", amplitude=5.0, onset_ms=on_ms, duration_ms=for_ms)),
        "stimulus pulses": ("pulses 10.0, 2 ms every 50 ms from 10 ms",
                            base.stimulus("s", kind="pulses", amplitude=10.0, onset_ms=10.0, duration_ms=2.0,
                                          period_ms=50.0)),
        "stimulus sine": ("sine 3.0 at 10 Hz, every cell",
                          base.stimulus("s", kind="sine", amplitude=3.0, frequency_hz=10.0)),
        "stimulus poisson": ("25 sources at 40 Hz, weight 1.5, E synapse",
                             base.stimulus("s", kind="poisson", rate_hz=40.0, n_sources=25, weight=1.5)),
        "stimulus poisson w=0": ("the same sources with weight 0 (their cost without their spikes)",
                                 base.stimulus("s", kind="poisson", rate_hz=40.0, n_sources=25, weight=0.0)),
        "stimulus poisson profile": ("inhomogeneous: the 25 sources' rate 40 Hz x a profile 0-2, one value per 10 ms",
                                     base.stimulus("s", kind="poisson", rate_hz=40.0, n_sources=25, weight=1.5,
                                                   profile=np.linspace(0.0, 2.0, n_samples // 10),
                                                   sample_ms=10.0)),
        "stimulus array": (f"kind='array', 1-D, {n_samples} values, sample_ms=1.0 (the sine, tabulated)",
                           base.stimulus("s", kind="array", values=course, sample_ms=1.0)),
        "stimulus array per member": (f"kind='array', per_member=True: member m's course x (1 + m / members), "
                                      f"{n_samples} values each",
                                      base.stimulus("s", kind="array", per_member=True, sample_ms=1.0,
                                                    values=course[None, :] * (1.0 + np.arange(members)[:, None]
                                                                              / members))),
        "synapse per pathway": ("synapse={'E->E': 'delta'} (strength 100 = 20 x tau), the rest exponential",
                                base.connectivity(synapse={"E->E": "delta"}, strength={"E->E": 100.0})),
        "synapse delta": ("synapse='delta', strength x tau (100/200/200/300)",
                          base.connectivity(synapse="delta", strength={"E->E": 100.0, "E->I": 200.0,
                                                                       "I->E": 200.0, "I->I": 300.0})),
        "synapse conductance": ("synapse='conductance', reversal 0/-80 mV, strength / |E_rev + 65| "
                                "(0.3/0.6/1.33/2.0)",
                                base.connectivity(synapse="conductance", strength={"E->E": 0.3, "E->I": 0.6,
                                                                                   "I->E": 1.33, "I->I": 2.0})),
        "fixed in-degree": ("rule='fixed_indegree', p=0.5",
                            base.connectivity(rule="fixed_indegree", p=0.5)),
        "user weights": ("connectivity(weights=W), W = member 0's, one shared copy",
                         base.connectivity(weights=user_w)),
        "per-neuron params": ("set_emitter(per_neuron=a, b, c, d of member 0)",
                              base.set_emitter(per_neuron={"a": a, "b": b, "c": c, "d": d})),
        "izhikevich2003": ("runtime(integrator='izhikevich2003')", base.runtime(integrator="izhikevich2003")),
        "noise held 1 ms": ("drive(noise_hold_ms=1.0)", base.drive(noise_hold_ms=1.0)),
    }


@contextlib.contextmanager
def counting_compiles():
    """Yields a list that collects one entry per XLA backend compilation inside the block."""
    import jax

    seen: list = []

    def listener(event, duration, **kw):
        if event == COMPILE_EVENT:
            seen.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield seen
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def timed_run(jtfne, model, engine):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = time.perf_counter()
        sig = jtfne.simulate(model, engine=engine)
        spk = np.asarray(sig["SPK"])
        seconds = time.perf_counter() - t
    return seconds, sig.attrs["engine"], spk, [str(w.message) for w in caught], sig


def sweep_recompiles(jtfne, tutorial, chunk_function, engines, duration_ms) -> list:
    """Per engine: compilations of a second amplitude sweep (other values, same shapes) after a first."""
    out = []
    for engine in engines:
        def sweep(amplitudes):
            cfg = (tutorial(duration_ms).stimulus("s", kind="step", amplitude=1.0, onset_ms=10.0)
                   .ensemble(seeds=[0], sweep={"stimulus.s.amplitude": list(amplitudes)}))
            return jtfne.construct(cfg)

        first = timed_run(jtfne, sweep([2.0, 4.0, 6.0, 8.0]), engine)
        misses = chunk_function.cache_info().misses
        with counting_compiles() as compiles:
            model = sweep([3.0, 5.0, 7.0, 9.0])
            second = timed_run(jtfne, model, engine)
        out.append({"engine": engine, "ran": second[1], "compiles": len(compiles),
                    "chunk_program_misses": chunk_function.cache_info().misses - misses,
                    "spikes_first": int(first[2].sum()), "spikes_second": int(second[2].sum()),
                    "amplitudes_second": second[4]["SPK"].coords["stimulus.s.amplitude"].values.tolist()})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=64)
    ap.add_argument("--duration-ms", type=float, default=500.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--engines", nargs="+", default=["auto", "xla"])
    ap.add_argument("--cases", nargs="+", default=None, help="a subset of the case names (plain is always run)")
    ap.add_argument("--devices", type=int, default=None, help="CPU devices (default: JAX's default)")
    ap.add_argument("--json", default=None, help="write the rows and the sweep check here")
    args = ap.parse_args(argv)
    import jax

    if args.devices:
        jax.config.update("jax_num_cpu_devices", args.devices)
    import jaxfne as jtfne
    from jaxfne.bench._suite import tutorial
    from jaxfne.engine import chunk_function

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    print(f"# jaxfne {jtfne.__version__} ({commit}), jax {jax.__version__}, {os.cpu_count()} cores, "
          f"{len(jax.devices())} device(s), load {os.getloadavg()[0]:.1f}, "
          f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    print(f"# {args.members} members x 100 neurons, {args.duration_ms:g} ms at dt 0.1, SPK in memory, "
          f"{args.rounds} rounds")
    seeds = list(range(args.members))
    plain_model = jtfne.construct(tutorial(args.duration_ms).ensemble(seeds=seeds))
    cases = feature_cases(tutorial, plain_model, args.duration_ms)
    if args.cases:
        unknown = sorted(set(args.cases) - set(cases))
        if unknown:
            ap.error(f"--cases {unknown} unknown; valid: {sorted(cases)}")
        cases = {k: v for k, v in cases.items() if k == "plain" or k in args.cases}
    models = {name: (plain_model if name == "plain" else jtfne.construct(cfg.ensemble(seeds=seeds)))
              for name, (_, cfg) in cases.items()}

    runs = [(name, engine) for name in cases for engine in args.engines]
    ran, rate_hz, notes, times = {}, {}, {}, {r: [] for r in runs}
    t0 = time.perf_counter()
    for run in runs:                                                   # warm-up: compile and kernel build
        _, ran[run], spk, warned, _ = timed_run(jtfne, models[run[0]], run[1])
        rate_hz[run] = float(spk.sum()) / (spk.shape[0] * spk.shape[-1] * args.duration_ms / 1000.0)
        notes[run] = warned
    print(f"# warm-up (compile + one run of each) {time.perf_counter() - t0:.0f} s")
    with counting_compiles() as compiles:
        for r in range(args.rounds):
            k = (r * len(runs)) // max(args.rounds, 1)
            for run in runs[k:] + runs[:k]:
                seconds, engine, _, _, _ = timed_run(jtfne, models[run[0]], run[1])
                assert engine == ran[run], (run, engine, ran[run])
                times[run].append(seconds)
    print(f"# timed rounds {time.perf_counter() - t0:.0f} s since start; compilations during them: {len(compiles)}")

    rows = []
    for name, engine in runs:
        plain = times[("plain", engine)]
        ratios = [t / p for t, p in zip(times[(name, engine)], plain)]
        rows.append({"case": name, "what": cases[name][0], "engine": engine, "ran": ran[(name, engine)],
                     "seconds_median": statistics.median(times[(name, engine)]),
                     "seconds": times[(name, engine)], "ratio_to_plain": statistics.median(ratios),
                     "ratio_min": min(ratios), "ratio_max": max(ratios), "rate_hz": rate_hz[(name, engine)],
                     "warnings": notes[(name, engine)]})
    print()
    print("| case | engine asked | engine ran | s (median) | x plain, same engine (median [min-max]) | rate Hz |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['case']} | {row['engine']} | {row['ran']} | {row['seconds_median']:.3f} | "
              f"{row['ratio_to_plain']:.2f} [{row['ratio_min']:.2f}-{row['ratio_max']:.2f}] | {row['rate_hz']:.1f} |")
    print()
    for name, (what, _) in cases.items():
        print(f"# {name}: {what}")

    sweep = sweep_recompiles(jtfne, tutorial, chunk_function, args.engines, min(args.duration_ms, 100.0))
    for s in sweep:
        print(f"# amplitude sweep, engine {s['engine']} (ran {s['ran']}): a second sweep with amplitudes "
              f"{s['amplitudes_second']} compiled {s['compiles']} XLA program(s), "
              f"{s['chunk_program_misses']} new chunk program(s); spikes {s['spikes_first']} -> "
              f"{s['spikes_second']}")
    print(f"# load {os.getloadavg()[0]:.1f} at the end, {time.perf_counter() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"members": args.members, "duration_ms": args.duration_ms,
                                               "rounds": args.rounds, "commit": commit,
                                               "devices": len(jax.devices()), "rows": rows,
                                               "timed_compiles": len(compiles), "sweep": sweep}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
