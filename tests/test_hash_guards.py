"""The configuration hash covers every section and every field, and a store refuses another run.

The reference is the configuration itself: two configurations whose frozen sections differ
(dataclass equality) must have different ``config_hash()`` values. Every field of every section
dataclass must be exercised by one of the variants below (checked against ``dataclasses.fields``,
so a field added later without a variant fails here), and a store written with one drive value
must be refused by a run whose configuration differs only in that value.
"""

import dataclasses
import itertools

import numpy as np
import pytest

import jaxfne as jtfne
from jaxfne.config import _specs, _stimuli

BASE = (jtfne.Configuration()
        .runtime(seed=1, duration_ms=20.0, dt_ms=0.1)
        .column(layers=["L2/3", "L4"], n=20)
        .cell_types({"E": 0.8, "I": 0.2}))

#: the section dataclass of each Configuration field
SECTIONS = {"runtime_spec": _specs.RuntimeSpec, "column_specs": _specs.ColumnSpec,
            "cell_types_spec": _specs.CellTypesSpec, "connectivity_spec": _specs.ConnectivitySpec,
            "emitter_spec": _specs.EmitterSpec, "drive_spec": _specs.DriveSpec, "probes_spec": _specs.ProbesSpec,
            "ensemble_spec": _specs.EnsembleSpec, "stimuli_spec": _stimuli.StimulusSpec}


def _emitter_family(cfg):
    # "izhikevich" is the only family the chain accepts; the hash must still see the field
    return dataclasses.replace(cfg, emitter_spec=dataclasses.replace(cfg.emitter_spec, family="other_family"))


def _user_preset():
    # registering the same values again is accepted, so every variant call may do it
    jtfne.register_preset("hash_guard_user", a=0.02, b=0.2, c=-65.0, d=8.0)
    return "hash_guard_user"


#: a user weight matrix of BASE (16 E cells, then 4 I cells) and one with a weight one ulp larger
_WEIGHTS = np.where(np.arange(20) < 16, 0.5, -1.0)[None, :] * (1.0 - np.eye(20))
_WEIGHTS_ULP = _WEIGHTS.copy()
_WEIGHTS_ULP[3, 5] = np.nextafter(_WEIGHTS_ULP[3, 5], 1.0)

#: (section field, section dataclass field, key inside a mapping field or None) -> a changed configuration
VARIANTS = {
    ("runtime_spec", "seed", None): lambda c: c.runtime(seed=2),
    ("runtime_spec", "dtype", None): lambda c: c.runtime(dtype="float64"),
    ("runtime_spec", "duration_ms", None): lambda c: c.runtime(duration_ms=30.0),
    ("runtime_spec", "dt_ms", None): lambda c: c.runtime(dt_ms=0.05),
    ("runtime_spec", "integrator", None): lambda c: c.runtime(integrator="izhikevich2003"),
    ("column_specs", "name", None): lambda c: c.column(name="V1"),
    ("column_specs", "layers", None): lambda c: c.column(layers=["L2/3", "L5"], n=20),
    ("column_specs", "n_per_layer", None): lambda c: c.column(n=21),
    # the same total, split differently over the layers
    ("column_specs", "n_per_layer", "split"): lambda c: c.column(n={"L2/3": 15, "L4": 5}),
    ("column_specs", "depths_um", None): lambda c: c.column(depths_um={"L4": (400.0, 650.0)}),
    ("column_specs", "*", "second column"): lambda c: c.column(name="A").column(name="B", n=10),
    ("cell_types_spec", "fractions", "E"): lambda c: c.cell_types({"E": 0.7, "I": 0.3}),
    ("cell_types_spec", "per_layer", None): lambda c: c.cell_types({"L4": {"E": 0.5, "I": 0.5}}),
    ("connectivity_spec", "p", None): lambda c: c.connectivity(p=0.5),
    **{("connectivity_spec", "strength", pw): (lambda pw: lambda c: c.connectivity(strength={pw: 7.5}))(pw)
       for pw in _specs.PATHWAYS},
    ("connectivity_spec", "tau_exc_ms", None): lambda c: c.connectivity(tau_exc_ms=3.0),
    ("connectivity_spec", "tau_inh_ms", None): lambda c: c.connectivity(tau_inh_ms=11.0),
    ("connectivity_spec", "shared", None): lambda c: c.connectivity(shared=True),
    ("connectivity_spec", "delay_ms", None): lambda c: c.connectivity(delay_ms=1.0),
    ("connectivity_spec", "pathways", None): lambda c: c.connectivity(pathways={"L2/3.E->L4.I": {"p": 0.3}}),
    **{("connectivity_spec", "pathways", field): (lambda field, val: lambda c: c.connectivity(
        pathways={"L4.E->L2/3.E": {field: val}}))(field, val)
       for field, val in (("p", 0.25), ("strength", 3.0), ("delay_ms", 2.0))},
    ("connectivity_spec", "rule", None): lambda c: c.connectivity(rule="fixed_indegree"),
    ("connectivity_spec", "autapses", None): lambda c: c.connectivity(autapses=True),
    ("connectivity_spec", "synapse", "E"): lambda c: c.connectivity(synapse={"E": "delta"}),
    ("connectivity_spec", "synapse", "I"): lambda c: c.connectivity(synapse={"I": "delta"}),
    ("connectivity_spec", "weights", None): lambda c: c.connectivity(weights=_WEIGHTS),
    ("connectivity_spec", "synapse", "conductance"): lambda c: c.connectivity(synapse={"I": "conductance"}),
    **{("connectivity_spec", "synapse", pw): (lambda pw: lambda c: c.connectivity(synapse={pw: "delta"}))(pw)
       for pw in _specs.PATHWAYS},
    ("connectivity_spec", "reversal_mv", "E"): lambda c: c.connectivity(reversal_mv={"E": -5.0}),
    ("connectivity_spec", "reversal_mv", "I"): lambda c: c.connectivity(reversal_mv={"I": -70.0}),
    # one weight one ulp away
    ("connectivity_spec", "weights", "ulp"): lambda c: c.connectivity(weights=_WEIGHTS_ULP),
    ("emitter_spec", "family", None): _emitter_family,
    ("emitter_spec", "preset", "E"): lambda c: c.set_emitter(preset={"E": "regular_spiking"}),
    ("emitter_spec", "preset", "I"): lambda c: c.set_emitter(preset={"I": "fast_spiking"}),
    **{("emitter_spec", "params", t): (lambda t: lambda c: c.set_emitter(
        params={t: {"a": 0.02, "b": 0.2, "c": -65.0, "d": 8.0}}))(t) for t in _specs.CELL_TYPES},
    ("emitter_spec", "params", "E ulp"): lambda c: c.set_emitter(
        params={"E": {"a": 0.02, "b": 0.2, "c": -65.0, "d": float(np.nextafter(8.0, 9.0))}}),
    **{("emitter_spec", "heterogeneity", t): (lambda t: lambda c: c.set_emitter(
        heterogeneity={t: {"a": (0.02, 0.08)}}))(t) for t in _specs.CELL_TYPES},
    # the same coefficients on r**2 instead of r
    ("emitter_spec", "heterogeneity", "power"): lambda c: c.set_emitter(heterogeneity={"E": {"a": (0.02, 0.0, 0.08)}}),
    ("emitter_spec", "user_presets", None): lambda c: c.set_emitter(preset={"E": _user_preset()}),
    ("emitter_spec", "per_neuron", None): lambda c: c.set_emitter(per_neuron={"d": np.linspace(2.0, 8.0, 20)}),
    ("emitter_spec", "per_neuron", "ulp"): lambda c: c.set_emitter(
        per_neuron={"d": np.nextafter(np.linspace(2.0, 8.0, 20), 9.0)}),
    ("drive_spec", "noise_hold_ms", None): lambda c: c.drive(noise_hold_ms=1.0),
    ("drive_spec", "current", "E"): lambda c: c.drive(current={"E": 5.0}),
    ("drive_spec", "current", "I"): lambda c: c.drive(current={"I": 1.0}),
    # the smallest change a float can make must still change the hash
    ("drive_spec", "current", "E ulp"): lambda c: c.drive(current={"E": float(np.nextafter(4.0, 5.0))}),
    ("drive_spec", "noise", "E"): lambda c: c.drive(noise={"E": 2.5}),
    ("drive_spec", "noise", "I"): lambda c: c.drive(noise={"I": 1.5}),
    ("probes_spec", "names", None): lambda c: c.probes(["SPK", "Vm", "source"]),
    ("probes_spec", "contacts", None): lambda c: c.probes(contacts=8),
    ("probes_spec", "contact_spacing_um", None): lambda c: c.probes(contact_spacing_um=50.0),
    ("probes_spec", "neurons", "per_type"): lambda c: c.probes(neurons=2),
    ("probes_spec", "neurons", "index"): lambda c: c.probes(neurons=[0, 3]),
    ("probes_spec", "every_ms", None): lambda c: c.probes(every_ms=0.5),
    ("ensemble_spec", "*", "present"): lambda c: c.ensemble(seeds=[1]),
    ("ensemble_spec", "seeds", None): lambda c: c.ensemble(seeds=[1, 2]),
    ("ensemble_spec", "sweep", None): lambda c: c.ensemble(sweep={"drive.current.E": [4.0, 5.0]}),
    ("ensemble_spec", "sweep", "values"): lambda c: c.ensemble(sweep={"drive.current.E": [4.0, 6.0]}),
    ("ensemble_spec", "mode", None): lambda c: c.ensemble(mode="zip"),
    ("stimuli_spec", "*", "present"): lambda c: c.stimulus("s", kind="step", amplitude=1.0),
    ("stimuli_spec", "name", None): lambda c: BASE.stimulus("t", kind="step", amplitude=1.0),
    ("stimuli_spec", "kind", None): lambda c: c.stimulus("s", kind="pulses", amplitude=1.0, duration_ms=0.5,
                                                         period_ms=1.0),
    ("stimuli_spec", "values", None): lambda c: c.stimulus("s", amplitude=2.0),
    ("stimuli_spec", "target", None): lambda c: c.stimulus("s", layer="L4"),
    ("stimuli_spec", "values", "array"): lambda c: c.stimulus("s", values=np.arange(5.0) + 1e-12),
    ("stimuli_spec", "values", "per_member"): lambda c: c.stimulus("s", values=np.arange(5.0)[None],
                                                                   per_member=True),
}

ONE_SEED = BASE.ensemble(seeds=[1])
STIMULATED = BASE.stimulus("s", kind="step", amplitude=1.0)
SWEPT = ONE_SEED.ensemble(sweep={"drive.current.E": [4.0, 5.0]})
#: the configuration each variant changes (BASE unless given here: BASE has no ensemble section)
BASES = {("ensemble_spec", "seeds", None): ONE_SEED, ("ensemble_spec", "sweep", None): ONE_SEED,
         ("ensemble_spec", "sweep", "values"): SWEPT, ("ensemble_spec", "mode", None): SWEPT,
         **{("stimuli_spec", f, None): STIMULATED for f in ("name", "kind", "values", "target")},
         **{("stimuli_spec", "values", k): BASE.stimulus("s", kind="array", values=np.arange(5.0))
            for k in ("array", "per_member")}}


def _spec_values(cfg, section):
    value = getattr(cfg, section)
    return value if section in ("column_specs", "stimuli_spec") else (value,)


def test_every_section_and_field_has_a_variant():
    """The variants cover every Configuration section and every field of its dataclass (and every key of
    the per-type and per-pathway mappings); a field added without a variant fails here."""
    assert {f.name for f in dataclasses.fields(jtfne.Configuration)} == set(SECTIONS)
    for section, cls in SECTIONS.items():
        covered = {field for s, field, _ in VARIANTS if s == section}
        missing = {f.name for f in dataclasses.fields(cls)} - covered
        assert not missing, f"{section}: no variant changes {sorted(missing)}"
    keyed = {(s, f, k) for s, f, k in VARIANTS}
    for pw in _specs.PATHWAYS:
        assert ("connectivity_spec", "strength", pw) in keyed and ("connectivity_spec", "synapse", pw) in keyed
    for t in _specs.CELL_TYPES:
        for field in ("current", "noise"):
            assert ("drive_spec", field, t) in keyed
        assert ("emitter_spec", "preset", t) in keyed
        assert ("emitter_spec", "params", t) in keyed and ("emitter_spec", "heterogeneity", t) in keyed


@pytest.mark.parametrize("where", list(VARIANTS), ids=lambda w: ".".join(x for x in w if x))
def test_variant_changes_its_field_and_the_hash(where):
    section, field, _ = where
    base = BASES.get(where, BASE)
    changed = VARIANTS[where](base)
    # independent reference: the frozen section (dataclass equality) differs, in the named field
    old, new = _spec_values(base, section), _spec_values(changed, section)
    assert old != new, f"the variant did not change {section}"
    if field != "*":
        assert len(old) == len(new)
        assert any(getattr(o, field) != getattr(n, field) for o, n in zip(old, new)), \
            f"the variant did not change {section}.{field}"
    assert changed != base
    assert changed.config_hash() != base.config_hash()


def test_distinct_configurations_have_distinct_hashes():
    """All variants (and the bases) are pairwise distinct configurations, so their hashes differ pairwise."""
    configs = [BASE, ONE_SEED, SWEPT, STIMULATED] + [v(BASES.get(k, BASE)) for k, v in VARIANTS.items()]
    unique = []
    for c in configs:
        if all(c != u for u in unique):
            unique.append(c)
    hashes = [c.config_hash() for c in unique]
    for (a, ha), (b, hb) in itertools.combinations(zip(unique, hashes), 2):
        assert ha != hb, (a, b)
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in hashes)


def test_equal_configurations_have_equal_hashes():
    """The hash is a function of the configuration only: the same values reached by another chain,
    or through to_dict/from_dict, hash the same (so a refusal below is not a hash of identity)."""
    other_order = (jtfne.Configuration().cell_types({"E": 0.8, "I": 0.2})
                   .column(layers=["L2/3", "L4"], n=20)
                   .runtime(duration_ms=20.0).runtime(seed=1, dt_ms=0.1))
    assert other_order == BASE and other_order.config_hash() == BASE.config_hash()
    assert jtfne.Configuration.from_dict(BASE.to_dict()).config_hash() == BASE.config_hash()
    there_and_back = BASE.drive(current={"E": 9.0}).drive(current={"E": 4.0})
    assert there_and_back.config_hash() == BASE.config_hash()


# -- a store refuses a run with another drive -----------------------------------------------------------

SMALL = (jtfne.Configuration().runtime(seed=3, duration_ms=5.0, dt_ms=0.1).column(n=12)
         .probes(["SPK", "Vm"]))


def _files(path):
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("change", [
    {"current": {"E": 4.5}},
    {"current": {"I": 0.25}},
    {"noise": {"E": 2.25}},
    {"noise": {"I": 1.0}},
], ids=lambda c: next(iter(c)) + "." + next(iter(next(iter(c.values())))))
def test_store_refuses_a_run_with_another_drive(tmp_path, monkeypatch, change):
    path = tmp_path / "run.zarr"
    model = jtfne.construct(SMALL)
    first = jtfne.simulate(model, store=path, chunk_ms=2.5)
    before = _files(path)
    other_cfg = SMALL.drive(**change)
    other = jtfne.construct(other_cfg)
    assert other_cfg.config_hash() != SMALL.config_hash()

    def no_compute(*args, **kwargs):
        raise AssertionError("a store of another run was computed into")

    monkeypatch.setattr("jaxfne.engine._driver.run_chunks", no_compute)
    with pytest.raises(jtfne.StoreError) as info:
        jtfne.simulate(other, store=path, chunk_ms=2.5)
    msg = str(info.value)
    assert str(path) in msg
    assert "the configuration differs (configuration hash)" in msg
    assert SMALL.config_hash() in msg and other_cfg.config_hash() in msg
    assert "overwrite=True" in msg
    assert _files(path) == before                       # untouched
    # the same run is still accepted (the refusal is about the difference, not the store)
    again = jtfne.simulate(model, store=path, chunk_ms=2.5)
    np.testing.assert_array_equal(np.asarray(again["Vm"]), np.asarray(first["Vm"]))
    monkeypatch.undo()
    replaced = jtfne.simulate(other, store=path, chunk_ms=2.5, overwrite=True)
    assert replaced.attrs["config_hash"] == other_cfg.config_hash()


def test_unfinished_ensemble_store_refuses_another_unswept_drive(tmp_path):
    """An ensemble sweeping drive.current.E: changing the noise (not swept) leaves the member coordinates
    equal, so only the configuration hash tells the runs apart; also for an unfinished store."""
    import errno

    import zarr

    from test_store import failing_set
    cfg = SMALL.ensemble(seeds=[1, 2], sweep={"drive.current.E": [4.0, 6.0]})
    model = jtfne.construct(cfg)
    path = tmp_path / "ens.zarr"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(zarr.storage.LocalStore, "set", failing_set("spike_events/count/c/0/1", OSError(errno.EIO, "I/O error")))
        with pytest.raises(jtfne.StoreError, match="writing chunk 1"):
            jtfne.simulate(model, store=path, chunk_ms=2.5)
    other_cfg = SMALL.drive(noise={"E": 3.0}).ensemble(seeds=[1, 2], sweep={"drive.current.E": [4.0, 6.0]})
    other = jtfne.construct(other_cfg)
    assert {k: np.asarray(v).tolist() for k, v in other.member_coords.items()} == \
        {k: np.asarray(v).tolist() for k, v in model.member_coords.items()}
    with pytest.raises(jtfne.StoreError, match=r"the configuration differs \(configuration hash\)"):
        jtfne.simulate(other, store=path, chunk_ms=2.5)
    finished = jtfne.simulate(model, store=path, chunk_ms=2.5)
    assert finished.dataset.sizes["time"] == 50
