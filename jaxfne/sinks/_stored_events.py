"""Reading a store's spike events (schema 2): one member's events, and the dense raster rebuilt lazily.

Every read goes through ``_store.read_checked`` (a missing, empty or altered
chunk file is a StoreError naming the array, the chunk and the file). A row
(member-block b, simulation chunk k) is read whole: the block's counts for
chunk k, then its first ``sum(counts)`` events of ``spike_events/neuron`` and
``/step_delta`` (each member's steps as differences, summed back here; a
schema-2 store's ``/step`` holds the steps themselves) (docs/store.md).
"""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
from dask.base import tokenize

from . import _store, _verify


class StoredEvents:
    """The events of a store, by member (the ``member`` method of ``RunEvents``, read from disk)."""

    def __init__(self, path: Path, st: _store.Store, expected: _verify.Expected, done: int):
        self.path, self.st, self.expected, self.done = path, st, expected, int(done)

    def __reduce__(self):
        return (_reopen, (str(self.path), self.done))

    def row(self, block: int, chunk: int) -> tuple:
        """(counts per member of the block, neuron, step within the chunk) of row (block, chunk)."""
        st = self.st

        def read(name, sel):
            arr = st.array(name)
            return _store.read_checked(self.path, name, arr, sel, self.expected.of(name, arr))

        counts = read(_store.EVENT_COUNT, (st.block_members(block), slice(chunk, chunk + 1)))[:, 0].astype(np.int64)
        total = int(counts.sum())
        sel = (slice(block, block + 1), slice(chunk, chunk + 1), slice(0, total))
        step = read(st.step_name, sel)[0, 0]
        return counts, read(_store.EVENT_NEURON, sel)[0, 0], (_store.steps_from_deltas(counts, step)
                                                              if st.step_delta else step)

    def counts(self) -> tuple:
        """(``spike_count`` of the completed steps' bins as a Dask array (member, time_bin, neuron), read
        through the integrity checks; steps per bin)."""
        st, name = self.st, _store.SPIKE_COUNT
        arr = st.array(name)
        shape = (arr.shape[0], -(-self.done // st.bin_steps), arr.shape[2])
        reader = _verify.CheckedArray(self.path, name, arr, shape, self.expected.of(name, arr))
        data = da.from_array(reader, chunks=da.core.normalize_chunks(arr.chunks, shape), lock=False, asarray=False,
                             fancy=False, meta=np.empty((0, 0, 0), dtype=reader.dtype),
                             name="jaxfne-spike-count-" + tokenize(str(self.path), self.done, shape,
                                                                   st.attrs["config_hash"], st.attrs["members_digest"]))
        return data, int(st.bin_steps)

    def member(self, member: int, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(steps, neurons), int64, of global member ``member`` in steps [start, stop) of the completed ones."""
        st = self.st
        stop = self.done if stop is None else min(int(stop), self.done)
        block, cs = member // st.member_block, st.chunk_steps
        row = member - block * st.member_block
        steps, neurons = [], []
        for k in range(start // cs, -(-stop // cs)):
            counts, neuron, step = self.row(block, k)
            a = int(counts[:row].sum())
            s = step[a:a + int(counts[row])].astype(np.int64) + k * cs
            keep = (s >= start) & (s < stop)
            steps.append(s[keep])
            neurons.append(neuron[a:a + int(counts[row])][keep].astype(np.int64))
        if not steps:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(steps), np.concatenate(neurons)


def _reopen(path: str, done: int) -> StoredEvents:
    st = _store.Store(Path(path), mode="r")
    return StoredEvents(Path(path), st, _verify.Expected(st), done)


class EventRaster:
    """The dense SPK raster (member, time, neuron) of a store, rebuilt from its events block by block, as
    ``dask.array.from_array`` reads it (basic indexing; ``shape`` may be cut to the completed steps)."""

    def __init__(self, events: StoredEvents, shape: tuple):
        self.events = events
        self.shape = tuple(int(s) for s in shape)
        self.ndim = 3
        self.dtype = np.dtype(bool)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        key += (slice(None),) * (self.ndim - len(key))
        drop = tuple(i for i, k in enumerate(key) if not isinstance(k, slice))
        key = tuple(k if isinstance(k, slice) else slice(int(k) % s, int(k) % s + 1) for k, s in zip(key, self.shape))
        (m0, m1), (s0, s1), (n0, n1) = (k.indices(s)[:2] for k, s in zip(key, self.shape))
        out = np.zeros((max(0, m1 - m0), max(0, s1 - s0), self.shape[2]), bool)
        st = self.events.st
        mb, cs = st.member_block, st.chunk_steps
        if out.size:
            for block in range(m0 // mb, (m1 - 1) // mb + 1):
                first = block * mb
                for k in range(s0 // cs, (s1 - 1) // cs + 1):
                    counts, neuron, step = self.events.row(block, k)
                    member = np.repeat(np.arange(first, first + len(counts)), counts)
                    t = step.astype(np.int64) + k * cs
                    keep = (member >= m0) & (member < m1) & (t >= s0) & (t < s1)
                    out[member[keep] - m0, t[keep] - s0, neuron[keep].astype(np.int64)] = True
        out = out[:, :, n0:n1]
        return out.squeeze(axis=drop) if drop else out

