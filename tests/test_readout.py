"""Readouts against hand computations on the raster, their errors, and health checks."""

import numpy as np
import pytest

import jaxfne as jtfne
from jaxfne.results._health import REMEDIES

CE, RE = jtfne.ConfigurationError, jtfne.ReadoutError
DT = 0.1
UNCOUPLED = {"E->E": 0.0, "E->I": 0.0, "I->E": 0.0, "I->I": 0.0}


@pytest.fixture(scope="module")
def net():
    """A short, active two-layer network with every probe."""
    cfg = (jtfne.Configuration()
           .runtime(seed=5, duration_ms=400.0, dt_ms=DT)
           .column(name="c", layers=["L2/3", "L4"], n=40)
           .cell_types({"E": 0.75, "I": 0.25})
           .drive(current={"E": 6.0, "I": 2.0}, noise=2.0)
           .probes(["SPK", "Vm", "source", "LFP-proxy", "CSD-proxy"], contacts=8))
    model = jtfne.construct(cfg)
    signals = jtfne.simulate(model)
    spk = np.asarray(signals["SPK"])
    assert spk.sum() > 50       # active enough for the checks below to mean something
    return model, signals


def one(signals, metric, **selectors):
    spec = jtfne.readout_spec("r", metric, **selectors)
    return jtfne.compute_readout(signals, spec)["r"]


def arrays(signals):
    spk = np.asarray(signals["SPK"])
    vm = np.asarray(signals["Vm"], dtype=np.float64)
    ctype = signals["SPK"]["cell_type"].values
    layer = signals["SPK"]["layer"].values
    return spk, vm, ctype, layer


def hand_rate(spk, cells):
    return spk[:, cells].sum() / (cells.sum() * spk.shape[0] * DT / 1000.0)


def hand_cv(spk):
    cvs = []
    for col in spk.T:
        isi = np.diff(np.flatnonzero(col)).astype(float)
        if isi.size >= 2:          # neurons with at least two ISIs
            cvs.append(isi.std() / isi.mean())
    return np.mean(cvs)


def test_rates_per_cell_type_and_layer(net):
    _, signals = net
    spk, _, ctype, layer = arrays(signals)
    everyone = np.ones(ctype.size, bool)
    r = one(signals, "spike_rate_hz")
    assert r.units == "Hz" and r.metric == "spike_rate_hz"
    assert r.value == pytest.approx(hand_rate(spk, everyone))
    for t in ("E", "I"):
        assert one(signals, "spike_rate_hz", cell_type=t).value == pytest.approx(hand_rate(spk, ctype == t))
    for lay in ("L2/3", "L4"):
        assert one(signals, "spike_rate_hz", layer=lay).value == pytest.approx(hand_rate(spk, layer == lay))
        both = one(signals, "spike_rate_hz", layer=lay, cell_type="I")
        assert both.value == pytest.approx(hand_rate(spk, (layer == lay) & (ctype == "I")))
        assert both.selectors == {"cell_type": "I", "layer": lay}
    # the population rate is the cell-weighted mean of the type rates
    n_e, n_i = (ctype == "E").sum(), (ctype == "I").sum()
    weighted = (n_e * one(signals, "spike_rate_hz", cell_type="E").value
                + n_i * one(signals, "spike_rate_hz", cell_type="I").value) / (n_e + n_i)
    assert r.value == pytest.approx(weighted)


def test_spike_count(net):
    _, signals = net
    spk, _, ctype, _ = arrays(signals)
    c = one(signals, "spike_count")
    assert c.units == "spikes" and c.value == spk.sum()
    assert one(signals, "spike_count", cell_type="E").value == spk[:, ctype == "E"].sum()


def test_cv_isi_matches_numpy(net):
    _, signals = net
    spk, _, ctype, _ = arrays(signals)
    assert one(signals, "cv_isi").value == pytest.approx(hand_cv(spk))
    for t in ("E", "I"):
        assert one(signals, "cv_isi", cell_type=t).value == pytest.approx(hand_cv(spk[:, ctype == t]))


def test_cv_isi_on_a_known_raster():
    # a regular neuron (CV 0), one with ISIs 10, 30 (CV 0.5), one with too few spikes (ignored)
    from jaxfne.results._readout import _cv_isi
    spk = np.zeros((100, 3), bool)
    spk[[0, 20, 40, 60], 0] = True
    spk[[5, 15, 45], 1] = True
    spk[[7, 9], 2] = True
    assert _cv_isi(spk) == pytest.approx(0.25)
    assert np.isnan(_cv_isi(np.zeros((10, 2), bool)))


def test_voltage_metrics(net):
    _, signals = net
    _, vm, ctype, _ = arrays(signals)
    assert one(signals, "mean_V_m").value == pytest.approx(vm.mean(), rel=1e-6)
    assert one(signals, "min_V_m").value == pytest.approx(vm.min())
    assert one(signals, "max_V_m").value == pytest.approx(vm.max())
    assert one(signals, "max_V_m").units == "mV"
    assert one(signals, "mean_V_m", cell_type="I").value == pytest.approx(vm[:, ctype == "I"].mean(), rel=1e-6)
    assert one(signals, "min_V_m", cell_type="E").value == pytest.approx(vm[:, ctype == "E"].min())


def test_time_window_selects_steps(net):
    _, signals = net
    spk, vm, ctype, _ = arrays(signals)
    steps = slice(1000, 2500)      # [100, 250) ms at dt 0.1: step k covers [k dt, (k+1) dt)
    r = one(signals, "spike_rate_hz", time_window_ms=(100, 250))
    assert r.value == pytest.approx(spk[steps].sum() / (spk.shape[1] * 0.150))
    assert r.selectors == {"time_window_ms": (100.0, 250.0)}
    assert one(signals, "spike_count", time_window_ms=(100.0, 250.0)).value == spk[steps].sum()
    assert one(signals, "mean_V_m", time_window_ms=(100, 250)).value == pytest.approx(vm[steps].mean(), rel=1e-6)
    e = one(signals, "spike_rate_hz", cell_type="E", time_window_ms=(100, 250))
    assert e.value == pytest.approx(spk[steps][:, ctype == "E"].sum() / ((ctype == "E").sum() * 0.150))
    # a window running past the end is cut at the end, and rates use the time actually covered
    tail = one(signals, "spike_rate_hz", time_window_ms=(300, 10_000))
    assert tail.value == pytest.approx(spk[3000:].sum() / (spk.shape[1] * 0.100))


def test_time_window_after_the_end(net):
    _, signals = net
    with pytest.raises(RE, match=r"readout 'r': time_window_ms=\(500.0, 600.0\) starts after the recording ends"):
        one(signals, "spike_rate_hz", time_window_ms=(500, 600))


def test_field_metrics(net):
    _, signals = net
    src = np.asarray(signals["source"], dtype=np.float64)
    lfp = np.asarray(signals["LFP-proxy"], dtype=np.float64)
    csd = np.asarray(signals["CSD-proxy"], dtype=np.float64)
    ctype = signals["source"]["cell_type"].values
    assert one(signals, "source_abs_mean").value == pytest.approx(np.abs(src).mean(), rel=1e-5)
    assert one(signals, "source_abs_mean", cell_type="E").value == pytest.approx(
        np.abs(src[:, ctype == "E"]).mean(), rel=1e-5)
    assert one(signals, "lfp_abs_mean").value == pytest.approx(np.abs(lfp).mean(), rel=1e-5)
    assert one(signals, "csd_abs_mean").value == pytest.approx(np.abs(csd).mean(), rel=1e-5)
    assert "proxy" in one(signals, "lfp_abs_mean").units
    # layer= selects the contacts lying in the layer's depth range
    z = signals["LFP-proxy"]["contact_depth_um"].values
    in_l4 = (z >= 400) & (z <= 600)
    assert in_l4.sum() >= 2
    assert one(signals, "lfp_abs_mean", layer="L4").value == pytest.approx(np.abs(lfp[:, in_l4]).mean(), rel=1e-5)


def test_readout_metadata(net):
    model, signals = net
    out = model.compute_readout(signals, [jtfne.readout_spec("a", "spike_rate_hz"),
                                          jtfne.readout_spec("b", "mean_V_m", cell_type="E")])
    assert list(out) == ["a", "b"]
    assert float(out["a"]) == out["a"].value
    d = out["b"].to_dict()
    assert d == {"metric": "mean_V_m", "value": out["b"].value, "units": "mV", "selectors": {"cell_type": "E"}}
    assert set(jtfne.METRICS) == {"spike_rate_hz", "spike_count", "cv_isi", "mean_V_m", "min_V_m", "max_V_m",
                                  "source_abs_mean", "lfp_abs_mean", "csd_abs_mean"}


# -- errors ------------------------------------------------------------------------

def test_unknown_metric():
    with pytest.raises(CE, match=r"readout_spec: metric='rate' is unknown; valid metrics are csd_abs_mean, cv_isi, "
                                 r"lfp_abs_mean, max_V_m, mean_V_m, min_V_m, source_abs_mean, spike_count, "
                                 r"spike_rate_hz$"):
        jtfne.readout_spec("x", "rate")


@pytest.mark.parametrize("kwargs, message", [
    ({"cell_type": "X"}, r"cell_type='X' is unknown; valid cell types are E, I"),
    ({"layer": "L7"}, r"layer='L7' is unknown; valid layers are L1, L2/3, L4, L5, L6"),
    ({"time_window_ms": (10, 5)}, r"time_window_ms=\(10, 5\) is invalid; a pair \(start, stop\)"),
    ({"time_window_ms": (-1, 5)}, r"time_window_ms=\(-1, 5\) is invalid"),
    ({"time_window_ms": (0, float("nan"))}, r"time_window_ms=\(0, nan\) is invalid"),
    ({"time_window_ms": (0, 1, 2)}, r"is invalid"),
    ({"time_window_ms": (True, 5)}, r"is invalid"),
])
def test_unknown_selector_values(kwargs, message):
    with pytest.raises(CE, match=message):
        jtfne.readout_spec("x", "spike_rate_hz", **kwargs)


def test_bad_names_and_combinations():
    with pytest.raises(CE, match=r"name='' is invalid"):
        jtfne.readout_spec("", "spike_rate_hz")
    with pytest.raises(CE, match=r"cell_type='E' is invalid for metric 'lfp_abs_mean'; field proxies sum all cells"):
        jtfne.readout_spec("x", "lfp_abs_mean", cell_type="E")


def test_layer_not_in_the_column(net):
    _, signals = net
    with pytest.raises(RE, match=r"layer='L5' is not in this column; its layers are L2/3, L4"):
        one(signals, "spike_rate_hz", layer="L5")
    with pytest.raises(RE, match=r"no contact lies in layer 'L6'"):
        one(signals, "lfp_abs_mean", layer="L6")


def test_compute_readout_argument_errors(net):
    _, signals = net
    spec = jtfne.readout_spec("a", "spike_count")
    with pytest.raises(RE, match=r"readout name 'a' is used twice"):
        jtfne.compute_readout(signals, [spec, spec])
    with pytest.raises(RE, match=r"is not a readout spec"):
        jtfne.compute_readout(signals, ["spike_count"])


@pytest.fixture(scope="module")
def spikes_only():
    cfg = (jtfne.Configuration().runtime(duration_ms=100.0, dt_ms=DT).column(n=10)
           .cell_types({"E": 1.0}).probes(["SPK"]))
    return jtfne.simulate(jtfne.construct(cfg))


@pytest.mark.parametrize("metric, probe", [("mean_V_m", "Vm"), ("source_abs_mean", "source"),
                                           ("lfp_abs_mean", "LFP-proxy"), ("csd_abs_mean", "CSD-proxy")])
def test_unrecorded_probe_is_named(spikes_only, metric, probe):
    with pytest.raises(RE, match=rf"metric '{metric}' needs probe '{probe}', which was not recorded; "
                                 rf"add it with Configuration.probes"):
        one(spikes_only, metric)
    with pytest.raises(RE, match=rf"signals\['{probe}'\]: no such probe; recorded probes are SPK"):
        spikes_only[probe]


def test_absent_cell_type(spikes_only):
    with pytest.raises(RE, match=r"cell_type='I' selects no neuron"):
        one(spikes_only, "spike_rate_hz", cell_type="I")
    with pytest.raises(RE, match=r"cell_type='I' selects no neuron"):
        one(spikes_only, "spike_count", cell_type="I")


def test_empty_time_window(spikes_only):
    with pytest.raises(RE, match=r"time_window_ms=\(0.01, 0.05\) contains no step start"):
        one(spikes_only, "spike_count", time_window_ms=(0.01, 0.05))


def test_signals_mapping_protocol(spikes_only):
    assert "SPK" in spikes_only and "Vm" not in spikes_only and 3 not in spikes_only
    assert spikes_only.get("Vm") is None and list(spikes_only) == ["SPK"]
    with pytest.raises(KeyError):          # a missing probe is a KeyError too (Mapping protocol)
        spikes_only["Vm"]


# -- health ---------------------------------------------------------------------------

def uncoupled(current, noise=0.0, dt=DT, preset="tonic_spiking", duration_ms=100.0):
    cfg = (jtfne.Configuration().runtime(duration_ms=duration_ms, dt_ms=dt).column(n=10)
           .connectivity(strength=UNCOUPLED).set_emitter(preset=preset).drive(current=current, noise=noise))
    return jtfne.simulate(jtfne.construct(cfg))


def test_health_silent():
    h = jtfne.check_health(uncoupled(0.0))
    assert h.status == "silent" and h.rate_hz == 0.0 and h.finite is True and not h.ok
    assert h.messages == (REMEDIES["silent"],)
    assert h.messages[0].startswith("Silent network (< 1 Hz): increase the external input current "
                                    "(Configuration.drive(current=...))")


def test_health_runaway():
    # 436 Hz: fast, but 0.04 of the step rate 1/dt, so a network state and not a numerical one
    signals = uncoupled(100.0)
    h = jtfne.check_health(signals)
    assert h.status == "runaway" and h.rate_hz > 50.0 and not h.ok
    assert h.rate_hz == pytest.approx(np.asarray(signals["SPK"]).mean() / (DT / 1000.0))
    assert len(h.messages) == 1 and h.messages[0].startswith("Runaway network (> 50 Hz):")
    assert "strength={'I->E': ...}" in h.messages[0] and "lower the drive" in h.messages[0]


def test_health_ok(net):
    model, signals = net
    h = model.health(signals)
    assert h.status == "ok" and h.ok and h.messages == ()
    assert h.to_dict()["status"] == "ok"


def test_health_non_finite():
    # a = 1 (depolarizing_after_potential) with dt = 5 ms: the u update multiplies
    # by 1 - a dt = -4 each step, so u overflows and the voltage becomes NaN
    with pytest.warns(RuntimeWarning, match=r"simulate: the membrane state became non-finite"):
        signals = uncoupled(0.0, dt=5.0, preset="depolarizing_after_potential", duration_ms=500.0)
    assert not np.isfinite(np.asarray(signals["Vm"])).all()
    h = jtfne.check_health(signals)
    assert h.status == "non_finite" and h.finite is False and not h.ok
    assert h.messages == ("NaN/Inf in output: reduce the time step to 0.01 ms, use dtype='float64', or check the "
                          "Izhikevich parameter bounds.",)


def test_health_reads_the_final_state_flag(net):
    # Vm can stay finite while u overflows (spikes are shown at 30 mV); the driver
    # can record the final state's finiteness as the state_finite coordinate
    _, signals = net
    flagged = jtfne.Signals(signals.dataset.assign_coords(state_finite=False))
    h = jtfne.check_health(flagged)
    assert h.status == "non_finite" and h.finite is False
    assert jtfne.check_health(jtfne.Signals(signals.dataset.assign_coords(state_finite=True))).ok
