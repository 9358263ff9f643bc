"""Engine conformance kit: every feature of the model, run on every engine, against the reference engine.

Each feature is a small configuration (40 neurons, 2 members, 30 ms)
simulated on the reference engine "xla" and on each engine under test; the
two must agree as docs/engines.md ("How far the engines agree") promises:

* float64: the same spikes, bit for bit; Vm within 1e-6 mV, u and source
  within 1e-9, the field proxies within rtol = atol = 1e-9 (the standards of
  tests/test_native.py; the engines agree to rounding, not bit for bit: XLA
  contracts multiply-adds, the kernel's erfinv is more accurate);
* float32: the same spikes, bit for bit (promised for the first 100 ms; the
  runs here are 30 ms), and every float probe within rounding: median
  |difference| <= 1e-6 and 99th percentile <= 1e-4 of the probe's largest
  magnitude (chaos amplifies a last-bit difference near a spike upstroke).

Every run records every probe of ``jaxfne._probes.REGISTRY`` that the engines
declare. The ``probe:`` features record each probe alone on the engine under
test: their reference is the base run (the first feature, every probe) on
"xla", and the probe alone must be, bit for bit, what the same engine records
in that run. Within each engine, sampled recordings (``probes(neurons=...,
every_ms=...)``) are the full run's at the sampled steps and neurons, bit for
bit.

A feature an engine declares unsupported (``_native.unsupported(layout)``,
from ``Probe.engines``) is skipped with that reason, after checking that
``engine="auto"`` falls back to the XLA step with a RuntimeWarning and
``engine="native"`` raises SimulationError (none is today;
``test_a_declared_gap_falls_back`` runs that path on a probe made xla-only for
the test). A feature neither produced correctly nor declared unsupported
fails, saying which probe differs and by how much. A feature marked "known
bug" is a strict xfail naming the bug: it fails the kit once fixed, so that
the mark is removed.

The table as it stands (checked by ``test_the_table_above_is_current``):

    feature                                           xla        native
    dtype:float64 (one layer, cortical_eig)           reference  agrees
    dtype:float32 (delays, sampled, shared)           reference  agrees
    preset:regular_spiking/fast_spiking               reference  agrees
    preset:intrinsically_bursting/chattering          reference  agrees
    preset:tonic_bursting/resonator (uncoupled)       reference  agrees
    neurons:user params + r-heterogeneity (2003)      reference  agrees
    synapses:exponential current (tau 3/12 ms)        reference  agrees
    delays:two classes (one layer)                    reference  agrees
    delays:one class beyond one step                  reference  agrees
    laminar:3 layers                                  reference  agrees
    columns:2                                         reference  agrees
    probes:sampled (neurons, every_ms)                reference  agrees
    weights:shared                                    reference  agrees
    stimuli:step, pulses, sine, poisson (float64)     reference  agrees
    stimuli:step, pulses, sine, poisson (float32)     reference  agrees
    synapses:delta (E and I; Poisson onto delta)      reference  agrees
    synapses:per pathway (E->E delta, E->I exp)       reference  agrees
    weights:user matrix with autapses                 reference  agrees
    weights:one user matrix per member                reference  agrees
    connectivity:fixed in-degree with autapses        reference  agrees
    neurons:per-neuron arrays                         reference  agrees
    synapses:conductance (E and I)                    reference  agrees
    stimuli:inhomogeneous poisson (profile)           reference  agrees
    stimuli:trials at given onsets                    reference  agrees
    integrator:izhikevich2003                         reference  agrees
    noise:held for 1 ms                               reference  agrees
    stimuli:array-driven current (1-D and 2-D)        reference  agrees
    stimuli:array per member (and a profile)          reference  agrees
    probe:SPK                                         reference  agrees
    probe:Vm                                          reference  agrees
    probe:u                                           reference  agrees
    probe:source                                      reference  agrees
    probe:LFP-proxy                                   reference  agrees
    probe:CSD-proxy                                   reference  agrees

Engines under test: every engine of ``_native.ENGINES`` but "auto" and the
reference; native ones are skipped without a C++ compiler (``needs_native``).
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Callable
from types import MappingProxyType

import numpy as np
import pytest

import jaxfne as jtfne
from jaxfne._errors import SimulationError
from jaxfne._probes import REGISTRY
from jaxfne.engine import _native

from conftest import needs_native

REFERENCE = "xla"
UNDER_TEST = [e for e in _native.ENGINES if e not in ("auto", REFERENCE)]
#: how each engine declares what it cannot run: layout -> reason or None
CAPABILITIES: dict[str, Callable] = {"native": _native.unsupported}

DT_MS = 0.1
SEEDS = [0, 1]

#: float64 agreement of neuron-space probes, by the raw observation they show (docs/engines.md)
F64_NEURON = {"v": dict(rtol=0.0, atol=1e-6), "u": dict(rtol=0.0, atol=1e-9), "i_syn": dict(rtol=0.0, atol=1e-9)}
#: float64 agreement of the field proxies (contact space)
F64_FIELD = dict(rtol=1e-9, atol=1e-9)
#: float32: median and 99th percentile of |difference|, as fractions of the probe's largest magnitude
F32_MEDIAN, F32_P99 = 1e-6, 1e-4


def recorded_probes(engines=tuple(UNDER_TEST) + (REFERENCE,)) -> list:
    """Every probe of the registry that every engine declares (the general features record them all)."""
    return [name for name, p in REGISTRY.items() if all(e in p.engines for e in engines)]


def base(dtype="float64"):
    return (jtfne.Configuration().runtime(seed=1, duration_ms=30.0, dt_ms=DT_MS, dtype=dtype).column(n=40)
            .cell_types({"E": 0.75, "I": 0.25}).connectivity()
            .set_emitter(family="izhikevich", preset="cortical_eig").probes(recorded_probes())
            .ensemble(seeds=SEEDS))


def three_layers():
    """Three layers and pathways with a 2 ms delay (two delay classes: one step and 20 steps)."""
    return (base().column(layers=["L2/3", "L4", "L5"], n=40)
            .connectivity(pathways={"L4.E->L2/3.E": {"strength": 15.0, "delay_ms": 2.0},
                                    "L5.E->L4.I": {"p": 0.3, "strength": 5.0, "delay_ms": 2.0}}))


def stimulated(cfg):
    """Every stimulus kind (step, pulses, sine, Poisson onto E and I synapses), with targets by type and
    fraction, by layer and by index (overlapping)."""
    return (cfg.stimulus("pulse", kind="pulses", amplitude=20.0, onset_ms=5.0, duration_ms=2.0, period_ms=10.0,
                         count=2, cell_type="E", fraction=0.5)
            .stimulus("sine", kind="sine", amplitude=3.0, frequency_hz=40.0, phase=0.5, offset=1.0, layer="L2/3")
            .stimulus("step", kind="step", amplitude=6.0, onset_ms=10.0, duration_ms=12.0, neurons=[0, 11, 35])
            .stimulus("poisson_e", kind="poisson", rate_hz=40.0, n_sources=25, weight=1.5, onset_ms=8.0, layer="L2/3")
            .stimulus("poisson_i", kind="poisson", rate_hz=60.0, n_sources=10, weight=2.0, synapse="I",
                      cell_type="E", fraction=0.5, duration_ms=15.0))


@dataclasses.dataclass(frozen=True)
class Feature:
    id: str
    make: Callable                          # () -> Configuration
    known_bug: str | None = None            # a strict xfail naming the bug
    full_of: str | None = None              # a feature whose run this one samples (checked bit for bit per engine)
    alone_of: str | None = None             # records one probe of this feature's run: that run is the reference,
                                            # and each engine must record the probe alone bit for bit as there


BASE = "dtype:float64 (one layer, cortical_eig)"
#: a user weight matrix for ``base()`` (30 E cells, then 10 I cells): sparse, signed by the presynaptic type,
#: with some self-connections
USER_WEIGHTS = (np.random.default_rng(7).random((40, 40)) < 0.3) * np.random.default_rng(8).random((40, 40)) \
    * np.where(np.arange(40) < 30, 1.0, -2.5)[None, :]
# Shapes chosen so that features share compilations (construct compiles one builder per dtype, number of
# delay classes and column sizes; simulate one program per layout): the kit runs in well under a minute.
FEATURES = [
    Feature(BASE, base),
    Feature("dtype:float32 (delays, sampled, shared)",
            lambda: base("float32").connectivity(shared=True, pathways={"L2/3.E->L2/3.I": {"delay_ms": 1.5}})
            .probes(recorded_probes(), neurons=[0, 13, 30, 39], every_ms=0.5)),
    Feature("preset:regular_spiking/fast_spiking",
            lambda: base().set_emitter(preset={"E": "regular_spiking", "I": "fast_spiking"})),
    Feature("preset:intrinsically_bursting/chattering",
            lambda: base().set_emitter(preset={"E": "intrinsically_bursting", "I": "chattering"})),
    Feature("preset:tonic_bursting/resonator (uncoupled)",      # as tests/test_presets.py: no coupling, no noise
            lambda: base().set_emitter(preset={"E": "tonic_bursting", "I": "resonator"})
            .connectivity(strength={"E->E": 0.0, "E->I": 0.0, "I->E": 0.0, "I->I": 0.0})
            .drive(current={"E": 10.0, "I": 0.3}, noise=0.0)),
    Feature("neurons:user params + r-heterogeneity (2003)",   # the 2003 population, written out by the user
            lambda: base().set_emitter(
                params={"E": {"a": 0.02, "b": 0.2, "c": -65.0, "d": 8.0}, "I": {"a": 0.02, "b": 0.25, "c": -65.0,
                                                                                "d": 2.0}},
                heterogeneity={"E": {"c": (-65.0, 0.0, 15.0), "d": (8.0, 0.0, -6.0)},
                               "I": {"a": (0.02, 0.08), "b": (0.25, -0.05), "d": (2.5, -1.0, 0.5)}})),
    Feature("synapses:exponential current (tau 3/12 ms)",
            lambda: base().connectivity(tau_exc_ms=3.0, tau_inh_ms=12.0)),
    Feature("delays:two classes (one layer)",
            lambda: base().connectivity(pathways={"L2/3.E->L2/3.I": {"delay_ms": 1.5}})),
    Feature("delays:one class beyond one step",
            lambda: base().connectivity(delay_ms=1.5)),
    Feature("laminar:3 layers", three_layers),
    Feature("columns:2",
            lambda: base().column(name="A", n=24).column(name="B", n=16)),
    Feature("probes:sampled (neurons, every_ms)",
            lambda: base().probes(recorded_probes(), neurons=[0, 5, 17, 31, 39], every_ms=0.3),
            full_of=BASE),
    Feature("weights:shared", lambda: base().connectivity(shared=True)),
    Feature("stimuli:step, pulses, sine, poisson (float64)", lambda: stimulated(base())),
    Feature("stimuli:step, pulses, sine, poisson (float32)", lambda: stimulated(base("float32"))),
    Feature("synapses:delta (E and I; Poisson onto delta)",
            lambda: base().connectivity(synapse="delta", strength={"E->E": 2.0, "E->I": 4.0, "I->E": 2.0,
                                                                    "I->I": 3.0})
            .stimulus("poisson_e", kind="poisson", rate_hz=40.0, n_sources=25, weight=0.5, onset_ms=8.0)),
    Feature("synapses:per pathway (E->E delta, E->I exp)",
            lambda: base().connectivity(synapse={"E->E": "delta", "I->I": "delta"},
                                        strength={"E->E": 2.0, "E->I": 40.0, "I->E": 20.0, "I->I": 3.0})
            .stimulus("poisson_e", kind="poisson", rate_hz=40.0, n_sources=25, weight=0.5, onset_ms=8.0)),
    Feature("weights:user matrix with autapses", lambda: base().connectivity(weights=USER_WEIGHTS, autapses=True)),
    Feature("weights:one user matrix per member",
            lambda: base().connectivity(weights=np.stack([USER_WEIGHTS, 0.5 * USER_WEIGHTS]), autapses=True)),
    Feature("connectivity:fixed in-degree with autapses",
            lambda: base().connectivity(rule="fixed_indegree", p=0.4, autapses=True)),
    Feature("neurons:per-neuron arrays",
            lambda: base().set_emitter(per_neuron={"a": np.linspace(0.02, 0.1, 40), "d": np.linspace(8.0, 2.0, 40)})),
    Feature("stimuli:trials at given onsets",
            lambda: base().stimulus("kick", kind="trials", amplitude=20.0, onsets_ms=[3.0, 4.5, 17.2, 25.0],
                                    duration_ms=1.0, cell_type="E")),
    Feature("stimuli:inhomogeneous poisson (profile)",
            lambda: base().stimulus("ramp", kind="poisson", rate_hz=40.0, n_sources=25, weight=1.5,
                                    profile=np.linspace(0.0, 2.0, 12), sample_ms=2.5, onset_ms=1.0)),
    Feature("synapses:conductance (E and I)",
            lambda: base().connectivity(synapse="conductance", reversal_mv={"E": 0.0, "I": -75.0},
                                        strength={"E->E": 0.3, "E->I": 0.6, "I->E": 1.0, "I->I": 1.5})),
    Feature("integrator:izhikevich2003", lambda: base().runtime(integrator="izhikevich2003")),
    Feature("noise:held for 1 ms", lambda: base().drive(noise_hold_ms=1.0)),
    Feature("stimuli:array-driven current (1-D and 2-D)",
            lambda: base().stimulus("course", kind="array", values=np.linspace(0.0, 8.0, 30), sample_ms=1.0,
                                    cell_type="E", fraction=0.5)
            .stimulus("table", kind="array", values=np.outer(np.sin(np.arange(100) / 7.0), np.arange(1.0, 4.0)) * 5,
                      onset_ms=5.0, neurons=[1, 20, 33])),
    Feature("stimuli:array per member (and a profile)",
            lambda: base().stimulus("course", kind="array", per_member=True, sample_ms=1.0, cell_type="E",
                                    values=np.stack([np.linspace(0.0, 8.0, 30), np.linspace(8.0, 0.0, 30)]))
            .stimulus("kick", kind="poisson", rate_hz=200.0, n_sources=10, weight=1.0, sample_ms=2.0,
                      profile=[0.0, 1.0, 0.5, 2.0])),
] + [Feature(f"probe:{name}", (lambda name=name: base().probes([name])),
             alone_of=BASE) for name in REGISTRY]

BY_ID = {f.id: f for f in FEATURES}
_MODELS: dict = {}
_RUNS: dict = {}


def model_of(feature: Feature):
    if feature.id not in _MODELS:
        _MODELS[feature.id] = jtfne.construct(feature.make())
    return _MODELS[feature.id]


def run(feature: Feature, engine: str):
    """The dataset of ``feature`` on ``engine`` (cached: each runs once per session)."""
    key = (feature.id, engine)
    if key not in _RUNS:
        signals = jtfne.simulate(model_of(feature), engine=engine)
        assert signals.attrs["engine"] == engine
        _RUNS[key] = signals.dataset
    return _RUNS[key]


def expected_column(feature: Feature, engine: str) -> str:
    if CAPABILITIES[engine](model_of(feature).layout):
        return "declared unsupported"
    return "known bug" if feature.known_bug else "agrees"


# -- comparison -----------------------------------------------------------------------------

def differences(ref, out, dtype: str) -> list:
    """What differs between the reference dataset ``ref`` and ``out`` beyond the promised agreement."""
    problems = []
    if set(ref.data_vars) != set(out.data_vars):
        return [f"records {sorted(out.data_vars)} instead of {sorted(ref.data_vars)}"]
    for name in ref.data_vars:
        r, o = ref[name], out[name]
        if r.dims != o.dims or r.shape != o.shape or r.dtype != o.dtype:
            problems.append(f"{name}: {o.dims} {o.shape} {o.dtype} instead of {r.dims} {r.shape} {r.dtype}")
            continue
        for c in r.coords:
            if c not in o.coords or not np.array_equal(r[c].values, o[c].values):
                problems.append(f"{name}: coordinate {c!r} differs")
        probe = REGISTRY[name]
        rv, ov = np.asarray(r.values), np.asarray(o.values)
        if probe.dtype == "bool":
            if not np.array_equal(rv, ov):
                first = tuple(int(i[0]) for i in np.nonzero(rv != ov))
                problems.append(f"{name}: {int(np.sum(rv != ov))} values differ (first at index {first})")
            continue
        diff = np.abs(ov.astype(np.float64) - rv.astype(np.float64))
        if not np.all(np.isfinite(ov)):
            problems.append(f"{name}: not finite")
        elif dtype == "float64":
            if probe.is_field:
                tol = F64_FIELD
            elif probe.derive is None and probe.raw[0] in F64_NEURON:
                tol = F64_NEURON[probe.raw[0]]
            else:
                problems.append(f"{name}: the kit has no float64 standard for a probe of raw {probe.raw}; add one")
                continue
            bad = diff > tol["atol"] + tol["rtol"] * np.abs(rv)
            if bad.any():
                problems.append(f"{name}: {int(bad.sum())} values beyond rtol={tol['rtol']}, atol={tol['atol']} "
                                f"(max |difference| {diff.max():.3g})")
        else:
            scale = max(float(np.abs(rv).max()), 1e-30)
            med, p99 = float(np.median(diff)), float(np.percentile(diff, 99))
            if med > F32_MEDIAN * scale or p99 > F32_P99 * scale:
                problems.append(f"{name}: median |difference| {med:.3g}, 99th percentile {p99:.3g} "
                                f"(limits {F32_MEDIAN * scale:.3g}, {F32_P99 * scale:.3g})")
    return problems


def sampled_from(full, sampled, layout) -> list:
    """Each sampled recording must be the full run's recording at the sampled steps and neurons, bit for bit."""
    problems = []
    for name in sampled.data_vars:
        s, f = np.asarray(sampled[name].values), np.asarray(full[name].values)
        probe = REGISTRY[name]
        if probe.sampled:
            f = f[:, ::layout.sample_every]
            if probe.space == "neuron" and layout.sample_neurons is not None:
                f = f[:, :, list(layout.sample_neurons)]
        if s.shape != f.shape or s.tobytes() != f.tobytes():
            problems.append(f"{name}: the sampled recording is not the full run's at the sampled steps and neurons")
    return problems


def check_fallback(model, engine: str, lacking: str, monkeypatch):
    """A declared gap: "auto" runs the reference engine saying why once, the engine itself refuses."""
    monkeypatch.setattr(_native, "_WARNED", set())
    with pytest.warns(RuntimeWarning, match="running the XLA step on the CPU because " + re.escape(lacking)):
        signals = jtfne.simulate(model, engine="auto")
    assert signals.attrs["engine"] == REFERENCE
    with pytest.raises(SimulationError, match=re.escape(lacking)):
        jtfne.simulate(model, engine=engine)


# -- the kit --------------------------------------------------------------------------------

def _params():
    out = []
    for feature in FEATURES:
        for engine in UNDER_TEST:
            marks = [needs_native] if engine == "native" else []
            if feature.known_bug:
                marks.append(pytest.mark.xfail(strict=True, reason=f"known bug: {feature.known_bug}"))
            out.append(pytest.param(feature, engine, id=f"{feature.id}-{engine}", marks=marks))
    return out


@pytest.mark.parametrize("feature,engine", _params())
def test_engine_agrees_with_the_reference(feature, engine, monkeypatch):
    model = model_of(feature)
    lacking = CAPABILITIES[engine](model.layout)
    if lacking:
        check_fallback(model, engine, lacking, monkeypatch)
        pytest.skip(f"{engine} declares {feature.id} unsupported: {lacking}")
    try:
        out = run(feature, engine)
    except Exception as err:  # noqa: BLE001 - any failure of an engine that claims the feature is the finding
        pytest.fail(f"engine {engine!r} failed on feature {feature.id!r}, which it does not declare unsupported "
                    f"(_native.unsupported): {type(err).__name__}: {err}")
    if feature.alone_of:                    # one probe alone: the same bits as in the run recording them all
        ref = run(BY_ID[feature.alone_of], REFERENCE)[list(out.data_vars)]
        together = run(BY_ID[feature.alone_of], engine)[list(out.data_vars)]
        problems = [f"[{engine}] {name}: recorded alone it differs from the run that records every probe"
                    for name in out.data_vars if out[name].values.tobytes() != together[name].values.tobytes()]
    else:
        ref, problems = run(feature, REFERENCE), []
    problems += differences(ref, out, model.layout.dtype)
    if feature.full_of:                     # within each engine, sampling only picks from the full run
        full = BY_ID[feature.full_of]
        for e in (REFERENCE, engine):
            problems += [f"[{e}] {p}" for p in sampled_from(run(full, e), run(feature, e), model.layout)]
    if problems:
        pytest.fail(f"engine {engine!r} disagrees with {REFERENCE!r} on feature {feature.id!r} "
                    f"({model.layout.dtype}) and does not declare it unsupported:\n  " + "\n  ".join(problems))
    assert int(np.asarray(ref["SPK"].values).sum()) > 0, f"feature {feature.id!r} does not spike: a weak test"


def test_every_probe_runs_on_the_reference_engine():
    assert [name for name, p in REGISTRY.items() if REFERENCE not in p.engines] == []
    assert {f.id for f in FEATURES} >= {f"probe:{name}" for name in REGISTRY}


def test_a_declared_gap_falls_back(monkeypatch):
    """The kit's path for a declared gap, exercised on a probe made xla-only for the test."""
    name = next(n for n, p in REGISTRY.items() if n != "SPK" and p.sampled)
    gap = MappingProxyType({n: dataclasses.replace(p, engines=(REFERENCE,)) if n == name else p
                            for n, p in REGISTRY.items()})
    monkeypatch.setattr(_native, "REGISTRY", gap)
    model = model_of(BY_ID[BASE])
    lacking = _native.unsupported(model.layout)
    assert lacking and repr(name) in lacking
    check_fallback(model, "native", lacking, monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert jtfne.simulate(model, engine="auto").attrs["engine"] == REFERENCE     # said once, not per run
    monkeypatch.undo()
    assert _native.unsupported(model.layout) is None


def test_the_table_above_is_current():
    rows = {}
    for line in __doc__.splitlines():
        m = re.match(r"^    (\S.*?)\s{2,}(reference)\s{2,}(.+?)\s*$", line)
        if m:
            rows[m.group(1)] = [m.group(2)] + re.split(r"\s{2,}", m.group(3))
    want = {f.id: ["reference"] + [expected_column(f, e) for e in UNDER_TEST] for f in FEATURES}
    assert rows == want, "update the table in the docstring of tests/test_conformance.py"
