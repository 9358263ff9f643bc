"""What a calibration searches (parameters and their bounds) and with which budget; checked before anything runs."""

from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np

from .._errors import ConfigurationError
from ..config import REFUSED_PATHS, SWEEP_PATHS, sweep_function
from ._targets import parse_targets

METHODS = ("cmaes", "random", "lhs")

#: sweep paths whose values are names, not numbers: nothing to calibrate continuously
_NAMED_PATHS = ("emitter.preset",)


@dataclasses.dataclass(frozen=True)
class Problem:
    """A validated calibration: the base configuration, parameters, targets, method and budget."""

    cfg: object
    paths: tuple
    low: tuple
    high: tuple
    targets: tuple
    method: str
    rounds: int
    candidates: int
    seeds: tuple
    search_seed: int
    window_ms: tuple | None

    @property
    def networks_per_round(self) -> int:
        return self.candidates * len(self.seeds)

    def to_dict(self) -> dict:
        """Everything that fixes the result: a resumed calibration must match it exactly."""
        return {"configuration": self.cfg.to_dict(),
                "params": [[p, lo, hi] for p, lo, hi in zip(self.paths, self.low, self.high)],
                "targets": [t.to_dict() for t in self.targets], "method": self.method, "rounds": self.rounds,
                "candidates": self.candidates, "seeds": list(self.seeds), "search_seed": self.search_seed,
                "window_ms": None if self.window_ms is None else list(self.window_ms)}

    def values(self, unit: np.ndarray) -> np.ndarray:
        """Parameter values of points of the unit cube (candidates, params), made distinct per parameter.

        The sweep grammar refuses a repeated value on a path (members would
        share coordinates); a repeat (two candidates clipped to the same
        bound, say) is moved by one float ulp towards the inside of the bounds.
        """
        lo, hi = np.array(self.low), np.array(self.high)
        vals = lo + np.clip(unit, 0.0, 1.0) * (hi - lo)
        for j in range(vals.shape[1]):
            seen = set()
            for i in range(vals.shape[0]):
                v = vals[i, j]
                toward = -np.inf if v >= (lo[j] + hi[j]) / 2 else np.inf
                while v in seen:
                    v = np.nextafter(v, toward)
                vals[i, j] = v
                seen.add(v)
        return vals

    def ensemble(self, values: np.ndarray):
        """The round's configuration: every candidate (zip over paths) for every seed (seed fastest)."""
        sweep = {p: [float(v) for v in values[:, j]] for j, p in enumerate(self.paths)}
        return self.cfg.ensemble(seeds=list(self.seeds), sweep=sweep, mode="zip")

    def apply(self, best: dict):
        """The base configuration with ``best`` ({path: value}) applied: a single network."""
        cfg = self.cfg
        for p in self.paths:
            cfg = sweep_function(p)(cfg, float(best[p]))
        return cfg


def _number(where, field, v):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
        raise ConfigurationError(f"{where}: {field}={v!r} is invalid; a finite number is required")
    return float(v)


def parse_params(where: str, cfg, params) -> tuple:
    """(paths, lows, highs) of ``params`` ({sweep path: (low, high)}), every bound checked by the field itself.

    A path must be a sweep path (docs/ensembles.md) with numeric values; each
    bound is applied to the configuration with the path's own setter, so a
    bound outside the field's allowed range raises that field's error.
    """
    if not hasattr(params, "items") or not params:
        raise ConfigurationError(f"{where}: params={params!r} is invalid; a non-empty dict "
                                 "{sweep path: (low, high)} is required")
    paths, lows, highs = [], [], []
    for path, bounds in params.items():
        if not isinstance(path, str):
            raise ConfigurationError(f"{where}: parameter {path!r} is invalid; a sweep path string is required")
        if path in REFUSED_PATHS:
            raise ConfigurationError(f"{where}: parameter {path!r} cannot be calibrated: it cannot be swept "
                                     f"({REFUSED_PATHS[path]})")
        if path.startswith("connectivity.pathways.") and path.endswith(".delay_ms"):
            raise ConfigurationError(f"{where}: parameter {path!r} cannot be calibrated: delays set the length of "
                                     "the delay buffers, a shape shared by all members")
        if sweep_function(path) is None:
            raise ConfigurationError(f"{where}: parameter {path!r} is not a sweep path; valid paths are "
                                     f"{', '.join(p for p in sorted(SWEEP_PATHS) if not p.startswith(_NAMED_PATHS))}"
                                     ", connectivity.pathways.<LAYER.TYPE->LAYER.TYPE>.strength and .p, "
                                     "stimulus.<name>.<numeric field>")
        if path.startswith(_NAMED_PATHS):
            raise ConfigurationError(f"{where}: parameter {path!r} cannot be calibrated: its values are preset "
                                     "names, not numbers; compare presets with a sweep instead")
        if isinstance(bounds, (str, bytes)) or not hasattr(bounds, "__len__") or len(bounds) != 2:
            raise ConfigurationError(f"{where}: params[{path!r}]={bounds!r} is invalid; a pair (low, high) "
                                     "is required")
        low = _number(where, f"params[{path!r}] low", bounds[0])
        high = _number(where, f"params[{path!r}] high", bounds[1])
        if not low < high:
            raise ConfigurationError(f"{where}: params[{path!r}]=({low!r}, {high!r}) is invalid; low < high "
                                     "is required")
        for name, v in (("low", low), ("high", high)):
            try:
                # the field's own validation, as a sweep applies it (the range is an interval: its ends suffice)
                cfg.ensemble(seeds=[0], sweep={path: [v]})
            except ConfigurationError as exc:
                if str(exc).startswith("ensemble: sweep path"):      # the path itself, whatever the value
                    raise ConfigurationError(f"{where}: parameter {path!r} cannot be calibrated: {exc}") from None
                raise ConfigurationError(f"{where}: params[{path!r}] {name}={v!r} is outside the field's allowed "
                                         f"range: {exc}") from None
        paths.append(path)
        lows.append(low)
        highs.append(high)
    return tuple(paths), tuple(lows), tuple(highs)


def parse_seeds(where: str, seeds) -> tuple:
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ConfigurationError(f"{where}: seeds={seeds!r} is invalid; a count >= 1 or a list of seeds "
                                     "is required")
        return tuple(range(int(seeds)))
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise ConfigurationError(f"{where}: seeds={seeds!r} is invalid; a count >= 1 or a list of seeds is required")
    return tuple(seeds)


def make_problem(where: str, cfg, params, targets, *, method, rounds, candidates, seeds, search_seed,
                 window_ms, max_networks=None) -> Problem:
    """Validate everything a calibration needs before anything is simulated."""
    if not hasattr(cfg, "ensemble_spec"):
        raise ConfigurationError(f"{where}: cfg={type(cfg).__name__} is invalid; a jaxfne.Configuration is required")
    if cfg.ensemble_spec is not None and cfg.ensemble_spec.sweep:
        raise ConfigurationError(f"{where}: cfg is already a sweep ({', '.join(p for p, _ in cfg.ensemble_spec.sweep)}"
                                 "); pass the base configuration: each round makes its own ensemble")
    if method not in METHODS:
        raise ConfigurationError(f"{where}: method={method!r} is unknown; valid methods are {', '.join(METHODS)}")
    seeds = parse_seeds(where, seeds)
    cfg.ensemble(seeds=list(seeds))            # seeds validated as the ensemble checks them
    for field, v, minimum in (("candidates", candidates, 2 if method == "cmaes" else 1),
                              ("search_seed", search_seed, 0)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum:
            why = " (CMA-ES ranks at least two candidates per round)" if field == "candidates" and minimum == 2 else ""
            raise ConfigurationError(f"{where}: {field}={v!r} is invalid; an integer >= {minimum} is required{why}")
    per_round = int(candidates) * len(seeds)
    if max_networks is not None:
        if isinstance(max_networks, bool) or not isinstance(max_networks, numbers.Integral):
            raise ConfigurationError(f"{where}: max_networks={max_networks!r} is invalid; an integer is required")
        if max_networks < per_round:
            raise ConfigurationError(
                f"{where}: max_networks={max_networks!r} is too small to finish one round: a round simulates "
                f"candidates x seeds = {candidates} x {len(seeds)} = {per_round} networks")
        budget_rounds = int(max_networks) // per_round
        rounds = budget_rounds if rounds is None else min(int(rounds), budget_rounds)
    if rounds is None:
        raise ConfigurationError(f"{where}: rounds=None is invalid; give rounds or max_networks as the budget")
    if isinstance(rounds, bool) or not isinstance(rounds, numbers.Integral) or rounds < 1:
        raise ConfigurationError(f"{where}: rounds={rounds!r} is too small to finish one round; an integer >= 1 "
                                 "is required")
    if window_ms is not None:
        ok = (hasattr(window_ms, "__len__") and len(window_ms) == 2
              and all(isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x) for x in window_ms)
              and 0 <= window_ms[0] < window_ms[1] <= cfg.runtime_spec.duration_ms)
        if not ok:
            raise ConfigurationError(f"{where}: window_ms={window_ms!r} is invalid; a pair (start, stop) with "
                                     f"0 <= start < stop <= duration_ms ({cfg.runtime_spec.duration_ms:g}) is required")
        window_ms = (float(window_ms[0]), float(window_ms[1]))
    paths, low, high = parse_params(where, cfg, params)
    tgts = parse_targets(where, cfg, targets)
    return Problem(cfg.__class__.from_dict({k: v for k, v in cfg.to_dict().items() if k != "ensemble"})
                   if cfg.ensemble_spec is not None else cfg, paths, low, high, tgts, method, int(rounds),
                   int(candidates), seeds, int(search_seed), window_ms)
