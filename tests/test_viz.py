"""jaxfne.viz: the figures show the data they claim to show."""

import matplotlib
import numpy as np
import pytest
import xarray as xr
from matplotlib.collections import PathCollection, QuadMesh
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import StepPatch

import jaxfne as jtfne
from conftest import seed_page_configuration
from jaxfne import viz
from jaxfne import Signals

DURATION_MS = 303.0   # not a multiple of the bin widths used below: the last bin is partial


@pytest.fixture(scope="module")
def net():
    cfg = seed_page_configuration(42).runtime(duration_ms=DURATION_MS)
    model = jtfne.construct(cfg)
    return model, jtfne.simulate(model)


@pytest.fixture(scope="module")
def lazy(net):
    """The same signals backed by Dask arrays, as a Zarr store gives them."""
    return Signals(net[1].dataset.chunk({"time": 700}))


@pytest.fixture(scope="module")
def ensemble():
    """2 seeds x 2 E fractions x 2 E drive currents = 8 small members."""
    cfg = (jtfne.Configuration().runtime(duration_ms=200.0).column(n=40).probes(["SPK", "Vm"])
           .ensemble(seeds=[1, 2], sweep={"cell_types.E": [0.7, 0.8], "drive.current.E": [3.0, 6.0]}))
    model = jtfne.construct(cfg)
    return model, jtfne.simulate(model)


def spikes_of(signals):
    spk = np.asarray(signals["SPK"].transpose("time", "neuron").values)
    ti, ni = np.nonzero(spk)
    return signals["SPK"]["time"].values[ti], ni


def find(fig, kind, gid):
    hits = [a for ax in fig.axes for a in ax.get_children() if isinstance(a, kind) and a.get_gid() == gid]
    assert len(hits) == 1, (gid, hits)
    return hits[0]


def close(fig):
    assert isinstance(fig, Figure)
    fig.savefig(__import__("io").BytesIO(), format="png", dpi=40)   # renders without error


def test_raster_has_one_point_per_spike_coloured_by_type(net):
    model, sig = net
    fig = viz.raster(sig)
    cell_type = sig["SPK"]["cell_type"].values
    t, n = spikes_of(sig)
    total = 0
    for ctype in ("E", "I"):
        coll = find(fig, PathCollection, f"raster-{ctype}")
        pts = coll.get_offsets()
        total += len(pts)
        sel = cell_type[n] == ctype
        assert len(pts) == sel.sum() > 0
        assert set(cell_type[np.asarray(pts[:, 1], int)]) == {ctype}
        got = sorted(zip(np.round(pts[:, 0], 6), pts[:, 1].astype(int)))
        want = sorted(zip(np.round(t[sel], 6), n[sel]))
        assert got == want
        assert np.allclose(coll.get_edgecolor()[0], to_rgba(viz.COLORS[ctype]))
    assert total == int(np.asarray(sig["SPK"]).sum())
    assert viz.COLORS["E"] != viz.COLORS["I"]
    ax = fig.axes[0]
    assert ax.get_xlabel() == "time (ms)" and "neuron" in ax.get_ylabel()
    close(fig)


@pytest.mark.parametrize("bin_ms", [5, 7.0])
def test_rate_curves_integrate_to_spike_counts(net, bin_ms):
    model, sig = net
    fig = viz.rates(sig, bin_ms=bin_ms)
    spk = np.asarray(sig["SPK"])
    cell_type = sig["SPK"]["cell_type"].values
    steps = int(round(bin_ms / sig.dt_ms))
    for ctype in ("E", "I"):
        patch = find(fig, StepPatch, f"rate-{ctype}")
        rate, edges, _ = patch.get_data()
        cols = cell_type == ctype
        assert edges[0] == 0 and edges[-1] == pytest.approx(DURATION_MS)
        integral = np.sum(rate * np.diff(edges) / 1000.0) * cols.sum()
        assert integral == pytest.approx(spk[:, cols].sum(), rel=1e-9)
        # independently: counts per bin / (cells x bin width)
        per_step = spk[:, cols].sum(axis=1)
        counts = np.add.reduceat(per_step, np.arange(0, per_step.size, steps))
        assert np.allclose(rate, counts / (cols.sum() * np.diff(edges) / 1000.0))
    ax = fig.axes[0]
    assert "(Hz)" in ax.get_ylabel() and "(ms)" in ax.get_xlabel()
    close(fig)


def test_rates_bin_must_be_whole_steps(net):
    with pytest.raises(jtfne.ReadoutError, match=r"bin_ms=0\.25 is invalid; it must be a whole number of steps"):
        viz.rates(net[1], bin_ms=0.25)
    with pytest.raises(jtfne.ReadoutError, match=r"bin_ms=-1 is invalid"):
        viz.rates(net[1], bin_ms=-1)


def test_voltage_traces_are_the_recorded_vm(net):
    model, sig = net
    fig = viz.voltages(sig, neurons=[3, 80])
    for n in (3, 80):
        line = find(fig, matplotlib.lines.Line2D, f"vm-{n}")
        assert np.array_equal(line.get_ydata(), sig["Vm"].sel(neuron=n).values)
        assert np.allclose(line.get_xdata(), sig.dataset["time"].values)
    assert all(ax.get_ylabel() == "Vm (mV)" for ax in fig.axes)
    assert fig.axes[-1].get_xlabel() == "time (ms)"
    default = viz.voltages(sig)
    types = {ax.get_title(loc="left").split("(")[1][0] for ax in default.axes}
    assert types == {"E", "I"}
    with pytest.raises(jtfne.ReadoutError, match="neurons=\\[100\\] is invalid"):
        viz.voltages(sig, neurons=[100])
    close(fig)


def test_field_maps_are_depth_by_time_proxies(net):
    model, sig = net
    bin_ms = 2.0
    fig = viz.fields(sig, bin_ms=bin_ms)
    steps = int(round(bin_ms / sig.dt_ms))
    z = sig.dataset["contact_depth_um"].values
    for probe in ("source", "LFP-proxy", "CSD-proxy"):
        mesh = find(fig, QuadMesh, f"field-{probe}")
        ax = mesh.axes
        assert "proxy" in ax.get_title(loc="left")
        assert "(um)" in ax.get_ylabel() and "depth" in ax.get_ylabel()
        assert ax.yaxis_inverted()   # depth increases downward
        values = np.asarray(mesh.get_array()).reshape(len(z), -1)
        if probe == "source":   # independently: sum of neurons nearest each contact
            depth = sig["source"]["depth_um"].values
            nearest = np.argmin(np.abs(depth[:, None] - z[None, :]), axis=1)
            src = np.asarray(sig["source"].values, dtype=float)
            data = np.stack([src[:, nearest == c].sum(axis=1) for c in range(len(z))], axis=1)
        else:
            data = np.asarray(sig[probe].values, dtype=float)
        means = np.stack([data[i:i + steps].mean(axis=0) for i in range(0, data.shape[0], steps)], axis=1)
        assert values.shape == means.shape
        assert np.allclose(values, means, rtol=1e-4, atol=1e-6 * np.abs(means).max())
    coords = fig.axes[0].collections[0].get_coordinates()
    assert np.allclose((coords[1:, 0, 1] + coords[:-1, 0, 1]) / 2, z)   # rows centred on the contacts
    assert fig.axes[-1].get_xlabel() == "time (ms)" or fig.axes[2].get_xlabel() == "time (ms)"
    close(fig)


def test_fields_needs_a_field_probe():
    cfg = jtfne.Configuration().runtime(duration_ms=20.0).column(n=10).probes(["SPK"])
    sig = jtfne.simulate(jtfne.construct(cfg))
    with pytest.raises(jtfne.ReadoutError, match="none of 'source', 'LFP-proxy', 'CSD-proxy' was recorded"):
        viz.fields(sig)


def test_summary_panels_match_readouts(net):
    model, sig = net
    specs = [jtfne.readout_spec("E", "spike_rate_hz", cell_type="E"),
             jtfne.readout_spec("I", "spike_rate_hz", cell_type="I"),
             jtfne.readout_spec("all", "spike_rate_hz")]
    readouts = model.compute_readout(sig, specs)
    fig = viz.summary(sig, readouts)
    for name in ("E", "I", "all"):
        bar = [p for ax in fig.axes for p in ax.patches if p.get_gid() == f"summary-rate-{name}"]
        assert len(bar) == 1 and bar[0].get_height() == pytest.approx(readouts[name].value)
    vm_hist = find(fig, StepPatch, "summary-vm")
    assert vm_hist.get_data()[0].sum() == sig["Vm"].size   # every sample within -100..40 mV
    text = find(fig, matplotlib.text.Text, "summary-health").get_text()
    assert "health: ok" in text and "all outputs finite: True" in text and "E = " in text and "Hz" in text
    labels = [ax.get_xlabel() + ax.get_ylabel() for ax in fig.axes]
    assert any("(Hz)" in lab for lab in labels) and any("(mV)" in lab for lab in labels)
    assert any("ISI CV" in lab for lab in labels)
    close(fig)


def test_dask_backed_signals_give_the_same_figures(net, lazy):
    sig = net[1]
    assert lazy["SPK"].chunks is not None
    for gid in ("raster-E", "raster-I"):
        a = find(viz.raster(sig), PathCollection, gid).get_offsets()
        b = find(viz.raster(lazy), PathCollection, gid).get_offsets()
        assert np.array_equal(a, b)
    a, b = viz.population_rates(sig, 5.0), viz.population_rates(lazy, 5.0)
    assert all(np.array_equal(a[k][1], b[k][1]) for k in a)
    fa, fb = viz.field_maps(sig, 1.0), viz.field_maps(lazy, 1.0)
    assert all(np.allclose(fa[k][2], fb[k][2], rtol=1e-5, atol=1e-3) for k in fa)
    assert np.array_equal(viz.vm_histogram(sig)[0], viz.vm_histogram(lazy)[0])
    close(viz.summary(lazy))
    close(viz.voltages(lazy, neurons=[0]))


def test_one_network_figures_need_a_member_of_an_ensemble(ensemble):
    model, sig = ensemble
    with pytest.raises(jtfne.ReadoutError, match=r"ensemble of 8 members; pick one network with member="):
        viz.raster(sig)
    one = sig.isel(member=5)
    a = find(viz.raster(sig, member=5), PathCollection, "raster-E").get_offsets()
    b = find(viz.raster(one), PathCollection, "raster-E").get_offsets()
    assert np.array_equal(a, b)
    close(viz.summary(sig, member=5))
    with pytest.raises(jtfne.ReadoutError, match="member=8 is invalid"):
        viz.rates(sig, member=8)


def test_sweep_heatmap_cells_are_means_over_seeds(ensemble):
    model, sig = ensemble
    rate = model.compute_readout(sig, jtfne.readout_spec("rate", "spike_rate_hz"))["rate"]
    fig = viz.sweep_heatmap(rate, x="cell_types.E", y="drive.current.E")
    mesh = find(fig, QuadMesh, "sweep-heatmap")
    got = np.asarray(mesh.get_array()).reshape(2, 2)
    # independently: average the per-member values by hand
    frac = sig.dataset["cell_types.E"].values
    cur = sig.dataset["drive.current.E"].values
    for i, c in enumerate((3.0, 6.0)):
        for j, f in enumerate((0.7, 0.8)):
            sel = (cur == c) & (frac == f)
            assert sel.sum() == 2
            assert got[i, j] == pytest.approx(rate.value[sel].mean())
    ax = mesh.axes
    assert ax.get_xlabel() == "cell_types.E (fraction)"
    assert ax.get_ylabel() == "drive.current.E (current, a.u.)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.7", "0.8"]
    assert fig.axes[1].get_ylabel() == "mean rate (Hz)"   # the colour bar
    # a DataArray with units works the same way
    da = rate.data.assign_attrs(units="Hz")
    assert np.allclose(np.asarray(find(viz.sweep_heatmap(da, x="cell_types.E", y="drive.current.E"),
                                       QuadMesh, "sweep-heatmap").get_array()).reshape(2, 2), got)
    with pytest.raises(jtfne.ReadoutError, match="'nope' is not a member coordinate.*valid ones are "
                                                 "cell_types.E, drive.current.E, seed"):
        viz.sweep_heatmap(rate, x="nope", y="seed")
    close(fig)


def test_distribution_counts_every_member(ensemble):
    model, sig = ensemble
    rate = model.compute_readout(sig, jtfne.readout_spec("rate", "spike_rate_hz"))["rate"]
    fig = viz.distribution(rate, bins=4)
    counts, edges, _ = find(fig, StepPatch, "distribution").get_data()
    assert counts.sum() == 8
    assert np.array_equal(counts, np.histogram(rate.value, bins=4)[0])
    assert fig.axes[0].get_xlabel() == "rate (Hz)" and "count" in fig.axes[0].get_ylabel()
    with pytest.raises(jtfne.ReadoutError, match="one value per member"):
        viz.distribution(xr.DataArray(np.zeros((2, 2)), dims=("member", "x")))
    close(fig)


def test_store_backed_signals(tmp_path):
    cfg = seed_page_configuration(42).runtime(duration_ms=100.0)
    model = jtfne.construct(cfg)
    lazy = jtfne.simulate(model, store=tmp_path / "run.zarr")
    mem = jtfne.simulate(model)
    assert lazy["SPK"].chunks is not None
    for gid in ("raster-E", "raster-I"):
        assert np.array_equal(find(viz.raster(lazy), PathCollection, gid).get_offsets(),
                              find(viz.raster(mem), PathCollection, gid).get_offsets())
    a, b = viz.field_maps(lazy), viz.field_maps(mem)
    assert all(np.allclose(a[k][2], b[k][2], rtol=1e-5, atol=1e-3) for k in a)
    close(viz.summary(lazy))


def test_field_maps_mark_the_layer_boundaries_of_the_column():
    """Dashed lines at the column's own layer boundaries (depth overrides honoured), one label per layer."""
    from matplotlib.lines import Line2D
    from matplotlib.text import Text
    cfg = (jtfne.Configuration().runtime(duration_ms=20.0)
           .column(name="A", layers=["L2/3", "L4", "L5"], n=60, depths_um={"L4": (450.0, 650.0), "L5": (650.0, 900.0)})
           .probes(["SPK", "LFP-proxy", "CSD-proxy"], contacts=9))
    sig = jtfne.simulate(jtfne.construct(cfg))
    fig = viz.fields(sig)
    assert viz.layer_boundaries(sig) == {"L2/3": (100.0, 400.0), "L4": (450.0, 650.0), "L5": (650.0, 900.0)}
    for ax in fig.axes[:2]:                      # the two maps (then their colour bars)
        lines = [a for a in ax.get_children() if isinstance(a, Line2D) and a.get_gid() == "layer-boundary"]
        assert sorted(ln.get_ydata()[0] for ln in lines) == [100.0, 400.0, 450.0, 650.0, 900.0]
        assert all(ln.get_xdata()[0] == 0 and ln.get_xdata()[1] == 1 for ln in lines)   # across the map
        labels = {a.get_text(): a.get_position()[1] for a in ax.get_children()
                  if isinstance(a, Text) and (a.get_gid() or "").startswith("layer-label-")}
        assert labels == {"L2/3": 250.0, "L4": 550.0, "L5": 775.0}
        assert ax.yaxis_inverted() and ax.get_ylim()[0] > 900.0 and ax.get_ylim()[1] < 100.0
    close(fig)
    # several columns: one map per column, picked by name
    two = jtfne.simulate(jtfne.construct(cfg.column(name="B", layers=["L4"], n=20)))
    with pytest.raises(jtfne.ReadoutError, match=r"these signals hold 2 columns \(A, B\); pick one with column="):
        viz.fields(two)
    fig = viz.fields(two, column="B")
    ax = fig.axes[0]
    assert sorted(a.get_ydata()[0] for a in ax.get_children()
                  if isinstance(a, Line2D) and a.get_gid() == "layer-boundary") == [400.0, 600.0]
    assert "[column B]" in ax.get_title(loc="left")
    values = np.asarray(find(fig, QuadMesh, "field-LFP-proxy").get_array())
    assert values.size == 9 * 200                  # B's 9 contacts, 20 ms in 0.1 ms bins
    close(fig)


# ---- population spectrum -------------------------------------------------------------------------------------

def hand_made_signals(n_steps=2000, dt_ms=1.0):
    """Signals built by hand (no simulation): 200 E cells whose population count per step is a 40 Hz sinusoid
    and 50 I cells following 12 Hz, each spike given to a rotating set of cells."""
    t_s = np.arange(n_steps) * dt_ms / 1000.0
    counts = {"E": np.rint(40 + 30 * np.sin(2 * np.pi * 40.0 * t_s)).astype(int),
              "I": np.rint(10 + 8 * np.sin(2 * np.pi * 12.0 * t_s + 0.3)).astype(int)}
    sizes = {"E": 200, "I": 50}
    spk = np.zeros((n_steps, 250), dtype=bool)
    offset = 0
    for ctype, n in sizes.items():
        for step, c in enumerate(counts[ctype]):
            spk[step, offset + (7 * step + np.arange(c)) % n] = True
        offset += n
    cell_type = np.array(["E"] * 200 + ["I"] * 50)
    ds = xr.Dataset({"SPK": (("time", "neuron"), spk)},
                    coords={"time": np.arange(n_steps) * dt_ms, "neuron": np.arange(250),
                            "cell_type": ("neuron", cell_type), "layer": ("neuron", np.full(250, "L2/3"))},
                    attrs={"dt_ms": dt_ms})
    return Signals(ds), spk, cell_type


@pytest.mark.parametrize("bin_ms,nperseg", [(1.0, 250), (2.0, 250)])
def test_population_spectrum_is_welch_of_the_binned_rate(bin_ms, nperseg):
    scipy_signal = pytest.importorskip("scipy.signal")
    sig, spk, cell_type = hand_made_signals()
    got = viz.population_spectrum(sig, bin_ms=bin_ms, nperseg=nperseg)
    assert list(got) == ["E", "I"]
    steps = int(bin_ms)                                     # dt is 1 ms
    for ctype, f_hz in (("E", 40.0), ("I", 12.0)):
        cols = cell_type == ctype
        counts = spk[:, cols].sum(axis=1).reshape(-1, steps).sum(axis=1)
        rate_hz = counts / (cols.sum() * bin_ms / 1000.0)                # independently: numpy, then scipy
        freq, psd = scipy_signal.welch(rate_hz, fs=1000.0 / bin_ms, nperseg=nperseg)
        f, p, n_cells = got[ctype]
        assert n_cells == cols.sum()
        np.testing.assert_allclose(f, freq, rtol=0, atol=1e-12)
        np.testing.assert_allclose(p, psd, rtol=1e-9, atol=1e-9 * psd.max())
        assert f[np.argmax(p)] == pytest.approx(f_hz)                    # the sinusoid put in
    with pytest.raises(jtfne.ConfigurationError, match=r"nperseg=7 is invalid"):
        viz.population_spectrum(sig, nperseg=7)


def test_spectrum_figure_shows_the_spectrum_with_bands(net, ensemble):
    from matplotlib.lines import Line2D
    from matplotlib.patches import Polygon, Rectangle
    _, sig = net
    fig = viz.spectrum(sig)
    curves = viz.population_spectrum(sig)
    ax = fig.axes[0]
    for ctype, (f, p, n_cells) in curves.items():
        line = find(fig, Line2D, f"spectrum-{ctype}")
        np.testing.assert_array_equal(line.get_xdata(), f[f > 0])             # 0 Hz left out of a log plot
        np.testing.assert_array_equal(line.get_ydata(), np.where(p > 0, p, np.nan)[f > 0])
        assert line.get_label().startswith(f"{ctype}: {n_cells} cells, peak ")
    for name, (lo, hi) in viz.BANDS_HZ.items():
        band = find(fig, (Polygon, Rectangle), f"band-{name}")
        xs = band.get_xy()[:, 0] if isinstance(band, Polygon) else [band.get_x(), band.get_x() + band.get_width()]
        assert (min(xs), max(xs)) == (lo, hi)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "alpha band, 8-13 Hz" in legend and "gamma band, 30-80 Hz" in legend
    assert ax.get_xlabel() == "frequency (Hz)" and "Hz²/Hz" in ax.get_ylabel() and ax.get_yscale() == "log"
    assert ax.get_xlim() == (0.0, 150.0) and "resolution" in ax.get_title()
    close(fig)
    model, ens = ensemble
    a = find(viz.spectrum(ens, member=3, max_hz=60), Line2D, "spectrum-E").get_ydata()
    b = viz.population_spectrum(ens.isel(member=3))["E"]
    np.testing.assert_array_equal(a, np.where(b[1] > 0, b[1], np.nan)[b[0] > 0])
    with pytest.raises(jtfne.ReadoutError, match=r"viz.population_spectrum: these signals hold an ensemble of 8"):
        viz.spectrum(ens)
    with pytest.raises(jtfne.ReadoutError, match=r"viz.spectrum: max_hz=900 is invalid; a frequency in \(0, 500\]"):
        viz.spectrum(sig, max_hz=900)


# ---- laminar rasters ---------------------------------------------------------------------------------------

def test_laminar_raster_labels_layers_superficial_on_top():
    """Layers listed deepest first still draw L2/3 on top, column by column; every spike sits on its row."""
    from matplotlib.lines import Line2D
    cfg = (jtfne.Configuration().runtime(seed=3, duration_ms=60.0)
           .column(name="A", layers=["L5", "L2/3", "L4"], n=40).column(name="B", layers=["L4", "L2/3"], n=20)
           .cell_types({"E": 0.8, "I": 0.2}).probes(["SPK"]))
    sig = jtfne.simulate(jtfne.construct(cfg))
    layer, column = sig["SPK"]["layer"].values, sig["SPK"]["column"].values
    groups = [("A", "L2/3"), ("A", "L4"), ("A", "L5"), ("B", "L2/3"), ("B", "L4")]     # depth order per column
    # independently: each (column, layer) group's neurons in index order, groups in that order
    members = [np.flatnonzero((column == c) & (layer == lay)) for c, lay in groups]
    want_order = np.concatenate(members)
    sizes = [m.size for m in members]
    starts = np.cumsum([0] + sizes)
    order, bands = viz.laminar_order(sig)
    np.testing.assert_array_equal(order, want_order)
    assert bands == [(c, lay, int(a), int(b)) for (c, lay), a, b in zip(groups, starts[:-1], starts[1:])]
    fig = viz.raster(sig)
    ax = fig.axes[0]
    row = {n: r for r, n in enumerate(want_order)}
    t, n = spikes_of(sig)
    pts = np.concatenate([find(fig, PathCollection, f"raster-{c}").get_offsets() for c in ("E", "I")])
    assert len(pts) == t.size > 0
    assert sorted(zip(np.round(pts[:, 0], 6), pts[:, 1].astype(int))) == \
        sorted(zip(np.round(t, 6), [row[k] for k in n]))
    ticks = {lab.get_text(): pos for lab, pos in zip(ax.get_yticklabels(), ax.get_yticks())}
    assert ticks == {f"{c}: {lay} ({k})": (a + a + k - 1) / 2 for (c, lay), k, a in zip(groups, sizes, starts)}
    assert ax.yaxis_inverted() and ax.get_ylim() == (59.5, -0.5)          # row 0 (A's L2/3) at the top
    boundaries = {gid: sorted(a.get_ydata()[0] for a in ax.get_children()
                              if isinstance(a, Line2D) and a.get_gid() == gid)
                  for gid in ("layer-boundary", "column-boundary")}
    assert boundaries == {"layer-boundary": [starts[1] - 0.5, starts[2] - 0.5, starts[4] - 0.5],
                          "column-boundary": [starts[3] - 0.5]}
    assert "layer" in ax.get_ylabel() and "superficial at the top" in ax.get_title()
    close(fig)
    by_index = viz.raster(sig, laminar=False)                             # still available: y = neuron index
    assert by_index.axes[0].get_ylabel() == "neuron index"
    np.testing.assert_array_equal(np.sort(find(by_index, PathCollection, "raster-E").get_offsets()[:, 1]),
                                  np.sort(n[sig["SPK"]["cell_type"].values[n] == "E"]))
    with pytest.raises(jtfne.ReadoutError, match=r"viz.raster: laminar='yes' is invalid"):
        viz.raster(sig, laminar="yes")


def test_one_layer_raster_is_unchanged(net):
    ax = viz.raster(net[1]).axes[0]
    assert ax.get_ylabel() == "neuron index" and not ax.yaxis_inverted()
