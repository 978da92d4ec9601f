"""Statistics from many gateways: the merge (quantiles over the union of all requests),
and ``GatewaysStats`` reading every live gateway, against fakes and real gateway apps."""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from _registry import make_spec
from _stats import InMemoryStats
from llmship.analysis import Metric, Phase, Providers, run_measurement
from llmship.analysis.providers import MeasureContext, MeasurementError
from llmship.analysis.stats import (
    IncompleteStats,
    VersionStats,
    builtin_value,
    merge_stats,
    quantile,
)
from llmship.gateway import create_app
from llmship.registry import QueryRecord, Registry
from llmship.registry.records import FeedbackRecord, GatewayRecord
from llmship.rollout.stats_http import GatewaysStats
from llmship.settings import Settings

TOKEN = "merge-token"
REF = "chat@2.0.0"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)

# -- merging ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("q", [0.5, 0.95, 0.99])
def test_a_quantile_of_the_merge_is_the_quantile_of_the_union(seed: int, q: float) -> None:
    rng = random.Random(seed)
    # Given gateways with very different loads and latencies
    samples = [
        [rng.lognormvariate(mu, 0.5) for _ in range(rng.randint(0, 400))] for mu in (-3, -1, 0)
    ]
    parts = [VersionStats(requests=len(s), latencies=s, ttfts=s[::2]) for s in samples]
    merged = merge_stats(parts)
    union = [v for s in samples for v in s]
    assert builtin_value(f"latency_p{round(q * 100)}", merged) == quantile(union, q)
    assert merged.ttfts == [v for s in samples for v in s[::2]]
    # Not the mean of the per-gateway quantiles (which is what merging must not do)
    per_gateway = [quantile(s, q) for s in samples if s]
    if len(per_gateway) > 1:
        assert quantile(union, q) != pytest.approx(sum(per_gateway) / len(per_gateway))


def test_counts_add_up_and_rates_are_weighted() -> None:
    a = VersionStats(
        requests=90, errors=9, error_rate=0.1, tokens_per_second=10.0,
        tokens_per_second_samples=81, ratings=[5], thumbs_up=1, thumbs_down=2,
        shadow_similarities=[0.5], notes=["a"],
    )  # fmt: skip
    b = VersionStats(
        requests=10, errors=0, error_rate=0.0, tokens_per_second=40.0,
        tokens_per_second_samples=9, ratings=[1, 2], thumbs_up=3, shadow_similarities=[1.0],
        notes=["b"],
    )  # fmt: skip
    merged = merge_stats([a, b, VersionStats()])
    assert (merged.requests, merged.errors, merged.error_rate) == (100, 9, 0.09)
    assert merged.tokens_per_second == pytest.approx((10 * 81 + 40 * 9) / 90)
    assert merged.tokens_per_second_samples == 90
    assert (merged.ratings, merged.thumbs_up, merged.thumbs_down) == ([5, 1, 2], 4, 2)
    assert merged.shadow_similarities == [0.5, 1.0]
    assert merged.notes == ["a", "b"]


def test_a_gateway_that_does_not_count_its_rates_is_weighted_by_its_successes() -> None:
    old = VersionStats(requests=30, errors=10, tokens_per_second=10.0)  # before the count
    new = VersionStats(requests=5, tokens_per_second=40.0, tokens_per_second_samples=5)
    assert merge_stats([old, new]).tokens_per_second == pytest.approx((10 * 20 + 40 * 5) / 25)


def test_nothing_merged_is_no_data() -> None:
    merged = merge_stats([VersionStats(), VersionStats()])
    assert merged.requests == 0 and math.isnan(merged.error_rate)
    assert math.isnan(merged.tokens_per_second)


def test_the_new_fields_travel_and_old_answers_still_read() -> None:
    stats = VersionStats(
        requests=2, error_rate=0.0, tokens_per_second=3.0, tokens_per_second_samples=2,
        notes=["x"],
    )  # fmt: skip
    assert VersionStats.from_dict(json.loads(json.dumps(stats.to_dict()))) == stats
    old = VersionStats.from_dict({"requests": 3, "errors": 1, "tokens_per_second": 5.0})
    assert (old.tokens_per_second_samples, old.notes) == (0, [])


# -- GatewaysStats with fakes ----------------------------------------------------------------


@dataclass
class Directory:
    """The registry as GatewaysStats sees it."""

    gateways: list[GatewayRecord]
    feedback: list[FeedbackRecord]

    def list_gateways(self, env: str, *, max_age_s: float | None = None) -> list[GatewayRecord]:
        return list(self.gateways)

    def list_feedback(
        self, env: str, ref: str, *, since: datetime | None = None
    ) -> list[FeedbackRecord]:
        assert since == NOW - timedelta(seconds=60)
        return list(self.feedback)


def gateway(url: str, recent: int = 0) -> GatewayRecord:
    return GatewayRecord(
        env="prod", instance=url, url=url, pid=1, host="h", started_at=NOW, heartbeat_at=NOW,
        policy_revision=1, recent_requests=recent,
    )  # fmt: skip


def feedback(kind: str, value: int) -> FeedbackRecord:
    return FeedbackRecord(
        query_id="q", env="prod", ref=REF, kind=kind, value=value, comment=None, at=NOW
    )


ANSWERS: dict[str, Any] = {
    "a": {"requests": 3, "errors": 1, "latencies": [0.1, 0.2], "ratings": [1, 1, 1]},
    "b": {"requests": 2, "latencies": [0.3, 0.4], "thumbs_up": 7},
    "down": httpx.ConnectError("connection refused"),
    "broken": httpx.Response(500, json={"error": {"message": "boom"}}),
}


def answer(request: httpx.Request) -> httpx.Response:
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.url.params["feedback"] == "false"
    assert request.url.params["ref"] == REF
    found = ANSWERS[request.url.host]
    if isinstance(found, Exception):
        raise found
    return found if isinstance(found, httpx.Response) else httpx.Response(200, json=found)


def source(*gateways: GatewayRecord) -> GatewaysStats:
    directory = Directory(list(gateways), [feedback("rating", 4), feedback("thumbs", 0)])
    return GatewaysStats(directory, TOKEN, transport=httpx.MockTransport(answer), clock=lambda: NOW)


def test_every_gateway_is_read_and_feedback_counted_once() -> None:
    with source(gateway("http://a"), gateway("http://b")) as stats:
        merged = stats.stats("prod", REF, 60)
    assert (merged.requests, merged.errors, merged.latencies) == (5, 1, [0.1, 0.2, 0.3, 0.4])
    # the gateways' own ratings and thumbs are dropped: the registry's are read once
    assert (merged.ratings, merged.thumbs_up, merged.thumbs_down) == ([4], 0, 1)
    assert merged.notes == ["2 of 2 gateways"]


@pytest.mark.parametrize("failing", ["http://down", "http://broken"])
def test_a_quiet_gateway_that_fails_is_left_out_and_named(failing: str) -> None:
    with source(gateway("http://a"), gateway(failing, recent=0)) as stats:
        merged = stats.stats("prod", REF, 60)
    assert merged.requests == 3
    assert merged.notes[0] == "1 of 2 gateways"
    assert failing in merged.notes[1] and "left out" in merged.notes[1]


@pytest.mark.parametrize(
    ("recent", "window", "why"),
    [
        (12, 60, "12 request(s)"),  # it carried traffic
        (0, 300, "not of all 300s"),  # its heartbeat cannot tell of the whole window
    ],
)
def test_a_gateway_that_may_have_carried_traffic_makes_it_incomplete(
    recent: int, window: float, why: str
) -> None:
    with (
        source(gateway("http://a"), gateway("http://down", recent=recent)) as stats,
        pytest.raises(IncompleteStats) as raised,
    ):
        stats.stats("prod", REF, window)
    assert "http://down" in str(raised.value) and why in str(raised.value)


def test_no_gateway_to_read_is_an_error() -> None:
    with source() as stats, pytest.raises(MeasurementError, match="no live gateway"):
        stats.stats("prod", REF, 60)
    with (
        source(gateway("http://down")) as stats,
        pytest.raises(MeasurementError, match=r"no gateway answered: .*http://down"),
    ):
        stats.stats("prod", REF, 60)


# -- the builtin provider ----------------------------------------------------------------------


class Incomplete:
    def stats(self, env: str, ref: str, window_s: float) -> VersionStats:
        raise IncompleteStats("http://b did not answer")


def _measure(source: Any, builtin: dict[str, Any]) -> Any:
    conditions = {} if builtin.get("compare") else {"successCondition": "result < 1"}
    metric = Metric.model_validate({"name": "m", "provider": {"builtin": builtin}, **conditions})
    context = MeasureContext(env="prod", candidate=REF, stable="chat@1.0.0")
    return run_measurement(metric, context, Providers(stats=source))


@pytest.mark.parametrize(
    "builtin", [{"metric": "error_rate"}, {"metric": "error_rate", "compare": "stable"}]
)
def test_incomplete_statistics_are_inconclusive_not_a_pass(builtin: dict[str, Any]) -> None:
    measured = _measure(Incomplete(), builtin)
    assert measured.phase == Phase.INCONCLUSIVE
    assert math.isnan(measured.value) and "http://b did not answer" in measured.message


def test_the_sources_notes_end_the_message() -> None:
    stats = InMemoryStats(
        {("prod", REF): VersionStats(requests=10, errors=1, notes=["2 of 3 gateways", "x"])}
    )
    measured = _measure(stats, {"metric": "error_rate"})
    assert measured.phase == Phase.SUCCESSFUL
    assert measured.message.endswith("(2 of 3 gateways; x)")


# -- real gateway apps ---------------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with Registry.open(f"sqlite:///{tmp_path / 'registry.db'}") as reg:
        reg.register(make_spec("chat", "1.0.0"), actor="t")
        reg.register(make_spec("chat", "2.0.0"), actor="t")
        reg.set_alias("prod", "production", "chat@1.0.0", actor="t", reason="r")
        yield reg


def test_real_gateways_are_merged(registry: Registry) -> None:
    settings = Settings(env="prod", admin_token=TOKEN)
    apps = {
        host: create_app(registry, settings, advertise_url=f"http://{host}:8080")
        for host in ("gw-a", "gw-b", "gw-c")
    }
    with (
        TestClient(apps["gw-a"]) as a,
        TestClient(apps["gw-b"]) as b,
        TestClient(apps["gw-c"]) as c,
    ):
        clients = {"gw-a": a, "gw-b": b, "gw-c": c}
        # Given three gateways that announced themselves, and each saw some requests
        rng = random.Random(7)
        seen: list[float] = []
        for host, count in (("gw-a", 50), ("gw-b", 5), ("gw-c", 0)):
            window = apps[host].state.gateway.metrics.window
            for _ in range(count):
                latency = rng.expovariate(10)
                seen.append(latency)
                window.request(REF, error=False, latency=latency, ttft=latency / 2)
            window.request(REF, error=True)
        # And one answer got a rating, given once (in the registry)
        at = datetime.now(timezone.utc)
        registry.record_queries([QueryRecord("q1", "prod", REF, "canary", "chat", 200, at)])
        registry.add_feedback("q1", rating=5)
        deadline = time.monotonic() + 10  # each announces itself in the background
        while len(registry.list_gateways("prod", max_age_s=15)) < 3:
            assert time.monotonic() < deadline, registry.list_gateways("prod")
            time.sleep(0.02)

        # (FastAPI builds a route's state on its first request, under a warnings filter
        # that is process-wide: the first requests come one at a time, not from the
        # source's threads at once, so that no build sees another's filter.)
        for client in clients.values():
            client.get("/api/v1/stats", params={"env": "prod", "ref": REF, "window": "1"})

        def forward(request: httpx.Request) -> httpx.Response:
            client = clients[request.url.host]
            got = client.get(request.url.path, params=request.url.params, headers=request.headers)
            return httpx.Response(got.status_code, content=got.content, headers=got.headers)

        # When the controller's source reads them
        with GatewaysStats(registry, TOKEN, transport=httpx.MockTransport(forward)) as stats:
            merged = stats.stats("prod", REF, 60)
        # Then it counted every request once, and its quantiles are the union's
        assert (merged.requests, merged.errors) == (58, 3)
        assert sorted(merged.latencies) == sorted(seen)
        assert builtin_value("latency_p95", merged) == quantile(seen, 0.95)
        assert merged.ratings == [5]  # not once per gateway
        assert merged.notes == ["3 of 3 gateways"]
    # And gateways that stopped withdrew
    assert registry.list_gateways("prod") == []
