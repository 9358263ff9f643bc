"""The ``jaxfne`` command line: run, info, verify, analyze, plot, bench."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import tomllib

import numpy as np

from . import analysis, viz
from ._api import construct, simulate
from ._errors import ConfigurationError, JaxfneError, StoreError
from ._probes import REGISTRY as PROBES
from .bench import scaling_table
from .config import Configuration
from .engine import use_command_buffers, use_host_devices
from .results import open_signals
from .sinks import _store, _verify, verify_store

EXIT_USAGE = 2
#: jaxfne verify: the store has missing or damaged chunks
EXIT_DAMAGED = 3
EXIT_INTERRUPTED = 130


def load_spec(path) -> Configuration:
    """A Configuration from a TOML file whose tables mirror the chainable API."""
    path = pathlib.Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigurationError(f"{path}: is a folder; give the path of a TOML spec file") from None
    except PermissionError:
        raise ConfigurationError(f"{path}: cannot be read (permission denied)") from None
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"{path}: is not UTF-8 text (byte {exc.start}); a TOML spec is UTF-8") from None
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: not valid TOML ({exc})") from None
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


def cmd_run(args) -> int:
    cfg = load_spec(args.spec)
    model = construct(cfg)
    try:
        signals = simulate(model, store=args.store, chunk_ms=args.chunk_ms, overwrite=args.overwrite,
                                 progress=not args.quiet, devices=_devices(args.devices), engine=args.engine)
    except KeyboardInterrupt:
        print(f"\ninterrupted: {args.store} holds every completed chunk; run the same command again to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    n = signals["SPK"].sizes.get("member", 1)
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


def cmd_analyze(args) -> int:
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
            "summary": viz.summary(signals, **sel)}
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
