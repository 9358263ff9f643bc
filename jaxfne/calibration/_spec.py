"""A calibration as a TOML file: the configuration's tables (as ``jaxfne run`` reads them) plus ``[calibrate]``.

::

    [column]
    n = 100
    [calibrate]
    method = "cmaes"          # or "random", "lhs"
    rounds = 10               # or max_networks = 640
    candidates = 16
    seeds = 2                 # a count or a list
    search_seed = 0
    window_ms = [50.0, 1000.0]   # optional
    [calibrate.params]
    "drive.current.E" = [0.0, 10.0]
    [calibrate.targets]
    "spike_rate_hz.E" = [5.0, 1.0]    # value, sd
"""

from __future__ import annotations

import pathlib

from .._errors import ConfigurationError
from .._validate import read_toml
from ..config import Configuration

#: keys of the [calibrate] table, as keyword arguments of calibrate()
KEYS = ("params", "targets", "method", "rounds", "max_networks", "candidates", "seeds", "search_seed", "window_ms")


def load_calibration_spec(path) -> tuple:
    """(configuration, calibrate keyword arguments) of a TOML spec; errors name the file."""
    path = pathlib.Path(path)
    data = read_toml(path)
    section = data.pop("calibrate", None)
    if not isinstance(section, dict):
        raise ConfigurationError(f"{path}: a [calibrate] table with params and targets is required "
                                 "(docs/calibration.md)")
    unknown = [k for k in section if k not in KEYS]
    if unknown:
        raise ConfigurationError(f"{path}: [calibrate] has unknown key(s) {', '.join(map(repr, unknown))}; "
                                 f"valid keys are {', '.join(KEYS)}")
    for key in ("params", "targets"):
        if key not in section:
            raise ConfigurationError(f"{path}: [calibrate.{key}] is required")
    try:
        cfg = Configuration.from_dict(data, where=str(path))
    except ConfigurationError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise type(exc)(f"{path}: {exc}") from None
    kwargs = dict(section)
    for key in ("params", "targets"):
        kwargs[key] = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs[key].items()}
    if isinstance(kwargs.get("window_ms"), list):
        kwargs["window_ms"] = tuple(kwargs["window_ms"])
    if "max_networks" in kwargs and "rounds" not in kwargs:
        kwargs["rounds"] = None
    return cfg, kwargs
