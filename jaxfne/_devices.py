"""Host-device setup for command-line runs on a CPU."""

from __future__ import annotations

import os


def use_host_devices() -> int | None:
    """Give the CPU backend several devices (2 per core) unless the user chose a count.

    XLA:CPU runs one device's program on one thread well but gains little from
    its intra-op threads here; shards of the member axis on separate host
    devices run in parallel (x2.3 at 1024 members on 2 cores, bench/NOTES.md
    P2). Member results do not depend on the device count (tested). Must run
    before JAX's backend starts; does nothing otherwise. Returns the count set.

    Not needed for the native CPU engine (docs/engines.md), which threads over
    the cores itself and runs fastest on one device: nothing is set when a C++
    compiler is present (the engine then builds; "auto" picks it).
    """
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "") or \
            os.environ.get("JAX_NUM_CPU_DEVICES"):
        return None
    from ._native import _compiler
    if _compiler() is not None:
        return None
    import jax
    count = 2 * (os.cpu_count() or 1)
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except Exception:  # noqa: BLE001 - the backend already started, or an old JAX: keep its setup
        return None
    return count
