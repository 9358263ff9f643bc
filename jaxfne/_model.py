"""``construct``: the one place where a configuration becomes arrays and shapes."""

from __future__ import annotations

import contextlib
import functools
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import itertools

from ._config import CELL_TYPES, DEFAULT_PATHWAYS, Configuration, layer_slots, parse_pathway_key
from ._errors import ConfigurationError
from ._fields import R0_UM, contact_depths_um
from ._network import Knobs, NetParams, build_network
from ._presets import PARAMS, get_preset


def precision(dtype: str):
    """Context in which ``dtype`` really is available (float64 needs x64)."""
    if dtype == "float64":
        enable = getattr(jax, "enable_x64", None)
        if enable is None:  # pragma: no cover - very old or very new JAX
            if not jax.config.jax_enable_x64:
                raise ConfigurationError(
                    "runtime: dtype='float64' needs 64-bit JAX; set JAX_ENABLE_X64=1 before starting Python")
            return contextlib.nullcontext()
        return enable(True)
    return contextlib.nullcontext()


@dataclasses.dataclass(frozen=True)
class Layout:
    """Everything that fixes a shape: static, shared by all members."""

    n: int
    #: layer of each layer slot (every layer of every column, in neuron order)
    layers: tuple
    n_per_layer: tuple
    #: all contacts of all columns (``contacts_per_column`` per column, column by column)
    contacts: int
    contact_z_um: tuple
    probes: tuple
    dtype: str
    n_steps: int
    dt_ms: float
    shared_weights: bool = False
    #: delay of each delay class in steps (ascending); (1,) when every pathway acts next step
    delay_steps: tuple = (1,)

    #: global indices of the neurons Vm and source record (None: all)
    sample_neurons: tuple | None = None
    #: Vm, source and the field proxies are sampled every this many steps
    sample_every: int = 1
    #: column names, and the column (index) of each layer slot
    columns: tuple = ("column",)
    slot_column: tuple = (0,)

    def geometry(self, probe: str) -> dict:
        """Shape and dims of a probe's recording: time axis, its stride, last axis."""
        field = probe in ("LFP-proxy", "CSD-proxy")
        stride = 1 if probe == "SPK" else self.sample_every
        if probe in ("SPK", "LFP-proxy", "CSD-proxy") or self.sample_neurons is None:
            last_dim, n_last = ("contact", self.contacts) if field else ("neuron", self.n)
        else:
            last_dim, n_last = "neuron_sampled", len(self.sample_neurons)
        return {"time_dim": "time" if stride == 1 else "time_sampled", "stride": stride,
                "n_time": -(-self.n_steps // stride), "last_dim": last_dim, "n_last": n_last}

    def step_bytes(self, probe: str) -> float:
        """Bytes one member's recording of ``probe`` takes per simulated step (SPK: one byte a neuron)."""
        geo = self.geometry(probe)
        item = 1 if probe == "SPK" else (8 if self.dtype == "float64" else 4)
        return item * geo["n_last"] / geo["stride"]

    @property
    def delay_slots(self) -> int:
        """Ring-buffer slots of delayed input (0 when nothing is delayed beyond one step)."""
        return 0 if self.delay_steps == (1,) else max(self.delay_steps)

    @property
    def contacts_per_column(self) -> int:
        return self.contacts // len(self.columns)

    @property
    def contact_spacing_um(self):
        """The contact spacing: a float for one column, a tuple (one per column) for several.

        ``csd_proxy`` takes either: with a tuple it splits the contacts into
        that many equal blocks, one column each.
        """
        k = self.contacts_per_column
        spacings = tuple((z[-1] - z[0]) / (k - 1) for z in
                         (self.contact_z_um[c * k:(c + 1) * k] for c in range(len(self.columns))))
        return spacings[0] if len(spacings) == 1 else spacings


def check_pathways(cfg: Configuration, keys=None) -> None:
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
    every = 1
    if pr.every_ms is not None:
        ratio = pr.every_ms / dt
        if abs(ratio - round(ratio)) > 1e-6 * max(1.0, ratio) or round(ratio) < 1:
            raise ConfigurationError(f"probes: every_ms={pr.every_ms} is invalid; it must be a whole number "
                                     f"of time steps of dt_ms={dt}")
        every = int(round(ratio))
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
    presets = dict(em.preset)
    coeffs = np.zeros((2, 4, 3))
    for ti, ctype in enumerate(CELL_TYPES):
        row = get_preset(presets[ctype]).row(ctype)
        for pi, name in enumerate(PARAMS):
            coeffs[ti, pi] = row[name]
    cur, noi = dict(dr.current), dict(dr.noise)
    return dict(seed=rt.seed, conn_seed=rt.seed, p=p, g=g, tau_exc_ms=con.tau_exc_ms,
                tau_inh_ms=con.tau_inh_ms, coeffs=coeffs,
                current=np.array([cur[t] for t in CELL_TYPES]),
                noise=np.array([noi[t] for t in CELL_TYPES]), dt_ms=rt.dt_ms)


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


@dataclasses.dataclass(frozen=True, eq=False)
class Model:
    """A constructed model: the configuration, its static layout and its arrays.

    ``params`` holds every per-member array with a leading member axis;
    ``neuron_coords`` the per-neuron labels (cell type, layer, depth) and
    ``member_coords`` the per-member labels (seed and swept values).
    """

    config: Configuration
    layout: Layout
    params: NetParams
    neuron_coords: dict
    member_coords: dict
    ensemble: bool = False

    @property
    def n_members(self) -> int:
        return int(self.params.a.shape[0])

    def compute_readout(self, signals, specs):
        from ._readout import compute_readout
        return compute_readout(signals, specs)

    def manifest(self, signals=None, readouts=None):
        from ._manifest import manifest
        return manifest(self, signals=signals, readouts=readouts)

    def health(self, signals):
        from ._health import check_health
        return check_health(signals)


def construct(cfg: Configuration) -> Model:
    """Turn a configuration into a Model (arrays on the default device)."""
    if not isinstance(cfg, Configuration):
        raise ConfigurationError(f"construct: cfg={type(cfg).__name__} is invalid; a jaxfne.Configuration is required")
    if cfg.ensemble_spec is not None:
        from ._ensemble import construct_ensemble
        return construct_ensemble(cfg)
    members = [cfg]
    return _construct_members(cfg, members, member_coords={"seed": np.array([cfg.runtime_spec.seed])},
                              ensemble=False)


@functools.lru_cache(maxsize=32)
def _builder(dtype: str, n_classes: int, column_sizes: tuple):
    """The jitted, member-vmapped network builder (compiled once per shape)."""
    return jax.jit(jax.vmap(functools.partial(build_network, dtype=jnp.dtype(dtype), r0_um=R0_UM,
                                              n_classes=n_classes, column_sizes=column_sizes),
                            in_axes=(0, 0, None, None, None, None, None, None)))


def _construct_members(cfg: Configuration, members: list, member_coords: dict, ensemble: bool) -> Model:
    rt, pr = cfg.runtime_spec, cfg.probes_spec
    slots = layer_slots(cfg)
    columns = tuple(c.name for c in cfg.column_specs)
    contact_z = contact_depths(cfg)                               # (columns, contacts)
    contact_col = np.repeat(np.arange(len(columns)), pr.contacts)
    contact_z = contact_z.reshape(-1)
    steps, class_table = delay_classes(cfg)
    sample_neurons, sample_every = probe_sampling(cfg)
    layout = Layout(n=cfg.n, layers=tuple(lay for _, lay, _ in slots), n_per_layer=tuple(n for _, _, n in slots),
                    contacts=int(contact_z.size),
                    contact_z_um=tuple(float(z) for z in contact_z), probes=pr.names, dtype=rt.dtype,
                    n_steps=int(round(rt.duration_ms / rt.dt_ms)), dt_ms=rt.dt_ms,
                    shared_weights=cfg.connectivity_spec.shared, delay_steps=steps,
                    sample_neurons=sample_neurons, sample_every=sample_every, columns=columns,
                    slot_column=tuple(columns.index(c) for c, _, _ in slots))
    lidx = layer_index(cfg)
    ranges = [cfg.column_specs[columns.index(c)].depth_range(lay) for c, lay, _ in slots]
    depth_lo = np.array([ranges[i][0] for i in lidx])
    depth_hi = np.array([ranges[i][1] for i in lidx])
    is_exc = np.stack([cell_assignment(m) for m in members])
    knobs_np = [member_knobs(m) for m in members]
    if cfg.connectivity_spec.shared:
        for kn in knobs_np:
            kn["conn_seed"] = cfg.runtime_spec.seed
    with precision(rt.dtype):
        dtype = jnp.dtype(rt.dtype)
        knobs = Knobs(**{k: jnp.asarray(np.stack([kn[k] for kn in knobs_np]),
                                        dtype=(jnp.uint32 if k in ("seed", "conn_seed") else dtype))
                         for k in Knobs._fields})
        build = _builder(str(dtype), len(steps), tuple(c.n for c in cfg.column_specs))
        params, depth = build(knobs, jnp.asarray(is_exc), jnp.asarray(lidx), jnp.asarray(depth_lo, dtype),
                              jnp.asarray(depth_hi, dtype), jnp.asarray(contact_z, dtype),
                              jnp.asarray(contact_col), jnp.asarray(class_table))
        if cfg.connectivity_spec.shared:  # one weight matrix for every member
            params = params._replace(w=params.w[0])
    cell_type = np.where(is_exc, "E", "I")
    neuron_coords = {"cell_type": cell_type, "layer": np.asarray(layout.layers)[lidx],
                     "column": np.asarray(columns)[column_index(cfg)], "depth_um": np.asarray(depth)}
    return Model(config=cfg, layout=layout, params=params, neuron_coords=neuron_coords,
                 member_coords=member_coords, ensemble=ensemble)
