"""Eval and load-test runs for the dashboard: the gate runs with their reports, an eval
run's cases (filtered), a load-test run's HTML report.

A gate run's report is stored as JSON; it is read back through the report models
(:class:`~llmship.eval.report_model.EvalReport`,
:func:`~llmship.loadtest.report_model.parse_report`), so a stored report that is not
what its kind promises is a 422 that says so, never a 500.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from llmship.errors import NotFoundError, UnprocessableError
from llmship.eval.report_model import CaseRow, EvalReport
from llmship.gateway.api_common import (
    READ_ERRORS,
    Page,
    PageParams,
    RecordView,
    registry_of,
    require_reader,
)
from llmship.loadtest.html_report import render_html
from llmship.loadtest.report_model import LoadTestReport, parse_report
from llmship.registry import GateRun, Registry

router = APIRouter(prefix="/api/v1", tags=["dashboard"], responses=READ_ERRORS)

EVAL = "eval"
LOADTEST = "loadtest"
_PATHS = {EVAL: "evals", LOADTEST: "loadtests"}
_A_RUN = {EVAL: "an eval run", LOADTEST: "a load-test run"}
_MAX_ID = 2**63 - 1
"""The largest id SQL stores: a larger one names no run (and must not reach the database)."""
_REPORT_ERRORS = (KeyError, TypeError, ValueError, AttributeError)


class GateRunSummary(RecordView):
    """A gate run as lists show it: which release it judged, where, and the verdict."""

    id: int = Field(description="The run's id.")
    kind: str = Field(description="`eval` or `loadtest`.")
    ref: str = Field(description="The release judged (`NAME@VERSION`).")
    baseline_ref: str | None = Field(description="What an eval compared against, if anything.")
    env: str = Field(description="The environment the gate ran for.")
    passed: bool = Field(description="Whether the gate passed.")
    forced: bool = Field(description="A person overrode the gate.")
    summary: dict[str, Any] = Field(description="Headline numbers, verdicts and reasons.")
    created_at: str = Field(description="When it was recorded (ISO-8601, UTC).")
    created_by: str = Field(description="Who recorded it.")


class EvalRunView(BaseModel):
    """An eval run: its report without the cases (read those a page at a time), and what
    the cases can be filtered by."""

    run: GateRunSummary = Field(description="The run.")
    report: dict[str, Any] = Field(
        description="The stored eval report (`llmship.eval/1`) without its `cases`."
    )
    tags: list[str] = Field(description="Every tag of a case, sorted.")
    assertion_types: list[str] = Field(description="Every assertion type of a case, sorted.")
    cases_total: int = Field(description="How many cases the report holds.")
    cases_failed: int = Field(description="How many cases the candidate failed.")


class LoadTestRunView(BaseModel):
    """A load-test run and its whole report."""

    run: GateRunSummary = Field(description="The run.")
    report: dict[str, Any] = Field(
        description="The load-test report, as `llmship loadtest --json` writes it."
    )


RunId = Path(
    alias="id", description="The gate run's id, a whole number (`llmship eval list` shows them)."
)


# -- reading runs ------------------------------------------------------------------------


def _run(registry: Registry, run_id: str, kind: str) -> GateRun:
    """The gate run ``run_id`` of ``kind``: 404 for an unknown id, or one of another kind."""
    noun = "eval run" if kind == EVAL else "load-test run"
    number = int(run_id) if run_id.isascii() and run_id.isdigit() else 0
    if not 1 <= number <= _MAX_ID:
        raise NotFoundError(f"no {noun} {run_id!r}: a run's id is a whole number", param="id")
    try:
        run = registry.get_gate_run(number)
    except NotFoundError:
        raise NotFoundError(
            f"no {noun} {number}: list them at /api/v1/{_PATHS[kind]}", param="id"
        ) from None
    if run.kind != kind:
        other = f" (see /api/v1/{_PATHS[run.kind]}/{number})" if run.kind in _PATHS else ""
        what = _A_RUN.get(run.kind, f"a {run.kind} run")
        raise NotFoundError(f"run {number} is {what}, not {_A_RUN[kind]}{other}", param="id")
    return run


def _why(exc: Exception) -> str:
    return f"missing {exc}" if isinstance(exc, KeyError) else str(exc)


def _eval_report(run: GateRun) -> EvalReport:
    try:
        return EvalReport.from_json(run.report)
    except _REPORT_ERRORS as exc:
        raise UnprocessableError(
            f"eval run {run.id}'s stored report cannot be read: {_why(exc)}", param="id"
        ) from None


def _loadtest_report(run: GateRun) -> LoadTestReport:
    try:
        return parse_report(run.report)
    except _REPORT_ERRORS as exc:
        raise UnprocessableError(
            f"load-test run {run.id}'s stored report cannot be read: {_why(exc)}", param="id"
        ) from None


def _page_of_runs(
    registry: Registry, kind: str, ref: str | None, env: str | None, page: PageParams
) -> Page[GateRunSummary]:
    runs, total = registry.page_gate_runs(
        kind=kind, ref=ref, env=env, limit=page.limit, offset=page.offset
    )
    return Page[GateRunSummary](
        items=[GateRunSummary.of(run) for run in runs],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


def eval_view(run: GateRun) -> EvalRunView:
    """An eval run with its report (cases left out) and what its cases are filtered by."""
    report = _eval_report(run)
    tags = {tag for case in report.cases for tag in case.tags}
    types = {
        assertion.type
        for case in report.cases
        for side in (case.baseline, case.candidate)
        for assertion in side.assertions
    }
    return EvalRunView(
        run=GateRunSummary.of(run),
        report={key: value for key, value in run.report.items() if key != "cases"},
        tags=sorted(tags),
        assertion_types=sorted(types),
        cases_total=len(report.cases),
        cases_failed=sum(not case.candidate.passed for case in report.cases),
    )


def matches(case: CaseRow, tag: str | None, failed: bool | None, assertion: str | None) -> bool:
    """Whether ``case`` passes the filters: it has ``tag``; the candidate failed it (or
    passed it, ``failed=False``); the candidate failed an assertion of type ``assertion``."""
    if tag is not None and tag not in case.tags:
        return False
    if failed is not None and case.candidate.passed == failed:
        return False
    if assertion is not None:
        return any(a.type == assertion and not a.passed for a in case.candidate.assertions)
    return True


def eval_cases(
    run: GateRun, tag: str | None, failed: bool | None, assertion: str | None, page: PageParams
) -> Page[dict[str, Any]]:
    """The page of ``run``'s cases (as stored) that pass the filters, in report order."""
    report = _eval_report(run)
    stored: list[Mapping[str, Any]] = run.report["cases"]
    rows = [
        dict(row)
        for row, case in zip(stored, report.cases, strict=True)
        if matches(case, tag, failed, assertion)
    ]
    return page.page(rows)


# -- routes ----------------------------------------------------------------------------


@router.get(
    "/evals",
    response_model=Page[GateRunSummary],
    summary="List eval runs",
    dependencies=[Depends(require_reader)],
)
async def list_evals(
    request: Request,
    ref: str | None = Query(None, description="Only runs judging this release (`NAME@VERSION`)."),
    env: str | None = Query(None, description="Only runs for this environment."),
    page: PageParams = Depends(),
) -> Page[GateRunSummary]:
    """The eval runs, newest first."""
    registry = registry_of(request)
    return await asyncio.to_thread(_page_of_runs, registry, EVAL, ref, env, page)


@router.get(
    "/evals/{id}",
    response_model=EvalRunView,
    summary="Show an eval run",
    dependencies=[Depends(require_reader)],
)
async def show_eval(request: Request, run_id: str = RunId) -> EvalRunView:
    """The eval run with its report (without the cases), the tags and assertion types
    its cases have, and how many cases the candidate failed. 404 for an unknown id or
    a run of another kind."""
    registry = registry_of(request)
    run = await asyncio.to_thread(_run, registry, run_id, EVAL)
    return await asyncio.to_thread(eval_view, run)


@router.get(
    "/evals/{id}/cases",
    response_model=Page[dict[str, Any]],
    summary="List an eval run's cases",
    dependencies=[Depends(require_reader)],
)
async def list_eval_cases(
    request: Request,
    run_id: str = RunId,
    tag: str | None = Query(None, description="Only cases with this tag."),
    failed: bool | None = Query(
        None, description="`true`: only cases the candidate failed; `false`: only those it passed."
    ),
    assertion: str | None = Query(
        None, description="Only cases where the candidate failed an assertion of this type."
    ),
    page: PageParams = Depends(),
) -> Page[dict[str, Any]]:
    """The run's cases as the report stores them (the case, its baseline and candidate
    outputs with their assertions), in report order, filtered."""
    registry = registry_of(request)
    run = await asyncio.to_thread(_run, registry, run_id, EVAL)
    return await asyncio.to_thread(eval_cases, run, tag, failed, assertion, page)


@router.get(
    "/loadtests",
    response_model=Page[GateRunSummary],
    summary="List load-test runs",
    dependencies=[Depends(require_reader)],
)
async def list_loadtests(
    request: Request,
    ref: str | None = Query(None, description="Only runs against this release (`NAME@VERSION`)."),
    env: str | None = Query(None, description="Only runs for this environment."),
    page: PageParams = Depends(),
) -> Page[GateRunSummary]:
    """The load-test runs, newest first."""
    registry = registry_of(request)
    return await asyncio.to_thread(_page_of_runs, registry, LOADTEST, ref, env, page)


def _loadtest_view(registry: Registry, run_id: str) -> LoadTestRunView:
    run = _run(registry, run_id, LOADTEST)
    report = _loadtest_report(run)
    return LoadTestRunView(run=GateRunSummary.of(run), report=report.to_json())


def _loadtest_html(registry: Registry, run_id: str) -> str:
    return render_html(_loadtest_report(_run(registry, run_id, LOADTEST)))


@router.get(
    "/loadtests/{id}",
    response_model=LoadTestRunView,
    summary="Show a load-test run",
    dependencies=[Depends(require_reader)],
)
async def show_loadtest(request: Request, run_id: str = RunId) -> LoadTestRunView:
    """The load-test run with its report. 404 for an unknown id or a run of another kind."""
    return await asyncio.to_thread(_loadtest_view, registry_of(request), run_id)


@router.get(
    "/loadtests/{id}/report.html",
    response_class=HTMLResponse,
    summary="A load-test run's HTML report",
    dependencies=[Depends(require_reader)],
    responses={200: {"content": {"text/html": {}}, "description": "The report, with its plots."}},
)
async def loadtest_html(request: Request, run_id: str = RunId) -> HTMLResponse:
    """The load-test report as one self-contained HTML page, with its latency and
    request plots (SVG), as `llmship loadtest --html` writes it."""
    html = await asyncio.to_thread(_loadtest_html, registry_of(request), run_id)
    return HTMLResponse(html)
