"""Integrity of a store: which chunk files it must hold, checked reads for Dask, and ``verify_store``.

The writer writes every chunk of every array, all-fill ones too, and (since
the ``integrity`` root attribute) each chunk ends with a CRC-32C. So a chunk
file that should exist and does not, an empty one, and one that fails its
checksum or does not decode are all damage. Which files must exist follows
from the store's attributes and its progress markers (``Expected``): the
chunks of the completed steps, the checkpoint slots written so far, every
coordinate chunk.

Reading (``open_dataset``) stays lazy and cheap: each Dask block ``stat``s the
files it reads (``CheckedArray``) and any failure is a StoreError naming the
array, the chunk and the file. ``verify_store`` reads every chunk and records
its result in ``.jaxfne-verify.json`` inside the store (never in the store's
metadata), which ``jaxfne info`` shows.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import uuid
from pathlib import Path

import numpy as np

from .._errors import StoreError
from .._version import __version__
from . import _store

#: the last verification's result, inside the store (not Zarr metadata: zarr and xarray ignore it)
RECORD = ".jaxfne-verify.json"
#: damaged chunks listed in the record at most (the count is always exact)
RECORD_LIST = 100


class Expected:
    """Which stored objects of which arrays a store must hold, from its attributes and progress markers."""

    def __init__(self, st: _store.Store):
        self.st = st
        self.every = _store.every_chunk_written(st.attrs)
        self.done = [st.completed_steps(b)[0] for b in range(st.n_blocks)]
        #: arrays whose axis 1 holds one simulation chunk per stored object
        self.timed = set(st.stored) | ({_store.EVENT_COUNT, _store.SPIKE_COUNT} if st.events else set())
        self._totals: dict = {}

    def _done(self, arr, idx: tuple, axis: int) -> int:
        """Steps completed by every member-block that the stored object ``idx`` holds members of."""
        size = _store.stored_chunks(arr)[axis]
        first = idx[axis] * size
        last = min(first + size, self.st.n_members) - 1
        mb = self.st.member_block
        return min(self.done[first // mb:last // mb + 1])

    def _chunks_done(self, steps: int) -> int:
        return -(-steps // self.st.chunk_steps)

    def __call__(self, name: str, arr, idx: tuple) -> bool:
        st = self.st
        if name in self.timed:            # time chunk k holds simulation chunk k (sampled: its samples)
            return idx[1] * st.chunk_steps < self._done(arr, idx, 0)
        if name in _store.EVENT_ROWS:   # the objects that row (block, chunk) filled
            if idx[1] * st.chunk_steps >= self.done[idx[0]]:
                return False
            return idx[2] * arr.chunks[2] < self.events_in(idx[0], idx[1])
        if name == "state_finite":        # written with the last chunk of each member-block
            return self.every and self._done(arr, idx, 0) >= st.n_steps
        if name == "checkpoint/state":    # slot s holds the state after chunk s, s + 2, ...
            return self._chunks_done(self._done(arr, idx, 1)) > idx[0]
        if name == "checkpoint/completed_steps":
            return self._chunks_done(self.done[idx[0]]) > idx[1]
        # coordinates: written whole when the store was created; before every chunk was written, an
        # all-fill chunk (a single member's `member` = [0], seed 0) was skipped, so a missing one is
        # not known to be damage (the member coordinates are checked by value: member_problems)
        return self.every

    def events_in(self, block: int, chunk: int) -> int:
        """Events of member-block ``block`` in simulation chunk ``chunk`` (its ``spike_events/count``
        object); 0 when that object cannot be read: its own damage is what is reported then."""
        if (block, chunk) not in self._totals:
            st, name = self.st, _store.EVENT_COUNT
            arr = st.array(name)
            try:
                counts = _store.read_checked(st.path, name, arr, (st.block_members(block), slice(chunk, chunk + 1)))
                self._totals[block, chunk] = int(counts.sum(dtype=np.int64))
            except StoreError:
                self._totals[block, chunk] = 0
        return self._totals[block, chunk]

    def data(self, name: str) -> bool:
        """Whether ``name`` is written chunk by chunk as the run goes (probes, events, checkpoint): its
        chunks beyond the completed steps are not part of the store yet."""
        return (name in self.timed or name in _store.EVENT_ROWS
                or name.startswith("checkpoint/"))

    def of(self, name: str, arr):
        """``expected`` for one array (the form ``_store.read_checked`` takes)."""
        return lambda idx: self(name, arr, idx)


class CheckedArray:
    """One array of a store as ``dask.array.from_array`` reads it: through ``_store.read_checked``.

    Each Dask block ``stat``s the files it reads first (a missing or empty one is an error, never fill
    values) and turns a decode or checksum failure into a StoreError naming the array, the chunk and
    the file. Raised inside a Dask worker thread, the StoreError is what ``compute()`` raises.
    ``shape`` may be cut short in time (the completed steps of an unfinished store).
    """

    def __init__(self, path: Path, name: str, arr, shape: tuple, expected=None):
        self.path, self.name, self.arr, self.expected = path, name, arr, expected
        self.shape = tuple(int(s) for s in shape)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(arr.dtype)

    def __getitem__(self, key):
        """Basic indexing (Dask passes a tuple of slices; an integer drops its dimension)."""
        key = key if isinstance(key, tuple) else (key,)
        key += (slice(None),) * (self.ndim - len(key))
        drop = tuple(i for i, k in enumerate(key) if not isinstance(k, slice))
        key = tuple(k if isinstance(k, slice) else slice(int(k) % s, int(k) % s + 1) for k, s in zip(key, self.shape))
        key = tuple(slice(*k.indices(s)[:2]) for k, s in zip(key, self.shape))     # within the (cut) shape
        out = _store.read_checked(self.path, self.name, self.arr, key, self.expected)
        return out.squeeze(axis=drop) if drop else out

    def __reduce__(self):
        return (CheckedArray, (self.path, self.name, self.arr, self.shape, None))


def check_files(path: Path, name: str, arr, expected=None) -> None:
    """Raise a StoreError for the first chunk file of ``arr`` that must exist and is missing or empty."""
    for idx in np.ndindex(*_store.chunk_grid(arr)):
        if expected is None or expected(idx):
            file = _store.chunk_file(path, name, arr, idx)
            why = _store.file_problem(file)
            if why is not None:
                raise _store.damaged_error(path, name, idx, file, why)


def member_problems(attrs: dict, values: dict, st: _store.Store | None = None) -> list:
    """(coordinate, why) for member coordinates that disagree with the store's ``members_digest`` and a
    ``member`` coordinate that is not 0, 1, ...; ``values``: name -> values read. With ``st``, a
    mismatch names the coordinates whose chunk files are missing (read as fill values), if any."""
    out = []
    if "member" in values and not np.array_equal(np.asarray(values["member"]), np.arange(int(attrs["n_members"]))):
        out.append(("member", "values are not 0, 1, ..., n_members - 1"))
    names = list(attrs.get("member_coords", []))
    if names and all(n in values for n in names) and "members_digest" in attrs:
        got = {n: np.asarray(values[n]).tolist() if np.asarray(values[n]).dtype.kind not in "OT"
               else np.asarray(values[n], dtype=str).tolist() for n in names}
        if _store.members_digest(got) != attrs["members_digest"]:
            absent = [] if st is None else [n for n in names if _absent(st, n)]
            out.append((" / ".join(absent or names),
                        ("its chunk file is missing: " if absent else "") + "values do not match the store's "
                        "members_digest (the member coordinates it was written with)"))
    return out


def _absent(st: _store.Store, name: str) -> bool:
    arr = st.array(name)
    return any(not _store.chunk_file(st.path, name, arr, idx).exists() for idx in np.ndindex(*_store.chunk_grid(arr)))


def array_names(path: Path) -> list:
    """Every array the store was created with (its consolidated metadata), checkpoint arrays included."""
    try:
        with open(path / "zarr.json", encoding="utf-8") as fh:
            nodes = json.load(fh)["consolidated_metadata"]["metadata"]
        return sorted(k for k, v in nodes.items() if v.get("node_type") == "array")
    except (OSError, ValueError, KeyError, TypeError):      # not consolidated: the folders with a zarr.json
        return sorted(str(p.parent.relative_to(path)) for p in path.rglob("zarr.json")
                      if p.parent != path and json.loads(p.read_text()).get("node_type") == "array")


# -- verify_store ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Damage:
    """One damaged (or missing) chunk: the array, the chunk index (None: the array's metadata or
    values as a whole), the file and why."""

    array: str
    chunk: tuple | None
    file: str
    reason: str

    def __str__(self) -> str:
        chunk = "" if self.chunk is None else f" chunk {self.chunk}"
        return f"{self.array}{chunk}: {self.reason} ({self.file})"


@dataclasses.dataclass(frozen=True)
class VerifyReport:
    """What ``verify_store`` found: ``intact`` is True when no chunk is missing or damaged."""

    path: str
    verified_at: str
    damaged: tuple
    arrays_checked: int
    chunks_checked: int
    completed_steps: int
    n_steps: int
    #: the chunks carry CRC-32C checksums (False: a store written before them; then a changed byte inside
    #: a chunk that still decodes goes unnoticed, only missing and undecodable chunks are found)
    checksums: bool
    seconds: float

    @property
    def intact(self) -> bool:
        return not self.damaged

    def to_dict(self) -> dict:
        return {"path": self.path, "verified_at": self.verified_at, "intact": self.intact,
                "n_damaged": len(self.damaged), "damaged": [dataclasses.asdict(d) for d in self.damaged],
                "arrays_checked": self.arrays_checked, "chunks_checked": self.chunks_checked,
                "completed_steps": self.completed_steps, "n_steps": self.n_steps, "checksums": self.checksums,
                "seconds": round(self.seconds, 3)}

    def __str__(self) -> str:
        done = "complete" if self.completed_steps >= self.n_steps else \
            f"unfinished: {self.completed_steps} of {self.n_steps} steps, the completed ones checked"
        lines = [f"store    {self.path}",
                 f"checked  {self.chunks_checked} chunks of {self.arrays_checked} arrays in {self.seconds:.1f} s "
                 f"({done}); checksums: {'crc32c' if self.checksums else 'none (store written before them: missing and undecodable chunks only)'}",
                 f"result   {'intact' if self.intact else f'DAMAGED: {len(self.damaged)} chunk(s)'}"]
        lines += [f"  {d}" for d in self.damaged]
        return "\n".join(lines)


def verify_store(store, *, record: bool = True) -> VerifyReport:
    """Read every chunk of every array of the jaxfne store at ``store`` and report what is missing or damaged.

    Checked: every chunk file the store must hold (the completed steps of every probe, every coordinate,
    ``state_finite`` once complete, the checkpoint slots and progress markers written so far) exists, is
    not empty, passes its CRC-32C and decodes (for a shard: its index, and every inner chunk listed);
    the member coordinates match the store's ``members_digest``. Chunks beyond the completed steps are
    not checked (a resumed run writes them again). Stores written before checksums: missing probe and
    checkpoint chunks and undecodable chunks are found; their coordinates may lack all-fill chunks. With ``record`` the result is saved in the store's
    ``.jaxfne-verify.json`` (``jaxfne info`` shows it). Raises StoreError when ``store`` is not a
    jaxfne store (nothing to verify).
    """
    start = time.monotonic()
    path = _store.resolve_path(store)
    attrs = _store.read_attrs(path)
    if attrs is None:
        raise StoreError(f"verify: store {str(path)!r} does not exist")
    st = _store.Store(path, mode="r")
    expected = Expected(st)
    damaged, n_chunks, names = [], 0, array_names(path)
    values = {}
    for name in names:
        try:
            arr = st.array(name)
        except Exception as exc:  # noqa: BLE001 - broken or missing metadata of one array
            damaged.append(Damage(name, None, str(path / name / "zarr.json"),
                                  f"its metadata cannot be read ({type(exc).__name__}: {exc})"))
            continue
        before = len(damaged)
        for idx in np.ndindex(*_store.chunk_grid(arr)):
            file = _store.chunk_file(path, name, arr, idx)
            if not expected(name, arr, idx) and (expected.data(name) or not file.exists()):
                continue                   # not written yet, or (old stores) an all-fill coordinate chunk
            n_chunks += 1
            why = _store.file_problem(file) or _store.decode_problem(arr, idx, file)
            if why is not None:
                damaged.append(Damage(name, tuple(int(i) for i in idx), str(file), why))
        if (name == "member" or name in attrs.get("member_coords", [])) and len(damaged) == before:
            values[name] = arr[...]         # its chunks are sound (or, in old stores, all-fill and absent)
    for name, why in member_problems(attrs, values, st):
        first = name.split(" / ")[0]
        damaged.append(Damage(name, None, str(path / first), why))
    report = VerifyReport(str(path), time.strftime("%Y-%m-%dT%H:%M:%S%z"), tuple(damaged), len(names), n_chunks,
                          min(expected.done or [0]), st.n_steps, _store.checksummed(attrs),
                          time.monotonic() - start)
    if record:
        write_record(path, report)
    return report


# -- the record of the last verification ------------------------------------------------------------


def scan(path: Path) -> dict:
    """relative path -> (bytes, mtime_ns) of every file of the store but the verification record."""
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            if f.startswith(RECORD):
                continue
            full = os.path.join(root, f)
            try:
                s = os.stat(full)
            except OSError:
                continue
            out[os.path.relpath(full, path)] = (s.st_size, s.st_mtime_ns)
    return out


def fingerprint(files: dict) -> dict:
    """What changes when any file of the store is added, removed or rewritten."""
    return {"files": len(files), "bytes": sum(s for s, _ in files.values()),
            "mtime_ns": max((m for _, m in files.values()), default=0)}


def write_record(path: Path, report: VerifyReport) -> bool:
    """Save ``report`` as the store's last verification (atomically); False if the folder is read-only."""
    data = report.to_dict()
    data["damaged"] = data["damaged"][:RECORD_LIST]
    data["fingerprint"] = fingerprint(scan(path))
    data["jaxfne_version"] = __version__
    tmp = path / f"{RECORD}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path / RECORD)
        return True
    except OSError:
        tmp.unlink(missing_ok=True)
        return False


def last_verification(path: Path, files: dict | None = None) -> dict:
    """The state of the last verification: {"state": "not verified" | "intact" | "damaged" | "outdated", ...}.

    "outdated": a file of the store was added, removed or rewritten since (``files``: ``scan(path)``).
    """
    try:
        with open(path / RECORD, encoding="utf-8") as fh:
            rec = json.load(fh)
    except FileNotFoundError:
        return {"state": "not verified"}
    except (OSError, ValueError) as exc:
        return {"state": "not verified", "note": f"unreadable {RECORD} ({exc})"}
    files = scan(path) if files is None else files
    out = {"state": "intact" if rec.get("intact") else "damaged", "verified_at": rec.get("verified_at"),
           "n_damaged": rec.get("n_damaged", 0), "checksums": rec.get("checksums")}
    if rec.get("fingerprint") != fingerprint(files):
        out["previous_state"], out["state"] = out["state"], "outdated"
    return out


def missing_files(st: _store.Store, files: dict) -> tuple[int, list]:
    """(how many chunk files the store must hold, a Damage for each that ``files`` (``scan``) lacks or
    has empty): a directory listing, no chunk is read."""
    expected, out, n = Expected(st), [], 0
    for name in array_names(st.path):
        try:
            arr = st.array(name)
        except Exception:  # noqa: BLE001 - reported by verify_store
            continue
        for idx in np.ndindex(*_store.chunk_grid(arr)):
            if expected(name, arr, idx):
                n += 1
                file = _store.chunk_file(st.path, name, arr, idx)
                size = files.get(os.path.relpath(file, st.path), (None,))[0]
                if size is None or size == 0:
                    out.append(Damage(name, tuple(int(i) for i in idx), str(file),
                                      "missing: the file does not exist" if size is None else "empty: the file has 0 bytes"))
    return n, out
