"""llmship.loadtest.report_model: the typed load-test report, its JSON form (keys
and order of the report ``llmship loadtest --json`` writes) and the way back."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest

from _loadtest_reports import measured_report
from llmship.loadtest import LoadPlan, RequestRecord
from llmship.loadtest.report_model import (
    Check,
    LoadTestReport,
    parse_report,
)

STARTED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
KEYS = [
    "kind",
    "llmship_version",
    "ref",
    "started_at",
    "target",
    "endpoint",
    "path",
    "model",
    "load",
    "passed",
    "slo",
    "verdicts",
    "checks",
    "results",
    "generator_cpu_per_request_s",
    "generator_cpu_share",
    "generator",
    "timeline",
    "ref_source",
]
"""The JSON report's keys, in order (``ref_source`` is the one the CLI used to add last)."""


def _record(start: float, ttft: float | None = 0.1, e2e: float = 0.5, **kw: Any) -> RequestRecord:
    return RequestRecord(start, e2e, ttft, kw.pop("tokens", 4), kw.pop("itl", (0.1, 0.2)), **kw)


RECORDS = [
    _record(0.5),  # warm-up
    _record(1.0, version="a@1"),
    _record(1.5, ttft=0.3, e2e=0.9, version="a@1"),
    _record(2.0, ttft=None, e2e=0.05, tokens=0, itl=(), error="HTTP 503: busy", status=503),
    _record(3.5, version="b@2"),
]


def _report(plan: LoadPlan, slos: dict[str, float], records: list[RequestRecord]) -> LoadTestReport:
    return measured_report(
        plan,
        slos,
        records,
        window=(1.0, 4.0),
        ref="a@1",
        sent=4,
        started_at=STARTED,
        drained=5.0,
        dropped=1,
        locust={"num_requests": 4},
        user_errors=["a warning"],
    )


REPORTS = {
    "closed": lambda: _report(
        LoadPlan(target="http://h:1", users=2, duration=3.0, warmup=1.0),
        {"ttft_p95": 0.5, "error_rate": 0.5, "goodput_min": 0.1},
        RECORDS,
    ),
    "open": lambda: _report(
        LoadPlan(target="http://h:1/v1", rate=2.0, arrival="poisson", endpoint="completions"),
        {"itl_p99": 0.01, "throughput_min": 50},
        RECORDS,
    ),
    "nothing measured": lambda: _report(LoadPlan(target="http://h:1"), {"ttft_p50": 1.0}, []),
}


@pytest.mark.parametrize("name", list(REPORTS))
def test_round_trip(name: str) -> None:
    report = REPORTS[name]()
    data = report.to_json()
    # the JSON form has the report's keys in their order and survives JSON
    optional = ["error"] if report.error is not None else []  # only a run that made none
    assert list(data) == KEYS + optional and data["kind"] == "loadtest"
    text = json.dumps(data, indent=2, ensure_ascii=False)
    # read back, it is the same report, and writes the same text
    again = parse_report(json.loads(text))
    assert again == report
    assert json.dumps(again.to_json(), indent=2, ensure_ascii=False) == text


def test_json_values() -> None:
    data = REPORTS["closed"]().to_json()
    assert data["started_at"] == "2026-01-02T03:04:05+00:00"
    assert data["load"] == {
        "mode": "closed",
        "users": 2,
        "spawn_rate": 2.0,
        "rate": None,
        "arrival": None,
        "seed": 0,
        "max_in_flight": None,
        "duration_s": 3.0,
        "warmup_s": 1.0,
        "max_tokens": 100,
        "prompts": 1,
    }
    assert [v["key"] for v in data["verdicts"]] == ["ttft_p95", "error_rate", "goodput_min"]
    assert list(data["verdicts"][0]) == ["key", "limit", "actual", "passed", "reason"]
    assert data["checks"] == [
        {"key": "requests", "passed": True, "reason": "3 of 4 requests succeeded"}
    ]
    assert data["results"]["ttft"]["count"] == 3 and data["results"]["itl"]["count"] == 6
    assert data["results"]["versions"] == {"a@1": 2, "b@2": 1}
    assert data["generator"] == {
        "locust_version": "2.0",
        "cpu_window_s": 0.04,
        "cpu_run_s": 0.1,
        "cpu_process_s": 0.5,
        "locust_stats": {"num_requests": 4},
        "user_errors": ["a warning"],
    }
    assert list(data["timeline"][0]) == [
        "t",
        "width",
        "requests",
        "errors",
        "output_tokens",
        "ttft_p50",
        "ttft_p95",
        "e2e_p50",
        "e2e_p95",
    ]
    assert data["ref_source"] is None


def test_gates_and_reasons() -> None:
    report = REPORTS["open"]()
    assert [g.key for g in report.gates] == ["itl_p99", "throughput_min", "requests"]
    assert report.reasons == ["itl_p99 200 ms > 10 ms", "throughput_min 1.00 req/s < 50.00 req/s"]
    assert report.passed is False and report.load.open_loop
    empty = REPORTS["nothing measured"]()
    assert empty.checks == (
        Check("requests", False, "no request succeeded (0 ended, 0 unfinished)"),
    )
    assert empty.reasons == ["ttft_p50: nothing was measured", empty.checks[0].reason]
    assert empty.results.ttft is None and empty.generator_cpu_per_request_s is None
    # a run that made no request checked nothing: an error, kept in its JSON
    assert empty.error is not None and "checked nothing: no request was made" in empty.error
    assert parse_report(empty.to_json()).error == empty.error
    assert "error" not in report.to_json()  # a run that measured something has none


def test_an_older_report_reads_with_defaults() -> None:
    data = REPORTS["closed"]().to_json()
    del data["generator_cpu_share"], data["ref_source"]
    report = parse_report(data)
    assert report.generator_cpu_share is None and report.ref_source is None
    assert report.results == REPORTS["closed"]().results


def test_another_kind_is_refused() -> None:
    data = REPORTS["closed"]().to_json() | {"kind": "eval"}
    with pytest.raises(ValueError, match="not a load-test report"):
        parse_report(data)
