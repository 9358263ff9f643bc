"""The in-memory sink: every chunk copied once into whole-run arrays allocated up front.

No concatenation at the end: one copy of the outputs in host memory, not two.
Spikes packed to bits on an accelerator are unpacked straight into the result.
"""

from __future__ import annotations

import numpy as np

from .._progress import Progress
from .._probes import REGISTRY
from ..engine import Chunk, unpack_spikes
from ..model import Model
from ._events import RunEvents


class RunArrays(dict):
    """probe -> whole-run array, as a dict, plus ``spike_events`` (the sink's ``events``), which
    ``build_dataset`` attaches to the Dataset's encoding for callers that pass the Dataset alone."""

    spike_events: RunEvents | None = None


class MemorySink:
    """Collects a run's chunks into ``arrays`` (probe -> (members, samples, ...)), the spikes as events
    too (``events``: RunEvents, rows as the arrays' members; None when the driver gave no events), and
    ``finite`` (per member). ``Signals(dataset, events=sink.events.with_members(members))`` carries them."""

    packed_spikes = True
    spike_events = True

    def __init__(self, model: Model, progress: bool = False):
        self.layout = model.layout
        self.arrays: RunArrays = RunArrays()
        self.events: RunEvents | None = None
        self.finite: np.ndarray | None = None
        self.bar = Progress(self.layout.n_steps, self.layout.dt_ms, model.n_members, self.layout.n,
                            enabled=bool(progress))

    def put(self, chunk: Chunk) -> None:
        layout = self.layout
        for name, arr in chunk.outputs.items():
            geo = layout.geometry(name)
            packed = REGISTRY[name].dtype == "bool" and arr.dtype == np.uint8
            if name not in self.arrays:
                tail = (geo["n_last"],) if packed else arr.shape[2:]
                self.arrays[name] = np.empty((arr.shape[0], geo["n_time"]) + tail, bool if packed else arr.dtype)
            start = chunk.t0 // geo["stride"]
            target = self.arrays[name][:, start:start + arr.shape[1]]
            if packed:
                unpack_spikes(arr, geo["n_last"], out=target)
            else:
                target[...] = arr
        if chunk.events is not None:
            if self.events is None:
                self.events = self.arrays.spike_events = RunEvents(len(chunk.events.counts))
            self.events.add(chunk.t0, chunk.events)
        # the device's flag: once non-finite, a member stays reported as such
        self.finite = chunk.finite if self.finite is None else self.finite & chunk.finite
        self.bar.update(chunk.t0 + chunk.n_steps)

    def close(self, ok: bool) -> None:
        self.bar.close()
