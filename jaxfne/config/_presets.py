"""Izhikevich parameter presets, held as data in one registry.

A preset gives, per cell type, each of the four Izhikevich parameters
(a, b, c, d) as a polynomial in a per-neuron random number r ~ U(0, 1):

    p(r) = p0 + p1 * r + p2 * r**2

Single-behaviour presets are constants (p1 = p2 = 0) and apply the same
(a, b, c, d) to every cell of the types they are given to. ``cortical_eig`` is
the heterogeneous excitatory/inhibitory population of Izhikevich (2003): its
excitatory and inhibitory rows differ, and r makes every neuron different.

Sources
-------
- Izhikevich, E. M. (2003). Simple model of spiking neurons. IEEE Trans. Neural
  Netw. 14(6):1569-1572 (Fig. 2 and the network of Fig. 3).
- Izhikevich, E. M. (2004). Which model to use for cortical spiking neurons?
  IEEE Trans. Neural Netw. 15(5):1063-1070 (Fig. 1, parameters as published in
  the accompanying figure1.m).  Panels G (class 1), L (integrator) and
  R (accommodation) of that figure used modified equations; jaxfne always
  integrates the standard model, with the published (a, b, c, d).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from types import MappingProxyType

from .._errors import ConfigurationError

FAMILIES = ("izhikevich",)
PARAMS = ("a", "b", "c", "d")


@dataclasses.dataclass(frozen=True)
class Preset:
    """Polynomial coefficients ``(p0, p1, p2)`` of a, b, c, d for each cell type.

    ``rows`` maps a cell type ("E", "I") or "*" (any type) to a mapping from
    parameter name to its coefficients.
    """

    name: str
    source: str
    behaviour: str
    rows: MappingProxyType

    def row(self, cell_type: str):
        if cell_type in self.rows:
            return self.rows[cell_type]
        return self.rows["*"]


def _const(name, source, behaviour, a, b, c, d):
    row = MappingProxyType({"a": (a, 0.0, 0.0), "b": (b, 0.0, 0.0),
                            "c": (c, 0.0, 0.0), "d": (d, 0.0, 0.0)})
    return Preset(name, source, behaviour, MappingProxyType({"*": row}))


_F1 = "Izhikevich 2004, Fig. 1"
_F2 = "Izhikevich 2003, Fig. 2"

_PRESETS = [
    Preset(
        "cortical_eig",
        "Izhikevich 2003, Fig. 3 network",
        "heterogeneous cortical E/I population: E cells from regular spiking "
        "(r=0) to chattering (r=1); I cells from low-threshold to fast spiking",
        MappingProxyType({
            "E": MappingProxyType({"a": (0.02, 0.0, 0.0), "b": (0.2, 0.0, 0.0),
                                   "c": (-65.0, 0.0, 15.0), "d": (8.0, 0.0, -6.0)}),
            "I": MappingProxyType({"a": (0.02, 0.08, 0.0), "b": (0.25, -0.05, 0.0),
                                   "c": (-65.0, 0.0, 0.0), "d": (2.0, 0.0, 0.0)}),
        }),
    ),
    # Izhikevich (2004), Fig. 1, panels A-T.
    _const("tonic_spiking", _F1 + "A", "regular spiking under constant input", 0.02, 0.2, -65.0, 6.0),
    _const("phasic_spiking", _F1 + "B", "a single spike at input onset", 0.02, 0.25, -65.0, 6.0),
    _const("tonic_bursting", _F1 + "C", "periodic bursts", 0.02, 0.2, -50.0, 2.0),
    _const("phasic_bursting", _F1 + "D", "a single burst at input onset", 0.02, 0.25, -55.0, 0.05),
    _const("mixed_mode", _F1 + "E", "a burst, then tonic spikes", 0.02, 0.2, -55.0, 4.0),
    _const("spike_frequency_adaptation", _F1 + "F", "tonic spiking that slows down", 0.01, 0.2, -65.0, 8.0),
    _const("class_1", _F1 + "G", "firing rate grows from zero with input", 0.02, -0.1, -55.0, 6.0),
    _const("class_2", _F1 + "H", "firing starts at a non-zero rate", 0.2, 0.26, -65.0, 0.0),
    _const("spike_latency", _F1 + "I", "a delayed spike after a brief input", 0.02, 0.2, -65.0, 6.0),
    _const("subthreshold_oscillations", _F1 + "J", "damped subthreshold oscillations", 0.05, 0.26, -60.0, 0.0),
    _const("resonator", _F1 + "K", "fires to inputs at its resonant frequency", 0.1, 0.26, -60.0, -1.0),
    _const("integrator", _F1 + "L", "fires to closely spaced inputs", 0.02, -0.1, -55.0, 6.0),
    _const("rebound_spike", _F1 + "M", "a spike after release from inhibition", 0.03, 0.25, -60.0, 4.0),
    _const("rebound_burst", _F1 + "N", "a burst after release from inhibition", 0.03, 0.25, -52.0, 0.0),
    _const("threshold_variability", _F1 + "O", "threshold depends on prior activity", 0.03, 0.25, -60.0, 4.0),
    _const("bistability", _F1 + "P", "switches between resting and tonic firing", 0.1, 0.26, -60.0, 0.0),
    _const("depolarizing_after_potential", _F1 + "Q", "depolarised after-potential", 1.0, 0.2, -60.0, -21.0),
    _const("accommodation", _F1 + "R", "ignores slow ramps, fires to steps", 0.02, 1.0, -55.0, 4.0),
    _const("inhibition_induced_spiking", _F1 + "S", "fires while hyperpolarised", -0.02, -1.0, -60.0, 8.0),
    _const("inhibition_induced_bursting", _F1 + "T", "bursts while hyperpolarised", -0.026, -1.0, -45.0, -2.0),
    # Izhikevich (2003), Fig. 2.
    _const("regular_spiking", _F2 + " (RS)", "excitatory cortical cell, adapting", 0.02, 0.2, -65.0, 8.0),
    _const("intrinsically_bursting", _F2 + " (IB)", "initial burst then spikes", 0.02, 0.2, -55.0, 4.0),
    _const("chattering", _F2 + " (CH)", "fast rhythmic bursts", 0.02, 0.2, -50.0, 2.0),
    _const("fast_spiking", _F2 + " (FS)", "inhibitory interneuron, no adaptation", 0.1, 0.2, -65.0, 2.0),
    _const("low_threshold_spiking", _F2 + " (LTS)", "inhibitory, adapting, low threshold", 0.02, 0.25, -65.0, 2.0),
    _const("thalamo_cortical", _F2 + " (TC)", "thalamocortical relay cell", 0.02, 0.25, -65.0, 0.05),
    _const("resonator_2003", _F2 + " (RZ)", "resonator as in the 2003 figure", 0.1, 0.26, -65.0, 2.0),
]

REGISTRY = MappingProxyType({p.name: p for p in _PRESETS})


def preset_names() -> list[str]:
    return sorted(REGISTRY)


def get_preset(name: str, where: str = "set_emitter", field: str = "preset") -> Preset:
    """Return the preset ``name``; raise ConfigurationError listing the valid names."""
    if not isinstance(name, str) or name not in REGISTRY:
        raise ConfigurationError(
            f"{where}: {field}={name!r} is not a known preset; valid presets are "
            f"{', '.join(preset_names())}"
        )
    return REGISTRY[name]


# -- user-defined neurons ---------------------------------------------------------------------------------

#: The spike peak (mV): a step whose new v reaches it is a spike (model/_params.py reads it from here). A
#: reset c at or above it would make the cell spike again at every step, so every c must stay below it.
V_PEAK_MV = 30.0

#: presets added by ``register_preset`` in this process: name -> Preset (never a built-in name)
_USER: dict = {}


def _finite(where: str, field: str, value) -> float:
    """``value`` as a finite float (bools refused); ConfigurationError naming the field otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ConfigurationError(f"{where}: {field}={value!r} is invalid; a finite number is required")
    return float(value)


def check_reset(where: str, field: str, coeffs: tuple) -> None:
    """The reset c(r) = p0 + p1 r + p2 r**2 stays below V_PEAK_MV for every r in [0, 1]."""
    p0, p1, p2 = coeffs
    points = [0.0, 1.0] + ([-p1 / (2.0 * p2)] if p2 != 0.0 and 0.0 < -p1 / (2.0 * p2) < 1.0 else [])
    worst = max(p0 + p1 * r + p2 * r * r for r in points)
    if not worst < V_PEAK_MV:
        raise ConfigurationError(
            f"{where}: {field}={coeffs if any(coeffs[1:]) else p0!r} is invalid; the reset c must stay below the "
            f"{V_PEAK_MV} mV spike peak (it reaches {worst!r} mV), else the cell spikes again at every step")


def parse_constants(where: str, field: str, values) -> tuple:
    """{"a": .., "b": .., "c": .., "d": ..} -> ((name, value), ...) in PARAMS order: all four, finite, c < peak."""
    if not hasattr(values, "items"):
        raise ConfigurationError(f"{where}: {field}={values!r} is invalid; a dict of the four Izhikevich "
                                 f"parameters {', '.join(PARAMS)} is required")
    unknown = [k for k in values if k not in PARAMS]
    if unknown:
        raise ConfigurationError(f"{where}: {field} has unknown parameter {unknown[0]!r}; valid parameters are "
                                 f"{', '.join(PARAMS)}")
    missing = [p for p in PARAMS if p not in values]
    if missing:
        raise ConfigurationError(f"{where}: {field}={dict(values)!r} lacks {', '.join(missing)}; give all of "
                                 f"{', '.join(PARAMS)}")
    out = tuple((p, _finite(where, f"{field}[{p!r}]", values[p])) for p in PARAMS)
    check_reset(where, f"{field}['c']", (dict(out)["c"], 0.0, 0.0))
    return out


def parse_polynomial(where: str, field: str, value) -> tuple:
    """(p0, p1) or (p0, p1, p2) -> (p0, p1, p2): the value p0 + p1 r + p2 r**2 of a per-neuron r ~ U(0, 1)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) not in (2, 3):
        raise ConfigurationError(f"{where}: {field}={value!r} is invalid; a pair (p0, p1) for p0 + p1 r or a "
                                 "triple (p0, p1, p2) for p0 + p1 r + p2 r**2 (r ~ U(0, 1) per neuron) is required")
    coeffs = tuple(_finite(where, f"{field}[{i}]", v) for i, v in enumerate(value))
    return coeffs + (0.0,) * (3 - len(coeffs))


def _user_preset(name: str, values: tuple) -> Preset:
    row = MappingProxyType({p: (v, 0.0, 0.0) for p, v in values})
    return Preset(name, "user (register_preset)", "user-defined", MappingProxyType({"*": row}))


def register_preset(name, *, a, b, c, d, family="izhikevich") -> Preset:
    """Add the named constant preset (a, b, c, d) for this process; return it.

    Validated like the built-in presets' values (finite; c below the spike peak). A built-in name is
    refused, and so is a name already registered with other values (the same values again are accepted).
    Configurations that use it record its values (``to_dict``'s ``emitter.user_presets``), so a store or
    a saved configuration reopens in a process that never registered it.
    """
    w = "register_preset"
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ConfigurationError(f"{w}: name={name!r} is invalid; a non-empty string without surrounding "
                                 "spaces is required")
    if name in REGISTRY:
        raise ConfigurationError(f"{w}: name={name!r} is invalid; it is a built-in preset (choose another name)")
    if family not in FAMILIES:
        raise ConfigurationError(f"{w}: family={family!r} is invalid; valid families are {', '.join(FAMILIES)}")
    values = parse_constants(w, "params", {"a": a, "b": b, "c": c, "d": d})
    return _define(w, name, values)


def _define(where: str, name: str, values: tuple) -> Preset:
    old = _USER.get(name)
    if old is not None and tuple((p, old.row("*")[p][0]) for p in PARAMS) != values:
        raise ConfigurationError(
            f"{where}: preset {name!r} is already registered with other values "
            f"({ {p: old.row('*')[p][0] for p in PARAMS} }, now {dict(values)}); choose another name")
    if old is None:
        _USER[name] = _user_preset(name, values)
    return _USER[name]


def user_preset_names() -> list[str]:
    """The names registered by ``register_preset`` in this process, sorted."""
    return sorted(_USER)


def user_definition(name) -> tuple | None:
    """((param, value), ...) of the registered user preset ``name``, or None."""
    preset = _USER.get(name) if isinstance(name, str) else None
    return None if preset is None else tuple((p, preset.row("*")[p][0]) for p in PARAMS)


def check_name(name, where: str, field: str, recorded: dict) -> None:
    """``name`` is a built-in preset, a registered one or one of ``recorded`` (name -> values); else an error."""
    if isinstance(name, str) and (name in REGISTRY or name in _USER or name in recorded):
        return
    known = sorted(set(REGISTRY) | set(_USER) | set(recorded))
    raise ConfigurationError(f"{where}: {field}={name!r} is not a known preset; valid presets are {', '.join(known)} "
                             "(or register your own with jaxfne.register_preset)")


def emitter_rows(spec) -> dict:
    """{cell type: {param: (p0, p1, p2)}} of an EmitterSpec: presets by name (user ones from the values the
    spec records), explicit params, then the heterogeneity polynomials replacing those parameters."""
    recorded = {name: dict(vals) for name, vals in spec.user_presets}
    rows = {}
    for ctype, name in spec.preset:
        if name in REGISTRY:
            rows[ctype] = dict(REGISTRY[name].row(ctype))
        else:
            rows[ctype] = {p: (recorded[name][p], 0.0, 0.0) for p in PARAMS}
    for ctype, vals in spec.params:
        rows[ctype] = {p: (v, 0.0, 0.0) for p, v in vals}
    for ctype, polys in spec.heterogeneity:
        rows[ctype].update(dict(polys))
    return rows
