"""Signals: recorded probes as labelled arrays (an xarray Dataset underneath)."""

from __future__ import annotations

from collections.abc import Mapping

import json

import numpy as np
import xarray as xr

from ._errors import ReadoutError

UNITS = {"SPK": "1", "Vm": "mV", "source": "a.u. (current proxy)",
         "LFP-proxy": "a.u. (proxy, uncalibrated)", "CSD-proxy": "a.u./mm^2 (proxy, uncalibrated)"}
DESCRIPTIONS = {
    "SPK": "spike raster: True where the neuron crossed 30 mV in that step",
    "Vm": "membrane potential; spikes shown at their 30 mV peak",
    "source": "net synaptic current per neuron (s_exc - s_inh), the source proxy",
    "LFP-proxy": "distance-weighted sum of sources per contact; a proxy, no volume conductor",
    "CSD-proxy": "minus the second spatial derivative of the LFP proxy; a proxy",
}


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


def layer_depths(cfg) -> dict:
    """{column: {layer: [top_um, bottom_um]}} of every layer of every column (overrides applied)."""
    return {col.name: {lay: list(col.depth_range(lay)) for lay in col.layers} for col in cfg.column_specs}


def signal_layer_depths(attrs) -> dict:
    """``layer_depths`` of the run behind some Signals attributes (stores opened lazily too).

    Reads the ``layer_depths_um`` attribute; signals written before it existed
    fall back to their ``config_json``.
    """
    if "layer_depths_um" in attrs:
        return json.loads(attrs["layer_depths_um"])
    if "config_json" in attrs:
        from ._config import Configuration
        return layer_depths(Configuration.from_dict(json.loads(attrs["config_json"])))
    raise ReadoutError("these signals carry neither 'layer_depths_um' nor 'config_json' in their attributes; "
                       "their layers' depth ranges are unknown")


def build_signals(arrays: dict, model, *, squeeze_member: bool, members=None, state_finite=None) -> Signals:
    """Wrap host arrays (member, time, ...) in a labelled Dataset.

    ``members`` are the global indices of the members in ``arrays`` (all by
    default; a subset for one process of a multi-process run).
    ``state_finite`` (bool per member of the model, optional) says whether
    the final membrane state (v, u) was finite; it becomes the ``state_finite``
    coordinate that :func:`jaxfne.check_health` reads, because a recorded Vm can
    stay finite (spikes are shown at 30 mV) while u has overflowed.
    """
    members = np.arange(model.n_members) if members is None else np.asarray(members)
    layout = model.layout
    n_time = arrays["SPK"].shape[1]
    time_ms = np.arange(n_time) * layout.dt_ms
    coords = {
        "time": ("time", time_ms, {"units": "ms", "description":
                 "t_k = k * dt: step k advances the state from t_k to t_k + dt; SPK[k] marks a threshold "
                 "crossing within that step and Vm[k] is the potential at its end (30 mV at a spike)"}),
        "neuron": ("neuron", np.arange(layout.n)),
        "layer": ("neuron", model.neuron_coords["layer"]),
        "column": ("neuron", model.neuron_coords["column"]),
        "contact": ("contact", np.arange(layout.contacts)),
        "contact_depth_um": ("contact", np.asarray(layout.contact_z_um), {"units": "um"}),
        "contact_column": ("contact", np.repeat(np.asarray(layout.columns), layout.contacts_per_column)),
    }
    per_member = {"cell_type": model.neuron_coords["cell_type"][members],
                  "depth_um": model.neuron_coords["depth_um"][members]}
    data_vars = {}
    for name, arr in arrays.items():
        geo = layout.geometry(name)
        data_vars[name] = (("member", geo["time_dim"], geo["last_dim"]), arr,
                           {"units": UNITS[name], "description": DESCRIPTIONS[name]})
    for key, val in per_member.items():
        coords[key] = (("member", "neuron"), val)
    if layout.sample_every > 1 and any(layout.geometry(n)["stride"] > 1 for n in arrays):
        n_sampled = -(-n_time // layout.sample_every)
        coords["time_sampled"] = ("time_sampled", np.arange(n_sampled) * layout.sample_every * layout.dt_ms,
                                  {"units": "ms", "description": f"every {layout.sample_every} steps: the "
                                   "sample of step k is labelled t_k = k * dt, as the time coordinate"})
    if layout.sample_neurons is not None and any(layout.geometry(n)["last_dim"] == "neuron_sampled" for n in arrays):
        idx = np.asarray(layout.sample_neurons)
        coords["neuron_sampled"] = ("neuron_sampled", idx, {"description": "global neuron index"})
        coords["layer_sampled"] = ("neuron_sampled", model.neuron_coords["layer"][idx])
        coords["column_sampled"] = ("neuron_sampled", model.neuron_coords["column"][idx])
        for key, val in per_member.items():
            coords[f"{key}_sampled"] = (("member", "neuron_sampled"), val[:, idx])
    coords["member"] = ("member", members)
    for key, val in model.member_coords.items():
        coords[key] = ("member", np.asarray(val)[members])
    if state_finite is not None:
        coords["state_finite"] = ("member", np.asarray(state_finite, dtype=bool).reshape(-1)[members])
    attrs = {"dt_ms": layout.dt_ms, "config_hash": model.config.config_hash(),
             "config_json": json.dumps(model.config.to_dict(), sort_keys=True),
             "layer_depths_um": json.dumps(layer_depths(model.config)),
             "scope": "proxy-scale outputs; LFP/CSD are proxies, not volume-conductor solutions"}
    ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    if not squeeze_member:
        for key in model.member_coords:  # .sel(seed=...) and .sel(**{"drive.current.E": ...})
            ds = ds.set_xindex(key)
    if squeeze_member:
        ds = ds.isel(member=0, drop=False).drop_vars("member", errors="ignore")
        ds = ds.drop_vars([k for k in model.member_coords if k in ds.coords and ds[k].ndim == 0 and k != "seed"])
    return Signals(ds)
