"""The Zarr sink: streaming a run into a store, resuming it, and opening it lazily.

The device computes chunk k+1 while a writer thread stores chunk k, and the
driver dispatches chunk k+2 only when chunk k is stored (a two-stage pipeline):
the outputs of at most two chunks exist at any time, whatever the duration, and
a slow disk slows the driver (back-pressure) instead of letting chunks pile up.
"""

from __future__ import annotations

import queue
import shutil
import threading
import time
import warnings

import dask.array as da
import jax
import numpy as np
import xarray as xr
from dask.base import tokenize

from .._errors import StoreError
from .._progress import Progress
from ..engine import Chunk, drive, initial_states, member_mesh, resolve_engine
from ..model import NetState
from ..engine._chunk import EVENTS
from . import _store, _verify
from ._events import EVENT_SOURCE
from ._stored_events import EventRaster, StoredEvents

#: chunks handed to the writer and not yet stored, at most (the driver waits for the writer beyond it)
QUEUE_CHUNKS = 0

#: how long a non-creating process waits for the store to appear
STORE_WAIT_S = 600.0

#: target size of one Dask block of an opened store (one member, all neurons)
DASK_BLOCK_BYTES = 32 * 2**20

def simulate_to_store(model, store, chunk_steps: int, *, overwrite: bool = False, progress: bool = False,
                      devices=None, member_block: int | None = None, blocks=None, creator: bool = True,
                      engine: str = "auto", manifest: dict | None = None) -> xr.Dataset:
    """Run ``model`` into the Zarr store at ``store``; return lazily backed Signals.

    A new store is created; a store of the same run continues from its last
    completed chunk (a complete one is returned as it is); a store of another
    run is refused unless ``overwrite``. ``devices`` and ``engine`` go to the
    driver; an unfinished store is continued only by the engine that began it.

    Several processes (docs/store.md): ``member_block`` (default: every
    member) sets how many members one stored object holds, ``blocks`` which
    member-blocks this process writes (default: all; the driver must yield
    exactly their members, in order) and ``creator`` whether this process
    creates (or, with ``overwrite``, replaces) the store; the others wait for
    it to appear before their first write.
    """
    path = _store.resolve_path(store)
    key = _store.RunKey.of(model, chunk_steps, member_block,
                           resolve_engine(engine, list(member_mesh(devices).devices.flat), model.layout))
    blocks = list(range(key.n_blocks)) if blocks is None else [int(b) for b in blocks]
    with _store.StoreLock(path, blocks, creator):
        return _run_locked(model, path, key, blocks, overwrite, progress, devices, creator, manifest)


def _run_locked(model, path, key: _store.RunKey, blocks: list, overwrite: bool, progress: bool, devices,
                creator: bool, manifest: dict | None) -> xr.Dataset:
    if creator:
        # left by a kill during creation or deletion: ours by name, and nobody else's now that we hold
        # the store's lock (only the creating process removes them)
        for leftover in _store.leftovers(path):
            shutil.rmtree(leftover, ignore_errors=True)
    attrs = _store.read_attrs(path)
    if attrs is not None and overwrite and creator:
        _store.remove(path)
        attrs = None
    st, start, state = None, 0, None    # a new store is created when the first chunk is done
    if attrs is not None:
        why = _store.mismatch(attrs, key)
        if why is not None:
            raise StoreError(f"simulate(store={str(path)!r}): the store holds a different run ({why}); pass "
                             "overwrite=True to replace it, or choose another path")
        st = _store.Store(path)
        start = min(st.completed_steps(b)[0] for b in range(st.n_blocks))
        if start >= st.n_steps:
            return open_dataset(path)      # complete: nothing is recomputed
        why = _store.layout_mismatch(st.attrs, key)
        if why is not None:
            raise StoreError(f"simulate(store={str(path)!r}): cannot resume the unfinished run there: {why}; "
                             f"call again with chunk_ms={st.chunk_steps * model.layout.dt_ms:g} and "
                             f"engine={_store.stored_engine(st.attrs)!r} (as the run was started), or pass "
                             "overwrite=True to start over")
        _store.remove_partials(path, st.stored, blocks)
        state = None if start == 0 else _state_at(st, blocks, start)
    sink = ZarrSink(model, path, key, st, blocks, start, progress, creator, manifest or {})
    drive(model, sink, key.chunk_steps, start_step=start, state=state, devices=devices, engine=key.engine)
    # a process that writes only some member-blocks may finish before the others
    return open_dataset(path, allow_incomplete=not creator or len(blocks) < key.n_blocks)


def _state_at(st: _store.Store, blocks: list, steps: int):
    """The checkpointed NetState of ``blocks`` after ``steps`` (one of the two newest slots)."""
    parts = []
    marker = st.array("checkpoint/completed_steps")
    for b in blocks:
        slot = None
        for s in (0, 1):
            try:
                if int(marker[b, s]) == steps:
                    slot = s
            except Exception:  # noqa: BLE001 - a torn slot is not the one we want
                continue
        if slot is None:
            raise StoreError(f"store {str(st.path)!r}: member-block {b} has no checkpoint at step {steps}; "
                             "the store is inconsistent, pass overwrite=True to start over")
        parts.append(st.read_state(b, slot))
    fields = {f: np.concatenate([p[f] for p in parts], axis=0) for f in parts[0]}
    if set(fields) != set(NetState._fields):
        raise StoreError(f"store {str(st.path)!r}: its checkpoint holds state fields {sorted(fields)}, this jaxfne "
                         f"needs {sorted(NetState._fields)}; pass overwrite=True to start over")
    return NetState(**fields)

class _Writer(threading.Thread):
    """Writes queued chunks in order; remembers the first error instead of dying silently."""

    def __init__(self, model, path, key: _store.RunKey, st, blocks: list, progress, creator: bool,
                 state_layout: list, manifest: dict):
        super().__init__(name="jaxfne-store-writer", daemon=True)
        self.model, self.path, self.key, self.st, self.progress = model, path, key, st, progress
        self.creator, self.state_layout, self.manifest = creator, state_layout, manifest
        self.queue: queue.Queue = queue.Queue(maxsize=QUEUE_CHUNKS + 1)
        self.error: BaseException | None = None
        self.stop = threading.Event()
        # rows of the yielded arrays: the members of this process's blocks, in order
        self.rows, row = [], 0
        for b in blocks:
            size = len(key.block_members(b))
            self.rows.append((b, slice(row, row + size)))
            row += size

    def run(self) -> None:
        try:                             # a new store is made while the device computes the first chunk
            self._open()
        except BaseException as exc:  # noqa: BLE001 - handed to the driver thread
            self.error = exc
        while True:
            # a timeout, not a bare get(): a Ctrl-C in the driver thread can land inside Queue.put between
            # storing an item and notifying this thread (queue.py is Python code), and an aborted run must
            # end all the same (seen once: the writer slept in get() and the interrupted run never exited)
            try:
                item = self.queue.get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set():
                    return
                continue
            if item is None:
                self.queue.task_done()
                return
            try:
                if self.error is None and not self.stop.is_set():
                    self._write(*item)
            except BaseException as exc:  # noqa: BLE001 - handed to the driver thread
                self.error = exc
            finally:
                item = None                  # drop the chunk's arrays before saying it is done
                self.queue.task_done()

    def _open(self) -> None:
        if self.st is None:
            if self.creator:
                _store.create(self.path, self.model, self.key, self.state_layout, self.manifest)
            else:
                _wait_for_store(self.path)
            self.st = _store.Store(self.path)

    def _write(self, t0: int, n_keep: int, outputs: dict, state: dict, finite: np.ndarray, events) -> None:
        if _store.state_layout(state) != self.state_layout:
            raise StoreError(f"store {str(self.path)!r}: the driver's state {_store.state_layout(state)} does "
                             f"not match the checkpoint layout {self.state_layout}")
        host = {name: np.asarray(arr)[:, :n_keep] for name, arr in outputs.items()}  # device -> host
        rows = self.rows[-1][1].stop
        if any(v.shape[0] != rows for v in host.values()):
            got = next(iter(host.values())).shape[0]
            raise StoreError(f"store {str(self.path)!r}: the driver returned {got} members per chunk, but this "
                             f"process writes member-blocks {[b for b, _ in self.rows]} ({rows} members)")
        for block, rows in self.rows:
            block_arrays = {k: v[rows] for k, v in host.items()}
            if events is not None:             # the block's spike events travel with its arrays
                block_arrays[EVENTS] = events.rows(rows)
            self.st.write_chunk(block, t0, block_arrays)
            self.st.commit(block, t0, n_keep, {k: v[rows] for k, v in state.items()}, finite[rows])
        self.progress.update(t0 + n_keep)

    def put(self, item) -> None:
        """Hand a chunk over; return when at most QUEUE_CHUNKS chunks are still unwritten (back-pressure)."""
        while True:
            self.check()
            try:
                self.queue.put(item, timeout=0.1)
                break
            except queue.Full:
                continue
        with self.queue.all_tasks_done:
            while self.queue.unfinished_tasks > QUEUE_CHUNKS and self.error is None:
                self.queue.all_tasks_done.wait(0.1)
        self.check()

    def finish(self, abort: bool) -> None:
        if abort:
            self.stop.set()            # the writer drops what is queued and ends within 0.1 s
            self.join()
            return
        while self.is_alive():
            try:
                self.queue.put(None, timeout=0.1)
                break
            except queue.Full:
                continue
        self.join()

    def check(self) -> None:
        if self.error is not None:
            if isinstance(self.error, StoreError):
                raise self.error
            raise StoreError(f"store {str(self.path)!r}: writing failed ({type(self.error).__name__}: "
                             f"{self.error})") from self.error

def _wait_for_store(path, timeout_s: float = STORE_WAIT_S) -> None:
    """Block until the creating process has made the store (several processes, one store)."""
    deadline = time.monotonic() + timeout_s
    while _store.read_attrs(path) is None:
        if time.monotonic() > deadline:
            raise StoreError(f"store {str(path)!r}: still not created by the creating process after "
                             f"{timeout_s:g} s")
        time.sleep(0.05)

def _state_layout(model) -> list:
    """The checkpoint's field layout of ``model``'s state, known before anything runs (abstract shapes)."""
    shapes = jax.eval_shape(initial_states(model.layout), model.params)
    return [[name, list(s.shape[1:]), np.dtype(s.dtype).str] for name, s in shapes._asdict().items()]

class ZarrSink:
    """The sink of a streamed run: hands each chunk to the store's writer thread (at most one chunk waits)."""

    packed_spikes = False
    spike_events = True

    def __init__(self, model, path, key: _store.RunKey, st, blocks: list, start: int, progress: bool,
                 creator: bool = True, manifest: dict | None = None):
        n_members = sum(len(key.block_members(b)) for b in blocks)
        self.bar = Progress(key.n_steps, model.layout.dt_ms, n_members, model.layout.n, start_step=start,
                            label=f"jaxfne -> {path.name}", enabled=bool(progress))
        self.writer = _Writer(model, path, key, st, blocks, self.bar, creator, _state_layout(model), manifest)
        self.writer.start()
        # the SPK raster is read only when the store keeps it (its own encoding when resumed, else the one a
        # new store gets); otherwise the spikes come as events alone (the counts are binned from them)
        self.spike_raster = _store.raster_stored(st.attrs if st is not None else {"spk_encoding": _store.SPK_ENCODING})

    def put(self, chunk: Chunk) -> None:
        # the state is copied now: the driver may reuse (donate) its buffers for a later chunk
        host_state = {f: np.array(v) for f, v in chunk.state._asdict().items()}
        self.writer.put((chunk.t0, chunk.n_steps, chunk.outputs, host_state, chunk.finite, chunk.events))

    def close(self, ok: bool) -> None:
        self.writer.finish(abort=not ok)
        self.bar.close()
        if ok:
            self.writer.check()


# -- reading -------------------------------------------------------------------------


def _time_chunk(attrs: dict, n_last: int, members: int = 1) -> int:
    """Dask block length in time: whole stored chunks, about DASK_BLOCK_BYTES per block of ``members``."""
    chunk = int(attrs["chunk_steps"])
    itemsize = 8 if attrs.get("dtype") == "float64" else 4
    per_chunk = chunk * max(n_last, 1) * itemsize * members
    return chunk * max(1, DASK_BLOCK_BYTES // per_chunk)

def open_dataset(store, *, allow_incomplete: bool = False) -> xr.Dataset:
    """The Dataset of a jaxfne Zarr store (``open_store``'s first half; the event source is attached to
    its ``encoding`` too, under ``EVENT_SOURCE``)."""
    return open_store(store, allow_incomplete=allow_incomplete)[0]


def open_store(store, *, allow_incomplete: bool = False) -> tuple:
    """(The Dataset of a jaxfne Zarr store, backed by Dask arrays (nothing is loaded); its spikes' event
    source, ``StoredEvents``, or None for a schema-1 store).

    The result has the names, dims and coordinates of in-memory Signals of the
    same run. An unfinished store raises StoreError unless
    ``allow_incomplete=True``, which gives the completed chunks only.

    Integrity (docs/store.md): a chunk file of the completed steps that is
    missing or empty, or that fails its checksum or does not decode, raises a
    StoreError naming the array, the chunk and the file, when it is read
    (coordinates here, probe data when a Dask block is computed), never
    zeros or wrong values. Each Dask block ``stat``s the files it reads.
    """
    path = _store.resolve_path(store)
    attrs = _store.read_attrs(path)
    if attrs is None:
        raise StoreError(f"open_signals: store {str(path)!r} does not exist; run jaxfne.simulate(model, "
                         "store=path) first")
    st = _store.Store(path, mode="r")
    expected = _verify.Expected(st)        # which chunk files must exist (it reads the progress markers)
    done = min(expected.done)
    n_steps = int(attrs["n_steps"])
    if done < n_steps and not allow_incomplete:
        raise StoreError(f"open_signals: store {str(path)!r} is unfinished ({done} of {n_steps} steps "
                         "complete); run the same simulate call again to finish it, or pass "
                         "allow_incomplete=True to read the completed part")
    n_last = max(st.group["neuron"].shape[0], st.group["contact"].shape[0])
    # a Dask block holds the members of one inner chunk (stores before 2026-11-26: one member), so a
    # task decodes each stored chunk once and its memory does not grow with member_block (xarray
    # would suggest whole shards)
    members = int(st.group["SPK" if "SPK" in st.stored else _store.SPIKE_COUNT].chunks[0])
    chunks = {"member": members, "time": _time_chunk(attrs, n_last, members)}
    # the spike counts are not a probe (read them with xarray: docs/store.md)
    skip = [_store.SPIKE_COUNT, "time_bin"] if st.events else []
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*separate the stored chunks", category=UserWarning)
            ds = xr.open_zarr(path, consolidated=True, chunks=chunks, decode_times=False, drop_variables=skip)
    except Exception as exc:
        # xarray reads the index coordinates (time, neuron, ...) now: name a damaged chunk among them
        for name in _verify.array_names(path):
            if name not in attrs["probes"] and not name.startswith("checkpoint/"):
                try:
                    arr = st.array(name)
                except Exception:  # noqa: BLE001 - broken metadata: the message below says what xarray saw
                    continue
                _store.read_checked(path, name, arr, (slice(None),) * arr.ndim, expected.of(name, arr))
        raise StoreError(f"open_signals: store {str(path)!r} cannot be opened with xarray ({exc})") from exc
    if st.events:       # the coordinates, whichever probes carry them (the spikes' events are a group)
        listed = st.group["spike_events"].attrs["coordinates"].split()
        ds = ds.set_coords([c for c in listed if c in ds.data_vars])
    ds = ds.drop_vars([v for v in ds.data_vars if v not in attrs["probes"]])
    if done < n_steps:
        cut = {"time": slice(0, done)}
        for dim in ds.dims:        # sampled probes (time_sampled): the samples of the completed steps
            if dim != "time" and dim.startswith("time"):
                t = np.asarray(ds[dim].values)
                cut[dim] = slice(0, int(np.searchsorted(t, done * float(attrs["dt_ms"]) - 1e-9)))
        ds = ds.isel(cut)
    # probe data: Dask blocks (as xarray chose them) that read through the integrity checks
    ds = ds.assign({name: _checked(path, st, name, ds[name]) for name in ds.data_vars})
    events = None
    if st.events:
        events = StoredEvents(path, st, expected, done)
        if "SPK" in attrs["probes"] and "SPK" not in st.stored:
            ds = ds.assign(SPK=_raster(path, st, events, ds, chunks, attrs))
    # coordinates are small: read them straight from zarr (no Dask), strings as numpy fixed-width
    # strings as in-memory Signals have them; the index coordinates xarray read are checked for
    # missing or empty chunk files (fill values), xarray's read already failed on undecodable ones
    loaded, values = {}, {}
    for name in ds.coords:
        arr = st.array(name)
        if name in ds.indexes and ds[name].dtype.kind not in "TO":
            _verify.check_files(path, name, arr, expected.of(name, arr))
            values[name] = ds[name].values
            continue
        values[name] = _store.read_checked(path, name, arr, (slice(None),) * arr.ndim, expected.of(name, arr))
        if name == "time" or ds[name].sizes != dict(zip(ds[name].dims, values[name].shape)):
            values[name] = np.asarray(ds[name].values)        # the time index, or a coordinate cut by isel
        if values[name].dtype.kind == "T" or values[name].dtype == object:
            values[name] = np.array(values[name].tolist(), dtype=str).reshape(values[name].shape)
        loaded[name] = (ds[name].dims, values[name], ds[name].attrs)
    for name, why in _verify.member_problems(attrs, values, st):
        raise StoreError(f"store {str(path)!r}: coordinate {name!r} is damaged ({why}); `jaxfne verify "
                         f"{path}` checks every chunk; recompute the store (simulate with overwrite=True)")
    ds = ds.assign_coords(loaded)
    if done < n_steps:
        ds = ds.drop_vars("state_finite", errors="ignore")    # written with the last chunk only
    ds.attrs = {k: attrs[k] for k in attrs["signal_attrs"]}
    ds.attrs["engine"] = _store.stored_engine(attrs)
    if attrs["ensemble"]:
        for name in attrs["member_coords"]:  # as build_signals: .sel(seed=...), .sel(**{"drive.current.E": ...})
            ds = ds.set_xindex(name)
    else:
        ds = ds.isel(member=0, drop=False).drop_vars("member", errors="ignore")
        ds = ds.drop_vars([k for k in attrs["member_coords"] if k in ds.coords and ds[k].ndim == 0 and k != "seed"])
    if events is not None:          # for readers of the Dataset alone (jaxfne.analysis, Signals(dataset))
        ds.encoding[EVENT_SOURCE] = events
    return ds, events


def _raster(path, st: _store.Store, events: StoredEvents, ds: xr.Dataset, chunks: dict, attrs: dict) -> xr.Variable:
    """The SPK raster rebuilt from the stored events, lazily: one Dask block per (inner members, time block)."""
    group = st.group["spike_events"].attrs
    shape = (int(attrs["n_members"]), ds.sizes["time"], int(attrs["n_neurons"]))
    blocks = tuple(da.core.normalize_chunks((chunks["member"], chunks["time"], shape[2]), shape))
    data = da.from_array(EventRaster(events, shape), chunks=blocks, lock=False, asarray=False, fancy=False,
                         meta=np.empty((0, 0, 0), dtype=bool),
                         name="jaxfne-SPK-events-" + tokenize(str(path), shape, blocks, st.attrs["config_hash"],
                                                              st.attrs["members_digest"]))
    return xr.Variable(tuple(group["raster_dims"]), data, attrs=dict(group["raster_attrs"]))


def _checked(path, st: _store.Store, name: str, var: xr.DataArray) -> xr.Variable:
    """``var`` (a probe, possibly cut to the completed steps) with its Dask blocks read by ``CheckedArray``."""
    arr = st.array(name)
    reader = _verify.CheckedArray(path, name, arr, var.shape)
    data = da.from_array(reader, chunks=var.data.chunks, lock=False, asarray=False, fancy=False,
                         meta=np.empty((0,) * var.ndim, dtype=reader.dtype),
                         name=f"jaxfne-{name}-" + tokenize(str(path), name, var.shape, var.data.chunks,
                                                           st.attrs["config_hash"], st.attrs["members_digest"]))
    return var.variable.copy(deep=False, data=data)
