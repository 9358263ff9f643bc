"""Signals: recorded probes as labelled arrays (an xarray Dataset underneath)."""

from __future__ import annotations

from collections.abc import Mapping

import json

import xarray as xr

from .._errors import ReadoutError
from ..config import Configuration
from ..sinks import layer_depths, open_dataset

class MissingProbeError(ReadoutError, KeyError):
    """A probe that was not recorded: a ReadoutError, and a KeyError for the Mapping protocol
    (so ``signals.get(name)`` and ``name in signals`` work)."""

    __str__ = BaseException.__str__   # KeyError would quote the message

class Signals(Mapping):
    """Recorded probes, keyed by probe name, each an ``xarray.DataArray``.

    Single networks have dims (time, neuron) or (time, contact); ensembles add
    a leading ``member`` dim with member coordinates (seed and swept values).
    ``np.asarray(signals["Vm"])`` gives the plain array.
    """

    def __init__(self, dataset: xr.Dataset):
        self._ds = dataset

    @property
    def dataset(self) -> xr.Dataset:
        return self._ds

    @property
    def attrs(self) -> dict:
        return self._ds.attrs

    @property
    def dt_ms(self) -> float:
        return float(self._ds.attrs["dt_ms"])

    @property
    def duration_ms(self) -> float:
        return float(self._ds.sizes["time"] * self.dt_ms)

    @property
    def is_ensemble(self) -> bool:
        return "member" in self._ds.dims

    def __getitem__(self, name: str) -> xr.DataArray:
        if not self.__contains__(name):
            raise MissingProbeError(f"signals[{name!r}]: no such probe; recorded probes are {', '.join(self)}")
        return self._ds[name]

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and name in self._ds.data_vars

    def __iter__(self):
        return iter(self._ds.data_vars)

    def __len__(self) -> int:
        return len(self._ds.data_vars)

    def sel(self, **indexers) -> "Signals":
        return Signals(self._ds.sel(**indexers))

    def isel(self, **indexers) -> "Signals":
        return Signals(self._ds.isel(**indexers))

    def __repr__(self) -> str:
        return f"Signals({', '.join(self)}; dims {dict(self._ds.sizes)})"

def signal_layer_depths(attrs) -> dict:
    """``layer_depths`` of the run behind some Signals attributes (stores opened lazily too).

    Reads the ``layer_depths_um`` attribute; signals written before it existed
    fall back to their ``config_json``.
    """
    if "layer_depths_um" in attrs:
        return json.loads(attrs["layer_depths_um"])
    if "config_json" in attrs:
        return layer_depths(Configuration.from_dict(json.loads(attrs["config_json"])))
    raise ReadoutError("these signals carry neither 'layer_depths_um' nor 'config_json' in their attributes; "
                       "their layers' depth ranges are unknown")


def open_signals(store, *, allow_incomplete: bool = False) -> Signals:
    """Signals of a jaxfne Zarr store, backed by Dask arrays (nothing is loaded).

    The result has the names, dims and coordinates of in-memory Signals of the
    same run. An unfinished store raises StoreError unless
    ``allow_incomplete=True``, which gives the completed chunks only.
    """
    return Signals(open_dataset(store, allow_incomplete=allow_incomplete))
