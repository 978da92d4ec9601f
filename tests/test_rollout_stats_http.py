"""The controller's gateway statistics over HTTP (``GatewayStats``) and the gateway's
URL from its bind address."""

from __future__ import annotations

import httpx
import pytest

from _controller import (
    CANDIDATE,
)
from llmship.analysis import MeasureContext, Providers
from llmship.analysis.models import Metric
from llmship.analysis.phases import Phase
from llmship.analysis.providers import MeasurementError, run_measurement
from llmship.rollout.stats_http import GatewayStats, gateway_url


def test_gateway_stats_over_http() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.params["ref"] == "chat@9.9.9":
            return httpx.Response(404, json={"error": {"message": "no such release"}})
        return httpx.Response(
            200, json={"requests": 10, "errors": 1, "error_rate": None, "latencies": [0.1]}
        )

    with GatewayStats(
        "http://gw:8080/", "s3cret", transport=httpx.MockTransport(handler)
    ) as source:
        stats = source.stats("prod", CANDIDATE, 30)
        assert (stats.requests, stats.errors, stats.latencies) == (10, 1, [0.1])
        request = seen[0]
        assert request.url.path == "/api/v1/stats"
        assert dict(request.url.params) == {"env": "prod", "ref": CANDIDATE, "window": "30"}
        assert request.headers["authorization"] == "Bearer s3cret"
        with pytest.raises(MeasurementError, match=r"answered 404 .* no such release"):
            source.stats("prod", "chat@9.9.9", 30)
        # through the builtin provider: a failure is an Error measurement with the reason
        metric = Metric.model_validate(
            {"name": "m", "provider": {"builtin": {"metric": "error_rate"}}}
        )
        with Providers(stats=source) as providers:
            context = MeasureContext(env="prod", candidate="chat@9.9.9", clock=lambda: 1.0)
            taken = run_measurement(metric, context, providers)
    assert taken.phase is Phase.ERROR
    assert "no such release" in taken.message


def test_gateway_stats_when_the_gateway_is_down() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    source = GatewayStats("http://gw:1", None, transport=httpx.MockTransport(handler))
    with source, pytest.raises(MeasurementError, match="did not answer"):
        source.stats("dev", CANDIDATE, 60)


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8080"),
        ("0.0.0.0", "http://127.0.0.1:8080"),
        ("::", "http://[::1]:8080"),
        ("fe80::1", "http://[fe80::1]:8080"),
        ("gw.local", "http://gw.local:8080"),
    ],
)
def test_gateway_url(host: str, url: str) -> None:
    assert gateway_url(host, 8080) == url
