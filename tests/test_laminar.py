"""Laminar columns: layers, per-layer fractions, pathways with delays, depth-resolved proxies."""

import numpy as np
import pytest

import jaxfne as jtfne
from jaxfne._fields import R0_UM

LAYERS = ["L2/3", "L4", "L5"]


def laminar(**kw):
    return (jtfne.Configuration().runtime(duration_ms=kw.pop("duration_ms", 200.0), seed=kw.pop("seed", 3))
            .column(name="V1", layers=LAYERS, n=kw.pop("n", {"L2/3": 60, "L4": 40, "L5": 50}))
            .cell_types({"E": 0.8, "I": 0.2}).probes(["SPK", "Vm", "LFP-proxy", "CSD-proxy"], contacts=12))


def test_layers_sizes_types_and_depths():
    cfg = laminar().cell_types({"L4": {"E": 0.5, "I": 0.5}})
    m = jtfne.construct(cfg)
    layer = m.neuron_coords["layer"]
    assert [int((layer == lay).sum()) for lay in LAYERS] == [60, 40, 50]
    ct = m.neuron_coords["cell_type"][0]
    assert (ct[layer == "L4"] == "E").sum() == 20 and (ct[layer == "L2/3"] == "E").sum() == 48
    depth = m.neuron_coords["depth_um"][0]
    for lay in LAYERS:
        lo, hi = jtfne.Configuration().column_spec.depth_range(lay)
        assert np.all((depth[layer == lay] >= lo) & (depth[layer == lay] <= hi))
    total = jtfne.construct(jtfne.Configuration().column(layers=LAYERS, n=300))
    assert total.layout.n_per_layer == (112, 94, 94)   # 0.30 : 0.25 : 0.25, largest remainder
    moved = jtfne.construct(laminar().column(depths_um={"L4": (500.0, 520.0)}))
    d4 = moved.neuron_coords["depth_um"][0][moved.neuron_coords["layer"] == "L4"]
    assert d4.min() >= 500.0 and d4.max() <= 520.0


def test_pathway_weights_follow_the_table():
    cfg = laminar().connectivity(p=1.0, pathways={"L4.I->L5.E": {"p": 1.0, "strength": 7.0}})
    m = jtfne.construct(cfg)
    w = np.asarray(m.params.w)[0]                # (C, N + 1, N) [class, pre, post]
    w = w.sum(axis=0)[:-1]                        # all delay classes, pre x post
    layer, ct = m.neuron_coords["layer"], m.neuron_coords["cell_type"][0]
    group = lambda lay, t: np.flatnonzero((layer == lay) & (ct == t))  # noqa: E731
    # every post cell receives, summed over its inputs from a group, about the pathway strength
    l4i, l5e = group("L4", "I"), group("L5", "E")
    assert np.mean(w[np.ix_(l4i, l5e)].sum(axis=0)) == pytest.approx(7.0, rel=0.25)
    # default feed-forward L4.E->L2/3.E (strength 10, p 0.5) exists, its reverse does not
    l4e, l23e = group("L4", "E"), group("L2/3", "E")
    assert np.mean(w[np.ix_(l4e, l23e)].sum(axis=0)) == pytest.approx(10.0, rel=0.3)
    assert np.all(w[np.ix_(l23e, l4e)] == 0)
    assert np.all(w[np.ix_(group("L2/3", "I"), group("L5", "I"))] == 0)


def test_unknown_layer_or_type_in_a_pathway():
    with pytest.raises(jtfne.ConfigurationError, match=r"layer 'L7' is unknown"):
        laminar().connectivity(pathways={"L7.E->L4.E": {"strength": 1.0}})
    with pytest.raises(jtfne.ConfigurationError, match=r"cell type 'X' is unknown"):
        laminar().connectivity(pathways={"L4.X->L2/3.E": {"strength": 1.0}})
    with pytest.raises(jtfne.ConfigurationError, match=r"field 'weight' is unknown"):
        laminar().connectivity(pathways={"L4.E->L2/3.E": {"weight": 1.0}})
    cfg = jtfne.Configuration().connectivity(pathways={"L6.E->L2/3.E": {"strength": 1.0}})
    with pytest.raises(jtfne.ConfigurationError, match=r"names layer 'L6', which is not in the column"):
        jtfne.construct(cfg)


def test_delay_shifts_the_arrival_of_input():
    """One L4 cell driven to spike; an L2/3 cell sees the input exactly delay_ms later."""
    def run(delay_ms):
        cfg = (jtfne.Configuration().runtime(duration_ms=40.0, dtype="float64")
               .column(layers=["L2/3", "L4"], n={"L2/3": 2, "L4": 2}).cell_types({"E": 1.0, "I": 0.0})
               .connectivity(strength={"E->E": 0.0}, pathways={"L4.E->L2/3.E": {"p": 1.0, "strength": 20.0,
                                                                                   "delay_ms": delay_ms}})
               .drive(current=0.0, noise=0.0).probes(["SPK", "source"]))
        cfg = cfg.drive(current=0.0)
        m = jtfne.construct(cfg)
        # drive only the L4 cells: patch the drive array of this model (a test-only shortcut)
        i_mean = np.asarray(m.params.i_mean).copy()
        i_mean[0, 2:] = 20.0
        import dataclasses
        m = dataclasses.replace(m, params=m.params._replace(i_mean=i_mean))
        s = jtfne.simulate(m)
        first_spike = int(np.flatnonzero(np.asarray(s["SPK"])[:, 2:].any(axis=1))[0])
        first_input = int(np.flatnonzero(np.asarray(s["source"])[:, 0] > 0)[0])
        return first_input - first_spike

    assert run(0.0) == 1          # next step
    assert run(2.0) == 20         # 2 ms at dt 0.1 ms
    assert run(0.55) == 6         # rounded to whole steps


def test_single_layer_results_unchanged_by_the_laminar_machinery():
    """The tutorial network written with explicit within-layer pathways gives the same bits."""
    from conftest import seed_page_configuration
    cfg = seed_page_configuration(42).runtime(duration_ms=300.0)
    explicit = cfg.connectivity(pathways={"L2/3.E->L2/3.I": {"strength": 40.0, "p": 1.0, "delay_ms": 0.0}})
    a, b = jtfne.simulate(jtfne.construct(cfg)), jtfne.simulate(jtfne.construct(explicit))
    for name in a:
        np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]))
    assert np.asarray(jtfne.construct(cfg).params.w).shape == (1, 101, 100)


def test_field_proxies_across_depth_and_per_layer_readouts():
    m = jtfne.construct(laminar())
    s = jtfne.simulate(m)
    z = np.asarray(s["LFP-proxy"]["contact_depth_um"])
    assert z[0] == 100.0 and z[-1] == 900.0 and len(z) == 12
    src = np.asarray(s["source"]) if "source" in s else None
    assert src is None
    kernel = np.asarray(m.params.lfp_kernel)[0]
    depth = m.neuron_coords["depth_um"][0]
    np.testing.assert_allclose(kernel, R0_UM / np.sqrt((z[:, None] - depth[None, :]) ** 2 + R0_UM ** 2),
                               rtol=1e-5)
    specs = [jtfne.readout_spec(f"rate_{lay}", "spike_rate_hz", layer=lay) for lay in LAYERS]
    specs += [jtfne.readout_spec("lfp_L4", "lfp_abs_mean", layer="L4")]
    r = m.compute_readout(s, specs)
    spk = np.asarray(s["SPK"])
    layer = m.neuron_coords["layer"]
    for lay in LAYERS:
        assert r[f"rate_{lay}"].value == pytest.approx(spk[:, layer == lay].mean() / 1e-4)
    in_l4 = (z >= 400) & (z <= 600)
    assert r["lfp_L4"].value == pytest.approx(np.abs(np.asarray(s["LFP-proxy"])[:, in_l4]).mean(), rel=1e-6)


def test_pathway_strength_sweeps_without_recompiling():
    from jaxfne._simulate import chunk_function
    chunk_function.cache_clear()
    base = laminar(duration_ms=100.0)
    for values in ([5.0, 20.0], [0.0, 40.0]):
        ens = base.ensemble(seeds=[1, 2], sweep={"connectivity.pathways.L4.E->L2/3.E.strength": values})
        m = jtfne.construct(ens)
        s = jtfne.simulate(m)
        assert s["SPK"].sizes["member"] == 4
    assert chunk_function.cache_info().misses == 1
    with pytest.raises(jtfne.ConfigurationError, match=r"delays set the length of the delay buffers"):
        base.ensemble(seeds=[1], sweep={"connectivity.pathways.L4.E->L2/3.E.delay_ms": [1.0, 2.0]})
