"""The A/B experiment strategy run by the controller, decided by feedback ratings over
its duration."""

from __future__ import annotations

import pytest

from _controller import (
    CANDIDATE,
    STABLE,
    T0,
    World,
)
from llmship.analysis import VersionStats

pytest_plugins = ["_controller_fixtures"]  # the fixtures registry and world


# -- experiment ---------------------------------------------------------------------------

EXPERIMENT = {
    "name": "ab",
    "strategy": {
        "experiment": {
            "duration": "20s",
            "variants": [{"name": "A", "weight": 50}, {"name": "B", "weight": 50}],
            "decision": {"metric": "feedback_mean", "minSamples": 30},
        }
    },
}


def ratings(*values: int, n: int = 40) -> VersionStats:
    return VersionStats(requests=n, ratings=[values[i % len(values)] for i in range(n)])


@pytest.mark.parametrize(
    ("candidate", "phase", "production"),
    [
        (ratings(4, 5, 5), "Healthy", CANDIDATE),
        (ratings(1, 2, 2), "Aborted", STABLE),
        (ratings(3, 3, 4), "Paused", STABLE),
    ],
)
def test_experiment_decided_by_ratings(
    world: World, candidate: VersionStats, phase: str, production: str
) -> None:
    world.start(EXPERIMENT)
    world.ready()
    world.stable_stats(ratings(3, 3, 4))
    world.candidate_stats(candidate)
    world.run(1)
    experiment = world.policy().experiment
    assert experiment is not None
    assert [(v.name, v.ref, v.weight) for v in experiment.variants] == [
        ("A", STABLE, 50.0),
        ("B", CANDIDATE, 50.0),
    ]
    world.run(30, until=lambda: world.phase() != "Progressing")
    assert world.phase() == phase
    assert world.production() == production
    [decision] = world.registry.list_measurements(world.rollout().id)
    assert decision.metric == "feedback-mean"
    assert decision.at.timestamp() - T0 == 22  # measured on the pass after the 20s
    if phase != "Paused":
        assert world.policy().experiment is None


def test_the_experiment_lasts_its_duration_from_when_the_candidate_is_ready(
    world: World,
) -> None:
    world.start(EXPERIMENT)
    world.run(25)  # not ready for longer than the experiment's duration
    world.ready()
    world.stable_stats(ratings(3, 3, 4))
    world.candidate_stats(ratings(4, 5, 5))
    world.run(1)
    started = world.trace[-1][0]
    assert world.policy().experiment is not None
    world.run(30, until=lambda: world.phase() != "Progressing")
    [decision] = world.registry.list_measurements(world.rollout().id)
    assert decision.at.timestamp() - T0 - started >= 20
