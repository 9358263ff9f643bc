"""Small parse functions: each checks one value and names it in its error."""

from __future__ import annotations

import math
import numbers
import pathlib
import tomllib

from ._errors import ConfigurationError, StepsError, bad_value

#: relative tolerance of parse_steps: value_ms / dt_ms may miss a whole number by 1e-6 * max(1, steps)
STEPS_RTOL = 1e-6


def parse_int(where, field, value, *, minimum=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise bad_value(where, field, value, "an integer is required")
    value = int(value)
    if abs(value) >= 2**63:      # every count, index and seed is stored in 64 bits at most
        raise bad_value(where, field, value, "it is too large; |value| < 2**63 is required")
    if minimum is not None and value < minimum:
        raise bad_value(where, field, value, f"it must be >= {minimum}")
    return value


def parse_float(where, field, value, *, minimum=None, maximum=None, positive=False):
    """A finite real number, optionally bounded (bounds inclusive)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise bad_value(where, field, value, "a finite real number is required")
    try:
        value = float(value)
    except OverflowError:  # an int beyond the float range
        raise bad_value(where, field, value, "it is too large; a finite number is required") from None
    if not math.isfinite(value):
        raise bad_value(where, field, value, "NaN and infinity are not allowed; a finite number is required")
    if positive and value <= 0:
        raise bad_value(where, field, value, "it must be > 0")
    if minimum is not None and value < minimum:
        raise bad_value(where, field, value, f"it must be >= {minimum}")
    if maximum is not None and value > maximum:
        raise bad_value(where, field, value, f"it must be <= {maximum}")
    return value


def parse_bool(where, field, value):
    if not isinstance(value, bool):
        raise bad_value(where, field, value, "True or False is required")
    return value


def parse_choice(where, field, value, choices):
    if not isinstance(value, str) or value not in choices:
        raise bad_value(where, field, value, f"valid values are {', '.join(sorted(choices))}")
    return value


def parse_mapping(where, field, value):
    if not hasattr(value, "items"):
        raise bad_value(where, field, value, "a mapping (dict) is required")
    return dict(value)


def parse_choices(where, field, value, choices, what):
    """A list (not a string) whose every item is one of ``choices``."""
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise bad_value(where, field, value, f"a list of {what} is required")
    items = list(value)
    for item in items:
        parse_choice(where, field, item, choices)
    return items


def parse_steps(where, field, value_ms, dt_ms, *, minimum=1):
    """The number of time steps of ``dt_ms`` in ``value_ms``, which must be a whole number of them.

    ``value_ms`` must be a finite real number (not a bool), ``>= 0``, and
    ``value_ms / dt_ms`` a whole number to a relative ``STEPS_RTOL`` (so
    ``0.3 / 0.1 = 2.9999999999999996`` is 3 steps) of at least ``minimum``
    steps (``minimum=0`` allows a zero duration). ``dt_ms`` is trusted: it
    was validated where it was given. Every refusal is one
    :class:`~jaxfne._errors.StepsError` (a ConfigurationError, SimulationError
    and ReadoutError) whose message names ``where``, ``field`` and the value.
    """
    def refuse(why):
        return StepsError(f"{where}: {field}={value_ms!r} is invalid; it must be a whole number of steps of "
                          f"dt_ms={dt_ms:g} ({why})")

    if isinstance(value_ms, bool) or not isinstance(value_ms, numbers.Real):
        raise refuse("a finite real number of ms is required")
    try:
        value = float(value_ms)
    except OverflowError:  # an int beyond the float range
        raise refuse("a finite real number of ms is required") from None
    if not math.isfinite(value):
        raise refuse("NaN and infinity are not allowed")
    if value < 0 or (value == 0 and minimum > 0):
        raise refuse("a positive number of ms is required" if minimum > 0 else "a number of ms >= 0 is required")
    steps = value / dt_ms
    if not math.isfinite(steps):
        raise refuse("it is too many steps to count")
    whole = round(steps)
    if abs(steps - whole) > STEPS_RTOL * max(1.0, steps):
        lo = math.floor(steps)
        near = [k for k in (lo, lo + 1) if k >= minimum]
        nearest = " or ".join(f"{k * dt_ms:g} ms" for k in near)
        raise refuse(f"it is {steps:.6g} steps; nearest allowed: {nearest}")
    if whole < minimum:
        raise refuse(f"it is {steps:.6g} steps; at least {minimum} ({minimum * dt_ms:g} ms) required")
    return int(whole)


def read_toml(path) -> dict:
    """The tables of a TOML spec file; every way it cannot be read is a ConfigurationError naming the file."""
    path = pathlib.Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigurationError(f"{path}: is a folder; give the path of a TOML spec file") from None
    except PermissionError:
        raise ConfigurationError(f"{path}: cannot be read (permission denied)") from None
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"{path}: is not UTF-8 text (byte {exc.start}); a TOML spec is UTF-8") from None
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: not valid TOML ({exc})") from None
