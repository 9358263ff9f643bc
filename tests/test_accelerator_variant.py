"""The XLA step as compiled for accelerators, checked on the CPU.

On GPUs the driver compiles the XLA step with the recurrent input summed in a
fixed index order without a while loop (``recurrent_input_ordered``) and packs
spike rasters to bits on the device (``_simulate.xla_variant``). Both must give
the very bits of the CPU form: same spikes, same Vm, same state, whatever the
ensemble, delays or chunking. These tests force the accelerator form on the
CPU and compare.
"""

import numpy as np
import pytest

import jaxfne as jtfne
from jaxfne.engine import _driver as _simulate
from jaxfne.engine._step import ORDERED_INPUT_MAX_N

from conftest import seed_page_configuration


def _one_layer(seeds, shared=False):
    return (jtfne.Configuration().runtime(duration_ms=200.0, dt_ms=0.1).column(n=100)
            .cell_types({"E": 0.8, "I": 0.2}).connectivity(shared=shared)
            .set_emitter(family="izhikevich", preset="cortical_eig").probes(["SPK", "Vm"])
            .ensemble(seeds=seeds))


def _laminar_delays(seeds):
    return (jtfne.Configuration().runtime(duration_ms=200.0, dt_ms=0.1)
            .column(layers=["L2/3", "L4", "L5"], n=150)
            .connectivity(pathways={"L4.E->L2/3.E": {"strength": 15.0, "delay_ms": 2.0},
                                    "L5.E->L4.I": {"p": 0.3, "strength": 5.0, "delay_ms": 1.0}})
            .probes(["SPK", "Vm", "source"]).ensemble(seeds=seeds))


def _force(monkeypatch, ordered_input: bool, pack_spikes: bool) -> list:
    """Make the driver compile the XLA step in the given form; returns the forms it then compiled
    (so a test also fails when the driver stops passing the form on, not only when the form is wrong)."""
    wanted = {"ordered_input": ordered_input, "pack_spikes": pack_spikes}
    monkeypatch.setattr(_simulate, "xla_variant", lambda layout, mesh, members_per_device=1: dict(wanted))
    compiled, original = [], _simulate.chunk_function

    def recording(*args, **kwargs):
        compiled.append({k: kwargs.get(k, False) for k in wanted})
        return original(*args, **kwargs)

    monkeypatch.setattr(_simulate, "chunk_function", recording)
    return compiled


@pytest.mark.parametrize("make", [lambda: _one_layer([1, 2, 3, 4]), lambda: _one_layer([5, 6, 7], shared=True),
                                  lambda: _laminar_delays([3, 4])], ids=["one-layer", "shared", "laminar-delays"])
def test_accelerator_form_gives_the_same_bits(monkeypatch, make):
    model = jtfne.construct(make())
    cpu = jtfne.simulate(model, engine="xla", chunk_ms=70.0).dataset
    compiled = _force(monkeypatch, True, True)
    accel = jtfne.simulate(model, engine="xla", chunk_ms=70.0).dataset
    assert compiled == [{"ordered_input": True, "pack_spikes": True}]
    assert int(cpu["SPK"].values.sum()) > 50                      # the comparison covers real spiking
    for name in cpu.data_vars:
        np.testing.assert_array_equal(accel[name].values, cpu[name].values, err_msg=name)


def test_ordered_input_alone_and_packing_alone(monkeypatch):
    """Each half of the variant on its own (a broken half cannot hide behind the other)."""
    model = jtfne.construct(seed_page_configuration(42).runtime(duration_ms=300.0))
    ref = jtfne.simulate(model, engine="xla").dataset
    for ordered, packed in ((True, False), (False, True)):
        compiled = _force(monkeypatch, ordered, packed)
        out = jtfne.simulate(model, engine="xla").dataset
        assert compiled == [{"ordered_input": ordered, "pack_spikes": packed}]
        np.testing.assert_array_equal(out["SPK"].values, ref["SPK"].values)
        np.testing.assert_array_equal(out["Vm"].values, ref["Vm"].values)


def test_packing_keeps_networks_whose_size_is_not_a_multiple_of_8(monkeypatch):
    cfg = (jtfne.Configuration().runtime(duration_ms=100.0).column(n=37).cell_types({"E": 0.8, "I": 0.2})
           .connectivity().drive(current={"E": 8.0, "I": 8.0}).probes(["SPK"]).ensemble(seeds=[1, 2]))
    model = jtfne.construct(cfg)
    ref = jtfne.simulate(model, engine="xla")["SPK"].values
    compiled = _force(monkeypatch, False, True)
    out = jtfne.simulate(model, engine="xla")["SPK"].values
    assert compiled == [{"ordered_input": False, "pack_spikes": True}]
    assert out.shape == ref.shape == (2, 1000, 37) and out.dtype == bool
    assert ref[:, :, 32:].any()                                   # the last, partial byte carries spikes
    np.testing.assert_array_equal(out, ref)


def test_accelerators_get_the_ordered_form_only_for_small_networks():
    class FakeMesh:
        class devices:
            flat = [type("D", (), {"platform": "gpu"})()]
    small = jtfne.construct(_one_layer([1])).layout
    big = jtfne.construct(jtfne.Configuration().column(n=ORDERED_INPUT_MAX_N + 1).connectivity(p=0.05)).layout
    assert _simulate.xla_variant(small, FakeMesh, 1024) == {"ordered_input": True, "pack_spikes": True}
    # large batches: the event loop (one row per spike instead of N rows per step)
    assert _simulate.xla_variant(small, FakeMesh, 16384) == {"ordered_input": False, "pack_spikes": True}
    assert _simulate.xla_variant(big, FakeMesh, 1) == {"ordered_input": False, "pack_spikes": True}
    cpu = _simulate.member_mesh(jtfne.engine.default_devices(1))
    assert _simulate.xla_variant(small, cpu, 16) == {"ordered_input": False, "pack_spikes": False}


@pytest.mark.parametrize("members", [1, 3, 700])
def test_unpacking_in_member_blocks(members):
    rng = np.random.default_rng(members)
    spikes = rng.random((members, 2000, 21)) < 0.3      # 700 members: 8 blocks of ~4 MiB
    packed = np.packbits(spikes, axis=-1)
    out = _simulate.unpack_spikes(packed, 21)
    assert out.dtype == bool and out.shape == spikes.shape
    np.testing.assert_array_equal(out, spikes)


def test_streamed_store_of_the_accelerator_form_equals_the_cpu_form(monkeypatch, tmp_path):
    model = jtfne.construct(_one_layer([1, 2, 3]))
    ref = jtfne.simulate(model, engine="xla").dataset
    compiled = _force(monkeypatch, True, True)
    stored = jtfne.simulate(model, engine="xla", store=tmp_path / "run.zarr", chunk_ms=60.0).dataset
    assert compiled == [{"ordered_input": True, "pack_spikes": True}]
    assert stored["SPK"].dtype == bool
    for name in ("SPK", "Vm"):
        np.testing.assert_array_equal(stored[name].values, ref[name].values, err_msg=name)
