"""Reports: generic JUnit XML, and an eval report as JUnit, Markdown, HTML and JSON."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from fakes import FakeBackends
from llmship.backends.base import GenerationRequest
from llmship.eval.cache import OutputCache
from llmship.eval.config import GateConfig
from llmship.eval.dataset import load_dataset
from llmship.eval.report_model import EvalReport, Verdict
from llmship.eval.reports import (
    JUnitCase,
    JUnitSuite,
    eval_html,
    eval_junit_suites,
    eval_markdown,
    inline_diff,
    junit_xml,
    markdown_table,
    write_json,
    write_junit,
)
from llmship.eval.runner import run_eval
from llmship.eval.verdict import EvalGateConfig
from llmship.registry import Registry
from llmship.release.spec import parse_spec

# -- generic JUnit --------------------------------------------------------------------------


def test_junit_counts_and_elements() -> None:
    suites = [
        JUnitSuite(
            "first",
            [
                JUnitCase("ok", "pkg.a", time_s=0.5, details="all good"),
                JUnitCase("bad", "pkg.a", failure="expected 1, got 2", details="longer\ntext"),
                JUnitCase("broke", "pkg.a", error="could not run"),
                JUnitCase("later", "pkg.a", skipped="not today"),
            ],
            properties={"seed": "7"},
            timestamp="2024-05-01T12:00:00+00:00",
        ),
        JUnitSuite("second", [JUnitCase("alone", "pkg.b", failure="nope")]),
    ]
    root = ET.fromstring(junit_xml(suites, name="demo"))
    assert root.tag == "testsuites"
    assert root.attrib | {} == {
        "name": "demo",
        "tests": "5",
        "failures": "2",
        "errors": "1",
        "skipped": "1",
        "time": "0.500",
    }
    first, second = root.findall("testsuite")
    assert (first.get("tests"), first.get("failures"), first.get("errors")) == ("4", "1", "1")
    assert first.get("timestamp") == "2024-05-01T12:00:00+00:00"
    assert first.find("properties/property").attrib == {"name": "seed", "value": "7"}  # type: ignore[union-attr]
    cases = {c.get("name"): c for c in first.findall("testcase")}
    assert cases["ok"].find("system-out").text == "all good"  # type: ignore[union-attr]
    failure = cases["bad"].find("failure")
    assert failure is not None and failure.get("message") == "expected 1, got 2"
    assert failure.text == "longer\ntext"
    assert cases["broke"].find("error") is not None
    assert cases["later"].find("skipped") is not None
    assert second.get("failures") == "1"


def test_junit_escapes_markup_and_drops_illegal_characters(tmp_path: Path) -> None:
    nasty = 'a <b>&"quote"\x00\x1b end 量子'
    path = tmp_path / "out" / "junit.xml"
    write_junit(path, [JUnitSuite(nasty, [JUnitCase(nasty, "c", failure=nasty)])])
    root = ET.parse(path).getroot()
    case = root.find("testsuite/testcase")
    assert case is not None
    assert case.get("name") == 'a <b>&"quote"\ufffd\ufffd end 量子'
    assert case.find("failure").get("message") == case.get("name")  # type: ignore[union-attr]


def test_markdown_table_escapes_pipes_and_newlines() -> None:
    table = markdown_table(["a", "b"], [["x|y", "two\nlines"], [None, 3]])
    assert table.splitlines() == [
        "| a | b |",
        "|---|---|",
        "| x\\|y | two lines |",
        "|  | 3 |",
    ]


def test_inline_diff_marks_words_and_cjk_characters_escaped() -> None:
    assert inline_diff("the cat sat", "the dog sat") == "the <del>cat</del><ins>dog</ins> sat"
    assert inline_diff("量子计算", "量子力学") == "量子<del>计算</del><ins>力学</ins>"
    assert inline_diff("<b>", "<i>") == "&lt;<del>b</del><ins>i</ins>&gt;"


def test_write_json_is_strict(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    write_json(path, {"p": float("nan"), "x": [float("inf"), 1], "s": "量子"})
    text = path.read_text(encoding="utf-8")
    assert json.loads(text) == {"p": None, "x": [None, 1], "s": "量子"}
    assert "量子" in text


# -- an eval report ---------------------------------------------------------------------------

ROWS = [
    {"id": "fr", "input": "Capital of France?", "reference": "Paris",
     "assert": [{"type": "contains", "value": "Paris"}]},
    {"id": "zh", "input": "中国的首都是哪里?", "reference": "北京",
     "assert": [{"type": "contains", "value": "北京"}], "tags": ["zh"]},
    {"id": "html", "input": "Say <script>", "reference": "<script>alert(1)</script>",
     "assert": [{"type": "contains", "value": "<script>"}]},
    {"id": "plain", "input": "Anything | at all"},
]  # fmt: skip
ANSWERS = {
    "Capital of France?": "Paris",
    "中国的首都是哪里?": "北京",
    "Say <script>": "<script>alert(1)</script> | done",
    "Anything | at all": "Sure.",
}


def good(prompt: str, _request: GenerationRequest) -> str:
    return ANSWERS[prompt]


def bad(prompt: str, _request: GenerationRequest) -> str:
    return "Lyon\x00" if "France" in prompt else ANSWERS[prompt]


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry.open(f"sqlite:///{tmp_path / 'registry.db'}")
    try:
        yield reg
    finally:
        reg.close()


def make_report(
    registry: Registry,
    tmp_path: Path,
    *,
    baseline: Any = good,
    candidate: Any = bad,
    gate_metrics: dict[str, Any] | None = None,
) -> EvalReport:
    path = tmp_path / "golden.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS) + "\n")
    releases = []
    for version in ("1.0.0", "1.1.0"):
        spec = parse_spec(
            {
                "name": "chat",
                "version": version,
                "backend": "openai",
                "model": {"base_url": "http://127.0.0.1:9/v1", "id": "tiny"},
            }
        )
        releases.append(registry.register(spec, actor="t")[0])
    gate = GateConfig(
        gate=EvalGateConfig.model_validate(
            {
                "metrics": gate_metrics
                or {"pass_rate": {"min": 0.9}, "chrf": {"max_regression": 0.5}}
            }
        ),
        source="llmship.yaml",
        configured=True,
    )
    outcome = run_eval(
        load_dataset(path),
        releases[1],
        releases[0],
        gate,
        OutputCache(registry),
        backend_factory=FakeBackends(baseline, {"chat@1.1.0": candidate}),
    )
    return outcome.report.with_run(7)


@pytest.fixture
def report(registry: Registry, tmp_path: Path) -> EvalReport:
    report = make_report(registry, tmp_path)
    assert not report.verdict.passed
    return report


def wrong_on_zh(prompt: str, request: GenerationRequest) -> str:
    return "上海" if "中国" in prompt else good(prompt, request)


def wrong_on_zh_and_fr(prompt: str, request: GenerationRequest) -> str:
    return "Lyon" if "France" in prompt else wrong_on_zh(prompt, request)


def junit_of(report: EvalReport) -> ET.Element:
    return ET.fromstring(junit_xml(eval_junit_suites(report)))


def test_eval_junit_of_a_passing_gate_has_no_failure_for_shared_failures(
    registry: Registry, tmp_path: Path
) -> None:
    # Given a case that fails on both releases, and a gate that passes
    gate = {"pass_rate": {"max_regression": 0.1}}
    report = make_report(
        registry, tmp_path, baseline=wrong_on_zh, candidate=wrong_on_zh, gate_metrics=gate
    )
    assert report.verdict.passed
    root = junit_of(report)
    # Then CI stays green, and the known failure is there to read
    assert root.get("failures") == "0" and root.get("errors") == "0"
    zh = root.find("testsuite/testcase[@name='zh']")
    assert zh is not None and zh.find("failure") is None and zh.find("skipped") is None
    note = zh.findtext("system-out") or ""
    assert note.startswith(
        "known failure, not a regression: it fails on the baseline chat@1.0.0 too "
        "(contains: does not contain '北京')"
    )
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert (props["gate"], props["shared_failures"], props["regressions"]) == ("passed", "1", "0")


def test_eval_junit_of_a_failing_gate_fails_the_regressions_only(
    registry: Registry, tmp_path: Path
) -> None:
    # Given zh failing on both releases and fr failing on the candidate only
    report = make_report(registry, tmp_path, baseline=wrong_on_zh, candidate=wrong_on_zh_and_fr)
    assert not report.verdict.passed
    root = junit_of(report)
    # Then the regression and the failed gate condition are the failures; zh is not
    assert root.get("failures") == "2"
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert cases["fr"].find("failure") is not None
    assert (cases["fr"].findtext("failure") or "").startswith(
        "regression: passed on the baseline chat@1.0.0"
    )
    assert cases["zh"].find("failure") is None
    assert cases["gate pass_rate"].find("failure") is not None
    assert cases["gate chrf"].find("failure") is None
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert (props["gate"], props["shared_failures"], props["regressions"]) == ("failed", "1", "1")


def test_eval_junit_has_a_case_per_case_and_per_gate(report: EvalReport) -> None:
    root = junit_of(report)
    cases_suite, gate_suite = root.findall("testsuite")
    assert cases_suite.get("tests") == "4"
    assert cases_suite.get("failures") == "1"
    assert gate_suite.get("tests") == "2"
    assert gate_suite.get("failures") == "1"
    assert root.get("tests") == "6"
    assert root.get("failures") == "2"
    failed = cases_suite.find("testcase[@name='fr']/failure")
    assert failed is not None
    assert failed.get("message") == "contains: does not contain 'Paris'"
    assert "output: Lyon\ufffd" in (failed.text or "")
    gates = {c.get("name"): c for c in gate_suite.findall("testcase")}
    assert (
        gates["gate pass_rate"]
        .find("failure")
        .get("message")
        .startswith(  # type: ignore[union-attr]
            "pass_rate: 0.667 < minimum 0.9"
        )
    )
    assert gates["gate chrf"].find("failure") is None
    props = {p.get("name"): p.get("value") for p in cases_suite.iter("property")}
    assert props["candidate"] == "chat@1.1.0"
    assert props["bootstrap_seed"] == "12345"


def test_eval_markdown_fits_a_pull_request_comment(report: EvalReport) -> None:
    text = eval_markdown(report)
    assert text.startswith("### ❌ llmship eval failed: chat@1.1.0 vs chat@1.0.0 (run 7)\n")
    assert "| metric | baseline | candidate | delta | 95% CI | p | verdict |" in text
    assert re.search(r"^\| pass_rate \| 1\.000 \| 0\.667 \| -0\.333 \| .* \| FAIL \|$", text, re.M)
    assert "**Why it failed**" in text
    assert "- pass_rate: 0.667 < minimum 0.9" in text
    assert "1 case(s) changed: 1 broken, 0 fixed" in text
    assert "| fr | broken | Paris | Lyon" in text
    assert "seed 12345" in text


def test_eval_markdown_of_a_pass(registry: Registry, tmp_path: Path) -> None:
    report = make_report(registry, tmp_path)
    report = replace(
        report,
        verdict=Verdict(passed=True),
        cases=tuple(replace(c, change="same") for c in report.cases),
    )
    text = eval_markdown(report)
    assert text.startswith("### ✅ llmship eval passed")
    assert "Why it failed" not in text
    assert "<details>" not in text


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend(attrs)


def test_eval_html_is_self_contained_and_escaped(report: EvalReport) -> None:
    page = eval_html(report)
    parser = _Collect()
    parser.feed(page)
    assert "script" not in parser.tags  # the model's <script> is text, not markup
    assert "link" not in parser.tags and "img" not in parser.tags
    assert not [v for k, v in parser.attrs if k in ("src", "href")]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<style>" in page
    assert "FAIL</span> chat@1.1.0 vs chat@1.0.0" in page
    assert "<del>Paris</del><ins>Lyon\ufffd</ins>" in page
    assert "\x00" not in page
    assert "北京" in page
    assert page.count("<details") == 4
    assert "<details open><summary><b>fr</b>" in page  # broken cases open first


def test_every_format_renders_a_stored_report_alike(report: EvalReport) -> None:
    # what the registry gives back: JSON with sorted keys
    stored = EvalReport.from_json(json.loads(json.dumps(report.to_json(), sort_keys=True)))
    assert stored == report
    assert eval_markdown(stored) == eval_markdown(report)
    assert eval_html(stored) == eval_html(report)
