"""User-defined networks: weights, fixed in-degree, autapses, delta synapses, per-neuron parameters,
held noise and array-driven currents, each against an independent reference (numpy, counts, closed forms).

The engines' agreement on each is tests/test_conformance.py's; the Izhikevich (2003) network built from
all of them is tests/test_izhikevich2003.py's.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
import scipy.sparse

import jaxfne as jtfne
from jaxfne.engine._step import poisson_input, stimulus_current
from jaxfne.model import precision

N = 40
N_E = 30
EXC = np.arange(N) < N_E


def base(**runtime):
    return (jtfne.Configuration().runtime(**{"seed": 3, "duration_ms": 40.0, "dt_ms": 0.5, "dtype": "float64",
                                             **runtime})
            .column(n=N).cell_types({"E": 0.75, "I": 0.25}))


def signed_weights(seed=0, density=0.3, diagonal=False):
    rng = np.random.default_rng(seed)
    w = (rng.random((N, N)) < density) * rng.random((N, N)) * np.where(EXC, 1.5, -4.0)[None, :]
    return w if diagonal else w * (1 - np.eye(N))


# -- weights ------------------------------------------------------------------------------------------

def test_user_weights_reach_the_step_once_for_every_member():
    W = signed_weights()
    model = jtfne.construct(base().connectivity(weights=W).ensemble(seeds=[1, 2, 3]))
    w = np.asarray(model.params.w)
    assert w.shape == (N + 1, N) and model.layout.shared_weights        # one copy, no member axis
    np.testing.assert_array_equal(w[:N], np.abs(W).T)                   # row j: the weights from cell j
    assert not w[N].any()


def test_delta_synapses_deliver_w_over_dt_for_one_step():
    """source (the synaptic current) at step t + 1 is sum over the cells j that spiked at step t of W[:, j] / dt,
    and nothing of earlier spikes: a numpy reference from the recorded raster."""
    W = signed_weights(diagonal=True)
    cfg = (base().connectivity(weights=W, autapses=True, synapse="delta")
           .drive(current={"E": 8.0, "I": 4.0}, noise=2.0).probes(["SPK", "source"]))
    sig = jtfne.simulate(jtfne.construct(cfg), engine="xla")
    spk, src = np.asarray(sig["SPK"], float), np.asarray(sig["source"])
    assert spk.sum() > 50
    expected = spk[:-1] @ W.T / 0.5                                      # (time, post)
    np.testing.assert_allclose(src[1:], expected, rtol=1e-12, atol=1e-12)
    assert not src[0].any()


def test_weight_signs_shapes_and_diagonal_are_checked_by_name():
    W = signed_weights()
    bad = W.copy()
    bad[4, 2] = -0.1                                                    # cell 2 is E
    with pytest.raises(jtfne.ConfigurationError, match=r"weights\[4, 2\]=-0\.1 is invalid; neuron 2 is an E cell"):
        jtfne.construct(base().connectivity(weights=bad))
    bad = W.copy()
    bad[0, 35] = 0.2                                                    # cell 35 is I
    with pytest.raises(jtfne.ConfigurationError, match=r"weights\[0, 35\]=0\.2 .* I cell"):
        jtfne.construct(base().connectivity(weights=bad))
    with pytest.raises(jtfne.ConfigurationError, match=r"shape \(39, 39\).*\(40, 40\)"):
        jtfne.construct(base().connectivity(weights=W[:39, :39]))
    with pytest.raises(jtfne.ConfigurationError, match=r"weights\[3, 3\]=.*autapses=True"):
        base().connectivity(weights=signed_weights() + np.diag(np.arange(N) == 3) * 0.1)
    with pytest.raises(jtfne.ConfigurationError, match=r"weights\[0, 1\]=nan .* finite"):
        base().connectivity(weights=np.where(np.eye(N, k=1, dtype=bool), np.nan, 0.0))
    with pytest.raises(jtfne.ConfigurationError, match="square"):
        base().connectivity(weights=np.zeros((3, 4)))
    with pytest.raises(jtfne.ConfigurationError, match="2 or 3 dimensions"):
        base().connectivity(weights=np.zeros(4))  # 2 or 3 dimensions (one matrix per member)


def test_weights_are_copied_hashed_and_round_trip():
    W = signed_weights()
    cfg = base().connectivity(weights=W)
    h = cfg.config_hash()
    W[0, 1] = 123.0                                                      # the caller's array changes afterwards
    assert cfg.config_hash() == h and cfg.connectivity_spec.weights.data[0, 1] != 123.0
    back = jtfne.Configuration.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.config_hash() == h
    sparse = base().connectivity(weights=scipy.sparse.csr_matrix(signed_weights()))
    assert sparse == cfg
    tampered = cfg.to_dict()
    tampered["connectivity"]["weights"]["array"]["sha256"] = "0" * 64
    with pytest.raises(jtfne.ConfigurationError, match="do not match"):
        jtfne.Configuration.from_dict(tampered)


# -- connection rules ---------------------------------------------------------------------------------

@pytest.mark.parametrize("autapses", [False, True])
def test_fixed_indegree_gives_every_neuron_exactly_its_inputs(autapses):
    p = 0.3
    model = jtfne.construct(base().connectivity(rule="fixed_indegree", p=p, autapses=autapses).ensemble(seeds=[1, 2]))
    w = np.asarray(model.params.w)[:, :N] > 0                            # (member, pre, post)
    for m in range(2):
        for post in range(N):
            for group, size in ((EXC, N_E), (~EXC, N - N_E)):
                candidates = size - (0 if autapses or not group[post] else 1)
                assert w[m, group, post].sum() == np.floor(p * candidates + 0.5)
        assert w[m].diagonal().any() == autapses                       # self-inputs only with autapses
    assert not np.array_equal(w[0], w[1])                                # each member draws its own


def test_autapses_with_the_probability_rule():
    full = np.asarray(jtfne.construct(base().connectivity(p=1.0, autapses=True)).params.w)[0, :N]
    none = np.asarray(jtfne.construct(base().connectivity(p=1.0)).params.w)[0, :N]
    assert (full > 0).all()                                              # all to all, self included
    assert not none.diagonal().any() and (none + np.eye(N) > 0).all()


# -- neurons and drive ---------------------------------------------------------------------------------

def test_per_neuron_parameters_replace_the_preset():
    d = np.linspace(2.0, 8.0, N)
    model = jtfne.construct(base().set_emitter(per_neuron={"d": d}).ensemble(seeds=[1, 2]))
    np.testing.assert_array_equal(np.asarray(model.params.d), np.stack([d, d]))
    assert not np.allclose(np.asarray(model.params.c[0]), -65.0)          # c still from cortical_eig's r
    with pytest.raises(jtfne.ConfigurationError, match=r"per_neuron\['d'\] of shape \(39,\).*\(40,\)"):
        jtfne.construct(base().set_emitter(per_neuron={"d": d[:39]}))
    with pytest.raises(jtfne.ConfigurationError, match=r"per_neuron\['c'\]\[2\]=30\.0 .* below the spike peak"):
        base().set_emitter(per_neuron={"c": [-65.0, -60.0, 30.0]})
    with pytest.raises(jtfne.ConfigurationError, match=r"parameter 'e' is unknown"):
        base().set_emitter(per_neuron={"e": d})


def test_held_noise_is_constant_over_its_interval_with_the_stated_spread():
    """Uncoupled cells, no constant drive: the input current backed out of the recorded (v, u) of each
    step (forward Euler, float64) is constant over each 1-ms hold (10 steps) and its spread over the
    holds is sigma / sqrt(1 ms) = 5."""
    cfg = (base(dt_ms=0.1, duration_ms=100.0).column(n=200)
           .connectivity(strength={"E->E": 0.0, "E->I": 0.0, "I->E": 0.0, "I->I": 0.0})
           .set_emitter(preset="regular_spiking").drive(current=0.0, noise=5.0, noise_hold_ms=1.0)
           .probes(["SPK", "Vm", "u"]))
    model = jtfne.construct(cfg)
    sig = jtfne.simulate(model, engine="xla")
    v, u, spk = (np.asarray(sig[k]) for k in ("Vm", "u", "SPK"))
    a, b = np.asarray(model.params.a[0]), np.asarray(model.params.b[0])
    v0 = np.vstack([np.full((1, 200), -65.0), v[:-1]])
    u0 = np.vstack([b[None, :] * -65.0, u[:-1]])
    current = (v - v0) / 0.1 - (0.04 * v0 * v0 + 5.0 * v0 + 140.0 - u0)
    ok = ~spk & ~np.vstack([np.zeros((1, 200), bool), spk[:-1]])        # no reset in or just before the step
    blocks = current.reshape(100, 10, 200)
    okb = ok.reshape(100, 10, 200).all(axis=1)
    spread_within = (blocks.max(axis=1) - blocks.min(axis=1))[okb]
    assert okb.sum() > 15000 and spread_within.max() < 1e-8
    held = blocks[:, 0][okb]
    assert abs(held.std() / 5.0 - 1.0) < 0.03                           # 2e4 samples: a 3 % band is ~6 sd
    assert abs(held.mean()) < 0.15


# -- array-driven current -------------------------------------------------------------------------------

def test_array_stimulus_current_matches_its_table():
    course = np.linspace(-3.0, 9.0, 7)
    table = np.arange(15.0).reshape(5, 3) - 4.0
    cfg = (base(dt_ms=0.1, duration_ms=20.0)
           .stimulus("course", kind="array", values=course, sample_ms=1.0, onset_ms=2.0, amplitude=2.0,
                     cell_type="I")
           .stimulus("table", kind="array", values=table, onset_ms=0.5, neurons=[3, 17, 38]))
    model = jtfne.construct(cfg)
    p = model.member_params(0)
    with precision("float64"):
        got = np.asarray(jax.jit(jax.vmap(lambda t: stimulus_current(p, t)))(np.arange(200, dtype=np.uint32)))
    ref = np.zeros((200, N))
    for t in range(200):
        k = t - 20
        if 0 <= k < 70:
            ref[t, ~EXC] += 2.0 * course[k // 10]
        k = t - 5
        if 0 <= k < 5:
            ref[t, [3, 17, 38]] += table[k]
    np.testing.assert_array_equal(got, ref)


def test_array_stimulus_mistakes_are_named():
    with pytest.raises(jtfne.ConfigurationError, match=r"4 columns but the stimulus has 3 targets"):
        jtfne.construct(base().stimulus("t", kind="array", values=np.ones((5, 4)), neurons=[1, 2, 3]))
    with pytest.raises(jtfne.ConfigurationError, match=r"fraction.*2-D"):
        base().stimulus("t", kind="array", values=np.ones((5, 4)), fraction=0.5)
    with pytest.raises(jtfne.ConfigurationError, match=r"values\[2\]=inf"):
        base().stimulus("t", kind="array", values=[1.0, 2.0, np.inf])
    with pytest.raises(jtfne.ConfigurationError, match=r"sample_ms=0\.25 is invalid; it must be a whole number"):
        jtfne.construct(base().stimulus("t", kind="array", values=[1.0, 2.0], sample_ms=0.25))
    with pytest.raises(jtfne.ConfigurationError, match=r"noise_hold_ms=0\.75 is invalid"):
        jtfne.construct(base().drive(noise_hold_ms=0.75))


def test_array_stimulus_per_member():
    """per_member=True: member m is driven by its own values (one time course, or one column per target),
    the other stimuli's rows shared; member m of the ensemble equals its values run alone, bit for bit."""
    courses = np.stack([np.linspace(0.0, 12.0, 20), np.linspace(12.0, 0.0, 20), np.full(20, 6.0)])
    columns = np.arange(3 * 4 * 2, dtype=float).reshape(3, 4, 2)
    cfg = (base(duration_ms=12.0, seed=5)
           .stimulus("course", kind="array", values=courses, per_member=True, onset_ms=1.0)
           .stimulus("columns", kind="array", values=columns, per_member=True, sample_ms=2.0, neurons=[4, 35])
           .stimulus("shared", kind="array", values=[1.0, -1.0], sample_ms=5.0)
           .probes(["SPK", "Vm"]).ensemble(seeds=[5, 6, 7]))
    model = jtfne.construct(cfg)
    assert model.layout.stim_table_per_member and model.params.stim_table.shape == (3, 20 + 4 + 2, N)
    for m in range(3):
        p = model.member_params(m)
        with precision("float64"):
            got = np.asarray(jax.jit(jax.vmap(lambda t: stimulus_current(p, t)))(np.arange(24, dtype=np.uint32)))
        ref = np.zeros((24, N))
        for t in range(24):
            if 0 <= t - 2 < 20:
                ref[t] += courses[m, t - 2]
            if t < 16:
                ref[t, [4, 35]] += columns[m, t // 4]
            if t < 20:
                ref[t] += [1.0, -1.0][t // 10]
        np.testing.assert_array_equal(got, ref)
    sig = jtfne.simulate(model, engine="xla")
    alone = jtfne.simulate(jtfne.construct(
        base(duration_ms=12.0, seed=7)
        .stimulus("course", kind="array", values=courses[2], onset_ms=1.0)
        .stimulus("columns", kind="array", values=columns[2], sample_ms=2.0, neurons=[4, 35])
        .stimulus("shared", kind="array", values=[1.0, -1.0], sample_ms=5.0).probes(["SPK", "Vm"])), engine="xla")
    np.testing.assert_array_equal(np.asarray(sig["Vm"])[2], np.asarray(alone["Vm"]))
    with pytest.raises(jtfne.ConfigurationError, match=r"'columns'\]: values of shape \(3, 4, 2\) is invalid; "
                                                       r"per_member=True needs one entry per ensemble member.*2 member"):
        jtfne.construct(cfg.ensemble(seeds=[5, 6]))
    with pytest.raises(jtfne.ConfigurationError, match=r"values.*per_member=True.*got 1 axes and per_member"):
        base().stimulus("c", kind="array", values=[1.0, 2.0], per_member=True)
    with pytest.raises(jtfne.ConfigurationError, match=r"values.*got 3 axes"):
        base().stimulus("c", kind="array", values=columns)
    with pytest.raises(jtfne.ConfigurationError, match=r"per_member=.?yes"):
        base().stimulus("c", kind="array", values=courses, per_member="yes")
    shared = base().stimulus("c", kind="array", values=[1.0, 2.0])
    assert shared.stimulus("c", per_member=False).config_hash() == shared.config_hash()   # the default: not stored
    again = jtfne.Configuration.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.config_hash() == cfg.config_hash()


def test_stimulus_amplitude_sweep_shares_one_program():
    """Sweeping an array stimulus's amplitude changes arrays, not the program: each member's current
    is its amplitude times the table."""
    cfg = (base(dt_ms=0.5, duration_ms=5.0).stimulus("course", kind="array", values=[1.0, -2.0, 4.0], neurons=[0])
           .ensemble(seeds=[1], sweep={"stimulus.course.amplitude": [1.0, 3.0]}))
    model = jtfne.construct(cfg)
    with precision("float64"):
        got = [float(stimulus_current(model.member_params(m), np.uint32(2))[0]) for m in range(2)]
    assert got == [4.0, 12.0]


def test_conductance_synapses_against_numpy():
    """source at step t is g_E (E_E - v) + g_I (E_I - v) with v at the start of step t and the conductances
    rebuilt in numpy from the recorded raster (g <- g exp(-dt / tau) + sum of the weights of the spikes)."""
    W = signed_weights() * 0.02
    cfg = (base().connectivity(weights=W, synapse="conductance", reversal_mv={"E": 0.0, "I": -75.0},
                               tau_exc_ms=4.0, tau_inh_ms=9.0)
           .drive(current={"E": 8.0, "I": 4.0}, noise=2.0).probes(["SPK", "Vm", "source"]))
    model = jtfne.construct(cfg)
    sig = jtfne.simulate(model, engine="xla")
    spk, vm, src = np.asarray(sig["SPK"]), np.asarray(sig["Vm"]), np.asarray(sig["source"])
    assert spk.sum() > 50
    c = np.asarray(model.params.c[0])
    v_start = np.vstack([np.full((1, N), -65.0), np.where(spk[:-1], c[None, :], vm[:-1])])
    g_e, g_i, expected = np.zeros(N), np.zeros(N), np.zeros_like(src)
    for t in range(len(src)):
        expected[t] = g_e * (0.0 - v_start[t]) + g_i * (-75.0 - v_start[t])
        g_e = g_e * np.exp(-0.5 / 4.0) + np.abs(W[:, EXC & spk[t]]).sum(axis=1)
        g_i = g_i * np.exp(-0.5 / 9.0) + np.abs(W[:, ~EXC & spk[t]]).sum(axis=1)
    np.testing.assert_allclose(src, expected, rtol=1e-10, atol=1e-10)
    assert (src[spk.sum(axis=1).cumsum() > 0] != 0).any()


def test_synapse_kinds_per_pathway_against_numpy():
    """E->E delta, E->I exponential, I->E conductance, I->I exponential in one network: the current into
    each neuron at step t rebuilt in numpy from the recorded raster, each postsynaptic type with the kinds
    of its own pathways (an E cell's E input lasts one step; an I cell's decays with tau_exc; an E cell's
    I input is g (E_I - v); an I cell's a current)."""
    W = signed_weights() * np.where(EXC, 1.0, 0.05)[:, None]     # small conductances onto the E cells
    kinds = {"E->E": "delta", "E->I": "exponential", "I->E": "conductance", "I->I": "exponential"}
    cfg = (base().connectivity(weights=W, synapse=kinds, reversal_mv={"I": -75.0}, tau_exc_ms=4.0,
                               tau_inh_ms=9.0)
           .drive(current={"E": 8.0, "I": 10.0}, noise=2.0).probes(["SPK", "Vm", "source"]))
    model = jtfne.construct(cfg)
    assert model.layout.conductance == ((False, False), (True, False))
    sig = jtfne.simulate(model, engine="xla")
    spk, vm, src = np.asarray(sig["SPK"]), np.asarray(sig["Vm"]), np.asarray(sig["source"])
    assert spk[:, EXC].sum() > 30 and spk[:, ~EXC].sum() > 30
    c = np.asarray(model.params.c[0])
    v_start = np.vstack([np.full((1, N), -65.0), np.where(spk[:-1], c[None, :], vm[:-1])])
    dt, e_e, e_i = 0.5, np.exp(-0.5 / 4.0), np.exp(-0.5 / 9.0)
    s_e, s_i, expected = np.zeros(N), np.zeros(N), np.zeros_like(src)
    for t in range(len(src)):
        i_inh = np.where(EXC, s_i * (-75.0 - v_start[t]), -s_i)
        expected[t] = s_e + i_inh
        from_e = np.abs(W[:, EXC & spk[t]]).sum(axis=1)
        s_e = np.where(EXC, from_e / dt, s_e * e_e + from_e)
        s_i = s_i * e_i + np.abs(W[:, ~EXC & spk[t]]).sum(axis=1)
    np.testing.assert_allclose(src, expected, rtol=1e-10, atol=1e-10)


def test_synapse_kinds_per_pathway_are_canonical_and_named():
    """A type's kind sets both of its pathways; a pathway its own; equal tables are one configuration (one
    hash, one dict); the order within one call: types first, then pathways."""
    c = jtfne.Configuration()
    one = c.connectivity(synapse={"E->E": "delta"})
    assert one.connectivity_spec.synapse == (("E->E", "delta"), ("E->I", "exponential"), ("I", "exponential"))
    both = c.connectivity(synapse={"E->E": "delta", "E->I": "delta"})
    assert both.config_hash() == c.connectivity(synapse={"E": "delta"}).config_hash()
    assert both.connectivity_spec.synapse == (("E", "delta"), ("I", "exponential"))
    assert one.connectivity(synapse={"E": "exponential"}).config_hash() == c.config_hash()
    assert (c.connectivity(synapse={"E->E": "delta", "E": "conductance"}).connectivity_spec.synapse
            == (("E->E", "delta"), ("E->I", "conductance"), ("I", "exponential")))
    again = jtfne.Configuration.from_dict(json.loads(json.dumps(one.to_dict())))
    assert again == one and again.config_hash() == one.config_hash()
    with pytest.raises(jtfne.ConfigurationError, match=r"synapse.*'E->X'.*pathway \(E->E, E->I, I->E, I->I\)"):
        c.connectivity(synapse={"E->X": "delta"})
    with pytest.raises(jtfne.ConfigurationError, match=r"synapse\['I->E'\].*'alpha'"):
        c.connectivity(synapse={"I->E": "alpha"})


def test_poisson_source_onto_a_delta_pathway_moves_v_by_its_weight():
    """A Poisson source onto the E accumulator, with E->E delta and E->I exponential: 1 / dt on its E
    targets (v moves by about the weight per spike), 1 on its I targets (the weight enters the decaying
    current)."""
    cfg = (base().connectivity(synapse={"E->E": "delta"})
           .stimulus("kick", kind="poisson", rate_hz=50.0, n_sources=5, weight=2.0, synapse="E", fraction=1.0))
    target = np.asarray(jtfne.construct(cfg).params.stim_target)[0, 0]
    np.testing.assert_array_equal(target, np.where(EXC, 1.0 / 0.5, 1.0))


def test_inhomogeneous_poisson_follows_its_profile():
    """Counts per step of a Poisson source with a rate profile: 0 where the factor is 0 and outside the
    profile, and a mean of n_sources * q_k in row k (q_k = floor(q 2^24 factor + 0.5) / 2^24), within
    4 standard errors over 50 steps x 40 targets per row."""
    profile = np.array([0.0, 1.0, 3.0, 0.5])
    cfg = (base(dt_ms=0.1, duration_ms=30.0)
           .stimulus("drive", kind="poisson", rate_hz=40.0, n_sources=100, weight=1.0, profile=profile,
                     sample_ms=5.0, onset_ms=2.0))
    model = jtfne.construct(cfg)
    assert model.layout.poisson_profiles
    p = model.member_params(0)
    with precision("float64"):
        counts = np.asarray(jax.jit(jax.vmap(lambda t: poisson_input(p, t)[0]))(np.arange(300, dtype=np.uint32)))
    assert not counts[:20].any() and not counts[220:].any()            # before the onset, after the profile
    base_threshold = round(40.0 * 0.1 / 1000.0 * 2**24)
    for k, factor in enumerate(profile):
        rows = counts[20 + 50 * k: 20 + 50 * (k + 1)]
        q = np.floor(base_threshold * factor + 0.5) / 2**24
        mean, var = 100 * q, 100 * q * (1 - q)
        if factor == 0:
            assert not rows.any()
        else:
            assert abs(rows.mean() - mean) < 4 * np.sqrt(var / rows.size), (k, rows.mean(), mean)
    with pytest.raises(jtfne.ConfigurationError, match=r"profile's largest factor"):
        jtfne.construct(base().stimulus("d", kind="poisson", rate_hz=900.0, n_sources=1, weight=1.0,
                                        profile=[1.0, 3.0]))


def test_one_weight_matrix_per_member():
    W = np.stack([signed_weights(seed=1), signed_weights(seed=2)])
    model = jtfne.construct(base().connectivity(weights=W).ensemble(seeds=[5, 6]))
    assert not model.layout.shared_weights
    w = np.asarray(model.params.w)
    assert w.shape == (2, N + 1, N)
    for m in range(2):
        np.testing.assert_array_equal(w[m, :N], np.abs(W[m]).T)
    sig = jtfne.simulate(model, engine="xla", duration_ms=10.0)
    alone = jtfne.simulate(jtfne.construct(base(duration_ms=10.0, seed=6).connectivity(weights=W[1])), engine="xla")
    np.testing.assert_array_equal(np.asarray(sig["SPK"])[1], np.asarray(alone["SPK"]))   # member 1 = W[1] alone
    with pytest.raises(jtfne.ConfigurationError, match=r"shape \(2, 40, 40\).*one \(40, 40\) matrix per member "
                                                       r"\(3 members\)"):
        jtfne.construct(base().connectivity(weights=W).ensemble(seeds=[1, 2, 3]))
    bad = W.copy()
    bad[1, 0, 33] = 0.5
    with pytest.raises(jtfne.ConfigurationError, match=r"weights\[1, 0, 33\]=0\.5 .* I cell in member 1"):
        jtfne.construct(base().connectivity(weights=bad).ensemble(seeds=[5, 6]))
    with pytest.raises(jtfne.ConfigurationError, match=r"shared=True .* contradicts"):
        base().connectivity(weights=W, shared=True)


def test_trials_at_given_onsets():
    """A trials stimulus is on exactly during [onset, onset + duration) of each listed onset; the onsets come
    back from the stored configuration for trial-aligned analysis; bad lists are refused by name."""
    onsets = [1.0, 2.5, 7.0, 11.2]
    cfg = (base(dt_ms=0.1, duration_ms=12.0)
           .stimulus("kick", kind="trials", amplitude=5.0, onsets_ms=onsets, duration_ms=0.5, cell_type="E")
           .stimulus("step", kind="step", amplitude=1.0, onset_ms=3.0, duration_ms=1.0, neurons=[39]))
    model = jtfne.construct(cfg)
    assert model.layout.trial_onsets == 4
    p = model.member_params(0)
    with precision("float64"):
        got = np.asarray(jax.jit(jax.vmap(lambda t: stimulus_current(p, t)))(np.arange(120, dtype=np.uint32)))
    ref = np.zeros((120, N))
    for onset in (10, 25, 70, 112):
        ref[onset:onset + 5, EXC] += 5.0
    ref[30:40, 39] += 1.0
    np.testing.assert_array_equal(got, ref)
    again = jtfne.Configuration.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.stimuli_spec[0].onsets_ms(12.0) == tuple(onsets)
    with pytest.raises(jtfne.ConfigurationError, match="strictly increasing"):
        base().stimulus("k", kind="trials", amplitude=1.0, onsets_ms=[2.0, 1.0], duration_ms=0.5)
    with pytest.raises(jtfne.ConfigurationError, match=r"onsets_ms=\[\] is invalid"):
        base().stimulus("k", kind="trials", amplitude=1.0, onsets_ms=[], duration_ms=0.5)
    with pytest.raises(jtfne.ConfigurationError, match=r"onsets_ms=1\.25 is invalid; it must be a whole number"):
        jtfne.construct(base().stimulus("k", kind="trials", amplitude=1.0, onsets_ms=[1.25], duration_ms=0.5))
