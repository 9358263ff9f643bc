"""Stimuli: named external inputs of a configuration, as frozen data.

``Configuration.stimulus(name, kind=..., ...)`` adds or updates one stimulus;
this module holds its vocabulary (the kinds, their numeric fields and
defaults, the target keywords), the frozen ``StimulusSpec`` and the checks
that need the whole configuration (its columns, layers and size). Nothing
here makes arrays: model/_stimuli.py turns the specs into per-member arrays.

Kinds (currents, added to the drive of every targeted neuron):

* ``step``: ``amplitude`` from ``onset_ms`` for ``duration_ms`` (None: to the end of the run);
* ``pulses``: ``count`` pulses (None: until the end) of ``amplitude`` and ``duration_ms`` each, one every
  ``period_ms``, the first at ``onset_ms``;
* ``sine``: ``amplitude * sin(2 pi frequency_hz (t - onset_ms) + phase) + offset`` from ``onset_ms`` for
  ``duration_ms`` (None: to the end);
* ``trials``: a pulse of ``amplitude`` and ``duration_ms`` at each of the given ``onsets_ms`` (a strictly
  increasing list): trials at irregular times, recorded so analysis aligns to them.

* ``array``: a current given as an array, like Brian2's ``TimedArray``: ``values`` (T,) one time course
  for every target, or (T, K) one column per target (K targets, in ascending neuron index), row k applied
  from ``onset_ms + k * sample_ms`` for ``sample_ms`` (None: one row per step of dt), times ``amplitude``;
  zero before the onset and after the last row. Shared by every ensemble member, or, with
  ``per_member=True``, values (members, T) or (members, T, K): one per member, in member order (the count
  is checked by ``construct``).

Spike sources:

* ``poisson``: every target receives ``n_sources`` independent Poisson trains of ``rate_hz`` from
  ``onset_ms`` for ``duration_ms``; each spike adds ``weight`` to its excitatory (``synapse="E"``) or
  inhibitory ("I") synaptic current, like a recurrent spike of that type. Inhomogeneous: a ``profile``
  (T,) of factors >= 0 makes the rate ``rate_hz * profile[k]`` during row k (``sample_ms`` each, None:
  one step), from ``onset_ms`` until the profile ends (``duration_ms`` is then not used).

Targets: every neuron, narrowed by ``column``, ``layer`` and ``cell_type``,
then a ``fraction`` of those (drawn per member from its seed), or explicit
``neurons`` (indices, alone).
"""

from __future__ import annotations

import dataclasses
import numbers

from .._errors import ConfigurationError, bad_value
from .._validate import parse_bool, parse_float, parse_int
from ._arrays import ArrayValue, parse_array
from ._specs import CELL_TYPES, LAYER_DEPTHS_UM

#: the numeric fields of each kind and their defaults (REQUIRED: must be given when the stimulus is made)
REQUIRED = object()
UNTIL_END = None
STIMULUS_KINDS = {
    "step": {"amplitude": REQUIRED, "onset_ms": 0.0, "duration_ms": UNTIL_END},
    "pulses": {"amplitude": REQUIRED, "onset_ms": 0.0, "duration_ms": REQUIRED, "period_ms": REQUIRED,
               "count": UNTIL_END},
    "sine": {"amplitude": REQUIRED, "frequency_hz": REQUIRED, "phase": 0.0, "offset": 0.0, "onset_ms": 0.0,
             "duration_ms": UNTIL_END},
    "trials": {"amplitude": REQUIRED, "onsets_ms": REQUIRED, "duration_ms": REQUIRED},
    "array": {"values": REQUIRED, "sample_ms": None, "amplitude": 1.0, "onset_ms": 0.0},
    "poisson": {"rate_hz": REQUIRED, "n_sources": REQUIRED, "weight": REQUIRED, "synapse": "E", "onset_ms": 0.0,
                "duration_ms": UNTIL_END, "profile": None, "sample_ms": None},
}
#: optional fields of a kind, kept in its values only when they differ from this default (so a stimulus
#: written before the field existed has the same dict and hash)
OPTIONAL_FIELDS = {"array": {"per_member": False}}
#: target keywords and their defaults (None: every neuron)
TARGET_FIELDS = {"column": None, "layer": None, "cell_type": None, "fraction": 1.0, "neurons": None}
#: numeric fields an ensemble may sweep as "stimulus.<name>.<field>" (every numeric field, and fraction)
SWEEPABLE = ("amplitude", "count", "duration_ms", "fraction", "frequency_hz", "offset", "onset_ms", "period_ms",
             "phase", "rate_hz", "n_sources", "weight")
#: the most independent sources one Poisson stimulus may give each target (draws per target and step)
MAX_SOURCES = 100_000
#: the most onsets one ``trials`` stimulus may list (the step checks each of them)
MAX_ONSETS = 10_000


@dataclasses.dataclass(frozen=True)
class StimulusSpec:
    """One named stimulus: its kind, its numeric values and its targets, as sorted (field, value) pairs."""

    name: str
    kind: str
    values: tuple = ()
    target: tuple = ()

    def value(self, field: str):
        return dict(self.values)[field]

    @property
    def per_member(self) -> bool:
        """An array stimulus with one time course per ensemble member (``per_member=True``)."""
        return bool(dict(self.values).get("per_member", False))

    def table_rows(self) -> int:
        """The time rows this stimulus keeps in the table (an array's values, a Poisson profile; else 0)."""
        rows = self.value("values") if self.kind == "array" else self.value("profile") if self.kind == "poisson" \
            else None
        return 0 if rows is None else rows.shape[1 if self.per_member else 0]

    def targets(self) -> dict:
        return {**TARGET_FIELDS, **dict(self.target)}

    def onsets_ms(self, duration_ms: float) -> tuple:
        """The times (ms) at which this stimulus switches on within a run of ``duration_ms``: every pulse
        of a train, the one onset of the other kinds. What trial-aligned analysis aligns to; a stored
        run carries its configuration (attrs["config_json"]), so
        ``Configuration.from_dict(json.loads(attrs["config_json"]))`` gives them back."""
        v = dict(self.values)
        if self.kind == "trials":
            return tuple(t for t in v["onsets_ms"] if t < duration_ms)
        onset = v["onset_ms"]
        if self.kind != "pulses":
            return (onset,) if onset < duration_ms else ()
        period, count = v["period_ms"], v["count"]
        n = int((duration_ms - onset) // period) + 1 if onset < duration_ms else 0
        n = n if count is None else min(n, count)
        return tuple(t for t in (onset + j * period for j in range(n)) if t < duration_ms)

    def to_dict(self) -> dict:
        """The stimulus as keyword arguments of ``Configuration.stimulus`` (targets left at default omitted)."""
        target = {k: (list(v) if k == "neurons" else v) for k, v in self.target if v != TARGET_FIELDS[k]}
        values = {k: (v.to_dict() if isinstance(v, ArrayValue) else list(v) if k == "onsets_ms" else v)
                  for k, v in self.values}
        return {"kind": self.kind, **values, **target}


def _where(name: str) -> str:
    return f"stimulus[{name!r}]"


def _number(w: str, field: str, value):
    """A stimulus's numeric field, validated (None allowed where it means 'until the end')."""
    if field in ("duration_ms", "count", "sample_ms") and value is None:
        return None
    if field == "values":
        return parse_array(w, field, value, ndims=(1, 2, 3))
    if field == "onsets_ms":
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise bad_value(w, field, value, "a list of onset times in ms is required")
        onsets = tuple(parse_float(w, field, x, minimum=0.0) for x in value)
        if not onsets or len(onsets) > MAX_ONSETS:
            raise bad_value(w, field, list(value), f"between 1 and {MAX_ONSETS} onsets are required")
        if any(b <= a for a, b in zip(onsets, onsets[1:])):
            raise bad_value(w, field, list(value), "the onsets must be strictly increasing")
        return onsets
    if field == "profile":
        return None if value is None else parse_array(w, field, value, ndims=(1,), minimum=0.0)
    if field == "count":
        return parse_int(w, field, value, minimum=1)
    if field in ("onset_ms",):
        return parse_float(w, field, value, minimum=0.0)
    if field in ("duration_ms", "period_ms", "sample_ms"):
        return parse_float(w, field, value, positive=True)
    if field in ("frequency_hz", "rate_hz", "weight"):
        return parse_float(w, field, value, minimum=0.0)
    if field == "n_sources":
        n = parse_int(w, field, value, minimum=1)
        if n > MAX_SOURCES:
            raise bad_value(w, field, value,
                            f"it must be <= {MAX_SOURCES} (each source is one draw per target and step)")
        return n
    if field == "synapse":
        if value not in CELL_TYPES:
            raise bad_value(w, field, value,
                            f"the synapse kind is the source's cell type: one of {', '.join(CELL_TYPES)}")
        return value
    return parse_float(w, field, value)          # amplitude, offset, phase: any finite real


def _target(w: str, field: str, value):
    if field in ("column", "layer", "cell_type") and value is None:
        return None
    if field == "column":
        if not isinstance(value, str) or not value.strip():
            raise bad_value(w, "column", value, "a column name (a non-empty string) or None is required")
        return value
    if field == "layer":
        if value not in LAYER_DEPTHS_UM:
            raise bad_value(w, "layer", value, f"valid layers are {', '.join(LAYER_DEPTHS_UM)} (or None: every layer)")
        return value
    if field == "cell_type":
        if value not in CELL_TYPES:
            raise bad_value(w, "cell_type", value, f"valid cell types are {', '.join(CELL_TYPES)} (or None: both)")
        return value
    if field == "fraction":
        frac = parse_float(w, "fraction", value, minimum=0.0, maximum=1.0)
        if frac == 0.0:
            raise bad_value(w, "fraction", value, "it must be > 0 and <= 1 (a stimulus with no target)")
        return frac
    # neurons
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or isinstance(value, numbers.Number) or not hasattr(value, "__iter__"):
        raise bad_value(w, "neurons", value, "a non-empty list of distinct neuron indices (or None) is required")
    idx = tuple(parse_int(w, "neurons", i, minimum=0) for i in value)
    if not idx or len(set(idx)) != len(idx):
        raise bad_value(w, "neurons", list(value), "a non-empty list of distinct neuron indices is required")
    return tuple(sorted(idx))


def parse_stimulus(current: StimulusSpec | None, name, kind, fields: dict) -> StimulusSpec:
    """The stimulus ``name`` after applying ``kind`` (None: keep) and ``fields`` to ``current`` (None: new).

    A new stimulus, or a change of kind, starts from the kind's defaults and
    needs every required field. Raises ConfigurationError naming the stimulus,
    the field, the value and what is allowed.
    """
    if not isinstance(name, str) or not name.strip():
        raise bad_value("stimulus", "name", name, "a non-empty string is required")
    w = _where(name)
    if kind is None and current is None:
        raise bad_value(w, "kind", None, f"a new stimulus needs its kind: one of {', '.join(STIMULUS_KINDS)}")
    if kind is not None and kind not in STIMULUS_KINDS:
        raise bad_value(w, "kind", kind, f"valid kinds are {', '.join(STIMULUS_KINDS)}")
    kind = current.kind if kind is None else kind
    allowed = STIMULUS_KINDS[kind]
    fresh = current is None or current.kind != kind
    values = dict(allowed) if fresh else dict(current.values)
    target = dict(TARGET_FIELDS) if current is None else current.targets()
    for field, value in fields.items():
        if field in TARGET_FIELDS:
            target[field] = _target(w, field, value)
        elif field in allowed:
            values[field] = _number(w, field, value)
        elif field in OPTIONAL_FIELDS.get(kind, {}):
            values[field] = parse_bool(w, field, value)
        else:
            raise bad_value(w, field, value, f"field {field!r} is unknown for kind {kind!r}; valid fields are "
                            + ", ".join(sorted([*allowed, *OPTIONAL_FIELDS.get(kind, {}), *TARGET_FIELDS])))
    for field, default in OPTIONAL_FIELDS.get(kind, {}).items():
        if values.get(field, default) == default:
            values.pop(field, None)
    missing = [f for f, v in values.items() if v is REQUIRED]
    if missing:
        raise bad_value(w, missing[0], None, f"a {kind!r} stimulus needs {', '.join(missing)}")
    if kind == "pulses" and values["duration_ms"] > values["period_ms"]:
        raise bad_value(w, "duration_ms", values["duration_ms"],
                        f"a pulse must not be longer than the period_ms ({values['period_ms']})")
    if kind == "array":
        per_member = values.get("per_member", False)
        ndim = values["values"].data.ndim
        if ndim == 3 and not per_member or ndim == 1 and per_member:
            raise bad_value(w, "values", values["values"],
                            "(T,) or (T, K) for one time course shared by every member, or with per_member=True "
                            "(members, T) or (members, T, K), one per ensemble member"
                            f" (got {ndim} axes{' and per_member=True' if per_member else ''})")
    if kind == "array" and values["values"].data.ndim == 2 + values.get("per_member", False) \
            and target["fraction"] != 1.0:
        raise bad_value(w, "fraction", target["fraction"], "an array stimulus with one column per target (2-D "
                        "values) needs its targets fixed: fraction 1 (or explicit neurons)")
    if target["neurons"] is not None:
        narrowed = [f for f in ("column", "layer", "cell_type", "fraction") if target[f] != TARGET_FIELDS[f]]
        if narrowed:
            raise bad_value(w, "neurons", list(target["neurons"]),
                            f"explicit neurons cannot be combined with {', '.join(narrowed)}; give one or the other")
    return StimulusSpec(name=name, kind=kind, values=tuple(sorted(values.items())),
                        target=tuple(sorted(target.items())))


def check_stimuli(cfg) -> None:
    """Every stimulus's targets exist in ``cfg`` (columns, layers, indices < n) and select a neuron.

    Raises ConfigurationError naming the stimulus and the target.
    """
    columns = {c.name: c.layers for c in cfg.column_specs}
    for spec in cfg.stimuli_spec:
        w, t = _where(spec.name), spec.targets()
        if t["neurons"] is not None:
            if max(t["neurons"]) >= cfg.n:
                raise bad_value(w, "neurons", list(t["neurons"]), f"indices must be < n={cfg.n}")
            continue
        if t["column"] is not None and t["column"] not in columns:
            raise bad_value(w, "column", t["column"], f"valid columns are {', '.join(map(repr, columns))}")
        layers = columns[t["column"]] if t["column"] is not None else {x for ls in columns.values() for x in ls}
        if t["layer"] is not None and t["layer"] not in layers:
            raise bad_value(w, "layer", t["layer"], f"the targeted column(s) have layers {sorted(layers)}")


def stimuli_from_dict(cfg, data, where: str):
    """Apply a ``to_dict`` "stimuli" section ({name: {kind, fields...}}) to ``cfg``."""
    if not hasattr(data, "items"):
        raise bad_value(where, "stimuli", data, "a mapping of stimulus name -> its fields is required")
    for name, each in data.items():
        if not hasattr(each, "items"):
            raise ConfigurationError(f"{where}: stimuli[{name!r}]={each!r} is invalid; a mapping of fields is required")
        each = dict(each)
        cfg = cfg.stimulus(name, **each)
    return cfg
