"""simulate(store=...): the Zarr layout, lazily backed Signals, refusals, failed writes, bounded memory."""

import errno
import json
import os
import subprocess
import sys
import textwrap
import time

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr

import jaxfne as jtfne
from conftest import seed_and_drive_ensemble
from jaxfne.sinks import _store
from jaxfne.sinks import _zarr as _stream
from jaxfne.model._construct import _construct_members

DT = 0.1


def ensemble_model(duration_ms=300.0, probes=("SPK", "Vm", "LFP-proxy"), n=100):
    base = (jtfne.Configuration().runtime(duration_ms=duration_ms, dt_ms=DT).column(layers=["L2/3", "L4"], n=n)
            .probes(list(probes)))
    return seed_and_drive_ensemble(base, [(1, 4.0), (2, 4.0), (1, 6.0)])


@pytest.fixture(scope="module")
def ens():
    model = ensemble_model()
    return model, jtfne.simulate(model, chunk_ms=50.0)


def test_store_signals_equal_in_memory_and_are_lazy(ens, tmp_path):
    model, memory = ens
    stored = jtfne.simulate(model, store=tmp_path / "run.zarr", chunk_ms=50.0)
    assert isinstance(stored, jtfne.Signals) and stored.is_ensemble
    assert all(isinstance(stored[p].data, da.Array) for p in stored)
    xr.testing.assert_identical(memory.dataset, stored.dataset.load())
    again = jtfne.open_signals(tmp_path / "run.zarr")
    xr.testing.assert_identical(stored.dataset, again.dataset)
    assert stored.dataset.sel(seed=2)["SPK"].shape == (3000, 100)     # member coordinates are indexed


def test_single_network_keeps_member_axis_on_disk_only(tmp_path):
    model = jtfne.construct(jtfne.Configuration().runtime(duration_ms=100.0, dt_ms=DT, seed=7).column(n=100))
    stored = jtfne.simulate(model, store=tmp_path / "one.zarr", chunk_ms=30.0)
    memory = jtfne.simulate(model, chunk_ms=30.0)
    xr.testing.assert_identical(memory.dataset, stored.dataset.load())
    assert "member" not in stored.dataset.dims and int(stored.dataset["seed"]) == 7
    root = zarr.open_group(tmp_path / "one.zarr", mode="r")
    assert "SPK" not in root                                           # spikes as events (schema 2)
    counts = root["spike_count"]                                       # bins of 50 steps (5 ms), 6 per chunk
    assert counts.shape == (1, 20, 100) and counts.metadata.dimension_names == ("member", "time_bin", "neuron")
    assert counts.chunks == (1, 6, 100) and counts.shards is None     # one member per block: no sharding
    assert root["spike_events/count"].shape == (1, 4) and root["spike_events/neuron"].shape == (1, 4, 300 * 100)


def test_layout_is_the_documented_schema(ens, tmp_path):
    model, memory = ens
    path = tmp_path / "run.zarr"
    jtfne.simulate(model, store=path, chunk_ms=50.0)
    root = zarr.open_group(path, mode="r")
    attrs = root.attrs
    assert attrs["jaxfne_schema"] == "jaxfne.store/3" and attrs["jaxfne_schema_version"] == 3
    assert attrs["config_hash"] == model.config.config_hash()
    assert jtfne.Configuration.from_dict(attrs["config"]) == model.config
    assert attrs["manifest"]["config_hash"] == model.config.config_hash()
    assert attrs["n_steps"] == 3000 and attrs["chunk_steps"] == 500 and attrs["member_block"] == 3
    assert attrs["member_coords"] == ["seed", "drive.current.E"] and attrs["spk_encoding"] == "events"
    assert attrs["spike_count_bin_steps"] == 50 and attrs["n_neurons"] == 100
    for name, last in (("Vm", "neuron"), ("LFP-proxy", "contact")):
        arr = root[name]
        assert arr.metadata.dimension_names == ("member", "time", last)
        n_last = 100 if last == "neuron" else 16
        assert arr.shape == (3, 3000, n_last)
        assert arr.shards is None and arr.chunks == (3, 500, n_last)   # 3 members fit one chunk: the write unit
        assert arr.attrs["units"]
    assert "SPK" not in root
    events = root["spike_events"]
    assert events["neuron"].dtype == np.uint16 and events["step_delta"].dtype == np.uint16
    assert events["count"].dtype == np.int32 and events["count"].shape == (3, 6)
    assert events["neuron"].metadata.dimension_names == ("member_block", "time_chunk", "event")
    assert events["neuron"].shape == (1, 6, 3 * 500 * 100) and events["neuron"].chunks == (1, 1, 3 * 500 * 100)
    assert type(events["neuron"].compressors[0]).__name__ == "BloscCodec"
    assert root["spike_count"].dtype == np.uint8 and root["spike_count"].shape == (3, 60, 100)
    assert int(events["count"][...].sum()) == int(np.asarray(memory["SPK"]).sum())
    assert type(root["Vm"].compressors[0]).__name__ == "BloscCodec"
    np.testing.assert_array_equal(root["seed"][:], [1, 2, 1])
    np.testing.assert_array_equal(root["drive.current.E"][:], [4.0, 4.0, 6.0])
    np.testing.assert_array_equal(root["time"][:], np.arange(3000) * DT)
    assert root["cell_type"].metadata.dimension_names == ("member", "neuron")
    ckpt = root["checkpoint"]
    fields = ckpt["state"].attrs["fields"]             # [[name, per-member shape, dtype], ...]
    assert [f[0] for f in fields[:4]] == ["v", "u", "s_exc", "s_inh"] and fields[0][1:] == [[100], "<f4"]
    assert ckpt["state"].shape == (2, 3, sum(4 * int(np.prod(shape)) for _, shape, _ in fields))
    assert max(ckpt["completed_steps"][0]) == 3000
    # spikes are ~1% of steps: the stored events and counts are far smaller than one byte per step
    spk_bytes = sum(f.stat().st_size for name in ("spike_events", "spike_count")
                    for f in (path / name).rglob("*") if f.is_file())
    assert spk_bytes < 3 * 3000 * 100 / 20


def test_xarray_opens_the_store_without_jaxfne(ens, tmp_path):
    model, memory = ens
    path = tmp_path / "run.zarr"
    jtfne.simulate(model, store=path, chunk_ms=50.0)
    code = textwrap.dedent(f"""
        import json, sys, warnings
        warnings.simplefilter("error")
        import xarray as xr
        ds = xr.open_zarr({str(path)!r})
        assert not any(m.startswith("jaxfne") for m in sys.modules)
        print(json.dumps({{"dims": {{k: list(ds[k].dims) for k in ds.variables}},
                          "coords": sorted(ds.coords), "data": sorted(ds.data_vars),
                          "spikes": int(ds["spike_count"].sum()), "seed": ds["seed"].values.tolist(),
                          "cell_type": ds["cell_type"].values[0, :3].tolist()}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout)
    assert got["data"] == ["LFP-proxy", "Vm", "spike_count"]          # spikes: counts here, events in a group
    assert {"time", "neuron", "layer", "cell_type", "depth_um", "member", "seed", "drive.current.E", "contact",
            "contact_depth_um"} <= set(got["coords"])
    assert got["dims"]["spike_count"] == ["member", "time_bin", "neuron"] and got["dims"]["LFP-proxy"][2] == "contact"
    assert got["spikes"] == int(np.asarray(memory["SPK"]).sum())
    assert got["seed"] == [1, 2, 1] and got["cell_type"] == ["E", "E", "E"]


def file_state(path):
    return {str(p.relative_to(path)): (p.stat().st_mtime_ns, p.read_bytes()) for p in path.rglob("*") if p.is_file()}


def test_complete_run_is_not_recomputed(ens, tmp_path, monkeypatch):
    model, _ = ens
    path = tmp_path / "run.zarr"
    jtfne.simulate(model, store=path, chunk_ms=50.0)
    before = file_state(path)

    def no_compute(*args, **kwargs):
        raise AssertionError("a complete store was recomputed")

    monkeypatch.setattr("jaxfne.engine._driver.run_chunks", no_compute)
    again = jtfne.simulate(model, store=path, chunk_ms=50.0)
    assert again.dataset.sizes["time"] == 3000
    assert file_state(path) == before


def test_other_configuration_is_refused_unless_overwrite(ens, tmp_path):
    model, _ = ens
    path = tmp_path / "run.zarr"
    jtfne.simulate(model, store=path, chunk_ms=50.0)
    other = jtfne.construct(jtfne.Configuration().runtime(duration_ms=100.0, dt_ms=DT).column(n=100))
    with pytest.raises(jtfne.StoreError, match=r"run\.zarr'\): the store holds a different run \(the configuration "
                                               r"differs \(configuration hash\).*overwrite=True"):
        jtfne.simulate(other, store=path)
    assert jtfne.open_signals(path).dataset.sizes["member"] == 3        # untouched
    replaced = jtfne.simulate(other, store=path, overwrite=True)
    xr.testing.assert_identical(replaced.dataset.load(), jtfne.simulate(other).dataset)


def test_ensemble_with_other_members_is_refused(ens, tmp_path):
    model, _ = ens
    path = tmp_path / "run.zarr"
    jtfne.simulate(model, store=path, chunk_ms=50.0)
    base = model.config
    swapped = _construct_members(base, [base.runtime(seed=s) for s in (5, 6, 7)], {"seed": np.array([5, 6, 7])},
                                 ensemble=True)
    with pytest.raises(jtfne.StoreError, match="members .* differ"):
        jtfne.simulate(swapped, store=path, chunk_ms=50.0)


def test_foreign_paths_are_refused(tmp_path, ens):
    model, _ = ens
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "important.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(jtfne.StoreError, match=r"notes' is a non-empty folder that is not a Zarr store"):
            jtfne.simulate(model, store=folder, overwrite=overwrite)
    assert (folder / "important.txt").read_text() == "keep me"
    afile = tmp_path / "file.zarr"
    afile.write_text("x")
    with pytest.raises(jtfne.StoreError, match="is a file, not a folder"):
        jtfne.simulate(model, store=afile)
    other = tmp_path / "other.zarr"
    zarr.open_group(other, mode="w").create_array("x", shape=(3,), dtype="i4")
    with pytest.raises(jtfne.StoreError, match="jaxfne did not write"):
        jtfne.simulate(model, store=other, overwrite=True)
    with pytest.raises(jtfne.StoreError, match="store=3 is invalid"):
        jtfne.simulate(model, store=3)
    with pytest.raises(jtfne.StoreError, match="does not exist"):
        jtfne.open_signals(tmp_path / "missing.zarr")


def failing_set(fail_key, exc):
    """A LocalStore.set that raises ``exc`` for the key ``fail_key`` (an injected disk failure)."""
    original = zarr.storage.LocalStore.set

    async def set_(self, key, value):
        if key == fail_key:
            raise exc
        return await original(self, key, value)
    return set_


@pytest.mark.parametrize("exc", [OSError(errno.ENOSPC, "No space left on device"),
                                 PermissionError(errno.EACCES, "Permission denied")], ids=["disk-full", "read-only"])
def test_failed_write_names_store_and_chunk_and_keeps_earlier_chunks(ens, tmp_path, monkeypatch, exc):
    model, memory = ens
    path = tmp_path / "run.zarr"
    monkeypatch.setattr(zarr.storage.LocalStore, "set", failing_set("Vm/c/0/3/0", exc))   # chunk 3 of Vm
    with pytest.raises(jtfne.StoreError, match=rf"store '{path}': writing chunk 3 \(steps 1500-2000\) of probe "
                                               rf"'Vm' failed \({type(exc).__name__}: .*{exc.strerror}.*the chunks "
                                               r"before it \(1500 steps\) are complete and readable"):
        jtfne.simulate(model, store=path, chunk_ms=50.0)
    monkeypatch.undo()
    with pytest.raises(jtfne.StoreError, match=r"is unfinished \(1500 of 3000 steps complete\)"):
        jtfne.open_signals(path)
    partial = jtfne.open_signals(path, allow_incomplete=True)
    want = memory.dataset.isel(time=slice(0, 1500)).drop_vars("state_finite")   # known at the end only
    xr.testing.assert_identical(partial.dataset.load(), want)
    resumed = jtfne.simulate(model, store=path, chunk_ms=50.0)        # the same call finishes the run
    xr.testing.assert_identical(resumed.dataset.load(), memory.dataset)


def test_unfinished_store_is_not_resumed_with_other_chunking(ens, tmp_path, monkeypatch):
    model, _ = ens
    path = tmp_path / "run.zarr"
    monkeypatch.setattr(zarr.storage.LocalStore, "set", failing_set("spike_events/count/c/0/2", OSError(errno.EIO, "I/O error")))
    with pytest.raises(jtfne.StoreError, match="writing chunk 2"):
        jtfne.simulate(model, store=path, chunk_ms=50.0)
    monkeypatch.undo()
    with pytest.raises(jtfne.StoreError, match=r"chunk_steps=300 differs from the store's chunk_steps=500; call "
                                               r"again with chunk_ms=50"):
        jtfne.simulate(model, store=path, chunk_ms=30.0)


def test_inner_chunks_hold_several_members_of_one_block(tmp_path, monkeypatch):
    assert [_store.inner_members(b) for b in (1, 3, 7, 16, 17, 20, 1024)] == [1, 3, 7, 16, 17, 20, 256]
    assert _store.inner_members(1024, 2**20) == 4 and _store.inner_members(3, 10**7) == 1   # at most 4 MiB
    monkeypatch.setattr(_store, "INNER_MEMBERS", 16)           # 20 members: inner chunks of 10, sharded
    model = jtfne.construct(jtfne.Configuration().runtime(duration_ms=20.0, dt_ms=DT).column(n=20)
                            .probes(["SPK", "Vm"], neurons=2).ensemble(seeds=list(range(20))))
    path = tmp_path / "twenty.zarr"
    stored = jtfne.simulate(model, store=path, chunk_ms=10.0)
    counts = zarr.open_group(path, mode="r")["spike_count"]
    assert counts.chunks == (10, 2, 20) and counts.shards == (20, 2, 20)  # inner chunk: 10 members
    assert stored["SPK"].data.chunks[0] == (10, 10)                       # one Dask block per inner chunk
    xr.testing.assert_identical(stored.dataset.load(), jtfne.simulate(model, chunk_ms=10.0).dataset)


def test_member_blocks_are_separate_objects(ens, tmp_path):
    model, memory = ens
    path = tmp_path / "blocks.zarr"
    stored = jtfne.Signals(_stream.simulate_to_store(model, path, 500, member_block=1))
    xr.testing.assert_identical(memory.dataset, stored.dataset.load())
    root = zarr.open_group(path, mode="r")
    assert root.attrs["member_block"] == 1 and root["checkpoint/completed_steps"].shape == (3, 2)
    for name in ("spike_count", "spike_events/neuron", "spike_events/step_delta", "Vm"):          # one folder per block
        assert sorted(p.name for p in (path / name / "c").iterdir()) == ["0", "1", "2"]


def test_slow_disk_applies_back_pressure(ens, tmp_path, monkeypatch):
    """The driver hands chunk k+1 over only when chunk k is stored, however slow the disk is."""
    model, memory = ens
    import jaxfne.engine._driver as sim
    produced, written, ahead = [0], [0], []
    real_run_chunks, real_write = sim.run_chunks, _store.Store.write_chunk

    def counting_run_chunks(*args, **kwargs):
        for item in real_run_chunks(*args, **kwargs):
            produced[0] += 1
            ahead.append(produced[0] - written[0])
            yield item

    def slow_write(self, *args, **kwargs):
        time.sleep(0.05)
        real_write(self, *args, **kwargs)
        written[0] += 1

    monkeypatch.setattr(sim, "run_chunks", counting_run_chunks)
    monkeypatch.setattr(_store.Store, "write_chunk", slow_write)
    stored = jtfne.simulate(model, store=tmp_path / "slow.zarr", chunk_ms=10.0)      # 30 chunks
    assert produced[0] == written[0] == 30
    assert _stream.QUEUE_CHUNKS == 0 and max(ahead) == 1
    xr.testing.assert_identical(memory.dataset, stored.dataset.load())


def test_progress_is_reported(ens, tmp_path, capsys):
    model, _ = ens
    jtfne.simulate(model, store=tmp_path / "p.zarr", chunk_ms=100.0, progress=True)
    err = capsys.readouterr().err
    assert "jaxfne -> p.zarr" in err and "300/300 ms | 3 members" in err and err.endswith("\n")
    first, last = err.split("\r")[1], err.split("\r")[-1]
    assert "- neuron-steps/s | ETA - s" in first                  # nothing measured yet: no made-up numbers
    assert "nan" not in err and "ETA 0 s" in last and "e+" in last.split("|")[2]


MEMORY_CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    import jaxfne as jtfne
    from jaxfne.model._construct import _construct_members
    duration_ms, store = float(sys.argv[1]), sys.argv[2]
    base = (jtfne.Configuration().runtime(duration_ms=duration_ms, dt_ms=0.5).column(n=400)
            .probes(["SPK", "Vm"]))
    model = _construct_members(base, [base.runtime(seed=s) for s in (1, 2)], {"seed": np.array([1, 2])},
                               ensemble=True)
    jtfne.simulate(model, chunk_ms=200.0, store=None if store == "-" else store)
    # VmHWM, not getrusage: ru_maxrss survives exec and could be the parent's (pytest's) peak
    print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")))
""")


def peak_rss_kb(duration_ms, store):
    out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(duration_ms), str(store)], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.split()[-1])


def test_peak_memory_does_not_grow_with_duration(tmp_path):
    """2 members x 400 neurons, SPK + Vm: 20 s of outputs are 160 MB, yet the streamed 20 s run peaks
    within 10% of the 2 s run (peak RSS of a child process). The control: in memory, it grows."""
    short = peak_rss_kb(2_000.0, tmp_path / "short.zarr")
    long = peak_rss_kb(20_000.0, tmp_path / "long.zarr")
    assert long <= 1.10 * short, (short, long)
    assert zarr.open_group(tmp_path / "long.zarr", mode="r")["Vm"].shape == (2, 40_000, 400)
    in_memory = peak_rss_kb(20_000.0, "-")
    assert in_memory > 1.25 * short, (short, in_memory)      # the test can see growth


TWO_CHUNKS_CHILD = textwrap.dedent("""
    import sys, threading, time
    import numpy as np, psutil
    import jaxfne as jtfne
    from jaxfne.sinks import _store
    _store.SPK_ENCODING = sys.argv[2]          # "bool": the store keeps the raster, so the chunks carry it
    cfg = (jtfne.Configuration().runtime(seed=1, duration_ms=400.0, dt_ms=0.1).column(n=100)
           .probes(["SPK", "Vm"], neurons=5).ensemble(seeds=list(range(1024))))
    model = jtfne.construct(cfg)
    jtfne.simulate(model, duration_ms=50.0, store=sys.argv[1] + "/warm.zarr", chunk_ms=50.0)   # compile, warm up
    proc, peak, done = psutil.Process(), [0], [False]
    def sample():
        while not done[0]:
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.002)
    base = proc.memory_info().rss
    thread = threading.Thread(target=sample)
    thread.start()
    jtfne.simulate(model, store=sys.argv[1] + "/run.zarr", chunk_ms=50.0)
    done[0] = True
    thread.join()
    params = sum(np.asarray(x).nbytes for x in model.params)
    print(peak[0] - base, params)
""")


def test_streaming_holds_about_two_chunks(tmp_path):
    """Issue 6: peak host memory at most about twice one chunk's outputs plus the model. 1024 members,
    SPK + Vm of 10 cells, 50-ms chunks (68 MiB of outputs each): the streamed 400-ms run (8 chunks) may
    grow the warmed-up process by 2 chunks + the parameters (put on the device) + 64 MiB of working
    memory (zarr's encode buffers, allocator). With the pipeline before 51d3668 restored (a queue of
    two chunks, the yielded chunk's device buffers held) this fails at +336 MiB; now ~+210 MiB. That the
    driver never runs more than one chunk ahead of a slow writer is test_slow_disk_applies_back_pressure.
    One device, as a plain CPU process has (with several, gathering the shards adds a host copy of the
    chunk: measured +281 MiB with 4 forced devices, docs/store.md). Run with a store that keeps the
    raster, so each chunk carries it: the default store takes the spikes as events that the native kernel
    writes, without a raster, and its growth (measured +66 to +152 MiB in five runs, the same allocator
    noise on a chunk of 21 MiB) is too noisy to bound by its chunks."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-c", TWO_CHUNKS_CHILD, str(tmp_path), "bool"], capture_output=True,
                         text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    growth, params = (int(x) for x in out.stdout.split()[-2:])
    chunk = 1024 * 500 * (100 + 10 * 4)
    assert growth <= 2 * chunk + params + 64 * 2**20, (growth / 2**20, chunk / 2**20, params / 2**20)
    assert growth >= chunk, growth / 2**20                 # the measurement sees at least the chunk in flight


def test_devices_reach_the_driver(ens, tmp_path):
    import jax
    model, memory = ens
    stored = jtfne.simulate(model, store=tmp_path / "two.zarr", chunk_ms=50.0, devices=jax.devices()[:2])
    xr.testing.assert_identical(memory.dataset, stored.dataset.load())


def test_blocks_must_match_what_the_driver_yields(ens, tmp_path):
    model, _ = ens
    with pytest.raises(jtfne.StoreError, match=r"the driver returned 3 members per chunk, but this process writes "
                                               r"member-blocks \[1\] \(1 members\)"):
        _stream.simulate_to_store(model, tmp_path / "b.zarr", 500, member_block=1, blocks=[1])


def test_sampled_probes_stream_resume_and_open(tmp_path, monkeypatch):
    """Vm and LFP sampled every 0.5 ms for 5 of each type (time_sampled, neuron_sampled dims)."""
    from scipy.signal import welch

    from jaxfne import analysis
    cfg = (jtfne.Configuration().runtime(duration_ms=230.0, dt_ms=DT).column(n=100)
           .probes(["SPK", "Vm", "LFP-proxy"], every_ms=0.5, neurons=5).ensemble(seeds=[1, 2]))
    model = jtfne.construct(cfg)
    memory = jtfne.simulate(model, chunk_ms=50.0)
    path = tmp_path / "sampled.zarr"
    monkeypatch.setattr(zarr.storage.LocalStore, "set", failing_set("spike_events/count/c/0/3", OSError(errno.EIO, "I/O")))
    with pytest.raises(jtfne.StoreError, match="writing chunk 3"):
        jtfne.simulate(model, store=path, chunk_ms=50.0)
    monkeypatch.undo()
    partial = jtfne.open_signals(path, allow_incomplete=True)      # 1500 steps = 300 samples
    want = memory.dataset.isel(time=slice(0, 1500), time_sampled=slice(0, 300)).drop_vars("state_finite")
    xr.testing.assert_identical(partial.dataset.load(), want)
    stored = jtfne.simulate(model, store=path, chunk_ms=50.0)
    xr.testing.assert_identical(memory.dataset, stored.dataset.load())
    spec = analysis.lfp_spectrum(stored, nperseg=64).compute()      # sampled at 2 kHz
    f, psd = welch(np.asarray(memory["LFP-proxy"]).astype(np.float64), fs=2000.0, nperseg=64, axis=1)
    np.testing.assert_allclose(spec["frequency"].values, f)
    np.testing.assert_allclose(spec.values, np.moveaxis(psd, 1, 2), rtol=1e-9, atol=1e-12 * psd.max())
