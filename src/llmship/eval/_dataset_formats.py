"""Reading dataset files into rows: JSONL, CSV (promptfoo-style columns) and YAML.

Each reader turns text into ``(line, row)`` pairs, a row being the raw mapping of one
case, and appends every problem it finds to ``errors`` as ``file:line: what is wrong``.
:mod:`llmship.eval.dataset` turns the rows into cases.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from llmship.eval.assertions import canonical_type

__all__ = ["csv_rows", "jsonl_rows", "kind", "yaml_rows"]


def jsonl_rows(text: str, source: str, errors: list[str]) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"{source}:{number}: invalid JSON: {exc.msg} (column {exc.colno})")
            continue
        if not isinstance(value, dict):
            errors.append(f"{source}:{number}: a row must be a JSON object, not {kind(value)}")
            continue
        rows.append((number, value))
    return rows


_CSV_JSON_COLUMNS = ("messages", "references", "assert", "vars", "metadata")


def csv_rows(text: str, source: str, errors: list[str]) -> list[tuple[int, dict[str, Any]]]:
    """CSV: one case per row. Known columns are case fields; ``__expected*`` columns hold
    promptfoo-style assertions; any other column becomes a var."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return []
    except csv.Error as exc:
        errors.append(f"{source}:1: invalid CSV: {exc}")
        return []
    header = [h.strip() for h in header]
    if "input" not in header and "messages" not in header:
        errors.append(f"{source}:1: the header needs an 'input' (or 'messages') column")
        return []
    rows = []
    previous_end = reader.line_num
    while True:
        start = previous_end + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(f"{source}:{start}: invalid CSV: {exc}")
            break
        previous_end = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            errors.append(
                f"{source}:{start}: {len(cells)} columns where the header has {len(header)}"
            )
            continue
        row, problems = _csv_row(header, cells)
        errors.extend(f"{source}:{start}: {p}" for p in problems)
        if row is not None:
            rows.append((start, row))
    return rows


def _csv_row(
    header: Sequence[str], cells: Sequence[str]
) -> tuple[dict[str, Any] | None, list[str]]:
    """One CSV record as a case row; JSON columns parsed, unknown columns become vars."""
    row: dict[str, Any] = {}
    variables: dict[str, Any] = {}
    expected: list[Any] = []
    problems: list[str] = []
    for column, cell in zip(header, cells, strict=True):
        text = cell.strip()
        if column.startswith("__expected"):
            if text:
                expected.append(_expected_cell(text))
        elif column in ("threshold", "__threshold"):
            if text:
                row["threshold"] = _csv_number(text)
        elif column == "tags":
            row["tags"] = [t.strip() for t in cell.split(",") if t.strip()]
        elif column in _CSV_JSON_COLUMNS:
            if not text:
                continue
            try:
                row[column] = json.loads(cell)
            except json.JSONDecodeError as exc:
                problems.append(f"column {column!r}: invalid JSON: {exc.msg}")
        elif column in ("id", "description", "input", "reference"):
            if cell != "":
                row[column] = cell
        elif column:
            variables[column] = cell
    if problems:
        return None, problems
    if expected:
        written = row.get("assert", [])
        row["assert"] = [*written, *expected] if isinstance(written, list) else written
    if variables:
        given = row.get("vars")
        row["vars"] = {**variables, **given} if isinstance(given, dict) else variables
    return row, []


_EXPECTED = re.compile(
    r"^(?P<type>[a-z][a-z0-9_-]*)(?:\((?P<threshold>[^)]*)\))?:(?P<value>.*)$", re.S | re.I
)


def _expected_cell(cell: str) -> dict[str, Any]:
    """A promptfoo ``__expected`` cell: ``type(threshold):value``, or a plain value (equals)."""
    match = _EXPECTED.match(cell)
    if match and canonical_type(match["type"]) is not None:
        item: dict[str, Any] = {"type": match["type"]}
        if match["threshold"] is not None and match["threshold"].strip():
            item["threshold"] = _csv_number(match["threshold"])
        value = match["value"].strip()
        if value:
            item["value"] = value
        return item
    return {"type": "equals", "value": cell}


def _csv_number(cell: str) -> Any:
    try:
        return float(cell.strip())
    except ValueError:
        return cell.strip()


def yaml_rows(text: str, source: str, errors: list[str]) -> list[tuple[int, dict[str, Any]]]:
    """YAML: a list of cases, or a mapping with ``tests:`` (the cases) and optionally
    ``defaultTest:`` (assert, tags, vars, metadata, threshold merged into every case)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        errors.append(f"{source}:{line}: invalid YAML: {problem}")
        return []
    if node is None or data is None:
        return []
    defaults: dict[str, Any] = {}
    items_node = node
    if isinstance(data, dict):
        unknown = sorted(set(data) - {"tests", "defaultTest", "description"})
        if unknown:
            errors.append(
                f"{source}:{node.start_mark.line + 1}: unknown top-level key(s) "
                f"{', '.join(map(repr, unknown))} (expected 'tests', 'defaultTest', 'description')"
            )
        assert isinstance(node, yaml.MappingNode)
        items_node = next((v for k, v in node.value if k.value == "tests"), None)  # type: ignore[assignment]
        if items_node is None:
            errors.append(f"{source}:{node.start_mark.line + 1}: no 'tests:' list of cases")
            return []
        raw_default = data.get("defaultTest") or {}
        if not isinstance(raw_default, dict):
            errors.append(f"{source}:{node.start_mark.line + 1}: 'defaultTest' must be a mapping")
        else:
            defaults = raw_default
        data = data["tests"]
    if not isinstance(data, list) or not isinstance(items_node, yaml.SequenceNode):
        line = items_node.start_mark.line + 1
        errors.append(f"{source}:{line}: expected a list of cases, not {kind(data)}")
        return []
    rows = []
    for item, item_node in zip(data, items_node.value, strict=True):
        line = item_node.start_mark.line + 1
        if not isinstance(item, dict):
            errors.append(f"{source}:{line}: a case must be a mapping, not {kind(item)}")
            continue
        rows.append((line, _merge_defaults(defaults, item)))
    return rows


def _merge_defaults(defaults: Mapping[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    if not defaults:
        return item
    merged = dict(item)
    for key, value in defaults.items():
        if key == "assert" and isinstance(value, list) and isinstance(item.get("assert", []), list):
            merged["assert"] = [*value, *item.get("assert", [])]
        elif key == "tags" and isinstance(value, list) and isinstance(item.get("tags", []), list):
            merged["tags"] = [*value, *[t for t in item.get("tags", []) if t not in value]]
        elif key in ("vars", "metadata") and isinstance(value, dict):
            if isinstance(item.get(key, {}), dict):
                merged[key] = {**value, **item.get(key, {})}
        elif key not in item:
            merged[key] = value
    return merged


def kind(value: Any) -> str:
    """How a JSON value is named in messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string" if value.strip() else "an empty string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
