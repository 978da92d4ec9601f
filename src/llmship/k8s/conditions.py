"""Conditions of llmship's analysis written in Argo Rollouts' expression language.

llmship's conditions are a subset of Argo's ``expr`` language with two
differences in how they read (docs/analysis.md): comparisons chain
(``0.5 < result < 2``) and ``!`` negates the whole comparison after it. The
condition is printed back from its parsed tree, fully bracketed where it
matters, so Argo evaluates what llmship would::

    to_argo("0.5 < result < 2")                   # (0.5 < result && result < 2)
    to_argo("result <= 0.05", result="result[0]")  # result[0] <= 0.05

``result`` can be replaced (a builtin metric is one number in llmship, a
one-element vector from Prometheus under Argo).
"""

from __future__ import annotations

import ast
import json

from llmship.analysis.expr import compile_condition

__all__ = ["to_argo"]

_COMPARE = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
}
_ARITHMETIC = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Mod: "%"}
_CONSTANTS = {"true": "true", "false": "false", "nil": "nil", "True": "true"}
_CONSTANTS |= {"False": "false", "None": "nil"}


def to_argo(text: str, *, result: str = "result") -> str:
    """``text`` (a condition llmship accepts) in Argo's syntax, with ``result`` written
    as ``result``; ValueError when ``text`` is not a condition."""
    tree = compile_condition(text)._tree
    return _print(tree.body, result)


def _atom(node: ast.AST, result: str) -> str:
    """``node`` printed, bracketed unless it is a single term."""
    text = _print(node, result)
    simple = (ast.Constant, ast.Name, ast.Subscript, ast.Attribute, ast.Call, ast.List)
    return text if isinstance(node, simple) else f"({text})"


def _print(node: ast.AST, result: str) -> str:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, str):
            return json.dumps(node.value)
        if isinstance(node.value, bool):
            return "true" if node.value else "false"
        return repr(node.value)
    if isinstance(node, ast.Name):
        return result if node.id == "result" else _CONSTANTS[node.id]
    if isinstance(node, ast.BoolOp):
        word = " && " if isinstance(node.op, ast.And) else " || "
        return word.join(_atom(v, result) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        sign = "!" if isinstance(node.op, ast.Not) else "-" if isinstance(node.op, ast.USub) else ""
        return sign + _atom(node.operand, result)
    if isinstance(node, ast.BinOp):
        op = _ARITHMETIC[type(node.op)]
        return f"{_atom(node.left, result)} {op} {_atom(node.right, result)}"
    if isinstance(node, ast.Compare):
        parts = []
        left = node.left
        for cmp, right in zip(node.ops, node.comparators, strict=True):
            parts.append(f"{_atom(left, result)} {_COMPARE[type(cmp)]} {_atom(right, result)}")
            left = right
        return parts[0] if len(parts) == 1 else "(" + " && ".join(parts) + ")"
    if isinstance(node, ast.Subscript):
        return f"{_atom(node.value, result)}[{_print(node.slice, result)}]"
    if isinstance(node, ast.Attribute):
        return f"{_atom(node.value, result)}.{node.attr}"
    if isinstance(node, ast.List):
        return "[" + ", ".join(_print(e, result) for e in node.elts) + "]"
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        return f"{node.func.id}(" + ", ".join(_print(a, result) for a in node.args) + ")"
    raise ValueError(f"{type(node).__name__} has no Argo form")  # pragma: no cover
