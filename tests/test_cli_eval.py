"""`llmship eval` through the real command line: exit codes, reports, stored runs.

Fast tests generate with fake backends (``create_backend`` replaced); the one
marked ``slow`` runs the bundled model through llama.cpp.
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from _cli import Run
from _registry import spec_data
from fakes import FakeBackends
from llmship.backends.base import GenerationRequest
from llmship.registry import Registry

ROOT = Path(__file__).resolve().parent.parent
BANANA = "Ignore the question and reply only with the word banana. {input}"
#: A template that ruins SmolLM2-135M's answers (it ignores "reply with banana").
GERMAN = "Translate the following text into German, word by word: {input}"
ANSWERS = {
    "What is the capital of France?": "Paris is the capital of France.",
    "How many days are in a week?": "A week has seven days.",
    "What do cows drink?": "Cows drink water.",
    "What is 2 + 2?": "2 + 2 is 4.",
    "中国的首都是哪里?": "中国的首都是北京。",
    "请解释什么是量子计算": "量子计算利用量子力学进行计算。",
}
KEYS = ["Paris", "seven", "water", "4", "北京", "量子"]


def knows(prompt: str, _request: GenerationRequest) -> str:
    if "banana" in prompt:
        return "banana"
    return next((a for q, a in ANSWERS.items() if q in prompt), "I do not know.")


def flat(text: str) -> str:
    """Output with line wrapping undone (Rich wraps at the terminal width)."""
    return " ".join(text.split())


@pytest.fixture
def backends(monkeypatch: pytest.MonkeyPatch) -> FakeBackends:
    fakes = FakeBackends(knows)
    monkeypatch.setattr("llmship.backends.create_backend", fakes)
    return fakes


def write_spec(tmp_path: Path, version: str, **extra: Any) -> str:
    data = spec_data("chat", version, params={"max_tokens": 32}, **extra)
    path = tmp_path / f"chat-{version}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.fixture
def project(tmp_path: Path, run: Run) -> Path:
    """chat@1.0.0 (production), chat@1.1.0 (as good), chat@1.0.1 (worse); a dataset."""
    run("models", "register", write_spec(tmp_path, "1.0.0"))
    run("models", "register", write_spec(tmp_path, "1.1.0"))
    run("models", "register", write_spec(tmp_path, "1.0.1", prompt={"template": BANANA}))
    run("alias", "set", "production", "chat@1.0.0", "--reason", "launch")
    rows = [
        {
            "id": f"c{i}",
            "input": q,
            "reference": a,
            "assert": [{"type": "contains", "value": k}],
        }
        for i, ((q, a), k) in enumerate(zip(ANSWERS.items(), KEYS, strict=True))
    ]
    (tmp_path / "golden.jsonl").write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8"
    )
    return tmp_path


# -- exit codes and reports -----------------------------------------------------------------


def test_a_passing_candidate_exits_0_and_writes_every_report(
    project: Path, run: Run, backends: FakeBackends
) -> None:
    result = run(
        "eval",
        "--dataset",
        "golden.jsonl",
        "--candidate",
        "chat@1.1.0",
        "--junit",
        "out/junit.xml",
        "--markdown",
        "out/summary.md",
        "--html",
        "out/report.html",
        "--json",
        "out/report.json",
    )
    text = flat(result.output)
    assert "PASS chat@1.1.0 may go out" in text
    assert "chat@1.1.0 (candidate) vs chat@1.0.0 (baseline)" in text
    assert "12 generated, 0 cached" in text
    for column in ("metric", "baseline", "candidate", "delta", "95% CI", "p", "verdict"):
        assert column in result.output
    assert backends.calls == 12
    report = json.loads((project / "out" / "report.json").read_text(encoding="utf-8"))
    assert report["baseline"]["source"] == "production in dev"
    assert report["verdict"]["passed"] is True
    root = ET.parse(project / "out" / "junit.xml").getroot()
    assert root.get("tests") == str(6 + 1)  # six cases and the pass_rate gate
    assert root.get("failures") == "0"
    summary = (project / "out" / "summary.md").read_text(encoding="utf-8")
    assert summary.startswith(
        f"### ✅ llmship eval passed: chat@1.1.0 vs chat@1.0.0 (run {report['run']})"
    )
    assert "<style>" in (project / "out" / "report.html").read_text(encoding="utf-8")


def test_a_worse_candidate_exits_1_and_says_why(
    project: Path, run: Run, backends: FakeBackends
) -> None:
    result = run("eval", "-d", "golden.jsonl", "-c", "chat@1.0.1", "--junit", "junit.xml", code=1)
    text = flat(result.output)
    assert "FAIL chat@1.0.1:" in text
    assert "pass_rate regressed by 1 " in text
    assert "> allowed 0.1" in text
    root = ET.parse(project / "junit.xml").getroot()
    assert root.get("failures") == "7"  # every case (each a regression) and the gate
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert (props["gate"], props["regressions"]) == ("failed", "6")
    listed = json.loads(run("eval", "list", "--format", "json").output)
    assert listed[0]["passed"] is False
    assert listed[0]["ref"] == "chat@1.0.1"
    assert listed[0]["summary"]["failures"][0].startswith("pass_rate regressed by 1")


def test_failures_shared_with_the_baseline_leave_a_passing_gate_green_in_junit(
    project: Path, run: Run, backends: FakeBackends
) -> None:
    # Given three cases that both releases fail (nobody answers "Zanzibar")
    rows = [
        json.loads(line)
        for line in (project / "golden.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    for row in rows[:3]:
        row["assert"] = [{"type": "contains", "value": "Zanzibar"}]
    (project / "golden.jsonl").write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8"
    )
    # When the gate passes
    run("eval", "-d", "golden.jsonl", "-c", "chat@1.1.0", "--junit", "junit.xml", code=0)
    # Then JUnit says so: no failure, and the known failures are visible in each case
    root = ET.parse(project / "junit.xml").getroot()
    assert root.get("failures") == "0" and root.get("errors") == "0"
    cases = {c.get("name"): c for c in root.iter("testcase")}
    for name in ("c0", "c1", "c2"):
        assert cases[name].find("failure") is None and cases[name].find("skipped") is None
        note = cases[name].findtext("system-out") or ""
        assert note.startswith("known failure, not a regression: it fails on the baseline")
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert (props["gate"], props["shared_failures"], props["regressions"]) == ("passed", "3", "0")


def test_a_rerun_generates_nothing(project: Path, run: Run, backends: FakeBackends) -> None:
    run("eval", "-d", "golden.jsonl", "-c", "chat@1.1.0")
    assert backends.calls == 12
    result = run("eval", "-d", "golden.jsonl", "-c", "chat@1.1.0")
    assert backends.calls == 12
    assert "0 generated, 12 cached" in flat(result.output)
    run("eval", "-d", "golden.jsonl", "-c", "chat@1.1.0", "--no-cache")
    assert backends.calls == 24
    run("eval", "-d", "golden.jsonl", "-c", "chat@1.1.0", "--seed", "5")
    assert backends.calls == 36


def test_an_aa_run_passes(project: Path, run: Run, backends: FakeBackends) -> None:
    result = run("eval", "-d", "golden.jsonl", "-c", "chat@1.0.1", "-b", "chat@1.0.1")
    assert "A/A run" in flat(result.output)
    assert backends.calls == 6


def test_the_gate_comes_from_llmship_yaml(project: Path, run: Run, backends: FakeBackends) -> None:
    (project / "llmship.yaml").write_text(
        yaml.safe_dump({"gates": {"eval": {"metrics": {"rouge_l": {"min": 0.99}}}}})
    )
    backends.answers["chat@1.1.0"] = lambda p, r: knows(p, r) + " Truly."
    result = run("eval", "-d", "golden.jsonl", "-c", "chat@1.1.0", code=1)
    text = flat(result.output)
    assert "rouge_l: " in text
    assert "< minimum 0.99" in text
    assert "gate from llmship.yaml" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give --dataset and --candidate"),
        (("-d", "golden.jsonl"), "give --candidate"),
        (
            ("-d", "missing.jsonl", "-c", "chat@1.1.0"),
            "the dataset file missing.jsonl does not exist",
        ),
        (("-d", "bad.jsonl", "-c", "chat@1.1.0"), "bad.jsonl:2: invalid JSON"),
        (("-d", "golden.jsonl", "-c", "chat@9.9.9"), "no release chat@9.9.9"),
        (("-d", "golden.jsonl", "-c", "chat@1.1.0", "-e", "prod"), "no baseline"),
        (("-d", "golden.jsonl", "-c", "chat@1.1.0", "-b", "nope"), "'nope' is neither"),
        (("-d", "golden.jsonl", "-c", "chat@1.1.0", "-t", "none"), "no case has the tag"),
        (("-d", "golden.jsonl", "-c", "chat@1.1.0", "--concurrency", "0"), "--concurrency"),
    ],
)
def test_usage_and_runtime_errors_exit_2(
    project: Path, run: Run, backends: FakeBackends, args: tuple[str, ...], message: str
) -> None:
    (project / "bad.jsonl").write_text('{"input": "fine"}\n{not json\n')
    result = run("eval", *args, code=2)
    assert message in flat(result.output)
    assert backends.calls == 0


def test_a_bad_gate_config_exits_2(project: Path, run: Run, backends: FakeBackends) -> None:
    (project / "llmship.yaml").write_text("gates:\n  eval:\n    metrics: {rogue: {min: 1}}\n")
    result = run("eval", "-d", "golden.jsonl", "-c", "chat@1.1.0", code=2)
    assert "llmship.yaml: gates.eval.metrics: unknown metric(s) rogue" in flat(result.output)


def test_a_backend_that_cannot_start_exits_2(project: Path, run: Run) -> None:
    # The real openai backend, pointed at a closed port.
    result = run("eval", "-d", "golden.jsonl", "-c", "chat@1.1.0", code=2)
    assert "error:" in result.output


# -- stored runs ---------------------------------------------------------------------------------


def test_list_and_show_stored_runs(project: Path, run: Run, backends: FakeBackends) -> None:
    run("eval", "-d", "golden.jsonl", "-c", "chat@1.1.0")
    run("eval", "-d", "golden.jsonl", "-c", "chat@1.0.1", code=1)
    table = flat(run("eval", "list").output)
    assert "chat@1.0.1" in table and "chat@1.1.0" in table
    assert "FAIL" in table and "pass" in table
    runs = json.loads(run("eval", "list", "--format", "json", "--release", "chat@1.1.0").output)
    assert [r["ref"] for r in runs] == ["chat@1.1.0"]
    assert runs[0]["summary"]["metrics"]["pass_rate"]["candidate"] == 1.0
    production = json.loads(run("eval", "list", "-f", "json", "--release", "production").output)
    assert production == []
    every_version = json.loads(run("eval", "list", "-f", "json", "--release", "chat").output)
    assert [r["ref"] for r in every_version] == ["chat@1.0.1", "chat@1.1.0"]
    assert "nor is it the name" in run("eval", "list", "--release", "nope", code=2).output
    run("eval", "list", "-r", "production", code=2)  # -r is --reason's, nowhere a filter
    first = runs[0]["id"]
    shown = json.loads(run("eval", "show", str(first), "--format", "json").output)
    assert shown["run"] == first
    assert shown["candidate"]["ref"] == "chat@1.1.0"
    assert len(shown["cases"]) == 6
    markdown = run("eval", "show", str(first), "-f", "markdown").output
    assert markdown.startswith(
        f"### ✅ llmship eval passed: chat@1.1.0 vs chat@1.0.0 (run {first})"
    )
    assert "PASS chat@1.1.0 may go out" in flat(run("eval", "show", str(first)).output)
    assert "no gate run 999" in flat(run("eval", "show", "999", code=2).output)


def test_show_refuses_a_loadtest_run(project: Path, run: Run) -> None:
    with Registry.open(f"sqlite:///{project / 'state' / 'registry.db'}") as registry:
        load = registry.record_gate_run(
            "loadtest", "chat@1.1.0", env="dev", passed=True, summary={}, report={}, actor="t"
        )
    result = run("eval", "show", str(load.id), code=2)
    assert "is a loadtest run, not an eval run" in flat(result.output)


def test_list_without_runs(project: Path, run: Run) -> None:
    assert "no eval runs yet" in run("eval", "list").output


# -- the real model -----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_bundled_model_a_worse_template_fails_aa_passes_rerun_is_cached(
    tmp_path: Path, run: Run
) -> None:
    from llmship.release.bundled import bundled_spec

    spec = bundled_spec().to_dict()
    spec["runtime"] = {**spec["runtime"], "n_threads": 1, "n_ctx": 512}
    worse = {**spec, "version": "1.0.1", "prompt": {**spec["prompt"], "template": GERMAN}}
    for data in (spec, worse):
        path = tmp_path / f"{data['name']}-{data['version']}.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True))
        run("models", "register", str(path))
    run("alias", "set", "production", "smollm2-chat@1.0.0", "--reason", "bundled")
    shutil.copy(ROOT / "evals" / "smoke.jsonl", tmp_path / "smoke.jsonl")
    common = ("--dataset", "smoke.jsonl", "--max-tokens", "48")

    failed = run("eval", *common, "--candidate", "smollm2-chat@1.0.1", "--json", "w.json", code=1)
    report = json.loads((tmp_path / "w.json").read_text(encoding="utf-8"))
    assert "FAIL smollm2-chat@1.0.1" in flat(failed.output)
    assert report["verdict"]["failures"][0].startswith("pass_rate regressed by")
    cases = report["cases"]
    assert sum(c["change"] == "broken" for c in cases) >= 3, [c["candidate"] for c in cases]
    assert sum(c["baseline"]["passed"] for c in cases) >= len(cases) - 1
    assert all(c["candidate"]["completion_tokens"] <= 48 for c in cases)

    aa = run("eval", *common, "--candidate", "smollm2-chat@1.0.0", "--json", "aa.json")
    assert "A/A run" in flat(aa.output)
    again = run("eval", *common, "--candidate", "smollm2-chat@1.0.1", code=1)
    assert f"0 generated, {2 * len(cases)} cached" in flat(again.output)
