"""The ``jaxfne`` command line: run, info, verify, analyze, plot, bench, calibrate."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import sys
import warnings

import numpy as np

from . import analysis, viz
from ._api import construct, simulate
from ._errors import ConfigurationError, JaxfneError, SimulationError, StoreError
from ._validate import read_toml
from ._probes import REGISTRY as PROBES
from .bench import scaling_table
from .calibration import calibrate, load_calibration_spec
from .config import Configuration
from .engine import use_command_buffers, use_host_devices
from .results import open_signals
from .sinks import _store, _verify, verify_store

EXIT_USAGE = 2
#: jaxfne verify: the store has missing or damaged chunks
EXIT_DAMAGED = 3
#: jaxfne run: the run finished, but some member's membrane state became non-finite (NaN/Inf)
EXIT_NONFINITE = 4
EXIT_INTERRUPTED = 130


def load_spec(path) -> Configuration:
    """A Configuration from a TOML file whose tables mirror the chainable API."""
    path = pathlib.Path(path)
    data = read_toml(path)
    try:
        return Configuration.from_dict(data, where=str(path))
    except ConfigurationError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise type(exc)(f"{path}: {exc}") from None      # every value error names the spec file


def _devices(count):
    if count is None:
        return None
    import jax
    devs = jax.devices()
    if count < 1 or count > len(devs):
        raise JaxfneError(f"--devices={count} is invalid; between 1 and {len(devs)} devices are available")
    return devs[:count]


#: jaxfne run --distributed: environment variables read where the options are not given
DISTRIBUTED_ENV = {"coordinator": "JAXFNE_COORDINATOR", "num_processes": "JAXFNE_NUM_PROCESSES",
                   "process_id": "JAXFNE_PROCESS_ID"}


def distributed_arguments(args, environ=None) -> dict:
    """The arguments ``jaxfne run --distributed`` gives ``jax.distributed.initialize``, validated.

    Each of --coordinator HOST:PORT, --num-processes N and --process-id I is
    taken from its option, else from JAXFNE_COORDINATOR, JAXFNE_NUM_PROCESSES,
    JAXFNE_PROCESS_ID; what is given neither way is left to JAX, which detects it
    under SLURM, Open MPI and its other launchers (and reads JAX_COORDINATOR_ADDRESS,
    JAX_LOCAL_DEVICE_IDS itself). Raises ConfigurationError naming the option and
    the value for a malformed address, a count below 1 or a process id outside
    [0, N), and for these options or --devices without/with --distributed.
    """
    environ = os.environ if environ is None else environ
    given = {k: getattr(args, k) for k in DISTRIBUTED_ENV if getattr(args, k) is not None}
    if not args.distributed:
        if given:
            names = ", ".join("--" + k.replace("_", "-") for k in given)
            raise ConfigurationError(f"{names} given without --distributed; they set up a run across processes")
        return {}
    if args.devices is not None:
        raise ConfigurationError(f"--devices={args.devices} cannot be combined with --distributed: every process "
                                 "uses all its local devices (choose them with CUDA_VISIBLE_DEVICES or "
                                 "JAX_LOCAL_DEVICE_IDS)")
    out = {}
    for key, var in DISTRIBUTED_ENV.items():
        value, where = given.get(key), "--" + key.replace("_", "-")
        if value is None and environ.get(var, "").strip():
            value, where = environ[var].strip(), var
        if value is None:
            continue
        if key == "coordinator":
            host, _, port = str(value).rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigurationError(f"{where}={value!r} is invalid; give HOST:PORT of process 0 "
                                         "(port 1-65535), e.g. 10.0.0.1:12345")
            out["coordinator_address"] = str(value)
            continue
        try:
            out[key] = int(value)
        except ValueError:
            raise ConfigurationError(f"{where}={value!r} is invalid; it must be a whole number") from None
    n, i = out.get("num_processes"), out.get("process_id")
    if n is not None and n < 1:
        raise ConfigurationError(f"--num-processes={n} is invalid; at least 1 process is needed")
    if i is not None and (i < 0 or (n is not None and i >= n)):
        allowed = f"between 0 and {n - 1}" if n is not None else "0 or more"
        raise ConfigurationError(f"--process-id={i} is invalid; it must be {allowed} (process ids count from 0)")
    return out


def start_distributed(kwargs: dict) -> None:
    """``jax.distributed.initialize(**kwargs)`` (before JAX's backend starts); what JAX refuses, and a
    coordinator that cannot be reached, become a ConfigurationError saying what to give."""
    import jax
    try:
        jax.distributed.initialize(**kwargs)
    except (ValueError, TypeError) as exc:   # nothing detected and nothing given, or JAX's own check
        raise ConfigurationError(
            f"--distributed: {exc} (given: {kwargs or 'nothing'}). Under SLURM or Open MPI JAX detects the "
            "processes itself; elsewhere give --coordinator HOST:PORT --num-processes N --process-id I (or "
            f"{', '.join(DISTRIBUTED_ENV.values())})") from None
    except RuntimeError as exc:              # the coordination service: timeouts, refused connections
        raise ConfigurationError(f"--distributed: jax.distributed.initialize({kwargs}) failed: {exc}") from None


def _peer_failure(exc: RuntimeError, store) -> SimulationError:
    """What a process of a --distributed run says when a computation or barrier it shares with the other
    processes fails: most often another process stopped first (its own message says why)."""
    import jax
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return SimulationError(f"process {jax.process_index()} of {jax.process_count()}: a step shared with the other "
                           f"processes failed ({first}); another process probably stopped first, see its messages. "
                           f"{store} keeps every completed chunk: run the same command again "
                           "to resume")


def _barrier(name: str) -> None:
    """Every process of a jax.distributed run reaches this point before any goes on."""
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def cmd_run(args) -> int:
    dist = distributed_arguments(args)
    cfg = load_spec(args.spec)
    lead = True
    if args.distributed:
        import jax
        start_distributed(dist)
        lead = jax.process_index() == 0
        if not args.quiet:
            print(f"jaxfne run: process {jax.process_index()} of {jax.process_count()}, "
                  f"{jax.local_device_count()} of {jax.device_count()} devices", file=sys.stderr)
    model = construct(cfg)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            signals = simulate(model, store=args.store, chunk_ms=args.chunk_ms, overwrite=args.overwrite,
                               progress=not args.quiet and lead, devices=_devices(args.devices),
                               engine=args.engine)
    except KeyboardInterrupt:
        print(f"\ninterrupted: {args.store} holds every completed chunk; run the same command again to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except RuntimeError as exc:
        if not args.distributed:
            raise
        raise _peer_failure(exc, args.store) from None
    for w in caught:
        print(f"jaxfne run: warning: {w.message}", file=sys.stderr)
    if args.distributed:
        # a process returns once its own members are stored: wait for all, then read the whole store
        try:
            _barrier("jaxfne run: every member stored")
        except RuntimeError as exc:
            raise _peer_failure(exc, args.store) from None
        signals = open_signals(args.store)
    n = signals["SPK"].sizes.get("member", 1)
    finite = np.asarray(signals["SPK"].coords["state_finite"].values, bool).reshape(-1)
    if not finite.all():
        if not lead:
            return EXIT_NONFINITE
        print(f"jaxfne run: error: the state of {int((~finite).sum())} of {n} member(s) became non-finite "
              f"(see above for the step); the store {args.store} holds the run as computed, exit "
              f"{EXIT_NONFINITE}", file=sys.stderr)
        return EXIT_NONFINITE
    if lead:       # under --distributed only process 0 reports
        print(f"done: {n} member(s), {signals.duration_ms:g} ms, store {args.store}")
    return 0


def store_summary(path) -> dict:
    """What a store holds, how complete it is, and its integrity: chunk files missing or empty (a
    directory listing, nothing is read) and the result of the last ``jaxfne verify``."""
    p = _store.resolve_path(path)
    attrs = _store.read_attrs(p)
    if attrs is None:
        raise StoreError(f"{p}: not a jaxfne store")
    st = _store.Store(p, mode="r")
    done = st.completed_all()
    files = _verify.scan(p)
    expected, missing = _verify.missing_files(st, files)
    return {"path": str(p), "schema": attrs["jaxfne_schema"], "members": attrs["n_members"],
            "ensemble": attrs["ensemble"], "probes": attrs["probes"], "dt_ms": attrs["dt_ms"],
            "duration_ms": attrs["n_steps"] * attrs["dt_ms"], "completed_ms": done * attrs["dt_ms"],
            "complete": done >= attrs["n_steps"], "member_coords": attrs["member_coords"],
            "config_hash": attrs["config_hash"], "engine": _store.stored_engine(attrs),
            "bytes_on_disk": sum(size for size, _ in files.values()),
            "checksums": _store.checksummed(attrs),
            "expected_chunks": expected, "missing_chunks": [str(m) for m in missing],
            "verification": _verify.last_verification(p, files)}


def verification_line(info: dict) -> str:
    """The result of the last ``jaxfne verify`` of a store, as ``jaxfne info`` shows it."""
    v = info["verification"]
    if v["state"] == "intact":
        return f"verified intact at {v['verified_at']}"
    if v["state"] == "damaged":
        return f"damaged: {v['n_damaged']} chunks (verified at {v['verified_at']}; jaxfne verify lists them)"
    if v["state"] == "outdated":
        was = "intact" if v["previous_state"] == "intact" else f"damaged: {v['n_damaged']} chunks"
        return f"verified {was} at {v['verified_at']}, but files changed since: run jaxfne verify again"
    return f"not verified (jaxfne verify {info['path']} reads every chunk)"


def chunk_files_line(info: dict) -> str:
    """Whether every chunk file the store must hold is there (a listing, no chunk read)."""
    missing = info["missing_chunks"]
    if not missing:
        return f"all {info['expected_chunks']} present"
    return (f"DAMAGED: {len(missing)} of {info['expected_chunks']} missing or empty (first: {missing[0]}); "
            f"jaxfne verify {info['path']} lists every damaged chunk")


def cmd_info(args) -> int:
    info = store_summary(args.store)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    pct = 100.0 * info["completed_ms"] / info["duration_ms"]
    print(f"store        {info['path']} ({info['schema']})")
    print(f"members      {info['members']} (coordinates: {', '.join(info['member_coords'])})")
    print(f"probes       {', '.join(info['probes'])}")
    print(f"time         {info['completed_ms']:g} of {info['duration_ms']:g} ms at dt {info['dt_ms']} ms "
          f"({pct:.0f}% complete{'' if info['complete'] else ': run the same command again to resume'})")
    print(f"on disk      {info['bytes_on_disk'] / 2**20:.1f} MiB")
    print(f"config hash  {info['config_hash']}")
    print(f"engine       {info['engine']}")
    print(f"chunk files  {chunk_files_line(info)}")
    print(f"checksums    {'crc32c on every chunk' if info['checksums'] else 'none (store written before them)'}")
    print(f"integrity    {verification_line(info)}")
    return 0


def cmd_verify(args) -> int:
    report = verify_store(args.store)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    return 0 if report.intact else EXIT_DAMAGED


def readout_table(signals, group_by=None, window_ms=None):
    """Per-member readouts as a pandas DataFrame, or per group of ``group_by`` coordinates: the mean, the
    standard deviation across the group's members (ddof=1), the standard error of the mean and n.

    ``window_ms`` = (start, stop) restricts every readout to [start, stop) ms (to leave out the onset
    transient).
    """
    import xarray as xr

    duration = signals.duration_ms if window_ms is None else min(window_ms[1], signals.duration_ms) - window_ms[0]
    # Fano factor in 100 ms bins, or five bins for runs shorter than 500 ms
    fano_bin_ms = 100.0 if duration >= 500.0 else max(1, round(duration / 5 / signals.dt_ms)) * signals.dt_ms
    win = None if window_ms is None else tuple(window_ms)
    metrics = {"rate_hz": analysis.firing_rate(signals, time_window_ms=win),
               "cv_isi": analysis.cv_isi(signals, time_window_ms=win),
               "fano_factor": analysis.fano_factor(signals, bin_ms=fano_bin_ms, time_window_ms=win),
               "synchrony": analysis.synchrony(signals, time_window_ms=win)}
    cols = []
    for name, da in metrics.items():
        da = da.compute()
        for ct in da["cell_type"].values if "cell_type" in da.dims else [None]:
            sub = da.sel(cell_type=ct) if ct is not None else da
            cols.append(sub.rename(f"{name}_{ct}" if ct else name))
    ds = xr.merge([c.drop_vars("cell_type", errors="ignore") for c in cols], compat="override")
    if "member" not in ds.dims:
        return ds.expand_dims("member").to_dataframe()
    if group_by:
        coords = [c for c in ds.coords if ds[c].dims == ("member",) and c != "member"]
        unknown = [g for g in group_by if g not in coords]
        if unknown:
            raise ConfigurationError(f"analyze: --group-by {' '.join(unknown)} is invalid; the member coordinates "
                                     f"of this store are {', '.join(coords)}")
        key = list(group_by) if len(group_by) > 1 else group_by[0]
        grouped = ds.drop_vars([c for c in coords if c not in group_by]).groupby(key)
        mean, std, n = grouped.mean(), grouped.std(ddof=1), grouped.count()
        parts = []
        for var in ds.data_vars:
            parts += [mean[var].rename(f"{var}_mean"), std[var].rename(f"{var}_std"),
                      (std[var] / np.sqrt(n[var])).rename(f"{var}_sem")]
        first = next(iter(ds.data_vars))
        parts.append(n[first].rename("n"))
        return xr.merge(parts).to_dataframe()
    frame = ds.reset_coords().to_dataframe()
    return frame


#: jaxfne analyze --scheduler: seconds to reach the scheduler before giving up (an unreachable address is an
#: error within this time, not a hang; a reachable scheduler answers in milliseconds)
SCHEDULER_CONNECT_S = 5


@contextlib.contextmanager
def dask_scheduler(address):
    """Dask computations inside run on the ``dask.distributed`` scheduler at ``address`` (None: Dask's
    default local scheduler). A scheduler not reached within SCHEDULER_CONNECT_S seconds, or an address
    that is not one, is a ConfigurationError naming the address. Its workers must import jaxfne and read the
    store's path (docs/cluster.md)."""
    if address is None:
        yield None
        return
    try:
        import distributed
    except ImportError:
        raise ConfigurationError(f"analyze: --scheduler {address} needs the dask.distributed package "
                                 "(pip install distributed)") from None
    try:
        client = distributed.Client(address, timeout=SCHEDULER_CONNECT_S, set_as_default=True)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise ConfigurationError(f"analyze: --scheduler {address}: no dask.distributed scheduler reached within "
                                 f"{SCHEDULER_CONNECT_S} s ({type(exc).__name__}: {exc}); give tcp://HOST:PORT "
                                 "of a running `dask scheduler`") from None
    with client:
        yield client


def cmd_analyze(args) -> int:
    with dask_scheduler(args.scheduler):
        signals = open_signals(args.store)
        frame = readout_table(signals, args.group_by, args.window_ms)
    if args.format == "json":
        text = frame.reset_index().to_json(orient="records", indent=2)
    else:
        text = frame.to_csv()
    if args.out:
        try:
            pathlib.Path(args.out).write_text(text)
        except OSError as exc:
            raise ConfigurationError(f"analyze: --out {args.out} cannot be written ({exc.strerror})") from None
        print(f"wrote {len(frame)} rows to {args.out}")
    else:
        print(text)
    return 0


def write_figures(signals, out, member=0) -> list:
    """The standard figures of a run (one member of an ensemble) plus sweep figures."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import xarray as xr

    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sel = {"member": member} if signals.is_ensemble else {}
    figs = {"raster": viz.raster(signals, **sel), "rates": viz.rates(signals, **sel),
            "spectrum": viz.spectrum(signals, **sel), "summary": viz.summary(signals, **sel)}
    for name in signals:                  # every per-neuron trace probe (Vm: "voltages", as before)
        p = PROBES[name]
        if p.dtype == "float" and not p.is_field:
            figs["voltages" if name == "Vm" else f"traces_{name}"] = viz.traces(signals, name, **sel)
    if any(name in signals for name in viz.depth_map_probes()):
        figs["fields"] = viz.fields(signals, **sel)
    if signals.is_ensemble:
        swept = [c for c in signals["SPK"].coords if signals["SPK"][c].dims == ("member",)
                 and c not in ("seed", "member")]
        # the three E statistics in one pass over the (possibly store-backed) spikes
        lazy = xr.Dataset({"rate": analysis.firing_rate(signals), "cv": analysis.cv_isi(signals),
                           "sync": analysis.synchrony(signals)}).sel(cell_type="E")
        stats = lazy.compute()
        rate_e = stats["rate"]
        if len(swept) >= 2:
            x, y = swept[0], swept[1]
            figs["sweep_E_rate"] = viz.sweep_heatmap(rate_e, x=x, y=y)
            figs["phase_diagram"] = viz.phase_diagram(
                {"E rate": rate_e, "E ISI CV": stats["cv"], "E synchrony (Golomb chi^2)": stats["sync"]},
                x=x, y=y, title=f"E population over {x} x {y}")
        figs["E_rate_distribution"] = viz.distribution(rate_e)
    paths = []
    for name, fig in figs.items():
        path = out / f"{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def cmd_plot(args) -> int:
    out = pathlib.Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigurationError(f"plot: --out {out} is a file; give a folder for the figures")
    paths = write_figures(open_signals(args.store), out, member=args.member)
    for p in paths:
        print(p)
    return 0


def cmd_bench(args) -> int:
    scaling_table(members=args.members, duration_ms=args.duration_ms, devices=_devices(args.devices),
                  json_path=args.json, baseline=not args.no_baseline)
    return 0


def cmd_calibrate(args) -> int:
    """Calibrate a TOML spec's [calibrate] parameters to its targets, rounds streamed to (and resumed from) --store."""
    cfg, kwargs = load_calibration_spec(args.spec)
    try:
        result = calibrate(cfg, **kwargs, store=args.store, progress=not args.quiet, devices=_devices(args.devices),
                           engine=args.engine)
    except KeyboardInterrupt:
        print(f"\ninterrupted: {args.store} holds every finished round; run the same command again to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    summary = {"store": args.store, "rounds": result.rounds_done, "best_loss": result.best_loss,
               "best": result.best, "best_readouts": result.best_readouts}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"done: {result.rounds_done} rounds, best loss {result.best_loss:.6g}, store {args.store}")
        for path, value in result.best.items():
            print(f"  {path} = {value:.6g}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="jaxfne", description="Ensembles of spiking Izhikevich networks in JAX.")
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a TOML spec into a Zarr store (resumes an unfinished one)")
    r.add_argument("spec", help="TOML file with tables runtime, column, cell_types, connectivity, emitter, "
                                "drive, probes, ensemble")
    r.add_argument("--store", required=True, help="Zarr store path")
    r.add_argument("--chunk-ms", type=float, default=None, help="simulated ms per chunk")
    r.add_argument("--devices", type=int, default=None, help="number of devices to use (default: all)")
    r.add_argument("--overwrite", action="store_true", help="replace a store that holds a different run")
    r.add_argument("--engine", choices=("auto", "xla", "native"), default="auto",
                   help="step implementation (docs/engines.md); default: native on a CPU when it builds")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--distributed", action="store_true",
                   help="one of several processes (jax.distributed; docs/cluster.md): each simulates the members "
                        "on its devices into the one store (on a shared file system); the processes are "
                        "detected under SLURM and Open MPI, else give the three options below")
    r.add_argument("--coordinator", metavar="HOST:PORT", default=None,
                   help="with --distributed: address of process 0 (default: $JAXFNE_COORDINATOR, else detected)")
    r.add_argument("--num-processes", type=int, default=None, metavar="N",
                   help="with --distributed: number of processes (default: $JAXFNE_NUM_PROCESSES, else detected)")
    r.add_argument("--process-id", type=int, default=None, metavar="I",
                   help="with --distributed: this process, 0 to N-1 (default: $JAXFNE_PROCESS_ID, else detected)")
    r.set_defaults(func=cmd_run)
    i = sub.add_parser("info", help="what a store holds and how complete it is")
    i.add_argument("store")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)
    v = sub.add_parser("verify", help="read every chunk of a store; exit 3 when a chunk is missing or damaged")
    v.add_argument("store")
    v.add_argument("--json", action="store_true", help="the report as JSON")
    v.set_defaults(func=cmd_verify)
    a = sub.add_parser("analyze", help="readouts per member, or grouped by swept parameters (lazy)")
    a.add_argument("store")
    a.add_argument("--group-by", nargs="+", default=None,
                   help="member coordinates to group by: mean, std, SEM and n over the group's members (seeds)")
    a.add_argument("--window-ms", nargs=2, type=float, default=None, metavar=("START", "STOP"),
                   help="readouts over [START, STOP) ms only (leave out the onset transient)")
    a.add_argument("--format", choices=("csv", "json"), default="csv")
    a.add_argument("--out", help="write to this file instead of standard output")
    a.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="compute on the dask.distributed scheduler at ADDRESS (tcp://HOST:PORT); its workers "
                        "must import jaxfne and see the store's path (docs/cluster.md)")
    a.set_defaults(func=cmd_analyze)
    p = sub.add_parser("plot", help="write the standard figures of a store as PNG")
    p.add_argument("store")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--member", type=int, default=0, help="member shown in single-network figures")
    p.set_defaults(func=cmd_plot)
    b = sub.add_parser("bench", help="scaling benchmark on this machine (neuron-steps per second)")
    b.add_argument("--members", type=int, nargs="+", default=[16, 64, 256, 1024])
    b.add_argument("--duration-ms", type=float, default=200.0)
    b.add_argument("--devices", type=int, default=None)
    b.add_argument("--json", help="write the table as JSON here")
    b.add_argument("--no-baseline", action="store_true", help="skip the plain-JAX dense baseline")
    b.set_defaults(func=cmd_bench)
    c = sub.add_parser("calibrate", help="fit a TOML spec's [calibrate] parameters to its targets "
                                         "(docs/calibration.md); resumes an unfinished store")
    c.add_argument("spec", help="TOML file: the configuration's tables plus [calibrate], [calibrate.params], "
                                "[calibrate.targets]")
    c.add_argument("--store", required=True, help="Zarr store of the rounds (resumed when it exists)")
    c.add_argument("--devices", type=int, default=None, help="number of devices to use (default: all)")
    c.add_argument("--engine", choices=("auto", "xla", "native"), default="auto", help="step implementation")
    c.add_argument("--json", action="store_true", help="print the result as JSON")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=cmd_calibrate)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    use_command_buffers()
    use_host_devices()
    try:
        return args.func(args)
    except JaxfneError as exc:
        print(f"jaxfne {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
