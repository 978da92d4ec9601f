"""The gateway's admin API under ``/api/v1/``: the token, traffic changes, reasons, and
the per-release statistics the controller's analysis reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from _gateway import (
    ADMIN,
    CANARY,
    OTHER,
    PREVIEW,
    STABLE,
    Rig,
    make_rig,
)
from fakes_gateway import FakeModelServers, FakeStore
from llmship.gateway import create_app
from llmship.registry.records import NO_REASON
from llmship.settings import Settings

# -- admin API -------------------------------------------------------------------------------------


ADMIN_CALLS = [
    ("GET", "/api/v1/traffic", None),
    ("PUT", "/api/v1/traffic", {"reason": "x"}),
    ("POST", "/api/v1/traffic/promote-preview", {"reason": "x"}),
    ("DELETE", "/api/v1/traffic?reason=x", None),
    ("GET", "/api/v1/flags", None),
    ("PUT", "/api/v1/flags/f", {}),
    ("DELETE", "/api/v1/flags/f", None),
    ("POST", "/api/v1/toggle/f", None),
    ("GET", "/api/v1/toggle/f", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
def test_admin_api_needs_the_token(
    rig: Rig, method: str, path: str, body: dict[str, Any] | None
) -> None:
    r = rig.client.request(method, path, json=body)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json()["error"]["type"] == "authentication_error"
    r = rig.client.request(method, path, json=body, headers={"Authorization": "Basic abc"})
    assert r.status_code == 401
    r = rig.client.request(method, path, json=body, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 403
    assert r.json()["error"]["type"] == "permission_error"
    assert rig.store.flags == {} and rig.store.policy.revision == 0  # nothing changed


def test_admin_api_is_off_without_a_token() -> None:
    store = FakeStore([STABLE], production=STABLE)
    settings = Settings(home=Path("/nonexistent"), admin_token=None)
    with TestClient(create_app(store, settings)) as client:
        r = client.get("/api/v1/traffic", headers=ADMIN)
        assert r.status_code == 503
        assert "LLMSHIP_ADMIN_TOKEN" in r.json()["error"]["message"]
        assert client.get("/healthz").status_code == 200  # public endpoints need none


def test_traffic_show_set_promote_and_reset(rig: Rig) -> None:
    r = rig.client.get("/api/v1/traffic", headers=ADMIN)
    assert r.status_code == 200
    view = r.json()
    assert (view["stable"], view["revision"], view["endpoints"]) == (
        STABLE,
        0,
        {STABLE: rig.fakes.url("stable")},
    )
    assert view["replicas"] == {STABLE: [rig.fakes.url("stable")]}
    update = {"canary": {"release": CANARY, "weight": 100}, "preview": PREVIEW, "reason": "try"}
    r = rig.client.put("/api/v1/traffic", json=update, headers=ADMIN)
    assert r.status_code == 200
    view = r.json()
    assert view["revision"] == 1 and view["canary"] == {"release": CANARY, "weight": 100.0}
    assert view["weights"] == {"stable": 0.0, "canary": 100.0}
    assert view["endpoints"][PREVIEW] == rig.fakes.url("preview")
    assert rig.chat().headers["x-llmship-version"] == CANARY  # the gateway follows at once
    assert rig.metric("llmship_traffic_weight", version=CANARY, variant="canary") == 100
    assert rig.metric("llmship_policy_revision") == 1
    r = rig.client.put("/api/v1/traffic", json={**update, "expected_revision": 0}, headers=ADMIN)
    assert r.status_code == 409
    r = rig.client.post("/api/v1/traffic/promote-preview", json={"reason": "go"}, headers=ADMIN)
    assert r.status_code == 200
    assert (r.json()["stable"], r.json()["preview"]) == (PREVIEW, None)
    r = rig.client.delete("/api/v1/traffic", params={"reason": "done"}, headers=ADMIN)
    assert r.json()["canary"] is None
    assert rig.chat().headers["x-llmship-version"] == PREVIEW


@pytest.mark.parametrize(
    ("update", "status"),
    [
        ({"canary": {"release": CANARY, "weight": 120}, "reason": "x"}, 400),
        ({"canary": {"release": CANARY, "weight": "lots"}, "reason": "x"}, 400),
        ({"canary": {"release": "nope@9.9.9", "weight": 5}, "reason": "x"}, 404),
        ({"canary": {"release": CANARY, "weight": 5}, "reason": "x", "stable": OTHER}, 400),
        (
            {
                "experiment": {
                    "name": "e",
                    "variants": [
                        {"name": "a", "release": STABLE, "weight": 60},
                        {"name": "b", "release": CANARY, "weight": 60},
                    ],
                },
                "reason": "x",
            },
            400,
        ),
    ],
)
def test_invalid_traffic_changes_are_refused(rig: Rig, update: dict[str, Any], status: int) -> None:
    r = rig.client.put("/api/v1/traffic", json=update, headers=ADMIN)
    assert r.status_code == status, r.text
    assert r.json()["error"]["message"]
    assert rig.store.policy.revision == 0


def test_promote_without_a_preview(rig: Rig) -> None:
    r = rig.client.post("/api/v1/traffic/promote-preview", json={"reason": "x"}, headers=ADMIN)
    assert r.status_code == 400 and r.json()["error"]["param"] == "preview"


def test_a_reason_is_optional(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    reasons: list[str] = []
    for method in ("set_traffic", "promote_preview", "reset_traffic"):

        def recording(*args: Any, _change: Any = getattr(rig.store, method), **kw: Any) -> Any:
            reasons.append(kw["reason"])
            return _change(*args, **kw)

        monkeypatch.setattr(rig.store, method, recording)
    assert rig.client.put("/api/v1/traffic", json={"preview": PREVIEW}, headers=ADMIN).is_success
    assert rig.client.post("/api/v1/traffic/promote-preview", json={}, headers=ADMIN).is_success
    assert rig.client.delete("/api/v1/traffic", params={"reason": " "}, headers=ADMIN).is_success
    assert reasons == [NO_REASON] * 3


# -- analysis statistics and the Alertmanager webhook ----------------------------------------


def test_stats_per_release_count_failed_candidate_attempts(fakes: FakeModelServers) -> None:
    with make_rig(fakes) as rig:
        rig.set_policy(canary=CANARY, canary_weight=100)
        rig.set_mode(CANARY, "500")
        for _ in range(4):
            assert rig.chat().status_code == 200
        rig.flush()
        query = next(iter(rig.store.queries))
        assert (
            rig.client.post("/feedback", json={"query_id": query, "rating": 4}).status_code == 200
        )
        canary = rig.client.get(
            "/api/v1/stats", params={"ref": CANARY, "window": 60}, headers=ADMIN
        )
        stable = rig.client.get(
            "/api/v1/stats", params={"ref": STABLE, "window": 60}, headers=ADMIN
        )
    assert canary.status_code == 200, canary.text
    assert (canary.json()["requests"], canary.json()["errors"]) == (4, 4)
    assert canary.json()["error_rate"] == 1.0
    body = stable.json()
    assert (body["requests"], body["errors"], body["error_rate"]) == (4, 0, 0.0)
    assert len(body["latencies"]) == 4 and all(v > 0 for v in body["latencies"])
    assert body["ratings"] == [4]


def test_stats_without_traffic_are_empty_not_an_error(rig: Rig) -> None:
    r = rig.client.get("/api/v1/stats", params={"ref": OTHER, "window": 5}, headers=ADMIN)
    assert r.status_code == 200
    assert r.json()["requests"] == 0 and r.json()["error_rate"] is None
    assert rig.client.get("/api/v1/stats", params={"ref": OTHER}).status_code == 401
    bad = rig.client.get("/api/v1/stats", params={"ref": OTHER, "window": -1}, headers=ADMIN)
    assert bad.status_code == 400
