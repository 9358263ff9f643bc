"""Figures of a calibration: convergence, parameter marginals, a posterior against the truth (matplotlib Figures).

Each takes a :class:`~jaxfne.calibration.Calibration` (or its ``history``
Dataset, lazily read from a store with ``open_calibration``) and returns a
``matplotlib.figure.Figure`` without touching pyplot's global state.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .._errors import ReadoutError


def _history(calibration):
    h = getattr(calibration, "history", calibration)
    if not hasattr(h, "data_vars") or "loss" not in h.data_vars:
        raise ReadoutError(f"calibration figures: {type(calibration).__name__} is not a Calibration or its history")
    return h


def convergence(calibration) -> Figure:
    """Loss of every candidate per round (dots), the round's best and the best so far (lines), log scale."""
    h = _history(calibration)
    f = np.asarray(h["loss"].values, float)                       # (round, candidate): one small read
    rounds = np.asarray(h["round"].values)
    finite = np.where(np.isfinite(f), f, np.nan)
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.add_subplot()
    for r in range(f.shape[0]):
        ax.scatter(np.full(f.shape[1], rounds[r]), finite[r], s=8, color="0.7", zorder=1)
    best_round = np.nanmin(finite, axis=1) if f.size else []
    ax.plot(rounds, best_round, "o-", color="C0", label="best of the round")
    ax.plot(rounds, np.fmin.accumulate(best_round), "-", color="C3", lw=2, label="best so far")
    if np.nanmin(finite) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("round")
    ax.set_ylabel("loss")
    ax.set_title(f"{h.attrs.get('method', '')}: {f.shape[1]} candidates x {h.sizes['seed']} seeds per round")
    ax.legend(frameon=False)
    return fig


def marginals(calibration, truth=None, *, last_rounds=None) -> Figure:
    """One panel per parameter: where the candidates were (coloured by round) against their loss.

    ``truth`` ({path: value}) draws the known values (exercise (a));
    ``last_rounds`` keeps only that many final rounds.
    """
    h = _history(calibration)
    if last_rounds is not None:
        h = h.isel(round=slice(-int(last_rounds), None))
    params = np.asarray(h["params"].values, float)                # (round, candidate, param)
    f = np.asarray(h["loss"].values, float)
    names = [str(p) for p in h["param"].values]
    fig = Figure(figsize=(3.2 * len(names), 3.2), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    rounds = np.broadcast_to(np.arange(f.shape[0])[:, None], f.shape)
    for j, (ax, name) in enumerate(zip(axes, names)):
        ok = np.isfinite(f)
        sc = ax.scatter(params[..., j][ok], f[ok], c=rounds[ok], s=10, cmap="viridis")
        ax.set_xlim(float(h["low"].values[j]), float(h["high"].values[j]))
        if ok.any() and np.min(f[ok]) > 0:
            ax.set_yscale("log")
        i = np.unravel_index(np.nanargmin(np.where(ok, f, np.nan)), f.shape) if ok.any() else None
        if i is not None:
            ax.axvline(params[i][j], color="C3", lw=1.5, label="best")
        if truth is not None and name in truth:
            ax.axvline(truth[name], color="k", ls="--", lw=1.2, label="truth")
        ax.set_xlabel(name)
        ax.legend(frameon=False, fontsize=8)
    axes[0].set_ylabel("loss")
    fig.colorbar(sc, ax=list(axes), label="round")
    return fig


def posterior(samples, names, truth=None, prior_bounds=None) -> Figure:
    """Histograms of posterior ``samples`` (n, P), one panel per parameter, with the truth and the prior's range."""
    samples = np.asarray(samples, float)
    fig = Figure(figsize=(3.2 * len(names), 3.0), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for j, (ax, name) in enumerate(zip(axes, names)):
        ax.hist(samples[:, j], bins=40, density=True, color="C0", alpha=0.7, label="posterior")
        if prior_bounds is not None:
            lo, hi = prior_bounds[j]
            ax.axhline(1.0 / (hi - lo), color="0.5", ls=":", label="prior")
            ax.set_xlim(lo, hi)
        if truth is not None:
            ax.axvline(truth[j], color="k", ls="--", label="truth")
        ax.set_xlabel(name)
        ax.legend(frameon=False, fontsize=8)
    return fig
