"""Every registered probe, through every layer: memory, a store, open_signals, the manifest, the exports and
the figures. Iterates ``jaxfne._probes.REGISTRY``: a probe added there is tested here without a new line."""

import matplotlib
import numpy as np
import pytest
import xarray as xr

import jaxfne as jtfne
from conftest import AUTO_ENGINE
from jaxfne._probes import REGISTRY

PROBES = sorted(REGISTRY)


def config(probe, sampled=False):
    names = ["SPK"] if probe == "SPK" else ["SPK", probe]
    cfg = (jtfne.Configuration().runtime(seed=4, duration_ms=30.0, dt_ms=0.1)
           .column(name="col", layers=["L2/3", "L4"], n=40).cell_types({"E": 0.8, "I": 0.2})
           .drive(current={"E": 6.0, "I": 3.0}))
    if sampled:
        return cfg.probes(names, contacts=5, neurons=[0, 3, 30, 39], every_ms=0.5)
    return cfg.probes(names, contacts=5)


@pytest.fixture(scope="module", params=[(p, s) for p in PROBES for s in (False, True)],
                ids=[f"{p}{'-sampled' if s else ''}" for p in PROBES for s in (False, True)])
def runs(request, tmp_path_factory):
    probe, sampled = request.param
    model = jtfne.construct(config(probe, sampled))
    memory = jtfne.simulate(model, chunk_ms=10.0)
    path = tmp_path_factory.mktemp("reg") / "run.zarr"
    stored = jtfne.simulate(model, store=path, chunk_ms=10.0)
    return probe, sampled, model, memory, stored, path


def test_the_definition_shapes_every_layer(runs):
    probe, sampled, model, memory, stored, path = runs
    p = REGISTRY[probe]
    da = memory[probe]
    assert da.attrs["units"] == p.units and da.attrs["description"] == p.description
    geo = model.layout.geometry(probe)
    assert da.dims == (geo["time_dim"], geo["last_dim"])
    assert da.shape == (geo["n_time"], geo["n_last"])
    assert da.dtype == (bool if p.dtype == "bool" else np.float32)
    if sampled and p.sampled:
        assert geo["stride"] == 5 and (p.is_field or list(da["neuron_sampled"].values) == [0, 3, 30, 39])
    assert np.isfinite(np.asarray(da, dtype=float)).all()
    assert np.asarray(da, dtype=float).std() > 0                     # a real recording, not a placeholder


def test_store_and_open_signals_equal_memory(runs):
    probe, sampled, model, memory, stored, path = runs
    reopened = jtfne.open_signals(path)
    xr.testing.assert_identical(stored.dataset.load(), memory.dataset)
    xr.testing.assert_identical(reopened[probe].load(), memory[probe])


def test_manifest_describes_the_probe_from_its_definition(runs):
    probe, _, model, memory, _, _ = runs
    man = model.manifest(memory)
    assert man["probes"][probe] == {"units": REGISTRY[probe].units, "description": REGISTRY[probe].description}
    assert man["engine"] == AUTO_ENGINE if "native" in REGISTRY[probe].engines else man["engine"] == "xla"


def test_exports_carry_the_probe(runs, tmp_path):
    pytest.importorskip("pynwb")
    pytest.importorskip("neo")
    probe, sampled, model, memory, stored, path = runs
    block = jtfne.to_neo(stored)
    nwb = jtfne.to_nwb(memory, path=tmp_path / "run.nwb")
    p = REGISTRY[probe]
    if p.dtype == "bool":
        n_spikes = int(np.asarray(memory["SPK"]).sum())
        assert sum(len(st) for st in block.segments[0].spiketrains) == n_spikes
        return
    names = [a.name for a in block.segments[0].analogsignals]
    assert probe in names, f"to_neo dropped {probe!r}: {names}"
    sig = block.segments[0].analogsignals[names.index(probe)]
    np.testing.assert_allclose(np.asarray(sig.magnitude), np.asarray(memory[probe]), rtol=1e-6, atol=1e-6)
    from pynwb import NWBHDF5IO
    with NWBHDF5IO(str(nwb), "r") as io:
        f = io.read()
        assert probe in f.acquisition or probe in f.processing.get("ecephys_proxy", {}).data_interfaces


def test_a_figure_shows_the_probe(runs):
    probe, _, _, memory, stored, _ = runs
    for sig in (memory, stored):
        fig = jtfne.viz.probe_figure(sig, probe)
        assert isinstance(fig, matplotlib.figure.Figure)
        text = " ".join([ax.get_title(loc=loc) for ax in fig.axes for loc in ("left", "center", "right")]
                        + [t.get_text() for ax in fig.axes for t in (ax.xaxis.label, ax.yaxis.label)])
        text += " " + (fig._suptitle.get_text() if fig._suptitle is not None else "")
        p = REGISTRY[probe]
        assert probe in text or p.title in text, text
        assert p.dtype == "bool" or p.units.split(" (")[0] in text, text       # the axes carry its units
