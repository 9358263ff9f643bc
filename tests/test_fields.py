"""Field proxies (jaxfne/_fields.py) against closed forms, and on a simulated network."""

import numpy as np
import pytest

import jaxfne as jtfne
from jaxfne._fields import R0_UM, contact_depths_um, csd_proxy, distance_kernel, lfp_proxy
from jaxfne.model import precision


@pytest.fixture
def x64():
    """Closed-form checks run in float64 (JAX computes in float32 otherwise)."""
    with precision("float64"):
        yield


def test_contacts_span_the_column_evenly():
    z = contact_depths_um(100.0, 600.0, 6)
    np.testing.assert_allclose(z, [100, 200, 300, 400, 500, 600])


def test_one_source_gives_the_kernel_profile(x64):
    contacts = contact_depths_um(0.0, 1000.0, 21)            # 50 um apart
    depth = 437.0
    source = np.array([[1.0], [-2.5]])                       # (T=2, N=1): two time steps
    lfp = np.asarray(lfp_proxy(source, distance_kernel(contacts, np.array([depth]))))
    profile = R0_UM / np.sqrt((contacts - depth) ** 2 + R0_UM ** 2)
    np.testing.assert_allclose(lfp[0], profile, rtol=1e-12)
    np.testing.assert_allclose(lfp[1], -2.5 * profile, rtol=1e-12)
    # peak at the contact nearest the source; 1/sqrt(2) one r0 away; ~r0/|dz| far away
    assert np.argmax(lfp[0]) == np.argmin(np.abs(contacts - depth))
    k = distance_kernel(np.array([depth, depth + R0_UM, depth + 20 * R0_UM]), np.array([depth]))[:, 0]
    np.testing.assert_allclose(k, [1.0, 1 / np.sqrt(2), 1 / np.sqrt(401)], rtol=1e-12)


def test_sources_superpose(x64):
    rng = np.random.default_rng(0)
    contacts = contact_depths_um(100.0, 400.0, 7)
    depths = rng.uniform(100.0, 400.0, 5)
    source = rng.normal(size=(3, 5))
    kernel = distance_kernel(contacts, depths)
    lfp = np.asarray(lfp_proxy(source, kernel))
    by_hand = sum(np.outer(source[:, i], R0_UM / np.hypot(contacts - depths[i], R0_UM)) for i in range(5))
    np.testing.assert_allclose(lfp, by_hand, rtol=1e-12)


def test_linear_lfp_has_zero_csd_away_from_the_edges(x64):
    z_um = contact_depths_um(100.0, 400.0, 16)
    spacing = z_um[1] - z_um[0]
    lfp = np.stack([3.0 - 0.02 * z_um, -1.0 + 0.5 * z_um])   # two time steps, both linear in depth
    csd = np.asarray(csd_proxy(lfp, spacing))
    np.testing.assert_allclose(csd[:, 1:-1], 0.0, atol=1e-9)
    # the edges see the Vaknin padding: the slope shows up as a source/sink pair
    assert np.all(csd[:, 0] != 0) and np.all(csd[:, -1] != 0)
    np.testing.assert_allclose(csd[:, 0], -csd[:, -1])


def test_quadratic_lfp_has_constant_csd(x64):
    # LFP = a z^2 with z in mm has second derivative 2a, so CSD = -2a inside
    z_um = contact_depths_um(0.0, 1000.0, 11)
    a = 3.0
    csd = np.asarray(csd_proxy(a * (z_um / 1000.0) ** 2, z_um[1] - z_um[0]))
    np.testing.assert_allclose(csd[1:-1], -2 * a, rtol=1e-9)


def test_vaknin_edges(x64):
    rng = np.random.default_rng(1)
    lfp = rng.normal(size=(4, 9))
    spacing_um = 25.0
    h_mm = spacing_um / 1000.0
    csd = np.asarray(csd_proxy(lfp, spacing_um))
    # interior: minus the second difference over h^2 (h in mm)
    np.testing.assert_allclose(csd[:, 1:-1], -(lfp[:, :-2] - 2 * lfp[:, 1:-1] + lfp[:, 2:]) / h_mm**2, rtol=1e-10)
    # edges: the first and last contacts are repeated once beyond the array
    np.testing.assert_allclose(csd[:, 0], -(lfp[:, 1] - lfp[:, 0]) / h_mm**2, rtol=1e-10)
    np.testing.assert_allclose(csd[:, -1], -(lfp[:, -2] - lfp[:, -1]) / h_mm**2, rtol=1e-10)


def test_constant_lfp_has_zero_csd_everywhere(x64):
    csd = np.asarray(csd_proxy(np.full((2, 5), 7.0), 50.0))
    np.testing.assert_array_equal(csd, 0.0)


@pytest.fixture(scope="module")
def field_run():
    cfg = (jtfne.Configuration()
           .runtime(seed=3, duration_ms=100.0, dt_ms=0.1)
           .column(name="c", layers=["L2/3", "L4"], n=40)
           .probes(["SPK", "source", "LFP-proxy", "CSD-proxy"], contacts=8))
    model = jtfne.construct(cfg)
    return model, jtfne.simulate(model)


def test_simulated_lfp_is_the_kernel_applied_to_the_source(field_run):
    model, signals = field_run
    source = np.asarray(signals["source"], dtype=np.float64)        # (T, N)
    lfp = np.asarray(signals["LFP-proxy"], dtype=np.float64)         # (T, C)
    kernel = np.asarray(model.params.lfp_kernel[0], dtype=np.float64)  # (C, N)
    assert np.abs(source).max() > 0          # the network is active: there is something to project
    assert kernel.shape == (8, 40) and lfp.shape == (1000, 8)
    np.testing.assert_allclose(lfp, source @ kernel.T, rtol=1e-4, atol=1e-4 * np.abs(lfp).max())


def test_simulated_kernel_uses_neuron_and_contact_depths(field_run):
    model, signals = field_run
    z = signals["LFP-proxy"]["contact_depth_um"].values
    np.testing.assert_allclose(z, np.linspace(100.0, 600.0, 8))      # top of L2/3 to bottom of L4
    depth = signals["source"]["depth_um"].values
    layer = signals["source"]["layer"].values
    assert np.all((depth[layer == "L2/3"] >= 100) & (depth[layer == "L2/3"] <= 400))
    assert np.all((depth[layer == "L4"] >= 400) & (depth[layer == "L4"] <= 600))
    np.testing.assert_allclose(np.asarray(model.params.lfp_kernel[0]), distance_kernel(z, depth), rtol=1e-5)


def test_simulated_csd_is_the_second_difference_of_the_lfp(field_run):
    model, signals = field_run
    lfp = np.asarray(signals["LFP-proxy"], dtype=np.float64)
    csd = np.asarray(signals["CSD-proxy"], dtype=np.float64)
    z = signals["CSD-proxy"]["contact_depth_um"].values
    expected = np.asarray(csd_proxy(lfp, z[1] - z[0]))
    np.testing.assert_allclose(csd, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())


def test_field_units_say_proxy(field_run):
    _, signals = field_run
    assert "proxy" in signals["LFP-proxy"].attrs["units"] and "proxy" in signals["CSD-proxy"].attrs["units"]
    assert signals["CSD-proxy"].dims == ("time", "contact")
