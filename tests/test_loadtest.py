"""The pure core of `llmship loadtest`: durations, SLOs, statistics, streams, arrival
schedules, plans, prompts, config and reports — tables of cases, no processes."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from llmship.errors import InvalidRequestError, SpecError
from llmship.loadtest import (
    SLO_KEYS,
    Distribution,
    LoadPlan,
    Prompt,
    RequestRecord,
    StreamParser,
    arrivals,
    arrivals_until,
    evaluate,
    load_prompts,
    parse_duration,
    parse_slo,
    parse_slos,
    percentile,
    summarize,
    timeline,
)
from llmship.loadtest.config import load_gate_config, merged_slos
from llmship.loadtest.html_report import line_chart, nice_step, render_html
from llmship.loadtest.measure import error_from_body, predict_reply
from llmship.loadtest.report import (
    build_report,
    headline_rows,
    render_junit,
    render_markdown,
    summary,
)
from llmship.loadtest.report_model import LoadTestReport
from llmship.loadtest.runner import GeneratorResult
from llmship.loadtest.slo import check_endpoint, meets, request_bounds
from llmship.loadtest.stats import LoadTestStats

# -- durations -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("2m", 120),
        ("90", 90),
        ("1.5", 1.5),
        ("1m30s", 90),
        ("500ms", 0.5),
        ("1h", 3600),
        ("0.5m", 30),
        (" 2M ", 120),
        ("0", 0),
        ("0s", 0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "abc", "30x", "-5", "1m-", "inf", "nan", "30 s", "m30"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


# -- SLOs ------------------------------------------------------------------------------


def test_slo_keys() -> None:
    assert len(SLO_KEYS) == 4 * 5 + 5
    assert {"ttft_p95", "tpot_mean", "itl_p99", "e2e_p50", "error_rate"} <= set(SLO_KEYS)
    assert {"throughput_min", "tokens_per_second_min", "goodput_min"} <= set(SLO_KEYS)
    assert "goodput_ratio_min" in SLO_KEYS


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("ttft_p95=0.5", "ttft_p95", 0.5),
        ("ttft_p95=500ms", "ttft_p95", 0.5),
        ("e2e_p99=2s", "e2e_p99", 2.0),
        ("itl_mean=20ms", "itl_mean", 0.02),
        ("tpot_p50=0.05", "tpot_p50", 0.05),
        ("error_rate=0.01", "error_rate", 0.01),
        ("error_rate=1%", "error_rate", 0.01),
        ("throughput_min=2", "throughput_min", 2.0),
        ("tokens_per_second_min=50.5", "tokens_per_second_min", 50.5),
        ("goodput_min=1", "goodput_min", 1.0),
        (" ttft_p95 = 0.25 ", "ttft_p95", 0.25),
    ],
)
def test_parse_slo(text: str, key: str, value: float) -> None:
    parsed_key, parsed = parse_slo(text)
    assert parsed_key == key and parsed == pytest.approx(value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ttft_p42=1", "unknown SLO key 'ttft_p42'; valid keys: ttft_mean, ttft_p50"),
        ("latency=1", "goodput_min"),
        ("ttft_p95", "KEY=VALUE"),
        ("ttft_p95=abc", "not a number"),
        ("ttft_p95=-1", "not a number"),
        ("throughput_min=-1", ">= 0"),
        ("throughput_min=nan", ">= 0"),
        ("error_rate=2", "between 0 and 100% (0 and 1 as a fraction, e.g. 1% or 0.01); '2'"),
        ("error_rate=150%", "must be between 0 and 100%"),
        ("error_rate=-1%", "must be between 0 and 100%"),
        ("error_rate=nan", "must be between 0 and 100%"),
    ],
)
def test_parse_slo_rejects(text: str, message: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_slo(text)
    assert message in caught.value.message


def test_later_slo_flag_wins() -> None:
    assert parse_slos(["ttft_p95=1", "error_rate=0.1", "ttft_p95=0.5"]) == {
        "ttft_p95": 0.5,
        "error_rate": 0.1,
    }


# -- statistics ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1, 2, 3, 4], 50, 2.5),
        ([1, 2, 3, 4], 90, 3.7),  # numpy.percentile(..., 90) with linear interpolation
        ([1, 2, 3, 4], 0, 1),
        ([1, 2, 3, 4], 100, 4),
        ([4, 1, 3, 2], 25, 1.75),
        ([7], 99, 7),
        ([0.1] * 5 + [1.0], 95, 0.775),
    ],
)
def test_percentile(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_of_nothing() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_distribution() -> None:
    assert Distribution.of([]) is None
    dist = Distribution.of([0.3, 0.1, 0.2])
    assert dist is not None
    assert (dist.count, dist.min, dist.max, dist.p50) == (3, 0.1, 0.3, 0.2)
    assert dist.mean == pytest.approx(0.2)
    assert dist.stat("p50") == dist.p50


@pytest.mark.parametrize(
    ("ttft", "e2e", "tokens", "streamed", "tpot"),
    [
        (0.1, 1.0, 10, True, 0.1),  # (1.0 - 0.1) / 9: vLLM's definition
        (0.5, 0.5, 2, True, 0.0),
        (0.1, 1.0, 1, True, None),  # one token: no time per *next* token
        (None, 1.0, 10, True, None),
        (1.0, 1.0, 10, False, None),  # /predict: not streamed
    ],
)
def test_tpot(
    ttft: float | None, e2e: float, tokens: int, streamed: bool, tpot: float | None
) -> None:
    record = RequestRecord(0, e2e, ttft, tokens, streamed=streamed)
    assert record.tpot == (None if tpot is None else pytest.approx(tpot))


def _record(start: float, ttft: float | None = 0.1, e2e: float = 0.5, **kw: Any) -> RequestRecord:
    gaps = kw.pop("itl", (0.1, 0.1, 0.2))
    return RequestRecord(start, e2e, ttft, kw.pop("tokens", 4), gaps, **kw)


RECORDS = [
    _record(0.2),  # warm-up (window starts at 1.0)
    _record(0.9, e2e=2.0),  # warm-up, ends inside the window: still not counted
    _record(1.0, version="a@1"),
    _record(1.5, ttft=0.3, e2e=0.9, version="a@1"),
    _record(2.0, ttft=None, e2e=0.05, tokens=0, itl=(), error="HTTP 503: busy", status=503),
    _record(2.5, ttft=0.2, e2e=1.0, error="stream error: boom", version="a@1"),
    _record(3.5, ttft=0.1, e2e=2.5, version="a@1"),  # ends at 6.0: after the window
    _record(4.0),  # sent after the window (1.0 + 3.0): not counted
]


def test_summarize_counts_and_rates() -> None:
    stats = summarize(RECORDS, window_start=1.0, window_end=4.0, sent=5, incomplete=1)
    assert (stats.requests, stats.successes, stats.errors) == (5, 3, 2)
    assert stats.requests == stats.successes + stats.errors
    assert stats.warmup_requests == 2
    assert stats.error_rate == pytest.approx(0.4)
    assert stats.elapsed == pytest.approx(5.0)  # the last measured request ended at 6.0
    assert stats.throughput == pytest.approx(3 / 5.0)
    assert stats.sent_rate == pytest.approx(5 / 3.0)
    assert stats.output_tokens == 12
    assert stats.tokens_per_second == pytest.approx(12 / 5.0)
    assert stats.good_requests == 3  # no SLO: every success is good
    assert stats.errors_by_kind == {"HTTP 503": 1, "stream error": 1}
    assert stats.versions == {"a@1": 4}  # who answered, errors included
    assert stats.ttft is not None and stats.ttft.count == 3
    assert stats.ttft.max == pytest.approx(0.3)
    assert stats.itl is not None and stats.itl.count == 9  # every gap of every success
    assert stats.e2e is not None and stats.e2e.mean == pytest.approx((0.5 + 0.9 + 2.5) / 3)
    assert stats.value("ttft_p50") == pytest.approx(0.1)
    assert stats.value("error_rate") == pytest.approx(0.4)
    with pytest.raises(KeyError):
        stats.value("nonsense")


def test_goodput_uses_the_loosest_bound_per_metric() -> None:
    slos = {"ttft_p50": 0.15, "ttft_p99": 0.2, "e2e_p95": 1.0, "error_rate": 0.5}
    bounds = request_bounds(slos)
    assert bounds == {"ttft": 0.2, "e2e": 1.0}
    stats = summarize(
        RECORDS, window_start=1.0, window_end=4.0, sent=5, good=lambda r: meets(r, bounds)
    )
    assert stats.good_requests == 1  # 0.3 s TTFT and 2.5 s E2E miss; errors never count
    assert stats.goodput == pytest.approx(1 / 5.0)


@pytest.mark.parametrize(
    ("record", "bounds", "good"),
    [
        (_record(0), {"ttft": 0.1}, True),
        (_record(0), {"ttft": 0.09}, False),
        (_record(0, ttft=None), {"ttft": 1.0}, False),
        (_record(0, ttft=None), {"e2e": 1.0}, True),
        # not streamed: no TTFT or TPOT to bound, judged by the rest
        (_record(0, ttft=None, streamed=False), {"ttft": 0.01, "tpot": 0.01}, True),
        (_record(0, ttft=None, streamed=False), {"ttft": 1.0, "e2e": 0.4}, False),
        # an older report's /predict row holds its E2E as TTFT: still not a TTFT
        (_record(0, ttft=0.5, streamed=False), {"ttft": 0.1}, True),
        (_record(0), {"itl": 0.14}, True),  # mean gap 0.133
        (_record(0), {"itl": 0.13}, False),
        (_record(0, tokens=5), {"tpot": 0.1}, True),  # (0.5 - 0.1) / 4
        (_record(0, error="x"), {}, False),
    ],
)
def test_meets(record: RequestRecord, bounds: dict[str, float], good: bool) -> None:
    assert meets(record, bounds) is good


def test_evaluate_verdicts() -> None:
    stats = summarize(RECORDS, window_start=1.0, window_end=4.0, sent=5)
    slos = {
        "throughput_min": 1.0,
        "ttft_p95": 0.5,
        "error_rate": 0.1,
        "tokens_per_second_min": 2.0,
    }
    verdicts = evaluate(slos, stats)
    assert [v.key for v in verdicts] == [
        "ttft_p95",
        "error_rate",
        "throughput_min",
        "tokens_per_second_min",
    ]
    assert [v.passed for v in verdicts] == [True, False, False, True]
    assert verdicts[0].reason == "ttft_p95 280 ms <= 500 ms"
    assert verdicts[1].reason == "error_rate 40.00% > 10.00%"
    assert verdicts[2].reason == "throughput_min 0.60 req/s < 1.00 req/s"
    empty = summarize([], window_start=0, window_end=1, sent=0)
    nothing = evaluate({"ttft_p95": 1, "error_rate": 0.1, "goodput_min": 0}, empty)
    assert [v.passed for v in nothing] == [False, False, True]
    assert nothing[0].reason == "ttft_p95: nothing was measured"


def test_timeline_bins() -> None:
    rows = timeline(RECORDS, window_start=1.0, window_end=4.0, points=60)
    assert [r.t for r in rows] == [0.0, 1.0, 2.0]
    assert [r.requests for r in rows] == [2, 2, 1]
    assert [r.errors for r in rows] == [0, 2, 0]
    assert rows[1].ttft_p50 is None  # both failed
    assert rows[0].e2e_p50 == pytest.approx(0.7)
    wide = timeline(RECORDS, window_start=1.0, window_end=301.0, points=60)
    assert len(wide) == 60 and wide[0].width == 5.0


# -- streams ---------------------------------------------------------------------------


def _sse(*payloads: Any) -> list[str]:
    lines = []
    for payload in payloads:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        lines += [f"data: {text}\n", "\n"]
    return lines


def _chat(content: str | None = None, finish: str | None = None, **delta: str) -> dict[str, Any]:
    if content is not None:
        delta["content"] = content
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def _feed(parser: StreamParser, lines: list[str]) -> StreamParser:
    for at, line in enumerate(lines):
        parser.feed(line.encode(), float(at))
    return parser


def test_stream_parser_chat() -> None:
    events = _sse(
        _chat("", role="assistant"),
        _chat("Hel"),
        _chat("lo"),
        _chat(None, "stop"),
        {"choices": [], "usage": {"completion_tokens": 3}},
        "[DONE]",
    )
    lines = [": keep-alive\n", *events]
    parser = _feed(StreamParser(chat=True), lines)
    assert parser.done and parser.error is None and parser.finish_reason == "stop"
    assert parser.first_at == 3.0  # the first *non-empty* content, not the role chunk
    assert parser.gaps == (2.0,)
    assert parser.output_tokens == 3  # from usage


def test_stream_parser_counts_chunks_without_usage_and_reasoning_counts() -> None:
    lines = _sse(_chat(reasoning_content="think"), _chat("a"), _chat("b"), "[DONE]")
    parser = _feed(StreamParser(chat=True), lines)
    assert parser.first_at == 0.0
    assert parser.output_tokens == 3


def test_stream_parser_completions() -> None:
    lines = _sse({"choices": [{"text": ""}]}, {"choices": [{"text": " one"}]}, "[DONE]")
    parser = _feed(StreamParser(chat=False), lines)
    assert parser.first_at == 2.0 and parser.output_tokens == 1


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        (_sse(_chat("a"), {"error": {"message": "overloaded"}}), "stream error: overloaded"),
        (["event: error\n", 'data: {"detail": "x"}\n'], "stream error"),
        (_sse("not json"), "stream: not JSON"),
    ],
)
def test_stream_parser_errors(lines: list[str], error: str) -> None:
    parser = _feed(StreamParser(chat=True), lines)
    assert parser.error is not None and parser.error.startswith(error)


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (
            429,
            b'{"error": {"message": "queue full", "type": "rate_limit_error"}}',
            "HTTP 429: queue full",
        ),
        (500, b"Internal Server Error", "HTTP 500: Internal Server Error"),
        (502, b"", "HTTP 502"),
    ],
)
def test_error_from_body(status: int, body: bytes, message: str) -> None:
    assert error_from_body(status, body) == message


@pytest.mark.parametrize(
    ("body", "tokens", "error"),
    [
        (b'{"response": "a b c", "usage": {"completion_tokens": 7}}', 7, None),
        (b'{"response": "a b c"}', 3, None),
        (b"<html>", 0, "predict: the reply is not JSON"),
        (b"[1]", 0, "predict: the reply is not a JSON object"),
        (b'{"answer": "x"}', 0, "predict: the reply has no `response`"),
    ],
)
def test_predict_reply(body: bytes, tokens: int, error: str | None) -> None:
    assert predict_reply(body) == (tokens, error)


def test_record_json_round_trip() -> None:
    record = RequestRecord(1.25, 0.5, 0.1, 4, (0.1, 0.2), "x", 503, "a@1", streamed=False)
    assert RequestRecord.from_json(json.loads(json.dumps(record.to_json()))) == record


# -- arrivals --------------------------------------------------------------------------


def test_constant_arrivals() -> None:
    assert arrivals_until(4, "constant", seed=0, end=1.0) == [0, 0.25, 0.5, 0.75]


def test_poisson_arrivals_are_seeded() -> None:
    first = arrivals_until(10, "poisson", seed=7, end=100)
    assert first == arrivals_until(10, "poisson", seed=7, end=100)
    assert first != arrivals_until(10, "poisson", seed=8, end=100)
    assert first == sorted(first)
    gaps = [b - a for a, b in zip([0.0, *first], first, strict=False)]
    assert statistics.fmean(gaps) == pytest.approx(0.1, rel=0.05)
    assert statistics.stdev(gaps) == pytest.approx(0.1, rel=0.1)  # exponential: sd = mean
    assert len(first) == pytest.approx(1000, rel=0.05)


@pytest.mark.parametrize(("rate", "kind"), [(0, "constant"), (-1, "poisson"), (1, "burst")])
def test_bad_arrivals(rate: float, kind: str) -> None:
    with pytest.raises(ValueError, match="arrival"):
        arrivals(rate, kind)


# -- plans and prompts -----------------------------------------------------------------


def test_plan_validation_normalizes_the_target() -> None:
    plan = LoadPlan(target="http://127.0.0.1:8000/v1/").validated()
    assert plan.target == "http://127.0.0.1:8000"
    assert plan.path == "/v1/chat/completions" and not plan.open_loop
    assert LoadPlan.from_json(json.loads(json.dumps(plan.to_json()))) == plan
    messages = (Prompt(messages=({"role": "user", "content": "hi"},)),)
    plan = LoadPlan(target="http://h", rate=2.0, prompts=messages).validated()
    assert plan.open_loop and LoadPlan.from_json(plan.to_json()) == plan


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"target": "localhost:8000"}, "--target must be an http(s) URL"),
        ({"endpoint": "embeddings"}, "--endpoint must be one of chat, completions, predict"),
        ({"users": 0}, "--users must be at least 1"),
        ({"rate": 0.0}, "--rate must be a positive number"),
        ({"rate": math.inf}, "--rate must be a positive number"),
        ({"arrival": "burst"}, "--arrival must be one of constant, poisson"),
        ({"duration": 0.0}, "--duration must be above 0"),
        ({"max_tokens": 0}, "--max-tokens must be at least 1"),
        ({"spawn_rate": 0.0}, "--spawn-rate must be above 0"),
        ({"timeout": 0.0}, "--timeout must be above 0"),
        ({"prompts": ()}, "no prompts"),
    ],
)
def test_plan_validation_errors(changes: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {"target": "http://127.0.0.1:8000", **changes}
    with pytest.raises(InvalidRequestError) as caught:
        LoadPlan(**values).validated()
    assert message in caught.value.message


def test_prompts_from_jsonl_and_text(tmp_path: Path) -> None:
    rows = [
        {"prompt": "one"},
        {"input": "two", "reference": "ignored", "tags": ["zh"]},
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]},
    ]
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    prompts = load_prompts(path)
    assert [p.as_text() for p in prompts] == ["one", "two", "s\nu"]
    assert prompts[2].as_messages()[0] == {"role": "system", "content": "s"}
    assert prompts[0].as_messages() == [{"role": "user", "content": "one"}]
    text = tmp_path / "p.txt"
    text.write_text("# a comment\n请解释什么是量子计算\n\nWhat is a canary?\n", encoding="utf-8")
    assert [p.text for p in load_prompts(text)] == ["请解释什么是量子计算", "What is a canary?"]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("{not json", "p.jsonl:2: not valid JSON"),
        ("[1, 2]", "p.jsonl:2: a row must be a JSON object"),
        ('{"reference": "x"}', "p.jsonl:2: a row needs `prompt` or `input`"),
        ('{"messages": []}', "p.jsonl:2: `messages` must be a non-empty list"),
        ('{"messages": [{"role": "user"}]}', "p.jsonl:2: each message needs string"),
    ],
)
def test_bad_prompt_rows(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "fine"}\n' + row + "\n", encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_prompts(path)
    assert message in caught.value.message


def test_empty_prompts_file(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text("\n# nothing\n", encoding="utf-8")
    with pytest.raises(SpecError, match="no prompts"):
        load_prompts(path)


# -- config ------------------------------------------------------------------------------


def test_gate_config_from_llmship_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LLMSHIP_CONFIG", raising=False)
    assert load_gate_config().slo == {}  # no file
    (tmp_path / "llmship.yaml").write_text(
        "env: dev\ngates:\n  eval: {alpha: 0.05}\n"
        "  loadtest:\n    slo: {ttft_p95: 500ms, error_rate: 1%, throughput_min: 2}\n"
    )
    config = load_gate_config()
    assert config.slo == {"ttft_p95": 0.5, "error_rate": 0.01, "throughput_min": 2.0}
    merged = merged_slos(config, {"ttft_p95": 0.25, "e2e_p99": 3.0})
    assert merged == {"ttft_p95": 0.25, "error_rate": 0.01, "throughput_min": 2.0, "e2e_p99": 3.0}


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("{slo: {ttft_p42: 1}}", "gates.loadtest.slo: unknown SLO key 'ttft_p42'; valid keys:"),
        ("{slo: {error_rate: 3}}", "gates.loadtest.slo: SLO error_rate"),
        ("{slos: {}}", "gates.loadtest.slos"),
        ("{slo: [1]}", "gates.loadtest.slo: must be a mapping"),
        ("[1]", "gates.loadtest: must be a mapping"),
    ],
)
def test_bad_gate_config(tmp_path: Path, section: str, message: str) -> None:
    path = tmp_path / "llmship.yaml"
    path.write_text(f"gates:\n  loadtest: {section}\n")
    with pytest.raises(SpecError) as caught:
        load_gate_config(path)
    assert message in caught.value.message and str(path) in caught.value.message


def test_named_config_file_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMSHIP_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(SpecError, match="no such configuration file"):
        load_gate_config()


# -- reports -----------------------------------------------------------------------------


def _report(slos: dict[str, float], records: list[RequestRecord] = RECORDS) -> LoadTestReport:
    plan = LoadPlan(target="http://127.0.0.1:9", users=2, duration=3.0, warmup=1.0).validated()
    generator = GeneratorResult(
        records=records,
        window_start=1.0,
        window_end=4.0,
        drained=6.0,
        sent=5,
        dropped=0,
        incomplete=0,
        cpu_window_s=0.05,
        cpu_run_s=0.1,
        cpu_process_s=0.6,
        locust_version="2.0",
    )
    stats = summarize(records, window_start=1.0, window_end=4.0, sent=5)
    return build_report(
        plan=plan,
        stats=stats,
        verdicts=evaluate(slos, stats),
        slos=slos,
        generator=generator,
        timeline=timeline(records, window_start=1.0, window_end=4.0),
        ref="a@1",
    )


def test_report_json_and_summary() -> None:
    report = _report({"ttft_p95": 0.5, "error_rate": 0.1})
    data = report.to_json()
    assert json.loads(json.dumps(data)) == data
    assert data["passed"] is False  # error_rate 40%
    assert data["generator_cpu_per_request_s"] == pytest.approx(0.05 / 5)
    assert data["load"]["mode"] == "closed" and data["load"]["users"] == 2
    small = summary(report)
    assert small["reasons"] == ["error_rate 40.00% > 10.00%"]
    assert small["requests"] == 5 and small["ttft_p95"] == pytest.approx(0.28)
    assert _report({"ttft_p95": 0.5}).passed is True
    no_success = _report({}, records=[_record(1.5, error="HTTP 500")])
    assert no_success.passed is False
    assert summary(no_success)["reasons"] == ["no request succeeded (1 ended, 0 unfinished)"]
    assert no_success.error is None  # a request was made and failed: a fail, not an error


def test_markdown_report() -> None:
    text = render_markdown(_report({"ttft_p95": 0.5, "error_rate": 0.1}))
    assert text.startswith("### ❌ Load test FAILED: a@1")
    assert "| TTFT (time to first token) | 166.7 | 100.0 |" in text
    assert "| `error_rate` | 10.00% | 40.00% | ❌ fail |" in text
    assert "| `ttft_p95` | 500 ms | 280 ms | ✅ pass |" in text


def test_junit_report_has_one_case_per_slo() -> None:
    root = ET.fromstring(render_junit(_report({"ttft_p95": 0.5, "error_rate": 0.1})))
    cases = root.findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == ["slo ttft_p95", "slo error_rate", "requests"]
    assert [c.find("failure") is not None for c in cases] == [False, True, False]
    failure = cases[1].find("failure")
    assert failure is not None and failure.get("message") == "error_rate 40.00% > 10.00%"
    assert root.get("tests") == "3" and root.get("failures") == "1"


def test_junit_report_needs_no_eval_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """The JUnit writer is llmship.junit: rendering never loads eval (nltk, sacrebleu)."""
    for name in ("llmship.eval", "llmship.eval.reports"):
        monkeypatch.setitem(sys.modules, name, None)  # importing it now fails
    root = ET.fromstring(render_junit(_report({"ttft_p95": 0.5})))
    assert root.get("tests") == "2" and root.get("failures") == "0"


def test_html_report_is_self_contained() -> None:
    page = render_html(_report({"ttft_p95": 0.5}))
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 2
    assert "<script" not in page and "src=" not in page and "<link" not in page
    for svg in page.split("<svg")[1:]:
        ET.fromstring("<svg" + svg.split("</svg>")[0] + "</svg>")  # well-formed
    assert "Load test passed: a@1" in page and "ttft_p95 280 ms &lt;= 500 ms" in page


@pytest.mark.parametrize(
    ("span", "ticks", "step"),
    [(1.0, 5, 0.2), (7.3, 5, 2.0), (460, 5, 100), (3, 8, 0.5), (0, 5, 1.0)],
)
def test_nice_step(span: float, ticks: int, step: float) -> None:
    assert nice_step(span, ticks) == pytest.approx(step)


def test_line_chart_leaves_gaps() -> None:
    svg = line_chart(
        [("a", "#000", [(0, 1.0), (1, 2.0), (2, None), (3, 1.0), (4, 1.5)])],
        x_max=5,
        x_label="s",
        y_label="ms",
    )
    ET.fromstring(svg)
    assert svg.count("<polyline") == 2 and svg.count("<circle") == 4


# -- process hygiene -------------------------------------------------------------------


def test_locust_stays_out_of_the_cli_and_the_worker_patches_cleanly() -> None:
    """Importing the CLI never imports Locust or gevent; the load generator imports
    nothing that uses ssl before gevent patches it (no MonkeyPatchWarning)."""
    check = (
        "import sys, llmship.cli, llmship.cli.loadtest, llmship.loadtest.runner, "
        "llmship.loadtest.report, llmship.loadtest.html_report, llmship.loadtest.target\n"
        "assert not {'locust', 'gevent'} & set(sys.modules), 'locust imported'\n"
    )
    subprocess.run([sys.executable, "-W", "error", "-c", check], check=True, timeout=60)
    worker = (
        "import llmship.loadtest.worker, gevent.monkey\n"
        "assert gevent.monkey.is_module_patched('socket')\n"
    )
    subprocess.run([sys.executable, "-W", "error", "-c", worker], check=True, timeout=60)


# -- honest latency: TTFT of streamed answers only; goodput as a share ------------------


def test_a_non_streamed_answer_adds_no_ttft_or_tpot_sample() -> None:
    records = [
        _record(1.0, ttft=0.1, e2e=0.5),  # streamed
        _record(1.5, ttft=None, e2e=3.0, itl=(), streamed=False),  # /predict
        _record(2.0, ttft=2.0, e2e=2.0, itl=(), streamed=False),  # /predict, older report
    ]
    stats = summarize(records, window_start=1.0, window_end=4.0, sent=3)
    assert stats.ttft is not None and stats.ttft.count == 1 and stats.ttft.max == 0.1
    assert stats.tpot is not None and stats.tpot.count == 1
    assert stats.tpot.mean == pytest.approx((0.5 - 0.1) / 3)
    assert stats.e2e is not None and stats.e2e.count == 3
    rows = timeline(records, window_start=1.0, window_end=4.0)  # one bin per second
    assert [r.ttft_p95 for r in rows] == [pytest.approx(0.1), None, None]


def test_goodput_ratio_is_the_share_of_requests_that_met_every_slo() -> None:
    bounds = request_bounds({"ttft_p95": 0.2, "e2e_p99": 1.0})
    stats = summarize(
        RECORDS, window_start=1.0, window_end=4.0, sent=5, good=lambda r: meets(r, bounds)
    )
    # 5 measured: 1.0 good; 1.5 (TTFT 0.3) and 3.5 (E2E 2.5) miss; 2 errors
    assert (stats.good_requests, stats.requests) == (1, 5)
    assert stats.goodput_ratio == pytest.approx(1 / 5)
    assert stats.goodput == pytest.approx(1 / 5.0)  # per second of the 5 s elapsed
    verdicts = evaluate({"goodput_ratio_min": 0.9}, stats)
    assert [(v.passed, v.reason) for v in verdicts] == [
        (False, "goodput_ratio_min 20.00% < 90.00%")
    ]
    empty = summarize([], window_start=0, window_end=1, sent=0)
    assert empty.goodput_ratio is None
    assert evaluate({"goodput_ratio_min": 0.5}, empty)[0].reason.endswith("nothing was measured")


@pytest.mark.parametrize(
    ("text", "value"), [("goodput_ratio_min=95%", 0.95), ("goodput_ratio_min=0.5", 0.5)]
)
def test_goodput_ratio_slo_is_a_share(text: str, value: float) -> None:
    assert parse_slo(text) == ("goodput_ratio_min", value)


def test_goodput_ratio_above_one_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="a share of requests must be between 0 and 100%"):
        parse_slo("goodput_ratio_min=2")


def test_the_report_shows_goodput_as_a_share_with_its_bounds() -> None:
    slos = {"ttft_p95": 0.2, "e2e_p99": 1.0}
    bounds = request_bounds(slos)
    stats = summarize(
        RECORDS, window_start=1.0, window_end=4.0, sent=5, good=lambda r: meets(r, bounds)
    )
    report = _report(slos)
    report = LoadTestReport(**{**report.__dict__, "results": stats})
    line = "0.20 req/s, 20.0% of requests (1 of 5; ttft <= 200 ms, e2e <= 1000 ms)"
    assert dict(headline_rows(report))["goodput"] == line
    assert summary(report)["goodput_ratio"] == pytest.approx(0.2)
    assert f"| goodput | {line} |" in render_markdown(report)
    assert "20.0% of requests" in render_html(report)
    no_bounds = _report({"error_rate": 0.5})
    assert "no latency SLO: every success is good" in dict(headline_rows(no_bounds))["goodput"]


def test_an_older_report_gets_its_goodput_ratio_from_its_counts() -> None:
    data = _report({"ttft_p95": 0.5}).results.to_json()
    del data["goodput_ratio"]
    older = LoadTestStats.from_json(data)
    assert older.goodput_ratio == pytest.approx(3 / 5)  # no latency bound: every success


@pytest.mark.parametrize(
    ("slos", "endpoint", "refused"),
    [
        ({"ttft_p95": 1.0, "e2e_p95": 2.0}, "predict", "SLO ttft_p95: the predict endpoint"),
        ({"itl_p50": 0.1, "tpot_mean": 0.1}, "predict", "SLO tpot_mean, itl_p50:"),
        ({"e2e_p95": 2.0, "goodput_ratio_min": 0.9}, "predict", None),
        ({"ttft_p95": 1.0}, "chat", None),
        ({"tpot_p99": 1.0}, "completions", None),
    ],
)
def test_slos_a_whole_answer_cannot_meet_are_refused_before_any_load(
    slos: dict[str, float], endpoint: str, refused: str | None
) -> None:
    if refused is None:
        check_endpoint(slos, endpoint)
        return
    with pytest.raises(InvalidRequestError, match=refused) as caught:
        check_endpoint(slos, endpoint)
    assert "bound e2e_*" in caught.value.message
