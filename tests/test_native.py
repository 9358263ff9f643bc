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
import re

import jax
import numpy as np
import pytest
import scipy.special
import xarray as xr

import jaxfne as jtfne
from jaxfne.engine import _native
from jaxfne.engine import _driver as _simulate
from jaxfne._errors import SimulationError
from jaxfne._probes import RAW, REGISTRY, Probe
from jaxfne.engine._mesh import initial_states
from jaxfne.engine._step import noise_sample
from jaxfne.model import _params as declaration, precision

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
    z_xla = np.stack([np.asarray(noise_sample(model.member_params(m),
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


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_2003_integrator_held_noise_and_array_stimuli_together_agree_with_xla(dtype):
    """The step's three options at once (each alone is a row of tests/test_conformance.py), with a Poisson
    source and two delay classes: the same spikes as the XLA step, float32 included, and Vm to the kit's
    standards; run in chunks of 37 steps, which split noise holds (5 steps) and table rows (13 steps), the
    native bits are those of one chunk (the hold and the rows follow the global step)."""
    cfg = (base_config(duration_ms=40.0, dtype=dtype).column(n=40).runtime(integrator="izhikevich2003")
           .drive(noise_hold_ms=0.5).connectivity(pathways={"L2/3.E->L2/3.I": {"delay_ms": 1.5}})
           .stimulus("course", kind="array", values=np.linspace(-2.0, 8.0, 25), sample_ms=1.3, onset_ms=2.0,
                     cell_type="E")
           .stimulus("poisson", kind="poisson", rate_hz=40.0, n_sources=25, weight=1.5, onset_ms=8.0)
           .stimulus("table", kind="array", values=np.cos(np.arange(60.0)[:, None] / np.arange(3.0, 6.0)) * 6.0,
                     amplitude=1.5, onset_ms=10.0, neurons=[2, 21, 37])
           .ensemble(seeds=[0, 1, 2]))
    model, xla, native = both(cfg)
    assert model.layout.integrator == "izhikevich2003" and model.layout.noise_hold_steps == 5
    assert model.layout.stim_table_rows == 85 and _native.unsupported(model.layout) is None
    assert xla["SPK"].values.sum() > 100
    np.testing.assert_array_equal(native["SPK"].values, xla["SPK"].values)
    diff = np.abs(native["Vm"].values - xla["Vm"].values)
    if dtype == "float64":
        assert diff.max() <= 1e-6
    else:   # tests/test_conformance.py's float32 standard: median and 99th percentile of |difference|
        scale = np.abs(xla["Vm"].values).max()
        assert np.median(diff) <= 1e-6 * scale and np.percentile(diff, 99) <= 1e-4 * scale
    chunked = jtfne.simulate(model, engine="native", chunk_ms=3.7).dataset
    for probe in ("SPK", "Vm"):
        np.testing.assert_array_equal(chunked[probe].values, native[probe].values)


# -- trials stimuli, Poisson rate profiles, conductance pathways ------------------------------

#: a synapse kind per pathway: conductance onto E cells only, so each neuron's current depends on its type
MIXED_SYNAPSES = {"E->E": "conductance", "E->I": "exponential", "I->E": "conductance", "I->I": "exponential"}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_trials_profiles_and_conductance_pathways_agree_with_xla(dtype):
    """The three features the kernel gained (each alone is a float64 row of tests/test_conformance.py),
    together and in both dtypes: two trials stimuli with different numbers of onsets, an inhomogeneous
    Poisson source whose profile follows an array stimulus's rows in the shared table, a constant-rate
    source beside them, and conductance synapses on the pathways onto E cells only. The same spikes as
    the XLA step, and Vm and the source current to the kit's standards; in chunks of 37 steps (splitting
    trials and profile rows) the native bits are those of one chunk."""
    cfg = (base_config(duration_ms=30.0, dtype=dtype).column(n=40)
           .connectivity(synapse=MIXED_SYNAPSES, reversal_mv={"E": 0.0, "I": -75.0},
                         strength={"E->E": 0.3, "E->I": 4.0, "I->E": 1.0, "I->I": 4.0})
           .probes(["SPK", "Vm", "source"])
           .stimulus("a_course", kind="array", values=np.linspace(0.0, 6.0, 7), sample_ms=1.3, cell_type="I")
           .stimulus("b_ramp", kind="poisson", rate_hz=60.0, n_sources=25, weight=1.5,
                     profile=np.linspace(2.0, 0.0, 9), sample_ms=1.7, onset_ms=2.0)
           .stimulus("c_steady", kind="poisson", rate_hz=30.0, n_sources=10, weight=2.0, synapse="I",
                     cell_type="E")
           .stimulus("d_kick", kind="trials", amplitude=20.0, onsets_ms=[3.0, 4.5, 17.2, 25.0], duration_ms=1.0,
                     cell_type="E")
           .stimulus("e_pair", kind="trials", amplitude=-15.0, onsets_ms=[10.0, 10.4], duration_ms=0.8,
                     neurons=[1, 2, 33, 38])
           .ensemble(seeds=[0, 1]))
    model, xla, native = both(cfg)
    layout = model.layout
    assert layout.trial_onsets == 4 and layout.poisson_profiles and layout.stim_table_rows == 16
    assert layout.conductance == ((True, False), (True, False)) and _native.unsupported(layout) is None
    assert xla["SPK"].values.sum() > 100
    np.testing.assert_array_equal(native["SPK"].values, xla["SPK"].values)
    for probe in ("Vm", "source"):
        diff = np.abs(native[probe].values - xla[probe].values)
        if dtype == "float64":
            assert diff.max() <= (1e-6 if probe == "Vm" else 1e-9), (probe, diff.max())
        else:   # tests/test_conformance.py's float32 standard: median and 99th percentile of |difference|
            scale = np.abs(xla[probe].values).max()
            assert np.median(diff) <= 1e-6 * scale and np.percentile(diff, 99) <= 1e-4 * scale, probe
    chunked = jtfne.simulate(model, engine="native", chunk_ms=3.7).dataset
    for probe in ("SPK", "Vm", "source"):
        np.testing.assert_array_equal(chunked[probe].values, native[probe].values)


def test_trials_gate_is_each_listed_onset_for_its_width():
    """Closed form: without coupling, noise or drive, a current of 5000 spikes a target at every step its
    trials stimulus is on (one Euler step of 0.1 ms moves v by about 500 mV, whatever u has grown to)
    and never otherwise, so the raster is the gate: on at step t when onset_j <= t < onset_j + width for a listed
    onset (step 0 included, overlapping trials merged), for each stimulus's own number of onsets."""
    cfg = (base_config(duration_ms=6.0, dtype="float64").column(n=40)
           .connectivity(strength={"E->E": 0.0, "E->I": 0.0, "I->E": 0.0, "I->I": 0.0})
           .drive(current={"E": 0.0, "I": 0.0}, noise=0.0).probes(["SPK"])
           .stimulus("early", kind="trials", amplitude=5000.0, onsets_ms=[0.0, 0.5, 0.8, 4.0], duration_ms=0.4,
                     neurons=[0, 5])
           .stimulus("late", kind="trials", amplitude=5000.0, onsets_ms=[2.5], duration_ms=0.3, neurons=[5, 9])
           .ensemble(seeds=[0, 1]))
    native = jtfne.simulate(jtfne.construct(cfg), engine="native").dataset
    steps = np.arange(60)

    def gate(onsets, width):
        return np.any([(steps >= o) & (steps < o + width) for o in onsets], axis=0)

    early, late = gate([0, 5, 8, 40], 4), gate([25], 3)
    want = np.zeros((2, 60, 40), bool)
    want[:, :, 0], want[:, :, 5], want[:, :, 9] = early, early | late, late
    np.testing.assert_array_equal(native["SPK"].values, want)


def test_poisson_profile_counts_are_the_xla_counts_bit_for_bit():
    """With delta synapses and no coupling the source current of a step is exactly the Poisson input of
    that step (weight times the count, over dt): the native engine draws the same counts as the XLA step,
    bit for bit, for rate profiles (thresholds floor(threshold * factor + 0.5) in the run's dtype,
    float32 here: its rounding is the likelier to differ; float64 profiles are compared in
    test_trials_profiles_and_conductance_pathways_agree_with_xla and the conformance kit), a constant rate beside it, and an array stimulus whose columns of stim_steps hold a
    table row and a hold, not a Poisson rate (sample_ms of 2e6 ms: 2e7 steps, above the 2^24 of a sure
    draw, and its rows after the profile's), which must draw nothing."""
    cfg = (base_config(duration_ms=25.0, dtype="float32").column(n=40)
           .connectivity(synapse="delta", strength={"E->E": 0.0, "E->I": 0.0, "I->E": 0.0, "I->I": 0.0})
           .drive(noise=0.0).probes(["SPK", "source"])
           .stimulus("a_ramp", kind="poisson", rate_hz=200.0, n_sources=20, weight=0.25,
                     profile=np.array([0.0, 0.3, 1.0, 2.5, 4.0, 0.7]), sample_ms=2.0, onset_ms=3.0)
           .stimulus("b_inh", kind="poisson", rate_hz=90.0, n_sources=15, weight=0.5, synapse="I",
                     profile=np.linspace(1.0, 3.0, 11), sample_ms=2.0, fraction=0.5)
           .stimulus("c_flat", kind="poisson", rate_hz=100.0, n_sources=5, weight=0.5, cell_type="I")
           .stimulus("d_slow", kind="array", values=np.array([0.5, 1.0]), sample_ms=2e6, cell_type="E")
           .ensemble(seeds=[3, 4]))
    model, xla, native = both(cfg)
    assert model.layout.stim_table_rows == 19
    src = xla["source"].values
    assert (src > 0).sum() > 200 and (src < 0).sum() > 200       # both kinds of source drew spikes
    np.testing.assert_array_equal(native["source"].values, src)
    assert native["source"].values.tobytes() == src.tobytes()                   # signed zeros too


def test_the_conductance_attribute_has_one_bit_per_pathway():
    assert _native.conductance_mask(_native.CURRENT_SYNAPSES) == 0
    assert _native.conductance_mask(((True, False), (False, False))) == 0b0001     # E->E
    assert _native.conductance_mask(((False, True), (False, False))) == 0b0010     # E->I
    assert _native.conductance_mask(((False, False), (True, False))) == 0b0100     # I->E
    assert _native.conductance_mask(((True, True), (True, True))) == 0b1111
    with pytest.raises(SimulationError, match=r"conductance=\(True, False\) is invalid"):
        _native.conductance_mask((True, False))


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


# -- the binding: one declaration, a typed call, a signature checked at load ------------------

def test_the_kernel_signature_is_the_declaration():
    lib = _native.library()
    assert _native.signature_mismatch(lib) is None
    lib.jaxfne_kernel_signature.restype = ctypes.c_char_p
    lines = lib.jaxfne_kernel_signature().decode().splitlines()
    assert lines == _native.signature()
    args = [line.split()[1] for line in lines if line.startswith("arg ")]
    assert args == ([f.name for f in declaration.STATE_FIELDS if f.native]
                    + [f.name for f in declaration.PARAM_FIELDS if f.native] + ["t0"])
    assert "arg lfp_kernel float" not in lines                     # declared as not read by the kernel
    assert [line.split()[1] for line in lines if line.startswith(("ret spikes", "obs "))] == list(RAW)
    assert {"attr v_peak float64", "attr pad_v float64", "attr pad_c float64"} <= set(lines)
    assert _native.kernel_observations() == list(RAW[1:])


def test_a_probe_may_claim_the_native_engine_only_for_what_the_kernel_produces(monkeypatch):
    """A new raw observation the kernel lacks: a probe on it stays xla-only (the kernel loads); a probe that
    claims the native engine for it makes the kernel refused at load, saying which probe."""
    monkeypatch.setattr(_native, "RAW", RAW + ("g_syn",))
    for engines, refused in ((("xla",), False), (("xla", "native"), True)):
        probes = dict(REGISTRY, g=Probe("g", "nS", "a conductance", raw=("g_syn",), engines=engines))
        monkeypatch.setattr(_native, "REGISTRY", probes)
        _native.library.cache_clear()
        if refused:
            with pytest.raises(SimulationError, match=r"the probe 'g' declares the native engine .* does not "
                                                      r"produce its raw observation\(s\) \['g_syn'\]"):
                _native.library()
        else:
            assert _native.signature_mismatch(_native.library()) is None
    monkeypatch.undo()
    _native.library.cache_clear()
    assert _native.signature_mismatch(_native.library()) is None


def test_a_kernel_that_disagrees_with_the_declaration_is_refused_when_loaded(monkeypatch):
    """The declaration changed (two parameters swapped) without the kernel: refused at load, naming the
    first difference; "auto" runs the XLA step saying why once, "native" raises."""
    fields = list(declaration.PARAM_FIELDS)
    fields[0], fields[1] = fields[1], fields[0]
    monkeypatch.setattr(declaration, "PARAM_FIELDS", tuple(fields))
    monkeypatch.setattr(_native, "_WARNED", set())
    _native.library.cache_clear()
    first = len([f for f in declaration.STATE_FIELDS if f.native]) + 1
    why = (f"at entry {first}: the kernel has 'arg a float' where the declaration has 'arg b float'")
    with pytest.raises(SimulationError, match="engine='native' is unavailable: the kernel's call signature .*"
                       + re.escape(why)):
        _native.library()
    model = jtfne.construct(base_config(duration_ms=5.0))
    with pytest.warns(RuntimeWarning, match="running the XLA step on the CPU because .*" + re.escape(why)):
        assert jtfne.simulate(model, engine="auto").dataset.attrs["engine"] == "xla"
    with pytest.raises(SimulationError, match=re.escape(why)):
        jtfne.simulate(model, engine="native")
    monkeypatch.undo()
    _native.library.cache_clear()
    assert _native.signature_mismatch(_native.library()) is None
    assert jtfne.simulate(model, engine="native").dataset.attrs["engine"] == "native"


def test_the_kernel_takes_its_constants_from_the_declaration(monkeypatch):
    cfg = base_config(duration_ms=50.0, dtype="float64").probes(["SPK", "Vm"]).ensemble(seeds=[1, 2])
    model = jtfne.construct(cfg)
    ref = jtfne.simulate(model, engine="native").dataset
    assert ref["Vm"].values.max() == declaration.V_PEAK_MV
    monkeypatch.setattr(declaration, "V_PEAK_MV", 20.0)            # the kernel reads it; the XLA step imported it
    _simulate.chunk_function.cache_clear()
    low = jtfne.simulate(model, engine="native").dataset
    monkeypatch.undo()
    _simulate.chunk_function.cache_clear()
    assert low["Vm"].values.max() == 20.0 and low["SPK"].values.sum() > 0
    np.testing.assert_array_equal(low["Vm"].values[low["SPK"].values], 20.0)    # spikes shown at the new peak


def test_the_kernel_returns_each_raw_observation_full_or_sampled():
    """native_chunk returns exactly the observations asked for; sampled ones are the full ones at the
    sampled steps and neurons, bit for bit; full v, u and i_syn are what a run records as Vm, u, source."""
    cfg = (base_config(duration_ms=3.0, dtype="float64").column(n=40).probes(["SPK", "Vm", "u", "source"])
           .ensemble(seeds=[3, 4]))
    model = jtfne.construct(cfg)
    _native.library()
    kw = dict(n_steps=model.layout.n_steps, delay_steps=model.layout.delay_steps, shared_w=False, threads=2)
    index, stride = (0, 7, 39, 7), 4

    def call(modes):
        with precision("float64"):
            state = initial_states(model.layout)(model.params)
            return jax.jit(lambda st, p: _native.native_chunk(st, p, 0, modes=modes, sample_index=index,
                                                              sample_stride=stride, **kw))(state, model.params)

    full_state, full = call({r: "full" for r in RAW})
    assert set(full) == set(RAW) and full["v"].shape == (2, 30, 40)
    sampled_state, sampled = call({"spikes": "full", "u": "sampled", "i_syn": "sampled"})
    assert set(sampled) == {"spikes", "u", "i_syn"} and sampled["u"].shape == (2, 8, 4)
    for r in ("u", "i_syn"):
        np.testing.assert_array_equal(sampled[r], np.asarray(full[r])[:, ::stride][:, :, list(index)])
    np.testing.assert_array_equal(sampled["spikes"], full["spikes"])
    for a, b in zip(full_state, sampled_state):
        np.testing.assert_array_equal(a, b)
    run = jtfne.simulate(model, engine="native").dataset
    for raw, probe in (("spikes", "SPK"), ("v", "Vm"), ("u", "u"), ("i_syn", "source")):
        np.testing.assert_array_equal(run[probe].values, full[raw])
    with pytest.raises(SimulationError, match="'spikes' must be 'full'"):
        call({"v": "full"})


def test_u_agrees_with_xla():
    _, xla, native = both(base_config(duration_ms=100.0, dtype="float64").probes(["SPK", "u"])
                          .ensemble(seeds=[0, 1, 2]))
    np.testing.assert_array_equal(native["SPK"].values, xla["SPK"].values)
    np.testing.assert_allclose(native["u"].values, xla["u"].values, rtol=0, atol=1e-9)


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
    monkeypatch.setattr(zarr.storage.LocalStore, "set", failing_set("spike_events/count/c/0/2", OSError(errno.EIO, "I/O error")))
    with pytest.raises(jtfne.StoreError, match="writing chunk 2"):
        jtfne.simulate(model, store=path, chunk_ms=20.0, engine="native")
    monkeypatch.undo()
    with pytest.raises(jtfne.StoreError, match=r"engine='xla' differs from the store's engine='native'"):
        jtfne.simulate(model, store=path, chunk_ms=20.0, engine="xla")
    resumed = jtfne.simulate(model, store=path, chunk_ms=20.0, engine="native")
    memory = jtfne.simulate(model, chunk_ms=20.0, engine="native")
    assert resumed.dataset.attrs["engine"] == "native"
    xr.testing.assert_identical(resumed.dataset.load(), memory.dataset)
