"""Stores written before the layered restructuring (commit 9836446) open, resume and match today's runs.

tests/data/stores_before_layers/ holds two stores written by that commit with
``make.py`` beside them (XLA engine, float32): a complete one, and one whose
writer failed at the third chunk as a killed run would leave it.
"""

import shutil
from pathlib import Path

import numpy as np
import xarray as xr

import jaxfne as jtfne

DATA = Path(__file__).parent / "data" / "stores_before_layers"


def config():
    return (jtfne.Configuration().runtime(seed=3, duration_ms=40.0, dt_ms=0.1)
            .column(name="col", layers=["L2/3", "L4"], n=40).cell_types({"E": 0.8, "I": 0.2})
            .connectivity(p=0.5).probes(["SPK", "Vm", "LFP-proxy"], contacts=4, neurons=2, every_ms=0.5)
            .ensemble(seeds=[1, 2], sweep={"drive.current.E": [3.0, 5.0]}))


def test_an_old_complete_store_opens_and_equals_todays_run():
    old = jtfne.open_signals(DATA / "complete.zarr")
    today = jtfne.simulate(jtfne.construct(config()), chunk_ms=10.0, engine="xla")
    xr.testing.assert_identical(old.dataset.load(), today.dataset)
    assert int(np.asarray(old["SPK"]).sum()) > 20


def test_an_old_unfinished_store_resumes_bit_identical(tmp_path):
    path = tmp_path / "unfinished.zarr"
    shutil.copytree(DATA / "unfinished.zarr", path)
    assert jtfne.open_signals(path, allow_incomplete=True)["SPK"].sizes["time"] == 200   # two chunks were done
    resumed = jtfne.simulate(jtfne.construct(config()), store=path, chunk_ms=10.0, engine="xla")
    old = jtfne.open_signals(DATA / "complete.zarr")
    xr.testing.assert_identical(resumed.dataset.load(), old.dataset.load())
