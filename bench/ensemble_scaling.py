"""Ensemble scaling: neuron-steps per second of the tutorial network, 16 to 4096 members.

Runs jaxfne and the plain-JAX dense baseline (jaxfne/bench/_baseline.py: vmap over
members of a matrix-vector product, threefry noise, spikes copied to the host)
side by side in one process and prints their throughput and ratio. Same table
as ``jaxfne bench``.

    python bench/ensemble_scaling.py                      # 16..1024 members, 200 ms
    python bench/ensemble_scaling.py --members 16 256 4096 --duration-ms 1000
    XLA_FLAGS=--xla_force_host_platform_device_count=2 python bench/ensemble_scaling.py
"""

import sys

from jaxfne.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", *sys.argv[1:]]))
