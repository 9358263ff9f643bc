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
