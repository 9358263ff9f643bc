"""Probes: what a run records, each defined once and read by every layer.

A :class:`Probe` says what a recording is (name, units, description), its
shape (which axis it spans: every neuron, the sampled neurons, or the field
contacts; whether it follows ``probes(every_ms=...)``), and how it is made
from the step's raw observations. The configuration validates names against
``REGISTRY``; the engines ask each probe which raw observations it needs and
derive it; the layout, the signals, the store, the manifest, readouts,
exports and figures read its units, description and geometry from here and
list no probe names of their own.

Raw observations (per member, per step, one value per neuron), produced by
every engine named in a probe's ``engines``:

* ``spikes``: bool, threshold crossed in this step (active members only);
* ``v``: the membrane potential at the end of the step, 30 mV at a spike;
* ``u``: the recovery (adaptation) variable at the end of the step;
* ``i_syn``: the net recurrent synaptic current that drove the step
  (s_exc - s_inh).

To add a probe: define it here (and, if it needs a raw observation that no
engine yields yet, add that observation to each engine's step). Nothing else
lists probes (docs/architecture.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import MappingProxyType

from ._fields import csd_proxy, lfp_proxy

#: the raw observations the engines can produce, in the order a kernel emits them
RAW = ("spikes", "v", "u", "i_syn")


@dataclasses.dataclass(frozen=True)
class Probe:
    """One recordable quantity.

    ``space``: "neuron" (one value per neuron; narrowed to the sampled neurons
    when ``sampled`` and ``probes(neurons=...)`` is set) or "contact" (one
    value per field contact). ``sampled``: follows ``probes(every_ms=...)``
    and ``probes(neurons=...)``. ``raw``: the raw observations it is made
    from. ``derive(raw, ctx)`` turns them (member, time, neuron) into the
    probe's values; ``ctx`` gives ``lfp_kernel`` (member, contact, neuron) and
    ``contact_spacing_um``; None means the one raw observation as it is.
    ``label``: a short title for figures.
    """

    name: str
    units: str
    description: str
    label: str = ""                 # short, for figure titles and axes (default: the name)
    space: str = "neuron"
    sampled: bool = True
    dtype: str = "float"            # "bool" or "float" (the run's dtype)
    raw: tuple = ()
    derive: Callable | None = None
    engines: tuple = ("xla", "native")

    @property
    def is_field(self) -> bool:
        return self.space == "contact"

    @property
    def title(self) -> str:
        return self.label or self.name


def _lfp(raw, ctx):
    return lfp_proxy(raw["i_syn"], ctx.lfp_kernel)


def _csd(raw, ctx):
    return csd_proxy(lfp_proxy(raw["i_syn"], ctx.lfp_kernel), ctx.contact_spacing_um)


_DEFINITIONS = (
    Probe("SPK", "1", "spike raster: True where the neuron crossed 30 mV in that step", "spikes",
          sampled=False, dtype="bool", raw=("spikes",)),
    Probe("Vm", "mV", "membrane potential; spikes shown at their 30 mV peak", "membrane potential", raw=("v",)),
    Probe("u", "a.u. (current units, as the drive)",
          "recovery (adaptation) variable u at the end of the step, after the spike reset (u += d)",
          "recovery variable u",
          raw=("u",), engines=("xla", "native")),
    Probe("source", "a.u. (current proxy)",
          "net synaptic current per neuron (s_exc - s_inh), the source proxy",
          "source proxy: net synaptic current", raw=("i_syn",)),
    Probe("LFP-proxy", "a.u. (proxy, uncalibrated)",
          "distance-weighted sum of sources per contact; a proxy, no volume conductor",
          "LFP proxy (uncalibrated, no volume conductor)",
          space="contact", raw=("i_syn",), derive=_lfp),
    Probe("CSD-proxy", "a.u./mm^2 (proxy, uncalibrated)",
          "minus the second spatial derivative of the LFP proxy; a proxy",
          "CSD proxy (uncalibrated, -d2/dz2 of the LFP proxy)",
          space="contact", raw=("i_syn",), derive=_csd),
)

#: every probe, by name, in the order they are documented
REGISTRY = MappingProxyType({p.name: p for p in _DEFINITIONS})
PROBES = tuple(REGISTRY)


def raw_needed(names) -> tuple:
    """The raw observations the probes ``names`` need, in ``RAW`` order."""
    need = {r for n in names for r in REGISTRY[n].raw}
    return tuple(r for r in RAW if r in need)
