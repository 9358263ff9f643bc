"""Process setup for command-line runs: host devices on a CPU, command buffers on a GPU."""

from __future__ import annotations

import os

from ._native import _compiler


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
    if _compiler() is not None:
        return None
    import jax
    count = 2 * (os.cpu_count() or 1)
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except Exception:  # noqa: BLE001 - the backend already started, or an old JAX: keep its setup
        return None
    return count


#: XLA's CUDA command buffers including while loops and conditionals: on an H200 the XLA step took
#: 107 instead of 159 us per step at 16384 members, `simulate` 4.05e9 instead of 2.80e9 neuron-steps/s
#: (bench/RESULTS.md section 6). JAX leaves WHILE and CONDITIONAL out by default.
COMMAND_BUFFER_FLAG = "--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUSTOM_CALL,WHILE,CONDITIONAL"


def use_command_buffers() -> bool:
    """Add COMMAND_BUFFER_FLAG to XLA_FLAGS for this process unless the user set command buffers.

    For processes jaxfne owns (the command line, the main job): it must run
    before JAX's backend starts, changes nothing on a CPU, and
    JAXFNE_NO_COMMAND_BUFFERS=1 turns it off. Returns whether it was added.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_gpu_enable_command_buffer" in flags or os.environ.get("JAXFNE_NO_COMMAND_BUFFERS"):
        return False
    from jax._src import xla_bridge
    if getattr(xla_bridge, "_backends", None):   # the backend already read its flags: too late, leave them
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {COMMAND_BUFFER_FLAG}".strip()
    return True
