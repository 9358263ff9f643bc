"""to_neo and to_nwb: what is written reads back with neo and pynwb, spike for spike."""

import json

import numpy as np
import pytest

import jaxfne as jtfne
from jaxfne.export import to_neo, to_nwb, to_sonata

neo = pytest.importorskip("neo")
pq = pytest.importorskip("quantities")


@pytest.fixture(scope="module")
def net():
    cfg = (jtfne.Configuration().runtime(seed=7, duration_ms=150.0).column(name="c", layers=["L2/3", "L4"], n=30)
           .cell_types({"E": 0.8, "I": 0.2}).probes(["SPK", "Vm"]))
    return jtfne.simulate(jtfne.construct(cfg))


@pytest.fixture(scope="module")
def ensemble():
    cfg = (jtfne.Configuration().runtime(duration_ms=100.0).column(n=20).probes(["SPK"])
           .ensemble(seeds=[1, 2], sweep={"cell_types.E": [0.7, 0.9]}))
    return jtfne.simulate(jtfne.construct(cfg))


def expected_trains(sig):
    """neuron -> spike times (ms), straight from the boolean raster."""
    spk = np.asarray(sig["SPK"].transpose("time", "neuron").values)
    t = sig.dataset["time"].values
    return {n: t[np.flatnonzero(spk[:, n])] for n in range(spk.shape[1])}


def check_block(block, sig, *, vm=True):
    assert len(block.segments) == 1
    trains = block.segments[0].spiketrains
    want = expected_trains(sig)
    assert len(trains) == len(want)
    assert sum(len(st) for st in trains) == int(np.asarray(sig["SPK"]).sum()) > 0
    cell_type = sig["SPK"]["cell_type"].values
    layer = sig["SPK"]["layer"].values
    for st in trains:
        n = st.annotations["neuron"]
        assert np.allclose(st.rescale(pq.ms).magnitude, want[n])
        assert float(st.t_stop.rescale(pq.ms)) == pytest.approx(sig.duration_ms)
        assert float(st.t_start) == 0.0
        assert st.annotations["cell_type"] == cell_type[n]
        assert st.annotations["layer"] == layer[n]
    if vm:
        (asig,) = block.segments[0].analogsignals
        assert asig.units == pq.mV
        assert float(asig.sampling_period.rescale(pq.ms)) == pytest.approx(sig.dt_ms)
        assert np.allclose(asig.magnitude, sig["Vm"].transpose("time", "neuron").values)
        assert list(asig.array_annotations["cell_type"]) == list(cell_type)


def test_to_neo_block(net):
    block = to_neo(net)
    check_block(block, net)
    st = block.segments[0].spiketrains[0]
    assert st.units == pq.ms
    assert st.annotations["depth_um"] == pytest.approx(float(net["SPK"]["depth_um"].values[0]))
    assert set(net["SPK"]["layer"].values) == {"L2/3", "L4"}
    assert block.annotations["scope_status"] == "computational_scaffold"
    assert block.annotations["config_hash"] == net.attrs["config_hash"]
    assert block.annotations["member_seed"] == 7
    assert len(to_neo(net, vm=False).segments[0].analogsignals) == 0


def test_to_neo_round_trip_through_a_neo_file(net, tmp_path):
    path = tmp_path / "net.pkl"
    neo.io.PickleIO(str(path)).write_block(to_neo(net))
    check_block(neo.io.PickleIO(str(path)).read_block(), net)


def test_to_neo_member_of_an_ensemble(ensemble):
    with pytest.raises(jtfne.ReadoutError, match="to_neo: these signals hold an ensemble of 4 members"):
        to_neo(ensemble)
    block = to_neo(ensemble, member=3)
    one = ensemble.isel(member=3)
    check_block(block, one, vm=False)
    assert block.annotations["member_seed"] == 2
    assert block.annotations["member_cell_types.E"] == pytest.approx(0.9)
    assert [st.annotations["cell_type"] for st in block.segments[0].spiketrains].count("E") == 18


def test_to_nwb_reads_back_with_pynwb_and_neo(net, tmp_path):
    pynwb = pytest.importorskip("pynwb")
    path = to_nwb(net, path=tmp_path / "net.nwb")
    assert path.exists()
    want = expected_trains(net)
    with pynwb.NWBHDF5IO(str(path), mode="r") as io:
        nwb = io.read()
        units = nwb.units.to_dataframe()
        assert list(units.index) == list(range(30))
        for n, row in units.iterrows():
            assert np.allclose(np.asarray(row["spike_times"]), want[n] / 1000.0)   # seconds
            assert row["cell_type"] == net["SPK"]["cell_type"].values[n]
            assert row["layer"] == net["SPK"]["layer"].values[n]
            assert row["depth_um"] == pytest.approx(float(net["SPK"]["depth_um"].values[n]))
        vm = nwb.acquisition["Vm"]
        assert vm.unit == "volts" and vm.conversion == pytest.approx(1e-3)
        assert vm.rate == pytest.approx(1000.0 / net.dt_ms)
        assert np.allclose(vm.data[:], net["Vm"].transpose("time", "neuron").values)
        assert '"scope_status": "computational_scaffold"' in nwb.notes
    blocks = neo.io.NWBIO(str(path), mode="r").read_all_blocks()
    trains = [st for b in blocks for seg in b.segments for st in seg.spiketrains]
    assert len(trains) == 30
    got = sorted(np.round(np.concatenate([st.rescale(pq.ms).magnitude for st in trains]), 6))
    assert got == sorted(np.round(np.concatenate(list(want.values())), 6))


def test_to_nwb_refuses_to_overwrite_and_selects_members(net, ensemble, tmp_path):
    pynwb = pytest.importorskip("pynwb")
    path = to_nwb(net, path=tmp_path / "a.nwb", vm=False)
    with pytest.raises(jtfne.ReadoutError, match="exists; pass overwrite=True"):
        to_nwb(net, path=path)
    with pytest.raises(jtfne.ReadoutError, match="to_nwb: these signals hold an ensemble"):
        to_nwb(ensemble, path=tmp_path / "b.nwb")
    to_nwb(ensemble, member=1, path=path, overwrite=True)
    want = expected_trains(ensemble.isel(member=1))
    with pynwb.NWBHDF5IO(str(path), mode="r") as io:
        nwb = io.read()
        assert "Vm" not in nwb.acquisition
        spikes = nwb.units.to_dataframe()["spike_times"]
        assert all(np.allclose(np.asarray(spikes[n]), want[n] / 1000.0) for n in want)
        frac = float(ensemble.dataset["cell_types.E"].values[1])
        assert f'"cell_types.E": {frac}' in nwb.notes and '"seed": 2' in nwb.notes


# ---- every float probe, as recorded: subsets of neurons, coarser sampling, members, stores ----------------------

REGISTRY = jtfne.PROBES_REGISTRY
FLOAT_PROBES = [name for name, p in REGISTRY.items() if p.dtype == "float"]   # Vm, u, source, LFP-proxy, CSD-proxy
#: probes(neurons=..., every_ms=...): all neurons or a subset (a list, or k per type per layer); every step or coarser
SAMPLINGS = {"all-step": (None, None), "list-step": ([1, 4, 17, 26], None), "all-every": (None, 0.5),
             "per-type-every": (2, 0.3)}


def sampled_config(neurons, every_ms, seed=7):
    return (jtfne.Configuration().runtime(seed=seed, duration_ms=20.0).column(name="c", layers=["L2/3", "L4"], n=30)
            .cell_types({"E": 0.8, "I": 0.2}).probes(FLOAT_PROBES, contacts=5, neurons=neurons, every_ms=every_ms))


@pytest.fixture(scope="module", params=list(SAMPLINGS))
def recorded(request, tmp_path_factory):
    """{(network, where): (signals, member)} for one sampling: a single network and member 1 of a two-member
    ensemble, each in memory and on a store reopened with open_signals."""
    neurons, every_ms = SAMPLINGS[request.param]
    tmp = tmp_path_factory.mktemp(request.param)
    out = {}
    for net, cfg, member in [("single", sampled_config(neurons, every_ms), None),
                             ("member", sampled_config(neurons, every_ms).ensemble(seeds=[3, 4]), 1)]:
        model = jtfne.construct(cfg)
        out[net, "memory"] = jtfne.simulate(model), member
        jtfne.simulate(model, store=tmp / f"{net}.zarr", chunk_ms=6.0)
        out[net, "store"] = jtfne.open_signals(tmp / f"{net}.zarr"), member
    out["sampling"] = request.param
    return out


def expected_probe(sig, name):
    """(values (time, channel), times ms, channel dim, channel ids, channel coords) of one network's probe."""
    da = sig[name]
    time_dim, chan_dim = da.dims
    assert time_dim.startswith("time") and chan_dim.startswith(("neuron", "contact"))
    chan_coords = {k: np.asarray(c.values) for k, c in da.coords.items() if c.dims == (chan_dim,)}
    return (np.asarray(da.values), np.asarray(da[time_dim].values, dtype=float), chan_dim.split("_")[0],
            np.asarray(da[chan_dim].values), chan_coords)


def check_sampling(sig, neurons, every_ms):
    """The signals really hold what the sampling says (so the export tests test it)."""
    for name in FLOAT_PROBES:
        _, times, channel, ids, _ = expected_probe(sig, name)
        assert times[1] - times[0] == pytest.approx(every_ms or sig.dt_ms)
        if channel == "neuron" and isinstance(neurons, list):
            assert list(ids) == neurons
        elif channel == "neuron" and neurons is None:
            assert list(ids) == list(range(30))
        elif channel == "neuron":                 # k cells of each type in each layer
            assert 0 < len(ids) < 30


def check_neo_signals(block, sig, *, read_back=False):
    asigs = {a.name: a for a in block.segments[0].analogsignals}
    assert sorted(asigs) == sorted(FLOAT_PROBES)
    for name in FLOAT_PROBES:
        values, times, channel, ids, coords = expected_probe(sig, name)
        asig = asigs[name]
        np.testing.assert_array_equal(asig.magnitude, values)
        np.testing.assert_allclose(asig.times.rescale(pq.ms).magnitude, times, rtol=0, atol=1e-9)
        assert float(asig.sampling_period.rescale(pq.ms)) == pytest.approx(times[1] - times[0])
        np.testing.assert_array_equal(asig.array_annotations[channel], ids)
        for key, vals in coords.items():      # cell_type_sampled -> cell_type, layer, depth_um, contact_depth_um, ...
            got = asig.array_annotations[key.replace("_sampled", "")]
            assert list(got) == list(vals) if vals.dtype.kind in "USO" else np.allclose(got, vals)
        p = REGISTRY[name]
        assert asig.annotations["units_label"] == p.units and p.description in asig.description
        assert asig.annotations["space"] == p.space
        assert asig.units == (pq.mV if p.units == "mV" else pq.dimensionless)
        if p.is_field:       # contact-space probes are labelled as proxies
            assert asig.annotations["proxy"] is True and asig.description.startswith("PROXY")
        assert asig.annotations["proxy"] == (p.is_field or "proxy" in p.units)


def check_nwb_file(path, sig):
    pynwb = pytest.importorskip("pynwb")
    with pynwb.NWBHDF5IO(str(path), mode="r") as io:
        nwb = io.read()
        assert sorted(nwb.acquisition) == sorted(FLOAT_PROBES)
        for name in FLOAT_PROBES:
            values, times, channel, ids, coords = expected_probe(sig, name)
            ts = nwb.acquisition[name]
            np.testing.assert_array_equal(ts.data[:], values)
            assert ts.rate == pytest.approx(1000.0 / (times[1] - times[0]))
            assert ts.starting_time == pytest.approx(times[0] / 1000.0)
            np.testing.assert_allclose(ts.get_timestamps(), times / 1000.0, rtol=0, atol=1e-12)
            p = REGISTRY[name]
            if p.units == "mV":
                assert ts.unit == "volts" and ts.conversion == pytest.approx(1e-3)
            else:
                assert ts.unit == p.units and ts.conversion == 1.0
            meta = json.loads(ts.description)
            assert meta[channel] == ids.tolist() and meta["probe"] == name and meta["units"] == p.units
            assert meta["sampling_interval_ms"] == pytest.approx(times[1] - times[0])
            assert meta["proxy"] == (p.is_field or "proxy" in p.units)
            if p.is_field:
                assert meta["description"].startswith("PROXY")
            table = nwb.processing["jaxfne"][f"{name}_channels"].to_dataframe()
            assert list(table.index) == ids.tolist() and list(table[channel]) == ids.tolist()
            for key, vals in coords.items():
                col = table[key.replace("_sampled", "")]
                assert list(col) == list(vals) if vals.dtype.kind in "USO" else np.allclose(col, vals)
    blocks = neo.io.NWBIO(str(path), mode="r").read_all_blocks()
    asigs = {a.name: a for b in blocks for seg in b.segments for a in seg.analogsignals}
    assert sorted(asigs) == sorted(FLOAT_PROBES)
    for name in FLOAT_PROBES:
        values, times, channel, ids, _ = expected_probe(sig, name)
        asig = asigs[name]
        np.testing.assert_array_equal(asig.magnitude, values)
        np.testing.assert_allclose(asig.times.rescale(pq.ms).magnitude, times, rtol=0, atol=1e-6)
        assert asig.annotations["notes"][channel] == ids.tolist()
    assert (asigs["Vm"].units if "Vm" in asigs else pq.mV) == pq.mV


@pytest.mark.parametrize("where", ["memory", "store"])
@pytest.mark.parametrize("network", ["single", "member"])
def test_every_probe_as_recorded_round_trips(recorded, network, where, tmp_path):
    signals, member = recorded[network, where]
    one = signals if member is None else signals.isel(member=member)
    check_sampling(one, *SAMPLINGS[recorded["sampling"]])
    block = to_neo(signals, member=member)
    check_neo_signals(block, one)
    check_block(block, one, vm=False)                            # spikes: as before, spike for spike
    path = tmp_path / "net.pkl"
    neo.io.PickleIO(str(path)).write_block(block)
    check_neo_signals(neo.io.PickleIO(str(path)).read_block(), one)
    nwb = to_nwb(signals, member=member, path=tmp_path / "net.nwb")
    check_nwb_file(nwb, one)


@pytest.fixture(scope="module")
def every_probe():
    return jtfne.simulate(jtfne.construct(sampled_config(2, 0.3)))


def test_choose_probes_and_refuse_bad_input(every_probe, ensemble, tmp_path):
    single = every_probe
    names = lambda block: [a.name for a in block.segments[0].analogsignals]   # noqa: E731
    assert names(to_neo(single, probes=["u", "LFP-proxy"])) == ["u", "LFP-proxy"]
    assert names(to_neo(single, probes="source")) == ["source"]
    assert names(to_neo(single, probes=["SPK"])) == []
    assert "Vm" not in names(to_neo(single, vm=False))
    for fn, kw in [(to_neo, {}), (to_nwb, {"path": tmp_path / "x.nwb"})]:
        where = fn.__name__
        with pytest.raises(jtfne.ReadoutError, match=rf"{where}: probes=\['Vm', 'LFP'\] is invalid; 'LFP' is "
                                                     r"not a probe; probes are SPK, Vm"):
            fn(single, probes=["Vm", "LFP"], **kw)
        with pytest.raises(jtfne.ReadoutError, match=rf"{where}: probes=3 is invalid"):
            fn(single, probes=3, **kw)
        with pytest.raises(jtfne.ReadoutError, match=rf"{where}: member=4 is invalid; an index 0..3 is required"):
            fn(ensemble, member=4, **kw)
        with pytest.raises(jtfne.ReadoutError, match=rf"{where}: member=-1 is invalid"):
            fn(ensemble, member=-1, **kw)
        with pytest.raises(jtfne.ReadoutError, match=rf"{where}: member='1' is invalid"):
            fn(ensemble, member="1", **kw)
        with pytest.raises(jtfne.ReadoutError, match=rf"{where}: member=0 is invalid; these signals hold one"):
            fn(single, member=0, **kw)
        with pytest.raises(jtfne.ReadoutError, match=rf"{where}: vm='no' is invalid"):
            fn(single, vm="no", **kw)
    assert not (tmp_path / "x.nwb").exists()


def test_a_probe_that_was_not_recorded(net, tmp_path):
    with pytest.raises(jtfne.ReadoutError, match=r"to_neo: probes=\['u'\] is invalid; 'u' was not recorded; "
                                                 r"recorded probes are SPK, Vm"):
        to_neo(net, probes=["u"])
    with pytest.raises(jtfne.JaxfneError, match=r"to_nwb: probes=\['CSD-proxy'\] is invalid"):
        to_nwb(net, path=tmp_path / "n.nwb", probes=["CSD-proxy"])


# ---- spikes straight from events: neo, NWB and SONATA give back Signals.spike_events exactly ------------------

EVENT_CASES = [("single", "memory"), ("single", "store"), ("member", "memory"), ("member", "store")]


@pytest.fixture(scope="module")
def event_runs(tmp_path_factory):
    """{(network, where): (signals, member)}: a two-layer network and member 1 of a two-seed ensemble, each in
    memory and on a Zarr store reopened with open_signals (three chunks), with Vm sampled on two neurons."""
    tmp = tmp_path_factory.mktemp("events")
    base = (jtfne.Configuration().runtime(seed=7, duration_ms=90.0).column(name="c", layers=["L2/3", "L4"], n=30)
            .cell_types({"E": 0.8, "I": 0.2}).probes(["SPK", "Vm"], neurons=[1, 22], every_ms=0.5))
    out = {}
    for net, cfg, member in [("single", base, None), ("member", base.ensemble(seeds=[3, 4]), 1)]:
        model = jtfne.construct(cfg)
        out[net, "memory"] = jtfne.simulate(model, chunk_ms=30.0), member       # one compiled chunk for both
        jtfne.simulate(model, store=tmp / f"{net}.zarr", chunk_ms=30.0)
        out[net, "store"] = jtfne.open_signals(tmp / f"{net}.zarr"), member
    return out


def raster_events(one):
    """(times_ms, neurons) of one network from its boolean raster, ordered by time then neuron: independent of
    spike_events."""
    spk = np.asarray(one["SPK"].transpose("time", "neuron").values)
    ti, ni = np.nonzero(spk)
    return np.asarray(one.dataset["time"].values, dtype=float)[ti], np.asarray(one["SPK"]["neuron"].values)[ni]


@pytest.mark.parametrize("network,where", EVENT_CASES)
def test_neo_spike_trains_are_the_events(event_runs, network, where, tmp_path):
    signals, member = event_runs[network, where]
    one = signals if member is None else signals.isel(member=member)
    ev = signals.spike_events(member)
    t, n = raster_events(one)
    assert ev.times_ms.size > 20 and np.array_equal(ev.times_ms, t) and np.array_equal(ev.neurons, n)
    block = to_neo(signals, member=member)
    trains = block.segments[0].spiketrains
    ids, times = trains.multiplexed                           # the arrays it was built from
    np.testing.assert_array_equal(ids, ev.neurons)
    np.testing.assert_array_equal(times.rescale(pq.ms).magnitude, ev.times_ms)
    path = tmp_path / "net.pkl"
    neo.io.PickleIO(str(path)).write_block(block)
    for got in (trains, neo.io.PickleIO(str(path)).read_block().segments[0].spiketrains):
        assert [st.annotations["neuron"] for st in got] == list(range(30))       # silent neurons too
        for st in got:
            k = st.annotations["neuron"]
            np.testing.assert_array_equal(st.magnitude, ev.times_ms[ev.neurons == k])   # exactly, in ms
            assert st.units == pq.ms and float(st.t_stop) == one.duration_ms and float(st.t_start) == 0.0
            assert st.annotations["channel_id"] == k
            assert st.annotations["cell_type"] == one["SPK"]["cell_type"].values[k]
            assert st.annotations["layer"] == one["SPK"]["layer"].values[k]
            assert st.annotations["depth_um"] == pytest.approx(float(one["SPK"]["depth_um"].values[k]))
    (vm,) = block.segments[0].analogsignals                  # Vm as recorded: two neurons, every 0.5 ms
    assert list(vm.array_annotations["neuron"]) == [1, 22] and vm.shape == (180, 2)
    np.testing.assert_array_equal(vm.magnitude, one["Vm"].transpose("time_sampled", "neuron_sampled").values)


@pytest.mark.parametrize("network,where", EVENT_CASES)
def test_nwb_units_are_the_events(event_runs, network, where, tmp_path):
    pynwb = pytest.importorskip("pynwb")
    signals, member = event_runs[network, where]
    one = signals if member is None else signals.isel(member=member)
    ev = signals.spike_events(member)
    path = to_nwb(signals, member=member, path=tmp_path / "net.nwb")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.nwb"]          # no temporary file left
    with pynwb.NWBHDF5IO(str(path), mode="r") as io:
        units = io.read().units
        assert list(units.id[:]) == list(range(30))
        assert units.resolution == pytest.approx(one.dt_ms / 1000.0)
        flat = np.asarray(units["spike_times"].target.data[:])              # the ragged column, neuron by neuron
        ends = np.asarray(units["spike_times"].data[:])
        by_neuron = np.lexsort((ev.times_ms, ev.neurons))
        np.testing.assert_array_equal(flat, ev.times_ms[by_neuron] / 1000.0)
        np.testing.assert_array_equal(ends, np.cumsum(np.bincount(ev.neurons, minlength=30)))
        for k in range(30):
            np.testing.assert_array_equal(np.asarray(units["spike_times"][k]), ev.times_ms[ev.neurons == k] / 1000.0)
            assert list(np.asarray(units["obs_intervals"][k]).ravel()) == [0.0, one.duration_ms / 1000.0]
        df = units.to_dataframe()
        assert list(df["cell_type"]) == list(one["SPK"]["cell_type"].values)
        assert list(df["layer"]) == list(one["SPK"]["layer"].values)


def read_sonata(path, population="jaxfne"):
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "r") as f:
        group = f[f"spikes/{population}"]
        ts, ids = group["timestamps"], group["node_ids"]
        sorting = h5py.check_enum_dtype(group.attrs.get_id("sorting").dtype)
        return {"timestamps": ts[:], "node_ids": ids[:], "ts_dtype": ts.dtype, "ids_dtype": ids.dtype,
                "units": ts.attrs["units"], "sorting": {v: k for k, v in sorting.items()}[int(group.attrs["sorting"])],
                "magic": int(f.attrs["magic"]), "magic_dtype": f.attrs["magic"].dtype,
                "version": f.attrs["version"].tolist(), "notes": json.loads(group.attrs["jaxfne"]),
                "groups": list(f["spikes"])}


@pytest.mark.parametrize("network,where", EVENT_CASES)
def test_sonata_spikes_are_the_events(event_runs, network, where, tmp_path):
    signals, member = event_runs[network, where]
    one = signals if member is None else signals.isel(member=member)
    ev = signals.spike_events(member)
    path = to_sonata(signals, member=member, path=tmp_path / "spikes.h5")
    assert path == tmp_path / "spikes.h5" and sorted(p.name for p in tmp_path.iterdir()) == ["spikes.h5"]
    got = read_sonata(path)
    np.testing.assert_array_equal(got["timestamps"], ev.times_ms)              # ms, bit for bit
    np.testing.assert_array_equal(got["node_ids"], ev.neurons)
    assert got["ts_dtype"] == np.float64 and got["ids_dtype"] == np.uint64 and got["units"] == "ms"
    assert np.all(np.diff(got["timestamps"]) >= 0) and got["sorting"] == "by_time"   # sorted by time, as declared
    assert got["magic"] == 0x0A7A and got["magic_dtype"] == np.uint32 and got["version"] == [0, 1]
    assert got["groups"] == ["jaxfne"]
    assert got["notes"]["config_hash"] == one.attrs["config_hash"] and got["notes"]["dt_ms"] == one.dt_ms
    assert got["notes"]["member"]["seed"] == (7 if member is None else 4)
    assert got["notes"]["scope_status"] == "computational_scaffold"


def test_sonata_population_overwrite_and_bad_input(event_runs, tmp_path):
    single, _ = event_runs["single", "memory"]
    ens, _ = event_runs["member", "store"]
    path = to_sonata(single, path=tmp_path / "s.h5", population="V1")
    assert read_sonata(path, "V1")["groups"] == ["V1"]
    before = path.read_bytes()
    with pytest.raises(jtfne.ReadoutError, match=r"to_sonata: path='.*s\.h5' exists; pass overwrite=True"):
        to_sonata(ens, member=0, path=path)
    assert path.read_bytes() == before                                           # untouched
    to_sonata(ens, member=0, path=path, overwrite=True)
    np.testing.assert_array_equal(read_sonata(path)["node_ids"], ens.spike_events(0).neurons)
    with pytest.raises(jtfne.ReadoutError, match=r"to_sonata: member=2 is invalid; an index 0\.\.1 is required"):
        to_sonata(ens, member=2, path=tmp_path / "m.h5")
    with pytest.raises(jtfne.ReadoutError, match=r"to_sonata: these signals hold an ensemble of 2 members"):
        to_sonata(ens, path=tmp_path / "m.h5")
    with pytest.raises(jtfne.ReadoutError, match=r"to_sonata: member=0 is invalid; these signals hold one"):
        to_sonata(single, member=0, path=tmp_path / "m.h5")
    for bad in ("", "a/b", 3):
        with pytest.raises(jtfne.ReadoutError, match=rf"to_sonata: population={bad!r} is invalid"):
            to_sonata(single, path=tmp_path / "m.h5", population=bad)
    with pytest.raises(jtfne.ReadoutError, match=r"to_sonata: overwrite='yes' is invalid"):
        to_sonata(single, path=tmp_path / "m.h5", overwrite="yes")
    with pytest.raises(jtfne.ReadoutError, match=r"to_sonata: path='.*' is a directory"):
        to_sonata(single, path=tmp_path, overwrite=True)
    assert not (tmp_path / "m.h5").exists()


def test_exports_need_the_spike_probe(event_runs, tmp_path):
    single, _ = event_runs["single", "memory"]
    no_spikes = jtfne.Signals(single.dataset.drop_vars("SPK"))
    for fn, kw in [(to_neo, {}), (to_nwb, {"path": tmp_path / "x.nwb"}), (to_sonata, {"path": tmp_path / "x.h5"})]:
        with pytest.raises(jtfne.ReadoutError, match=rf"{fn.__name__}: these signals hold no 'SPK' probe \(spikes\); "
                                                     r"recorded probes are Vm"):
            fn(no_spikes, **kw)
    assert list(tmp_path.iterdir()) == []
