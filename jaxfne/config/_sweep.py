"""Ensembles: sweeps of independent networks, expanded into member configurations.

Sweep paths name a configuration value by its place in the chain::

    cell_types.E | cell_types.I                 (the other type gets 1 - value)
    drive.current | drive.current.E | drive.current.I
    drive.noise   | drive.noise.E   | drive.noise.I
    connectivity.p | connectivity.tau_exc_ms | connectivity.tau_inh_ms
    connectivity.strength.<pre>-><post>         (E->E, E->I, I->E, I->I)
    emitter.preset | emitter.preset.E | emitter.preset.I
    connectivity.pathways.<pre>-><post>.strength | .p   (e.g. connectivity.pathways.L4.E->L2/3.E.strength,
                                                         or between columns ...pathways.A:L4.E->B:L2/3.E.p)
    stimulus.<name>.<field>                     (amplitude, onset_ms, duration_ms, period_ms, count,
                                                 frequency_hz, phase, offset, fraction: config/_stimuli.py)

``grid`` takes the Cartesian product of the swept values (in the order the
paths are given, the last varying fastest), ``zip`` pairs the i-th values of
every path; each combination is repeated for every seed (seed varies fastest).
"""

from __future__ import annotations

import numpy as np

from .._errors import ConfigurationError, bad_value
from .._validate import parse_choice, parse_int
from ._specs import EnsembleSpec, check_pathways
from ._stimuli import SWEEPABLE as STIMULUS_SWEEPABLE


def _cell_types(t):
    other = "I" if t == "E" else "E"
    return lambda cfg, v: cfg.cell_types({t: v, other: 1.0 - v})

SWEEP_PATHS = {
    "cell_types.E": _cell_types("E"),
    "cell_types.I": _cell_types("I"),
    "drive.current": lambda cfg, v: cfg.drive(current=v),
    "drive.current.E": lambda cfg, v: cfg.drive(current={"E": v}),
    "drive.current.I": lambda cfg, v: cfg.drive(current={"I": v}),
    "drive.noise": lambda cfg, v: cfg.drive(noise=v),
    "drive.noise.E": lambda cfg, v: cfg.drive(noise={"E": v}),
    "drive.noise.I": lambda cfg, v: cfg.drive(noise={"I": v}),
    "connectivity.p": lambda cfg, v: cfg.connectivity(p=v),
    "connectivity.tau_exc_ms": lambda cfg, v: cfg.connectivity(tau_exc_ms=v),
    "connectivity.tau_inh_ms": lambda cfg, v: cfg.connectivity(tau_inh_ms=v),
    **{f"connectivity.strength.{pw}": (lambda pw: lambda cfg, v: cfg.connectivity(strength={pw: v}))(pw)
       for pw in ("E->E", "E->I", "I->E", "I->I")},
    "emitter.preset": lambda cfg, v: cfg.set_emitter(preset=v),
    "emitter.preset.E": lambda cfg, v: cfg.set_emitter(preset={"E": v}),
    "emitter.preset.I": lambda cfg, v: cfg.set_emitter(preset={"I": v}),
}

#: paths that would change a shape or the program, with the reason they are refused
REFUSED_PATHS = {
    "column.n": "it changes the number of neurons, a shape shared by all members",
    "column.layers": "it changes the layers and so the number of neurons",
    "column.name": "all members share the same columns",
    "runtime.dt_ms": "it changes the number of time steps, a shape shared by all members",
    "runtime.duration_ms": "it changes the number of time steps, a shape shared by all members",
    "runtime.dtype": "all members share one dtype",
    "runtime.seed": "seeds are given with ensemble(seeds=[...])",
    "probes.names": "recorded probes fix output shapes shared by all members",
    "probes.contacts": "the number of contacts is a shape shared by all members",
    "connectivity.shared": "sharing is a property of the whole ensemble",
    "emitter.family": "all members share one neuron family",
}

#: paths that change the weights, refused when connectivity is shared
_WEIGHT_PATHS = ("cell_types.", "connectivity.p", "connectivity.strength.", "connectivity.pathways.")

def sweep_function(path: str):
    """The function applying a value at ``path``, or None for an unknown path."""
    if path in SWEEP_PATHS:
        return SWEEP_PATHS[path]
    prefix = "connectivity.pathways."
    if path.startswith(prefix):
        key, _, field = path[len(prefix):].rpartition(".")
        if field in ("strength", "p") and key:
            return lambda cfg, v: cfg.connectivity(pathways={key: {field: v}})
    prefix = "stimulus."
    if path.startswith(prefix):
        name, _, field = path[len(prefix):].rpartition(".")
        if field in STIMULUS_SWEEPABLE and name:
            return lambda cfg, v: cfg.stimulus(name, **{field: v})
    return None

def parse_ensemble(cfg, seeds, sweep, mode):
    """Validate an ensemble section against ``cfg``; return an EnsembleSpec."""
    w = "ensemble"
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise bad_value(w, "seeds", seeds, "a list of integer seeds is required")
    seeds = tuple(parse_int(w, "seeds", s, minimum=0) for s in seeds)
    if not seeds:
        raise bad_value(w, "seeds", list(seeds), "at least one seed is required")
    if any(s >= 2**32 for s in seeds):
        raise bad_value(w, "seeds", [s for s in seeds if s >= 2**32][:3], "every seed must be < 2**32")
    if len(set(seeds)) != len(seeds):
        raise bad_value(w, "seeds", list(seeds), "seeds must not repeat")
    mode = parse_choice(w, "mode", mode, ("grid", "zip"))
    if not hasattr(sweep, "items"):
        raise bad_value(w, "sweep", sweep, "a dict of path -> list of values is required")
    parsed = []
    for path, values in sweep.items():
        if path in REFUSED_PATHS:
            raise ConfigurationError(f"ensemble: sweep path {path!r} cannot be swept: {REFUSED_PATHS[path]}; "
                                     "run separate ensembles instead")
        if path.startswith("connectivity.pathways.") and path.endswith(".delay_ms"):
            raise ConfigurationError(f"ensemble: sweep path {path!r} cannot be swept: delays set the length of "
                                     "the delay buffers, a shape shared by all members")
        if path.startswith("stimulus.") and path.rpartition(".")[2] in ("kind", "column", "layer", "cell_type",
                                                                          "neurons", "synapse"):
            raise ConfigurationError(f"ensemble: sweep path {path!r} cannot be swept: only a stimulus's numeric "
                                     f"fields are ({', '.join(STIMULUS_SWEEPABLE)}); run separate ensembles, or "
                                     "add one stimulus per target")
        if sweep_function(path) is None:
            raise ConfigurationError(f"ensemble: sweep path {path!r} is unknown; valid paths are "
                                     f"{', '.join(sorted(SWEEP_PATHS))}, "
                                     "connectivity.pathways.<LAYER.TYPE->LAYER.TYPE>.strength and .p "
                                     "(or <COLUMN:LAYER.TYPE->COLUMN:LAYER.TYPE> between columns) and "
                                     f"stimulus.<name>.<field> with field one of {', '.join(STIMULUS_SWEEPABLE)}")
        if path.startswith("stimulus."):
            name = path[len("stimulus."):].rpartition(".")[0]
            names = [st.name for st in cfg.stimuli_spec]
            if name not in names:
                raise ConfigurationError(f"ensemble: sweep path {path!r} names the stimulus {name!r}, which this "
                                         "configuration does not have; its stimuli are "
                                         f"{', '.join(map(repr, names)) or 'none'} (add it with cfg.stimulus first)")
        if cfg.connectivity_spec.shared and path.startswith(_WEIGHT_PATHS):
            raise ConfigurationError(f"ensemble: sweep path {path!r} changes the weights, but "
                                     "connectivity(shared=True) gives every member the same weights")
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise bad_value(w, f"sweep[{path!r}]", values, "a list of values is required")
        values = tuple(v.item() if isinstance(v, np.generic) else v for v in values)
        if not values:
            raise bad_value(w, f"sweep[{path!r}]", [], "at least one value is required")
        if len({repr(v) for v in values}) != len(values):
            raise bad_value(w, f"sweep[{path!r}]", list(values),
                            "values must not repeat (like seeds: repeated members would share their coordinates)")
        for v in values:
            try:
                sweep_function(path)(cfg, v)
                if path.startswith("connectivity.pathways."):   # its columns and layers exist
                    check_pathways(cfg, [path[len("connectivity.pathways."):].rpartition(".")[0]])
            except ConfigurationError as exc:
                raise ConfigurationError(f"ensemble: sweep[{path!r}] value {v!r} is invalid: {exc}") from None
        parsed.append((path, values))
    if mode == "zip" and len({len(v) for _, v in parsed}) > 1:
        raise bad_value(w, "sweep", {p: len(v) for p, v in parsed},
                        "mode='zip' needs the same number of values on every path")
    return EnsembleSpec(seeds=seeds, sweep=tuple(parsed), mode=mode)
