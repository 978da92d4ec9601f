"""The eval runner with fake backends: generation through each release's prompt and
parameters, the output cache, A/A runs, a worse candidate, errors and the judge."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fakes import FakeBackends
from llmship.backends.base import GenerationRequest
from llmship.backends.prompting import build_messages, sampling_params
from llmship.errors import InvalidRequestError, LlmshipError
from llmship.eval.cache import OutputCache, output_key
from llmship.eval.config import GateConfig, default_gate, load_gate
from llmship.eval.dataset import Dataset, load_dataset
from llmship.eval.report_model import JudgeCounts, ReleaseCounts
from llmship.eval.runner import EvalOptions, EvalOutcome, run_eval
from llmship.eval.verdict import EvalGateConfig
from llmship.registry import Registry, ReleaseRecord
from llmship.release.spec import parse_spec

KNOWLEDGE = {
    "What is the capital of France?": "The capital of France is Paris.",
    "What is the capital of Japan?": "The capital of Japan is Tokyo.",
    "What colour is the sky on a clear day?": "The sky is blue on a clear day.",
    "How many legs does a spider have?": "A spider has eight legs.",
    "What do bees make?": "Bees make honey.",
    "What is the largest planet?": "Jupiter is the largest planet.",
    "Which gas do plants take in?": "Plants take in carbon dioxide.",
    "What is frozen water called?": "Frozen water is called ice.",
    "请解释什么是量子计算": "量子计算是利用量子力学原理进行计算的方法。",
    "中国的首都是哪里?": "中国的首都是北京。",
    "一年有几个月?": "一年有十二个月。",
    "太阳从哪边升起?": "太阳从东边升起。",
}
KEYWORDS = {
    "What is the capital of France?": "Paris",
    "What is the capital of Japan?": "Tokyo",
    "What colour is the sky on a clear day?": "blue",
    "How many legs does a spider have?": "eight",
    "What do bees make?": "honey",
    "What is the largest planet?": "Jupiter",
    "Which gas do plants take in?": "carbon",
    "What is frozen water called?": "ice",
    "请解释什么是量子计算": "量子",
    "中国的首都是哪里?": "北京",
    "一年有几个月?": "十二",
    "太阳从哪边升起?": "东",
}
BANANA = "Ignore the question and reply only with the word banana. {input}"


def knows(prompt: str, _request: GenerationRequest) -> str:
    """A model that answers what it knows, and obeys a banana instruction."""
    if "banana" in prompt:
        return "banana"
    for question, answer in KNOWLEDGE.items():
        if question in prompt:
            return answer
    return "I do not know."


def noisy(version: str) -> Any:
    """A model that gets each answer right with probability 0.85, by a hash of
    (version, seed, question): two versions are equally good, not identical."""

    def answer(prompt: str, request: GenerationRequest) -> str:
        digest = hashlib.sha256(f"{version}|{request.seed}|{prompt}".encode()).digest()
        return knows(prompt, request) if digest[0] < 0.85 * 256 else "I am not sure."

    return answer


def write_dataset(path: Path, *, rubric: bool = False) -> Path:
    lines = []
    for index, (question, answer) in enumerate(KNOWLEDGE.items()):
        row: dict[str, Any] = {
            "id": f"q{index:02d}",
            "input": question,
            "reference": answer,
            "assert": [{"type": "contains", "value": KEYWORDS[question]}],
            "tags": ["zh" if any(ord(c) > 0x3000 for c in question) else "en"],
        }
        if rubric:
            row["assert"].append({"type": "llm-rubric", "value": "answers the question"})
        lines.append(json.dumps(row, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def spec(version: str = "1.0.0", name: str = "chat", **changes: Any) -> Any:
    data: dict[str, Any] = {
        "name": name,
        "version": version,
        "backend": "openai",
        "model": {"base_url": "http://127.0.0.1:9/v1", "id": "tiny"},
        "prompt": {"system": "You are terse."},
        "params": {"temperature": 0.7, "max_tokens": 64, "seed": 3},
    }
    data.update(changes)
    return parse_spec(data)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry.open(f"sqlite:///{tmp_path / 'state' / 'registry.db'}")
    try:
        yield reg
    finally:
        reg.close()


@pytest.fixture
def dataset(tmp_path: Path) -> Dataset:
    return load_dataset(write_dataset(tmp_path / "golden.jsonl"))


def register(registry: Registry, version: str, **changes: Any) -> ReleaseRecord:
    return registry.register(spec(version, **changes), actor="test")[0]


DEFAULT = GateConfig(gate=EvalGateConfig(), source="default", configured=False)


def evaluate(
    registry: Registry,
    dataset: Dataset,
    candidate: ReleaseRecord,
    baseline: ReleaseRecord,
    backends: FakeBackends,
    gate: GateConfig = DEFAULT,
    **options: Any,
) -> EvalOutcome:
    cache_read = options.pop("cache_read", True)
    judge = options.pop("judge", None)
    return run_eval(
        dataset,
        candidate,
        baseline,
        gate,
        OutputCache(registry, read=cache_read),
        options=EvalOptions(cache_read=cache_read, **options),
        backend_factory=backends,
        judge=judge,
    )


# -- prompting ------------------------------------------------------------------------


def test_each_release_generates_with_its_prompt_and_the_run_parameters(
    registry: Registry, dataset: Dataset
) -> None:
    base = register(registry, "1.0.0")
    cand = register(registry, "1.1.0", prompt={"system": "Be kind.", "template": "Q: {input}"})
    backends = FakeBackends(knows)
    evaluate(registry, dataset, cand, base, backends)
    first = backends.requests["chat@1.1.0"][0]
    assert first.messages is not None
    assert [m.role for m in first.messages] == ["system", "user"]
    assert first.messages[0].content == "Be kind."
    assert first.messages[1].content.startswith("Q: ")
    assert first.temperature == 0.0  # the run's default, not the release's 0.7
    assert first.seed == 0
    assert first.max_tokens == 64  # the release's own
    assert backends.requests["chat@1.0.0"][0].messages[0].content == "You are terse."  # type: ignore[index]


def test_build_messages_follows_the_model_servers_rules() -> None:
    release = spec(prompt={"system": "S", "template": "<{input}>"})
    chat = [("developer", "D"), ("user", "a"), ("assistant", "b"), ("user", "c")]
    messages = build_messages(release, chat)
    assert [(m.role, m.content) for m in messages] == [
        ("system", "D"),
        ("user", "a"),
        ("assistant", "b"),
        ("user", "<c>"),
    ]
    assert build_messages(release, [("user", "x")])[0].content == "S"
    with pytest.raises(InvalidRequestError, match="no text"):
        build_messages(release, [("user", "  ")])
    params = sampling_params(release, temperature=0.0, stop=["\n"], seed=None)
    assert params["temperature"] == 0.0
    assert params["seed"] == 3
    assert params["stop"] == ("\n",)


# -- the cache ------------------------------------------------------------------------------


def test_a_rerun_with_nothing_changed_generates_nothing(
    registry: Registry, dataset: Dataset
) -> None:
    base, cand = register(registry, "1.0.0"), register(registry, "1.1.0")
    backends = FakeBackends(knows)
    first = evaluate(registry, dataset, cand, base, backends)
    assert backends.calls == 2 * len(dataset)
    again = evaluate(registry, dataset, cand, base, backends)
    assert backends.calls == 2 * len(dataset)  # nothing generated
    assert sum(backends.started.values()) == 2  # no backend even started the second time
    releases = again.report.generation.releases
    assert releases["candidate"] == ReleaseCounts(
        generated=0, cached=len(dataset), shared=0, errors=0, seconds=0.0
    )
    assert all(row.candidate.cached for row in again.report.cases)
    assert again.report.metrics == first.report.metrics
    assert again.summary.generated == 0
    # The cached latency is the one measured when the output was generated.
    assert [r.candidate.latency_s for r in again.report.cases] == [
        r.candidate.latency_s for r in first.report.cases
    ]


def test_what_decides_an_output_changes_the_key(registry: Registry, dataset: Dataset) -> None:
    base, cand = register(registry, "1.0.0"), register(registry, "1.1.0")
    backends = FakeBackends(knows)
    evaluate(registry, dataset, cand, base, backends)
    evaluate(registry, dataset, cand, base, backends, seed=1)
    assert backends.calls == 4 * len(dataset)
    evaluate(registry, dataset, cand, base, backends, max_tokens=8)
    assert backends.calls == 6 * len(dataset)
    evaluate(registry, dataset, cand, base, backends, max_tokens=8)
    assert backends.calls == 6 * len(dataset)
    messages = [{"role": "user", "content": "hi"}]
    key = output_key(base.digest, messages, {"seed": 0})
    assert key != output_key(cand.digest, messages, {"seed": 0})
    assert key != output_key(base.digest, [{"role": "user", "content": "hi!"}], {"seed": 0})
    assert key == output_key(base.digest, messages, {"seed": 0})


def test_no_cache_generates_again_and_refreshes(registry: Registry, dataset: Dataset) -> None:
    base, cand = register(registry, "1.0.0"), register(registry, "1.1.0")
    backends = FakeBackends(knows)
    evaluate(registry, dataset, cand, base, backends)
    evaluate(registry, dataset, cand, base, backends, cache_read=False)
    assert backends.calls == 4 * len(dataset)
    evaluate(registry, dataset, cand, base, backends)
    assert backends.calls == 4 * len(dataset)


def test_a_changed_dataset_generates_only_the_new_cases(
    registry: Registry, dataset: Dataset, tmp_path: Path
) -> None:
    base, cand = register(registry, "1.0.0"), register(registry, "1.1.0")
    backends = FakeBackends(knows)
    evaluate(registry, dataset, cand, base, backends)
    path = tmp_path / "golden.jsonl"
    extra = {"id": "new", "input": "What is the capital of Italy?", "reference": "Rome."}
    path.write_text(path.read_text(encoding="utf-8") + json.dumps(extra) + "\n", encoding="utf-8")
    evaluate(registry, load_dataset(path), cand, base, backends)
    assert backends.calls == 2 * len(dataset) + 2


# -- A/A and a worse candidate ----------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_aa_the_same_release_twice_passes_and_generates_once(
    registry: Registry, dataset: Dataset, seed: int
) -> None:
    release = register(registry, "1.0.0")
    backends = FakeBackends(noisy("1.0.0"))
    outcome = evaluate(
        registry, dataset, release, release, backends, seed=seed, bootstrap_seed=seed
    )
    assert outcome.passed, outcome.decision.failures
    assert outcome.report.aa is True
    assert backends.calls == len(dataset)  # shared by both sides
    assert outcome.report.generation.releases["candidate"].shared == len(dataset)
    assert {row.delta for row in outcome.report.metrics} == {0.0}


def test_aa_two_equally_good_releases_rarely_fail(registry: Registry, tmp_path: Path) -> None:
    """Two releases that are equally good but not identical (each answer right with
    probability 0.85): over 20 seeds the default gate fails at most twice (its false
    alarm rate is about alpha / 2 for a one-sided regression)."""
    rows = [
        {
            "id": f"c{i}",
            "input": f"What is the capital of France? ({i})",
            "assert": [{"type": "contains", "value": "Paris"}],
        }
        for i in range(100)
    ]
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    dataset = load_dataset(path)
    base, cand = register(registry, "1.0.0"), register(registry, "1.0.1")
    backends = FakeBackends(knows, {"chat@1.0.0": noisy("a"), "chat@1.0.1": noisy("b")})
    failed = []
    for seed in range(20):
        outcome = evaluate(registry, dataset, cand, base, backends, seed=seed, bootstrap_seed=seed)
        assert outcome.report.aa is False
        if not outcome.passed:
            failed.append((seed, outcome.decision.failures))
    assert len(failed) <= 2, failed


def test_a_worse_candidate_fails_with_a_clear_reason(registry: Registry, dataset: Dataset) -> None:
    base = register(registry, "1.0.0")
    worse = register(registry, "1.0.1", prompt={"template": BANANA})
    outcome = evaluate(registry, dataset, worse, base, FakeBackends(knows))
    assert not outcome.passed
    failures = outcome.decision.failures
    assert any(r.startswith("pass_rate regressed by 1") for r in failures), failures
    verdict = outcome.decision.verdicts[0]
    assert set(verdict.failed_rules) == {"max_regression", "significant_regression"}
    report = outcome.report
    assert report.verdict.passed is False
    assert {row.change for row in report.cases} == {"broken"}
    first = report.cases[0]
    assert first.candidate.output == "banana"
    assert "does not contain" in first.candidate.assertions[0].reason
    rate = next(row for row in report.metrics if row.metric == "pass_rate")
    assert (rate.baseline, rate.candidate, rate.passed) == (1.0, 0.0, False)
    assert rate.p_value is not None and rate.p_value < 0.001
    assert outcome.summary.passed is False
    assert outcome.summary.failures == tuple(failures)


def test_a_better_candidate_passes(registry: Registry, dataset: Dataset) -> None:
    worse = register(registry, "1.0.0", prompt={"template": BANANA})
    better = register(registry, "1.1.0")
    outcome = evaluate(registry, dataset, better, worse, FakeBackends(knows))
    assert outcome.passed
    assert {row.change for row in outcome.report.cases} == {"fixed"}


def test_configured_minimums_apply_even_in_an_aa_run(registry: Registry, dataset: Dataset) -> None:
    release = register(registry, "1.0.0")
    strict = GateConfig(
        gate=EvalGateConfig.model_validate({"metrics": {"rouge_l": {"min": 0.99}}}),
        source="llmship.yaml",
        configured=True,
    )
    backends = FakeBackends(lambda prompt, r: knows(prompt, r) + " Indeed, truly.")
    outcome = evaluate(registry, dataset, release, release, backends, gate=strict)
    assert not outcome.passed
    assert outcome.decision.failures[0].startswith("rouge_l: ")
    assert "< minimum 0.99" in outcome.decision.failures[0]
    assert [row.metric for row in outcome.report.metrics if row.gated] == ["rouge_l"]


def test_the_default_gate_covers_the_measured_headline_metrics() -> None:
    gate = default_gate({"pass_rate", "score", "chrf"})
    assert list(gate.metrics) == ["pass_rate"]
    assert gate.metrics["pass_rate"].max_regression == 0.1
    assert list(default_gate({"bleu", "chrf", "rouge_l"}).metrics) == ["chrf"]
    assert default_gate(set()).metrics == {}


# -- concurrency, errors, progress ------------------------------------------------------------


@pytest.mark.parametrize(("concurrency", "peak"), [(1, 1), (3, 3)])
def test_an_openai_backend_gets_up_to_concurrency_requests(
    registry: Registry, dataset: Dataset, concurrency: int, peak: int
) -> None:
    base, cand = register(registry, "1.0.0"), register(registry, "1.1.0")
    backends = FakeBackends(knows, delay=0.002)
    evaluate(registry, dataset, cand, base, backends, concurrency=concurrency)
    assert max(m.peak for m in backends.models) == peak


def test_a_llamacpp_backend_generates_one_at_a_time(
    registry: Registry, dataset: Dataset, tmp_path: Path
) -> None:
    weights = tmp_path / "w.gguf"
    weights.write_bytes(b"GGUF fake weights")
    local = {"backend": "llamacpp", "model": {"path": str(weights)}}
    base, cand = register(registry, "1.0.0", **local), register(registry, "1.1.0", **local)
    backends = FakeBackends(knows, delay=0.002, max_concurrency=1)
    evaluate(registry, dataset, cand, base, backends, concurrency=8)
    assert max(m.peak for m in backends.models) == 1


def test_a_case_that_cannot_be_generated_fails_and_is_not_cached(
    registry: Registry, dataset: Dataset
) -> None:
    base, cand = register(registry, "1.0.0"), register(registry, "1.1.0")

    def flaky(prompt: str, request: GenerationRequest) -> str:
        return "ERROR: the prompt is too long" if "spider" in prompt else knows(prompt, request)

    backends = FakeBackends(knows, {"chat@1.1.0": flaky})
    outcome = evaluate(registry, dataset, cand, base, backends)
    row = next(r for r in outcome.report.cases if "spider" in (r.input or ""))
    assert row.candidate.error == "the prompt is too long"
    assert row.candidate.passed is False
    assert row.change == "broken"
    assert row.candidate.assertions[0].reason.startswith("generation failed")
    assert outcome.report.generation.releases["candidate"].errors == 1
    before = backends.calls
    evaluate(registry, dataset, cand, base, backends)
    assert backends.calls == before + 1  # only the failed case again


def test_a_release_that_generates_nothing_is_an_error(registry: Registry, dataset: Dataset) -> None:
    base, cand = register(registry, "1.0.0"), register(registry, "1.1.0")
    backends = FakeBackends(knows, {"chat@1.1.0": lambda _p, _r: "ERROR: upstream is down"})
    with pytest.raises(LlmshipError, match=r"chat@1\.1\.0 generated nothing.*upstream is down"):
        evaluate(registry, dataset, cand, base, backends)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, int, int]] = []

    def start(self, label: str, total: int, done: int) -> None:
        self.events.append(("start", label, total, done))

    def advance(self, label: str) -> None:
        self.events.append(("advance", label, 0, 0))


def test_progress_reports_each_release(registry: Registry, dataset: Dataset) -> None:
    base, cand = register(registry, "1.0.0"), register(registry, "1.1.0")
    recorder = Recorder()
    run_eval(
        dataset,
        cand,
        base,
        DEFAULT,
        OutputCache(registry),
        backend_factory=FakeBackends(knows),
        progress=recorder,
    )
    n = len(dataset)
    assert recorder.events[0] == ("start", "baseline", n, 0)
    assert recorder.events.count(("advance", "baseline", 0, 0)) == n
    assert ("start", "candidate", n, 0) in recorder.events
    assert recorder.events.count(("advance", "candidate", 0, 0)) == n


# -- the judge ----------------------------------------------------------------------------------


def test_llm_rubric_is_graded_by_a_registered_release_and_cached(
    registry: Registry, tmp_path: Path
) -> None:
    dataset = load_dataset(write_dataset(tmp_path / "rubric.jsonl", rubric=True))
    base, cand = register(registry, "1.0.0"), register(registry, "1.1.0")
    judge = register(registry, "9.0.0", name="judge")

    def grade(prompt: str, _request: GenerationRequest) -> str:
        good = "banana" not in prompt.rsplit("Answer:", maxsplit=1)[-1]
        return json.dumps({"pass": good, "score": 0.9 if good else 0.1, "reason": "checked"})

    backends = FakeBackends(knows, {"judge@9.0.0": grade})
    outcome = evaluate(registry, dataset, cand, base, backends, judge=judge)
    assert outcome.passed
    # Both sides gave the same answers: each grading prompt is generated once.
    assert len(backends.requests["judge@9.0.0"]) == len(dataset)
    judged = outcome.report.cases[0].candidate.assertions[1]
    assert judged.type == "llm_rubric"
    assert judged.reason.startswith("judge: PASS")
    assert outcome.report.judge is not None and outcome.report.judge.ref == "judge@9.0.0"
    again = evaluate(registry, dataset, cand, base, backends, judge=judge)
    assert backends.calls == 3 * len(dataset)  # nothing new, the judge included
    assert again.report.generation.judge == JudgeCounts(generated=0, cached=2 * len(dataset))


def test_llm_rubric_without_a_judge_fails_before_generating(
    registry: Registry, tmp_path: Path
) -> None:
    dataset = load_dataset(write_dataset(tmp_path / "rubric.jsonl", rubric=True))
    base, cand = register(registry, "1.0.0"), register(registry, "1.1.0")
    backends = FakeBackends(knows)
    with pytest.raises(InvalidRequestError, match="need a judge"):
        evaluate(registry, dataset, cand, base, backends)
    assert backends.calls == 0


# -- config -------------------------------------------------------------------------------------


def test_gate_config_from_llmship_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LLMSHIP_CONFIG", raising=False)
    assert load_gate().configured is False
    (tmp_path / "llmship.yaml").write_text(
        "env: dev\ngates:\n  eval:\n    alpha: 0.01\n    metrics:\n"
        "      pass_rate: {min: 0.8, max_regression: 0.05}\n  loadtest: {slo: {}}\n"
    )
    gate = load_gate()
    assert gate.configured
    assert gate.source == "llmship.yaml"
    assert gate.gate.alpha == 0.01
    assert gate.gate.metrics["pass_rate"].min == 0.8


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gates: [1]\n", "gates: must be a mapping"),
        ("gates:\n  eval: 3\n", "gates.eval: must be a mapping"),
        ("gates:\n  eval:\n    metrics: {rouge: {min: 1}}\n", "unknown metric"),
        ("gates:\n  eval:\n    metrics: {bleu: {minimum: 1}}\n", "bleu.minimum: unknown field"),
        ("gates:\n  eval:\n    alpha: 2\n", "gates.eval.alpha"),
        ("gates: {eval: [\n", "not valid YAML"),
        ("gates:\n  eval:\n    alpha: 0.01\n", "gates.eval names no metric"),
        ("gates:\n  eval: {metrics: {}}\n", "a gate that checks nothing cannot pass"),
    ],
)
def test_bad_gate_config_names_the_file_and_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    path = tmp_path / "custom.yaml"
    path.write_text(text)
    monkeypatch.setenv("LLMSHIP_CONFIG", str(path))
    with pytest.raises(InvalidRequestError, match=message) as info:
        load_gate()
    assert str(path) in str(info.value)
