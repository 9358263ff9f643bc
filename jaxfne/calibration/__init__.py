"""Calibration: fit a configuration's swept parameters to target statistics, one ensemble per round.

``calibrate`` searches (CMA-ES, random, Latin hypercube) with rounds streamed
to a resumable Zarr store; ``open_calibration`` reads a store's history
lazily; ``simulate_for_inference`` draws parameters from a prior and returns
(theta, x) for simulation-based inference; ``TARGETS`` is a small table of
published firing statistics with their sources (docs/calibration.md).
Layer: uses (like ``analysis``); only ``cli`` and ``jaxfne/__init__`` import it.
"""

from ._calibrate import LOSS, Calibration, calibrate, open_calibration
from ._inference import simulate_for_inference
from ._search import STRATEGIES
from ._spec import load_calibration_spec
from ._table import PD14_POPULATION_SIZES, TABLE, pd14_fractions, table_targets
from ._targets import STATISTICS, Target, evaluate, loss, statistics
from ._viz import convergence, marginals, posterior

__all__ = ["Calibration", "LOSS", "PD14_POPULATION_SIZES", "STATISTICS", "STRATEGIES", "TABLE", "Target", "calibrate",
           "convergence", "evaluate", "load_calibration_spec", "loss", "marginals", "open_calibration",
           "pd14_fractions", "posterior", "simulate_for_inference", "statistics", "table_targets"]
