"""Signals.sel / isel: a mapping or keywords, several member coordinates in one call, clear errors."""

import numpy as np
import pytest
import xarray as xr

import jaxfne as jtfne

DRIVE, FRAC = "drive.current.E", "cell_types.E"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A 2 x 2 sweep of two paths times two seeds (8 members), in memory and on a store."""
    cfg = (jtfne.Configuration().runtime(seed=3, duration_ms=10.0).column(n=20).probes(["SPK", "Vm"])
           .ensemble(seeds=[1, 2], sweep={FRAC: [0.7, 0.9], DRIVE: [3.0, 5.0]}))
    model = jtfne.construct(cfg)
    memory = jtfne.simulate(model)
    path = tmp_path_factory.mktemp("sel") / "run.zarr"
    jtfne.simulate(model, store=path, chunk_ms=5.0)
    return {"memory": memory, "store": jtfne.open_signals(path)}


@pytest.fixture(params=["memory", "store"])
def sig(request, sweep):
    return sweep[request.param]


def chained(sig, query):
    for key, value in query.items():
        sig = sig.sel({key: value})
    return sig


def same(a, b):
    xr.testing.assert_identical(a.dataset, b.dataset)


def test_a_mapping_and_keywords(sig):
    by_map = sig.sel({DRIVE: 5.0})
    assert by_map.dataset.sizes["member"] == 4
    assert set(by_map.dataset[DRIVE].values) == {5.0}
    same(by_map, sig.sel(**{DRIVE: 5.0}))
    same(sig.sel({FRAC: 0.9}, seed=2), sig.sel({FRAC: 0.9}).sel(seed=2))
    with pytest.raises(jtfne.ReadoutError, match="given both in indexers and as keywords"):
        sig.sel({"seed": 1}, seed=1)


@pytest.mark.parametrize("query", [{FRAC: 0.7, DRIVE: 5.0}, {DRIVE: 3.0, "seed": 2},
                                   {FRAC: 0.9, DRIVE: 5.0, "seed": 1}, {"seed": 1, DRIVE: 3.0, FRAC: 0.7}],
                         ids=["two-paths", "path-and-seed", "three", "three-reordered"])
def test_several_member_coordinates_at_once_match_chained_calls(sig, query):
    got = sig.sel(query)
    same(got, chained(sig, query))
    members = sig.dataset
    want = np.ones(members.sizes["member"], dtype=bool)
    for key, value in query.items():
        want &= members[key].values == value
    if want.sum() == 1:                                  # one member: the member dim is gone, as in xarray
        assert "member" not in got.dataset.dims
        assert int(got.dataset["member"]) == int(np.flatnonzero(want)[0])
        np.testing.assert_array_equal(np.asarray(got["Vm"]), np.asarray(sig["Vm"])[want][0])
    else:
        np.testing.assert_array_equal(got.dataset["member"].values, np.flatnonzero(want))
        np.testing.assert_array_equal(np.asarray(got["Vm"]), np.asarray(sig["Vm"])[want])


def test_list_values_keep_the_member_dim(sig):
    got = sig.sel({FRAC: [0.7, 0.9], DRIVE: [5.0]})
    np.testing.assert_array_equal(got.dataset["member"].values, [2, 3, 6, 7])
    assert list(got.dataset.dims) == list(sig.dataset.dims)
    assert set(got.dataset.xindexes) == set(sig.dataset.xindexes)
    one = sig.sel({FRAC: [0.9], DRIVE: 3.0, "seed": [2]})
    assert one.dataset.sizes["member"] == 1 and int(one.dataset["member"][0]) == 5
    np.testing.assert_array_equal(np.asarray(one["SPK"])[0], np.asarray(sig["SPK"])[5])
    # a list keeps the dim and, for the member index, the order given
    np.testing.assert_array_equal(sig.sel(member=[6, 1]).dataset["member"].values, [6, 1])
    np.testing.assert_array_equal(sig.sel(seed=slice(2, 2)).dataset["seed"].values, [2, 2, 2, 2])


def test_member_and_other_coordinates_together(sig):
    got = sig.sel({DRIVE: 5.0, "seed": 1, "time": slice(0.0, 2.0)}, neuron=[0, 3])
    want = sig.sel({DRIVE: 5.0}).sel(seed=1).sel(time=slice(0.0, 2.0)).sel(neuron=[0, 3])
    same(got, want)
    assert dict(got["Vm"].sizes) == {"member": 2, "time": 21, "neuron": 2}
    near = sig.sel({DRIVE: 4.2, "time": 1.04}, method="nearest")
    assert set(near.dataset[DRIVE].values) == {5.0}
    assert float(near.dataset["time"]) == pytest.approx(1.0)


def test_drop(sig):
    got = sig.sel({FRAC: 0.7, DRIVE: 3.0, "seed": 2}, drop=True)
    same(got, sig.sel({FRAC: 0.7}).sel({DRIVE: 3.0}).sel(seed=2, drop=True))
    assert "seed" not in got.dataset.coords and DRIVE not in got.dataset.coords


def test_errors_name_the_coordinate_and_the_valid_ones(sig):
    with pytest.raises(jtfne.ReadoutError, match=r"'drive\.current\.I' is not a coordinate of these signals; "
                                                 r"valid ones are contact, member, neuron, time, seed, "
                                                 r"cell_types\.E, drive\.current\.E"):
        sig.sel({"drive.current.I": 5.0})
    with pytest.raises(jtfne.ReadoutError, match="'layer' is not an indexed coordinate"):
        sig.sel(layer="L2/3")
    with pytest.raises(jtfne.ReadoutError, match=r"drive\.current\.E=4\.0 is invalid; no member has "
                                                 r"drive\.current\.E = 4\.0; its values are \[3\.0, 5\.0\]"):
        sig.sel({DRIVE: 4.0, "seed": 1})
    with pytest.raises(jtfne.ReadoutError, match=r"cell_types\.E=\[0\.7, 0\.8\] is invalid; no member has "
                                                 r"cell_types\.E = 0\.8"):
        sig.sel({FRAC: [0.7, 0.8]})
    with pytest.raises(jtfne.ReadoutError, match="time"):
        sig.sel(time=999.0)
    with pytest.raises(jtfne.ReadoutError, match="'cell' is not a dimension of these signals; valid ones are "
                                                 "contact, member, neuron, time"):
        sig.isel(cell=0)
    with pytest.raises(jtfne.ReadoutError, match="indexers=3 is invalid"):
        sig.sel(3)


def test_isel_takes_a_mapping_and_keywords(sig):
    got = sig.isel({"member": 5}, neuron=[0, 2])
    same(got, sig.isel(member=5).isel(neuron=[0, 2]))
    assert dict(got["SPK"].sizes) == {"time": 100, "neuron": 2}
    assert int(got.dataset["seed"]) == 2


def test_single_network():
    cfg = jtfne.Configuration().runtime(seed=4, duration_ms=5.0).column(n=10).probes(["SPK", "Vm"])
    sig = jtfne.simulate(jtfne.construct(cfg))
    same(sig.sel({"neuron": [1, 2]}, time=slice(1.0, 2.0)), sig.sel(neuron=[1, 2]).sel(time=slice(1.0, 2.0)))
    with pytest.raises(jtfne.ReadoutError, match="'seed' is not an indexed coordinate of these signals; valid "
                                                 "ones are contact, neuron, time"):
        sig.sel(seed=4)
