"""The one ISI CV (jaxfne._stats) on hand-made rasters, and readout, analysis and figure agreeing with it."""

import numpy as np
import pytest

import jaxfne as jtfne
from jaxfne import analysis, viz
from jaxfne._stats import MIN_ISIS, cv_from_isi_sums, isi_sums, mean_cv, raster_isi_sums


def cv_of(raster):
    return cv_from_isi_sums(raster_isi_sums(raster))


def test_regular_spikes_have_cv_zero():
    spk = np.zeros((200, 2), bool)
    spk[5::20, 0] = True
    spk[::7, 1] = True
    np.testing.assert_array_equal(cv_of(spk), [0.0, 0.0])


@pytest.mark.parametrize("a, b", [(10, 30), (3, 4), (1, 100), (50, 50)])
def test_alternating_isis(a, b):
    # ISIs a, b, a, b: mean (a+b)/2, population std (ddof=0) |a-b|/2, so CV = |a-b|/(a+b)
    t = np.cumsum([0, a, b, a, b])
    spk = np.zeros((t[-1] + 1, 1), bool)
    spk[t, 0] = True
    assert cv_of(spk)[0] == pytest.approx(abs(a - b) / (a + b), rel=1e-15)
    isi = np.diff(t).astype(float)
    assert cv_of(spk)[0] == pytest.approx(isi.std(ddof=0) / isi.mean(), rel=1e-15)


def test_neurons_with_fewer_than_two_isis_have_none():
    assert MIN_ISIS == 2
    spk = np.zeros((50, 4), bool)
    spk[[1, 11, 31], 0] = True        # 2 ISIs (10, 20): CV 1/3
    spk[[2, 9], 1] = True             # 1 ISI
    spk[4, 2] = True                  # 1 spike
    cv = cv_of(spk)                   # neuron 3: none
    assert cv[0] == pytest.approx(1 / 3, rel=1e-15)
    assert np.isnan(cv[1:]).all()
    assert mean_cv(cv) == cv[0]
    assert np.isnan(mean_cv(cv[1:])) and np.isnan(mean_cv([]))


def test_the_population_cv_is_the_mean_over_neurons_not_pooled_isis():
    spk = np.zeros((100, 3), bool)
    spk[[0, 20, 40, 60], 0] = True    # CV 0
    spk[[5, 15, 45], 1] = True        # ISIs 10, 30: CV 0.5
    spk[[7, 9], 2] = True             # ignored
    assert mean_cv(cv_of(spk)) == pytest.approx(0.25, rel=1e-15)


def test_sums_do_not_depend_on_spike_order_or_the_raster():
    rng = np.random.default_rng(1)
    spk = rng.random((500, 30)) < 0.05
    t, k = np.nonzero(spk)
    perm = rng.permutation(t.size)
    sums = isi_sums(t[perm], k[perm], 30)
    np.testing.assert_array_equal(sums, raster_isi_sums(spk))
    np.testing.assert_array_equal(sums, raster_isi_sums(spk.astype(np.uint8)))
    for i in range(30):
        isi = np.diff(np.flatnonzero(spk[:, i]))
        assert sums[i].tolist() == [isi.size, isi.sum(), (isi * isi).sum()]
    assert isi_sums([], [], 3).tolist() == [[0, 0, 0]] * 3


def test_exact_beyond_float_precision():
    # ISIs 2**30 and 2**30 + 1 (twice each): k S2 - S1^2 = 4 * ... is tiny next to S1^2 ~ 2**64
    a, b = 2**30, 2**30 + 1
    sums = np.array([[4, 2 * (a + b), 2 * (a * a + b * b)]], dtype=np.int64)
    assert cv_from_isi_sums(sums)[0] == pytest.approx(1 / (a + b), rel=1e-12)     # |a-b|/(a+b)


# -- readout, analysis and the summary figure on one simulated run ---------------------------------

@pytest.fixture(scope="module")
def signals():
    cfg = (jtfne.Configuration()
           .runtime(seed=5, duration_ms=300.0, dt_ms=0.1)
           .column(name="c", layers=["L2/3", "L4"], n=40)
           .cell_types({"E": 0.75, "I": 0.25})
           .drive(current={"E": 6.0, "I": 2.0}, noise=2.0)
           .probes(["SPK", "Vm"]))
    sig = jtfne.simulate(jtfne.construct(cfg))
    assert np.isfinite(cv_of(np.asarray(sig["SPK"]))).sum() >= 10     # enough neurons with a CV
    return sig


def readout(sig, **selectors):
    return jtfne.compute_readout(sig, jtfne.readout_spec("cv", "cv_isi", **selectors))["cv"].value


def test_readout_analysis_and_figure_agree_with_the_shared_cv(signals):
    spk = np.asarray(signals["SPK"])
    ctype = np.asarray(signals["SPK"]["cell_type"].values).astype(str)
    per_neuron = cv_of(spk)

    # analysis (lazy, block-wise sums): per neuron and per group, bit for bit
    np.testing.assert_array_equal(analysis.cv_isi(signals, by="neuron").values, per_neuron)
    groups = analysis.cv_isi(signals).compute()
    # readout: the same group means, bit for bit
    assert readout(signals) == mean_cv(per_neuron)
    for t in ("E", "I"):
        want = mean_cv(per_neuron[ctype == t])
        assert readout(signals, cell_type=t) == want
        assert float(groups.sel(cell_type=t)) == want
    # the summary figure's per-neuron CVs and its histogram of them
    times, neurons = viz.spike_coordinates(signals)
    np.testing.assert_array_equal(viz._isi_cv(signals["SPK"], times, neurons), per_neuron)
    fig = viz.summary(signals)
    ax_cv = fig.axes[1]
    finite = per_neuron[np.isfinite(per_neuron)]
    bins = np.linspace(0.0, max(2.0, finite.max()), 25)
    labels = ax_cv.get_legend_handles_labels()[1]
    for t, bars in zip(("E", "I"), ax_cv.containers):
        vals = per_neuron[(ctype == t) & np.isfinite(per_neuron)]
        assert f"{t} ({vals.size} neurons)" in labels
        np.testing.assert_array_equal([b.get_height() for b in bars], np.histogram(vals, bins=bins)[0])


def test_time_windows_agree(signals):
    spk = np.asarray(signals["SPK"])
    want = mean_cv(cv_of(spk[1000:2500]))
    assert readout(signals, time_window_ms=(100.0, 250.0)) == want
    got = analysis.cv_isi(signals, by=None, time_window_ms=(100.0, 250.0)).values
    assert float(got) == want
