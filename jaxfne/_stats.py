"""Spike-train statistics shared by readouts, analysis and figures (pure numpy).

The ISI coefficient of variation has one definition, here: per neuron,
std(ISI) / mean(ISI) with the population std (ddof=0, as Elephant's
``cv(isi(st))``), for neurons with at least ``MIN_ISIS`` inter-spike
intervals (three spikes); NaN otherwise. A group's CV is the mean over the
neurons that have one (:func:`mean_cv`).

ISIs are counted in time steps, so a neuron's statistics are three integers
(:func:`isi_sums`): the number of ISIs k, their sum S1 and the sum of their
squares S2. Then CV = sqrt(k S2 - S1^2) / S1, computed with exact integers
until the final square root and division: the value does not depend on how
the spikes were read (whole raster, time blocks joined later, any order).
"""

from __future__ import annotations

import numpy as np

#: a neuron has an ISI CV when it has at least this many ISIs
MIN_ISIS = 2


def isi_sums(steps, neurons, n: int) -> np.ndarray:
    """(n, 3) int64 per neuron: [ISIs, sum of ISIs, sum of squared ISIs], in steps.

    ``steps``: the time step of each spike; ``neurons``: its neuron index
    0..n-1; in any order.
    """
    steps = np.asarray(steps, dtype=np.int64).ravel()
    neurons = np.asarray(neurons, dtype=np.int64).ravel()
    out = np.zeros((n, 3), dtype=np.int64)
    if steps.size < 2:
        return out
    order = np.lexsort((steps, neurons))
    t, k = steps[order], neurons[order]
    same = k[1:] == k[:-1]
    isi = (t[1:] - t[:-1])[same]
    who = k[1:][same]
    np.add.at(out[:, 0], who, 1)
    np.add.at(out[:, 1], who, isi)
    np.add.at(out[:, 2], who, isi * isi)
    return out


def raster_isi_sums(raster) -> np.ndarray:
    """:func:`isi_sums` of a (time, neuron) spike raster (boolean or 0/1)."""
    raster = np.asarray(raster)
    t, k = np.nonzero(raster)
    return isi_sums(t, k, raster.shape[1])


def cv_from_isi_sums(sums) -> np.ndarray:
    """ISI CV from :func:`isi_sums` (..., 3) -> (...) float64; NaN with fewer than ``MIN_ISIS`` ISIs.

    sqrt(k S2 - S1^2) / S1 equals std(ISI) / mean(ISI) with ddof=0; k S2 - S1^2
    is computed with Python integers (exact at any size), then as float64.
    """
    sums = np.asarray(sums)
    k, s1, s2 = sums[..., 0], sums[..., 1], sums[..., 2]
    exact = np.asarray(k).astype(object) * np.asarray(s2).astype(object) - np.asarray(s1).astype(object) ** 2
    num = np.asarray(exact, dtype=np.float64)                         # k^2 Var(ISI)
    with np.errstate(invalid="ignore", divide="ignore"):
        cv = np.sqrt(np.maximum(num, 0.0)) / np.asarray(s1, dtype=np.float64)
    return np.where(k >= MIN_ISIS, cv, np.nan)


def mean_cv(cv) -> float:
    """A group's CV: the mean over its neurons that have one (not NaN); NaN if none has."""
    cv = np.asarray(cv, dtype=np.float64).ravel()
    vals = cv[~np.isnan(cv)]
    return float(vals.sum() / vals.size) if vals.size else float("nan")
