"""Calibration (issue 17): parameter recovery, resume after SIGKILL, the search strategies, the loss, bad input.

Every calibration here runs the same shape (100-neuron networks, 200 ms,
ensembles of 32 members), so the compiled programs are shared.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import welch as scipy_welch

import jaxfne as jtfne
from jaxfne.calibration import STRATEGIES, calibrate, evaluate, loss, open_calibration
from jaxfne.calibration import statistics as calibration_statistics
from jaxfne.calibration import _calibrate
from jaxfne.calibration._targets import parse_targets

CFG = jtfne.Configuration().column(n=100).runtime(duration_ms=200.0, dt_ms=0.1).probes(["SPK"])
#: the parameters to recover; off the centre of the box, where CMA-ES starts
TRUTH = {"drive.current.E": 6.0, "drive.current.I": 2.0}
BOUNDS = {"drive.current.E": (0.0, 10.0), "drive.current.I": (0.0, 8.0)}
STATS = ["spike_rate_hz.E", "spike_rate_hz.I", "cv_isi.E", "synchrony.E"]
SEARCH = dict(method="cmaes", rounds=6, candidates=16, seeds=[0, 1], search_seed=3)
#: finite-difference steps of the slopes (a 10% change of the drive)
STEP = {"drive.current.E": 0.5, "drive.current.I": 0.5}
#: the worker is killed once this many rounds are finished (the resumed part then runs the other half)
KILL_AFTER_ROUNDS = 3


@pytest.fixture(scope="module")
def measured():
    """The synthetic target: the truth and three neighbours, each with 8 seeds of their own (one ensemble).

    Gives the target values (seed mean at the truth), the seed-to-seed sd of each statistic (pooled over the
    four points, 28 degrees of freedom) and the local slopes d statistic / d parameter (central difference in
    E drive, forward in I drive; the same seeds at every point, so seed noise largely cancels).
    """
    e, i = TRUTH["drive.current.E"], TRUTH["drive.current.I"]
    de, di = STEP["drive.current.E"], STEP["drive.current.I"]
    # zip sweep: values may not repeat on a path, so "unchanged" is moved by 1e-9 (far below any effect)
    sweep = {"drive.current.E": [e, e + de, e + 1e-9, e - de], "drive.current.I": [i, i + 1e-9, i + di, i + 2e-9]}
    seeds = list(range(100, 108))
    signals = jtfne.simulate(jtfne.construct(CFG.ensemble(seeds=seeds, sweep=sweep, mode="zip")))
    targets = parse_targets("test", CFG, {s: (0.0, 1.0) for s in STATS})
    r = evaluate(signals, targets).reshape(4, len(seeds), len(STATS))
    assert np.isfinite(r).all()
    sd = np.sqrt(r.var(axis=1, ddof=1).mean(axis=0))
    mean = r.mean(axis=1)
    slopes = np.stack([(mean[1] - mean[3]) / (2 * de), (mean[2] - mean[0]) / di], axis=1)   # (stat, param)
    return {"value": mean[0], "sd": sd, "slopes": slopes, "n_target_seeds": len(seeds), "networks_at_truth": r[0],
            "signals": signals}


WORKER = """
import sys
sys.path.insert(0, {tests!r})
import test_calibration as t
from jaxfne.calibration import calibrate
calibrate(t.CFG, t.BOUNDS, {targets!r}, store={store!r}, progress=False, **t.SEARCH)
"""


class Killer(threading.Thread):
    """Runs the calibration in a subprocess and SIGKILLs it as soon as the store holds KILL_AFTER_ROUNDS rounds
    (in the next round's simulation: the marker is the last thing a round writes)."""

    def __init__(self, targets, store: Path):
        super().__init__(daemon=True)
        self.store = store
        script = store.parent / "worker.py"
        script.write_text(WORKER.format(tests=str(Path(__file__).parent), targets=targets, store=str(store)))
        env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
        self.proc = subprocess.Popen([sys.executable, str(script)], env=env, stderr=subprocess.PIPE)
        self.killed_while_running, self.stderr = False, ""

    def run(self):
        deadline = time.monotonic() + 300
        try:
            while time.monotonic() < deadline and self.proc.poll() is None:
                attrs = _calibrate.read_attrs(self.store)
                if attrs is not None and attrs["rounds_done"] >= KILL_AFTER_ROUNDS:
                    self.proc.send_signal(signal.SIGKILL)
                    self.killed_while_running = self.proc.wait() == -signal.SIGKILL
                    break
                time.sleep(0.02)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.stderr = self.proc.stderr.read().decode()[-3000:]
            self.proc.stderr.close()


@pytest.fixture(scope="module")
def recovery(measured, tmp_path_factory):
    """The calibration of the synthetic target, uninterrupted; meanwhile the same calibration runs into a store in
    a subprocess that is killed (SIGKILL) after KILL_AFTER_ROUNDS finished rounds (its compilation overlaps
    this one)."""
    targets = {s: (float(v), float(d)) for s, v, d in zip(STATS, measured["value"], measured["sd"])}
    killer = Killer(targets, tmp_path_factory.mktemp("resume") / "cal.zarr")
    killer.start()
    try:
        result = calibrate(CFG, BOUNDS, targets, progress=False, **SEARCH)
    finally:
        killer.join(timeout=330)
    return targets, result, killer


def test_cmaes_recovers_known_parameters_within_the_seed_noise(measured, recovery):
    """The best candidate lies within 3 standard errors of the truth, the standard errors being what the
    seed-to-seed spread of the statistics implies through their slopes.

    A candidate's statistics are means over 2 seeds and the target a mean over 8, so each statistic k errs by
    sd_k^2 (1/2 + 1/8) in variance; through the slopes J (stat x param) a least-squares fit weighted by 1/sd^2
    (what the loss is) errs by cov = (J^T W J)^-1 (1/2 + 1/8) in parameter space.
    """
    _, res, _ = recovery
    J, sd = measured["slopes"], measured["sd"]
    W = np.diag(1.0 / sd**2)
    cov = np.linalg.inv(J.T @ W @ J) * (1 / 2 + 1 / measured["n_target_seeds"])
    tol = 3 * np.sqrt(np.diag(cov))
    width = np.array([hi - lo for lo, hi in BOUNDS.values()])
    # the tolerance is informative: much narrower than the box, and the box centre (CMA-ES's start) is outside it
    assert (tol < 0.2 * width).all(), tol
    centre = np.array([(lo + hi) / 2 for lo, hi in BOUNDS.values()])
    truth = np.array(list(TRUTH.values()))
    assert (np.abs(centre - truth) > tol).any()
    best = np.array([res.best[p] for p in TRUTH])
    assert (np.abs(best - truth) <= tol).all(), (best, truth, tol)
    # and the best candidate's statistics are within 3 standard errors of the targets
    assert res.best_loss < 9 * (1 / 2 + 1 / 8), res.best_loss
    # the loss as documented, recomputed from the history with numpy
    h = res.history
    m = h["readouts"].values.mean(axis=2)
    z2 = ((m - h["target_value"].values) / h["target_sd"].values) ** 2
    # a NaN statistic (no ISI pair: a silent population) ranks the candidate last
    np.testing.assert_allclose(h["loss"].values, np.nan_to_num(z2.mean(axis=-1), nan=np.inf))
    assert res.best_loss == h["loss"].values.min()
    # CMA-ES improves: the last round's best is better than the first round's
    assert h["loss"].values[-1].min() < h["loss"].values[0].min()
    # the ready configuration carries the best parameters
    d = res.configuration.to_dict()["drive"]["current"]
    assert d["E"] == res.best["drive.current.E"] and d["I"] == res.best["drive.current.I"]
    assert res.configuration.ensemble_spec is None


def test_resume_after_sigkill_gives_the_uninterrupted_result(recovery):
    """A calibration process killed with SIGKILL during a round resumes after its last finished
    round; the finished calibration equals the uninterrupted one (the fixture's) in every candidate and readout."""
    targets, reference, killer = recovery
    assert killer.killed_while_running, killer.stderr
    store = killer.store
    done = _calibrate.read_attrs(store)["rounds_done"]
    assert KILL_AFTER_ROUNDS <= done < SEARCH["rounds"]
    resumed = calibrate(CFG, BOUNDS, targets, store=str(store), progress=False, **SEARCH)
    for name in ("unit", "params", "readouts", "loss"):
        np.testing.assert_array_equal(resumed.history[name].values, reference.history[name].values, err_msg=name)
    assert resumed.best == reference.best and resumed.best_loss == reference.best_loss
    # the store read back lazily is the same history
    opened = open_calibration(store)
    assert opened.rounds_done == SEARCH["rounds"]
    np.testing.assert_array_equal(opened.history["readouts"].values, reference.history["readouts"].values)
    assert opened.best == reference.best
    # a finished store is read, not run again; another calibration's arguments are refused
    again = calibrate(CFG, BOUNDS, targets, store=str(store), progress=False, **SEARCH)
    np.testing.assert_array_equal(again.history["wall_s"].values, resumed.history["wall_s"].values)
    with pytest.raises(jtfne.StoreError, match="holds a different calibration.*search_seed"):
        calibrate(CFG, BOUNDS, targets, store=str(store), progress=False, **{**SEARCH, "search_seed": 4})


def test_string_targets_equal_the_readouts(measured):
    """Rates and ISI CVs named by strings (computed with jaxfne.analysis) equal jaxfne.compute_readout's."""
    signals = measured["signals"]
    specs = [jtfne.readout_spec("r", "spike_rate_hz", cell_type="E"), jtfne.readout_spec("c", "cv_isi", cell_type="I"),
             jtfne.readout_spec("rl", "spike_rate_hz", layer="L2/3", cell_type="I")]
    ours = calibration_statistics(signals, ["spike_rate_hz.E", "cv_isi.I", "spike_rate_hz.L2/3.I", *specs])
    ref = jtfne.compute_readout(signals, specs)
    for j, name in enumerate(("r", "c", "rl")):
        np.testing.assert_allclose(ours[:, j], ref[name].value, rtol=1e-12)
        np.testing.assert_array_equal(ours[:, 3 + j], ref[name].value)      # a spec key goes to compute_readout


# -- the strategies and the loss, without simulation --------------------------------------------------------


@pytest.mark.parametrize("method", sorted(STRATEGIES))
def test_strategies_are_deterministic_and_replayable(method):
    """Rebuilt from the seed and told the same rounds, a strategy proposes the same next round (bitwise)."""
    rng = np.random.default_rng(0)
    a = STRATEGIES[method](3, 8, 11)
    rounds = []
    for _ in range(3):
        x = a.ask()
        assert x.shape == (8, 3) and (x >= 0).all() and (x <= 1).all()
        f = rng.random(8)
        rounds.append((x, f))
        a.tell(x, f)
    b = STRATEGIES[method](3, 8, 11)
    for x, f in rounds:
        np.testing.assert_array_equal(b.ask(), x)
        b.tell(x, f)
    np.testing.assert_array_equal(a.ask(), b.ask())
    assert not np.array_equal(STRATEGIES[method](3, 8, 12).ask(), rounds[0][0])


def test_latin_hypercube_fills_every_stratum_once():
    x = STRATEGIES["lhs"](4, 10, 0).ask()
    for j in range(4):
        assert sorted(np.floor(x[:, j] * 10).astype(int)) == list(range(10))


def test_cmaes_moves_towards_a_minimum():
    """On a quadratic bowl at 0.2 the CMA-ES mean approaches it (a check that ask/tell are wired right)."""
    s = STRATEGIES["cmaes"](2, 8, 0)
    for _ in range(30):
        x = s.ask()
        s.tell(x, ((x - 0.2) ** 2).sum(axis=1))
    assert np.abs(s.ask().mean(axis=0) - 0.2).max() < 0.02


def test_loss_is_the_documented_formula():
    targets = parse_targets("t", CFG, {"spike_rate_hz.E": (5.0, 2.0), "cv_isi.E": (1.0, 0.5)})
    r = np.array([[[4.0, 1.0], [8.0, 2.0]], [[np.nan, 1.0], [5.0, 1.0]]])      # (candidate, seed, target)
    expected0 = (((6.0 - 5.0) / 2.0) ** 2 + ((1.5 - 1.0) / 0.5) ** 2) / 2
    np.testing.assert_allclose(loss(r, targets), [expected0, np.inf])


# -- bad input: named errors before anything is simulated --------------------------------------------------


@pytest.fixture
def no_simulation(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("simulated before the input was checked")
    monkeypatch.setattr(_calibrate, "construct", refuse)
    monkeypatch.setattr(_calibrate, "simulate", refuse)


GOOD_T = {"spike_rate_hz.E": (5.0, 1.0)}
GOOD_P = {"drive.current.E": (0.0, 10.0)}


def test_a_user_prior_outside_the_field_is_refused_before_any_simulation(monkeypatch):
    from jaxfne.calibration import _inference
    monkeypatch.setattr(_inference, "simulate", lambda *a, **k: pytest.fail("simulated"))
    match = r"params\['drive.noise.E'\] low=-.* is outside the field's allowed range: .*it must be >= 0"
    with pytest.raises(jtfne.ConfigurationError, match=match):
        jtfne.simulate_for_inference(CFG, {"drive.noise.E": lambda rng, n: rng.normal(0.0, 1.0, n)},
                                     ["spike_rate_hz.E"], n=8)


@pytest.mark.parametrize("params, targets, kwargs, error, match", [
    ({"drive.currant.E": (0, 1)}, GOOD_T, {}, jtfne.ConfigurationError,
     r"parameter 'drive.currant.E' is not a sweep path; valid paths are .*drive.current.E"),
    ({"runtime.dt_ms": (0.05, 0.1)}, GOOD_T, {}, jtfne.ConfigurationError,
     r"'runtime.dt_ms' cannot be calibrated: .*number of time steps"),
    ({"emitter.preset.E": (0, 1)}, GOOD_T, {}, jtfne.ConfigurationError, r"preset names, not numbers"),
    ({"connectivity.pathways.L4.E->L2/3.E.delay_ms": (0, 1)}, GOOD_T, {}, jtfne.ConfigurationError,
     r"delays set the length"),
    ({"connectivity.p": (0.5, 1.5)}, GOOD_T, {}, jtfne.ConfigurationError,
     r"params\['connectivity.p'\] high=1.5 is outside the field's allowed range: .*p=1.5 is invalid; it must be <= 1"),
    ({"drive.noise.E": (-1.0, 2.0)}, GOOD_T, {}, jtfne.ConfigurationError,
     r"low=-1.0 is outside the field's allowed range: .*it must be >= 0"),
    ({"drive.current.E": (5.0, 5.0)}, GOOD_T, {}, jtfne.ConfigurationError, r"low < high is required"),
    ({"drive.current.E": (0.0, float("nan"))}, GOOD_T, {}, jtfne.ConfigurationError, r"a finite number"),
    (GOOD_P, {"firing_rate.E": (5.0, 1.0)}, {}, jtfne.ConfigurationError,
     r"target 'firing_rate.E' is not a readout: statistic 'firing_rate' is unknown; .*spike_rate_hz"),
    (GOOD_P, {"spike_rate_hz.X": (5.0, 1.0)}, {}, jtfne.ConfigurationError, r"selector 'X' is not a layer"),
    (GOOD_P, {"spike_rate_hz.L5.E": (5.0, 1.0)}, {}, jtfne.ConfigurationError,
     r"layer 'L5', which the configuration does not have"),
    (GOOD_P, {"mean_V_m.E": (-60.0, 1.0)}, {}, jtfne.ConfigurationError, r"reads probe 'Vm'.*not record"),
    (GOOD_P, {"spike_rate_hz.E": (5.0, 0.0)}, {}, jtfne.ConfigurationError, r"sd=0.0 is invalid; it must be > 0"),
    (GOOD_P, {"spike_rate_hz.E": 5.0}, {}, jtfne.ConfigurationError, r"a pair \(value, sd\)"),
    (GOOD_P, GOOD_T, {"max_networks": 31}, jtfne.ConfigurationError,
     r"max_networks=31 is too small to finish one round: .* 16 x 2 = 32 networks"),
    (GOOD_P, GOOD_T, {"rounds": 0}, jtfne.ConfigurationError, r"rounds=0 is too small to finish one round"),
    (GOOD_P, GOOD_T, {"candidates": 1}, jtfne.ConfigurationError, r"CMA-ES ranks at least two"),
    (GOOD_P, GOOD_T, {"method": "nelder-mead"}, jtfne.ConfigurationError, r"method='nelder-mead' is unknown"),
    (GOOD_P, GOOD_T, {"seeds": [1, 1]}, jtfne.ConfigurationError, r"seeds must not repeat"),
    (GOOD_P, GOOD_T, {"window_ms": (100.0, 300.0)}, jtfne.ConfigurationError, r"window_ms=.* stop <= duration_ms"),
])
def test_bad_input_is_refused_before_any_simulation(no_simulation, params, targets, kwargs, error, match):
    with pytest.raises(error, match=match):
        calibrate(CFG, params, targets, progress=False, **{"seeds": 2, **kwargs})


def test_a_store_that_is_not_a_calibration_is_refused(no_simulation, tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(jtfne.StoreError, match="exists and is not a calibration store"):
        calibrate(CFG, GOOD_P, GOOD_T, store=tmp_path / "x", progress=False)


def test_only_the_cli_and_the_package_face_import_calibration():
    """The calibration package sits at the uses layer; nothing but jaxfne/cli.py and jaxfne/__init__.py imports it."""
    import ast
    pkg = Path(jtfne.__file__).parent
    for path in pkg.rglob("*.py"):
        rel = path.relative_to(pkg).as_posix()
        if rel.startswith("calibration/") or rel in ("cli.py", "__init__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, (ast.Import, ast.ImportFrom)) else []
            mod = node.module or "" if isinstance(node, ast.ImportFrom) else ""
            assert "calibration" not in mod and not any("calibration" in n for n in names), rel


SPEC = """
[runtime]
duration_ms = 200.0
[column]
n = 100
[probes]
names = ["SPK"]
[calibrate]
method = "{method}"
rounds = 2
candidates = 16
seeds = [0, 1]
[calibrate.params]
"drive.current.E" = [0.0, 10.0]
[calibrate.targets]
"spike_rate_hz.E" = [12.0, 1.0]
"""


def test_cli_calibrate_runs_a_spec_into_a_store_and_resumes_it(tmp_path, capsys):
    """`jaxfne calibrate SPEC --store` equals calibrate() on the same spec; run again, it reads the finished store."""
    from jaxfne.cli import main
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(method="lhs"))
    store = tmp_path / "cal.zarr"
    assert main(["calibrate", str(spec), "--store", str(store), "--json", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    direct = calibrate(CFG, {"drive.current.E": (0.0, 10.0)}, {"spike_rate_hz.E": (12.0, 1.0)}, method="lhs",
                       rounds=2, candidates=16, seeds=[0, 1], progress=False)
    assert out["best"] == direct.best and out["best_loss"] == direct.best_loss and out["rounds"] == 2
    assert main(["calibrate", str(spec), "--store", str(store), "--quiet"]) == 0
    assert "done: 2 rounds" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text(SPEC.format(method="lhs").replace('"spike_rate_hz.E"', '"spike_rate.E"'))
    assert main(["calibrate", str(bad), "--store", str(tmp_path / "b.zarr")]) == 2
    assert "target 'spike_rate.E' is not a readout" in capsys.readouterr().err


# -- simulation-based inference: (theta, x) from one ensemble per batch, a posterior trained for real ----------


def test_simulate_for_inference_trains_a_posterior_that_covers_the_truth(measured):
    """(theta, x) from simulate_for_inference train a conditional normalizing flow (flowjax, a masked
    autoregressive flow) as the posterior q(theta | x); conditioned on one network simulated at the truth
    (seed 100, not a training seed), its 99% interval holds the truth and it is much narrower than the prior."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax
    import paramax
    from flowjax.distributions import Normal
    from flowjax.flows import masked_autoregressive_flow

    prior = {"drive.current.E": (2.0, 10.0), "drive.current.I": (0.0, 8.0)}
    stats = ["spike_rate_hz.E", "spike_rate_hz.I"]
    # the I drive's uniform prior given as a user's sampler (the other form of a prior)
    user = {**prior, "drive.current.I": lambda rng, n: rng.uniform(0.0, 8.0, n)}
    theta, x = jtfne.simulate_for_inference(CFG, user, stats, n=80, seeds=[0, 1], batch=16, search_seed=5)
    assert theta.shape == (160, 2) and x.shape == (160, 2) and np.isfinite(x).all()
    np.testing.assert_array_equal(theta[0::2], theta[1::2])          # draw-major, seed fastest
    lo, hi = np.array([b[0] for b in prior.values()]), np.array([b[1] for b in prior.values()])
    assert ((theta >= lo) & (theta <= hi)).all()
    rng = np.random.default_rng(5)                                  # the draws are the user's, as drawn
    np.testing.assert_allclose(theta[0::2, 1], rng.uniform(0.0, 8.0, 80), rtol=1e-12)
    # the same draws as one ensemble by hand give the same statistics (the first batch)
    first = theta[0:32:2]
    cfg = CFG.ensemble(seeds=[0, 1], sweep={p: list(first[:, j]) for j, p in enumerate(prior)}, mode="zip")
    by_hand = evaluate(jtfne.simulate(jtfne.construct(cfg)), parse_targets("t", CFG, {s: (0, 1) for s in stats}))
    np.testing.assert_array_equal(by_hand, x[:32])

    # train q(theta | x) on standardised variables, full batch, Adam
    tz = jnp.asarray((theta - lo) / (hi - lo) * 2 - 1)
    xm, xs = x.mean(axis=0), x.std(axis=0)
    xz = jnp.asarray((x - xm) / xs)
    flow = masked_autoregressive_flow(jax.random.key(0), base_dist=Normal(jnp.zeros(2)), cond_dim=2,
                                      flow_layers=1, nn_width=16)
    params, static = eqx.partition(flow, eqx.is_inexact_array,
                                   is_leaf=lambda leaf: isinstance(leaf, paramax.NonTrainable))
    opt = optax.adam(5e-3)

    def nll(p):
        return -paramax.unwrap(eqx.combine(p, static)).log_prob(tz, condition=xz).mean()

    def train(p, s):
        def step(carry, _):
            p, s = carry
            value, grad = jax.value_and_grad(nll)(p)
            updates, s = opt.update(grad, s, p)
            return (optax.apply_updates(p, updates), s), value
        return jax.lax.scan(step, (p, s), None, length=400)

    (params, _), losses = jax.jit(train)(params, opt.init(params))
    assert losses[-1] < losses[0] - 1.0
    posterior = paramax.unwrap(eqx.combine(params, static))
    x_obs = measured["networks_at_truth"][0, :2]                      # seed 100 at the truth: E and I rates
    z = np.asarray(posterior.sample(jax.random.key(1), (4000,), condition=jnp.asarray((x_obs - xm) / xs)))
    samples = (z + 1) / 2 * (hi - lo) + lo
    truth = np.array(list(TRUTH.values()))
    low99, high99 = np.percentile(samples, [0.5, 99.5], axis=0)
    assert ((low99 <= truth) & (truth <= high99)).all(), (low99, high99)
    prior_sd = (hi - lo) / np.sqrt(12)
    assert (samples.std(axis=0) < 0.4 * prior_sd).all(), samples.std(axis=0)


def test_figures_of_a_calibration_read_from_its_history(recovery):
    """Convergence and marginals draw what the history holds: the best-so-far line is the running minimum."""
    from jaxfne.calibration import convergence, marginals, posterior
    _, res, _ = recovery
    fig = convergence(res)
    best_line = fig.axes[0].lines[1].get_ydata()
    np.testing.assert_allclose(best_line, res.best_so_far().values)
    fig = marginals(res, truth=TRUTH)
    assert len(fig.axes) == 3                                        # two parameters and the colour bar
    assert fig.axes[0].get_xlim() == BOUNDS["drive.current.E"]
    fig = posterior(np.random.default_rng(0).normal(5, 1, (100, 2)), list(TRUTH), truth=list(TRUTH.values()),
                    prior_bounds=list(BOUNDS.values()))
    assert len(fig.axes) == 2


def test_table_rows_have_sources_and_make_targets():
    from jaxfne.calibration import TABLE, pd14_fractions, table_targets
    assert all(r.source and r.value > 0 for r in TABLE)
    t = table_targets(["L2/3", "L4", "L5"], rel_sd=0.5)
    assert t["spike_rate_hz.L2/3.E"] == (0.751, 0.5 * 0.751)
    assert len(t) == 6
    cfg = jtfne.Configuration().column(layers=["L2/3", "L4", "L5"], n=120).cell_types(
        pd14_fractions(["L2/3", "L4", "L5"])).probes(["SPK"])
    parse_targets("t", cfg, t)                                       # every layer/type target is valid here
    with pytest.raises(jtfne.ConfigurationError, match="no spike_rate_hz for layer"):
        table_targets(["L1"])


def test_lfp_band_fraction_targets_against_scipy():
    """An LFP band target is the fraction of the proxy's Welch power in the band, averaged over contacts:
    checked against scipy.signal.welch on the recorded proxy, with the segment length analysis reports."""
    cfg = (jtfne.Configuration().runtime(duration_ms=400.0).column(n=60).probes(["SPK", "LFP-proxy"], contacts=4)
           .ensemble(seeds=[1, 2]))
    signals = jtfne.simulate(jtfne.construct(cfg))
    names = ["lfp_band_fraction_alpha", "lfp_band_fraction_beta", "lfp_band_fraction_gamma"]
    ours = calibration_statistics(signals, names)
    nperseg = int(re.search(r"nperseg=(\d+)", jtfne.analysis.lfp_spectrum(signals).attrs["description"]).group(1))
    lfp = np.asarray(signals["LFP-proxy"], dtype=float)          # (member, time, contact)
    freq, psd = scipy_welch(lfp, fs=1000.0 / 0.1, nperseg=nperseg, axis=1)   # (member, freq, contact)
    for j, (low, high) in enumerate([(8.0, 13.0), (13.0, 30.0), (30.0, 80.0)]):
        band = psd[:, (freq >= low) & (freq < high)].sum(1) / psd[:, freq > 0].sum(1)
        np.testing.assert_allclose(ours[:, j], band.mean(-1), rtol=1e-6)
    assert ((ours > 0) & (ours.sum(1, keepdims=True) < 1)).all()
    with pytest.raises(jtfne.ConfigurationError, match="takes no layer and no cell type"):
        calibration_statistics(signals, ["lfp_band_fraction_gamma.E"])
