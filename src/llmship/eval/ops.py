"""What ``llmship eval`` does, as functions over the registry.

:func:`run_eval` is the whole quality gate: resolve the candidate, the baseline and
the judge, generate and decide (:func:`llmship.eval.runner.run_eval`), record the
gate run, write the report files. :func:`list_runs` and :func:`get_run` /
:func:`read_report` read stored runs. The CLI, the admin API and ``pipeline run``
call these; they print nothing (progress goes to a :class:`ProgressSink`, the
report comes back as an :class:`~llmship.eval.report_model.EvalReport`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from llmship.errors import InvalidRequestError, LlmshipError, NotFoundError, NothingCheckedError
from llmship.eval.report_model import EvalReport, EvalSummary

if TYPE_CHECKING:
    from llmship.eval.config import GateConfig
    from llmship.eval.dataset import Dataset
    from llmship.eval.generation import BackendFactory, EvalOptions, ProgressSink
    from llmship.eval.verdict import GateDecision
    from llmship.registry import Registry
    from llmship.registry.records import GateRun, ReleaseRecord

__all__ = [
    "DEFAULT_BASELINE",
    "EvalRun",
    "ReportPaths",
    "StoredRun",
    "get_run",
    "list_runs",
    "load_cases",
    "read_report",
    "resolve_baseline",
    "run_eval",
    "write_reports",
]

DEFAULT_BASELINE = "production"
"""The alias the candidate is compared with when no baseline is given."""


@dataclass(frozen=True)
class ReportPaths:
    """Where to write the report, per format (None: not written)."""

    json: Path | None = None
    junit: Path | None = None
    markdown: Path | None = None
    html: Path | None = None

    def named(self) -> list[tuple[str, Path]]:
        """``(format, path)`` of each file to write, in the order they are written."""
        chosen = (
            ("JSON", self.json),
            ("JUnit", self.junit),
            ("Markdown", self.markdown),
            ("HTML", self.html),
        )
        return [(label, path) for label, path in chosen if path is not None]


@dataclass(frozen=True)
class EvalRun:
    """A finished, recorded eval: the report (with its run id), the decision, the files."""

    report: EvalReport
    decision: GateDecision
    run_id: int
    """The registry's gate run id (also ``report.run``)."""
    written: tuple[tuple[str, Path], ...] = ()
    """``(format, path)`` of each report file written."""

    @property
    def passed(self) -> bool:
        """Whether the gate passed (the CLI exits 0, else 1)."""
        return self.decision.passed


@dataclass(frozen=True)
class StoredRun:
    """A stored eval run as lists show it: the registry's record and its summary, read."""

    run: GateRun
    summary: EvalSummary


def load_cases(path: str | Path, tags: Sequence[str] = ()) -> Dataset:
    """The golden dataset at ``path``, only the cases with one of ``tags`` when given.

    Raises DatasetError (a bad file) or InvalidRequestError (no case has the tags).
    """
    from llmship.eval.dataset import load_dataset

    data = load_dataset(path)
    if tags:
        data = data.with_tags(*tags)
        if not data.cases:
            raise InvalidRequestError(
                f"{path}: no case has the tag(s) {', '.join(tags)}", param="tag"
            )
    return data


def resolve_baseline(registry: Registry, baseline: str, env: str) -> ReleaseRecord:
    """The baseline release; a missing ``production`` alias says how to set one."""
    try:
        return registry.resolve(baseline, env=env)
    except NotFoundError as exc:
        if baseline != DEFAULT_BASELINE:
            raise
        raise NotFoundError(
            f"no baseline: {exc.message}. Set the production alias "
            f"(`llmship alias set production NAME@VERSION`) or give --baseline; "
            "--baseline the candidate itself only checks the minimums"
        ) from None


def run_eval(
    registry: Registry,
    dataset: Dataset,
    candidate: str,
    *,
    env: str,
    actor: str,
    gate: GateConfig,
    options: EvalOptions,
    baseline: str = DEFAULT_BASELINE,
    judge: str | None = None,
    paths: ReportPaths | None = None,
    progress: ProgressSink | None = None,
    on_recorded: Callable[[EvalReport], None] | None = None,
    backend_factory: BackendFactory | None = None,
    clock: Callable[[], datetime] | None = None,
) -> EvalRun:
    """Judge ``candidate`` (a ref or alias) against ``baseline`` on ``dataset``, record the
    gate run in the registry, and write the report files ``paths`` names.

    ``on_recorded`` gets the recorded report before any file is written (the CLI
    prints it then, so a report that cannot be written is still seen). Raises an
    llmship error when nothing could be decided (unknown release, a backend that
    cannot start, ...) or a file cannot be written (the run is recorded by then), and
    NothingCheckedError when the gate checked nothing (recorded, with its reports
    written, as an error: it satisfies no ``require:``).
    """
    from llmship.eval import runner
    from llmship.eval.cache import OutputCache

    cand = registry.resolve(candidate, env=env)
    base = resolve_baseline(registry, baseline, env)
    judge_record = registry.resolve(judge, env=env) if judge else None
    source = base.ref if baseline == base.ref else f"{baseline} in {env}"
    outcome = runner.run_eval(
        dataset,
        cand,
        base,
        gate,
        OutputCache(registry, read=options.cache_read),
        options=options,
        env=env,
        baseline_source=source,
        judge=judge_record,
        backend_factory=backend_factory,
        progress=progress,
        clock=clock,
    )
    run = registry.record_gate_run(
        "eval",
        cand.ref,
        env=env,
        passed=outcome.passed,
        summary=outcome.summary.to_json(),
        report=outcome.report.to_json(),
        actor=actor,
        baseline_ref=base.ref,
        error=outcome.report.verdict.error,
    )
    report = outcome.report.with_run(run.id)
    if on_recorded is not None:
        on_recorded(report)
    try:
        written = write_reports(report, paths or ReportPaths())
    except OSError as exc:
        raise LlmshipError(f"cannot write the report: {exc}", code="report_not_written") from exc
    if report.verdict.error is not None:
        raise NothingCheckedError(f"eval run {run.id}: {report.verdict.error}")
    return EvalRun(report=report, decision=outcome.decision, run_id=run.id, written=written)


def write_reports(report: EvalReport, paths: ReportPaths) -> tuple[tuple[str, Path], ...]:
    """Write ``report`` in each format ``paths`` names; ``(format, path)`` of each file.

    Raises OSError when a file cannot be written.
    """
    from llmship.eval.reports import (
        eval_html,
        eval_junit_suites,
        eval_markdown,
        write_json,
        write_junit,
        write_text,
    )

    writers: dict[str, Callable[[Path], None]] = {
        "JSON": lambda path: write_json(path, report.to_json()),
        "JUnit": lambda path: write_junit(path, eval_junit_suites(report), name="llmship eval"),
        "Markdown": lambda path: write_text(path, eval_markdown(report)),
        "HTML": lambda path: write_text(path, eval_html(report)),
    }
    named = paths.named()
    for label, path in named:
        writers[label](path)
    return tuple(named)


def list_runs(
    registry: Registry,
    *,
    ref: str | None = None,
    name: str | None = None,
    limit: int = 20,
) -> list[StoredRun]:
    """The latest ``limit`` eval runs, newest first: of the release ``ref``, of every
    version of ``name``, or of every release."""
    if ref is not None:
        refs: list[str | None] = [ref]
    elif name is not None:
        refs = [r.ref for r in registry.list_releases(name)]
    else:
        refs = [None]
    runs = sorted(
        (
            run
            for each in refs
            for run in registry.list_gate_runs(
                kind="eval", ref=each, limit=limit, with_reports=False
            )
        ),
        key=lambda run: run.id,
        reverse=True,
    )[:limit]
    return [StoredRun(run, EvalSummary.from_json(run.summary)) for run in runs]


def get_run(registry: Registry, run_id: int) -> GateRun:
    """The stored eval run ``run_id`` (NotFoundError: none; InvalidRequestError: not eval)."""
    run = registry.get_gate_run(run_id)
    if run.kind != "eval":
        raise InvalidRequestError(f"run {run_id} is a {run.kind} run, not an eval run", param="run")
    return run


def read_report(run: GateRun) -> EvalReport:
    """The report of a stored eval run, with its run id."""
    try:
        return EvalReport.from_json(run.report).with_run(run.id)
    except ValueError as exc:
        raise InvalidRequestError(f"run {run.id}: {exc}", param="run") from None
