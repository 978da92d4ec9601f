"""The gateway's monitoring additions in process: feedback counted by release, variant
and value on /metrics, and the model servers listed for Prometheus' HTTP service
discovery (``GET /api/v1/targets``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fakes_gateway import FakeModelServers, FakeServer, FakeStore
from llmship.gateway import Gateway, create_app
from llmship.gateway.discovery import scrape_targets
from llmship.settings import Settings

STABLE, CANARY = "chat@1.0.0", "chat@1.1.0"
SLUGS = {STABLE: "stable", CANARY: "canary"}
TOKEN = "s3cret-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@dataclass
class Rig:
    client: TestClient
    store: FakeStore
    gateway: Gateway
    fakes: FakeModelServers

    def metric(self, name: str, **labels: str) -> float | None:
        return self.gateway.metrics.registry.get_sample_value(name, labels)

    def answer(self, canary_weight: float) -> str:
        """Route one request with the canary at ``canary_weight``; its query id."""
        policy = self.store.policy
        self.store.policy = replace(
            policy, revision=policy.revision + 1, canary=CANARY, canary_weight=canary_weight
        )
        assert self.gateway.state.refresh()
        r = self.client.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 200, r.text
        return r.headers["x-request-id"]


@pytest.fixture
def rig() -> Iterator[Rig]:
    with FakeModelServers() as fakes:
        fakes.servers = {slug: FakeServer(ref) for ref, slug in SLUGS.items()}
        store = FakeStore(list(SLUGS), production=STABLE)
        for ref, slug in SLUGS.items():
            store.register_endpoint("dev", ref, fakes.url(slug), pid=None)
        settings = Settings(
            home=Path("/nonexistent"), env="dev", admin_token=TOKEN, policy_refresh_interval=3600
        )
        app = create_app(store, settings)
        app.state.gateway.feedback_retry = 0.01
        with TestClient(app) as client:
            yield Rig(client, store, app.state.gateway, fakes)


def test_ratings_and_thumbs_are_counted_by_the_release_and_variant_that_answered(
    rig: Rig,
) -> None:
    on_canary = rig.answer(100)  # still pending in the gateway's batch
    on_stable = rig.answer(0)
    assert rig.client.portal is not None
    rig.client.portal.call(rig.gateway.recorder.flush)  # written: looked up in the store

    for body in (
        {"query_id": on_canary, "rating": 4, "thumbs": "down"},
        {"query_id": on_stable, "rating": 5},
        {"query_id": on_stable, "thumbs": "up"},
    ):
        assert rig.client.post("/feedback", json=body).status_code == 200

    ratings, thumbs = "llmship_feedback_ratings_total", "llmship_feedback_thumbs_total"
    assert rig.metric(ratings, version=CANARY, variant="canary", rating="4") == 1
    assert rig.metric(ratings, version=STABLE, variant="stable", rating="5") == 1
    assert rig.metric(ratings, version=STABLE, variant="stable", rating="4") is None
    assert rig.metric(thumbs, version=CANARY, variant="canary", thumb="down") == 1
    assert rig.metric(thumbs, version=STABLE, variant="stable", thumb="up") == 1
    text = rig.client.get("/metrics").text
    assert 'llmship_feedback_ratings_total{rating="4",variant="canary",version="chat@1.1.0"}' in (
        text
    )


def test_refused_feedback_is_not_counted(rig: Rig) -> None:
    query_id = rig.answer(0)
    assert rig.client.post("/feedback", json={"query_id": query_id, "rating": 9}).status_code == 422
    assert rig.client.post("/feedback", json={"query_id": "nope", "rating": 3}).status_code == 404
    text = rig.client.get("/metrics").text
    assert "llmship_feedback_ratings_total{" not in text


def test_the_targets_endpoint_lists_every_live_model_server_for_prometheus(rig: Rig) -> None:
    assert rig.client.get("/api/v1/targets").status_code == 401
    r = rig.client.get("/api/v1/targets", headers=ADMIN)
    assert r.status_code == 200
    address = f"127.0.0.1:{rig.fakes.port}"
    # The fake servers answer under a path per release: Prometheus scrapes PATH/metrics.
    assert r.json() == [
        {
            "targets": [address],
            "labels": {
                "env": "dev",
                "release": ref,
                "replica": address,
                "__metrics_path__": f"/{slug}/metrics",
            },
        }
        for ref, slug in sorted(SLUGS.items())
    ]


@pytest.mark.parametrize(
    ("url", "target", "extra"),
    [
        ("http://10.0.0.7:8000", "10.0.0.7:8000", {}),
        ("http://10.0.0.7:8000/", "10.0.0.7:8000", {}),
        ("https://models.example:8443", "models.example:8443", {"__scheme__": "https"}),
        ("http://models.example", "models.example:80", {}),
        ("https://models.example", "models.example:443", {"__scheme__": "https"}),
        ("http://[::1]:8001", "[::1]:8001", {}),
        ("http://host:8000/chat/", "host:8000", {"__metrics_path__": "/chat/metrics"}),
    ],
)
def test_a_model_servers_url_becomes_a_scrape_target(
    url: str, target: str, extra: dict[str, str]
) -> None:
    [group] = scrape_targets("prod", {"chat@1.0.0": (url,)})
    labels = {"env": "prod", "release": "chat@1.0.0", "replica": target, **extra}
    assert group.model_dump() == {"targets": [target], "labels": labels}


def test_replicas_are_one_target_group_each() -> None:
    groups = scrape_targets(
        "dev", {"b@1.0.0": ("http://h:2",), "a@1.0.0": ("http://h:1", "http://h:3")}
    )
    assert [(g.labels["release"], g.targets) for g in groups] == [
        ("a@1.0.0", ["h:1"]),
        ("a@1.0.0", ["h:3"]),
        ("b@1.0.0", ["h:2"]),
    ]
