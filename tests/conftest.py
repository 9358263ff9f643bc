"""Test setup: several CPU devices, set before JAX starts."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

import jaxfne as jtfne  # noqa: E402

SEED_PROBES = ["SPK", "Vm", "source", "LFP-proxy", "CSD-proxy"]

from jaxfne.engine import _native  # noqa: E402

#: the engine simulate(engine="auto") picks on this machine's CPU
HAVE_COMPILER = _native._compiler() is not None
AUTO_ENGINE = "native" if HAVE_COMPILER else "xla"
#: tests of the native engine need a C++ compiler; with one, a failing build fails them (never skipped)
needs_native = pytest.mark.skipif(not HAVE_COMPILER, reason="no C++ compiler: the native engine cannot be "
                                                             "built on this machine (auto runs the XLA step)")


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
