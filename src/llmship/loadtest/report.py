"""The load-test report: one JSON document, rendered for people (Rich console,
Markdown for a pull-request comment, HTML in ``html_report.py``) and for CI
(JUnit XML: one testcase per SLO), and summarised for the registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from llmship import __version__
from llmship.junit import JUnitCase, JUnitSuite, junit_xml
from llmship.loadtest.plan import LoadPlan
from llmship.loadtest.runner import GeneratorResult
from llmship.loadtest.slo import SloVerdict, fmt
from llmship.loadtest.stats import METRIC_NAMES, METRICS, STATS, LoadTestStats

REQUESTS_CHECK = "requests"
"""The check every run has besides its SLOs: at least one request succeeded."""


def build_report(
    *,
    plan: LoadPlan,
    stats: LoadTestStats,
    verdicts: Sequence[SloVerdict],
    slos: dict[str, float],
    generator: GeneratorResult,
    timeline: list[dict[str, Any]],
    ref: str | None,
    started_at: datetime | None = None,
) -> dict[str, Any]:
    """The whole report as JSON-ready data (``--json``, the registry)."""
    served = stats.successes > 0
    if served:
        reason = f"{stats.successes} of {stats.requests} requests succeeded"
    else:
        reason = f"no request succeeded ({stats.requests} ended, {stats.incomplete} unfinished)"
    checks = [{"key": REQUESTS_CHECK, "passed": served, "reason": reason}]
    measured = generator.window_records
    per_request = generator.cpu_window_s / len(measured) if measured else None
    busy = max(generator.drained - generator.window_start, 1e-9)
    return {
        "kind": "loadtest",
        "llmship_version": __version__,
        "ref": ref,
        "started_at": (started_at or datetime.now(timezone.utc)).isoformat(),
        "target": plan.target,
        "endpoint": plan.endpoint,
        "path": plan.path,
        "model": plan.model,
        "load": {
            "mode": "open" if plan.open_loop else "closed",
            "users": None if plan.open_loop else plan.users,
            "spawn_rate": None if plan.open_loop else plan.effective_spawn_rate,
            "rate": plan.rate,
            "arrival": plan.arrival if plan.open_loop else None,
            "seed": plan.seed,
            "max_in_flight": plan.max_in_flight if plan.open_loop else None,
            "duration_s": plan.duration,
            "warmup_s": plan.warmup,
            "max_tokens": plan.max_tokens,
            "prompts": len(plan.prompts),
        },
        "passed": served and all(v.passed for v in verdicts),
        "slo": dict(slos),
        "verdicts": [asdict(v) for v in verdicts],
        "checks": checks,
        "results": stats.to_json(),
        "generator_cpu_per_request_s": per_request,
        "generator_cpu_share": generator.cpu_window_s / busy,
        "generator": {
            "locust_version": generator.locust_version,
            "cpu_window_s": generator.cpu_window_s,
            "cpu_run_s": generator.cpu_run_s,
            "cpu_process_s": generator.cpu_process_s,
            "locust_stats": generator.locust,
            "user_errors": generator.user_errors,
        },
        "timeline": timeline,
    }


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The small part kept beside the report in the registry (what lists show)."""
    results = report["results"]

    def stat(metric: str, name: str) -> float | None:
        dist = results.get(metric)
        return dist[name] if dist else None

    return {
        "passed": report["passed"],
        "target": report["target"],
        "endpoint": report["endpoint"],
        "mode": report["load"]["mode"],
        "requests": results["requests"],
        "error_rate": results["error_rate"],
        "throughput": results["throughput"],
        "tokens_per_second": results["tokens_per_second"],
        "goodput": results["goodput"],
        "ttft_p95": stat("ttft", "p95"),
        "e2e_p95": stat("e2e", "p95"),
        "reasons": [v["reason"] for v in report["verdicts"] if not v["passed"]]
        + [c["reason"] for c in report["checks"] if not c["passed"]],
    }


def ms(value: float | None) -> str:
    return "–" if value is None else f"{value * 1000:.1f}"


def load_line(report: dict[str, Any]) -> str:
    load = report["load"]
    if load["mode"] == "open":
        how = f"open loop, {load['rate']:g} req/s ({load['arrival']}, seed {load['seed']})"
    else:
        how = f"closed loop, {load['users']} user(s)"
    warm = f", warm-up {load['warmup_s']:g} s" if load["warmup_s"] else ""
    return (
        f"{report['endpoint']} ({report['path']}) at {report['target']}: {how}, "
        f"{load['duration_s']:g} s{warm}, max_tokens {load['max_tokens']}"
    )


def headline_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    r = report["results"]
    rows = [
        ("requests", f"{r['requests']} ({r['successes']} ok, {r['errors']} errors)"),
        ("error rate", f"{r['error_rate'] * 100:.2f}%"),
        ("throughput", f"{r['throughput']:.2f} req/s"),
        ("output tokens/s", f"{r['tokens_per_second']:.1f}"),
        ("goodput", f"{r['goodput']:.2f} req/s ({r['good_requests']} requests)"),
        ("sent", f"{r['sent']} ({r['sent_rate']:.2f} req/s)"),
    ]
    if r["dropped"] or r["incomplete"]:
        rows.append(("dropped / unfinished", f"{r['dropped']} / {r['incomplete']}"))
    rows.append(("warm-up requests (not counted)", str(r["warmup_requests"])))
    if r["versions"]:
        rows.append(("served by", ", ".join(f"{k} ({n})" for k, n in r["versions"].items())))
    if r["errors_by_kind"]:
        rows.append(("errors", ", ".join(f"{k} ({n})" for k, n in r["errors_by_kind"].items())))
    cpu = report["generator_cpu_per_request_s"]
    share = report.get("generator_cpu_share")
    if cpu is not None:
        of_core = f" ({share * 100:.1f}% of a core)" if share is not None else ""
        rows.append(("generator CPU per request", f"{cpu * 1000:.2f} ms{of_core}"))
    return rows


def outcome_line(report: dict[str, Any]) -> str:
    who = report["ref"] or report["target"]
    return f"Load test {'passed' if report['passed'] else 'FAILED'}: {who}"


# -- console -------------------------------------------------------------------


def render_console(report: dict[str, Any], console: Console) -> None:
    """Latency table, headline numbers and SLO verdicts with Rich."""
    latency = Table(title="Latency (ms)", title_justify="left")
    latency.add_column("metric")
    for stat in STATS:
        latency.add_column(stat, justify="right")
    latency.add_column("n", justify="right")
    for metric in METRICS:
        dist = report["results"].get(metric)
        cells = [ms(dist[s]) if dist else "–" for s in STATS]
        latency.add_row(f"{metric.upper()}", *cells, str(dist["count"]) if dist else "0")
    numbers = Table(show_header=False, box=None, pad_edge=False)
    numbers.add_column(style="bold")
    numbers.add_column()
    for name, value in headline_rows(report):
        numbers.add_row(name, value)
    parts: list[Any] = [Text(load_line(report), style="dim"), latency, numbers]
    rows = report["verdicts"] + report["checks"]
    if rows:
        gates = Table(title="Gates", title_justify="left")
        gates.add_column("check")
        gates.add_column("result")
        gates.add_column("why")
        for row in rows:
            mark = Text("pass", style="green") if row["passed"] else Text("FAIL", style="bold red")
            gates.add_row(row["key"], mark, row["reason"])
        parts.append(gates)
    style = "bold green" if report["passed"] else "bold red"
    parts.append(Text(outcome_line(report), style=style))
    console.print(Group(*parts))


# -- Markdown ------------------------------------------------------------------


def render_markdown(report: dict[str, Any]) -> str:
    """A summary fit for a pull-request comment."""
    mark = "✅" if report["passed"] else "❌"
    lines = [f"### {mark} {outcome_line(report)}", "", load_line(report), ""]
    lines += ["| latency (ms) | " + " | ".join(STATS) + " | n |"]
    lines += ["|---|" + "---:|" * (len(STATS) + 1)]
    for metric in METRICS:
        dist = report["results"].get(metric)
        cells = [ms(dist[s]) if dist else "–" for s in STATS]
        count = dist["count"] if dist else 0
        lines.append(
            f"| {metric.upper()} ({METRIC_NAMES[metric]}) | " + " | ".join(cells) + f" | {count} |"
        )
    lines += ["", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in headline_rows(report)]
    rows = report["verdicts"] + report["checks"]
    if rows:
        lines += ["", "| gate | bound | measured | result |", "|---|---:|---:|---|"]
        for v in report["verdicts"]:
            actual = "–" if v["actual"] is None else fmt(v["key"], v["actual"])
            result = "✅ pass" if v["passed"] else "❌ fail"
            lines.append(f"| `{v['key']}` | {fmt(v['key'], v['limit'])} | {actual} | {result} |")
        for c in report["checks"]:
            result = "✅ pass" if c["passed"] else "❌ fail"
            lines.append(f"| {c['key']} | | {c['reason']} | {result} |")
    return "\n".join(lines) + "\n"


# -- JUnit ---------------------------------------------------------------------


def junit_cases(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One testcase per SLO (and the ``requests`` check): name, passed, message."""
    cases = [
        {"name": f"slo {v['key']}", "passed": v["passed"], "message": v["reason"]}
        for v in report["verdicts"]
    ]
    cases += [
        {"name": c["key"], "passed": c["passed"], "message": c["reason"]} for c in report["checks"]
    ]
    return cases


def render_junit(report: dict[str, Any]) -> str:
    """JUnit XML: one testsuite, one testcase per SLO plus the ``requests`` check."""
    detail = "\n".join(f"{name}: {value}" for name, value in headline_rows(report))
    cases = [
        JUnitCase(
            name=case["name"],
            classname="llmship.loadtest",
            time_s=report["results"]["elapsed"] if case["name"] == REQUESTS_CHECK else 0.0,
            failure=None if case["passed"] else case["message"],
            details=f"{case['message']}\n\n{detail}"
            if case["name"] == REQUESTS_CHECK
            else case["message"],
        )
        for case in junit_cases(report)
    ]
    load = report["load"]
    properties = {
        "target": report["target"],
        "endpoint": report["endpoint"],
        "mode": load["mode"],
        "duration_s": f"{load['duration_s']:g}",
        "warmup_s": f"{load['warmup_s']:g}",
    }
    if report["ref"]:
        properties["ref"] = report["ref"]
    suite = JUnitSuite(
        name=f"loadtest {report['ref'] or report['target']}",
        cases=cases,
        properties=properties,
        timestamp=report["started_at"],
    )
    return junit_xml([suite], name="llmship loadtest")
