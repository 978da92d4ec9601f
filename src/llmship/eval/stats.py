"""Paired comparison of a candidate against a baseline on the same cases, for every metric
of the table (:mod:`llmship.eval.metric_table`), each with its own paired test.

The tests themselves (paired bootstrap, Wilcoxon, McNemar) are in
:mod:`llmship.eval.significance`; every public name there is re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from llmship.eval import metric_table
from llmship.eval.metric_table import PairedOptions
from llmship.eval.significance import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    Comparison,
    mcnemar,
    paired_bootstrap,
    paired_bootstrap_bleu,
    paired_bootstrap_chrf,
    paired_bootstrap_mean,
    wilcoxon,
)

if TYPE_CHECKING:
    from llmship.eval._assertion_model import CaseResult
    from llmship.eval.cases import Case

__all__ = [
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "Comparison",
    "compare_outputs",
    "mcnemar",
    "paired_bootstrap",
    "paired_bootstrap_bleu",
    "paired_bootstrap_chrf",
    "paired_bootstrap_mean",
    "wilcoxon",
]


def compare_outputs(
    cases: Sequence[Case],
    baseline_outputs: Sequence[str],
    candidate_outputs: Sequence[str],
    *,
    baseline_results: Sequence[CaseResult] | None = None,
    candidate_results: Sequence[CaseResult] | None = None,
    tokenize: str | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int | None = DEFAULT_SEED,
) -> dict[str, Comparison]:
    """Every paired comparison llmship gates on, keyed by metric name.

    Over the cases with references: ``bleu``, ``chrf`` (paired bootstrap),
    ``rouge_1``, ``rouge_2``, ``rouge_l`` (Wilcoxon), ``exact_match``,
    ``accuracy`` (McNemar). With both result lists (aligned with ``cases``):
    ``pass_rate`` (McNemar over the cases that have assertions) and ``score``
    (Wilcoxon on the weighted assertion scores).
    """
    if not (len(cases) == len(baseline_outputs) == len(candidate_outputs)):
        raise ValueError("cases, baseline outputs and candidate outputs must align")
    if baseline_results is None or candidate_results is None:
        baseline_results = candidate_results = None  # pass_rate and score need both
    elif not (len(baseline_results) == len(candidate_results) == len(cases)):
        raise ValueError("case results must align with the cases")
    base = metric_table.samples(cases, baseline_outputs, baseline_results)
    cand = metric_table.samples(cases, candidate_outputs, candidate_results)
    options = PairedOptions(tokenize=tokenize, n_resamples=n_resamples, seed=seed)
    out: dict[str, Comparison] = {}
    for metric in metric_table.METRICS.values():
        paired = [(b, c) for b, c in zip(base, cand, strict=True) if metric.measures(c)]
        if paired:
            out[metric.name] = metric.compare(
                [b for b, _ in paired], [c for _, c in paired], options
            )
    return out
