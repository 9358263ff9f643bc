"""Immutable, chainable configuration.

``Configuration`` is a frozen dataclass of frozen sections. Every method returns
a new Configuration with one section replaced; arguments left out keep their
current value. Each value is validated where it is given and a bad one raises
:class:`~jaxfne.ConfigurationError` naming the method, the field, the value and
what is allowed. Nothing here creates arrays: that is ``construct``'s job.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import numbers
from typing import Any

import numpy as np

from .._errors import ConfigurationError, bad_value
from .._validate import parse_bool, parse_choice, parse_choices, parse_float, parse_int, parse_mapping, parse_steps
from ._arrays import ArrayValue, parse_array
from ._presets import (FAMILIES, PARAMS, REGISTRY, V_PEAK_MV, check_name, check_reset, parse_constants, parse_polynomial,
                       user_definition)
from ._specs import (CELL_TYPES, DEFAULT_COLUMN, DTYPES, INTEGRATORS, LAYER_DEPTHS_UM, LAYER_FRACTIONS, MAX_STEPS,
                     PATHWAYS, PROBES, REVERSAL_MV, RULES, SYNAPSES, CellTypesSpec, ColumnSpec, ConnectivitySpec, DriveSpec, EmitterSpec, EnsembleSpec,
                     ProbesSpec, RuntimeSpec, parse_pathway_key, synapse_pairs, synapse_table)
from ._stimuli import parse_stimulus, stimuli_from_dict
from ._sweep import parse_ensemble

_UNSET: Any = object()

def _pairs(mapping: dict) -> tuple:
    return tuple(sorted(mapping.items()))

_SECTIONS = ("runtime", "column", "cell_types", "connectivity", "emitter", "drive", "probes")

@dataclasses.dataclass(frozen=True)
class Configuration:
    """What to simulate. Build it by chaining methods; it never changes in place."""

    runtime_spec: RuntimeSpec = RuntimeSpec()
    #: the columns, in neuron order (one ColumnSpec per column)
    column_specs: tuple = (ColumnSpec(),)
    cell_types_spec: CellTypesSpec = CellTypesSpec()
    connectivity_spec: ConnectivitySpec = ConnectivitySpec()
    emitter_spec: EmitterSpec = EmitterSpec()
    drive_spec: DriveSpec = DriveSpec()
    probes_spec: ProbesSpec = ProbesSpec()
    ensemble_spec: EnsembleSpec | None = None
    #: the stimuli (config/_stimuli.py StimulusSpec), sorted by name: their order never depends on the chain
    stimuli_spec: tuple = ()

    # -- chainable methods -------------------------------------------------
    def runtime(self, seed=_UNSET, dtype=_UNSET, duration_ms=_UNSET, dt_ms=_UNSET,
                integrator=_UNSET) -> "Configuration":
        """Seed, float dtype ("float32" or "float64"), duration and time step in ms, integration scheme.

        ``integrator``: "euler" (forward Euler of dt, the default) or "izhikevich2003", the scheme of
        Izhikevich (2003): v advanced in two half steps of dt / 2, then u by dt from the new v (the
        paper's numerical-stability trick at dt = 1 ms). See docs/models.md.
        """
        w, cur = "runtime", self.runtime_spec
        seed = cur.seed if seed is _UNSET else parse_int(w, "seed", seed, minimum=0)
        if seed >= 2**32:
            raise bad_value(w, "seed", seed, "it must be < 2**32")
        dtype = cur.dtype if dtype is _UNSET else parse_choice(w, "dtype", dtype, DTYPES)
        duration_ms = cur.duration_ms if duration_ms is _UNSET else parse_float(
            w, "duration_ms", duration_ms, positive=True)
        dt_ms = cur.dt_ms if dt_ms is _UNSET else parse_float(w, "dt_ms", dt_ms, positive=True)
        if dt_ms > duration_ms:
            raise bad_value(w, "dt_ms", dt_ms, f"it must be <= duration_ms ({duration_ms})")
        steps = duration_ms / dt_ms
        if not steps < MAX_STEPS:  # also catches inf (a tiny dt_ms) before round() would fail
            raise bad_value(w, "duration_ms", duration_ms,
                            f"it is too many time steps of dt_ms={dt_ms}; at most {MAX_STEPS - 1} steps are allowed")
        parse_steps(w, "duration_ms", duration_ms, dt_ms)
        integrator = cur.integrator if integrator is _UNSET else parse_choice(w, "integrator", integrator, INTEGRATORS)
        return dataclasses.replace(self, runtime_spec=RuntimeSpec(seed, dtype, duration_ms, dt_ms, integrator))

    def column(self, name=_UNSET, layers=_UNSET, n=_UNSET, depths_um=_UNSET) -> "Configuration":
        """A named column with its layers and neuron count (a total, or a dict per layer).

        A total ``n`` is split over the layers by LAYER_FRACTIONS. ``depths_um``
        overrides the depth range (top, bottom) in um of any layer.

        Several columns: ``name`` picks the column to set. The name of an
        existing column updates that column; a new name adds a column (it
        starts as one L2/3 layer of 100 neurons), except that a configuration
        whose only column still has the default name ``"column"`` gives that
        column the new name. Without ``name`` the only column is updated (an
        error when there are several). Neurons are numbered column by column,
        in the order the columns were added.
        """
        w = "column"
        specs = list(self.column_specs)
        names = [c.name for c in specs]
        if name is _UNSET:
            if len(specs) > 1:
                raise bad_value(w, "name", None, f"this configuration has several columns ({', '.join(names)}); "
                                "name the one to change")
            pos = 0
            name = specs[0].name
        elif not isinstance(name, str) or not name.strip():
            raise bad_value(w, "name", name, "a non-empty string is required")
        elif name in names:
            pos = names.index(name)
        elif names == [DEFAULT_COLUMN]:
            pos = 0                      # the unnamed column takes its first name
        else:
            if name == DEFAULT_COLUMN:
                raise bad_value(w, "name", name, f"{DEFAULT_COLUMN!r} is the name of the unnamed single column; "
                                f"give a column added to {', '.join(names)} its own name")
            if "->" in name:
                raise bad_value(w, "name", name, "a column name must not contain '->' (it separates pathway ends)")
            specs.append(ColumnSpec(name=name))
            pos = len(specs) - 1
        cur = specs[pos]
        if layers is _UNSET:
            layers = cur.layers
        else:
            layers = tuple(parse_choices(w, "layers", layers, LAYER_DEPTHS_UM, "layer names"))
            if not layers:
                raise bad_value(w, "layers", list(layers), "at least one layer is required")
            if len(set(layers)) != len(layers):
                raise bad_value(w, "layers", list(layers), "layer names must not repeat")
        if n is _UNSET:
            n = cur.n if len(layers) != len(cur.layers) or layers != cur.layers else dict(zip(cur.layers, cur.n_per_layer))
        if hasattr(n, "items"):
            n = parse_mapping(w, "n", n)
            if set(n) != set(layers):
                raise bad_value(w, "n", n, f"a dict of n must give every layer exactly once: {list(layers)}")
            n_per_layer = tuple(parse_int(w, f"n[{lay!r}]", n[lay], minimum=1) for lay in layers)
        else:
            total = parse_int(w, "n", n, minimum=1)
            n_per_layer = _split_total(total, layers)
            if min(n_per_layer) < 1:
                raise bad_value(w, "n", total, f"it is too small to give each of {len(layers)} layers a neuron")
        depths = dict(cur.depths_um)
        if depths_um is not _UNSET:
            for lay, rng in parse_mapping(w, "depths_um", depths_um).items():
                parse_choice(w, "depths_um", lay, LAYER_DEPTHS_UM)
                if isinstance(rng, (str, bytes)) or not hasattr(rng, "__len__") or len(rng) != 2:
                    raise bad_value(w, f"depths_um[{lay!r}]", rng, "a pair (top_um, bottom_um) is required")
                top = parse_float(w, f"depths_um[{lay!r}][0]", rng[0], minimum=0.0)
                bottom = parse_float(w, f"depths_um[{lay!r}][1]", rng[1], minimum=0.0)
                if bottom <= top:
                    raise bad_value(w, f"depths_um[{lay!r}]", list(rng), "bottom must be deeper than top")
                depths[lay] = (top, bottom)
        specs[pos] = ColumnSpec(name, layers, n_per_layer, _pairs(depths))
        return dataclasses.replace(self, column_specs=tuple(specs))

    def cell_types(self, fractions=_UNSET) -> "Configuration":
        """Fractions of excitatory ("E") and inhibitory ("I") cells; they must sum to 1.

        Either one dict for every layer, ``{"E": 0.8, "I": 0.2}``, or a dict per
        layer, ``{"L2/3": {"E": 0.8, "I": 0.2}, "L4": {...}}`` (layers left out
        keep the column-wide fractions), or both in one dict,
        ``{"E": 0.8, "I": 0.2, "L4": {"E": 0.7, "I": 0.3}}`` (what ``to_dict`` writes).
        """
        w = "cell_types"
        if fractions is _UNSET:
            return self
        fractions = parse_mapping(w, "fractions", fractions)
        layer_part = {k: v for k, v in fractions.items() if k in LAYER_DEPTHS_UM}
        type_part = {k: v for k, v in fractions.items() if k not in LAYER_DEPTHS_UM}
        full = self.cell_types_spec.fractions
        if type_part or not layer_part:
            full = _parse_fractions(w, "fractions", type_part)
        per_layer = dict(self.cell_types_spec.per_layer)
        for lay, sub in layer_part.items():
            per_layer[lay] = _parse_fractions(w, f"fractions[{lay!r}]", sub)
        return dataclasses.replace(self, cell_types_spec=CellTypesSpec(full, _pairs(per_layer)))

    def connectivity(self, p=_UNSET, strength=_UNSET, tau_exc_ms=_UNSET, tau_inh_ms=_UNSET,
                     shared=_UNSET, delay_ms=_UNSET, pathways=_UNSET, rule=_UNSET, autapses=_UNSET,
                     synapse=_UNSET, weights=_UNSET, reversal_mv=_UNSET) -> "Configuration":
        """Random connectivity without self-connections, or the user's own weights; the synapse kinds.

        ``p`` is the connection probability (1.0 = all-to-all). ``strength`` maps
        pathways ("E->E", "E->I", "I->E", "I->I") to the summed mean weight a
        postsynaptic cell receives from the whole presynaptic population; weights
        are divided by the expected number of inputs, so balance does not change
        with n or p. ``tau_exc_ms``/``tau_inh_ms`` are the synaptic decay times.
        ``shared=True`` gives every ensemble member the same connectivity.

        Laminar columns: ``strength`` and ``p`` apply within each layer;
        ``pathways`` sets any pre/post group pair, keyed "L4.E->L2/3.E", to a
        dict of ``p``, ``strength`` and ``delay_ms`` (fields left out take the
        column-wide ``p``, the within-layer strength of that type pair or 0
        between layers, and ``delay_ms``). Feed-forward excitation
        L4.E->L2/3.E and L2/3.E->L5.E is on by default (DEFAULT_PATHWAYS).
        ``delay_ms`` is the synaptic delay of pathways that do not set their
        own; a delay of d ms acts after max(1, round(d / dt_ms)) steps.

        ``rule``: "probability" (each pair independently with probability p) or "fixed_indegree" (each
        neuron receives exactly round(p * candidates) inputs from every presynaptic group, chosen
        uniformly). ``autapses=True`` allows self-connections. ``synapse``: "exponential" (a spike adds w
        to a current that decays with tau), "delta" (a spike adds a current w / dt_ms for the next step
        only, so the target's v moves by about w) or "conductance" (a spike adds w to a conductance g
        that decays with tau; the current is g (E_rev - v), ``reversal_mv`` per presynaptic type, default
        0 mV for E and -80 mV for I), one kind or a dict per presynaptic type.
        ``weights``: the user's own matrix W[post, pre] (a numpy array or scipy.sparse matrix, N x N,
        shared by every member; or an array (members, N, N), one matrix per ensemble member in member
        order, the count checked by ``construct``), replacing p, strength and rule; a column of an E cell must be >= 0,
        of an I cell <= 0 (checked by ``construct``), and its diagonal must be 0 unless autapses=True;
        None goes back to the random rule. See docs/models.md.
        """
        w, cur = "connectivity", self.connectivity_spec
        p = cur.p if p is _UNSET else parse_float(w, "p", p, minimum=0.0, maximum=1.0)
        strengths = dict(cur.strength)
        if strength is not _UNSET:
            for key, val in parse_mapping(w, "strength", strength).items():
                if key not in PATHWAYS:
                    raise bad_value(w, "strength", {key: val},
                                    f"pathway {key!r} is unknown; valid pathways are {', '.join(PATHWAYS)}")
                strengths[key] = parse_float(w, f"strength[{key!r}]", val, minimum=0.0)
        tau_e = cur.tau_exc_ms if tau_exc_ms is _UNSET else parse_float(w, "tau_exc_ms", tau_exc_ms, positive=True)
        tau_i = cur.tau_inh_ms if tau_inh_ms is _UNSET else parse_float(w, "tau_inh_ms", tau_inh_ms, positive=True)
        shared = cur.shared if shared is _UNSET else parse_bool(w, "shared", shared)
        delay = cur.delay_ms if delay_ms is _UNSET else parse_float(w, "delay_ms", delay_ms, minimum=0.0, maximum=1000.0)
        paths = {k: dict(v) for k, v in cur.pathways}
        if pathways is not _UNSET:
            for key, val in parse_mapping(w, "pathways", pathways).items():
                parse_pathway_key(w, key)
                fields = parse_mapping(w, f"pathways[{key!r}]", val)
                entry = paths.get(key, {})
                for fname, fval in fields.items():
                    if fname == "p":
                        entry[fname] = parse_float(w, f"pathways[{key!r}].p", fval, minimum=0.0, maximum=1.0)
                    elif fname == "strength":
                        entry[fname] = parse_float(w, f"pathways[{key!r}].strength", fval, minimum=0.0)
                    elif fname == "delay_ms":
                        entry[fname] = parse_float(w, f"pathways[{key!r}].delay_ms", fval, minimum=0.0,
                                                   maximum=1000.0)
                    else:
                        raise bad_value(w, f"pathways[{key!r}]", {fname: fval},
                                        f"field {fname!r} is unknown; valid fields are delay_ms, p, strength")
                paths[key] = entry
        rule = cur.rule if rule is _UNSET else parse_choice(w, "rule", rule, RULES)
        autapses = cur.autapses if autapses is _UNSET else parse_bool(w, "autapses", autapses)
        kinds = synapse_table(cur.synapse)
        if synapse is not _UNSET:
            if isinstance(synapse, str):
                kinds = dict.fromkeys(kinds, parse_choice(w, "synapse", synapse, SYNAPSES))
            else:
                given = parse_mapping(w, "synapse", synapse)
                for key, val in given.items():
                    if key not in CELL_TYPES and key not in PATHWAYS:
                        raise bad_value(w, "synapse", {key: val}, "the key is a presynaptic cell type ("
                                        f"{', '.join(CELL_TYPES)}) or a pathway ({', '.join(PATHWAYS)})")
                # a type sets both of its pathways, then a pathway of the same call its own
                for key in sorted(given, key=lambda k: "->" in k):
                    kind = parse_choice(w, f"synapse[{key!r}]", given[key], SYNAPSES)
                    for pre, post in kinds:
                        if key in (pre, f"{pre}->{post}"):
                            kinds[pre, post] = kind
            kinds = synapse_table(synapse_pairs(kinds))
        reversal = dict(cur.reversal_mv)
        if reversal_mv is not _UNSET:
            for key, val in parse_mapping(w, "reversal_mv", reversal_mv).items():
                if key not in CELL_TYPES:
                    raise bad_value(w, "reversal_mv", {key: val}, f"the key is the presynaptic cell type: one "
                                    f"of {', '.join(CELL_TYPES)}")
                reversal[key] = parse_float(w, f"reversal_mv[{key!r}]", val, minimum=-200.0, maximum=200.0)
        matrix = cur.weights
        if weights is not _UNSET:
            matrix = None if weights is None else parse_array(w, "weights", weights, ndims=(2, 3))
            if matrix is not None and matrix.shape[-2] != matrix.shape[-1]:
                raise bad_value(w, "weights", matrix, "a square N x N matrix W[post, pre] (or one per member, "
                                "(members, N, N)) is required")
        if matrix is not None and matrix.data.ndim == 3 and shared:
            raise bad_value(w, "shared", shared, "weights of shape (members, N, N) give every member its own "
                            "matrix, which shared=True contradicts; give one (N, N) matrix to share it")
        if matrix is not None and not autapses:
            diagonal = np.diagonal(matrix.data, axis1=-2, axis2=-1)
            if np.any(diagonal != 0.0):
                at = tuple(int(i) for i in np.argwhere(diagonal != 0.0)[0])
                index = ", ".join(map(str, at[:-1] + (at[-1], at[-1])))
                raise bad_value(w, f"weights[{index}]", float(diagonal[at]),
                                "self-connections need autapses=True; otherwise the diagonal must be 0")
        spec = ConnectivitySpec(p, _pairs(strengths), tau_e, tau_i, shared, delay,
                                tuple((k, _pairs(v)) for k, v in sorted(paths.items())), rule, autapses,
                                synapse_pairs(kinds), matrix, _pairs(reversal))
        return dataclasses.replace(self, connectivity_spec=spec)

    def set_emitter(self, family=_UNSET, preset=_UNSET, params=_UNSET, heterogeneity=_UNSET,
                    user_presets=_UNSET, per_neuron=_UNSET) -> "Configuration":
        """Neuron family ("izhikevich") and the Izhikevich (a, b, c, d) of each cell type.

        ``preset``: one name, or a dict per cell type (built-in presets, or ones added with
        ``jaxfne.register_preset``). ``params``: explicit values per cell type,
        ``{"E": {"a": .., "b": .., "c": .., "d": ..}}`` (all four; a type given here leaves its preset).
        A type must not get both in one call. ``heterogeneity``: per cell type, parameters that vary per
        neuron as p0 + p1 r + p2 r**2 with r ~ U(0, 1) drawn per neuron from the member's seed, given as
        (p0, p1) or (p0, p1, p2); it replaces that parameter of the type's preset or params (a dict per type
        replaces that type's entry, {} or None clears). ``user_presets``: recorded values of user presets
        (name -> {a, b, c, d}), what ``to_dict`` writes so a configuration rebuilds without the
        registration. ``per_neuron``: {parameter: array of N values}, one value per neuron (in neuron order)
        replacing that parameter for every neuron, whatever its type's preset, params or heterogeneity say
        ({} or None clears; N is checked by ``construct``). Every value is finite and every reset c(r)
        stays below the 30 mV spike peak.
        """
        w, cur = "set_emitter", self.emitter_spec
        family = cur.family if family is _UNSET else parse_choice(w, "family", family, FAMILIES)
        presets = dict(cur.preset)
        explicit = dict(cur.params)
        het = dict(cur.heterogeneity)
        recorded = dict(cur.user_presets)
        if user_presets is not _UNSET:
            for name, vals in parse_mapping(w, "user_presets", user_presets).items():
                if name in REGISTRY:
                    raise bad_value(w, "user_presets", {name: vals}, f"{name!r} is a built-in preset")
                parsed = parse_constants(w, f"user_presets[{name!r}]", vals)
                registered = user_definition(name)
                if registered is not None and registered != parsed:
                    raise bad_value(w, "user_presets", {name: vals},
                                    f"preset {name!r} is registered in this process with other values "
                                    f"{dict(registered)}")
                recorded[name] = parsed
        named = {}
        if preset is not _UNSET:
            if isinstance(preset, str) or not hasattr(preset, "items"):
                check_name(preset, w, "preset", recorded)   # a name, or an error listing the valid names
                named = {t: preset for t in CELL_TYPES}
            else:
                for key, val in parse_mapping(w, "preset", preset).items():
                    if key not in CELL_TYPES:
                        raise bad_value(w, "preset", {key: val},
                                        f"cell type {key!r} is unknown; valid types are {', '.join(CELL_TYPES)}")
                    check_name(val, w, f"preset[{key!r}]", recorded)
                    named[key] = val
        if params is not _UNSET:
            for key, vals in parse_mapping(w, "params", params).items():
                if key not in CELL_TYPES:
                    raise bad_value(w, "params", {key: vals},
                                    f"cell type {key!r} is unknown; valid types are {', '.join(CELL_TYPES)}")
                if key in named:
                    raise bad_value(w, "params", {key: vals},
                                    f"cell type {key!r} is also given preset={named[key]!r} in this call; "
                                    "give a type either a preset or params, not both")
                explicit[key] = parse_constants(w, f"params[{key!r}]", vals)
                presets.pop(key, None)
        for key, name in named.items():
            presets[key] = name
            explicit.pop(key, None)
            if name not in REGISTRY and user_definition(name) is not None:
                recorded[name] = user_definition(name)
        if heterogeneity is not _UNSET:
            if heterogeneity is None:
                het = {}
            else:
                for key, polys in parse_mapping(w, "heterogeneity", heterogeneity).items():
                    if key not in CELL_TYPES:
                        raise bad_value(w, "heterogeneity", {key: polys},
                                        f"cell type {key!r} is unknown; valid types are {', '.join(CELL_TYPES)}")
                    polys = {} if polys is None else parse_mapping(w, f"heterogeneity[{key!r}]", polys)
                    for pname in polys:
                        if pname not in PARAMS:
                            raise bad_value(w, f"heterogeneity[{key!r}]", {pname: polys[pname]},
                                            f"parameter {pname!r} is unknown; valid parameters are "
                                            f"{', '.join(PARAMS)}")
                    het[key] = tuple((p, parse_polynomial(w, f"heterogeneity[{key!r}][{p!r}]", polys[p]))
                                     for p in PARAMS if p in polys)
                    if "c" in polys:
                        check_reset(w, f"heterogeneity[{key!r}]['c']", dict(het[key])["c"])
                    if not het[key]:
                        del het[key]
        arrays = dict(cur.per_neuron)
        if per_neuron is not _UNSET:
            arrays = {}
            for pname, values in ({} if per_neuron is None else parse_mapping(w, "per_neuron", per_neuron)).items():
                if pname not in PARAMS:
                    raise bad_value(w, "per_neuron", {pname: values},
                                    f"parameter {pname!r} is unknown; valid parameters are {', '.join(PARAMS)}")
                arrays[pname] = parse_array(w, f"per_neuron[{pname!r}]", values, ndims=(1,))
                if pname == "c" and not np.all(arrays[pname].data < V_PEAK_MV):
                    i = int(np.flatnonzero(arrays[pname].data >= V_PEAK_MV)[0])
                    raise bad_value(w, f"per_neuron['c'][{i}]", float(arrays[pname].data[i]),
                                    f"every reset c must be below the spike peak {V_PEAK_MV} mV")
        # keep the values of the user presets this configuration names (by type or in its sweep)
        # (and those given here: from_dict gives the swept ones before the ensemble section)
        used = set(presets.values()) | _swept_presets(self.ensemble_spec) | (
            set() if user_presets is _UNSET else set(user_presets))
        spec = EmitterSpec(family, _pairs(presets), _pairs(explicit), _pairs(het),
                           _pairs({k: v for k, v in recorded.items() if k in used}), _pairs(arrays))
        return dataclasses.replace(self, emitter_spec=spec)

    def drive(self, current=_UNSET, noise=_UNSET, noise_hold_ms=_UNSET) -> "Configuration":
        """External drive: a constant current plus Gaussian white noise, per cell type.

        Each is a float (every type) or a dict per cell type (types left out keep
        their value). ``noise`` is the noise intensity sigma: the current noise has
        standard deviation sigma / sqrt(dt_ms) at each step, so statistics do not
        depend on dt. ``noise_hold_ms``: draw the noise once per that many ms (a whole
        number of steps, checked by ``construct``) and hold it, with standard
        deviation sigma / sqrt(noise_hold_ms) (the same integrated variance); None
        (default) draws it every step. Izhikevich (2003)'s thalamic input is
        sigma = 5 (E) and 2 (I) held for 1 ms.
        """
        w, cur = "drive", self.drive_spec
        out = {}
        for field, value, old in (("current", current, cur.current), ("noise", noise, cur.noise)):
            vals = dict(old)
            if value is not _UNSET:
                minimum = 0.0 if field == "noise" else None
                if hasattr(value, "items"):
                    for key, val in value.items():
                        if key not in CELL_TYPES:
                            raise bad_value(w, field, {key: val},
                                            f"cell type {key!r} is unknown; valid types are {', '.join(CELL_TYPES)}")
                        vals[key] = parse_float(w, f"{field}[{key!r}]", val, minimum=minimum)
                else:
                    val = parse_float(w, field, value, minimum=minimum)
                    vals = {t: val for t in CELL_TYPES}
            out[field] = _pairs(vals)
        out["noise_hold_ms"] = cur.noise_hold_ms
        if noise_hold_ms is not _UNSET:
            out["noise_hold_ms"] = None if noise_hold_ms is None else parse_float(w, "noise_hold_ms", noise_hold_ms,
                                                                                  positive=True)
        return dataclasses.replace(self, drive_spec=DriveSpec(**out))

    def probes(self, names=_UNSET, contacts=_UNSET, contact_spacing_um=_UNSET, neurons=_UNSET,
               every_ms=_UNSET) -> "Configuration":
        """What to record: any of SPK, Vm, source, LFP-proxy, CSD-proxy.

        Spikes (SPK) are always recorded, complete. ``contacts`` is the number of
        virtual recording contacts along the column's depth axis: spread evenly
        from its top to its bottom, or ``contact_spacing_um`` apart from its top.
        ``neurons`` chooses which cells Vm and source record: None (all), an int k
        (k cells of each type in each layer: the first k, which are E, and the
        last k, which are I) or a list of neuron indices. ``every_ms`` samples Vm,
        source, LFP-proxy and CSD-proxy every that many ms (instantaneous samples;
        a whole number of steps) instead of every step.
        """
        w, cur = "probes", self.probes_spec
        if names is _UNSET:
            names = cur.names
        else:
            names = parse_choices(w, "names", names, PROBES, "probe names")
            if "SPK" not in names:
                names = ["SPK", *names]
            names = tuple(p for p in PROBES if p in names)  # canonical order, no repeats
        contacts = cur.contacts if contacts is _UNSET else parse_int(w, "contacts", contacts, minimum=3)
        if contacts > 4096:
            raise bad_value(w, "contacts", contacts, "it must be <= 4096")
        spacing = cur.contact_spacing_um
        if contact_spacing_um is not _UNSET:
            spacing = None if contact_spacing_um is None else parse_float(
                w, "contact_spacing_um", contact_spacing_um, positive=True)
        sel = cur.neurons
        if neurons is not _UNSET:
            if neurons is None or neurons == "all":
                sel = None
            elif isinstance(neurons, bool):
                raise bad_value(w, "neurons", neurons, "None, 'all', an int per cell type or a list of indices")
            elif isinstance(neurons, numbers.Integral):
                sel = ("per_type", parse_int(w, "neurons", neurons, minimum=1))
            elif hasattr(neurons, "__iter__") and not isinstance(neurons, (str, bytes)):
                idx = tuple(parse_int(w, "neurons", i, minimum=0) for i in neurons)
                if not idx or len(set(idx)) != len(idx):
                    raise bad_value(w, "neurons", list(neurons), "a non-empty list of distinct indices is required")
                sel = ("index", tuple(sorted(idx)))
            else:
                raise bad_value(w, "neurons", neurons, "None, 'all', an int per cell type or a list of indices")
        every = cur.every_ms
        if every_ms is not _UNSET:
            every = None if every_ms is None else parse_float(w, "every_ms", every_ms, positive=True)
        return dataclasses.replace(self, probes_spec=ProbesSpec(names, contacts, spacing, sel, every))

    def stimulus(self, name, kind=None, **fields) -> "Configuration":
        """Add the stimulus ``name`` (with its ``kind``) or update it (fields left out keep their value).

        Kinds: "step" (amplitude, onset_ms, duration_ms), "pulses" (amplitude, onset_ms, duration_ms of
        each pulse, period_ms, count) and "sine" (amplitude, frequency_hz, phase in radians, offset,
        onset_ms, duration_ms), currents added to the drive of their targets; "poisson" (rate_hz,
        n_sources, weight, synapse "E" or "I", onset_ms, duration_ms), spike sources onto the targets'
        synaptic currents. A duration_ms or count of None lasts to the end of the run. Targets:
        every neuron, narrowed by ``column``, ``layer`` and
        ``cell_type``, then a ``fraction`` of those drawn per member from its seed; or explicit
        ``neurons`` (indices). Times must be whole numbers of steps (checked by ``construct``).
        Numeric fields are sweepable as "stimulus.<name>.<field>". See docs/stimuli.md.
        """
        current = next((s for s in self.stimuli_spec if s.name == name), None)
        spec = parse_stimulus(current, name, kind, fields)
        others = [s for s in self.stimuli_spec if s.name != name]
        return dataclasses.replace(self, stimuli_spec=tuple(sorted([*others, spec], key=lambda s: s.name)))

    def ensemble(self, seeds=_UNSET, sweep=_UNSET, mode=_UNSET) -> "Configuration":
        """Make this an ensemble: every sweep combination (grid) or tuple (zip) for every seed.

        ``sweep`` maps a path (for example "cell_types.E", "drive.current.E",
        "connectivity.strength.E->I", "emitter.preset") to a list of values. See
        docs/ensembles.md for the grammar; an unknown path lists the valid ones.
        """
        cur = self.ensemble_spec or EnsembleSpec(seeds=(self.runtime_spec.seed,))
        spec = parse_ensemble(self, cur.seeds if seeds is _UNSET else seeds,
                              dict(cur.sweep) if sweep is _UNSET else sweep,
                              cur.mode if mode is _UNSET else mode)
        # record the values of the user presets it sweeps over, and only of those it names
        em = self.emitter_spec
        used = set(dict(em.preset).values()) | _swept_presets(spec)
        recorded = {k: v for k, v in em.user_presets if k in used}
        for name in sorted(used - set(recorded)):
            if name not in REGISTRY and user_definition(name) is not None:
                recorded[name] = user_definition(name)
        return dataclasses.replace(self, ensemble_spec=spec,
                                   emitter_spec=dataclasses.replace(em, user_presets=_pairs(recorded)))

    # -- derived views -------------------------------------------------------
    @property
    def column_spec(self) -> ColumnSpec:
        """The first column (the only one of a single-column configuration)."""
        return self.column_specs[0]

    @property
    def n(self) -> int:
        return sum(c.n for c in self.column_specs)

    def to_dict(self) -> dict:
        """A plain nested dict (JSON/TOML friendly) that ``from_dict`` turns back."""
        rt, ct = self.runtime_spec, self.cell_types_spec
        con, em, dr, pr = self.connectivity_spec, self.emitter_spec, self.drive_spec, self.probes_spec
        columns = [{"name": col.name, "layers": list(col.layers), "n": dict(zip(col.layers, col.n_per_layer)),
                    **({"depths_um": {k: list(v) for k, v in col.depths_um}} if col.depths_um else {})}
                   for col in self.column_specs]
        return {
            # the integrator only when not Euler: a configuration without it keeps its hash from before
            "runtime": {k: v for k, v in dataclasses.asdict(rt).items() if k != "integrator" or v != "euler"},
            # one column: its dict (as before columns could be several); several: a list of them
            "column": columns[0] if len(columns) == 1 else columns,
            "cell_types": {"fractions": {**dict(ct.fractions), **{k: dict(v) for k, v in ct.per_layer}}},
            "connectivity": {"p": con.p, "strength": dict(con.strength), "tau_exc_ms": con.tau_exc_ms,
                             "tau_inh_ms": con.tau_inh_ms, "shared": con.shared, "delay_ms": con.delay_ms,
                             **({"pathways": {k: dict(v) for k, v in con.pathways}} if con.pathways else {}),
                             **({"rule": con.rule} if con.rule != "probability" else {}),
                             **({"autapses": True} if con.autapses else {}),
                             **({"synapse": dict(con.synapse)} if con.synapse != ConnectivitySpec().synapse else {}),
                             **({"weights": con.weights.to_dict()} if con.weights is not None else {}),
                             **({"reversal_mv": dict(con.reversal_mv)} if con.reversal_mv != REVERSAL_MV else {})},
            # the user-neuron keys only when used: a configuration without them keeps its hash from before
            "emitter": {"family": em.family, "preset": dict(em.preset),
                        **({"params": {t: dict(v) for t, v in em.params}} if em.params else {}),
                        **({"heterogeneity": {t: {p: list(c) for p, c in v} for t, v in em.heterogeneity}}
                           if em.heterogeneity else {}),
                        **({"user_presets": {k: dict(v) for k, v in em.user_presets}} if em.user_presets else {}),
                        **({"per_neuron": {p: a.to_dict() for p, a in em.per_neuron}} if em.per_neuron else {})},
            "drive": {"current": dict(dr.current), "noise": dict(dr.noise),
                      **({"noise_hold_ms": dr.noise_hold_ms} if dr.noise_hold_ms is not None else {})},
            "probes": {"names": list(pr.names), "contacts": pr.contacts,
                       **({"contact_spacing_um": pr.contact_spacing_um} if pr.contact_spacing_um else {}),
                       **({"neurons": pr.neurons[1] if pr.neurons[0] == "per_type" else list(pr.neurons[1])}
                          if pr.neurons else {}),
                       **({"every_ms": pr.every_ms} if pr.every_ms else {})},
            **({} if self.ensemble_spec is None else {"ensemble": {
                "seeds": list(self.ensemble_spec.seeds),
                "sweep": {k: list(v) for k, v in self.ensemble_spec.sweep},
                "mode": self.ensemble_spec.mode}}),
            # only when there are stimuli: a configuration without them keeps its hash from before stimuli
            **({"stimuli": {s.name: s.to_dict() for s in self.stimuli_spec}} if self.stimuli_spec else {}),
        }

    @classmethod
    def from_dict(cls, data: dict, *, where: str = "Configuration.from_dict") -> "Configuration":
        """Rebuild a configuration from ``to_dict`` output, validating every value."""
        if not hasattr(data, "items"):
            raise bad_value(where, "data", data, "a mapping of sections is required")
        methods = {"runtime": "runtime", "column": "column", "cell_types": "cell_types",
                   "connectivity": "connectivity", "emitter": "set_emitter", "drive": "drive",
                   "probes": "probes", "stimuli": "stimulus", "ensemble": "ensemble"}
        for section in data:
            if section not in methods:
                raise bad_value(where, "section", section, f"valid sections are {', '.join(methods)}")
        cfg = cls()
        # canonical order, whatever order the mapping has (JSON/TOML writers may sort
        # keys): the ensemble section is checked against everything else, so it is last
        for section in (s for s in methods if s in data):
            values = data[section]
            if section == "stimuli":
                cfg = stimuli_from_dict(cfg, values, where)
                continue
            # the column section may be a list: one mapping per column, in order
            many = section == "column" and isinstance(values, (list, tuple)) and len(values) > 0
            for each in (values if many else [values]):
                if not hasattr(each, "items"):
                    what = "a mapping of keyword arguments" + (" (or a list of them)" if section == "column" else "")
                    raise bad_value(where, section, each, f"{what} is required")
                if many and "name" not in each:
                    raise bad_value(where, section, each, "every column of a list needs its 'name'")
                method = getattr(cfg, methods[section])
                allowed = [p for p in inspect.signature(method).parameters]
                unknown = [k for k in each if k not in allowed]
                if unknown:
                    raise ConfigurationError(
                        f"{where}: section {section!r} has unknown key(s) {', '.join(map(repr, unknown))}; "
                        f"valid keys are {', '.join(allowed)}")
                cfg = method(**dict(each))
        return cfg

    def config_hash(self) -> str:
        """SHA-256 of the canonical JSON form: equal configurations, equal hashes."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

def _swept_presets(ensemble_spec) -> set:
    """The preset names an ensemble sweeps over (paths emitter.preset, emitter.preset.E, ...)."""
    if ensemble_spec is None:
        return set()
    return {v for path, values in ensemble_spec.sweep if path.startswith("emitter.preset")
            for v in values if isinstance(v, str)}

def _split_total(total: int, layers: tuple) -> tuple:
    """Split ``total`` neurons over ``layers`` by LAYER_FRACTIONS (largest remainder)."""
    weights = [LAYER_FRACTIONS[lay] for lay in layers]
    s = sum(weights)
    exact = [total * wgt / s for wgt in weights]
    base = [int(x) for x in exact]
    order = sorted(range(len(layers)), key=lambda i: exact[i] - base[i], reverse=True)
    for i in order[: total - sum(base)]:
        base[i] += 1
    return tuple(base)

def _parse_fractions(w: str, field: str, fractions) -> tuple:
    fractions = parse_mapping(w, field, fractions)
    if not fractions:
        raise bad_value(w, field, fractions, "at least one cell type is required")
    for key, val in fractions.items():
        if key not in CELL_TYPES:
            raise bad_value(w, field, fractions,
                            f"cell type {key!r} is unknown; valid types are {', '.join(CELL_TYPES)} "
                            f"(or a dict per layer: {', '.join(LAYER_DEPTHS_UM)})")
        parse_float(w, f"{field}[{key!r}]", val, minimum=0.0, maximum=1.0)
    total = sum(float(v) for v in fractions.values())
    if abs(total - 1.0) > 1e-9:
        raise bad_value(w, field, fractions,
                        f"they sum to {total:.6g} and do not sum to 1; they are not normalised for you")
    return _pairs({t: float(fractions.get(t, 0.0)) for t in CELL_TYPES})
