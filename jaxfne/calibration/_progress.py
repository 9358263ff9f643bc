"""A one-line progress bar per calibration round (standard error), in the style of ``jaxfne._progress``."""

from __future__ import annotations

import math
import sys
import time


class RoundProgress:
    """Rounds done, networks per round, best loss so far, seconds per round and ETA, redrawn in place."""

    def __init__(self, rounds: int, networks: int, *, start_round: int = 0, best_loss: float = math.inf,
                 label: str = "calibrate", stream=None, enabled: bool = True):
        self.total, self.networks, self.label = rounds, networks, label
        self.start = self.done = start_round
        self.best = best_loss
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.t0 = time.perf_counter()

    def line(self) -> str:
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(20 * frac) + "." * (20 - int(20 * frac))
        elapsed = time.perf_counter() - self.t0
        per = elapsed / (self.done - self.start) if self.done > self.start else None
        speed = f"{per:.3g} s/round" if per else "- s/round"
        eta = f"{per * (self.total - self.done):,.0f} s" if per else "- s"
        best = f"{self.best:.4g}" if math.isfinite(self.best) else "-"
        return (f"{self.label} [{bar}] round {self.done}/{self.total} | {self.networks} networks/round | "
                f"best loss {best} | {speed} | ETA {eta}")

    def update(self, done_rounds: int, best_loss: float) -> None:
        self.done, self.best = done_rounds, min(self.best, best_loss)
        if self.enabled:
            print("\r" + self.line(), end="", file=self.stream, flush=True)

    def close(self) -> None:
        if self.enabled:
            print(file=self.stream, flush=True)
