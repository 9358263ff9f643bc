"""Interoperability: one network's Signals as a neo Block or an NWB file.

``to_neo`` needs ``neo`` (and ``quantities``); ``to_nwb`` needs ``pynwb``.
Both come with the optional extra ``pip install 'jaxfne[interop]'``.

Spike times are the ``time`` coordinate of the spike's step (its start, in
ms; seconds in NWB), exactly what ``signals["SPK"]`` and the raster show.
Signals of an ensemble need ``member=`` to pick one network.
"""

from __future__ import annotations

import datetime
import json
import pathlib

import numpy as np

from ._errors import ReadoutError
from .results import SCOPE
from ._version import __version__
from .viz import _network, _recorded, spike_coordinates


def _require(module: str, where: str):
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(f"{where} needs the package {module!r}; install it with pip install 'jaxfne[interop]'") from None


def _spike_trains(sig):
    """Per neuron: (label, times_ms, cell_type, layer, depth_um), in neuron order."""
    spk = sig["SPK"]
    labels = np.asarray(spk["neuron"].values)
    cell_type = np.asarray(spk["cell_type"].values).astype(str)
    layer = np.asarray(spk["layer"].values).astype(str)
    depth = np.asarray(spk["depth_um"].values, dtype=float) if "depth_um" in spk.coords else np.full(labels.size, np.nan)
    times, neurons = spike_coordinates(sig)
    order = np.argsort(neurons, kind="stable")
    times, neurons = times[order], neurons[order]
    bounds = np.searchsorted(neurons, labels, side="left"), np.searchsorted(neurons, labels, side="right")
    return [(int(n), times[lo:hi], str(ct), str(la), float(dz))
            for n, lo, hi, ct, la, dz in zip(labels, *bounds, cell_type, layer, depth)]


def _member_info(sig) -> dict:
    """Scalar coordinates left after selecting one member (seed, swept values)."""
    out = {}
    for name, coord in sig.dataset.coords.items():
        if coord.ndim == 0:
            val = coord.values.item()
            out[str(name)] = val.decode() if isinstance(val, bytes) else val
    return out


def to_neo(signals, member=None, *, vm: bool = True):
    """A ``neo.Block`` with one Segment: a SpikeTrain per neuron and, if
    recorded (and ``vm``), one AnalogSignal of Vm (mV, one channel per neuron).

    Each SpikeTrain is in ms from 0 to the run's duration (``t_stop``) and is
    annotated with ``neuron`` (index), ``cell_type``, ``layer`` and ``depth_um``.
    The Block carries the configuration hash, the scope block and the member's
    coordinates (seed, swept values) as annotations.
    """
    neo = _require("neo", "to_neo")
    pq = _require("quantities", "to_neo")
    sig = _network(signals, member, "to_neo")
    duration = sig.duration_ms
    info = _member_info(sig)
    block = neo.Block(name="jaxfne simulation", description=str(sig.attrs.get("scope", "")),
                      config_hash=str(sig.attrs.get("config_hash", "")), jaxfne_version=__version__,
                      dt_ms=sig.dt_ms, **SCOPE,
                      **{f"member_{k}": v for k, v in info.items()})
    seg = neo.Segment(name="network", index=0, **{f"member_{k}": v for k, v in info.items()})
    block.segments.append(seg)
    for label, times, ctype, layer, depth in _spike_trains(sig):
        seg.spiketrains.append(neo.SpikeTrain(
            times, units=pq.ms, t_start=0.0 * pq.ms, t_stop=duration * pq.ms, name=f"neuron {label}",
            neuron=label, cell_type=ctype, layer=layer, depth_um=depth))
    if vm and _recorded(sig, "Vm"):
        da = sig["Vm"].transpose("time", "neuron")
        seg.analogsignals.append(neo.AnalogSignal(
            np.asarray(da.values), units=pq.mV, sampling_period=sig.dt_ms * pq.ms, t_start=0.0 * pq.ms,
            name="Vm", description=str(da.attrs.get("description", "membrane potential")),
            array_annotations={"neuron": np.asarray(da["neuron"].values),
                               "cell_type": np.asarray(da["cell_type"].values).astype(str),
                               "layer": np.asarray(da["layer"].values).astype(str)}))
    return block


def to_nwb(signals, member=None, *, path, vm: bool = True, overwrite: bool = False,
           session_start_time: datetime.datetime | None = None) -> pathlib.Path:
    """Write one network to an NWB file at ``path`` and return the path.

    The Units table has one row per neuron: its spike times in seconds and the
    columns ``cell_type``, ``layer`` and ``depth_um``. If Vm was recorded (and
    ``vm``), it is stored as the acquisition TimeSeries "Vm" (data in mV,
    conversion 1e-3 to volts). The file's notes hold the configuration hash,
    the scope block and the member's coordinates as JSON. ``session_start_time``
    defaults to the time of writing (a simulation has no session).
    """
    pynwb = _require("pynwb", "to_nwb")
    sig = _network(signals, member, "to_nwb")
    path = pathlib.Path(path)
    if path.exists() and not overwrite:
        raise ReadoutError(f"to_nwb: path={str(path)!r} exists; pass overwrite=True to replace it")
    start = session_start_time or datetime.datetime.now(datetime.timezone.utc)
    if start.tzinfo is None:
        raise ReadoutError(f"to_nwb: session_start_time={start!r} is invalid; a timezone-aware datetime is required")
    info = _member_info(sig)
    config_hash = str(sig.attrs.get("config_hash", ""))
    notes = {"config_hash": config_hash, "jaxfne_version": __version__, "dt_ms": sig.dt_ms,
             "duration_ms": sig.duration_ms, **SCOPE, "member": info,
             "scope": str(sig.attrs.get("scope", ""))}
    ident = f"jaxfne-{config_hash[:16]}-" + "-".join(f"{k}={v}" for k, v in info.items())
    nwb = pynwb.NWBFile(
        session_description="jaxfne simulation of a spiking Izhikevich network (computational scaffold; "
                            "proxy-scale, uncalibrated)",
        identifier=ident, session_start_time=start, notes=json.dumps(notes, default=str),
        source_script="jaxfne " + __version__, source_script_file_name="jaxfne")
    nwb.add_unit_column(name="cell_type", description="cell type: E (excitatory) or I (inhibitory)")
    nwb.add_unit_column(name="layer", description="cortical layer of the neuron")
    nwb.add_unit_column(name="depth_um", description="soma depth below the pia (um)")
    for label, times, ctype, layer, depth in _spike_trains(sig):
        nwb.add_unit(id=label, spike_times=np.asarray(times, dtype=float) / 1000.0, cell_type=ctype,
                     layer=layer, depth_um=depth, obs_intervals=[[0.0, sig.duration_ms / 1000.0]])
    if vm and _recorded(sig, "Vm"):
        da = sig["Vm"].transpose("time", "neuron")
        nwb.add_acquisition(pynwb.TimeSeries(
            name="Vm", data=np.asarray(da.values), unit="volts", conversion=1e-3,
            starting_time=0.0, rate=1000.0 / sig.dt_ms,
            description="membrane potential in mV, one column per neuron (Units ids); spikes shown at their "
                        "30 mV peak"))
    with pynwb.NWBHDF5IO(str(path), mode="w") as io:
        io.write(nwb)
    return path


__all__ = ["to_neo", "to_nwb"]
