"""The blue-green strategy run by the controller: a preview, automatic promotion, and
switching back when analysis fails after the switch."""

from __future__ import annotations

from _controller import (
    CANDIDATE,
    STABLE,
    World,
    erroring,
    healthy,
)

pytest_plugins = ["_controller_fixtures"]  # the fixtures registry and world


# -- blue-green ---------------------------------------------------------------------------

SMOKE = {
    "name": "smoke",
    "metrics": [
        {
            "name": "preview-errors",
            "initialDelay": "2s",
            "successCondition": "result <= 0.01",
            "provider": {"builtin": {"metric": "error_rate", "window": "1m"}},
        }
    ],
}
LIVE = {
    "name": "live",
    "metrics": [
        {
            "name": "error-rate",
            "interval": "5s",
            "count": 3,
            "successCondition": "result <= 0.02",
            "provider": {"builtin": {"metric": "error_rate", "window": "30s"}},
        }
    ],
}
BLUE_GREEN = {
    "name": "bg",
    "strategy": {
        "blueGreen": {
            "autoPromotionSeconds": 10,
            "prePromotionAnalysis": {"templates": [{"templateName": "smoke"}]},
            "postPromotionAnalysis": {"templates": [{"templateName": "live"}]},
        }
    },
    "analysisTemplates": [SMOKE, LIVE],
}


def test_blue_green_with_automatic_promotion(world: World) -> None:
    world.start(BLUE_GREEN)
    world.ready()
    world.candidate_stats(healthy())
    world.run(1)
    assert world.policy().preview == CANDIDATE
    assert world.production() == STABLE
    world.run(10, until=lambda: world.production() == CANDIDATE)
    assert world.trace[-1][0] == 11  # autoPromotionSeconds after the preview
    assert world.policy().preview is None
    world.run(30, until=lambda: world.phase() == "Healthy")
    assert world.phase() == "Healthy"
    assert world.production() == CANDIDATE
    history = world.registry.alias_history("dev", "production")
    assert [m.to_ref for m in history] == [STABLE, CANDIDATE]


def test_auto_promotion_counts_from_the_preview_when_the_candidate_is_late(world: World) -> None:
    world.start(BLUE_GREEN)
    world.run(15)  # no ready model server for 15 s: longer than autoPromotionSeconds
    assert world.policy().preview is None
    world.ready()
    world.candidate_stats(healthy())
    world.run(1)
    assert world.policy().preview == CANDIDATE
    preview_at = world.trace[-1][0]
    world.run(20, until=lambda: world.production() == CANDIDATE)
    assert world.trace[-1][0] - preview_at == 10  # a full 10 s in preview first


def test_blue_green_failing_after_the_switch_switches_back(world: World) -> None:
    world.start(BLUE_GREEN)
    world.ready()
    world.candidate_stats(healthy())
    world.run(15, until=lambda: world.production() == CANDIDATE)
    world.candidate_stats(erroring())  # it goes bad under full traffic
    world.run(10, until=lambda: world.phase() == "Aborted")
    record = world.rollout()
    assert record.phase == "Aborted"
    assert "post-promotion analysis" in (record.abort_reason or "")
    assert world.production() == STABLE
    back = world.registry.alias_history("dev", "production")[-1]
    assert (back.from_ref, back.to_ref, back.actor) == (CANDIDATE, STABLE, "controller")
    assert "aborted" in back.reason
