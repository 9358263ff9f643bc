"""The main job.

1. The tutorial network of the seed page: readouts, health and manifest.
2. A sweep of inhibition strength x drive (scripts/phase_sweep.toml: 6 I->E
   strengths x 5 E drives x 4 seeds = 120 networks) streamed into a Zarr store,
   analysed lazily with Dask, and its figures written, among them the phase
   diagram (E rate, ISI CV and synchrony, mean and seed-to-seed std per cell).
   Weak inhibition turns the asynchronous state into synchronous bursts.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jaxfne as jtfne
from jaxfne.cli import load_spec, readout_table, write_figures

HERE = pathlib.Path(__file__).parent


def tutorial_configuration(seed: int = 42) -> jtfne.Configuration:
    return (jtfne.Configuration()
            .runtime(seed=seed, duration_ms=1000.0, dt_ms=0.1)
            .column(name="L2/3_column", layers=["L2/3"], n=100)
            .cell_types({"E": 0.75, "I": 0.25})
            .connectivity()
            .set_emitter(family="izhikevich", preset="cortical_eig")
            .probes(["SPK", "Vm", "source", "LFP-proxy", "CSD-proxy"]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="outputs", help="output directory (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--spec", default=str(HERE / "phase_sweep.toml"), help="the sweep's TOML spec")
    parser.add_argument("--skip-sweep", action="store_true", help="run only the tutorial network")
    args = parser.parse_args(argv)
    from jaxfne.engine._devices import use_command_buffers, use_host_devices
    use_command_buffers()   # GPUs: the step's while loops inside CUDA graphs (no effect on a CPU)
    use_host_devices()   # shards of the ensemble run in parallel on the CPU's cores
    root = pathlib.Path(args.out)
    out = root / "tutorial"
    out.mkdir(parents=True, exist_ok=True)

    model = jtfne.construct(tutorial_configuration(args.seed))
    signals = jtfne.simulate(model, duration_ms=1000.0, dt_ms=0.1, seed=args.seed)
    specs = [
        jtfne.readout_spec("population_rate", "spike_rate_hz"),
        jtfne.readout_spec("E_rate", "spike_rate_hz", cell_type="E"),
        jtfne.readout_spec("I_rate", "spike_rate_hz", cell_type="I"),
        jtfne.readout_spec("cv_isi", "cv_isi"),
        jtfne.readout_spec("mean_voltage", "mean_V_m"),
        jtfne.readout_spec("min_voltage", "min_V_m"),
        jtfne.readout_spec("max_voltage", "max_V_m"),
        jtfne.readout_spec("lfp_proxy", "lfp_abs_mean"),
        jtfne.readout_spec("csd_proxy", "csd_abs_mean"),
    ]
    readouts = model.compute_readout(signals, specs)
    print(f"jaxfne {jtfne.__version__}: tutorial network (100 neurons, 75% E, cortical_eig, 1000 ms)")
    for name, r in readouts.items():
        print(f"  {name:16s} {r.value:10.3f} {r.units}")
    health = model.health(signals)
    print(f"  health: {health.status}" + "".join(f"\n  - {m}" for m in health.messages))
    manifest = model.manifest(signals=signals, readouts=readouts)
    jtfne.write_manifest(manifest, out / "manifest.json")
    print(f"manifest written to {out / 'manifest.json'}")
    print("scope:", json.dumps({k: manifest[k] for k in jtfne.SCOPE}))
    if not args.skip_sweep:
        run_sweep(args.spec, root)
    return 0


def run_sweep(spec, root: pathlib.Path) -> None:
    cfg = load_spec(spec)
    model = jtfne.construct(cfg)
    store = root / "phase_sweep.zarr"
    print(f"\nInhibition x drive sweep: {model.n_members} networks ({spec}) -> {store}")
    t = time.perf_counter()
    signals = jtfne.simulate(model, store=store, chunk_ms=100.0, progress=True)
    print(f"simulated in {time.perf_counter() - t:.1f} s (a finished store is reused; delete it to rerun)")
    t = time.perf_counter()
    swept = [c for c in signals["SPK"].coords if signals["SPK"][c].dims == ("member",)
             and c not in ("seed", "member")]
    table = readout_table(signals, group_by=swept)
    table.to_csv(root / "phase_sweep_readouts.csv")
    readout_table(signals).to_csv(root / "phase_sweep_readouts_per_member.csv")
    print(f"lazy analysis in {time.perf_counter() - t:.1f} s; mean over seeds (Hz, CV, Fano, synchrony):")
    cols = [c for c in table.columns if c.endswith("_mean") and "fano" not in c] + ["n"]
    print(table[cols].round(3).to_string())
    print("ranges of the per-cell means (E population):")
    for name in ("rate_hz_E", "cv_isi_E", "synchrony_E"):
        col = table[f"{name}_mean"]
        print(f"  {name:12s} {col.min():8.3f} .. {col.max():8.3f}  (largest seed-to-seed std "
              f"{table[f'{name}_std'].max():.3f})")
    t = time.perf_counter()
    figures = write_figures(signals, root / "figures")
    print(f"figures in {time.perf_counter() - t:.1f} s")
    print(f"\noutputs in {root}/: tutorial/manifest.json, phase_sweep.zarr (open with xarray.open_zarr or "
          f"jaxfne.open_signals), phase_sweep_readouts.csv, phase_sweep_readouts_per_member.csv, "
          f"figures/ ({', '.join(p.name for p in figures)})")


if __name__ == "__main__":
    raise SystemExit(main())
