"""``llmship eval``'s engine: generate with the candidate and the baseline, score case by
case, compare paired, decide with the gate, and build the JSON report.

Generation (:mod:`llmship.eval.generation`) runs in-process through llmship's
backends, with each release's own prompt and parameters, at temperature 0 and a
fixed seed unless told otherwise, the outputs cached in the registry, so a
re-run with nothing changed generates nothing.

The report (:func:`run_eval` returns it as a plain dict) is what every other
format is rendered from (:mod:`llmship.eval.reports`) and what the registry
stores with the gate run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from llmship.eval import metrics, stats
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
from llmship.eval.verdict import GateDecision, decide
from llmship.registry.records import ReleaseRecord

__all__ = [
    "REPORT_SCHEMA",
    "EvalOptions",
    "EvalOutcome",
    "ProgressSink",
    "run_eval",
    "summarize",
]

REPORT_SCHEMA = "llmship.eval/1"
"""The ``schema`` field of every eval report; bumped when the shape changes."""


@dataclass(frozen=True)
class EvalOutcome:
    """A finished eval: the decision and the JSON report."""

    passed: bool
    decision: GateDecision
    report: dict[str, Any]
    summary: dict[str, Any]


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
    report = _report(
        dataset=dataset,
        cases=cases,
        candidate=candidate,
        baseline=baseline,
        baseline_source=baseline_source,
        judge=release_judge,
        env=env,
        options=options,
        gate=gate,
        config_dict=config.model_dump(mode="json"),
        decision=decision,
        outputs=outputs,
        results={"baseline": base_results, "candidate": cand_results},
        scores={"baseline": base_scores, "candidate": cand_scores},
        comparisons=comparisons,
        counts=counts,
        created_at=now,
        timing={
            "generation_s": generated_at - started,
            "scoring_s": finished - generated_at,
            "total_s": finished - started,
        },
    )
    return EvalOutcome(
        passed=decision.passed, decision=decision, report=report, summary=summarize(report)
    )


def _release_info(release: ReleaseRecord) -> dict[str, Any]:
    return {
        "ref": release.ref,
        "digest": release.digest,
        "backend": release.backend,
        "model": release.spec.model.id or release.spec.model.file or release.spec.model.path,
    }


def _report(
    *,
    dataset: Dataset,
    cases: Sequence[Case],
    candidate: ReleaseRecord,
    baseline: ReleaseRecord,
    baseline_source: str | None,
    judge: ReleaseJudge | None,
    env: str,
    options: EvalOptions,
    gate: GateConfig,
    config_dict: dict[str, Any],
    decision: GateDecision,
    outputs: dict[str, list[CaseOutput]],
    results: dict[str, list[CaseResult]],
    scores: dict[str, dict[str, metrics.CorpusScore]],
    comparisons: dict[str, stats.Comparison],
    counts: dict[str, GenerationStats],
    created_at: datetime,
    timing: dict[str, float],
) -> dict[str, Any]:
    verdicts = {v.metric: v for v in decision.verdicts}
    names = [n for n in (*metrics.CORPUS_METRICS, "pass_rate", "score") if n in scores["candidate"]]
    rows = []
    for name in names:
        comparison = comparisons.get(name)
        verdict = verdicts.get(name)
        cand = scores["candidate"][name]
        base = scores["baseline"].get(name)
        rows.append(
            {
                "metric": name,
                "baseline": base.score if base else None,
                "candidate": cand.score,
                "delta": comparison.delta if comparison else None,
                "ci_low": comparison.ci_low if comparison else None,
                "ci_high": comparison.ci_high if comparison else None,
                "p_value": comparison.p_value if comparison else None,
                "test": comparison.test if comparison else None,
                "n": cand.n,
                "signature": (comparison.signature if comparison else None) or cand.signature,
                "gated": verdict is not None,
                "passed": verdict.passed if verdict is not None else None,
                "reasons": list(verdict.reasons) if verdict is not None else [],
            }
        )
    for verdict in decision.verdicts:  # configured but not measured
        if verdict.metric not in scores["candidate"]:
            rows.append(
                {
                    "metric": verdict.metric,
                    "baseline": None,
                    "candidate": None,
                    "delta": None,
                    "ci_low": None,
                    "ci_high": None,
                    "p_value": None,
                    "test": None,
                    "n": 0,
                    "signature": None,
                    "gated": True,
                    "passed": False,
                    "reasons": list(verdict.reasons),
                }
            )
    case_rows = []
    for index, case in enumerate(cases):
        sides = {}
        for side in ("baseline", "candidate"):
            output = outputs[side][index]
            result = results[side][index]
            sides[side] = {
                "output": output.text,
                "error": output.error,
                "latency_s": output.latency_s,
                "ttft_s": output.ttft_s,
                "completion_tokens": output.completion_tokens,
                "finish_reason": output.finish_reason,
                "cached": output.cached,
                "passed": result.passed,
                "score": result.score,
                "assertions": [
                    {
                        "type": a.type,
                        "passed": a.passed,
                        "score": a.score,
                        "value": a.value,
                        "reason": a.reason,
                    }
                    for a in result.assertions
                ],
                "metrics": metrics.case_scores(case, output.text),
            }
        base_ok, cand_ok = sides["baseline"]["passed"], sides["candidate"]["passed"]
        change = "same" if base_ok == cand_ok else ("fixed" if cand_ok else "broken")
        case_rows.append(
            {
                "id": case.id,
                "line": case.line,
                "tags": list(case.tags),
                "input": case.input,
                "messages": case.prompt_messages() if case.messages is not None else None,
                "references": list(case.references),
                "has_assertions": bool(case.asserts),
                "change": change,
                "baseline": sides["baseline"],
                "candidate": sides["candidate"],
            }
        )
    failures = list(decision.failures)
    notes = [r for v in decision.verdicts if v.passed for r in v.reasons]
    return {
        "schema": REPORT_SCHEMA,
        "kind": "eval",
        "created_at": created_at.isoformat(),
        "env": env,
        "dataset": {
            "path": dataset.path,
            "digest": dataset.digest,
            "cases": len(cases),
            "tags": list(dataset.tags),
        },
        "candidate": _release_info(candidate),
        "baseline": {**_release_info(baseline), "source": baseline_source or baseline.ref},
        "aa": candidate.digest == baseline.digest,
        "judge": _release_info(judge.release) if judge is not None else None,
        "generation": {
            "temperature": options.temperature,
            "seed": options.seed,
            "max_tokens": options.max_tokens,
            "concurrency": options.concurrency,
            "cache": options.cache_read,
            "releases": {
                label: {
                    "generated": c.generated,
                    "cached": c.cached,
                    "shared": c.shared,
                    "errors": c.errors,
                    "seconds": c.seconds,
                }
                for label, c in counts.items()
            },
            "judge": (
                {"generated": judge.generated, "cached": judge.cached}
                if judge is not None
                else None
            ),
        },
        "stats": {"seed": options.bootstrap_seed, "resamples": options.resamples},
        "gate": {
            "source": gate.source,
            "configured": gate.configured,
            "alpha": decision.alpha,
            "config": config_dict,
        },
        "metrics": rows,
        "verdict": {"passed": decision.passed, "failures": failures, "notes": notes},
        "cases": case_rows,
        "timing": timing,
    }


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """The small part of a report kept beside it for lists: verdict, headline numbers."""
    headline = {
        row["metric"]: {
            "baseline": row["baseline"],
            "candidate": row["candidate"],
            "delta": row["delta"],
            "p_value": row["p_value"],
            "passed": row["passed"],
        }
        for row in report["metrics"]
        if row["gated"] or row["metric"] == "pass_rate"
    }
    releases = report["generation"]["releases"]
    return {
        "passed": report["verdict"]["passed"],
        "failures": report["verdict"]["failures"][:10],
        "dataset": report["dataset"]["path"],
        "cases": report["dataset"]["cases"],
        "candidate": report["candidate"]["ref"],
        "baseline": report["baseline"]["ref"],
        "aa": report["aa"],
        "metrics": headline,
        "generated": sum(r["generated"] for r in releases.values()),
        "cached": sum(r["cached"] for r in releases.values()),
    }
