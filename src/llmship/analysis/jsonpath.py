"""A JSONPath subset for the ``web`` provider: ``$.a.b[0].c``, ``$['a-b']``, ``$.items[*].x``.

- ``$`` is the whole document;
- ``.name`` or ``['name']`` / ``["name"]`` a key of a mapping (``.name`` takes
  any characters but ``.``, ``[`` and ``]``, so ``$.500`` works);
- ``[N]`` an element of a list (``[-1]`` is the last);
- ``[*]`` or ``.*`` every element (or every value of a mapping); what follows
  applies to each, and the result is a list.

Argo Rollouts writes paths in braces (``{$.data.ok}``); the braces are accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["JsonPath", "JsonPathError", "compile_path"]

_DOT = re.compile(r"\.([^.\[\]]+)")
_INDEX = re.compile(r"\[\s*(-?\d+)\s*\]")
_QUOTED = re.compile(r"""\[\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")\s*\]""")
_WILD = re.compile(r"\[\s*\*\s*\]|\.\*")

_ALL = object()


class JsonPathError(Exception):
    """The path selects nothing in this document."""


@dataclass(frozen=True)
class JsonPath:
    """A compiled path; :meth:`select` applies it to a parsed JSON document."""

    text: str
    steps: tuple[object, ...]

    def select(self, document: Any) -> Any:
        """The selected value; JsonPathError when a key or index is missing."""
        return _walk(document, self.steps, "$")


def _walk(value: Any, steps: tuple[object, ...], where: str) -> Any:
    for i, step in enumerate(steps):
        if step is _ALL:
            if isinstance(value, list):
                items = value
            elif isinstance(value, dict):
                items = list(value.values())
            else:
                raise JsonPathError(f"{where}[*]: not a list or mapping")
            rest = steps[i + 1 :]
            return [_walk(item, rest, f"{where}[{n}]") for n, item in enumerate(items)]
        if isinstance(step, int):
            if not isinstance(value, list):
                raise JsonPathError(f"{where}[{step}]: not a list")
            if not -len(value) <= step < len(value):
                raise JsonPathError(f"{where}[{step}]: the list has {len(value)} element(s)")
            value = value[step]
            where = f"{where}[{step}]"
        else:
            assert isinstance(step, str)
            if not isinstance(value, dict):
                raise JsonPathError(f"{where}.{step}: not a mapping")
            if step not in value:
                raise JsonPathError(f"{where}.{step}: no such key")
            value = value[step]
            where = f"{where}.{step}"
    return value


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def compile_path(text: str) -> JsonPath:
    """Parse ``text``; ValueError saying where it stops being a path."""
    path = text.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1].strip()
    if not path.startswith("$"):
        raise ValueError("a JSONPath starts with $, e.g. $.data.value or $.result[0]")
    steps: list[object] = []
    pos = 1
    while pos < len(path):
        wild = _WILD.match(path, pos)
        if wild:
            steps.append(_ALL)
            pos = wild.end()
            continue
        for pattern in (_DOT, _INDEX, _QUOTED):
            match = pattern.match(path, pos)
            if match:
                break
        else:
            raise ValueError(
                f"cannot read the JSONPath at {path[pos:]!r}; use .key, ['key'], [0] or [*]"
            )
        if pattern is _INDEX:
            steps.append(int(match.group(1)))
        elif pattern is _QUOTED:
            quoted = match.group(1) if match.group(1) is not None else match.group(2)
            steps.append(_unescape(quoted))
        else:
            steps.append(match.group(1).strip())
        pos = match.end()
    return JsonPath(text, tuple(steps))
