"""Current stimuli (step, pulses, sine): configuration, targets, the current against numpy, both engines.

The references are independent numpy transcriptions: the stimulus current of a
cell from the values given to ``cfg.stimulus`` (steps from ms by rounding, the
sine from its frequency), and the forward Euler step of an uncoupled,
noise-free cell with that current added last. The native kernel is built
without contraction of multiply-adds, so it must give the numpy Vm bit for
bit in float64; XLA contracts multiply-adds (a * b + c as one fused
operation, measured: 23 % of random float64 triples differ in the last bit),
so the XLA engine must give the same spikes and Vm to rounding.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest
from scipy import stats

import jaxfne as jtfne
from jaxfne.engine import chunk_function
from jaxfne.engine._step import poisson_counts, poisson_input, stimulus_current
from jaxfne.model import _construct, precision
from jaxfne.model._stimuli import stimulus_regions

from conftest import needs_native

DT = 0.1
N_STEPS = 600
UNCOUPLED = {"E->E": 0.0, "E->I": 0.0, "I->E": 0.0, "I->I": 0.0}


def uncoupled(duration_ms=N_STEPS * DT, dtype="float64", n=8):
    return (jtfne.Configuration().runtime(seed=5, dtype=dtype, duration_ms=duration_ms, dt_ms=DT).column(n=n)
            .cell_types({"E": 0.5, "I": 0.5}).connectivity(strength=UNCOUPLED)
            .drive(current={"E": 0.0, "I": 0.0}, noise=0.0).probes(["SPK", "Vm"]))


#: neuron 1 gets the step, neuron 2 the sine, neuron 3 both, neuron 5 the pulse train; the others nothing
STIMULATED = (uncoupled()
              .stimulus("a_step", kind="step", amplitude=9.5, onset_ms=10.0, duration_ms=25.0, neurons=[1, 3])
              .stimulus("b_sine", kind="sine", amplitude=7.0, frequency_hz=35.0, phase=0.4, offset=4.5,
                        onset_ms=5.0, neurons=[2, 3])
              .stimulus("c_pulses", kind="pulses", amplitude=30.0, onset_ms=3.0, duration_ms=1.2, period_ms=8.0,
                        count=4, neurons=[5]))


def reference_current(cfg, n_steps):
    """(n_steps, N) float64 stimulus current, transcribed from the configuration's values with numpy."""
    n, dt = cfg.n, cfg.runtime_spec.dt_ms
    out = np.zeros((n_steps, n))
    t = np.arange(n_steps)
    for spec in sorted(cfg.stimuli_spec, key=lambda s: s.name):      # summed in name order
        v = dict(spec.values)
        onset = int(round(v["onset_ms"] / dt))
        k = t - onset
        if spec.kind == "pulses":
            width, period = int(round(v["duration_ms"] / dt)), int(round(v["period_ms"] / dt))
            on = (k >= 0) & (k % period < width) & (k // period < (v["count"] or np.inf))
        else:
            end = np.inf if v["duration_ms"] is None else int(round(v["duration_ms"] / dt))
            on = (k >= 0) & (k < end)
        if spec.kind == "sine":
            omega = 2.0 * np.pi * v["frequency_hz"] * dt / 1000.0
            value = v["amplitude"] * np.sin(omega * k.astype(np.float64) + v["phase"]) + v["offset"]
        else:
            value = np.full(n_steps, v["amplitude"])
        value = np.where(on, value, 0.0)
        for i in spec.targets()["neurons"]:
            out[:, i] = out[:, i] + value
    return out


def reference_euler(a, b, c, d, i_mean, current):
    """Forward Euler of uncoupled, noise-free cells: the engines' order of operations, the stimulus last."""
    v = np.full(a.shape, -65.0)
    u = b * v
    vm = np.empty(current.shape)
    for k in range(current.shape[0]):
        i_total = ((i_mean + 0.0) + 0.0) + current[k]          # (drive + synaptic) + noise, then the stimulus
        v_new = v + DT * ((((0.04 * v) * v + 5.0 * v) + 140.0) - u + i_total)
        u_new = u + DT * (a * (b * v - u))
        fired = v_new >= 30.0
        vm[k] = np.where(fired, 30.0, v_new)
        v = np.where(fired, c, v_new)
        u = np.where(fired, u_new + d, u_new)
    return vm


def member_params(model, m=0):
    return model.member_params(m)


def test_the_current_matches_numpy():
    """The XLA step's stimulus current at every step: step and pulse values exactly, the sine to rounding."""
    model = jtfne.construct(STIMULATED)
    p = member_params(model)
    with precision("float64"):
        got = np.asarray(jax.jit(jax.vmap(lambda t: stimulus_current(p, t)))(np.arange(N_STEPS, dtype=np.uint32)))
    ref = reference_current(STIMULATED, N_STEPS)
    exact = [0, 1, 4, 5, 6, 7]
    np.testing.assert_array_equal(got[:, exact], ref[:, exact])
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-13)
    # the gates in steps: on from onset, off after duration; 4 pulses of 12 steps every 80 steps
    assert np.flatnonzero(ref[:, 1]).tolist() == list(range(100, 350))
    assert np.flatnonzero(ref[:, 5]).tolist() == [30 + 80 * j + i for j in range(4) for i in range(12)]
    assert (ref[:50, 2] == 0).all() and (ref[50:, 2] != 0).all()


@pytest.mark.parametrize("engine", ["xla", pytest.param("native", marks=needs_native)])
def test_vm_matches_numpy_euler(engine):
    model = jtfne.construct(STIMULATED)
    sig = jtfne.simulate(model, engine=engine)
    assert sig.attrs["engine"] == engine
    p = member_params(model)
    a, b, c, d, i_mean = (np.asarray(getattr(p, k)) for k in ("a", "b", "c", "d", "i_mean"))
    ref = reference_euler(a, b, c, d, i_mean, reference_current(STIMULATED, N_STEPS))
    vm, spk = np.asarray(sig["Vm"]), np.asarray(sig["SPK"])              # a single network: (time, neuron)
    assert vm.dtype == np.float64
    np.testing.assert_array_equal(spk, ref >= 30.0)
    assert spk[:, [1, 2, 3, 5]].sum(axis=0).min() > 0 and spk[:, [0, 4, 6, 7]].sum() == 0   # the stimuli drive
    if engine == "native":
        np.testing.assert_array_equal(vm, ref)               # bit for bit: same operations, no contraction
    else:
        np.testing.assert_allclose(vm, ref, rtol=0, atol=1e-9)


def test_target_regions_by_column_layer_and_type():
    """The static candidates (host side, no arrays of the network): column, layer, cell type, indices."""
    cfg = (uncoupled(duration_ms=1.0).column(name="A", layers=["L2/3", "L4"], n=20)
           .column(name="B", layers=["L4"], n=10)
           .stimulus("l4", kind="step", amplitude=1.0, layer="L4")
           .stimulus("bl4e", kind="step", amplitude=1.0, column="B", layer="L4", cell_type="E")
           .stimulus("ai", kind="step", amplitude=1.0, column="A", cell_type="I", fraction=0.5)
           .stimulus("idx", kind="step", amplitude=1.0, neurons=[29, 0]))
    region, ctype, tags = stimulus_regions(cfg, _construct.layer_index(cfg), _construct.column_index(cfg))
    names = [s.name for s in cfg.stimuli_spec]
    assert names == sorted(names)
    row = dict(zip(names, range(4)))
    layer = np.asarray(["L2/3"] * 11 + ["L4"] * 9 + ["L4"] * 10)   # A: 20 split 11/9 by LAYER_FRACTIONS; B: 10
    column = np.asarray(["A"] * 20 + ["B"] * 10)
    assert np.array_equal(region[row["l4"]], layer == "L4")
    assert np.array_equal(region[row["bl4e"]], column == "B") and ctype[row["bl4e"]] == 1
    assert np.array_equal(region[row["ai"]], column == "A") and ctype[row["ai"]] == 2
    assert np.flatnonzero(region[row["idx"]]).tolist() == [0, 29] and ctype[row["idx"]] == 0
    assert len(set(tags.tolist())) == 4


def test_targets_by_type_and_fraction_are_drawn_per_member():
    """Targets drawn per member from its seed; a member's run is the same alone on one device as in a
    padded ensemble sharded over four (coupled, noisy cells: the stimuli keep the layout guarantees)."""
    cfg = (jtfne.Configuration().runtime(seed=0, duration_ms=8.0, dt_ms=DT).column(layers=["L2/3", "L4"], n=20)
           .cell_types({"E": 0.6, "I": 0.4}).probes(["SPK", "Vm"])
           .stimulus("l4", kind="step", amplitude=12.0, onset_ms=2.0, layer="L4")
           .stimulus("half", kind="pulses", amplitude=9.0, duration_ms=1.0, period_ms=2.0, cell_type="I",
                     fraction=0.5)
           .stimulus("e", kind="sine", amplitude=6.0, frequency_hz=90.0, cell_type="E", fraction=0.3)
           .stimulus("p", kind="poisson", rate_hz=300.0, n_sources=5, weight=3.0, synapse="I", fraction=0.5))
    model = jtfne.construct(cfg.ensemble(seeds=[1, 2, 3]))
    names = [s.name for s in cfg.stimuli_spec]
    row = dict(zip(names, range(4)))
    target = np.asarray(model.params.stim_target).astype(bool)          # (members, S, N)
    layer = np.asarray(model.neuron_coords["layer"])
    ctype = np.asarray(model.neuron_coords["cell_type"])                # (members, N)
    for m in range(3):
        assert np.array_equal(target[m, row["l4"]], layer == "L4")
        for name, t, f in (("half", "I", 0.5), ("e", "E", 0.3)):
            cand = ctype[m] == t
            assert not (target[m, row[name]] & ~cand).any()
            assert target[m, row[name]].sum() == int(np.floor(f * cand.sum() + 0.5))
    assert len({target[m, row["half"]].tobytes() for m in range(3)}) == 3          # drawn per member
    # the draw depends on the member's seed and the stimulus's name only: alone, with another stimulus
    # (of amplitude 0: it adds +0.0 to the current, which changes no bit)
    alone = jtfne.construct(cfg.runtime(seed=2).stimulus("zz", kind="sine", amplitude=0.0, frequency_hz=3.0))
    t_alone = np.asarray(alone.params.stim_target).astype(bool)[0]
    names_alone = [s.name for s in alone.config.stimuli_spec]
    for name in names:
        assert np.array_equal(t_alone[names_alone.index(name)], target[1, row[name]])
    ens = jtfne.simulate(model, engine="xla")                            # 3 members padded over 4 devices
    one = jtfne.simulate(alone, engine="xla", devices=jax.devices()[:1])
    for name in ("SPK", "Vm"):
        np.testing.assert_array_equal(np.asarray(ens[name])[1], np.asarray(one[name]))
    assert np.asarray(one["SPK"]).sum() > 0


def test_sweep_changes_values_without_recompiling():
    """Sweeping amplitude, onset and frequency changes arrays only: no new chunk program, no XLA compile."""
    base = (uncoupled(duration_ms=20.0).stimulus("s", kind="sine", amplitude=5.0, frequency_hz=50.0, neurons=[1])
            .stimulus("p", kind="poisson", rate_hz=100.0, n_sources=4, weight=2.0, neurons=[2]))

    def ensemble(amplitudes, onsets, freqs, rates=(100.0, 200.0), sources=(4, 8)):
        return base.ensemble(seeds=[1, 2], mode="zip", sweep={"stimulus.s.amplitude": amplitudes,
                                                               "stimulus.s.onset_ms": onsets,
                                                               "stimulus.s.frequency_hz": freqs,
                                                               "stimulus.p.rate_hz": list(rates),
                                                               "stimulus.p.n_sources": list(sources)})

    first = jtfne.simulate(jtfne.construct(ensemble([10.0, 20.0], [1.0, 2.0], [20.0, 40.0])), engine="xla")
    misses = chunk_function.cache_info().misses
    compiles = []
    listener = (lambda event, duration, **kw: compiles.append(event)
                if event == "/jax/core/compile/backend_compile_duration" else None)
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        second = jtfne.simulate(jtfne.construct(ensemble([30.0, 40.0], [5.0, 0.0], [60.0, 80.0], (300.0, 50.0),
                                                         (2, 30))), engine="xla")
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert chunk_function.cache_info().misses == misses
    assert compiles == []
    assert not np.array_equal(np.asarray(first["Vm"]), np.asarray(second["Vm"]))
    coords = second["Vm"].coords
    assert coords["stimulus.s.amplitude"].values.tolist() == [30.0, 30.0, 40.0, 40.0]
    params = jtfne.construct(ensemble([30.0, 40.0], [5.0, 0.0], [60.0, 80.0], (300.0, 50.0), (2, 30))).params
    wave, steps = np.asarray(params.stim_wave), np.asarray(params.stim_steps)      # stimuli in name order: p, s
    np.testing.assert_array_equal(wave[:, 1, 0], [30.0, 30.0, 40.0, 40.0])
    np.testing.assert_allclose(wave[:, 1, 2], 2 * np.pi * np.repeat([60.0, 80.0], 2) * DT / 1000.0, rtol=1e-15)
    np.testing.assert_array_equal(steps[:, 0, 4], np.round(np.repeat([300.0, 50.0], 2) * DT / 1000.0 * 2**24))
    np.testing.assert_array_equal(steps[:, 0, 5], [2, 2, 30, 30])


def test_hash_manifest_and_store_attributes(tmp_path):
    base = uncoupled(duration_ms=2.0).stimulus("p", kind="pulses", amplitude=3.0, duration_ms=0.5, period_ms=1.0,
                                               layer="L2/3")
    variants = [base.stimulus("p", amplitude=3.5), base.stimulus("p", onset_ms=0.1),
                base.stimulus("p", duration_ms=0.2), base.stimulus("p", period_ms=0.8), base.stimulus("p", count=2),
                base.stimulus("p", cell_type="E"), base.stimulus("p", fraction=0.5),
                base.stimulus("p", kind="step", amplitude=3.0), base.stimulus("q", kind="step", amplitude=1.0),
                base.stimulus("p", layer=None, neurons=[0]), uncoupled(duration_ms=2.0),
                base.stimulus("p", amplitude=float(np.nextafter(3.0, 4.0)))]
    hashes = {c.config_hash() for c in [base, *variants]}
    assert len(hashes) == len(variants) + 1
    # equal stimuli, another chain: the same hash (stimuli are kept sorted by name)
    two = base.stimulus("a", kind="step", amplitude=1.0)
    other = (uncoupled(duration_ms=2.0).stimulus("a", kind="step", amplitude=2.0)
             .stimulus("p", kind="pulses", amplitude=3.0, duration_ms=0.5, period_ms=1.0, layer="L2/3")
             .stimulus("a", amplitude=1.0))
    assert other == two and other.config_hash() == two.config_hash()
    assert jtfne.Configuration.from_dict(json.loads(json.dumps(two.to_dict()))) == two
    # a configuration without stimuli keeps the form (and hash) it had before stimuli existed
    assert "stimuli" not in uncoupled().to_dict()
    assert _construct.make_layout(uncoupled()).n_stimuli == 0
    # the store's attributes and the manifest carry every stimulus (the run of the Vm test: compiled once)
    model = jtfne.construct(STIMULATED)
    sig = jtfne.simulate(model, store=tmp_path / "run.zarr", engine="xla")
    want = STIMULATED.to_dict()["stimuli"]
    assert set(want) == {"a_step", "b_sine", "c_pulses"}
    assert json.loads(sig.attrs["config_json"])["stimuli"] == want
    assert sig.attrs["config_hash"] == STIMULATED.config_hash()
    reopened = jtfne.open_signals(tmp_path / "run.zarr")
    assert json.loads(reopened.attrs["config_json"])["stimuli"] == want
    assert model.manifest(sig)["config"]["stimuli"] == want


@pytest.mark.parametrize("make,match", [
    (lambda c: c.stimulus("x", kind="ramp", amplitude=1.0), r"stimulus\['x'\]: kind='ramp' is invalid; valid kinds"),
    (lambda c: c.stimulus("x", amplitude=1.0), r"kind=None is invalid; a new stimulus needs its kind"),
    (lambda c: c.stimulus("", kind="step", amplitude=1.0), r"stimulus: name='' is invalid"),
    (lambda c: c.stimulus("x", kind="step"), r"amplitude=None is invalid; a 'step' stimulus needs amplitude"),
    (lambda c: c.stimulus("x", kind="step", amplitude=1.0, frequency_hz=3.0),
     r"frequency_hz=3.0 is invalid; field 'frequency_hz' is unknown for kind 'step'"),
    (lambda c: c.stimulus("x", kind="step", amplitude=float("nan")), r"amplitude=nan is invalid"),
    (lambda c: c.stimulus("x", kind="step", amplitude=1.0, onset_ms=-1.0), r"onset_ms=-1.0 is invalid"),
    (lambda c: c.stimulus("x", kind="sine", amplitude=1.0, frequency_hz=-2.0), r"frequency_hz=-2.0 is invalid"),
    (lambda c: c.stimulus("x", kind="pulses", amplitude=1.0, duration_ms=2.0, period_ms=1.0),
     r"duration_ms=2.0 is invalid; a pulse must not be longer than the period_ms"),
    (lambda c: c.stimulus("x", kind="pulses", amplitude=1.0, duration_ms=1.0, period_ms=2.0, count=0),
     r"count=0 is invalid"),
    (lambda c: c.stimulus("x", kind="step", amplitude=1.0, layer="L9"), r"layer='L9' is invalid; valid layers"),
    (lambda c: c.stimulus("x", kind="step", amplitude=1.0, cell_type="X"), r"cell_type='X' is invalid"),
    (lambda c: c.stimulus("x", kind="step", amplitude=1.0, fraction=0.0), r"fraction=0.0 is invalid"),
    (lambda c: c.stimulus("x", kind="step", amplitude=1.0, fraction=1.5), r"fraction=1.5 is invalid"),
    (lambda c: c.stimulus("x", kind="step", amplitude=1.0, neurons=[1, 1]), r"neurons=\[1, 1\] is invalid"),
    (lambda c: c.stimulus("x", kind="step", amplitude=1.0, neurons=[1], layer="L2/3"),
     r"explicit neurons cannot be combined with layer"),
    (lambda c: c.stimulus("x", kind="poisson", rate_hz=10.0, n_sources=0, weight=1.0), r"n_sources=0 is invalid"),
    (lambda c: c.stimulus("x", kind="poisson", rate_hz=10.0, n_sources=2.5, weight=1.0),
     r"n_sources=2.5 is invalid; an integer is required"),
    (lambda c: c.stimulus("x", kind="poisson", rate_hz=-1.0, n_sources=2, weight=1.0), r"rate_hz=-1.0 is invalid"),
    (lambda c: c.stimulus("x", kind="poisson", rate_hz=1.0, n_sources=2, weight=-1.0), r"weight=-1.0 is invalid"),
    (lambda c: c.stimulus("x", kind="poisson", rate_hz=1.0, n_sources=2, weight=1.0, synapse="AMPA"),
     r"synapse='AMPA' is invalid; the synapse kind is the source's cell type"),
    (lambda c: c.stimulus("x", kind="step", amplitude=1.0).ensemble(sweep={"stimulus.y.amplitude": [1.0]}),
     r"names the stimulus 'y', which this configuration does not have"),
    (lambda c: c.stimulus("x", kind="step", amplitude=1.0).ensemble(sweep={"stimulus.x.kind": ["sine"]}),
     r"'stimulus.x.kind' cannot be swept"),
    (lambda c: c.stimulus("x", kind="step", amplitude=1.0).ensemble(sweep={"stimulus.x.phase": [1.0]}),
     r"sweep\['stimulus.x.phase'\] value 1.0 is invalid: stimulus\['x'\]: phase=1.0 is invalid"),
], ids=lambda x: x if isinstance(x, str) else "")
def test_bad_stimuli_are_named(make, match):
    with pytest.raises(jtfne.ConfigurationError, match=match):
        make(uncoupled(duration_ms=2.0))


@pytest.mark.parametrize("make,match", [
    (lambda c: c.stimulus("x", kind="step", amplitude=1.0, onset_ms=0.25),
     r"stimulus\['x'\]: onset_ms=0.25 is invalid; it must be a whole number of steps of dt_ms=0.1"),
    (lambda c: c.stimulus("x", kind="step", amplitude=1.0, neurons=[8]),
     r"neurons=\[8\] is invalid; indices must be < n=8"),
    (lambda c: c.stimulus("x", kind="step", amplitude=1.0, column="B"), r"column='B' is invalid; valid columns"),
    (lambda c: c.stimulus("x", kind="step", amplitude=1.0, layer="L4"), r"layer='L4' is invalid; the targeted column"),
    (lambda c: c.stimulus("x", kind="poisson", rate_hz=20000.0, n_sources=1, weight=1.0),
     r"rate_hz=20000.0 is invalid; one source fires at most once a step"),
])
def test_targets_and_times_are_checked_by_construct(make, match):
    with pytest.raises(jtfne.ConfigurationError, match=match):
        jtfne.construct(make(uncoupled(duration_ms=2.0)))


def test_poisson_counts_are_binomial():
    """The spikes a Poisson stimulus sends one target in one step: Binomial(n_sources, q) with
    q = round(rate_hz dt_ms / 1000 2^24) / 2^24. Over M = targets x steps draws, the frequency of each count k
    must be within 5 standard errors sqrt(P_k (1 - P_k) / M) of the binomial P_k, and counts of consecutive
    steps and of neighbouring targets uncorrelated within 5 / sqrt(M); off before onset, exactly."""
    n_sources, rate_hz, onset = 20, 150.0, 40
    cfg = uncoupled(duration_ms=1.0, n=64).stimulus("p", kind="poisson", rate_hz=rate_hz, n_sources=n_sources,
                                                    weight=1.0, onset_ms=onset * DT)
    p = member_params(jtfne.construct(cfg))
    steps = np.arange(3000, dtype=np.uint32)
    draws = jax.jit(jax.vmap(lambda t: poisson_counts(p, t, 0, p.stim_steps[0, 5])))
    with precision("float64"):
        counts = np.asarray(draws(steps)).astype(np.int64)                # (steps, targets), drawn from onset on
        exc = np.asarray(jax.jit(jax.vmap(lambda t: poisson_input(p, t)[0]))(steps[:200]))
    q = round(rate_hz * DT / 1000.0 * 2**24) / 2**24
    m = counts.size
    for k in range(5):
        pk = stats.binom.pmf(k, n_sources, q)
        assert abs(np.mean(counts == k) - pk) <= 5 * np.sqrt(pk * (1 - pk) / m), k
    assert abs(counts.mean() - n_sources * q) <= 5 * np.sqrt(n_sources * q * (1 - q) / m)
    z = (counts - counts.mean()) / counts.std()
    assert abs(np.mean(z[1:] * z[:-1])) <= 5 / np.sqrt(m) and abs(np.mean(z[:, 1:] * z[:, :-1])) <= 5 / np.sqrt(m)
    # through the step: the input is counts * weight on the targets, from onset on only
    assert (exc[:onset] == 0).all()
    np.testing.assert_array_equal(exc[onset:], counts[onset:200].astype(exc.dtype))


def test_onsets_for_trial_alignment_come_back_from_a_stored_configuration():
    """The onsets of every pulse (the trials) are derived from the configuration the run carries."""
    cfg = jtfne.Configuration.from_dict(json.loads(json.dumps(STIMULATED.to_dict())))
    by_name = {s.name: s for s in cfg.stimuli_spec}
    assert by_name["c_pulses"].onsets_ms(60.0) == (3.0, 11.0, 19.0, 27.0)          # count=4 of period 8 ms
    assert by_name["c_pulses"].onsets_ms(20.0) == (3.0, 11.0, 19.0)                 # cut by the run's end
    assert by_name["a_step"].onsets_ms(60.0) == (10.0,) and by_name["a_step"].onsets_ms(10.0) == ()
    endless = jtfne.Configuration().stimulus("t", kind="pulses", amplitude=1.0, onset_ms=5.0, duration_ms=1.0,
                                             period_ms=10.0)
    assert endless.stimuli_spec[0].onsets_ms(35.0) == (5.0, 15.0, 25.0)
