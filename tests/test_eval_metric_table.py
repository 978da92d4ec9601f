"""The metric table is the one place a metric is declared: a row added there is scored,
compared, gated and printed by everything else, and every row has all its parts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from llmship.eval import config, metric_table, metrics, reports, stats, verdict
from llmship.eval.assertions import ASSERTION_TYPES, CaseResult, canonical_type, evaluate_case
from llmship.eval.cases import Case
from llmship.eval.dataset import parse_cases
from llmship.eval.metric_table import METRICS, DefaultGate, Metric, PairedOptions, Sample
from llmship.eval.scoring import CorpusScore
from llmship.eval.significance import Comparison

DOC = Path(__file__).resolve().parent.parent / "docs" / "eval-metrics.md"


def _row(case_id: str, reference: str | None, *asserts: dict[str, object]) -> dict[str, object]:
    row: dict[str, object] = {"id": case_id, "input": "q", "assert": list(asserts)}
    if reference is not None:
        row["reference"] = reference
    return row


ROWS = [
    _row("a", "the cat sat", {"type": "contains", "value": "cat"}),
    _row("b", "a dog ran fast", {"type": "contains", "value": "dog"}),
    _row("c", "blue sky", {"type": "rouge_l", "threshold": 0.5}),
    _row("d", "量子计算"),
    _row("e", None, {"type": "contains", "value": "red"}),
]
BASELINE = ["the cat sat", "a dog ran", "blue sky", "量子", "red"]
CANDIDATE = ["the cat", "a dog ran fast today", "sky", "量子计算", "green"]


def _cases() -> tuple[Case, ...]:
    return parse_cases("\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS), "jsonl")


def _results(cases: Sequence[Case], outputs: Sequence[str]) -> list[CaseResult]:
    return [evaluate_case(c, o) for c, o in zip(cases, outputs, strict=True)]


def _brevity(sample: Sample) -> float:
    """A toy metric: 1 when the output is no longer than its shortest reference."""
    return 1.0 if len(sample.output) <= min(len(r) for r in sample.references) else 0.0


BREVITY = Metric(
    "brevity",
    "references",
    _brevity,
    metric_table.mcnemar,
    precision=4,
    default_gate=DefaultGate(rank=0, limits={"max_regression": 0.25}),
)


def test_a_metric_added_to_the_table_is_scored_compared_gated_and_printed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(METRICS, "brevity", BREVITY)
    cases = _cases()

    # per case and per corpus (the case without references has no value)
    per_case = [metrics.case_scores(c, o) for c, o in zip(cases, CANDIDATE, strict=True)]
    assert [scores.get("brevity") for scores in per_case] == [1.0, 0.0, 1.0, 1.0, None]
    corpus = metrics.corpus_scores(cases, CANDIDATE)["brevity"]
    assert (corpus.name, corpus.score, corpus.n) == ("brevity", 0.75, 4)

    # the paired test it names
    compared = stats.compare_outputs(cases, BASELINE, CANDIDATE, n_resamples=50)["brevity"]
    assert (compared.metric, compared.test, compared.n) == ("brevity", "mcnemar", 4)
    assert (compared.baseline, compared.candidate, compared.delta) == (1.0, 0.75, -0.25)

    # the default gate tries it first (rank 0), and a configured gate may name it
    gate = config.default_gate({"pass_rate", "chrf", "brevity"})
    assert list(gate.metrics) == ["brevity"]
    assert gate.metrics["brevity"].max_regression == 0.25
    assert "brevity" in config.default_gate({"brevity"}).metrics
    configured = verdict.EvalGateConfig.model_validate({"metrics": {"brevity": {"min": 0.8}}})
    decision = verdict.decide(configured, {"brevity": corpus}, {"brevity": compared})
    assert not decision.passed
    assert decision.failures == ("brevity: 0.75 < minimum 0.8",)

    # printed with its own precision
    assert metric_table.precision("brevity") == 4
    assert reports.fmt_metric("brevity", 0.75) == "0.7500"
    assert reports.fmt_delta("brevity", -0.25) == "-0.2500"


def test_a_metric_over_assertions_is_measured_on_the_cases_with_assertions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``over="assertions"``: its values come from the case results, never from references."""
    failed = Metric(
        "fail_rate",
        "assertions",
        lambda s: 0.0 if s.result is not None and s.result.passed else 1.0,
        metric_table.mcnemar,
    )
    monkeypatch.setitem(METRICS, "fail_rate", failed)
    cases = _cases()
    base = _results(cases, BASELINE)
    cand = _results(cases, CANDIDATE)
    assert "fail_rate" not in metrics.case_scores(cases[0], CANDIDATE[0])
    assert "fail_rate" not in metrics.corpus_scores(cases, CANDIDATE)
    # Four cases have assertions (not d); the candidate fails only e ("green" lacks "red").
    score = metrics.corpus_scores(cases, CANDIDATE, cand)["fail_rate"]
    assert (score.n, score.score) == (4, 0.25)
    compared = stats.compare_outputs(
        cases, BASELINE, CANDIDATE, baseline_results=base, candidate_results=cand, n_resamples=50
    )["fail_rate"]
    assert (compared.test, compared.n, compared.baseline, compared.delta) == (
        "mcnemar",
        4,
        0.0,
        0.25,
    )


def test_every_metric_has_all_its_parts() -> None:
    cases = _cases()
    base = _results(cases, BASELINE)
    cand = _results(cases, CANDIDATE)
    base_samples = metric_table.samples(cases, BASELINE, base)
    cand_samples = metric_table.samples(cases, CANDIDATE, cand)
    options = PairedOptions(n_resamples=50)
    ranks = [m.default_gate.rank for m in METRICS.values() if m.default_gate is not None]
    assert len(ranks) == len(set(ranks)), "two metrics share a default-gate rank"
    for name, metric in METRICS.items():
        assert metric.name == name
        assert metric.over in ("references", "assertions")
        assert metric.precision >= 0 and metric.scale > 0
        paired = [
            (b, c) for b, c in zip(base_samples, cand_samples, strict=True) if metric.measures(c)
        ]
        assert paired, f"{name}: the sample dataset measures nothing"
        values = [metric.case_score(c) for _, c in paired]
        assert all(0 <= v <= metric.scale * (1 + 1e-12) for v in values), name
        corpus = metric.corpus([c for _, c in paired])
        assert isinstance(corpus, CorpusScore)
        assert (corpus.name, corpus.n) == (name, len(paired))
        compared = metric.compare([b for b, _ in paired], [c for _, c in paired], options)
        assert isinstance(compared, Comparison)
        assert (compared.metric, compared.n) == (name, len(paired))
        assert compared.candidate == pytest.approx(corpus.score), name
        if metric.default_gate is not None:
            verdict.MetricGate.model_validate(dict(metric.default_gate.limits))
        if metric.assertion is not None:
            registered = ASSERTION_TYPES[name]
            assert registered.default_threshold == metric.assertion.default_threshold
            spellings = (name, *metric.assertion.aliases)
            assert {canonical_type(a) for a in spellings} == {name}
            assert 0 < metric.assertion.default_threshold <= metric.scale


def _table_rows(doc: str, section: str) -> list[str]:
    """The table rows of one ``## section`` of the doc."""
    body = doc.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in body.splitlines() if line.startswith("| `")]


def test_every_metric_is_documented_with_its_paired_test() -> None:
    """docs/eval-metrics.md gives each metric a scale row and names the test the table uses."""
    doc = DOC.read_text("utf-8")
    words = {"paired_bootstrap": "paired bootstrap", "wilcoxon": "Wilcoxon", "mcnemar": "McNemar"}
    cases = _cases()
    compared = stats.compare_outputs(
        cases,
        BASELINE,
        CANDIDATE,
        baseline_results=_results(cases, BASELINE),
        candidate_results=_results(cases, CANDIDATE),
    )
    assert set(compared) == set(METRICS)
    scales = _table_rows(doc, "Metrics")
    tests = _table_rows(doc, "Comparing a candidate with the baseline")
    for name, comparison in compared.items():
        named = f"`{name}`"
        assert [r for r in scales if named in r.split(" | ")[0]], f"{name}: no row in ## Metrics"
        (row,) = [r for r in tests if named in r.split(" | ")[0]]
        assert words[comparison.test] in row, f"{name}: the doc names another test than the table"


def test_the_names_derived_from_the_table_are_unchanged() -> None:
    """The public names the rest of llmship reads, as they were before the table."""
    assert metrics.CORPUS_METRICS == (
        "bleu",
        "chrf",
        "rouge_1",
        "rouge_2",
        "rouge_l",
        "exact_match",
        "accuracy",
    )
    assert tuple(verdict.GATED_METRICS) == (*metrics.CORPUS_METRICS, "pass_rate", "score")
    assert config.DEFAULT_GATE == {
        "pass_rate": {"max_regression": 0.1},
        "chrf": {"max_regression": 0.05},
    }
    assert [metric_table.precision(m) for m in ("bleu", "chrf", "score", "unknown")] == [
        2,
        3,
        3,
        3,
    ]
    metric_types = [t for t in ASSERTION_TYPES if t in METRICS and t != "exact_match"]
    assert metric_types == ["bleu", "chrf", "rouge_1", "rouge_2", "rouge_l"]
