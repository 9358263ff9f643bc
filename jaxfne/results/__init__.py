"""Results: Signals, the manifest, health checks and readouts."""

from ._health import HealthReport, check_health
from ._manifest import SCOPE, manifest, write_manifest
from ._readout import METRICS, Readout, ReadoutSpec, compute_readout, readout_spec
from ._signals import MissingProbeError, Signals, SpikeEvents, open_signals, signal_layer_depths

__all__ = ["HealthReport", "METRICS", "MissingProbeError", "Readout", "ReadoutSpec", "SCOPE", "Signals", "SpikeEvents",
           "check_health", "compute_readout", "manifest", "open_signals", "readout_spec", "signal_layer_depths",
           "write_manifest"]
