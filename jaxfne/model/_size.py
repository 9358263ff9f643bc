"""Sizes checked before work starts: limits no run can pass, and memory estimates against what is free.

``check_construct`` runs first in ``construct``, before an ensemble is
expanded or an array is made; ``check_run`` runs in ``simulate`` before the
driver places anything on a device. Both count in Python integers (no
overflow), from the declaration of every array (model/_params.py), the
layout's geometry (model/_layout.py) and what the builder and the driver are
known to hold at once:

* construct: every member's parameters (the weights dominate: (N+1) x N per
  member and delay class; the builder makes them for every member even when
  they are shared), the builder's temporaries (``BUILD_TEMP_BYTES`` per
  neuron pair and member), and the host tables (knobs, cell types, depths);
* simulate: the placed parameters (once more on the devices, and a host copy),
  the state (``STATE_COPIES`` copies), ``CHUNKS_IN_FLIGHT`` chunks of outputs
  on the devices and on the host, the raw observations of one chunk (XLA
  engine), and, without a store, the whole run's arrays in memory.

A size is refused when it exceeds ``HEADROOM`` (90%) of the memory available
(host: the least of MemAvailable, the cgroup's limit and the address-space
limit; device: ``memory_stats()["bytes_limit"]`` less what is in use; CPU
devices use host memory). ``JAXFNE_NO_MEMORY_CHECK=1`` skips the memory
comparison (the limits still apply). docs/troubleshooting.md shows a refusal.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import os

import jax

from .._errors import ConfigurationError, SimulationError
from .._probes import REGISTRY
from ._layout import Layout
from ._params import PARAM_FIELDS, STATE_FIELDS

try:
    import resource
except ImportError:  # pragma: no cover - not on POSIX
    resource = None

#: a run is refused when its estimate exceeds this share of the available memory
HEADROOM = 0.9

#: neuron indices are int32 (and the weights have N + 1 rows): at most this many neurons
MAX_NEURONS = 2**31 - 2

#: members are counted and indexed in int32 as well
MAX_MEMBERS = 2**31 - 1

#: numpy (and XLA) index an array with int64: no array may hold 2**63 values
MAX_ELEMENTS = 2**63 - 1

#: bytes of temporaries per neuron pair and member while ``build_network`` makes the weights: random
#: bits, the two uniforms, the mask, the gathered p and g, the expected input counts and the weights
#: before they are transposed. XLA's memory analysis of the compiled builder (CPU) gives 28 to 36
#: bytes per pair in float32 and float64, one to three delay classes, one to three columns: count 36.
BUILD_TEMP_BYTES = 36

#: copies of the state the driver holds at once: the state yielded with the pending chunk, the copy
#: handed to the compiled chunk (donated) and the state it returns
STATE_COPIES = 3

#: chunks of outputs alive at once: the driver dispatches chunk k+1 before handing chunk k to the sink
CHUNKS_IN_FLIGHT = 2

#: per-member host tables of ``construct`` (knobs as float64, besides the (G, G) tables)
_KNOB_SCALARS = 2 + 2 + 24 + 2 + 2 + 1 + 2     # seeds, taus, coeffs (2, 4, 3), current, noise, dt, reversal

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def fmt_bytes(n: float) -> str:
    """``n`` bytes in binary units: '1.5 GiB'."""
    n, unit = float(n), 0
    while abs(n) >= 1024 and unit < len(_UNITS) - 1:
        n, unit = n / 1024, unit + 1
    return f"{int(n)} B" if unit == 0 else f"{n:.1f} {_UNITS[unit]}"


# -- the declared arrays, per member ----------------------------------------------------------------

_NODES = (ast.Expression, ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Name, ast.Load, ast.Constant)


def _dim(expr: str, symbols: dict) -> int:
    tree = ast.parse(expr.strip(), mode="eval")
    for node in ast.walk(tree):
        if not isinstance(node, _NODES) or (isinstance(node, ast.Name) and node.id not in symbols) or \
                (isinstance(node, ast.Constant) and not isinstance(node.value, int)):
            raise ValueError(f"{expr!r} is not a product or sum of {sorted(symbols)} and integers")
    return int(eval(compile(tree, "<shape>", "eval"), {"__builtins__": {}}, dict(symbols)))  # noqa: S307


def declared_elements(shape: str, symbols: dict, *, strict: bool = True) -> int:
    """Elements of a declared per-member shape ("(N+1, N) | (C, N+1, N)": the largest alternative).

    ``strict=False`` counts a dimension it cannot read as N (tests/test_sizes.py checks that every
    declared shape is readable, so that never happens unnoticed).
    """
    best = 0
    for alternative in shape.split("|"):
        dims = [d for d in alternative.strip().strip("()").split(",") if d.strip()]
        count = 1
        for d in dims:
            try:
                count *= _dim(d, symbols)
            except (ValueError, SyntaxError):
                if strict:
                    raise
                count *= symbols["N"]
        best = max(best, count)
    return best


def _item(kind: str, float_bytes: int) -> int:
    return float_bytes if kind == "float" else 1 if kind == "bool" else 4


def field_bytes(fields, symbols: dict, float_bytes: int) -> dict:
    """{name: bytes per member} of declared arrays."""
    return {f.name: declared_elements(f.shape, symbols, strict=False) * _item(f.kind, float_bytes) for f in fields}


def shape_symbols(layout: Layout) -> dict:
    """The symbols of the declared shapes (model/_params.py): N neurons, D delay slots, C delay classes,
    K (or P) field contacts, S stimuli."""
    return {"N": layout.n, "D": layout.delay_slots, "C": len(layout.delay_steps), "K": layout.contacts,
            "P": layout.contacts, "S": layout.n_stimuli,
            "R": layout.stim_table_rows, "O": layout.trial_onsets}


def _float_bytes(layout: Layout) -> int:
    return 8 if layout.dtype == "float64" else 4


def _item_bytes(layout: Layout, probe: str) -> int:
    return 1 if REGISTRY[probe].dtype == "bool" else _float_bytes(layout)


# -- what is available -----------------------------------------------------------------------------

def _read_ints(path: str) -> list:
    try:
        with open(path) as fh:
            text = fh.read().split()
    except OSError:
        return []
    return [int(x) for x in text[:1] if x.isdigit()]


def _cgroup_free() -> int | None:
    """What the memory cgroup still allows (v2, or v1), None when it sets no limit."""
    base = ""
    try:
        with open("/proc/self/cgroup") as fh:
            for line in fh:
                if line.startswith("0::"):
                    base = line[3:].strip()
    except OSError:
        pass
    for root in {f"/sys/fs/cgroup{base}".rstrip("/"), "/sys/fs/cgroup"}:
        limit, used = _read_ints(f"{root}/memory.max"), _read_ints(f"{root}/memory.current")
        if limit and used:
            return limit[0] - used[0]
    limit = _read_ints("/sys/fs/cgroup/memory/memory.limit_in_bytes")
    used = _read_ints("/sys/fs/cgroup/memory/memory.usage_in_bytes")
    if limit and used and limit[0] < 2**60:   # v1 reports a huge number when there is no limit
        return limit[0] - used[0]
    return None


def _address_space_free() -> int | None:
    """What the address-space limit (ulimit -v) still allows, None when there is none."""
    if resource is None:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/status") as fh:
            size = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
    except (OSError, StopIteration, ValueError):
        size = 0
    return soft - size


def host_available_bytes() -> int | None:
    """Host memory this process can still take: the least of MemAvailable, the cgroup and ulimit -v."""
    found = []
    try:
        with open("/proc/meminfo") as fh:
            found += [int(line.split()[1]) * 1024 for line in fh if line.startswith("MemAvailable:")]
    except (OSError, ValueError):
        pass
    if not found:
        for name in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
            try:
                found.append(os.sysconf(name) * os.sysconf("SC_PAGE_SIZE"))
                break
            except (ValueError, OSError, AttributeError):
                continue
    found += [x for x in (_cgroup_free(), _address_space_free()) if x is not None]
    return max(0, min(found)) if found else None


def device_available_bytes(device) -> int | None:
    """Free memory of an accelerator (``memory_stats()``: bytes_limit - bytes_in_use); None if not reported."""
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - a backend without statistics
        return None
    if not stats or "bytes_limit" not in stats:
        return None
    return max(0, int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)))


def _default_device():
    dev = getattr(jax.config, "jax_default_device", None)
    return dev if isinstance(dev, jax.Device) else jax.devices()[0]


# -- the estimates -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Part:
    """One item of an estimate: what, how many bytes, how it was counted, and what makes it smaller."""

    name: str
    nbytes: int
    detail: str
    remedies: tuple


@dataclasses.dataclass(frozen=True)
class Need:
    """The parts one memory (the host's, or one device's) must hold at once, and what it has free."""

    where: str
    parts: tuple
    available: int | None

    @property
    def total(self) -> int:
        return sum(p.nbytes for p in self.parts)

    @property
    def fits(self) -> bool:
        return self.available is None or self.total <= HEADROOM * self.available


REMEDIES = {
    "members": "fewer members (ensemble(seeds=...) and fewer sweep values)",
    "neurons": "fewer neurons (column(n=...))",
    "shared": "connectivity(shared=True) (one weight matrix for every member)",
    "store": "a store instead of memory (simulate(model, store=PATH) streams each chunk to disk)",
    "chunk": "shorter chunks via simulate(..., chunk_ms=...)",
    "probes": "fewer probes or sampled probes via probes(names=[...], neurons=..., every_ms=...)",
    "duration": "a shorter run (runtime(duration_ms=...))",
}


def member_count(cfg) -> int:
    """Members of ``cfg`` (1 without an ensemble), from the sweep's lengths: nothing is expanded."""
    spec = cfg.ensemble_spec
    if spec is None:
        return 1
    lengths = [len(v) for _, v in spec.sweep]
    combos = (math.prod(lengths) if spec.mode == "grid" else lengths[0]) if lengths else 1
    return combos * len(spec.seeds)


def check_limits(where: str, n: int, n_members: int, n_steps: int, n_classes: int = 1) -> None:
    """Refuse sizes no run can have (int32 neuron and member indices, arrays beyond int64 indexing)."""
    if n > MAX_NEURONS:
        raise ConfigurationError(
            f"{where}: column n={n} neurons is invalid; neuron indices are int32, so a network has at most "
            f"{MAX_NEURONS} neurons (and memory allows far fewer: the weights alone take (N+1) x N values "
            "per member)")
    if n_members > MAX_MEMBERS:
        raise ConfigurationError(
            f"{where}: ensemble of {n_members} members is invalid; at most {MAX_MEMBERS} members are allowed "
            f"(members are int32-indexed); use {REMEDIES['members']}")
    weights = n_members * n_classes * (n + 1) * n
    if weights > MAX_ELEMENTS:
        raise ConfigurationError(
            f"{where}: {n_members} members x {n_classes} delay class(es) x ({n + 1} x {n}) weights = "
            f"{weights:.3e} values is invalid; no array can hold more than 2**63 - 1 values; use "
            f"{REMEDIES['members']} or {REMEDIES['neurons']}")
    values = n_members * n * n_steps
    if values > MAX_ELEMENTS:
        raise ConfigurationError(
            f"{where}: {n_members} members x {n} neurons x {n_steps} steps = {values:.3e} values per recorded "
            "neuron probe is invalid; no array can hold more than 2**63 - 1 values; use "
            f"{REMEDIES['duration']}, {REMEDIES['members']} or {REMEDIES['neurons']}")


def _params_parts(layout: Layout, n_members: int, *, building: bool) -> list:
    """Parameters of ``n_members`` members: the weights apart, everything else together."""
    f = _float_bytes(layout)
    per = field_bytes(PARAM_FIELDS, shape_symbols(layout), f)
    n, c = layout.n, len(layout.delay_steps)
    # the user's own weights are made outside the per-member build: once, or once per member
    if layout.user_weights:
        w_copies = 1 if layout.shared_weights else n_members
    else:
        w_copies = n_members if (building or not layout.shared_weights) else 1
    shape = f"{'' if c == 1 else f'{c} x '}({n + 1} x {n}) {layout.dtype}"
    how = "shared by every member" if w_copies == 1 and layout.shared_weights else \
        f"per member x {w_copies} member{'s' * (w_copies != 1)}"
    rest = sum(v for k, v in per.items() if k not in ("w", "stim_table"))
    remedies = ("members", "neurons") if building or layout.shared_weights else ("members", "shared", "neurons")
    parts = [Part("weights", per["w"] * w_copies, f"{shape} {how}", remedies),
             Part("other parameters", rest * n_members, f"{fmt_bytes(rest)} per member", ("members", "neurons"))]
    if layout.stim_table_rows:     # one copy shared by every member, or one per member
        copies = n_members if layout.stim_table_per_member else 1
        parts.append(Part("array stimuli", per["stim_table"] * copies,
                          f"({layout.stim_table_rows} x {n}) {layout.dtype} "
                          + (f"per member x {copies} member{'s' * (copies != 1)}" if layout.stim_table_per_member
                             else "shared by every member"),
                          ("members", "duration", "neurons") if layout.stim_table_per_member
                          else ("duration", "neurons")))
    return parts


def construct_needs(layout: Layout, n_members: int, device=None) -> list:
    """What ``construct`` holds at its peak: host tables, and the builder's output and temporaries on the
    default device (host memory when it is a CPU)."""
    device = _default_device() if device is None else device
    n, f = layout.n, _float_bytes(layout)
    groups = 2 * len(layout.n_per_layer)
    built = _params_parts(layout, n_members, building=True)
    built.append(Part("builder temporaries", BUILD_TEMP_BYTES * n * n * n_members,
                      f"about {BUILD_TEMP_BYTES} bytes per neuron pair and member while the weights are made",
                      ("members", "neurons")))
    built.append(Part("neuron depths", n * f * n_members, "one value per neuron and member", ("members",)))
    host = [Part("member tables", n_members * (n * (1 + 1 + 4 + f) + 8 * (2 * groups * groups + _KNOB_SCALARS)),
                 "knobs, cell types and depths of every member", ("members", "neurons"))]
    if device.platform == "cpu":
        return [Need("host memory", tuple(host + built), host_available_bytes())]
    return [Need("host memory", tuple(host), host_available_bytes()),
            Need(f"memory of device {device}", tuple(built), device_available_bytes(device))]


#: the device's spike-event buffer holds this rate per neuron (Hz) at first: ~10x the tutorial's 5-12 Hz; a
#: chunk that needs more is computed again with a larger buffer (jaxfne/engine/_driver.py)
EVENT_RATE_HZ = 100.0
#: ... in multiples of this many slots, at least one multiple
EVENT_SLOTS = 64


def event_capacity(layout: Layout, chunk_steps: int) -> int:
    """Event slots per member of the device's buffer: EVENT_RATE_HZ in every neuron over a chunk, rounded
    up to EVENT_SLOTS, at most every neuron-step of the chunk."""
    want = layout.n * chunk_steps * layout.dt_ms * 1e-3 * EVENT_RATE_HZ
    return int(min(layout.n * chunk_steps, max(EVENT_SLOTS, -(-int(math.ceil(want)) // EVENT_SLOTS) * EVENT_SLOTS)))


def event_bytes(layout: Layout, chunk_steps: int) -> int:
    """Bytes of one spike event: its neuron index and its step in the chunk, each uint16 or int32."""
    return (2 if layout.n <= 2**16 else 4) + (2 if chunk_steps <= 2**16 else 4)


def _chunk_bytes(layout: Layout, chunk_steps: int) -> tuple:
    """(outputs, raw observations) of one member in one chunk, in bytes."""
    out = 0
    for probe in layout.probes:
        geo = layout.geometry(probe)
        out += -(-chunk_steps // geo["stride"]) * geo["n_last"] * _item_bytes(layout, probe)
    raw_per_step = 0
    for r in {r for p in layout.probes for r in REGISTRY[p].raw}:
        raw_per_step += layout.n * (1 if r == "spikes" else _float_bytes(layout))
    return out, raw_per_step * chunk_steps


def run_needs(layout: Layout, n_members: int, chunk_steps: int, devices, *, engine: str = "xla",
              in_memory: bool = True, n_local: int | None = None) -> list:
    """What ``simulate`` holds at its peak on each device and on the host."""
    devices = list(devices)
    n_dev = max(1, len(devices))
    n_local = n_members if n_local is None else n_local
    per_dev = -(-n_members // n_dev)
    # this process's devices (all of them on one process): their memory is the one this process can see
    here = [d for d in devices if d.process_index == jax.process_index()] or devices
    f = _float_bytes(layout)
    state = sum(field_bytes(STATE_FIELDS, shape_symbols(layout), f).values())
    out, raw = _chunk_bytes(layout, chunk_steps)
    chunk_ms = chunk_steps * layout.dt_ms

    def on_device(members: int, copies_of_shared: int = 1, accelerator: bool = False) -> list:
        parts = _params_parts(layout, members, building=False)
        if layout.shared_weights and copies_of_shared > 1:
            w = parts[0]
            parts[0] = Part(w.name, w.nbytes * copies_of_shared, f"{w.detail}, one copy per device", w.remedies)
        parts.append(Part("state", STATE_COPIES * state * members,
                          f"{STATE_COPIES} copies of {fmt_bytes(state)} per member", ("members", "neurons")))
        parts.append(Part("chunk outputs", CHUNKS_IN_FLIGHT * out * members,
                          f"{CHUNKS_IN_FLIGHT} chunks of {chunk_steps} steps ({chunk_ms:g} ms), "
                          f"{fmt_bytes(out)} per member each", ("chunk", "probes", "members")))
        if engine == "xla" and raw:
            parts.append(Part("chunk raw observations", raw * members,
                              f"one chunk of {chunk_steps} steps, every neuron, {fmt_bytes(raw)} per member",
                              ("chunk", "probes", "members")))
        if accelerator and "SPK" in layout.probes:     # spikes compacted to events on the device
            cap, ev = event_capacity(layout, chunk_steps), event_bytes(layout, chunk_steps)
            parts.append(Part("chunk spike events", (CHUNKS_IN_FLIGHT * cap * ev + 4 * chunk_steps * layout.n)
                              * members, f"{CHUNKS_IN_FLIGHT} buffers of {cap} events per member, and the "
                              "compaction's int32 scratch per neuron-step", ("chunk", "members")))
        return parts

    host = [Part("host copy of the parameters", sum(p.nbytes for p in _params_parts(layout, per_dev * n_dev,
                                                                                      building=False)),
                 "placed on the devices from the host", ("neurons", "members")),
            Part("chunk outputs on the host", CHUNKS_IN_FLIGHT * out * n_local,
                 f"{CHUNKS_IN_FLIGHT} chunks of {chunk_steps} steps ({chunk_ms:g} ms)",
                 ("chunk", "probes", "members"))]
    if in_memory:
        per_probe = {p: layout.geometry(p)["n_time"] * layout.geometry(p)["n_last"] * _item_bytes(layout, p)
                     * n_local for p in layout.probes}
        host.append(Part("in-memory result", sum(per_probe.values()),
                         "whole-run arrays: " + ", ".join(f"{p} {fmt_bytes(b)}" for p, b in per_probe.items()),
                         ("store", "probes", "duration", "members")))
    if in_memory and "SPK" in layout.probes:       # the spikes as events too, at the buffer's rate (an upper guess)
        events = int(n_local * layout.n * layout.n_steps * layout.dt_ms * 1e-3 * EVENT_RATE_HZ
                     * event_bytes(layout, chunk_steps))
        host.append(Part("in-memory spike events", events, f"about {EVENT_RATE_HZ:g} Hz per neuron, "
                         f"{event_bytes(layout, chunk_steps)} bytes per spike", ("duration", "members")))
    if all(d.platform == "cpu" for d in here):   # CPU devices: one host memory, every local device's share
        on_host = on_device(per_dev * len(here), len(here) if layout.shared_weights else 1)
        return [Need("host memory", tuple(on_host + host), host_available_bytes())]
    needs = [Need("host memory", tuple(host), host_available_bytes())]
    needs += [Need(f"memory of device {d}", tuple(on_device(per_dev, accelerator=True)), device_available_bytes(d))
              for d in here]
    return needs


def _refusal(where: str, what: str, need: Need, context: tuple) -> str:
    """The message: the estimate and its main parts, what is available, the rule, and the remedies of the
    parts that make up most of the estimate."""
    parts = sorted((p for p in need.parts if p.nbytes), key=lambda p: -p.nbytes)
    total = need.total
    main, covered = [], 0
    for p in parts:                      # the largest parts, until they make up 90% of the estimate
        if covered >= 0.9 * total:
            break
        main.append(p)
        covered += p.nbytes
    remedies = []
    for p in main:
        remedies += [r for r in p.remedies if r in context and r not in remedies]
    shown = [p for p in parts if p.nbytes >= 0.01 * total]
    listed = "; ".join(f"{p.name} {fmt_bytes(p.nbytes)} ({p.detail})" for p in shown)
    if len(shown) < len(parts):
        listed += f"; smaller parts {fmt_bytes(sum(p.nbytes for p in parts[len(shown):]))}"
    return (f"{where}: {what} needs about {fmt_bytes(total)} of {need.where}, but "
            f"{fmt_bytes(need.available)} is available and jaxfne refuses to use more than "
            f"{HEADROOM:.0%} of it ({fmt_bytes(HEADROOM * need.available)}). Estimate: {listed}. "
            f"Remedy: {'; or '.join(REMEDIES[r] for r in remedies)}.")


def _skip_memory() -> bool:
    return os.environ.get("JAXFNE_NO_MEMORY_CHECK", "") not in ("", "0")


def check_construct(cfg, layout: Layout) -> None:
    """Refuse a configuration whose construction cannot fit, before expanding or building anything."""
    n_members = member_count(cfg)
    check_limits("construct", layout.n, n_members, layout.n_steps, len(layout.delay_steps))
    if _skip_memory():
        return
    context = ("neurons",) + (("members",) if cfg.ensemble_spec is not None else ())
    for need in construct_needs(layout, n_members):
        if not need.fits:
            what = (f"this configuration ({n_members} member{'s' * (n_members != 1)} of {layout.n} neurons, "
                    f"{layout.dtype})")
            raise ConfigurationError(_refusal("construct", what, need, context))


def check_run(model, chunk_steps: int, devices, *, engine: str, in_memory: bool, n_local: int) -> None:
    """Refuse a run that cannot fit in memory, before the driver places anything on a device."""
    layout = model.layout
    check_limits("simulate", layout.n, model.n_members, layout.n_steps, len(layout.delay_steps))
    if _skip_memory():
        return
    context = ["neurons", "chunk", "probes", "duration"]
    if model.ensemble or model.n_members > 1:
        context.append("members")
        if not layout.shared_weights:
            context.append("shared")
    if in_memory:
        context.append("store")
    for need in run_needs(layout, model.n_members, chunk_steps, devices, engine=engine, in_memory=in_memory,
                          n_local=n_local):
        if not need.fits:
            what = (f"this run ({model.n_members} member{'s' * (model.n_members != 1)} of {layout.n} neurons, "
                    f"{layout.n_steps} steps of {layout.dt_ms:g} ms, {'in memory' if in_memory else 'to a store'})")
            raise SimulationError(_refusal("simulate", what, need, tuple(context)))
