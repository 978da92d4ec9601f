"""Metric providers (builtin, prometheus, web) and run_measurement, without a network."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from _stats import InMemoryStats
from llmship.analysis import (
    MeasureContext,
    MeasurementError,
    Metric,
    Phase,
    Providers,
    VersionStats,
    run_measurement,
)
from llmship.analysis.providers import parse_query_response

S, F, I, E = Phase.SUCCESSFUL, Phase.FAILED, Phase.INCONCLUSIVE, Phase.ERROR  # noqa: E741 (I for Inconclusive)
CANDIDATE, STABLE = "chat@2.0.0", "chat@1.0.0"


def ticking(start: float = 1000.0, step: float = 0.5) -> Callable[[], float]:
    now = [start - step]

    def clock() -> float:
        now[0] += step
        return now[0]

    return clock


def context(**fields: Any) -> MeasureContext:
    defaults: dict[str, Any] = {
        "env": "prod",
        "candidate": CANDIDATE,
        "stable": STABLE,
        "window_s": 60.0,
        "clock": ticking(),
    }
    return MeasureContext(**{**defaults, **fields})


def metric(provider: dict[str, Any], **fields: Any) -> Metric:
    return Metric.model_validate({"name": "m", "provider": provider, **fields})


# -- builtin -----------------------------------------------------------------------


@pytest.fixture
def stats() -> InMemoryStats:
    source = InMemoryStats()
    source.set("prod", CANDIDATE, VersionStats(requests=100, errors=2, error_rate=0.02))
    source.set("prod", STABLE, VersionStats(requests=1000, errors=10, error_rate=0.01))
    return source


def test_builtin_threshold_mode(stats: InMemoryStats) -> None:
    m = metric(
        {"builtin": {"metric": "error_rate", "window": "30s"}}, successCondition="result < 0.05"
    )
    with Providers(stats=stats) as providers:
        measured = run_measurement(m, context(), providers)
    assert (measured.value, measured.phase) == (0.02, S)
    assert (measured.started_at, measured.finished_at) == (1000.0, 1000.5)
    assert stats.calls == [("prod", CANDIDATE, 30.0)]
    strict = metric({"builtin": {"metric": "error_rate"}}, successCondition="result < 0.01")
    measured = run_measurement(strict, context(), Providers(stats=stats))
    assert measured.phase == F
    assert stats.calls[-1] == ("prod", CANDIDATE, 60.0)  # the context's default window


@pytest.mark.parametrize(
    ("builtin", "candidate", "expected"),
    [
        ({"metric": "error_rate"}, VersionStats(), I),  # no traffic at all: no data
        ({"metric": "error_rate", "minSamples": 200}, VersionStats(requests=100), I),
        ({"metric": "feedback_mean"}, VersionStats(requests=100), I),  # no ratings yet
        ({"metric": "feedback_mean"}, VersionStats(requests=5, ratings=[5, 4]), S),
        ({"metric": "request_count"}, VersionStats(), F),  # a count of 0 is a value
        ({"metric": "shadow_similarity"}, VersionStats(shadow_similarities=[0.9]), S),
    ],
)
def test_builtin_no_data_is_inconclusive(
    builtin: dict[str, Any], candidate: VersionStats, expected: Phase
) -> None:
    source = InMemoryStats({("prod", CANDIDATE): candidate})
    m = metric({"builtin": builtin}, successCondition="result > 0.5")
    measured = run_measurement(m, context(), Providers(stats=source))
    assert measured.phase == expected, measured.message
    if expected == I:
        assert math.isnan(measured.value) and "no data" in measured.message


# 4 requests: a fast stream, a stream with a slow first token, a whole (non-streamed)
# answer of 3 s, and an error
LATENCY = VersionStats(
    requests=4,
    errors=1,
    latencies=[0.5, 2.5, 3.0],
    ttfts=[0.1, 1.5],
    tpots=[0.02, 0.05],
    timings=[(0.5, 0.1, 0.02), (2.5, 1.5, 0.05), (3.0, None, None)],
)


@pytest.mark.parametrize(
    ("builtin", "expected"),
    [
        ({"metric": "goodput"}, 3 / 4),  # default SLOs: 2 s, 100 ms, 30 s
        ({"metric": "goodput", "slo": {"ttft": "1s"}}, 2 / 4),
        ({"metric": "goodput", "slo": {"ttft": "1s", "tpot": "30ms", "e2e": "2s"}}, 1 / 4),
        ({"metric": "tpot_p50"}, 0.035),
        ({"metric": "ttft_p50"}, 0.8),  # streamed requests only: the 3 s answer is not in
    ],
)
def test_builtin_goodput_and_tpot(builtin: dict[str, Any], expected: float) -> None:
    source = InMemoryStats({("prod", CANDIDATE): LATENCY})
    m = metric({"builtin": builtin}, successCondition="result >= 0")
    measured = run_measurement(m, context(), Providers(stats=source))
    assert measured.phase == S, measured.message
    assert measured.value == pytest.approx(expected)


def test_builtin_goodput_without_requests_is_inconclusive() -> None:
    m = metric({"builtin": {"metric": "goodput"}}, successCondition="result >= 0.9")
    measured = run_measurement(m, context(), Providers(stats=InMemoryStats()))
    assert measured.phase == I and "no data" in measured.message


@pytest.mark.parametrize(
    ("builtin", "message"),
    [
        ({"metric": "error_rate", "slo": {"ttft": "1s"}}, "only the goodput metric takes"),
        ({"metric": "goodput", "slo": {"ttft": "0s"}}, "longer than 0s"),
        ({"metric": "goodput", "slo": {"e2e": "soon"}}, "duration"),
        ({"metric": "goodput", "slo": {"itl": "1s"}}, "Extra inputs"),
        ({"metric": "goodput", "compare": "stable"}, "cannot be compared"),
    ],
)
def test_builtin_goodput_slo_is_checked(builtin: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        metric({"builtin": builtin})


def test_builtin_comparison_mode(stats: InMemoryStats) -> None:
    m = metric({"builtin": {"metric": "error_rate", "compare": "stable", "minSamples": 50}})
    measured = run_measurement(m, context(), Providers(stats=stats))
    assert measured.phase == S and 0.05 <= measured.value <= 1.0
    assert [call[1] for call in stats.calls] == [CANDIDATE, STABLE]
    stats.set("prod", CANDIDATE, VersionStats(requests=100, errors=20, error_rate=0.2))
    assert run_measurement(m, context(), Providers(stats=stats)).phase == F
    no_stable = run_measurement(m, context(stable=None), Providers(stats=stats))
    assert no_stable.phase == I and "no stable release" in no_stable.message


def test_builtin_without_a_stats_source_is_an_error() -> None:
    measured = run_measurement(
        metric({"builtin": {"metric": "error_rate"}}), context(), Providers()
    )
    assert measured.phase == E and "statistics" in measured.message


# -- prometheus --------------------------------------------------------------------


def vector(*values: str) -> dict[str, Any]:
    result = [{"metric": {"version": CANDIDATE}, "value": [1.7e9, v]} for v in values]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (vector("0.5"), [0.5]),
        (vector("0.5", "1"), [0.5, 1.0]),
        (vector(), []),
        ({"status": "success", "data": {"resultType": "scalar", "result": [1.7e9, "3"]}}, 3.0),
    ],
)
def test_prometheus_answers(body: dict[str, Any], expected: Any) -> None:
    assert parse_query_response(body) == expected


def test_prometheus_special_values() -> None:
    nan, inf = parse_query_response(vector("NaN", "+Inf"))  # type: ignore[misc]
    assert math.isnan(nan) and inf == math.inf


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"status": "error", "errorType": "bad_data", "error": "parse error"}, "bad_data"),
        ({"status": "success", "data": {"resultType": "matrix", "result": []}}, "matrix"),
        ({"status": "success", "data": {"resultType": "string", "result": [1, "x"]}}, "string"),
        ({"status": "success"}, "no data"),
        ([1, 2], "not a Prometheus"),
        (vector("fast"), "unexpected sample"),
    ],
)
def test_prometheus_bad_answers(body: Any, message: str) -> None:
    with pytest.raises(MeasurementError, match=message):
        parse_query_response(body)


class Recorder:
    """An httpx MockTransport handler that records requests and answers in turn."""

    def __init__(self, *answers: httpx.Response | Exception):
        self.answers: Iterator[httpx.Response | Exception] = iter(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = next(self.answers)
        if isinstance(answer, Exception):
            raise answer
        return answer


PROM = {
    "prometheus": {
        "address": "http://prom.test:9090/",
        "query": 'sum(rate(http_requests_total{version="{{args.version}}",'
        'status=~"5.."}[1m])) / sum(rate(http_requests_total{version="{{args.version}}"}[1m]))'
        " - on() {{args.slack}}",
        "headers": [{"key": "Authorization", "value": "Bearer {{args.token}}"}],
    }
}


def test_prometheus_query_is_templated_and_scored() -> None:
    handler = Recorder(httpx.Response(200, json=vector("0.01")))
    m = metric(PROM, successCondition="result[0] <= 0.05")
    ctx = context(args={"slack": "0", "token": "t0k"})
    measured = run_measurement(m, ctx, Providers(transport=httpx.MockTransport(handler)))
    assert (measured.value, measured.phase) == ([0.01], S)
    (request,) = handler.requests
    assert request.url.path == "/api/v1/query"
    assert request.url.params["query"] == (
        f'sum(rate(http_requests_total{{version="{CANDIDATE}",status=~"5.."}}[1m])) / '
        f'sum(rate(http_requests_total{{version="{CANDIDATE}"}}[1m])) - on() 0'
    )
    assert request.headers["Authorization"] == "Bearer t0k"


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (httpx.ConnectError("refused"), "cannot query Prometheus"),
        (httpx.ReadTimeout("slow"), "cannot query Prometheus"),
        (
            httpx.Response(400, json={"status": "error", "errorType": "bad_data", "error": "x"}),
            "bad_data",
        ),
        (httpx.Response(502, text="bad gateway"), "HTTP 502, not JSON"),
        (httpx.Response(200, json=vector()), "out of range"),  # empty vector, result[0]
    ],
)
def test_prometheus_failures_are_errors(answer: httpx.Response | Exception, message: str) -> None:
    handler = Recorder(answer)
    m = metric(PROM, successCondition="result[0] <= 0.05")
    ctx = context(args={"slack": "0", "token": "t"})
    measured = run_measurement(m, ctx, Providers(transport=httpx.MockTransport(handler)))
    assert measured.phase == E
    assert message in measured.message


def test_an_unknown_argument_is_an_error() -> None:
    measured = run_measurement(
        metric(PROM), context(), Providers(transport=httpx.MockTransport(Recorder()))
    )
    assert measured.phase == E and "no value for the argument 'slack'" in measured.message


# -- web ---------------------------------------------------------------------------


def test_web_get_selects_with_jsonpath() -> None:
    handler = Recorder(httpx.Response(200, json={"data": {"checks": [{"ok": True}]}}))
    m = metric(
        {
            "web": {
                "url": "http://svc.test/check?v={{args.candidate}}",
                "jsonPath": "$.data.checks[0].ok",
            }
        },
        successCondition="result == true",
    )
    measured = run_measurement(m, context(), Providers(transport=httpx.MockTransport(handler)))
    assert (measured.value, measured.phase) == (True, S)
    assert handler.requests[0].method == "GET"
    assert handler.requests[0].url.params["v"] == CANDIDATE


def test_web_post_sends_a_templated_json_body() -> None:
    handler = Recorder(httpx.Response(200, json={"score": 0.4}))
    m = metric(
        {
            "web": {
                "url": "https://judge.test/score",
                "method": "POST",
                "jsonBody": {"release": "{{args.candidate}}", "env": "{{args.env}}", "n": 5},
                "jsonPath": "{$.score}",
            }
        },
        successCondition="result >= 0.5",
    )
    measured = run_measurement(m, context(), Providers(transport=httpx.MockTransport(handler)))
    assert measured.phase == F
    request = handler.requests[0]
    assert request.method == "POST" and request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {"release": CANDIDATE, "env": "prod", "n": 5}


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (httpx.Response(503, json={}), "HTTP 503"),
        (httpx.Response(200, text="<html>"), "did not answer JSON"),
        (httpx.Response(200, json={"other": 1}), "no such key"),
        (httpx.ConnectError("refused"), "cannot reach"),
    ],
)
def test_web_failures_are_errors(answer: httpx.Response | Exception, message: str) -> None:
    m = metric({"web": {"url": "http://svc.test/x", "jsonPath": "$.value"}})
    handler = Recorder(answer)
    measured = run_measurement(m, context(), Providers(transport=httpx.MockTransport(handler)))
    assert measured.phase == E and message in measured.message


# -- run_measurement ---------------------------------------------------------------


class Broken:
    def measure(self, metric: Metric, context: MeasureContext) -> Any:
        raise RuntimeError("boom")


class Fixed:
    def __init__(self, value: Any):
        self.value = value

    def measure(self, metric: Metric, context: MeasureContext) -> Any:
        from llmship.analysis import Measurement

        return Measurement(self.value, None, "fixed")


def test_a_crashing_provider_is_an_error_measurement(caplog: pytest.LogCaptureFixture) -> None:
    measured = run_measurement(metric({"builtin": {"metric": "error_rate"}}), context(), Broken())
    assert measured.phase == E and "RuntimeError: boom" in measured.message
    assert "provider failed" in caplog.text


@pytest.mark.parametrize(
    ("value", "conditions", "expected", "message"),
    [
        (0.5, {"successCondition": "result < 1"}, S, "fixed"),
        ([], {"successCondition": "result[0] < 1"}, E, "out of range"),
        (0.5, {}, S, "fixed"),
    ],
)
def test_run_measurement_scores_values(
    value: Any, conditions: dict[str, str], expected: Phase, message: str
) -> None:
    m = metric({"builtin": {"metric": "error_rate"}}, **conditions)
    measured = run_measurement(m, context(), Fixed(value))
    assert measured.phase == expected and message in measured.message


def test_context_arguments() -> None:
    ctx = context(stable=None, args={"x": "1"})
    assert ctx.all_args == {
        "x": "1",
        "version": CANDIDATE,
        "candidate": CANDIDATE,
        "stable": "",
        "env": "prod",
    }
    assert ctx.render("{{args.x}}-{{ args.env }}") == "1-prod"
