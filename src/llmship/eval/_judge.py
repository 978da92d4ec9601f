"""An LLM as judge: the prompt an ``llm_rubric`` assertion sends, how a verdict is read
from the judge's free text, and the check and validation of ``llm_rubric``."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llmship.errors import InvalidRequestError
from llmship.eval._assertion_model import (
    Assertion,
    AssertionResult,
    Context,
    is_number,
    needs_text,
    valid_unit_threshold,
)

RUBRIC_PROMPT = """You are grading an answer. Decide whether the answer meets the rubric.

Rubric:
{rubric}

Question:
{question}
{reference_block}
Answer:
{answer}

Reply with one JSON object and nothing else, for example:
{{"reason": "one short sentence", "score": 0.8, "pass": true}}
where score is from 0 (fails the rubric completely) to 1 (meets it fully)."""


def rubric_prompt(rubric: str, question: str, answer: str, references: Sequence[str] = ()) -> str:
    """The prompt sent to the judge for an ``llm_rubric`` assertion."""
    block = ""
    if references:
        block = "\nReference answer:\n" + "\n".join(references) + "\n"
    return RUBRIC_PROMPT.format(
        rubric=rubric, question=question, answer=answer, reference_block=block
    )


@dataclass(frozen=True)
class JudgeVerdict:
    """What could be read from a judge's answer: a pass/fail, a 0..1 score, a reason."""

    passed: bool | None
    score: float | None
    reason: str


_VERDICT_WORD = re.compile(r"\b(PASS(?:ED|ES)?|FAIL(?:ED|S)?)\b")
_VERDICT_WORD_ANY_CASE = re.compile(r"\b(pass(?:ed|es)?|fail(?:ed|s)?|yes|no)\b", re.IGNORECASE)
_SCORE_LABELLED = re.compile(
    r"score\W{0,3}\s*(\d+(?:\.\d+)?)(?:\s*(?:/|out of)\s*(\d+(?:\.\d+)?))?", re.IGNORECASE
)
_SCORE_FRACTION = re.compile(r"(\d+(?:\.\d+)?)\s*(?:/|out of)\s*(\d+(?:\.\d+)?)", re.IGNORECASE)


def parse_judge_answer(text: str) -> JudgeVerdict:
    """Read a verdict from a judge's free text, as robustly as we can.

    In order: a JSON object with ``pass``/``score``/``reason`` anywhere in the
    text; a ``score: 7/10`` or ``8 out of 10``; a PASS/FAIL (or yes/no) word.
    Scores above 1 are read as out of 10 (up to 10) or out of 100 (up to 100).
    """
    for document in _json_objects(text):
        lowered = {str(k).lower(): v for k, v in document.items()}
        passed = _as_bool(lowered.get("pass", lowered.get("passed", lowered.get("verdict"))))
        score = _as_score(lowered.get("score"))
        if passed is None and score is None:
            continue
        reason = lowered.get("reason", lowered.get("explanation", ""))
        return JudgeVerdict(passed=passed, score=score, reason=str(reason).strip())

    score = None
    match = _SCORE_LABELLED.search(text) or _SCORE_FRACTION.search(text)
    if match:
        score = _normalize_score(float(match.group(1)), match.group(2))
    word = _VERDICT_WORD.search(text) or _VERDICT_WORD_ANY_CASE.search(text)
    passed = None
    if word:
        passed = word.group(1).lower().startswith(("pass", "yes"))
    reason = " ".join(text.split())
    return JudgeVerdict(passed=passed, score=score, reason=reason[:300])


def _json_objects(text: str) -> list[dict[str, Any]]:
    decoder = json.JSONDecoder()
    found = []
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("pass", "passed", "true", "yes"):
            return True
        if word in ("fail", "failed", "false", "no"):
            return False
    return None


def _as_score(value: Any) -> float | None:
    if is_number(value):
        return _normalize_score(float(value), None)
    if isinstance(value, str):
        match = _SCORE_FRACTION.search(value)
        if match:
            return _normalize_score(float(match.group(1)), match.group(2))
        try:
            return _normalize_score(float(value.strip()), None)
        except ValueError:
            return None
    return None


def _normalize_score(value: float, out_of: str | None) -> float | None:
    if out_of is not None:
        denominator = float(out_of)
        return min(max(value / denominator, 0.0), 1.0) if denominator > 0 else None
    if not math.isfinite(value) or value < 0:
        return None
    if value <= 1:
        return value
    if value <= 10:
        return value / 10
    if value <= 100:
        return value / 100
    return None


def check_llm_rubric(a: Assertion, c: Context) -> AssertionResult:
    if c.judge is None:
        raise InvalidRequestError(
            f"case {c.case.id}: llm-rubric needs a judge (name a release to judge with)"
        )
    prompt = rubric_prompt(str(a.value), c.case.prompt_text(), c.output, c.case.references)
    answer = c.judge(prompt)
    verdict = parse_judge_answer(answer)
    written = a.threshold
    threshold = a.effective_threshold
    assert threshold is not None
    if verdict.passed is None and verdict.score is None:
        snippet = " ".join(answer.split())[:120]
        return AssertionResult(
            type=a.type,
            passed=False,
            score=0.0,
            reason=f"the judge gave no verdict or score: {snippet!r}",
            weight=a.weight,
            threshold=threshold,
        )
    score = verdict.score if verdict.score is not None else (1.0 if verdict.passed else 0.0)
    if verdict.passed is None:
        passed = score >= threshold
    elif written is not None:
        passed = verdict.passed and score >= threshold
    else:
        passed = verdict.passed
    reason = f"judge: {'PASS' if passed else 'FAIL'} (score {score:.2f})"
    if verdict.reason:
        reason += f": {verdict.reason}"
    return AssertionResult(
        type=a.type,
        passed=passed,
        score=score,
        reason=reason,
        value=score,
        weight=a.weight,
        threshold=threshold,
    )


def valid_rubric(a: Assertion, has_refs: bool) -> list[str]:
    problems = needs_text(a, has_refs)
    if problems:
        return ["'value' must be the rubric (a non-empty string)"]
    return valid_unit_threshold(a, has_refs)
