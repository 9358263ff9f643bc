"""``construct``: the one place where a configuration becomes arrays and shapes.

Ensembles too: an ensemble configuration is expanded into its members (its
sweep grammar is config/_sweep.py): one configuration per sweep combination,
repeated over the seeds with numpy (``Members``); each member's numbers become
a row of ``Knobs`` and ``build_network`` runs vmapped over the rows. Sizes are
checked before any of it (model/_size.py).
``with_runtime`` is the one place a run's runtime values (duration, dt,
seed) are replaced after construction.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import ConfigurationError, SimulationError
from .._fields import R0_UM, contact_depths_um
from .._validate import parse_steps
from ..config import (CELL_TYPES, DEFAULT_PATHWAYS, PARAMS, Configuration, check_pathways, emitter_rows,
                      layer_slots, synapse_flags)
from ..config import sweep_function
from ._layout import Layout, precision
from ._model import Model
from ._network import Knobs, build_network, delta_scaled, weight_rows
from ._size import check_construct
from ._stimuli import (stimulus_knobs, stimulus_regions, stimulus_table, table_per_member, table_rows,
                       trial_onsets)

def pathway_tables(cfg: Configuration):
    """p, strength and delay (ms) of every [post_group, pre_group] pair.

    group = 2 * slot + type, with one slot per layer of each column (``layer_slots``).
    Within a column: the one-column rules (type-pair strength within a layer,
    DEFAULT_PATHWAYS between layers), then unqualified user pathways, then
    qualified ones ("A:L4.E->A:L2/3.E"). Between columns: nothing unless a
    qualified pathway ("A:L4.E->B:L2/3.E") says so.
    """
    check_pathways(cfg)
    con = cfg.connectivity_spec
    slots = layer_slots(cfg)
    strength = dict(con.strength)
    user = {k: dict(v) for k, v in con.pathways}
    n_g = 2 * len(slots)
    p, g, delay = np.zeros((n_g, n_g)), np.zeros((n_g, n_g)), np.zeros((n_g, n_g))
    for (si, (ca, la, _)), (ti, ta), (sj, (cb, lb, _)), (tj, tb) in itertools.product(
            enumerate(slots), enumerate(CELL_TYPES), enumerate(slots), enumerate(CELL_TYPES)):
        key = f"{la}.{ta}->{lb}.{tb}"
        entry = {"p": con.p, "strength": 0.0, "delay_ms": con.delay_ms}
        if ca == cb:
            if la == lb:
                entry["strength"] = strength[f"{ta}->{tb}"]
            else:
                entry.update(DEFAULT_PATHWAYS.get(key, {}))
            entry.update(user.get(key, {}))
        entry.update(user.get(f"{ca}:{la}.{ta}->{cb}:{lb}.{tb}", {}))
        post, pre = 2 * sj + tj, 2 * si + ti
        p[post, pre], g[post, pre], delay[post, pre] = entry["p"], entry["strength"], entry["delay_ms"]
    return p, g, delay

def probe_sampling(cfg: Configuration):
    """(neuron indices recorded by Vm/source or None, sampling stride in steps)."""
    pr, dt, n = cfg.probes_spec, cfg.runtime_spec.dt_ms, cfg.n
    every = 1 if pr.every_ms is None else parse_steps("probes", "every_ms", pr.every_ms, dt)
    if pr.neurons is None:
        return None, every
    kind, value = pr.neurons
    if kind == "index":
        if max(value) >= n:
            raise ConfigurationError(f"probes: neurons={list(value)} is invalid; indices must be < n={n}")
        return tuple(int(i) for i in value), every
    idx, start = [], 0
    for _, _, n_layer in layer_slots(cfg):
        k = min(value, n_layer)
        idx.extend(range(start, start + k))                          # the first k: E cells
        idx.extend(range(start + n_layer - k, start + n_layer))      # the last k: I cells
        start += n_layer
    return tuple(sorted(set(idx))), every

def delay_classes(cfg: Configuration):
    """(delay steps per class, class index per [post, pre] group pair)."""
    _, _, delay_ms = pathway_tables(cfg)
    steps = np.maximum(1, np.round(delay_ms / cfg.runtime_spec.dt_ms)).astype(int)
    classes = tuple(int(x) for x in np.unique(steps))
    return classes, np.searchsorted(classes, steps)

def member_knobs(cfg: Configuration) -> dict[str, Any]:
    """Numbers of one member as plain numpy values (host side)."""
    rt, con, em, dr = cfg.runtime_spec, cfg.connectivity_spec, cfg.emitter_spec, cfg.drive_spec
    p, g, _ = pathway_tables(cfg)
    rows = emitter_rows(em)
    coeffs = np.zeros((2, 4, 3))
    for ti, ctype in enumerate(CELL_TYPES):
        row = rows[ctype]
        for pi, name in enumerate(PARAMS):
            coeffs[ti, pi] = row[name]
    cur, noi = dict(dr.current), dict(dr.noise)
    stim = stimulus_knobs(cfg)       # a source onto a delta synapse: 1 / dt on its targets (build_network)
    return dict(seed=rt.seed, conn_seed=rt.seed, p=p, g=g, tau_exc_ms=con.tau_exc_ms,
                tau_inh_ms=con.tau_inh_ms, coeffs=coeffs,
                current=np.array([cur[t] for t in CELL_TYPES]),
                noise=np.array([noi[t] for t in CELL_TYPES]), dt_ms=rt.dt_ms,
                reversal=np.array([dict(con.reversal_mv)[t] for t in CELL_TYPES]), **stim)

def cell_assignment(cfg: Configuration) -> np.ndarray:
    """is_exc (N,): within each layer the first round(f_E * n_layer) cells are E."""
    parts = []
    for _, layer, n_layer in layer_slots(cfg):
        f_exc = cfg.cell_types_spec.for_layer(layer)["E"]
        n_exc = int(np.floor(f_exc * n_layer + 0.5))
        parts.append(np.arange(n_layer) < n_exc)
    return np.concatenate(parts)

def layer_index(cfg: Configuration) -> np.ndarray:
    """(N,) layer slot of each neuron (a slot is one layer of one column)."""
    slots = layer_slots(cfg)
    return np.repeat(np.arange(len(slots)), [n for _, _, n in slots])

def column_index(cfg: Configuration) -> np.ndarray:
    """(N,) column (index) of each neuron."""
    return np.repeat(np.arange(len(cfg.column_specs)), [c.n for c in cfg.column_specs])

def contact_depths(cfg: Configuration) -> np.ndarray:
    """(columns, contacts) contact depths: each column's own axis, from its top."""
    pr, out = cfg.probes_spec, []
    for col in cfg.column_specs:
        ranges = [col.depth_range(lay) for lay in col.layers]
        top, bottom = min(r[0] for r in ranges), max(r[1] for r in ranges)
        if pr.contact_spacing_um is None:
            out.append(contact_depths_um(top, bottom, pr.contacts))
        else:
            out.append(top + pr.contact_spacing_um * np.arange(pr.contacts))
    return np.stack(out)

def construct(cfg: Configuration) -> Model:
    """Turn a configuration into a Model (arrays on the default device).

    Sizes are checked first (model/_size.py): a configuration that no run can
    have, or whose construction does not fit in memory, is refused before an
    ensemble is expanded or an array is made.
    """
    if not isinstance(cfg, Configuration):
        raise ConfigurationError(f"construct: cfg={type(cfg).__name__} is invalid; a jaxfne.Configuration is required")
    check_construct(cfg, make_layout(cfg))
    if cfg.ensemble_spec is not None:
        return construct_ensemble(cfg)
    members = [cfg]
    return _construct_members(cfg, members, member_coords={"seed": np.array([cfg.runtime_spec.seed])},
                              ensemble=False)

@functools.lru_cache(maxsize=32)
def _builder(dtype: str, n_classes: int, column_sizes: tuple, options: tuple = ()):
    """The jitted, member-vmapped network builder (compiled once per shape and ``build_options``)."""
    return jax.jit(jax.vmap(functools.partial(build_network, dtype=jnp.dtype(dtype), r0_um=R0_UM,
                                              n_classes=n_classes, column_sizes=column_sizes, **dict(options)),
                            in_axes=(0, 0, None, None, None, None, None, None, None, None, None, None, None)))


def build_options(cfg: Configuration, layout: Layout) -> tuple:
    """The static options of ``build_network`` for ``cfg`` (sorted pairs: a cache key)."""
    con = cfg.connectivity_spec
    return tuple(sorted({"rule": con.rule, "autapses": con.autapses,
                         "delta": synapse_flags(con.synapse, "delta"),
                         "noise_hold": layout.noise_hold_steps, "random_weights": con.weights is None}.items()))


def user_weights(cfg: Configuration, is_exc: np.ndarray, class_table: np.ndarray, n_classes: int, dtype):
    """The user's W[post, pre] as the step's weight rows, its signs checked: one copy for every member, or
    (weights of shape (members, N, N)) one per member, with a leading member axis.

    ``is_exc`` (members, N): a column of an E cell must be >= 0, of an I cell <= 0 in every member; the
    magnitudes are stored (the sign comes from the presynaptic type), divided by dt_ms for a delta synapse.
    Raises ConfigurationError naming the weight, its value and its presynaptic type.
    """
    con, n = cfg.connectivity_spec, cfg.n
    matrix = con.weights.data
    n_members = is_exc.shape[0]
    per_member = matrix.ndim == 3
    want = (n_members, n, n) if per_member else (n, n)
    if matrix.shape != want:
        what = f"one ({n}, {n}) matrix per member ({n_members} members)" if per_member else \
            f"an ({n}, {n}) matrix W[post, pre]"
        raise ConfigurationError(f"connectivity: weights of shape {matrix.shape} is invalid; the network has "
                                 f"{n} neurons, so {what} is required")
    matrices = matrix if per_member else matrix[None]
    for m in range(n_members if per_member else 1):
        for exc in (is_exc[m:m + 1] if per_member else np.unique(is_exc, axis=0)):
            one = matrices[m]
            wrong = np.where(exc[None, :], one < 0.0, one > 0.0)
            if wrong.any():
                post, pre = (int(i) for i in np.argwhere(wrong)[0])
                kind = "E" if exc[pre] else "I"
                where = f"weights[{m}, {post}, {pre}]" if per_member else f"weights[{post}, {pre}]"
                raise ConfigurationError(
                    f"connectivity: {where}={float(one[post, pre])!r} is invalid; neuron {pre} is an "
                    f"{kind} cell{f' in member {m}' if per_member else ''}, so its outgoing weights (column "
                    f"{pre}) must be {'>= 0' if kind == 'E' else '<= 0'} (the sign of a weight is its "
                    "presynaptic type's)")
    layer = layer_index(cfg)
    rows = []
    for m in range(len(matrices)):
        exc = is_exc[m]
        w = delta_scaled(jnp.asarray(np.abs(matrices[m]), dtype), jnp.asarray(exc),
                         synapse_flags(con.synapse, "delta"), jnp.asarray(cfg.runtime_spec.dt_ms, dtype))
        group = 2 * layer + np.where(exc, 0, 1)
        rows.append(weight_rows(jnp.asarray(w, dtype), jnp.asarray(class_table)[group[:, None], group[None, :]],
                                n_classes, dtype))
    return jnp.stack(rows) if per_member else rows[0]

def make_layout(cfg: Configuration) -> Layout:
    """The static layout of ``cfg``: every shape, from plain numbers (no arrays of the network's size)."""
    rt, pr = cfg.runtime_spec, cfg.probes_spec
    slots = layer_slots(cfg)
    columns = tuple(c.name for c in cfg.column_specs)
    contact_z = contact_depths(cfg).reshape(-1)                   # (columns * contacts,)
    steps, _ = delay_classes(cfg)
    sample_neurons, sample_every = probe_sampling(cfg)
    hold = 1 if cfg.drive_spec.noise_hold_ms is None else parse_steps(
        "drive", "noise_hold_ms", cfg.drive_spec.noise_hold_ms, rt.dt_ms)
    return Layout(n=cfg.n, layers=tuple(lay for _, lay, _ in slots), n_per_layer=tuple(n for _, _, n in slots),
                  contacts=int(contact_z.size),
                  contact_z_um=tuple(float(z) for z in contact_z), probes=pr.names, dtype=rt.dtype,
                  n_steps=parse_steps("construct", "duration_ms", rt.duration_ms, rt.dt_ms), dt_ms=rt.dt_ms,
                  shared_weights=cfg.connectivity_spec.shared or (cfg.connectivity_spec.weights is not None
                                                                  and cfg.connectivity_spec.weights.data.ndim == 2),
                  user_weights=cfg.connectivity_spec.weights is not None, delay_steps=steps,
                  sample_neurons=sample_neurons, sample_every=sample_every, columns=columns,
                  slot_column=tuple(columns.index(c) for c, _, _ in slots), n_stimuli=len(cfg.stimuli_spec),
                  stim_table_rows=table_rows(cfg), stim_table_per_member=table_per_member(cfg), integrator=rt.integrator, noise_hold_steps=hold,
                  conductance=synapse_flags(cfg.connectivity_spec.synapse, "conductance"),
                  trial_onsets=trial_onsets(cfg),
                  poisson_profiles=any(s.kind == "poisson" and s.value("profile") is not None
                                       for s in cfg.stimuli_spec))


@dataclasses.dataclass(frozen=True, eq=False)
class Members(Sequence):
    """The members of a run without a Configuration per member.

    ``combos``: one configuration per distinct sweep combination (its own
    runtime seed is not used); ``combo`` (members,): the combination of each
    member; ``seeds`` (members,): the seed of each member. Member i is
    ``combos[combo[i]].runtime(seed=seeds[i])``; indexing builds that
    configuration on demand, so a million members cost three arrays, not a
    million configurations.
    """

    combos: tuple
    combo: np.ndarray
    seeds: np.ndarray

    @classmethod
    def of(cls, configs) -> "Members":
        """Members from a list of member configurations (each its own combination)."""
        configs = tuple(configs)
        return cls(configs, np.arange(len(configs)), np.asarray([c.runtime_spec.seed for c in configs]))

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self.combos[int(self.combo[i])].runtime(seed=int(self.seeds[i]))


def member_tables(cfg: Configuration, members) -> tuple:
    """({knob: (members, ...) numpy array}, is_exc (members, N)) of ``members`` (a Members or a list).

    Computed once per combination and repeated over the members with numpy:
    equal, value for value, to stacking ``member_knobs`` and ``cell_assignment``
    of every member (only the seeds differ between the members of a combination).
    """
    if not isinstance(members, Members):
        members = Members.of(members)
    per_combo = [member_knobs(c) for c in members.combos]
    knobs = {k: np.stack([kn[k] for kn in per_combo])[members.combo]
             for k in Knobs._fields if k not in ("seed", "conn_seed")}
    knobs["seed"] = np.asarray(members.seeds)
    knobs["conn_seed"] = (np.full(len(members), cfg.runtime_spec.seed) if cfg.connectivity_spec.shared
                          else knobs["seed"])
    is_exc = np.stack([cell_assignment(c) for c in members.combos])[members.combo]
    return knobs, is_exc


def _construct_members(cfg: Configuration, members, member_coords: dict, ensemble: bool) -> Model:
    """Build the model of ``members`` (a Members, or a list of member configurations) of ``cfg``."""
    rt = cfg.runtime_spec
    layout = make_layout(cfg)
    slots = layer_slots(cfg)
    columns = layout.columns
    contact_z = np.asarray(layout.contact_z_um)
    contact_col = np.repeat(np.arange(len(columns)), cfg.probes_spec.contacts)
    _, class_table = delay_classes(cfg)
    lidx = layer_index(cfg)
    ranges = [cfg.column_specs[columns.index(c)].depth_range(lay) for c, lay, _ in slots]
    depth_lo = np.array([ranges[i][0] for i in lidx])
    depth_hi = np.array([ranges[i][1] for i in lidx])
    knobs_np, is_exc = member_tables(cfg, members)
    with precision(rt.dtype):
        dtype = jnp.dtype(rt.dtype)
        knobs = Knobs(**{k: jnp.asarray(knobs_np[k], dtype=(jnp.uint32 if k in ("seed", "conn_seed", "stim_steps",
                                                                                "stim_onsets")
                                                           else dtype))
                         for k in Knobs._fields})
        stim_region, stim_type, stim_tag = stimulus_regions(cfg, lidx, column_index(cfg))
        table = stimulus_table(cfg, stim_region, stim_type, is_exc)
        neuron_values, neuron_mask = per_neuron_values(cfg)
        w_user = (None if cfg.connectivity_spec.weights is None else
                  user_weights(cfg, is_exc, class_table, len(layout.delay_steps), dtype))
        build = _builder(str(dtype), len(layout.delay_steps), tuple(c.n for c in cfg.column_specs),
                         build_options(cfg, layout))
        params, depth, r = build(knobs, jnp.asarray(is_exc), jnp.asarray(lidx), jnp.asarray(depth_lo, dtype),
                              jnp.asarray(depth_hi, dtype), jnp.asarray(contact_z, dtype),
                              jnp.asarray(contact_col), jnp.asarray(class_table), jnp.asarray(stim_region),
                              jnp.asarray(stim_type), jnp.asarray(stim_tag),
                              None if neuron_values is None else jnp.asarray(neuron_values, dtype),
                              None if neuron_mask is None else jnp.asarray(neuron_mask))
        params = params._replace(stim_table=jnp.asarray(table, dtype))
        if w_user is not None:            # the user's matrix, one copy for every member
            params = params._replace(w=w_user)
        elif cfg.connectivity_spec.shared:  # one weight matrix for every member
            params = params._replace(w=params.w[0])
    cell_type = np.where(is_exc, "E", "I")
    neuron_coords = {"cell_type": cell_type, "layer": np.asarray(layout.layers)[lidx],
                     "column": np.asarray(columns)[column_index(cfg)], "depth_um": np.asarray(depth)}
    return Model(config=cfg, layout=layout, params=params, neuron_coords=neuron_coords,
                 member_coords=member_coords, ensemble=ensemble, r=np.asarray(r))


def expand_members(cfg):
    """(members, member coordinates) of an ensemble configuration.

    ``members`` is a :class:`Members`: one configuration per sweep
    combination, repeated over the seeds with numpy (the seed varies fastest);
    ``members[i]`` is member i's configuration. The coordinates are numpy
    arrays, one per swept path and ``seed``.
    """
    spec = cfg.ensemble_spec
    base = cfg.__class__(**{f: getattr(cfg, f) for f in cfg.__dataclass_fields__ if f != "ensemble_spec"})
    paths = [p for p, _ in spec.sweep]
    lists = [v for _, v in spec.sweep]
    values = list(itertools.product(*lists)) if spec.mode == "grid" else list(zip(*lists)) if lists else [()]
    combos = []
    for combo in values:
        member = base
        for path, value in zip(paths, combo):
            member = sweep_function(path)(member, value)
        combos.append(member)
    seeds = np.asarray(spec.seeds)
    n_seeds = len(seeds)
    members = Members(tuple(combos), np.repeat(np.arange(len(combos)), n_seeds), np.tile(seeds, len(combos)))
    coords = {"seed": members.seeds.copy()}
    for j, path in enumerate(paths):
        coords[path] = np.repeat(np.asarray([combo[j] for combo in values]), n_seeds)
    return members, coords

def construct_ensemble(cfg):
    members, coords = expand_members(cfg)
    return _construct_members(cfg, members, member_coords=coords, ensemble=True)


def with_runtime(model: Model, duration_ms=None, dt_ms=None, seed=None) -> Model:
    """Apply simulate()'s runtime overrides by constructing again when they differ."""
    rt = model.config.runtime_spec
    changes = {k: v for k, v in (("duration_ms", duration_ms), ("dt_ms", dt_ms), ("seed", seed))
               if v is not None and v != getattr(rt, k)}
    if not changes:
        return model
    if model.ensemble and "seed" in changes:
        raise SimulationError("simulate: seed= cannot override the seeds of an ensemble; set them in ensemble(seeds=...)")
    cfg = model.config.runtime(**changes)
    return construct(cfg)


def per_neuron_values(cfg: Configuration):
    """((4, N) values, (4,) mask) of ``set_emitter(per_neuron=...)`` in PARAMS order, or (None, None).

    Raises ConfigurationError when an array's length is not the network's N.
    """
    arrays = dict(cfg.emitter_spec.per_neuron)
    if not arrays:
        return None, None
    n = cfg.n
    values, mask = np.zeros((len(PARAMS), n)), np.zeros(len(PARAMS), bool)
    for i, name in enumerate(PARAMS):
        if name in arrays:
            data = arrays[name].data
            if data.shape != (n,):
                raise ConfigurationError(f"set_emitter: per_neuron[{name!r}] of shape {data.shape} is invalid; "
                                         f"one value per neuron, shape ({n},), is required")
            values[i], mask[i] = data, True
    return values, mask
