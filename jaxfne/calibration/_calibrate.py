"""``calibrate``: fit swept parameters to target statistics, one ensemble (candidates x seeds) per round."""

from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings

import dask.array as dsk
import numpy as np
import xarray as xr
import zarr

from .._api import construct, simulate
from .._errors import SimulationError, StoreError
from ..config import Configuration
from ..results import ReadoutSpec
from ._problem import Problem, make_problem
from ._progress import RoundProgress
from ._search import strategy
from ._store import ARRAYS, CalibrationStore, read_attrs
from ._targets import Target, evaluate, loss

#: the loss, as stated in docs/calibration.md and in every history's attributes
LOSS = "mean over targets k of ((mean over seeds of readout_k - value_k) / sd_k)^2; inf if any readout is NaN"

_NONFINITE = "simulate: the membrane state became non-finite"


@dataclasses.dataclass(frozen=True)
class Calibration:
    """The result of a calibration.

    ``history``: every candidate of every finished round as an xarray Dataset
    (``params``, ``unit``, ``readouts`` per seed, ``loss``, ``wall_s``; lazy
    when read from a store with ``open_calibration``). ``best``: the parameter
    values of the candidate with the lowest loss (the first one on a tie),
    ``best_loss``, ``best_readouts`` (their seed means) and ``configuration``:
    the base configuration with ``best`` applied, ready to ``construct``.
    """

    history: xr.Dataset
    best: dict
    best_loss: float
    best_readouts: dict
    configuration: Configuration
    rounds_done: int
    store: str | None = None
    notes: tuple = ()

    def best_so_far(self) -> xr.DataArray:
        """The lowest loss found up to and including each round (round,)."""
        per_round = self.history["loss"].min("candidate").values
        return xr.DataArray(np.minimum.accumulate(per_round), dims=("round",),
                            coords={"round": self.history["round"].values}, name="best_loss")

    def __repr__(self) -> str:
        best = ", ".join(f"{k}={v:.6g}" for k, v in self.best.items())
        return (f"Calibration({self.history.attrs['method']}, {self.rounds_done} rounds of "
                f"{self.history.sizes['candidate']} candidates x {self.history.sizes['seed']} seeds; "
                f"best loss {self.best_loss:.4g} at {best})")


def calibrate(cfg, params, targets, *, method="cmaes", rounds=10, candidates=16, seeds=2, search_seed=0,
              max_networks=None, window_ms=None, store=None, progress=True, devices=None, engine="auto",
              chunk_ms=None) -> Calibration:
    """Search ``params`` ({sweep path: (low, high)}) so that ``targets`` ({target: (value, sd)}) are met.

    One round is one ensemble: ``candidates`` parameter sets (a zip sweep of
    the paths) each run with every seed of ``seeds`` (a count or a list; the
    same seeds every round, so candidates differ by their parameters, not
    their noise). The loss of a candidate is the mean over targets of
    ((mean over seeds of the readout - value) / sd)^2 (docs/calibration.md);
    NaN readouts make it inf. ``method``: "cmaes" (Hansen's ``cma``, ask/tell,
    bounded to the box), "random" or "lhs" (Latin hypercube) baselines.
    Budget: ``rounds``, or ``max_networks`` simulated networks (whole rounds).
    ``window_ms`` = (start, stop) computes every readout over that window.

    Everything is validated before anything is simulated. With
    ``store=PATH`` every finished round is written to a Zarr store and a
    calibration started again with the same arguments resumes after its last
    finished round, with exactly the result of an uninterrupted one (the
    optimizer is rebuilt from ``search_seed`` and replays the stored rounds).
    """
    where = "calibrate"
    problem = make_problem(where, cfg, params, targets, method=method, rounds=rounds, candidates=candidates,
                           seeds=seeds, search_seed=search_seed, window_ms=window_ms, max_networks=max_networks)
    shape = {"round": problem.rounds, "candidate": problem.candidates, "param": len(problem.paths),
             "seed": len(problem.seeds), "target": len(problem.targets)}
    arrays = {name: np.full(tuple(shape[d] for d in dims), np.nan) for name, dims in ARRAYS.items()}
    search = strategy(problem.method, len(problem.paths), problem.candidates, problem.search_seed)
    st = CalibrationStore(store, problem.to_dict(), shape) if store is not None else None
    done = 0
    if st is not None:
        done = st.rounds_done
        stored = st.read(done)
        for r in range(done):                      # replay: the optimizer's state from the seed and the rounds
            unit = search.ask()
            if not np.array_equal(unit, stored["unit"][r]):
                raise StoreError(f"calibrate: store={str(store)!r} round {r}: the optimizer rebuilt from "
                                 f"search_seed={problem.search_seed} proposes other candidates than the stored ones "
                                 "(a different version of cma?); resume with the version that started it")
            search.tell(unit, stored["loss"][r])
            for name in ARRAYS:
                arrays[name][r] = stored[name][r]
    bar = RoundProgress(problem.rounds, problem.networks_per_round, start_round=done,
                        best_loss=float(np.min(arrays["loss"][:done])) if done else math.inf, enabled=progress)
    try:
        for r in range(done, problem.rounds):
            t0 = time.perf_counter()
            unit = search.ask()
            values = problem.values(unit)
            readouts = run_round(problem, values, devices=devices, engine=engine, chunk_ms=chunk_ms)
            f = loss(readouts, problem.targets)
            search.tell(unit, f)
            row = {"unit": unit, "params": values, "readouts": readouts, "loss": f,
                   "wall_s": time.perf_counter() - t0}
            for name, v in row.items():
                arrays[name][r] = v
            if st is not None:
                st.write_round(r, row)
            bar.update(r + 1, float(np.min(f)))
    finally:
        bar.close()
    return _result(problem, arrays, problem.rounds, None if store is None else str(store),
                   tuple(getattr(search, "notes", ())))


def run_round(problem: Problem, values: np.ndarray, *, devices=None, engine="auto", chunk_ms=None) -> np.ndarray:
    """Simulate one round (candidates x seeds as one ensemble) and return its readouts (candidate, seed, target)."""
    model = construct(problem.ensemble(values))
    with warnings.catch_warnings():
        # a candidate whose state became non-finite reads NaN (state_finite) and gets loss inf
        warnings.filterwarnings("ignore", message=_NONFINITE, category=RuntimeWarning)
        signals = simulate(model, devices=devices, engine=engine, chunk_ms=chunk_ms)
    members = signals.dataset.coords          # the member coordinates, whichever probes the run holds
    c, s = problem.candidates, len(problem.seeds)
    # the member order the sweep grammar promises: candidate-major, seed fastest
    if not (np.array_equal(np.asarray(members["seed"].values), np.tile(problem.seeds, c))
            and all(np.array_equal(np.asarray(members[p].values, float), np.repeat(values[:, j], s))
                    for j, p in enumerate(problem.paths))):
        raise SimulationError("calibrate: the ensemble's members are not candidates x seeds in the expected order")
    return evaluate(signals, problem.targets, problem.window_ms).reshape(c, s, len(problem.targets))


def _result(problem: Problem, arrays: dict, rounds_done: int, store, notes=()) -> Calibration:
    arrays = {k: v[:rounds_done] for k, v in arrays.items()}
    coords = {"round": np.arange(rounds_done), "candidate": np.arange(problem.candidates),
              "param": list(problem.paths), "seed": list(problem.seeds),
              "target": [t.name for t in problem.targets],
              "target_value": ("target", [t.value for t in problem.targets]),
              "target_sd": ("target", [t.sd for t in problem.targets]),
              "low": ("param", list(problem.low)), "high": ("param", list(problem.high))}
    ds = xr.Dataset({name: (ARRAYS[name], arrays[name]) for name in ARRAYS}, coords=coords,
                    attrs={"method": problem.method, "search_seed": problem.search_seed, "rounds": problem.rounds,
                           "loss": LOSS, "config_json": json.dumps(problem.cfg.to_dict(), sort_keys=True),
                           **({"window_ms": list(problem.window_ms)} if problem.window_ms else {})})
    f = np.asarray(arrays["loss"]).reshape(-1)
    if f.size == 0:
        return Calibration(ds, {}, math.inf, {}, problem.cfg, 0, store, notes)
    i = int(np.argmin(np.where(np.isnan(f), np.inf, f)))
    r, c = divmod(i, problem.candidates)
    best = {p: float(v) for p, v in zip(problem.paths, np.asarray(arrays["params"][r, c]))}
    with np.errstate(invalid="ignore"):
        means = np.asarray(arrays["readouts"][r, c]).mean(axis=0)
    best_readouts = {t.name: float(m) for t, m in zip(problem.targets, means)}
    return Calibration(ds, best, float(f[i]), best_readouts, problem.apply(best), rounds_done, store, notes)


def open_calibration(store) -> Calibration:
    """The finished rounds of a calibration store as a Calibration, arrays read lazily (Dask) from the store."""
    attrs = read_attrs(store)
    if attrs is None:
        raise StoreError(f"open_calibration: store={str(store)!r} is not a calibration store")
    problem = problem_from_dict(attrs["problem"])
    done = int(attrs["rounds_done"])
    g = zarr.open_group(str(store), mode="r")
    arrays = {name: dsk.from_zarr(g[name])[:done] for name in ARRAYS}
    small = {"loss": np.asarray(arrays["loss"]), "params": np.asarray(arrays["params"]),
             "readouts": arrays["readouts"], "unit": arrays["unit"], "wall_s": np.asarray(arrays["wall_s"])}
    return _result(problem, small, done, str(store))


def problem_from_dict(d: dict) -> Problem:
    """Rebuild a Problem from its ``to_dict`` form (as a store keeps it)."""
    cfg = Configuration.from_dict(d["configuration"])
    targets = []
    for t in d["targets"]:
        spec = None
        if "spec" in t:
            s = dict(t["spec"])
            if s.get("time_window_ms") is not None:
                s["time_window_ms"] = tuple(s["time_window_ms"])
            spec = ReadoutSpec(**s)
        targets.append(Target(t["name"], t["statistic"], t["layer"], t["cell_type"], t["value"], t["sd"], spec))
    params = d["params"]
    return Problem(cfg, tuple(p for p, _, _ in params), tuple(lo for _, lo, _ in params),
                   tuple(hi for _, _, hi in params),
                   tuple(targets), d["method"], d["rounds"], d["candidates"], tuple(d["seeds"]), d["search_seed"],
                   None if d["window_ms"] is None else tuple(d["window_ms"]))
