"""Laminar columns: layers, per-layer fractions, pathways with delays, depth-resolved proxies."""

import json

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
    from jaxfne.engine import chunk_function
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


# -- several columns ---------------------------------------------------------------

def two_columns(**pathways):
    """Column A (one layer) first, column B (two layers, default feed-forward delays) after it."""
    cfg = (jtfne.Configuration().runtime(duration_ms=150.0, seed=5)
           .column(name="A", layers=["L2/3"], n=50)
           .column(name="B", layers=["L2/3", "L4"], n={"L2/3": 40, "L4": 30})
           .probes(["SPK", "Vm", "source", "LFP-proxy", "CSD-proxy"], contacts=6))
    return cfg.connectivity(pathways=pathways) if pathways else cfg


def test_columns_are_added_renamed_and_updated_by_name():
    C = jtfne.Configuration
    assert C().column(name="A").column_specs == (C().column_spec.__class__(name="A"),)   # the unnamed one renamed
    cfg = two_columns()
    assert [c.name for c in cfg.column_specs] == ["A", "B"] and cfg.n == 120
    assert cfg.column(name="B", n={"L2/3": 10, "L4": 10}).n == 70                       # updates B only
    from jaxfne.config import layer_slots
    assert layer_slots(cfg) == [("A", "L2/3", 50), ("B", "L2/3", 40), ("B", "L4", 30)]
    with pytest.raises(jtfne.ConfigurationError, match=r"column: name=None is invalid; this configuration has "
                                                       r"several columns \(A, B\); name the one to change"):
        cfg.column(n=10)
    with pytest.raises(jtfne.ConfigurationError, match=r"name='column' is invalid; 'column' is the name of the "
                                                       r"unnamed single column"):
        cfg.column(name="column")
    # to_dict writes one dict for one column (unchanged hashes) and a list for several; both round-trip
    assert isinstance(C().to_dict()["column"], dict)
    data = cfg.to_dict()["column"]
    assert [d["name"] for d in data] == ["A", "B"]
    again = C.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.config_hash() == cfg.config_hash()


def test_pathways_between_columns_are_checked():
    bad = {
        "A:L2/3.E->C:L2/3.E": r"names column 'C', which is unknown; valid columns are 'A', 'B'",
        "A:L4.E->B:L2/3.E": r"names layer 'L4' of column 'A', whose layers are \['L2/3'\]",
        "L5.E->L2/3.E": r"acts within every column that has layers 'L5' and 'L2/3', but no column has both",
    }
    for key, msg in bad.items():
        cfg = two_columns(**{key: {"strength": 1.0}})
        with pytest.raises(jtfne.ConfigurationError, match=msg):
            jtfne.construct(cfg)
    with pytest.raises(jtfne.ConfigurationError, match=r"name the column of both ends or of neither"):
        two_columns(**{"A:L2/3.E->L2/3.E": {"strength": 1.0}})
    with pytest.raises(jtfne.ConfigurationError, match=r"sweep\['connectivity.pathways.A:L2/3.E->Z:L2/3.E.strength'\] "
                                                       r"value 1.0 is invalid: .*names column 'Z'"):
        two_columns().ensemble(seeds=[1], sweep={"connectivity.pathways.A:L2/3.E->Z:L2/3.E.strength": [1.0]})


def test_pathway_between_columns_drives_the_target_and_leaves_the_source_alone():
    """A -> B only: B's rate rises with the pathway; A's spikes and Vm are those of A simulated alone.

    A is the first column, so its heterogeneity, depths and connectivity come
    from the one-column streams and its noise is indexed by neuron; with no
    B -> A pathway nothing of B reaches it.
    """
    alone = two_columns().column_specs[0]
    a_cfg = jtfne.Configuration().runtime(duration_ms=150.0, seed=5).column(
        name="A", layers=list(alone.layers), n=alone.n).probes(["SPK", "Vm"])
    sa = jtfne.simulate(jtfne.construct(a_cfg))
    rates, models = {}, {}
    for g in (0.0, 40.0):
        cfg = two_columns(**{"A:L2/3.E->B:L2/3.E": {"p": 0.5, "strength": g, "delay_ms": 2.0}})
        m = jtfne.construct(cfg)
        s = jtfne.simulate(m)
        np.testing.assert_array_equal(np.asarray(s["SPK"])[:, :50], np.asarray(sa["SPK"]))
        np.testing.assert_array_equal(np.asarray(s["Vm"])[:, :50], np.asarray(sa["Vm"]))
        w = np.asarray(m.params.w)[0].sum(axis=0)[:-1]          # [pre, post], all delay classes
        assert np.all(w[50:, :50] == 0)                           # nothing from B onto A
        col, layer, ct = m.neuron_coords["column"], m.neuron_coords["layer"], m.neuron_coords["cell_type"][0]
        a_e, b_e = (col == "A") & (ct == "E"), (col == "B") & (layer == "L2/3") & (ct == "E")
        onto_b = w[np.ix_(a_e, b_e)].sum(axis=0)
        assert (onto_b.mean() == pytest.approx(g, rel=0.2)) if g else np.all(onto_b == 0)
        assert np.all(w[np.ix_(a_e, (col == "B") & ~b_e)] == 0)          # only the named groups are wired
        assert np.all(w[np.ix_((col == "A") & (ct == "I"), col == "B")] == 0)
        r = m.compute_readout(s, [jtfne.readout_spec(c, "spike_rate_hz", column=c) for c in "AB"])
        spk = np.asarray(s["SPK"])
        assert r["B"].value == pytest.approx(spk[:, col == "B"].mean() / 1e-4)
        rates[g], models[g] = {c: r[c].value for c in "AB"}, m
    assert rates[0.0]["A"] == rates[40.0]["A"] and rates[40.0]["B"] > rates[0.0]["B"] * 1.2
    # a strength-0 pathway is no pathway, bit for bit
    none = jtfne.simulate(jtfne.construct(two_columns()))
    zero = jtfne.simulate(models[0.0])
    for name in none:
        np.testing.assert_array_equal(np.asarray(none[name]), np.asarray(zero[name]))


def test_each_column_has_its_own_contacts_and_csd_edges():
    cfg = two_columns().column(name="B", depths_um={"L4": (420.0, 800.0)})
    m = jtfne.construct(cfg)
    s = jtfne.simulate(m)
    lfp = s["LFP-proxy"]
    assert lfp["contact_column"].values.tolist() == ["A"] * 6 + ["B"] * 6
    z = lfp["contact_depth_um"].values
    np.testing.assert_allclose(z[:6], np.linspace(100.0, 400.0, 6))       # A: L2/3 only
    np.testing.assert_allclose(z[6:], np.linspace(100.0, 800.0, 6))       # B: L2/3 to its deeper L4
    # the LFP proxy of a contact sums its own column's sources only
    src = np.asarray(s["source"], dtype=float)
    depth, col = s["source"]["depth_um"].values, s["source"]["column"].values
    own = (np.array(["A"] * 6 + ["B"] * 6)[:, None] == col[None, :])
    kernel = np.where(own, R0_UM / np.sqrt((z[:, None] - depth[None, :]) ** 2 + R0_UM ** 2), 0.0)
    expect = src @ kernel.T
    np.testing.assert_allclose(np.asarray(lfp), expect, rtol=1e-4, atol=1e-4 * np.abs(expect).max())
    # CSD: each column's block on its own, with its own spacing and Vaknin edges
    csd = []
    for block, h_um in ((expect[:, :6], 60.0), (expect[:, 6:], 140.0)):
        padded = np.concatenate([block[:, :1], block, block[:, -1:]], axis=1)
        csd.append(-(padded[:, :-2] - 2 * padded[:, 1:-1] + padded[:, 2:]) / (h_um / 1000.0) ** 2)
    csd = np.concatenate(csd, axis=1)
    np.testing.assert_allclose(np.asarray(s["CSD-proxy"]), csd, rtol=1e-3, atol=1e-3 * np.abs(csd).max())
    assert m.layout.contact_spacing_um == pytest.approx((60.0, 140.0))
    # readouts of field proxies: a column's contacts, and a layer's contacts by that column's own depths
    r = m.compute_readout(s, [jtfne.readout_spec("B", "lfp_abs_mean", column="B"),
                              jtfne.readout_spec("L4", "lfp_abs_mean", layer="L4"),
                              jtfne.readout_spec("A23", "csd_abs_mean", layer="L2/3", column="A")])
    data = np.abs(np.asarray(lfp))
    assert r["B"].value == pytest.approx(data[:, 6:].mean(), rel=1e-6)
    in_l4 = np.zeros(12, bool)
    in_l4[6:] = (z[6:] >= 420.0) & (z[6:] <= 800.0)                       # only B has L4, with its override
    assert in_l4.sum() == 3
    assert r["L4"].value == pytest.approx(data[:, in_l4].mean(), rel=1e-6)
    assert r["A23"].value == pytest.approx(np.abs(np.asarray(s["CSD-proxy"]))[:, :6].mean(), rel=1e-6)
    with pytest.raises(jtfne.ReadoutError, match=r"column='C' is not a column of these signals; their columns "
                                                 r"are A, B"):
        m.compute_readout(s, jtfne.readout_spec("x", "spike_rate_hz", column="C"))
    with pytest.raises(jtfne.ReadoutError, match=r"layer='L4' is not in column 'A'"):
        m.compute_readout(s, jtfne.readout_spec("x", "spike_rate_hz", column="A", layer="L4"))


def test_layer_contacts_follow_the_column_depth_overrides(tmp_path):
    """Item of issue 7: readouts pick a layer's contacts by the column's own depths, in memory and from a store."""
    cfg = laminar(duration_ms=50.0).column(depths_um={"L4": (450.0, 700.0), "L5": (700.0, 900.0)})
    m = jtfne.construct(cfg)
    spec = jtfne.readout_spec("lfp_L4", "lfp_abs_mean", layer="L4")
    mem = jtfne.simulate(m)
    z = mem["LFP-proxy"]["contact_depth_um"].values
    keep = (z >= 450.0) & (z <= 700.0)
    assert keep.tolist() != ((z >= 400.0) & (z <= 600.0)).tolist()    # the defaults would pick other contacts
    expect = np.abs(np.asarray(mem["LFP-proxy"]))[:, keep].mean()
    assert m.compute_readout(mem, spec)["lfp_L4"].value == pytest.approx(expect, rel=1e-6)
    stored = jtfne.simulate(m, store=tmp_path / "run.zarr")
    assert stored.attrs["layer_depths_um"] == mem.attrs["layer_depths_um"]
    assert m.compute_readout(stored, spec)["lfp_L4"].value == pytest.approx(expect, rel=1e-6)
    # signals written before the attribute existed: the depths come from config_json
    from jaxfne import Signals
    old = Signals(mem.dataset.copy())
    del old.dataset.attrs["layer_depths_um"]
    assert m.compute_readout(old, spec)["lfp_L4"].value == pytest.approx(expect, rel=1e-6)


def test_swept_pathway_between_columns_is_a_member_parameter():
    from jaxfne.engine import chunk_function
    chunk_function.cache_clear()
    base = two_columns().runtime(duration_ms=60.0)
    path = "connectivity.pathways.A:L2/3.E->B:L2/3.E.strength"
    b_rates = []
    for values in ([0.0, 40.0], [10.0, 20.0]):
        m = jtfne.construct(base.ensemble(seeds=[1], sweep={path: values}))
        s = jtfne.simulate(m)
        assert s.dataset[path].values.tolist() == values
        r = m.compute_readout(s, jtfne.readout_spec("B", "spike_rate_hz", column="B"))["B"]
        b_rates.append(r.value)
    assert chunk_function.cache_info().misses == 1
    assert b_rates[0][1] > b_rates[0][0]
