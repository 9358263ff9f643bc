"""The on-disk layout of a streamed run: one Zarr v3 group, schema ``jaxfne.store/3`` (reads /1 and /2 too).

This module knows the layout (docs/store.md is its user-facing description)
and nothing about simulation: it creates a store for a Model, checks that an
existing store belongs to the same run, writes one chunk of one member-block,
and keeps the resume checkpoint.

Crash safety rests on three rules:

* the skeleton (every array's metadata, coordinates, attributes) is built in a
  sibling folder and renamed into place, so a store either exists whole or not
  at all; metadata is never rewritten afterwards;
* a chunk counts as complete only once its progress marker is written, and the
  marker is written last, after the chunk's data and its state checkpoint;
* checkpoint and marker use two slots that alternate from chunk to chunk, and
  the marker carries a checksum, so a write torn by a kill leaves the previous
  chunk's slot intact and is recognised as torn.

Integrity (docs/store.md): every chunk of every array ends with a CRC-32C
(zarr's ``crc32c`` codec), and every chunk is written, all-fill ones too, so a
chunk file that is missing, empty, truncated or altered is an error, never
zeros or wrong values. The chunk readers at the end of this module name the
array, the chunk and the file of any failure; ``_verify`` checks whole stores.

Spikes (schema 3): as events in compressed sparse rows per (member-block,
simulation chunk) in the group ``spike_events`` (``neuron``, ``step_delta``:
each member's steps as differences, the first from 0, and ``count`` per member
and chunk, the CF contiguous-ragged-array count), plus
``spike_count`` (member, time_bin, neuron), dense counts in bins of
``spike_count_bin_steps``; the dense SPK raster is not stored (``open_dataset``
rebuilds it lazily from the events). Schema-2 stores hold absolute steps in
``spike_events/step`` instead of ``step_delta``; schema-1 stores hold the raster
``SPK`` and no events; both open, and an unfinished one resumes, in its own layout.

Member-blocks: the member axis is split into blocks of ``member_block``
members; a block's data, checkpoint and marker live in their own chunks (the
shard of a probe array is one block by one simulation chunk), so processes
writing different blocks never write the same object.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import shutil
import socket
import time
import uuid
import warnings
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks (docs/store.md)
    fcntl = None

import numcodecs
import numpy as np
import xarray as xr
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ZstdCodec

from .._errors import StoreError
from .._probes import REGISTRY
from ..engine._chunk import EVENTS, ChunkEvents, events_from_raster, neuron_dtype, step_dtype
from ._dataset import build_dataset

SCHEMA = "jaxfne.store/3"
SCHEMA_VERSION = 3
#: the schemas this jaxfne opens; a store of an older one is read, and continued, in its own layout
#: (1: the dense SPK raster; 2: events with absolute steps; 3: events with per-member step differences)
READ_VERSIONS = (1, 2, 3)
#: spike counts (``spike_count``) in bins of about this many ms: synchrony's default bin, a divisor of
#: Fano's (100 ms) and of whole seconds, so rates, Fano factors and synchrony need no events
COUNT_BIN_MS = 5.0
#: events per stored object (file) of ``spike_events/neuron`` and ``/step_delta``: 256 Ki events, 0.5-1 MiB
EVENT_CHUNK = 2**18
#: event lists: neuron indices and per-member step differences; byte-shuffled zstd. Measured on 256
#: tutorial networks x 1 s (315 320 spikes, 50-ms chunks), bytes per spike of neuron + step: absolute
#: steps 1.85, step differences 1.32 (levels 3-9: 1.35-1.30); bitshuffle 1.62, plain zstd 1.71
EVENT_COMPRESSOR = BloscCodec(cname="zstd", clevel=1, shuffle="shuffle")
#: the dense counts (uint8, ~94% zeros in 5-ms bins at 12 Hz): bit-shuffled zstd, 0.73 bytes per spike on
#: that run against 1.09 for plain zstd level 1 (level 5: 0.65 but 5x the CPU, 16 ms per MB)
COUNT_COMPRESSOR = BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle")
#: how a new store keeps the spikes: "events" (events and counts), "events+bool" (and the dense raster
#: SPK too), "bool" (the raster only, as schema 1 did; to measure what events save: bench/RESULTS.md)
SPK_ENCODING = "events"
#: the event arrays (group ``spike_events``) and the dense counts; ``step`` in schema 2 only
EVENT_NEURON, EVENT_STEP_DELTA, EVENT_STEP, EVENT_COUNT, SPIKE_COUNT = (
    "spike_events/neuron", "spike_events/step_delta", "spike_events/step", "spike_events/count", "spike_count")
#: the arrays of event rows (member_block, time_chunk, event), whichever a store holds
EVENT_ROWS = (EVENT_NEURON, EVENT_STEP_DELTA, EVENT_STEP)
#: suffixes of the sibling folders used for atomic creation and deletion
CREATING, DELETING = ".jaxfne-creating", ".jaxfne-deleting"
#: prefix and suffix of the hidden lock file beside a store (".NAME.jaxfne-lock"); kept after the run
LOCK_SUFFIX = ".jaxfne-lock"
#: spike rasters are ~99.9% zeros: zstd on 1-byte bools is fast and ~100-200x smaller; level 1 takes
#: half the CPU of the default level 3 and compresses rasters as well (bench/NOTES.md)
SPK_COMPRESSOR = ZstdCodec(level=1)
#: noisy float traces barely compress; byte-shuffled lz4 gains ~1.4x at ~300 MB/s
FLOAT_COMPRESSOR = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
#: the progress marker: a checksum makes a torn write detectable
MARKER_COMPRESSOR = ZstdCodec(level=0, checksum=True)
#: coordinates, state_finite and the checkpoint state: zarr's default compressor
DEFAULT_COMPRESSOR = ZstdCodec(level=0)
#: every chunk ends with a CRC-32C of its encoded bytes: the last bytes-to-bytes codec, after the
#: compressor (in a sharded array it sits inside the shard, on every inner chunk; zarr checksums the
#: shard index itself). False only to measure what it costs (bench/RESULTS.md)
CHECKSUMS = True
#: members per inner chunk, at most: zarr-python costs ~0.2 ms per chunk written, so one member per chunk
#: made writing 1024 members' spikes cost more CPU than simulating them (bench/NOTES.md P6, N1)
INNER_MEMBERS = 256
#: ... and at most this many bytes (uncompressed): the smallest unit a reader decodes
INNER_BYTES = 4 * 2**20


def inner_members(member_block: int, member_chunk_bytes: int = 0) -> int:
    """Members per inner chunk: the largest divisor of ``member_block`` up to INNER_MEMBERS whose
    chunk stays within INNER_BYTES (one member's chunk takes ``member_chunk_bytes``); at least 1.

    A divisor, so no inner chunk straddles two member-blocks (two writers).
    """
    cap = min(INNER_MEMBERS, member_block, max(1, INNER_BYTES // max(1, member_chunk_bytes)))
    return max(d for d in range(1, cap + 1) if member_block % d == 0)
COORD_CHUNK_BYTES = 8 * 2**20
#: every chunk is written, all-fill ones too (zarr skips those by default), so a missing chunk file is
#: always a fault; for probe arrays it also skips zarr's scan for all-fill chunks (a quarter of the writer's time)
WRITE_ALL = {"write_empty_chunks": True}


def compressors(compressor) -> tuple:
    """The bytes-to-bytes codecs of an array: ``compressor``, then the CRC-32C (unless CHECKSUMS is off)."""
    return (compressor, Crc32cCodec()) if CHECKSUMS else (compressor,)


def integrity_attrs() -> dict:
    """The root attribute ``integrity`` of a new store (stores without it: see ``every_chunk_written``)."""
    return {"checksum": "crc32c" if CHECKSUMS else None, "every_chunk_written": True}


def every_chunk_written(attrs: dict) -> bool:
    """Whether the writer of a store wrote every chunk, all-fill ones too (all stores since the
    ``integrity`` attribute). Before it, coordinates and state_finite skipped all-fill chunks (probe
    arrays and the checkpoint were always written whole)."""
    return bool(attrs.get("integrity", {}).get("every_chunk_written", False))


def checksummed(attrs: dict) -> bool:
    """Whether a store's chunks carry a CRC-32C (stores written before it: decodability only)."""
    return attrs.get("integrity", {}).get("checksum") == "crc32c"


def resolve_path(store) -> Path:
    """The local folder of ``store`` (a str or os.PathLike)."""
    if isinstance(store, (str, os.PathLike)) and str(store):
        return Path(store).expanduser().absolute()
    raise StoreError(f"store={store!r} is invalid; a local folder path (str or pathlib.Path) is required")


def members_digest(member_coords: dict) -> str:
    """SHA-256 of the member coordinates (names, dtypes, values), to tell ensembles apart."""
    text = json.dumps({k: np.asarray(v).tolist() for k, v in sorted(member_coords.items())}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class RunKey:
    """What a store must agree on with a call before that call may resume it."""

    config_hash: str
    members_digest: str
    n_members: int
    n_steps: int
    chunk_steps: int
    member_block: int
    #: the step's implementation ("xla" or "native"): a run is continued only by the engine that began it
    engine: str = "xla"

    @classmethod
    def of(cls, model, chunk_steps: int, member_block: int | None = None, engine: str = "xla") -> "RunKey":
        n_members = model.n_members
        block = n_members if member_block is None else int(member_block)
        if not 1 <= block <= n_members:
            raise StoreError(f"member_block={member_block!r} is invalid; it must be between 1 and the "
                             f"number of members ({n_members})")
        return cls(model.config.config_hash(), members_digest(model.member_coords), n_members,
                   model.layout.n_steps, int(chunk_steps), block, engine)

    @property
    def n_blocks(self) -> int:
        return -(-self.n_members // self.member_block)

    def block_members(self, block: int) -> range:
        start = block * self.member_block
        return range(start, min(start + self.member_block, self.n_members))


# -- creation ------------------------------------------------------------------


def _coord_chunks(shape: tuple, itemsize: int) -> tuple:
    if len(shape) != 1:
        return shape
    return (max(1, min(shape[0], COORD_CHUNK_BYTES // max(itemsize, 1))),)


def _write_coord(group, name: str, dims: tuple, values, attrs: dict | None = None) -> None:
    values = np.asarray(values)
    dtype = "string" if values.dtype.kind in "UO" else values.dtype
    arr = group.create_array(name, shape=values.shape, dtype=dtype, dimension_names=dims,
                             chunks=_coord_chunks(values.shape, values.dtype.itemsize),
                             compressors=compressors(DEFAULT_COMPRESSOR), config=WRITE_ALL,
                             fill_value="" if dtype == "string" else None)
    # contiguous first: zarr 3.1 writes a non-C-contiguous string array in the wrong order
    arr[...] = np.ascontiguousarray(values.astype(str) if dtype == "string" else values)
    if attrs:
        arr.attrs.update(attrs)


def template(model) -> xr.Dataset:
    """The Dataset in-memory Signals of this run would have (all members), with placeholder data.

    The store takes its coordinates, variable attributes and Signals attributes
    from it, so store-backed Signals match in-memory ones by construction.
    """
    layout = model.layout
    arrays = {name: np.broadcast_to(np.zeros((), bool if REGISTRY[name].dtype == "bool" else layout.dtype),
                                    (model.n_members, layout.geometry(name)["n_time"],
                                     layout.geometry(name)["n_last"]))
              for name in layout.probes}
    return build_dataset(arrays, model, squeeze_member=False)


def count_bin_steps(dt_ms: float, chunk_steps: int) -> int:
    """Steps per bin of ``spike_count``: the largest divisor of the chunk up to COUNT_BIN_MS (at least 1),
    so every chunk holds whole bins."""
    target = max(1, int(round(COUNT_BIN_MS / dt_ms)))
    return max(d for d in range(1, min(target, chunk_steps) + 1) if chunk_steps % d == 0)


def count_dtype(bin_steps: int) -> np.dtype:
    """The narrowest unsigned dtype of a neuron's spikes in a bin (at most one spike per step)."""
    return np.dtype(np.uint8 if bin_steps < 2**8 else np.uint16 if bin_steps < 2**16 else np.uint32)


def step_deltas(counts: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Each member's steps (sorted, members in a row as ``ChunkEvents``) as differences: the first event
    of a member keeps its step, each other one its step minus the previous event's (same dtype, all >= 0)."""
    out = np.empty_like(step)
    if step.size:
        out[0] = step[0]
        np.subtract(step[1:], step[:-1], out=out[1:])        # wraps at member boundaries: overwritten next
        counts = np.asarray(counts, dtype=np.int64)
        first = (np.cumsum(counts) - counts)[counts > 0]
        out[first] = step[first]
    return out


def steps_from_deltas(counts: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """The inverse of ``step_deltas``: each member's cumulative sum of its differences, int64."""
    total = np.cumsum(delta, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    before = np.concatenate([[0], total])[np.cumsum(counts) - counts]    # the sum before each member
    return total - np.repeat(before, counts)


def raster_stored(attrs: dict) -> bool:
    """Whether a store holds the dense SPK raster (schema 1 always; schemas 2 and 3 only on request)."""
    return attrs.get("spk_encoding", "bool") in ("bool", "events+bool")


def events_stored(attrs: dict) -> bool:
    """Whether a store holds the spikes as events and counts (schemas 2 and 3)."""
    return str(attrs.get("spk_encoding", "bool")).startswith("events")


def stored_probes(attrs: dict) -> tuple:
    """The probes stored as dense arrays of their own (every probe but SPK when only its events are)."""
    return tuple(p for p in attrs["probes"] if REGISTRY[p].dtype != "bool" or raster_stored(attrs))


def root_attrs(model, key: RunKey, signal_attrs: dict, manifest: dict) -> dict:
    """The store's root attributes (JSON)."""
    layout = model.layout
    return {
        "jaxfne_schema": SCHEMA,
        "jaxfne_schema_version": SCHEMA_VERSION,
        "n_steps": layout.n_steps,
        "chunk_steps": key.chunk_steps,
        "engine": key.engine,
        "n_members": key.n_members,
        "member_block": key.member_block,
        "ensemble": bool(model.ensemble),
        "dtype": layout.dtype,
        "probes": list(layout.probes),
        "member_coords": list(model.member_coords),
        "spk_encoding": SPK_ENCODING,
        "spike_count_bin_steps": count_bin_steps(layout.dt_ms, key.chunk_steps),
        "n_neurons": layout.n,
        "integrity": integrity_attrs(),
        "members_digest": key.members_digest,
        "config": model.config.to_dict(),
        "manifest": manifest,
        **signal_attrs,                               # dt_ms, config_hash, scope, ... as in-memory Signals
        "signal_attrs": list(signal_attrs),
    }


def state_layout(state: dict) -> list:
    """[[field, per-member shape, dtype], ...] of a state given as field -> array (member, ...)."""
    return [[name, list(np.shape(arr)[1:]), np.asarray(arr).dtype.str] for name, arr in state.items()]


def pack_state(state: dict, layout: list) -> np.ndarray:
    """The fields of a state as one byte row per member (member, nbytes), in ``layout`` order."""
    rows = []
    for name, shape, dtype in layout:
        arr = np.ascontiguousarray(state[name], dtype=np.dtype(dtype))
        if list(arr.shape[1:]) != list(shape):
            raise StoreError(f"state field {name!r} has shape {arr.shape[1:]}, the store expects {tuple(shape)}")
        rows.append(arr.reshape(arr.shape[0], -1).view(np.uint8))
    return np.concatenate(rows, axis=1)


def unpack_state(packed: np.ndarray, layout: list) -> dict:
    out, pos = {}, 0
    for name, shape, dtype in layout:
        dt = np.dtype(dtype)
        size = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        out[name] = np.ascontiguousarray(packed[:, pos:pos + size]).view(dt).reshape(packed.shape[0], *shape)
        pos += size
    return out


def build_skeleton(target: Path, model, key: RunKey, state: list, manifest: dict) -> None:
    """Write every array's metadata, the coordinates and the attributes into ``target``."""
    layout = model.layout
    tmpl = template(model)
    group = zarr.open_group(target, mode="w", zarr_format=3, attributes=root_attrs(model, key, dict(tmpl.attrs), manifest))
    for name, coord in tmpl.coords.items():
        _write_coord(group, name, coord.dims, coord.values, dict(coord.attrs))
    # written with the last chunk of each member-block: is the final state (v, u) finite?
    group.create_array("state_finite", shape=(key.n_members,), dtype=bool, chunks=(key.member_block,),
                       compressors=compressors(DEFAULT_COMPRESSOR), fill_value=False, dimension_names=("member",))
    coord_list = " ".join(n for n in [*tmpl.coords, "state_finite"] if n not in tmpl.dims)
    member_chunk_bytes = max(int(layout.step_bytes(name) * key.chunk_steps) for name in layout.probes)
    inner = inner_members(key.member_block, member_chunk_bytes)   # one member chunking for every probe
    if "SPK" in layout.probes and events_stored(dict(group.attrs)):
        _event_arrays(group, model, key, inner, tmpl, coord_list)
    for name in stored_probes(dict(group.attrs)):
        geo = layout.geometry(name)
        last, n_time, t_chunk = geo["n_last"], geo["n_time"], key.chunk_steps // geo["stride"]
        is_spk = REGISTRY[name].dtype == "bool"       # rasters: zstd; float traces: shuffled lz4
        arr = group.create_array(
            name, shape=(key.n_members, n_time, last), dtype=bool if is_spk else layout.dtype,
            chunks=(inner, t_chunk, last),
            shards=None if inner == key.member_block else (key.member_block, t_chunk, last),
            compressors=compressors(SPK_COMPRESSOR if is_spk else FLOAT_COMPRESSOR),
            fill_value=False if is_spk else 0.0, dimension_names=tuple(tmpl[name].dims))
        arr.attrs.update({**tmpl[name].attrs, "coordinates": coord_list})
    ckpt = group.create_group("checkpoint", attributes={
        "description": "resume state: two alternating slots; a member-block's progress marker names the valid one"})
    nbytes = sum(int(np.prod(shape, dtype=np.int64)) * np.dtype(dt).itemsize for _, shape, dt in state)
    packed = ckpt.create_array("state", shape=(2, key.n_members, nbytes), dtype="uint8",
                               chunks=(1, key.member_block, nbytes), fill_value=0,
                               compressors=compressors(DEFAULT_COMPRESSOR), dimension_names=("slot", "member", "byte"))
    packed.attrs["fields"] = state
    packed.attrs["description"] = "the simulation state per member, its fields' bytes concatenated in order"
    ckpt.create_array("completed_steps", shape=(key.n_blocks, 2), dtype="int64", chunks=(1, 1), fill_value=-1,
                      compressors=compressors(MARKER_COMPRESSOR), dimension_names=("member_block", "slot"))
    with warnings.catch_warnings():  # zarr warns that consolidated metadata is not in the v3 spec yet
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata", category=UserWarning)
        zarr.consolidate_metadata(target)


def _event_arrays(group, model, key: RunKey, inner: int, tmpl: xr.Dataset, coord_list: str) -> None:
    """The spikes as events (group ``spike_events``) and counts (``spike_count``, coordinate ``time_bin``)."""
    layout = model.layout
    n_chunks = -(-key.n_steps // key.chunk_steps)
    events = group.create_group("spike_events", attributes={
        "description": "spikes as events: compressed sparse rows per (member_block, time_chunk). Row "
                       "(b, k) of `neuron` and `step_delta` holds the events of member-block b in simulation "
                       "chunk k: the members of the block in order, each sorted by step then neuron; `count` "
                       "(member, time_chunk) is each member's number of events there (the CF "
                       "contiguous-ragged-array count; offsets = cumulative sums within the block). A "
                       "member's steps within the chunk = cumsum of its `step_delta` entries; global step = "
                       "time_chunk * chunk_steps + step. docs/store.md",
        "chunk_steps": key.chunk_steps, "member_block": key.member_block, "dt_ms": layout.dt_ms,
        # the SPK variable open_dataset rebuilds from these events, as in-memory Signals label it
        "raster_attrs": {k: v for k, v in tmpl["SPK"].attrs.items()}, "raster_dims": list(tmpl["SPK"].dims),
        "coordinates": coord_list})
    capacity = key.member_block * key.chunk_steps * layout.n
    for name, dtype, what in (("neuron", neuron_dtype(layout.n), "neuron index in the network"),
                              ("step_delta", step_dtype(key.chunk_steps),
                               "step within the simulation chunk minus the step of the member's previous event "
                               "in the chunk (its first event: the step itself); a member's steps are the "
                               "cumulative sum of its entries")):
        arr = events.create_array(name, shape=(key.n_blocks, n_chunks, capacity), dtype=dtype,
                                  chunks=(1, 1, min(EVENT_CHUNK, capacity)), fill_value=0,
                                  compressors=compressors(EVENT_COMPRESSOR),
                                  dimension_names=("member_block", "time_chunk", "event"))
        arr.attrs.update({"description": what, "sample_dimension": "event"})
    count = events.create_array("count", shape=(key.n_members, n_chunks), dtype="int32",
                                chunks=(key.member_block, 1), fill_value=0,
                                compressors=compressors(DEFAULT_COMPRESSOR), dimension_names=("member", "time_chunk"))
    count.attrs.update({"description": "events of each member in each simulation chunk",
                        "sample_dimension": "event"})
    bin_steps = count_bin_steps(layout.dt_ms, key.chunk_steps)
    n_bins, per_chunk = -(-key.n_steps // bin_steps), key.chunk_steps // bin_steps
    _write_coord(group, "time_bin", ("time_bin",), np.arange(n_bins) * bin_steps * layout.dt_ms,
                 {"units": "ms", "description": f"start of each bin of {bin_steps} steps (the last may be "
                  "shorter when the run is not a whole number of bins)"})
    arr = group.create_array(SPIKE_COUNT, shape=(key.n_members, n_bins, layout.n), dtype=count_dtype(bin_steps),
                             chunks=(inner, per_chunk, layout.n),
                             shards=None if inner == key.member_block else (key.member_block, per_chunk, layout.n),
                             compressors=compressors(COUNT_COMPRESSOR), fill_value=0,
                             dimension_names=("member", "time_bin", "neuron"))
    arr.attrs.update({"units": "spikes", "description": f"spikes per neuron in bins of {bin_steps} steps",
                      "bin_steps": bin_steps, "coordinates": coord_list})


def create(path: Path, model, key: RunKey, state: list, manifest: dict) -> None:
    """Create the store at ``path`` atomically (build beside it, then rename).

    ``state`` is the checkpoint's field layout (``state_layout`` of a state).
    """
    tmp = path.with_name(f"{path.name}{CREATING}.{uuid.uuid4().hex[:12]}")   # unique: never another's
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        build_skeleton(tmp, model, key, state, manifest)
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
        os.rename(tmp, path)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise StoreError(f"store {str(path)!r}: cannot create it ({exc}); choose a writable folder") from exc


def remove(path: Path) -> None:
    """Delete a jaxfne store: rename it aside first so a kill never leaves half a store."""
    aside = path.with_name(f"{path.name}{DELETING}.{uuid.uuid4().hex[:12]}")
    try:
        os.rename(path, aside)
    except OSError as exc:
        raise StoreError(f"store {str(path)!r}: cannot remove it for overwrite=True ({exc})") from exc
    shutil.rmtree(aside, ignore_errors=True)


def remove_partials(path: Path, probes, blocks) -> int:
    """Delete the temporary files of writes a kill interrupted, in the chunks of ``blocks`` only
    (zarr's LocalStore writes ``<key>.<uuid>.partial`` and renames it into place; other processes'
    blocks are left alone). Returns how many were removed."""
    removed = 0
    for b in blocks:
        roots = [path / p / "c" / str(b) for p in probes]
        roots += [path / name / "c" / str(b) for name in (*EVENT_ROWS, EVENT_COUNT, SPIKE_COUNT)]
        roots += [path / "checkpoint" / "completed_steps" / "c" / str(b)]
        roots += [path / "checkpoint" / "state" / "c" / str(slot) / str(b) for slot in (0, 1)]
        for root in roots:
            for tmp in root.rglob("*.partial") if root.is_dir() else ():
                tmp.unlink(missing_ok=True)
                removed += 1
    return removed


def leftovers(path: Path) -> list:
    """Half-built or half-deleted siblings of ``path`` left by a killed run (ours by name)."""
    if not path.parent.is_dir():
        return []
    return [p for p in path.parent.iterdir()
            if p.name.startswith(path.name + CREATING) or p.name.startswith(path.name + DELETING)]


#: how long a refused writer waits for the lock holder to write its identity (it does so at once)
HOLDER_WAIT_S = 2.0


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (signal 0 checks without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:          # exists, owned by someone else
        return True
    return True


class StoreLock:
    """One writer per store: advisory locks on a hidden file beside it, held for the whole run.

    POSIX record locks (``fcntl.lockf``) on single bytes of ``.NAME.jaxfne-lock``:
    byte 0 for the process that creates (or replaces, or resumes) the store,
    byte 1 + b for member-block b, so the processes of one ``jax.distributed``
    run (each writing its own blocks) share a store while a second run on the
    same path is refused at once. The kernel drops the locks when the process
    ends, however it ends, so a killed run never leaves a stale lock. The
    creator writes its host and pid into the file for the refusal's message.
    Locks taken by one process do not exclude that same process (two threads
    of one program are not guarded).
    """

    def __init__(self, path: Path, blocks, creator: bool):
        self.path = path
        self.file = path.with_name(f".{path.name}{LOCK_SUFFIX}")
        self.bytes = ([0] if creator else []) + [1 + int(b) for b in blocks]
        self.creator = creator
        self.fd = None

    def __enter__(self) -> "StoreLock":
        if fcntl is None:
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"store {str(self.path)!r}: cannot open its lock file {str(self.file)!r} ({exc}); "
                             "choose a writable folder") from exc
        try:
            for byte in self.bytes:
                fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, byte, os.SEEK_SET)
        except OSError:
            holder = self.holder()
            os.close(self.fd)
            self.fd = None
            raise StoreError(f"store {str(self.path)!r} is being written by another process ({holder}); "
                             "one writer per store: wait for it to finish (then run again to reuse or resume "
                             "the store), or choose another path") from None
        if self.creator:
            text = json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                               "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, text.encode(), 0)
        return self

    def holder(self) -> str:
        """Who holds the lock, as the holder wrote it. The holder writes its identity just after taking
        the lock, so a refused process that reads at once may find the file empty or still naming an
        earlier, ended run (its pid gone): it reads again for up to HOLDER_WAIT_S before saying
        "holder unknown" (seen in the two-writer race test: the loser read an empty file)."""
        deadline = time.monotonic() + HOLDER_WAIT_S
        while True:
            try:
                with open(self.file, encoding="utf-8") as fh:
                    info = json.loads(fh.read() or "{}")
                text = f"host {info['host']}, pid {info['pid']}, since {info['since']}"
                if info["host"] != socket.gethostname() or pid_alive(int(info["pid"])):
                    return text
            except (OSError, ValueError, KeyError, TypeError):
                pass
            if time.monotonic() >= deadline:
                return "holder unknown"
            time.sleep(0.01)

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            if self.creator:
                os.ftruncate(self.fd, 0)   # no stale identity for the next refused process to read
            os.close(self.fd)          # drops the locks
            self.fd = None


# -- opening and checking ---------------------------------------------------------


def read_attrs(path: Path) -> dict | None:
    """Root attributes of a jaxfne store at ``path``; None when nothing is there."""
    if not path.exists():
        return None
    if not path.is_dir():
        raise StoreError(f"store {str(path)!r} is a file, not a folder; choose a folder path for the Zarr store")
    if not (path / "zarr.json").exists():
        if any(path.iterdir()):
            raise StoreError(f"store {str(path)!r} is a non-empty folder that is not a Zarr store; "
                             "jaxfne will not write into it or delete it; choose a new path")
        return None
    try:
        with open(path / "zarr.json", encoding="utf-8") as fh:
            meta = json.load(fh)
    except (OSError, ValueError) as exc:
        raise StoreError(f"store {str(path)!r}: cannot read its zarr.json ({exc})") from exc
    attrs = meta.get("attributes", {})
    if meta.get("zarr_format") != 3 or meta.get("node_type") != "group" or "jaxfne_schema" not in attrs:
        raise StoreError(f"store {str(path)!r} holds a Zarr store that jaxfne did not write "
                         "(no 'jaxfne_schema' attribute); choose a new path")
    version = attrs.get("jaxfne_schema_version")
    if version not in READ_VERSIONS:
        raise StoreError(f"store {str(path)!r}: jaxfne_schema_version={version!r} is not supported; "
                         f"this jaxfne reads versions {', '.join(map(str, READ_VERSIONS))} ({SCHEMA} and before)")
    return attrs


def mismatch(attrs: dict, key: RunKey) -> str | None:
    """Why the store at hand cannot continue the run ``key``; None if it can (a store of an older schema is
    continued in its own layout)."""
    checks = (("config_hash", key.config_hash, "the configuration differs (configuration hash)"),
              ("members_digest", key.members_digest, "the ensemble members (seeds or swept values) differ"),
              ("n_members", key.n_members, "the number of members differs"),
              ("n_steps", key.n_steps, "the number of time steps differs"))
    for field, want, why in checks:
        if attrs.get(field) != want:
            return f"{why}: the store has {field}={attrs.get(field)!r}, this run has {want!r}"
    return None


def stored_engine(attrs: dict) -> str:
    """The engine that wrote a store (stores from before the native engine were written by xla)."""
    return attrs.get("engine", "xla")


def layout_mismatch(attrs: dict, key: RunKey) -> str | None:
    """Why an unfinished store cannot be continued with this chunking; None if it can."""
    for field, want in (("chunk_steps", key.chunk_steps), ("member_block", key.member_block)):
        if attrs.get(field) != want:
            return f"{field}={want} differs from the store's {field}={attrs.get(field)!r}"
    stored = stored_engine(attrs)
    if stored != key.engine:
        return (f"engine={key.engine!r} differs from the store's engine={stored!r} (the engines agree to "
                f"rounding, not bit for bit; pass engine={stored!r})")
    return None


class Store:
    """An open jaxfne store: writes chunks of member-blocks and keeps the checkpoint."""

    def __init__(self, path: Path, mode: str = "r+"):
        self.path = path
        try:
            self.group = zarr.open_group(path, mode=mode, zarr_format=3, use_consolidated=False)
        except Exception as exc:  # zarr raises several types for broken metadata
            raise StoreError(f"store {str(path)!r}: cannot open it ({exc})") from exc
        self.attrs = dict(self.group.attrs)
        self.chunk_steps = int(self.attrs["chunk_steps"])
        self.member_block = int(self.attrs["member_block"])
        self.n_members = int(self.attrs["n_members"])
        self.n_steps = int(self.attrs["n_steps"])
        self.probes = tuple(self.attrs["probes"])
        #: the probes with a dense array of their own; the spikes' events and counts (schema 2)
        self.stored = stored_probes(self.attrs)
        self.events = events_stored(self.attrs)
        self.bin_steps = int(self.attrs.get("spike_count_bin_steps", 1))
        #: the event steps: per-member differences (schema 3) or absolute steps in the chunk (schema 2)
        self.step_delta = int(self.attrs.get("jaxfne_schema_version", 1)) >= 3
        self.step_name = EVENT_STEP_DELTA if self.step_delta else EVENT_STEP
        self._arrays = {}

    @property
    def n_blocks(self) -> int:
        return -(-self.n_members // self.member_block)

    def array(self, name: str):
        if name not in self._arrays:
            # every chunk is written, all-fill ones too (WRITE_ALL): a missing chunk is always a fault
            self._arrays[name] = self.group[name].with_config(WRITE_ALL)
        return self._arrays[name]

    def block_members(self, block: int) -> slice:
        start = block * self.member_block
        return slice(start, min(start + self.member_block, self.n_members))

    # -- progress marker -------------------------------------------------------
    def completed_steps(self, block: int) -> tuple[int, int | None]:
        """(completed steps, valid slot) of a member-block; (0, None) before the first chunk.

        Each slot is read on its own; a slot torn by a kill fails its checksum
        and is ignored, so the other slot (the previous chunk) is used.
        """
        marker = self.array("checkpoint/completed_steps")
        best, slot = 0, None
        for s in (0, 1):
            try:
                value = int(marker[block, s])
            except Exception:  # torn or unreadable slot: ignore it  # noqa: BLE001
                continue
            if value > best:
                best, slot = value, s
        return best, slot

    def completed_all(self) -> int:
        """Steps completed by every member-block."""
        return min(self.completed_steps(b)[0] for b in range(self.n_blocks))

    @property
    def state_fields(self) -> list:
        return self.array("checkpoint/state").attrs["fields"]

    def read_state(self, block: int, slot: int) -> dict:
        name = "checkpoint/state"
        packed = read_checked(self.path, name, self.array(name),
                              (slice(slot, slot + 1), self.block_members(block), slice(None)))[0]
        return unpack_state(packed, self.state_fields)

    # -- writing -----------------------------------------------------------------
    def write_chunk(self, block: int, t0: int, arrays: dict) -> None:
        """Write the probes of one simulation chunk of one member-block (time from ``t0``), and, when the
        store keeps them, its spikes as events and counts (``arrays[EVENTS]``: the block's ChunkEvents; a
        chunk given as a raster ``arrays["SPK"]`` only is stored as the raster's events)."""
        sel = self.block_members(block)
        if self.events:
            events = arrays.get(EVENTS)
            if events is None and "SPK" in arrays:
                events = events_from_raster(np.asarray(arrays["SPK"], bool), chunk_steps=self.chunk_steps)
            if events is None:
                raise StoreError(f"store {str(self.path)!r}: chunk at step {t0} came without its spikes")
            self._write_events(block, t0, events, arrays)
        for name in self.stored:
            data = arrays[name]
            stride = self.chunk_steps // self.array(name).chunks[1]   # sampled probes: one row per stride steps
            start = t0 // stride
            self._write(name, f"chunk {t0 // self.chunk_steps} (steps {t0}-{t0 + data.shape[1] * stride}) of "
                        f"probe {name!r}", (sel, slice(start, start + data.shape[1])), data)

    def _write_events(self, block: int, t0: int, events: ChunkEvents, arrays: dict) -> None:
        sel = self.block_members(block)
        k = t0 // self.chunk_steps
        where = f"chunk {k} (steps {t0}-{t0 + self.chunk_steps})"
        total = int(events.counts.sum())
        if total:
            step = step_deltas(events.counts, events.step) if self.step_delta else events.step
            for name, data in ((EVENT_NEURON, events.neuron), (self.step_name, step)):
                self._write(name, f"{where}, spike events {name.split('/')[1]!r}", (block, k, slice(0, total)),
                            data.astype(self.array(name).dtype, copy=False))
        self._write(EVENT_COUNT, f"{where}, spike event counts", (sel, k), events.counts.astype(np.int32))
        # dense counts per bin: one bincount over (member, bin, neuron)
        n_members, n = len(events.counts), int(self.attrs["n_neurons"])
        n_bins = -(-self._chunk_len(t0) // self.bin_steps)
        member = np.repeat(np.arange(n_members), events.counts)
        flat = (member * n_bins + events.step.astype(np.int64) // self.bin_steps) * n + events.neuron
        counts = np.bincount(flat, minlength=n_members * n_bins * n).reshape(n_members, n_bins, n)
        first = t0 // self.bin_steps
        self._write(SPIKE_COUNT, f"{where}, spike counts", (sel, slice(first, first + n_bins)),
                    counts.astype(self.array(SPIKE_COUNT).dtype))

    def _chunk_len(self, t0: int) -> int:
        return min(self.chunk_steps, self.n_steps - t0)

    def commit(self, block: int, t0: int, n_keep: int, state: dict, finite: np.ndarray) -> None:
        """Save the state after a chunk, then mark the chunk complete (the marker last).

        ``finite``: per member, the device's flag that the state (v, u) is finite.
        """
        chunk = t0 // self.chunk_steps
        slot = chunk % 2
        sel = self.block_members(block)
        where = f"chunk {chunk} (steps {t0}-{t0 + n_keep})"
        self._write("checkpoint/state", f"{where}, state checkpoint", (slot, sel),
                    pack_state(state, self.state_fields))
        if t0 + n_keep >= self.n_steps:
            self._write("state_finite", f"{where}, state_finite", sel, np.asarray(finite, bool))
        self._write("checkpoint/completed_steps", f"{where}, progress marker", (block, slot), t0 + n_keep)

    def _write(self, name: str, where: str, selection, data) -> None:
        try:
            self.array(name)[selection] = data if np.ndim(data) == 0 else np.ascontiguousarray(data)
        except Exception as exc:  # OSError, PermissionError, codec or store errors
            try:
                done = self.completed_all()
            except Exception:  # noqa: BLE001 - the message must not fail
                done = "an unknown number of"
            raise StoreError(
                f"store {str(self.path)!r}: writing {where} failed ({type(exc).__name__}: {exc}); the chunks "
                f"before it ({done} steps) are complete and readable with "
                "jaxfne.open_signals(path, allow_incomplete=True); fix the cause (disk space, permissions) and "
                "run the same call again to resume") from exc


# -- reading chunks: every failure names the array, the chunk and its file -------------------


def stored_chunks(arr) -> tuple:
    """The shape of one stored object (one file) of ``arr``: its shard, or its chunk when not sharded."""
    return tuple(arr.shards or arr.chunks)


def chunk_grid(arr) -> tuple:
    """How many stored objects ``arr`` has along each dimension."""
    return tuple(-(-s // c) for s, c in zip(arr.shape, stored_chunks(arr)))


def chunk_slices(arr, idx: tuple, chunks: tuple | None = None) -> tuple:
    """The selection of the stored object (or, with ``chunks``, the chunk of that shape) at ``idx``."""
    chunks = stored_chunks(arr) if chunks is None else chunks
    return tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(idx, chunks, arr.shape))


def chunks_in(arr, selection: tuple) -> list:
    """The indices of the stored objects a selection of slices (step 1) touches."""
    ranges = []
    for sel, c, s in zip(selection, stored_chunks(arr), arr.shape):
        start, stop, _ = sel.indices(s)
        if stop <= start:
            return []
        ranges.append(range(start // c, (stop - 1) // c + 1))
    return list(itertools.product(*ranges))


def chunk_file(path: Path, name: str, arr, idx: tuple) -> Path:
    """The file of the stored object ``idx`` of array ``name`` (a zarr key such as ``SPK/c/0/3/0``)."""
    return path / name / arr.metadata.encode_chunk_key(tuple(int(i) for i in idx))


def file_problem(file: Path) -> str | None:
    """Why a chunk file that must exist is unusable without decoding it (missing, empty); None if it is not."""
    try:
        size = file.stat().st_size
    except FileNotFoundError:
        return "missing: the file does not exist"
    except OSError as exc:
        return f"unreadable: {exc}"
    return "empty: the file has 0 bytes" if size == 0 else None


def _why(exc: BaseException) -> str:
    text = f"{exc}"
    if "checksum" in text.lower() and ("match" in text.lower() or "mismatch" in text.lower()):
        return "checksum (CRC-32C) mismatch: the file is truncated or its bytes changed after it was written"
    return f"cannot be decoded ({type(exc).__name__}: {text})"


def _shard_index_problem(file: Path, arr) -> str | None:
    """Why the index of the shard in ``file`` is damaged or lists a missing inner chunk; None if neither.

    Only for zarr's default index (little-endian uint64 offsets and lengths, then a CRC-32C), as jaxfne
    writes it; other layouts are left to zarr's own decoding.
    """
    codec = arr.metadata.codecs[0]
    index_codecs = [type(c) for c in getattr(codec, "index_codecs", ())]
    if index_codecs != [BytesCodec, Crc32cCodec]:
        return None
    per_shard = tuple(s // c for s, c in zip(stored_chunks(arr), arr.chunks))
    size = 16 * int(np.prod(per_shard)) + 4
    try:
        with open(file, "rb") as fh:
            end = fh.seek(0, os.SEEK_END)
            if end < size:
                return f"truncated: {end} bytes cannot hold the shard index ({size} bytes)"
            fh.seek(0 if codec.index_location.value == "start" else end - size)
            raw = fh.read(size)
    except OSError as exc:
        return f"unreadable: {exc}"
    try:
        body = numcodecs.CRC32C().decode(raw)
    except Exception:  # noqa: BLE001 - numcodecs raises RuntimeError on a mismatch
        return "checksum (CRC-32C) mismatch in the shard index: the file is truncated or its bytes changed"
    index = np.frombuffer(body, dtype="<u8").reshape(*per_shard, 2)
    missing = [tuple(int(i) for i in j) for j in zip(*np.nonzero(index[..., 0] == 2**64 - 1))]
    if missing:
        return f"incomplete shard: inner chunk(s) {missing[:4]}{' ...' if len(missing) > 4 else ''} missing from its index"
    return None


def decode_problem(arr, idx: tuple, file: Path | None = None) -> str | None:
    """Why the stored object ``idx`` of ``arr`` does not decode (for a shard: its index, or which inner
    chunk); None if it decodes. Reads it whole."""
    if arr.shards is not None and file is not None:
        why = _shard_index_problem(file, arr)
        if why is not None:
            return why
    try:
        arr[chunk_slices(arr, idx)]
        return None
    except MemoryError:
        raise                               # out of memory is not damage
    except Exception as exc:  # noqa: BLE001 - codecs raise ValueError, RuntimeError, ...
        first = exc
    if arr.shards is not None:              # which inner chunk of the shard
        per_shard = [s // c for s, c in zip(stored_chunks(arr), arr.chunks)]
        for inner in itertools.product(*(range(n) for n in per_shard)):
            at = tuple(i * n + j for i, n, j in zip(idx, per_shard, inner))
            sel = chunk_slices(arr, at, arr.chunks)
            if any(s.stop <= s.start for s in sel):
                continue
            try:
                arr[sel]
            except Exception as exc:  # noqa: BLE001
                return f"inner chunk {inner} of the shard: {_why(exc)}"
    return _why(first)


def damaged_error(path: Path, name: str, idx: tuple | None, file: Path | str, why: str) -> StoreError:
    """The StoreError of a damaged chunk: the store, the array, the chunk index, the file and why."""
    chunk = "" if idx is None else f", chunk {tuple(int(i) for i in idx)}"
    return StoreError(f"store {str(path)!r}: array {name!r}{chunk} is damaged (file {str(file)!r}: {why}); its "
                      f"data cannot be read. `jaxfne verify {path}` lists every damaged chunk; recompute the store "
                      "(simulate with overwrite=True) or restore the file from a copy")


def read_checked(path: Path, name: str, arr, selection: tuple, expected=None) -> np.ndarray:
    """``arr[selection]`` (slices of step 1), where a missing or empty chunk file is an error, not fill
    values, and any failure is a StoreError naming the array, the chunk and the file.

    ``expected(idx)``: whether the stored object ``idx`` must exist (default: every one touched). Costs
    one ``stat`` per stored object touched before the read.
    """
    touched = chunks_in(arr, selection)
    for idx in touched:
        if expected is None or expected(idx):
            file = chunk_file(path, name, arr, idx)
            why = file_problem(file)
            if why is not None:
                raise damaged_error(path, name, idx, file, why)
    try:
        return np.asarray(arr[selection])
    except MemoryError:
        raise                               # out of memory is not damage
    except Exception as exc:  # noqa: BLE001 - codecs and stores raise many types
        for idx in touched:
            file = chunk_file(path, name, arr, idx)
            if not file.exists():          # not expected (checked above): zarr reads fill values
                continue
            why = file_problem(file) or decode_problem(arr, idx, file)
            if why is not None:
                raise damaged_error(path, name, idx, file, why) from exc
        files = ", ".join(repr(str(chunk_file(path, name, arr, idx))) for idx in touched[:4])
        raise StoreError(f"store {str(path)!r}: reading array {name!r} at chunk(s) "
                         f"{[tuple(int(i) for i in t) for t in touched[:4]]} (file(s) {files}) failed "
                         f"({type(exc).__name__}: {exc})") from exc
