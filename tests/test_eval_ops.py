"""The eval workflow as functions (``llmship.eval.ops``) with fake backends, and the typed
report (``llmship.eval.report_model``): its JSON is the ``llmship.eval/1`` report as it
has always been written, and reads back to the same record."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from fakes import FakeBackends
from llmship.backends.base import GenerationRequest
from llmship.errors import InvalidRequestError, LlmshipError, NotFoundError, NothingCheckedError
from llmship.eval import ops
from llmship.eval.cache import OutputCache
from llmship.eval.config import GateConfig
from llmship.eval.dataset import Dataset
from llmship.eval.generation import EvalOptions
from llmship.eval.report_model import EvalReport, EvalSummary
from llmship.eval.reports import eval_markdown
from llmship.eval.runner import run_eval as run_engine
from llmship.eval.verdict import EvalGateConfig
from llmship.registry import Registry, ReleaseRecord
from llmship.release.promotion_guard import missing_gates
from llmship.release.spec import parse_spec

GOLDEN = Path(__file__).resolve().parent / "data" / "eval_report_v1.json"
"""What the report builder before the typed report wrote for :func:`golden_inputs`
(``DATASET`` in place of the dataset's path)."""

ROWS = [
    {"id": "fr", "input": "Capital of France?", "reference": "Paris",
     "assert": [{"type": "contains", "value": "Paris"}, {"type": "llm-rubric", "value": "right"}]},
    {"id": "zh", "input": "中国的首都是哪里?", "reference": "北京",
     "assert": [{"type": "contains", "value": "北京"}], "tags": ["zh"]},
    {"id": "html", "input": "Say <script>", "reference": "<script>alert(1)</script>",
     "assert": [{"type": "contains", "value": "<script>"}]},
    {"id": "plain", "input": "Anything | at all"},
    {"id": "msg", "messages": [{"role": "system", "content": "Be brief."},
                               {"role": "user", "content": "Hi there"}],
     "reference": "Hello", "assert": [{"type": "icontains", "value": "hello"}],
     "tags": ["chat", "en"]},
    {"id": "err", "input": "Break?", "assert": [{"type": "contains", "value": "ok"}]},
]  # fmt: skip
ANSWERS = {
    "Capital of France?": "Paris",
    "中国的首都是哪里?": "北京",
    "Say <script>": "<script>alert(1)</script> | done",
    "Anything | at all": "Sure.",
    "Hi there": "Hello friend",
    "Break?": "ok",
}
GATE = GateConfig(
    gate=EvalGateConfig.model_validate(
        {"metrics": {"pass_rate": {"min": 0.9}, "chrf": {"max_regression": 0.5}}}
    ),
    source="llmship.yaml",
    configured=True,
)
NOON = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def good(prompt: str, _request: GenerationRequest) -> str:
    """The baseline; as the judge, it passes everything."""
    return ANSWERS.get(prompt, json.dumps({"pass": True, "score": 0.9, "reason": "fine"}))


def bad(prompt: str, request: GenerationRequest) -> str:
    """The candidate: wrong (with a control character) on France, fails to generate on Break."""
    if "Break" in prompt:
        return "ERROR: boom"
    return "Lyon\x00" if "France" in prompt else good(prompt, request)


def release(registry: Registry, name: str, version: str) -> ReleaseRecord:
    spec = parse_spec(
        {
            "name": name,
            "version": version,
            "backend": "openai",
            "model": {"base_url": "http://127.0.0.1:9/v1", "id": "tiny"},
        }
    )
    return registry.register(spec, actor="t")[0]


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry.open(f"sqlite:///{tmp_path / 'registry.db'}")
    try:
        release(reg, "chat", "1.0.0")
        release(reg, "chat", "1.1.0")
        release(reg, "judge", "9.0.0")
        reg.set_alias("dev", "production", "chat@1.0.0", actor="t", reason="launch")
        yield reg
    finally:
        reg.close()


@pytest.fixture
def dataset(tmp_path: Path) -> Dataset:
    path = tmp_path / "golden.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS) + "\n")
    return ops.load_cases(path)


class Recorder:
    """A progress sink that remembers what it was told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def start(self, label: str, total: int, done: int) -> None:
        self.events.append(("start", label))

    def advance(self, label: str) -> None:
        self.events.append(("advance", label))


def evaluate(registry: Registry, dataset: Dataset, **kwargs: Any) -> ops.EvalRun:
    values: dict[str, Any] = {
        "env": "dev",
        "actor": "ci",
        "gate": GATE,
        "options": EvalOptions(),
        "judge": "judge@9.0.0",
        "backend_factory": FakeBackends(good, {"chat@1.1.0": bad}),
        "clock": lambda: NOON,
    }
    return ops.run_eval(registry, dataset, "chat@1.1.0", **(values | kwargs))


# -- the workflow ---------------------------------------------------------------------------


def test_run_eval_records_the_run_and_writes_each_file(
    registry: Registry, dataset: Dataset, tmp_path: Path
) -> None:
    # Given report paths, a progress sink and a callback
    paths = ops.ReportPaths(
        json=tmp_path / "out" / "r.json",
        junit=tmp_path / "out" / "r.xml",
        html=tmp_path / "out" / "r.html",
    )
    recorder = Recorder()
    seen: list[tuple[int | None, bool]] = []

    def recorded(report: EvalReport) -> None:
        seen.append((report.run, paths.json is not None and paths.json.exists()))

    # When the candidate is judged against production
    result = evaluate(registry, dataset, paths=paths, progress=recorder, on_recorded=recorded)

    # Then the gate failed, with the run recorded in the registry
    assert not result.passed
    assert result.report.run == result.run_id
    stored = registry.get_gate_run(result.run_id)
    assert (stored.kind, stored.ref, stored.baseline_ref, stored.env, stored.passed) == (
        "eval",
        "chat@1.1.0",
        "chat@1.0.0",
        "dev",
        False,
    )
    assert EvalReport.from_json(stored.report).with_run(result.run_id) == result.report
    assert "run" not in stored.report
    summary = EvalSummary.from_json(stored.summary)
    assert summary == result.report.summary()
    assert summary.failures == result.decision.failures
    assert set(summary.metrics) == {"chrf", "pass_rate"}
    # the baseline is named as it was given
    assert result.report.baseline.source == "production in dev"
    # the callback saw the recorded report before any file was written
    assert seen == [(result.run_id, False)]
    # each file named was written, in order; the JSON is the report with its run id
    assert result.written == (
        ("JSON", tmp_path / "out" / "r.json"),
        ("JUnit", tmp_path / "out" / "r.xml"),
        ("HTML", tmp_path / "out" / "r.html"),
    )
    written = json.loads((tmp_path / "out" / "r.json").read_text(encoding="utf-8"))
    assert written["run"] == result.run_id
    assert EvalReport.from_json(written) == result.report
    assert (tmp_path / "out" / "r.xml").read_text().startswith("<?xml")
    # progress was told about both releases and each case
    assert ("start", "baseline") in recorder.events
    assert ("start", "candidate") in recorder.events
    assert recorder.events.count(("advance", "candidate")) == len(dataset)


def test_run_eval_without_paths_writes_nothing(registry: Registry, dataset: Dataset) -> None:
    result = evaluate(registry, dataset, baseline="chat@1.0.0")
    assert result.written == ()
    assert result.report.baseline.source == "chat@1.0.0"


def test_a_report_that_cannot_be_written_is_an_error_after_the_run_is_recorded(
    registry: Registry, dataset: Dataset, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(LlmshipError, match="cannot write the report: ") as info:
        evaluate(registry, dataset, paths=ops.ReportPaths(markdown=blocker / "r.md"))
    assert info.value.code == "report_not_written"
    assert [run.ref for run in registry.list_gate_runs(kind="eval")] == ["chat@1.1.0"]


def test_a_missing_production_alias_says_how_to_set_one(
    registry: Registry, dataset: Dataset
) -> None:
    with pytest.raises(NotFoundError, match=r"^no baseline: .*llmship alias set production"):
        evaluate(registry, dataset, env="prod")
    with pytest.raises(NotFoundError) as info:
        evaluate(registry, dataset, baseline="stable")
    assert not info.value.message.startswith("no baseline")
    assert registry.list_gate_runs(kind="eval") == []


def test_load_cases_keeps_the_tagged_cases_or_says_none_is(tmp_path: Path) -> None:
    path = tmp_path / "golden.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS) + "\n")
    assert [c.id for c in ops.load_cases(path, ["zh", "chat"]).cases] == ["zh", "msg"]
    with pytest.raises(InvalidRequestError, match=r"golden\.jsonl: no case has the tag\(s\) x, y"):
        ops.load_cases(path, ["x", "y"])


# -- stored runs ----------------------------------------------------------------------------


def test_list_runs_newest_first_by_release_or_name(registry: Registry, dataset: Dataset) -> None:
    first = evaluate(registry, dataset)
    aa = ops.run_eval(
        registry,
        dataset,
        "chat@1.0.0",
        env="dev",
        actor="ci",
        gate=GATE,
        options=EvalOptions(),
        judge="judge@9.0.0",
        backend_factory=FakeBackends(good),
    )
    registry.record_gate_run(
        "loadtest", "chat@1.0.0", env="dev", passed=True, summary={}, report={}, actor="t"
    )
    every = ops.list_runs(registry)
    assert [s.run.id for s in every] == [aa.run_id, first.run_id]  # no loadtest run
    assert every[0].summary.aa is True
    assert every[1].summary.metrics["pass_rate"].candidate == pytest.approx(0.6)
    assert [s.run.id for s in ops.list_runs(registry, ref="chat@1.1.0")] == [first.run_id]
    assert [s.run.id for s in ops.list_runs(registry, name="chat")] == [aa.run_id, first.run_id]
    assert [s.run.id for s in ops.list_runs(registry, limit=1)] == [aa.run_id]
    assert ops.list_runs(registry, name="judge") == []


def test_a_summary_recorded_by_other_means_reads_with_defaults(registry: Registry) -> None:
    registry.record_gate_run(
        "eval", "chat@1.1.0", env="dev", passed=True, summary={"verdict": "pass"}, report={},
        actor="t",
    )  # fmt: skip
    (stored,) = ops.list_runs(registry)
    assert (stored.summary.dataset, stored.summary.cases, stored.summary.metrics) == ("", None, {})
    with pytest.raises(InvalidRequestError, match=r"^run \d+: not an eval report"):
        ops.read_report(ops.get_run(registry, stored.run.id))


def test_get_run_and_read_report(registry: Registry, dataset: Dataset) -> None:
    result = evaluate(registry, dataset)
    run = ops.get_run(registry, result.run_id)
    report = ops.read_report(run)
    assert report == result.report
    assert eval_markdown(report) == eval_markdown(result.report)
    load = registry.record_gate_run(
        "loadtest", "chat@1.1.0", env="dev", passed=True, summary={}, report={}, actor="t"
    )
    with pytest.raises(InvalidRequestError, match="is a loadtest run, not an eval run"):
        ops.get_run(registry, load.id)
    with pytest.raises(NotFoundError, match="no gate run 999"):
        ops.get_run(registry, 999)


# -- the typed report and its JSON ------------------------------------------------------------


def golden_inputs(registry: Registry, dataset: Dataset) -> EvalReport:
    """The fixed run the golden file was written from (timings frozen at 0)."""
    outcome = run_engine(
        dataset,
        registry.resolve("chat@1.1.0", env="dev"),
        registry.resolve("chat@1.0.0", env="dev"),
        GATE,
        OutputCache(registry),
        backend_factory=FakeBackends(good, {"chat@1.1.0": bad}),
        judge=registry.resolve("judge@9.0.0", env="dev"),
        clock=lambda: NOON,
        baseline_source="production in dev",
    )
    return outcome.report


def test_the_json_is_what_the_untyped_report_was(
    registry: Registry, dataset: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmship.eval.reports import write_json

    monkeypatch.setattr(time, "perf_counter", lambda: 2.5)
    report = golden_inputs(registry, dataset)
    path = dataset.path
    written = Path(path).with_name("report.json")
    write_json(written, report.to_json())
    expected = GOLDEN.read_text(encoding="utf-8").replace('"DATASET"', json.dumps(path))
    assert written.read_text(encoding="utf-8") == expected


def test_the_report_reads_back_from_its_json(registry: Registry, dataset: Dataset) -> None:
    report = golden_inputs(registry, dataset).with_run(3)
    data = report.to_json()
    assert list(data)[:4] == ["schema", "kind", "created_at", "env"]
    assert list(data)[-1] == "run"
    # as written to a file: the same record, and the same JSON text again
    again = EvalReport.from_json(json.loads(json.dumps(data)))
    assert again == report
    assert json.dumps(again.to_json()) == json.dumps(data)
    # as the registry stores it (keys sorted): the same record
    stored = EvalReport.from_json(json.loads(json.dumps(data, sort_keys=True)))
    assert stored == report
    assert stored.to_json() == data
    stored = EvalReport.from_json({k: v for k, v in data.items() if k != "run"})
    assert stored.run is None and "run" not in stored.to_json()
    summary = report.summary()
    assert EvalSummary.from_json(json.loads(json.dumps(summary.to_json()))) == summary


def test_a_json_object_that_is_not_a_report_is_refused() -> None:
    with pytest.raises(ValueError, match="not an eval report"):
        EvalReport.from_json({"schema": "llmship.eval/1", "env": "dev"})


# -- a gate that checked nothing ------------------------------------------------------------


def test_a_gate_that_measured_nothing_is_an_error_and_satisfies_no_requirement(
    registry: Registry, tmp_path: Path
) -> None:
    # Given cases with no references and a gate on a metric that needs them
    path = tmp_path / "bare.jsonl"
    path.write_text('{"id": "a", "input": "Capital of France?"}\n')
    gate = GateConfig(
        gate=EvalGateConfig.model_validate({"metrics": {"rouge_l": {"max_regression": 0.1}}}),
        source="llmship.yaml",
        configured=True,
    )
    json_path = tmp_path / "r.json"
    # When it runs, it is an error that says what to fix
    with pytest.raises(NothingCheckedError, match=r"checked nothing: .*rouge_l.*references"):
        evaluate(registry, ops.load_cases(path), gate=gate, paths=ops.ReportPaths(json=json_path))
    # and the run is recorded as an error, its report written
    [run] = registry.list_gate_runs(kind="eval")
    assert run.passed is False and "checked nothing" in run.summary["error"]
    written = EvalReport.from_json(json.loads(json_path.read_text()))
    assert written.verdict.error is not None and "checked nothing" in written.verdict.error
    assert "**Error**: the eval gate checked nothing" in eval_markdown(written)
    [event] = registry.events(kind="gate.eval")
    assert "error: the eval gate checked nothing" in event.message
    # which does not satisfy a requirement of the eval gate
    assert missing_gates(["eval"], registry.latest_gate_runs(run.ref)) == ["eval"]


def test_the_default_gate_with_nothing_to_measure_is_an_error(
    registry: Registry, tmp_path: Path
) -> None:
    path = tmp_path / "bare.jsonl"
    path.write_text('{"id": "a", "input": "Capital of France?"}\n')
    unconfigured = GateConfig(gate=EvalGateConfig(), source="default", configured=False)
    with pytest.raises(NothingCheckedError, match="give the cases references or assertions"):
        evaluate(registry, ops.load_cases(path), gate=unconfigured)
