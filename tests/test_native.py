"""The native CPU engine (jaxfne/engine/csrc/izh_chunk.cc) against independent references and the XLA engine.

The two engines implement one model. They agree to rounding, not bit for bit
(XLA contracts multiply-adds into FMAs where it likes, and the native noise
transform is a more accurate erfinv than XLA's), so: float64 runs must give the
same spikes and Vm within 1e-6 mV over 300 ms; float32 runs the same spikes
until chaos amplifies a rounding difference (measured: no member of 16 before
167 ms, so 100 ms are compared exactly) and the same statistics after. Within
the native engine every invariant is exact: same seed, same bits, whatever the
ensemble size, member order, chunking, device count or thread count.
"""

import ctypes

import numpy as np
import pytest
import scipy.special
import xarray as xr

import jaxfne as jtfne
from jaxfne.engine import _native
from jaxfne.engine import _driver as _simulate
from jaxfne._errors import SimulationError
from jaxfne.engine._step import noise_sample

from conftest import needs_native, seed_page_configuration

pytestmark = needs_native

DT = 0.1


def _c(lib, name, x, out_dtype):
    x = np.ascontiguousarray(x)
    out = np.empty(x.shape, out_dtype)
    getattr(lib, name)(x.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p), ctypes.c_int64(x.size))
    return out


def base_config(seed=1, duration_ms=300.0, dtype="float32"):
    return (jtfne.Configuration().runtime(seed=seed, duration_ms=duration_ms, dt_ms=DT, dtype=dtype).column(n=100)
            .cell_types({"E": 0.75, "I": 0.25}).connectivity()
            .set_emitter(family="izhikevich", preset="cortical_eig").probes(["SPK", "Vm"]))


def laminar_config(seed=3, duration_ms=300.0, dtype="float32"):
    """Three layers, two delay classes beyond one step, field proxies."""
    return (jtfne.Configuration().runtime(seed=seed, duration_ms=duration_ms, dt_ms=DT, dtype=dtype)
            .column(layers=["L2/3", "L4", "L5"], n=150)
            .connectivity(pathways={"L4.E->L2/3.E": {"strength": 15.0, "delay_ms": 2.0},
                                    "L5.E->L4.I": {"p": 0.3, "strength": 5.0, "delay_ms": 1.0}})
            .probes(["SPK", "Vm", "source", "LFP-proxy"]))


def both(cfg, **kw):
    model = jtfne.construct(cfg)
    return (model, jtfne.simulate(model, engine="xla", **kw).dataset,
            jtfne.simulate(model, engine="native", **kw).dataset)


# -- the noise transform ------------------------------------------------------------

def test_log_is_accurate():
    lib = _native.library()
    x = np.concatenate([np.logspace(-7, 0, 200_001, dtype=np.float64),
                        np.random.default_rng(0).uniform(1e-7, 1.0, 200_000)]).astype(np.float32)
    y = _c(lib, "jaxfne_log_f32", x, np.float32)
    exact = np.log(x.astype(np.float64))
    assert np.max(np.abs(y - exact) / np.maximum(1.0, np.abs(exact))) < 2.5e-7
    assert _c(lib, "jaxfne_log_f32", np.float32([1.0]), np.float32)[0] == 0.0


def test_noise_transform_is_sqrt2_erfinv_of_the_xla_levels():
    lib = _native.library()
    rng = np.random.default_rng(1)
    h = np.concatenate([rng.integers(0, 2**32, 1_000_000, dtype=np.uint64).astype(np.uint32),
                        np.uint32([0, 255, 256, 0x7FFFFF00, 0x80000000, 0xFFFFFF00, 0xFFFFFFFF])])
    level = (h >> 8).astype(np.int64)
    x = (2 * level + 1 - 2**24) / 2.0**24                     # the levels of _step.noise_sample, exactly
    exact = np.sqrt(2.0) * scipy.special.erfinv(x)
    z32 = _c(lib, "jaxfne_std_normal_f32", h, np.float32)
    z64 = _c(lib, "jaxfne_std_normal_f64", h, np.float64)
    assert np.max(np.abs(z32 - exact)) < 2e-6
    assert np.max(np.abs(z64 - exact) / np.maximum(1.0, np.abs(exact))) < 1e-13
    # symmetric: level k and level 2^24 - 1 - k give opposite values, bit for bit
    mirror = (((2**24 - 1 - level) << 8) | (h & 0xFF)).astype(np.uint32)
    np.testing.assert_array_equal(_c(lib, "jaxfne_std_normal_f32", mirror, np.float32), -z32)
    assert np.abs(z32).max() == pytest.approx(5.42, abs=0.01)      # never infinite


def test_native_noise_stream_is_the_xla_stream():
    """Step 1 of a network from rest is its drive plus the noise: both engines draw the same numbers."""
    cfg = base_config(duration_ms=DT).drive(noise={"E": 20.0, "I": 20.0}).ensemble(seeds=[0, 1, 2])
    model, xla, native = both(cfg)
    z_xla = np.stack([np.asarray(noise_sample(type(model.params)(*[x[m] for x in model.params]),
                                              np.uint32(0))) for m in range(3)])
    assert np.abs(z_xla).max() > 2.0
    np.testing.assert_allclose(native["Vm"].values[:, 0], xla["Vm"].values[:, 0], rtol=0, atol=2e-4)
    assert np.abs(native["Vm"].values[:, 0] - (-65.0)).max() > 5.0     # the noise moved Vm


# -- agreement with the XLA engine ----------------------------------------------------

def test_seed_page_network_gives_the_same_spikes_as_xla(seed_run):
    _, xla = seed_run
    native = jtfne.simulate(jtfne.construct(seed_page_configuration(42)), engine="native")
    assert native.dataset.attrs["engine"] == "native"
    np.testing.assert_array_equal(native.dataset["SPK"].values, xla.dataset["SPK"].values)   # all 1 s
    assert np.median(np.abs(native.dataset["Vm"].values - xla.dataset["Vm"].values)) < 1e-4


@pytest.mark.parametrize("make", [base_config, laminar_config], ids=["one-layer", "laminar-delays"])
def test_float64_agrees_with_xla_to_rounding(make):
    _, xla, native = both(make(dtype="float64").ensemble(seeds=list(range(8))))
    np.testing.assert_array_equal(native["SPK"].values, xla["SPK"].values)
    np.testing.assert_allclose(native["Vm"].values, xla["Vm"].values, rtol=0, atol=1e-6)
    if "LFP-proxy" in xla:
        np.testing.assert_allclose(native["LFP-proxy"].values, xla["LFP-proxy"].values, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(native["source"].values, xla["source"].values, rtol=0, atol=1e-9)


@pytest.mark.parametrize("make", [base_config, laminar_config], ids=["one-layer", "laminar-delays"])
def test_float32_agrees_with_xla_until_chaos_and_in_statistics(make):
    _, xla, native = both(make(duration_ms=1000.0).ensemble(seeds=list(range(8))))
    early = dict(time=slice(0, 1000))                                  # the first 100 ms: identical spikes
    np.testing.assert_array_equal(native["SPK"].isel(**early).values, xla["SPK"].isel(**early).values)
    rate_x = xla["SPK"].values.mean(axis=(1, 2)) / (DT * 1e-3)
    rate_n = native["SPK"].values.mean(axis=(1, 2)) / (DT * 1e-3)
    assert rate_x.min() > 1.0
    np.testing.assert_allclose(rate_n, rate_x, rtol=0.1)                  # per member, 1 s
    assert abs(rate_n.mean() / rate_x.mean() - 1.0) < 0.03


def test_shared_connectivity_and_sampled_probes():
    cfg = (base_config(duration_ms=100.0).connectivity(shared=True).probes(["SPK", "Vm"], neurons=3, every_ms=0.5)
           .ensemble(seeds=[4, 5, 6]))
    _, xla, native = both(cfg)
    assert native["Vm"].dims == xla["Vm"].dims and native["Vm"].shape == (3, 200, 6)
    np.testing.assert_array_equal(native["SPK"].values, xla["SPK"].values)
    np.testing.assert_allclose(native["Vm"].values, xla["Vm"].values, rtol=0, atol=1e-2)
    full = jtfne.simulate(jtfne.construct(cfg.probes(["SPK", "Vm"], neurons=None, every_ms=None)), engine="native")
    picked = full.dataset["Vm"].values[:, ::5][:, :, list(native["neuron_sampled"].values)]
    np.testing.assert_array_equal(native["Vm"].values, picked)        # the kernel samples what a full run holds


# -- invariants within the native engine -------------------------------------------------

def test_member_bits_do_not_depend_on_layout(monkeypatch):
    cfg = laminar_config(duration_ms=60.0).ensemble(seeds=list(range(7)))
    model = jtfne.construct(cfg)
    ref = jtfne.simulate(model, engine="native", devices=jtfne.engine.default_devices(4)[:1]).dataset
    four = jtfne.simulate(model, engine="native", chunk_ms=20.0).dataset        # 7 members padded over 4 devices
    xr.testing.assert_identical(ref, four)
    monkeypatch.setattr(_native, "threads_per_device", lambda n: 3)
    _simulate.chunk_function.cache_clear()
    threads = jtfne.simulate(model, engine="native", devices=jtfne.engine.default_devices(4)[:1], chunk_ms=30.0).dataset
    monkeypatch.undo()
    _simulate.chunk_function.cache_clear()
    xr.testing.assert_identical(ref, threads)
    alone = jtfne.simulate(jtfne.construct(cfg.ensemble(seeds=[5])), engine="native").dataset
    reordered = jtfne.simulate(jtfne.construct(cfg.ensemble(seeds=[6, 5, 4])), engine="native").dataset
    for probe in ("SPK", "Vm", "source", "LFP-proxy"):
        np.testing.assert_array_equal(alone[probe].values[0], ref[probe].values[5])
        for i, s in enumerate([6, 5, 4]):
            np.testing.assert_array_equal(reordered[probe].values[i], ref[probe].values[s])


# -- choosing the engine -----------------------------------------------------------------

def test_engine_argument_is_validated_before_any_work():
    model = jtfne.construct(base_config(duration_ms=10.0))
    with pytest.raises(SimulationError, match=r"engine='gpu' is invalid; choose one of 'auto', 'xla', 'native'"):
        jtfne.simulate(model, engine="gpu")


def test_without_a_compiler_auto_falls_back_and_native_says_why(monkeypatch):
    model = jtfne.construct(base_config(duration_ms=10.0))
    why = "simulate: engine='native' is unavailable: no C++ compiler found (set CXX, or install g++ or clang++)"

    def unavailable():
        raise SimulationError(why)

    monkeypatch.setattr(_native, "library", unavailable)
    monkeypatch.setattr(_native, "available", lambda: (False, why))
    assert jtfne.simulate(model, engine="auto").dataset.attrs["engine"] == "xla"
    with pytest.raises(SimulationError, match="no C.. compiler found"):
        jtfne.simulate(model, engine="native")


def test_a_failing_build_is_said_once(monkeypatch):
    model = jtfne.construct(base_config(duration_ms=10.0))
    why = "simulate: engine='native' is unavailable: compiling the native engine failed (c++ ...): error: x"
    monkeypatch.setattr(_native, "available", lambda: (False, why))
    monkeypatch.setattr(_native, "_WARNED", set())
    with pytest.warns(RuntimeWarning, match="running the XLA step on the CPU because .*compiling the native"):
        assert jtfne.simulate(model).dataset.attrs["engine"] == "xla"
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jtfne.simulate(model)                                             # said once, not per run


def test_auto_uses_native_on_cpu():
    model = jtfne.construct(base_config(duration_ms=10.0))
    assert jtfne.simulate(model).dataset.attrs["engine"] == "native"


def test_unfinished_store_resumes_only_with_its_engine(tmp_path, monkeypatch):
    import errno

    import zarr

    from test_store import failing_set
    model = jtfne.construct(base_config(duration_ms=100.0).ensemble(seeds=[1, 2]))
    path = tmp_path / "run.zarr"
    monkeypatch.setattr(zarr.storage.LocalStore, "set", failing_set("SPK/c/0/2/0", OSError(errno.EIO, "I/O error")))
    with pytest.raises(jtfne.StoreError, match="writing chunk 2"):
        jtfne.simulate(model, store=path, chunk_ms=20.0, engine="native")
    monkeypatch.undo()
    with pytest.raises(jtfne.StoreError, match=r"engine='xla' differs from the store's engine='native'"):
        jtfne.simulate(model, store=path, chunk_ms=20.0, engine="xla")
    resumed = jtfne.simulate(model, store=path, chunk_ms=20.0, engine="native")
    memory = jtfne.simulate(model, chunk_ms=20.0, engine="native")
    assert resumed.dataset.attrs["engine"] == "native"
    xr.testing.assert_identical(resumed.dataset.load(), memory.dataset)
