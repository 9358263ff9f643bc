"""Signals: recorded probes as labelled arrays (an xarray Dataset underneath)."""

from __future__ import annotations

from collections.abc import Mapping

import json
from typing import NamedTuple

import numpy as np
import pandas as pd
import xarray as xr

from .._errors import ReadoutError
from ..config import Configuration
from ..sinks import layer_depths
from ..sinks._events import EVENT_SOURCE
from ..sinks._zarr import open_store

class MissingProbeError(ReadoutError, KeyError):
    """A probe that was not recorded: a ReadoutError, and a KeyError for the Mapping protocol
    (so ``signals.get(name)`` and ``name in signals`` work)."""

    __str__ = BaseException.__str__   # KeyError would quote the message

class SpikeEvents(NamedTuple):
    """The spikes of one network as events, sorted by time, then neuron.

    ``times_ms`` (float64): the step's time, ``step * dt_ms``, as the raster's
    time coordinate; ``neurons`` (int64): the neuron's label (index in the
    network); ``steps`` (int64): the step index.
    """

    times_ms: np.ndarray
    neurons: np.ndarray
    steps: np.ndarray


#: steps read at a time when events are gathered from a dense raster (a store's never loads whole)
EVENT_BLOCK_STEPS = 2000


class Signals(Mapping):
    """Recorded probes, keyed by probe name, each an ``xarray.DataArray``.

    Single networks have dims (time, neuron) or (time, contact); ensembles add
    a leading ``member`` dim with member coordinates (seed and swept values).
    ``np.asarray(signals["Vm"])`` gives the plain array.

    ``events``: the run's spikes as events (``spike_events`` reads them), as
    the sink kept them: ``RunEvents`` in memory, ``StoredEvents`` for a store
    (which also gives the stored ``counts()``), or None (a schema-1 store, a
    hand-made dataset: the raster is read). Every member of the run may be in
    it; these signals' ``member`` coordinate (the global index) picks theirs,
    so ``sel``/``isel``, which hand the same source on, keep it consistent.
    When not given, the source attached to ``dataset.encoding`` is taken
    (datasets made by ``build_dataset`` or ``open_dataset``, and copies of a
    Signals' ``dataset``).
    """

    def __init__(self, dataset: xr.Dataset, events=None):
        self._ds = dataset
        self._events = dataset.encoding.get(EVENT_SOURCE) if events is None else events
        if self._events is not None and not callable(getattr(self._events, "member", None)):
            raise ReadoutError(f"Signals: events={self._events!r} is invalid; an event source with a "
                               "member(member, start, stop) method (RunEvents, StoredEvents) or None is required")

    @property
    def dataset(self) -> xr.Dataset:
        return self._ds

    @property
    def events(self):
        """The event source these signals read spikes from (see the class docstring), or None."""
        return self._events

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

    def sel(self, indexers=None, method=None, tolerance=None, drop: bool = False, **indexers_kwargs) -> "Signals":
        """Select by coordinate label, as ``xarray.Dataset.sel``: a mapping, keywords, or both.

        ``signals.sel(seed=2)``, ``signals.sel({"drive.current.E": 5.0})`` and
        several member coordinates at once, ``signals.sel({"cell_types.E": 0.8,
        "drive.current.E": 5.0})``, which gives what chaining one ``.sel`` per
        coordinate gives. A member coordinate (seed, a swept path, member)
        takes a scalar, a list or a label slice (inclusive); a scalar that
        matches one member drops the member dim, as in xarray, and a list keeps
        it. Member coordinates are applied one after the other, in the order
        given, then every other coordinate (time, neuron, ...) in one xarray
        call. ``method`` and ``tolerance`` apply to every coordinate (a member
        coordinate snaps each value to the nearest one it holds). An unknown
        coordinate or a value no member holds raises ReadoutError.
        """
        if indexers is not None and not isinstance(indexers, Mapping):
            raise ReadoutError(f"signals.sel: indexers={indexers!r} is invalid; a mapping of coordinate name to "
                               "value(s) is required (or keyword arguments)")
        both = set(indexers or {}) & set(indexers_kwargs)
        if both:
            raise ReadoutError(f"signals.sel: {sorted(both)} given both in indexers and as keywords; give each "
                               "coordinate once")
        query = {**(indexers or {}), **indexers_kwargs}
        ds = self._ds
        for key in query:
            if key not in ds.xindexes:
                what = "is not an indexed coordinate" if key in ds.coords else "is not a coordinate"
                valid = sorted(k for k in ds.xindexes if k in ds.dims) + [k for k in ds.xindexes if k not in ds.dims]
                raise ReadoutError(f"signals.sel: {key!r} {what} of these signals; valid ones are "
                                   f"{', '.join(map(str, valid))}")
        per_member = {k: v for k, v in query.items() if ds[k].dims == ("member",)}
        for key, value in per_member.items():
            ds = self._sel_member(ds, key, value, method, tolerance)
        if drop and per_member and "member" not in ds.dims:   # as xarray: no scalar member coordinates left
            ds = ds.drop_vars([k for k in ds.coords if k in self._ds.coords and self._ds[k].dims == ("member",)])
        rest = {k: v for k, v in query.items() if k not in per_member}
        if rest:
            try:
                ds = ds.sel(rest, method=method, tolerance=tolerance, drop=drop)
            except (KeyError, ValueError, TypeError, IndexError, NotImplementedError) as err:
                raise ReadoutError(f"signals.sel: {rest!r} does not select from these signals "
                                   f"({type(err).__name__}: {err})") from err
        return Signals(ds, events=self._events)

    @staticmethod
    def _sel_member(ds, key, value, method, tolerance):
        """One member coordinate of a ``sel``: the members whose ``key`` matches ``value``."""
        def bad(why):
            return ReadoutError(f"signals.sel: {key}={value!r} is invalid; {why}")

        coord = ds[key]
        held = pd.Index(np.unique(np.asarray(coord.values).reshape(-1)))
        if isinstance(value, slice):
            if value.step is not None or method is not None:
                raise bad("a label slice takes no step and no method")
            vals = np.asarray(coord.values)
            keep = np.ones(vals.shape, dtype=bool)
            try:
                if value.start is not None:
                    keep &= vals >= value.start
                if value.stop is not None:
                    keep &= vals <= value.stop
            except TypeError as err:
                raise bad(f"its bounds cannot be compared with the values {held.tolist()}") from err
            scalar, wanted = False, None
        else:
            if isinstance(value, xr.DataArray):
                value = value.values
            scalar = np.ndim(value) == 0 and not isinstance(value, (list, tuple, set))
            labels = [value] if scalar else (value.tolist() if hasattr(value, "tolist") else list(value))
            try:
                pos = held.get_indexer(labels, method=method, tolerance=tolerance)
            except (TypeError, ValueError, KeyError) as err:
                raise bad(f"method={method!r}, tolerance={tolerance!r} do not apply to the values "
                          f"{held.tolist()} ({err})") from err
            if (pos < 0).any():
                missing = [lab for lab, p in zip(labels, pos) if p < 0]
                raise bad(f"no member has {key} = {', '.join(map(repr, missing))}; its values are {held.tolist()}")
            wanted = held[pos]
            keep = np.isin(np.asarray(coord.values), np.asarray(wanted))
        if "member" not in ds.dims:       # one member left: it must match
            if not bool(keep):
                raise bad(f"the one member left has {key} = {coord.values.item()!r}")
            return ds
        idx = np.flatnonzero(keep)
        if idx.size == 0:
            raise bad(f"no member has {key} in that range; its values are {held.tolist()}")
        if key == "member" and not scalar and wanted is not None:
            idx = np.asarray([i for w in wanted for i in np.flatnonzero(np.asarray(coord.values) == w)])
        return ds.isel(member=int(idx[0]) if scalar and idx.size == 1 else idx)

    def isel(self, indexers=None, drop: bool = False, missing_dims: str = "raise", **indexers_kwargs) -> "Signals":
        """Select by position, as ``xarray.Dataset.isel``: a mapping, keywords, or both.

        An unknown dimension raises ReadoutError naming it and the dims these
        signals have (unless ``missing_dims`` is "ignore" or "warn").
        """
        if indexers is not None and not isinstance(indexers, Mapping):
            raise ReadoutError(f"signals.isel: indexers={indexers!r} is invalid; a mapping of dimension name to "
                               "position(s) is required (or keyword arguments)")
        query = {**(indexers or {}), **indexers_kwargs}
        if missing_dims == "raise":
            for key in query:
                if key not in self._ds.dims:
                    raise ReadoutError(f"signals.isel: {key!r} is not a dimension of these signals; valid ones are "
                                       f"{', '.join(sorted(map(str, self._ds.dims)))}")
        try:
            return Signals(self._ds.isel(query, drop=drop, missing_dims=missing_dims), events=self._events)
        except (IndexError, ValueError, TypeError) as err:
            raise ReadoutError(f"signals.isel: {query!r} does not select from these signals "
                               f"({type(err).__name__}: {err})") from err

    def network(self, member=None, *, where: str = "signals.network") -> "Signals":
        """The Signals of one network: ``member`` (a position 0..members-1) of an ensemble, or these
        signals themselves when they hold one network (then ``member`` must be None)."""
        if self.is_ensemble:
            n = self._ds.sizes["member"]
            if member is None:
                raise ReadoutError(f"{where}: these signals hold an ensemble of {n} members; pick one network "
                                   f"with member=<index 0..{n - 1}>")
            if isinstance(member, bool) or not isinstance(member, (int, np.integer)) or not 0 <= member < n:
                raise ReadoutError(f"{where}: member={member!r} is invalid; an index 0..{n - 1} is required")
            return self.isel(member=int(member))
        if member is not None:
            raise ReadoutError(f"{where}: member={member!r} is invalid; these signals hold one network (member=None)")
        return self

    def spike_events(self, member=None) -> SpikeEvents:
        """The spikes of one network (``member`` of an ensemble) as events, sorted by time then neuron.

        Read from the run's events (kept by the in-memory sink, stored in a
        store of schema 2) for the steps and neurons these signals hold; signals
        without them (stores of schema 1, datasets built by hand) are read from
        the raster in blocks of time, so store-backed signals never load whole.
        Either way the result is the same, bit for bit.
        """
        net = self.network(member, where="signals.spike_events")
        spk = net["SPK"].transpose("time", "neuron")
        time_ms = np.asarray(spk["time"].values, dtype=np.float64)
        labels = np.asarray(spk["neuron"].values, dtype=np.int64)
        source = net.events
        if source is not None and time_ms.size:
            first = int(round(time_ms[0] / self.dt_ms))
            # only a contiguous run of steps labelled as the run labels them (build_dataset: k * dt_ms)
            if np.array_equal(time_ms, np.arange(first, first + time_ms.size) * self.dt_ms):
                which = int(net._ds["member"].values) if "member" in net._ds.coords else 0
                step, neuron = source.member(which, first, first + time_ms.size)
                if not np.array_equal(labels, np.arange(labels.size)):      # a selection of neurons
                    keep = np.isin(neuron, labels)
                    step, neuron = step[keep], neuron[keep]
                return SpikeEvents(time_ms[step - first], neuron, step)
        steps, neurons = [], []
        for start in range(0, spk.sizes["time"], EVENT_BLOCK_STEPS):
            ti, ni = np.nonzero(np.asarray(spk.isel(time=slice(start, start + EVENT_BLOCK_STEPS)).values))
            steps.append(start + ti.astype(np.int64))
            neurons.append(labels[ni])
        step = np.concatenate(steps) if steps else np.zeros(0, np.int64)
        neuron = np.concatenate(neurons) if neurons else np.zeros(0, np.int64)
        return SpikeEvents(time_ms[step], neuron, step)

    def spike_raster(self, time=None, member=None) -> xr.DataArray:
        """The dense spike raster (time x neuron booleans) of one network, or of every member when
        ``member`` is None, restricted to ``time`` (a label slice in ms, as ``sel``); lazy for stores."""
        net = self if member is None else self.network(member, where="signals.spike_raster")
        spk = net["SPK"]
        return spk if time is None else Signals(spk.to_dataset(), events=net.events).sel(time=time)["SPK"]

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
    dataset, events = open_store(store, allow_incomplete=allow_incomplete)
    return Signals(dataset, events=events)
