"""The jaxfne command line, run as a user would: real subprocesses, real stores."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr
from conftest import AUTO_ENGINE, jax_cache_env

SPEC = """
[runtime]
seed = 1
duration_ms = {duration}
dt_ms = 0.1

[column]
n = 60

[cell_types]
fractions = {{ E = 0.8, I = 0.2 }}

[probes]
names = ["SPK", "Vm", "LFP-proxy"]

[ensemble]
seeds = [0, 1]
sweep = {{ "cell_types.E" = [0.75, 0.8], "drive.current.E" = [3.0, 5.0] }}
"""


def jaxfne(*args, check=True, **kw):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", **jax_cache_env()}
    proc = subprocess.run([sys.executable, "-m", "jaxfne.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600, **kw)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    (d / "spec.toml").write_text(SPEC.format(duration=100.0))
    jaxfne("run", str(d / "spec.toml"), "--store", str(d / "run.zarr"), "--chunk-ms", "25")
    return d


def test_engine_option_chooses_the_step(finished, tmp_path):
    import zarr
    assert zarr.open_group(finished / "run.zarr", mode="r").attrs["engine"] == AUTO_ENGINE
    jaxfne("run", str(finished / "spec.toml"), "--store", str(tmp_path / "xla.zarr"), "--chunk-ms", "25",
           "--engine", "xla", "--quiet")
    assert zarr.open_group(tmp_path / "xla.zarr", mode="r").attrs["engine"] == "xla"
    bad = jaxfne("run", str(finished / "spec.toml"), "--store", str(tmp_path / "x.zarr"), "--engine", "gpu",
                 check=False)
    assert bad.returncode != 0 and "invalid choice: 'gpu'" in bad.stderr


def test_run_info_analyze_plot(finished):
    d = finished
    info = json.loads(jaxfne("info", str(d / "run.zarr"), "--json").stdout)
    assert info["members"] == 8 and info["complete"] and info["probes"] == ["SPK", "Vm", "LFP-proxy"]
    assert info["engine"] == AUTO_ENGINE and f"engine       {AUTO_ENGINE}" in jaxfne("info", str(d / "run.zarr")).stdout
    assert xr.open_zarr(d / "run.zarr")["spike_count"].dims == ("member", "time_bin", "neuron")  # zarr alone
    import jaxfne as jtfne
    ds = jtfne.open_signals(d / "run.zarr").dataset   # the raster, rebuilt from the stored events
    assert ds["SPK"].dims == ("member", "time", "neuron")
    out = jaxfne("analyze", str(d / "run.zarr"), "--group-by", "cell_types.E", "drive.current.E",
                 "--format", "json").stdout
    rows = json.loads(out)
    assert len(rows) == 4
    # the grouped E rate equals the seed-average of rates computed directly from the raster
    spk = ds["SPK"].values
    exc = ds["cell_type"].values == "E"
    for row in rows:
        sel = np.flatnonzero((ds["cell_types.E"].values == row["cell_types.E"])
                             & (ds["drive.current.E"].values == row["drive.current.E"]))
        direct = np.mean([spk[m][:, exc[m]].sum() / exc[m].sum() / 0.1 for m in sel])
        assert row["rate_hz_E_mean"] == pytest.approx(direct) and row["n"] == len(sel)
    figs = jaxfne("plot", str(d / "run.zarr"), "--out", str(d / "figs")).stdout.split()
    names = {os.path.basename(f) for f in figs}
    assert {"raster.png", "rates.png", "spectrum.png", "voltages.png", "fields.png", "summary.png",
            "sweep_E_rate.png"} <= names
    assert all(os.path.getsize(f) > 1000 for f in figs)


def test_bad_spec_names_file_and_key(tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text("[runtime]\nduration_ms = 100.0\ndt_msec = 0.1\n")
    proc = jaxfne("run", str(spec), "--store", str(tmp_path / "x.zarr"), check=False)
    assert proc.returncode == 2
    assert "bad.toml" in proc.stderr and "dt_msec" in proc.stderr and "Traceback" not in proc.stderr
    spec.write_text("[cell_types]\nfractions = { E = 0.7, I = 0.2 }\n")
    proc = jaxfne("run", str(spec), "--store", str(tmp_path / "x.zarr"), check=False)
    assert proc.returncode == 2 and "do not sum to 1" in proc.stderr
    assert not (tmp_path / "x.zarr").exists()      # nothing was written


def test_ctrl_c_leaves_a_resumable_store(tmp_path):
    import jaxfne as jtfne
    from jaxfne.cli import load_spec, store_summary
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(duration=600.0))
    store = tmp_path / "run.zarr"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", **jax_cache_env()}
    # 5-ms chunks: 120 of them, so the run outlasts the first chunk by seconds (a 500-ms run of this spec in
    # 5-ms chunks took 10 CPU-seconds after its import, ~0.1 s a chunk; the interrupt lands a poll after the
    # first). 2000 ms (400 chunks) proved the same: the interrupt comes at a chunk boundary either way, and
    # the resumed run is compared with an uninterrupted one over the whole duration (measured: 24 -> 16 CPU-s)
    # a test run started in the background by a shell without job control inherits SIGINT ignored, and
    # Python keeps an ignored SIGINT ignored: the child installs Python's Ctrl-C handler first, as it has
    # in a terminal (no preexec_fn: forking a process that runs JAX threads warns, rightly)
    ctrl_c = ("import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
              "runpy.run_module('jaxfne.cli', run_name='__main__', alter_sys=True)")
    proc = subprocess.Popen([sys.executable, "-c", ctrl_c, "run", str(spec), "--store", str(store),
                             "--chunk-ms", "5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    start = time.time()
    deadline = start + 300
    last_error = None
    while time.time() < deadline:   # interrupt as soon as one chunk is complete
        try:
            if store_summary(store)["completed_ms"] > 0:
                break
        except Exception as exc:   # not created yet, or being created
            last_error = exc
        time.sleep(0.02)
    waited = time.time() - start
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    if proc.returncode == 0:
        pytest.skip(f"the run finished before the interrupt arrived (polled {waited:.1f} s; last error "
                    f"{last_error!r})")
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err
    assert not store_summary(store)["complete"]
    jaxfne("run", str(spec), "--store", str(store), "--chunk-ms", "5")
    assert store_summary(store)["complete"]
    ref = jtfne.simulate(jtfne.construct(load_spec(spec)))        # uninterrupted, in memory
    got = xr.open_zarr(store)
    for name in ("Vm", "LFP-proxy"):
        np.testing.assert_array_equal(got[name].values, np.asarray(ref[name]))
    # spikes are stored as events (schema 2): the raster open_signals rebuilds from them
    np.testing.assert_array_equal(jtfne.open_signals(store)["SPK"].values, np.asarray(ref["SPK"]))


@pytest.mark.parametrize("env, before, expect", [
    ({}, "", "added"),
    ({"XLA_FLAGS": "--xla_gpu_enable_command_buffer=FUSION"}, "", "kept"),
    ({"JAXFNE_NO_COMMAND_BUFFERS": "1"}, "", "kept"),
    ({}, "jax.numpy.ones(2).block_until_ready()", "kept"),      # backend started: too late to change
], ids=["default", "user-flag", "opt-out", "backend-started"])
def test_command_line_processes_ask_for_command_buffers(env, before, expect):
    code = ("import os, jax, jax.numpy\n"
            "from jaxfne.engine._devices import COMMAND_BUFFER_FLAG, use_command_buffers\n"
            f"{before}\n"
            "old = os.environ.get('XLA_FLAGS', '')\n"
            "added = use_command_buffers()\n"
            "new = os.environ.get('XLA_FLAGS', '')\n"
            "assert added == (new == (old + ' ' + COMMAND_BUFFER_FLAG).strip()), (added, old, new)\n"
            "assert added or new == old\n"
            "print('added' if added else 'kept')\n"
            "jax.numpy.arange(3).sum().block_until_ready()   # the flag is accepted by this jaxlib\n")
    clean = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAXFNE_NO_COMMAND_BUFFERS")}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expect
