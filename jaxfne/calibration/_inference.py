"""Training sets for simulation-based inference: parameters from a prior, run as ensembles, summary statistics."""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from .._api import construct, simulate
from .._errors import ConfigurationError
from ._problem import make_problem
from ._targets import evaluate

_NONFINITE = "simulate: the membrane state became non-finite"


def simulate_for_inference(cfg, prior, statistics, *, n=256, seeds=1, search_seed=0, batch=256, window_ms=None,
                           devices=None, engine="auto", chunk_ms=None) -> tuple:
    """Draw ``n`` parameter sets from ``prior``, simulate each with every seed, return ``(theta, x)``.

    ``prior``: {sweep path: (low, high)} for a uniform prior, or {sweep path:
    draw} with ``draw(rng, n)`` returning n values (any prior you sample;
    ``rng`` is the run's NumPy Generator); independent across paths. Bounds
    (for a user-given prior: the range of its draws) are checked like
    ``calibrate``'s, so a draw outside a field's allowed range is refused
    before anything runs. ``statistics``: a list of target names
    (``"spike_rate_hz.E"``, ``"cv_isi.L4.E"``, ... or readout specs, as
    ``calibrate``'s targets). Draws come from
    ``numpy.random.default_rng(search_seed)``; they are run ``batch`` draws at
    a time, each batch one ensemble (draws x seeds, a zip sweep), and reduced to
    statistics before the next batch runs, so memory holds one batch.

    Returns ``theta`` (n * len(seeds), P) and ``x`` (n * len(seeds), S): one row
    per simulated network, draw-major, seed fastest (a draw's row repeats for
    each seed). Statistics are float64; a NaN marks a statistic undefined for
    that network (no ISI pair, say), to be dropped or imputed before training.
    The columns follow the order of ``prior`` and ``statistics``.
    """
    where = "simulate_for_inference"
    if isinstance(statistics, (str, bytes)) or not hasattr(statistics, "__iter__"):
        raise ConfigurationError(f"{where}: statistics={statistics!r} is invalid; a list of statistic names "
                                 "(target names, e.g. 'spike_rate_hz.E') is required")
    statistics = list(statistics)
    for field, v in (("n", n), ("batch", batch)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ConfigurationError(f"{where}: {field}={v!r} is invalid; an integer >= 1 is required")
    if not hasattr(prior, "items") or not prior:
        raise ConfigurationError(f"{where}: prior={prior!r} is invalid; a non-empty dict {{sweep path: (low, high) "
                                 "or draw(rng, n)}} is required")
    if isinstance(search_seed, bool) or not isinstance(search_seed, numbers.Integral) or search_seed < 0:
        raise ConfigurationError(f"{where}: search_seed={search_seed!r} is invalid; an integer >= 0 is required")
    rng = np.random.default_rng(int(search_seed))
    drawn, bounds = {}, {}
    for path, spec in prior.items():
        if callable(spec):
            v = np.asarray(spec(rng, n), dtype=float)
            if v.shape != (n,) or not np.isfinite(v).all():
                raise ConfigurationError(f"{where}: prior[{path!r}] returned {v.shape} values (finite: "
                                         f"{bool(np.isfinite(v).all())}); draw(rng, n) must return n finite numbers")
            if v.min() == v.max():
                raise ConfigurationError(f"{where}: prior[{path!r}] drew the same value {v[0]!r} every time; "
                                         "fix that parameter in the configuration instead")
            drawn[path], bounds[path] = v, (float(v.min()), float(v.max()))
        else:
            bounds[path] = spec
    # the targets' values are not used here: (0, 1) only lets the same validation run
    problem = make_problem(where, cfg, bounds, {s: (0.0, 1.0) for s in statistics}, method="random", rounds=1,
                           candidates=min(n, batch), seeds=seeds, search_seed=search_seed, window_ms=window_ms)
    lo, hi = np.array(problem.low), np.array(problem.high)
    unit = np.stack([(drawn[p] - lo[j]) / (hi[j] - lo[j]) if p in drawn else rng.random(n)
                     for j, p in enumerate(problem.paths)], axis=1)
    s = len(problem.seeds)
    draws, xs = [], []
    for start in range(0, n, batch):
        values = problem.values(unit[start:start + batch])      # low + u (high - low), no repeat per path
        draws.append(values)
        model = construct(problem.ensemble(values))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_NONFINITE, category=RuntimeWarning)
            signals = simulate(model, devices=devices, engine=engine, chunk_ms=chunk_ms)
        xs.append(evaluate(signals, problem.targets, problem.window_ms))
        del signals, model
    theta = np.repeat(np.concatenate(draws, axis=0), s, axis=0)
    return theta, np.concatenate(xs, axis=0)

