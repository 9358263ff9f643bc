"""Interoperability: one network's Signals as a neo Block, an NWB file or a SONATA spike file.

``to_neo`` needs ``neo`` (and ``quantities``); ``to_nwb`` needs ``pynwb``;
``to_sonata`` needs ``h5py`` (which pynwb brings). All come with the optional
extra ``pip install 'jaxfne[interop]'``.

Spikes are exported straight from ``Signals.spike_events`` (times in ms of
the step's start, neuron labels, sorted by time then neuron): the neo
SpikeTrains are one multiplexed ``SpikeTrainList`` built from those arrays,
the NWB Units table's ragged ``spike_times`` are those times in seconds, and
the SONATA ``timestamps``/``node_ids`` are those arrays themselves. No dense
raster is built for an export.
Every recorded float probe (``REGISTRY[name].dtype == "float"``) is written
as recorded: the neurons or contacts it holds (all, or the subset of
``probes(neurons=...)``) and its own sampling interval (``dt``, or
``probes(every_ms=...)``), with its channel indices. Units and descriptions
come from ``jaxfne._probes.REGISTRY``; proxies (contact-space probes, and any
probe whose units say "proxy") are labelled as such.
Signals of an ensemble need ``member=`` to pick one network.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import json
import os
import pathlib

import numpy as np

from ._errors import ReadoutError
from ._probes import REGISTRY
from .results import SCOPE
from ._version import __version__
from .viz import _network

#: probe units that have an SI form in NWB: units -> (NWB unit, conversion to it)
_NWB_SI = {"mV": ("volts", 1e-3)}
#: the NWB processing module that holds one channel table per exported probe
NWB_MODULE = "jaxfne"
PROXY_LABEL = "PROXY (uncalibrated, proxy-scale; not a measured or volume-conductor quantity)"


def _require(module: str, where: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{where} needs the package {module.split('.')[0]!r}; install it with "
                          "pip install 'jaxfne[interop]'") from None


#: SONATA's spike-file sorting enum (developer guide, "Spike file"; libsonata reads it as a char enum)
SONATA_SORTING = {"none": 0, "by_id": 1, "by_time": 2}
#: SONATA's top-level file attributes: ``magic`` (uint32 0x0A7A) and ``version`` (2 x uint32, the spec's 0.1)
SONATA_MAGIC = 0x0A7A
SONATA_VERSION = (0, 1)


@dataclasses.dataclass(frozen=True)
class _Neurons:
    """Every neuron of one network, in neuron order: labels and the per-neuron columns the exports carry."""

    labels: np.ndarray          # int64 neuron labels (indices in the network)
    cell_type: np.ndarray       # str
    layer: np.ndarray           # str
    depth_um: np.ndarray        # float, NaN when the signals carry no depths


def _spikes(signals, member, where: str):
    """(the Signals of one network, its neurons, its SpikeEvents); refuses signals without the SPK probe.

    The events come from ``signals.spike_events(member)``, the one contract for spikes as events.
    """
    sig = _network(signals, member, where)
    if "SPK" not in list(sig):
        raise ReadoutError(f"{where}: these signals hold no 'SPK' probe (spikes); recorded probes are "
                           f"{', '.join(map(str, sig)) or 'none'}; spikes are exported from 'SPK'")
    spk = sig["SPK"]
    labels = np.asarray(spk["neuron"].values, dtype=np.int64)
    depth = (np.asarray(spk["depth_um"].values, dtype=float) if "depth_um" in spk.coords
             else np.full(labels.size, np.nan))
    rows = np.argsort(labels, kind="stable")          # ascending labels: the ragged layouts rely on it
    neurons = _Neurons(labels[rows], np.asarray(spk["cell_type"].values).astype(str)[rows],
                       np.asarray(spk["layer"].values).astype(str)[rows], depth[rows])
    return sig, neurons, signals.spike_events(member)


def _by_neuron(events, labels: np.ndarray):
    """Events grouped per neuron (neuron order, each neuron's spikes in time order) and the end offset of
    each neuron's run: a compressed-sparse-row layout, as NWB's ragged ``spike_times_index``."""
    order = np.lexsort((events.steps, events.neurons))       # stable: by neuron, then step
    neurons = events.neurons[order]
    ends = np.searchsorted(neurons, labels, side="right")
    return order, ends


def _refuse_existing(path, overwrite, where: str) -> pathlib.Path:
    path = pathlib.Path(path)
    if not isinstance(overwrite, (bool, np.bool_)):
        raise ReadoutError(f"{where}: overwrite={overwrite!r} is invalid; True or False is required")
    if path.is_dir():
        raise ReadoutError(f"{where}: path={str(path)!r} is a directory; a file path is required")
    if path.exists() and not overwrite:
        raise ReadoutError(f"{where}: path={str(path)!r} exists; pass overwrite=True to replace it")
    return path


def _write_beside(path: pathlib.Path, write) -> pathlib.Path:
    """Run ``write(tmp)`` on a file beside ``path`` and rename it over ``path``: an interrupted export
    never leaves a truncated file under the final name."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")     # the suffix pynwb checks
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _member_info(sig) -> dict:
    """Scalar coordinates left after selecting one member (seed, swept values)."""
    out = {}
    for name, coord in sig.dataset.coords.items():
        if coord.ndim == 0:
            val = coord.values.item()
            out[str(name)] = val.decode() if isinstance(val, bytes) else val
    return out


def is_proxy(name: str) -> bool:
    """Whether probe ``name`` is a proxy (from its definition: contact space, or units that say so)."""
    p = REGISTRY[name]
    return p.is_field or "proxy" in p.units.lower()


def _selected(sig, probes, vm: bool, where: str) -> list:
    """The float probes to export, in REGISTRY order; refuses unknown or unrecorded names."""
    recorded = list(sig)
    if probes is None:
        chosen = [n for n in REGISTRY if n in recorded]
    else:
        given = [probes] if isinstance(probes, str) else probes
        try:
            given = list(given)
        except TypeError:
            given = None
        if given is None or not all(isinstance(n, str) for n in given):
            raise ReadoutError(f"{where}: probes={probes!r} is invalid; None (every recorded probe) or a list of "
                               f"probe names is required")
        for n in given:
            if n not in REGISTRY:
                raise ReadoutError(f"{where}: probes={probes!r} is invalid; {n!r} is not a probe; probes are "
                                   f"{', '.join(REGISTRY)}")
            if n not in recorded:
                raise ReadoutError(f"{where}: probes={probes!r} is invalid; {n!r} was not recorded; recorded "
                                   f"probes are {', '.join(recorded)}")
        chosen = [n for n in REGISTRY if n in given]
    if not isinstance(vm, (bool, np.bool_)):
        raise ReadoutError(f"{where}: vm={vm!r} is invalid; True or False is required")
    return [n for n in chosen if REGISTRY[n].dtype == "float" and (vm or n != "Vm")]


@dataclasses.dataclass(frozen=True)
class _Recording:
    """One float probe of one network, as recorded: (time, channel) values and their labels."""

    name: str
    data: object            # (time, channel) array, loaded
    t0_ms: float
    interval_ms: float      # time between two samples
    channel: str            # "neuron" or "contact"
    labels: dict            # channel coordinate -> 1-D array, the channel index first

    @property
    def ids(self) -> np.ndarray:
        return self.labels[self.channel]

    @property
    def table_name(self) -> str:
        """The NWB channel table of this probe (in the processing module ``NWB_MODULE``)."""
        return f"{self.name}_channels"

    @property
    def description(self) -> str:
        p = REGISTRY[self.name]
        what = (f"{self.name} [{p.units}]: {p.description}. One channel per recorded {self.channel} "
                f"({self.data.shape[1]}; indices in '{self.channel}'), sampled every {self.interval_ms:g} ms")
        return f"{PROXY_LABEL}: {what}" if is_proxy(self.name) else what


def _interval_ms(sig, time_dim: str, t: np.ndarray) -> float:
    """Time between two samples: dt, or the whole number of steps between two sampled times."""
    dt = sig.dt_ms
    if time_dim == "time":
        return dt
    if t.size >= 2:
        raw = float(t[1] - t[0])
    else:                               # one sample: the interval the run was configured with
        raw = json.loads(sig.attrs.get("config_json", "{}")).get("probes", {}).get("every_ms") or dt
    return max(1, round(raw / dt)) * dt


def _recording(sig, name: str) -> _Recording:
    da = sig[name]
    p = REGISTRY[name]
    base = p.space
    time_dim = next(d for d in da.dims if d.startswith("time"))
    chan_dim = next(d for d in da.dims if d.startswith(base))
    da = da.transpose(time_dim, chan_dim)
    suffix = chan_dim[len(base):]                       # "" or "_sampled"
    labels = {base: np.asarray(da[chan_dim].values)}
    for key, coord in da.coords.items():
        if coord.dims == (chan_dim,) and key != chan_dim:
            label = key[: -len(suffix)] if suffix and key.endswith(suffix) else key
            vals = np.asarray(coord.values)
            labels[label] = vals.astype(str) if vals.dtype.kind in "USO" else vals
    t = np.asarray(da[time_dim].values, dtype=float)
    return _Recording(name, np.asarray(da.values), float(t[0]) if t.size else 0.0,
                      _interval_ms(sig, time_dim, t), base, labels)


def _neo_units(pq, units: str):
    """A quantities unit for probe units; arbitrary units are dimensionless (the label goes in annotations)."""
    if units.startswith("a.u.") or units == "1":
        return pq.dimensionless
    try:
        return pq.Quantity(1.0, units).units
    except (LookupError, ValueError, SyntaxError, TypeError, AttributeError):
        return pq.dimensionless


def to_neo(signals, member=None, *, probes=None, vm: bool = True):
    """A ``neo.Block`` with one Segment: a SpikeTrain per neuron and one
    AnalogSignal per recorded float probe (Vm, u, source, LFP-proxy, CSD-proxy).

    The spike trains are one ``SpikeTrainList`` made by
    ``SpikeTrainList.from_spike_time_array`` from ``signals.spike_events(member)``
    (its ``multiplexed`` form gives those neuron labels and times back); there
    is one SpikeTrain per neuron, silent ones included, in neuron order, in ms
    from 0 to the run's duration (``t_stop``), annotated with ``neuron`` (index,
    also ``channel_id``), ``cell_type``, ``layer`` and ``depth_um``.
    Each AnalogSignal is the probe as recorded: one channel per recorded neuron
    (or contact), ``sampling_period`` the probe's own interval (``dt`` or
    ``probes(every_ms=...)``), ``t_start`` its first time label; the channel
    indices are the array annotation ``neuron`` (global index) or ``contact``,
    with ``cell_type``, ``layer``, ... (or ``contact_depth_um``, ...). Units are
    mV for Vm, dimensionless otherwise; the annotations ``units_label``,
    ``probe``, ``space``, ``proxy`` and ``sampling_interval_ms`` and the
    description come from the probe's definition (proxies say so).
    ``probes``: None (every recorded one) or a list of names; ``vm=False``
    leaves Vm out. The Block carries the configuration hash, the scope block and
    the member's coordinates (seed, swept values) as annotations.
    """
    neo = _require("neo", "to_neo")
    pq = _require("quantities", "to_neo")
    spiketrainlist = _require("neo.core.spiketrainlist", "to_neo")
    sig, cells, events = _spikes(signals, member, "to_neo")
    names = _selected(sig, probes, vm, "to_neo")
    duration = sig.duration_ms
    info = _member_info(sig)
    block = neo.Block(name="jaxfne simulation", description=str(sig.attrs.get("scope", "")),
                      config_hash=str(sig.attrs.get("config_hash", "")), jaxfne_version=__version__,
                      dt_ms=sig.dt_ms, **SCOPE,
                      **{f"member_{k}": v for k, v in info.items()})
    seg = neo.Segment(name="network", index=0, **{f"member_{k}": v for k, v in info.items()})
    block.segments.append(seg)
    # one multiplexed list straight from the events; neo makes a SpikeTrain per neuron only when asked
    trains = spiketrainlist.SpikeTrainList.from_spike_time_array(
        events.times_ms, events.neurons, cells.labels.tolist(), t_stop=duration * pq.ms, units=pq.ms,
        t_start=0.0 * pq.ms, neuron=cells.labels.tolist(), cell_type=cells.cell_type.tolist(),
        layer=cells.layer.tolist(), depth_um=cells.depth_um.tolist())
    trains.segment = seg
    seg.spiketrains = trains
    for name in names:
        rec = _recording(sig, name)
        p = REGISTRY[name]
        seg.analogsignals.append(neo.AnalogSignal(
            rec.data, units=_neo_units(pq, p.units), sampling_period=rec.interval_ms * pq.ms,
            t_start=rec.t0_ms * pq.ms, name=name, description=rec.description,
            array_annotations=rec.labels, probe=name, units_label=p.units, space=p.space,
            proxy=is_proxy(name), sampling_interval_ms=rec.interval_ms))
    return block


def _channel_table(rec: _Recording):
    """An hdmf DynamicTable with one row per column of the probe's TimeSeries (id = channel index)."""
    common = _require("hdmf.common", "to_nwb")
    columns = []
    for key, vals in rec.labels.items():
        data = [str(v) for v in vals] if vals.dtype.kind in "USO" else vals.tolist()
        columns.append(common.VectorData(name=key, description=f"{key} of each column of acquisition/{rec.name}",
                                         data=data))
    return common.DynamicTable(
        name=rec.table_name, id=[int(i) for i in rec.ids], columns=columns,
        description=f"the {rec.channel}s of acquisition/{rec.name}, one row per column of its data, in order "
                    f"(id = {rec.channel} index)")


def _units_table(misc, common, sig, cells: _Neurons, events):
    """The NWB Units table, one row per neuron (id = its label), built column by column from the events:
    ``spike_times`` (s) is one ragged column, its index the end offset of each neuron's spikes."""
    order, ends = _by_neuron(events, cells.labels)
    n = cells.labels.size
    duration_s = sig.duration_ms / 1000.0
    spike_times = common.VectorData(name="spike_times", data=events.times_ms[order] / 1000.0,
                                    description="the times of the neuron's spikes (s): the start of the step "
                                                "in which Vm crossed the peak")
    obs = common.VectorData(name="obs_intervals", data=np.tile([[0.0, duration_s]], (n, 1)),
                            description="the observation interval of each neuron (s): the whole run")
    columns = [
        spike_times, common.VectorIndex(name="spike_times_index", data=ends.astype(np.int64), target=spike_times),
        obs, common.VectorIndex(name="obs_intervals_index", data=np.arange(1, n + 1, dtype=np.int64), target=obs),
        common.VectorData(name="cell_type", data=cells.cell_type.tolist(),
                          description="cell type: E (excitatory) or I (inhibitory)"),
        common.VectorData(name="layer", data=cells.layer.tolist(), description="cortical layer of the neuron"),
        common.VectorData(name="depth_um", data=cells.depth_um, description="soma depth below the pia (um)"),
    ]
    return misc.Units(name="units", id=cells.labels.tolist(), columns=columns, resolution=sig.dt_ms / 1000.0,
                      description=f"the {n} neurons of the network (id = neuron index) and their spikes")


def to_nwb(signals, member=None, *, path, probes=None, vm: bool = True, overwrite: bool = False,
           session_start_time: datetime.datetime | None = None) -> pathlib.Path:
    """Write one network to an NWB file at ``path`` and return the path.

    The Units table has one row per neuron (id = its index), built from
    ``signals.spike_events(member)``: the ragged ``spike_times`` column holds
    each neuron's spike times in seconds (time order), ``resolution`` is dt in
    seconds, ``obs_intervals`` the whole run, and the columns ``cell_type``,
    ``layer`` and ``depth_um`` describe the neuron. Every recorded float
    probe (or those in ``probes``; ``vm=False`` leaves Vm out) is the
    acquisition TimeSeries of its name, as recorded: data (time, channel),
    ``starting_time`` and ``rate`` from its own sampling interval, Vm in mV with
    ``conversion`` 1e-3 to volts, other probes in their jaxfne units (the
    ``unit`` string, proxies labelled). Its ``description`` is a JSON object:
    the probe's description, units, ``proxy``, ``space``,
    ``sampling_interval_ms`` and the channel indices (``neuron`` or
    ``contact``); the table ``processing/jaxfne/<probe>_channels`` lists the
    same channels with their labels (cell type, layer, depth, ...). The file's
    notes hold the configuration hash, the scope block and the member's
    coordinates as JSON. ``session_start_time`` defaults to the time of writing
    (a simulation has no session).
    """
    pynwb = _require("pynwb", "to_nwb")
    misc = _require("pynwb.misc", "to_nwb")
    common = _require("hdmf.common", "to_nwb")
    sig, cells, events = _spikes(signals, member, "to_nwb")
    names = _selected(sig, probes, vm, "to_nwb")
    path = _refuse_existing(path, overwrite, "to_nwb")
    start = session_start_time or datetime.datetime.now(datetime.timezone.utc)
    if not isinstance(start, datetime.datetime) or start.tzinfo is None:
        raise ReadoutError(f"to_nwb: session_start_time={start!r} is invalid; a timezone-aware datetime is required")
    info = _member_info(sig)
    config_hash = str(sig.attrs.get("config_hash", ""))
    notes = _notes(sig)
    ident = f"jaxfne-{config_hash[:16]}-" + "-".join(f"{k}={v}" for k, v in info.items())
    nwb = pynwb.NWBFile(
        session_description="jaxfne simulation of a spiking Izhikevich network (computational scaffold; "
                            "proxy-scale, uncalibrated)",
        identifier=ident, session_start_time=start, notes=json.dumps(notes, default=str),
        source_script="jaxfne " + __version__, source_script_file_name="jaxfne")
    nwb.units = _units_table(misc, common, sig, cells, events)
    module = None
    for name in names:
        rec = _recording(sig, name)
        p = REGISTRY[name]
        unit, conversion = _NWB_SI.get(p.units, (p.units, 1.0))
        table = f"processing/{NWB_MODULE}/{rec.table_name}"
        meta = {"probe": name, "description": rec.description, "units": p.units, "proxy": is_proxy(name),
                "space": p.space, "sampling_interval_ms": rec.interval_ms, "t_start_ms": rec.t0_ms,
                "channel_table": table, rec.channel: [int(i) for i in rec.ids]}
        nwb.add_acquisition(pynwb.TimeSeries(
            name=name, data=rec.data, unit=unit, conversion=conversion, starting_time=rec.t0_ms / 1000.0,
            rate=1000.0 / rec.interval_ms, description=json.dumps(meta),
            comments=f"jaxfne probe {name}; one column per {rec.channel}, listed in {table}"))
        if module is None:
            module = nwb.create_processing_module(
                name=NWB_MODULE, description="jaxfne: the channels (neurons or contacts) of each exported probe")
        module.add(_channel_table(rec))
    def write(tmp):
        with pynwb.NWBHDF5IO(str(tmp), mode="w") as io:
            io.write(nwb)

    return _write_beside(path, write)


def _notes(sig) -> dict:
    """What every export records about the run: configuration hash, version, dt, duration, scope, member."""
    return {"config_hash": str(sig.attrs.get("config_hash", "")), "jaxfne_version": __version__,
            "dt_ms": sig.dt_ms, "duration_ms": sig.duration_ms, **SCOPE, "member": _member_info(sig),
            "scope": str(sig.attrs.get("scope", ""))}


def to_sonata(signals, member=None, *, path, population: str = "jaxfne", overwrite: bool = False) -> pathlib.Path:
    """Write one network's spikes as a SONATA spike file (HDF5) at ``path`` and return the path.

    The layout is the SONATA developer guide's "Spike file": the datasets
    ``/spikes/<population>/timestamps`` (float64, ms: the start of the step
    of each spike; attribute ``units = "ms"``) and
    ``/spikes/<population>/node_ids`` (uint64: the neuron's index, the node
    id), one entry per spike, sorted by time (spikes of one step by node id)
    exactly as ``signals.spike_events(member)`` gives them; the population
    group has the enum attribute ``sorting = by_time`` (none=0, by_id=1,
    by_time=2, as libsonata reads it) and the file the top-level attributes
    ``magic`` (uint32 0x0A7A) and ``version`` (uint32 [0, 1]). The group's
    attribute ``jaxfne`` (a JSON string, outside the specification) holds the
    configuration hash, dt_ms, duration_ms, the scope block and the member's
    coordinates. SONATA keeps node properties (cell type, layer, position) in
    a separate node file; this writes spikes only.

    ``population`` names the node population (default ``"jaxfne"``); an
    existing file is not replaced unless ``overwrite=True``. The file is written
    beside ``path`` and renamed into place.
    """
    h5py = _require("h5py", "to_sonata")
    if not isinstance(population, str) or not population or "/" in population or population in (".", ".."):
        raise ReadoutError(f"to_sonata: population={population!r} is invalid; a non-empty name without '/' is "
                           "required")
    sig, cells, events = _spikes(signals, member, "to_sonata")
    path = _refuse_existing(path, overwrite, "to_sonata")
    if events.neurons.size and int(events.neurons.min()) < 0:
        raise ReadoutError(f"to_sonata: neuron label {int(events.neurons.min())} is negative; SONATA node ids are "
                           "unsigned")
    sorting = h5py.enum_dtype(SONATA_SORTING, basetype=np.int8)

    def write(tmp):
        with h5py.File(tmp, "w") as f:
            f.attrs.create("magic", SONATA_MAGIC, dtype=np.uint32)
            f.attrs.create("version", np.asarray(SONATA_VERSION, dtype=np.uint32))
            group = f.create_group(f"spikes/{population}")
            group.attrs.create("sorting", SONATA_SORTING["by_time"], dtype=sorting)
            group.attrs["jaxfne"] = json.dumps(_notes(sig), default=str)
            ts = group.create_dataset("timestamps", data=np.asarray(events.times_ms, dtype=np.float64))
            ts.attrs["units"] = "ms"
            group.create_dataset("node_ids", data=np.asarray(events.neurons, dtype=np.uint64))

    return _write_beside(path, write)


__all__ = ["SONATA_SORTING", "to_neo", "to_nwb", "to_sonata"]
