"""Golden datasets: cases read from JSONL, CSV or YAML files (promptfoo-like).

One case is a prompt (``input``) or a chat (``messages``), optional references,
assertions, tags and an optional pass threshold. A JSONL row::

    {"input": "请解释什么是量子计算", "reference": "...",
     "assert": [{"type": "contains", "value": "量子"}, {"type": "rouge_l", "threshold": 0.2}],
     "tags": ["zh"]}

Every problem in a file is collected and reported together, one line each, as
``file:line: what is wrong``, in one :class:`DatasetError` (a ``SpecError``).
The formats are described in ``docs/eval-metrics.md``. The types (:class:`Case`,
:class:`Dataset`, :class:`Message`) live in :mod:`llmship.eval.cases` and are re-exported here.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llmship.errors import SpecError
from llmship.eval._dataset_formats import csv_rows, jsonl_rows, kind, yaml_rows
from llmship.eval.assertions import parse_assertion
from llmship.eval.cases import Assertion, Case, Dataset, Message

__all__ = [
    "CASE_FIELDS",
    "Case",
    "Dataset",
    "DatasetError",
    "Message",
    "load_dataset",
    "parse_cases",
]

#: The fields a case may have in JSONL and YAML (CSV: see ``docs/eval-metrics.md``).
CASE_FIELDS = (
    "id",
    "description",
    "input",
    "messages",
    "reference",
    "references",
    "assert",
    "tags",
    "threshold",
    "vars",
    "metadata",
)
_ROLES = ("system", "user", "assistant", "tool", "developer")
_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".yaml": "yaml", ".yml": "yaml"}


class DatasetError(SpecError):
    """A dataset file has problems; ``errors`` lists each as ``file:line: what is wrong``
    (``file: what is wrong`` when the file as a whole cannot be read)."""

    default_code = "invalid_dataset"

    def __init__(self, path: str, errors: Sequence[str]):
        self.errors = tuple(errors)
        count = len(self.errors)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"{path}: {count} {noun} in the dataset:\n" + "\n".join(self.errors))


class DatasetFileError(DatasetError):
    """The file itself cannot be used (missing, unreadable, an unknown format): one
    message, without a line number."""

    def __init__(self, problem: str):
        self.errors = (problem,)
        super(DatasetError, self).__init__(problem)


def load_dataset(path: str | Path, *, format: str | None = None) -> Dataset:
    """Read a dataset file; the format comes from the suffix (.jsonl, .csv, .yaml/.yml).

    Raises :class:`DatasetError` listing every bad row as ``file:line: what is wrong``;
    a missing or unreadable file is one message without a line.
    """
    name = str(path)
    p = Path(path)
    fmt = format or _SUFFIXES.get(p.suffix.lower())
    if fmt not in ("jsonl", "csv", "yaml"):
        raise DatasetFileError(
            f"{name}: unknown dataset format {p.suffix!r} (use .jsonl, .csv or .yaml)"
        )
    try:
        raw = p.read_bytes()
    except FileNotFoundError as exc:
        where = "" if p.is_absolute() else f" (looked for {p.absolute()})"
        raise DatasetFileError(f"the dataset file {name} does not exist{where}") from exc
    except OSError as exc:
        raise DatasetFileError(f"{name}: cannot read the dataset file: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DatasetError(name, [f"{name}:{line}: not UTF-8 text"]) from exc
    cases = parse_cases(text, fmt, source=name)
    return Dataset(path=name, cases=cases, digest=hashlib.sha256(raw).hexdigest())


def parse_cases(text: str, format: str, *, source: str = "<dataset>") -> tuple[Case, ...]:
    """Parse dataset text in ``format`` ("jsonl", "csv" or "yaml"); errors name ``source``."""
    errors: list[str] = []
    rows: list[tuple[int, dict[str, Any]]]
    if format == "jsonl":
        rows = jsonl_rows(text, source, errors)
    elif format == "csv":
        rows = csv_rows(text, source, errors)
    elif format == "yaml":
        rows = yaml_rows(text, source, errors)
    else:
        raise ValueError(f"unknown dataset format {format!r}")
    base = Path(source).name
    cases: list[Case] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        problems: list[str] = []
        case = _build_case(row, line, base, problems)
        errors.extend(f"{source}:{line}: {p}" for p in problems)
        if case is None:
            continue
        if case.id in seen:
            errors.append(
                f"{source}:{line}: duplicate id {case.id!r} (first on line {seen[case.id]})"
            )
            continue
        seen[case.id] = line
        cases.append(case)
    if not errors and not cases:
        errors.append(f"{source}:1: the dataset has no cases")
    if errors:
        raise DatasetError(source, errors)
    return tuple(cases)


# --- one case ----------------------------------------------------------------------------


def _build_case(row: dict[str, Any], line: int, base: str, problems: list[str]) -> Case | None:
    unknown = [k for k in row if k not in CASE_FIELDS]
    for key in unknown:
        problems.append(f"unknown field {key!r} (a case has {', '.join(CASE_FIELDS)})")

    case_id = row.get("id")
    if case_id is None:
        case_id = f"{base}:{line}"
    elif isinstance(case_id, bool) or not isinstance(case_id, (str, int)) or str(case_id) == "":
        problems.append("'id' must be a non-empty string or an integer")
    description = row.get("description")
    if description is not None and not isinstance(description, str):
        problems.append("'description' must be a string")

    variables = row.get("vars", {})
    if variables is None:
        variables = {}
    if not isinstance(variables, dict):
        problems.append(f"'vars' must be an object, not {kind(variables)}")
        variables = {}
    metadata = row.get("metadata", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        problems.append(f"'metadata' must be an object, not {kind(metadata)}")
        metadata = {}

    text, messages = _prompt(row, variables, problems)
    references = _references(row, problems)
    tags = _tags(row.get("tags"), problems)

    threshold = row.get("threshold")
    if threshold is not None and (not _is_number(threshold) or not 0.0 <= float(threshold) <= 1.0):
        problems.append(f"'threshold' must be a number from 0 to 1, not {threshold!r}")

    asserts: list[Assertion] = []
    raw_asserts = row.get("assert", [])
    if raw_asserts is None:
        raw_asserts = []
    if not isinstance(raw_asserts, list):
        problems.append(f"'assert' must be a list of assertions, not {kind(raw_asserts)}")
        raw_asserts = []
    for index, raw in enumerate(raw_asserts, start=1):
        assertion, issues = parse_assertion(raw, has_references=bool(references))
        problems.extend(f"assert #{index}: {issue}" for issue in issues)
        if assertion is not None:
            asserts.append(assertion)

    if problems:
        return None
    return Case(
        id=str(case_id),
        line=line,
        input=text,
        messages=messages,
        references=references,
        asserts=tuple(asserts),
        tags=tags,
        threshold=float(threshold) if threshold is not None else None,
        description=description,
        vars=dict(variables),
        metadata=dict(metadata),
    )


def _prompt(
    row: Mapping[str, Any], variables: Mapping[str, Any], problems: list[str]
) -> tuple[str | None, tuple[Message, ...] | None]:
    has_input, has_messages = "input" in row, "messages" in row
    if has_input and has_messages:
        problems.append("give either 'input' or 'messages', not both")
        return None, None
    if not has_input and not has_messages:
        problems.append("missing 'input' (or 'messages')")
        return None, None
    if has_input:
        value = row["input"]
        if not isinstance(value, str) or not value.strip():
            problems.append(f"'input' must be a non-empty string, not {kind(value)}")
            return None, None
        return _fill(value, variables), None
    value = row["messages"]
    if not isinstance(value, list) or not value:
        problems.append("'messages' must be a non-empty list of {role, content}")
        return None, None
    messages = []
    for number, item in enumerate(value, start=1):
        if not isinstance(item, dict) or set(item) - {"role", "content", "name"}:
            problems.append(f"messages #{number}: must be an object with 'role' and 'content'")
            continue
        role, content = item.get("role"), item.get("content")
        if role not in _ROLES:
            problems.append(f"messages #{number}: role must be one of {', '.join(_ROLES)}")
            continue
        if not isinstance(content, str):
            problems.append(f"messages #{number}: 'content' must be a string")
            continue
        messages.append(Message(role=role, content=_fill(content, variables)))
    return None, tuple(messages)


def _references(row: Mapping[str, Any], problems: list[str]) -> tuple[str, ...]:
    if "reference" in row and "references" in row:
        problems.append("give either 'reference' or 'references', not both")
        return ()
    if "reference" in row:
        value = row["reference"]
        if value is None:
            return ()
        if not isinstance(value, str):
            problems.append(f"'reference' must be a string, not {kind(value)}")
            return ()
        return (value,)
    value = row.get("references")
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append("'references' must be a list of strings")
        return ()
    return tuple(value)


def _tags(value: Any, problems: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
        problems.append("'tags' must be a list of non-empty strings")
        return ()
    return tuple(dict.fromkeys(value))


def _fill(text: str, variables: Mapping[str, Any]) -> str:
    """Replace ``{{name}}`` with ``vars[name]``; unknown names are left as written."""
    if not variables or "{{" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in variables:
            return match.group(0)
        value = variables[name]
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

    return _VAR.sub(replace, text)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
