"""User-defined neurons: explicit (a, b, c, d) per cell type, per-neuron r-heterogeneity, registered presets.

References are independent of jaxfne: a float64 numpy forward-Euler loop written from the Izhikevich
(2003) equations (as tests/test_presets.py), and the paper's heterogeneity formulas applied in numpy to
the r the model drew (``Model.r``). Registered presets are reopened from a store in a fresh process.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

import jaxfne as jtfne
from conftest import needs_native

DT_MS = 0.1
UNCOUPLED = {"E->E": 0.0, "E->I": 0.0, "I->E": 0.0, "I->I": 0.0}
E_PARAMS = {"a": 0.03, "b": 0.22, "c": -58.0, "d": 5.0}
I_PARAMS = {"a": 0.02, "b": 0.24, "c": -63.0, "d": 1.5}
#: the Izhikevich (2003) network as the paper writes it: E c = -65 + 15 r**2, d = 8 - 6 r**2;
#: I a = 0.02 + 0.08 r, b = 0.25 - 0.05 r (the base values from params)
PAPER = dict(params={"E": {"a": 0.02, "b": 0.2, "c": -65.0, "d": 8.0},
                     "I": {"a": 0.02, "b": 0.25, "c": -65.0, "d": 2.0}},
             heterogeneity={"E": {"c": (-65.0, 0.0, 15.0), "d": (8.0, 0.0, -6.0)},
                            "I": {"a": (0.02, 0.08), "b": (0.25, -0.05)}})


def reference_euler(a, b, c, d, current, n_steps):
    """Float64 forward Euler, both variables from the old (v, u); spike when the new v >= 30 mV,
    then v <- c, u <- u + d; v0 = -65, u0 = b v0. Returns (spike steps per neuron, Vm (steps, N))."""
    a, b, c, d, current = np.broadcast_arrays(*(np.asarray(x, np.float64) for x in (a, b, c, d, current)))
    v = np.full(a.shape, -65.0)
    u = b * v
    vm, fired_at = np.empty((n_steps,) + a.shape), np.zeros((n_steps,) + a.shape, bool)
    for k in range(n_steps):
        v_new = v + DT_MS * (0.04 * v * v + 5.0 * v + 140.0 - u + current)
        u_new = u + DT_MS * (a * (b * v - u))
        fired = v_new >= 30.0
        fired_at[k], vm[k] = fired, np.where(fired, 30.0, v_new)
        v, u = np.where(fired, c, v_new), np.where(fired, u_new + d, u_new)
    return [np.flatnonzero(col) for col in fired_at.T], vm


def small(**emitter):
    return (jtfne.Configuration().runtime(seed=5, dtype="float64", duration_ms=200.0, dt_ms=DT_MS)
            .column(n=4).cell_types({"E": 0.5, "I": 0.5}).connectivity(strength=UNCOUPLED)
            .set_emitter(**emitter).drive(current={"E": 10.0, "I": 6.0}, noise=0.0).probes(["SPK", "Vm"]))


@pytest.mark.parametrize("engine", ["xla", pytest.param("native", marks=needs_native)])
def test_explicit_params_match_numpy_euler(engine):
    model = jtfne.construct(small(params={"E": E_PARAMS, "I": I_PARAMS}))
    signals = jtfne.simulate(model, engine=engine)
    is_exc = np.asarray(model.params.is_exc)[0]
    assert is_exc.tolist() == [True, True, False, False]
    expected = {k: np.where(is_exc, E_PARAMS[k], I_PARAMS[k]) for k in "abcd"}
    for k in "abcd":   # exactly the given values, on every neuron of the type
        np.testing.assert_array_equal(np.asarray(getattr(model.params, k))[0], expected[k])
    ref_spikes, ref_vm = reference_euler(*(expected[k] for k in "abcd"), np.where(is_exc, 10.0, 6.0),
                                         model.layout.n_steps)
    spk, vm = np.asarray(signals["SPK"]), np.asarray(signals["Vm"])
    for i in range(4):
        assert ref_spikes[i].size > 3
        np.testing.assert_array_equal(np.flatnonzero(spk[:, i]), ref_spikes[i])
    if engine == "native":   # the kernel evaluates the same expression in the same order: bit for bit
        np.testing.assert_array_equal(vm, ref_vm)
    else:   # XLA may contract the multiply-adds (tests/test_presets.py): measured <= 1e-7 mV here, no spike moved
        np.testing.assert_allclose(vm, ref_vm, rtol=0, atol=1e-6)


def test_paper_heterogeneity_is_the_paper_formula_of_the_models_r():
    cfg = small(**PAPER).column(n=40).cell_types({"E": 0.8, "I": 0.2})
    model = jtfne.construct(cfg)
    r = model.r[0].astype(np.float64)
    assert r.shape == (40,) and (r >= 0).all() and (r < 1).all() and np.unique(r).size == 40
    is_exc = np.asarray(model.params.is_exc)[0]
    paper = {"a": np.where(is_exc, 0.02, 0.02 + 0.08 * r), "b": np.where(is_exc, 0.2, 0.25 - 0.05 * r),
             "c": np.where(is_exc, -65.0 + 15.0 * r * r, -65.0), "d": np.where(is_exc, 8.0 - 6.0 * r * r, 2.0)}
    for k in "abcd":
        np.testing.assert_allclose(np.asarray(getattr(model.params, k))[0], paper[k], rtol=1e-15, atol=1e-13)
    # the built-in cortical_eig preset is the same population: the same arrays from the same r
    builtin = jtfne.construct(cfg.set_emitter(preset="cortical_eig", heterogeneity=None))
    np.testing.assert_array_equal(builtin.r, model.r)
    for k in "abcd":
        np.testing.assert_array_equal(np.asarray(getattr(builtin.params, k)), np.asarray(getattr(model.params, k)))


def test_r_does_not_depend_on_the_layout():
    """A member's r (and so its parameters) comes from its seed alone: alone or third in an ensemble."""
    cfg = small(heterogeneity={"E": {"d": (8.0, 0.0, -6.0)}, "I": {"a": (0.02, 0.08)}})
    alone = jtfne.construct(cfg.runtime(seed=11))
    ens = jtfne.construct(cfg.ensemble(seeds=[3, 11]))   # two members: the shape of the fresh-process test
    np.testing.assert_array_equal(ens.r[1], alone.r[0])
    assert not np.array_equal(ens.r[0], ens.r[1])
    for k in "abcd":
        np.testing.assert_array_equal(np.asarray(getattr(ens.params, k))[1], np.asarray(getattr(alone.params, k))[0])


@pytest.mark.parametrize("kwargs, match", [
    (dict(params={"E": {**E_PARAMS, "e": 1.0}}), r"params\['E'\] has unknown parameter 'e'; valid parameters are a, b, c, d"),
    (dict(params={"E": {"a": 0.02, "b": 0.2, "c": -65.0}}), r"params\['E'\]=.* lacks d"),
    (dict(params={"E": {**E_PARAMS, "a": float("nan")}}), r"params\['E'\]\['a'\]=nan is invalid; a finite number"),
    (dict(params={"E": {**E_PARAMS, "c": 35.0}}), r"params\['E'\]\['c'\]=35.0 is invalid; the reset c must stay "
                                                  r"below the 30.0 mV spike peak"),
    (dict(params={"X": E_PARAMS}), r"cell type 'X' is unknown; valid types are E, I"),
    (dict(preset={"E": "regular_spiking"}, params={"E": E_PARAMS}),
     r"cell type 'E' is also given preset='regular_spiking' in this call; give a type either a preset or params"),
    (dict(preset="regular_spiking", params={"I": I_PARAMS}), r"cell type 'I' is also given preset"),
    (dict(heterogeneity={"E": {"v": (1.0, 2.0)}}), r"parameter 'v' is unknown; valid parameters are a, b, c, d"),
    (dict(heterogeneity={"I": {"a": (0.02, float("inf"))}}), r"heterogeneity\['I'\]\['a'\]\[1\]=inf is invalid"),
    (dict(heterogeneity={"I": {"a": (0.02,)}}), r"a pair \(p0, p1\) for p0 \+ p1 r or a triple"),
    (dict(heterogeneity={"E": {"c": (-65.0, 0.0, 100.0)}}), r"\['c'\]=\(-65.0, 0.0, 100.0\) is invalid; the reset c must stay below the 30.0 mV spike peak \(it reaches 35.0 mV\)"),
    (dict(heterogeneity={"Q": {"a": (0.02, 0.1)}}), r"cell type 'Q' is unknown"),
    (dict(preset={"E": "my_unregistered"}), r"preset\['E'\]='my_unregistered' is not a known preset; valid presets "
                                             r"are .*regular_spiking.*register_preset"),
])
def test_bad_input_is_named(kwargs, match):
    with pytest.raises(jtfne.ConfigurationError, match=match) as info:
        jtfne.Configuration().set_emitter(**kwargs)
    assert str(info.value).startswith("set_emitter: ")


def test_register_preset_validates_like_the_built_in_ones():
    with pytest.raises(jtfne.ConfigurationError, match=r"register_preset: name='regular_spiking' is invalid; it is "
                                                        r"a built-in preset"):
        jtfne.register_preset("regular_spiking", **E_PARAMS)
    with pytest.raises(jtfne.ConfigurationError, match=r"register_preset: params\['d'\]=inf is invalid"):
        jtfne.register_preset("un_test_bad", **{**E_PARAMS, "d": float("inf")})
    with pytest.raises(jtfne.ConfigurationError, match=r"register_preset: family='hh' is invalid"):
        jtfne.register_preset("un_test_bad", **E_PARAMS, family="hh")
    jtfne.register_preset("un_test_twice", **E_PARAMS)
    jtfne.register_preset("un_test_twice", **E_PARAMS)       # the same values again: accepted
    with pytest.raises(jtfne.ConfigurationError, match=r"preset 'un_test_twice' is already registered with other"):
        jtfne.register_preset("un_test_twice", **{**E_PARAMS, "d": 6.0})
    assert "un_test_twice" not in jtfne.preset_names()      # the built-in list stays the built-in list


def test_changes_change_the_hash_and_round_trip():
    base = small()
    variants = [base.set_emitter(params={"E": E_PARAMS}),
                base.set_emitter(params={"E": {**E_PARAMS, "d": float(np.nextafter(5.0, 6.0))}}),
                base.set_emitter(heterogeneity={"I": {"a": (0.02, 0.08)}}),
                base.set_emitter(heterogeneity={"I": {"a": (0.02, 0.0, 0.08)}}),
                base.set_emitter(**PAPER)]
    hashes = {c.config_hash() for c in [base, *variants]}
    assert len(hashes) == len(variants) + 1
    for c in variants:
        back = jtfne.Configuration.from_dict(json.loads(json.dumps(c.to_dict())))
        assert back == c and back.config_hash() == c.config_hash()
    # a preset replaces params of its type, and the other way round; clearing heterogeneity restores the hash
    assert variants[0].set_emitter(preset={"E": "cortical_eig"}) == base
    assert variants[2].set_emitter(heterogeneity={"I": {}}) == base


REOPEN = """
import json, sys
import numpy as np
import jaxfne as jtfne
assert "un_test_fresh" not in jtfne.config.user_preset_names()
signals = jtfne.open_signals(sys.argv[1])
cfg = jtfne.Configuration.from_dict(json.loads(signals.attrs["config_json"]))
model = jtfne.construct(cfg)
print(json.dumps({"hash": cfg.config_hash(), "a": np.asarray(model.params.a).tolist(),
                  "c": np.asarray(model.params.c).tolist(), "manifest": jtfne.manifest(signals=signals)["config"]["emitter"]}))
"""


def test_registered_preset_reopens_in_a_fresh_process(tmp_path):
    jtfne.register_preset("un_test_fresh", a=0.05, b=0.24, c=-61.0, d=3.0)
    cfg = (small(preset={"E": "un_test_fresh"}).runtime(duration_ms=20.0)
           .ensemble(seeds=[1], sweep={"emitter.preset.I": ["fast_spiking", "un_test_fresh"]}))
    assert dict(cfg.emitter_spec.user_presets) == {
        "un_test_fresh": (("a", 0.05), ("b", 0.24), ("c", -61.0), ("d", 3.0))}
    model = jtfne.construct(cfg)
    np.testing.assert_array_equal(np.asarray(model.params.a), [[0.05, 0.05, 0.1, 0.1], [0.05] * 4])
    signals = jtfne.simulate(model, store=tmp_path / "run.zarr")
    assert signals.attrs["config_hash"] == cfg.config_hash()
    out = subprocess.run([sys.executable, "-c", REOPEN, str(tmp_path / "run.zarr")], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["hash"] == cfg.config_hash()
    assert got["a"] == np.asarray(model.params.a).tolist() and got["c"] == np.asarray(model.params.c).tolist()
    assert got["manifest"]["user_presets"] == {"un_test_fresh": {"a": 0.05, "b": 0.24, "c": -61.0, "d": 3.0}}
