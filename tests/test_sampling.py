"""Probes that record some neurons, or sample every k steps: in memory and in a store."""

import numpy as np
import pytest
import xarray as xr

import jaxfne as jtfne

CFG = (jtfne.Configuration().runtime(duration_ms=99.9).cell_types({"E": 0.8, "I": 0.2})
       .probes(["SPK", "Vm", "source", "LFP-proxy", "CSD-proxy"]))


def test_subset_and_decimation_equal_the_full_recording():
    full = jtfne.simulate(jtfne.construct(CFG))
    cfg = CFG.probes(neurons=3, every_ms=0.5)
    model = jtfne.construct(cfg)
    idx = list(model.layout.sample_neurons)
    assert idx == [0, 1, 2, 97, 98, 99]                 # 3 E (first) + 3 I (last)
    sub = jtfne.simulate(model, chunk_ms=25.0)
    np.testing.assert_array_equal(np.asarray(sub["SPK"]), np.asarray(full["SPK"]))   # spikes complete
    for name in ("Vm", "source"):
        assert sub[name].dims == ("time_sampled", "neuron_sampled")
        np.testing.assert_array_equal(np.asarray(sub[name]), np.asarray(full[name])[::5][:, idx])
    for name in ("LFP-proxy", "CSD-proxy"):     # fields use every neuron's source, sampled in time
        np.testing.assert_array_equal(np.asarray(sub[name]), np.asarray(full[name])[::5])
    assert sub["Vm"].sizes["time_sampled"] == 200       # ceil(999 / 5)
    np.testing.assert_allclose(sub["Vm"]["time_sampled"].values[:3], [0.0, 0.5, 1.0])
    assert sub["Vm"]["cell_type_sampled"].values.tolist() == ["E"] * 3 + ["I"] * 3
    r = model.compute_readout(sub, [jtfne.readout_spec("v", "mean_V_m", cell_type="I",
                                                       time_window_ms=(10.0, 50.0))])["v"]
    expect = np.asarray(full["Vm"])[100:500:5][:, [97, 98, 99]].mean()
    assert r.value == pytest.approx(expect, rel=1e-6)


def test_index_list_and_store_round_trip(tmp_path):
    cfg = CFG.probes(["SPK", "Vm", "LFP-proxy"], neurons=[5, 90, 42], every_ms=1.0).ensemble(seeds=[1, 2, 3])
    model = jtfne.construct(cfg)
    mem = jtfne.simulate(model, chunk_ms=25.0)
    stored = jtfne.simulate(model, store=tmp_path / "s.zarr", chunk_ms=25.0)
    for name in mem:
        np.testing.assert_array_equal(np.asarray(stored[name]), np.asarray(mem[name]))
    for coord in mem.dataset.coords:
        np.testing.assert_array_equal(stored.dataset[coord].values, mem.dataset[coord].values, err_msg=coord)
    ds = xr.open_zarr(tmp_path / "s.zarr")
    assert ds["Vm"].dims == ("member", "time_sampled", "neuron_sampled")
    assert ds["neuron_sampled"].values.tolist() == [5, 42, 90]


def test_bad_sampling_is_refused():
    with pytest.raises(jtfne.ConfigurationError, match=r"every_ms=0.25 is invalid; it must be a whole number"):
        jtfne.construct(CFG.probes(every_ms=0.25).runtime(dt_ms=0.2, duration_ms=100.0))
    with pytest.raises(jtfne.ConfigurationError, match=r"indices must be < n=100"):
        jtfne.construct(CFG.probes(neurons=[3, 100]))
    with pytest.raises(jtfne.ConfigurationError, match=r"distinct indices"):
        CFG.probes(neurons=[3, 3])
    with pytest.raises(jtfne.SimulationError, match=r"multiple of the probes' every_ms"):
        jtfne.simulate(jtfne.construct(CFG.probes(every_ms=1.0)), chunk_ms=2.5)


def test_figures_accept_sampled_probes():
    import matplotlib
    matplotlib.use("Agg")
    sig = jtfne.simulate(jtfne.construct(CFG.probes(neurons=2, every_ms=0.5)))
    fig = jtfne.viz.voltages(sig)
    assert len(fig.axes) == 4                                  # the four recorded neurons
    t_edges, _, values = jtfne.viz.field_maps(sig)["LFP-proxy"]
    assert values.shape[1] == 200 and t_edges[-1] == pytest.approx(100.0)
    for fn in (jtfne.viz.fields, jtfne.viz.summary):
        assert fn(sig) is not None
