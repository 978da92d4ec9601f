"""Success/failure conditions: the safe expression language (``llmship.analysis.expr``)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from llmship.analysis.expr import ConditionError, compile_condition

NAN = math.nan


@pytest.mark.parametrize(
    ("text", "result", "expected"),
    [
        ("result <= 0.05", 0.01, True),
        ("result <= 0.05", 0.05, True),
        ("result <= 0.05", 0.06, False),
        ("result[0] >= 0.95", [0.97, 0.1], True),
        ("result[0] >= 0.95", [0.90], False),
        ("result[-1] == 3", [1, 2, 3], True),
        ("result > 1 && result < 3", 2, True),
        ("result > 1 && result < 3", 3, False),
        ("result < 1 || result > 3", 4, True),
        ("result < 1 || result > 3", 2, False),
        ("result > 1 and result < 3", 2.5, True),
        ("!(result > 1)", 0, True),
        ("not result > 1", 5, False),
        ("result != 0", 1, True),
        ("1 < result < 3", 2, True),
        ("1 < result < 3", 3, False),
        ("len(result) > 0", [0.1], True),
        ("len(result) > 0", [], False),
        ("len(result) == 0 || result[0] < 1", [], True),  # short-circuit: no index error
        ("isNaN(result)", NAN, True),
        ("isNaN(result)", 0.5, False),
        ("!isNaN(result) && result < 1", NAN, False),
        ("isInf(result)", math.inf, True),
        ("isNil(result)", None, True),
        ("default(result, 0) > 1", None, False),
        ("default(result, 2) > 1", NAN, True),
        ("default(result, 0) > 1", 5, True),
        ("result == 'true'", "true", True),
        ('result == "ok"', "ok", True),
        ("result == 'a&&b || !c'", "a&&b || !c", True),  # operators inside quotes stay text
        ("result == true", True, True),
        ("result == nil", None, True),
        ("result.status == 'ok'", {"status": "ok"}, True),
        ("result['p95'] < 2", {"p95": 1.5}, True),
        ("asInt(result) == 3", "3", True),
        ("asFloat(result) > 0.5", "0.75", True),
        ("abs(result) < 1", -0.5, True),
        ("max(result) < 2", [1, 1.5], True),
        ("min(result[0], result[1]) == 1", [1, 4], True),
        ("sum(result) == 6", [1, 2, 3], True),
        ("mean(result) == 2", [1, 2, 3], True),
        ("result * 100 - 1 >= 4", 0.05, True),
        ("result / 2 == 0.5", 1, True),
        ("result % 2 == 1", 3, True),
        ("-result < 0", 1, True),
        ("result in [1, 2]", 2, True),
        ("result not in [1, 2]", 3, True),
        ("'x' in result", ["x"], True),
        ("result < 0.05", NAN, False),  # NaN compares false, as in Go
        ("result >= 0.05", NAN, False),
        ("result / 0 > 1", 1, True),  # float division by zero is +Inf, as in Go
    ],
)
def test_conditions_evaluate(text: str, result: Any, expected: bool) -> None:
    assert compile_condition(text).evaluate(result) is expected


@pytest.mark.parametrize(
    ("text", "result", "message"),
    [
        ("result[0] > 1", [], "out of range"),
        ("result[2] > 1", [1, 2], "out of range"),
        ("result < 1", [0.5], "cannot compare"),
        ("result > 'a'", 1, "cannot compare"),
        ("result.p95 < 1", {"p50": 1}, "no key"),
        ("result[0] > 1", 0.5, "cannot index"),
        ("result['a'] > 1", [1], "integer"),
        ("result", 0.5, "not true or false"),
        ("result + 1", 1, "not true or false"),
        ("result && true", 1, "booleans"),
        ("!result", 1, "booleans"),
        ("isNaN(result)", [1.0], "needs a number"),
        ("len(result) > 0", 3, "len()"),
        ("asInt(result) > 0", "x", "asInt()"),
        ("result + 'a' == 1", 1, "arithmetic needs numbers"),
        ("result * 2 > 1", "aaaa", "arithmetic needs numbers"),
        ("result % 0 == 1", 1, "division by zero"),
        ("max(result) > 0", [], "empty"),
    ],
)
def test_conditions_that_cannot_be_evaluated_raise(text: str, result: Any, message: str) -> None:
    with pytest.raises(ConditionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compile_condition(text).evaluate(result)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("result <=", "not a valid expression"),
        ("__import__('os').system('true')", "unknown function"),
        ("open('/etc/passwd')", "unknown function"),
        ("result.__class__ == 1", "field name '__class__'"),
        ("(lambda: 1)()", "Lambda|unknown function"),
        ("[x for x in result]", "ListComp"),
        ("result ** 2 > 1", "Pow"),
        ("result << 2 > 1", "LShift"),
        ("result[0:2]", "slices"),
        ("os > 1", "unknown name 'os'"),
        ("value > 1", "unknown name 'value'"),
        ("len(result, 2) > 1", "takes 1 argument"),
        ("default(result) > 1", "takes 2 argument"),
        ("len(x=result)", "keyword"),
        ("len(*result)", "arguments"),
        ("result if result else 0", "IfExp"),
        ("{'a': 1}", "Dict"),
        ("result is None", "Is"),
        ("b'x' == result", "constant"),
        ("result == 1j", "constant"),
        ("result.upper() == 'X'", "unknown function"),
        ("x := 1", "not a valid expression|NamedExpr"),
        ("1; 2", "not a valid expression"),
        ("!" * 3000 + "true", "longer than|nested"),
        ("(" * 300 + "1" + ")" * 300, "nested|not a valid"),
    ],
)
def test_unsafe_or_invalid_conditions_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compile_condition(text)


def test_attribute_access_never_reaches_python_objects() -> None:
    # `.name` is a key lookup in a mapping, never getattr (3 .real would be 3)
    condition = compile_condition("result.real == 3")
    with pytest.raises(ConditionError, match="cannot index a number"):
        condition.evaluate(3)
    assert condition.evaluate({"real": 3}) is True


def test_compiled_conditions_are_cached() -> None:
    assert compile_condition("result < 1") is compile_condition("result < 1")
