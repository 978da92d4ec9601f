"""Alertmanager alerts delivered to the registry abort the running rollout once."""

from __future__ import annotations

from typing import Any

from _controller import (
    CANARY,
    CANDIDATE,
    World,
    healthy,
)
from llmship.gateway.alerts import abort_requests, parse_webhook

pytest_plugins = ["_controller_fixtures"]  # the fixtures registry and world


# -- alerts ---------------------------------------------------------------------------------


def webhook(status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="HighErrorRate"}',
        "status": status,
        "receiver": "llmship",
        "alerts": [
            {
                "status": status,
                "labels": {"alertname": "HighErrorRate", "action": "rollback", **labels},
                "annotations": {"summary": "5xx above 5%"},
                "startsAt": "2024-05-01T12:00:05Z",
                "fingerprint": "abc123",
            }
        ],
    }


def deliver(world: World, payload: dict[str, Any]) -> list[bool]:
    parsed = parse_webhook(payload)
    active = world.registry.list_rollouts(world.env, active_only=True)
    return [
        world.registry.request_rollout_abort(
            world.env, r.rollout_id, reason=r.reason, dedupe_key=r.dedupe_key
        )
        for r in abort_requests(parsed, active)
    ]


def test_an_alert_aborts_the_rollout_once(world: World) -> None:
    world.start(CANARY)
    world.ready()
    world.candidate_stats(healthy())
    world.run(3)
    assert deliver(world, webhook(model_version=CANDIDATE)) == [True]
    assert deliver(world, webhook(model_version=CANDIDATE)) == [False]  # repeated delivery
    world.run(1)
    record = world.rollout()
    assert record.phase == "Aborted"
    assert record.abort_reason == "alert HighErrorRate fired: 5xx above 5%"
    assert world.policy().canary is None
    events = world.registry.rollout_events(record.id)
    assert [e.kind for e in events].count("rollout.aborted") == 1
    assert [e.kind for e in events].count("rollout.requested") == 1
    assert deliver(world, webhook(model_version=CANDIDATE)) == []  # not active any more
    world.run(2)
    assert world.registry.rollout_events(record.id) == events
    assert world.registry.pending_rollout_intents(record.id) == []


def test_a_resolved_alert_changes_nothing(world: World) -> None:
    world.start(CANARY)
    world.ready()
    world.run(2)
    assert deliver(world, webhook("resolved", rollout="chat-canary")) == []
    world.run(1)
    assert world.phase() != "Aborted"
