"""to_neo and to_nwb: what is written reads back with neo and pynwb, spike for spike."""

import numpy as np
import pytest

import jaxfne as jtfne
from jaxfne.export import to_neo, to_nwb

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
