"""parse_steps: the one check that a duration in ms is a whole number of time steps, and every place using it."""

import math

import numpy as np
import pytest

import jaxfne as jtfne
from jaxfne import analysis, viz
from jaxfne._errors import StepsError
from jaxfne._validate import parse_steps


@pytest.mark.parametrize("value, dt, steps", [
    (0.3, 0.1, 3),            # 0.3 / 0.1 = 2.9999999999999996
    (1000.0, 0.1, 10000),     # 1000.0 / 0.1 = 10000.000000000002
    (0.7, 0.1, 7),
    (1.0, 0.05, 20),
    (250.0, 0.025, 10000),
    (0.1, 0.1, 1),
    (5, 1.0, 5),              # an int
    (np.float64(2.0), 0.5, 4),
    (np.float32(0.5), 0.25, 2),
])
def test_exact_multiples_give_the_step_count(value, dt, steps):
    got = parse_steps("here", "x_ms", value, dt)
    assert got == steps and type(got) is int


@pytest.mark.parametrize("value, dt, nearest", [
    (0.25, 0.1, "0.2 ms or 0.3 ms"),
    (10.05, 0.1, "10 ms or 10.1 ms"),     # 100.49999999999999 steps
    (100.0, 0.3, "99.9 ms or 100.2 ms"),
    (0.15, 0.1, "0.1 ms or 0.2 ms"),
    (0.05, 0.1, "0.1 ms"),               # 0 steps is not allowed: only the upper neighbour is offered
])
def test_non_multiples_are_refused_naming_the_field(value, dt, nearest):
    with pytest.raises(StepsError) as info:
        parse_steps("somewhere", "bin_ms", value, dt)
    msg = str(info.value)
    assert msg.startswith(f"somewhere: bin_ms={value!r} is invalid; it must be a whole number of steps of "
                          f"dt_ms={dt:g} (it is ")
    assert msg.endswith(f"; nearest allowed: {nearest})")


def test_the_tolerance_is_relative():
    # within 1e-6 * steps of a whole number passes; beyond it fails
    assert parse_steps("w", "f", 1000.0 * (1 + 1e-8), 0.1) == 10000
    with pytest.raises(StepsError):
        parse_steps("w", "f", 1000.0 * (1 + 1e-5), 0.1)
    assert parse_steps("w", "f", 0.1 + 1e-8, 0.1) == 1          # below 1 step: absolute 1e-6 of a step
    with pytest.raises(StepsError):
        parse_steps("w", "f", 0.1 + 1e-6, 0.1)


@pytest.mark.parametrize("value, why", [
    (True, "a finite real number of ms is required"),
    (False, "a finite real number of ms is required"),
    ("1.0", "a finite real number of ms is required"),
    (None, "a finite real number of ms is required"),
    (10 ** 400, "a finite real number of ms is required"),
    (float("nan"), "NaN and infinity are not allowed"),
    (math.inf, "NaN and infinity are not allowed"),
    (-math.inf, "NaN and infinity are not allowed"),
    (-1.0, "a positive number of ms is required"),
    (0, "a positive number of ms is required"),
    (0.0, "a positive number of ms is required"),
])
def test_non_numbers_and_non_positive_values_are_refused(value, why):
    with pytest.raises(StepsError, match="^where: field=") as info:
        parse_steps("where", "field", value, 0.1)
    assert str(info.value).endswith(f"it must be a whole number of steps of dt_ms=0.1 ({why})")


def test_minimum_steps():
    assert parse_steps("w", "f", 0.0, 0.1, minimum=0) == 0
    with pytest.raises(StepsError, match=r"a number of ms >= 0 is required"):
        parse_steps("w", "f", -0.1, 0.1, minimum=0)
    assert parse_steps("w", "f", 0.2, 0.1, minimum=2) == 2
    with pytest.raises(StepsError, match=r"f=0.1 is invalid; .*at least 2 \(0.2 ms\) required"):
        parse_steps("w", "f", 0.1, 0.1, minimum=2)
    with pytest.raises(StepsError, match=r"f=1e-09 is invalid; .*at least 1 \(0.1 ms\) required"):
        parse_steps("w", "f", 1e-9, 0.1)        # rounds to 0 steps
    with pytest.raises(StepsError, match=r"too many steps"):
        parse_steps("w", "f", 1e308, 1e-10)


def test_one_error_class_caught_as_each_older_one():
    # the checks raised ConfigurationError (runtime, probes, analysis), SimulationError (simulate) or
    # ReadoutError (viz) before; StepsError is all three, so every existing except clause still catches it
    for cls in (jtfne.ConfigurationError, jtfne.SimulationError, jtfne.ReadoutError, jtfne.JaxfneError, ValueError):
        with pytest.raises(cls):
            parse_steps("w", "f", 0.25, 0.1)


# -- every call site, through the public API ------------------------------------------------------

def small_configuration():
    return (jtfne.Configuration().runtime(seed=3, duration_ms=20.0, dt_ms=0.1).column(n=20)
            .probes(["SPK", "Vm", "LFP-proxy"], contacts=4))


@pytest.fixture(scope="module")
def signals():
    return jtfne.simulate(jtfne.construct(small_configuration()))


def test_runtime_duration_names_its_field():
    with pytest.raises(jtfne.ConfigurationError,
                       match=r"^runtime: duration_ms=100.05 is invalid; it must be a whole number of steps of "
                             r"dt_ms=0.1 \(it is 1000.5 steps; nearest allowed: 100 ms or 100.1 ms\)$") as info:
        jtfne.Configuration().runtime(duration_ms=100.05, dt_ms=0.1)
    assert isinstance(info.value, StepsError)


def test_probes_every_ms_names_its_field():
    cfg = small_configuration().probes(every_ms=0.25)
    with pytest.raises(jtfne.ConfigurationError,
                       match=r"^probes: every_ms=0.25 is invalid; it must be a whole number of steps of dt_ms=0.1 "
                             r"\(") as info:
        jtfne.construct(cfg)
    assert isinstance(info.value, StepsError)


def test_simulate_chunk_ms_names_its_field():
    model = jtfne.construct(small_configuration())
    for bad in (0.25, 0, -5.0, True, float("nan")):
        with pytest.raises(jtfne.SimulationError,
                           match=rf"^simulate: chunk_ms={bad!r} is invalid; it must be a whole number of steps "
                                 rf"of dt_ms=0.1 \(") as info:
            jtfne.simulate(model, chunk_ms=bad)
        assert isinstance(info.value, StepsError)


def test_viz_bin_ms_names_its_field(signals):
    for fn, where in ((viz.population_rates, "viz.population_rates"), (viz.rates, "viz.population_rates"),
                      (viz.fields, "viz.fields"), (viz.field_maps, "viz.fields")):
        with pytest.raises(jtfne.ReadoutError,
                           match=rf"^{where}: bin_ms=0.25 is invalid; it must be a whole number of steps of "
                                 r"dt_ms=0.1 \(") as info:
            fn(signals, bin_ms=0.25)
        assert isinstance(info.value, StepsError)


def test_analysis_bin_ms_names_its_field(signals):
    for fn in (analysis.fano_factor, analysis.synchrony, analysis.population_rate, analysis.rate_spectrum):
        with pytest.raises(jtfne.ConfigurationError,
                           match=rf"^analysis.{fn.__name__}: bin_ms=0.25 is invalid; it must be a whole number "
                                 r"of steps of dt_ms=0.1 \(") as info:
            fn(signals, bin_ms=0.25)
        assert isinstance(info.value, StepsError)


def test_an_integer_beyond_64_bits_is_a_named_error_not_an_overflow():
    # used to escape as a raw OverflowError ("int too large to convert to float") from construct's arithmetic
    with pytest.raises(jtfne.ConfigurationError, match=r"column: n=1000.*\(401 characters\) is invalid; it is too "
                                                        r"large; \|value\| < 2\*\*63 is required"):
        jtfne.Configuration().column(n=10**400)
    with pytest.raises(jtfne.ConfigurationError, match=r"seeds=.*too large"):
        jtfne.Configuration().ensemble(seeds=[2**64])
