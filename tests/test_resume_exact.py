"""Resuming starts exactly at the first incomplete chunk, and the finished store is bit-identical.

Deterministic companion of tests/test_resume.py (which kills a child at random moments, so a resume
that recomputes one chunk too many goes unnoticed whenever the checkpoint slots still hold the state
before it): a write failure is injected into chunk k (its probe data, its state checkpoint or its
progress marker), the same call is made again, and the driver's chunks are counted on the resume
(``jaxfne.engine._driver.run_chunks`` wrapped, as tests/test_store.py does). It must start at step
k * chunk_steps, compute and write chunks k .. n-1 once each, leave the files of chunks 0 .. k-1
alone, and end equal to an uninterrupted run (in memory and as a store, file for file).
"""

import errno

import numpy as np
import pytest
import xarray as xr
import zarr

import jaxfne as jtfne
import jaxfne.engine._driver as driver
from jaxfne.sinks import _store
from test_resume import assert_same_store, files

CHUNK_MS = 10.0
CHUNK_STEPS = 100
N_CHUNKS = 6                                   # 60 ms at 0.1 ms


def make_model():
    cfg = (jtfne.Configuration().runtime(duration_ms=N_CHUNKS * CHUNK_MS, dt_ms=0.1).column(n=40)
           .probes(["SPK", "Vm"]).ensemble(seeds=[3, 4]))
    return jtfne.construct(cfg)


@pytest.fixture(scope="module")
def model():
    return make_model()


@pytest.fixture(scope="module")
def references(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("reference") / "run.zarr"
    jtfne.simulate(model, store=path, chunk_ms=CHUNK_MS)
    return jtfne.simulate(model, chunk_ms=CHUNK_MS), path


def failing_write(what: str, k: int):
    """(zarr key, which write of it) of chunk k (2 members: one member-block, one inner chunk, no shards).

    The probe data has a key per chunk; the state checkpoint and the progress marker alternate between
    two slots, so chunk k writes slot k % 2 for the (k // 2 + 1)-th time."""
    return {"data": (f"spike_events/count/c/0/{k}", 1),
            "state": (f"checkpoint/state/c/{k % 2}/0/0", k // 2 + 1),
            "marker": (f"checkpoint/completed_steps/c/0/{k % 2}", k // 2 + 1)}[what]


def failing_set(fail_key, nth, exc):
    """A LocalStore.set that raises ``exc`` on the ``nth`` write of ``fail_key`` (an injected disk failure)."""
    original = zarr.storage.LocalStore.set
    count = [0]

    async def set_(self, key, value):
        if key == fail_key:
            count[0] += 1
            if count[0] == nth:
                raise exc
        return await original(self, key, value)
    return set_


@pytest.mark.parametrize("k", [1, 2, 3, N_CHUNKS - 1])
@pytest.mark.parametrize("what", ["data", "state", "marker"])
def test_resume_starts_at_the_first_incomplete_chunk(model, references, tmp_path, monkeypatch, what, k):
    memory, reference_store = references
    assert model.n_members == 2 and model.layout.n_steps == N_CHUNKS * CHUNK_STEPS
    path = tmp_path / "run.zarr"
    with monkeypatch.context() as mp:
        mp.setattr(zarr.storage.LocalStore, "set", failing_set(*failing_write(what, k), OSError(errno.EIO, "I/O")))
        with pytest.raises(jtfne.StoreError, match=rf"writing chunk {k} \(steps {k * CHUNK_STEPS}-"):
            jtfne.simulate(model, store=path, chunk_ms=CHUNK_MS)
    partial = jtfne.open_signals(path, allow_incomplete=True)
    assert partial.dataset.sizes["time"] == k * CHUNK_STEPS             # chunks 0 .. k-1 are complete
    kept = {name: data for name, data in files(path).items()
            if name.startswith("spike_events/count/c/") and int(name.split("/")[4]) < k}
    assert len(kept) == k

    starts, computed, written = [], [], []
    real_run_chunks, real_write = driver.run_chunks, _store.Store.write_chunk

    def counting_run_chunks(*args, **kwargs):
        starts.append(kwargs.get("start_step", 0))
        for chunk in real_run_chunks(*args, **kwargs):
            computed.append(chunk.t0)
            yield chunk

    def counting_write(self, block, t0, arrays):
        written.append(t0)
        return real_write(self, block, t0, arrays)

    monkeypatch.setattr(driver, "run_chunks", counting_run_chunks)
    monkeypatch.setattr(_store.Store, "write_chunk", counting_write)
    resumed = jtfne.simulate(model, store=path, chunk_ms=CHUNK_MS)
    monkeypatch.undo()

    first = k * CHUNK_STEPS
    want = list(range(first, N_CHUNKS * CHUNK_STEPS, CHUNK_STEPS))
    assert starts == [first]
    assert computed == want, f"resumed at step {computed[:1]}, the first incomplete chunk starts at {first}"
    assert written == want
    xr.testing.assert_identical(resumed.dataset.load(), memory.dataset)
    now = files(path)
    assert all(now[name] == data for name, data in kept.items())       # chunks before k were not rewritten
    assert_same_store(path, reference_store)


def test_finished_store_computes_nothing(model, references, tmp_path, monkeypatch):
    _, reference_store = references
    import shutil
    path = tmp_path / "run.zarr"
    shutil.copytree(reference_store, path)
    calls = []
    real_run_chunks = driver.run_chunks

    def counting_run_chunks(*args, **kwargs):
        calls.append(kwargs.get("start_step", 0))
        yield from real_run_chunks(*args, **kwargs)

    monkeypatch.setattr(driver, "run_chunks", counting_run_chunks)
    again = jtfne.simulate(model, store=path, chunk_ms=CHUNK_MS)
    assert calls == [] and again.dataset.sizes["time"] == N_CHUNKS * CHUNK_STEPS
    np.testing.assert_array_equal(np.asarray(again["SPK"]), np.asarray(jtfne.open_signals(reference_store)["SPK"]))
