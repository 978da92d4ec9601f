"""The eval gate's configuration: ``gates: eval:`` in ``llmship.yaml``.

Read here, not in ``Settings``: it is nested, and only ``llmship eval`` needs it::

    gates:
      eval:
        alpha: 0.05
        metrics:
          pass_rate: {min: 0.8, max_regression: 0.1}
          rouge_l: {min: 0.2, max_regression: 0.05, min_effect: 0.01}
          bleu: {max_regression: 2.0}

The file is ``$LLMSHIP_CONFIG``, else ``llmship.yaml`` in the working directory.
Without a ``gates: eval:`` section, :func:`default_gate` applies: ``pass_rate``
(the share of cases that pass their assertions) must not regress significantly,
nor by more than 0.1; a dataset without assertions gates ``chrf`` the same way
(more than 0.05). No absolute minimums; every other metric is reported only.

``gates: require:`` names the gates a release must have passed before it takes
an environment's ``production`` alias (see :mod:`llmship.release.guard`)::

    gates:
      require:
        prod: [eval, loadtest]
        staging: [eval]
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llmship.errors import SpecError
from llmship.eval.gate import EvalGateConfig, MetricGate
from llmship.settings import config_path, read_config

__all__ = [
    "DEFAULT_GATE",
    "GATE_KINDS",
    "GateConfig",
    "config_path",
    "default_gate",
    "load_gate",
    "load_requirements",
    "read_gates",
]

GATE_KINDS = ("eval", "loadtest")
"""The gates ``gates: require:`` may name."""

DEFAULT_GATE: Mapping[str, Mapping[str, float]] = {
    "pass_rate": {"max_regression": 0.1},
    "chrf": {"max_regression": 0.05},
}
"""The gate used without ``gates: eval:``: the first of these metrics that is measured."""


@dataclass(frozen=True)
class GateConfig:
    """The eval gate in force, and where it came from."""

    gate: EvalGateConfig
    source: str
    """``llmship.yaml`` (the path), or ``default`` when the file configures no eval gate."""
    configured: bool
    """False when :func:`default_gate` will apply (it depends on what is measured)."""


def read_gates(path: Path | None = None) -> dict[str, Any]:
    """The ``gates:`` mapping of ``llmship.yaml`` (empty when there is no file or section).

    Read for ``llmship eval`` (``gates: eval:``) and the promotion guard (``require:``);
    ``llmship loadtest`` reads ``gates: loadtest:`` from the same file.
    SpecError names the file when it is not valid YAML or ``gates`` is not a mapping.
    """
    path, data = read_config(path)
    if not isinstance(data, dict):
        raise SpecError(f"{path}: the configuration must be a mapping of setting: value")
    gates = data.get("gates") or {}
    if not isinstance(gates, dict):
        raise SpecError(f"{path}: gates: must be a mapping (eval:, loadtest:, require:)")
    return gates


def load_gate(path: Path | None = None) -> GateConfig:
    """The eval gate of ``llmship.yaml``; SpecError names the file and the bad field."""
    file = path or config_path()
    section = read_gates(path).get("eval")
    if section is None:
        return GateConfig(gate=EvalGateConfig(), source="default", configured=False)
    if not isinstance(section, dict):
        raise SpecError(f"{file}: gates.eval: must be a mapping (alpha:, metrics:)")
    try:
        gate = EvalGateConfig.model_validate(section)
    except ValidationError as exc:
        raise SpecError(f"{file}: {_describe(exc)}") from exc
    return GateConfig(gate=gate, source=str(file), configured=True)


def load_requirements(path: Path | None = None) -> dict[str, tuple[str, ...]]:
    """``gates: require:`` of ``llmship.yaml``: environment -> the gates a release must
    have passed to become its production release (empty when nothing is required).

    SpecError names the file and the bad entry (an unknown gate, a non-list).
    """
    file = path or config_path()
    section = read_gates(path).get("require")
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


def default_gate(measured: Collection[str], *, alpha: float = 0.05) -> EvalGateConfig:
    """The gate used without configuration: the first measured metric of :data:`DEFAULT_GATE`
    (no metric at all when none is measured)."""
    for name, limits in DEFAULT_GATE.items():
        if name in measured:
            metrics = {name: MetricGate.model_validate(dict(limits))}
            return EvalGateConfig(alpha=alpha, metrics=metrics)
    return EvalGateConfig(alpha=alpha)


def _describe(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in ("gates", "eval", *err["loc"]))
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field (see docs/eval.md)"
        problems.append(f"{where}: {message}")
    return "; ".join(problems)
