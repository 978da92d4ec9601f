"""``llmship eval``'s engine: generate with the candidate and the baseline, score case by
case, compare paired, decide with the gate, and build the report.

Generation (:mod:`llmship.eval.generation`) runs in-process through llmship's
backends, with each release's own prompt and parameters, at temperature 0 and a
fixed seed unless told otherwise, the outputs cached in the registry, so a
re-run with nothing changed generates nothing.

The report (:func:`run_eval` returns it as an :class:`~llmship.eval.report_model.EvalReport`,
built piece by piece by the small functions below) is what every other format is
rendered from (:mod:`llmship.eval.reports`) and, as JSON, what the registry stores
with the gate run. The workflow around it (resolving releases, recording the run,
writing the files) is :mod:`llmship.eval.ops`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from llmship.eval import metric_table, metrics, stats
from llmship.eval.assertions import AssertionResult, CaseResult, Judge, evaluate_case, preflight
from llmship.eval.cache import OutputCache
from llmship.eval.config import GateConfig, default_gate
from llmship.eval.dataset import Case, Dataset
from llmship.eval.generation import (
    BackendFactory,
    CaseOutput,
    EvalOptions,
    GenerationStats,
    ProgressSink,
    ReleaseJudge,
    generate,
)
from llmship.eval.report_model import (
    REPORT_SCHEMA,
    AssertionRow,
    CaseRow,
    CaseSide,
    Change,
    DatasetInfo,
    EvalReport,
    EvalSummary,
    GateInfo,
    GenerationInfo,
    JudgeCounts,
    MetricRow,
    ReleaseCounts,
    ReleaseInfo,
    StatsInfo,
    Timing,
    Verdict,
)
from llmship.eval.verdict import GateDecision, decide
from llmship.registry.records import ReleaseRecord

__all__ = [
    "REPORT_SCHEMA",
    "EvalOptions",
    "EvalOutcome",
    "ProgressSink",
    "run_eval",
]


@dataclass(frozen=True)
class EvalOutcome:
    """A finished eval: the decision and the report."""

    passed: bool
    decision: GateDecision
    report: EvalReport

    @property
    def summary(self) -> EvalSummary:
        """What is stored beside the report, for lists."""
        return self.report.summary()


# -- scoring and the report -------------------------------------------------------------


def _score(
    cases: Sequence[Case], outputs: Sequence[CaseOutput], judge: Judge | None
) -> list[CaseResult]:
    results = []
    for case, output in zip(cases, outputs, strict=True):
        if output.error is not None:
            failed = AssertionResult(
                type="generation",
                passed=False,
                score=0.0,
                reason=f"generation failed: {output.error}",
            )
            results.append(
                CaseResult(case_id=case.id, passed=False, score=0.0, assertions=(failed,))
            )
            continue
        results.append(evaluate_case(case, output.text, output.latency_s, judge))
    return results


def run_eval(
    dataset: Dataset,
    candidate: ReleaseRecord,
    baseline: ReleaseRecord,
    gate: GateConfig,
    cache: OutputCache,
    *,
    options: EvalOptions | None = None,
    env: str = "dev",
    baseline_source: str | None = None,
    judge: ReleaseRecord | None = None,
    backend_factory: BackendFactory | None = None,
    progress: ProgressSink | None = None,
    clock: Callable[[], datetime] | None = None,
) -> EvalOutcome:
    """Evaluate ``candidate`` against ``baseline`` on ``dataset`` and decide with ``gate``.

    Raises an llmship error (nothing is decided) when the dataset needs what is
    missing (a judge), a backend cannot start, or a release generates nothing.
    """
    options = options or EvalOptions()
    if backend_factory is None:
        from llmship.backends import create_backend

        backend_factory = create_backend
    now = (clock or (lambda: datetime.now(timezone.utc)))()
    started = time.perf_counter()
    cases = list(dataset.cases)
    release_judge = (
        ReleaseJudge(judge, cache, options, backend_factory=backend_factory) if judge else None
    )
    preflight(dataset, judge=release_judge)
    releases = [("baseline", baseline), ("candidate", candidate)]
    outputs, counts = asyncio.run(
        generate(
            releases, cases, options, cache, backend_factory=backend_factory, progress=progress
        )
    )
    generated_at = time.perf_counter()
    try:
        base_results = _score(cases, outputs["baseline"], release_judge)
        cand_results = _score(cases, outputs["candidate"], release_judge)
    finally:
        if release_judge is not None:
            release_judge.close()
    base_texts = [o.text for o in outputs["baseline"]]
    cand_texts = [o.text for o in outputs["candidate"]]
    base_scores = metrics.corpus_scores(cases, base_texts, base_results)
    cand_scores = metrics.corpus_scores(cases, cand_texts, cand_results)
    comparisons = stats.compare_outputs(
        cases,
        base_texts,
        cand_texts,
        baseline_results=base_results,
        candidate_results=cand_results,
        n_resamples=options.resamples,
        seed=options.bootstrap_seed,
    )
    config = gate.gate if gate.configured else default_gate(cand_scores, alpha=gate.gate.alpha)
    decision = decide(config, cand_scores, comparisons)
    finished = time.perf_counter()
    report = EvalReport(
        created_at=now.isoformat(),
        env=env,
        dataset=DatasetInfo(dataset.path, dataset.digest, len(cases), tuple(dataset.tags)),
        candidate=release_info(candidate),
        baseline=release_info(baseline, source=baseline_source or baseline.ref),
        aa=candidate.digest == baseline.digest,
        judge=release_info(release_judge.release) if release_judge is not None else None,
        generation=generation_info(options, counts, release_judge),
        stats=StatsInfo(seed=options.bootstrap_seed, resamples=options.resamples),
        gate=GateInfo(gate.source, gate.configured, decision.alpha, config.model_dump(mode="json")),
        metrics=metric_rows(
            decision, {"baseline": base_scores, "candidate": cand_scores}, comparisons
        ),
        verdict=verdict_of(decision, configured=gate.configured),
        cases=case_rows(cases, outputs, {"baseline": base_results, "candidate": cand_results}),
        timing=Timing(
            generation_s=generated_at - started,
            scoring_s=finished - generated_at,
            total_s=finished - started,
        ),
    )
    return EvalOutcome(passed=report.verdict.passed, decision=decision, report=report)


# -- the report's pieces ---------------------------------------------------------------

_SIDES = ("baseline", "candidate")


def release_info(release: ReleaseRecord, *, source: str | None = None) -> ReleaseInfo:
    """A release as the report names it (``source``: the baseline's, how it was named)."""
    model = release.spec.model
    return ReleaseInfo(
        ref=release.ref,
        digest=release.digest,
        backend=release.backend,
        model=model.id or model.file or model.path,
        source=source,
    )


def generation_info(
    options: EvalOptions, counts: Mapping[str, GenerationStats], judge: ReleaseJudge | None
) -> GenerationInfo:
    """The run's generation parameters and what generating took, per release."""
    return GenerationInfo(
        temperature=options.temperature,
        seed=options.seed,
        max_tokens=options.max_tokens,
        concurrency=options.concurrency,
        cache=options.cache_read,
        releases={
            label: ReleaseCounts(c.generated, c.cached, c.shared, c.errors, c.seconds)
            for label, c in counts.items()
        },
        judge=JudgeCounts(judge.generated, judge.cached) if judge is not None else None,
    )


def metric_rows(
    decision: GateDecision,
    scores: Mapping[str, Mapping[str, metrics.CorpusScore]],
    comparisons: Mapping[str, stats.Comparison],
) -> tuple[MetricRow, ...]:
    """A row per measured metric, in the order of the metric table,
    then one per metric the gate names that nothing measured (it fails)."""
    verdicts = {v.metric: v for v in decision.verdicts}
    measured = scores["candidate"]
    rows = []
    for name in metric_table.METRICS:
        if name not in measured:
            continue
        comparison, verdict = comparisons.get(name), verdicts.get(name)
        cand, base = measured[name], scores["baseline"].get(name)
        rows.append(
            MetricRow(
                metric=name,
                baseline=base.score if base else None,
                candidate=cand.score,
                delta=comparison.delta if comparison else None,
                ci_low=comparison.ci_low if comparison else None,
                ci_high=comparison.ci_high if comparison else None,
                p_value=comparison.p_value if comparison else None,
                test=comparison.test if comparison else None,
                n=cand.n,
                signature=(comparison.signature if comparison else None) or cand.signature,
                gated=verdict is not None,
                passed=verdict.passed if verdict is not None else None,
                reasons=tuple(verdict.reasons) if verdict is not None else (),
            )
        )
    rows += [
        MetricRow(
            metric=v.metric,
            baseline=None,
            candidate=None,
            delta=None,
            ci_low=None,
            ci_high=None,
            p_value=None,
            test=None,
            n=0,
            signature=None,
            gated=True,
            passed=False,
            reasons=tuple(v.reasons),
        )
        for v in decision.verdicts
        if v.metric not in measured
    ]
    return tuple(rows)


def verdict_of(decision: GateDecision, *, configured: bool = True) -> Verdict:
    """The decision's failures, and the reasons of the checks that passed (notes); a
    decision that checked nothing is an error, and does not pass."""
    notes = tuple(r for v in decision.verdicts if v.passed for r in v.reasons)
    error = decision.nothing_checked_reason(configured=configured)
    return Verdict(
        passed=decision.passed and error is None,
        failures=tuple(decision.failures),
        notes=notes,
        error=error,
    )


def case_side(case: Case, output: CaseOutput, result: CaseResult) -> CaseSide:
    """One release's output for ``case`` and how it scored."""
    return CaseSide(
        output=output.text,
        error=output.error,
        latency_s=output.latency_s,
        ttft_s=output.ttft_s,
        completion_tokens=output.completion_tokens,
        finish_reason=output.finish_reason,
        cached=output.cached,
        passed=result.passed,
        score=result.score,
        assertions=tuple(
            AssertionRow(
                type=a.type, passed=a.passed, score=a.score, value=a.value, reason=a.reason
            )
            for a in result.assertions
        ),
        metrics=metrics.case_scores(case, output.text),
    )


def case_rows(
    cases: Sequence[Case],
    outputs: Mapping[str, Sequence[CaseOutput]],
    results: Mapping[str, Sequence[CaseResult]],
) -> tuple[CaseRow, ...]:
    """A row per case; ``outputs`` and ``results`` by side, each aligned with ``cases``."""
    return tuple(
        case_row(case, {side: (outputs[side][i], results[side][i]) for side in _SIDES})
        for i, case in enumerate(cases)
    )


def case_row(case: Case, sides: Mapping[str, tuple[CaseOutput, CaseResult]]) -> CaseRow:
    """``case`` with both releases' outputs (``sides``: baseline, candidate), and its change."""
    base, cand = (case_side(case, *sides[side]) for side in _SIDES)
    change: Change = (
        "same" if base.passed == cand.passed else ("fixed" if cand.passed else "broken")
    )
    return CaseRow(
        id=case.id,
        line=case.line,
        tags=tuple(case.tags),
        input=case.input,
        messages=tuple(case.prompt_messages()) if case.messages is not None else None,
        references=tuple(case.references),
        has_assertions=bool(case.asserts),
        change=change,
        baseline=base,
        candidate=cand,
    )
