"""The benchmark behind ``jaxfne bench`` and ``bench/run.py``: one table, one row per case.

A case is one simulate() call shape: the seed network alone, an ensemble of
the 100-neuron tutorial network, a single larger network, in memory or
streamed to a Zarr store. Each row gives neuron-steps/s and synaptic events/s
of jaxfne, the compile time, and the plain-JAX dense baseline
(``_baseline.py``) measured in the same process, with their ratio.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .._api import construct, simulate
from .._validate import parse_steps
from .._version import __version__
from ..config import Configuration
from ..engine import _driver
from ..engine import chunk_steps as _chunk_steps
from ..engine import default_devices as simulate_default
from ..engine import resolve_engine, run_chunks
from ..model import precision
from ..sinks import _store
from ..results import open_signals
from ._baseline import make_dense_baseline

SEED_PROBES = ("SPK", "Vm", "source", "LFP-proxy", "CSD-proxy")
DT_MS = 0.1


def tutorial(duration_ms: float, n: int = 100, p: float = 1.0, shared: bool = False, probes=("SPK",)):
    """The tutorial network (seed page): 100 Izhikevich cells, 75% E, all-to-all by default."""
    return (Configuration().runtime(seed=42, duration_ms=duration_ms, dt_ms=DT_MS)
            .column(name="L2/3_column", layers=["L2/3"], n=n).cell_types({"E": 0.75, "I": 0.25})
            .connectivity(p=p, shared=shared).set_emitter(family="izhikevich", preset="cortical_eig")
            .probes(list(probes)))


@dataclasses.dataclass(frozen=True)
class Case:
    """One row: what is simulated and how."""

    kind: str                      # "seed" | "ensemble" | "network"
    members: int = 1
    neurons: int = 100
    p: float = 1.0
    probes: tuple = ("SPK",)
    store: bool = False
    shared: bool = False
    duration_ms: float = 200.0
    chunk_ms: float = 50.0
    #: Vm/source record this many cells of each type (probes(neurons=k)); None: every cell
    vm_cells: int | None = None
    #: simulate(engine=...): "auto" (native on CPU when it builds), "xla" or "native"
    engine: str = "auto"

    @property
    def label(self) -> str:
        name = {"seed": "seed network", "ensemble": "ensemble", "network": "single network"}[self.kind]
        if self.shared:
            name += " (shared W)"
        return name

    @property
    def baseline_key(self) -> tuple:
        return (self.members, self.neurons, self.p, self.shared)

    def configuration(self):
        cfg = tutorial(self.duration_ms, n=self.neurons, p=self.p, shared=self.shared, probes=self.probes)
        if self.vm_cells is not None:
            cfg = cfg.probes(list(self.probes), neurons=int(self.vm_cells))
        if self.kind == "ensemble":
            cfg = cfg.ensemble(seeds=list(range(self.members)))
        return cfg

    def weight_bytes(self) -> int:
        """Bytes of the dense (N + 1) x N float32 weights jaxfne stores (per member unless shared)."""
        return (1 if self.shared else self.members) * (self.neurons + 1) * self.neurons * 4


def inputs_p(neurons: int, inputs: int) -> float:
    """Connection probability giving about ``inputs`` inputs per cell (1.0 when n <= inputs + 1)."""
    return 1.0 if neurons <= inputs + 1 else round(inputs / (neurons - 1), 6)


def available_memory_bytes() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 2**30


def fits_in_memory(case: Case) -> str | None:
    """None when the case fits, else why not. construct() holds ~6 N x N temporaries per member."""
    need = 6 * case.weight_bytes()
    have = available_memory_bytes()
    if need > 0.6 * have:
        return f"needs ~{need / 2**30:.1f} GiB to construct (dense (N+1)xN float32 weights), {have / 2**30:.1f} available"
    return None


def machine_info(devices=None) -> dict:
    import jax
    import jaxlib

    devs = list(jax.devices() if devices is None else devices)
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    commit = "unknown"
    try:
        root = Path(__file__).resolve().parent.parent
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        if dirty and commit != "unknown":
            commit += "+dirty"
    except (OSError, subprocess.SubprocessError):
        pass
    return {"jaxfne": __version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__, "python": platform.python_version(),
            "platform": devs[0].platform, "device_kind": devs[0].device_kind, "devices": len(devs),
            "machine": platform.machine(), "cores": os.cpu_count(), "cpu_model": cpu,
            "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "commit": commit,
            "xla_flags": os.environ.get("XLA_FLAGS", "")}


def header_line(info: dict) -> str:
    load = "" if info["loadavg"] is None else f", load {info['loadavg'][0]:.1f}"
    return (f"# jaxfne {info['jaxfne']} ({info['commit']}), jax {info['jax']}, {info['platform']} "
            f"({info['device_kind']}), {info['cpu_model']}, {info['cores']} cores{load}, {info['date']}")


# -- measuring ------------------------------------------------------------------------------


def _spikes_and_events(signals, model) -> tuple[int, float]:
    """(spikes, synaptic events): each spike of cell j counts out-degree(j) events."""
    spk = signals["SPK"]
    counts = np.asarray(spk.sum("time").values, dtype=np.int64)      # (members, N) or (N,)
    w = np.asarray(model.params.w)
    outdeg = np.count_nonzero(w[..., :-1, :], axis=-1)                 # (members, N) or (N,)
    if counts.ndim == 1:
        counts = counts[None]
    if outdeg.ndim == 1:
        outdeg = outdeg[None]
    return int(counts.sum()), float((counts * outdeg).sum())


#: programs this process has compiled (simulate caches compiled chunk functions per layout)
_COMPILED: set = set()


def _program_key(case: Case, devices) -> tuple:
    """What fixes the compiled chunk function: everything but the store (same program in memory or streamed)."""
    return (case.kind == "ensemble", case.members, case.neurons, case.p, case.shared, case.probes, case.vm_cells,
            case.duration_ms, case.chunk_ms, case.engine, tuple(str(d) for d in devices or ()))


#: jax.monitoring events whose durations make up JAX's compile time (tracing, lowering, XLA)
COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")


@contextlib.contextmanager
def compile_seconds():
    """A one-element list holding the seconds JAX spent compiling inside the block.

    Summed from ``jax.monitoring`` duration events (COMPILE_EVENTS), so it
    excludes what a first call does besides compiling (allocating and faulting
    in the outputs, building the native kernel once per machine).
    """
    import jax.monitoring
    total = [0.0]

    def listen(event, duration, **_):
        if event in COMPILE_EVENTS:
            total[0] += duration

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield total
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)


class _Runner:
    """One case on given devices: a constructed model and a timed ``simulate`` call."""

    def __init__(self, case: Case, devices=None, workdir=None):
        self.case, self.devices = case, devices
        t = time.perf_counter()
        self.model = construct(case.configuration())
        self.construct_s = time.perf_counter() - t
        self.work = Path(tempfile.mkdtemp(prefix="jaxfne-bench-", dir=workdir))
        self.n, self.times, self.first, self.sig = 0, [], None, None
        self.key = _program_key(case, devices)
        self.cached = False

    def store_path(self) -> Path:
        return self.work / f"run{self.n}.zarr"

    def call(self) -> float:
        kwargs = {"chunk_ms": self.case.chunk_ms, "devices": self.devices, "engine": self.case.engine}
        if self.case.store:
            shutil.rmtree(self.store_path(), ignore_errors=True)   # keep one store on disk at a time
            self.n += 1
            kwargs["store"] = self.store_path()
        if self.first is None:              # compiled already (by an earlier variant of the same program)?
            self.cached = self.key in _COMPILED
        with compile_seconds() as compiled:
            t0 = time.perf_counter()
            self.sig = simulate(self.model, **kwargs)
            elapsed = time.perf_counter() - t0
        if self.first is None:
            self.first = elapsed
            self.compile_s = compiled[0]
            _COMPILED.add(self.key)
            if self.cached:                 # nothing to compile: the first call is a run like the others
                self.times.append(elapsed)
        else:
            self.times.append(elapsed)
        return elapsed

    def row(self) -> dict:
        case, model = self.case, self.model
        best = min(self.times)
        spikes, events = _spikes_and_events(self.sig, model)
        row = {"engine": self.sig.attrs.get("engine"),
               "seconds": best, "compile_s": None if self.cached else self.compile_s,
               "first_call_extra_s": max(self.first - best, 0.0),
               "construct_s": self.construct_s, "first_call_s": self.first, "timed_calls": len(self.times)}
        if case.store:
            t0 = time.perf_counter()
            open_signals(self.store_path())
            row["open_signals_s"] = time.perf_counter() - t0
            row["store_bytes"] = sum(f.stat().st_size for f in self.store_path().rglob("*") if f.is_file())
        n_steps = model.layout.n_steps
        neuron_steps = case.members * case.neurons * n_steps
        row.update(neuron_steps=neuron_steps, neuron_steps_per_s=neuron_steps / best, spikes=spikes,
                   synaptic_events_per_s=events / best,
                   rate_hz=spikes / (case.members * case.neurons * n_steps * DT_MS / 1000.0))
        return row

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


def measure_jaxfne(case: Case, devices=None, repeats: int = 1, workdir=None) -> dict:
    """Time ``simulate`` for ``case``: the first call (compile + run), then the best of ``repeats``.

    When this process already compiled the same program (e.g. the in-memory row before its streamed
    twin), the first call is timed as a run and ``compile_s`` is None (cached).
    """
    return measure_side_by_side([(case, devices)], rounds=repeats, workdir=workdir)[0]


def measure_side_by_side(variants, rounds: int = 2, workdir=None) -> list:
    """Rows of several (case, devices) variants timed in alternation: a first (compiling) call of
    each, then ``rounds`` rounds of one call each, best kept. Ratios between them are side by side:
    a change of machine load hits all variants alike."""
    runners = []
    try:
        for case, devices in variants:
            runners.append(_Runner(case, devices, workdir))
        for r in runners:
            r.call()
        for _ in range(rounds):
            for r in runners:
                if len(r.times) < rounds:
                    r.call()
        return [r.row() for r in runners]
    finally:
        for r in runners:
            r.close()


def measure_baseline(case: Case, budget_s: float = 5.0) -> dict:
    """Neuron-steps/s of the dense baseline on ``case``'s model (stops after ~``budget_s``)."""
    model = construct(dataclasses.replace(case, probes=("SPK",), store=False).configuration())
    # short chunks: the warm-up (compile + one chunk) stays short for big dense models; the per-step cost of
    # the dense baseline does not depend on the chunk length once it is over ~100 steps
    chunk = min(parse_steps("bench.measure_baseline", "chunk_ms", case.chunk_ms, DT_MS), 100)
    run = make_dense_baseline(model, chunk)
    t = time.perf_counter()
    run(chunk)                                              # compile
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    steps, spikes = run(model.layout.n_steps, max_seconds=budget_s)
    elapsed = time.perf_counter() - t
    return {"baseline_neuron_steps_per_s": case.members * case.neurons * steps / elapsed,
            "baseline_steps": steps, "baseline_compile_s": compile_s,
            "baseline_rate_hz": spikes / (case.members * case.neurons * steps * DT_MS / 1000.0)}


# -- the table ------------------------------------------------------------------------------

COLUMNS = (("case", 30), ("dev", 3), ("members", 7), ("neurons", 7), ("p", 6), ("probes", 18), ("store", 5),
           ("n-steps/s", 9), ("syn-ev/s", 9), ("rate Hz", 7), ("compile s", 9), ("run s", 7),
           ("baseline", 9), ("x base", 7))


def table_header() -> str:
    return " ".join(f"{name:>{width}}" if i else f"{name:<{width}}" for i, (name, width) in enumerate(COLUMNS))


def _g(x, fmt=".3g"):
    return "-" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, fmt)


def format_row(row: dict) -> str:
    if row.get("skipped"):
        return f"{row['case']:<30} {row.get('devices', 1):>3} {row['members']:>7} {row['neurons']:>7}  skipped: {row['skipped']}"
    probes = "+".join(row.get("probes", ())) if row.get("probes") != list(SEED_PROBES) else "seed (5)"
    if row.get("vm_cells") is not None:
        probes += f"[{row['vm_cells']}/type]"
    case = row["case"] + (f" [{row['engine']}]" if row.get("engine") else "")
    vals = [case, row.get("devices", 1), row["members"], row["neurons"], _g(row.get("p"), "g"), probes,
            "zarr" if row.get("store") else "-", _g(row.get("neuron_steps_per_s")),
            _g(row.get("synaptic_events_per_s")), _g(row.get("rate_hz"), ".1f"),
            "cached" if "compile_s" in row and row["compile_s"] is None else _g(row.get("compile_s"), ".2f"),
            _g(row.get("seconds"), ".2f"), _g(row.get("baseline_neuron_steps_per_s")),
            _g(row.get("ratio"), ".2f")]
    return " ".join(f"{v!s:>{w}}" if i else f"{v!s:<{w}}" for i, ((_, w), v) in enumerate(zip(COLUMNS, vals)))


def case_row(case: Case, n_devices: int) -> dict:
    return {"case": case.label, "kind": case.kind, "devices": n_devices, "members": case.members,
            "neurons": case.neurons, "p": case.p, "probes": list(case.probes), "store": case.store,
            "shared": case.shared, "duration_ms": case.duration_ms, "chunk_ms": case.chunk_ms,
            "vm_cells": case.vm_cells, "engine": case.engine}


def describe(case: Case, n_devices: int) -> str:
    where = f", Vm of {case.vm_cells} cells per type" if case.vm_cells is not None else ""
    where += " -> zarr" if case.store else ""
    return (f"{case.label}: {case.members} x {case.neurons} neurons, p={case.p:g}, {case.duration_ms:g} ms, "
            f"{n_devices} device(s){where}")


def default_devices(members: int) -> list:
    """The devices simulate(devices=None) uses for ``members`` members (no more devices than members)."""
    return list(simulate_default(members))


def run_cases(cases, *, devices=None, baseline=True, baseline_budget_s=5.0, repeats=1, out=sys.stdout,
              progress=sys.stderr, baselines=None, start_index=0, total=None) -> list:
    """Measure ``cases`` in order, printing each row as it is done; returns the rows.

    ``baselines`` (a dict keyed by Case.baseline_key) caches baseline results
    across calls, so a streamed row reuses the in-memory row's baseline.
    """
    baselines = {} if baselines is None else baselines
    total = len(cases) if total is None else total
    rows = []
    for i, case in enumerate(cases):
        devs = list(devices) if devices is not None else default_devices(case.members)
        row = case_row(case, len(devs))
        if progress is not None:
            print(f"[{start_index + i + 1}/{total}] {describe(case, len(devs))} ...", file=progress, flush=True)
        why = fits_in_memory(case)
        if why is not None:
            row["skipped"] = why
        else:
            row.update(measure_jaxfne(case, devices=devs, repeats=repeats))
            if baseline:
                add_baseline(row, case, baselines, baseline_budget_s, progress)
        rows.append(row)
        if out is not None:
            print(format_row(row), file=out, flush=True)
    return rows


def add_baseline(row: dict, case, baselines: dict, budget_s: float, progress) -> None:
    """Add the dense baseline of ``case`` (measured once per shape, then reused) and the ratio to ``row``."""
    if case.baseline_key not in baselines:
        if progress is not None:
            print(f"      dense baseline ({case.members} x {case.neurons}) ...", file=progress, flush=True)
        baselines[case.baseline_key] = measure_baseline(case, budget_s=budget_s)
    row.update(baselines[case.baseline_key])
    row["ratio"] = row["neuron_steps_per_s"] / row["baseline_neuron_steps_per_s"]


def run_side_by_side(groups, *, baseline=True, baseline_budget_s=5.0, rounds=2, out=sys.stdout, progress=sys.stderr,
                     baselines=None, start_index=0, total=None) -> list:
    """Measure each group of (case, devices) variants in alternation (``measure_side_by_side``).

    Rows of one group share a ``pair`` id, so their ratio (streaming overhead, device speed-up) is
    read from calls made minutes apart at most, not from separate parts of the run.
    """
    baselines = {} if baselines is None else baselines
    total = sum(len(g) for g in groups) if total is None else total
    rows, index = [], start_index
    for g, group in enumerate(groups):
        if progress is not None:
            for case, devs in group:
                index += 1
                print(f"[{index}/{total}] {describe(case, len(devs))} (side by side, {rounds} rounds) ...",
                      file=progress, flush=True)
        pair = f"{start_index}-{g}"
        why = next((w for w in (fits_in_memory(c) for c, _ in group) if w), None)
        measured = [{"skipped": why}] * len(group) if why else measure_side_by_side(group, rounds=rounds)
        for (case, devs), m in zip(group, measured):
            row = {**case_row(case, len(devs)), **m, "pair": pair}
            if baseline and not why:
                add_baseline(row, case, baselines, baseline_budget_s, None)
            rows.append(row)
            if out is not None:
                print(format_row(row), file=out, flush=True)
    return rows


def write_json(path, info: dict, rows: list) -> None:
    text = json.dumps({"machine": info, "rows": rows}, indent=2, default=float)
    if str(path) == "-":
        print(text)
    else:
        Path(path).write_text(text)


def scaling_table(members=(16, 64, 256, 1024), duration_ms=200.0, chunk_ms=50.0, devices=None,
                  json_path=None, baseline=True, out=None, seed_row=True, baseline_budget_s=5.0) -> list:
    """``jaxfne bench``: the seed network and ensembles of the tutorial network, with the baseline.

    Prints the table (to standard error when ``json_path`` is "-", which puts
    the JSON on standard output) and a progress line per row; returns the rows.
    """
    import jax
    devs = list(jax.devices() if devices is None else devices)
    if out is None:
        out = sys.stderr if str(json_path) == "-" else sys.stdout
    info = machine_info(devs)
    print(header_line(info), file=out)
    print(f"# {duration_ms:g} ms at {DT_MS} ms per run, chunks of {chunk_ms:g} ms, spike raster to the host; "
          f"baseline = plain-JAX dense (jaxfne/_baseline.py), x base = jaxfne / baseline", file=out)
    print(table_header(), file=out, flush=True)
    cases = ([Case("seed", probes=SEED_PROBES, duration_ms=duration_ms, chunk_ms=chunk_ms)] if seed_row else [])
    cases += [Case("ensemble", members=int(b), duration_ms=duration_ms, chunk_ms=chunk_ms) for b in members]
    rows = run_cases(cases, devices=devices, baseline=baseline, baseline_budget_s=baseline_budget_s, out=out)
    if json_path:
        write_json(json_path, info, rows)
    return rows


# -- spikes as events (issue 14): streamed vs in memory vs the kernel alone, and bytes per spike -------------


def _tree_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) if root.exists() else 0


def spike_event_table(members: int = 1024, duration_ms: float = 1000.0, vm_cells: int = 10,
                      chunk_ms: float = 50.0, rounds: int = 3, workdir=None, progress=sys.stderr) -> dict:
    """The issue-14 case side by side in one process: the tutorial network x ``members``, ``duration_ms``,
    SPK + Vm of ``vm_cells`` cells, in 50-ms chunks, run as

    * "kernel": ``run_chunks`` alone, each chunk's outputs copied to the host and dropped;
    * "memory": ``simulate`` in memory (spikes as events too, kept beside the raster);
    * "zarr events": streamed to a store of schema 2 (spikes as events and counts: the default);
    * "zarr events, device": the same with the spikes compacted on the device (XLA) instead of the host;
    * "zarr raster": streamed with the spikes stored as the dense boolean raster (schema 1's layout).

    A first (compiling) call of each, then ``rounds`` rounds in rotating order, best kept. Returns the
    seconds, neuron-steps/s and the ratios to "memory" and "kernel", the bytes of each store, its spike
    arrays' bytes per spike and its bytes per simulated second.
    """
    cfg = (tutorial(duration_ms, probes=("SPK", "Vm")).probes(["SPK", "Vm"], neurons=int(vm_cells))
           .ensemble(seeds=list(range(members))))
    model = construct(cfg)
    devices = simulate_default(members)
    engine = resolve_engine("auto", devices, model.layout)
    steps = _chunk_steps(model.layout, chunk_ms, members)
    work = Path(tempfile.mkdtemp(prefix="jaxfne-events-", dir=workdir))
    stores, spikes = {}, {}

    def kernel():
        with precision(model.layout.dtype):
            for _ in run_chunks(model, steps, devices=devices, engine=engine):
                pass

    def memory():
        sig = simulate(model, chunk_ms=chunk_ms, devices=devices, engine=engine)
        spikes["memory"] = int(np.asarray(sig["SPK"]).sum())

    def zarr(name, encoding, where="auto"):
        def run():
            path = work / f"{name.replace(' ', '_').replace(',', '')}.zarr"
            shutil.rmtree(path, ignore_errors=True)
            before = (_store.SPK_ENCODING, _driver.SINK_EVENTS)
            _store.SPK_ENCODING, _driver.SINK_EVENTS = encoding, where
            try:
                simulate(model, chunk_ms=chunk_ms, devices=devices, engine=engine, store=path)
            finally:
                _store.SPK_ENCODING, _driver.SINK_EVENTS = before
            stores[name] = path
        return run

    variants = {"kernel": kernel, "memory": memory, "zarr events": zarr("zarr events", "events"),
                "zarr events, device": zarr("zarr events, device", "events", "device"),
                "zarr raster": zarr("zarr raster", "bool")}
    best = {}
    try:
        for name, fn in variants.items():                   # compile, warm the disk cache
            print(f"  warm-up: {name}", file=progress, flush=True)
            fn()
        order = list(variants)
        for r in range(rounds):
            for name in order[r % len(order):] + order[:r % len(order)]:
                t = time.perf_counter()
                variants[name]()
                best[name] = min(best.get(name, float("inf")), time.perf_counter() - t)
                print(f"  round {r + 1}: {name} {best[name]:.2f} s (best)", file=progress, flush=True)
        neuron_steps = members * model.layout.n * model.layout.n_steps
        rows = {name: {"seconds": s, "neuron_steps_per_s": neuron_steps / s,
                       "vs_memory": best["memory"] / s, "vs_kernel": best["kernel"] / s}
                for name, s in best.items()}
        n_spikes = spikes["memory"]
        for name, path in stores.items():
            spike_bytes = (_tree_bytes(path / "SPK") + _tree_bytes(path / "spike_events")
                           + _tree_bytes(path / "spike_count") + _tree_bytes(path / "time_bin"))
            total = _tree_bytes(path)
            rows[name].update(store_bytes=total, spike_bytes=spike_bytes,
                              spike_bytes_per_spike=spike_bytes / max(n_spikes, 1),
                              events_bytes_per_spike=_tree_bytes(path / "spike_events") / max(n_spikes, 1),
                              store_bytes_per_simulated_s=total / (duration_ms / 1000.0))
        return {"members": members, "duration_ms": duration_ms, "vm_cells": vm_cells, "chunk_ms": chunk_ms,
                "engine": engine, "spikes": n_spikes, "rounds": rounds, "rows": rows,
                "machine": machine_info(devices)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
