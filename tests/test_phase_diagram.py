"""viz.phase_diagram: several per-member quantities on a sweep grid, means and seed-to-seed spread."""

import numpy as np
import pytest
from matplotlib.collections import QuadMesh

import jaxfne as jtfne
from jaxfne import analysis, viz

X, Y = "connectivity.strength.I->E", "drive.current.E"


@pytest.fixture(scope="module")
def sweep():
    """3 seeds x 2 inhibition strengths x 2 drives = 12 small members."""
    cfg = (jtfne.Configuration().runtime(duration_ms=200.0).column(n=40).probes(["SPK"])
           .ensemble(seeds=[1, 2, 3], sweep={X: [2.5, 20.0], Y: [3.0, 6.0]}))
    sig = jtfne.simulate(jtfne.construct(cfg))
    e = {"cell_type": "E"}
    return sig, {"E rate": analysis.firing_rate(sig).sel(e).compute(),
                 "E ISI CV": analysis.cv_isi(sig).sel(e).compute(),
                 "E synchrony": analysis.synchrony(sig).sel(e).compute()}


def mesh(fig, gid):
    found = [c for ax in fig.axes for c in ax.collections if isinstance(c, QuadMesh) and c.get_gid() == gid]
    assert len(found) == 1, gid
    return found[0]


def test_panels_hold_means_and_stds_over_seeds(sweep):
    sig, panels = sweep
    fig = viz.phase_diagram(panels, x=X, y=Y)
    xs, ys = sig.dataset[X].values, sig.dataset[Y].values
    for i, (label, da) in enumerate(panels.items()):
        mean = np.asarray(mesh(fig, f"phase-mean-{i}").get_array()).reshape(2, 2)
        std = np.asarray(mesh(fig, f"phase-std-{i}").get_array()).reshape(2, 2)
        for r, yv in enumerate((3.0, 6.0)):
            for c, xv in enumerate((2.5, 20.0)):
                vals = da.values[(xs == xv) & (ys == yv)]
                assert vals.size == 3
                vals = vals[np.isfinite(vals)]
                assert mean[r, c] == pytest.approx(vals.mean())
                if vals.size >= 2:
                    assert std[r, c] == pytest.approx(vals.std(ddof=1))
        ax_mean, ax_std = mesh(fig, f"phase-mean-{i}").axes, mesh(fig, f"phase-std-{i}").axes
        assert ax_mean.get_title() == f"{label}\nmean over 3 seeds"
        assert ax_std.get_title() == f"{label}\nseed-to-seed std (3 seeds)"
    # shared axes: every panel has the same x and y ticks; labels carry units
    axes = [mesh(fig, f"phase-{k}-{i}").axes for k in ("mean", "std") for i in range(3)]
    assert all(ax.get_shared_x_axes().joined(axes[0], ax) and ax.get_shared_y_axes().joined(axes[0], ax)
               for ax in axes)
    assert [t.get_text() for t in axes[3].get_xticklabels()] == ["2.5", "20"]   # bottom row: tick labels
    assert axes[3].get_xlabel() == f"{X} (current, a.u.)"
    assert axes[0].get_ylabel() == f"{Y} (current, a.u.)"
    # one colour bar per panel, in the quantity's units
    bars = sorted(ax.get_ylabel() for ax in fig.axes if ax not in axes)
    assert bars == sorted(["mean E rate (Hz)", "std E rate (Hz)", "mean E ISI CV (dimensionless)",
                           "std E ISI CV (dimensionless)", "mean E synchrony (dimensionless)",
                           "std E synchrony (dimensionless)"])
    fig.savefig(__import__("io").BytesIO(), format="png")


def test_without_spread_row_and_with_a_list(sweep):
    _, panels = sweep
    fig = viz.phase_diagram(list(panels.values())[:2], x=X, y=Y, spread=False, annotate=False)
    assert not [c for ax in fig.axes for c in ax.collections if str(c.get_gid()).startswith("phase-std")]
    assert mesh(fig, "phase-mean-0").axes.get_title() == "firing_rate\nmean over 3 seeds"


def test_uneven_seed_counts_and_errors(sweep):
    sig, panels = sweep
    cv = panels["E ISI CV"].copy()
    cv[0] = np.nan                       # one member without a finite CV: that cell has 2 seeds
    fig = viz.phase_diagram({"cv": cv}, x=X, y=Y)
    assert mesh(fig, "phase-mean-0").axes.get_title() == "cv\nmean over 2-3 seeds"
    with pytest.raises(jtfne.ReadoutError, match="'nope' is not a member coordinate"):
        viz.phase_diagram(panels, x="nope", y=Y)
    with pytest.raises(jtfne.ReadoutError, match="panels is empty"):
        viz.phase_diagram({}, x=X, y=Y)
    with pytest.raises(jtfne.ReadoutError, match="different"):
        viz.phase_diagram({"a": panels["E rate"], "b": panels["E rate"].isel(member=slice(0, 6))}, x=X, y=Y)
    with pytest.raises(jtfne.ReadoutError, match=r"dims \('member', 'cell_type'\)"):
        viz.phase_diagram({"all": analysis.firing_rate(sig).compute()}, x=X, y=Y)
