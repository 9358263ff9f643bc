"""Stores of older schemas open, resume in their own layout and match today's runs.

tests/data/stores_before_layers/ holds two schema-1 stores (the dense SPK raster) written by commit
9836446, tests/data/stores_schema_2/ two schema-2 stores (events with absolute steps in
``spike_events/step``) written by commit 1ea8003, each with the ``make.py`` that wrote them (XLA
engine, float32, the same run): a complete one, and one whose writer failed at the third chunk as a
killed run would leave it.
"""

import shutil
from pathlib import Path

import numpy as np
import xarray as xr

import jaxfne as jtfne

DATA = Path(__file__).parent / "data" / "stores_before_layers"
SCHEMA_2 = Path(__file__).parent / "data" / "stores_schema_2"


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


def test_a_schema_2_store_opens_and_gives_todays_events():
    old = jtfne.open_signals(SCHEMA_2 / "complete.zarr")
    today = jtfne.simulate(jtfne.construct(config()), chunk_ms=10.0, engine="xla")
    xr.testing.assert_identical(old.dataset.load(), today.dataset)      # SPK rebuilt from absolute steps
    for m in range(4):
        got, want = old.spike_events(member=m), today.spike_events(member=m)
        np.testing.assert_array_equal(got.steps, want.steps)
        np.testing.assert_array_equal(got.neurons, want.neurons)
    assert int(np.asarray(old["SPK"]).sum()) > 20


def test_a_schema_2_unfinished_store_resumes_in_its_own_layout(tmp_path):
    import zarr

    path = tmp_path / "unfinished.zarr"
    shutil.copytree(SCHEMA_2 / "unfinished.zarr", path)
    assert jtfne.open_signals(path, allow_incomplete=True)["SPK"].sizes["time"] == 200
    resumed = jtfne.simulate(jtfne.construct(config()), store=path, chunk_ms=10.0, engine="xla")
    xr.testing.assert_identical(resumed.dataset.load(), jtfne.open_signals(SCHEMA_2 / "complete.zarr").dataset.load())
    root = zarr.open_group(path, mode="r")
    assert root.attrs["jaxfne_schema_version"] == 2 and "step_delta" not in root["spike_events"]
    ref = zarr.open_group(SCHEMA_2 / "complete.zarr", mode="r")
    for k in range(4):                     # the chunks written by the resumed run: absolute steps, as before
        total = int(ref["spike_events/count"][:, k].sum())
        np.testing.assert_array_equal(root["spike_events/step"][0, k, :total], ref["spike_events/step"][0, k, :total])
    assert jtfne.verify_store(path).intact
