"""The data of assertions: what a check found, what it sees, the registry's entry type,
and the helpers every group of checks shares (what a case asks for, :class:`Assertion`,
is in :mod:`llmship.eval.cases`). Public names are re-exported by
:mod:`llmship.eval.assertions`; import them from there."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from llmship.eval.cases import Assertion, Case

__all__ = [
    "Assertion",
    "AssertionResult",
    "AssertionType",
    "CaseResult",
    "Check",
    "Context",
    "Embedder",
    "Judge",
    "Validate",
    "expected_texts",
    "fmt",
    "is_number",
    "needs_text",
    "result",
    "valid_expected",
    "valid_unit_threshold",
]

Judge = Callable[[str], str]
"""An LLM used as a judge: prompt in, completion out (the caller picks the release)."""

Embedder = Callable[[Sequence[str]], Sequence[Sequence[float]]]
"""Texts in, one embedding vector per text out (for ``similar``)."""


@dataclass(frozen=True)
class AssertionResult:
    """The outcome of one assertion on one output."""

    type: str
    passed: bool
    score: float
    """In 0..1; what the case's weighted score is made of."""
    reason: str
    """One human line: what was measured against what."""
    value: float | None = None
    """The measurement in its own units (BLEU 0..100, seconds, characters), when there is one."""
    weight: float = 1.0
    threshold: float | None = None


@dataclass(frozen=True)
class CaseResult:
    """The outcome of every assertion of a case on one output."""

    case_id: str
    passed: bool
    score: float
    """Weighted mean of the assertion scores (1.0 when nothing is weighted)."""
    assertions: tuple[AssertionResult, ...]
    threshold: float | None = None

    @property
    def has_assertions(self) -> bool:
        """False for a case with nothing to check (it is left out of pass rates)."""
        return bool(self.assertions)

    @property
    def failures(self) -> tuple[AssertionResult, ...]:
        """The assertions that did not pass."""
        return tuple(a for a in self.assertions if not a.passed)


@dataclass(frozen=True)
class Context:
    """What a check sees: the case, the output and what measured or judges it."""

    case: Case
    output: str
    latency: float | None
    judge: Judge | None
    embedder: Embedder | None


Check = Callable[[Assertion, Context], AssertionResult]
Validate = Callable[[Assertion, bool], list[str]]


@dataclass(frozen=True)
class AssertionType:
    """One entry of the registry: how a type is validated and checked."""

    name: str
    summary: str
    check: Check
    validate: Validate
    default_threshold: float | None = None
    aliases: tuple[str, ...] = ()


# --- shared by the checks ------------------------------------------------------------------


def result(
    a: Assertion, passed: bool, reason: str, *, value: float | None = None
) -> AssertionResult:
    """A yes/no result: score 1 when passed, else 0."""
    return AssertionResult(
        type=a.type,
        passed=passed,
        score=1.0 if passed else 0.0,
        reason=reason,
        value=value,
        weight=a.weight,
        threshold=a.effective_threshold,
    )


def expected_texts(a: Assertion, case: Case) -> tuple[str, ...]:
    """What the output is compared with: ``value`` (a string or a list), else the references."""
    if isinstance(a.value, str):
        return (a.value,)
    if isinstance(a.value, list):
        return tuple(a.value)
    return case.references


def is_number(value: Any) -> bool:
    """An int or a float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def fmt(value: float) -> str:
    """A metric value for a reason line."""
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


# --- validation shared by the checks -------------------------------------------------------


def needs_text(a: Assertion, _has_refs: bool) -> list[str]:
    """``value`` is a non-empty string."""
    if not isinstance(a.value, str) or a.value == "":
        return ["'value' must be a non-empty string"]
    return []


def valid_expected(a: Assertion, has_refs: bool) -> list[str]:
    """``value`` (a string or list of strings) or the case's references."""
    value = a.value
    if value is None:
        return [] if has_refs else ["needs a 'value' or the case's reference(s)"]
    if isinstance(value, str):
        return []
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return []
    return ["'value' must be a string or a list of strings"]


def valid_unit_threshold(a: Assertion, _has_refs: bool) -> list[str]:
    """``threshold``, when written, is from 0 to 1."""
    if a.threshold is not None and not 0.0 <= a.threshold <= 1.0:
        return [f"'threshold' must be from 0 to 1, not {a.threshold:g}"]
    return []
