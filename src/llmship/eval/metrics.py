"""The metrics of one system's outputs over a dataset: per case and per corpus, for every
metric of the table (:mod:`llmship.eval.metric_table`).

The scoring functions themselves (BLEU, chrF, ROUGE, exact match, accuracy) and their
scales are in :mod:`llmship.eval.scoring`; every public name there is re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from llmship.eval import metric_table
from llmship.eval.metric_table import Sample
from llmship.eval.scoring import (
    CjkRougeTokenizer,
    CorpusScore,
    accuracy,
    bleu_metric,
    bleu_tokenizer,
    chrf_metric,
    corpus_bleu,
    corpus_chrf,
    exact_match,
    has_cjk,
    label_hit,
    normalize_text,
    reference_streams,
    rouge,
    rouge_1,
    rouge_2,
    rouge_l,
    sentence_bleu,
    sentence_chrf,
)

if TYPE_CHECKING:
    from llmship.eval._assertion_model import CaseResult
    from llmship.eval.cases import Case

__all__ = [
    "CORPUS_METRICS",
    "CjkRougeTokenizer",
    "CorpusScore",
    "accuracy",
    "bleu_metric",
    "bleu_tokenizer",
    "case_scores",
    "chrf_metric",
    "corpus_bleu",
    "corpus_chrf",
    "corpus_scores",
    "exact_match",
    "has_cjk",
    "label_hit",
    "normalize_text",
    "reference_streams",
    "rouge",
    "rouge_1",
    "rouge_2",
    "rouge_l",
    "sentence_bleu",
    "sentence_chrf",
]

#: The metrics of the table measured on the cases with references (``pass_rate`` and
#: ``score`` come from assertion results).
CORPUS_METRICS = tuple(m.name for m in metric_table.METRICS.values() if m.over == "references")


def case_scores(case: Case, output: str) -> dict[str, float]:
    """Every per-case metric of one output against the case's references.

    Keys: ``bleu`` (0..100), ``chrf``, ``rouge_1``, ``rouge_2``, ``rouge_l``,
    ``exact_match``, ``accuracy`` (0..1). Empty for a case without references.
    """
    sample = Sample(output=output, references=case.references)
    return {
        m.name: m.case_score(sample)
        for m in metric_table.METRICS.values()
        if m.over == "references" and m.measures(sample)
    }


def corpus_scores(
    cases: Sequence[Case],
    outputs: Sequence[str],
    results: Sequence[CaseResult] | None = None,
    *,
    tokenize: str | None = None,
) -> dict[str, CorpusScore]:
    """Corpus metrics of one system's outputs, keyed by metric name.

    ``outputs[i]`` (and ``results[i]``) belong to ``cases[i]``. Over the cases with
    references: :data:`CORPUS_METRICS`; with ``results``, over the cases that have
    assertions: ``pass_rate`` (share passed) and ``score`` (mean weighted score).
    A metric with no case to measure is left out. BLEU's tokenizer is chosen from
    all references unless ``tokenize`` is given.
    """
    _check_lengths(cases, outputs)
    if results is not None:
        _check_lengths(cases, results)
    per_case = metric_table.samples(cases, outputs, results)
    scores: dict[str, CorpusScore] = {}
    # The assertion metrics first: the order every report has listed them in.
    for metric in sorted(metric_table.METRICS.values(), key=lambda m: m.over == "references"):
        measured = [s for s in per_case if metric.measures(s)]
        if measured:
            scores[metric.name] = metric.corpus(measured, tokenize)
    return scores


def _check_lengths(a: Sequence[Any], b: Sequence[Any]) -> None:
    if len(a) != len(b):
        raise ValueError(f"{len(a)} outputs but {len(b)} reference sets")
