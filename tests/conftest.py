"""Test setup: several CPU devices, set before JAX starts."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("MPLBACKEND", "Agg")

# JAX's persistent compilation cache, one fresh folder per test run: made by the first process that loads
# this file (pytest-xdist's controller, or the only process with -n 0), named to the workers through
# JAXFNE_TEST_JAX_CACHE_DIR, removed at its exit. A program compiled once is loaded, not compiled again, by
# a later test file or the other worker that compiles the same program. An entry's key is the hash of the
# program (its HLO), the compile options, the devices and the jax/jaxlib versions, so a loaded executable
# is the one compilation would have produced: it cannot make a test's results pass that would fail compiled
# afresh; JAX reports backend_compile_duration for a load too (tests counting compilations still see one).
# Subprocesses get it only when a test asks (jax_cache_env): a child that measures its own peak memory or
# compile time would measure less with it (test_store's 2-s vs 20-s peak RSS: the second child would load
# what the first compiled). Entries are written without a lock (no filelock here): a reader that catches
# one half written cannot decompress it (zlib) and compiles instead, with the "Error reading persistent
# compilation cache entry" warning, which pytest_configure lets pass.
# Measured on 9 compile-heavy files (157 tests, -n 2, the machine loaded by other work, every subprocess
# given the cache), CPU seconds of the tests and their subprocesses: 411 without, 345 with (-16%; every
# file less; test_store_lock 79 -> 57: its contender processes load the winner's programs). Programs that
# compile in under 0.2 s are not written (the setting measured; JAX's default is 1 s).
# JAXFNE_TEST_JAX_CACHE=0 turns it off; with a JAX_COMPILATION_CACHE_DIR of your own set, that one is used
# as it is.
JAX_CACHE_MIN_COMPILE_S = "0.2"
if "JAX_COMPILATION_CACHE_DIR" in os.environ or os.environ.get("JAXFNE_TEST_JAX_CACHE", "1") == "0":
    _JAX_CACHE = None
else:
    _JAX_CACHE = os.environ.get("JAXFNE_TEST_JAX_CACHE_DIR")
    if not _JAX_CACHE:
        _JAX_CACHE = tempfile.mkdtemp(prefix="jaxfne-test-jax-cache-")
        atexit.register(shutil.rmtree, _JAX_CACHE, True)
        os.environ["JAXFNE_TEST_JAX_CACHE_DIR"] = _JAX_CACHE


def jax_cache_env() -> dict:
    """Environment variables that give a subprocess this run's compilation cache ({} when it is off). For
    children whose checks do not depend on compiling (not the ones that measure memory or compile time)."""
    if _JAX_CACHE is None:
        return {}
    return {"JAX_COMPILATION_CACHE_DIR": _JAX_CACHE,
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": JAX_CACHE_MIN_COMPILE_S}


import pytest  # noqa: E402

import jax  # noqa: E402

if _JAX_CACHE is not None:          # before anything compiles: JAX decides at its first compilation
    jax.config.update("jax_compilation_cache_dir", _JAX_CACHE)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(JAX_CACHE_MIN_COMPILE_S))

import jaxfne as jtfne  # noqa: E402

SEED_PROBES = ["SPK", "Vm", "source", "LFP-proxy", "CSD-proxy"]

from jaxfne.engine import _native  # noqa: E402

#: the engine simulate(engine="auto") picks on this machine's CPU
HAVE_COMPILER = _native._compiler() is not None
AUTO_ENGINE = "native" if HAVE_COMPILER else "xla"
#: tests of the native engine need a C++ compiler; with one, a failing build fails them (never skipped)
needs_native = pytest.mark.skipif(not HAVE_COMPILER, reason="no C++ compiler: the native engine cannot be "
                                                             "built on this machine (auto runs the XLA step)")


def pytest_configure(config):
    # a half-written entry of the persistent compilation cache (above) is compiled afresh, not an error
    config.addinivalue_line("filterwarnings", "ignore:Error reading persistent compilation cache entry:UserWarning")


def seed_page_configuration(seed=42):
    """The configuration exactly as written on the tutorial page."""
    return (jtfne.Configuration()
            .runtime(seed=seed, duration_ms=1000.0, dt_ms=0.1)
            .column(name="L2/3_column", layers=["L2/3"], n=100)
            .cell_types({"E": 0.75, "I": 0.25})
            .connectivity()
            .set_emitter(family="izhikevich", preset="cortical_eig")
            .probes(SEED_PROBES))


def seed_and_drive_ensemble(base, grid):
    """An ensemble of ``base`` built member by member, one per (seed, E drive) of ``grid``, with the member
    coordinates seed and drive.current.E (repeated pairs allowed, unlike a sweep)."""
    import numpy as np

    from jaxfne.model._construct import _construct_members
    members = [base.runtime(seed=s).drive(current={"E": c}) for s, c in grid]
    coords = {"seed": np.array([s for s, _ in grid]), "drive.current.E": np.array([c for _, c in grid])}
    return _construct_members(base, members, coords, ensemble=True)


@pytest.fixture(scope="session")
def seed_run():
    cfg = seed_page_configuration(42)
    model = jtfne.construct(cfg)
    signals = jtfne.simulate(model, duration_ms=1000.0, dt_ms=0.1, seed=42)
    return model, signals
