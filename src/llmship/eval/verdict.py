"""The eval gate: may this candidate go out, given its metrics and the paired comparisons?

A pure decision. Configured in ``llmship.yaml``::

    gates:
      eval:
        alpha: 0.05
        metrics:
          rouge_l: {min: 0.2, max_regression: 0.05, min_effect: 0.01}
          bleu: {max_regression: 2.0, min_effect: 0.5}
          pass_rate: {min: 0.8}

Values are in each metric's own units (BLEU 0..100, the others 0..1). For
each configured metric, with ``regression = baseline - candidate``:

(a) **minimum**: the candidate fails when its value is below ``min`` — always,
    whatever the baseline and with no statistics involved;
(b) **significant regression**: it fails when the regression is statistically
    significant (two-sided ``p < alpha``) and larger than ``min_effect``
    (default 0: every significant regression counts);
(c) **largest allowed regression**: it fails when the regression is larger
    than ``max_regression`` even when it is not significant — a clearly worse
    point estimate is never excused by a large p-value (a small or noisy
    dataset cannot pass a worse candidate).

Only a regression can fail (b) or (c): a significant *improvement* never does.
(b) and (c) need a baseline comparison; without a baseline only (a) applies.
A configured metric that was not measured fails (the dataset cannot support it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llmship.eval import metric_table
from llmship.eval.scoring import CorpusScore
from llmship.eval.significance import Comparison

__all__ = [
    "GATED_METRICS",
    "EvalGateConfig",
    "GateDecision",
    "MetricGate",
    "MetricVerdict",
    "decide",
    "judge_metric",
]

#: The metric names a gate can name: the metrics of the table (``llmship.eval.metric_table``).
GATED_METRICS = tuple(metric_table.METRICS)


class MetricGate(BaseModel):
    """The limits on one metric, in the metric's own units."""

    model_config = ConfigDict(extra="forbid")

    min: float | None = None
    """Absolute minimum for the candidate's value; checked without statistics."""
    max_regression: float | None = Field(default=None, ge=0)
    """Largest allowed drop below the baseline, significant or not."""
    min_effect: float = Field(default=0.0, ge=0)
    """Smallest drop that counts when it is significant."""
    alpha: float | None = Field(default=None, gt=0, lt=1)
    """Significance level for this metric (default: the gate's ``alpha``)."""

    @model_validator(mode="after")
    def _consistent(self) -> MetricGate:
        if self.max_regression is not None and self.min_effect > self.max_regression:
            raise ValueError(
                f"min_effect {self.min_effect:g} is larger than max_regression "
                f"{self.max_regression:g}: every regression above max_regression fails anyway"
            )
        return self


class EvalGateConfig(BaseModel):
    """``gates: eval:`` in ``llmship.yaml``."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(default=0.05, gt=0, lt=1)
    """Significance level of the paired tests (two-sided p-values)."""
    metrics: dict[str, MetricGate] = Field(default_factory=dict)
    """Limits per metric: bleu, chrf, rouge_1, rouge_2, rouge_l, exact_match, accuracy,
    pass_rate, score."""

    @field_validator("metrics")
    @classmethod
    def _known(cls, value: dict[str, MetricGate]) -> dict[str, MetricGate]:
        known = tuple(metric_table.METRICS)
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(known)}")
        return value


@dataclass(frozen=True)
class MetricVerdict:
    """The gate's word on one metric."""

    metric: str
    passed: bool
    reasons: tuple[str, ...]
    """Why it failed (every rule that failed), or, when it passed, what was checked."""
    candidate: float | None
    baseline: float | None = None
    comparison: Comparison | None = None
    failed_rules: tuple[str, ...] = ()
    """``minimum``, ``significant_regression``, ``max_regression``, ``not_measured``."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "metric": self.metric,
            "passed": self.passed,
            "reasons": list(self.reasons),
            "candidate": self.candidate,
            "baseline": self.baseline,
            "comparison": self.comparison.to_dict() if self.comparison else None,
            "failed_rules": list(self.failed_rules),
        }


@dataclass(frozen=True)
class GateDecision:
    """The gate's decision over every configured metric."""

    passed: bool
    verdicts: tuple[MetricVerdict, ...]
    alpha: float

    @property
    def checked_nothing(self) -> bool:
        """True when no metric was judged: none configured, or none of them measured. Such
        a decision is no evidence either way: the run is an error, never a pass."""
        return all("not_measured" in v.failed_rules for v in self.verdicts)

    def nothing_checked_reason(self, *, configured: bool) -> str | None:
        """Why the gate checked nothing, in words that say what to fix; None when it
        checked something. ``configured``: the gate came from ``llmship.yaml``."""
        if not self.checked_nothing:
            return None
        if not self.verdicts:
            return (
                "the eval gate checked nothing: none of the metrics it would judge "
                f"({', '.join(metric_table.default_gate_limits())}) could be measured on "
                "this dataset; give the cases references or assertions, or name the metrics "
                "to gate on in llmship.yaml (gates: eval: metrics:)"
                if not configured
                else "the eval gate names no metric: add some under gates: eval: metrics: "
                "in llmship.yaml"
            )
        names = ", ".join(v.metric for v in self.verdicts)
        return (
            f"the eval gate checked nothing: none of its metrics ({names}) was measured; "
            "does the dataset have what they need (references for bleu/chrf/rouge, "
            "assertions for pass_rate)?"
        )

    @property
    def failures(self) -> tuple[str, ...]:
        """Every reason of every failed metric, in config order."""
        return tuple(r for v in self.verdicts if not v.passed for r in v.reasons)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "passed": self.passed,
            "alpha": self.alpha,
            "verdicts": [v.to_dict() for v in self.verdicts],
        }


def decide(
    config: EvalGateConfig,
    candidate: Mapping[str, float | CorpusScore],
    comparisons: Mapping[str, Comparison] | None = None,
) -> GateDecision:
    """Apply every configured metric's limits; pass when every metric passes.

    ``candidate`` holds the candidate's metric values (floats or ``CorpusScore``);
    ``comparisons`` the paired comparisons against the baseline (None or missing
    entries: no baseline, only minimums apply).
    """
    comparisons = comparisons or {}
    verdicts = []
    for name, gate in config.metrics.items():
        raw = candidate.get(name)
        value = raw.score if isinstance(raw, CorpusScore) else raw
        verdicts.append(judge_metric(name, gate, value, comparisons.get(name), config.alpha))
    return GateDecision(
        passed=all(v.passed for v in verdicts), verdicts=tuple(verdicts), alpha=config.alpha
    )


def judge_metric(
    name: str,
    gate: MetricGate,
    value: float | None,
    comparison: Comparison | None,
    alpha: float = 0.05,
) -> MetricVerdict:
    """The verdict on one metric (rules (a), (b), (c) of the module docstring)."""
    if value is None and comparison is not None:
        value = comparison.candidate
    if value is None:
        return MetricVerdict(
            metric=name,
            passed=False,
            reasons=(f"{name}: not measured (does the dataset have what it needs?)",),
            candidate=None,
            failed_rules=("not_measured",),
        )
    alpha = gate.alpha if gate.alpha is not None else alpha
    failed: list[str] = []
    reasons: list[str] = []
    notes: list[str] = []

    if gate.min is not None:
        if value < gate.min:
            failed.append("minimum")
            reasons.append(f"{name}: {_num(value)} < minimum {_num(gate.min)}")
        else:
            notes.append(f"{name}: {_num(value)} >= minimum {_num(gate.min)}")

    if comparison is not None:
        regression = -comparison.delta
        evidence = (
            f"(95% CI {_num(-comparison.ci_high)}..{_num(-comparison.ci_low)}, "
            f"{_p(comparison.p_value)})"
        )
        significant = comparison.p_value < alpha
        beyond_cap = gate.max_regression is not None and regression > gate.max_regression
        proven = significant and regression > gate.min_effect
        if beyond_cap:
            assert gate.max_regression is not None
            failed.append("max_regression")
            if proven:
                failed.append("significant_regression")
            reasons.append(
                f"{name} regressed by {_num(regression)} {evidence} "
                f"> allowed {_num(gate.max_regression)}"
            )
        elif proven:
            failed.append("significant_regression")
            effect = f" > minimum effect {_num(gate.min_effect)}" if gate.min_effect > 0 else ""
            reasons.append(
                f"{name} regressed by {_num(regression)} {evidence}: "
                f"significant at alpha {alpha:g}{effect}"
            )
        elif regression > 0:
            why = "not significant" if not significant else "below the minimum effect"
            cap = (
                f", within allowed {_num(gate.max_regression)}"
                if gate.max_regression is not None
                else ""
            )
            notes.append(f"{name} changed by {_num(-regression)} {evidence}: {why}{cap}")
        else:
            notes.append(f"{name} changed by {_num(-regression)} {evidence}: no regression")

    return MetricVerdict(
        metric=name,
        passed=not failed,
        reasons=tuple(reasons if failed else notes),
        candidate=value,
        baseline=comparison.baseline if comparison is not None else None,
        comparison=comparison,
        failed_rules=tuple(failed),
    )


def _num(value: float) -> str:
    """Numbers in reasons: three significant digits, no exponent for everyday values."""
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.1f}"
    text = f"{value:.3g}"
    if "e" in text:
        text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text


def _p(p_value: float) -> str:
    return "p<0.001" if p_value < 0.001 else f"p={p_value:.3g}"
