"""Readouts: named scalar metrics of recorded signals, one value per member."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import xarray as xr

from .._errors import ConfigurationError, ReadoutError
from .._probes import REGISTRY
from .._stats import cv_from_isi_sums, mean_cv, raster_isi_sums
from ..config import CELL_TYPES, LAYER_DEPTHS_UM
from ._signals import signal_layer_depths

#: metric -> (probe it reads, units): the units of a metric of a probe's values are the probe's (jaxfne/_probes.py)
METRICS = {
    "spike_rate_hz": ("SPK", "Hz"),
    "spike_count": ("SPK", "spikes"),
    "cv_isi": ("SPK", "1"),
    "mean_V_m": ("Vm", REGISTRY["Vm"].units),
    "min_V_m": ("Vm", REGISTRY["Vm"].units),
    "max_V_m": ("Vm", REGISTRY["Vm"].units),
    "source_abs_mean": ("source", REGISTRY["source"].units),
    "lfp_abs_mean": ("LFP-proxy", REGISTRY["LFP-proxy"].units),
    "csd_abs_mean": ("CSD-proxy", REGISTRY["CSD-proxy"].units),
}


@dataclasses.dataclass(frozen=True)
class ReadoutSpec:
    name: str
    metric: str
    cell_type: str | None = None
    layer: str | None = None
    time_window_ms: tuple | None = None
    column: str | None = None


@dataclasses.dataclass(frozen=True)
class Readout:
    """A computed readout: ``value`` is a float (one network) or an array (one per member)."""

    name: str
    metric: str
    value: object
    units: str
    data: xr.DataArray
    selectors: dict

    def __float__(self) -> float:
        return float(self.value)

    def to_dict(self) -> dict:
        val = self.value
        val = val.tolist() if isinstance(val, np.ndarray) else float(val)
        return {"metric": self.metric, "value": val, "units": self.units, "selectors": self.selectors}


def readout_spec(name, metric, *, cell_type=None, layer=None, time_window_ms=None, column=None) -> ReadoutSpec:
    """Declare a readout: its name, a metric from METRICS and optional selectors.

    ``column`` selects one column of a several-column network (its neurons,
    or for the field metrics its contacts).
    """
    w = "readout_spec"
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{w}: name={name!r} is invalid; a non-empty string is required")
    if metric not in METRICS:
        raise ConfigurationError(f"{w}: metric={metric!r} is unknown; valid metrics are {', '.join(sorted(METRICS))}")
    if cell_type is not None and cell_type not in CELL_TYPES:
        raise ConfigurationError(f"{w}: cell_type={cell_type!r} is unknown; valid cell types are {', '.join(CELL_TYPES)}")
    if layer is not None and layer not in LAYER_DEPTHS_UM:
        raise ConfigurationError(f"{w}: layer={layer!r} is unknown; valid layers are {', '.join(LAYER_DEPTHS_UM)}")
    if column is not None and (not isinstance(column, str) or not column):
        raise ConfigurationError(f"{w}: column={column!r} is invalid; a column name (non-empty string) is required")
    if time_window_ms is not None:
        ok = (hasattr(time_window_ms, "__len__") and len(time_window_ms) == 2
              and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in time_window_ms)
              and 0 <= time_window_ms[0] < time_window_ms[1])
        if not ok:
            raise ConfigurationError(f"{w}: time_window_ms={time_window_ms!r} is invalid; a pair (start, stop) "
                                     "with 0 <= start < stop in ms is required")
        time_window_ms = (float(time_window_ms[0]), float(time_window_ms[1]))
    if metric in ("lfp_abs_mean", "csd_abs_mean") and cell_type is not None:
        raise ConfigurationError(f"{w}: cell_type={cell_type!r} is invalid for metric {metric!r}; "
                                 "field proxies sum all cells (select contacts with layer=)")
    return ReadoutSpec(name, metric, cell_type, layer, time_window_ms, column)


def _columns_of(da: xr.DataArray, coord: str) -> np.ndarray | None:
    return np.asarray(da[coord].values).astype(str) if coord in da.coords else None


def _select_column(da: xr.DataArray, spec: ReadoutSpec, dim: str, coord: str) -> xr.DataArray:
    labels = _columns_of(da, coord)
    if labels is None or spec.column not in labels:
        known = "unknown" if labels is None else ", ".join(dict.fromkeys(labels.tolist()))
        raise ReadoutError(f"readout {spec.name!r}: column={spec.column!r} is not a column of these signals; "
                           f"their columns are {known}")
    return da.isel({dim: np.flatnonzero(labels == spec.column)})


def _layer_contacts(da: xr.DataArray, spec: ReadoutSpec, attrs) -> xr.DataArray:
    """The contacts lying in ``spec.layer``'s depth range of their own column (depth overrides honoured)."""
    depths = signal_layer_depths(attrs)
    z = np.asarray(da["contact_depth_um"].values, dtype=float)
    cols = _columns_of(da, "contact_column")
    cols = np.full(z.shape, next(iter(depths))) if cols is None else cols
    ranges = {c: depths.get(c, {}).get(spec.layer) for c in dict.fromkeys(cols.tolist())}
    keep = np.zeros(z.shape, bool)
    for c, rng in ranges.items():
        if rng is not None:
            keep |= (cols == c) & (z >= rng[0]) & (z <= rng[1])
    if not keep.any():
        where = ", ".join(f"{c} {rng[0]}-{rng[1]} um" if rng else f"{c} has no {spec.layer}"
                          for c, rng in ranges.items())
        raise ReadoutError(f"readout {spec.name!r}: no contact lies in layer {spec.layer!r} ({where})")
    return da.isel(contact=np.flatnonzero(keep))


def _select(da: xr.DataArray, spec: ReadoutSpec, dt_ms: float, attrs=None) -> xr.DataArray:
    tdim = "time_sampled" if "time_sampled" in da.dims else "time"
    if spec.time_window_ms is not None:
        start, stop = spec.time_window_ms
        t = da[tdim].values
        end = da.sizes[tdim] and float(t[-1]) + (float(t[1] - t[0]) if t.size > 1 else dt_ms)
        if start >= end:
            raise ReadoutError(f"readout {spec.name!r}: time_window_ms={spec.time_window_ms} starts after the "
                               f"recording ends ({end} ms)")
        da = da.isel({tdim: np.flatnonzero((t >= start - 1e-9) & (t < stop - 1e-9))})
        if da.sizes[tdim] == 0:
            step = float(t[1] - t[0]) if t.size > 1 else dt_ms
            raise ReadoutError(f"readout {spec.name!r}: time_window_ms={spec.time_window_ms} contains no step "
                               f"start (samples start every {step:g} ms); widen the window")
    ndim = "neuron_sampled" if "neuron_sampled" in da.dims else "neuron" if "neuron" in da.dims else None
    if ndim is not None:
        sfx = "_sampled" if ndim == "neuron_sampled" else ""
        if spec.column is not None:
            da = _select_column(da, spec, ndim, "column" + sfx)
        if spec.layer is not None:
            layers = np.asarray(da["layer" + sfx].values)
            if spec.layer not in layers:
                known = ", ".join(dict.fromkeys(layers.tolist()))
                col = f"column {spec.column!r}" if spec.column is not None else "this column"
                why = (f"is not in {col}; its layers are {known}" if not sfx else
                       f"has no neuron recorded by this probe; recorded layers are {known}")
                raise ReadoutError(f"readout {spec.name!r}: layer={spec.layer!r} {why}")
            da = da.isel({ndim: np.flatnonzero(layers == spec.layer)})
        if spec.cell_type is not None:
            mask = da["cell_type" + sfx] == spec.cell_type
            if not bool(mask.any()):
                where = f" in layer {spec.layer!r}" if spec.layer is not None else ""
                raise ReadoutError(f"readout {spec.name!r}: cell_type={spec.cell_type!r} selects no neuron{where}; "
                                   "this network has none of that type")
            # works for per-member cell types too; a member without the type reads NaN
            da = da.where(mask)
    else:
        if spec.column is not None:
            da = _select_column(da, spec, "contact", "contact_column")
        if spec.layer is not None:
            da = _layer_contacts(da, spec, attrs if attrs is not None else {})
    return da


def _cv_isi(spk: np.ndarray) -> float:
    """Mean over neurons with >= 2 ISIs of std(ISI)/mean(ISI) (ddof=0); NaN if none (jaxfne._stats)."""
    return mean_cv(cv_from_isi_sums(raster_isi_sums(np.asarray(spk, dtype=bool))))


def _compute_one(signals, spec: ReadoutSpec) -> Readout:
    probe, units = METRICS[spec.metric]
    if probe not in signals:
        raise ReadoutError(f"readout {spec.name!r}: metric {spec.metric!r} needs probe {probe!r}, which was not "
                           f"recorded; add it with Configuration.probes([... , {probe!r}])")
    dt_ms = signals.dt_ms
    da = _select(signals[probe], spec, dt_ms, signals.attrs)
    other = [d for d in da.dims if d != "member"]
    m = spec.metric
    if m in ("spike_rate_hz", "spike_count"):
        spikes = da.astype(float)
        count = spikes.sum(other)
        if m == "spike_count":
            out = count
        else:
            cells = (da["cell_type"] == spec.cell_type).sum("neuron") if spec.cell_type else da.sizes["neuron"]
            out = count / (cells * da.sizes["time"] * dt_ms / 1000.0)
    elif m == "cv_isi":
        arr = da.fillna(False).astype(bool)
        if "member" in arr.dims:
            vals = []
            for i in range(arr.sizes["member"]):
                sub = arr.isel(member=i)
                if spec.cell_type is not None:
                    sub = sub.isel(neuron=np.flatnonzero(np.asarray(sub["cell_type"]) == spec.cell_type))
                vals.append(_cv_isi(sub.values))
            out = xr.DataArray(np.array(vals), dims=("member",), coords={k: v for k, v in da.coords.items()
                                                                       if v.dims == ("member",)})
        else:
            if spec.cell_type is not None:
                arr = arr.isel(neuron=np.flatnonzero(np.asarray(arr["cell_type"]) == spec.cell_type))
            out = xr.DataArray(_cv_isi(arr.values))
    elif m == "mean_V_m":
        out = da.mean(other)
    elif m == "min_V_m":
        out = da.min(other)
    elif m == "max_V_m":
        out = da.max(other)
    else:  # *_abs_mean
        out = abs(da).mean(other)
    out = out.astype(float)
    value = float(out.values) if out.ndim == 0 else np.asarray(out.values)
    selectors = {k: v for k, v in (("column", spec.column), ("cell_type", spec.cell_type), ("layer", spec.layer),
                                   ("time_window_ms", spec.time_window_ms)) if v is not None}
    return Readout(spec.name, spec.metric, value, units, out.rename(spec.name), selectors)


def compute_readout(signals, specs) -> dict:
    """Compute readouts; ``specs`` is one ReadoutSpec or a list of them."""
    if isinstance(specs, ReadoutSpec):
        specs = [specs]
    out = {}
    for spec in specs:
        if not isinstance(spec, ReadoutSpec):
            raise ReadoutError(f"compute_readout: {spec!r} is not a readout spec; build specs with jaxfne.readout_spec")
        if spec.name in out:
            raise ReadoutError(f"compute_readout: readout name {spec.name!r} is used twice")
        out[spec.name] = _compute_one(signals, spec)
    return out
