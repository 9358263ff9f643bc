"""Small parse functions: each checks one value and names it in its error."""

from __future__ import annotations

import math
import numbers

from ._errors import bad_value


def parse_int(where, field, value, *, minimum=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise bad_value(where, field, value, "an integer is required")
    value = int(value)
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
