"""Kill-and-resume: a run SIGKILLed at a random moment and started again ends bit-identical to an
uninterrupted one; a torn progress marker falls back to the chunk before it."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

import jaxfne as jtfne
from jaxfne.sinks import _store
from jaxfne.model._construct import _construct_members

CHUNK_MS = 20.0
DURATION_MS = 1000.0           # 50 chunks of 200 steps


def make_model():
    base = (jtfne.Configuration().runtime(duration_ms=DURATION_MS, dt_ms=0.1).column(layers=["L2/3", "L4"], n=100)
            .probes(["SPK", "Vm", "LFP-proxy"]))
    grid = [(11, 4.0), (12, 5.0), (13, 6.0)]
    members = [base.runtime(seed=s).drive(current={"E": c}) for s, c in grid]
    return _construct_members(base, members, {"seed": np.array([s for s, _ in grid]),
                                              "drive.current.E": np.array([c for _, c in grid])}, ensemble=True)


CHILD = textwrap.dedent(f"""
    import sys
    sys.path.insert(0, {str(Path(__file__).parent)!r})
    import jaxfne as jtfne
    from test_resume import CHUNK_MS, make_model
    jtfne.simulate(make_model(), store=sys.argv[1], chunk_ms=CHUNK_MS)
""")


def files(path: Path) -> dict:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def completed(path: Path) -> int:
    try:
        return _store.Store(path, mode="r").completed_all()
    except jtfne.StoreError:  # not created yet
        return 0


def assert_same_store(got: Path, want: Path) -> None:
    a, b = files(got), files(want)
    assert sorted(a) == sorted(b)
    different = [k for k in a if a[k] != b[k]]
    assert not different, different[:10]
    ga, gb = zarr.open_group(got, mode="r"), zarr.open_group(want, mode="r")
    for name, arr in gb.arrays():
        np.testing.assert_array_equal(ga[name][...], arr[...])
    for name, arr in gb["checkpoint"].arrays():
        np.testing.assert_array_equal(ga["checkpoint"][name][...], arr[...])
    assert dict(ga.attrs) == dict(gb.attrs)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("reference") / "run.zarr"
    jtfne.simulate(make_model(), store=path, chunk_ms=CHUNK_MS)
    return path


def kill_at_random(path: Path, rng: random.Random, latest: int) -> int:
    """Run the call in a child and SIGKILL it at a random moment: once it has completed a random
    number of new chunks (at least one, at most up to step ``latest``), plus a random part of a
    chunk's time. Returns the steps completed at the kill."""
    n_steps, chunk = int(DURATION_MS / 0.1), int(CHUNK_MS / 0.1)
    before = completed(path)
    target = rng.randrange(before + chunk, latest + 1, chunk)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while completed(path) < target:
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the child completed no chunk in 120 s"
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.03))
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    done = completed(path)
    assert before < done < n_steps, (before, target, done)
    return done


def test_sigkill_at_random_then_resume_is_bit_identical(reference, tmp_path):
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    path = tmp_path / "run.zarr"
    first = kill_at_random(path, rng, latest=4000)
    assert first % 200 == 0 and 0 < first < 10_000, (seed, first)
    kept = {k: v for k, v in files(path).items()
            if k.startswith("spike_events/count/c/") and int(k.split("/")[4]) < first // 200}
    second = kill_at_random(path, rng, latest=8000)     # the same call again, killed again
    assert second > first, (seed, first, second)
    signals = jtfne.simulate(make_model(), store=path, chunk_ms=CHUNK_MS)   # and again: it finishes
    assert signals.dataset.sizes["time"] == 10_000
    now = files(path)
    assert all(now[k] == v for k, v in kept.items())      # chunks completed before the kill stayed
    assert not list(path.rglob("*.partial"))
    assert_same_store(path, reference)
    print(f"kill seed {seed}: killed after {first} and {second} of 10000 steps")


def test_torn_progress_marker_falls_back_to_the_chunk_before(reference, tmp_path):
    import shutil
    path = tmp_path / "run.zarr"
    shutil.copytree(reference, path)
    marker = zarr.open_group(path, mode="r")["checkpoint/completed_steps"]
    newest = int(np.argmax(marker[0]))
    (path / "checkpoint" / "completed_steps" / "c" / "0" / str(newest)).write_bytes(b"")   # torn write
    assert completed(path) == 9800
    jtfne.simulate(make_model(), store=path, chunk_ms=CHUNK_MS)
    assert_same_store(path, reference)


def test_leftovers_of_killed_creation_and_deletion_are_cleaned(reference, tmp_path):
    import shutil
    path = tmp_path / "run.zarr"
    for suffix in (_store.CREATING, _store.DELETING):
        leftover = tmp_path / ("run.zarr" + suffix)
        (leftover / "SPK").mkdir(parents=True)
        (leftover / "zarr.json").write_text("{")                   # half written
    shutil.copytree(reference, path)
    jtfne.simulate(make_model(), store=path, chunk_ms=CHUNK_MS)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["run.zarr"]
