"""Configuration: validation errors, round trips and immutability."""

import dataclasses
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxfne as jtfne
from jaxfne.config import CELL_TYPES, DTYPES, LAYER_DEPTHS_UM, PATHWAYS, PROBES

CE = jtfne.ConfigurationError
C = jtfne.Configuration


def test_configuration_error_is_a_value_error():
    assert issubclass(CE, jtfne.JaxfneError) and issubclass(CE, ValueError)
    with pytest.raises(ValueError):
        C().column(n=0)


# -- each rule, with its message ------------------------------------------------------

@pytest.mark.parametrize("n", [0, -1, -100])
def test_n_must_be_positive(n):
    with pytest.raises(CE, match=rf"column: n={n} is invalid; it must be >= 1"):
        C().column(n=n)


@pytest.mark.parametrize("n", [10.0, 10.5, "10", None, [10]])
def test_n_must_be_an_int(n):
    with pytest.raises(CE, match=r"column: n=.* is invalid; an integer is required"):
        C().column(n=n)


def test_n_per_layer_must_be_positive_ints():
    with pytest.raises(CE, match=r"n\['L4'\]=0 is invalid; it must be >= 1"):
        C().column(layers=["L2/3", "L4"], n={"L2/3": 10, "L4": 0})
    with pytest.raises(CE, match=r"every layer exactly once"):
        C().column(layers=["L2/3", "L4"], n={"L2/3": 10})
    with pytest.raises(CE, match=r"too small to give each of 3 layers a neuron"):
        C().column(layers=["L2/3", "L4", "L5"], n=2)


@pytest.mark.parametrize("dt", [0, 0.0, -0.1])
def test_dt_must_be_positive(dt):
    with pytest.raises(CE, match=r"runtime: dt_ms=.* is invalid; it must be > 0"):
        C().runtime(dt_ms=dt)


def test_duration_must_be_positive():
    with pytest.raises(CE, match=r"runtime: duration_ms=-5.0 is invalid; it must be > 0"):
        C().runtime(duration_ms=-5.0)


def test_dt_must_not_exceed_duration():
    with pytest.raises(CE, match=r"runtime: dt_ms=2.0 is invalid; it must be <= duration_ms \(1.0\)"):
        C().runtime(duration_ms=1.0, dt_ms=2.0)
    # also when only one of the two is given: the other keeps its current value (dt 0.1)
    with pytest.raises(CE, match=r"dt_ms=0.1 is invalid; it must be <= duration_ms \(0.05\)"):
        C().runtime(duration_ms=0.05)


@pytest.mark.parametrize("duration, dt", [(100.0, 0.3), (10.05, 0.1), (1000.0, 0.7)])
def test_duration_must_be_a_whole_number_of_steps(duration, dt):
    with pytest.raises(CE, match=r"duration_ms=.* is invalid; it must be a whole number of steps of dt_ms="):
        C().runtime(duration_ms=duration, dt_ms=dt)


@pytest.mark.parametrize("duration, dt", [(0.3, 0.1), (300.0, 0.1), (1.0, 0.05), (250.0, 0.025), (0.1, 0.1)])
def test_whole_number_of_steps_despite_rounding(duration, dt):
    cfg = C().runtime(duration_ms=duration, dt_ms=dt)   # 0.3 / 0.1 = 2.9999999999999996
    assert cfg.runtime_spec.duration_ms == duration


def test_too_many_steps():
    with pytest.raises(CE, match=r"duration_ms=.* is invalid; it is too many time steps"):
        C().runtime(duration_ms=1e300, dt_ms=1e-10)
    with pytest.raises(CE, match=r"too many time steps"):
        C().runtime(duration_ms=1000.0, dt_ms=1e-320)   # 1000 / 1e-320 overflows to inf


def test_seed_range():
    with pytest.raises(CE, match=r"runtime: seed=-1 is invalid; it must be >= 0"):
        C().runtime(seed=-1)
    with pytest.raises(CE, match=r"seed=4294967296 is invalid; it must be < 2\*\*32"):
        C().runtime(seed=2**32)
    assert C().runtime(seed=2**32 - 1).runtime_spec.seed == 2**32 - 1


def test_negative_fractions():
    with pytest.raises(CE, match=r"cell_types: fractions\['I'\]=-0.2 is invalid; it must be >= 0"):
        C().cell_types({"E": 0.9, "I": -0.2})


@pytest.mark.parametrize("fractions", [{"E": 0.5, "I": 0.3}, {"E": 0.8}, {"E": 0.6, "I": 0.6}])
def test_fractions_must_sum_to_one(fractions):
    with pytest.raises(CE, match=r"cell_types: fractions=.* is invalid; they sum to .* and do not sum to 1"):
        C().cell_types(fractions)


def test_fractions_may_leave_out_a_type():
    assert dict(C().cell_types({"E": 1.0}).cell_types_spec.fractions) == {"E": 1.0, "I": 0.0}


@pytest.mark.parametrize("call", [
    lambda: C().cell_types({"E": 0.8, "X": 0.2}),
    lambda: C().drive(current={"X": 1.0}),
    lambda: C().drive(noise={"e": 1.0}),
    lambda: C().set_emitter(preset={"P": "tonic_spiking"}),
])
def test_unknown_cell_type(call):
    with pytest.raises(CE, match=r"cell type '.*' is unknown; valid types are E, I"):
        call()


@pytest.mark.parametrize("dtype", ["float16", "float", "f8", np.float64, None])
def test_unknown_dtype(dtype):
    with pytest.raises(CE, match=r"runtime: dtype=.* is invalid; valid values are float32, float64"):
        C().runtime(dtype=dtype)


def test_unknown_probe():
    with pytest.raises(CE, match=r"probes: names='EEG' is invalid; valid values are .*CSD-proxy.*LFP-proxy"):
        C().probes(["SPK", "EEG"])
    with pytest.raises(CE, match=r"a list of probe names is required"):
        C().probes("Vm")   # a bare string is not a list of names
    with pytest.raises(CE, match=r"contacts=2 is invalid; it must be >= 3"):
        C().probes(contacts=2)


def test_probes_canonical_and_spikes_always_recorded():
    cfg = C().probes(["Vm", "LFP-proxy", "Vm"])
    assert cfg.probes_spec.names == ("SPK", "Vm", "LFP-proxy")


def test_unknown_family():
    with pytest.raises(CE, match=r"set_emitter: family='hodgkin_huxley' is invalid; valid values are izhikevich"):
        C().set_emitter(family="hodgkin_huxley")


@pytest.mark.parametrize("preset", ["tonic", "Tonic_Spiking", "", 3])
def test_unknown_preset_lists_valid_names(preset):
    with pytest.raises(CE, match=r"set_emitter: preset=.* is not a known preset; valid presets are ") as info:
        C().set_emitter(preset=preset)
    assert ", ".join(jtfne.preset_names()) in str(info.value)   # every name, sorted
    with pytest.raises(CE, match=r"preset\['I'\]=.* is not a known preset; valid presets are accommodation, "):
        C().set_emitter(preset={"I": preset})


def test_unknown_pathway():
    with pytest.raises(CE, match=r"connectivity: strength=\{'E->X': 1.0\} is invalid; pathway 'E->X' is unknown; "
                                 r"valid pathways are E->E, E->I, I->E, I->I"):
        C().connectivity(strength={"E->X": 1.0})
    with pytest.raises(CE, match=r"strength\['I->E'\]=-1.0 is invalid; it must be >= 0"):
        C().connectivity(strength={"I->E": -1.0})


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_probability_range(p):
    with pytest.raises(CE, match=r"connectivity: p=.* is invalid; it must be (>= 0.0|<= 1.0)"):
        C().connectivity(p=p)


def test_unknown_layer():
    with pytest.raises(CE, match=r"column: layers='L7' is invalid; valid values are L1, L2/3, L4, L5, L6"):
        C().column(layers=["L7"])
    with pytest.raises(CE, match=r"layer names must not repeat"):
        C().column(layers=["L4", "L4"])
    with pytest.raises(CE, match=r"name='' is invalid"):
        C().column(name="")


# every float field, through the method that sets it
FLOAT_FIELDS = {
    "runtime.duration_ms": lambda x: C().runtime(duration_ms=x),
    "runtime.dt_ms": lambda x: C().runtime(dt_ms=x),
    "connectivity.p": lambda x: C().connectivity(p=x),
    "connectivity.strength": lambda x: C().connectivity(strength={"E->I": x}),
    "connectivity.tau_exc_ms": lambda x: C().connectivity(tau_exc_ms=x),
    "connectivity.tau_inh_ms": lambda x: C().connectivity(tau_inh_ms=x),
    "cell_types.fractions": lambda x: C().cell_types({"E": x, "I": 0.2}),
    "drive.current": lambda x: C().drive(current=x),
    "drive.current[E]": lambda x: C().drive(current={"E": x}),
    "drive.noise": lambda x: C().drive(noise=x),
    "drive.noise[I]": lambda x: C().drive(noise={"I": x}),
    "column.depths_um": lambda x: C().column(depths_um={"L4": (400.0, x)}),
    "connectivity.delay_ms": lambda x: C().connectivity(delay_ms=x),
    "connectivity.pathways.p": lambda x: C().connectivity(pathways={"L4.E->L2/3.I": {"p": x}}),
    "connectivity.pathways.strength": lambda x: C().connectivity(pathways={"L4.E->L2/3.I": {"strength": x}}),
    "connectivity.pathways.delay_ms": lambda x: C().connectivity(pathways={"L4.E->L2/3.I": {"delay_ms": x}}),
    "cell_types.fractions[layer]": lambda x: C().cell_types({"L4": {"E": x, "I": 0.2}}),
    "probes.contact_spacing_um": lambda x: C().probes(contact_spacing_um=x),
}


@pytest.mark.parametrize("field", FLOAT_FIELDS)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float32("nan"), np.float64("inf")])
def test_non_finite_rejected_everywhere(field, value):
    with pytest.raises(CE, match=r"is invalid; NaN and infinity are not allowed; a finite number is required"):
        FLOAT_FIELDS[field](value)


@pytest.mark.parametrize("field", FLOAT_FIELDS)
@pytest.mark.parametrize("value", [True, False])
def test_bool_is_not_a_number(field, value):
    with pytest.raises(CE, match=r"=(True|False) is invalid; a finite real number is required"):
        FLOAT_FIELDS[field](value)


@pytest.mark.parametrize("call", [
    lambda: C().runtime(seed=True),
    lambda: C().column(n=True),
    lambda: C().probes(contacts=False),
])
def test_bool_is_not_an_int(call):
    with pytest.raises(CE, match=r"=(True|False) is invalid; an integer is required"):
        call()


def test_number_is_not_a_bool():
    with pytest.raises(CE, match=r"connectivity: shared=1 is invalid; True or False is required"):
        C().connectivity(shared=1)


def test_huge_int_is_a_configuration_error():
    with pytest.raises(CE, match=r"p=1000.* is invalid; it is too large"):
        C().connectivity(p=10**400)


def test_numpy_scalars_are_numbers():
    cfg = C().runtime(seed=np.int64(3), duration_ms=np.float32(100.0)).column(n=np.int32(7))
    assert cfg.runtime_spec.seed == 3 and type(cfg.runtime_spec.seed) is int
    assert type(cfg.runtime_spec.duration_ms) is float and cfg.n == 7


# -- property tests ---------------------------------------------------------------------

ANYTHING = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.floats(),
                                                                              max_size=2))


def _is_real(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check(call, valid):
    """``call`` succeeds when ``valid`` and raises ConfigurationError (only) otherwise."""
    if valid:
        return call()
    with pytest.raises(CE):
        call()


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(ANYTHING)
def test_property_probability(x):
    _check(lambda: C().connectivity(p=x), _is_real(x) and math.isfinite(x) and 0 <= x <= 1)


@SETTINGS
@given(ANYTHING)
def test_property_tau(x):
    _check(lambda: C().connectivity(tau_exc_ms=x), _is_real(x) and math.isfinite(x) and x > 0)


def _finite(x):
    return _is_real(x) and math.isfinite(x)


def _per_type(x, ok):
    """A number, or a dict per cell type (possibly empty), every value passing ``ok``."""
    if isinstance(x, dict):
        return all(k in CELL_TYPES and ok(v) for k, v in x.items())
    return ok(x)


@SETTINGS
@given(st.one_of(ANYTHING, st.dictionaries(st.sampled_from(["E", "I", "X"]), ANYTHING, max_size=2)))
def test_property_current(x):
    _check(lambda: C().drive(current=x), _per_type(x, _finite))


@SETTINGS
@given(ANYTHING)
def test_property_noise_and_strength(x):
    ok = _is_real(x) and math.isfinite(x) and x >= 0
    _check(lambda: C().drive(noise={"E": x}), ok)
    _check(lambda: C().connectivity(strength={"I->I": x}), ok)


@SETTINGS
@given(ANYTHING)
def test_property_n(x):
    _check(lambda: C().column(n=x), isinstance(x, int) and not isinstance(x, bool) and 1 <= x < 2**63)


@SETTINGS
@given(ANYTHING)
def test_property_seed(x):
    _check(lambda: C().runtime(seed=x), isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2**32)


@SETTINGS
@given(st.one_of(ANYTHING, st.sampled_from(DTYPES + PROBES + tuple(LAYER_DEPTHS_UM) + tuple(jtfne.PRESETS))))
def test_property_choices(x):
    _check(lambda: C().runtime(dtype=x), x in DTYPES if isinstance(x, str) else False)
    _check(lambda: C().probes([x]), x in PROBES if isinstance(x, str) else False)
    _check(lambda: C().column(layers=[x]), x in LAYER_DEPTHS_UM if isinstance(x, str) else False)
    _check(lambda: C().set_emitter(preset=x), x in jtfne.PRESETS if isinstance(x, str) else x == {})
    _check(lambda: C().set_emitter(preset={"I": x}), x in jtfne.PRESETS if isinstance(x, str) else False)


@SETTINGS
@given(st.floats(0.0, 1.0), st.floats(-0.5, 0.5))
def test_property_fractions(e, error):
    i = 1.0 - e + (error if abs(error) > 1e-6 else 0.0)
    _check(lambda: C().cell_types({"E": e, "I": i}), 0.0 <= i <= 1.0 and abs(e + i - 1.0) <= 1e-9)


@SETTINGS
@given(st.one_of(ANYTHING, st.floats(1e-3, 1e4)), st.one_of(ANYTHING, st.sampled_from([0.01, 0.025, 0.05, 0.1, 0.5])))
def test_property_runtime(duration, dt):
    def valid():
        if not (_is_real(duration) and _is_real(dt) and math.isfinite(duration) and math.isfinite(dt)):
            return False
        if duration <= 0 or dt <= 0 or dt > duration:
            return False
        steps = duration / dt
        return steps < 2**31 and abs(steps - round(steps)) <= 1e-6 * max(1.0, steps)
    _check(lambda: C().runtime(duration_ms=duration, dt_ms=dt), valid())


@SETTINGS
@given(st.dictionaries(st.sampled_from(["runtime", "column", "cell_types", "connectivity", "emitter", "drive",
                                        "probes", "bogus"]),
                       st.dictionaries(st.sampled_from(["seed", "dtype", "n", "p", "names", "preset", "current",
                                                        "fractions", "layers", "shared", "x"]), ANYTHING,
                                       max_size=3),
                       max_size=3))
def test_property_from_dict_only_raises_configuration_error(data):
    try:
        cfg = C.from_dict(data)
    except CE:
        return
    assert isinstance(cfg, C)


# -- round trips --------------------------------------------------------------------

def rich_configuration():
    return (C()
            .runtime(seed=7, dtype="float64", duration_ms=250.0, dt_ms=0.05)
            .column(name="col", layers=["L2/3", "L4", "L5"], n={"L2/3": 30, "L4": 20, "L5": 10})
            .cell_types({"E": 0.75, "I": 0.25})
            .connectivity(p=0.2, strength={"E->I": 35.5}, tau_exc_ms=4.0, tau_inh_ms=8.5, shared=True)
            .set_emitter(family="izhikevich", preset={"E": "regular_spiking", "I": "fast_spiking"})
            .drive(current={"E": 5.0, "I": -1.5}, noise=3.0)
            .probes(["Vm", "source", "LFP-proxy", "CSD-proxy"], contacts=8))


def laminar_configuration():
    return (C()
            .column(layers=["L2/3", "L4", "L5"], n=60, depths_um={"L4": (420.0, 580.0)})
            .cell_types({"E": 0.75, "I": 0.25})
            .cell_types({"L4": {"E": 0.7, "I": 0.3}})
            .connectivity(delay_ms=0.5, pathways={"L5.E->L4.I": {"p": 0.3, "strength": 5.0},
                                                  "L4.E->L2/3.E": {"delay_ms": 2.0}})
            .probes(["LFP-proxy"], contacts=10, contact_spacing_um=40.0))


def test_cell_types_mixed_dict_is_what_to_dict_writes():
    cfg = laminar_configuration()
    assert cfg.to_dict()["cell_types"] == {"fractions": {"E": 0.75, "I": 0.25, "L4": {"E": 0.7, "I": 0.3}}}
    assert C().cell_types({"E": 0.75, "I": 0.25, "L4": {"E": 0.7, "I": 0.3}}).cell_types_spec == cfg.cell_types_spec
    # a per-layer dict alone keeps the column-wide fractions
    only_l4 = C().cell_types({"E": 0.6, "I": 0.4}).cell_types({"L4": {"E": 1.0}})
    assert dict(only_l4.cell_types_spec.fractions) == {"E": 0.6, "I": 0.4}


@pytest.mark.parametrize("cfg", [C(), rich_configuration(), laminar_configuration()],
                         ids=["default", "rich", "laminar"])
def test_round_trip(cfg):
    assert C.from_dict(cfg.to_dict()) == cfg
    text = json.dumps(cfg.to_dict())
    again = C.from_dict(json.loads(text))
    assert again == cfg and again.config_hash() == cfg.config_hash()
    # a writer that sorts keys changes the section order; the result must not change
    assert C.from_dict(json.loads(json.dumps(cfg.to_dict(), sort_keys=True))) == cfg


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(20, 500), e=st.floats(0.0, 1.0),
       p=st.floats(0.0, 1.0), strength=st.floats(0.0, 1e6), current=st.floats(-1e3, 1e3),
       noise=st.floats(0.0, 1e3), presets=st.tuples(st.sampled_from(sorted(jtfne.PRESETS)),
                                                     st.sampled_from(sorted(jtfne.PRESETS))),
       layers=st.lists(st.sampled_from(list(LAYER_DEPTHS_UM)), min_size=1, max_size=5, unique=True),
       probes=st.lists(st.sampled_from(PROBES), max_size=5), dtype=st.sampled_from(DTYPES),
       shared=st.booleans())
def test_property_round_trip(seed, n, e, p, strength, current, noise, presets, layers, probes, dtype, shared):
    cfg = (C().runtime(seed=seed, dtype=dtype, duration_ms=100.0, dt_ms=0.1)
           .column(layers=layers, n=n)
           .cell_types({"E": e, "I": 1.0 - e})
           .connectivity(p=p, strength={"E->E": strength}, shared=shared)
           .set_emitter(preset={"E": presets[0], "I": presets[1]})
           .drive(current={"E": current}, noise=noise)
           .probes(probes))
    assert cfg.n == n
    data = json.loads(json.dumps(cfg.to_dict()))
    assert C.from_dict(data) == cfg
    assert C.from_dict(data).config_hash() == cfg.config_hash()


def test_from_dict_unknown_section():
    with pytest.raises(CE, match=r"Configuration.from_dict: section='runtimes' is invalid; valid sections are "
                                 r"runtime, column"):
        C.from_dict({"runtimes": {"seed": 1}})


def test_from_dict_unknown_key():
    with pytest.raises(CE, match=r"section 'runtime' has unknown key\(s\) 'dtt_ms'; "
                                 r"valid keys are seed, dtype, duration_ms, dt_ms"):
        C.from_dict({"runtime": {"dtt_ms": 0.1}})
    with pytest.raises(CE, match=r"section 'drive' has unknown key\(s\) 'currents'"):
        C.from_dict({"drive": {"currents": 1.0, "noise": 0.0}})


def test_from_dict_validates_values():
    with pytest.raises(CE, match=r"runtime: dt_ms=-1.0 is invalid; it must be > 0"):
        C.from_dict({"runtime": {"dt_ms": -1}})
    with pytest.raises(CE, match=r"a mapping of sections is required"):
        C.from_dict([("runtime", {})])
    with pytest.raises(CE, match=r"a mapping of keyword arguments is required"):
        C.from_dict({"runtime": 5})


def test_hash_tracks_content():
    a, b = C().runtime(seed=1), C().runtime(seed=1)
    assert a == b and a.config_hash() == b.config_hash() and hash(a) == hash(b)
    assert C().runtime(seed=2).config_hash() != a.config_hash()


# -- immutability --------------------------------------------------------------------

def test_methods_return_new_objects_and_leave_the_old_unchanged():
    base = C()
    snapshot = base.to_dict()
    calls = [
        lambda c: c.runtime(seed=3, duration_ms=200.0),
        lambda c: c.column(n=50),
        lambda c: c.cell_types({"E": 0.5, "I": 0.5}),
        lambda c: c.connectivity(p=0.5, strength={"E->E": 1.0}),
        lambda c: c.set_emitter(preset="chattering"),
        lambda c: c.drive(current=1.0, noise={"I": 0.0}),
        lambda c: c.probes(["Vm", "source"], contacts=4),
    ]
    for call in calls:
        new = call(base)
        assert new is not base and new != base
        assert base.to_dict() == snapshot == C().to_dict()


def test_arguments_left_out_keep_their_value():
    cfg = C().runtime(seed=5, dt_ms=0.05).runtime(duration_ms=200.0)
    assert (cfg.runtime_spec.seed, cfg.runtime_spec.dt_ms, cfg.runtime_spec.duration_ms) == (5, 0.05, 200.0)
    cfg = C().drive(current={"E": 7.0}).drive(noise=0.0)
    assert dict(cfg.drive_spec.current) == {"E": 7.0, "I": 0.0}
    assert dict(cfg.drive_spec.noise) == {"E": 0.0, "I": 0.0}
    cfg = C().connectivity(strength={"E->I": 1.0}).connectivity(p=0.5)
    assert dict(cfg.connectivity_spec.strength)["E->I"] == 1.0
    assert dict(cfg.connectivity_spec.strength)["E->E"] == 20.0
    cfg = C().column(layers=["L4", "L5"], n=40).column(name="x")
    assert cfg.column_spec.n_per_layer == (20, 20)
    assert C().cell_types() == C()


def test_mutable_arguments_are_copied():
    fractions = {"E": 0.5, "I": 0.5}
    layers = ["L4"]
    cfg = C().cell_types(fractions).column(layers=layers, n=10)
    fractions["E"] = 0.9
    layers.append("L5")
    assert dict(cfg.cell_types_spec.fractions) == {"E": 0.5, "I": 0.5}
    assert cfg.column_spec.layers == ("L4",)


def test_frozen():
    cfg = C()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.runtime_spec = None
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.runtime_spec.seed = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.column_spec.n_per_layer = (5,)
    assert isinstance(cfg.drive_spec.current, tuple)   # no dict inside to mutate
    assert all(isinstance(getattr(cfg, f.name), (tuple, type(None))) or dataclasses.is_dataclass(getattr(cfg, f.name))
               for f in dataclasses.fields(cfg))


def test_constants():
    assert CELL_TYPES == ("E", "I") and PATHWAYS == ("E->E", "E->I", "I->E", "I->I")


def test_from_dict_column_list():
    cfg = C().column(name="A", n=10).column(name="B", layers=["L4", "L5"], n=20, depths_um={"L5": (600.0, 950.0)})
    data = cfg.to_dict()
    assert data["column"] == [{"name": "A", "layers": ["L2/3"], "n": {"L2/3": 10}},
                              {"name": "B", "layers": ["L4", "L5"], "n": {"L4": 10, "L5": 10},
                               "depths_um": {"L5": [600.0, 950.0]}}]
    assert C.from_dict(data) == cfg
    with pytest.raises(CE, match=r"every column of a list needs its 'name'"):
        C.from_dict({"column": [{"name": "A"}, {"n": 5}]})
    with pytest.raises(CE, match=r"section 'column' has unknown key\(s\) 'size'"):
        C.from_dict({"column": [{"name": "A"}, {"name": "B", "size": 5}]})
    with pytest.raises(CE, match=r"column='x' is invalid; a mapping of keyword arguments \(or a list of them\)"):
        C.from_dict({"column": ["x"]})
