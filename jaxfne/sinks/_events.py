"""Spike events of a whole run, per member, from the chunks' compressed sparse rows (in memory or stored).

``RunEvents`` keeps what the driver hands a sink (``ChunkEvents`` per chunk)
and answers ``member(m, start, stop)``: one network's spikes as (steps,
neurons), sorted by step, then neuron. ``Signals.spike_events`` asks its
``events`` field (this, or a store's ``StoredEvents``), handed on by
``sel``/``isel``, so no raster is read. The same source is also attached to
the Dataset (``EVENT_SOURCE`` in ``Dataset.encoding``) for code that is given
the Dataset alone (``Signals(dataset)``, ``jaxfne.analysis``).
"""

from __future__ import annotations

import numpy as np

from ..engine._chunk import ChunkEvents

#: the key of a Dataset's ``encoding`` that holds its event source (in memory: RunEvents; a store: StoredEvents)
EVENT_SOURCE = "jaxfne_spike_events"


class RunEvents:
    """The events of the members a sink holds (rows 0..), chunk by chunk, in host memory.

    ``members``: the global member index of each row (set by ``build_dataset``).
    """

    def __init__(self, n_rows: int, members=None):
        self.n_rows = n_rows
        self.members = np.arange(n_rows) if members is None else np.asarray(members)
        self.chunks: list[tuple[int, ChunkEvents, np.ndarray]] = []     # (t0, events, offsets)

    def add(self, t0: int, events: ChunkEvents) -> None:
        self.chunks.append((int(t0), events, events.offsets))

    def with_members(self, members) -> "RunEvents":
        out = RunEvents(self.n_rows, members)
        out.chunks = self.chunks
        return out

    @property
    def n_spikes(self) -> int:
        return int(sum(int(off[-1]) for _, _, off in self.chunks))

    def member(self, member: int, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(steps, neurons), int64, of global member ``member`` in steps [start, stop), sorted by step then neuron."""
        rows = np.flatnonzero(self.members == member)
        if rows.size != 1:
            raise KeyError(f"member {member} is not held here (members {self.members.tolist()})")
        row = int(rows[0])
        steps, neurons = [], []
        for t0, ev, off in sorted(self.chunks, key=lambda c: c[0]):
            a, b = int(off[row]), int(off[row + 1])
            s = ev.step[a:b].astype(np.int64) + t0
            keep = (s >= start) & (s < (np.iinfo(np.int64).max if stop is None else stop))
            steps.append(s[keep])
            neurons.append(ev.neuron[a:b][keep].astype(np.int64))
        if not steps:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(steps), np.concatenate(neurons)
