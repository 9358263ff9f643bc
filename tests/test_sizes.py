"""Sizes checked before work starts (jaxfne/model/_size.py) and the vectorised member expansion.

Every refusal here happens without allocating: the builder, the expansion or
the driver is replaced by a function that fails the test if it is reached,
and one child process runs the cases under an address-space limit. The
available memory is fixed by monkeypatching where a case depends on it.
Nothing is timed: the expansion is shown to be vectorised by counting the
configurations it creates.
"""

import itertools
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import jaxfne as jtfne
from jaxfne import ConfigurationError, SimulationError
from jaxfne.config import Configuration, sweep_function
from jaxfne.engine import chunk_steps, initial_states
from jaxfne.model import (Knobs, Members, _construct, _size, cell_assignment, expand_members, make_layout,
                          member_knobs, member_tables)
from jaxfne.model._params import PARAM_FIELDS, STATE_FIELDS

GIB = 2**30


@pytest.fixture
def memory(monkeypatch):
    """Fix the available host memory (default 16 GiB; call with another value to change it)."""
    def set_available(nbytes=16 * GIB):
        monkeypatch.setattr(_size, "host_available_bytes", lambda: nbytes)
    set_available()
    return set_available


@pytest.fixture
def no_building(monkeypatch):
    """Fail the test if an ensemble is expanded or a network is built."""
    def fail(*args, **kwargs):
        raise AssertionError("reached the expansion or the builder: the size check came too late")
    monkeypatch.setattr(_construct, "expand_members", fail)
    monkeypatch.setattr(_construct, "_builder", fail)


# -- refusals, before any allocation ------------------------------------------------------------------

def test_large_network_refused_before_building(memory, no_building):
    with pytest.raises(ConfigurationError) as err:
        jtfne.construct(Configuration().column(n=100_000))
    msg = str(err.value)
    assert msg.startswith("construct: this configuration (1 member of 100000 neurons, float32) needs about ")
    assert "of host memory, but 16.0 GiB is available" in msg and "more than 90% of it (14.4 GiB)" in msg
    assert "weights 37.3 GiB ((100001 x 100000) float32 per member x 1 member)" in msg
    assert "builder temporaries" in msg
    assert "Remedy: fewer neurons (column(n=...))" in msg
    assert "fewer members" not in msg               # not an ensemble


def test_large_ensemble_refused_before_expanding(memory, no_building):
    cfg = Configuration().column(n=2000).ensemble(seeds=list(range(20_000)))
    with pytest.raises(ConfigurationError) as err:
        jtfne.construct(cfg)
    msg = str(err.value)
    assert "(20000 members of 2000 neurons, float32)" in msg
    assert "weights 298.2 GiB ((2001 x 2000) float32 per member x 20000 members)" in msg
    assert "Remedy: fewer members (ensemble(seeds=...) and fewer sweep values); or fewer neurons" in msg


def test_million_members_refused_before_expanding(memory, no_building):
    cfg = Configuration().ensemble(seeds=list(range(100_000)), sweep={"drive.current.E": list(range(10))})
    with pytest.raises(ConfigurationError, match=r"\(1000000 members of 100 neurons, float32\) needs about"):
        jtfne.construct(cfg)


def test_neurons_beyond_int32_refused(no_building):
    with pytest.raises(ConfigurationError) as err:
        jtfne.construct(Configuration().column(n=10**12))
    msg = str(err.value)
    assert msg.startswith("construct: column n=1000000000000 neurons is invalid; neuron indices are int32")
    assert "at most 2147483646 neurons" in msg


def test_members_and_products_beyond_indexing_refused(no_building):
    grid = {"drive.current.E": list(range(1000)), "drive.current.I": list(range(1000)),
            "drive.noise.E": list(range(1000))}
    with pytest.raises(ConfigurationError, match=r"ensemble of 3000000000 members is invalid; at most "
                                                 r"2147483647 members"):
        jtfne.construct(Configuration().ensemble(seeds=[0, 1, 2], sweep=grid))
    long = (Configuration().column(n=1_000_000).runtime(duration_ms=2e8, dt_ms=0.1)
            .ensemble(seeds=list(range(5000))))
    with pytest.raises(ConfigurationError, match=r"5000 members x 1000000 neurons x 2000000000 steps = "
                                                 r"1\.000e\+19 values .* no array can hold more than 2\*\*63 - 1"):
        jtfne.construct(long)


def test_long_in_memory_run_refused_before_driving(memory, monkeypatch):
    model = jtfne.construct(Configuration().runtime(duration_ms=1e8))       # 1e9 steps: small parameters
    monkeypatch.setattr(jtfne._api, "drive", lambda *a, **k: pytest.fail("the driver was reached"))
    with pytest.raises(SimulationError) as err:
        jtfne.simulate(model, engine="xla")
    msg = str(err.value)
    assert msg.startswith("simulate: this run (1 member of 100 neurons, 1000000000 steps of 0.1 ms, in memory) "
                          "needs about 469.4 GiB of host memory, but 16.0 GiB is available")
    # the whole-run arrays, and the spikes kept as events too (100 Hz x 4 bytes per spike: 3.7 GiB)
    assert "in-memory result 465.7 GiB (whole-run arrays: SPK 93.1 GiB, Vm 372.5 GiB)" in msg
    assert "Remedy: a store instead of memory (simulate(model, store=PATH)" in msg
    assert "sampled probes via probes(names=[...], neurons=..., every_ms=...)" in msg
    # the same run into a store fits: chunks only
    needs = _size.run_needs(model.layout, 1, chunk_steps(model.layout, None, 1), [_cpu()], in_memory=False)
    assert all(n.fits for n in needs)


def test_chunks_too_large_name_chunk_ms(memory, monkeypatch, tmp_path):
    model = jtfne.construct(Configuration().runtime(duration_ms=1000.0).ensemble(seeds=[0, 1, 2, 3]))
    memory(30 * 2**20)
    monkeypatch.setattr(jtfne._api, "simulate_to_store", lambda *a, **k: pytest.fail("the store was reached"))
    with pytest.raises(SimulationError) as err:
        jtfne.simulate(model, store=tmp_path / "run.zarr", chunk_ms=1000.0, engine="xla")
    msg = str(err.value)
    assert "(4 members of 100 neurons, 10000 steps of 0.1 ms, to a store)" in msg
    assert "chunk outputs 38.1 MiB (2 chunks of 10000 steps (1000 ms), 4.8 MiB per member each)" in msg
    assert "Remedy: shorter chunks via simulate(..., chunk_ms=...)" in msg
    assert "store=PATH" not in msg and "in-memory result" not in msg


def test_skip_variable_keeps_the_limits(memory, monkeypatch, no_building):
    monkeypatch.setenv("JAXFNE_NO_MEMORY_CHECK", "1")
    memory(0)
    _size.check_construct(Configuration(), make_layout(Configuration()))      # memory not compared
    with pytest.raises(ConfigurationError, match="int32"):
        jtfne.construct(Configuration().column(n=2**31))


CHILD = textwrap.dedent("""
    import json, resource, sys
    import jax
    import jaxfne as jtfne
    from jaxfne import Configuration, JaxfneError
    jax.devices()
    jtfne.simulate(jtfne.construct(Configuration().runtime(duration_ms=10.0)), engine="xla")   # warm up
    size = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (size + 2 * 2**30, resource.RLIM_INFINITY))
    cases = {
        "n=100000": lambda: jtfne.construct(Configuration().column(n=100_000)),
        "20000x2000": lambda: jtfne.construct(Configuration().column(n=2000).ensemble(seeds=list(range(20_000)))),
        "1e6 members": lambda: jtfne.construct(Configuration().ensemble(
            seeds=list(range(100_000)), sweep={"drive.current.E": list(range(10))})),
        "n=1e12": lambda: jtfne.construct(Configuration().column(n=10**12)),
        "1e8 ms": lambda: jtfne.simulate(jtfne.construct(Configuration().runtime(duration_ms=1e8)), engine="xla"),
    }
    out = {}
    for name, case in cases.items():
        try:
            case()
            out[name] = "ran"
        except JaxfneError as exc:
            out[name] = [type(exc).__name__, str(exc)]
    print(json.dumps(out))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and sets RLIMIT_AS")
def test_refusals_allocate_nothing_under_a_memory_limit():
    """Each case in a child process limited to 2 GiB more address space than it holds: a refusal, not a
    MemoryError, a crash or a hang."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    env.pop("JAXFNE_NO_MEMORY_CHECK", None)
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["n=1e12"][0] == "ConfigurationError" and "int32" in out["n=1e12"][1]
    for name in ("n=100000", "20000x2000", "1e6 members"):
        kind, msg = out[name]
        assert kind == "ConfigurationError" and "needs about" in msg and "Remedy: " in msg, (name, msg)
    kind, msg = out["1e8 ms"]
    assert kind == "SimulationError" and "in-memory result" in msg and "store=PATH" in msg


# -- the estimate against the real arrays --------------------------------------------------------------

def test_declared_shapes_are_readable():
    layout = make_layout(Configuration())
    for f in PARAM_FIELDS + STATE_FIELDS:
        _size.declared_elements(f.shape, _size.shape_symbols(layout), strict=True)


@pytest.mark.parametrize("cfg", [
    Configuration().column(n=40).ensemble(seeds=[1, 2, 3]),
    Configuration().column(layers=["L2/3", "L4", "L5"], n=60).runtime(dtype="float64").ensemble(seeds=[1, 2]),
    Configuration().column(n=30).connectivity(shared=True).ensemble(seeds=[4, 5]),
], ids=["one-layer", "laminar-delays-f64", "shared"])
def test_parameter_and_state_estimates_are_exact(cfg):
    model = jtfne.construct(cfg)
    layout, m = model.layout, model.n_members
    params = _size._params_parts(layout, m, building=False)
    assert sum(p.nbytes for p in params) == sum(np.asarray(x).nbytes for x in model.params)
    with jtfne.model.precision(layout.dtype):
        state = initial_states(layout)(model.params)
    per_member = sum(_size.field_bytes(STATE_FIELDS, _size.shape_symbols(layout),
                                       8 if layout.dtype == "float64" else 4).values())
    assert per_member * m == sum(np.asarray(x).nbytes for x in state)


def test_result_estimate_is_exact():
    cfg = (Configuration().column(n=20).runtime(duration_ms=20.0)
           .probes(["SPK", "Vm", "LFP-proxy"], neurons=[1, 5], every_ms=0.5, contacts=5).ensemble(seeds=[1, 2]))
    model = jtfne.construct(cfg)
    signals = jtfne.simulate(model, engine="xla")
    needs = _size.run_needs(model.layout, 2, 50, [_cpu()], engine="xla", in_memory=True)
    result = next(p for p in needs[0].parts if p.name == "in-memory result")
    assert result.nbytes == sum(signals[name].nbytes for name in ("SPK", "Vm", "LFP-proxy"))


class _Device:
    """A stand-in device (no accelerator needed)."""

    def __init__(self, platform, stats=None, index=0):
        self.platform, self.process_index, self._stats, self.id = platform, 0, stats, index

    def memory_stats(self):
        return self._stats

    def __str__(self):
        return f"{self.platform}:{self.id}"


def _cpu():
    return _Device("cpu")


def test_accelerator_memory_from_memory_stats(memory):
    memory(64 * GIB)
    layout = make_layout(Configuration().column(n=1000))
    gpus = [_Device("gpu", {"bytes_limit": 10 * GIB, "bytes_in_use": 2 * GIB}, i) for i in range(2)]
    assert _size.device_available_bytes(gpus[0]) == 8 * GIB
    assert _size.device_available_bytes(_Device("gpu", None)) is None
    needs = _size.run_needs(layout, 4096, 10, gpus, in_memory=False)
    assert [n.where for n in needs] == ["host memory", "memory of device gpu:0", "memory of device gpu:1"]
    dev = needs[1]
    weights = next(p for p in dev.parts if p.name == "weights")
    assert weights.nbytes == 2048 * 1001 * 1000 * 4                       # half the members on each device
    assert dev.available == 8 * GIB and not dev.fits                      # 7.6 GiB of weights > 90% of 8 GiB
    assert needs[0].fits                                                   # the host: 16 GiB of parameters
    assert _size.run_needs(layout, 1024, 10, gpus, in_memory=False)[1].fits
    # at construct, the builder's arrays go to the default device, the tables stay on the host
    cpu_need, = _size.construct_needs(layout, 4, device=_cpu())
    host, gpu = _size.construct_needs(layout, 4, device=gpus[0])
    assert gpu.total + host.total == cpu_need.total and host.total < gpu.total / 100


def test_member_count_and_bytes():
    base = Configuration()
    assert _size.member_count(base) == 1
    assert _size.member_count(base.ensemble(seeds=[1, 2, 3], sweep={"drive.current": [1, 2],
                                                                     "drive.noise": [0, 1, 2]})) == 18
    assert _size.member_count(base.ensemble(seeds=[1, 2], sweep={"drive.current": [1, 2], "drive.noise": [0, 1]},
                                            mode="zip")) == 4
    assert [_size.fmt_bytes(x) for x in (512, 1536, 3 * GIB, 2**80)] == ["512 B", "1.5 KiB", "3.0 GiB", "1.0 YiB"]


def test_host_available_reads_the_system():
    free = _size.host_available_bytes()
    assert free is None or free >= 0


# -- the vectorised expansion ------------------------------------------------------------------------

def _old_expand(cfg):
    """The per-member expansion this replaced: one Configuration per member."""
    spec = cfg.ensemble_spec
    base = cfg.__class__(**{f: getattr(cfg, f) for f in cfg.__dataclass_fields__ if f != "ensemble_spec"})
    paths = [p for p, _ in spec.sweep]
    lists = [v for _, v in spec.sweep]
    combos = list(itertools.product(*lists)) if spec.mode == "grid" else list(zip(*lists)) if lists else [()]
    members, coords = [], {"seed": [], **{p: [] for p in paths}}
    for combo in combos:
        member = base
        for path, value in zip(paths, combo):
            member = sweep_function(path)(member, value)
        for seed in spec.seeds:
            members.append(member.runtime(seed=seed))
            coords["seed"].append(seed)
            for path, value in zip(paths, combo):
                coords[path].append(value)
    return members, {k: np.asarray(v) for k, v in coords.items()}


def _old_tables(cfg, members):
    knobs = [member_knobs(m) for m in members]
    if cfg.connectivity_spec.shared:
        for kn in knobs:
            kn["conn_seed"] = cfg.runtime_spec.seed
    return ({k: np.stack([kn[k] for kn in knobs]) for k in Knobs._fields},
            np.stack([cell_assignment(m) for m in members]))


ENSEMBLES = {
    "grid": Configuration().column(n=30).ensemble(
        seeds=[7, 3, 11], sweep={"cell_types.E": [0.7, 0.8], "drive.current.E": [2, 3.5, 5],
                                 "emitter.preset.I": ["cortical_eig", "fast_spiking"]}),
    "zip": Configuration().column(layers=["L2/3", "L4"], n=40).ensemble(
        seeds=[0, 1], sweep={"connectivity.p": [0.2, 0.5], "connectivity.pathways.L4.E->L2/3.E.strength": [5, 9]},
        mode="zip"),
    "shared": Configuration().column(n=20).connectivity(shared=True).runtime(seed=9).ensemble(
        seeds=[1, 2, 3], sweep={"drive.noise": [1.0, 2.0]}),
    "seeds only": Configuration().column(n=20).ensemble(seeds=[5, 6]),
}


@pytest.mark.parametrize("name", list(ENSEMBLES))
def test_expansion_equals_the_per_member_one(name):
    cfg = ENSEMBLES[name]
    members, coords = expand_members(cfg)
    old_members, old_coords = _old_expand(cfg)
    assert isinstance(members, Members) and len(members) == len(old_members)
    assert list(members) == old_members                                    # every member's configuration
    assert list(coords) == list(old_coords)
    for key in coords:
        assert coords[key].dtype == old_coords[key].dtype and np.array_equal(coords[key], old_coords[key]), key
    knobs, is_exc = member_tables(cfg, members)
    old_knobs, old_is_exc = _old_tables(cfg, old_members)
    assert np.array_equal(is_exc, old_is_exc)
    for k in Knobs._fields:
        assert knobs[k].dtype == old_knobs[k].dtype, k
        assert knobs[k].tobytes() == old_knobs[k].tobytes(), k             # bit for bit
    # the built arrays: the constructed model against the same members built from the old list
    model = jtfne.construct(cfg)
    old = _construct._construct_members(cfg, old_members, old_coords, ensemble=True)
    for a, b in zip(model.params, old.params):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def _count_configurations(monkeypatch):
    calls = {"Configuration": 0, "member_knobs": 0}
    init = Configuration.__init__

    def counting_init(self, *args, **kwargs):
        calls["Configuration"] += 1
        init(self, *args, **kwargs)

    knobs = _construct.member_knobs

    def counting_knobs(cfg):
        calls["member_knobs"] += 1
        return knobs(cfg)

    monkeypatch.setattr(Configuration, "__init__", counting_init)
    monkeypatch.setattr(_construct, "member_knobs", counting_knobs)
    return calls


def test_million_members_expand_without_a_configuration_each(monkeypatch):
    cfg = Configuration().column(n=10).ensemble(
        seeds=list(range(50_000)), sweep={"drive.current.E": [1.0, 2.0, 3.0, 4.0, 5.0],
                                          "connectivity.tau_exc_ms": [2.0, 4.0, 6.0, 8.0]})
    calls = _count_configurations(monkeypatch)
    members, coords = expand_members(cfg)
    assert len(members) == 1_000_000 and calls["Configuration"] < 200      # a handful per combination
    assert coords["seed"].shape == coords["drive.current.E"].shape == (1_000_000,)
    i = 777_777                                                             # combination 15, seed index 27,777
    assert coords["seed"][i] == 27_777 and coords["drive.current.E"][i] == 4.0
    assert coords["connectivity.tau_exc_ms"][i] == 8.0
    assert members[i] == cfg.__class__(**{f: getattr(cfg, f) for f in cfg.__dataclass_fields__
                                          if f != "ensemble_spec"}).drive(current={"E": 4.0}).connectivity(
        tau_exc_ms=8.0).runtime(seed=27_777)


def test_large_sweep_tables_once_per_combination(monkeypatch):
    cfg = Configuration().column(n=10).ensemble(
        seeds=list(range(10_000)), sweep={"drive.current.E": [1.0, 2.0, 3.0, 4.0, 5.0],
                                          "cell_types.E": [0.6, 0.7, 0.8, 0.9]})
    members, _ = expand_members(cfg)
    calls = _count_configurations(monkeypatch)
    knobs, is_exc = member_tables(cfg, members)
    assert len(members) == 200_000 and calls == {"Configuration": 0, "member_knobs": 20}
    assert is_exc.shape == (200_000, 10) and knobs["current"].shape == (200_000, 2)
    for i in (0, 12_345, 199_999):                                          # spot checks against one member
        one = member_knobs(members[i])
        for k in Knobs._fields:
            assert np.asarray(one[k]).tobytes() == knobs[k][i].tobytes(), (i, k)
        assert np.array_equal(is_exc[i], cell_assignment(members[i]))


def test_members_from_a_list_keep_working():
    base = Configuration().column(n=20)
    configs = [base.runtime(seed=s).drive(current={"E": c}) for s, c in ((1, 2.0), (1, 3.0), (2, 2.0))]
    members = Members.of(configs)
    assert list(members) == configs and members[1:] == configs[1:]
    knobs, _ = member_tables(base, configs)
    assert knobs["seed"].tolist() == [1, 1, 2] and knobs["current"][:, 0].tolist() == [2.0, 3.0, 2.0]
