"""The native kernel writes each chunk's spikes as events (issue 14): the same buffers as compacting its raster.

References: ``compact_spikes`` (XLA ``nonzero`` of the kernel's own raster: the buffers, bit for bit, the
unused slots and an overflow's true count included), ``np.nonzero`` of the raster (the events), a store
written with the host's compaction of the raster (every stored array and the opened signals), and the
in-memory raster binned by numpy (the stored dense counts). Models: delay classes, array, Poisson and
trials stimuli, several chunks; a runaway member for the overflow path.
"""

import jax
import numpy as np
import pytest
import xarray as xr
import zarr

import jaxfne as jtfne
from jaxfne.model import precision
from jaxfne.engine import _driver, _native, run_chunks
from jaxfne.engine._chunk import chunk_function, compact_spikes, events_from_buffers, events_from_raster
from jaxfne.engine._mesh import initial_states, member_mesh
from jaxfne.sinks import _store, _zarr
from conftest import needs_native

pytestmark = needs_native


def stimulated_config(duration_ms=30.0, seeds=(0, 1, 2)):
    """Two delay classes, an array, a Poisson and a trials stimulus, float32, 40 neurons."""
    return (jtfne.Configuration().runtime(seed=1, duration_ms=duration_ms, dt_ms=0.1).column(n=40)
            .cell_types({"E": 0.75, "I": 0.25}).connectivity(pathways={"L2/3.E->L2/3.I": {"delay_ms": 1.5}})
            .set_emitter(family="izhikevich", preset="cortical_eig")
            .stimulus("course", kind="array", values=np.linspace(-2.0, 8.0, 25), sample_ms=1.3, onset_ms=2.0,
                      cell_type="E")
            .stimulus("poisson", kind="poisson", rate_hz=40.0, n_sources=25, weight=1.5, onset_ms=8.0)
            .stimulus("kick", kind="trials", amplitude=20.0, onsets_ms=[3.0, 17.2], duration_ms=1.0)
            .probes(["SPK", "Vm"], neurons=[0, 5, 39]).ensemble(seeds=list(seeds)))


def runaway_model():
    """The second member fires in most steps (a huge drive); the others modestly or not at all."""
    cfg = (jtfne.Configuration().runtime(duration_ms=25.0, dt_ms=0.1).column(n=24).cell_types({"E": 1.0})
           .probes(["SPK", "Vm"]).ensemble(sweep={"drive.current.E": [6.0, 80.0, 2.0]}))
    return jtfne.construct(cfg)


def assert_events_equal(got, want):
    np.testing.assert_array_equal(got.counts, want.counts)
    for name in ("neuron", "step"):
        assert getattr(got, name).dtype == getattr(want, name).dtype
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name))


@pytest.mark.parametrize("capacity", [4096, 3])
def test_kernel_buffers_equal_compacting_its_raster_chunk_by_chunk(capacity):
    """Four chunks of 37 steps (delays and stimuli carried over): the kernel's buffers are compact_spikes of
    its own raster, bit for bit (capacity 3: every busy member overflows, its true count still given); the
    run without the raster gives the same buffers and state; the events are np.nonzero's."""
    model = jtfne.construct(stimulated_config())
    layout, steps = model.layout, 37
    kw = dict(n_steps=steps, delay_steps=layout.delay_steps, shared_w=layout.shared_weights, threads=2,
              modes={"spikes": "full"}, sample_index=tuple(range(layout.n)), sample_stride=1,
              event_capacity=capacity)
    with_raster = jax.jit(lambda st, p, t0: _native.native_chunk(st, p, t0, **kw))
    without = jax.jit(lambda st, p, t0: _native.native_chunk(st, p, t0, spike_raster=False, **kw))
    plain = jax.jit(lambda st, p, t0: _native.native_chunk(st, p, t0, **{**kw, "event_capacity": 0}))
    with precision(layout.dtype):
        state = initial_states(layout)(model.params)
        overflowed = 0
        for k in range(4):
            t0 = np.int32(k * steps)
            new, raw = with_raster(jax.tree_util.tree_map(np.array, state), model.params, t0)
            alone, raw_alone = without(jax.tree_util.tree_map(np.array, state), model.params, t0)
            ref_state, ref_raw = plain(jax.tree_util.tree_map(np.array, state), model.params, t0)
            raster = np.asarray(raw["spikes"])
            np.testing.assert_array_equal(raster, np.asarray(ref_raw["spikes"]))     # events change nothing
            assert raw_alone["spikes"].shape == (3, 0, layout.n)
            want = {key: np.asarray(v) for key, v in compact_spikes(raster, capacity).items()}
            for got in (raw["events"], raw_alone["events"]):
                for key in ("neuron", "step", "count"):
                    got_k = np.asarray(got[key])
                    assert got_k.dtype == want[key].dtype and got_k.shape == want[key].shape
                    np.testing.assert_array_equal(got_k, want[key])
            for a, b, c in zip(new, alone, ref_state):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
                np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
            np.testing.assert_array_equal(want["count"], raster.sum(axis=(1, 2)))
            if (want["count"] <= capacity).all():
                assert_events_equal(events_from_buffers(want, capacity, steps), events_from_raster(raster))
            overflowed += int((want["count"] > capacity).sum())
            state = new
    assert raster.sum() > 0
    assert (overflowed > 0) == (capacity == 3)


def test_kernel_events_with_int32_steps():
    """A chunk longer than 65536 steps: the step indices are int32, as compact_spikes makes them."""
    cfg = (jtfne.Configuration().runtime(duration_ms=7000.0, dt_ms=0.1).column(n=4).cell_types({"E": 1.0})
           .probes(["SPK"]).ensemble(seeds=[0]))
    model = jtfne.construct(cfg)
    layout, steps = model.layout, 70000
    kw = dict(n_steps=steps, delay_steps=layout.delay_steps, shared_w=layout.shared_weights, threads=1,
              modes={"spikes": "full"}, sample_index=tuple(range(layout.n)), sample_stride=1)
    with precision(layout.dtype):
        state = initial_states(layout)(model.params)
        _, raw = jax.jit(lambda st, p: _native.native_chunk(st, p, 0, event_capacity=8192, **kw))(
            jax.tree_util.tree_map(np.array, state), model.params)
        raster = np.asarray(raw["spikes"])
    want = {key: np.asarray(v) for key, v in compact_spikes(raster, 8192).items()}
    assert want["step"].dtype == np.int32 and raw["events"]["step"].dtype == np.int32
    assert 0 < want["count"][0] <= 8192 and want["step"][0].max() > 65536
    for key in want:
        np.testing.assert_array_equal(np.asarray(raw["events"][key]), want[key])


def test_overflow_without_a_raster_loses_no_spike():
    """8 slots for a runaway member and no raster at all: the chunk is computed again with room for every
    spike, and the events are np.nonzero of the raster of a run that kept it."""
    model = runaway_model()
    ref = list(run_chunks(model, 100, engine="native", events="host"))
    taker = []
    original = _driver._EventTaker.take

    def take(self, *args):
        taker.append(self)
        return original(self, *args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_driver._EventTaker, "take", take)
        got = list(run_chunks(model, 100, engine="native", events="device", event_capacity=8, spike_raster=False))
    assert [c.n_steps for c in got] == [100, 100, 50]
    assert taker[0].redone >= 1 and taker[0].capacity > 8
    for c, r in zip(got, ref):
        assert "SPK" not in c.outputs
        assert_events_equal(c.events, r.events)
        assert_events_equal(c.events, events_from_raster(r.outputs["SPK"], c.n_steps, 100))
        np.testing.assert_array_equal(c.outputs["Vm"], r.outputs["Vm"])
    assert got[0].events.counts[1] > 8 * 20                              # the runaway overflowed by far


def open_arrays(path):
    group = zarr.open_group(path, mode="r")
    return {name: np.asarray(group[name][...]) for name in
            ("spike_events/neuron", "spike_events/step_delta", "spike_events/count", "spike_count")}


def test_store_with_kernel_events_is_the_store_with_host_events(tmp_path, monkeypatch):
    """Streamed with the kernel's events (auto on the native engine: no raster made or copied) and with the
    host's compaction of the raster: the opened signals and every stored spike array are identical, and
    the dense counts are the in-memory raster binned by numpy."""
    model = jtfne.construct(stimulated_config(duration_ms=32.0))
    seen = []
    put = _zarr.ZarrSink.put

    def spy(self, chunk):
        seen.append(("SPK" in chunk.outputs, chunk.events is not None))
        return put(self, chunk)

    monkeypatch.setattr(_zarr.ZarrSink, "put", spy)
    kernel = jtfne.simulate(model, engine="native", chunk_ms=10.0, store=tmp_path / "kernel.zarr")
    assert seen and all(s == (False, True) for s in seen)                # events only, from the kernel
    seen.clear()
    monkeypatch.setattr(_driver, "SINK_EVENTS", "host")
    host = jtfne.simulate(model, engine="native", chunk_ms=10.0, store=tmp_path / "host.zarr")
    assert seen and all(s == (True, True) for s in seen)
    xr.testing.assert_identical(kernel.dataset.load(), host.dataset.load())
    a, b = open_arrays(tmp_path / "kernel.zarr"), open_arrays(tmp_path / "host.zarr")
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    memory = jtfne.simulate(model, engine="native", chunk_ms=10.0).dataset
    raster = np.asarray(memory["SPK"].transpose("member", "time", "neuron").values)
    bin_steps = int(zarr.open_group(tmp_path / "kernel.zarr", mode="r").attrs["spike_count_bin_steps"])
    t = raster.shape[1]
    padded = np.zeros((raster.shape[0], -(-t // bin_steps) * bin_steps, raster.shape[2]), np.int64)
    padded[:, :t] = raster
    binned = padded.reshape(raster.shape[0], -1, bin_steps, raster.shape[2]).sum(axis=2)
    np.testing.assert_array_equal(a["spike_count"].astype(np.int64), binned)
    assert binned.sum() == int(a["spike_events/count"].sum()) > 0
    xr.testing.assert_identical(kernel.dataset["SPK"].load(), memory["SPK"])


def test_sink_reads_the_raster_only_when_the_store_keeps_it(tmp_path, monkeypatch):
    """A store that keeps the dense raster too ("events+bool") still gets it, with the kernel's events."""
    model = jtfne.construct(stimulated_config(duration_ms=12.0, seeds=(0,)))
    monkeypatch.setattr(_store, "SPK_ENCODING", "events+bool")
    both = jtfne.simulate(model, engine="native", chunk_ms=6.0, store=tmp_path / "both.zarr")
    memory = jtfne.simulate(model, engine="native", chunk_ms=6.0)
    stored = np.asarray(zarr.open_group(tmp_path / "both.zarr", mode="r")["SPK"][...])
    np.testing.assert_array_equal(stored, np.asarray(memory.dataset["SPK"].transpose("member", "time",
                                                                                     "neuron").values))
    xr.testing.assert_identical(both.dataset.load(), memory.dataset)


def test_the_raster_is_left_out_only_with_the_kernels_events():
    model = runaway_model()
    with pytest.raises(jtfne.SimulationError, match=r"event_capacity=0, spike_raster=False is invalid"):
        _native.native_chunk(None, None, 0, n_steps=1, delay_steps=(), shared_w=True, modes={"spikes": "full"},
                             sample_index=(), sample_stride=1, threads=1, spike_raster=False)
    with pytest.raises(jtfne.SimulationError, match=r"spike_raster=False is invalid with engine='xla'"):
        chunk_function(model.layout, 100, member_mesh(), "xla", event_capacity=8, spike_raster=False)
