"""Figures of one network and of ensembles (matplotlib).

Every function takes Signals (or per-member values) and returns a
``matplotlib.figure.Figure``; nothing touches pyplot's global state, so figures
are never left open and any backend works (Agg in tests). Reductions are
written as xarray operations, so Signals backed by a Zarr store (Dask arrays)
work too: only reduced data -- binned counts, a few traces, spike coordinates,
time blocks of bounded size -- is pulled into memory.

One network: :func:`raster`, :func:`rates`, :func:`voltages`, :func:`fields`,
:func:`summary` (the five figures of the tutorial), :func:`evoked` (the evoked
CSD proxy next to the layer PSTHs). Signals of an ensemble need ``member=``
to pick one network.

Ensembles: :func:`sweep_heatmap` (a readout averaged over seeds on a grid of
two swept coordinates), :func:`phase_diagram` (several such quantities side by
side, shared axes, with their seed-to-seed spread) and :func:`distribution`
(a histogram across members).
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import xarray as xr
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from ._errors import ReadoutError
from ._probes import REGISTRY
from ._stats import cv_from_isi_sums, isi_sums
from ._validate import parse_steps
from .analysis import evoked_field, psth, rate_spectrum, stimulus_onsets
from .config import Configuration
from .results import check_health, signal_layer_depths
from .results._health import RUNAWAY_HZ, SILENT_HZ

#: colour of each cell type in every figure
COLORS = {"E": "#c0392b", "I": "#2874a6"}
#: time steps per block when spikes or histograms are gathered block by block
BLOCK_STEPS = 50_000
#: Vm histogram bins (mV)
VM_BINS_MV = np.arange(-100.0, 41.0, 1.0)

# units of swept paths and member coordinates, by prefix (first match wins)
_COORD_UNITS = (
    ("seed", None), ("cell_types.", "fraction"), ("drive.current", "current, a.u."),
    ("drive.noise", "a.u. ms^0.5"), ("connectivity.strength", "current, a.u."),
    ("connectivity.p", "probability"), ("emitter.", None),
)


#: colours of stimulus onset markers, one per stimulus in name order (cycled)
STIMULUS_COLORS = ("#1e8449", "#7d3c98", "#d68910", "#5d6d7e")

# -- helpers ---------------------------------------------------------------
def _network(signals, member, where: str):
    """The Signals of one network: select ``member`` of an ensemble (``Signals.network``)."""
    return signals.network(member, where=where)


def mark_onsets(ax, signals) -> None:
    """Thin dotted vertical lines at every onset of every stimulus of one network's stored configuration.

    One ``LineCollection`` per stimulus (gid ``stimulus-<name>``, legend label ``stimulus <name>``), spanning
    the axes' height; onsets come from :func:`jaxfne.analysis.stimulus_onsets` (the member's swept timing
    included). Signals without a configuration or without stimuli are left unmarked.
    """
    if "config_json" not in signals.attrs:
        return
    specs = Configuration.from_dict(json.loads(signals.attrs["config_json"])).stimuli_spec
    for i, spec in enumerate(specs):
        onsets = stimulus_onsets(signals, spec.name, where="viz.mark_onsets")
        if not onsets:
            continue
        lines = LineCollection([[(t, 0.0), (t, 1.0)] for t in onsets], transform=ax.get_xaxis_transform(),
                               colors=STIMULUS_COLORS[i % len(STIMULUS_COLORS)], linewidths=0.8,
                               linestyles=":", label=f"stimulus {spec.name}", zorder=0.5)
        lines.set_gid(f"stimulus-{spec.name}")
        ax.add_collection(lines, autolim=False)


def _recorded(signals, probe: str) -> bool:
    """Whether ``probe`` was recorded (iterates names; lookups of a missing probe raise)."""
    return probe in list(signals)


def _new_figure(figsize, **kw) -> Figure:
    return Figure(figsize=figsize, layout="constrained", **kw)


def _canonical(da: xr.DataArray) -> xr.DataArray:
    """A probe recorded on sampled dims (time_sampled, neuron_sampled) under the usual names."""
    names = {k: k[: -len("_sampled")] for k in list(da.dims) + list(da.coords) if k.endswith("_sampled")}
    return da.rename(names) if names else da


def _step_ms(da: xr.DataArray, dt_ms: float) -> float:
    """Time between two samples of ``da`` (dt, or the sampling interval of a sampled probe)."""
    t = np.asarray(da["time"].values[:2], dtype=float)
    return float(t[1] - t[0]) if t.size == 2 else dt_ms


def _time_blocks(da: xr.DataArray, block: int = BLOCK_STEPS):
    """Yield (start, numpy block) along time, ``block`` steps at a time."""
    n = da.sizes["time"]
    for start in range(0, n, block):
        yield start, np.asarray(da.isel(time=slice(start, start + block)).values)


def spike_coordinates(signals, member=None):
    """Spike times (ms) and neuron labels of one network (``member`` of an ensemble), sorted by time.

    ``Signals.spike_events`` without the steps: read block by block along
    time, so store-backed signals never load whole.
    """
    events = signals.spike_events(member)
    return events.times_ms, events.neurons


def _cell_types(spk: xr.DataArray) -> np.ndarray:
    return np.asarray(spk["cell_type"].values).astype(str)


def _types_present(cell_type: np.ndarray) -> list:
    return [t for t in COLORS if t in set(cell_type.tolist())]


def _units(da: xr.DataArray) -> str:
    return str(da.attrs.get("units", "a.u."))


def population_rates(signals, bin_ms: float = 5.0, *, member=None) -> dict:
    """Population rate per cell type in time bins.

    Returns ``{cell_type: (edges_ms, rate_hz, n_cells)}``: the rate in a bin is
    the spike count of that type divided by (cells x bin width in s). The last
    bin may be shorter and uses its own width, so ``sum(rate * width_s) *
    n_cells`` equals the spike count exactly.
    """
    sig = _network(signals, member, "viz.population_rates")
    spk = sig["SPK"]
    dt = sig.dt_ms
    steps = parse_steps("viz.population_rates", "bin_ms", bin_ms, dt)
    n_time = spk.sizes["time"]
    n_bins = -(-n_time // steps)
    edges = np.minimum(np.arange(n_bins + 1) * steps, n_time) * dt
    width_s = np.diff(edges) / 1000.0
    cell_type = _cell_types(spk)
    out = {}
    for ctype in _types_present(cell_type):
        idx = np.flatnonzero(cell_type == ctype)
        counts = spk.isel(neuron=idx).sum("neuron")
        binned = np.asarray(counts.coarsen(time=steps, boundary="pad").sum().values, dtype=float)
        out[ctype] = (edges, binned / (idx.size * width_s), idx.size)
    return out


def _coord_label(name: str, coord: xr.DataArray | None = None) -> str:
    units = None if coord is None else coord.attrs.get("units")
    if units is None:
        for prefix, u in _COORD_UNITS:
            if name.startswith(prefix):
                units = u
                break
        else:
            for suffix, u in (("_ms", "ms"), ("_hz", "Hz"), ("_um", "um"), ("_mV", "mV")):
                if name.endswith(suffix):
                    units = u
    return name if units is None else f"{name} ({units})"


# -- one network ---------------------------------------------------------
def laminar_order(signals, *, member=None) -> tuple:
    """The rows of a laminar raster: ``(neurons, bands)``.

    ``neurons`` are the neuron labels in row order, row 0 at the top: column
    by column (in the order the network lists them), and within a column
    layer by layer in depth order, the most superficial layer (smallest top
    depth of ``signal_layer_depths``, overrides included; signals without
    them use the layer's mean soma depth) first; within a layer, neurons keep
    their index order (E cells, then I cells, as the network builds them).
    ``bands`` is one ``(column, layer, first_row, stop_row)`` per layer.
    """
    sig = _network(signals, member, "viz.laminar_order")
    spk = sig["SPK"]
    labels = np.asarray(spk["neuron"].values)
    layer = np.asarray(spk["layer"].values).astype(str)
    column = (np.asarray(spk["column"].values).astype(str) if "column" in spk.coords
              else np.full(labels.size, ""))
    depth = np.asarray(spk["depth_um"].values, dtype=float) if "depth_um" in spk.coords else None
    try:
        tops = {(c, lay): float(rng[0]) for c, layers in signal_layer_depths(sig.attrs).items()
                for lay, rng in layers.items()}
    except ReadoutError:                # hand-made signals: the layers' own depths, else their order
        tops = {}
    columns = list(dict.fromkeys(column.tolist()))
    rank = []
    for c in columns:
        present = list(dict.fromkeys(layer[column == c].tolist()))
        def top(lay, c=c, first=present):
            if (c, lay) in tops:
                return tops[c, lay]
            if depth is not None:
                return float(np.nanmean(depth[(column == c) & (layer == lay)]))
            return float(first.index(lay))
        rank.extend((c, lay) for lay in sorted(present, key=top))
    key = {cl: i for i, cl in enumerate(rank)}
    order = np.argsort(np.array([key[c, lay] for c, lay in zip(column, layer)]), kind="stable")
    bands, start = [], 0
    for c, lay in rank:
        n = int(np.sum((column == c) & (layer == lay)))
        bands.append((c, lay, start, start + n))
        start += n
    return labels[order], bands


def raster(signals, *, member=None, t_range_ms=None, markersize: float = 4.0, laminar=None) -> Figure:
    """Spike raster: neurons against time (ms), E and I in their colours.

    One marker per spike; the collection of each cell type has the label of the
    type and the gid ``raster-<type>``. A network of one layer is drawn by
    neuron index (y = index). A laminar network (several layers or columns;
    ``laminar=True`` forces it, ``False`` refuses it) is drawn in depth order,
    as the field figures are: one row per neuron in the order of
    :func:`laminar_order` (y = row), row 0 -- the most superficial layer,
    L2/3 -- at the top; each layer is labelled on the y axis (tick labels at
    the middle of its rows, "L2/3 (n)" with its number of neurons; with several
    columns "A: L2/3 (n)") and separated from the next by a line (gid
    ``layer-boundary``; between columns, ``column-boundary``).
    """
    sig = _network(signals, member, "viz.raster")
    spk = sig["SPK"]
    times, neurons = spike_coordinates(sig)
    neuron_labels = np.asarray(spk["neuron"].values)
    cell_type = _cell_types(spk)
    type_of = dict(zip(neuron_labels.tolist(), cell_type.tolist()))
    spike_type = np.array([type_of[n] for n in neurons.tolist()], dtype=str)
    layers = np.asarray(spk["layer"].values).astype(str)
    columns = np.asarray(spk["column"].values).astype(str) if "column" in spk.coords else np.full(layers.size, "")
    n_groups = len(set(zip(columns.tolist(), layers.tolist())))
    if laminar is None:
        laminar = n_groups > 1
    elif not isinstance(laminar, (bool, np.bool_)):
        raise ReadoutError(f"viz.raster: laminar={laminar!r} is invalid; None (laminar when the network has "
                           "several layers), True or False is required")
    if laminar:
        order, bands = laminar_order(sig)
        row_of = dict(zip(order.tolist(), range(order.size)))
        y = np.array([row_of[n] for n in neurons.tolist()], dtype=float)
    else:
        y = neurons.astype(float)
    fig = _new_figure((9, 4.5 if not laminar else max(4.5, 2.0 + 0.9 * n_groups)))
    ax = fig.add_subplot()
    for ctype in _types_present(cell_type):
        sel = spike_type == ctype
        coll = ax.scatter(times[sel], y[sel], s=markersize, marker="|", linewidths=0.8,
                          color=COLORS[ctype], label=f"{ctype} ({int(sel.sum())} spikes)")
        coll.set_gid(f"raster-{ctype}")
    ax.set_xlabel("time (ms)")
    ax.set_xlim(*(t_range_ms or (0.0, sig.duration_ms)))
    mark_onsets(ax, sig)
    if laminar:
        several = len({c for c, *_ in bands}) > 1
        for (c, _, _, stop), nxt in zip(bands[:-1], bands[1:]):
            boundary = "column-boundary" if nxt[0] != c else "layer-boundary"
            ax.axhline(stop - 0.5, color="0.2", lw=1.6 if boundary == "column-boundary" else 0.8,
                       ls="-" if boundary == "column-boundary" else "--", alpha=0.7, gid=boundary)
        ax.set_yticks([(first + stop - 1) / 2.0 for _, _, first, stop in bands],
                      [f"{c}: {lay} ({stop - first})" if several else f"{lay} ({stop - first})"
                       for c, lay, first, stop in bands])
        ax.tick_params(axis="y", length=0)
        ax.set_ylabel("layer (number of neurons)")
        ax.set_ylim(order.size - 0.5, -0.5)              # row 0, the most superficial layer, at the top
        title = (f"Spike raster by layer, superficial at the top: {times.size} spikes from "
                 f"{neuron_labels.size} neurons")
        # outside the axes: a laminar raster has data in every corner
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), markerscale=3, frameon=False)
    else:
        ax.set_ylabel("neuron index")
        ax.set_ylim(neuron_labels.min() - 0.5, neuron_labels.max() + 0.5)
        title = f"Spike raster: {times.size} spikes from {neuron_labels.size} neurons"
        ax.legend(loc="upper right", markerscale=3, framealpha=0.9)
    ax.set_title(title)
    return fig


def rates(signals, bin_ms: float = 5.0, *, member=None) -> Figure:
    """Population rate (Hz) over time per cell type, in bins of ``bin_ms``.

    Each curve is a step plot (``StepPatch``, gid ``rate-<type>``) whose values
    are the binned rates and whose edges are the bin edges in ms.
    """
    curves = population_rates(signals, bin_ms, member=member)
    fig = _new_figure((9, 3.5))
    ax = fig.add_subplot()
    for ctype, (edges, rate, n_cells) in curves.items():
        mean = float(np.sum(rate * np.diff(edges)) / (edges[-1] - edges[0]))
        patch = ax.stairs(rate, edges, color=COLORS[ctype], linewidth=1.2,
                          label=f"{ctype}: {n_cells} cells, mean {mean:.1f} Hz")
        patch.set_gid(f"rate-{ctype}")
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("population rate (Hz)")
    ax.set_title(f"Population rate per cell type ({bin_ms:g} ms bins)")
    ax.set_xlim(0.0, max(e[-1] for e, _, _ in curves.values()) if curves else 1.0)
    ax.set_ylim(bottom=0.0)
    mark_onsets(ax, _network(signals, member, "viz.rates"))
    ax.legend(loc="upper right", framealpha=0.9)
    return fig


#: frequency bands marked on spectra (Hz): name -> (low, high)
BANDS_HZ = {"alpha": (8.0, 13.0), "gamma": (30.0, 80.0)}
#: highest frequency a spectrum figure shows by default (Hz), below the Nyquist frequency of its bins
SPECTRUM_MAX_HZ = 150.0


def population_spectrum(signals, bin_ms: float = 1.0, *, member=None, nperseg=None, time_window_ms=None) -> dict:
    """Power spectral density of the population rate of each cell type.

    Returns ``{cell_type: (frequency_hz, psd, n_cells)}`` with ``psd`` in
    Hz^2/Hz (the rate is in Hz). It is :func:`jaxfne.analysis.rate_spectrum` of
    this one network: the rate in bins of ``bin_ms`` (a trailing partial bin
    dropped), Welch's estimate with a Hann window of ``nperseg`` bins (default:
    the power of two nearest half a second), 50% overlap, the mean of each
    segment removed, one-sided -- what ``scipy.signal.welch(rate, fs=1000 /
    bin_ms, nperseg=nperseg)`` gives. ``time_window_ms=(start, stop)`` leaves
    out, say, the onset transient.
    """
    sig = _network(signals, member, "viz.population_spectrum")
    psd = rate_spectrum(sig, "cell_type", bin_ms=bin_ms, nperseg=nperseg, time_window_ms=time_window_ms)
    psd = psd.compute() if hasattr(psd, "compute") else psd
    cell_type = _cell_types(sig["SPK"])
    freq = np.asarray(psd["frequency"].values, dtype=float)
    return {str(t): (freq, np.asarray(psd.sel(cell_type=t).values, dtype=float), int(np.sum(cell_type == t)))
            for t in psd["cell_type"].values.tolist()}


def spectrum(signals, bin_ms: float = 1.0, *, member=None, nperseg=None, time_window_ms=None,
             max_hz=None) -> Figure:
    """Power spectrum of the population rate per cell type (:func:`population_spectrum`), log power.

    x: frequency (Hz) from the first non-zero frequency to ``max_hz``
    (default 150 Hz, at most the Nyquist frequency of the bins); y: PSD in
    Hz^2/Hz on a log axis. The alpha (8-13 Hz) and gamma (30-80 Hz) bands are
    shaded lightly and named in the legend (gids ``band-alpha``, ``band-gamma``). Each curve
    (a Line2D, gid ``spectrum-<type>``) holds the frequencies above 0 Hz and
    their PSD; its legend entry gives the cells and the frequency of the peak.
    The title gives the estimate's bins, window and frequency resolution.
    """
    curves = population_spectrum(signals, bin_ms, member=member, nperseg=nperseg, time_window_ms=time_window_ms)
    freq = next(iter(curves.values()))[0]
    nyquist = float(freq[-1])
    top = min(SPECTRUM_MAX_HZ, nyquist) if max_hz is None else max_hz
    if isinstance(top, bool) or not isinstance(top, (int, float)) or not 0 < top <= nyquist:
        raise ReadoutError(f"viz.spectrum: max_hz={max_hz!r} is invalid; a frequency in (0, {nyquist:g}] Hz "
                           f"(the Nyquist frequency of {bin_ms:g} ms bins) is required")
    fig = _new_figure((9, 4.4))
    ax = fig.add_subplot()
    for (name, (lo, hi)), shade in zip(BANDS_HZ.items(), ("0.90", "0.95")):
        if lo < top:                    # named in the legend: a label inside would sit on the curves
            ax.axvspan(lo, min(hi, top), color=shade, zorder=0, lw=0, gid=f"band-{name}",
                       label=f"{name} band, {lo:g}-{hi:g} Hz")
    keep = freq > 0
    for ctype, (f, psd, n_cells) in curves.items():
        shown = keep & (f <= top)
        values = np.where(psd > 0, psd, np.nan)              # a log axis: zero power (a silent type) is left out
        peak = f[shown][np.nanargmax(values[shown])] if np.isfinite(values[shown]).any() else np.nan
        line, = ax.plot(f[keep], values[keep], color=COLORS.get(ctype, "k"), lw=1.3,
                        label=f"{ctype}: {n_cells} cells, peak {peak:.1f} Hz")
        line.set_gid(f"spectrum-{ctype}")
    ax.set_yscale("log")
    ax.set_xlim(0.0, top)
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("PSD of the population rate (Hz²/Hz)")
    resolution = float(freq[1] - freq[0]) if freq.size > 1 else float("nan")
    n_per = 2 * (freq.size - 1)
    window = "" if time_window_ms is None else f", {time_window_ms[0]:g}-{time_window_ms[1]:g} ms"
    ax.set_title(f"Population rate spectrum{window}\nWelch: {bin_ms:g} ms bins, Hann window of {n_per} bins, "
                 f"resolution {resolution:.3g} Hz", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=9)   # the curves fill the axes
    return fig


def _default_neurons(cell_type: np.ndarray, labels: np.ndarray) -> list:
    chosen = []
    for ctype, k in (("E", 3), ("I", 2)):
        idx = np.flatnonzero(cell_type == ctype)
        if idx.size:
            picks = np.unique(np.linspace(0, idx.size - 1, min(k, idx.size)).round().astype(int))
            chosen.extend(labels[idx[picks]].tolist())
    return chosen


def voltages(signals, neurons=None, *, member=None, t_range_ms=None) -> Figure:
    """Membrane potential traces (mV) of a few neurons, one panel each.

    ``neurons`` are neuron indices (default: three E and two I cells spread
    over the population). Spikes show at their 30 mV peak.
    """
    return traces(signals, "Vm", neurons, member=member, t_range_ms=t_range_ms, where="viz.voltages")


def traces(signals, probe: str, neurons=None, *, member=None, t_range_ms=None, where="viz.traces") -> Figure:
    """Traces of a per-neuron probe (Vm, u, source, ...) of a few neurons, one panel each.

    ``neurons`` are neuron indices among those recorded (default: three E and
    two I cells spread over them). Axis labels and the title come from the
    probe's definition (its units and label).
    """
    p = REGISTRY.get(probe) if isinstance(probe, str) else None
    if p is None or p.is_field or p.dtype != "float":
        allowed = [n for n, q in REGISTRY.items() if not q.is_field and q.dtype == "float"]
        raise ReadoutError(f"{where}: probe={probe!r} is invalid; traces show one of {allowed}")
    sig = _network(signals, member, where)
    if not _recorded(sig, probe):
        raise ReadoutError(f"{where}: probe {probe!r} was not recorded; add it with "
                           f"Configuration.probes([..., {probe!r}])")
    da = _canonical(sig[probe])
    labels = np.asarray(da["neuron"].values)
    cell_type = _cell_types(da)
    if neurons is None:
        neurons = _default_neurons(cell_type, labels)
    neurons = [int(n) for n in np.atleast_1d(neurons)]
    bad = [n for n in neurons if n not in set(labels.tolist())]
    if bad or not neurons:
        raise ReadoutError(f"{where}: neurons={neurons!r} is invalid; the recorded neurons are "
                           f"{labels.tolist() if labels.size <= 20 else f'{labels.size} indices'}")
    sub = da.sel(neuron=neurons)
    if t_range_ms is not None:
        sub = sub.sel(time=slice(*t_range_ms))
    values = np.asarray(sub.transpose("time", "neuron").values)
    t = np.asarray(sub["time"].values)
    fig = _new_figure((9, 1.3 + 1.2 * len(neurons)))
    axes = fig.subplots(len(neurons), 1, sharex=True, squeeze=False)[:, 0]
    layer = np.asarray(da["layer"].values).astype(str)
    pos = {n: i for i, n in enumerate(labels.tolist())}
    short = "Vm" if probe == "Vm" else probe
    for k, (ax, n) in enumerate(zip(axes, neurons)):
        ctype = cell_type[pos[n]]
        line, = ax.plot(t, values[:, k], color=COLORS.get(ctype, "k"), linewidth=0.7)
        line.set_gid(f"{'vm' if probe == 'Vm' else probe}-{n}")
        ax.set_ylabel(f"{short} ({_units(da).split(' (')[0]})")
        ax.set_title(f"neuron {n} ({ctype}, {layer[pos[n]]})", fontsize=9, loc="left")
    axes[-1].set_xlabel("time (ms)")
    axes[-1].set_xlim(t[0] if t.size else 0.0, (t[-1] + _step_ms(da, sig.dt_ms)) if t.size else 1.0)
    fig.suptitle(f"{p.title[0].upper()}{p.title[1:]} of sample neurons ({probe})")
    return fig


def probe_figure(signals, probe: str, *, member=None) -> Figure:
    """The standard figure of any probe, chosen by its definition: a raster for spikes, traces for a
    per-neuron quantity, a depth-by-time map for a field proxy."""
    p = REGISTRY.get(probe) if isinstance(probe, str) else None
    if p is None:
        raise ReadoutError(f"viz.probe_figure: probe={probe!r} is invalid; known probes are {list(REGISTRY)}")
    if p.dtype == "bool":
        fig = raster(signals, member=member)
        fig.axes[0].set_title(f"{fig.axes[0].get_title()} ({probe})".strip())
        return fig
    if p.is_field:
        return fields(signals, member=member, probes=[probe])
    return traces(signals, probe, member=member)


def _depth_edges(z: np.ndarray) -> np.ndarray:
    mid = (z[1:] + z[:-1]) / 2.0
    first = z[0] - (mid[0] - z[0]) if z.size > 1 else z[0] - 1.0
    last = z[-1] + (z[-1] - mid[-1]) if z.size > 1 else z[-1] + 1.0
    return np.concatenate([[first], mid, [last]])


def _one_column(sig, column, where: str):
    """(Signals of one column's contacts and neurons, its name); ``column`` may be None with one column."""
    ds = sig.dataset
    labels = (np.asarray(ds["contact_column"].values).astype(str) if "contact_column" in ds.coords
              else np.full(ds.sizes.get("contact", 0), ""))
    names = list(dict.fromkeys(labels.tolist()))
    if column is None:
        if len(names) > 1:
            raise ReadoutError(f"{where}: these signals hold {len(names)} columns ({', '.join(names)}); pick one "
                               "with column=<name>")
        return sig, (names[0] if names and names[0] else None)
    if column not in names:
        raise ReadoutError(f"{where}: column={column!r} is not a column of these signals; their columns are "
                           f"{', '.join(names) or 'unknown'}")
    if len(names) == 1:
        return sig, column
    sel = {"contact": np.flatnonzero(labels == column)}
    for dim, coord in (("neuron", "column"), ("neuron_sampled", "column_sampled")):
        if dim in ds.dims and coord in ds.coords:
            sel[dim] = np.flatnonzero(np.asarray(ds[coord].values).astype(str) == column)
    return sig.isel(**sel), column


def depth_map_probes() -> list:
    """The probes drawn as depth-by-time maps: the field proxies and the currents they sum (their definitions)."""
    return [name for name, p in REGISTRY.items() if p.dtype == "float" and "i_syn" in p.raw]


def field_maps(signals, bin_ms=None, *, member=None, column=None, probes=None) -> dict:
    """Depth-by-time maps of the recorded source, LFP-proxy and CSD-proxy (``probes``: some of them).

    Returns ``{probe: (time_edges_ms, depth_edges_um, values[contact, time_bin])}``.
    Time is averaged in bins of ``bin_ms`` (default: at most 1000 bins). The
    source map sums the neurons whose depth falls in each contact's depth bin.
    Signals of several columns need ``column=`` (each column has its own
    contacts and depth axis).
    """
    sig = _network(signals, member, "viz.fields")
    sig, _ = _one_column(sig, column, "viz.fields")
    candidates = depth_map_probes() if probes is None else [probes] if isinstance(probes, str) else list(probes)
    bad = [p for p in candidates if p not in depth_map_probes()]
    if bad:
        raise ReadoutError(f"viz.fields: probes={bad!r} is invalid; depth maps show {depth_map_probes()}")
    present = [p for p in candidates if _recorded(sig, p)]
    if not present:
        raise ReadoutError(f"viz.fields: none of {', '.join(map(repr, candidates))} was recorded; add them with "
                           "Configuration.probes([...])")
    dt = _step_ms(_canonical(sig[present[0]]), sig.dt_ms)    # sampled probes share one interval
    n_time = _canonical(sig[present[0]]).sizes["time"]
    steps = max(1, -(-n_time // 1000)) if bin_ms is None else parse_steps("viz.fields", "bin_ms", bin_ms, dt)
    n_bins = -(-n_time // steps)
    t_edges = np.minimum(np.arange(n_bins + 1) * steps, n_time) * dt
    z = np.asarray(sig.dataset["contact_depth_um"].values, dtype=float)
    z_edges = _depth_edges(z)
    out = {}
    for probe in present:
        da = _canonical(sig[probe])
        if not REGISTRY[probe].is_field:           # per neuron: summed over each contact's depth bin
            depth = np.asarray(da["depth_um"].values, dtype=float)
            which = np.clip(np.searchsorted(z_edges, depth, side="right") - 1, 0, z.size - 1)
            assign = xr.DataArray((which[None, :] == np.arange(z.size)[:, None]).astype(float),
                                  dims=("contact", "neuron"))
            da = xr.dot(da.astype(float), assign, dim="neuron")
        binned = da.coarsen(time=steps, boundary="pad").mean()
        out[probe] = (t_edges, z_edges, np.asarray(binned.transpose("contact", "time").values, dtype=float))
    return out


def layer_boundaries(signals, column=None) -> dict:
    """{layer: (top_um, bottom_um)} of a column of these signals, depth overrides included."""
    depths = signal_layer_depths(signals.attrs)
    if column is None:
        if len(depths) > 1:
            raise ReadoutError(f"viz.layer_boundaries: these signals hold {len(depths)} columns "
                               f"({', '.join(depths)}); pick one with column=<name>")
        column = next(iter(depths))
    if column not in depths:
        raise ReadoutError(f"viz.layer_boundaries: column={column!r} is unknown; columns are {', '.join(depths)}")
    return {lay: (float(r[0]), float(r[1])) for lay, r in depths[column].items()}


def _draw_layers(ax, layers: dict, z_edges: np.ndarray) -> None:
    """Dashed lines at the layer boundaries and the layer names, within the plotted depths."""
    from matplotlib.transforms import blended_transform_factory
    lo, hi = float(np.min(z_edges)), float(np.max(z_edges))
    bounds = sorted({z for rng in layers.values() for z in rng})
    for z in bounds:
        if lo <= z <= hi:
            ax.axhline(z, color="k", lw=0.8, ls="--", alpha=0.7, gid="layer-boundary")
    trans = blended_transform_factory(ax.transAxes, ax.transData)
    for lay, (top, bottom) in layers.items():
        mid = (max(top, lo) + min(bottom, hi)) / 2.0
        if max(top, lo) < min(bottom, hi):
            ax.text(0.005, mid, lay, transform=trans, ha="left", va="center", fontsize=8, gid=f"layer-label-{lay}",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7})
    ax.set_ylim(hi, lo)         # depth increases downward; the lines do not widen the map


def _field_scale(probe: str, values: np.ndarray) -> tuple:
    """(the rows the colours are scaled to, their largest |value|) of a depth map (contact, time)."""
    scaled = values
    if REGISTRY[probe].is_field and values.shape[0] >= 5:
        inner, edge = np.abs(values[1:-1]), np.abs(values[[0, -1]])
        if np.isfinite(inner).any() and np.nanmax(edge) > 2 * np.nanmax(inner):
            scaled = values[1:-1]
    finite = scaled[np.isfinite(scaled)]
    vmax = float(np.max(np.abs(finite))) if finite.size else 1.0
    return scaled, (vmax if vmax > 0 else 1.0)


def fields(signals, bin_ms=None, *, member=None, column=None, probes=None) -> Figure:
    """Source, LFP-proxy and CSD-proxy as depth-by-time heat maps.

    Depth below the pia (um) on the y axis, increasing downward; a diverging
    colour map symmetric about zero; titles say "proxy" because these are
    uncalibrated proxies, not volume-conductor solutions. Dashed lines mark
    the column's layer boundaries (its ``depths_um`` overrides included) and
    each layer is labelled at the left. Signals of several columns need
    ``column=``.
    """
    maps = field_maps(signals, bin_ms, member=member, column=column, probes=probes)
    sig = _network(signals, member, "viz.fields")
    sig, column = _one_column(sig, column, "viz.fields")
    layers = layer_boundaries(sig, column)
    suffix = f" [column {column}]" if len(signal_layer_depths(sig.attrs)) > 1 else ""
    fig = _new_figure((9, 2.6 * len(maps)))
    axes = fig.subplots(len(maps), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (probe, (t_edges, z_edges, values)) in zip(axes, maps.items()):
        # a second spatial difference's edge contacts (Vaknin convention: a first difference) dwarf the
        # interior; when the edges are over twice the interior's extreme, scale the colours to the interior
        # and saturate the edges
        scaled, vmax = _field_scale(probe, values)
        mesh = ax.pcolormesh(t_edges, z_edges, values, cmap="RdBu_r", vmin=-vmax, vmax=vmax, shading="flat")
        mesh.set_gid(f"field-{probe}")
        _draw_layers(ax, layers, z_edges)
        ax.set_ylabel("depth below pia (um)")
        p = REGISTRY[probe]
        note = "" if p.is_field else ", summed per depth bin"
        note += "; colours scaled to interior contacts" if scaled is not values else ""
        ax.set_title(f"{p.title}{note}{suffix}", fontsize=10, loc="left")
        units = _units(sig[probe])
        fig.colorbar(mesh, ax=ax, label=units if p.is_field else f"summed {probe}, {units}",
                     extend="both" if scaled is not values else "neither")
    axes[-1].set_xlabel("time (ms)")
    return fig


def evoked(signals, stimulus=None, *, onsets_ms=None, member=None, column=None, window_ms=(-20.0, 50.0),
           bin_ms: float = 2.0, conventional_sign: bool = False) -> Figure:
    """The evoked CSD proxy over depth and time next to the layer PSTHs.

    Left: the trial-averaged CSD proxy (:func:`jaxfne.analysis.evoked_field`)
    as a depth-by-time map (gid ``evoked-CSD-proxy``), time in ms from onset,
    depth below the pia increasing downward, a diverging colour map symmetric
    about zero (scaled to the interior contacts when the edge contacts dwarf
    them, as in :func:`fields`), the layer boundaries dashed and labelled, the
    onset a vertical line. jaxfne's sign: net excitatory current positive
    (red); ``conventional_sign=True`` draws minus the proxy, so an excitatory
    sink is negative (blue), as recorded CSD is usually read. The title says
    which. Right: one panel per layer, superficial on top, the PSTH
    (:func:`jaxfne.analysis.psth`, bins of ``bin_ms``) of its E and I cells
    (``StepPatch``, gid ``psth-<layer>-<type>``). Onsets come from the
    stimulus ``stimulus`` of the stored configuration or from ``onsets_ms``.
    """
    where = "viz.evoked"
    if not isinstance(conventional_sign, (bool, np.bool_)):
        raise ReadoutError(f"{where}: conventional_sign={conventional_sign!r} is invalid; True or False is required")
    sig = _network(signals, member, where)
    sig, column = _one_column(sig, column, where)
    field = evoked_field(sig, "CSD-proxy", stimulus, onsets_ms=onsets_ms, window_ms=window_ms).compute()
    rate = psth(sig, stimulus, onsets_ms=onsets_ms, window_ms=window_ms, bin_ms=bin_ms,
                by=("layer", "cell_type")).compute()
    layers = layer_boundaries(sig, column)
    present = [lay for lay in sorted(layers, key=lambda lay: layers[lay][0]) if lay in rate["layer"].values]
    values = np.asarray(field.transpose("contact", "time").values, dtype=float)
    values = -values if conventional_sign else values
    t = np.asarray(field["time"].values, dtype=float)
    step = float(t[1] - t[0]) if t.size > 1 else float(sig.dt_ms)
    t_edges = np.append(t, t[-1] + step)
    z_edges = _depth_edges(np.asarray(field["contact_depth_um"].values, dtype=float))
    fig = _new_figure((11, max(4.5, 1.6 * len(present))))
    grid = fig.add_gridspec(len(present), 2, width_ratios=(1.5, 1.0))
    ax = fig.add_subplot(grid[:, 0])
    scaled, vmax = _field_scale("CSD-proxy", values)
    mesh = ax.pcolormesh(t_edges, z_edges, values, cmap="RdBu_r", vmin=-vmax, vmax=vmax, shading="flat")
    mesh.set_gid("evoked-CSD-proxy")
    _draw_layers(ax, layers, z_edges)
    ax.axvline(0.0, color="k", lw=1.0, gid="onset")
    ax.set_xlabel("time from onset (ms)")
    ax.set_ylabel("depth below pia (um)")
    trials = int(field.attrs["trials_kept"])
    dropped = int(field.attrs["trials_dropped"])
    what = f"stimulus {stimulus!r}" if stimulus is not None else "onsets_ms"
    sign = ("sign flipped: sink (inward excitatory current) negative" if conventional_sign
            else "jaxfne sign: net excitatory current positive")
    note = "; colours scaled to interior contacts" if scaled is not values else ""
    ax.set_title(f"Evoked CSD proxy, {what}: mean of {trials} trials"
                 + (f" ({dropped} dropped: window outside the run)" if dropped else "")
                 + f"\n{sign}{note}", fontsize=10, loc="left")
    units = _units(field)
    fig.colorbar(mesh, ax=ax, label=f"{'-' if conventional_sign else ''}CSD proxy ({units})",
                 extend="both" if scaled is not values else "neither")
    first = None
    for i, lay in enumerate(present):
        pax = fig.add_subplot(grid[i, 1], sharex=first)
        first = first or pax
        r_t = np.asarray(rate["time"].values, dtype=float)
        edges = np.append(r_t, r_t[-1] + float(rate.attrs["bin_ms"]))
        for ctype in [c for c in COLORS if c in rate["cell_type"].values]:
            curve = np.asarray(rate.sel(layer=lay, cell_type=ctype).values, dtype=float)
            if np.all(np.isnan(curve)):
                continue
            patch = pax.stairs(curve, edges, color=COLORS[ctype], linewidth=1.2, label=ctype)
            patch.set_gid(f"psth-{lay}-{ctype}")
        pax.axvline(0.0, color="k", lw=1.0)
        pax.set_ylim(bottom=0.0)
        pax.set_ylabel("rate (Hz)")
        pax.text(0.99, 0.92, lay, transform=pax.transAxes, ha="right", va="top", fontsize=9, weight="bold",
                 gid=f"psth-label-{lay}")
        if i == 0:
            pax.set_title(f"PSTH per layer ({float(rate.attrs['bin_ms']):g} ms bins)", fontsize=10, loc="left")
            pax.legend(loc="upper left", fontsize=8, frameon=False)
        if i < len(present) - 1:
            pax.tick_params(labelbottom=False)
        else:
            pax.set_xlabel("time from onset (ms)")
    return fig


def _isi_cv(spk: xr.DataArray, times: np.ndarray, neurons: np.ndarray) -> np.ndarray:
    """ISI CV per neuron of ``spk`` from its spike coordinates (jaxfne._stats; NaN with fewer than 3 spikes)."""
    labels = np.asarray(spk["neuron"].values)
    pos = {n: i for i, n in enumerate(labels.tolist())}
    steps = np.searchsorted(np.asarray(spk["time"].values), times)      # ISIs in whole steps, exact
    index = np.array([pos[n] for n in neurons.tolist()], dtype=np.int64)
    return cv_from_isi_sums(isi_sums(steps, index, labels.size))


def vm_histogram(signals, bins=VM_BINS_MV, *, member=None) -> tuple:
    """Counts of Vm samples (mV) in ``bins``, gathered block by block."""
    sig = _network(signals, member, "viz.vm_histogram")
    counts = np.zeros(len(bins) - 1, dtype=np.int64)
    for _, block in _time_blocks(_canonical(sig["Vm"])):
        counts += np.histogram(block[np.isfinite(block)], bins=bins)[0]
    return counts, np.asarray(bins)


def summary(signals, readouts=None, *, member=None) -> Figure:
    """Summary panel: mean rate per type (Hz), ISI CV per neuron, Vm histogram
    (mV) and the health report (plus ``readouts`` when given)."""
    sig = _network(signals, member, "viz.summary")
    spk = sig["SPK"]
    labels = np.asarray(spk["neuron"].values)
    cell_type = _cell_types(spk)
    times, neurons = spike_coordinates(sig)
    duration_s = sig.duration_ms / 1000.0
    types = _types_present(cell_type)
    pos = {n: i for i, n in enumerate(labels.tolist())}
    spike_type = cell_type[[pos[n] for n in neurons.tolist()]] if neurons.size else np.zeros(0, dtype=str)

    fig = _new_figure((10, 7))
    (ax_rate, ax_cv), (ax_vm, ax_text) = fig.subplots(2, 2)

    names = [*types, "all"]
    values = [np.sum(spike_type == t) / (np.sum(cell_type == t) * duration_s) for t in types]
    values.append(times.size / (labels.size * duration_s))
    bars = ax_rate.bar(names, values, color=[COLORS[t] for t in types] + ["0.4"])
    for bar, name in zip(bars, names):
        bar.set_gid(f"summary-rate-{name}")
    ax_rate.bar_label(bars, fmt="%.1f")
    ax_rate.axhline(SILENT_HZ, color="0.5", linestyle=":", linewidth=1, label=f"silent < {SILENT_HZ:g} Hz")
    ax_rate.axhline(RUNAWAY_HZ, color="0.3", linestyle="--", linewidth=1, label=f"runaway > {RUNAWAY_HZ:g} Hz")
    ax_rate.set_ylabel("mean rate (Hz)")
    ax_rate.set_xlabel("cell type")
    ax_rate.set_title("Mean firing rate per cell type", fontsize=10)
    ax_rate.set_ylim(0, max(max(values) * 1.25, RUNAWAY_HZ * 1.1))
    ax_rate.legend(fontsize=8, loc="upper left")

    cv = _isi_cv(spk, times, neurons)
    finite_cv = cv[np.isfinite(cv)]
    cv_bins = np.linspace(0.0, max(2.0, float(finite_cv.max()) if finite_cv.size else 2.0), 25)
    for t in types:
        vals = cv[(cell_type == t) & np.isfinite(cv)]
        ax_cv.hist(vals, bins=cv_bins, color=COLORS[t], alpha=0.6, label=f"{t} ({vals.size} neurons)")
    ax_cv.set_xlabel("ISI CV (dimensionless)")
    ax_cv.set_ylabel("neurons (count)")
    ax_cv.set_title("ISI coefficient of variation (neurons with >= 3 spikes)", fontsize=10)
    if finite_cv.size:
        ax_cv.legend(fontsize=8)

    ax_vm.set_xlabel("Vm (mV)")
    ax_vm.set_ylabel("samples (count)")
    ax_vm.set_title("Membrane potential distribution", fontsize=10)
    if _recorded(sig, "Vm"):
        counts, edges = vm_histogram(sig)
        patch = ax_vm.stairs(counts, edges, fill=True, color="0.35")
        patch.set_gid("summary-vm")
        if counts.any():
            ax_vm.set_yscale("log")
    else:
        ax_vm.text(0.5, 0.5, "Vm not recorded", ha="center", va="center", transform=ax_vm.transAxes)

    health = check_health(sig)
    lines = [f"health: {health.status}", f"population rate: {health.rate_hz:.2f} Hz",
             f"all outputs finite: {health.finite}", f"duration: {sig.duration_ms:g} ms, dt {sig.dt_ms:g} ms",
             f"neurons: {labels.size} (" + ", ".join(f"{t}: {int(np.sum(cell_type == t))}" for t in types) + ")"]
    for msg in health.messages:
        lines.extend(textwrap.wrap(msg, 60))
    if readouts:
        lines.append("readouts:")
        for name, r in readouts.items():
            val = r.value
            text = f"{float(val):.4g}" if np.ndim(val) == 0 else np.array2string(np.asarray(val), precision=3)
            lines.append(f"  {name} = {text} {r.units}")
    ax_text.axis("off")
    ax_text.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=8.5,
                 transform=ax_text.transAxes, gid="summary-health")
    ax_text.set_title("Health and readouts", fontsize=10)
    fig.suptitle("Network summary (proxy-scale, uncalibrated)")
    return fig


# -- ensembles -----------------------------------------------------------
def _member_values(values, where: str):
    """A DataArray over ``member`` (from a DataArray or a Readout) and its units."""
    units = None
    if hasattr(values, "data") and hasattr(values, "units") and isinstance(getattr(values, "data"), xr.DataArray):
        units, name, da = values.units, values.name, values.data
    elif isinstance(values, xr.DataArray):
        da, name = values, values.name
        units = values.attrs.get("units")
    else:
        raise ReadoutError(f"{where}: values={type(values).__name__} is invalid; an xarray.DataArray over "
                           "'member' (or a Readout of an ensemble) is required")
    if da.dims != ("member",):
        raise ReadoutError(f"{where}: values has dims {da.dims}; one value per member (dims ('member',)) is "
                           "required, e.g. a readout of ensemble signals")
    return da, str(name) if name is not None else "value", units


def _value_label(name: str, units) -> str:
    return name if units in (None, "") else f"{name} ({units})"


def sweep_grid(values, x: str, y: str) -> xr.DataArray:
    """Mean of ``values`` over members sharing (y, x): dims (y, x), NaN where empty."""
    da, _, _ = _member_values(values, "viz.sweep_grid")
    for c in (x, y):
        if c not in da.coords or da[c].dims != ("member",):
            valid = sorted(str(k) for k, v in da.coords.items() if v.dims == ("member",) and k != "member")
            raise ReadoutError(f"viz.sweep_heatmap: coordinate {c!r} is not a member coordinate of values; "
                               f"valid ones are {', '.join(valid)}")
    if x == y:
        raise ReadoutError(f"viz.sweep_heatmap: x and y are both {x!r}; two different coordinates are required")
    return da.astype(float).groupby([y, x]).mean()


def _annotate_cells(ax, mesh, data, fmt: str, fontsize: float) -> None:
    """Write each finite cell's value on a heat map, black or white by the cell colour's luminance."""
    for (i, j), val in np.ndenumerate(data):
        if np.isfinite(val):
            r, g, b, _ = mesh.cmap(mesh.norm(val))
            ax.text(j, i, fmt.format(val), ha="center", va="center", fontsize=fontsize,
                    color="k" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "w")


def sweep_heatmap(values, x: str, y: str, *, annotate: bool = True, cmap: str = "viridis") -> Figure:
    """Heat map of a per-member value on the grid of two member coordinates.

    Members with equal (x, y) -- typically different seeds -- are averaged
    (``groupby([y, x]).mean()``); cells with no member are blank. The mesh
    (gid ``sweep-heatmap``) holds the grouped means, rows y and columns x.
    """
    da, name, units = _member_values(values, "viz.sweep_heatmap")
    grid = sweep_grid(values, x, y)
    data = np.asarray(grid.transpose(y, x).values, dtype=float)
    xs, ys = np.asarray(grid[x].values), np.asarray(grid[y].values)
    fig = _new_figure((1.6 + 0.9 * max(xs.size, 3), 1.6 + 0.7 * max(ys.size, 3)))
    ax = fig.add_subplot()
    mesh = ax.pcolormesh(np.arange(xs.size + 1) - 0.5, np.arange(ys.size + 1) - 0.5,
                         np.ma.masked_invalid(data), cmap=cmap, shading="flat")
    mesh.set_gid("sweep-heatmap")
    ax.set_xticks(np.arange(xs.size), [f"{v:g}" if isinstance(v, (float, np.floating)) else str(v) for v in xs])
    ax.set_yticks(np.arange(ys.size), [f"{v:g}" if isinstance(v, (float, np.floating)) else str(v) for v in ys])
    ax.set_xlabel(_coord_label(x, da[x]))
    ax.set_ylabel(_coord_label(y, da[y]))
    if annotate:
        _annotate_cells(ax, mesh, data, "{:.3g}", 8)
    n_seeds = int(da.groupby([y, x]).count().max()) if da.size else 0
    fig.colorbar(mesh, ax=ax, label=_value_label(f"mean {name}", units))
    ax.set_title(f"{name}: mean over up to {n_seeds} member(s) per cell", fontsize=10)
    return fig


def _spread_grid(da: xr.DataArray, x: str, y: str) -> tuple:
    """Per (y, x) cell: sample std across members (ddof=1, NaN below 2) and finite-member count."""
    grouped = da.astype(float).groupby([y, x])
    return grouped.std(ddof=1), grouped.count()


def _seed_phrase(counts: np.ndarray) -> str:
    """'4 seeds' when every filled cell has the same count, else '2-4 seeds'."""
    filled = counts[counts > 0]
    if filled.size == 0:
        return "0 seeds"
    lo, hi = int(filled.min()), int(filled.max())
    return f"{hi} seed{'s' if hi != 1 else ''}" if lo == hi else f"{lo}-{hi} seeds"


def phase_diagram(panels, x: str, y: str, *, spread: bool = True, annotate: bool = True,
                  cmap: str = "viridis", spread_cmap: str = "magma", title: str | None = None) -> Figure:
    """Several per-member quantities on the grid of two swept coordinates, side by side.

    ``panels`` maps a panel title (e.g. ``"E rate"``) to one value per member
    -- an ``xarray.DataArray`` with dims ``("member",)`` such as
    ``analysis.firing_rate(signals).sel(cell_type="E")``, or a Readout -- all
    from the same ensemble; a list takes each value's own name. Top row: per
    quantity, the mean over the members sharing (x, y) (typically the seeds;
    non-finite values are left out), its own colour bar in the quantity's
    units, the title saying over how many seeds. With ``spread=True`` (the
    default) a second row shows the seed-to-seed standard deviation (ddof=1)
    in the same units, so a reader sees where the mean is trustworthy; a cell
    with fewer than two finite values is blank there. Every panel shares the x
    and y axes. Meshes: gids ``phase-mean-<i>`` and ``phase-std-<i>``
    (rows y, columns x).
    """
    where = "viz.phase_diagram"
    if isinstance(panels, dict):
        items = list(panels.items())
    elif isinstance(panels, (list, tuple)):
        items = [(None, v) for v in panels]
    else:
        raise ReadoutError(f"{where}: panels={type(panels).__name__} is invalid; a dict of title -> per-member "
                           "values (or a list of them) is required")
    if not items:
        raise ReadoutError(f"{where}: panels is empty; at least one quantity is required")
    cols = []
    for label, values in items:
        da, name, units = _member_values(values, where)
        mean = sweep_grid(values, x, y).transpose(y, x)
        std, count = _spread_grid(da, x, y)
        cols.append((name if label is None else str(label), units, da, mean,
                     std.transpose(y, x), count.transpose(y, x)))
    xs, ys = np.asarray(cols[0][3][x].values), np.asarray(cols[0][3][y].values)
    for label, _, _, mean, _, _ in cols[1:]:
        if not (np.array_equal(np.asarray(mean[x].values), xs) and np.array_equal(np.asarray(mean[y].values), ys)):
            raise ReadoutError(f"{where}: panel {label!r} has a different ({x}, {y}) grid than "
                               f"{cols[0][0]!r}; every panel must come from the same ensemble")
    rows = 2 if spread else 1
    n = len(cols)
    w_cell, h_cell = 0.62, 0.45
    fig = _new_figure((n * (1.9 + w_cell * max(xs.size, 3)), rows * (1.3 + h_cell * max(ys.size, 3)) + 0.6))
    axes = fig.subplots(rows, n, sharex=True, sharey=True, squeeze=False)
    fmt = lambda v: f"{v:g}" if isinstance(v, (float, np.floating)) else str(v)   # noqa: E731
    for i, (label, units, da, mean, std, count) in enumerate(cols):
        counts = np.asarray(count.values)
        seeds = _seed_phrase(counts)
        grids = [("mean", np.asarray(mean.values, dtype=float), cmap,
                  f"{label}\nmean over {seeds}", f"mean {label}")]
        if spread:
            grids.append(("std", np.asarray(std.values, dtype=float), spread_cmap,
                          f"{label}\nseed-to-seed std ({seeds})", f"std {label}"))
        for r, (kind, data, cm, ax_title, bar) in enumerate(grids):
            ax = axes[r, i]
            mesh = ax.pcolormesh(np.arange(xs.size + 1) - 0.5, np.arange(ys.size + 1) - 0.5,
                                 np.ma.masked_invalid(data), cmap=cm, shading="flat")
            mesh.set_gid(f"phase-{kind}-{i}")
            if annotate:
                _annotate_cells(ax, mesh, data, "{:.2g}", 7)
            fig.colorbar(mesh, ax=ax, label=_value_label(bar, "dimensionless" if units == "1" else units),
                         shrink=0.9)
            ax.set_title(ax_title, fontsize=9)
            ax.set_xticks(np.arange(xs.size), [fmt(v) for v in xs])
            ax.set_yticks(np.arange(ys.size), [fmt(v) for v in ys])
            ax.tick_params(labelsize=8)
            if r == rows - 1:
                ax.set_xlabel(_coord_label(x, da[x]), fontsize=9)
            if i == 0:
                ax.set_ylabel(_coord_label(y, da[y]), fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def distribution(values, *, bins="auto") -> Figure:
    """Histogram of a per-member value across the members of an ensemble.

    Non-finite values (e.g. an ISI CV with too few spikes) are left out and
    counted in the title. The bars are one ``StepPatch`` (gid ``distribution``).
    """
    da, name, units = _member_values(values, "viz.distribution")
    vals = np.asarray(da.values, dtype=float)
    finite = vals[np.isfinite(vals)]
    counts, edges = np.histogram(finite, bins=bins) if finite.size else (np.zeros(1, int), np.array([0.0, 1.0]))
    fig = _new_figure((6, 4))
    ax = fig.add_subplot()
    patch = ax.stairs(counts, edges, fill=True, color="0.45")
    patch.set_gid("distribution")
    if finite.size:
        ax.axvline(float(finite.mean()), color="k", linestyle="--", linewidth=1,
                   label=f"mean {finite.mean():.3g}")
        ax.legend(fontsize=8)
    ax.set_xlabel(_value_label(name, units))
    ax.set_ylabel("members (count)")
    left_out = vals.size - finite.size
    ax.set_title(f"{name} across {vals.size} members" + (f" ({left_out} non-finite left out)" if left_out else ""),
                 fontsize=10)
    return fig


__all__ = ["BANDS_HZ", "COLORS", "distribution", "field_maps", "fields", "laminar_order", "phase_diagram",
           "population_rates", "population_spectrum", "raster", "rates", "spectrum", "spike_coordinates", "summary",
           "sweep_grid", "sweep_heatmap", "voltages", "vm_histogram"]
