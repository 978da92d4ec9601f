"""Golden datasets: JSONL, CSV and YAML; every bad row reported as ``file:line: what``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from llmship.errors import SpecError
from llmship.eval.dataset import Case, DatasetError, load_dataset, parse_cases

PUBLIC_ROW = {
    "input": "请解释什么是量子计算",
    "reference": "量子计算是利用量子力学原理进行计算的技术。",
    "assert": [{"type": "contains", "value": "量子"}, {"type": "rouge_l", "threshold": 0.2}],
    "tags": ["zh"],
}


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _errors(path: Path) -> tuple[str, ...]:
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    return info.value.errors


# --- JSONL ---------------------------------------------------------------------------------


def test_the_public_jsonl_row_loads(tmp_path: Path) -> None:
    path = _write(tmp_path, "golden.jsonl", json.dumps(PUBLIC_ROW, ensure_ascii=False) + "\n")
    dataset = load_dataset(path)
    (case,) = dataset.cases
    assert case.input == "请解释什么是量子计算"
    assert case.references == (PUBLIC_ROW["reference"],)
    assert case.reference == PUBLIC_ROW["reference"]
    assert [(a.type, a.value, a.threshold) for a in case.asserts] == [
        ("contains", "量子", None),
        ("rouge_l", None, 0.2),
    ]
    assert case.tags == ("zh",)
    assert case.id == "golden.jsonl:1"
    assert case.line == 1
    assert case.prompt_messages() == [{"role": "user", "content": "请解释什么是量子计算"}]
    assert dataset.assertion_types == {"contains", "rouge_l"}
    assert len(dataset.digest) == 64


def test_jsonl_messages_references_vars_and_metadata(tmp_path: Path) -> None:
    rows = [
        {
            "id": "chat-1",
            "messages": [
                {"role": "system", "content": "Answer in {{lang}}."},
                {"role": "user", "content": "Capital of {{country}}?"},
            ],
            "references": ["Paris", "paris, France"],
            "vars": {"lang": "English", "country": "France"},
            "metadata": {"source": "atlas"},
            "threshold": 0.5,
            "assert": [{"type": "icontains", "value": "paris", "weight": 2}],
        },
        {"id": 7, "input": "Keep {{unknown}} and {{ n }}", "vars": {"n": 3}},
    ]
    text = "\n".join(json.dumps(r) for r in rows) + "\n\n"
    dataset = load_dataset(_write(tmp_path, "chat.jsonl", text))
    first, second = dataset.cases
    assert first.id == "chat-1"
    assert first.prompt_messages() == [
        {"role": "system", "content": "Answer in English."},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert first.prompt_text() == "Capital of France?"
    assert first.references == ("Paris", "paris, France")
    assert first.metadata == {"source": "atlas"}
    assert first.threshold == 0.5
    assert first.asserts[0].weight == 2.0
    assert second.id == "7"
    assert second.input == "Keep {{unknown}} and 3"


def test_assertion_type_spellings_are_interchangeable() -> None:
    text = json.dumps(
        {
            "input": "x",
            "reference": "y",
            "assert": [
                {"type": "not-contains", "value": "a"},
                {"type": "not_contains", "value": "b"},
                {"type": "ROUGE-L"},
                {"type": "is-json"},
                {"type": "llm-rubric", "value": "is polite"},
                {"type": "exact-match"},
            ],
        }
    )
    (case,) = parse_cases(text, "jsonl")
    assert [a.type for a in case.asserts] == [
        "not_contains",
        "not_contains",
        "rouge_l",
        "is_json",
        "llm_rubric",
        "exact_match",
    ]


def test_digest_follows_the_content(tmp_path: Path) -> None:
    path = _write(tmp_path, "d.jsonl", '{"input": "a"}\n')
    first = load_dataset(path).digest
    assert load_dataset(path).digest == first
    path.write_text('{"input": "b"}\n', encoding="utf-8")
    assert load_dataset(path).digest != first


def test_with_tags_filters(tmp_path: Path) -> None:
    text = '{"input": "a", "tags": ["zh"]}\n{"input": "b", "tags": ["en"]}\n{"input": "c"}\n'
    dataset = load_dataset(_write(tmp_path, "t.jsonl", text))
    assert dataset.tags == ("en", "zh")
    assert [c.input for c in dataset.with_tags("zh")] == ["a"]
    assert len(dataset.with_tags()) == 3


# --- YAML ----------------------------------------------------------------------------------


def test_yaml_promptfoo_style_with_default_test(tmp_path: Path) -> None:
    text = """\
description: capitals
defaultTest:
  assert:
    - type: not-contains
      value: "I don't know"
  tags: [geo]
tests:
  - input: Capital of France?
    reference: Paris
    assert:
      - {type: icontains, value: paris}
  - id: de
    input: Capital of {{country}}?
    vars: {country: Germany}
    references: [Berlin]
    tags: [de]
    threshold: 0.5
"""
    dataset = load_dataset(_write(tmp_path, "caps.yaml", text))
    first, second = dataset.cases
    assert first.id == "caps.yaml:8"
    assert [a.type for a in first.asserts] == ["not_contains", "icontains"]
    assert first.tags == ("geo",)
    assert second.input == "Capital of Germany?"
    assert second.tags == ("geo", "de")
    assert second.line == 12


def test_yaml_plain_list(tmp_path: Path) -> None:
    text = "- input: one\n- input: two\n  reference: zwei\n"
    dataset = load_dataset(_write(tmp_path, "list.yml", text))
    assert [(c.input, c.line) for c in dataset.cases] == [("one", 1), ("two", 2)]


# --- CSV -----------------------------------------------------------------------------------


def test_csv_columns_expected_cells_and_vars(tmp_path: Path) -> None:
    text = (
        "id,input,reference,tags,assert,__expected,__expected2,topic\n"
        'q1,"Explain {{topic}}",Quantum computing uses qubits.,"en, physics",'
        '"[{""type"": ""rouge_l"", ""threshold"": 0.2}]",contains:qubit,Quantum,quantum computing\n'
        'q2,"Multi\nline",Ref,,,rouge_l(0.3):,,x\n'
    )
    dataset = load_dataset(_write(tmp_path, "g.csv", text))
    q1, q2 = dataset.cases
    assert q1.input == "Explain quantum computing"
    assert q1.tags == ("en", "physics")
    assert [(a.type, a.value, a.threshold) for a in q1.asserts] == [
        ("rouge_l", None, 0.2),
        ("contains", "qubit", None),
        ("equals", "Quantum", None),
    ]
    assert q1.vars == {"topic": "quantum computing"}
    assert q2.input == "Multi\nline"
    assert q2.line == 3
    assert [(a.type, a.threshold) for a in q2.asserts] == [("rouge_l", 0.3)]


# --- errors --------------------------------------------------------------------------------

BAD = [
    pytest.param(
        "bad.jsonl",
        '{"input": "ok"}\n{"input": \n\n["a list"]\n{"reference": "r"}\n'
        '{"input": "x", "assert": [{"type": "containz", "value": "a"}]}\n',
        [
            "bad.jsonl:2: invalid JSON",
            "bad.jsonl:4: a row must be a JSON object, not a list",
            "bad.jsonl:5: missing 'input' (or 'messages')",
            "bad.jsonl:6: assert #1: unknown assertion type 'containz'",
        ],
        id="jsonl",
    ),
    pytest.param(
        "bad.jsonl",
        '{"input": "x", "tags": "a", "threshold": 2}\n'
        '{"input": "", "refrence": "y"}\n'
        '{"input": "x", "assert": [{"type": "regex", "value": "("}, {"type": "latency"}]}\n'
        '{"input": "x", "assert": [{"type": "rouge_l"}, {"type": "bleu", "threshold": 200}]}\n'
        '{"input": "x", "assert": [{"type": "json-schema", "value": {"type": 5}}]}\n'
        '{"input": "x", "assert": [{"type": "length", "value": {"min": 9, "max": 2}}]}\n'
        '{"input": "x", "assert": [{"type": "contains", "value": "a", "wieght": 1}]}\n'
        '{"messages": [{"role": "robot", "content": "hi"}]}\n'
        '{"input": "x", "reference": "a", "references": ["b"]}\n',
        [
            "bad.jsonl:1: 'threshold' must be a number from 0 to 1, not 2",
            "bad.jsonl:2: unknown field 'refrence'",
            "bad.jsonl:2: 'input' must be a non-empty string",
            "bad.jsonl:3: assert #1: regex: invalid regular expression",
            "bad.jsonl:3: assert #2: latency: 'threshold' must be the limit in seconds",
            "bad.jsonl:4: assert #1: rouge_l: needs a 'value' or the case's reference(s)",
            "bad.jsonl:4: assert #2: bleu: needs a 'value' or the case's reference(s)",
            "bad.jsonl:4: assert #2: bleu: 'threshold' is in BLEU points, from 0 to 100",
            "bad.jsonl:5: assert #1: json-schema: invalid JSON schema",
            "bad.jsonl:6: assert #1: length: min 9 is larger than max 2",
            "bad.jsonl:7: assert #1: unknown key 'wieght'",
            "bad.jsonl:8: messages #1: role must be one of",
            "bad.jsonl:9: give either 'reference' or 'references', not both",
        ],
        id="jsonl-fields",
    ),
    pytest.param(
        "bad.csv",
        'input,reference,assert\nok,r,\n"two\nlines",,"[{""type"": ""nope""}]"\n'
        "a,b\n,x,\nfine,r,{not json}\n",
        [
            "bad.csv:3: assert #1: unknown assertion type 'nope'",
            "bad.csv:5: 2 columns where the header has 3",
            "bad.csv:6: missing 'input' (or 'messages')",
            "bad.csv:7: column 'assert': invalid JSON",
        ],
        id="csv",
    ),
    pytest.param(
        "bad.csv",
        "prompt,reference\nhello,world\n",
        ["bad.csv:1: the header needs an 'input' (or 'messages') column"],
        id="csv-header",
    ),
    pytest.param(
        "bad.yaml",
        "tests:\n  - input: fine\n  - just a string\n  - input: x\n    assert:\n"
        "      - type: similar\n        threshold: 3\n  - reference: r\n",
        [
            "bad.yaml:3: a case must be a mapping, not a string",
            "bad.yaml:4: assert #1: similar: needs a 'value' or the case's reference(s)",
            "bad.yaml:4: assert #1: similar: 'threshold' must be from 0 to 1, not 3",
            "bad.yaml:8: missing 'input' (or 'messages')",
        ],
        id="yaml",
    ),
    pytest.param(
        "bad.yaml",
        "tests:\n  - input: [unclosed\n",
        ["bad.yaml:3: invalid YAML"],
        id="yaml-syntax",
    ),
    pytest.param(
        "bad.yaml",
        "cases:\n  - input: x\n",
        ["bad.yaml:1: unknown top-level key(s) 'cases'", "bad.yaml:1: no 'tests:' list"],
        id="yaml-top-level",
    ),
    pytest.param(
        "dup.jsonl",
        '{"id": "a", "input": "x"}\n{"id": "a", "input": "y"}\n',
        ["dup.jsonl:2: duplicate id 'a' (first on line 1)"],
        id="duplicate-id",
    ),
    pytest.param("empty.jsonl", "\n\n", ["empty.jsonl:1: the dataset has no cases"], id="empty"),
]


@pytest.mark.parametrize(("name", "text", "expected"), BAD)
def test_every_bad_row_is_reported_with_file_and_line(
    tmp_path: Path, name: str, text: str, expected: list[str]
) -> None:
    path = _write(tmp_path, name, text)
    errors = _errors(path)
    prefix = str(path)
    for fragment in expected:
        wanted = prefix + fragment[len(name) :]
        assert any(e.startswith(wanted) for e in errors), f"{wanted!r} not in {errors}"
    assert len(errors) == len(expected), errors


def test_the_error_is_a_spec_error_listing_every_problem(tmp_path: Path) -> None:
    path = _write(tmp_path, "two.jsonl", '{"reference": "a"}\n{"input": 3}\n')
    with pytest.raises(SpecError) as info:
        load_dataset(path)
    message = info.value.message
    assert message.splitlines()[0] == f"{path}: 2 problems in the dataset:"
    assert f"{path}:1: missing 'input'" in message
    assert f"{path}:2: 'input' must be a non-empty string, not a number" in message


def test_a_missing_file_is_said_to_not_exist_without_a_line(tmp_path: Path) -> None:
    path = tmp_path / "missing.jsonl"
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    assert info.value.message == f"the dataset file {path} does not exist"
    assert ":0" not in info.value.message and "line" not in info.value.message


def test_a_missing_relative_file_names_where_it_was_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError) as info:
        load_dataset("nope.jsonl")
    assert info.value.message == (
        f"the dataset file nope.jsonl does not exist (looked for {tmp_path / 'nope.jsonl'})"
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a-directory.jsonl", "cannot read the dataset file: Is a directory"),
        ("data.txt", "unknown dataset format '.txt' (use .jsonl, .csv or .yaml)"),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, expected: str) -> None:
    path = tmp_path / name
    if name.endswith(".txt"):
        path.write_text("x", encoding="utf-8")
    else:
        path.mkdir()
    (error,) = _errors(path)
    assert error == f"{path}: {expected}"


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"input": "ok"}\n{"input": "caf\xe9"}\n')
    assert _errors(path) == (f"{path}:2: not UTF-8 text",)


def test_case_defaults() -> None:
    case = Case(id="x", line=1, input="hi", vars={"a": 1})
    assert case.reference is None
    assert hash(case) == hash(Case(id="x", line=1, input="hi", vars={"a": 2}))
    assert case.prompt_messages() == [{"role": "user", "content": "hi"}]


# --- the documentation's examples load -------------------------------------------------------

DOC = Path(__file__).resolve().parent.parent / "docs" / "eval-metrics.md"


def _blocks(language: str) -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)


@pytest.mark.parametrize("language", ["jsonl", "csv", "yaml"])
def test_the_documented_examples_load(tmp_path: Path, language: str) -> None:
    blocks = [b for b in _blocks(language) if language != "yaml" or "tests:" in b]
    assert blocks, f"docs/eval-metrics.md has no {language} dataset example"
    for number, block in enumerate(blocks):
        path = _write(tmp_path, f"example{number}.{language}", block)
        assert load_dataset(path).cases
