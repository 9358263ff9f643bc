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

from ._config import CELL_TYPES, DEFAULT_PATHWAYS, Configuration, parse_pathway_key
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
    layers: tuple
    n_per_layer: tuple
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

    @property
    def delay_slots(self) -> int:
        """Ring-buffer slots of delayed input (0 when nothing is delayed beyond one step)."""
        return 0 if self.delay_steps == (1,) else max(self.delay_steps)

    @property
    def contact_spacing_um(self) -> float:
        z = self.contact_z_um
        return (z[-1] - z[0]) / (len(z) - 1)


def pathway_tables(cfg: Configuration):
    """p, strength and delay (ms) of every [post_group, pre_group] pair; group = 2 * layer + type."""
    con, layers = cfg.connectivity_spec, cfg.column_spec.layers
    strength = dict(con.strength)
    user = {k: dict(v) for k, v in con.pathways}
    for key in user:
        for layer, _ in parse_pathway_key("connectivity", key):
            if layer not in layers:
                raise ConfigurationError(f"connectivity: pathway {key!r} names layer {layer!r}, which is not in "
                                         f"the column's layers {list(layers)}")
    n_g = 2 * len(layers)
    p, g, delay = np.zeros((n_g, n_g)), np.zeros((n_g, n_g)), np.zeros((n_g, n_g))
    for (li, la), (ti, ta), (lj, lb), (tj, tb) in itertools.product(
            enumerate(layers), enumerate(CELL_TYPES), enumerate(layers), enumerate(CELL_TYPES)):
        key = f"{la}.{ta}->{lb}.{tb}"
        within = li == lj
        entry = {"p": con.p, "strength": strength[f"{ta}->{tb}"] if within else 0.0, "delay_ms": con.delay_ms}
        if not within:
            entry = {**entry, **DEFAULT_PATHWAYS.get(key, {"p": 0.0})}
        entry.update(user.get(key, {}))
        post, pre = 2 * lj + tj, 2 * li + ti
        p[post, pre], g[post, pre], delay[post, pre] = entry["p"], entry["strength"], entry["delay_ms"]
    return p, g, delay


def probe_sampling(cfg: Configuration):
    """(neuron indices recorded by Vm/source or None, sampling stride in steps)."""
    pr, col, dt = cfg.probes_spec, cfg.column_spec, cfg.runtime_spec.dt_ms
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
        if max(value) >= col.n:
            raise ConfigurationError(f"probes: neurons={list(value)} is invalid; indices must be < n={col.n}")
        return tuple(int(i) for i in value), every
    idx, start = [], 0
    for n_layer in col.n_per_layer:
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
    col = cfg.column_spec
    for layer, n_layer in zip(col.layers, col.n_per_layer):
        f_exc = cfg.cell_types_spec.for_layer(layer)["E"]
        n_exc = int(np.floor(f_exc * n_layer + 0.5))
        parts.append(np.arange(n_layer) < n_exc)
    return np.concatenate(parts)


def layer_index(cfg: Configuration) -> np.ndarray:
    return np.repeat(np.arange(len(cfg.column_spec.layers)), cfg.column_spec.n_per_layer)


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
def _builder(dtype: str, n_classes: int):
    """The jitted, member-vmapped network builder (compiled once per shape)."""
    return jax.jit(jax.vmap(functools.partial(build_network, dtype=jnp.dtype(dtype), r0_um=R0_UM,
                                              n_classes=n_classes),
                            in_axes=(0, 0, None, None, None, None, None)))


def _construct_members(cfg: Configuration, members: list, member_coords: dict, ensemble: bool) -> Model:
    rt, col, pr = cfg.runtime_spec, cfg.column_spec, cfg.probes_spec
    ranges = [col.depth_range(lay) for lay in col.layers]
    top, bottom = min(r[0] for r in ranges), max(r[1] for r in ranges)
    if pr.contact_spacing_um is None:
        contact_z = contact_depths_um(top, bottom, pr.contacts)
    else:
        contact_z = top + pr.contact_spacing_um * np.arange(pr.contacts)
    steps, class_table = delay_classes(cfg)
    sample_neurons, sample_every = probe_sampling(cfg)
    layout = Layout(n=col.n, layers=col.layers, n_per_layer=col.n_per_layer, contacts=pr.contacts,
                    contact_z_um=tuple(float(z) for z in contact_z), probes=pr.names, dtype=rt.dtype,
                    n_steps=int(round(rt.duration_ms / rt.dt_ms)), dt_ms=rt.dt_ms,
                    shared_weights=cfg.connectivity_spec.shared, delay_steps=steps,
                    sample_neurons=sample_neurons, sample_every=sample_every)
    lidx = layer_index(cfg)
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
        build = _builder(str(dtype), len(steps))
        params, depth = build(knobs, jnp.asarray(is_exc), jnp.asarray(lidx), jnp.asarray(depth_lo, dtype),
                              jnp.asarray(depth_hi, dtype), jnp.asarray(contact_z, dtype),
                              jnp.asarray(class_table))
        if cfg.connectivity_spec.shared:  # one weight matrix for every member
            params = params._replace(w=params.w[0])
    cell_type = np.where(is_exc, "E", "I")
    neuron_coords = {"cell_type": cell_type, "layer": np.asarray(col.layers)[lidx],
                     "depth_um": np.asarray(depth)}
    return Model(config=cfg, layout=layout, params=params, neuron_coords=neuron_coords,
                 member_coords=member_coords, ensemble=ensemble)
