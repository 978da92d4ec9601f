"""Alertmanager webhook payloads (version 4): parsing, matching to rollouts, dedupe keys."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import pytest

from llmship.errors import InvalidRequestError
from llmship.gateway.alerts import Alert, abort_requests, dedupe_key, matches, parse_webhook

# What Alertmanager 0.27 posts (docs: configuration.md#webhook_config).
PAYLOAD: dict[str, Any] = {
    "version": "4",
    "groupKey": '{}/{action="rollback"}:{alertname="LlmHighErrorRate"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "llmship-rollback",
    "groupLabels": {"alertname": "LlmHighErrorRate"},
    "commonLabels": {"alertname": "LlmHighErrorRate", "action": "rollback"},
    "commonAnnotations": {"summary": "error rate above 5%"},
    "externalURL": "http://alertmanager:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "LlmHighErrorRate",
                "action": "rollback",
                "version": "chat@1.1.0",
                "severity": "critical",
            },
            "annotations": {"summary": "error rate above 5%"},
            "startsAt": "2024-05-01T12:00:05.123Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=...",
            "fingerprint": "b7f3c1a2d4e5f601",
        }
    ],
}


@dataclass(frozen=True)
class Rollout:
    id: int = 3
    env: str = "prod"
    name: str = "chat-canary"
    candidate: str = "chat@1.1.0"


def payload(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(PAYLOAD)
    data.update(changes)
    return data


def test_parse_a_real_payload() -> None:
    parsed = parse_webhook(PAYLOAD)
    assert parsed.version == "4"
    assert parsed.status == "firing"
    assert parsed.receiver == "llmship-rollback"
    assert parsed.common_labels["action"] == "rollback"
    [alert] = parsed.alerts
    assert alert.firing
    assert alert.name == "LlmHighErrorRate"
    assert alert.labels["version"] == "chat@1.1.0"
    assert alert.starts_at == "2024-05-01T12:00:05.123Z"
    assert alert.fingerprint == "b7f3c1a2d4e5f601"


def test_unknown_fields_are_ignored() -> None:
    parsed = parse_webhook(payload(newField={"x": 1}))
    assert len(parsed.alerts) == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "the body must be a JSON object"),
        (payload(version="3"), "version must be '4'"),
        ({k: v for k, v in PAYLOAD.items() if k != "version"}, "version must be '4'"),
        (payload(status="pending"), "status must be 'firing' or 'resolved'"),
        (payload(alerts={"a": 1}), "alerts must be a list"),
        (payload(alerts=["x"]), r"alerts\[0\] must be an object"),
        (payload(alerts=[{"labels": {}}]), r"alerts\[0\]\.status must be"),
        (
            payload(alerts=[{"status": "firing", "labels": {"a": 1}}]),
            r"alerts\[0\]\.labels must be a mapping of strings",
        ),
        (
            payload(alerts=[{"status": "firing", "labels": {}, "startsAt": 5}]),
            r"alerts\[0\]\.startsAt must be a string",
        ),
        (payload(groupKey=7), "groupKey must be a string"),
        (payload(truncatedAlerts=-1), "truncatedAlerts must be a non-negative integer"),
        (payload(commonLabels=["x"]), "commonLabels must be a mapping"),
    ],
)
def test_malformed_payloads_are_refused_with_the_reason(data: Any, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message) as info:
        parse_webhook(data)
    assert info.value.status_code == 400
    assert info.value.message.startswith("Alertmanager webhook: ")


def alert(status: str = "firing", **labels: str) -> Alert:
    return Alert(status=status, labels={"action": "rollback", **labels})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (alert(rollout="chat-canary"), True),
        (alert(rollout="3"), True),
        (alert(version="chat@1.1.0"), True),
        (alert(version="1.1.0"), True),
        (alert(model_version="chat@1.1.0"), True),
        (alert(model_version="1.1.0"), True),
        (alert(version="chat@1.1.0", env="prod"), True),
        (alert(version="chat@1.1.0", env="staging"), False),  # another environment
        (alert("resolved", version="chat@1.1.0"), False),  # resolved alerts do nothing
        (alert(version="chat@1.0.0"), False),  # the stable release
        (alert(rollout="other"), False),
        (alert(), False),  # names nothing
        (Alert(status="firing", labels={"version": "chat@1.1.0"}), False),  # no action
        (Alert(status="firing", labels={"action": "page", "version": "1.1.0"}), False),
    ],
)
def test_which_alerts_match_a_rollout(given: Alert, expected: bool) -> None:
    assert matches(given, Rollout()) is expected


def test_the_dedupe_key_is_stable_and_tells_firings_apart() -> None:
    parsed = parse_webhook(PAYLOAD)
    key = dedupe_key(parsed, parsed.alerts[0])
    assert len(key) == 64
    assert key == dedupe_key(
        parse_webhook(copy.deepcopy(PAYLOAD)), parse_webhook(PAYLOAD).alerts[0]
    )
    again = payload()
    again["alerts"][0]["startsAt"] = "2024-05-01T13:00:00Z"  # fired again later
    reparsed = parse_webhook(again)
    assert dedupe_key(reparsed, reparsed.alerts[0]) != key
    other_group = parse_webhook(payload(groupKey="{}:{}"))
    assert dedupe_key(other_group, other_group.alerts[0]) != key


def test_without_a_fingerprint_the_labels_identify_the_alert() -> None:
    data = payload()
    del data["alerts"][0]["fingerprint"]
    parsed = parse_webhook(data)
    other = copy.deepcopy(data)
    other["alerts"][0]["labels"]["severity"] = "warning"
    other_parsed = parse_webhook(other)
    assert dedupe_key(parsed, parsed.alerts[0]) != dedupe_key(other_parsed, other_parsed.alerts[0])


def test_abort_requests_pair_firing_alerts_with_rollouts() -> None:
    data = payload()
    data["alerts"].append(
        {"status": "resolved", "labels": {"action": "rollback", "rollout": "chat-canary"}}
    )
    data["alerts"].append({"status": "firing", "labels": {"action": "rollback", "rollout": "x"}})
    rollouts = [Rollout(), Rollout(id=4, env="staging", name="x", candidate="chat@2.0.0")]
    requests = abort_requests(parse_webhook(data), rollouts)
    assert [(r.rollout_id, r.alert) for r in requests] == [(3, "LlmHighErrorRate"), (4, "")]
    assert requests[0].reason == "alert LlmHighErrorRate fired: error rate above 5%"
    assert requests[1].reason == "an alert fired"
    assert requests[0].dedupe_key != requests[1].dedupe_key
