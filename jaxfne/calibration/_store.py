"""A calibration's Zarr store: the finished rounds and what is needed to resume (no pickles).

Layout (a Zarr v3 group)::

    attrs   jaxfne_calibration (schema), problem (the calibration, JSON), rounds_done (progress marker)
    unit      (round, candidate, param)           the optimizer's points in the unit cube
    params    (round, candidate, param)           the parameter values simulated
    readouts  (round, candidate, seed, target)    every target's statistic per network
    loss      (round, candidate)
    wall_s    (round,)                            wall time of the round (simulation + readouts)

Arrays are allocated for every round when the store is made (built beside its
path and renamed into place: a store exists whole or not), one chunk per
round, so a round writes only its own chunk files; ``rounds_done`` is written
last (zarr replaces each file atomically). A calibration killed at any point
finds every round below ``rounds_done`` complete and redoes the rest. The
optimizer's state is not stored: it is rebuilt from ``search_seed`` by
replaying the stored rounds (``_calibrate.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import zarr

from .._errors import StoreError

SCHEMA = "jaxfne-calibration/1"

ARRAYS = {"unit": ("round", "candidate", "param"), "params": ("round", "candidate", "param"),
          "readouts": ("round", "candidate", "seed", "target"), "loss": ("round", "candidate"),
          "wall_s": ("round",)}


def _canonical(d) -> str:
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


def _first_difference(a, b, where="") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if _canonical(a.get(k)) != _canonical(b.get(k)):
                return _first_difference(a.get(k), b.get(k), f"{where}.{k}" if where else k)
    return f"{where or 'problem'}: stored {_canonical(a)[:200]}, given {_canonical(b)[:200]}"


class CalibrationStore:
    """Create or reopen the store of ``problem`` at ``path``; ``rounds_done`` says where to resume."""

    def __init__(self, path, problem_dict: dict, shape: dict):
        self.path = Path(path)
        if self.path.exists():
            self._open_existing(problem_dict)
        else:
            self._create(problem_dict, shape)
        self.group = zarr.open_group(str(self.path), mode="r+")

    def _open_existing(self, problem_dict):
        attrs = read_attrs(self.path)
        if attrs is None:
            raise StoreError(f"calibrate: store={str(self.path)!r} exists and is not a calibration store; "
                             "give a new path (nothing was changed)")
        if _canonical(attrs["problem"]) != _canonical(problem_dict):
            raise StoreError(f"calibrate: store={str(self.path)!r} holds a different calibration "
                             f"({_first_difference(attrs['problem'], problem_dict)}); give a new path to start "
                             "this one, or the same arguments to resume that one")

    def _create(self, problem_dict, shape):
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.partial")
        try:
            g = zarr.open_group(str(tmp), mode="w", zarr_format=3)
            for name, dims in ARRAYS.items():
                dt = np.float64
                g.create_array(name, shape=tuple(shape[d] for d in dims), dtype=dt, fill_value=np.nan,
                               chunks=(1, *(shape[d] for d in dims[1:])), dimension_names=dims,
                               compressors=None)
            g.attrs.update({"jaxfne_calibration": SCHEMA, "problem": problem_dict, "rounds_done": 0})
            os.rename(tmp, self.path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @property
    def rounds_done(self) -> int:
        return int(read_attrs(self.path)["rounds_done"])

    def read(self, rounds: int) -> dict:
        """The first ``rounds`` finished rounds, as NumPy arrays."""
        return {name: np.asarray(self.group[name][:rounds]) for name in ARRAYS}

    def write_round(self, r: int, arrays: dict) -> None:
        for name, value in arrays.items():
            self.group[name][r] = value
        self.group.attrs["rounds_done"] = r + 1       # last: the round is now complete


def read_attrs(path) -> dict | None:
    """The group attributes of a calibration store, or None if ``path`` is not one."""
    path = Path(path)
    try:
        meta = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    attrs = meta.get("attributes", {})
    return attrs if attrs.get("jaxfne_calibration") == SCHEMA else None
