"""The manifest: provenance and scope metadata of a run, from what its Signals carry (or from its model)."""

from __future__ import annotations

import json
import platform

import numpy as np

import jax
import jaxlib
import xarray as xr
import zarr

from .._errors import ReadoutError
from .._probes import REGISTRY
from .._version import __version__
from ._health import check_health

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
    return {"jaxfne": __version__, "python": platform.python_version(), "jax": jax.__version__,
            "jaxlib": jaxlib.__version__, "numpy": np.__version__, "xarray": xr.__version__,
            "zarr": zarr.__version__}


def manifest(model=None, signals=None, readouts=None) -> dict:
    """A JSON-serialisable dict: configuration, hash, seeds, versions, scope, probes, engine, health, readouts.

    With ``signals``, the run is described from what they carry (their
    configuration, hash, seeds, probes and engine), whatever ``model`` is: a
    run with ``simulate(model, duration_ms=..., seed=...)`` overrides is
    described as it ran, and nothing is constructed again. Without signals,
    from ``model`` (a run not made yet, such as a store being created).
    """
    if signals is not None:
        attrs = signals.attrs
        text = attrs.get("config_json")
        if text is None:
            raise ReadoutError("manifest: the signals carry no 'config_json' attribute (not made by jaxfne?); "
                               "their configuration is unknown")
        config, config_hash = json.loads(text), attrs["config_hash"]
        seeds = np.atleast_1d(np.asarray(signals.dataset["seed"].values)).tolist()
        n_members = int(signals.dataset.sizes.get("member", 1))
        probes = list(signals)
    elif model is not None:
        cfg = model.config
        config, config_hash = cfg.to_dict(), cfg.config_hash()
        seeds = np.asarray(model.member_coords["seed"]).tolist()
        n_members, probes = model.n_members, list(model.layout.probes)
    else:
        raise ReadoutError("manifest: give the model, the signals of a run, or both")
    out = {
        "schema": "jaxfne.manifest/1",
        **SCOPE,
        "scope_notes": list(SCOPE_NOTES),
        "config": config,
        "config_hash": config_hash,
        "seeds": seeds,
        "n_members": n_members,
        "versions": versions(),
        "probes": {p: {"units": REGISTRY[p].units, "description": REGISTRY[p].description} for p in probes},
    }
    if signals is not None:
        # the step's implementation (docs/engines.md): engines agree to rounding, so it names the exact bits
        out["engine"] = signals.attrs.get("engine", "xla")
        out["health"] = check_health(signals).to_dict()
    if readouts is not None:
        out["readouts"] = {name: r.to_dict() for name, r in readouts.items()}
    return out


def write_manifest(manifest_dict: dict, path) -> None:
    """Write a manifest as indented JSON."""
    with open(path, "w") as fh:
        json.dump(manifest_dict, fh, indent=2, sort_keys=False)
        fh.write("\n")
