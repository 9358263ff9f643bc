"""`jaxfne run --distributed`: several processes on localhost through the real command line write one
store, bit-identical to a single-process run of the same spec (the library-level counterpart is
tests/test_ensemble.py::test_two_processes_with_jax_distributed)."""

import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
import zarr

import jaxfne as jtfne
from jaxfne import cli, open_signals
from jaxfne.engine import process_blocks

# 7 members on 4 global devices (2 processes x 2 or 4 x 1): padded to 8, so the last process holds one real
# member and one inert copy
SPEC = """
[runtime]
seed = 3
duration_ms = 20.0
dt_ms = 0.1

[column]
n = 30

[probes]
names = ["SPK", "Vm"]

[ensemble]
seeds = [0, 1, 2, 3, 4, 5, 6]
"""
# the default engine (native where a C++ compiler is found: ~2 s less CPU per process than xla here)
RUN = ["--chunk-ms", "10"]

#: variables by which JAX would detect a cluster (SLURM, Open MPI, Kubernetes) or take a coordinator
DETECTED = ("SLURM_JOB_ID", "OMPI_MCA_orte_hnp_uri", "KUBERNETES_SERVICE_HOST", "JAX_COORDINATOR_ADDRESS",
            "JAX_LOCAL_DEVICE_IDS", "JAXFNE_COORDINATOR", "JAXFNE_NUM_PROCESSES", "JAXFNE_PROCESS_ID")


def _env(devices_per_process, **extra):
    env = {k: v for k, v in os.environ.items() if k not in DETECTED}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices_per_process}"
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(spec, store, n_processes, devices_per_process, via_env):
    """``jaxfne run --distributed`` in n_processes subprocesses; their (return code, stdout, stderr)."""
    coordinator = f"127.0.0.1:{_free_port()}"
    procs = []
    for pid in range(n_processes):
        args = [sys.executable, "-m", "jaxfne.cli", "run", str(spec), "--store", str(store), *RUN, "--distributed"]
        if via_env:
            env = _env(devices_per_process, JAXFNE_COORDINATOR=coordinator,
                       JAXFNE_NUM_PROCESSES=str(n_processes), JAXFNE_PROCESS_ID=str(pid))
        else:
            env = _env(devices_per_process)
            args += ["--coordinator", coordinator, "--num-processes", str(n_processes), "--process-id", str(pid)]
        procs.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return [(p.returncode, o, e) for p, (o, e) in zip(procs, outs)]


def _arrays(path) -> dict:
    """Every array of a store, by its path in the store, as numpy."""
    out = {}

    def walk(group, prefix):
        for name, arr in group.arrays():
            out[prefix + name] = arr[...]
        for name, sub in group.groups():
            walk(sub, f"{prefix}{name}/")
    walk(zarr.open_group(path, mode="r"), "")
    return out


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The spec run by one process (this one, through the command line's own entry point)."""
    d = tmp_path_factory.mktemp("distributed")
    (d / "spec.toml").write_text(SPEC)
    assert cli.main(["run", str(d / "spec.toml"), "--store", str(d / "single.zarr"), *RUN, "--quiet"]) == 0
    return d


def _assert_same_store(got_path, want_path, n_processes):
    """Every array of the store the processes wrote equals the single-process store's, bit for bit. Arrays
    laid out by member-block (one block per process there, one block here) differ in shape only: their
    first axis counts the blocks; the completion marker must repeat the single run's row, and what the
    rest hold (the spike events) must read back as the same probes."""
    want, got = _arrays(want_path), _arrays(got_path)
    assert sorted(got) == sorted(want)
    by_block = []
    for name, w in want.items():
        g = got[name]
        assert g.dtype == w.dtype, name
        if g.shape != w.shape:
            assert w.shape[0] == 1 and g.shape[0] == n_processes and g.ndim == w.ndim, (name, w.shape, g.shape)
            by_block.append(name)
            continue
        np.testing.assert_array_equal(g, w, err_msg=name)
    assert "checkpoint/completed_steps" in by_block
    np.testing.assert_array_equal(got["checkpoint/completed_steps"],
                                  np.repeat(want["checkpoint/completed_steps"], n_processes, axis=0))
    sig_w, sig_g = open_signals(want_path), open_signals(got_path)
    assert sorted(sig_g) == sorted(sig_w) == ["SPK", "Vm"]
    assert np.asarray(sig_w["SPK"]).any()
    for probe in sig_w:
        np.testing.assert_array_equal(np.asarray(sig_g[probe]), np.asarray(sig_w[probe]), err_msg=probe)
    attrs_w = dict(zarr.open_group(want_path, mode="r").attrs)
    attrs_g = dict(zarr.open_group(got_path, mode="r").attrs)
    assert attrs_g.pop("member_block") == 8 // n_processes and attrs_w.pop("member_block") == 7
    assert attrs_g == attrs_w
    assert cli.store_summary(got_path)["complete"]


@pytest.mark.parametrize("n_processes, devices_per_process, via_env", [(2, 2, False), (4, 1, True)],
                         ids=["2-processes-options", "4-processes-environment"])
def test_processes_write_one_store_identical_to_one_process(single, n_processes, devices_per_process, via_env):
    store = single / f"p{n_processes}.zarr"
    results = _launch(single / "spec.toml", store, n_processes, devices_per_process, via_env)
    assert all(rc == 0 for rc, _, _ in results), [e[-3000:] for _, _, e in results]
    # only process 0 reports the run
    done = [[line for line in out.splitlines() if line.startswith("done:")] for _, out, _ in results]
    assert done[0] == [f"done: 7 member(s), 20 ms, store {store}"]
    assert all(d == [] for d in done[1:])
    for pid, (_, _, err) in enumerate(results):
        assert f"process {pid} of {n_processes}, {devices_per_process} of 4 devices" in err
    _assert_same_store(store, single / "single.zarr", n_processes)


@pytest.mark.parametrize("args, message", [
    (["--distributed", "--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"],
     r"--process-id=2 is invalid; it must be between 0 and 1"),
    (["--distributed", "--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "-1"],
     r"--process-id=-1 is invalid"),
    (["--distributed", "--num-processes", "0"], r"--num-processes=0 is invalid"),
    (["--distributed", "--coordinator", "localhost"], r"--coordinator='localhost' is invalid; give HOST:PORT"),
    (["--process-id", "1"], r"--process-id given without --distributed"),
    (["--distributed", "--devices", "2"], r"--devices=2 cannot be combined with --distributed"),
])
def test_distributed_mistakes_exit_2_before_anything_starts(tmp_path, capsys, args, message):
    import re
    (tmp_path / "spec.toml").write_text(SPEC)
    store = tmp_path / "s.zarr"
    assert cli.main(["run", str(tmp_path / "spec.toml"), "--store", str(store), *args]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("jaxfne run: error: ") and re.search(message, err), err
    assert not store.exists()


def test_distributed_environment_values_are_checked(monkeypatch):
    args = cli.build_parser().parse_args(["run", "s.toml", "--store", "x.zarr", "--distributed"])
    env = {"JAXFNE_COORDINATOR": "10.0.0.1:1234", "JAXFNE_NUM_PROCESSES": "4", "JAXFNE_PROCESS_ID": "3"}
    assert cli.distributed_arguments(args, env) == {"coordinator_address": "10.0.0.1:1234", "num_processes": 4,
                                                    "process_id": 3}
    # an option wins over its variable; what neither gives is left to JAX's detection
    args.process_id = 1
    assert cli.distributed_arguments(args, {"JAXFNE_PROCESS_ID": "3"}) == {"process_id": 1}
    assert cli.distributed_arguments(args, {}) == {"process_id": 1}
    args.process_id = None
    with pytest.raises(cli.ConfigurationError, match=r"JAXFNE_NUM_PROCESSES='two' is invalid; it must be a whole"):
        cli.distributed_arguments(args, {"JAXFNE_NUM_PROCESSES": "two"})
    with pytest.raises(cli.ConfigurationError, match=r"--process-id=4 is invalid; it must be between 0 and 3"):
        cli.distributed_arguments(args, env | {"JAXFNE_PROCESS_ID": "4"})


def test_store_is_required(tmp_path, capsys):
    (tmp_path / "spec.toml").write_text(SPEC)
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", str(tmp_path / "spec.toml"), "--distributed"])
    assert exc.value.code == cli.EXIT_USAGE
    assert "the following arguments are required: --store" in capsys.readouterr().err


def test_nothing_detected_and_nothing_given_is_an_error(tmp_path):
    # no launcher to detect (the variables are removed) and no option: JAX cannot know the processes
    (tmp_path / "spec.toml").write_text(SPEC)
    alone = subprocess.run([sys.executable, "-m", "jaxfne.cli", "run", str(tmp_path / "spec.toml"), "--store",
                            str(tmp_path / "s.zarr"), "--distributed"],
                           capture_output=True, text=True, env=_env(1), timeout=120)
    assert alone.returncode == cli.EXIT_USAGE, alone.stderr
    assert "jaxfne run: error: --distributed: coordinator_address should be defined" in alone.stderr
    assert "--coordinator HOST:PORT --num-processes N --process-id I" in alone.stderr
    assert not (tmp_path / "s.zarr").exists()


def test_a_process_left_with_padding_only_is_refused_before_any_work(monkeypatch):
    """6 members on 4 one-device processes pad to 8, two per process: process 3 would hold padding only and
    failed in its writer (IndexError) while the others waited 30 s. Every process now refuses alike, at once."""
    model = jtfne.construct(jtfne.Configuration().runtime(duration_ms=1.0).column(n=10)
                            .ensemble(seeds=list(range(6))))
    monkeypatch.setattr(jax, "process_count", lambda: 4)
    with pytest.raises(jtfne.SimulationError, match=r"6 members over 4 processes .* leave process 3 no real member; "
                                                    r".* use at least 7 members"):
        process_blocks(model, jax.devices()[:4])
    seven = jtfne.construct(jtfne.Configuration().runtime(duration_ms=1.0).column(n=10)
                            .ensemble(seeds=list(range(7))))
    assert process_blocks(seven, jax.devices()[:4])["member_block"] == 2
