"""Alerts after a promotion (issue #13 point 4), over a real SQLite registry: an
Alertmanager alert labelled ``action=rollback`` for the production release moves
production back where the environment's ``on_alert`` is ``rollback``, is only
recorded where it is ``notify``, and changes nothing for another release, while a
rollout runs, when repeated, or resolved."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from _cli import Run
from _registry import chat_registry
from llmship.environments import Environment
from llmship.gateway import create_app
from llmship.gateway.alert_actions import WebhookResult, handle_webhook
from llmship.gateway.alerts import parse_webhook
from llmship.registry import Registry
from llmship.rollout import ops
from llmship.rollout.spec import parse_rollout
from llmship.settings import Settings

ENV = "prod"
OLD, NEW, NEWER = "chat@1.0.0", "chat@1.1.0", "chat@2.0.0"
ROLLBACK = Environment(ENV, on_alert="rollback")
NOTIFY = Environment(ENV)  # on_alert: notify, the default
TOKEN = "alert-test-token"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """chat@1.0.0, 1.1.0 and 2.0.0; production of prod promoted from 1.0.0 to 1.1.0."""
    with chat_registry(tmp_path / "registry.db", ("1.0.0", "1.1.0", "2.0.0"), env=ENV) as reg:
        reg.set_alias(ENV, "production", NEW, actor="ci", reason="promoted")
        yield reg


def webhook(
    status: str = "firing", starts: str = "2026-12-01T10:00:00Z", **labels: str
) -> dict[str, Any]:
    """Alertmanager's body for one ``HighErrorRate`` alert with ``labels``."""
    alert = {
        "status": status,
        "labels": {"alertname": "HighErrorRate", "action": "rollback", **labels},
        "annotations": {"summary": "5xx above 10%"},
        "startsAt": starts,
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": "f00d",
    }
    return {
        "version": "4",
        "groupKey": '{}/{action="rollback"}:{alertname="HighErrorRate"}',
        "status": status,
        "receiver": "llmship-rollback",
        "alerts": [alert],
    }


def deliver(registry: Registry, body: dict[str, Any], rules: Environment) -> WebhookResult:
    return handle_webhook(registry, ENV, parse_webhook(body), rules=lambda: rules)


def actions(result: WebhookResult) -> list[str]:
    return [o.action for o in result.alerts]


def production(registry: Registry) -> str | None:
    release = registry.get_alias(ENV, "production")
    return release.ref if release is not None else None


def test_an_alert_for_production_rolls_it_back_once(registry: Registry) -> None:
    # When the alert names the production release, in an env with on_alert: rollback
    result = deliver(registry, webhook(version=NEW), ROLLBACK)
    # Then production moves back, the alert kept as the reason, as `llmship rollback` does
    assert actions(result) == ["rollback"]
    assert result.alerts[0].detail == f"production {NEW} -> {OLD}"
    assert production(registry) == OLD
    move = registry.alias_history(ENV, "production")[-1]
    assert (move.from_ref, move.to_ref) == (NEW, OLD)
    assert (move.actor, move.reason) == ("alertmanager", "alert HighErrorRate: 5xx above 10%")
    [recorded] = registry.list_alert_actions(ENV)
    assert (recorded.alertname, recorded.ref, recorded.action) == ("HighErrorRate", NEW, "rollback")
    assert [e.message for e in registry.events(kind="alert.rollback")] == [
        f"alert HighErrorRate for {NEW} in {ENV}: production {NEW} -> {OLD}"
    ]
    # When Alertmanager delivers the same firing again (repeat_interval, a retry)
    again = deliver(registry, webhook(version=NEW), ROLLBACK)
    # Then nothing changes: production is not moved back a second time
    assert actions(again) == ["repeated"]
    assert "handled before: rollback" in again.alerts[0].detail
    assert production(registry) == OLD
    assert len(registry.alias_history(ENV, "production")) == 3
    assert len(registry.list_alert_actions(ENV)) == 1
    # and a new firing for the release that is no longer production changes nothing
    later = deliver(registry, webhook(version=NEW, starts="2026-12-01T11:00:00Z"), ROLLBACK)
    assert actions(later) == ["ignored"]
    assert later.alerts[0].detail == f"{NEW} is not production in {ENV} ({OLD} is)"
    assert production(registry) == OLD


def test_the_version_label_alone_names_the_release(registry: Registry) -> None:
    result = deliver(registry, webhook(model_version="1.1.0", env=ENV), ROLLBACK)
    assert actions(result) == ["rollback"]
    assert production(registry) == OLD


def test_with_on_alert_notify_the_alert_is_only_recorded(registry: Registry) -> None:
    result = deliver(registry, webhook(version=NEW), NOTIFY)
    assert actions(result) == ["notify"]
    assert production(registry) == NEW
    [recorded] = registry.list_alert_actions(ENV)
    assert (recorded.action, recorded.ref) == ("notify", NEW)
    assert "on_alert: notify" in recorded.outcome
    assert len(registry.events(kind="alert.notify")) == 1
    assert actions(deliver(registry, webhook(version=NEW), NOTIFY)) == ["repeated"]
    assert len(registry.list_alert_actions(ENV)) == 1


def test_a_resolved_alert_does_nothing(registry: Registry) -> None:
    result = deliver(registry, webhook("resolved", version=NEW), ROLLBACK)
    assert actions(result) == ["none"]
    assert result.alerts[0].detail == "resolved: changes nothing"
    assert production(registry) == NEW
    assert registry.list_alert_actions() == []


def test_an_alert_for_a_release_that_is_not_production_changes_nothing(
    registry: Registry,
) -> None:
    result = deliver(registry, webhook(version=OLD), ROLLBACK)
    assert actions(result) == ["ignored"]
    assert production(registry) == NEW
    [recorded] = registry.list_alert_actions(ENV)
    assert (recorded.action, recorded.ref) == ("ignored", OLD)
    assert recorded.outcome == f"{OLD} is not production in {ENV} ({NEW} is)"


def test_alerts_for_another_env_or_without_a_release_are_not_ours(registry: Registry) -> None:
    other_env = deliver(registry, webhook(version=NEW, env="staging"), ROLLBACK)
    no_release = deliver(registry, webhook(), ROLLBACK)
    not_rollback = deliver(registry, webhook(version=NEW, action="page"), ROLLBACK)
    assert actions(other_env) + actions(no_release) + actions(not_rollback) == ["none"] * 3
    assert "not labelled action=rollback" in not_rollback.alerts[0].detail
    assert production(registry) == NEW
    assert registry.list_alert_actions() == []


def test_with_nothing_to_go_back_to_the_alert_is_recorded(tmp_path: Path) -> None:
    with chat_registry(tmp_path / "first.db", ("1.0.0",), env=ENV) as registry:
        result = deliver(registry, webhook(version=OLD), ROLLBACK)
        assert actions(result) == ["ignored"]
        assert "no earlier release than chat@1.0.0" in result.alerts[0].detail
        assert production(registry) == OLD


def test_during_a_rollout_an_alert_aborts_it_and_production_stays(registry: Registry) -> None:
    spec = parse_rollout({"name": "canary", "strategy": {"canary": {"steps": [{"setWeight": 20}]}}})
    record = ops.start(registry, spec, NEWER, env=ENV, actor="ci", force=True, reason="test")
    # An alert for production (the rollout's stable) changes nothing while it runs
    stable = deliver(registry, webhook(version=NEW), ROLLBACK)
    assert actions(stable) == ["ignored"]
    assert "rollout canary runs in prod" in stable.alerts[0].detail
    # one for its candidate aborts it, as before
    candidate = deliver(registry, webhook(version=NEWER, starts="2026-12-01T10:05:00Z"), ROLLBACK)
    assert actions(candidate) == ["abort"]
    assert candidate.aborted == ["canary"]
    assert [i.kind for i in registry.pending_rollout_intents(record.id)] == ["abort"]
    assert production(registry) == NEW


def test_the_registry_moves_nothing_when_production_moved_meanwhile(registry: Registry) -> None:
    # A webhook read production (1.1.0), then someone moved it before the rollback
    registry.set_alias(ENV, "production", NEWER, actor="bob", reason="hotfix")
    recorded = registry.record_alert_action(
        ENV,
        dedupe_key="k1",
        alertname="HighErrorRate",
        ref=NEW,
        action="rollback",
        outcome="",
        rollback_to=OLD,
        reason="alert HighErrorRate",
    )
    assert recorded is not None
    assert (recorded.action, recorded.outcome) == (
        "ignored",
        f"{NEW} is no longer production in {ENV} ({NEWER})",
    )
    assert production(registry) == NEWER
    again = registry.record_alert_action(
        ENV, dedupe_key="k1", alertname="HighErrorRate", ref=NEW, action="notify", outcome="x"
    )
    assert again is None
    assert registry.alert_action(ENV, "k1") == recorded


def test_the_gateway_webhook_reads_on_alert_from_llmship_yaml(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given llmship.yaml saying prod rolls back on alerts, and prod's gateway
    config = tmp_path / "llmship.yaml"
    config.write_text(yaml.safe_dump({"environments": {"prod": {"on_alert": "rollback"}}}))
    monkeypatch.setenv("LLMSHIP_CONFIG", str(config))
    settings = Settings(home=tmp_path, env=ENV, admin_token=TOKEN, policy_refresh_interval=3600)
    app = create_app(registry, settings, rng=random.Random(0))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(app) as client:
        # When Alertmanager posts an alert for production
        r = client.post("/api/v1/alerts", json=webhook(version=NEW), headers=headers)
        # Then the answer says it rolled production back
        assert r.status_code == 200, r.text
        assert r.json()["alerts"] == [
            {
                "alert": "HighErrorRate",
                "action": "rollback",
                "release": NEW,
                "rollout": None,
                "detail": f"production {NEW} -> {OLD}",
            }
        ]
        assert production(registry) == OLD
        again = client.post("/api/v1/alerts", json=webhook(version=NEW), headers=headers)
        assert again.json()["repeated"] == 1
        assert production(registry) == OLD


def test_alerts_list_shows_what_each_alert_did(cli_home: Path, run: Run) -> None:
    """``llmship alerts list``: the rollback, then the later firing it ignored, newest
    first; filtered by action; an unknown action is bad input."""
    with chat_registry(cli_home / "state" / "registry.db", ("1.0.0", "1.1.0"), env=ENV) as reg:
        assert "no alert has acted" in run("alerts", "list").output
        reg.set_alias(ENV, "production", NEW, actor="ci", reason="promoted")
        deliver(reg, webhook(version=NEW), ROLLBACK)
        deliver(reg, webhook(version=NEW, starts="2026-12-01T11:00:00Z"), ROLLBACK)

    table = run("alerts", "list", "--env", ENV).output
    assert table.index("ignored") < table.index("rollback")  # newest first
    assert "chat@1.1.0" in table
    rows = json.loads(run("alerts", "list", "--format", "json").output)
    assert [(r["action"], r["outcome"]) for r in rows] == [
        ("ignored", f"{NEW} is not production in {ENV} ({OLD} is)"),
        ("rollback", f"production {NEW} -> {OLD}"),
    ]
    rows = json.loads(run("alerts", "list", "--action", "rollback", "--format", "json").output)
    assert [(r["env"], r["alert"], r["release"], r["outcome"]) for r in rows] == [
        (ENV, "HighErrorRate", NEW, f"production {NEW} -> {OLD}")
    ]
    assert json.loads(run("alerts", "list", "--env", "staging", "-f", "json").output) == []
    assert "'undo' is not one of" in run("alerts", "list", "--action", "undo", code=2).output
