"""A load-test report built from request records, as ``llmship loadtest`` builds it
after a run, for tests that need a real report without running load."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from llmship.loadtest import LoadPlan, RequestRecord, evaluate, summarize, timeline
from llmship.loadtest.report_model import LoadTestReport, build_report
from llmship.loadtest.runner import GeneratorResult
from llmship.loadtest.slo import meets, request_bounds


def measured_report(
    plan: LoadPlan,
    slos: dict[str, float],
    records: list[RequestRecord],
    *,
    window: tuple[float, float],
    ref: str | None,
    sent: int | None = None,
    started_at: datetime | None = None,
    **generator: Any,
) -> LoadTestReport:
    """The report of ``records`` measured over ``window`` against ``slos``; ``sent``
    defaults to the records; ``generator`` overrides the generator's figures."""
    start, end = window
    sent = len(records) if sent is None else sent
    figures: dict[str, Any] = {
        "drained": end + 1,
        "dropped": 0,
        "incomplete": 0,
        "cpu_window_s": 0.04,
        "cpu_run_s": 0.1,
        "cpu_process_s": 0.5,
        "locust_version": "2.0",
        **generator,
    }
    result = GeneratorResult(
        records=records, window_start=start, window_end=end, sent=len(records), **figures
    )
    bounds = request_bounds(slos)
    stats = summarize(
        records, window_start=start, window_end=end, sent=sent, good=lambda r: meets(r, bounds)
    )
    return build_report(
        plan=plan.validated(),
        stats=stats,
        verdicts=evaluate(slos, stats),
        slos=slos,
        generator=result,
        timeline=timeline(records, window_start=start, window_end=end),
        ref=ref,
        started_at=started_at,
    )
