"""Stimuli as arrays: the host-side tables of a configuration's stimuli and the per-member target draw.

Each stimulus (config/_stimuli.py, sorted by name) becomes one row of three
parameter arrays (model/_params.py): ``stim_target`` (S, N), 1 on its
targets; ``stim_steps`` (S, 7) uint32, its timing in whole steps (onset,
active span, period, on-width; ``UNBOUNDED`` for none), then for a Poisson
source its draw threshold, its number of sources and the tag of its random
stream; and ``stim_wave`` (S, 5), its waveform (amplitude or weight, offset,
omega in radians per step, phase, and its kind code ``KIND_CODES``). All are
per-member values, so a sweep of any numeric field changes arrays, never the
program (the number of Poisson sources too: the draws run in a loop whose
trip count is data). The engines compute, at global step t and with
k = t - onset (uint32)::

    on    = t >= onset and k < span and k % period < width
    value = on * (sine ? amplitude * sin(omega * k + phase) + offset : amplitude)   (0 for Poisson)
    I_stim[i] = sum over s, in name order, of stim_target[s, i] * value[s]

and add ``I_stim`` to the rest of the step's input current last. A ``trials`` stimulus keeps its onsets
(in steps) in ``stim_onsets`` (S, O), padded with UNBOUNDED, and is on at step t when
``onset_j <= t < onset_j + width`` for some j. An array stimulus
(kind code 4) has its rows in the shared table ``stim_table`` (R, N), starting at
row ``first`` (stim_steps's n_sources column) and held ``hold`` steps each
(its threshold column); its value at step t is ``amplitude * stim_table[first + k // hold]``
while ``k < span = rows * hold``. A Poisson
source draws, for each target i and source j < n_sources, the 32-bit hash

    w = mix(mix(key0 ^ t) + key1); h = mix(mix(mix(w ^ tag) ^ c_i) + j * 0x9E3779B9)

(``mix`` the lowbias32 hash of the noise, c_i = mix(2 i + 1), ``key`` the
member's ``stim_key`` stream) and counts a spike when h >> 8 < threshold,
threshold = round(rate_hz dt_ms / 1000 * 2^24): integer arithmetic, so the
count is Binomial(n_sources, threshold / 2^24) and the same bits on every
engine and layout. ``on * weight * count`` joins the excitatory or inhibitory
synaptic current after this step's recurrent input, in name order.
"""

from __future__ import annotations

import math
import zlib

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import ConfigurationError
from .._validate import parse_steps
from ..config._stimuli import check_stimuli

#: a timing field without a bound (a step to the end of the run, an endless train)
UNBOUNDED = 2**32 - 1
#: fold_in tags of the stimulus target draws and of the Poisson spike draws (model/_network.py holds the others)
TAG_STIMULUS = 5
TAG_STIMULUS_SPIKES = 6
#: the code of each kind in stim_wave[:, 4]
KIND_CODES = {"step": 0.0, "pulses": 0.0, "trials": 0.0, "sine": 1.0, "poisson_E": 2.0, "poisson_I": 3.0, "array": 4.0}
#: columns of stim_steps
STEP_COLUMNS = ("onset", "span", "period", "width", "threshold", "n_sources", "tag")


def _steps(where, field, value_ms, dt_ms, minimum=1) -> int:
    return UNBOUNDED if value_ms is None else min(parse_steps(where, field, value_ms, dt_ms, minimum=minimum),
                                                  UNBOUNDED)


def stimulus_knobs(cfg) -> dict:
    """The per-member numbers of ``cfg``'s stimuli (numpy): timing (S, 4), waveform (S, 5), fraction (S,).

    Raises ConfigurationError (a StepsError for times that are not whole steps of dt_ms) naming the
    stimulus and the field.
    """
    check_stimuli(cfg)
    dt = cfg.runtime_spec.dt_ms
    steps, wave, fraction = [], [], []
    first_row = 0
    onsets = np.full((len(cfg.stimuli_spec), trial_onsets(cfg)), UNBOUNDED, np.uint32)
    for s, spec in enumerate(cfg.stimuli_spec):
        w, v = f"stimulus[{spec.name!r}]", dict(spec.values)
        if spec.kind == "trials":       # its onsets in the (S, O) table; the gate checks each of them
            listed = [_steps(w, "onsets_ms", t, dt, minimum=0) for t in v["onsets_ms"]]
            onsets[s, :len(listed)] = listed
            steps.append((listed[0], UNBOUNDED, UNBOUNDED, _steps(w, "duration_ms", v["duration_ms"], dt), 0, 0,
                          zlib.crc32(spec.name.encode())))
            wave.append((v["amplitude"], 0.0, 0.0, 0.0, KIND_CODES["trials"]))
            fraction.append(spec.targets()["fraction"])
            continue
        onset = _steps(w, "onset_ms", v["onset_ms"], dt, minimum=0)
        if spec.kind == "array":
            hold = 1 if v["sample_ms"] is None else _steps(w, "sample_ms", v["sample_ms"], dt)
            rows = spec.table_rows()
            steps.append((onset, min(rows * hold, UNBOUNDED), UNBOUNDED, UNBOUNDED, hold, first_row,
                          zlib.crc32(spec.name.encode())))
            wave.append((v["amplitude"], 0.0, 0.0, 0.0, KIND_CODES["array"]))
            fraction.append(spec.targets()["fraction"])
            first_row += rows
            continue
        profile_rows = profile_hold = 0
        if spec.kind == "poisson" and v["profile"] is not None:      # inhomogeneous: the profile sets the span
            profile_hold = 1 if v["sample_ms"] is None else _steps(w, "sample_ms", v["sample_ms"], dt)
            profile_rows = spec.table_rows()
            v = {**v, "duration_ms": profile_rows * profile_hold * dt}
        if spec.kind == "pulses":
            width = _steps(w, "duration_ms", v["duration_ms"], dt)
            period = _steps(w, "period_ms", v["period_ms"], dt)
            span = UNBOUNDED if v["count"] is None else min(v["count"] * period, UNBOUNDED)
        else:
            width = period = UNBOUNDED
            span = _steps(w, "duration_ms", v["duration_ms"], dt)
        sine = spec.kind == "sine"
        omega = 2.0 * math.pi * v["frequency_hz"] * dt / 1000.0 if sine else 0.0
        threshold = n_sources = 0
        if spec.kind == "poisson":
            peak = 1.0 if v["profile"] is None else float(v["profile"].data.max())
            p = v["rate_hz"] * peak * dt / 1000.0
            if p > 1.0:
                raise ConfigurationError(f"{w}: rate_hz={v['rate_hz']!r} is invalid; one source fires at most once "
                                         f"a step, so rate_hz * dt_ms / 1000 (times the profile's largest factor, "
                                         f"{peak:g}) must be <= 1 (dt_ms={dt})")
            p = v["rate_hz"] * dt / 1000.0
            threshold, n_sources = int(round(p * 2**24)), v["n_sources"]
        code = KIND_CODES[f"poisson_{v['synapse']}" if spec.kind == "poisson" else spec.kind]
        steps.append((onset, span, period, width, threshold, n_sources, zlib.crc32(spec.name.encode())))
        if spec.kind == "poisson":      # columns 1 and 2: a profile's first table row and steps per row (0: none)
            wave.append((v["weight"], float(first_row), float(profile_hold), 0.0, code))
            first_row += profile_rows
        else:
            wave.append((v["amplitude"], v.get("offset", 0.0), omega, v.get("phase", 0.0), code))
        fraction.append(spec.targets()["fraction"])
    return {"stim_steps": np.asarray(steps, np.uint32).reshape(-1, len(STEP_COLUMNS)),
            "stim_wave": np.asarray(wave, np.float64).reshape(-1, 5),
            "stim_fraction": np.asarray(fraction, np.float64), "stim_onsets": onsets}


def trial_onsets(cfg) -> int:
    """O: the most onsets a ``trials`` stimulus of ``cfg`` lists (0 without trials)."""
    return max((len(s.value("onsets_ms")) for s in cfg.stimuli_spec if s.kind == "trials"), default=0)


def stimulus_regions(cfg, slot_of_neuron: np.ndarray, column_of_neuron: np.ndarray):
    """Static target candidates shared by all members: (region (S, N) bool, cell type (S,) int: 0 any,
    1 E, 2 I, tag (S,) uint32: the key of each stimulus's own random stream, from its name)."""
    slots = [(c.name, lay) for c in cfg.column_specs for lay in c.layers]
    columns = [c.name for c in cfg.column_specs]
    n = cfg.n
    region, ctype, tags = [], [], []
    for spec in cfg.stimuli_spec:
        t = spec.targets()
        if t["neurons"] is not None:
            mask = np.zeros(n, bool)
            mask[list(t["neurons"])] = True
        else:
            mask = np.ones(n, bool)
            if t["column"] is not None:
                mask &= column_of_neuron == columns.index(t["column"])
            if t["layer"] is not None:
                mask &= np.isin(slot_of_neuron, [i for i, (_, lay) in enumerate(slots) if lay == t["layer"]])
        region.append(mask)
        ctype.append({None: 0, "E": 1, "I": 2}[t["cell_type"]])
        tags.append(zlib.crc32(spec.name.encode()))
    return (np.asarray(region, bool).reshape(-1, n), np.asarray(ctype, np.int32),
            np.asarray(tags, np.uint32))


def stimulus_targets(key, is_exc, region, cell_type, tags, fraction, dtype):
    """(S, N) targets of one network: 1.0 on the chosen neurons, 0.0 elsewhere.

    Among the candidates of stimulus s (its region, of its cell type) exactly
    round(fraction * candidates) are chosen (half up), those with the smallest
    uniform draws of the stream fold_in(fold_in(key, TAG_STIMULUS), tag): a
    function of the member's seed and the stimulus's name only, so neither the
    batch, the devices nor the other stimuli change a member's targets.
    """
    n_stim, n = region.shape
    if n_stim == 0:
        return jnp.zeros((0, n), dtype)
    skey = jax.random.fold_in(key, TAG_STIMULUS)
    rows = []
    for s in range(n_stim):
        cand = region[s] & ((cell_type[s] == 0) | ((cell_type[s] == 1) & is_exc) | ((cell_type[s] == 2) & ~is_exc))
        draw = jax.random.uniform(jax.random.fold_in(skey, tags[s]), (n,), dtype=jnp.float32)
        k = jnp.floor(fraction[s] * jnp.sum(cand).astype(fraction.dtype) + 0.5).astype(jnp.int32)
        rank = jnp.argsort(jnp.argsort(jnp.where(cand, draw, 2.0), stable=True), stable=True)
        rows.append((cand & (rank < k)).astype(dtype))
    return jnp.stack(rows)



def _table_values(spec):
    """The rows a stimulus keeps in the shared table: an array stimulus's values, a Poisson profile, or None."""
    if spec.kind == "array":
        return spec.value("values")
    if spec.kind == "poisson":
        return spec.value("profile")
    return None


def table_rows(cfg) -> int:
    """R: the rows of the table (array stimuli's values and Poisson profiles, in name order)."""
    return sum(spec.table_rows() for spec in cfg.stimuli_spec)


def table_per_member(cfg) -> bool:
    """Whether the table has a member axis: some array stimulus gives each member its own values."""
    return any(spec.kind == "array" and spec.per_member for spec in cfg.stimuli_spec)


def stimulus_table(cfg, region: np.ndarray, cell_type: np.ndarray, is_exc: np.ndarray) -> np.ndarray:
    """The (R, N) table of the array stimuli and Poisson profiles (float64), stimulus by stimulus in name
    order; (members, R, N) when some array stimulus has ``per_member=True`` (the others' rows repeated).

    Values (T,) give every neuron the same row value (the targets' mask selects them in the step);
    values (T, K) put column j on the j-th target in ascending neuron index, which must be the same
    neurons in every member (``is_exc`` (members, N)): K must equal the number of targets. Per member,
    the values have a leading axis of one entry per member. Raises ConfigurationError naming the
    stimulus and the shape otherwise.
    """
    n, n_members = cfg.n, is_exc.shape[0]
    per_member = table_per_member(cfg)
    parts = []
    for s, spec in enumerate(cfg.stimuli_spec):
        if _table_values(spec) is None:
            continue
        values = _table_values(spec).data
        if spec.per_member and values.shape[0] != n_members:
            raise ConfigurationError(
                f"stimulus[{spec.name!r}]: values of shape {values.shape} is invalid; per_member=True needs one "
                f"entry per ensemble member along the first axis, and the run has {n_members} member(s)")
        columns = values.ndim - spec.per_member == 2           # one column per target
        rows = values if spec.per_member else values[None]     # (members or 1, T[, K])
        if not columns:
            table = np.repeat(rows[:, :, None], n, axis=2)
        else:
            kind = cell_type[s]
            cand = region[s][None, :] & ((kind == 0) | ((kind == 1) & is_exc) | ((kind == 2) & ~is_exc))
            if not (cand == cand[:1]).all():
                raise ConfigurationError(
                    f"stimulus[{spec.name!r}]: values of shape {values.shape} give one column per target, but "
                    "the members have different targets (a cell_types sweep changes which cells are E or I); "
                    "choose the targets with neurons=[...] or give one time course per row")
            idx = np.flatnonzero(cand[0])
            if rows.shape[2] != idx.size:
                raise ConfigurationError(
                    f"stimulus[{spec.name!r}]: values of shape {values.shape} is invalid; it has {rows.shape[2]} "
                    f"columns but the stimulus has {idx.size} targets (one column per target, in ascending "
                    "neuron index, or one time course for all)")
            table = np.zeros(rows.shape[:2] + (n,))
            table[:, :, idx] = rows
        parts.append(np.broadcast_to(table, (n_members,) + table.shape[1:]) if per_member else table[0])
    if not parts:
        return np.zeros((n_members, 0, n) if per_member else (0, n))
    return np.concatenate(parts, axis=-2)
