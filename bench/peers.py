"""Peer simulators on jaxfne's model: Brian2 (C++ standalone) and NEST, each in its own process.

The parent (bench/run.py) exports a constructed jaxfne Model's numbers to an
.npz file (per-cell a, b, c, d, drive, noise; the weight matrix; decays; dt)
and runs this file as a script under a Python that has the peer installed:
``sys.executable`` by default, or the interpreter named by
``JAXFNE_BENCH_BRIAN2_PYTHON`` / ``JAXFNE_BENCH_NEST_PYTHON``. An ensemble of
B members is one group of B x N cells with block-diagonal synapses, the usual
way to batch independent networks in these simulators.

* Brian2, cpp_standalone (or runtime with ``--brian2-device runtime``): the
  same equations as jaxfne: forward Euler, Euler-Maruyama noise of the same
  size, exponential current synapses applied as s <- s * exp(-dt/tau) + w
  (decay after the state update, increments from this step's spikes, felt
  next step), threshold v >= 30, reset v = c, u += d. Timed: the network's
  run as reported by the generated code (``device._last_run_time``); code
  generation and compilation are reported separately.
* NEST: its built-in ``izhikevich`` neuron (same Euler update with
  consistent_integration) has delta synapses, not exponential currents; the
  closest built-in model uses J = w * tau_syn (the same total charge per
  spike) and a ``noise_generator`` current of the same std per 0.1 ms step,
  and is reported as such (compare the rates before comparing speed).
  Timed: ``nest.Simulate`` only.

Brian2 2.9 (the newest on this index) does not import with numpy >= 2.4
(``np.ndarray.ptp`` was removed); with numpy 2.4 in the project venv, point
``JAXFNE_BENCH_BRIAN2_PYTHON`` at a venv with ``numpy<2.4 brian2``:

    python3.11 -m venv /tmp/b2venv && /tmp/b2venv/bin/pip install "numpy<2.4" brian2
    JAXFNE_BENCH_BRIAN2_PYTHON=/tmp/b2venv/bin/python python bench/run.py --peers brian2 nest

Run alone: ``python bench/peers.py --check`` lists which peers are available.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PEERS = ("brian2", "nest")
ENV = {"brian2": "JAXFNE_BENCH_BRIAN2_PYTHON", "nest": "JAXFNE_BENCH_NEST_PYTHON"}


def python_for(peer: str) -> str:
    return os.environ.get(ENV[peer]) or sys.executable


def available(peer: str, timeout: float = 180.0) -> tuple[bool, str]:
    """(True, version) when ``peer`` imports in its interpreter, else (False, why)."""
    code = {"brian2": "import brian2; print(brian2.__version__)",
            "nest": "import nest; print(nest.__version__)"}[peer]
    try:
        out = subprocess.run([python_for(peer), "-c", code], capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, "PYNEST_QUIET": "1"})
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["import failed"])[-1]
        hint = f" (set {ENV[peer]} to a Python that has it)"
        return False, last[:160] + hint
    return True, out.stdout.strip().splitlines()[-1]


# -- parent side ----------------------------------------------------------------------------


def export_model(model, path) -> None:
    """The numbers a peer needs, from a constructed jaxfne Model (members leading)."""
    p = model.params
    members = int(np.asarray(p.a).shape[0])
    w = np.asarray(p.w, dtype=np.float64)
    if w.ndim == 2:                                        # shared connectivity
        w = np.broadcast_to(w, (members,) + w.shape)
    if model.layout.delay_steps != (1,):
        raise ValueError("peers: delayed (multi-class) weights are not supported")
    tau_e = -float(np.asarray(p.dt_ms)[0]) / np.log(np.asarray(p.decay_exc, np.float64))
    tau_i = -float(np.asarray(p.dt_ms)[0]) / np.log(np.asarray(p.decay_inh, np.float64))
    np.savez(path, a=np.asarray(p.a, np.float64), b=np.asarray(p.b, np.float64), c=np.asarray(p.c, np.float64),
             d=np.asarray(p.d, np.float64), is_exc=np.asarray(p.is_exc), w=w[:, :-1, :],
             i_mean=np.asarray(p.i_mean, np.float64),
             sigma=np.asarray(p.noise_scale, np.float64) * np.sqrt(np.asarray(p.dt_ms, np.float64))[:, None],
             tau_exc_ms=tau_e, tau_inh_ms=tau_i, dt_ms=round(float(np.asarray(p.dt_ms)[0]), 6),
             n_steps=int(model.layout.n_steps))


def run_peer(peer: str, model, *, threads: int | None = None, brian2_device: str = "cpp_standalone",
             timeout: float = 1800.0) -> dict:
    """Simulate ``model`` with ``peer`` in a subprocess; returns the measured numbers."""
    threads = threads or os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="jaxfne-peer-") as tmp:
        npz = Path(tmp) / "model.npz"
        export_model(model, npz)
        out = Path(tmp) / "result.json"
        cmd = [python_for(peer), os.path.abspath(__file__), "--peer", peer, "--npz", str(npz), "--out", str(out),
               "--threads", str(threads), "--workdir", tmp, "--brian2-device", brian2_device]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYNEST_QUIET": "1"})
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"{peer} failed: {tail[:300]}")
        return json.loads(out.read_text())


# -- child side: one peer, one model --------------------------------------------------------


def _synapses(data):
    """Global (pre, post, weight, pre is E) of the block-diagonal ensemble connectivity."""
    w = data["w"]                                     # (B, pre, post)
    members, n, _ = w.shape
    m, j, i = np.nonzero(w)
    return m * n + j, m * n + i, w[m, j, i], data["is_exc"][m, j]


def run_brian2(data, threads: int, workdir: str, device: str) -> dict:
    import brian2 as b2
    members, n = data["a"].shape
    dt = float(data["dt_ms"])
    n_steps = int(data["n_steps"])
    if device == "cpp_standalone":
        b2.set_device("cpp_standalone", directory=os.path.join(workdir, "b2"), build_on_run=False)
        b2.prefs.devices.cpp_standalone.openmp_threads = threads
    else:
        b2.prefs.codegen.target = "cython"
    b2.defaultclock.dt = dt * b2.ms
    eqs = """
    dv/dt = (0.04*v**2 + 5*v + 140 - u + i_mean + s_exc - s_inh)/ms + sigma*xi*ms**-0.5 : 1
    du/dt = a*(b*v - u)/ms : 1
    s_exc : 1
    s_inh : 1
    a : 1 (constant)
    b : 1 (constant)
    c : 1 (constant)
    d : 1 (constant)
    i_mean : 1 (constant)
    sigma : 1 (constant)
    decay_e : 1 (constant)
    decay_i : 1 (constant)
    """
    g = b2.NeuronGroup(members * n, eqs, threshold="v >= 30", reset="v = c; u += d", method="euler")
    for name in ("a", "b", "c", "d", "i_mean", "sigma"):
        setattr(g, name, data[name].reshape(-1))
    g.decay_e = np.repeat(np.exp(-dt / data["tau_exc_ms"]), n)
    g.decay_i = np.repeat(np.exp(-dt / data["tau_inh_ms"]), n)
    g.v = -65.0
    g.u = data["b"].reshape(-1) * -65.0
    # jaxfne order: state update from s(t), then s(t+1) = s(t) * decay + this step's increments
    g.run_regularly("s_exc = s_exc * decay_e\ns_inh = s_inh * decay_i", when="after_groups")
    pre, post, w, exc = _synapses(data)
    syn = []
    for mask, target in ((exc, "s_exc_post"), (~exc, "s_inh_post")):
        s = b2.Synapses(g, g, "w : 1 (constant)", on_pre=f"{target} += w")
        s.connect(i=pre[mask], j=post[mask])
        s.w = w[mask]
        syn.append(s)
    mon = b2.SpikeMonitor(g, record=False)
    net = b2.Network(g, *syn, mon)
    t = time.perf_counter()
    net.run(n_steps * dt * b2.ms)
    if device == "cpp_standalone":
        b2.device.build(directory=os.path.join(workdir, "b2"), compile=True, run=True)
        total = time.perf_counter() - t
        run_s = float(b2.device._last_run_time)
        build_s = total - run_s
    else:
        run_s = time.perf_counter() - t      # runtime mode: includes Cython compilation on a cold cache
        build_s = float("nan")
    return {"peer": f"brian2 {b2.__version__} {device}", "threads": threads, "run_s": run_s, "build_s": build_s,
            "spikes": int(mon.num_spikes), "synapses": int(len(w)), "n_steps": n_steps,
            "model": "identical equations (Euler, exponential current synapses)"}


def run_nest(data, threads: int, workdir: str) -> dict:
    import nest
    try:
        nest.set_verbosity("M_ERROR")
    except Exception:  # noqa: BLE001 - newer NEST: verbosity is a property
        pass
    nest.ResetKernel()
    members, n = data["a"].shape
    dt = float(data["dt_ms"])
    n_steps = int(data["n_steps"])
    nest.SetKernelStatus({"resolution": dt, "local_num_threads": threads, "print_time": False})
    cells = nest.Create("izhikevich", members * n)
    cells.set({"a": data["a"].reshape(-1), "b": data["b"].reshape(-1), "c": data["c"].reshape(-1),
               "d": data["d"].reshape(-1), "I_e": data["i_mean"].reshape(-1), "V_th": 30.0, "V_m": -65.0,
               "U_m": data["b"].reshape(-1) * -65.0, "consistent_integration": True})
    pre, post, w, exc = _synapses(data)
    tau = np.where(exc, np.repeat(data["tau_exc_ms"], n)[pre], np.repeat(data["tau_inh_ms"], n)[pre])
    weight = np.where(exc, 1.0, -1.0) * w * tau            # delta synapse with the same charge per spike
    t = time.perf_counter()
    ids = np.asarray(cells.tolist())
    nest.Connect(ids[pre], ids[post], "one_to_one", {"synapse_model": "static_synapse", "weight": weight,
                                                     "delay": np.full(len(w), dt)})
    # one generator per cell type level: each target gets its own noise; std is per current step
    sigma = data["sigma"].reshape(-1) / np.sqrt(dt)
    for level in np.unique(sigma):
        if level <= 0:
            continue
        gen = nest.Create("noise_generator", params={"mean": 0.0, "std": float(level), "dt": dt})
        targets = cells[np.flatnonzero(sigma == level).tolist()]
        nest.Connect(gen, targets, "all_to_all", {"delay": dt})
    rec = nest.Create("spike_recorder")
    nest.Connect(cells, rec)
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    nest.Simulate(n_steps * dt)
    run_s = time.perf_counter() - t
    return {"peer": f"nest {nest.__version__}", "threads": threads, "run_s": run_s, "build_s": build_s,
            "spikes": int(rec.get("n_events")), "synapses": int(len(w)), "n_steps": n_steps,
            "model": "closest built-in: izhikevich with delta synapses J = w*tau, noise_generator"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="print which peers are available")
    ap.add_argument("--peer", choices=PEERS)
    ap.add_argument("--npz")
    ap.add_argument("--out")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--workdir", default=tempfile.gettempdir())
    ap.add_argument("--brian2-device", default="cpp_standalone", choices=("cpp_standalone", "runtime"))
    args = ap.parse_args(argv)
    if args.check:
        for peer in PEERS:
            ok, why = available(peer)
            print(f"{peer:8s} {'available ' + why if ok else 'not available: ' + why}  ({python_for(peer)})")
        return 0
    data = dict(np.load(args.npz))
    if args.peer == "brian2":
        result = run_brian2(data, args.threads, args.workdir, args.brian2_device)
    else:
        result = run_nest(data, args.threads, args.workdir)
    Path(args.out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
