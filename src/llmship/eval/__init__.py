"""Quality evaluation of releases: golden datasets, metrics, assertions, paired
statistics and the eval gate. A pure library: it reads dataset files and never
calls a model (the runner generates; an LLM judge is a callable passed in).

    load_dataset(path) -> Dataset                        dataset.py
    evaluate_case(case, output, latency, judge) -> CaseResult   assertions.py
    corpus_scores(cases, outputs, results) -> {metric: CorpusScore}   metrics.py
    compare_outputs(cases, baseline, candidate, ...) -> {metric: Comparison}   stats.py
    decide(EvalGateConfig, candidate, comparisons) -> GateDecision   verdict.py

Every metric (per-case and corpus score, paired test, precision, default gate) is one
row of ``metric_table.METRICS``; see ``docs/eval-metrics.md``.
"""

from llmship.eval.assertions import (
    ASSERTION_TYPES,
    Assertion,
    AssertionResult,
    CaseResult,
    Embedder,
    Judge,
    bundled_embedder,
    evaluate_case,
    parse_judge_answer,
    preflight,
    semantic_available,
)
from llmship.eval.dataset import Case, Dataset, DatasetError, Message, load_dataset, parse_cases
from llmship.eval.metrics import CORPUS_METRICS, CorpusScore, case_scores, corpus_scores
from llmship.eval.stats import DEFAULT_RESAMPLES, DEFAULT_SEED, Comparison, compare_outputs
from llmship.eval.verdict import EvalGateConfig, GateDecision, MetricGate, MetricVerdict, decide

__all__ = [
    "ASSERTION_TYPES",
    "CORPUS_METRICS",
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "Assertion",
    "AssertionResult",
    "Case",
    "CaseResult",
    "Comparison",
    "CorpusScore",
    "Dataset",
    "DatasetError",
    "Embedder",
    "EvalGateConfig",
    "GateDecision",
    "Judge",
    "Message",
    "MetricGate",
    "MetricVerdict",
    "bundled_embedder",
    "case_scores",
    "compare_outputs",
    "corpus_scores",
    "decide",
    "evaluate_case",
    "load_dataset",
    "parse_cases",
    "parse_judge_answer",
    "preflight",
    "semantic_available",
]
