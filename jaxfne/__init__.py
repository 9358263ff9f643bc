"""jaxfne: ensembles of spiking Izhikevich networks in JAX.

Import as ``import jaxfne as jtfne``. This module only re-exports.
"""

from ._config import Configuration
from ._errors import (ConfigurationError, JaxfneError, ReadoutError, SimulationError,
                      StoreError)
from ._health import HealthReport, check_health
from ._manifest import SCOPE, manifest, write_manifest
from ._model import Model, construct
from ._native import available as native_engine_available
from ._presets import REGISTRY as PRESETS
from ._presets import preset_names
from ._readout import METRICS, Readout, ReadoutSpec, compute_readout, readout_spec
from ._signals import Signals
from ._simulate import simulate
from ._stream import open_signals
from ._version import __version__
from . import analysis, viz
from .export import to_neo, to_nwb

__all__ = [
    "analysis", "Configuration", "ConfigurationError", "HealthReport", "JaxfneError", "METRICS", "Model", "PRESETS",
    "Readout", "ReadoutError", "ReadoutSpec", "SCOPE", "Signals", "SimulationError", "StoreError",
    "__version__", "check_health", "compute_readout", "construct", "manifest", "native_engine_available", "preset_names",
    "open_signals", "readout_spec", "simulate", "to_neo", "to_nwb", "viz", "write_manifest",
]
