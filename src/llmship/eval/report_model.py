"""The eval report as typed records, and its JSON (schema ``llmship.eval/1``).

:func:`llmship.eval.runner.run_eval` builds an :class:`EvalReport`; the JSON file,
the registry's gate run and the renderers of :mod:`llmship.eval.reports` take it.
``to_json`` writes the report's JSON object (keys in the order they have always
had); ``from_json`` reads one back (a ``--json`` file, a stored run), so what reads
a report uses attributes, never keys::

    EvalReport
      dataset: DatasetInfo      candidate, baseline, judge: ReleaseInfo
      generation: GenerationInfo (releases: {label: ReleaseCounts}, judge: JudgeCounts)
      stats: StatsInfo          gate: GateInfo          timing: Timing
      metrics: (MetricRow, ...)     verdict: Verdict
      cases: (CaseRow, ...)  each with baseline, candidate: CaseSide (assertions: AssertionRow)
    EvalSummary: the small part kept beside a stored run, for lists (headline: Headline)

Nothing here imports the rest of the eval package: a reader of stored runs loads
only this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any, Literal

__all__ = [
    "REPORT_SCHEMA",
    "AssertionRow",
    "CaseRow",
    "CaseSide",
    "Change",
    "DatasetInfo",
    "EvalReport",
    "EvalSummary",
    "GateInfo",
    "GenerationInfo",
    "Headline",
    "JudgeCounts",
    "MetricRow",
    "ReleaseCounts",
    "ReleaseInfo",
    "StatsInfo",
    "Timing",
    "Verdict",
]

REPORT_SCHEMA = "llmship.eval/1"
"""The ``schema`` field of every eval report; bumped when the shape changes."""

Change = Literal["same", "fixed", "broken"]
"""How a case moved from the baseline to the candidate."""

JSON = dict[str, Any]
_OMIT_NONE = {"omit_none": True}
"""A field left out of the JSON when None."""


def _json(value: Any) -> Any:
    """``value`` as JSON data: a record's fields in order, tuples as lists."""
    if is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _json(getattr(value, f.name))
            for f in fields(value)
            if not (f.metadata.get("omit_none") and getattr(value, f.name) is None)
        }
    if isinstance(value, Mapping):
        return {key: _json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(item) for item in value]
    return value


class _Record:
    """A part of the report: ``to_json`` gives its JSON object."""

    def to_json(self) -> JSON:
        """This record as a JSON object, keys in field order."""
        data: JSON = _json(self)
        return data


@dataclass(frozen=True)
class ReleaseInfo(_Record):
    """A release the eval used: the candidate, the baseline (with ``source``) or the judge."""

    ref: str
    digest: str
    backend: str
    model: str | None
    source: str | None = field(default=None, metadata=_OMIT_NONE)
    """The baseline's only: how it was named (``production in dev``, or its ref)."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReleaseInfo:
        return cls(
            ref=data["ref"],
            digest=data["digest"],
            backend=data["backend"],
            model=data.get("model"),
            source=data.get("source"),
        )


@dataclass(frozen=True)
class DatasetInfo(_Record):
    """The golden dataset: where it is, its sha256, how many cases ran, its tags."""

    path: str
    digest: str
    cases: int
    tags: tuple[str, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DatasetInfo:
        return cls(data["path"], data["digest"], data["cases"], tuple(data.get("tags", ())))


@dataclass(frozen=True)
class ReleaseCounts(_Record):
    """What generating took for one release."""

    generated: int
    cached: int
    shared: int
    errors: int
    seconds: float

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReleaseCounts:
        return cls(
            data["generated"],
            data["cached"],
            data.get("shared", 0),
            data.get("errors", 0),
            data.get("seconds", 0.0),
        )


@dataclass(frozen=True)
class JudgeCounts(_Record):
    """The judge's gradings: generated now, or found in the cache."""

    generated: int
    cached: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JudgeCounts:
        return cls(data["generated"], data["cached"])


@dataclass(frozen=True)
class GenerationInfo(_Record):
    """How outputs were generated, and per release (``baseline``, ``candidate``) the counts."""

    temperature: float
    seed: int
    max_tokens: int | None
    concurrency: int
    cache: bool
    """Whether cached outputs were read."""
    releases: Mapping[str, ReleaseCounts]
    judge: JudgeCounts | None

    @property
    def generated(self) -> int:
        """Outputs generated now, every release together."""
        return sum(r.generated for r in self.releases.values())

    @property
    def cached(self) -> int:
        """Outputs found in the cache, every release together."""
        return sum(r.cached for r in self.releases.values())

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GenerationInfo:
        judge = data.get("judge")
        return cls(
            temperature=data["temperature"],
            seed=data["seed"],
            max_tokens=data.get("max_tokens"),
            concurrency=data["concurrency"],
            cache=data["cache"],
            releases={k: ReleaseCounts.from_json(v) for k, v in data["releases"].items()},
            judge=JudgeCounts.from_json(judge) if judge is not None else None,
        )


@dataclass(frozen=True)
class StatsInfo(_Record):
    """The paired bootstrap's seed and resamples."""

    seed: int
    resamples: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StatsInfo:
        return cls(data["seed"], data["resamples"])


@dataclass(frozen=True)
class GateInfo(_Record):
    """The gate that decided: where it came from, its alpha and its whole configuration."""

    source: str
    configured: bool
    alpha: float
    config: Mapping[str, Any]
    """The gate's configuration as JSON (``EvalGateConfig.model_dump(mode="json")``)."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GateInfo:
        return cls(data["source"], data["configured"], data["alpha"], data.get("config", {}))


@dataclass(frozen=True)
class MetricRow(_Record):
    """One metric: both scores, the paired comparison, and the gate's verdict if gated.

    A metric the gate names but nothing measured has no scores, ``n`` 0, and fails.
    """

    metric: str
    baseline: float | None
    candidate: float | None
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    test: str | None
    n: int
    signature: str | None
    gated: bool
    passed: bool | None
    """The gate's verdict; None when the metric is not gated."""
    reasons: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MetricRow:
        return cls(
            metric=data["metric"],
            baseline=data.get("baseline"),
            candidate=data.get("candidate"),
            delta=data.get("delta"),
            ci_low=data.get("ci_low"),
            ci_high=data.get("ci_high"),
            p_value=data.get("p_value"),
            test=data.get("test"),
            n=data.get("n", 0),
            signature=data.get("signature"),
            gated=bool(data.get("gated")),
            passed=data.get("passed"),
            reasons=tuple(data.get("reasons", ())),
        )


@dataclass(frozen=True)
class AssertionRow(_Record):
    """One assertion's outcome on one output."""

    type: str
    passed: bool
    score: float
    value: float | None
    reason: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AssertionRow:
        return cls(data["type"], data["passed"], data["score"], data.get("value"), data["reason"])


@dataclass(frozen=True)
class CaseSide(_Record):
    """One release's output for one case, and how it scored."""

    output: str
    error: str | None
    """Why nothing was generated (the case then fails)."""
    latency_s: float | None
    ttft_s: float | None
    completion_tokens: int
    finish_reason: str | None
    cached: bool
    passed: bool
    score: float
    assertions: tuple[AssertionRow, ...]
    metrics: Mapping[str, float]
    """Sentence-level metrics against the references (``metrics.case_scores``)."""

    @property
    def failure(self) -> str | None:
        """Why this output fails, in one line; None when it passes."""
        if self.error:
            return f"generation failed: {self.error}"
        if self.passed:
            return None
        reasons = [f"{a.type}: {a.reason}" for a in self.assertions if not a.passed]
        return "; ".join(reasons) or "the weighted score is below the case's threshold"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CaseSide:
        return cls(
            output=data.get("output") or "",
            error=data.get("error"),
            latency_s=data.get("latency_s"),
            ttft_s=data.get("ttft_s"),
            completion_tokens=data.get("completion_tokens", 0),
            finish_reason=data.get("finish_reason"),
            cached=bool(data.get("cached")),
            passed=bool(data.get("passed")),
            score=data.get("score", 0),
            assertions=tuple(AssertionRow.from_json(a) for a in data.get("assertions", ())),
            metrics=data.get("metrics", {}),
        )


@dataclass(frozen=True)
class CaseRow(_Record):
    """One golden case: what was asked, and both releases' outputs."""

    id: str
    line: int | None
    tags: tuple[str, ...]
    input: str | None
    messages: tuple[Mapping[str, str], ...] | None
    """The chat, for a case given as ``messages`` (else ``input`` is set)."""
    references: tuple[str, ...]
    has_assertions: bool
    change: Change
    baseline: CaseSide
    candidate: CaseSide

    @property
    def prompt(self) -> str | None:
        """The input, or the chat as ``role: content`` lines."""
        if self.input is None and self.messages:
            return "\n".join(f"{m['role']}: {m['content']}" for m in self.messages)
        return self.input

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CaseRow:
        messages = data.get("messages")
        return cls(
            id=data["id"],
            line=data.get("line"),
            tags=tuple(data.get("tags") or ()),
            input=data.get("input"),
            messages=tuple(messages) if messages is not None else None,
            references=tuple(data.get("references", ())),
            has_assertions=bool(data.get("has_assertions")),
            change=data["change"],
            baseline=CaseSide.from_json(data["baseline"]),
            candidate=CaseSide.from_json(data["candidate"]),
        )


@dataclass(frozen=True)
class Verdict(_Record):
    """The gate's decision: failures say why it failed; notes what passed checks found."""

    passed: bool
    failures: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    error: str | None = field(default=None, metadata=_OMIT_NONE)
    """Set when the gate checked nothing: the run is an error, not a pass or a fail."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verdict:
        return cls(
            bool(data["passed"]),
            tuple(data.get("failures", ())),
            tuple(data.get("notes", ())),
            data.get("error"),
        )


@dataclass(frozen=True)
class Timing(_Record):
    """Seconds spent generating, scoring, and in all."""

    generation_s: float
    scoring_s: float
    total_s: float

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Timing:
        return cls(data["generation_s"], data["scoring_s"], data["total_s"])


@dataclass(frozen=True)
class Headline(_Record):
    """A metric's headline numbers, in a summary."""

    baseline: float | None
    candidate: float | None
    delta: float | None
    p_value: float | None
    passed: bool | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Headline:
        return cls(
            data.get("baseline"),
            data.get("candidate"),
            data.get("delta"),
            data.get("p_value"),
            data.get("passed"),
        )


@dataclass(frozen=True)
class EvalSummary(_Record):
    """The small part of a report stored beside it, for lists: verdict and headline numbers.

    Read back tolerantly (a gate run recorded by other means may hold less).
    """

    passed: bool
    failures: tuple[str, ...]
    """The first ten reasons the gate failed."""
    dataset: str
    cases: int | None
    candidate: str
    baseline: str
    aa: bool
    metrics: Mapping[str, Headline]
    """The gated metrics and ``pass_rate``."""
    generated: int
    cached: int
    error: str | None = field(default=None, metadata=_OMIT_NONE)
    """Why the run is an error (the gate checked nothing)."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EvalSummary:
        return cls(
            passed=bool(data.get("passed")),
            failures=tuple(data.get("failures") or ()),
            dataset=str(data.get("dataset", "")),
            cases=data.get("cases"),
            candidate=str(data.get("candidate", "")),
            baseline=str(data.get("baseline", "")),
            aa=bool(data.get("aa")),
            metrics={k: Headline.from_json(v) for k, v in (data.get("metrics") or {}).items()},
            generated=data.get("generated", 0),
            cached=data.get("cached", 0),
            error=data.get("error"),
        )


@dataclass(frozen=True, kw_only=True)
class EvalReport(_Record):
    """A whole eval: what ran, how each metric compared, the verdict, and every case."""

    schema: str = REPORT_SCHEMA
    kind: str = "eval"
    created_at: str
    """ISO 8601, UTC."""
    env: str
    dataset: DatasetInfo
    candidate: ReleaseInfo
    baseline: ReleaseInfo
    aa: bool
    """Both sides are the same release content (an A/A run)."""
    judge: ReleaseInfo | None
    generation: GenerationInfo
    stats: StatsInfo
    gate: GateInfo
    metrics: tuple[MetricRow, ...]
    verdict: Verdict
    cases: tuple[CaseRow, ...]
    timing: Timing
    run: int | None = field(default=None, metadata=_OMIT_NONE)
    """The registry's gate run id, once recorded (not part of the stored report)."""

    @property
    def passed(self) -> bool:
        """Whether the gate passed."""
        return self.verdict.passed

    @property
    def gated(self) -> bool:
        """Whether any metric is gated."""
        return any(row.gated for row in self.metrics)

    def with_run(self, run: int) -> EvalReport:
        """This report, recorded as gate run ``run``."""
        return replace(self, run=run)

    def summary(self) -> EvalSummary:
        """The part kept beside the stored report: verdict, headline numbers."""
        return EvalSummary(
            passed=self.verdict.passed,
            failures=self.verdict.failures[:10],
            dataset=self.dataset.path,
            cases=self.dataset.cases,
            candidate=self.candidate.ref,
            baseline=self.baseline.ref,
            aa=self.aa,
            metrics={
                row.metric: Headline(
                    row.baseline, row.candidate, row.delta, row.p_value, row.passed
                )
                for row in self.metrics
                if row.gated or row.metric == "pass_rate"
            },
            generated=self.generation.generated,
            cached=self.generation.cached,
            error=self.verdict.error,
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EvalReport:
        """Read a report's JSON object back (a ``--json`` file, a stored gate run).

        Raises ValueError naming what is missing when ``data`` is not an eval report.
        """
        try:
            judge = data.get("judge")
            return cls(
                created_at=str(data.get("created_at", "")),
                env=data["env"],
                dataset=DatasetInfo.from_json(data["dataset"]),
                candidate=ReleaseInfo.from_json(data["candidate"]),
                baseline=ReleaseInfo.from_json(data["baseline"]),
                aa=bool(data.get("aa")),
                judge=ReleaseInfo.from_json(judge) if judge is not None else None,
                generation=GenerationInfo.from_json(data["generation"]),
                stats=StatsInfo.from_json(data["stats"]),
                gate=GateInfo.from_json(data["gate"]),
                metrics=tuple(MetricRow.from_json(row) for row in data["metrics"]),
                verdict=Verdict.from_json(data["verdict"]),
                cases=tuple(CaseRow.from_json(row) for row in data["cases"]),
                timing=Timing.from_json(data["timing"]),
                run=data.get("run"),
                schema=data.get("schema", REPORT_SCHEMA),
                kind=data.get("kind", "eval"),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not an eval report ({REPORT_SCHEMA}): missing {exc}") from None
