"""One error hierarchy for jaxfne.

Every error a user can trigger derives from :class:`JaxfneError`, itself a
``ValueError``, so ``except ValueError`` keeps working for callers that do not
know jaxfne. Messages name the place (method, field), the value received and
what is allowed.
"""

from __future__ import annotations


class JaxfneError(ValueError):
    """Base class of every error raised by jaxfne."""


class ConfigurationError(JaxfneError):
    """A configuration value is invalid; raised where the value is given."""


class SimulationError(JaxfneError):
    """A simulation could not run or produced an invalid state."""


class ReadoutError(JaxfneError):
    """A readout specification does not fit the signals it is applied to."""


class StoreError(JaxfneError):
    """A Zarr store could not be created, read, resumed or written."""


class StepsError(ConfigurationError, SimulationError, ReadoutError):
    """A duration in ms is not a whole number of time steps (``jaxfne._validate.parse_steps``).

    One class for every such check (runtime duration, probe sampling, chunks,
    bins). It derives from the three classes these checks raised before, so
    ``except ConfigurationError``, ``except SimulationError`` and ``except
    ReadoutError`` around any of them keep working.
    """


def bad_value(where: str, field: str, value, allowed: str) -> ConfigurationError:
    """Build a ConfigurationError with the standard message shape (a value's repr is cut to 200 characters)."""
    shown = repr(value)
    if len(shown) > 200:
        shown = f"{shown[:80]}...{shown[-20:]} ({len(shown)} characters)"
    return ConfigurationError(f"{where}: {field}={shown} is invalid; {allowed}")
