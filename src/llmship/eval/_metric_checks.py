"""The metric assertion checks (BLEU, chrF, ROUGE: every metric of the table that datasets
may assert): the output scored against ``value`` or the case's references, compared with
the threshold; and how their configs are validated."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from llmship.eval._assertion_model import (
    Assertion,
    AssertionResult,
    Check,
    Context,
    Validate,
    expected_texts,
    fmt,
    valid_expected,
    valid_unit_threshold,
)


def metric_check(name: str, compute: Callable[[str, Sequence[str]], float], scale: float) -> Check:
    """A check that scores the output against the references and compares to the threshold.
    ``scale`` maps the metric to 0..1 for the score (100 for BLEU, 1 otherwise)."""

    def check(a: Assertion, c: Context) -> AssertionResult:
        threshold = a.effective_threshold
        assert threshold is not None
        value = compute(c.output, expected_texts(a, c.case))
        passed = value >= threshold
        sign = ">=" if passed else "<"
        return AssertionResult(
            type=a.type,
            passed=passed,
            score=min(max(value / scale, 0.0), 1.0),
            reason=f"{name} {fmt(value)} {sign} {fmt(threshold)}",
            value=value,
            weight=a.weight,
            threshold=threshold,
        )

    return check


def valid_metric(a: Assertion, has_refs: bool) -> list[str]:
    return valid_expected(a, has_refs) + valid_unit_threshold(a, has_refs)


def metric_validator(name: str, scale: float) -> Validate:
    """The validation of a metric assertion: ``value`` or references, and a threshold on
    the metric's scale (0..1, or 0..``scale`` points: BLEU's 0..100)."""
    if scale == 1.0:
        return valid_metric

    def validate(a: Assertion, has_refs: bool) -> list[str]:
        problems = valid_expected(a, has_refs)
        if a.threshold is not None and not 0.0 <= a.threshold <= scale:
            problems.append(
                f"'threshold' is in {name} points, from 0 to {scale:g}, not {a.threshold:g}"
            )
        return problems

    return validate
