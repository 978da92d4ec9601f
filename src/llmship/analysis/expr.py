"""Success and failure conditions: a small, safe expression language over ``result``.

The syntax is the part of Argo Rollouts' conditions (the ``expr`` language)
that analysis templates use in practice::

    result <= 0.05
    result[0] >= 0.95
    result > 1 && result < 3
    len(result) > 0 and !isNaN(result[0])
    default(result, 0) > 1
    result.status == 'ok'

- Comparisons ``== != < <= > >=`` (chains too), ``in`` / ``not in``;
- boolean ``&&`` ``||`` ``!`` or ``and`` ``or`` ``not``;
- arithmetic ``+ - * / %`` on numbers, unary ``-``;
- numbers, quoted strings, ``true`` ``false`` ``nil``, list literals;
- the one name ``result``, indexed (``result[0]``, ``result['k']``) or with
  ``.field`` for a key of a mapping;
- the functions in :data:`FUNCTIONS`.

The text is parsed with Python's :mod:`ast` after rewriting ``&&``, ``||`` and
``!``, every node is checked against a whitelist, and the tree is interpreted
here: nothing is ever handed to ``eval``. An expression outside the language is
refused by :func:`compile_condition` (a :class:`ValueError` naming what is not
allowed); a well-formed expression that cannot be evaluated on a given result
(``result[3]`` of a two-element list, ``result < 1`` of a list) raises
:class:`ConditionError`, which the analysis scores as an Error measurement.
"""

from __future__ import annotations

import ast
import functools
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["FUNCTIONS", "Condition", "ConditionError", "compile_condition"]

MAX_LENGTH = 2000
"""Longest condition accepted, in characters."""


class ConditionError(Exception):
    """A condition could not be evaluated on this result (the measurement is an Error)."""


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConditionError(f"{name}() needs a number, not {_kind(value)}")
    return float(value)


def _len(value: Any) -> int:
    if isinstance(value, (str, list, tuple, dict)):
        return len(value)
    raise ConditionError(f"len() needs a list, a string or a mapping, not {_kind(value)}")


def _is_nan(value: Any) -> bool:
    return math.isnan(_number("isNaN", value))


def _is_inf(value: Any) -> bool:
    return math.isinf(_number("isInf", value))


def _is_nil(value: Any) -> bool:
    return value is None


def _default(value: Any, fallback: Any) -> Any:
    """``fallback`` when ``value`` is nil or NaN, else ``value`` (Argo's ``default``)."""
    if value is None:
        return fallback
    if isinstance(value, float) and math.isnan(value):
        return fallback
    return value


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ConditionError("asInt() needs a number or numeric text, not a boolean")
    try:
        return int(value) if not isinstance(value, str) else int(value.strip())
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConditionError(f"asInt() cannot read {value!r} as an integer") from exc


def _as_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ConditionError("asFloat() needs a number or numeric text, not a boolean")
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ConditionError(f"asFloat() cannot read {value!r} as a number") from exc


def _numbers(name: str, values: tuple[Any, ...]) -> list[float]:
    items = values[0] if len(values) == 1 and isinstance(values[0], list) else list(values)
    if not items:
        raise ConditionError(f"{name}() of an empty list")
    return [_number(name, v) for v in items]


def _min(*values: Any) -> float:
    return min(_numbers("min", values))


def _max(*values: Any) -> float:
    return max(_numbers("max", values))


def _sum(values: Any) -> float:
    if not isinstance(values, list):
        raise ConditionError(f"sum() needs a list, not {_kind(values)}")
    return sum(_number("sum", v) for v in values)


def _mean(values: Any) -> float:
    if not isinstance(values, list):
        raise ConditionError(f"mean() needs a list, not {_kind(values)}")
    return _sum(values) / len(values) if values else math.nan


def _abs(value: Any) -> float:
    return abs(_number("abs", value))


@dataclass(frozen=True)
class _Function:
    fn: Callable[..., Any]
    min_args: int
    max_args: int | None


FUNCTIONS: Mapping[str, _Function] = {
    "len": _Function(_len, 1, 1),
    "isNaN": _Function(_is_nan, 1, 1),
    "isInf": _Function(_is_inf, 1, 1),
    "isNil": _Function(_is_nil, 1, 1),
    "default": _Function(_default, 2, 2),
    "asInt": _Function(_as_int, 1, 1),
    "asFloat": _Function(_as_float, 1, 1),
    "abs": _Function(_abs, 1, 1),
    "min": _Function(_min, 1, None),
    "max": _Function(_max, 1, None),
    "sum": _Function(_sum, 1, 1),
    "mean": _Function(_mean, 1, 1),
}
"""The functions a condition may call, by name."""

_CONSTANTS: Mapping[str, Any] = {
    "true": True,
    "false": False,
    "nil": None,
    "True": True,
    "False": False,
    "None": None,
}

_COMPARE: Mapping[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}

_ARITHMETIC: Mapping[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
}


def _kind(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _rewrite(text: str) -> str:
    """``&&`` -> ``and``, ``||`` -> ``or``, ``!`` (not ``!=``) -> ``not``, outside quotes."""
    out: list[str] = []
    i, n = 0, len(text)
    quote: str | None = None
    while i < n:
        ch = text[i]
        if quote:
            out.append(ch)
            if ch == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
            out.append(ch)
        elif text.startswith("&&", i):
            out.append(" and ")
            i += 1
        elif text.startswith("||", i):
            out.append(" or ")
            i += 1
        elif ch == "!" and not text.startswith("!=", i):
            out.append(" not ")
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _check(node: ast.AST) -> None:
    """Refuse every node outside the language (ValueError saying what is not allowed)."""
    if isinstance(node, ast.Expression):
        _check(node.body)
    elif isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.Not, ast.USub, ast.UAdd)):
            raise ValueError(f"the operator {type(node.op).__name__} is not allowed")
        _check(node.operand)
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _ARITHMETIC:
            raise ValueError(
                f"the operator {type(node.op).__name__} is not allowed (use + - * / %)"
            )
        _check(node.left)
        _check(node.right)
    elif isinstance(node, ast.Compare):
        for op in node.ops:
            if type(op) not in _COMPARE:
                raise ValueError(f"the comparison {type(op).__name__} is not allowed")
        _check(node.left)
        for comparator in node.comparators:
            _check(comparator)
    elif isinstance(node, ast.Constant):
        if not isinstance(node.value, (int, float, str)):
            raise ValueError(f"the constant {node.value!r} is not allowed")
    elif isinstance(node, ast.Name):
        if node.id != "result" and node.id not in _CONSTANTS:
            raise ValueError(
                f"unknown name {node.id!r}: a condition can only use `result`, "
                "true, false, nil and the functions " + ", ".join(FUNCTIONS)
            )
    elif isinstance(node, ast.Subscript):
        if isinstance(node.slice, ast.Slice):
            raise ValueError("slices are not allowed; index one element, e.g. result[0]")
        _check(node.value)
        _check(node.slice)
    elif isinstance(node, ast.Attribute):
        if node.attr.startswith("__"):
            raise ValueError(f"the field name {node.attr!r} is not allowed")
        _check(node.value)
    elif isinstance(node, ast.List):
        for element in node.elts:
            _check(element)
    elif isinstance(node, ast.Call):
        _check_call(node)
    else:
        raise ValueError(f"{type(node).__name__} is not allowed in a condition")


def _check_call(node: ast.Call) -> None:
    """Refuse a call to anything but a whitelisted function with the right arity."""
    if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
        name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
        raise ValueError(f"unknown function {name!r}; allowed: " + ", ".join(sorted(FUNCTIONS)))
    if node.keywords:
        raise ValueError(f"{node.func.id}() takes no keyword arguments")
    spec = FUNCTIONS[node.func.id]
    count = len(node.args)
    if count < spec.min_args or (spec.max_args is not None and count > spec.max_args):
        wanted = (
            str(spec.min_args) if spec.max_args == spec.min_args else f"at least {spec.min_args}"
        )
        raise ValueError(f"{node.func.id}() takes {wanted} argument(s), not {count}")
    for arg in node.args:
        if isinstance(arg, ast.Starred):
            raise ValueError("*arguments are not allowed")
        _check(arg)


def _truth(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConditionError(f"{where} needs booleans, not {_kind(value)}")
    return value


def _eval(node: ast.AST, result: Any) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return result if node.id == "result" else _CONSTANTS[node.id]
    if isinstance(node, ast.BoolOp):
        is_and = isinstance(node.op, ast.And)
        word = "&&" if is_and else "||"
        for value in node.values:
            truth = _truth(_eval(value, result), word)
            if truth != is_and:
                return truth
        return is_and
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, result)
        if isinstance(node.op, ast.Not):
            return not _truth(operand, "!")
        number = _arith_operand(operand)
        return -number if isinstance(node.op, ast.USub) else number
    if isinstance(node, ast.BinOp):
        left = _arith_operand(_eval(node.left, result))
        right = _arith_operand(_eval(node.right, result))
        try:
            return _ARITHMETIC[type(node.op)](left, right)
        except ZeroDivisionError:
            if isinstance(node.op, ast.Div) and not math.isnan(left):  # Go-style float division
                return math.copysign(math.inf, left) if left else math.nan
            raise ConditionError("division by zero") from None
    if isinstance(node, ast.Compare):
        left = _eval(node.left, result)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _eval(comparator, result)
            try:
                ok = _COMPARE[type(op)](left, right)
            except TypeError:
                raise ConditionError(f"cannot compare {_kind(left)} with {_kind(right)}") from None
            if not ok:
                return False
            left = right
        return True
    if isinstance(node, ast.Subscript):
        return _index(_eval(node.value, result), _eval(node.slice, result))
    if isinstance(node, ast.Attribute):
        return _index(_eval(node.value, result), node.attr)
    if isinstance(node, ast.List):
        return [_eval(e, result) for e in node.elts]
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        args = [_eval(a, result) for a in node.args]
        try:
            return FUNCTIONS[node.func.id].fn(*args)
        except ConditionError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise ConditionError(f"{node.func.id}(): {exc}") from exc
    raise ConditionError(f"{type(node).__name__} cannot be evaluated")  # pragma: no cover


def _arith_operand(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConditionError(f"arithmetic needs numbers, not {_kind(value)}")
    return value


def _index(container: Any, key: Any) -> Any:
    if isinstance(container, (list, str)):
        if isinstance(key, bool) or not isinstance(key, int):
            raise ConditionError(f"a list index must be an integer, not {_kind(key)}")
        try:
            return container[key]
        except IndexError:
            raise ConditionError(
                f"index {key} is out of range (the result has {len(container)} element(s))"
            ) from None
    if isinstance(container, dict):
        if key not in container:
            raise ConditionError(f"the result has no key {key!r}")
        return container[key]
    raise ConditionError(f"cannot index {_kind(container)}")


@dataclass(frozen=True)
class Condition:
    """A compiled condition; call :meth:`evaluate` with a measurement's value."""

    text: str
    _tree: ast.Expression

    def evaluate(self, result: Any) -> bool:
        """True or False for ``result``; :class:`ConditionError` when it cannot be decided."""
        try:
            value = _eval(self._tree.body, result)
        except RecursionError:
            raise ConditionError("the condition is nested too deeply") from None
        if not isinstance(value, bool):
            raise ConditionError(f"the condition gives {_kind(value)}, not true or false")
        return value


@functools.lru_cache(maxsize=512)
def compile_condition(text: str) -> Condition:
    """Parse and check ``text``; ValueError saying what is wrong when it is not a condition."""
    if not text.strip():
        raise ValueError("the condition is empty")
    if len(text) > MAX_LENGTH:
        raise ValueError(f"the condition is longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(_rewrite(text).strip(), mode="eval")
        _check(tree)
    except SyntaxError as exc:
        raise ValueError(f"not a valid expression ({exc.msg})") from None
    except (RecursionError, MemoryError):
        raise ValueError("the condition is nested too deeply") from None
    return Condition(text, tree)
