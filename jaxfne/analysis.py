"""Lazy analysis of recorded spikes and field proxies (``jaxfne.analysis``).

Every function takes Signals (in memory, or from ``jaxfne.open_signals`` /
``simulate(store=...)``; a store path is opened for you) and returns a lazy,
labelled ``xarray.DataArray`` backed by Dask: call ``.compute()`` (or
``.values``) to evaluate it. Results keep the member coordinates (seed, swept
values), so ``rate.groupby("drive.current.E").mean()`` works, and have one dim
per grouping:

``by="cell_type"`` (default), ``"layer"``, ``"column"``, a tuple of them such
as ``("cell_type", "layer")``, ``None`` (all neurons together) or ``"neuron"``
(per neuron, no grouping).

Nothing loads a whole array: spikes are read in blocks of one Dask chunk
(whole stored shards, ``BLOCK_BYTES`` at most in memory per task) and reduced
to small per-neuron or per-bin tables before anything is combined. Spike
statistics are exact integer sums until the final division, and spectra use a
chunking fixed by the data's shape, so in-memory Signals and the store of the
same run give identical results, on any Dask scheduler.

Definitions (times in steps of ``dt_ms``; "bins" are consecutive,
non-overlapping windows of ``bin_ms`` from the window start, a trailing
partial bin dropped):

* ``firing_rate``: spikes / (neurons x duration), Hz (Elephant's
  ``mean_firing_rate`` per neuron, averaged over the group).
* ``cv_isi``: per neuron std(ISI)/mean(ISI) (population std, ddof=0, as
  Elephant's ``cv(isi(...))``) over neurons with at least two ISIs, averaged
  over the group; NaN when no neuron qualifies.
* ``fano_factor``: per neuron var/mean (ddof=0) of its spike counts in bins
  of ``bin_ms`` (default 100 ms), as Elephant's ``fanofactor`` applied to the
  bins of one neuron; averaged over neurons with at least one spike.
* ``synchrony``: Golomb's chi^2 (Golomb 2007, Scholarpedia 2(1):1347) of
  spike counts in bins of ``bin_ms`` (default 5 ms):
  Var_t(mean_i x_i(t)) / mean_i Var_t(x_i(t)); about 1/N for independent
  neurons, 1 for full synchrony.
* ``population_rate``: spikes per bin / (neurons x bin), Hz, per bin.
* ``rate_spectrum`` / ``lfp_spectrum``: Welch power spectral density
  (Hann window, ``nperseg`` samples, 50% overlap, constant detrend, one-sided
  density: as ``scipy.signal.welch`` defaults with that ``nperseg``); of the
  population rate (bins of ``bin_ms``, default 1 ms) in Hz^2/Hz, and of the
  LFP proxy per contact in (a.u.)^2/Hz. ``nperseg`` defaults to the power of
  two nearest to half a second of samples (at most the recording), and must
  be even.
"""

from __future__ import annotations

import dataclasses
import json
import math

import dask.array as da
import numpy as np
import xarray as xr

from ._errors import ConfigurationError, ReadoutError
from ._probes import REGISTRY
from ._stats import cv_from_isi_sums
from ._validate import parse_steps
from .config import CELL_TYPES, Configuration
from .results import open_signals

__all__ = ["cv_isi", "evoked_field", "fano_factor", "firing_rate", "lfp_spectrum", "population_rate", "psth",
           "rate_spectrum", "stimulus_onsets", "synchrony"]

#: target size of one block of spikes read by one task
BLOCK_BYTES = 16 * 2**20
GROUPINGS = ("cell_type", "layer", "column")


# -- inputs ----------------------------------------------------------------------------


class _Spikes:
    """The spike raster as a Dask array (member, time, neuron) plus its labels."""

    def __init__(self, signals, time_window_ms, where: str):
        if isinstance(signals, (str, bytes)) or hasattr(signals, "__fspath__"):
                signals = open_signals(signals)
        if not hasattr(signals, "dataset") or "SPK" not in signals.dataset.data_vars:
            raise ReadoutError(f"{where}: signals need the 'SPK' probe (spike raster); pass jaxfne Signals")
        spk = signals["SPK"]
        self.squeeze = "member" not in spk.dims
        if self.squeeze:
            spk = spk.expand_dims("member")
        spk = spk.transpose("member", "time", "neuron")
        self.dt_ms = float(signals.dt_ms)
        spk, self.t0_ms = _window(spk, time_window_ms, self.dt_ms, where)
        self.da = spk
        self.n_members, self.n_time, self.n = spk.shape
        self._counts = self._stored_counts(signals, spk)
        self.cell_type = np.broadcast_to(np.asarray(spk["cell_type"].values), (self.n_members, self.n))
        self.layer = np.asarray(spk["layer"].values)
        # several columns (docs/laminar.md): a column label per neuron; stores from before have none
        self.column = (np.asarray(spk["column"].values) if "column" in spk.coords
                       else np.full(self.n, str(signals.attrs.get("column", "column"))))
        keep = [k for k, c in spk.coords.items() if set(c.dims) <= {"member"}]
        self.member_coords = spk.drop_vars([k for k in spk.coords if k not in keep]).coords
        self.neuron_coords = {k: spk[k] for k in ("neuron", "column", "layer", "cell_type", "depth_um")
                              if k in spk.coords}

    def _stored_counts(self, signals, spk: xr.DataArray):
        """(spike counts of these members (member, bin, neuron) as stored, steps per bin, first step) when
        the signals come from a store that keeps them (schema 2) and hold every neuron and a contiguous run
        of steps; else None (the raster is read)."""
        source = signals.events
        if not hasattr(source, "counts") or self.n_time == 0:
            return None
        time_ms = np.asarray(spk["time"].values, dtype=np.float64)
        first = int(round(time_ms[0] / self.dt_ms))
        if not (np.array_equal(time_ms, np.arange(first, first + self.n_time) * self.dt_ms)
                and np.array_equal(np.asarray(spk["neuron"].values), np.arange(self.n))):
            return None
        counts, bin_steps = source.counts()
        if counts.shape[2] != self.n:
            return None
        members = np.atleast_1d(np.asarray(spk["member"].values)) if "member" in spk.coords else np.zeros(1, int)
        return counts[members.astype(np.int64)], bin_steps, first

    def counts(self, bin_steps: int, n_bins: int):
        """Spike counts (member, bin, neuron) int32 in ``n_bins`` bins of ``bin_steps`` from the window's start,
        summed from the store's counts when their bins tile these (integers: the raster's sums exactly);
        None when they do not."""
        if self._counts is None:
            return None
        stored, b, first = self._counts
        if bin_steps % b or first % b or first // b + n_bins * (bin_steps // b) > stored.shape[1]:
            return None
        k = bin_steps // b
        x = stored[:, first // b:first // b + n_bins * k].astype(np.int32)
        if k > 1:
            x = x.rechunk({1: k * max(1, x.chunks[1][0] // k)})
            x = da.coarsen(np.sum, x, {1: k}).astype(np.int32)
        return x

    def total_counts(self):
        """Spikes per (member, neuron) over the window, int64, from the stored counts when their bins cover it
        exactly (its end on a bin edge, or the end of the recording); None otherwise."""
        if self._counts is None:
            return None
        stored, b, first = self._counts
        end = first + self.n_time
        if first % b or (end % b and -(-end // b) != stored.shape[1]):
            return None
        return stored[:, first // b:-(-end // b)].astype(np.int64).sum(axis=1)

    def labels(self, by: str) -> np.ndarray:
        """The (member, neuron) labels of grouping ``by``."""
        values = {"cell_type": self.cell_type, "layer": self.layer, "column": self.column}[by]
        return np.broadcast_to(values, (self.n_members, self.n))

    def dask(self, multiple_of: int = 1) -> da.Array:
        """The raster as Dask, time blocks a multiple of ``multiple_of`` steps (and of the stored chunks)."""
        data = self.da.data
        member_chunks = data.chunks[0] if isinstance(data, da.Array) else 1
        source = data.chunks[1][0] if isinstance(data, da.Array) else None
        base = multiple_of if source is None else math.lcm(source, multiple_of)
        if base * self.n > 4 * BLOCK_BYTES:
            base = multiple_of
        per_member = member_chunks if isinstance(member_chunks, int) else max(member_chunks)
        k = max(1, BLOCK_BYTES // max(base * self.n * per_member, 1))
        chunks = (member_chunks, base * k, self.n)
        if isinstance(data, da.Array):
            return data.rechunk(chunks)
        return da.from_array(np.asarray(data), chunks=chunks)


def _window(spk: xr.DataArray, time_window_ms, dt_ms: float, where: str):
    if time_window_ms is None:
        return spk, 0.0
    ok = (hasattr(time_window_ms, "__len__") and len(time_window_ms) == 2
          and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                  for x in time_window_ms) and 0 <= time_window_ms[0] < time_window_ms[1])
    if not ok:
        raise ConfigurationError(f"{where}: time_window_ms={time_window_ms!r} is invalid; a pair (start, stop) "
                                 "with 0 <= start < stop in ms is required")
    t = np.asarray(spk["time"].values)
    idx = np.flatnonzero((t >= time_window_ms[0] - 1e-9) & (t < time_window_ms[1] - 1e-9))
    if idx.size == 0:
        raise ReadoutError(f"{where}: time_window_ms={tuple(time_window_ms)} holds no time step; the recording "
                           f"covers 0-{t.size * dt_ms:g} ms")
    return spk.isel(time=slice(int(idx[0]), int(idx[-1]) + 1)), float(t[idx[0]])


def _bin_steps(bin_ms, dt_ms: float, n_time: int, where: str, minimum_bins: int = 1) -> int:
    steps = parse_steps(where, "bin_ms", bin_ms, dt_ms)
    if n_time // steps < minimum_bins:
        raise ReadoutError(f"{where}: bin_ms={bin_ms!r} gives {n_time // steps} bin(s) in "
                           f"{n_time * dt_ms:g} ms; at least {minimum_bins} are needed")
    return steps


class _Groups:
    """Membership of neurons in groups: ``mask`` (member, neuron, G) and the labels of G."""

    def __init__(self, spikes: _Spikes, by, where: str):
        if by is None:
            by = ()
        elif isinstance(by, str):
            by = (by,)
        else:
            by = tuple(by)
        self.per_neuron = by == ("neuron",)
        for b in by:
            if b not in GROUPINGS and not self.per_neuron:
                raise ConfigurationError(f"{where}: by={b!r} is invalid; use 'cell_type', 'layer', 'column', "
                                         "a tuple of them such as ('cell_type', 'layer'), 'neuron' or None")
        if len(set(by)) != len(by):
            raise ConfigurationError(f"{where}: by={by!r} is invalid; a grouping may appear once")
        self.by = by
        m, n = spikes.n_members, spikes.n
        if self.per_neuron:
            self.dims, self.labels, self.mask = ("neuron",), [], None
            return
        labels = []
        for b in by:
            if b == "cell_type":
                present = set(np.unique(spikes.cell_type).tolist())
                labels.append([c for c in CELL_TYPES if c in present] + sorted(present - set(CELL_TYPES)))
            else:
                labels.append(list(dict.fromkeys(spikes.labels(b)[0].tolist())))
        self.dims, self.labels = by, labels
        mask = np.ones((m, n, 1), dtype=bool)
        for b, labs in zip(by, labels):
            values = spikes.labels(b)
            this = np.stack([values == lab for lab in labs], axis=-1)              # (m, n, L)
            mask = (mask[..., :, None] & this[..., None, :]).reshape(m, n, -1)
        self.mask = mask
        self.sizes = mask.sum(axis=1)                                              # (m, G)

    @property
    def shape(self) -> tuple:
        return tuple(len(lab) for lab in self.labels)

    def coords(self) -> dict:
        return {b: labs for b, labs in zip(self.dims, self.labels)}


def _wrap(spikes: _Spikes, groups: _Groups, data, name: str, units: str, description: str,
          extra_dims=(), extra_coords=None) -> xr.DataArray:
    """Label ``data`` (member, G or neuron, *extra) as (member, *group dims, *extra)."""
    m = spikes.n_members
    if groups.per_neuron:
        dims = ("member", "neuron", *extra_dims)
    else:
        data = data.reshape((m, *groups.shape, *data.shape[2:]))
        dims = ("member", *groups.dims, *extra_dims)
    out = xr.DataArray(data, dims=dims, coords=spikes.member_coords, name=name,
                       attrs={"units": units, "description": description})
    if groups.per_neuron:
        out = out.assign_coords({k: v for k, v in spikes.neuron_coords.items()})
    else:
        out = out.assign_coords(groups.coords())
    if extra_coords:
        out = out.assign_coords(extra_coords)
    if spikes.squeeze:
        out = out.isel(member=0)
    return out


# -- block kernels (module level: they travel to dask.distributed workers) --------------------


def _bin_counts(block: np.ndarray, bin_steps: int) -> np.ndarray:
    m, t, n = block.shape
    return block.reshape(m, t // bin_steps, bin_steps, n).sum(axis=2, dtype=np.int32)


def _group_sum(counts: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(m, b, n) integer counts x (m, n, G) membership -> (m, b, G) int64, exact (float64 < 2**53)."""
    return np.matmul(counts.astype(np.float64), mask.astype(np.float64)).astype(np.int64)


def _isi_block(block: np.ndarray, block_info=None) -> np.ndarray:
    """Per neuron of one time block: [spikes, first, last, sum ISI, sum ISI^2] (int64, steps)."""
    t_offset = block_info[0]["array-location"][1][0]
    m, _, n = block.shape
    out = np.zeros((m, 1, n, 5), dtype=np.int64)
    out[..., 1:3] = -1
    mi, ti, ni = np.nonzero(block)
    if mi.size == 0:
        return out
    order = np.lexsort((ti, ni, mi))
    key = mi[order] * n + ni[order]
    t = ti[order].astype(np.int64) + t_offset
    flat = out.reshape(m * n, 5)
    flat[:, 0] = np.bincount(key, minlength=m * n)
    uniq, first = np.unique(key, return_index=True)
    last = np.r_[first[1:], key.size] - 1
    flat[uniq, 1] = t[first]
    flat[uniq, 2] = t[last]
    same = key[1:] == key[:-1]
    isi = (t[1:] - t[:-1])[same]
    k = key[1:][same]
    flat[:, 3] = np.bincount(k, weights=isi, minlength=m * n).astype(np.int64)
    flat[:, 4] = np.bincount(k, weights=isi.astype(np.float64) ** 2, minlength=m * n).astype(np.int64)
    return out


def _isi_combine(stats: np.ndarray) -> np.ndarray:
    """Join block statistics in time order: (m, blocks, n, 5) -> (m, n, 3) [ISIs, sum, sum of squares]."""
    m, _, n, _ = stats.shape
    total = np.zeros((m, n), np.int64)
    s1 = np.zeros((m, n), np.int64)
    s2 = np.zeros((m, n), np.int64)
    last = np.full((m, n), -1, np.int64)
    for b in range(stats.shape[1]):
        count, first, end, w1, w2 = (stats[:, b, :, k] for k in range(5))
        has = count > 0
        gap = np.where(has & (last >= 0), first - last, 0)
        s1 += w1 + gap
        s2 += w2 + gap * gap
        last = np.where(has, end, last)
        total += count
    return np.stack([np.maximum(total - 1, 0), s1, s2], axis=-1)


def _exact(x: np.ndarray) -> np.ndarray:
    return np.asarray(x).astype(object)


def _var_ratio_num(n, s1, s2) -> np.ndarray:
    """n * s2 - s1^2 computed exactly (Python integers), as float64."""
    return np.asarray(_exact(n) * _exact(s2) - _exact(s1) ** 2, dtype=np.float64)


def _fano_from_sums(sx: np.ndarray, sxx: np.ndarray, n_bins: int) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        ff = _var_ratio_num(np.full(sx.shape, n_bins, dtype=np.int64), sx, sxx) / (n_bins * sx.astype(np.float64))
    return np.where(sx > 0, ff, np.nan)


def _group_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of per-neuron ``values`` (m, n) over each group (m, n, G), ignoring NaN; NaN if none."""
    m, _, g = mask.shape
    out = np.full((m, g), np.nan)
    for i in range(m):
        for j in range(g):
            vals = values[i][mask[i, :, j] & ~np.isnan(values[i])]
            if vals.size:
                out[i, j] = vals.sum() / vals.size
    return out


def _per_group(spikes: _Spikes, groups: _Groups, per_neuron: da.Array, fn, *args) -> da.Array:
    """Apply ``fn(per_neuron_block, *args)`` -> (m, n) values, then average over groups (lazily)."""
    values = da.map_blocks(fn, per_neuron, *args, dtype=np.float64,
                           chunks=per_neuron.chunks[:2], drop_axis=list(range(2, per_neuron.ndim)))
    if groups.per_neuron:
        return values
    values = values.rechunk({0: -1, 1: -1})
    return da.map_blocks(_group_mean, values, groups.mask, dtype=np.float64, chunks=((spikes.n_members,),
                         (groups.mask.shape[2],)))


# -- statistics ------------------------------------------------------------------------------------


def firing_rate(signals, by="cell_type", *, time_window_ms=None) -> xr.DataArray:
    """Mean firing rate in Hz per member and group (spikes / (neurons x duration))."""
    where = "analysis.firing_rate"
    sp = _Spikes(signals, time_window_ms, where)
    groups = _Groups(sp, by, where)
    counts = sp.total_counts()                                                     # (m, n), stored counts
    counts = sp.dask().sum(axis=1, dtype=np.int64) if counts is None else counts   # ... or the raster
    duration_s = sp.n_time * sp.dt_ms / 1000.0
    if groups.per_neuron:
        rate = counts / duration_s
    else:
        mask = da.from_array(groups.mask.astype(np.int64), chunks=(counts.chunks[0], sp.n, -1))
        rate = (counts[:, :, None] * mask).sum(axis=1) / (np.maximum(groups.sizes, 1) * duration_s)
        rate = da.where(groups.sizes > 0, rate, np.nan)
    return _wrap(sp, groups, rate, "firing_rate", "Hz", f"mean firing rate over {sp.n_time * sp.dt_ms:g} ms")


def cv_isi(signals, by="cell_type", *, time_window_ms=None) -> xr.DataArray:
    """Coefficient of variation of inter-spike intervals (per neuron, averaged over a group)."""
    where = "analysis.cv_isi"
    sp = _Spikes(signals, time_window_ms, where)
    groups = _Groups(sp, by, where)
    spk = sp.dask()
    stats = da.map_blocks(_isi_block, spk, dtype=np.int64, new_axis=3,
                          chunks=(spk.chunks[0], (1,) * len(spk.chunks[1]), spk.chunks[2], (5,)))
    isi = da.map_blocks(_isi_combine, stats.rechunk({1: -1}), dtype=np.int64, drop_axis=1,
                        chunks=(stats.chunks[0], stats.chunks[2], (3,)))
    cv = _per_group(sp, groups, isi, cv_from_isi_sums)     # jaxfne._stats: the one ISI CV
    return _wrap(sp, groups, cv, "cv_isi", "1",
                 "std/mean of inter-spike intervals per neuron (ddof=0, neurons with >= 2 ISIs), group mean")


def _binned(sp: _Spikes, bin_steps: int) -> da.Array:
    """Spike counts per neuron and bin (member, bin, neuron), int32, lazily."""
    n_bins = sp.n_time // bin_steps
    stored = sp.counts(bin_steps, n_bins)              # a store's spike counts, when their bins tile these
    if stored is not None:
        return stored
    spk = sp.dask(bin_steps)[:, : n_bins * bin_steps]
    return da.map_blocks(_bin_counts, spk, bin_steps, dtype=np.int32,
                         chunks=(spk.chunks[0], tuple(c // bin_steps for c in spk.chunks[1]), spk.chunks[2]))


def fano_factor(signals, by="cell_type", *, bin_ms=100.0, time_window_ms=None) -> xr.DataArray:
    """Fano factor of spike counts in bins of ``bin_ms`` (per neuron, averaged over a group)."""
    where = "analysis.fano_factor"
    sp = _Spikes(signals, time_window_ms, where)
    groups = _Groups(sp, by, where)
    bin_steps = _bin_steps(bin_ms, sp.dt_ms, sp.n_time, where, minimum_bins=2)
    x = _binned(sp, bin_steps).astype(np.int64)
    n_bins = x.shape[1]
    sums = da.stack([x.sum(axis=1), (x * x).sum(axis=1)], axis=-1)                 # (m, n, 2)
    ff = _per_group(sp, groups, sums, _fano_sums, n_bins)
    return _wrap(sp, groups, ff, "fano_factor", "1",
                 f"var/mean (ddof=0) of spike counts in {n_bins} bins of {bin_steps * sp.dt_ms:g} ms per neuron "
                 "(neurons with >= 1 spike), group mean")


def _fano_sums(sums: np.ndarray, n_bins: int) -> np.ndarray:
    return _fano_from_sums(sums[..., 0], sums[..., 1], n_bins)


def synchrony(signals, by="cell_type", *, bin_ms=5.0, time_window_ms=None) -> xr.DataArray:
    """Golomb's chi^2: variance of the group-mean spike count over the mean single-neuron variance."""
    where = "analysis.synchrony"
    sp = _Spikes(signals, time_window_ms, where)
    groups = _Groups(sp, by, where)
    if groups.per_neuron:
        raise ConfigurationError(f"{where}: by='neuron' is invalid; synchrony is a property of a group")
    bin_steps = _bin_steps(bin_ms, sp.dt_ms, sp.n_time, where, minimum_bins=2)
    x = _binned(sp, bin_steps)
    n_bins = x.shape[1]
    mask = da.from_array(groups.mask, chunks=(x.chunks[0], sp.n, -1))
    c = da.map_blocks(_group_sum, x, mask, dtype=np.int64,
                      chunks=(x.chunks[0], x.chunks[1], (groups.mask.shape[2],)))        # (m, b, G)
    x64 = x.astype(np.int64)
    neuron = da.stack([x64.sum(axis=1), (x64 * x64).sum(axis=1)], axis=-1)             # (m, n, 2)
    group = da.stack([c.sum(axis=1), (c * c).sum(axis=1)], axis=-1)                    # (m, G, 2)
    chi2 = da.map_blocks(_chi2, neuron.rechunk({0: -1}), group.rechunk({0: -1}), groups.mask, n_bins,
                         dtype=np.float64, drop_axis=2, chunks=((sp.n_members,), (groups.mask.shape[2],)))
    return _wrap(sp, groups, chi2, "synchrony_chi2", "1",
                 f"Golomb chi^2 of spike counts in bins of {bin_steps * sp.dt_ms:g} ms: Var_t(group mean) / "
                 "mean_i Var_t(neuron i)")


def _chi2(neuron: np.ndarray, group: np.ndarray, mask: np.ndarray, n_bins: int) -> np.ndarray:
    m, g = group.shape[:2]
    nb = np.full(neuron.shape[:2], n_bins, dtype=np.int64)
    var_neuron = _var_ratio_num(nb, neuron[..., 0], neuron[..., 1])               # n_bins^2 Var(x_i)
    var_group = _var_ratio_num(np.full((m, g), n_bins, np.int64), group[..., 0], group[..., 1])
    out = np.full((m, g), np.nan)
    for i in range(m):
        for j in range(g):
            sel = mask[i, :, j]
            size = int(sel.sum())
            denom = var_neuron[i][sel].sum() * size
            if size and denom > 0:
                out[i, j] = var_group[i, j] / denom
    return out


def _rate_counts(sp: _Spikes, groups: _Groups, bin_ms, where: str):
    bin_steps = _bin_steps(bin_ms, sp.dt_ms, sp.n_time, where)
    x = _binned(sp, bin_steps)
    if groups.per_neuron:
        raise ConfigurationError(f"{where}: by='neuron' is invalid; use by=None for all neurons together")
    mask = da.from_array(groups.mask, chunks=(x.chunks[0], sp.n, -1))
    c = da.map_blocks(_group_sum, x, mask, dtype=np.int64,
                      chunks=(x.chunks[0], x.chunks[1], (groups.mask.shape[2],)))
    bin_s = bin_steps * sp.dt_ms / 1000.0
    sizes = np.maximum(groups.sizes, 1)[:, None, :]
    rate = da.where(groups.sizes[:, None, :] > 0, c / (sizes * bin_s), np.nan)     # (m, b, G)
    return da.moveaxis(rate, 1, 2), bin_steps                                      # (m, G, b)


def population_rate(signals, by="cell_type", *, bin_ms=1.0, time_window_ms=None) -> xr.DataArray:
    """Time-resolved population rate in Hz: spikes per bin / (neurons x bin), per member and group."""
    where = "analysis.population_rate"
    sp = _Spikes(signals, time_window_ms, where)
    groups = _Groups(sp, by, where)
    rate, bin_steps = _rate_counts(sp, groups, bin_ms, where)
    time = sp.t0_ms + np.arange(rate.shape[-1]) * bin_steps * sp.dt_ms
    return _wrap(sp, groups, rate, "population_rate", "Hz",
                 f"spikes per bin of {bin_steps * sp.dt_ms:g} ms / (neurons x bin)", extra_dims=("time",),
                 extra_coords={"time": ("time", time, {"units": "ms", "description": "start of the bin"})})


# -- spectra ---------------------------------------------------------------------------------------


def _default_nperseg(fs_hz: float, n: int) -> int:
    target = 2 ** int(round(math.log2(max(fs_hz * 0.5, 2.0))))
    return max(2, min(target, n - n % 2))


def _check_nperseg(nperseg, n: int, where: str) -> int:
    if isinstance(nperseg, bool) or not isinstance(nperseg, (int, np.integer)) or nperseg < 2 or nperseg % 2:
        raise ConfigurationError(f"{where}: nperseg={nperseg!r} is invalid; an even number of samples >= 2 "
                                 "is required")
    if nperseg > n:
        raise ReadoutError(f"{where}: nperseg={nperseg} is longer than the signal ({n} samples)")
    return int(nperseg)


def _periodogram_sum(block: np.ndarray, nperseg: int, window: np.ndarray) -> np.ndarray:
    """Sum over the whole segments of one block of |rfft(detrended x window)|^2: (..., T) -> (..., 1, F)."""
    seg = block.reshape(*block.shape[:-1], block.shape[-1] // nperseg, nperseg)
    seg = seg - seg.mean(axis=-1, keepdims=True)
    spec = np.fft.rfft(seg * window, axis=-1)
    return (spec.real ** 2 + spec.imag ** 2).sum(axis=-2)[..., None, :]


def _sum_blocks(parts: np.ndarray) -> np.ndarray:
    return parts.sum(axis=-2)


def welch(x: da.Array, fs_hz: float, nperseg: int) -> tuple:
    """Lazy Welch PSD along the last axis of ``x`` (as scipy.signal.welch defaults with ``nperseg``).

    The 50%-overlapping segments are two interleaved sets of adjacent
    segments; each set is cut into blocks of whole segments whose size depends
    only on the shape, so the result does not depend on how ``x`` was chunked.
    """
    from scipy.signal import get_window
    lead, n = x.shape[:-1], x.shape[-1]
    step = nperseg // 2
    n_seg = (n - nperseg) // step + 1
    window = get_window("hann", nperseg)
    n_freq = nperseg // 2 + 1
    x = x.astype(np.float64).rechunk({i: 1 for i in range(len(lead) - 1)} | {len(lead) - 1: -1})
    row = int(np.prod(x.shape[len(lead) - 1:-1], dtype=np.int64)) if lead else 1
    per_block = max(1, BLOCK_BYTES // (8 * nperseg * max(row, 1)))
    total = None
    for offset, count in ((0, (n_seg + 1) // 2), (step, n_seg // 2)):
        if count == 0:
            continue
        part = x[..., offset: offset + count * nperseg].rechunk({x.ndim - 1: per_block * nperseg})
        sums = da.map_blocks(_periodogram_sum, part, nperseg, window, dtype=np.float64, new_axis=x.ndim,
                             chunks=(*part.chunks[:-1], (1,) * len(part.chunks[-1]), (n_freq,)))
        sums = da.map_blocks(_sum_blocks, sums.rechunk({x.ndim - 1: -1}), dtype=np.float64, drop_axis=x.ndim - 1,
                             chunks=(*part.chunks[:-1], (n_freq,)))
        total = sums if total is None else total + sums
    psd = total / (n_seg * fs_hz * float((window ** 2).sum()))
    double = np.full(n_freq, 2.0)
    double[0] = 1.0
    double[-1] = 1.0
    return psd * double, np.fft.rfftfreq(nperseg, 1.0 / fs_hz)


def rate_spectrum(signals, by="cell_type", *, bin_ms=1.0, nperseg=None, time_window_ms=None) -> xr.DataArray:
    """Welch power spectral density of the population rate (bins of ``bin_ms``), Hz^2/Hz."""
    where = "analysis.rate_spectrum"
    sp = _Spikes(signals, time_window_ms, where)
    groups = _Groups(sp, by, where)
    rate, bin_steps = _rate_counts(sp, groups, bin_ms, where)
    fs = 1000.0 / (bin_steps * sp.dt_ms)
    n = rate.shape[-1]
    nperseg = _default_nperseg(fs, n) if nperseg is None else _check_nperseg(nperseg, n, where)
    psd, freq = welch(rate, fs, nperseg)
    return _wrap(sp, groups, psd, "rate_spectrum", "Hz^2/Hz",
                 f"Welch PSD of the population rate (bins of {bin_steps * sp.dt_ms:g} ms, Hann, nperseg={nperseg}, "
                 "50% overlap, constant detrend, one-sided density)", extra_dims=("frequency",),
                 extra_coords={"frequency": ("frequency", freq, {"units": "Hz"})})


def lfp_spectrum(signals, *, probe="LFP-proxy", nperseg=None, time_window_ms=None) -> xr.DataArray:
    """Welch power spectral density of the LFP proxy (or CSD proxy) per member and contact."""
    where = "analysis.lfp_spectrum"
    if isinstance(signals, (str, bytes)) or hasattr(signals, "__fspath__"):
        signals = open_signals(signals)
    fields = [name for name, p in REGISTRY.items() if p.is_field]
    if probe not in fields:
        raise ConfigurationError(f"{where}: probe={probe!r} is invalid; use one of {', '.join(map(repr, fields))}")
    if probe not in signals.dataset.data_vars:
        raise ReadoutError(f"{where}: probe {probe!r} was not recorded; add it with "
                           f"Configuration.probes([..., {probe!r}])")
    sig = signals[probe]
    squeeze = "member" not in sig.dims
    if squeeze:
        sig = sig.expand_dims("member")
    time_dim = next(d for d in sig.dims if d.startswith("time"))     # "time", or "time_sampled" (every_ms)
    t = np.asarray(sig[time_dim].values)
    step_ms = float(t[1] - t[0]) if t.size > 1 else signals.dt_ms
    if time_dim != "time":
        sig = sig.rename({time_dim: "time"})
    sig, _ = _window(sig, time_window_ms, step_ms, where)
    sig = sig.transpose("member", "contact", "time")
    fs = 1000.0 / step_ms
    n = sig.sizes["time"]
    nperseg = _default_nperseg(fs, n) if nperseg is None else _check_nperseg(nperseg, n, where)
    data = sig.data if isinstance(sig.data, da.Array) else da.from_array(np.asarray(sig.data))
    psd, freq = welch(data, fs, nperseg)
    keep = [k for k, c in sig.coords.items() if set(c.dims) <= {"member", "contact"}]
    coords = sig.drop_vars([k for k in sig.coords if k not in keep]).coords
    out = xr.DataArray(psd, dims=("member", "contact", "frequency"), coords=coords, name="lfp_spectrum",
                       attrs={"units": f"({sig.attrs.get('units', 'a.u.')})^2/Hz",
                              "description": f"Welch PSD of {probe} per contact (sampled at {fs:g} Hz, Hann, "
                                             f"nperseg={nperseg}, 50% overlap, constant detrend, one-sided "
                                             "density)"})
    out = out.assign_coords(frequency=("frequency", freq, {"units": "Hz"}))
    return out.isel(member=0) if squeeze else out


# -- evoked responses ------------------------------------------------------------------------------


def _as_signals(signals):
    return open_signals(signals) if isinstance(signals, (str, bytes)) or hasattr(signals, "__fspath__") else signals


def stimulus_onsets(signals, stimulus: str, *, where: str = "analysis.stimulus_onsets") -> list:
    """Onsets (ms) of the stimulus named ``stimulus`` in each member of ``signals`` (a list, one tuple per
    member; one tuple when the signals hold one network), read from the stored configuration
    (``attrs["config_json"]``) and, where the ensemble sweeps a timing field (``stimulus.<name>.onset_ms``,
    ``period_ms``, ``count``), from that member's swept value."""
    signals = _as_signals(signals)
    if "config_json" not in signals.attrs:
        raise ReadoutError(f"{where}: stimulus={stimulus!r} cannot be found: these signals carry no 'config_json' "
                           "attribute (their configuration); pass onsets_ms=[...] instead")
    cfg = Configuration.from_dict(json.loads(signals.attrs["config_json"]))
    specs = {s.name: s for s in cfg.stimuli_spec}
    if stimulus not in specs:
        raise ConfigurationError(f"{where}: stimulus={stimulus!r} is not a stimulus of this run; its stimuli are "
                                 f"{', '.join(map(repr, sorted(specs))) or 'none'}")
    spec = specs[stimulus]
    duration_ms = cfg.runtime_spec.duration_ms
    ds = signals.dataset
    members = ds.sizes.get("member")
    out = []
    for i in range(1 if members is None else members):
        values = dict(spec.values)
        for field in values:
            key = f"stimulus.{stimulus}.{field}"
            if key in ds.coords:
                v = ds.coords[key].values
                v = v.item() if v.ndim == 0 else v[i].item()
                values[field] = int(v) if field == "count" else v
        out.append(tuple(float(t) for t in
                         dataclasses.replace(spec, values=tuple(sorted(values.items()))).onsets_ms(duration_ms)))
    return out[0] if members is None else out


def _trial_onsets(signals, stimulus, onsets_ms, n_members: int, squeeze: bool, where: str) -> list:
    """Onsets per member (a list of n_members lists) from ``stimulus`` xor ``onsets_ms``."""
    if (stimulus is None) == (onsets_ms is None):
        raise ConfigurationError(f"{where}: stimulus={stimulus!r}, onsets_ms={onsets_ms!r} is invalid; give one of "
                                 "stimulus=<name> (onsets read from the run's configuration) or onsets_ms=[...]")
    if stimulus is not None:
        per = stimulus_onsets(signals, stimulus, where=where)
        return [list(per)] if squeeze else [list(p) for p in per]
    ok = (hasattr(onsets_ms, "__iter__") and not isinstance(onsets_ms, (str, bytes))
          and all(isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)
                  and math.isfinite(x) for x in onsets_ms))
    if not ok:
        raise ConfigurationError(f"{where}: onsets_ms={onsets_ms!r} is invalid; a list of finite times in ms "
                                 "is required")
    return [[float(x) for x in onsets_ms]] * n_members


def _parse_window(window_ms, where: str) -> tuple:
    ok = (hasattr(window_ms, "__len__") and len(window_ms) == 2
          and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in window_ms)
          and window_ms[0] <= 0 < window_ms[1])
    if not ok:
        raise ConfigurationError(f"{where}: window_ms={window_ms!r} is invalid; a pair (-pre, post) in ms around "
                                 "each onset with -pre <= 0 < post is required")
    return float(window_ms[0]), float(window_ms[1])


def _step_index(t_ms: float, step_ms: float, field: str, value, where: str) -> int:
    k = round(t_ms / step_ms)
    if abs(k * step_ms - t_ms) > 1e-6 * max(step_ms, abs(t_ms)):
        raise ConfigurationError(f"{where}: {field}={value!r} is invalid; it must be a whole number of "
                                 f"samples of {step_ms:g} ms")
    return int(k)


def _trials(onsets: list, start: int, length: int, first: int, n_time: int, step_ms: float, where: str):
    """Per member, the sample index of each kept trial's window start, and the number dropped."""
    kept, dropped = [], []
    for member_onsets in onsets:
        starts = [_step_index(t, step_ms, "onsets_ms", t, where) - first + start for t in member_onsets]
        ok = [s for s in starts if 0 <= s and s + length <= n_time]
        kept.append(ok)
        dropped.append(len(starts) - len(ok))
    return kept, dropped


def _trial_sum(x: da.Array, starts: list, length: int) -> da.Array:
    """Sum over trials of x[s:s+length] along axis 0 (one member's data, time first)."""
    if not starts:
        return da.zeros((length, *x.shape[1:]), dtype=x.dtype)
    return da.stack([x[s:s + length] for s in starts]).sum(axis=0)


def psth(signals, stimulus=None, *, onsets_ms=None, window_ms=(-20.0, 50.0), bin_ms=1.0,
         by="cell_type") -> xr.DataArray:
    """Trial-aligned peri-stimulus time histogram in Hz per member, group and bin.

    Trials are the windows ``window_ms`` = (-pre, post) around each onset of the
    stimulus named ``stimulus`` (from the run's stored configuration, per
    member where the ensemble sweeps its timing) or of ``onsets_ms``. A bin's
    value is the group's spikes in that bin summed over the kept trials /
    (trials x neurons x bin) -- exact integer sums until that one division.
    ``time`` is the bin start in ms from onset. Trials whose window leaves the
    recording are dropped: coordinates ``n_trials`` and ``n_trials_dropped``
    (per member) count them; a member without a kept trial is NaN.
    """
    where = "analysis.psth"
    signals = _as_signals(signals)
    sp = _Spikes(signals, None, where)
    groups = _Groups(sp, by, where)
    if groups.per_neuron:
        raise ConfigurationError(f"{where}: by='neuron' is invalid; use by=None for all neurons together")
    pre, post = _parse_window(window_ms, where)
    onsets = _trial_onsets(signals, stimulus, onsets_ms, sp.n_members, sp.squeeze, where)
    bin_steps = parse_steps(where, "bin_ms", bin_ms, sp.dt_ms)
    start = _step_index(pre, sp.dt_ms, "window_ms", window_ms, where)
    length = _step_index(post - pre, sp.dt_ms, "window_ms", window_ms, where)
    if length % bin_steps:
        raise ConfigurationError(f"{where}: window_ms={window_ms!r} is invalid with bin_ms={bin_ms!r}; the window "
                                 "must be a whole number of bins")
    first = int(round(float(sp.da["time"].values[0]) / sp.dt_ms))
    kept, dropped = _trials(onsets, start, length, first, sp.n_time, sp.dt_ms, where)
    # group counts on the coarsest grid holding every trial start and bin edge: the store's counts when
    # their bins tile it, else the raster
    grid = math.gcd(bin_steps, *[s for member in kept for s in member]) if any(kept) else bin_steps
    x = _binned(sp, grid)                                                          # (m, B, n)
    mask = da.from_array(groups.mask, chunks=(x.chunks[0], sp.n, -1))
    c = da.map_blocks(_group_sum, x, mask, dtype=np.int64,
                      chunks=(x.chunks[0], x.chunks[1], (groups.mask.shape[2],)))      # (m, B, G)
    n_bins, per_bin = length // bin_steps, bin_steps // grid
    sums = da.stack([_trial_sum(c[i], [s // grid for s in kept[i]], length // grid)
                     for i in range(sp.n_members)])                                # (m, L, G)
    sums = sums.reshape(sp.n_members, n_bins, per_bin, -1).sum(axis=2)             # (m, b, G)
    n_trials = np.array([len(k) for k in kept])
    denom = (n_trials[:, None, None] * groups.sizes[:, None, :] * (bin_steps * sp.dt_ms / 1000.0)).astype(float)
    rate = da.where(denom > 0, sums / np.where(denom > 0, denom, 1.0), np.nan)
    time = pre + np.arange(n_bins) * bin_steps * sp.dt_ms
    label = f"stimulus {stimulus!r}" if stimulus is not None else "onsets_ms"
    out = _wrap(sp, groups, da.moveaxis(rate, 1, -1), "psth", "Hz",
                f"trial-aligned PSTH around the onsets of {label}: spikes per bin of {bin_steps * sp.dt_ms:g} ms "
                "summed over kept trials / (trials x neurons x bin); trials whose window leaves the recording "
                "are dropped (coordinates n_trials, n_trials_dropped)",
                extra_dims=("time",),
                extra_coords={"time": ("time", time, {"units": "ms", "description": "bin start from onset"})})
    counts = {"n_trials": n_trials, "n_trials_dropped": np.array(dropped)}
    if sp.squeeze:
        out = out.assign_coords({k: int(v[0]) for k, v in counts.items()})
    else:
        out = out.assign_coords({k: ("member", v) for k, v in counts.items()})
    out.attrs.update(window_ms=[pre, post], bin_ms=bin_steps * sp.dt_ms,
                     trials_kept=int(n_trials.sum()), trials_dropped=int(sum(dropped)))
    return out


def evoked_field(signals, probe="CSD-proxy", stimulus=None, *, onsets_ms=None,
                 window_ms=(-20.0, 50.0)) -> xr.DataArray:
    """Trial average of a field proxy (``probe``: "CSD-proxy" or "LFP-proxy") per member, contact and sample.

    The samples of ``window_ms`` = (-pre, post) around each onset (of
    ``stimulus`` from the stored configuration, or ``onsets_ms``), averaged
    over the trials whose window lies inside the recording (the others are
    dropped and counted, as in :func:`psth`); ``time`` is ms from onset.
    Sampled probes (``every_ms``) need onsets and window on their samples.
    """
    where = "analysis.evoked_field"
    signals = _as_signals(signals)
    fields = [name for name, p in REGISTRY.items() if p.is_field]
    if probe not in fields:
        raise ConfigurationError(f"{where}: probe={probe!r} is invalid; use one of {', '.join(map(repr, fields))}")
    if probe not in signals.dataset.data_vars:
        raise ReadoutError(f"{where}: probe {probe!r} was not recorded; add it with "
                           f"Configuration.probes([..., {probe!r}])")
    sig = signals[probe]
    squeeze = "member" not in sig.dims
    if squeeze:
        sig = sig.expand_dims("member")
    time_dim = next(d for d in sig.dims if d.startswith("time"))
    if time_dim != "time":
        sig = sig.rename({time_dim: "time"})
    sig = sig.transpose("member", "time", "contact")
    t = np.asarray(sig["time"].values, dtype=np.float64)
    step_ms = float(t[1] - t[0]) if t.size > 1 else float(signals.dt_ms)
    pre, post = _parse_window(window_ms, where)
    onsets = _trial_onsets(signals, stimulus, onsets_ms, sig.sizes["member"], squeeze, where)
    start = _step_index(pre, step_ms, "window_ms", window_ms, where)
    length = _step_index(post - pre, step_ms, "window_ms", window_ms, where)
    first = _step_index(t[0], step_ms, "time", t[0], where)
    kept, dropped = _trials(onsets, start, length, first, t.size, step_ms, where)
    data = sig.data if isinstance(sig.data, da.Array) else da.from_array(np.asarray(sig.data))
    data = data.astype(np.float64)
    n_trials = np.array([len(k) for k in kept])
    mean = da.stack([_trial_sum(data[i], kept[i], length) / max(n_trials[i], 1) for i in range(len(kept))])
    mean = da.where((n_trials > 0)[:, None, None], mean, np.nan)
    keep = [k for k, c in sig.coords.items() if set(c.dims) <= {"member", "contact"}]
    coords = sig.drop_vars([k for k in sig.coords if k not in keep]).coords
    out = xr.DataArray(da.moveaxis(mean, 1, 2), dims=("member", "contact", "time"), coords=coords,
                       name=f"evoked {probe}",
                       attrs={"units": sig.attrs.get("units", "a.u."), "probe": probe,
                              "description": f"{probe} averaged over the kept trials around each onset "
                                             "(trials whose window leaves the recording are dropped: coordinates "
                                             "n_trials, n_trials_dropped)",
                              "window_ms": [pre, post], "trials_kept": int(n_trials.sum()),
                              "trials_dropped": int(sum(dropped))})
    out = out.assign_coords(time=("time", pre + np.arange(length) * step_ms, {"units": "ms",
                                                                            "description": "time from onset"}),
                            n_trials=("member", n_trials), n_trials_dropped=("member", np.array(dropped)))
    return out.isel(member=0) if squeeze else out
