"""The yes/no assertion checks (score 1 or 0) and how their configs are validated:
substrings, regular expressions, JSON and JSON schema, length, latency and equality."""

from __future__ import annotations

import json
import re
from typing import Any

from llmship.eval import scoring
from llmship.eval._assertion_model import (
    Assertion,
    AssertionResult,
    Context,
    expected_texts,
    needs_text,
    result,
)

# --- checks ----------------------------------------------------------------------------------


def check_contains(a: Assertion, c: Context) -> AssertionResult:
    needle = str(a.value)
    found = needle in c.output
    return result(a, found, f"{'contains' if found else 'does not contain'} {needle!r}")


def check_icontains(a: Assertion, c: Context) -> AssertionResult:
    needle = str(a.value)
    found = needle.casefold() in c.output.casefold()
    return result(a, found, f"{'contains' if found else 'does not contain'} {needle!r} (any case)")


def check_not_contains(a: Assertion, c: Context) -> AssertionResult:
    needle = str(a.value)
    found = needle in c.output
    return result(a, not found, f"{'contains' if found else 'does not contain'} {needle!r}")


def check_not_icontains(a: Assertion, c: Context) -> AssertionResult:
    needle = str(a.value)
    found = needle.casefold() in c.output.casefold()
    reason = f"{'contains' if found else 'does not contain'} {needle!r} (any case)"
    return result(a, not found, reason)


def check_regex(a: Assertion, c: Context) -> AssertionResult:
    found = re.search(str(a.value), c.output) is not None
    return result(a, found, f"{'matches' if found else 'does not match'} /{a.value}/")


def check_is_json(a: Assertion, c: Context) -> AssertionResult:
    return _json_result(a, c.output, schema=isinstance(a.value, dict))


def check_json_schema(a: Assertion, c: Context) -> AssertionResult:
    return _json_result(a, c.output, schema=True)


def _json_result(a: Assertion, output: str, *, schema: bool) -> AssertionResult:
    try:
        document = json.loads(output)
    except json.JSONDecodeError as exc:
        return result(
            a, False, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        )
    if schema:
        return _schema_result(a, document)
    return result(a, True, "valid JSON")


def _schema_result(a: Assertion, document: Any) -> AssertionResult:
    import jsonschema

    validator_class = jsonschema.validators.validator_for(a.value)
    error = jsonschema.exceptions.best_match(validator_class(a.value).iter_errors(document))
    if error is None:
        return result(a, True, "valid JSON matching the schema")
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return result(a, False, f"JSON does not match the schema at {where}: {error.message}")


def check_length(a: Assertion, c: Context) -> AssertionResult:
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
    return result(a, passed, f"{n} characters, wanted {bounds}", value=float(n))


def check_latency(a: Assertion, c: Context) -> AssertionResult:
    limit = a.effective_threshold
    assert limit is not None
    if c.latency is None:
        return result(a, False, "latency was not measured")
    passed = c.latency <= limit
    sign = "<=" if passed else ">"
    return result(a, passed, f"latency {c.latency:.3f}s {sign} {limit:g}s", value=c.latency)


def check_equals(a: Assertion, c: Context) -> AssertionResult:
    expected = expected_texts(a, c.case)
    passed = c.output in expected
    shown = expected[0] if len(expected) == 1 else expected
    return result(a, passed, f"{'equals' if passed else 'does not equal'} {shown!r}")


def check_exact_match(a: Assertion, c: Context) -> AssertionResult:
    expected = expected_texts(a, c.case)
    passed = scoring.exact_match(c.output, expected) == 1.0
    shown = expected[0] if len(expected) == 1 else expected
    verb = "matches" if passed else "does not match"
    return result(a, passed, f"{verb} {shown!r} (whitespace and case normalized)")


# --- validation ----------------------------------------------------------------------------


def valid_regex(a: Assertion, has_refs: bool) -> list[str]:
    problems = needs_text(a, has_refs)
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


def valid_is_json(a: Assertion, _has_refs: bool) -> list[str]:
    return [] if a.value is None else _valid_schema(a.value)


def valid_json_schema(a: Assertion, _has_refs: bool) -> list[str]:
    return _valid_schema(a.value)


def _length_bounds(value: Any) -> tuple[int | None, int | None]:
    if isinstance(value, dict):
        return value.get("min"), value.get("max")
    return None, value


def valid_length(a: Assertion, _has_refs: bool) -> list[str]:
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


def valid_latency(a: Assertion, _has_refs: bool) -> list[str]:
    if a.threshold is None or a.threshold <= 0:
        return ["'threshold' must be the limit in seconds (a number > 0)"]
    return []
