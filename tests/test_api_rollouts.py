"""The dashboard's rollout API (``/api/v1/rollouts...``) over a real SQLite registry:
lists and pages, one rollout with its steps, analysis and allowed actions, the timeline,
the measurements, and the actions recorded as the CLI records them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from _dashboard_api import AUTH, check_read_access, client_for
from _registry import chat_registry
from llmship.registry import Registry, RolloutRecord
from llmship.rollout import ops, parse_rollout
from llmship.rollout.records import update_of
from llmship.rollout.state import AnalysisRun, RolloutPhase, RolloutState

ERRORS = {
    "name": "errors",
    "metrics": [
        {
            "name": "error-rate",
            "successCondition": "result <= 0.05",
            "failureCondition": "result > 0.2",
            "provider": {"builtin": {"metric": "error_rate"}},
        },
        {"name": "p95", "provider": {"builtin": {"metric": "latency_p95", "compare": "stable"}}},
    ],
}
CANARY = parse_rollout(
    {
        "name": "canary-x",
        "strategy": {
            "canary": {
                "steps": [
                    {"setWeight": 20},
                    {"pause": {"duration": "30s"}},
                    {"pause": {}},
                    {"analysis": {"templates": [{"templateName": "errors"}]}},
                    {"setWeight": 100},
                ],
                "analysis": {"templates": [{"templateName": "errors"}]},
            }
        },
        "analysisTemplates": [ERRORS],
    }
)
BLUE_GREEN = parse_rollout({"name": "bg", "strategy": {"blueGreen": {}}})


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    monkeypatch.chdir(tmp_path)  # no llmship.yaml: the default environments
    with chat_registry(tmp_path / "r.db", ("1.0.0", "1.1.0", "2.0.0")) as reg:
        yield reg


@pytest.fixture
def client(registry: Registry, tmp_path: Path) -> Iterator[TestClient]:
    with client_for(registry, tmp_path) as c:
        yield c


def start(registry: Registry, env: str = "dev", candidate: str = "chat@1.1.0") -> RolloutRecord:
    return ops.start(registry, CANARY, candidate, env=env, actor="ann")


def aborted(registry: Registry, env: str = "dev", candidate: str = "chat@1.1.0") -> RolloutRecord:
    """A rollout of ``candidate`` in ``env``, aborted by a controller pass."""
    record = start(registry, env, candidate)
    return ops.abort_and_wait(registry, env, record, actor="bob", reason="bad", wait_s=10)


def progressing(registry: Registry, step_index: int) -> RolloutRecord:
    """A canary at ``step_index`` with a background analysis run (made as the controller
    stores it)."""
    state = RolloutState(
        env="dev",
        name=CANARY.name,
        spec=CANARY,
        candidate="chat@1.1.0",
        stable="chat@1.0.0",
        phase=RolloutPhase.PROGRESSING,
        step_index=step_index,
        step_applied=True,
        weight=20.0,
        runs=(
            AnalysisRun(
                name="background.1",
                role="background",
                ref="strategy.canary.analysis",
                started_at=0.0,
            ),
        ),
    )
    return registry.create_rollout(
        "dev",
        name=CANARY.name,
        strategy="canary",
        spec=CANARY.to_dict(),
        candidate="chat@1.1.0",
        stable="chat@1.0.0",
        update=update_of(state),
        actor="ann",
    )


def actions(detail: dict[str, Any]) -> dict[str, tuple[bool, str | None]]:
    return {a["action"]: (a["allowed"], a["reason"]) for a in detail["actions"]}


# -- lists ------------------------------------------------------------------------------


def test_rollouts_are_listed_newest_first_a_page_at_a_time(
    registry: Registry, client: TestClient
) -> None:
    # Given an aborted rollout in dev, and running ones in staging and dev
    for env in ("staging",):
        registry.set_alias(env, "production", "chat@1.0.0", actor="ci", reason="launch")
    first = aborted(registry)
    second = start(registry, "staging")
    third = start(registry, "dev", "chat@2.0.0")
    # When the list is read a page of two at a time
    page = client.get("/api/v1/rollouts", params={"limit": 2})
    assert page.status_code == 200, page.text
    body = page.json()
    # Then the newest come first, with the total
    assert [r["id"] for r in body["items"]] == [third.id, second.id]
    assert (body["total"], body["limit"], body["offset"]) == (3, 2, 0)
    rest = client.get("/api/v1/rollouts", params={"limit": 2, "offset": 2}).json()
    assert [r["id"] for r in rest["items"]] == [first.id]
    item = rest["items"][0]
    assert item["phase"] == "Aborted" and item["active"] is False
    assert set(item) >= {
        "id", "name", "env", "strategy", "candidate", "stable", "phase", "step_index",
        "paused", "active", "created_at", "created_by", "updated_at",
    }  # fmt: skip
    assert item["created_at"].endswith("+00:00")
    # And the filters keep one environment, or only running or finished rollouts
    dev = client.get("/api/v1/rollouts", params={"env": "dev"}).json()
    assert [r["id"] for r in dev["items"]] == [third.id, first.id]
    running = client.get("/api/v1/rollouts", params={"active": "true"}).json()
    assert [r["id"] for r in running["items"]] == [third.id, second.id]
    done = client.get("/api/v1/rollouts", params={"active": "false"}).json()
    assert [r["id"] for r in done["items"]] == [first.id] and done["total"] == 1
    # A page size out of range is a 400 or 422 that says so, never a 500
    assert client.get("/api/v1/rollouts", params={"limit": 0}).status_code in (400, 422)


# -- one rollout --------------------------------------------------------------------------


def test_a_new_rollout_shows_its_steps_and_what_may_be_done(
    registry: Registry, client: TestClient
) -> None:
    record = start(registry)
    r = client.get(f"/api/v1/rollouts/{record.id}")
    assert r.status_code == 200, r.text
    detail = r.json()
    assert detail["phase"] == "Pending" and detail["active"] is True
    assert detail["strategy"] == "canary" and detail["candidate"] == "chat@1.1.0"
    assert detail["spec"]["name"] == "canary-x"
    assert [(s["kind"], s["text"], s["state"]) for s in detail["steps"]] == [
        ("setWeight", "weight 20%", "pending"),
        ("pause", "pause 30s", "pending"),
        ("pause", "pause until promoted", "pending"),
        ("analysis", "analysis errors", "pending"),
        ("setWeight", "weight 100%", "pending"),
    ]
    assert detail["weights"] == {"chat@1.0.0": 100.0}
    assert detail["traffic"]["stable"] == "chat@1.0.0"
    allowed = actions(detail)
    assert list(allowed) == ["promote", "pause", "resume", "abort", "retry", "undo"]
    assert allowed["pause"] == (True, None) and allowed["abort"] == (True, None)
    promote_ok, why = allowed["promote"]
    assert not promote_ok and why is not None and why.startswith("This rollout is at step 1/5")
    assert allowed["resume"] == (False, "This rollout is not paused (Pending)")
    assert allowed["retry"] == (
        False,
        "This rollout is Pending: only an Aborted rollout can be retried",
    )
    undo_ok, why = allowed["undo"]
    assert not undo_ok and why is not None and "abort it instead" in why


def test_unknown_rollouts_are_404(client: TestClient) -> None:
    for path in ("/api/v1/rollouts/999", "/api/v1/rollouts/999/events"):
        r = client.get(path)
        assert r.status_code == 404, r.text
        assert "no rollout with id 999" in r.json()["error"]["message"]
    assert client.get("/api/v1/rollouts/999/measurements").status_code == 404
    assert client.post("/api/v1/rollouts/999/abort", headers=AUTH).status_code == 404


def test_the_analysis_shows_each_metric_with_its_condition_and_measurements(
    registry: Registry, client: TestClient
) -> None:
    # Given a canary at its pause step with a background run that measured twice
    record = progressing(registry, step_index=1)
    for value, minute in ((0.01, 1), (0.02, 2)):
        registry.record_measurement(
            record.id,
            "background.1",
            "error-rate",
            phase="Successful",
            value=value,
            message="",
            started_at=None,
            at=datetime(2026, 12, 1, 10, minute, tzinfo=timezone.utc),
        )
    # When the rollout is read
    detail = client.get(f"/api/v1/rollouts/{record.id}").json()
    # Then the steps before are done and its step is current
    assert [s["state"] for s in detail["steps"]] == [
        "done", "current", "pending", "pending", "pending",
    ]  # fmt: skip
    assert detail["step"] == "step 2/5: pause 30s"
    # And each metric of the run has its condition; the one not measured yet is listed
    (run,) = detail["runs"]
    assert (run["name"], run["role"], run["phase"]) == ("background.1", "background", "Running")
    metrics = {m["metric"]: m for m in run["metrics"]}
    assert metrics["error-rate"]["condition"] == "success: result <= 0.05; failure: result > 0.2"
    assert metrics["error-rate"]["measurements"] == 2
    assert metrics["error-rate"]["last_value"] == 0.02
    assert metrics["p95"]["measurements"] == 0
    assert metrics["p95"]["condition"] == "not significantly worse than stable (alpha 0.05)"
    # And a timed pause is promoted past, not resumed
    allowed = actions(detail)
    assert allowed["promote"] == (True, None)
    assert allowed["resume"] == (False, "This rollout is not paused (Progressing)")
    # The measurements are a page, oldest first, by run and metric
    page = client.get(f"/api/v1/rollouts/{record.id}/measurements", params={"limit": 1}).json()
    assert page["total"] == 2 and page["items"][0]["value"] == 0.01
    assert set(page["items"][0]) == {"run", "metric", "phase", "value", "message", "at"}
    second = client.get(
        f"/api/v1/rollouts/{record.id}/measurements", params={"limit": 1, "offset": 1}
    ).json()
    assert second["items"][0]["value"] == 0.02
    url = f"/api/v1/rollouts/{record.id}/measurements"
    assert client.get(url, params={"run": "step2.1"}).json()["total"] == 0
    assert client.get(url, params={"metric": "p95"}).json()["total"] == 0
    assert (
        client.get(url, params={"run": "background.1", "metric": "error-rate"}).json()["total"] == 2
    )


def test_blue_green_lists_its_stages(registry: Registry, client: TestClient) -> None:
    record = ops.start(registry, BLUE_GREEN, "chat@1.1.0", env="dev", actor="ann")
    detail = client.get(f"/api/v1/rollouts/{record.id}").json()
    assert [(s["kind"], s["state"]) for s in detail["steps"]] == [
        ("stage", "pending"),
        ("stage", "pending"),
    ]
    assert detail["steps"][0]["text"].startswith("preview: chat@1.1.0 on the preview route")


@pytest.mark.parametrize(
    ("strategy", "first"),
    [
        (
            {
                "experiment": {
                    "duration": "1m",
                    "variants": [
                        {"name": "control", "weight": 50, "release": "stable"},
                        {"name": "treatment", "weight": 50, "release": "candidate"},
                    ],
                    "decision": {"metric": "latency_p50"},
                }
            },
            "experiment running for 1m (control 50%, treatment 50%)",
        ),
        (
            {
                "shadow": {
                    "percent": 10,
                    "duration": "30s",
                    "analysis": {"templates": [{"templateName": "errors"}]},
                }
            },
            "mirroring 10% of requests for 30s",
        ),
    ],
)
def test_the_other_strategies_list_their_stages(
    registry: Registry, client: TestClient, strategy: dict[str, Any], first: str
) -> None:
    spec = parse_rollout({"name": "s", "strategy": strategy, "analysisTemplates": [ERRORS]})
    record = ops.start(registry, spec, "chat@1.1.0", env="dev", actor="ann")
    r = client.get(f"/api/v1/rollouts/{record.id}")
    assert r.status_code == 200, r.text
    steps = r.json()["steps"]
    assert [s["kind"] for s in steps] == ["stage", "stage"] and steps[0]["text"] == first


# -- actions ------------------------------------------------------------------------------


def test_an_abort_is_recorded_as_an_intent_by_the_actor(
    registry: Registry, client: TestClient
) -> None:
    record = start(registry)
    r = client.post(
        f"/api/v1/rollouts/{record.id}/abort",
        json={"reason": "errors up"},
        headers={**AUTH, "X-Llmship-Actor": "alice"},
    )
    assert r.status_code == 202, r.text
    body = r.json()
    # recorded as the token's identity, the header only adding a display name
    who = "admin-api (alice)"
    assert body["intent"]["kind"] == "abort" and body["intent"]["actor"] == who
    assert body["intent"]["reason"] == "errors up"
    assert "abort of rollout canary-x" in body["message"]
    # The controller applies it: it waits as an intent, and the rollout says abort is asked
    (intent,) = registry.pending_rollout_intents(record.id)
    assert (intent.kind, intent.actor, intent.reason) == ("abort", who, "errors up")
    assert actions(body["rollout"])["abort"] == (False, "This rollout is already Aborted")
    # And the timeline has the request, with who asked
    events = client.get(f"/api/v1/rollouts/{record.id}/events").json()
    assert [e["kind"] for e in events["items"]] == ["rollout.created", "rollout.requested"]
    assert events["items"][1]["actor"] == who
    assert f"abort requested by {who}: errors up" in events["items"][1]["message"]
    assert set(events["items"][0]) == {"id", "at", "actor", "kind", "message", "data"}


def test_pause_resume_and_a_full_promotion_are_intents(
    registry: Registry, client: TestClient
) -> None:
    record = start(registry)
    url = f"/api/v1/rollouts/{record.id}"
    paused = client.post(f"{url}/pause", headers=AUTH)  # no body: no reason given
    assert paused.status_code == 202, paused.text
    assert paused.json()["intent"]["actor"] == "admin-api"
    assert actions(paused.json()["rollout"])["resume"] == (True, None)
    # A second pause is refused with the reason the button shows
    again = client.post(f"{url}/pause", headers=AUTH)
    assert again.status_code == 409
    assert again.json()["error"]["message"] == ("This rollout is already paused; resume it")
    assert client.post(f"{url}/resume", headers=AUTH).status_code == 202
    full = client.post(f"{url}/promote", json={"full": True, "reason": "ship"}, headers=AUTH)
    assert full.status_code == 202, full.text
    assert full.json()["intent"]["kind"] == "promoteFull"
    kinds = [i.kind for i in registry.pending_rollout_intents(record.id)]
    assert kinds == ["pause", "resume", "promoteFull"]


def test_an_action_the_phase_refuses_is_a_409_with_the_reason(
    registry: Registry, client: TestClient
) -> None:
    record = start(registry)
    r = client.post(f"/api/v1/rollouts/{record.id}/retry", headers=AUTH)
    assert r.status_code == 409
    assert r.json()["error"]["message"] == (
        "This rollout is Pending: only an Aborted rollout can be retried"
    )
    assert registry.pending_rollout_intents(record.id) == []


def test_an_unknown_action_or_a_bad_body_is_a_400(registry: Registry, client: TestClient) -> None:
    record = start(registry)
    r = client.post(f"/api/v1/rollouts/{record.id}/explode", headers=AUTH)
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert "promote, pause, resume, abort, retry, undo" in message
    too_long = client.post(
        f"/api/v1/rollouts/{record.id}/abort", json={"reason": "x" * 501}, headers=AUTH
    )
    assert too_long.status_code in (400, 422)
    assert registry.pending_rollout_intents(record.id) == []


def test_retry_and_undo_after_an_abort(registry: Registry, client: TestClient) -> None:
    # Given an aborted rollout, and production moved by hand since
    record = aborted(registry)
    url = f"/api/v1/rollouts/{record.id}"
    allowed = actions(client.get(url).json())
    assert allowed["retry"] == (True, None)
    assert allowed["undo"] == (False, "production in dev has no earlier release than chat@1.0.0")
    refused = client.post(f"{url}/undo", headers=AUTH)
    assert refused.status_code == 409
    assert "no earlier release" in refused.json()["error"]["message"]
    registry.set_alias("dev", "production", "chat@2.0.0", actor="ci", reason="hotfix")
    detail = client.get(url).json()
    undo = next(a for a in detail["actions"] if a["action"] == "undo")
    assert undo["allowed"] and undo["detail"] == (
        "production in dev moves from chat@2.0.0 back to chat@1.0.0"
    )
    # When undo is asked, production moves back at once, with the reason
    r = client.post(f"{url}/undo", json={"reason": "bad hotfix"}, headers=AUTH)
    assert r.status_code == 202, r.text
    assert r.json()["intent"] is None
    assert r.json()["message"] == "production in dev: chat@2.0.0 -> chat@1.0.0"
    move = registry.alias_history("dev", "production")[-1]
    assert (move.to_ref, move.actor, move.reason) == (
        "chat@1.0.0",
        "admin-api",
        "rollout undo: bad hotfix",
    )
    # And a retry is recorded for the controller
    retried = client.post(f"{url}/retry", headers=AUTH)
    assert retried.status_code == 202 and retried.json()["intent"]["kind"] == "retry"


# -- the timeline ---------------------------------------------------------------------------


def test_the_timeline_is_a_page_oldest_first(registry: Registry, client: TestClient) -> None:
    record = start(registry)
    for kind in ("pause", "resume", "pause"):
        ops.request(registry, "dev", str(record.id), kind, actor="bob")
    url = f"/api/v1/rollouts/{record.id}/events"
    first = client.get(url, params={"limit": 3}).json()
    assert first["total"] == 4
    assert [e["kind"] for e in first["items"]] == [
        "rollout.created", "rollout.requested", "rollout.requested",
    ]  # fmt: skip
    rest = client.get(url, params={"limit": 3, "offset": 3}).json()
    assert len(rest["items"]) == 1 and "pause requested by bob" in rest["items"][0]["message"]
    assert rest["items"][0]["id"] > first["items"][-1]["id"]


# -- who may read and act -------------------------------------------------------------------


def test_the_token_is_checked_before_the_rollout_is_looked_up(client: TestClient) -> None:
    assert client.post("/api/v1/rollouts/999/abort").status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.post("/api/v1/rollouts/999/abort", headers=wrong).status_code == 403
    assert client.post("/api/v1/rollouts/999/explode").status_code == 401


def test_reads_follow_read_access(registry: Registry, tmp_path: Path) -> None:
    record = start(registry)
    url = f"/api/v1/rollouts/{record.id}"
    check_read_access(registry, tmp_path, [url, f"{url}/events", "/api/v1/rollouts"])


def test_every_rollout_route_is_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "get" in paths["/api/v1/rollouts"]
    assert "get" in paths["/api/v1/rollouts/{id}"]
    assert "get" in paths["/api/v1/rollouts/{id}/events"]
    assert "get" in paths["/api/v1/rollouts/{id}/measurements"]
    assert "post" in paths["/api/v1/rollouts/{id}/{action}"]
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert {"RolloutDetail", "RolloutSummary", "ActionView", "StepView"} <= set(schemas)
