"""The load-test report rendered for people (Rich console, Markdown for a
pull-request comment, HTML in ``html_report.py``) and for CI (JUnit XML: one
testcase per SLO), and summarised for the registry. The report itself, and its
JSON form, are :mod:`llmship.loadtest.report_model`.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from llmship.junit import JUnitCase, JUnitSuite, junit_xml
from llmship.loadtest.report_model import REQUESTS_CHECK, LoadTestReport, build_report
from llmship.loadtest.slo import fmt, request_bounds
from llmship.loadtest.stats import METRIC_NAMES, METRICS, STATS, Distribution

__all__ = [
    "build_report",
    "goodput_line",
    "headline_rows",
    "junit_cases",
    "load_line",
    "ms",
    "outcome_line",
    "render_console",
    "render_junit",
    "render_markdown",
    "summary",
]


def summary(report: LoadTestReport) -> dict[str, Any]:
    """The small part kept beside the report in the registry (what lists show)."""
    results = report.results

    def p95(dist: Distribution | None) -> float | None:
        return dist.p95 if dist else None

    return {
        "passed": report.passed,
        "target": report.target,
        "endpoint": report.endpoint,
        "mode": report.load.mode,
        "requests": results.requests,
        "error_rate": results.error_rate,
        "throughput": results.throughput,
        "tokens_per_second": results.tokens_per_second,
        "goodput": results.goodput,
        "goodput_ratio": results.goodput_ratio,
        "ttft_p95": p95(results.ttft),
        "e2e_p95": p95(results.e2e),
        "reasons": report.reasons,
    }


def ms(value: float | None) -> str:
    return "–" if value is None else f"{value * 1000:.1f}"


def load_line(report: LoadTestReport) -> str:
    load = report.load
    if load.open_loop:
        how = f"open loop, {load.rate:g} req/s ({load.arrival}, seed {load.seed})"
    else:
        how = f"closed loop, {load.users} user(s)"
    warm = f", warm-up {load.warmup_s:g} s" if load.warmup_s else ""
    return (
        f"{report.endpoint} ({report.path}) at {report.target}: {how}, "
        f"{load.duration_s:g} s{warm}, max_tokens {load.max_tokens}"
    )


def headline_rows(report: LoadTestReport) -> list[tuple[str, str]]:
    r = report.results
    rows = [
        ("requests", f"{r.requests} ({r.successes} ok, {r.errors} errors)"),
        ("error rate", f"{r.error_rate * 100:.2f}%"),
        ("throughput", f"{r.throughput:.2f} req/s"),
        ("output tokens/s", f"{r.tokens_per_second:.1f}"),
        ("goodput", goodput_line(report)),
        ("sent", f"{r.sent} ({r.sent_rate:.2f} req/s)"),
    ]
    if r.dropped or r.incomplete:
        rows.append(("dropped / unfinished", f"{r.dropped} / {r.incomplete}"))
    rows.append(("warm-up requests (not counted)", str(r.warmup_requests)))
    if r.versions:
        rows.append(("served by", ", ".join(f"{k} ({n})" for k, n in r.versions.items())))
    if r.errors_by_kind:
        rows.append(("errors", ", ".join(f"{k} ({n})" for k, n in r.errors_by_kind.items())))
    cpu = report.generator_cpu_per_request_s
    share = report.generator_cpu_share
    if cpu is not None:
        of_core = f" ({share * 100:.1f}% of a core)" if share is not None else ""
        rows.append(("generator CPU per request", f"{cpu * 1000:.2f} ms{of_core}"))
    return rows


def goodput_line(report: LoadTestReport) -> str:
    """Goodput as a rate and a share, with the per-request bounds it was judged by:
    ``1.50 req/s, 75.0% of requests (3 of 4; ttft <= 500 ms, e2e <= 4.00 s)``."""
    r = report.results
    share = "–" if r.goodput_ratio is None else f"{r.goodput_ratio * 100:.1f}%"
    bounds = request_bounds(report.slo)
    judged = ", ".join(f"{m} <= {fmt(f'{m}_p50', v)}" for m, v in bounds.items())
    return (
        f"{r.goodput:.2f} req/s, {share} of requests ({r.good_requests} of {r.requests}; "
        f"{judged or 'no latency SLO: every success is good'})"
    )


def outcome_line(report: LoadTestReport) -> str:
    who = report.ref or report.target
    if report.error is not None:
        return f"Load test checked nothing: {who}: {report.error}"
    return f"Load test {'passed' if report.passed else 'FAILED'}: {who}"


def latency_cells(dist: Distribution | None) -> list[str]:
    """One latency metric's statistics in milliseconds, in the order of ``STATS``."""
    return [ms(dist.stat(s)) if dist else "–" for s in STATS]


# -- console -------------------------------------------------------------------


def render_console(report: LoadTestReport, console: Console) -> None:
    """Latency table, headline numbers and SLO verdicts with Rich."""
    latency = Table(title="Latency (ms)", title_justify="left")
    latency.add_column("metric")
    for stat in STATS:
        latency.add_column(stat, justify="right")
    latency.add_column("n", justify="right")
    for metric in METRICS:
        dist = report.results.distribution(metric)
        latency.add_row(f"{metric.upper()}", *latency_cells(dist), str(dist.count) if dist else "0")
    numbers = Table(show_header=False, box=None, pad_edge=False)
    numbers.add_column(style="bold")
    numbers.add_column()
    for name, value in headline_rows(report):
        numbers.add_row(name, value)
    parts: list[Any] = [Text(load_line(report), style="dim"), latency, numbers]
    rows = report.gates
    if rows:
        gates = Table(title="Gates", title_justify="left")
        gates.add_column("check")
        gates.add_column("result")
        gates.add_column("why")
        for row in rows:
            mark = Text("pass", style="green") if row.passed else Text("FAIL", style="bold red")
            gates.add_row(row.key, mark, row.reason)
        parts.append(gates)
    style = "bold green" if report.passed else "bold red"
    parts.append(Text(outcome_line(report), style=style))
    console.print(Group(*parts))


# -- Markdown ------------------------------------------------------------------


def render_markdown(report: LoadTestReport) -> str:
    """A summary fit for a pull-request comment."""
    mark = "✅" if report.passed else "❌"
    lines = [f"### {mark} {outcome_line(report)}", "", load_line(report), ""]
    lines += ["| latency (ms) | " + " | ".join(STATS) + " | n |"]
    lines += ["|---|" + "---:|" * (len(STATS) + 1)]
    for metric in METRICS:
        dist = report.results.distribution(metric)
        cells = latency_cells(dist)
        count = dist.count if dist else 0
        lines.append(
            f"| {metric.upper()} ({METRIC_NAMES[metric]}) | " + " | ".join(cells) + f" | {count} |"
        )
    lines += ["", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in headline_rows(report)]
    if report.gates:
        lines += ["", "| gate | bound | measured | result |", "|---|---:|---:|---|"]
        for v in report.verdicts:
            actual = "–" if v.actual is None else fmt(v.key, v.actual)
            result = "✅ pass" if v.passed else "❌ fail"
            lines.append(f"| `{v.key}` | {fmt(v.key, v.limit)} | {actual} | {result} |")
        for c in report.checks:
            result = "✅ pass" if c.passed else "❌ fail"
            lines.append(f"| {c.key} | | {c.reason} | {result} |")
    return "\n".join(lines) + "\n"


# -- JUnit ---------------------------------------------------------------------


def junit_cases(report: LoadTestReport) -> list[JUnitCase]:
    """One testcase per SLO, then the ``requests`` check (which carries the run's
    time and its headline numbers)."""
    detail = "\n".join(f"{name}: {value}" for name, value in headline_rows(report))
    cases = [
        JUnitCase(
            name=f"slo {v.key}",
            classname="llmship.loadtest",
            time_s=0.0,
            failure=None if v.passed else v.reason,
            details=v.reason,
        )
        for v in report.verdicts
    ]
    cases += [
        JUnitCase(
            name=c.key,
            classname="llmship.loadtest",
            time_s=report.results.elapsed if c.key == REQUESTS_CHECK else 0.0,
            failure=None if c.passed else c.reason,
            details=f"{c.reason}\n\n{detail}" if c.key == REQUESTS_CHECK else c.reason,
        )
        for c in report.checks
    ]
    return cases


def render_junit(report: LoadTestReport) -> str:
    """JUnit XML: one testsuite, one testcase per SLO plus the ``requests`` check."""
    load = report.load
    properties = {
        "target": report.target,
        "endpoint": report.endpoint,
        "mode": load.mode,
        "duration_s": f"{load.duration_s:g}",
        "warmup_s": f"{load.warmup_s:g}",
    }
    if report.ref:
        properties["ref"] = report.ref
    suite = JUnitSuite(
        name=f"loadtest {report.ref or report.target}",
        cases=junit_cases(report),
        properties=properties,
        timestamp=report.started_at,
    )
    return junit_xml([suite], name="llmship loadtest")
