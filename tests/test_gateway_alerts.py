"""The gateway's Alertmanager webhook: an alert aborts a rollout once; malformed
payloads are 400."""

from __future__ import annotations

import json
from typing import Any

import pytest

from _gateway import (
    ADMIN,
    CANARY,
    OTHER,
    Rig,
)


def alert_payload(status: str = "firing", **labels: str) -> dict[str, Any]:
    alert = {
        "status": status,
        "labels": {"alertname": "LLMHighErrorRate", "action": "rollback", **labels},
        "annotations": {"summary": "5xx above 5%"},
        "startsAt": "2026-11-28T22:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": "a1b2c3d4",
    }
    return {
        "version": "4",
        "groupKey": '{}:{alertname="LLMHighErrorRate"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "llmship",
        "groupLabels": {},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager",
        "alerts": [alert],
    }


def test_alertmanager_webhook_aborts_a_rollout_once(rig: Rig) -> None:
    from fakes_gateway import FakeRollout

    rig.store.rollouts = [FakeRollout(7, "dev", "chat-canary", CANARY)]
    first = rig.client.post("/api/v1/alerts", json=alert_payload(version=CANARY), headers=ADMIN)
    assert first.status_code == 200, first.text
    # the answer says per alert what was done (issue #13: it also lists `alerts`)
    assert first.json() == {
        "status": "ok",
        "aborted": ["chat-canary"],
        "repeated": 0,
        "alerts": [
            {
                "alert": "LLMHighErrorRate",
                "action": "abort",
                "release": None,
                "rollout": "chat-canary",
                "detail": "abort requested: alert LLMHighErrorRate fired: 5xx above 5%",
            }
        ],
    }
    again = rig.client.post("/api/v1/alerts", json=alert_payload(version=CANARY), headers=ADMIN)
    assert (again.json()["aborted"], again.json()["repeated"]) == ([], 1)
    assert [a["action"] for a in again.json()["alerts"]] == ["repeated"]
    resolved = rig.client.post(
        "/api/v1/alerts", json=alert_payload("resolved", version=CANARY), headers=ADMIN
    )
    assert resolved.json()["aborted"] == []
    assert resolved.json()["alerts"][0]["detail"] == "resolved: changes nothing"
    other = rig.client.post("/api/v1/alerts", json=alert_payload(version=OTHER), headers=ADMIN)
    assert other.json()["aborted"] == []
    assert [rollout_id for rollout_id, _ in rig.store.aborts] == [7]
    assert "LLMHighErrorRate" in rig.store.aborts[0][1]


@pytest.mark.parametrize(
    "body", [b"{not json", b"[]", json.dumps({"version": "3", "alerts": []}).encode()]
)
def test_malformed_alert_payloads_are_400(rig: Rig, body: bytes) -> None:
    r = rig.client.post(
        "/api/v1/alerts", content=body, headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
