"""A one-line progress bar for long runs (standard error, no dependencies)."""

from __future__ import annotations

import sys
import time


class Progress:
    """Simulated time, members, throughput (neuron-steps/s) and ETA, redrawn in place."""

    def __init__(self, total_steps: int, dt_ms: float, members: int, neurons: int, *, start_step: int = 0,
                 label: str = "jaxfne", stream=None, enabled: bool = True):
        self.total, self.dt_ms, self.members, self.neurons = total_steps, dt_ms, members, neurons
        self.start, self.done, self.label = start_step, start_step, label
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self._started = False

    def line(self) -> str:
        frac = self.done / self.total if self.total else 1.0
        # throughput from the first completed chunk on, so compilation does not count
        elapsed = time.perf_counter() - self.t0
        rate = (self.done - self.start) / elapsed if elapsed > 0 and self.done > self.start else 0.0
        bar = "#" * int(20 * frac) + "." * (20 - int(20 * frac))
        # until a second chunk is done there is no throughput to show (the first includes compilation)
        speed = f"{rate * self.members * self.neurons:.3g} neuron-steps/s" if rate > 0 else "- neuron-steps/s"
        eta = f"{(self.total - self.done) / rate:,.0f} s" if rate > 0 else "- s"
        return (f"{self.label} [{bar}] {self.done * self.dt_ms:,.0f}/{self.total * self.dt_ms:,.0f} ms | "
                f"{self.members} members | {speed} | ETA {eta}")

    def update(self, done_steps: int) -> None:
        if not self._started:           # first chunk done: measure from here
            self._started = True
            self.start, self.t0 = done_steps, time.perf_counter()
        self.done = done_steps
        if self.enabled:
            print("\r" + self.line(), end="", file=self.stream, flush=True)

    def close(self) -> None:
        if self.enabled:
            print(file=self.stream, flush=True)
