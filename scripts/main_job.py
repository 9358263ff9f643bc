"""The main job: the tutorial network of the seed page, its readouts and manifest."""

from __future__ import annotations

import argparse
import json
import pathlib

import jaxfne as jtfne


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
    parser.add_argument("--out", default="outputs/tutorial", help="output directory (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
