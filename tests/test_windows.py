"""``time_window_ms=(start, stop)`` selects exactly the steps whose start time lies in [start, stop).

docs/analysis.md: "time_window_ms=(start, stop) restricts any function to steps with start <= t < stop";
docs/readouts.md: "the steps whose start time k * dt lies in [start, stop)" and "a window that runs past the
end of the recording is cut there (rates then use the time actually covered)". Bins start at the window
start and ``population_rate``'s ``time`` is the bin start in ms.

Hand-made recordings with spikes (and extreme values) exactly on the first and last step inside the
window and on the steps just outside it; the expected numbers are written out by hand or computed in
numpy from explicit integer step ranges (never through jaxfne's window code). Every check runs on
in-memory Signals and on Signals backed by a store whose chunks do not line up with the window.
"""

import numpy as np
import pytest
from scipy.signal import welch

import jaxfne as jtfne
from jaxfne import analysis as A
from jaxfne.sinks import _store, build_dataset

DT = 0.1
N_STEPS = 100                     # 10 ms
WINDOW = (2.0, 7.0)               # steps 20 .. 69: 50 steps, 5 ms
FIRST, STOP = 20, 70              # first step inside, first step after
W_S = (STOP - FIRST) * DT / 1000.0

CFG = (jtfne.Configuration().runtime(seed=5, duration_ms=N_STEPS * DT, dt_ms=DT)
       .column(n=4).cell_types({"E": 0.5, "I": 0.5})           # neurons 0, 1: E; 2, 3: I
       .probes(["SPK", "Vm", "source", "LFP-proxy"], contacts=3))

#: spike steps per neuron: inside [20, 70) and on the steps just outside it (19, 70)
SPIKES = {0: [20, 30, 69],           # first and last step inside: 3 spikes, ISIs 10 and 39
          1: [19, 45, 70],           # just outside on both sides: 1 spike inside
          2: [19, 20, 69, 70],       # both edges, inside and outside: 2 spikes inside, 1 ISI
          3: [0, 99]}                # far outside: none inside
INSIDE = np.array([3, 1, 2, 0])


def raster():
    spk = np.zeros((N_STEPS, 4), bool)
    for i, steps in SPIKES.items():
        spk[steps, i] = True
    return spk


def traces(seed=0):
    rng = np.random.default_rng(seed)
    vm = -70.0 + rng.uniform(-1.0, 1.0, (N_STEPS, 4))
    vm[FIRST - 1] = 25.0               # just before: larger than anything inside
    vm[STOP] = 28.0                    # just after: the largest of all
    vm[FIRST, 1] = -90.0               # the minimum inside, on its first step
    vm[STOP - 1, 2] = 20.0             # the maximum inside, on its last step
    vm[FIRST - 1, 1] = -95.0           # the minimum of all, just before
    src = rng.normal(0.0, 1.0, (N_STEPS, 4))
    src[FIRST - 1] = 50.0
    src[STOP] = -60.0
    lfp = rng.normal(0.0, 1.0, (N_STEPS, 3))
    lfp[FIRST - 1] = 40.0
    lfp[STOP] = -45.0
    return vm, src, lfp


@pytest.fixture(scope="module")
def model():
    return jtfne.construct(CFG)


def arrays_of(model):
    vm, src, lfp = traces()
    dtype = model.layout.dtype
    every = model.layout.sample_every
    return {"SPK": raster()[None], "Vm": vm[None, ::every].astype(dtype), "source": src[None, ::every].astype(dtype),
            "LFP-proxy": lfp[None, ::every].astype(dtype)}


def write_store(path, model, arrays, chunk_steps):
    """A real jaxfne store of ``arrays``, written chunk by chunk through the store layer (no simulation)."""
    key = _store.RunKey.of(model, chunk_steps)
    zeros = {"v": np.zeros((1, model.layout.n), np.float32)}
    _store.create(path, model, key, _store.state_layout(zeros), jtfne.manifest(model))
    st = _store.Store(path)
    every = model.layout.sample_every
    for t0 in range(0, model.layout.n_steps, chunk_steps):
        keep = min(chunk_steps, model.layout.n_steps - t0)
        part = {k: (v[:, t0:t0 + keep] if model.layout.geometry(k)["stride"] == 1
                    else v[:, t0 // every: -(-(t0 + keep) // every)]) for k, v in arrays.items()}
        st.write_chunk(0, t0, part)
        st.commit(0, t0, keep, zeros, np.ones(1, bool))


@pytest.fixture(scope="module", params=["memory", "store"])
def signals(request, model, tmp_path_factory):
    arrays = arrays_of(model)
    if request.param == "memory":
        return jtfne.Signals(build_dataset(arrays, model, squeeze_member=True))
    path = tmp_path_factory.mktemp("windows") / "run.zarr"
    write_store(path, model, arrays, chunk_steps=30)          # chunk edges at 30, 60, 90: not the window's
    opened = jtfne.open_signals(path)
    assert opened.dataset.sizes["time"] == N_STEPS
    return opened


def test_the_hand_made_signals_look_like_a_run(signals, model):
    np.testing.assert_array_equal(np.asarray(signals["SPK"]), raster())
    t = signals["SPK"]["time"].values
    assert t.size == N_STEPS and t[FIRST] == pytest.approx(WINDOW[0]) and t[STOP] == pytest.approx(WINDOW[1])
    assert list(signals["SPK"]["cell_type"].values) == ["E", "E", "I", "I"]


# -- jaxfne.analysis --------------------------------------------------------------------------------


def test_firing_rate_counts_first_and_last_step_only(signals):
    per_neuron = A.firing_rate(signals, by="neuron", time_window_ms=WINDOW).compute()
    np.testing.assert_allclose(per_neuron.values, INSIDE / W_S, rtol=1e-12)          # 600, 200, 400, 0 Hz
    np.testing.assert_allclose(per_neuron.values, [600.0, 200.0, 400.0, 0.0], rtol=1e-12)
    by_type = A.firing_rate(signals, time_window_ms=WINDOW).compute()
    np.testing.assert_allclose(by_type.sel(cell_type="E"), (3 + 1) / (2 * W_S), rtol=1e-12)
    np.testing.assert_allclose(by_type.sel(cell_type="I"), (2 + 0) / (2 * W_S), rtol=1e-12)
    assert "over 5 ms" in by_type.attrs["description"]
    whole = A.firing_rate(signals, by=None).compute()                 # no window: all 12 spikes, 10 ms
    np.testing.assert_allclose(float(whole), 12 / (4 * N_STEPS * DT / 1000.0), rtol=1e-12)


@pytest.mark.parametrize("window,first,stop", [
    ((2.05, 6.95), 21, 70),        # off the step grid: steps 21 (2.1 ms) .. 69 (6.9 ms)
    ((1.95, 7.05), 20, 71),        # steps 20 .. 70
    ((2.0, 6.9), 20, 69),          # stop on a step start excludes that step
    ((5.0, 50.0), 50, 100),        # past the end: cut there
])
def test_firing_rate_of_other_windows(signals, window, first, stop):
    raster_ = raster()
    want = raster_[first:stop].sum(axis=0) / ((stop - first) * DT / 1000.0)
    got = A.firing_rate(signals, by="neuron", time_window_ms=window).compute()
    np.testing.assert_allclose(got.values, want, rtol=1e-12)


def test_cv_isi_sees_only_the_isis_inside(signals):
    cv = A.cv_isi(signals, by="neuron", time_window_ms=WINDOW).compute().values
    isi = np.array([10.0, 39.0])
    assert cv[0] == pytest.approx(isi.std() / isi.mean(), rel=1e-12)
    # neuron 1 has one spike inside and neuron 2 one ISI: no CV (with 19 or 70 inside both would have one)
    assert np.isnan(cv[1]) and np.isnan(cv[2]) and np.isnan(cv[3])


def test_fano_factor_bins_start_at_the_window(signals):
    # bins of 2.5 ms: steps [20, 45) and [45, 70)
    ff = A.fano_factor(signals, by="neuron", bin_ms=2.5, time_window_ms=WINDOW).compute().values
    counts = np.array([[2, 1], [0, 1], [1, 1]])
    want = counts.var(axis=1) / counts.mean(axis=1)
    np.testing.assert_allclose(ff[:3], want, rtol=1e-12)                 # 1/6, 1/2, 0
    np.testing.assert_allclose(ff[:3], [1 / 6, 0.5, 0.0], rtol=1e-12, atol=1e-15)
    assert np.isnan(ff[3])


def golomb_chi2(x):
    """(bins, neurons) counts -> Var_t(mean_i x_i) / mean_i Var_t(x_i) (ddof=0)."""
    return x.mean(axis=1).var() / x.var(axis=0).mean()


def test_synchrony_of_the_window(signals):
    x = raster()[FIRST:STOP].reshape(5, 10, 4).sum(axis=1)          # bins of 1 ms
    np.testing.assert_array_equal(x.T, [[1, 1, 0, 0, 1], [0, 0, 1, 0, 0], [1, 0, 0, 0, 1], [0, 0, 0, 0, 0]])
    got = float(A.synchrony(signals, by=None, bin_ms=1.0, time_window_ms=WINDOW))
    assert got == pytest.approx(golomb_chi2(x), rel=1e-12)


def test_population_rate_values_and_time_labels(signals):
    pop = A.population_rate(signals, by=None, bin_ms=1.0, time_window_ms=WINDOW).compute()
    # spikes per 1-ms bin from 2 ms on: [20,30): 2, [30,40): 1, [40,50): 1, [50,60): 0, [60,70): 2
    np.testing.assert_allclose(pop.values, np.array([2, 1, 1, 0, 2]) / (4 * 0.001), rtol=1e-12)
    np.testing.assert_allclose(pop["time"].values, [2.0, 3.0, 4.0, 5.0, 6.0], rtol=0, atol=1e-9)
    assert pop["time"].attrs["units"] == "ms"
    by_type = A.population_rate(signals, bin_ms=2.5, time_window_ms=WINDOW).compute()
    np.testing.assert_allclose(by_type["time"].values, [2.0, 4.5], rtol=0, atol=1e-9)
    # [20, 45): neuron 0 twice (20, 30); [45, 70): neurons 0 (69) and 1 (45)
    np.testing.assert_allclose(by_type.sel(cell_type="E").values, np.array([2, 2]) / (2 * 0.0025), rtol=1e-12)
    np.testing.assert_allclose(by_type.sel(cell_type="I").values, np.array([1, 1]) / (2 * 0.0025), rtol=1e-12)
    # bins of one step: exactly the 50 steps of the window, labelled 2.0, 2.1, ..., 6.9 ms
    fine = A.population_rate(signals, by=None, bin_ms=DT, time_window_ms=WINDOW).compute()
    np.testing.assert_allclose(fine["time"].values, (FIRST + np.arange(STOP - FIRST)) * DT, rtol=0, atol=1e-9)
    np.testing.assert_allclose(fine.values, raster()[FIRST:STOP].sum(axis=1) / (4 * DT / 1000.0), rtol=1e-12)
    # a window off the step grid: its first bin starts with step 21, at 2.1 ms
    off = A.population_rate(signals, by=None, bin_ms=1.0, time_window_ms=(2.05, 6.95)).compute()
    np.testing.assert_allclose(off["time"].values, [2.1, 3.1, 4.1, 5.1], rtol=0, atol=1e-9)
    want = raster()[21:61].reshape(4, 10, 4).sum(axis=(1, 2)) / (4 * 0.001)
    np.testing.assert_allclose(off.values, want, rtol=1e-12)


def test_rate_spectrum_of_the_window(signals):
    # bins of one step: 50 samples; nperseg 10 (step 5): the segments cover samples 0 .. 49
    got = A.rate_spectrum(signals, by=None, bin_ms=DT, nperseg=10, time_window_ms=WINDOW).compute()
    rate = raster()[FIRST:STOP].sum(axis=1) / (4 * DT / 1000.0)
    f, want = welch(rate, fs=1000.0 / DT, nperseg=10)
    np.testing.assert_allclose(got["frequency"].values, f, rtol=1e-12)
    np.testing.assert_allclose(got.values, want, rtol=1e-9, atol=1e-12 * want.max())


def test_lfp_spectrum_of_the_window(signals):
    got = A.lfp_spectrum(signals, nperseg=10, time_window_ms=WINDOW).compute()
    lfp = traces()[2].astype(np.float32).astype(np.float64)
    f, want = welch(lfp[FIRST:STOP], fs=1000.0 / DT, nperseg=10, axis=0)
    np.testing.assert_allclose(got["frequency"].values, f, rtol=1e-12)
    np.testing.assert_allclose(got.values, want.T, rtol=1e-9, atol=1e-12 * want.max())


# -- readouts ---------------------------------------------------------------------------------------


def readout(signals, metric, window=WINDOW, **selectors):
    spec = jtfne.readout_spec("x", metric, time_window_ms=window, **selectors)
    return jtfne.compute_readout(signals, [spec])["x"].value


def test_readout_spike_count_and_rate(signals):
    assert readout(signals, "spike_count") == INSIDE.sum() == 6
    assert readout(signals, "spike_count", cell_type="E") == 4
    assert readout(signals, "spike_count", cell_type="I") == 2
    assert readout(signals, "spike_rate_hz") == pytest.approx(6 / (4 * W_S), rel=1e-12)
    assert readout(signals, "spike_rate_hz", cell_type="I") == pytest.approx(2 / (2 * W_S), rel=1e-12)
    # off the grid: steps 21 .. 69 (49 steps): neuron 0 loses step 20, neuron 2 too
    assert readout(signals, "spike_count", window=(2.05, 6.95)) == 4
    assert readout(signals, "spike_rate_hz", window=(2.05, 6.95)) == pytest.approx(4 / (4 * 49 * DT / 1000.0),
                                                                                  rel=1e-12)
    # past the end: cut at 10 ms; the rate uses the 5 ms covered (steps 50 .. 99: 69, 70, 69, 70, 99)
    assert readout(signals, "spike_count", window=(5.0, 50.0)) == 5
    assert readout(signals, "spike_rate_hz", window=(5.0, 50.0)) == pytest.approx(5 / (4 * 0.005), rel=1e-12)


def test_readout_cv_isi(signals):
    isi = np.array([10.0, 39.0])
    assert readout(signals, "cv_isi") == pytest.approx(isi.std() / isi.mean(), rel=1e-12)
    assert np.isnan(readout(signals, "cv_isi", cell_type="I"))      # one ISI inside (three with 19, 70)


def test_readout_membrane_and_field_metrics(signals):
    vm, src, lfp = (np.asarray(x, np.float32).astype(np.float64) for x in traces())
    assert readout(signals, "min_V_m") == -90.0
    assert readout(signals, "max_V_m") == 20.0
    assert readout(signals, "mean_V_m") == pytest.approx(vm[FIRST:STOP].mean(), rel=1e-6)
    assert readout(signals, "mean_V_m", cell_type="E") == pytest.approx(vm[FIRST:STOP, :2].mean(), rel=1e-6)
    assert readout(signals, "source_abs_mean") == pytest.approx(np.abs(src[FIRST:STOP]).mean(), rel=1e-6)
    assert readout(signals, "lfp_abs_mean") == pytest.approx(np.abs(lfp[FIRST:STOP]).mean(), rel=1e-6)
    assert readout(signals, "max_V_m", window=(1.95, 7.05)) == 28.0                  # 70 is inside now
    assert readout(signals, "min_V_m", window=(1.9, 7.0)) == -95.0                   # and 19 here


# -- sampled probes (probes(every_ms=...)): the window applies to the sample times -------------------

EVERY = 5                                                  # every 0.5 ms: samples at 0, 0.5, ..., 9.5 ms


@pytest.fixture(scope="module", params=["memory", "store"])
def sampled(request, tmp_path_factory):
    model = jtfne.construct(CFG.probes(every_ms=EVERY * DT))
    assert model.layout.sample_every == EVERY
    arrays = arrays_of(model)
    if request.param == "memory":
        return jtfne.Signals(build_dataset(arrays, model, squeeze_member=True))
    path = tmp_path_factory.mktemp("windows_sampled") / "run.zarr"
    write_store(path, model, arrays, chunk_steps=30)
    return jtfne.open_signals(path)


def test_window_on_sampled_probes(sampled):
    vm, _, lfp = (np.asarray(x, np.float32).astype(np.float64) for x in traces())
    vm_s, lfp_s = vm[::EVERY], lfp[::EVERY]                 # sample j is step 5 j, at 0.5 j ms
    assert sampled["Vm"].dims[0] == "time_sampled"
    # [2.0, 7.0): samples 4 .. 13 (steps 20 .. 65)
    assert readout(sampled, "mean_V_m") == pytest.approx(vm_s[4:14].mean(), rel=1e-6)
    assert readout(sampled, "max_V_m") == pytest.approx(vm_s[4:14].max(), rel=1e-6)
    assert readout(sampled, "max_V_m", window=(2.0, 7.5)) == 28.0                      # step 70 = sample 14
    assert readout(sampled, "lfp_abs_mean") == pytest.approx(np.abs(lfp_s[4:14]).mean(), rel=1e-6)
    got = A.lfp_spectrum(sampled, nperseg=4, time_window_ms=WINDOW).compute()
    f, want = welch(lfp_s[4:14], fs=1000.0 / (EVERY * DT), nperseg=4, axis=0)
    np.testing.assert_allclose(got["frequency"].values, f, rtol=1e-12)
    np.testing.assert_allclose(got.values, want.T, rtol=1e-9, atol=1e-12 * want.max())
    # spikes stay complete: the same window counts the same 6 spikes
    assert readout(sampled, "spike_count") == 6
