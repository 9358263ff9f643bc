"""Evoked analysis: trial-aligned PSTHs and field proxies (jaxfne.analysis), the evoked figure and onset marks."""

import json

import numpy as np
import pytest
import xarray as xr
from matplotlib.collections import LineCollection, QuadMesh

import jaxfne as jtfne
from jaxfne import analysis as A
from jaxfne import viz

DT = 0.1


def hand_raster(dt_ms=1.0):
    """2 members, 100 steps, 4 neurons: E, E, I in L2/3 and E in L4, spikes at fixed, irregular steps."""
    rng = np.random.default_rng(3)
    spk = rng.random((2, 100, 4)) < 0.2
    ds = xr.Dataset({"SPK": (("member", "time", "neuron"), spk)},
                    coords={"time": np.arange(100) * dt_ms, "neuron": np.arange(4),
                            "layer": ("neuron", ["L2/3", "L2/3", "L2/3", "L4"]),
                            "cell_type": (("member", "neuron"), np.broadcast_to(["E", "E", "I", "E"], (2, 4))),
                            "member": np.arange(2), "seed": ("member", [1, 2])},
                    attrs={"dt_ms": dt_ms})
    return jtfne.Signals(ds), spk


def reference_psth(spk, onsets, pre, post, bin_steps, members_of_group, dt_ms=1.0):
    """Independent loop: spikes per bin summed over in-run trials / (trials x neurons x bin)."""
    trials = [o for o in onsets if o + pre >= 0 and o + post <= spk.shape[1]]
    n_bins = (post - pre) // bin_steps
    out = np.zeros((spk.shape[0], n_bins))
    for m in range(spk.shape[0]):
        for b in range(n_bins):
            count = 0
            for o in trials:
                lo = o + pre + b * bin_steps
                count += int(spk[m, lo:lo + bin_steps][:, members_of_group].sum())
            out[m, b] = count / (len(trials) * len(members_of_group) * bin_steps * dt_ms / 1000.0)
    return out, len(onsets) - len(trials)


@pytest.mark.parametrize("onsets", [[10, 40, 95, 3], [12, 47, 61]], ids=["on-bins", "off-bins"])
def test_psth_of_a_hand_made_raster(onsets):
    sig, spk = hand_raster()
    p = A.psth(sig, onsets_ms=[float(o) for o in onsets], window_ms=(-5.0, 10.0), bin_ms=5.0,
               by=("layer", "cell_type")).compute()
    assert p.dims == ("member", "layer", "cell_type", "time")
    np.testing.assert_array_equal(p["time"].values, [-5.0, 0.0, 5.0])
    for (layer, ctype), neurons in {("L2/3", "E"): [0, 1], ("L2/3", "I"): [2], ("L4", "E"): [3]}.items():
        want, dropped = reference_psth(spk, onsets, -5, 10, 5, neurons)
        got = p.sel(layer=layer, cell_type=ctype).values
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=0)
        # the rates times trials x neurons x bin are the integer counts, exactly
        n_trials = len(onsets) - dropped
        np.testing.assert_array_equal(np.round(got * n_trials * len(neurons) * 0.005), np.round(want * n_trials
                                      * len(neurons) * 0.005))
    assert np.isnan(p.sel(layer="L4", cell_type="I").values).all()     # an empty group
    assert p["n_trials_dropped"].values.tolist() == [dropped, dropped]
    assert p.attrs["trials_dropped"] == 2 * dropped and "dropped" in p.attrs["description"]


def test_psth_errors_name_the_argument():
    sig, _ = hand_raster()
    with pytest.raises(jtfne.ConfigurationError, match="window_ms"):
        A.psth(sig, onsets_ms=[10.0], window_ms=(5.0, 10.0))
    with pytest.raises(jtfne.ConfigurationError, match="stimulus=None, onsets_ms=None"):
        A.psth(sig)
    with pytest.raises(jtfne.ConfigurationError, match="whole number of bins"):
        A.psth(sig, onsets_ms=[10.0], window_ms=(-5.0, 12.0), bin_ms=5.0)
    with pytest.raises(jtfne.ReadoutError, match="config_json"):
        A.psth(sig, "thalamic")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """An L2/3-L4-L5 column, a strong pulse train into L4 E cells, onsets swept over two members, stored."""
    cfg = (jtfne.Configuration().runtime(seed=1, duration_ms=200.0, dt_ms=DT)
           .column(layers=["L2/3", "L4", "L5"], n=90)
           .probes(["SPK", "CSD-proxy", "LFP-proxy"])
           .stimulus("thalamic", kind="pulses", amplitude=40.0, onset_ms=25.0, duration_ms=2.0,
                     period_ms=50.0, layer="L4", cell_type="E"))
    model = jtfne.construct(cfg.ensemble(seeds=[1], sweep={"stimulus.thalamic.onset_ms": [25.0, 30.0]}))
    path = tmp_path_factory.mktemp("evoked") / "run.zarr"
    jtfne.simulate(model, store=path)
    return jtfne.simulate(model), jtfne.open_signals(path), path


def test_onsets_come_from_the_stored_configuration_per_member(run):
    memory, stored, _ = run
    assert A.stimulus_onsets(stored, "thalamic") == [(25.0, 75.0, 125.0, 175.0), (30.0, 80.0, 130.0, 180.0)]
    with pytest.raises(jtfne.ConfigurationError, match="'thalamic'"):
        A.psth(stored, "thalamus")


def test_psth_of_a_run_is_lazy_identical_stored_and_rises_after_onset(run):
    memory, stored, path = run
    lazy = A.psth(path, "thalamic", window_ms=(-10.0, 30.0), bin_ms=5.0, by=("layer", "cell_type"))
    assert hasattr(lazy.data, "dask")
    p = lazy.compute()
    np.testing.assert_array_equal(p.values, A.psth(memory, "thalamic", window_ms=(-10.0, 30.0), bin_ms=5.0,
                                                   by=("layer", "cell_type")).values)
    # last onset's window (175/180 + 30 ms) leaves the 200-ms run
    assert p["n_trials"].values.tolist() == [3, 3] and p["n_trials_dropped"].values.tolist() == [1, 1]
    # member 1 equals the PSTH of its own onsets given by hand
    by_hand = A.psth(memory.isel(member=1), onsets_ms=[30.0, 80.0, 130.0], window_ms=(-10.0, 30.0), bin_ms=5.0,
                     by=("layer", "cell_type"))
    np.testing.assert_array_equal(p.isel(member=1).values, by_hand.values)
    l4e = p.sel(layer="L4", cell_type="E").values                     # (member, bin)
    before, after = l4e[:, :2].mean(axis=1), l4e[:, 2:4].max(axis=1)  # bins -10..0 and 0..10 ms
    assert np.all(after > 100.0) and np.all(after > 10 * (before + 1.0))


def test_evoked_field_is_the_trial_mean_of_the_recorded_array(run):
    memory, stored, _ = run
    e = A.evoked_field(stored, "CSD-proxy", "thalamic", window_ms=(-10.0, 30.0))
    assert hasattr(e.data, "dask") and e.dims == ("member", "contact", "time")
    arr = np.asarray(memory["CSD-proxy"].values, dtype=np.float64)            # (member, time, contact)
    for m, onsets in enumerate([(25.0, 75.0, 125.0), (30.0, 80.0, 130.0)]):
        want = np.mean([arr[m, round(o / DT) - 100:round(o / DT) + 300] for o in onsets], axis=0).T
        np.testing.assert_allclose(e.isel(member=m).values, want, rtol=1e-12, atol=1e-9)
    assert e["n_trials_dropped"].values.tolist() == [1, 1]
    lfp = A.evoked_field(memory, "LFP-proxy", onsets_ms=[50.0], window_ms=(-5.0, 5.0))
    np.testing.assert_array_equal(lfp.isel(member=0).values,
                                  np.asarray(memory["LFP-proxy"].values, np.float64)[0, 450:550].T)
    with pytest.raises(jtfne.ConfigurationError, match="probe='SPK'"):
        A.evoked_field(memory, "SPK", onsets_ms=[50.0])


def test_evoked_figure_content(run):
    memory, stored, _ = run
    fig = viz.evoked(stored, "thalamic", member=1, window_ms=(-10.0, 30.0), bin_ms=5.0)
    (mesh,) = [a for a in fig.findobj(QuadMesh) if a.get_gid() == "evoked-CSD-proxy"]
    field = A.evoked_field(stored.isel(member=1), "CSD-proxy", "thalamic", window_ms=(-10.0, 30.0)).values
    np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(field.shape), field)
    lo, hi = mesh.get_clim()
    assert lo == -hi and mesh.get_cmap().name == "RdBu_r"
    ax = mesh.axes
    top, bottom = ax.get_ylim()
    assert top > bottom                                                   # depth increases downward
    assert ax.get_xlabel() == "time from onset (ms)" and "depth" in ax.get_ylabel()
    labels = {t.get_gid(): t.get_text() for t in ax.texts}
    assert {labels[f"layer-label-{lay}"] for lay in ("L2/3", "L4", "L5")} == {"L2/3", "L4", "L5"}
    assert {line.get_ydata()[0] for line in ax.lines if line.get_gid() == "layer-boundary"} >= {400.0, 600.0}
    assert "excitatory current positive" in ax.get_title(loc="left") and "1 dropped" in ax.get_title(loc="left")
    rate = A.psth(stored.isel(member=1), "thalamic", window_ms=(-10.0, 30.0), bin_ms=5.0,
                  by=("layer", "cell_type"))
    patches = {p.get_gid(): p for p in fig.findobj() if str(p.get_gid()).startswith("psth-L")}
    for lay in ("L2/3", "L4", "L5"):
        for ctype in ("E", "I"):
            np.testing.assert_array_equal(patches[f"psth-{lay}-{ctype}"].get_data().values,
                                          rate.sel(layer=lay, cell_type=ctype).values)
    # the panels run superficial to deep, top to bottom
    y = [patches[f"psth-{lay}-E"].axes.get_position().y0 for lay in ("L2/3", "L4", "L5")]
    assert y[0] > y[1] > y[2]
    flipped = viz.evoked(stored, "thalamic", member=1, window_ms=(-10.0, 30.0), conventional_sign=True)
    (fmesh,) = [a for a in flipped.findobj(QuadMesh) if a.get_gid() == "evoked-CSD-proxy"]
    np.testing.assert_allclose(np.asarray(fmesh.get_array()).reshape(field.shape), -field)
    assert "sink (inward excitatory current) negative" in fmesh.axes.get_title(loc="left")


def test_stimulus_onsets_marked_on_raster_and_rates(run):
    memory, stored, _ = run
    for fig in (viz.raster(stored, member=1), viz.rates(memory, member=1)):
        ax = fig.axes[0]
        (marks,) = [c for c in ax.collections if c.get_gid() == "stimulus-thalamic"]
        assert isinstance(marks, LineCollection)
        assert sorted(seg[0, 0] for seg in marks.get_segments()) == [30.0, 80.0, 130.0, 180.0]
        assert "stimulus thalamic" in [t.get_text() for t in ax.get_legend().get_texts()]
    # hand-made signals without a configuration: no marks
    sig, _ = hand_raster()
    assert not [c for c in viz.rates(sig, member=0).axes[0].collections if c.get_gid()
                and c.get_gid().startswith("stimulus-")]


def test_onsets_of_one_network_from_its_configuration():
    cfg = (jtfne.Configuration().runtime(seed=2, duration_ms=100.0, dt_ms=1.0).column(layers=["L4"], n=4)
           .probes(["SPK"]).stimulus("kick", kind="step", amplitude=5.0, onset_ms=10.0))
    sig, spk = hand_raster()
    one = jtfne.Signals(sig.dataset.isel(member=0).assign_attrs(config_json=json.dumps(cfg.to_dict())))
    assert A.stimulus_onsets(one, "kick") == (10.0,)
    p = A.psth(one, "kick", window_ms=(-5.0, 5.0), bin_ms=1.0, by=None).compute()
    assert p.dims == ("time",) and int(p["n_trials"]) == 1
    np.testing.assert_allclose(p.values, spk[0, 5:15].sum(axis=1) / (4 * 0.001), rtol=1e-14)
