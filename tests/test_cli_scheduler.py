"""`jaxfne analyze --scheduler ADDRESS`: the readouts computed on a dask.distributed cluster (a real
`dask scheduler` process and a `dask worker` process) equal the local run's."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

import jaxfne as jtfne
from jaxfne import cli


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("scheduler") / "run.zarr"
    cfg = (jtfne.Configuration().runtime(duration_ms=60.0).column(n=40).probes(["SPK"])
           .ensemble(seeds=[0, 1], sweep={"drive.current.E": [3.0, 6.0]}))
    jtfne.simulate(jtfne.construct(cfg), store=path, chunk_ms=20.0)
    return path


def _dask(*args, log):
    """A `dask` command-line process (the console script next to this Python)."""
    exe = os.path.join(os.path.dirname(sys.executable), "dask")
    return subprocess.Popen([exe, *args], stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    """tcp://127.0.0.1:PORT of a `dask scheduler` process with one `dask worker` process (1 thread)."""
    d = tmp_path_factory.mktemp("dask")
    info = d / "scheduler.json"
    log = open(d / "dask.log", "w")
    procs = [_dask("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file",
                   str(info), log=log)]
    try:
        procs.append(_dask("worker", "--scheduler-file", str(info), "--nthreads", "1", "--no-nanny",
                           "--no-dashboard", "--local-directory", str(d), log=log))
        import distributed
        deadline = time.monotonic() + 120
        while not info.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        with distributed.Client(scheduler_file=str(info), timeout=60) as client:
            client.wait_for_workers(1, timeout=120)
            address = client.scheduler.address
        yield address
    finally:
        for p in procs[::-1]:       # nothing to keep: no graceful shutdown needed
            p.kill()
            p.wait()
        log.close()


def test_analyze_on_a_scheduler_equals_the_local_run(store, scheduler, tmp_path, capsys):
    import distributed
    args = [str(store), "--group-by", "drive.current.E", "--window-ms", "10", "60", "--format", "json"]
    assert cli.main(["analyze", *args, "--out", str(tmp_path / "local.json")]) == 0
    assert cli.main(["analyze", *args, "--out", str(tmp_path / "cluster.json"), "--scheduler", scheduler]) == 0
    local, cluster = (tmp_path / "local.json").read_text(), (tmp_path / "cluster.json").read_text()
    rows = json.loads(local)
    assert len(rows) == 2 and all(r["n"] == 2 and r["rate_hz_E_mean"] > 0 for r in rows)
    assert cluster == local
    # the readouts ran on the worker process: it imported jaxfne's block kernels to run their tasks
    with distributed.Client(scheduler, timeout=30) as client:
        imported = client.run(lambda: "jaxfne.analysis" in sys.modules)
    assert list(imported.values()) == [True]
    # and this process is no longer connected to it: later Dask work runs locally again
    assert _no_default_client()
    capsys.readouterr()


def _no_default_client() -> bool:
    import distributed
    try:
        distributed.default_client()
    except ValueError:
        return True
    return False


def test_unreachable_scheduler_exits_2_naming_it(store, capsys):
    with socket.socket() as sock:      # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    assert cli.main(["analyze", str(store), "--scheduler", address]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"jaxfne analyze: error: analyze: --scheduler {address}: no dask.distributed scheduler reached" in err
    assert cli.main(["analyze", str(store), "--scheduler", "tcp://"]) == cli.EXIT_USAGE
    assert "--scheduler tcp://: no dask.distributed scheduler reached" in capsys.readouterr().err
