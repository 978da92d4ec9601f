"""The metric table: every metric an eval run scores, compares and gates on, in one place.

One :class:`Metric` per row of :data:`METRICS` says all there is to know about a metric:
what it is measured on, its per-case score, its corpus score, its paired test, its printed
precision, its limits in the default gate, and whether datasets may assert it. The rest
of :mod:`llmship.eval` reads the table:

- ``metrics.case_scores`` and ``metrics.corpus_scores``: each metric's per-case and corpus values;
- ``stats.compare_outputs``: each metric's paired test of a candidate against a baseline;
- ``config.default_gate`` (and ``DEFAULT_GATE``): the gate used without ``gates: eval:``;
- ``verdict.EvalGateConfig``: the metric names a gate may configure;
- ``assertions.ASSERTION_TYPES``: one assertion type per metric that datasets may assert;
- ``reports``: the decimals a value is printed with (:func:`precision`).

Adding a metric is one entry here, plus its scoring function in :mod:`llmship.eval.scoring`
(or its test in :mod:`llmship.eval.significance`) when no existing one fits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from llmship.eval import scoring, significance
from llmship.eval._assertion_model import CaseResult
from llmship.eval.cases import Case
from llmship.eval.scoring import CorpusScore
from llmship.eval.significance import Comparison

__all__ = [
    "DEFAULT_PRECISION",
    "METRICS",
    "DefaultGate",
    "Metric",
    "MetricAssertion",
    "PairedOptions",
    "Sample",
    "bootstrap_bleu",
    "bootstrap_chrf",
    "default_gate_limits",
    "mcnemar",
    "precision",
    "samples",
    "wilcoxon",
]

DEFAULT_PRECISION = 3
"""Decimals of a value that is not a metric of the table."""


@dataclass(frozen=True)
class Sample:
    """One case as every metric sees it: the output, its references and its assertion results."""

    output: str
    references: tuple[str, ...] = ()
    result: CaseResult | None = None
    """The outcome of the case's assertions on ``output`` (None when they were not checked)."""


def samples(
    cases: Sequence[Case], outputs: Sequence[str], results: Sequence[CaseResult] | None = None
) -> list[Sample]:
    """One sample per case: ``outputs[i]`` and ``results[i]`` belong to ``cases[i]``."""
    return [
        Sample(output=o, references=c.references, result=None if results is None else results[i])
        for i, (c, o) in enumerate(zip(cases, outputs, strict=True))
    ]


@dataclass(frozen=True)
class PairedOptions:
    """How the paired tests run: BLEU's tokenizer and the bootstrap's resamples and seed."""

    tokenize: str | None = None
    n_resamples: int = significance.DEFAULT_RESAMPLES
    seed: int | None = significance.DEFAULT_SEED


CaseScore = Callable[[Sample], float]
"""One case's value of a metric, on the metric's scale."""
CorpusFunction = Callable[[Sequence[Sample], str | None], CorpusScore]
"""The corpus value from every measured case at once, given BLEU's tokenizer (or None)."""
PairedTest = Callable[["Metric", Sequence[Sample], Sequence[Sample], PairedOptions], Comparison]
"""The metric compared on paired samples: baseline[i] and candidate[i] are the same case."""


@dataclass(frozen=True)
class DefaultGate:
    """A metric's part in the gate used when ``llmship.yaml`` configures none."""

    rank: int
    """The default gate gates the measured metric of the lowest rank, and only that one."""
    limits: Mapping[str, float] = field(hash=False)
    """Its limits, as ``MetricGate`` fields (``max_regression``, ``min``, ...)."""


@dataclass(frozen=True)
class MetricAssertion:
    """How a dataset asserts the metric on one case: ``{"type": "rouge_l", "threshold": 0.2}``
    scores the output against ``value`` or the references and passes at the threshold."""

    label: str
    """The metric's name in reason lines (``ROUGE-L 0.31 >= 0.2``)."""
    summary: str
    """One line for the assertion type."""
    default_threshold: float
    aliases: tuple[str, ...] = ()
    """Other spellings of the type (``rougel``)."""


@dataclass(frozen=True)
class Metric:
    """One row of the table: everything the eval needs to know about one metric."""

    name: str
    over: Literal["references", "assertions"]
    """What it is measured on: the outputs of the cases with references, or the
    assertion results of the cases with assertions."""
    case_score: CaseScore
    paired_test: PairedTest
    corpus_score: CorpusFunction | None = None
    """How the corpus value is computed; None: the mean of :attr:`case_score` over the cases."""
    precision: int = DEFAULT_PRECISION
    """Decimals when printed (reports, PR comments, the CLI)."""
    scale: float = 1.0
    """The top of the metric's scale: 100 for BLEU, 1 for the others."""
    default_gate: DefaultGate | None = None
    """Its part in the default gate, when it has one."""
    assertion: MetricAssertion | None = None
    """How datasets assert it, when they may."""

    def measures(self, sample: Sample) -> bool:
        """Whether this case counts for the metric (it has references, or assertions)."""
        if self.over == "references":
            return bool(sample.references)
        return sample.result is not None and sample.result.has_assertions

    def corpus(self, samples: Sequence[Sample], tokenize: str | None = None) -> CorpusScore:
        """The corpus value over ``samples`` (every one measured, at least one)."""
        if self.corpus_score is not None:
            return self.corpus_score(samples, tokenize)
        values = [self.case_score(s) for s in samples]
        return CorpusScore(name=self.name, score=sum(values) / len(values), n=len(values))

    def compare(
        self, baseline: Sequence[Sample], candidate: Sequence[Sample], options: PairedOptions
    ) -> Comparison:
        """The paired test of the candidate against the baseline on the same cases."""
        return self.paired_test(self, baseline, candidate, options)

    def score_text(self, output: str, references: Sequence[str]) -> float:
        """The per-case value of ``output`` against ``references`` (for assertions)."""
        return self.case_score(Sample(output=output, references=tuple(references)))


# --- the paired tests, as the table calls them -----------------------------------------------


def bootstrap_bleu(
    metric: Metric, baseline: Sequence[Sample], candidate: Sequence[Sample], options: PairedOptions
) -> Comparison:
    """Corpus BLEU, paired bootstrap (:func:`llmship.eval.significance.paired_bootstrap_bleu`)."""
    return significance.paired_bootstrap_bleu(
        [s.output for s in baseline],
        [s.output for s in candidate],
        [s.references for s in candidate],
        tokenize=options.tokenize,
        n_resamples=options.n_resamples,
        seed=options.seed,
    )


def bootstrap_chrf(
    metric: Metric, baseline: Sequence[Sample], candidate: Sequence[Sample], options: PairedOptions
) -> Comparison:
    """Corpus chrF, paired bootstrap (:func:`llmship.eval.significance.paired_bootstrap_chrf`)."""
    return significance.paired_bootstrap_chrf(
        [s.output for s in baseline],
        [s.output for s in candidate],
        [s.references for s in candidate],
        n_resamples=options.n_resamples,
        seed=options.seed,
    )


def wilcoxon(
    metric: Metric, baseline: Sequence[Sample], candidate: Sequence[Sample], options: PairedOptions
) -> Comparison:
    """Wilcoxon signed-rank on the per-case values (continuous scores)."""
    return significance.wilcoxon(
        [metric.case_score(s) for s in baseline],
        [metric.case_score(s) for s in candidate],
        metric=metric.name,
        n_resamples=options.n_resamples,
        seed=options.seed,
    )


def mcnemar(
    metric: Metric, baseline: Sequence[Sample], candidate: Sequence[Sample], options: PairedOptions
) -> Comparison:
    """Exact McNemar on the per-case values, a hit being 1.0 (pass/fail scores)."""
    return significance.mcnemar(
        [metric.case_score(s) == 1.0 for s in baseline],
        [metric.case_score(s) == 1.0 for s in candidate],
        metric=metric.name,
        n_resamples=options.n_resamples,
        seed=options.seed,
    )


# --- the table -------------------------------------------------------------------------------


def _against_references(score: Callable[[str, Sequence[str]], float]) -> CaseScore:
    def case_score(sample: Sample) -> float:
        return score(sample.output, sample.references)

    return case_score


def _corpus_bleu(samples: Sequence[Sample], tokenize: str | None) -> CorpusScore:
    hypotheses = [s.output for s in samples]
    return scoring.corpus_bleu(hypotheses, [s.references for s in samples], tokenize=tokenize)


def _corpus_chrf(samples: Sequence[Sample], _tokenize: str | None) -> CorpusScore:
    return scoring.corpus_chrf([s.output for s in samples], [s.references for s in samples])


def _passed(sample: Sample) -> float:
    assert sample.result is not None
    return 1.0 if sample.result.passed else 0.0


def _weighted_score(sample: Sample) -> float:
    assert sample.result is not None
    return sample.result.score


def _rouge(name: str, score: Callable[[str, Sequence[str]], float], label: str) -> Metric:
    return Metric(
        name,
        "references",
        _against_references(score),
        wilcoxon,
        assertion=MetricAssertion(
            label,
            f"{label} F1 against `value` or the references is at least `threshold`",
            default_threshold=0.5,
            aliases=(name.replace("_", ""),),
        ),
    )


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            "bleu",
            "references",
            _against_references(scoring.sentence_bleu),
            bootstrap_bleu,
            corpus_score=_corpus_bleu,
            precision=2,
            scale=100.0,
            assertion=MetricAssertion(
                "BLEU",
                "sentence BLEU (0..100) against `value` or the references is at least `threshold`",
                default_threshold=20.0,
            ),
        ),
        Metric(
            "chrf",
            "references",
            _against_references(scoring.sentence_chrf),
            bootstrap_chrf,
            corpus_score=_corpus_chrf,
            default_gate=DefaultGate(rank=2, limits={"max_regression": 0.05}),
            assertion=MetricAssertion(
                "chrF",
                "sentence chrF (0..1) against `value` or the references is at least `threshold`",
                default_threshold=0.5,
            ),
        ),
        _rouge("rouge_1", scoring.rouge_1, "ROUGE-1"),
        _rouge("rouge_2", scoring.rouge_2, "ROUGE-2"),
        _rouge("rouge_l", scoring.rouge_l, "ROUGE-L"),
        # Datasets assert exact matches with the yes/no ``exact_match`` type of ``assertions``.
        Metric("exact_match", "references", _against_references(scoring.exact_match), mcnemar),
        Metric("accuracy", "references", _against_references(scoring.label_hit), mcnemar),
        Metric(
            "pass_rate",
            "assertions",
            _passed,
            mcnemar,
            default_gate=DefaultGate(rank=1, limits={"max_regression": 0.1}),
        ),
        Metric("score", "assertions", _weighted_score, wilcoxon),
    )
}
"""Every metric, in the order reports list them. Read it at call time; tests add rows with
``monkeypatch.setitem``."""


def precision(metric: str) -> int:
    """The decimals a value of ``metric`` is printed with (2 for BLEU's 0..100, 3 for the rest)."""
    row = METRICS.get(metric)
    return row.precision if row is not None else DEFAULT_PRECISION


def default_gate_limits() -> dict[str, Mapping[str, float]]:
    """The metrics of the default gate in the order they are tried, with their limits."""
    gates = [(m.default_gate, m.name) for m in METRICS.values() if m.default_gate is not None]
    return {name: dict(gate.limits) for gate, name in sorted(gates, key=lambda g: g[0].rank)}
