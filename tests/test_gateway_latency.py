"""The gateway's latency figures are honest: a time to first token only for streamed
answers, vLLM's time per output token after the first, and per-request timings in
``GET /api/v1/stats`` that the ``goodput`` and ``tpot_*`` analysis metrics read (fake
model servers behind a real socket, the ASGI test client)."""

from __future__ import annotations

import json
import math

import pytest

from _gateway import ADMIN, CHAT, STABLE, Rig, events
from llmship.analysis.stats import GoodputSlo, VersionStats, builtin_value

ROUTE = "/v1/chat/completions"


def _histogram(rig: Rig, name: str, route: str = ROUTE) -> tuple[float, float]:
    """(count, sum) of one of the gateway's histograms for stable on ``route``."""
    labels = {"route": route, "version": STABLE, "variant": "stable"}
    count = rig.metric(f"{name}_count", **labels) or 0.0
    return count, rig.metric(f"{name}_sum", **labels) or 0.0


def _stats(rig: Rig) -> VersionStats:
    r = rig.client.get("/api/v1/stats", params={"ref": STABLE, "window": 60}, headers=ADMIN)
    assert r.status_code == 200, r.text
    return VersionStats.from_dict(r.json())


def test_a_non_streamed_request_adds_no_ttft_sample(rig: Rig) -> None:
    # Given a client that asks for whole answers, on every forwarded route
    assert rig.chat().status_code == 200
    assert rig.client.post("/predict", json={"prompt": "hi"}).status_code == 200
    # Then each request is timed end to end, but none has a time to first token
    assert _histogram(rig, "model_latency_seconds")[0] == 1
    assert _histogram(rig, "model_latency_seconds", "/predict")[0] == 1
    for route in (ROUTE, "/predict"):
        assert _histogram(rig, "llm_time_to_first_token_seconds", route)[0] == 0
        assert _histogram(rig, "llm_time_per_output_token_seconds", route)[0] == 0
    stats = _stats(rig)
    assert (stats.requests, len(stats.latencies)) == (2, 2)
    assert stats.ttfts == [] and stats.tpots == []
    assert [(ttft, tpot) for _, ttft, tpot in stats.timings] == [(None, None), (None, None)]
    # and the ttft_* analysis metrics have no data (Inconclusive), not the whole latency
    assert math.isnan(builtin_value("ttft_p95", stats))


def test_a_streamed_request_has_a_ttft_and_a_tpot(rig: Rig) -> None:
    # Given a streamed answer whose usage counts its output tokens
    r = rig.chat({**CHAT, "stream": True})
    data = events(r.text)
    assert data[-1] == "[DONE]"
    tokens = json.loads(data[-2])["usage"]["completion_tokens"]
    assert tokens >= 2
    # Then it has one TTFT and one TPOT sample: (e2e - ttft) / (tokens - 1)
    count, ttft = _histogram(rig, "llm_time_to_first_token_seconds")
    assert count == 1
    latency = _histogram(rig, "model_latency_seconds")[1]
    tpot_count, tpot = _histogram(rig, "llm_time_per_output_token_seconds")
    assert tpot_count == 1
    assert tpot == pytest.approx((latency - ttft) / (tokens - 1))
    stats = _stats(rig)
    assert stats.ttfts == [pytest.approx(ttft)] and stats.tpots == [pytest.approx(tpot)]
    ((e2e, first, per_token),) = stats.timings
    assert (e2e, first, per_token) == (
        pytest.approx(latency),
        pytest.approx(ttft),
        pytest.approx(tpot),
    )


def test_a_one_token_stream_has_no_tpot(rig: Rig) -> None:
    rig.servers[STABLE].words = ["hello"]
    r = rig.chat({**CHAT, "stream": True})
    assert events(r.text)[-1] == "[DONE]"
    assert _histogram(rig, "llm_time_to_first_token_seconds")[0] == 1
    assert _histogram(rig, "llm_time_per_output_token_seconds")[0] == 0


def test_goodput_counts_the_requests_that_met_every_slo(rig: Rig) -> None:
    # Given two streamed answers, one whole answer, and a candidate attempt that failed
    for _ in range(2):
        assert events(rig.chat({**CHAT, "stream": True}).text)[-1] == "[DONE]"
    assert rig.chat().status_code == 200
    stats = _stats(rig)
    assert (stats.requests, stats.errors, len(stats.timings)) == (3, 0, 3)
    # Then with generous SLOs all are good, and with an impossible TTFT only the whole
    # answer is (it has no TTFT to miss): goodput judges what was measured
    assert builtin_value("goodput", stats) == 1.0
    assert builtin_value("goodput", stats, GoodputSlo(ttft=1e-9)) == pytest.approx(1 / 3)
    assert builtin_value("goodput", stats, GoodputSlo(e2e=1e-9)) == 0.0


def test_goodput_counts_a_failed_request_as_not_good(rig: Rig) -> None:
    rig.set_mode(STABLE, "500")
    assert rig.chat().status_code >= 500
    rig.set_mode(STABLE, "ok")
    assert rig.chat().status_code == 200
    stats = _stats(rig)
    assert stats.errors >= 1
    assert builtin_value("goodput", stats) == pytest.approx(1 / (1 + stats.errors))
