"""Spikes as events (issue 14): compacted on the device or from the host raster, exactly the raster's spikes.

The events of every chunk are compared with ``np.nonzero`` of the dense raster of the same run (an
independent transcription), on both engines, with the device's buffer sized by default and with a
buffer far too small for a runaway member (its drive makes it fire in most steps): the driver must
compute that chunk again with a larger buffer and drop nothing.
"""

import numpy as np
import pytest

import jaxfne as jtfne
from jaxfne.engine import _driver, run_chunks
from jaxfne.engine._chunk import ChunkEvents, events_from_raster
from jaxfne.sinks._events import RunEvents
from jaxfne.sinks._stored_events import StoredEvents
from conftest import needs_native

CHUNK_STEPS = 100


def make_model(n=24, duration_ms=25.0, drives=(6.0, 80.0, 2.0)):
    """An ensemble whose second member is a runaway (a huge drive: ~17 spikes per step at first)."""
    cfg = (jtfne.Configuration().runtime(duration_ms=duration_ms, dt_ms=0.1).column(n=n).cell_types({"E": 1.0})
           .probes(["SPK", "Vm"]).ensemble(sweep={"drive.current.E": list(drives)}))
    return jtfne.construct(cfg)


@pytest.fixture(scope="module")
def model():
    return make_model()


def reference(raster: np.ndarray) -> ChunkEvents:
    """The events of a raster (members, T, N) by np.nonzero: sorted by member, step, neuron."""
    m, t, n = np.nonzero(raster)
    return ChunkEvents(np.bincount(m, minlength=raster.shape[0]), n, t)


def assert_events_equal(got: ChunkEvents, want: ChunkEvents):
    np.testing.assert_array_equal(got.counts, want.counts)
    np.testing.assert_array_equal(got.neuron.astype(np.int64), want.neuron)
    np.testing.assert_array_equal(got.step.astype(np.int64), want.step)


@pytest.mark.parametrize("engine", ["xla", pytest.param("native", marks=needs_native)])
def test_device_events_equal_the_raster_with_an_overflow_redone(model, engine, monkeypatch):
    calls = []
    original = _driver._EventTaker.take

    def take(self, *args):
        out = original(self, *args)
        calls.append((self.capacity, self.redone))
        return out

    monkeypatch.setattr(_driver._EventTaker, "take", take)
    got = list(run_chunks(model, CHUNK_STEPS, engine=engine, events="device", event_capacity=8))
    assert [c.n_steps for c in got] == [100, 100, 50]                  # the last chunk trimmed to the run
    for c in got:
        assert c.events.neuron.dtype == np.uint16 and c.events.step.dtype == np.uint16
        assert_events_equal(c.events, reference(c.outputs["SPK"]))
    counts = np.stack([c.events.counts for c in got])
    assert counts[0, 1] > 8 * 20 and counts[1, 1] > 8 * 20              # the runaway overflows 8 slots by far
    assert 0 < counts[:, 0].sum() < 8 * 3 * 10                          # a modest member (and member 2: none)
    assert calls[0][1] == 1                                             # the first chunk was computed again
    assert calls[-1][0] >= counts[:, 1].max()                           # the grown buffer was kept


@pytest.mark.parametrize("engine", ["xla", pytest.param("native", marks=needs_native)])
def test_host_and_default_device_events_equal_the_raster(model, engine):
    for mode in ("host", "device"):
        for c in run_chunks(model, CHUNK_STEPS, engine=engine, events=mode):
            assert_events_equal(c.events, reference(c.outputs["SPK"]))


def test_events_from_raster_odd_shapes():
    rng = np.random.default_rng(5)
    for shape in [(3, 7, 5), (2, 16, 8), (1, 1, 1), (0, 4, 4), (4, 33, 3)]:
        raster = rng.random(shape) < 0.2
        assert_events_equal(events_from_raster(raster), reference(raster))
        if shape[1] > 2:
            assert_events_equal(events_from_raster(raster, 2), reference(raster[:, :2]))


def test_step_deltas_round_trip():
    from jaxfne.sinks._store import step_deltas, steps_from_deltas

    rng = np.random.default_rng(7)
    for counts in ([0, 3, 0, 5, 1, 0], [4], [0, 0], [], [2, 0, 0, 7]):
        counts = np.asarray(counts, dtype=np.int64)
        step = np.concatenate([np.sort(rng.integers(0, 500, c)) for c in counts] or [np.zeros(0)]).astype(np.uint16)
        delta = step_deltas(counts, step)
        # a numpy transcription: np.diff within each member, its first event from 0
        want = np.concatenate([np.diff(p.astype(np.int64), prepend=0)
                               for p in np.split(step, np.cumsum(counts)[:-1])] or [np.zeros(0)])
        assert delta.dtype == np.uint16
        np.testing.assert_array_equal(delta, want)
        np.testing.assert_array_equal(steps_from_deltas(counts, delta), step.astype(np.int64))


def test_no_events_unless_asked(model):
    assert all(c.events is None for c in run_chunks(model, CHUNK_STEPS))


def raster_events(signals, member=None):
    """Signals.spike_events as the raster says (the reference: np.nonzero of the dense raster)."""
    net = signals if member is None else signals.isel(member=member)
    spk = net["SPK"].transpose("time", "neuron")
    t, n = np.nonzero(np.asarray(spk.values))
    return np.asarray(spk["time"].values)[t], np.asarray(spk["neuron"].values)[n], t


def assert_signal_events(signals, member=None, base_step=0):
    got = signals.spike_events(member=member)
    times, neurons, steps = raster_events(signals, member)
    np.testing.assert_array_equal(got.times_ms, times)
    np.testing.assert_array_equal(got.neurons, neurons)
    np.testing.assert_array_equal(got.steps, steps + base_step)
    assert got.times_ms.dtype == np.float64 and got.neurons.dtype == np.int64 and got.steps.dtype == np.int64


def test_memory_signals_read_events_not_the_raster(model):
    signals = jtfne.simulate(model, chunk_ms=CHUNK_STEPS * 0.1, engine="xla")
    assert isinstance(signals.events, RunEvents)
    for m in range(3):
        assert_signal_events(signals, m)
    # a window of time and a selection of neurons: the events of those only, labelled as the raster
    part = signals.sel(time=slice(3.0, 17.0)).isel(neuron=[1, 4, 5, 20])
    for m in range(3):
        assert_signal_events(part, m, base_step=30)
    # the events are what is read: with the raster blanked, the same answer; they travel as the Signals'
    # own field (a Dataset without the encoding's copy), through sel and isel, to the members selected
    ev = signals.spike_events(member=1)
    ds = signals.dataset.assign(SPK=signals["SPK"] & False)
    ds.encoding = {}
    blank = jtfne.Signals(ds, events=signals.events)
    assert jtfne.Signals(ds).events is None
    again = blank.spike_events(member=1)
    assert ev.steps.size > 100 and not blank["SPK"].values.any()
    np.testing.assert_array_equal(again.steps, ev.steps)
    np.testing.assert_array_equal(again.neurons, ev.neurons)
    picked = blank.isel(member=[2, 1]).sel(time=slice(3.0, 17.0))
    assert picked.events is signals.events
    want = signals.sel(time=slice(3.0, 17.0)).spike_events(member=1)
    got = picked.spike_events(member=1)
    np.testing.assert_array_equal(got.steps, want.steps)
    np.testing.assert_array_equal(got.neurons, want.neurons)
    assert blank.sel({"drive.current.E": 80.0}).spike_events().steps.size == ev.steps.size
    with pytest.raises(jtfne.ReadoutError, match="events="):
        jtfne.Signals(ds, events=np.zeros(3))


# -- the store (schema 2): events, counts, and the raster rebuilt from them ---------------------------------


def test_store_keeps_events_and_counts_equal_to_the_raster(model, tmp_path):
    import zarr

    from jaxfne.sinks import _zarr

    memory = jtfne.simulate(model, chunk_ms=CHUNK_STEPS * 0.1, engine="xla")
    path = tmp_path / "run.zarr"
    # member-blocks of 2: the runaway shares a block (and its CSR rows) with member 0; member 2 is alone
    stored = jtfne.Signals(_zarr.simulate_to_store(model, path, CHUNK_STEPS, member_block=2, engine="xla"))
    assert isinstance(jtfne.open_signals(path).events, StoredEvents)
    raster = np.asarray(memory["SPK"])
    np.testing.assert_array_equal(np.asarray(stored["SPK"]), raster)        # rebuilt lazily from events
    for m in range(3):
        assert_signal_events(stored, m)
        assert_signal_events(stored.sel(time=slice(5.0, 21.0)), m, base_step=50)
    root = zarr.open_group(path, mode="r")
    assert "SPK" not in root and root.attrs["spk_encoding"] == "events" and root.attrs["jaxfne_schema_version"] == 3
    assert "step" not in root["spike_events"]
    # zarr alone (docs/store.md): member 1's events, chunk by chunk, from the counts' offsets; its steps
    # are the cumulative sum of its step differences
    ev, steps, neurons = root["spike_events"], [], []
    for k in range(3):
        counts = ev["count"][0:2, k]
        delta = ev["step_delta"][0, k, counts[0]:counts[0] + counts[1]]
        steps.append(np.cumsum(delta, dtype=np.int64) + k * CHUNK_STEPS)
        neurons.append(ev["neuron"][0, k, counts[0]:counts[0] + counts[1]])
    t, n = np.nonzero(raster[1])
    np.testing.assert_array_equal(np.concatenate(steps), t)
    np.testing.assert_array_equal(np.concatenate(neurons), n)
    # the stored differences, whole rows, against np.diff of the raster's events member by member
    for k in range(3):
        m, t, _ = np.nonzero(raster[0:2, k * CHUNK_STEPS:(k + 1) * CHUNK_STEPS])
        want = np.concatenate([np.diff(t[m == i], prepend=0) for i in range(2)])
        np.testing.assert_array_equal(ev["step_delta"][0, k, :t.size], want)
    # dense counts in 5-ms bins (50 steps): the raster summed per bin, by numpy
    counts = root["spike_count"]
    assert counts.attrs["bin_steps"] == 50 and counts.dtype == np.uint8
    np.testing.assert_array_equal(counts[...], raster.reshape(3, 5, 50, 24).sum(axis=2))
    np.testing.assert_array_equal(root["time_bin"][...], np.arange(5) * 5.0)
    assert jtfne.verify_store(path).intact


def test_damaged_counts_and_events_are_reported(model, tmp_path):
    path = tmp_path / "run.zarr"
    jtfne.simulate(model, store=path, chunk_ms=CHUNK_STEPS * 0.1, engine="xla")
    for name, chunk in (("spike_count", (0, 1, 0)), ("spike_events/step_delta", (0, 2, 0))):
        file = path / name / "c" / "/".join(map(str, chunk))
        data = bytearray(file.read_bytes())
        data[len(data) // 2] ^= 0x10
        file.write_bytes(bytes(data))
        report = jtfne.verify_store(path)
        assert (name, chunk, str(file)) in [(d.array, d.chunk, d.file) for d in report.damaged], str(report)
    with pytest.raises(jtfne.StoreError, match=r"array 'spike_events/step_delta', chunk \(0, 2, 0\) is damaged"):
        jtfne.open_signals(path)["SPK"].values


def test_schema_1_stores_give_events_from_their_raster():
    from pathlib import Path
    old = jtfne.open_signals(Path(__file__).parent / "data" / "stores_before_layers" / "complete.zarr")
    for m in range(old.dataset.sizes["member"]):
        assert_signal_events(old, m)


def test_analysis_reads_stored_counts_and_equals_the_raster(model, tmp_path, monkeypatch):
    import xarray as xr

    from jaxfne import analysis
    from jaxfne.sinks import _stored_events

    memory = jtfne.simulate(model, chunk_ms=CHUNK_STEPS * 0.1, engine="xla")
    stored = jtfne.simulate(model, store=tmp_path / "run.zarr", chunk_ms=CHUNK_STEPS * 0.1, engine="xla")
    calls = [
        (analysis.firing_rate, {}), (analysis.firing_rate, {"by": "neuron"}),
        (analysis.firing_rate, {"time_window_ms": (5.0, 20.0)}), (analysis.firing_rate, {"time_window_ms": (5.0, 25.0)}),
        (analysis.fano_factor, {"bin_ms": 5.0}), (analysis.fano_factor, {"bin_ms": 10.0, "by": None}),
        (analysis.synchrony, {"bin_ms": 10.0}), (analysis.population_rate, {"bin_ms": 5.0}),
    ]
    with monkeypatch.context() as mp:              # the counts are what is read: never the raster
        def no_raster(self, key):
            raise AssertionError("the raster was read")
        mp.setattr(_stored_events.EventRaster, "__getitem__", no_raster)
        got = [fn(stored, **kw).compute() for fn, kw in calls]
    for (fn, kw), value in zip(calls, got):
        xr.testing.assert_identical(value, fn(memory, **kw).compute())     # integer sums: exactly equal
    assert float(got[0].sum()) > 0
    # bins that the stored 5-ms bins do not tile: read from the raster, the same numbers
    xr.testing.assert_identical(analysis.fano_factor(stored, bin_ms=3.0).compute(),
                                analysis.fano_factor(memory, bin_ms=3.0).compute())
