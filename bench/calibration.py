"""Calibration: wall time per round against ensemble size, and the same rounds as a loop of single networks.

    python bench/calibration.py [candidates ...] [--rounds R] [--loop-up-to C]   # default 16 64 256, 4, 64

For each size: ``jaxfne.calibrate`` (CMA-ES, 1 seed) on the synthetic target of tests/test_calibration.py
(E and I drive of 100-neuron networks, 200 ms; targets measured at drive (6, 2) with 32 seeds), R rounds;
prints the wall time of each round after the first (the first includes compilation), the time CMA-ES's
ask/tell took in all rounds (the host-side search: what running the search on the device with evosax could
save at most) and the rounds the search needed to get its best loss below 1. Then, for sizes up to
``--loop-up-to``, the same candidates of one round simulated one network at a time (construct, simulate,
statistics per network: what a script around a single-network simulator does), timed after a warm-up
network. Prints one JSON line per measurement.
"""

import argparse
import json
import time

import numpy as np

import jaxfne as jtfne
from jaxfne import calibration
from jaxfne.config import sweep_function

parser = argparse.ArgumentParser()
parser.add_argument("sizes", nargs="*", type=int, default=[16, 64, 256])
parser.add_argument("--rounds", type=int, default=4)
parser.add_argument("--loop-up-to", type=int, default=64)
args = parser.parse_args()

cfg = jtfne.Configuration().column(n=100).runtime(duration_ms=200.0, dt_ms=0.1).probes(["SPK"])
truth = {"drive.current.E": 6.0, "drive.current.I": 2.0}
bounds = {"drive.current.E": (0.0, 10.0), "drive.current.I": (0.0, 8.0)}
stats = ["spike_rate_hz.E", "spike_rate_hz.I"]
x = calibration.statistics(jtfne.simulate(jtfne.construct(cfg.ensemble(
    seeds=list(range(100, 132)), sweep={p: [v] for p, v in truth.items()}, mode="zip"))), stats)
targets = {s: (float(m), float(sd)) for s, m, sd in zip(stats, x.mean(axis=0), x.std(axis=0, ddof=1))}


class TimedStrategy:
    """The calibration's own strategy, with the time spent in ask and tell added up."""

    spent_s = 0.0

    def __init__(self, inner):
        self.inner = inner

    def ask(self):
        t = time.perf_counter()
        try:
            return self.inner.ask()
        finally:
            TimedStrategy.spent_s += time.perf_counter() - t

    def tell(self, unit, losses):
        t = time.perf_counter()
        try:
            return self.inner.tell(unit, losses)
        finally:
            TimedStrategy.spent_s += time.perf_counter() - t

    def __getattr__(self, name):
        return getattr(self.inner, name)


strategy = calibration._calibrate.strategy
calibration._calibrate.strategy = lambda *a, **k: TimedStrategy(strategy(*a, **k))

for c in args.sizes:
    TimedStrategy.spent_s = 0.0
    res = calibration.calibrate(cfg, bounds, targets, rounds=args.rounds, candidates=c, seeds=1, progress=False)
    walls = res.history["wall_s"].values
    below = np.flatnonzero(res.best_so_far().values < 1.0)
    print(json.dumps({"mode": "ensemble", "candidates": c, "wall_s_per_round": [round(w, 3) for w in walls[1:]],
                      "first_round_s": round(float(walls[0]), 3), "best_loss": res.best_loss,
                      "cma_ask_tell_s_all_rounds": round(TimedStrategy.spent_s, 4),
                      "rounds_to_loss_below_1": int(below[0]) + 1 if below.size else None}), flush=True)
    if c > args.loop_up_to:
        continue
    values = res.history["params"].values[-1]                       # the last round's candidates

    def one(v):
        single = cfg
        for p, val in zip(bounds, v):
            single = sweep_function(p)(single, float(val))
        return calibration.statistics(jtfne.simulate(jtfne.construct(single)), stats)
    one(values[0])                                                   # warm-up: compile the single-network shape
    t = time.perf_counter()
    for v in values:
        one(v)
    print(json.dumps({"mode": "loop of single networks", "candidates": c,
                      "wall_s_per_round": round(time.perf_counter() - t, 3)}), flush=True)
