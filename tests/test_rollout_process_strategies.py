"""Blue-green, A/B experiment and shadow rollouts by the controller as a real process,
through a real gateway, under client load (the stack of tests/_rollout_stack.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from _rollout_stack import (
    ENV,
    GOOD,
    STABLE,
    Load,
    Stack,
    wait_until,
)

pytest_plugins = ["_rollout_stack_fixtures"]  # the fixtures stack (one per file) and fresh
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("rollout_process")]  # one stack, one worker


def test_blue_green_previews_switches_and_switches_back_when_it_fails_after(
    fresh: Stack, tmp_path: Path
) -> None:
    stack = fresh
    # Given a blue-green rollout: smoke checks on the preview, automatic switch after 4 s,
    # and an error-rate analysis after the switch
    spec = {
        "name": "blue-green",
        "strategy": {
            "blueGreen": {
                "autoPromotionEnabled": True,
                "autoPromotionSeconds": 4,
                "prePromotionAnalysis": {"templates": [{"templateName": "smoke"}]},
                "postPromotionAnalysis": {"templates": [{"templateName": "live"}]},
            }
        },
        "analysisTemplates": [
            {
                "name": "smoke",
                "metrics": [
                    {
                        "name": "preview-errors",
                        "initialDelay": "2s",
                        "successCondition": "result <= 0.01",
                        "provider": {
                            "builtin": {"metric": "error_rate", "window": "2s", "minSamples": 3}
                        },
                    }
                ],
            },
            {
                "name": "live",
                "metrics": [
                    {
                        "name": "error-rate",
                        "interval": "1s",
                        "count": 30,
                        "inconclusiveLimit": 30,
                        "successCondition": "result <= 0.05",
                        "provider": {"builtin": {"metric": "error_rate", "window": "2s"}},
                    }
                ],
            },
        ],
    }
    since = stack.last_event_id()
    preview = Load(stack.gateway.url, clients=1, headers={"X-Llmship-Variant": "preview"})
    # When it runs while clients call, some of them on the preview route
    with Load(stack.gateway.url, clients=2) as load, preview:
        rollout_id = stack.start_rollout(tmp_path, spec, GOOD)
        wait_until(lambda: stack.traffic().get("preview") == GOOD, "the preview route")
        previewed_at = time.monotonic()
        wait_until(lambda: stack.production() == GOOD, "the automatic switch", timeout=60)
        switched_at = time.monotonic()
        # Then until the switch only preview requests reached the candidate
        assert load.versions(previewed_at + 1.0, switched_at - 0.5) == {STABLE}
        assert preview.versions(previewed_at + 1.0, switched_at - 0.5) == {GOOD}
        stack.wait_gateway_stable(GOOD)
        # When the candidate starts failing under all the traffic
        stack.good.failing = True
        record = stack.wait_phase(rollout_id, "Aborted", "Healthy", timeout=60)
        wait_until(lambda: stack.production() == STABLE, "the switch back")
    # Then the post-promotion analysis failed and production went back to stable
    assert record.phase == "Aborted", (record.message, stack.events(rollout_id))
    assert "post-promotion analysis" in (record.abort_reason or ""), record.abort_reason
    measurements = stack.registry.list_measurements(rollout_id)
    assert [m.phase for m in measurements if m.metric == "preview-errors"] == ["Successful"]
    assert "Failed" in [m.phase for m in measurements if m.metric == "error-rate"]
    history = stack.registry.alias_history(ENV, "production")
    there, back = history[-2:]
    assert (there.from_ref, there.to_ref, there.actor) == (STABLE, GOOD, "controller")
    assert "automatic promotion" in there.reason
    # (autoPromotionSeconds after the preview, by the registry's clock, give or take a pass)
    [shown] = [
        e
        for e in stack.registry.events(limit=1000, kind="traffic.changed")
        if e.id > since and e.data.get("preview") == GOOD
    ][-1:]
    assert (there.at - shown.at).total_seconds() >= 3.5
    assert (back.from_ref, back.to_ref, back.actor) == (GOOD, STABLE, "controller")
    assert stack.traffic().get("preview") is None


def ask(http: httpx.Client, url: str, user: str) -> tuple[str, str]:
    """One /predict as ``user``: (version, query id)."""
    r = http.post(
        f"{url}/predict", json={"prompt": "Hi", "max_new_tokens": 2}, headers={"X-User-Id": user}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query_id"] == r.headers["x-request-id"]
    return body["version"], body["query_id"]


@pytest.mark.parametrize(
    ("candidate_ratings", "phase", "production"),
    [((4, 5), "Healthy", GOOD), ((1, 2), "Aborted", STABLE)],
    ids=["better-rated-wins", "worse-rated-loses"],
)
def test_an_ab_experiment_is_decided_by_feedback_ratings(
    fresh: Stack,
    tmp_path: Path,
    candidate_ratings: tuple[int, int],
    phase: str,
    production: str,
) -> None:
    stack = fresh
    # Given a 50/50 experiment for 12 s decided by mean rating (Mann-Whitney, alpha 0.05)
    spec = {
        "name": f"ab-{phase.lower()}",
        "strategy": {
            "experiment": {
                "duration": "12s",
                "variants": [{"name": "A", "weight": 50}, {"name": "B", "weight": 50}],
                "decision": {"metric": "feedback_mean", "alpha": 0.05, "minSamples": 8},
            }
        },
    }
    rollout_id = stack.start_rollout(tmp_path, spec, GOOD)
    wait_until(lambda: stack.traffic().get("experiment") is not None, "the experiment")
    stack.wait_gateway_synced()
    # When users ask, each keeps their variant, and rate what they got: stable's
    # answers 2-3, the candidate's as the case says (the analysis counts each user once)
    seen: dict[str, str] = {}
    rated = {STABLE: 0, GOOD: 0}
    with httpx.Client(timeout=60) as http:
        user = 0
        while min(rated.values()) < 10 and stack.rollout(rollout_id).step_index == 0:
            name = f"user-{user}"
            user += 1
            for _ in range(2):
                version, query_id = ask(http, stack.gateway.url, name)
                assert seen.setdefault(name, version) == version, f"{name} changed variant"
                scale = candidate_ratings if version == GOOD else (2, 3)
                rating = scale[rated[version] % 2]
                r = http.post(
                    f"{stack.gateway.url}/feedback", json={"query_id": query_id, "rating": rating}
                )
                assert r.status_code in (200, 201), r.text
            rated[version] += 1  # users who rated
    assert min(rated.values()) >= 10, f"too few users rated in the experiment: {rated}"
    assert set(seen.values()) == {STABLE, GOOD}
    # Then the decision after the duration follows the ratings
    record = stack.wait_phase(rollout_id, "Healthy", "Aborted", "Paused", timeout=60)
    assert record.phase == phase, (record.message, stack.events(rollout_id))
    stack.wait_production(production)
    [decision] = stack.registry.list_measurements(rollout_id)
    assert decision.metric == "feedback-mean"
    assert decision.value < 0.05  # the p-value
    assert "p=" in decision.message
    wait_until(lambda: stack.traffic().get("experiment") is None, "the experiment to end")


def shadow_spec(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "strategy": {
            "shadow": {
                "percent": 100,
                "duration": "6s",
                "analysis": {"templates": [{"templateName": "similar"}]},
            }
        },
        "analysisTemplates": [
            {
                "name": "similar",
                "metrics": [
                    {
                        "name": "similarity",
                        "interval": "1s",
                        "inconclusiveLimit": 30,
                        "successCondition": "result >= 0.6",
                        "provider": {
                            "builtin": {
                                "metric": "shadow_similarity",
                                "window": "2s",
                                "minSamples": 2,
                            }
                        },
                    }
                ],
            }
        ],
    }


@pytest.mark.parametrize(
    ("same_answers", "phase", "production"),
    [(True, "Healthy", GOOD), (False, "Aborted", STABLE)],
    ids=["similar-is-promoted", "different-is-aborted"],
)
def test_a_shadow_rollout_is_decided_by_answer_similarity(
    fresh: Stack, tmp_path: Path, same_answers: bool, phase: str, production: str
) -> None:
    stack = fresh
    # Given a candidate that answers exactly what stable answers, or something else
    r = httpx.post(
        f"{stack.gateway.url}/predict", json={"prompt": "Hi", "max_new_tokens": 2}, timeout=60
    )
    assert r.status_code == 200, r.text
    stable_answer = r.json()["response"]
    stack.good.text = stable_answer if same_answers else "entirely unrelated words"
    hits = stack.good.hits
    # When it shadows all requests for 6 s under client load
    with Load(stack.gateway.url) as load:
        rollout_id = stack.start_rollout(tmp_path, shadow_spec(f"shadow-{phase.lower()}"), GOOD)
        record = stack.wait_phase(rollout_id, "Healthy", "Aborted", "Paused", timeout=60)
        done_at = time.monotonic()
    # Then the similarity decided
    assert record.phase == phase, (record.message, stack.events(rollout_id))
    stack.wait_production(production)
    assert stack.good.hits > hits  # the candidate did see the mirrored requests
    measured = stack.registry.list_measurements(rollout_id)
    values = [m.value for m in measured if m.phase in ("Successful", "Failed")]
    assert values, stack.events(rollout_id)
    if same_answers:
        assert min(values) == pytest.approx(1.0)
    else:
        assert max(values) < 0.6
    # and every client got stable's answer, with no error
    assert load.errors() == []
    early = [(round(t - done_at, 2), v) for t, _, v in load.answers if v != STABLE]
    assert load.versions(until=done_at - 1.0) == {STABLE}, (early, stack.events(rollout_id))
