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
from .._probes import REGISTRY

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


@functools.lru_cache(maxsize=1)
def library():
    """The loaded kernel library, with its FFI targets registered; SimulationError if unavailable."""
    path, why = _build()
    if path is None:
        raise SimulationError(f"simulate: engine='native' is unavailable: {why}")
    lib = ctypes.cdll.LoadLibrary(path)
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


def native_chunk(state, params, t0, *, n_steps: int, delay_steps: tuple, shared_w: bool, vm_index,
                 vm_stride: int, want_vm: bool, want_source: bool, threads: int):
    """Advance a block of members (leading axis) by ``n_steps``; called per device inside shard_map.

    Returns (new state, {"SPK": (B, T, N), "Vm": (B, T / stride, K), "source": (B, T, N)}).
    """
    dtype = params.a.dtype
    b, n = params.a.shape
    w = params.w
    if w.ndim == (2 if shared_w else 3):     # one delay class: add the class axis
        w = w[None] if shared_w else w[:, None]
    pend_shape = state.pend_exc.shape
    args = (state.v, state.u, state.s_exc, state.s_inh, state.pend_exc, state.pend_inh,
            params.a, params.b, params.c, params.d, params.is_exc, w, params.i_mean, params.noise_scale,
            params.decay_exc, params.decay_inh, params.dt_ms, params.noise_key.astype(jnp.uint32),
            params.active, jnp.asarray(t0, jnp.int32), jnp.asarray(vm_index, jnp.int32),
            jnp.asarray(delay_steps, jnp.int32))
    sds = jax.ShapeDtypeStruct
    outs = [sds((b, n), dtype)] * 4 + [sds(pend_shape, dtype)] * 2 + [sds((b, n_steps, n), jnp.bool_)]
    if want_vm:
        outs.append(sds((b, -(-n_steps // vm_stride), len(vm_index)), dtype))
    if want_source:
        outs.append(sds((b, n_steps, n), dtype))
    call = jax.ffi.ffi_call(TARGETS[str(np.dtype(dtype))], outs,
                            input_output_aliases={i: i for i in range(6)})
    res = call(*args, n_steps=np.int64(n_steps), stride=np.int64(vm_stride), shared_w=bool(shared_w),
               want_vm=bool(want_vm), want_source=bool(want_source), threads=np.int64(threads))
    new_state = type(state)(*res[:6])
    out = {"SPK": res[6]}
    k = 7
    if want_vm:
        out["Vm"] = res[k]
        k += 1
    if want_source:
        out["source"] = res[k]
    return new_state, out
