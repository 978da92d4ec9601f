"""Template arguments: ``{{args.NAME}}`` placeholders in queries, URLs, headers and bodies.

Four arguments are always there, filled in by the controller for each run:

- ``version``: the release under analysis (the candidate), as the ``version``
  label of the gateway's metrics writes it (``name@version``);
- ``candidate``: the same candidate reference;
- ``stable``: the stable release (empty when there is none);
- ``env``: the environment.

An analysis template can declare more (``args: [{name: x, value: default}]``);
the rollout's analysis reference supplies or overrides their values.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

__all__ = ["BUILTIN_ARGS", "placeholders", "render"]

BUILTIN_ARGS = ("version", "candidate", "stable", "env")
"""Arguments every template can use without declaring them."""

_PLACEHOLDER = re.compile(r"\{\{\s*args\.([A-Za-z0-9_.-]+)\s*\}\}")


def placeholders(text: str) -> Iterator[str]:
    """The argument names ``text`` refers to, in order (with repeats)."""
    for match in _PLACEHOLDER.finditer(text):
        yield match.group(1)


def render(text: str, args: Mapping[str, str]) -> str:
    """``text`` with every ``{{args.NAME}}`` replaced; KeyError naming an unknown argument."""

    def _value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in args:
            raise KeyError(name)
        return args[name]

    return _PLACEHOLDER.sub(_value, text)
