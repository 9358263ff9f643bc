"""Targets: named statistics of a run, one value per member, with the value and spread they should have.

A target is named by a string ``STATISTIC[.LAYER][.TYPE]`` (``"spike_rate_hz"``,
``"spike_rate_hz.E"``, ``"cv_isi.L4.E"``, ``"synchrony.I"``) or given as a
:class:`~jaxfne.ReadoutSpec` (``jaxfne.readout_spec(...)``: any metric, column
or time window). ``STATISTIC`` is one of :data:`STATISTICS`: a readout metric
of ``jaxfne.results`` (computed with ``compute_readout``) or a spike statistic
of ``jaxfne.analysis`` (``fano_factor``, ``synchrony``).
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np
import xarray as xr

from .._errors import ConfigurationError, ReadoutError
from .. import analysis
from ..config import CELL_TYPES, LAYER_DEPTHS_UM
from ..results import METRICS, ReadoutSpec, compute_readout, readout_spec

#: frequency bands of the LFP-proxy targets, Hz, [low, high)
LFP_BANDS_HZ = {"alpha": (8.0, 13.0), "beta": (13.0, 30.0), "gamma": (30.0, 80.0)}

#: LFP-proxy band targets: the fraction of the proxy's power (Welch PSD, every frequency above 0 Hz) in the
#: band, averaged over contacts; a ratio, so the proxy's arbitrary units cancel (docs/calibration.md)
LFP_BAND_STATISTICS = {f"lfp_band_fraction_{band}": band for band in LFP_BANDS_HZ}

#: statistics of jaxfne.analysis usable as targets, with the probe they read
ANALYSIS_STATISTICS = {"fano_factor": "SPK", "synchrony": "SPK",
                       **{name: "LFP-proxy" for name in LFP_BAND_STATISTICS}}

#: statistics a string target computes with jaxfne.analysis (spike rate and ISI CV: the readouts' definitions)
SPIKE_STATISTICS = ("spike_rate_hz", "cv_isi", "fano_factor", "synchrony")

#: every statistic a target string may name
STATISTICS = tuple(sorted(METRICS)) + tuple(sorted(ANALYSIS_STATISTICS))

#: Golomb chi^2 bins (analysis.synchrony's default)
SYNCHRONY_BIN_MS = 5.0


@dataclasses.dataclass(frozen=True)
class Target:
    """One target: how to compute it (``spec``) and what it should be (``value`` +- ``sd``)."""

    name: str
    statistic: str
    layer: str | None
    cell_type: str | None
    value: float
    sd: float
    #: the ReadoutSpec the user gave, if any (then ``statistic`` is its metric)
    spec: ReadoutSpec | None = None

    def to_dict(self) -> dict:
        out = {"name": self.name, "statistic": self.statistic, "layer": self.layer, "cell_type": self.cell_type,
               "value": self.value, "sd": self.sd}
        if self.spec is not None:
            out["spec"] = {k: (list(v) if isinstance(v, tuple) else v)
                           for k, v in dataclasses.asdict(self.spec).items()}
        return out


def _grammar() -> str:
    return (f"a target is 'STATISTIC[.LAYER][.TYPE]' with STATISTIC one of {', '.join(STATISTICS)}, LAYER one of "
            f"{', '.join(LAYER_DEPTHS_UM)} and TYPE one of {', '.join(CELL_TYPES)} (e.g. 'spike_rate_hz.L4.E'), "
            "or a jaxfne.readout_spec(...)")


def parse_name(where: str, key) -> tuple:
    """(statistic, layer, cell_type, spec) of a target key; ConfigurationError naming the key otherwise."""
    if isinstance(key, ReadoutSpec):
        return key.metric, key.layer, key.cell_type, key
    if not isinstance(key, str) or not key:
        raise ConfigurationError(f"{where}: target {key!r} is not a readout; {_grammar()}")
    stat, *rest = key.split(".")
    if stat not in STATISTICS:
        raise ConfigurationError(f"{where}: target {key!r} is not a readout: statistic {stat!r} is unknown; "
                                 f"{_grammar()}")
    layer = cell_type = None
    for part in rest:
        if part in LAYER_DEPTHS_UM and layer is None and cell_type is None:
            layer = part
        elif part in CELL_TYPES and cell_type is None:
            cell_type = part
        else:
            raise ConfigurationError(f"{where}: target {key!r} is not a readout: selector {part!r} is not a layer "
                                     f"or a cell type in that order; {_grammar()}")
    if stat in LFP_BAND_STATISTICS and (layer is not None or cell_type is not None):
        raise ConfigurationError(f"{where}: target {key!r} is not a readout: an LFP band fraction is taken over "
                                 "every contact, so it takes no layer and no cell type")
    if stat in ("lfp_abs_mean", "csd_abs_mean") and cell_type is not None:
        raise ConfigurationError(f"{where}: target {key!r} is not a readout: field proxies sum every cell, "
                                 "so they take a layer but no cell type")
    return stat, layer, cell_type, None


def parse_targets(where: str, cfg, targets) -> tuple:
    """Validate ``targets`` ({key: (value, sd)}) against ``cfg``; a tuple of :class:`Target`.

    Checks, before anything runs: the key names a statistic (with layer and
    type selectors the configuration has), the probe it reads is recorded,
    the value is finite and the sd is finite and > 0.
    """
    if not hasattr(targets, "items") or not targets:
        raise ConfigurationError(f"{where}: targets={targets!r} is invalid; a non-empty dict "
                                 "{target: (value, sd)} is required")
    layers = {lay for c in cfg.column_specs for lay in c.layers}
    probes = cfg.probes_spec.names
    out, names = [], set()
    for key, pair in targets.items():
        stat, layer, cell_type, spec = parse_name(where, key)
        name = spec.name if spec is not None else key
        if name in names:
            raise ConfigurationError(f"{where}: target name {name!r} is given twice")
        names.add(name)
        if layer is not None and layer not in layers:
            raise ConfigurationError(f"{where}: target {name!r} selects layer {layer!r}, which the configuration "
                                     f"does not have; its layers are {', '.join(sorted(layers))}")
        probe = ANALYSIS_STATISTICS.get(stat) or METRICS[stat][0]
        if probe not in probes:
            raise ConfigurationError(f"{where}: target {name!r} reads probe {probe!r}, which the configuration does "
                                     f"not record; add it with .probes([... , {probe!r}])")
        if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2:
            raise ConfigurationError(f"{where}: targets[{name!r}]={pair!r} is invalid; a pair (value, sd) is required")
        value, sd = pair
        for what, v in (("value", value), ("sd", sd)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
                raise ConfigurationError(f"{where}: targets[{name!r}] {what}={v!r} is invalid; a finite number "
                                         "is required")
        if float(sd) <= 0:
            raise ConfigurationError(f"{where}: targets[{name!r}] sd={sd!r} is invalid; it must be > 0 (the loss "
                                     "divides by it)")
        out.append(Target(name, stat, layer, cell_type, float(value), float(sd), spec))
    return tuple(out)


def fano_bin_ms(duration_ms: float, dt_ms: float) -> float:
    """Fano-factor bins: 100 ms, or a fifth of the window for windows shorter than 500 ms (as ``jaxfne analyze``)."""
    if duration_ms >= 500.0:
        return 100.0
    return max(1, round(duration_ms / 5 / dt_ms)) * dt_ms


def evaluate(signals, targets, window_ms=None) -> np.ndarray:
    """Every target's statistic per member: an array (members, targets), NaN where undefined.

    ``spike_rate_hz``, ``cv_isi``, ``fano_factor`` and ``synchrony`` named by
    a string are computed by ``jaxfne.analysis`` (lazy, exact integer sums;
    the same definitions as the readouts: ``tests/test_calibration.py``
    compares them), grouped by the layer and cell type selected, in one pass
    over the spikes; other metrics and ReadoutSpec targets by
    ``jaxfne.compute_readout``. Members whose state became non-finite read NaN.
    """
    ds = signals.dataset
    n = ds.sizes.get("member", 1)
    out = np.full((n, len(targets)), np.nan)
    window = None if window_ms is None else (float(window_ms[0]), float(window_ms[1]))
    lazy, specs = {}, []
    for j, t in enumerate(targets):
        if t.spec is None and (t.statistic in SPIKE_STATISTICS or t.statistic in LFP_BAND_STATISTICS):
            lazy[j] = _statistic(signals, t, window)
        else:
            spec = t.spec if t.spec is not None else readout_spec(t.name, t.statistic, cell_type=t.cell_type,
                                                                  layer=t.layer, time_window_ms=window)
            specs.append((j, spec))
    if lazy:
        values = xr.Dataset({f"t{j}": da for j, da in lazy.items()}).compute()
        for j in lazy:
            out[:, j] = np.asarray(values[f"t{j}"].values, dtype=float).reshape(n)
    if specs:
        values = compute_readout(signals, [s for _, s in specs])
        for j, spec in specs:
            out[:, j] = np.asarray(values[spec.name].value, dtype=float).reshape(n)
    finite = np.asarray(ds["state_finite"].values, bool).reshape(n) if "state_finite" in ds.variables \
        else np.ones(n, bool)
    out[~finite] = np.nan
    return out


def _statistic(signals, t: Target, window):
    """The lazy jaxfne.analysis statistic of target ``t``, selected to its layer and cell type (member,)."""
    if t.statistic in LFP_BAND_STATISTICS:
        return lfp_band_fraction(signals, LFP_BAND_STATISTICS[t.statistic], window)
    sel = {b: v for b, v in (("layer", t.layer), ("cell_type", t.cell_type)) if v is not None}
    by = tuple(sel) or None
    if t.statistic == "spike_rate_hz":
        da = analysis.firing_rate(signals, by=by, time_window_ms=window)
    elif t.statistic == "cv_isi":
        da = analysis.cv_isi(signals, by=by, time_window_ms=window)
    elif t.statistic == "fano_factor":
        start, stop = window if window is not None else (0.0, signals.duration_ms)
        da = analysis.fano_factor(signals, by=by, time_window_ms=window,
                                  bin_ms=fano_bin_ms(min(stop, signals.duration_ms) - start, signals.dt_ms))
    else:
        da = analysis.synchrony(signals, by=by, time_window_ms=window, bin_ms=SYNCHRONY_BIN_MS)
    for dim, label in sel.items():
        if label not in da[dim].values:
            raise ReadoutError(f"target {t.name!r}: {dim}={label!r} selects no neuron of these signals; "
                               f"they have {', '.join(map(str, da[dim].values))}")
    return da.sel(sel).drop_vars(list(sel))


def lfp_band_fraction(signals, band: str, window=None) -> xr.DataArray:
    """The fraction of the LFP proxy's power in ``band`` (LFP_BANDS_HZ), per member, averaged over contacts.

    From ``analysis.lfp_spectrum`` (Welch, its default segment length): the
    PSD summed over the band's frequencies divided by its sum over every
    frequency above 0 Hz (the constant detrend leaves 0 Hz near zero).
    """
    low, high = LFP_BANDS_HZ[band]
    psd = analysis.lfp_spectrum(signals, time_window_ms=window)
    freq = psd["frequency"]
    in_band = psd.where((freq >= low) & (freq < high), 0.0).sum("frequency")
    total = psd.where(freq > 0, 0.0).sum("frequency")
    return (in_band / total).mean("contact")


def statistics(signals, names, window_ms=None) -> np.ndarray:
    """The statistics ``names`` (target names or readout specs) of ``signals``: an array (members, names).

    What ``calibrate`` computes per network, for measuring a target or its seed-to-seed spread.
    """
    if isinstance(names, (str, bytes, ReadoutSpec)) or not hasattr(names, "__iter__"):
        names = [names]
    targets = []
    for key in names:
        stat, layer, cell_type, spec = parse_name("statistics", key)
        targets.append(Target(spec.name if spec is not None else key, stat, layer, cell_type, 0.0, 1.0, spec))
    return evaluate(signals, targets, window_ms)


def loss(readouts: np.ndarray, targets) -> np.ndarray:
    """The calibration loss of readouts (..., seeds, targets): mean over targets of ((seed mean - value) / sd)^2.

    ``inf`` where any target's seed mean is NaN (a statistic undefined for
    every seed, or a non-finite member: such a candidate ranks last).
    """
    value = np.array([t.value for t in targets])
    sd = np.array([t.sd for t in targets])
    with np.errstate(invalid="ignore"):
        mean = readouts.mean(axis=-2)
    z2 = ((mean - value) / sd) ** 2
    out = z2.mean(axis=-1)
    return np.where(np.isnan(out), np.inf, out)
