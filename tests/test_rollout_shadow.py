"""The shadow strategy run by the controller, decided by answer similarity."""

from __future__ import annotations

import json

import pytest

from _controller import (
    CANDIDATE,
    STABLE,
    World,
)
from llmship.analysis import VersionStats

pytest_plugins = ["_controller_fixtures"]  # the fixtures registry and world


# -- shadow -------------------------------------------------------------------------------

SHADOW = {
    "name": "sh",
    "strategy": {
        "shadow": {
            "percent": 10,
            "duration": "20s",
            "analysis": {"templates": [{"templateName": "similar"}]},
        }
    },
    "analysisTemplates": [
        {
            "name": "similar",
            "metrics": [
                {
                    "name": "similarity",
                    "interval": "5s",
                    "failureLimit": 1,
                    "successCondition": "result >= 0.6",
                    "provider": {"builtin": {"metric": "shadow_similarity", "minSamples": 5}},
                }
            ],
        }
    ],
}


@pytest.mark.parametrize(
    ("similarity", "phase", "production"),
    [(0.9, "Healthy", CANDIDATE), (0.2, "Aborted", STABLE)],
)
def test_shadow_verdict_by_similarity(
    world: World, similarity: float, phase: str, production: str
) -> None:
    world.start(SHADOW)
    world.ready()
    world.candidate_stats(VersionStats(requests=20, shadow_similarities=[similarity] * 20))
    world.run(1)
    policy = world.policy()
    assert (policy.shadow, policy.shadow_percent, policy.canary) == (CANDIDATE, 10.0, None)
    world.run(40, until=lambda: world.phase() in ("Healthy", "Aborted"))
    assert world.phase() == phase
    assert world.production() == production
    assert world.policy().shadow is None
    if phase == "Healthy":
        assert world.trace[-1][0] >= 21  # the whole duration first


def test_shadow_mirrors_its_whole_duration_when_the_candidate_is_late(world: World) -> None:
    world.start(SHADOW)
    world.run(25)
    world.ready()
    world.candidate_stats(VersionStats(requests=20, shadow_similarities=[0.9] * 20))
    world.run(1)
    mirrored_at = world.trace[-1][0]
    assert world.policy().shadow == CANDIDATE
    world.run(40, until=lambda: world.phase() != "Progressing")
    assert world.phase() == "Healthy", world.rollout().pause_reason
    assert world.trace[-1][0] - mirrored_at >= 20


def test_shadow_without_any_measurement_is_inconclusive(world: World) -> None:
    spec = json.loads(json.dumps(SHADOW))
    spec["analysisTemplates"][0]["metrics"][0]["interval"] = "1m"
    world.start(spec)
    world.ready()
    world.run(30, until=lambda: world.phase() == "Paused")
    assert world.phase() == "Paused"
    assert "no measurement was taken" in (world.rollout().pause_reason or "")
