"""The labelled form of a run: host arrays + a model -> an xarray Dataset (dims, coordinates, attributes).

The in-memory sink and the Zarr store both take their layout from here, so
store-backed signals match in-memory ones by construction. Units and
descriptions come from the probe definitions (jaxfne/_probes.py).
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from .._probes import REGISTRY
from ._events import EVENT_SOURCE

def layer_depths(cfg) -> dict:
    """{column: {layer: [top_um, bottom_um]}} of every layer of every column (overrides applied)."""
    return {col.name: {lay: list(col.depth_range(lay)) for lay in col.layers} for col in cfg.column_specs}

def build_dataset(arrays: dict, model, *, squeeze_member: bool, members=None, state_finite=None) -> xr.Dataset:
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
                           {"units": REGISTRY[name].units, "description": REGISTRY[name].description})
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
    events = getattr(arrays, "spike_events", None)    # the sink's events (MemorySink): Signals.spike_events
    if events is not None:
        ds.encoding[EVENT_SOURCE] = events.with_members(members)
    return ds
