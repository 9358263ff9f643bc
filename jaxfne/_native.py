"""The native CPU engine: jaxfne/csrc/izh_chunk.cc built once per machine, called through XLA FFI.

The kernel advances a block of members by a whole chunk in one call (member ->
step -> neuron loops, the neuron loop vectorised by the compiler). It is
compiled on first use with the system C++ compiler against the XLA FFI headers
that ship with jaxlib, and cached under ``$JAXFNE_CACHE_DIR`` (default
``~/.cache/jaxfne``), keyed by the source, the jaxlib version, the compiler
flags and the CPU's instruction-set flags. No compiler: ``available()`` says
why, and ``engine="auto"`` falls back to the XLA engine.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from importlib import resources

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import SimulationError

FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-std=c++17", "-shared", "-fPIC")
TARGETS = {"float32": "jaxfne_izh_chunk_f32", "float64": "jaxfne_izh_chunk_f64"}
ENGINES = ("auto", "xla", "native")


def _source() -> bytes:
    return resources.files("jaxfne").joinpath("csrc", "izh_chunk.cc").read_bytes()


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


@functools.lru_cache(maxsize=1)
def _build() -> tuple[str | None, str]:
    """(path of the shared library, "") or (None, why it is not available)."""
    if platform.system() not in ("Linux", "Darwin"):
        return None, f"the native engine is built for Linux and macOS, not {platform.system()}"
    cc = _compiler()
    if cc is None:
        return None, "no C++ compiler found (set CXX, or install g++ or clang++)"
    import jaxlib
    src = _source()
    key = hashlib.sha256(b"\0".join([src, jaxlib.__version__.encode(), " ".join(FLAGS).encode(),
                                     cc.encode(), _cpu_flags().encode(), platform.machine().encode()]))
    name = f"izh_chunk-{key.hexdigest()[:16]}.so"
    out_dir = None
    for candidate in (cache_dir(), os.path.join(tempfile.gettempdir(), f"jaxfne-kernels-{os.getuid()}")):
        if os.path.exists(os.path.join(candidate, name)):
            return os.path.join(candidate, name), ""
        try:                             # an unwritable cache (read-only home) falls back to the temp dir
            os.makedirs(candidate, exist_ok=True)
            if os.access(candidate, os.W_OK):
                out_dir = candidate
                break
        except OSError:
            continue
    if out_dir is None:
        return None, f"no writable directory for the compiled kernel (tried {cache_dir()} and the temp dir)"
    path = os.path.join(out_dir, name)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        src_path = os.path.join(tmp, "izh_chunk.cc")
        with open(src_path, "wb") as f:
            f.write(src)
        tmp_lib = os.path.join(tmp, "lib.so")
        cmd = [cc, *FLAGS, "-I", jax.ffi.include_dir(), src_path, "-o", tmp_lib]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            errors = [line for line in proc.stderr.splitlines() if "error" in line] or proc.stderr.splitlines()
            return None, f"compiling the native engine failed ({' '.join(cmd)}): " + "\n".join(errors[:20])
        os.replace(tmp_lib, path)   # atomic: concurrent processes never load a half-written file
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


def resolve_engine(engine, devices) -> str:
    """The engine a run uses: "xla" or "native" (``auto``: native when every device is a CPU and it builds)."""
    if engine not in ENGINES:
        raise SimulationError(f"simulate: engine={engine!r} is invalid; choose one of {', '.join(map(repr, ENGINES))}")
    on_cpu = all(d.platform == "cpu" for d in devices)
    if engine == "native":
        if not on_cpu:
            raise SimulationError("simulate: engine='native' runs on CPU devices only; "
                                  f"got {sorted({d.platform for d in devices})} (use engine='xla' or 'auto')")
        library()
        return "native"
    if engine == "auto" and on_cpu:
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
        import warnings
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
