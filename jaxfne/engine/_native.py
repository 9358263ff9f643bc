"""The native CPU engine: jaxfne/engine/csrc/izh_chunk.cc built once per machine, called through XLA FFI.

The kernel advances a block of members by a whole chunk in one call (member ->
step -> neuron loops, the neuron loop vectorised by the compiler). It is
compiled on first use with the system C++ compiler against the XLA FFI headers
that ship with jaxlib, and cached under ``$JAXFNE_CACHE_DIR`` (default
``~/.cache/jaxfne``), keyed by the source, the jaxlib version, the compiler
and its ``--version``, the flags and the CPU's instruction-set flags. Only a
folder private to the user is built into or loaded from, and a library is
loaded only when its bytes match the SHA-256 recorded when it was built. No compiler: ``available()`` says
why, and ``engine="auto"`` falls back to the XLA engine.

The call is built from the one declaration of the model's arrays
(jaxfne/model/_params.py ``STATE_FIELDS``, ``PARAM_FIELDS``, the constants)
and the raw observations (jaxfne/_probes.py ``RAW``): typed input buffers in
a fixed order, named attributes. The kernel exports the signature it was
compiled with (``jaxfne_kernel_signature``); ``library()`` compares it with
``signature()`` and refuses a kernel that disagrees, naming the first
difference, so a change on one side only fails when the kernel is loaded
(``engine="auto"`` then runs the XLA step, saying why once).
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import stat
import subprocess
import tempfile
import warnings
from importlib import resources

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import SimulationError
from .._probes import RAW, REGISTRY
from ..model import _params as declaration

FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-std=c++17", "-shared", "-fPIC")
TARGETS = {"float32": "jaxfne_izh_chunk_f32", "float64": "jaxfne_izh_chunk_f64"}
ENGINES = ("auto", "xla", "native")


def _source() -> bytes:
    return resources.files("jaxfne.engine").joinpath("csrc", "izh_chunk.cc").read_bytes()


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return platform.processor()


def cache_dir() -> str:
    root = os.environ.get("JAXFNE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "jaxfne")
    return os.path.join(root, "kernels")


def _compiler() -> str | None:
    for cc in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if cc and shutil.which(cc):
            return cc
    return None


@functools.lru_cache(maxsize=8)
def _compiler_version(cc: str) -> str:
    """The compiler's ``--version`` output: part of the cache key (a compiler upgrade rebuilds)."""
    try:
        proc = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({type(exc).__name__})"
    return proc.stdout.strip()


# -- a cache that no other user can write ------------------------------------------------
#
# A library loaded from the cache runs as the current user, so every folder we build into or
# load from must be ours alone: a directory (not a link), owned by us, writable by nobody else.
# The predictable folder in the temp directory (used when the home cache is not writable) is
# created with mode 0700 by an exclusive mkdir; one that exists already and fails the checks
# (another user made it first, or made it 0777) is never used: we build into a fresh
# mkdtemp folder instead. Each library has a sidecar with its SHA-256, written after the
# library; a library whose bytes do not match (truncated, bit-flipped, replaced) is rebuilt
# before anything loads it (docs/guarantees.md).

def _untrusted(path: str, *, directory: bool) -> str | None:
    """Why ``path`` may not be trusted, or None: it must be ours, not a link, writable by us alone."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"{path} cannot be inspected ({exc.strerror})"
    kind_ok = stat.S_ISDIR(st.st_mode) if directory else stat.S_ISREG(st.st_mode)
    if not kind_ok:
        return f"{path} is not a {'directory' if directory else 'regular file'} (a link or another kind)"
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return f"{path} is owned by uid {st.st_uid}, not by this user (uid {os.getuid()})"
    if st.st_mode & 0o022:
        return f"{path} is writable by other users (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def _private_dir(path: str) -> tuple[str | None, str]:
    """(``path``, "") when it is (or is now created as) a folder private to this user, else (None, why)."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.mkdir(path, 0o700)            # exclusive: fails if anyone made it first
    except FileExistsError:
        pass
    except OSError as exc:
        return None, f"{path} cannot be created ({exc.strerror})"
    why = _untrusted(path, directory=True)
    if why is not None:
        return None, why
    if not os.access(path, os.W_OK | os.X_OK):
        return None, f"{path} is not writable"
    return path, ""


def _digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _verified(path: str) -> tuple[bool, str]:
    """Whether the cached library at ``path`` may be loaded: ours, private, and its bytes match its sidecar."""
    sidecar = path + ".sha256"
    if not os.path.exists(path) and not os.path.exists(sidecar):
        return False, "not built yet"
    for p in (path, sidecar):
        why = _untrusted(p, directory=False)
        if why is not None:
            return False, why
    try:
        with open(sidecar) as f:
            expected = f.read().strip()
        actual = _digest(path)
    except OSError as exc:
        return False, f"{path} cannot be read ({exc.strerror})"
    if actual != expected:
        return False, f"{path} does not match its recorded SHA-256 (damaged or replaced)"
    return True, ""


def _cache_dirs():
    """Folders to build into, in order: the user's cache, then a private folder in the temp dir."""
    yield cache_dir()
    uid = os.getuid() if hasattr(os, "getuid") else 0
    yield os.path.join(tempfile.gettempdir(), f"jaxfne-kernels-{uid}")


def _key(cc: str, src: bytes) -> str:
    import jaxlib
    key = hashlib.sha256(b"\0".join([src, jaxlib.__version__.encode(), " ".join(FLAGS).encode(), cc.encode(),
                                     _compiler_version(cc).encode(), _cpu_flags().encode(),
                                     platform.machine().encode()]))
    return key.hexdigest()[:16]


def _compile(cc: str, src: bytes, path: str) -> str:
    """Build the library at ``path`` with its SHA-256 sidecar; "" or why it failed."""
    out_dir = os.path.dirname(path)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        src_path = os.path.join(tmp, "izh_chunk.cc")
        with open(src_path, "wb") as f:
            f.write(src)
        tmp_lib = os.path.join(tmp, "lib.so")
        cmd = [cc, *FLAGS, "-I", jax.ffi.include_dir(), src_path, "-o", tmp_lib]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            errors = [line for line in proc.stderr.splitlines() if "error" in line] or proc.stderr.splitlines()
            return f"compiling the native engine failed ({' '.join(cmd)}): " + "\n".join(errors[:20])
        os.chmod(tmp_lib, 0o700)
        tmp_sum = os.path.join(tmp, "lib.so.sha256")
        with open(tmp_sum, "w") as f:
            f.write(_digest(tmp_lib) + "\n")
        # atomic renames, library first: a reader that sees the new sidecar sees the new library. Two
        # builders racing may pair one's library with the other's sidecar: that reads as damaged, and
        # the next process rebuilds (never loads a mismatch)
        os.replace(tmp_lib, path)
        os.replace(tmp_sum, path + ".sha256")
    return ""


@functools.lru_cache(maxsize=1)
def _build() -> tuple[str | None, str]:
    """(path of a verified shared library, "") or (None, why it is not available)."""
    if platform.system() not in ("Linux", "Darwin"):
        return None, f"the native engine is built for Linux and macOS, not {platform.system()}"
    cc = _compiler()
    if cc is None:
        return None, "no C++ compiler found (set CXX, or install g++ or clang++)"
    src = _source()
    name = f"izh_chunk-{_key(cc, src)}.so"
    out_dir, refused, damaged = None, [], None
    for candidate in _cache_dirs():
        folder, why = _private_dir(candidate)
        if folder is None:
            refused.append(why)
            continue
        path = os.path.join(folder, name)
        ok, why = _verified(path)
        if ok:
            return path, ""
        if os.path.exists(path) or os.path.exists(path + ".sha256"):
            damaged = why             # rebuilt below, in this folder
        out_dir = folder
        break
    if out_dir is None:               # every shared location refused: a fresh private folder for this process
        out_dir = tempfile.mkdtemp(prefix="jaxfne-kernels-")
        atexit.register(shutil.rmtree, out_dir, True)
        _warn_once("jaxfne: the native engine is built in a private temporary folder for this process only, "
                   "because " + "; ".join(refused) + " (set JAXFNE_CACHE_DIR to a folder of your own)")
    if damaged is not None:
        _warn_once(f"jaxfne: rebuilding the native engine: {damaged}")
    path = os.path.join(out_dir, name)
    why = _compile(cc, src, path)
    if why:
        return None, why
    ok, why = _verified(path)
    if not ok:
        return None, f"the freshly built native engine failed its check: {why}"
    return path, ""


# -- the call, from the declaration ---------------------------------------------------------

#: inputs of the call after the declared arrays: the global index of the chunk's first step
CALL_INPUTS = (("t0", "int32"),)
#: the call's settings (attributes), before the model constants and the observation modes
CALL_ATTRS = (("n_steps", "int64"), ("threads", "int64"), ("shared_w", "bool"), ("delay_steps", "int64[]"),
              ("sample_index", "int64[]"), ("sample_stride", "int64"), ("integrator", "int64"),
              ("noise_hold", "int64"), ("conductance", "int64"), ("event_capacity", "int64"))
#: the results after the observations when ``event_capacity`` > 0: the spikes as events, (name, kind);
#: "index" is uint16 or int32 (jaxfne/engine/_chunk.py ``neuron_dtype``, ``step_dtype``)
EVENT_RESULTS = (("neuron", "index"), ("step", "index"), ("count", "int32"))
#: the key of the events in ``native_chunk``'s raw observations (when asked for)
EVENTS_RAW = "events"
#: values of the "integrator" attribute, by the layout's integrator (config/_specs.py INTEGRATORS)
INTEGRATORS = {"euler": 0, "izhikevich2003": 1}
#: values of the "<observation>_mode" attributes (absent: 0)
MODES = {"full": 1, "sampled": 2}
#: no conductance pathway (the layout's ``conductance``: [pre type][post type], E then I)
CURRENT_SYNAPSES = ((False, False), (False, False))


def conductance_mask(conductance) -> int:
    """The kernel's "conductance" attribute: bit 2 pre + post set where the pathway from type ``pre`` to
    type ``post`` (0 E, 1 I) has conductance synapses; ``conductance`` as the layout's, [pre][post]."""
    try:
        flags = [[bool(conductance[pre][post]) for post in (0, 1)] for pre in (0, 1)]
    except (TypeError, IndexError):
        raise SimulationError(f"native_chunk: conductance={conductance!r} is invalid; give ((E->E, E->I), "
                              "(I->E, I->I)) booleans, as the layout's conductance") from None
    return sum(1 << (2 * pre + post) for pre in (0, 1) for post in (0, 1) if flags[pre][post])


def kernel_inputs() -> list:
    """The declared arrays the kernel reads, in call order: [("state" | "params", Field)], the state first
    (its buffers are aliased to the state results)."""
    return ([("state", f) for f in declaration.STATE_FIELDS if f.native]
            + [("params", f) for f in declaration.PARAM_FIELDS if f.native])


def constants() -> dict:
    """The model constants the kernel takes as attributes, all from jaxfne/model/_params.py."""
    out = {"v_peak": float(declaration.V_PEAK_MV)}
    out.update({f"pad_{name}": float(value) for name, value in declaration.padding_lane().items()})
    return out


def native_observations() -> list:
    """The raw observations (after "spikes") that the probes declaring the native engine need, in RAW order."""
    need = {r for p in REGISTRY.values() if "native" in p.engines for r in p.raw}
    return [r for r in RAW[1:] if r in need]


def signature(observations=None) -> list:
    """The call's signature as the declaration makes it, one entry per line of the kernel's
    ``jaxfne_kernel_signature()``: "arg NAME KIND", "ret NAME KIND", "obs NAME KIND", "attr NAME TYPE".

    ``observations``: the optional raw observations the kernel produces (default: those the probes
    declaring the native engine need).
    """
    obs = native_observations() if observations is None else list(observations)
    lines = [f"arg {f.name} {f.kind}" for _, f in kernel_inputs()] + [f"arg {n} {k}" for n, k in CALL_INPUTS]
    lines += [f"ret {f.name} {f.kind}" for f in declaration.STATE_FIELDS]
    lines += [f"ret {RAW[0]} bool"] + [f"obs {r} float" for r in obs]
    lines += [f"events {n} {k}" for n, k in EVENT_RESULTS]
    lines += [f"attr {n} {t}" for n, t in CALL_ATTRS] + [f"attr {n} float64" for n in constants()]
    lines += [f"attr {r}_mode int64" for r in obs]
    return lines


def kernel_signature(lib) -> list | None:
    """The lines of the kernel's own signature, or None when the library exports none."""
    try:
        fn = lib.jaxfne_kernel_signature
    except AttributeError:
        return None
    fn.restype = ctypes.c_char_p
    fn.argtypes = []
    return fn().decode().splitlines()


def kernel_observations() -> list:
    """The optional raw observations the loaded kernel produces, in its (RAW) order."""
    return [line.split()[1] for line in kernel_signature(library()) if line.startswith("obs ")]


def signature_mismatch(lib) -> str | None:
    """Why the loaded kernel ``lib`` does not match the declaration (the first difference), or None.

    The kernel's inputs, fixed results and attributes must be those of ``signature()``; its optional
    observations must be raw observations of jaxfne/_probes.py RAW, in that order, and include every one
    that a probe declaring the native engine needs (``Probe.engines``).
    """
    kernel = kernel_signature(lib)
    if kernel is None:
        return "the kernel library exports no jaxfne_kernel_signature (built from another source?)"
    obs = [line.split()[1] for line in kernel if line.startswith("obs ")]
    if obs != [r for r in RAW[1:] if r in obs]:
        return (f"the kernel (jaxfne/engine/csrc/izh_chunk.cc) produces the observations {obs}, which are not "
                f"raw observations of jaxfne/_probes.py RAW {list(RAW[1:])} in that order")
    for name, p in REGISTRY.items():
        lacking = [r for r in p.raw if r not in obs and r != RAW[0]]
        if "native" in p.engines and lacking:
            return (f"the probe {name!r} declares the native engine (jaxfne/_probes.py engines=) but the kernel "
                    f"does not produce its raw observation(s) {lacking}")
    expected = signature(obs)
    for i in range(max(len(kernel), len(expected))):
        got = kernel[i] if i < len(kernel) else None
        want = expected[i] if i < len(expected) else None
        if got != want:
            return (f"the kernel's call signature (jaxfne/engine/csrc/izh_chunk.cc) disagrees with the declaration "
                    f"(jaxfne/model/_params.py, jaxfne/_probes.py RAW) at entry {i + 1}: the kernel has "
                    f"{got or 'nothing'!r} where the declaration has {want or 'nothing'!r}")
    return None


@functools.lru_cache(maxsize=1)
def library():
    """The loaded kernel library, checked against the declaration, with its FFI targets registered;
    SimulationError if unavailable (no compiler, a failed build, a signature that disagrees)."""
    path, why = _build()
    if path is None:
        raise SimulationError(f"simulate: engine='native' is unavailable: {why}")
    lib = ctypes.cdll.LoadLibrary(path)
    why = signature_mismatch(lib)
    if why is not None:
        raise SimulationError(f"simulate: engine='native' is unavailable: {why}")
    jax.ffi.register_ffi_target(TARGETS["float32"], jax.ffi.pycapsule(lib.JaxfneIzhChunkF32), platform="cpu")
    jax.ffi.register_ffi_target(TARGETS["float64"], jax.ffi.pycapsule(lib.JaxfneIzhChunkF64), platform="cpu")
    return lib


def available() -> tuple[bool, str]:
    """Whether the native CPU engine can run here, and if not, why (builds it on first call).

    ``jtfne.native_engine_available()``; see docs/engines.md.
    """
    try:
        library()
    except SimulationError as err:
        return False, str(err)
    return True, ""


def unsupported(layout) -> str | None:
    """What of ``layout`` the native engine cannot run (None: everything); its declared capabilities.

    Probes say which engines produce them (jaxfne/_probes.py ``Probe.engines``).
    """
    if layout is None:
        return None
    lacking = [name for name in layout.probes if "native" not in REGISTRY[name].engines]
    if lacking:
        return f"the native engine does not produce the probe(s) {', '.join(map(repr, lacking))}"
    if layout.integrator not in INTEGRATORS:
        return f"the native engine does not integrate with integrator={layout.integrator!r}"
    return None


def resolve_engine(engine, devices, layout=None) -> str:
    """The engine a run of ``layout`` uses: "xla" or "native".

    ``auto``: native when every device is a CPU, it builds, and it supports
    every feature of ``layout`` (``unsupported``); otherwise the XLA step,
    saying why once when the reason is not simply a missing compiler.
    ``native`` raises SimulationError instead of falling back.
    """
    if engine not in ENGINES:
        raise SimulationError(f"simulate: engine={engine!r} is invalid; choose one of {', '.join(map(repr, ENGINES))}")
    on_cpu = all(d.platform == "cpu" for d in devices)
    lacking = unsupported(layout)
    if engine == "native":
        if not on_cpu:
            raise SimulationError("simulate: engine='native' runs on CPU devices only; "
                                  f"got {sorted({d.platform for d in devices})} (use engine='xla' or 'auto')")
        if lacking:
            raise SimulationError(f"simulate: engine='native' cannot run this model: {lacking} "
                                  "(use engine='xla' or 'auto')")
        library()
        return "native"
    if engine == "auto" and on_cpu:
        if lacking:
            _warn_once(f"jaxfne: running the XLA step on the CPU because {lacking}")
            return "xla"
        ok, why = available()
        if ok:
            return "native"
        if "no C++ compiler" not in why:
            _warn_once(f"jaxfne: running the XLA step on the CPU because {why}")
    return "xla"


_WARNED: set = set()


def _warn_once(message: str) -> None:
    """A compiler that is there but fails is worth saying (once): the run is several times slower."""
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def threads_per_device(n_devices: int) -> int:
    """Kernel threads per device: the cores this process may use, shared by its local devices."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, n_devices))


def native_chunk(state, params, t0, *, n_steps: int, delay_steps: tuple, shared_w: bool, modes: dict,
                 sample_index: tuple, sample_stride: int, threads: int, integrator: str = "euler",
                 noise_hold: int = 1, conductance: tuple = CURRENT_SYNAPSES, event_capacity: int = 0,
                 spike_raster: bool = True):
    """Advance a block of members (leading axis) by ``n_steps``; called per device inside shard_map.

    ``integrator``, ``noise_hold`` and ``conductance``: as _step.step's (the layout's ``integrator``,
    ``noise_hold_steps`` and ``conductance``, [pre type][post type]). ``params.stim_table`` has no member
    axis (shared by every member, as a shared ``w``) unless an array stimulus is per member.

    ``modes``: the raw observations to return (jaxfne/_probes.py ``RAW``; "spikes" always), each "full"
    (B, T, N) or "sampled" (B, ceil(T / sample_stride), K): every ``sample_stride``-th step from the
    chunk's first, the neurons ``sample_index``. Returns (new state, {raw name: array}) with exactly the
    keys of ``modes``, and ``EVENTS_RAW`` when ``event_capacity`` > 0.

    ``event_capacity`` > 0: the kernel also writes the chunk's spikes as events, as
    jaxfne/engine/_chunk.py ``compact_spikes`` returns them from the raster (the same dtypes and values,
    bit for bit): raw[EVENTS_RAW] = {"neuron": (B, event_capacity), "step": (B, event_capacity),
    "count": (B,) int32, the true count, above the capacity on an overflow}. ``spike_raster`` False (only
    with events): the raster is not written, raw["spikes"] is (B, 0, N).
    """
    produced = kernel_observations()
    if integrator not in INTEGRATORS or int(noise_hold) < 1:
        raise SimulationError(f"native_chunk: integrator={integrator!r}, noise_hold={noise_hold!r} is invalid; "
                              f"integrator is one of {list(INTEGRATORS)}, noise_hold a whole number of steps >= 1")
    if modes.get(RAW[0]) != "full" or set(modes) - {RAW[0], *produced} or set(modes.values()) - set(MODES):
        raise SimulationError(f"native_chunk: modes={modes!r} is invalid; {RAW[0]!r} must be 'full', the others "
                              f"any of {produced} (what the kernel produces) as 'full' or 'sampled'")
    if int(event_capacity) < 0 or (not spike_raster and int(event_capacity) == 0):
        raise SimulationError(f"native_chunk: event_capacity={event_capacity!r}, spike_raster={spike_raster!r} is "
                              "invalid; event_capacity is a slot count >= 0 (0: no events), and the raster may be "
                              "left out only when the events are asked for")
    dtype = params.a.dtype
    b, n = params.a.shape
    w = params.w
    if w.ndim == (2 if shared_w else 3):     # one delay class: add the class axis
        w = w[None] if shared_w else w[:, None]
    params = params._replace(w=w)
    kinds = {"float": dtype, "bool": jnp.bool_, "uint32": jnp.uint32}
    args = [jnp.asarray(getattr(state if where == "state" else params, f.name), kinds[f.kind])
            for where, f in kernel_inputs()]
    args.append(jnp.asarray(t0, jnp.int32))
    n_state = len(declaration.STATE_FIELDS)
    sds = jax.ShapeDtypeStruct
    present = [r for r in produced if r in modes]
    sampled_shape = (b, -(-n_steps // sample_stride), len(sample_index))
    outs = ([sds(x.shape, x.dtype) for x in args[:n_state]] + [sds((b, n_steps if spike_raster else 0, n), jnp.bool_)]
            + [sds((b, n_steps, n) if modes[r] == "full" else sampled_shape, dtype) for r in present])
    if event_capacity:     # as _chunk.neuron_dtype / step_dtype (no import: _chunk imports this module)
        index = {"neuron": np.uint16 if n <= 2**16 else np.int32, "step": np.uint16 if n_steps <= 2**16 else np.int32}
        outs += [sds((b, int(event_capacity)), index["neuron"]), sds((b, int(event_capacity)), index["step"]),
                 sds((b,), jnp.int32)]
    call = jax.ffi.ffi_call(TARGETS[str(np.dtype(dtype))], outs,
                            input_output_aliases={i: i for i in range(n_state)})
    attrs = {"n_steps": np.int64(n_steps), "threads": np.int64(threads), "shared_w": bool(shared_w),
             "delay_steps": np.asarray(delay_steps, np.int64), "sample_index": np.asarray(sample_index, np.int64),
             "sample_stride": np.int64(sample_stride), "integrator": np.int64(INTEGRATORS[integrator]),
             "noise_hold": np.int64(noise_hold), "conductance": np.int64(conductance_mask(conductance)),
             "event_capacity": np.int64(event_capacity)}
    attrs.update({name: np.float64(value) for name, value in constants().items()})
    attrs.update({f"{r}_mode": np.int64(MODES[modes[r]] if r in modes else 0) for r in produced})
    res = call(*args, **attrs)
    new_state = type(state)(*res[:n_state])
    raw = {RAW[0]: res[n_state], **dict(zip(present, res[n_state + 1:n_state + 1 + len(present)]))}
    raw = {r: raw[r] for r in modes}
    if event_capacity:
        raw[EVENTS_RAW] = dict(zip(("neuron", "step", "count"), res[n_state + 1 + len(present):]))
    return new_state, raw
