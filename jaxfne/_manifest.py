"""The manifest: provenance and scope metadata derived from the configuration."""

from __future__ import annotations

import json
import platform

import numpy as np

from ._version import __version__

#: The scope block of every output, exactly as documented on the tutorial page.
SCOPE = {
    "scope_status": "computational_scaffold",
    "calibration_status": "uncalibrated_phenomenological",
    "readout_status": "proxy_scale",
    "field_mode": "proxy_convolution_no_pde",
    "amplitude_status": False,
}

SCOPE_NOTES = (
    "Izhikevich neurons are phenomenological, not biophysical.",
    "LFP-proxy and CSD-proxy are proxies (distance-weighted sums of synaptic currents and their second "
    "spatial difference); no volume-conductor equation is solved and amplitudes are arbitrary units.",
    "Outputs are uncalibrated and not for direct comparison with recordings.",
    "No plasticity, neuromodulation, or source localisation.",
)


def versions() -> dict:
    import jax
    import jaxlib
    import xarray
    out = {"jaxfne": __version__, "python": platform.python_version(), "jax": jax.__version__,
           "jaxlib": jaxlib.__version__, "numpy": np.__version__, "xarray": xarray.__version__}
    try:
        import zarr
        out["zarr"] = zarr.__version__
    except ImportError:  # pragma: no cover
        pass
    return out


def manifest(model, signals=None, readouts=None) -> dict:
    """A JSON-serialisable dict: configuration, hash, seeds, versions, scope, readouts."""
    from ._signals import DESCRIPTIONS, UNITS
    cfg = model.config
    if signals is not None and signals.attrs.get("config_hash", cfg.config_hash()) != cfg.config_hash():
        # simulate(model, duration_ms=..., seed=...) ran another configuration: describe that run
        from ._config import Configuration
        from ._errors import ReadoutError
        text = signals.attrs.get("config_json")
        if text is None:
            raise ReadoutError("manifest: the signals come from another configuration than this model "
                               f"(hash {signals.attrs['config_hash'][:12]}...); build the model from that "
                               "configuration")
        from ._model import construct
        model = construct(Configuration.from_dict(json.loads(text)))
        cfg = model.config
    out = {
        "schema": "jaxfne.manifest/1",
        **SCOPE,
        "scope_notes": list(SCOPE_NOTES),
        "config": cfg.to_dict(),
        "config_hash": cfg.config_hash(),
        "seeds": np.asarray(model.member_coords["seed"]).tolist(),
        "n_members": model.n_members,
        "versions": versions(),
        "probes": {p: {"units": UNITS[p], "description": DESCRIPTIONS[p]} for p in model.layout.probes},
    }
    if signals is not None:
        # the step's implementation (docs/engines.md): engines agree to rounding, so it names the exact bits
        out["engine"] = signals.attrs.get("engine", "xla")
        out["health"] = model.health(signals).to_dict()
    if readouts is not None:
        out["readouts"] = {name: r.to_dict() for name, r in readouts.items()}
    return out


def write_manifest(manifest_dict: dict, path) -> None:
    """Write a manifest as indented JSON."""
    with open(path, "w") as fh:
        json.dump(manifest_dict, fh, indent=2, sort_keys=False)
        fh.write("\n")
