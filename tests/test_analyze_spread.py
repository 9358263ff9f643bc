"""`jaxfne analyze --group-by ... --window-ms A B`: the spread across seeds (std, SEM, n) beside the mean,
checked against numpy on the per-member table, and the window against jaxfne.analysis directly."""

import numpy as np
import pytest

import jaxfne as jtfne
from jaxfne.cli import readout_table


@pytest.fixture(scope="module")
def signals(tmp_path_factory):
    cfg = (jtfne.Configuration().runtime(duration_ms=300.0).column(n=40).probes(["SPK"])
           .ensemble(seeds=[1, 2, 3], sweep={"drive.current.E": [3.0, 6.0]}))
    return jtfne.simulate(jtfne.construct(cfg), store=tmp_path_factory.mktemp("a") / "r.zarr")


def test_groups_carry_mean_std_sem_and_n(signals):
    members = readout_table(signals)
    grouped = readout_table(signals, ["drive.current.E"])
    drives = np.asarray(signals.dataset["drive.current.E"].values)
    for drive in np.unique(drives):
        rows = members.iloc[np.flatnonzero(drives == drive)]
        for col in ("rate_hz_E", "cv_isi_I", "synchrony_E"):
            x = rows[col].to_numpy(dtype=float)
            got = grouped.loc[drive]
            assert got[f"{col}_mean"] == pytest.approx(x.mean(), rel=1e-12)
            assert got[f"{col}_std"] == pytest.approx(x.std(ddof=1), rel=1e-12)
            assert got[f"{col}_sem"] == pytest.approx(x.std(ddof=1) / np.sqrt(x.size), rel=1e-12)
        assert grouped.loc[drive, "n"] == 3


def test_the_window_leaves_out_the_onset(signals):
    table = readout_table(signals, window_ms=(100.0, 300.0))
    direct = jtfne.analysis.firing_rate(signals, time_window_ms=(100.0, 300.0)).sel(cell_type="E").compute()
    np.testing.assert_allclose(table["rate_hz_E"].to_numpy(dtype=float), direct.values, rtol=1e-12)
    assert not np.allclose(table["rate_hz_E"], readout_table(signals)["rate_hz_E"])


def test_an_unknown_group_is_named(signals):
    with pytest.raises(jtfne.ConfigurationError, match=r"--group-by nope is invalid; the member coordinates .* "
                                                        r"drive.current.E, seed"):
        readout_table(signals, ["nope"])
