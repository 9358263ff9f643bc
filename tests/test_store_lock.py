"""One writer per store, under real races: processes started together or staggered on one store path.

Each contender is a real process that imports jaxfne and constructs its model, says it is ready, waits
for a "go" file and then runs the command line (``jaxfne run SPEC --store
PATH``). Releasing every "go" at once races them at the lock; releasing the
winner first and the rest once the test sees the lock held staggers them.
Every time exactly one process writes: it exits 0, the store it leaves is
complete and bit-identical to a lone run, and every other process exits 2
with the lock message naming the holder.
"""

import fcntl
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import xarray as xr

import jaxfne as jtfne
from conftest import jax_cache_env
from jaxfne.cli import load_spec
from jaxfne.sinks._store import StoreLock

SPEC = textwrap.dedent("""
    [runtime]
    seed = 1
    duration_ms = {duration}
    [column]
    layers = ["L2/3"]
    n = 60
    [drive]
    current = {{E = {drive}, I = 1.0}}
    [probes]
    names = ["SPK", "Vm"]
    neurons = 2
    [ensemble]
    seeds = [1, 2, 3, 4, 5, 6, 7, 8]
""")

CONTENDER = textwrap.dedent("""
    import os, sys, time
    import jaxfne as jtfne
    from jaxfne.cli import load_spec, main
    spec, store, ready, go = sys.argv[1:5]
    jtfne.construct(load_spec(spec))          # warm: the run after "go" reaches the lock in milliseconds
    open(ready, "w").close()
    while not os.path.exists(go):
        time.sleep(0.01)
    sys.exit(main(["run", spec, "--store", store, "--quiet", "--chunk-ms", "50"]))
""")


def lock_held(store) -> bool:
    lock = store.with_name(f".{store.name}.jaxfne-lock")
    if not lock.exists():
        return False
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0, os.SEEK_SET)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def race(tmp_path, specs, staggered):
    store = tmp_path / "run.zarr"
    # the run's compilation cache: after the first race, a winner loads its programs (-22 CPU-s a file)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", **jax_cache_env())
    procs = []
    for i, spec in enumerate(specs):
        ready, go = tmp_path / f"ready{i}", tmp_path / f"go{i}"
        procs.append((subprocess.Popen([sys.executable, "-c", CONTENDER, str(spec), str(store), str(ready), str(go)],
                                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), go))
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready{i}").exists() for i in range(len(specs))):
        assert time.monotonic() < deadline, "contenders did not start"
        time.sleep(0.02)
    if staggered:
        procs[0][1].touch()
        while not lock_held(store):
            assert time.monotonic() < deadline and procs[0][0].poll() is None, "the first run never took the lock"
            time.sleep(0.005)
        for _, go in procs[1:]:
            go.touch()
    else:
        for _, go in procs:
            go.touch()
    results = []
    for p, _ in procs:
        out, err = p.communicate(timeout=300)
        results.append((p.returncode, out, err))
    return store, results


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    d = tmp_path_factory.mktemp("specs")
    a, b = d / "a.toml", d / "b.toml"
    a.write_text(SPEC.format(duration=2000.0, drive=4.0))
    b.write_text(SPEC.format(duration=2000.0, drive=6.0))
    lone = {}
    for spec in (a, b):
        lone[spec] = jtfne.simulate(jtfne.construct(load_spec(spec)), store=d / f"{spec.stem}.zarr", chunk_ms=50.0)
    return a, b, lone


@pytest.mark.parametrize("case", [("same", 2, False), ("same", 3, True), ("different", 2, False),
                                  ("different", 3, True)], ids=lambda c: f"{c[0]}-{c[1]}-{'staggered' if c[2] else 'together'}")
def test_exactly_one_writer_wins(tmp_path, specs, case):
    a, b, lone = specs
    kind, n, staggered = case
    chosen = [a] * n if kind == "same" else [a, b, a][:n]
    store, results = race(tmp_path, chosen, staggered)
    winners = [i for i, (rc, _, _) in enumerate(results) if rc == 0]
    assert len(winners) == 1, [(rc, err[-300:]) for rc, _, err in results]
    if staggered:
        assert winners == [0]
    for i, (rc, out, err) in enumerate(results):
        if i in winners:
            assert "done: 8 member(s)" in out
        else:
            assert rc == 2, err[-1000:]
            assert "is being written by another process (host " in err and ", pid " in err, err[-1000:]
            assert "Traceback" not in err
    written = jtfne.open_signals(store)                       # complete (raises if not)
    xr.testing.assert_identical(written.dataset.load(), lone[chosen[winners[0]]].dataset.load())
    assert [p.name for p in tmp_path.iterdir() if "jaxfne-creating" in p.name or "jaxfne-deleting" in p.name] == []


def test_refusal_names_the_live_holder_not_an_empty_or_stale_identity(tmp_path):
    """The holder writes its identity just after taking the lock: a process refused in between finds the
    file empty, or naming an ended run (the race test once reported "holder unknown"). It reads again until
    the live holder's identity is there."""
    store = tmp_path / "run.zarr"
    lock = StoreLock(store, blocks=[], creator=True)
    stale = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                           text=True, check=True)
    dead_pid = int(stale.stdout)                              # a process that has ended
    lock.file.write_text(json.dumps({"host": socket.gethostname(), "pid": dead_pid, "since": "then"}))
    live = {"host": socket.gethostname(), "pid": os.getpid(), "since": "now"}
    writer = threading.Timer(0.2, lambda: lock.file.write_text(json.dumps(live)))
    writer.start()
    try:
        assert lock.holder() == f"host {live['host']}, pid {live['pid']}, since now"
    finally:
        writer.join()
    lock.file.write_text("")                                  # nobody ever writes: said so, after the wait
    assert lock.holder() == "holder unknown"


def test_a_finished_writer_leaves_no_identity(tmp_path):
    store = tmp_path / "run.zarr"
    with StoreLock(store, blocks=[0], creator=True) as lock:
        assert f"pid {os.getpid()}" in lock.holder()
    assert lock.file.read_text() == ""
