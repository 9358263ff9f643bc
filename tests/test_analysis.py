"""jaxfne.analysis: lazy, labelled, identical on in-memory and stored Signals, checked against Elephant/scipy."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import jaxfne as jtfne
from conftest import seed_and_drive_ensemble
from jaxfne.sinks import _store
from jaxfne import analysis as A

DT = 0.1


def ensemble_model(n=100, duration_ms=500.0, probes=("SPK", "LFP-proxy"), layers=("L2/3", "L4")):
    base = (jtfne.Configuration().runtime(duration_ms=duration_ms, dt_ms=DT).column(layers=list(layers), n=n)
            .probes(list(probes)))
    return seed_and_drive_ensemble(base, [(1, 4.0), (2, 4.0), (1, 7.0)])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    model = ensemble_model()
    path = tmp_path_factory.mktemp("analysis") / "run.zarr"
    stored = jtfne.simulate(model, store=path, chunk_ms=100.0)
    memory = jtfne.simulate(model, chunk_ms=100.0)
    return model, path, memory, stored


def raster_signals(spk, dt_ms=1.0, cell_type=None, layer=None):
    """Hand-made Signals of a raster (member, time, neuron)."""
    m, t, n = spk.shape
    cell_type = np.array(["E"] * n) if cell_type is None else np.asarray(cell_type)
    layer = np.array(["L2/3"] * n) if layer is None else np.asarray(layer)
    ds = xr.Dataset({"SPK": (("member", "time", "neuron"), spk)},
                    coords={"time": np.arange(t) * dt_ms, "neuron": np.arange(n), "layer": ("neuron", layer),
                            "cell_type": (("member", "neuron"), np.broadcast_to(cell_type, (m, n))),
                            "member": np.arange(m), "seed": ("member", np.arange(m))},
                    attrs={"dt_ms": dt_ms})
    return jtfne.Signals(ds)


ALL = [(A.firing_rate, {}), (A.firing_rate, {"by": None}), (A.firing_rate, {"by": ("cell_type", "layer")}),
       (A.firing_rate, {"by": "neuron", "time_window_ms": (100.0, 350.0)}), (A.cv_isi, {}),
       (A.cv_isi, {"by": "layer"}), (A.fano_factor, {"bin_ms": 50.0}), (A.synchrony, {}),
       (A.synchrony, {"by": None, "bin_ms": 2.0}), (A.population_rate, {"bin_ms": 2.0}),
       (A.rate_spectrum, {"nperseg": 128}), (A.lfp_spectrum, {})]


@pytest.mark.parametrize("fn,kwargs", ALL, ids=lambda x: getattr(x, "__name__", None) or str(x))
def test_lazy_labelled_and_identical_in_memory_and_stored(run, fn, kwargs):
    model, path, memory, stored = run
    lazy_mem, lazy_store = fn(memory, **kwargs), fn(stored, **kwargs)
    assert isinstance(lazy_store.data, da.Array) and isinstance(lazy_mem.data, da.Array)
    assert lazy_store.dims[0] == "member" and lazy_store.dims == lazy_mem.dims
    a, b = lazy_mem.compute(), lazy_store.compute()
    xr.testing.assert_identical(a, b)     # bit for bit, coordinates and attributes too
    assert np.isfinite(a.values).any()
    for name in ("seed", "drive.current.E", "member"):
        np.testing.assert_array_equal(a[name].values, np.asarray(model.member_coords.get(name, np.arange(3))))


def test_result_keeps_member_coordinates_for_groupby(run):
    _, path, _, stored = run
    rate = A.firing_rate(path)               # a store path is opened for you
    by_drive = rate.groupby("drive.current.E").mean().compute()
    assert by_drive.dims == ("drive.current.E", "cell_type")
    np.testing.assert_allclose(by_drive.sel({"drive.current.E": 4.0}).values,
                               rate.compute().isel(member=[0, 1]).mean("member").values)
    # more drive to E cells: faster E cells
    assert float(by_drive.sel({"drive.current.E": 7.0, "cell_type": "E"})) > float(
        by_drive.sel({"drive.current.E": 4.0, "cell_type": "E"}))
    assert rate.attrs["units"] == "Hz"


def test_single_network_drops_member_dim(tmp_path):
    cfg = jtfne.Configuration().runtime(duration_ms=200.0, dt_ms=DT, seed=3).column(n=100)
    model = jtfne.construct(cfg)
    stored = jtfne.simulate(model, store=tmp_path / "one.zarr", chunk_ms=50.0)
    memory = jtfne.simulate(model, chunk_ms=50.0)
    for fn in (A.firing_rate, A.cv_isi):
        a, b = fn(memory).compute(), fn(stored).compute()
        assert a.dims == ("cell_type",) and int(a["seed"]) == 3
        xr.testing.assert_identical(a, b)
    rates = A.firing_rate(stored, by=None).compute()
    count = np.asarray(memory["SPK"]).sum()
    assert float(rates) == pytest.approx(count / (100 * 0.2))


def spike_trains(raster, dt_ms):
    import neo
    import quantities as pq
    t_stop = raster.shape[0] * dt_ms
    return [neo.SpikeTrain(np.flatnonzero(col) * dt_ms * pq.ms, t_start=0 * pq.ms, t_stop=t_stop * pq.ms)
            for col in raster.T]


@pytest.mark.filterwarnings("ignore:The 'copy' argument in Quantity is deprecated")  # elephant 1.2 + quantities 0.16
def test_rates_cv_fano_agree_with_elephant(run):
    import neo
    import quantities as pq
    from elephant.statistics import cv, fanofactor, isi, mean_firing_rate
    _, _, memory, stored = run
    bin_ms = 50.0
    rate = A.firing_rate(stored, by="neuron").compute()
    cvs = A.cv_isi(stored, by="neuron").compute()
    ffs = A.fano_factor(stored, by="neuron", bin_ms=bin_ms).compute()
    group_cv = A.cv_isi(stored).compute()
    for member in range(3):
        raster = np.asarray(memory["SPK"].isel(member=member))
        trains = spike_trains(raster, DT)
        want_rate = [float(mean_firing_rate(st).rescale(pq.Hz)) for st in trains]
        np.testing.assert_allclose(rate.isel(member=member).values, want_rate, rtol=1e-12)
        want_cv = [float(cv(isi(st))) if len(st) >= 3 else np.nan for st in trains]
        np.testing.assert_allclose(cvs.isel(member=member).values, want_cv, rtol=1e-9, equal_nan=True)
        n_bins = int(raster.shape[0] * DT // bin_ms)
        want_ff = []
        for st in trains:
            t = st.magnitude
            windows = [neo.SpikeTrain(t[(t >= k * bin_ms) & (t < (k + 1) * bin_ms)] * pq.ms,
                                      t_start=k * bin_ms * pq.ms, t_stop=(k + 1) * bin_ms * pq.ms)
                       for k in range(n_bins)]
            want_ff.append(fanofactor(windows))
        np.testing.assert_allclose(ffs.isel(member=member).values, want_ff, rtol=1e-9, equal_nan=True)
        # group values are means over the group's neurons
        cell_type = np.asarray(memory.dataset["cell_type"].isel(member=member))
        for ct in ("E", "I"):
            vals = np.array(want_cv)[(cell_type == ct) & ~np.isnan(want_cv)]
            assert float(group_cv.sel(cell_type=ct).isel(member=member)) == pytest.approx(vals.mean(), rel=1e-9)


def test_spectra_agree_with_scipy_welch(run):
    from scipy.signal import welch
    _, _, memory, stored = run
    rate = A.population_rate(stored, by=None, bin_ms=1.0).compute()
    psd = A.rate_spectrum(stored, by=None, bin_ms=1.0, nperseg=128).compute()
    f, want = welch(rate.values, fs=1000.0, nperseg=128, axis=-1)
    np.testing.assert_allclose(psd["frequency"].values, f)
    np.testing.assert_allclose(psd.values, want, rtol=1e-10, atol=1e-12 * want.max())
    lfp = np.asarray(memory["LFP-proxy"]).astype(np.float64)                   # (member, time, contact)
    spec = A.lfp_spectrum(stored).compute()
    nperseg = spec.attrs["description"].split("nperseg=")[1].split(",")[0]
    f, want = welch(lfp, fs=1000.0 / DT, nperseg=int(nperseg), axis=1)
    np.testing.assert_allclose(spec.values, np.moveaxis(want, 1, 2), rtol=1e-9, atol=1e-12 * want.max())
    assert spec.dims == ("member", "contact", "frequency") and spec.attrs["units"].endswith("^2/Hz")


def test_definitions_on_hand_made_rasters(monkeypatch):
    monkeypatch.setattr(A, "BLOCK_BYTES", 64)       # many tiny blocks: ISIs and bins cross block edges
    spk = np.zeros((1, 200, 4), dtype=bool)
    spk[0, [0, 10, 20, 30], 0] = True                 # regular: CV 0
    spk[0, [5, 15, 45], 1] = True                     # ISIs 10, 30: CV 0.5
    spk[0, 100, 2] = True                             # one spike: no CV
    spk[0, [3, 60, 61, 62, 199], 3] = True
    sig = raster_signals(spk, dt_ms=1.0, cell_type=["E", "E", "I", "I"])
    cv = A.cv_isi(sig, by="neuron").compute().values[0]
    np.testing.assert_allclose(cv[:3], [0.0, 0.5, np.nan])
    isi3 = np.diff([3, 60, 61, 62, 199])
    assert cv[3] == pytest.approx(isi3.std() / isi3.mean())
    assert float(A.cv_isi(sig).sel(cell_type="E").isel(member=0)) == pytest.approx(0.25)
    ff = A.fano_factor(sig, by="neuron", bin_ms=50.0).compute().values[0]
    counts0 = np.array([4, 0, 0, 0])
    assert ff[0] == pytest.approx(counts0.var() / counts0.mean())
    rate = A.population_rate(sig, by=None, bin_ms=50.0).compute()
    np.testing.assert_allclose(rate.values[0], np.array([8, 3, 1, 1]) / (4 * 0.05))
    np.testing.assert_allclose(rate["time"].values, [0, 50, 100, 150])
    same = np.repeat(spk[:, :, :1], 4, axis=2)       # identical neurons: chi^2 = 1
    assert float(A.synchrony(raster_signals(same), by=None, bin_ms=5.0).isel(member=0)) == pytest.approx(1.0)


def test_synchrony_of_independent_neurons_is_about_one_over_n():
    rng = np.random.default_rng(0)
    indep = rng.random((1, 20000, 50)) < 0.02
    chi2 = float(A.synchrony(raster_signals(indep), by=None, bin_ms=5.0).isel(member=0))
    assert 0.0 < chi2 < 3.0 / 50


def test_errors_name_the_argument(run):
    _, _, memory, _ = run
    with pytest.raises(jtfne.ConfigurationError, match=r"by='volume' is invalid"):
        A.firing_rate(memory, by="volume")
    with pytest.raises(jtfne.ConfigurationError, match=r"bin_ms=0.05 is invalid; it must be a whole number"):
        A.fano_factor(memory, bin_ms=0.05)
    with pytest.raises(jtfne.ReadoutError, match=r"at least 2 are needed"):
        A.fano_factor(memory, bin_ms=400.0)
    with pytest.raises(jtfne.ConfigurationError, match=r"nperseg=7 is invalid"):
        A.rate_spectrum(memory, nperseg=7)
    with pytest.raises(jtfne.ReadoutError, match=r"'CSD-proxy' was not recorded"):
        A.lfp_spectrum(memory, probe="CSD-proxy")
    with pytest.raises(jtfne.ConfigurationError, match=r"time_window_ms=\(5, 1\) is invalid"):
        A.firing_rate(memory, time_window_ms=(5, 1))


def test_dask_distributed_local_cluster(run):
    distributed = pytest.importorskip("distributed")
    _, path, _, stored = run
    want = {"rate": A.firing_rate(stored).compute(), "cv": A.cv_isi(stored).compute(),
            "psd": A.rate_spectrum(stored, nperseg=128).compute()}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        got = {"rate": A.firing_rate(path).compute(), "cv": A.cv_isi(path).compute(),
               "psd": A.rate_spectrum(path, nperseg=128).compute()}
        assert len(client.scheduler_info()["workers"]) == 2
    for k in want:
        xr.testing.assert_identical(want[k], got[k])


# -- memory: a store several times larger than the memory the analysis may use --------------------------

MEMORY_CHILD = textwrap.dedent("""
    import json, resource, sys
    import dask
    import jaxfne as jtfne
    from jaxfne import analysis as A

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

    path, headroom = sys.argv[1], int(sys.argv[2])
    dask.config.set(scheduler="threads", num_workers=2)
    import zarr
    zarr.config.set({"threading.max_workers": 2})    # a fixed number of threads: a fixed stack space
    signals = jtfne.open_signals(path)
    A.firing_rate(signals, time_window_ms=(0.0, 20000.0)).compute()  # warm up threads and imports
    with open("/proc/self/clear_refs", "w") as fh:                     # reset the RSS high-water mark
        fh.write("5")
    base_vm, base_rss = status("VmSize"), status("VmRSS")
    resource.setrlimit(resource.RLIMIT_AS, (base_vm + headroom, base_vm + headroom))
    try:
        rate = A.firing_rate(signals, by="neuron").compute()
    except MemoryError:
        sys.exit(f"MemoryError: VmSize {status('VmSize')} VmRSS {status('VmRSS')} base_vm {base_vm}")
    peak_rss = status("VmHWM")
    try:                                     # the control: loading the raster whole does not fit
        signals["SPK"].values
        whole_fits = True
    except MemoryError:
        whole_fits = False
    print(json.dumps({"rate": rate.values.tolist(), "base_rss": base_rss, "peak_rss": peak_rss,
                      "whole_fits": whole_fits}))
""")



def synthetic_store(path, model, n_steps, chunk_steps, density, seed=0):
    """A store of ``model``'s layout, ``n_steps`` long, written through the store layer from random
    sparse rasters (no simulation: fast); returns the spike counts (member, neuron)."""
    cfg = model.config.runtime(duration_ms=n_steps * DT)
    model = dataclasses.replace(model, config=cfg, layout=dataclasses.replace(model.layout, n_steps=n_steps,
                                                                              probes=("SPK",)))
    key = _store.RunKey.of(model, chunk_steps)
    zeros = {"v": np.zeros((model.n_members, model.layout.n), np.float32)}
    _store.create(path, model, key, _store.state_layout(zeros), jtfne.manifest(model))
    st = _store.Store(path)
    rng = np.random.default_rng(seed)
    counts = np.zeros((model.n_members, model.layout.n), np.int64)
    for t0 in range(0, n_steps, chunk_steps):
        keep = min(chunk_steps, n_steps - t0)
        block = np.zeros((model.n_members, keep, model.layout.n), bool)
        block.reshape(-1)[rng.integers(0, block.size, int(density * block.size))] = True
        counts += block.sum(axis=1)
        st.write_chunk(0, t0, {"SPK": block})
        st.commit(0, t0, keep, zeros, np.ones(model.n_members, bool))
    return counts


def test_rates_of_a_store_larger_than_the_memory_cap(run, tmp_path):
    """The child may use 96 MiB of address space beyond what it holds after imports and a warm-up
    (RLIMIT_AS); the store holds 600 MB of spikes (6x that) and the rates must still come out."""
    headroom = 96 * 2**20
    model, n_steps = run[0], 2_000_000                            # 3 members x 100 neurons x 2e6 steps
    path = tmp_path / "big.zarr"
    counts = synthetic_store(path, model, n_steps, chunk_steps=100_000, density=0.002)
    assert counts.size * n_steps > 4 * headroom
    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}
    out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(path), str(headroom)], capture_output=True,
                         text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(result["rate"], counts / (n_steps * DT / 1000.0))
    assert not result["whole_fits"]        # the cap binds: the raster does not fit whole
    assert result["peak_rss"] - result["base_rss"] < counts.size * n_steps / 4


def test_grouping_by_column_of_several_columns(tmp_path):
    cfg = (jtfne.Configuration().runtime(seed=3, duration_ms=200.0, dt_ms=DT)
           .column(name="A", layers=["L2/3", "L4"], n={"L2/3": 40, "L4": 30})
           .column(name="B", layers=["L2/3"], n=50).drive(current={"E": 6.0, "I": 4.0})
           .ensemble(seeds=[1, 2]))
    memory = jtfne.simulate(jtfne.construct(cfg))
    stored = jtfne.simulate(jtfne.construct(cfg), store=tmp_path / "cols.zarr")
    spk = memory["SPK"]
    col, ctype = np.asarray(spk["column"].values), np.asarray(spk["cell_type"].values)
    rates = A.firing_rate(memory, by=("column", "cell_type")).compute()
    assert list(rates["column"].values) == ["A", "B"] and rates.dims == ("member", "column", "cell_type")
    counts = spk.values.sum(axis=1)                                    # (member, neuron)
    ctype = np.broadcast_to(ctype, counts.shape)                       # cell types may differ per member
    for c in ("A", "B"):
        for t in ("E", "I"):
            sel = (col == c) & (ctype == t)                            # (member, neuron)
            want = (counts * sel).sum(axis=1) / sel.sum(axis=1) / (200.0 / 1000.0)
            np.testing.assert_allclose(rates.sel(column=c, cell_type=t).values, want)
    xr.testing.assert_identical(A.firing_rate(stored, by="column").compute(), A.firing_rate(memory, by="column").compute())
    per_neuron = A.firing_rate(memory, by="neuron")
    assert list(per_neuron["column"].values) == list(col)
    with pytest.raises(jtfne.ConfigurationError, match=r"by='area' is invalid; use 'cell_type', 'layer', 'column'"):
        A.firing_rate(memory, by="area")
