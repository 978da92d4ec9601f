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
an environment's ``production`` alias (see :mod:`llmship.release.promotion_guard`)::

    gates:
      require:
        prod: [eval, loadtest]
        staging: [eval]
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from llmship.errors import SpecError
from llmship.eval import metric_table
from llmship.eval.verdict import EvalGateConfig, MetricGate
from llmship.gates_config import GATE_KINDS, load_requirements, read_gates
from llmship.settings import config_path

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


DEFAULT_GATE: Mapping[str, Mapping[str, float]] = metric_table.default_gate_limits()
"""The gate used without ``gates: eval:``: the first of these metrics that is measured
(read from the metric table: each metric's ``default_gate``)."""


@dataclass(frozen=True)
class GateConfig:
    """The eval gate in force, and where it came from."""

    gate: EvalGateConfig
    source: str
    """``llmship.yaml`` (the path), or ``default`` when the file configures no eval gate."""
    configured: bool
    """False when :func:`default_gate` will apply (it depends on what is measured)."""


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
    if not gate.metrics:
        raise SpecError(
            f"{file}: gates.eval names no metric, and a gate that checks nothing cannot "
            "pass: name the metrics to gate on under gates: eval: metrics: (docs/eval.md), "
            "or remove gates: eval: for the default gate"
        )
    return GateConfig(gate=gate, source=str(file), configured=True)


def default_gate(measured: Collection[str], *, alpha: float = 0.05) -> EvalGateConfig:
    """The gate used without configuration: the first measured metric of :data:`DEFAULT_GATE`,
    as the metric table has it now (no metric at all when none is measured)."""
    for name, limits in metric_table.default_gate_limits().items():
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
