"""Type checks of user values shared by the API, the algorithms and the samplers: a flag is a bool (never a
truthy string), an integer is not a bool, a number is a finite real; each failure is a one-line
NoiseSearchError that names the option and shows the value briefly."""

from __future__ import annotations

import json
import math
import numbers

import numpy as np

from noisesearch.errors import NoiseSearchError

BOOLS = (bool, np.bool_)


def shown(value: object, limit: int = 60) -> str:
    """A value as one short line for an error message (a tensor's or array's repr spans lines)."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def shown_json(value: object, limit: int | None = None) -> str:
    """A value as JSON writes it (true, "x", 2.5), for errors about a file's entries; `limit` cuts it short."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if limit is None else text[:limit]


def is_json_int(value: object) -> bool:
    """An integer as JSON data holds one (a Python int, not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_json_number(value: object) -> bool:
    """A number as JSON data holds one (a Python int or float, not a bool); NaN and infinities included."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite_number(value: object) -> bool:
    """A JSON number that is neither NaN nor infinite (JSON files may hold NaN and Infinity)."""
    return is_json_number(value) and math.isfinite(value)


def is_flag(value: object) -> bool:
    return isinstance(value, BOOLS)


def is_int(value: object) -> bool:
    """An integer (Python's or numpy's), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, BOOLS)


def is_real(value: object) -> bool:
    """A real number (an int, a float or numpy's), not a bool; NaN and infinities included."""
    return isinstance(value, numbers.Real) and not isinstance(value, BOOLS)


def check_flag(value: object, name: str) -> bool:
    """`value` as a bool if it is one (numpy's too); a string such as "no" or a number is a one-line error,
    since any truthy value would otherwise count as yes."""
    if not is_flag(value):
        raise NoiseSearchError(f"{name} must be True or False, got {shown(value)}")
    return bool(value)


def check_finite(value: object, name: str) -> float:
    """`value` if it is a finite real number; a one-line error otherwise."""
    if not (is_real(value) and math.isfinite(value)):
        raise NoiseSearchError(f"{name} must be a finite number, got {shown(value)}")
    return value
