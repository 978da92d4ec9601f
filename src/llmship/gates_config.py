"""The ``gates:`` section of ``llmship.yaml``, and ``gates: require:``.

Light on purpose: the promotion guard reads the required gates on every alias move,
and must not load the eval package (nltk, sacrebleu) to do so. Each environment's
``require:`` (:mod:`llmship.environments`) is where they are set now; ``gates:
require:``, the older place, still applies to an environment that sets none::

    gates:
      require:
        prod: [eval, loadtest]
        staging: [eval]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmship.errors import SpecError
from llmship.settings import read_config

__all__ = ["GATE_KINDS", "load_requirements", "read_gates", "requirements_in"]

GATE_KINDS = ("eval", "loadtest")
"""The gates ``gates: require:`` may name."""


def read_gates(path: Path | None = None) -> dict[str, Any]:
    """The ``gates:`` mapping of ``llmship.yaml`` (empty when there is no file or section).

    Read for ``llmship eval`` (``gates: eval:``) and the promotion guard (``require:``);
    ``llmship loadtest`` reads ``gates: loadtest:`` from the same file.
    SpecError names the file when it is not valid YAML or ``gates`` is not a mapping.
    """
    return _gates_in(*read_config(path))


def _gates_in(path: Path, data: Any) -> dict[str, Any]:
    """The ``gates:`` mapping of the configuration ``data`` read from ``path``."""
    if not isinstance(data, dict):
        raise SpecError(f"{path}: the configuration must be a mapping of setting: value")
    gates = data.get("gates") or {}
    if not isinstance(gates, dict):
        raise SpecError(f"{path}: gates: must be a mapping (eval:, loadtest:, require:)")
    return gates


def load_requirements(path: Path | None = None) -> dict[str, tuple[str, ...]]:
    """``gates: require:`` of ``llmship.yaml``: environment -> the gates a release must
    have passed to become its production release (empty when nothing is required).

    SpecError names the file and the bad entry (an unknown gate, a non-list).
    """
    return requirements_in(*read_config(path))


def requirements_in(file: Path, data: Any) -> dict[str, tuple[str, ...]]:
    """:func:`load_requirements` of the configuration ``data`` already read from
    ``file`` (for callers that read the rest of it too)."""
    section = _gates_in(file, data).get("require")
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise SpecError(f"{file}: gates.require: must be a mapping of env: [eval, loadtest]")
    required: dict[str, tuple[str, ...]] = {}
    for env, given in section.items():
        where = f"{file}: gates.require.{env}"
        kinds = [given] if isinstance(given, str) else [] if given is None else given
        if not isinstance(kinds, list):
            raise SpecError(f"{where}: must be a list of gates, e.g. [eval, loadtest]")
        for kind in kinds:
            if kind not in GATE_KINDS:
                raise SpecError(f"{where}: unknown gate {kind!r}; use {' or '.join(GATE_KINDS)}")
        required[str(env)] = tuple(dict.fromkeys(kinds))
    return required
