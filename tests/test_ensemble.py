"""Ensembles: expansion, per-member reproducibility across layouts, devices, compilation."""

import os
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import jaxfne as jtfne
import jaxfne.cli
from jaxfne.engine import chunk_function
from jaxfne.model._size import event_capacity

BASE = (jtfne.Configuration().runtime(duration_ms=150.0).cell_types({"E": 0.75, "I": 0.25})
        .probes(["SPK", "Vm", "LFP-proxy"]))


def member_config(signals_or_coords, i, base=BASE):
    """The single-network configuration of member i, built from its coordinates."""
    c = signals_or_coords
    cfg = base.runtime(seed=int(c["seed"][i]))
    if "cell_types.E" in c:
        e = float(c["cell_types.E"][i])
        cfg = cfg.cell_types({"E": e, "I": 1.0 - e})
    if "drive.current.E" in c:
        cfg = cfg.drive(current={"E": float(c["drive.current.E"][i])})
    if "emitter.preset.E" in c:
        cfg = cfg.set_emitter(preset={"E": str(c["emitter.preset.E"][i])})
    return cfg


def assert_member_equal(signals, i, other, j=None):
    for name in signals:
        a = np.asarray(signals[name])[i]
        b = np.asarray(other[name]) if j is None else np.asarray(other[name])[j]
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_grid_and_zip_expansion():
    ens = BASE.ensemble(seeds=[5, 6], sweep={"cell_types.E": [0.7, 0.8], "drive.current.E": [3.0, 4.0, 5.0]})
    m = jtfne.construct(ens)
    assert m.n_members == 12
    c = m.member_coords
    assert c["seed"].tolist() == [5, 6] * 6
    assert c["cell_types.E"].tolist() == [0.7] * 6 + [0.8] * 6
    assert c["drive.current.E"].tolist() == [3.0, 3.0, 4.0, 4.0, 5.0, 5.0] * 2
    # E fraction really changes the cell-type assignment of each member
    n_exc = (m.neuron_coords["cell_type"] == "E").sum(axis=1)
    assert n_exc.tolist() == [70] * 6 + [80] * 6
    z = jtfne.construct(BASE.ensemble(seeds=[1], sweep={"cell_types.E": [0.7, 0.8], "drive.current.E": [3.0, 4.0]},
                                      mode="zip"))
    assert z.member_coords["drive.current.E"].tolist() == [3.0, 4.0]
    assert z.member_coords["cell_types.E"].tolist() == [0.7, 0.8]


@pytest.mark.parametrize("sweep, match", [
    ({"drive.curent.E": [1.0]}, r"sweep path 'drive.curent.E' is unknown; valid paths are .*drive.current.E"),
    ({"column.n": [50, 100]}, r"'column.n' cannot be swept: it changes the number of neurons"),
    ({"runtime.dt_ms": [0.1, 0.05]}, r"'runtime.dt_ms' cannot be swept: it changes the number of time steps"),
    ({"cell_types.E": [1.5]}, r"sweep\['cell_types.E'\] value 1.5 is invalid"),
    ({"emitter.preset": ["tonic", "chattering"]}, r"'tonic' is not a known preset"),
])
def test_bad_sweeps_are_refused(sweep, match):
    with pytest.raises(jtfne.ConfigurationError, match=match):
        BASE.ensemble(seeds=[1], sweep=sweep)


def test_bad_ensemble_arguments():
    with pytest.raises(jtfne.ConfigurationError, match=r"seeds must not repeat"):
        BASE.ensemble(seeds=[1, 1])
    with pytest.raises(jtfne.ConfigurationError, match=r"mode='zip' needs the same number of values"):
        BASE.ensemble(seeds=[1], sweep={"drive.current.E": [1.0, 2.0], "drive.noise.E": [1.0]}, mode="zip")
    with pytest.raises(jtfne.ConfigurationError, match=r"shared=True"):
        BASE.connectivity(shared=True).ensemble(seeds=[1], sweep={"connectivity.strength.E->I": [10.0, 20.0]})


def test_member_independent_of_ensemble_size_order_and_devices():
    sweep = {"cell_types.E": [0.7, 0.8], "drive.current.E": [3.0, 5.0]}
    big = BASE.ensemble(seeds=list(range(16)), sweep=sweep)          # 64 members
    small = BASE.ensemble(seeds=[3, 9], sweep={"cell_types.E": [0.8, 0.7], "drive.current.E": [5.0, 3.0]})
    s64 = jtfne.simulate(jtfne.construct(big))
    s8_one_device = jtfne.simulate(jtfne.construct(small), devices=jax.devices()[:1])
    c64, c8 = s64["SPK"].coords, s8_one_device["SPK"].coords
    for j in range(8):   # reversed sweep order, other seeds: find each member in the big run
        i = int(np.flatnonzero((c64["seed"].values == c8["seed"].values[j])
                               & (c64["cell_types.E"].values == c8["cell_types.E"].values[j])
                               & (c64["drive.current.E"].values == c8["drive.current.E"].values[j]))[0])
        assert_member_equal(s64, i, s8_one_device, j)
    # a member alone, as a plain single network, on the default (4-device) layout
    alone = jtfne.simulate(jtfne.construct(member_config(c64, 37)))
    assert_member_equal(s64, 37, alone)
    assert len(jax.devices()) == 4


def test_seven_members_padded_over_four_devices():
    ens = BASE.ensemble(seeds=list(range(7)))
    s4 = jtfne.simulate(jtfne.construct(ens))
    s1 = jtfne.simulate(jtfne.construct(ens), devices=jax.devices()[:1])
    assert s4["SPK"].sizes["member"] == 7
    for name in s4:
        np.testing.assert_array_equal(np.asarray(s4[name]), np.asarray(s1[name]))
    assert np.asarray(s4["SPK"]).any(axis=(1, 2)).all()  # every member is a real, active network


def test_selection_and_readouts_per_member():
    ens = BASE.ensemble(seeds=[1, 2], sweep={"drive.current.E": [2.0, 6.0]})
    model = jtfne.construct(ens)
    sig = jtfne.simulate(model)
    one = sig.sel(seed=2)
    assert one["SPK"].sizes["member"] == 2
    r = model.compute_readout(sig, [jtfne.readout_spec("E", "spike_rate_hz", cell_type="E")])["E"]
    assert r.value.shape == (4,)
    by_drive = r.data.groupby("drive.current.E").mean()
    assert by_drive.sel({"drive.current.E": 6.0}) > by_drive.sel({"drive.current.E": 2.0})
    spk = np.asarray(sig["SPK"])
    exc = np.asarray(sig["SPK"]["cell_type"]) == "E"
    manual = [spk[m][:, exc[m]].sum() / exc[m].sum() / 0.15 for m in range(4)]
    np.testing.assert_allclose(r.value, manual)


def test_no_recompilation_for_numeric_sweeps():
    chunk_function.cache_clear()
    for seeds, current in (([1, 2, 3], 3.0), ([4, 5, 6], 5.0), ([7, 8, 9], 1.0)):
        ens = BASE.ensemble(seeds=seeds, sweep={"drive.current.E": [current], "emitter.preset.E":
                                                ["cortical_eig"] if current != 1.0 else ["chattering"]})
        jtfne.simulate(jtfne.construct(ens))
    info = chunk_function.cache_info()
    assert info.misses == 1 and info.currsize == 1
    devices = jtfne.engine.default_devices(3)
    layout = jtfne.construct(BASE.ensemble(seeds=[1, 2, 3])).layout
    engine = jtfne.engine.resolve_engine("auto", devices)
    # the in-memory run keeps the spikes as events too: the native kernel writes them (run_chunks' "auto")
    events = {"event_capacity": event_capacity(layout, 1500)} if engine == "native" else {}
    compiled = chunk_function(layout, 1500, jtfne.engine.member_mesh(devices), engine, **events)
    assert chunk_function.cache_info().currsize == 1 and compiled._cache_size() == 1


def test_shared_connectivity_uses_one_matrix():
    ens = BASE.connectivity(shared=True).ensemble(seeds=[1, 2, 3], sweep={"drive.current.E": [3.0, 5.0]})
    model = jtfne.construct(ens)
    assert model.params.w.ndim == 2
    sig = jtfne.simulate(model)
    per_member = jtfne.construct(BASE.ensemble(seeds=[1, 2, 3], sweep={"drive.current.E": [3.0, 5.0]}))
    w = np.asarray(per_member.params.w)
    assert not np.array_equal(w[0], w[1])  # default: each member draws its own weights
    # shared: the weights drawn from the configuration's runtime seed (0 here), whatever the member seeds
    single = jtfne.construct(BASE.runtime(seed=0))
    np.testing.assert_array_equal(np.asarray(model.params.w), np.asarray(single.params.w)[0])
    assert np.asarray(sig["SPK"]).any()


WORKER = textwrap.dedent("""
    import os, sys
    pid, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    import jax
    jax.config.update("jax_platforms", "cpu")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=pid)
    import numpy as np
    import jaxfne as jtfne
    cfg = jtfne.Configuration().runtime(duration_ms=100.0).probes(["SPK", "Vm"]).ensemble(seeds=list(range(7)))
    s = jtfne.simulate(jtfne.construct(cfg))
    np.savez(out, spk=np.asarray(s["SPK"]), vm=np.asarray(s["Vm"]), member=s["SPK"]["member"].values,
             seed=s["SPK"]["seed"].values, devices=len(jax.devices()), processes=jax.process_count())
    # both processes stream their own members into one store
    jtfne.simulate(jtfne.construct(cfg), store=sys.argv[4], chunk_ms=25.0)
""")


def test_two_processes_with_jax_distributed(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    store = tmp_path / "shared.zarr"
    procs = [subprocess.Popen([sys.executable, str(script), str(i), port, str(tmp_path / f"p{i}.npz"), str(store)],
                              env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for i in range(2)]
    logs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), logs
    parts = [np.load(tmp_path / f"p{i}.npz") for i in range(2)]
    assert all(int(p["processes"]) == 2 and int(p["devices"]) == 4 for p in parts)
    members = np.concatenate([p["member"] for p in parts])
    assert sorted(members.tolist()) == list(range(7))       # every member simulated exactly once
    assert len(parts[0]["member"]) > 0 and len(parts[1]["member"]) > 0
    cfg = jtfne.Configuration().runtime(duration_ms=100.0).probes(["SPK", "Vm"]).ensemble(seeds=list(range(7)))
    ref = jtfne.simulate(jtfne.construct(cfg))
    for p in parts:
        idx = p["member"]
        np.testing.assert_array_equal(p["seed"], np.arange(7)[idx])
        np.testing.assert_array_equal(p["spk"], np.asarray(ref["SPK"])[idx])
        np.testing.assert_array_equal(p["vm"], np.asarray(ref["Vm"])[idx])
    # the store both processes wrote equals a single-process run, member by member
    import xarray as xr
    got = xr.open_zarr(store)
    assert jtfne.cli.store_summary(store)["complete"]
    np.testing.assert_array_equal(jtfne.open_signals(store)["SPK"].values, np.asarray(ref["SPK"]))  # events
    np.testing.assert_array_equal(got["Vm"].values, np.asarray(ref["Vm"]))
    np.testing.assert_array_equal(got["seed"].values, np.arange(7))
