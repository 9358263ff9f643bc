"""The tutorial page's promises, checked on the exact code it shows."""

import json

import numpy as np
import pytest

import jaxfne as jtfne
from conftest import seed_page_configuration


def rates(model, signals):
    specs = [jtfne.readout_spec("population_rate", "spike_rate_hz"),
             jtfne.readout_spec("E", "spike_rate_hz", cell_type="E"),
             jtfne.readout_spec("I", "spike_rate_hz", cell_type="I")]
    r = model.compute_readout(signals, specs)
    return r["E"].value, r["I"].value, r["population_rate"].value


def test_step_by_step_equals_chained():
    cfg = jtfne.Configuration()
    cfg = cfg.runtime(seed=42, dtype="float32", duration_ms=1000.0, dt_ms=0.1)
    cfg = cfg.column(name="L2/3_column", layers=["L2/3"], n=100)
    cfg = cfg.cell_types({"E": 0.75, "I": 0.25})
    cfg = cfg.connectivity()
    cfg = cfg.set_emitter(family="izhikevich", preset="cortical_eig")
    cfg = cfg.probes(["SPK", "Vm", "source", "LFP-proxy", "CSD-proxy"])
    assert cfg == seed_page_configuration(42)
    assert cfg.config_hash() == seed_page_configuration(42).config_hash()


def test_quick_reference_runs_and_rates_in_band(seed_run):
    model, signals = seed_run
    readout_specs = [
        jtfne.readout_spec("population_rate", "spike_rate_hz"),
        jtfne.readout_spec("mean_voltage", "mean_V_m"),
    ]
    readouts = model.compute_readout(signals, readout_specs)
    assert readouts["population_rate"].units == "Hz"
    assert readouts["mean_voltage"].units == "mV"
    e, i, pop = rates(model, signals)
    assert 8.0 <= e <= 15.0, e
    assert 8.0 <= i <= 15.0, i
    assert 8.0 <= pop <= 15.0, pop
    assert readouts["population_rate"].value == pytest.approx(pop)


def test_voltage_range_and_finite(seed_run):
    model, signals = seed_run
    vm = np.asarray(signals["Vm"])
    assert -100.0 <= vm.min() <= -60.0
    assert 20.0 <= vm.max() <= 40.0
    for name in signals:
        assert np.all(np.isfinite(np.asarray(signals[name], dtype=float))), name
    assert model.health(signals).status == "ok"


def test_signal_shapes_and_coords(seed_run):
    model, signals = seed_run
    assert set(signals) == {"SPK", "Vm", "source", "LFP-proxy", "CSD-proxy"}
    assert signals["SPK"].dims == ("time", "neuron") and signals["SPK"].dtype == bool
    assert signals["SPK"].shape == (10000, 100)
    assert signals["LFP-proxy"].dims == ("time", "contact")
    assert list(np.unique(signals["SPK"]["cell_type"].values)) == ["E", "I"]
    assert (signals["SPK"]["cell_type"].values == "E").sum() == 75
    assert signals["SPK"]["time"].values[1] == pytest.approx(0.1)
    assert np.all((signals["SPK"]["depth_um"].values >= 100) & (signals["SPK"]["depth_um"].values <= 400))


def test_manifest_scope_block(seed_run, tmp_path):
    model, signals = seed_run
    readouts = model.compute_readout(signals, [jtfne.readout_spec("population_rate", "spike_rate_hz")])
    man = model.manifest(signals=signals, readouts=readouts)
    assert {k: man[k] for k in jtfne.SCOPE} == {
        "scope_status": "computational_scaffold",
        "calibration_status": "uncalibrated_phenomenological",
        "readout_status": "proxy_scale",
        "field_mode": "proxy_convolution_no_pde",
        "amplitude_status": False,
    }
    assert man["config_hash"] == model.config.config_hash()
    assert man["seeds"] == [42]
    assert man["engine"] == signals.attrs["engine"] == jtfne.engine.resolve_engine("auto", jtfne.engine.default_devices(1))
    path = tmp_path / "manifest.json"
    jtfne.write_manifest(man, path)
    back = json.loads(path.read_text())
    assert back["readouts"]["population_rate"]["units"] == "Hz"
    assert jtfne.Configuration.from_dict(back["config"]) == model.config


def test_seeds_0_to_19_in_band():
    e_rates, i_rates, pops = [], [], []
    for seed in range(20):
        model = jtfne.construct(seed_page_configuration(seed).probes(["SPK"]))
        e, i, pop = rates(model, jtfne.simulate(model))
        e_rates.append(e), i_rates.append(i), pops.append(pop)
    for vals in (e_rates, i_rates, pops):
        assert min(vals) >= 2.0 and max(vals) <= 25.0, vals
        assert 8.0 <= float(np.median(vals)) <= 15.0, vals


def test_coupling_is_real():
    """With every recurrent weight at zero the I cells lose their E drive."""
    cfg = seed_page_configuration(42).probes(["SPK"])
    coupled = jtfne.construct(cfg)
    zero = jtfne.construct(cfg.connectivity(strength={"E->E": 0.0, "E->I": 0.0, "I->E": 0.0, "I->I": 0.0}))
    _, i_coupled, _ = rates(coupled, jtfne.simulate(coupled))
    _, i_zero, _ = rates(zero, jtfne.simulate(zero))
    assert abs(i_coupled - i_zero) >= 0.5 * i_coupled, (i_coupled, i_zero)
    assert np.all(np.asarray(zero.params.w) == 0)


def test_same_seed_same_bits():
    cfg = seed_page_configuration(7).runtime(duration_ms=200.0)
    a = jtfne.simulate(jtfne.construct(cfg))
    b = jtfne.simulate(jtfne.construct(cfg))
    for name in a:
        np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]))
    c = jtfne.simulate(jtfne.construct(cfg.runtime(seed=8)))
    assert not np.array_equal(np.asarray(a["Vm"]), np.asarray(c["Vm"]))


def test_manifest_describes_the_run_after_simulate_overrides():
    model = jtfne.construct(seed_page_configuration(42).runtime(duration_ms=100.0))
    signals = jtfne.simulate(model, duration_ms=50.0, seed=5)
    man = model.manifest(signals)
    assert man["config"]["runtime"]["seed"] == 5 and man["config"]["runtime"]["duration_ms"] == 50.0
    assert man["seeds"] == [5] and man["config_hash"] == signals.attrs["config_hash"]
    assert signals["SPK"].sizes["time"] == 500
