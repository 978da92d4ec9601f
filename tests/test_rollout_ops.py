"""Starting a rollout: what it refuses before anything moves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from _registry import chat_registry
from llmship.errors import ConflictError
from llmship.registry import Registry
from llmship.rollout import ops, parse_rollout
from llmship.routing import Experiment, Variant

CANARY = parse_rollout({"name": "c", "strategy": {"canary": {"steps": [{"setWeight": 20}]}}})


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with chat_registry(tmp_path / "registry.db", ("1.0.0", "1.1.0", "2.0.0")) as reg:
        yield reg


@pytest.mark.parametrize(
    ("changes", "held"),
    [
        ({"canary": "chat@1.1.0", "canary_weight": 20}, "a canary chat@1.1.0 at 20%"),
        ({"preview": "chat@1.1.0"}, "a preview chat@1.1.0"),
        ({"shadow": "chat@1.1.0", "shadow_percent": 5}, "a shadow chat@1.1.0 at 5%"),
        (
            {
                "experiment": Experiment(
                    "ab", (Variant("a", "chat@1.0.0", 50), Variant("b", "chat@1.1.0", 50))
                )
            },
            "an experiment ab",
        ),
    ],
)
def test_a_rollout_does_not_start_over_a_hand_set_split(
    registry: Registry, changes: dict[str, object], held: str
) -> None:
    # Given someone split the traffic by hand
    registry.set_traffic(
        "dev", registry.get_traffic("dev").with_(**changes), actor="a", reason="try"
    )
    # When a rollout of another release starts, it is refused and says how to go on
    with pytest.raises(ConflictError) as refused:
        ops.start(registry, CANARY, "chat@2.0.0", env="dev", actor="ann")
    assert held in refused.value.message
    assert "llmship traffic set --reset --env dev" in refused.value.message
    assert registry.active_rollout("dev") is None
    # Once the split is reset, it starts
    registry.reset_traffic("dev", actor="a", reason="try")
    assert ops.start(registry, CANARY, "chat@2.0.0", env="dev", actor="ann").candidate == (
        "chat@2.0.0"
    )
