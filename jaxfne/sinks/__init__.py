"""Sinks: where finished chunks go (whole-run arrays in memory, or a Zarr v3 store), and the labelled form of a run."""

from . import _store  # noqa: F401 - the store layout module, used by the command line
from ._dataset import build_dataset, layer_depths
from ._memory import MemorySink
from ._verify import Damage, VerifyReport, verify_store
from ._zarr import open_dataset, simulate_to_store

__all__ = ["build_dataset", "Damage", "layer_depths", "open_dataset", "MemorySink", "simulate_to_store",
           "verify_store", "VerifyReport"]
