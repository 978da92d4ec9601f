"""Durations in specs: ``500ms``, ``30s``, ``5m``, ``1h``, ``1m30s``, or plain seconds."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> float:
    """Seconds in ``value``: a number (seconds) or text such as ``30s``, ``5m``, ``1h30m``.

    Raises ValueError, with the accepted forms, for anything else (negative
    numbers, unknown units, booleans).
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(_ALLOWED)
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            pos, seconds = 0, 0.0
            for match in _PART.finditer(text):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNITS[match.group(2)]
                pos = match.end()
            if pos != len(text) or not text:
                raise ValueError(_ALLOWED) from None
    else:
        raise ValueError(_ALLOWED)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(_ALLOWED)
    return seconds


_ALLOWED = (
    "must be a duration such as 500ms, 30s, 5m, 1h or 1m30s, or a non-negative number of seconds"
)


def format_duration(seconds: float) -> str:
    """Short text for ``seconds``: ``90s`` -> ``1m30s``, ``0.5`` -> ``500ms``."""
    if seconds < 1 and seconds != 0:
        return f"{seconds * 1000:g}ms"
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text + (f"{secs}s" if secs or not text else "")


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]
"""A spec field holding a duration; validated to seconds (a float), written back as text."""
