"""jaxfne: ensembles of spiking Izhikevich networks in JAX.

Import as ``import jaxfne as jtfne``. This module only re-exports. The
package is layered, each layer importing only those below it
(docs/architecture.md): base modules -> ``config`` -> ``model`` -> ``engine``
-> ``sinks`` -> ``results`` -> ``_api`` -> ``analysis``, ``viz``,
``export``, ``bench``, ``calibration`` -> ``cli``.
"""

from ._api import Model, construct, simulate
from ._errors import (ConfigurationError, JaxfneError, ReadoutError, SimulationError, StepsError,
                      StoreError)
from ._probes import REGISTRY as PROBES_REGISTRY
from ._version import __version__
from .config import Configuration
from .config import REGISTRY as PRESETS
from .config import preset_names, register_preset
from .engine import available as native_engine_available
from .results import (METRICS, SCOPE, HealthReport, Readout, ReadoutSpec, Signals, SpikeEvents, check_health, compute_readout,
                      manifest, open_signals, readout_spec, write_manifest)
from .sinks import VerifyReport, verify_store
from . import analysis, calibration, viz
from .calibration import Calibration, calibrate, open_calibration, simulate_for_inference
from .export import to_neo, to_nwb, to_sonata

__all__ = [
    "analysis", "calibrate", "calibration", "Calibration", "Configuration", "ConfigurationError", "HealthReport", "JaxfneError", "METRICS", "Model", "PRESETS",
    "PROBES_REGISTRY", "Readout", "ReadoutError", "ReadoutSpec", "SCOPE", "Signals", "SimulationError", "SpikeEvents", "StepsError", "StoreError",
    "__version__", "check_health", "compute_readout", "construct", "manifest", "native_engine_available", "preset_names", "register_preset",
    "open_calibration", "open_signals", "readout_spec", "simulate", "simulate_for_inference", "to_neo", "to_nwb", "to_sonata", "verify_store", "VerifyReport", "viz",
    "write_manifest",
]
