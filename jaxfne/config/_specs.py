"""The configuration's vocabulary and its frozen sections (no behaviour beyond checks of their own).

Constants (cell types, layers and their default depths, pathway keys), one
frozen dataclass per section, and the helpers that read a configuration's
layers and pathways. Imported by everything above; imports only the base.
"""

from __future__ import annotations

import dataclasses

from .._errors import ConfigurationError, bad_value
from .._probes import PROBES  # noqa: F401 - the vocabulary of probe names, re-exported by config

CELL_TYPES = ("E", "I")

PATHWAYS = ("E->E", "E->I", "I->E", "I->I")

DTYPES = ("float32", "float64")

#: integration schemes (``runtime(integrator=...)``): forward Euler of dt, or Izhikevich (2003)'s two half
#: steps of dt / 2 for v, then u from the new v
INTEGRATORS = ("euler", "izhikevich2003")

#: synapse kinds, per presynaptic cell type or per pathway (``connectivity(synapse=...)``): "exponential", a current that
#: jumps by w and decays with tau; "delta", a current w / dt held for one step (v moves by about w);
#: "conductance", a conductance that jumps by w and decays with tau, the current g (E_rev - v)
SYNAPSES = ("exponential", "delta", "conductance")

#: default reversal potentials (mV) of conductance synapses, per presynaptic type
REVERSAL_MV = (("E", 0.0), ("I", -80.0))

#: connection rules (``connectivity(rule=...)``): each pair independently with probability p, or each
#: neuron receives exactly round(p * candidates) inputs from every presynaptic group
RULES = ("probability", "fixed_indegree")

#: Default depth range (um below the pia) of each layer: approximate rodent
#: sensory cortex, used to place neurons and to span the field-proxy contacts.
LAYER_DEPTHS_UM = {"L1": (0.0, 100.0), "L2/3": (100.0, 400.0), "L4": (400.0, 600.0),
                   "L5": (600.0, 900.0), "L6": (900.0, 1200.0)}

#: Default share of a column's neurons per layer when ``n`` is a total.
LAYER_FRACTIONS = {"L1": 0.05, "L2/3": 0.30, "L4": 0.25, "L5": 0.25, "L6": 0.15}

#: The driver counts steps in int32, so a run has fewer than 2**31 steps.
MAX_STEPS = 2**31

#: Name of the column of a configuration that has not named it. A configuration
#: with this one column takes the first name given to ``column(name=...)``.
DEFAULT_COLUMN = "column"

@dataclasses.dataclass(frozen=True)
class RuntimeSpec:
    seed: int = 0
    dtype: str = "float32"
    duration_ms: float = 1000.0
    dt_ms: float = 0.1
    integrator: str = "euler"

@dataclasses.dataclass(frozen=True)
class ColumnSpec:
    name: str = "column"
    layers: tuple = ("L2/3",)
    #: neurons per layer, in the order of ``layers``
    n_per_layer: tuple = (100,)
    #: ((layer, (top_um, bottom_um)), ...) overriding LAYER_DEPTHS_UM
    depths_um: tuple = ()

    @property
    def n(self) -> int:
        return sum(self.n_per_layer)

    def depth_range(self, layer: str) -> tuple:
        return dict(self.depths_um).get(layer, LAYER_DEPTHS_UM[layer])

@dataclasses.dataclass(frozen=True)
class CellTypesSpec:
    fractions: tuple = (("E", 0.8), ("I", 0.2))
    #: ((layer, (("E", f), ("I", f))), ...) overriding ``fractions`` in those layers
    per_layer: tuple = ()

    def for_layer(self, layer: str) -> dict:
        return dict(dict(self.per_layer).get(layer, self.fractions))

@dataclasses.dataclass(frozen=True)
class ConnectivitySpec:
    p: float = 1.0
    #: per pathway "pre->post": summed mean weight onto one postsynaptic cell
    #: from its whole presynaptic population (current units, see docs)
    strength: tuple = (("E->E", 20.0), ("E->I", 40.0), ("I->E", 20.0), ("I->I", 30.0))
    tau_exc_ms: float = 5.0
    tau_inh_ms: float = 10.0
    shared: bool = False
    #: delay of every pathway not given in ``pathways`` (0 = the next time step)
    delay_ms: float = 0.0
    #: (("L4.E->L2/3.E", (("delay_ms", d), ("p", p), ("strength", g))), ...) user pathways
    pathways: tuple = ()
    #: connection rule of the random connectivity (RULES)
    rule: str = "probability"
    #: self-connections allowed (random rules), or the diagonal of ``weights`` used
    autapses: bool = False
    #: synapse kinds (SYNAPSES): one per presynaptic type ("E", "I"), or, for a type whose two pathways
    #: differ, one per pathway ("E->E", "E->I"); canonical (``synapse_pairs``), so equal models hash equal
    synapse: tuple = (("E", "exponential"), ("I", "exponential"))
    #: a user weight matrix [post, pre] (config/_arrays.ArrayValue, signed) replacing p and strength; None
    weights: object = None
    #: reversal potential (mV) of conductance synapses per presynaptic type
    reversal_mv: tuple = REVERSAL_MV

@dataclasses.dataclass(frozen=True)
class EmitterSpec:
    family: str = "izhikevich"
    #: preset name per cell type given by name (every type is here or in ``params``)
    preset: tuple = (("E", "cortical_eig"), ("I", "cortical_eig"))
    #: ((type, (("a", v), ("b", v), ("c", v), ("d", v))), ...) types given by explicit values
    params: tuple = ()
    #: ((type, ((param, (p0, p1, p2)), ...)), ...) per-neuron p0 + p1 r + p2 r**2 replacing those parameters
    heterogeneity: tuple = ()
    #: ((name, (("a", v), ...)), ...) the values of the user presets (register_preset) this configuration
    #: names, so it rebuilds in a process that never registered them
    user_presets: tuple = ()
    #: ((param, ArrayValue (N,)), ...) per-neuron values replacing that parameter for every neuron
    per_neuron: tuple = ()

@dataclasses.dataclass(frozen=True)
class DriveSpec:
    #: constant current per cell type
    current: tuple = (("E", 4.0), ("I", 0.0))
    #: noise per cell type: standard deviation of the current times sqrt(ms)
    noise: tuple = (("E", 2.0), ("I", 2.0))
    #: the noise is drawn once per this many ms and held (None: every step); its std is sigma / sqrt(hold)
    noise_hold_ms: float | None = None

@dataclasses.dataclass(frozen=True)
class ProbesSpec:
    names: tuple = ("SPK", "Vm")
    contacts: int = 16
    #: contact spacing; None spreads the contacts over the column's depth
    contact_spacing_um: float | None = None
    #: which neurons Vm and source record: None (all), ("per_type", k) or ("index", (i, ...))
    neurons: tuple | None = None
    #: sampling interval of Vm, source, LFP-proxy and CSD-proxy; None = every step
    every_ms: float | None = None

@dataclasses.dataclass(frozen=True)
class EnsembleSpec:
    seeds: tuple = ()
    #: ((path, (value, ...)), ...) in the order given
    sweep: tuple = ()
    mode: str = "grid"

def layer_slots(cfg) -> list:
    """(column name, layer, neurons) of every layer of every column, in neuron order."""
    return [(c.name, lay, n) for c in cfg.column_specs for lay, n in zip(c.layers, c.n_per_layer)]

#: Feed-forward excitation between layers, on when both layers are in the column.
DEFAULT_PATHWAYS = {
    "L4.E->L2/3.E": {"p": 0.5, "strength": 10.0, "delay_ms": 1.5},
    "L2/3.E->L5.E": {"p": 0.5, "strength": 10.0, "delay_ms": 1.5},
}

def parse_pathway_key(where: str, key) -> tuple:
    """A pathway key -> its two ends (column or None, layer, cell type); a clear error otherwise.

    'L4.E->L2/3.E' (within every column) gives ((None, 'L4', 'E'), (None, 'L2/3', 'E'));
    'A:L4.E->B:L2/3.E' (from column A to column B) gives (('A', 'L4', 'E'), ('B', 'L2/3', 'E')).
    """
    allowed = ("a key 'LAYER.TYPE->LAYER.TYPE' such as 'L4.E->L2/3.E' (within every column) or "
               "'COLUMN:LAYER.TYPE->COLUMN:LAYER.TYPE' such as 'A:L4.E->B:L2/3.E' (between named columns) "
               f"with layers {', '.join(LAYER_DEPTHS_UM)} and types {', '.join(CELL_TYPES)}")
    if not isinstance(key, str) or key.count("->") != 1:
        raise bad_value(where, "pathways", key, allowed)
    ends = []
    for part in key.split("->"):
        column, colon, group = part.strip().rpartition(":")
        layer, _, ctype = group.strip().rpartition(".")
        if colon and not column.strip():
            raise bad_value(where, "pathways", key, f"the column name before ':' is empty; {allowed}")
        if layer not in LAYER_DEPTHS_UM:
            raise bad_value(where, "pathways", key, f"layer {layer!r} is unknown; {allowed}")
        if ctype not in CELL_TYPES:
            raise bad_value(where, "pathways", key, f"cell type {ctype!r} is unknown; {allowed}")
        ends.append((column.strip() if colon else None, layer, ctype))
    if (ends[0][0] is None) != (ends[1][0] is None):
        raise bad_value(where, "pathways", key, f"name the column of both ends or of neither; {allowed}")
    return tuple(ends)


def check_pathways(cfg, keys=None) -> None:
    """Every pathway (or those of ``keys``) names columns and layers the configuration has.

    Raises ConfigurationError naming the pathway, the column or layer and what is allowed.
    """
    columns = {c.name: c.layers for c in cfg.column_specs}
    for key in (keys if keys is not None else [k for k, _ in cfg.connectivity_spec.pathways]):
        (ca, la, _), (cb, lb, _) = parse_pathway_key("connectivity", key)
        if ca is None:
            if len(columns) == 1:
                layers = next(iter(columns.values()))
                for layer in (la, lb):
                    if layer not in layers:
                        raise ConfigurationError(f"connectivity: pathway {key!r} names layer {layer!r}, which is "
                                                 f"not in the column's layers {list(layers)}")
            elif not any(la in lays and lb in lays for lays in columns.values()):
                raise ConfigurationError(
                    f"connectivity: pathway {key!r} acts within every column that has layers {la!r} and {lb!r}, "
                    "but no column has both; columns: "
                    + "; ".join(f"{name} {list(lays)}" for name, lays in columns.items()))
            continue
        for column, layer in ((ca, la), (cb, lb)):
            if column not in columns:
                raise ConfigurationError(f"connectivity: pathway {key!r} names column {column!r}, which is unknown; "
                                         f"valid columns are {', '.join(map(repr, columns))}")
            if layer not in columns[column]:
                raise ConfigurationError(f"connectivity: pathway {key!r} names layer {layer!r} of column "
                                         f"{column!r}, whose layers are {list(columns[column])}")


def synapse_table(pairs: tuple) -> dict:
    """{(pre type, post type): kind} from ``ConnectivitySpec.synapse`` (a pathway's own kind, else its
    presynaptic type's)."""
    given = dict(pairs)
    return {(pre, post): given.get(f"{pre}->{post}", given.get(pre))
            for pre in CELL_TYPES for post in CELL_TYPES}


def synapse_pairs(table: dict) -> tuple:
    """The canonical ``ConnectivitySpec.synapse`` of a table: one entry per presynaptic type whose two
    pathways share a kind, one per pathway otherwise (sorted, as the spec's pairs are)."""
    out = {}
    for pre in CELL_TYPES:
        kinds = [table[pre, post] for post in CELL_TYPES]
        if kinds[0] == kinds[1]:
            out[pre] = kinds[0]
        else:
            out.update({f"{pre}->{post}": table[pre, post] for post in CELL_TYPES})
    return tuple(sorted(out.items()))


def synapse_flags(pairs: tuple, kind: str) -> tuple:
    """((E->E, E->I), (I->E, I->I)): which pathways have synapses of ``kind`` ([pre][post type])."""
    table = synapse_table(pairs)
    return tuple(tuple(table[pre, post] == kind for post in CELL_TYPES) for pre in CELL_TYPES)
