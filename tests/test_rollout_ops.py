"""Starting a rollout: what it refuses before anything moves; where a rollback goes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from _registry import chat_registry
from llmship.errors import ConflictError, InvalidRequestError, NotFoundError
from llmship.registry import AliasMove, Registry, RolloutRecord
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


# -- where a rollback goes (pure) -------------------------------------------------------


def _moves(*pairs: tuple[str | None, str], at: list[int] | None = None) -> list[AliasMove]:
    """An alias history (oldest first), move ``i`` made at minute ``at[i]`` (default ``i``)."""
    minutes = at or list(range(len(pairs)))
    return [
        AliasMove(i + 1, "dev", "production", src, dst, "ci", "r", T0 + timedelta(minutes=m))
        for i, ((src, dst), m) in enumerate(zip(pairs, minutes, strict=True))
    ]


T0 = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)
A, B, C = "chat@1.0.0", "chat@1.1.0", "chat@2.0.0"


def _rollout(candidate: str, stable: str, minute: int) -> RolloutRecord:
    """A running rollout of ``candidate`` from ``stable``, started at ``minute``."""
    at = T0 + timedelta(minutes=minute)
    return RolloutRecord(
        id=1, env="dev", name="r", strategy="blueGreen", spec={}, candidate=candidate,
        stable=stable, phase="Progressing", step_index=0, step_started_at=None, paused=False,
        pause_reason=None, abort_reason=None, message="", state={}, active=True,
        created_at=at, created_by="ci", updated_at=at, revision=1,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("history", "rollout", "expected"),
    [
        # no rollout: where production was before its last move
        (_moves((None, A), (A, B)), None, A),
        (_moves((None, A), (A, B), (B, A)), None, B),  # twice: forward again, as helm
        # a canary of C from B has moved nothing yet: back to the release before B
        (_moves((None, A), (A, B)), _rollout(C, B, 5), A),
        # a blue-green of C switched production to C: its switch does not count
        (_moves((None, A), (A, B), (B, C), at=[0, 1, 6]), _rollout(C, B, 5), A),
        # ... nor its switch back after an abort
        (_moves((None, A), (A, B), (B, C), (C, B), at=[0, 1, 6, 7]), _rollout(C, B, 5), A),
        # a rollout of A over B, where A was production before B: A is still the target
        (_moves((None, A), (A, B), at=[0, 1]), _rollout(A, B, 5), A),
    ],
)
def test_rollback_target(
    history: list[AliasMove], rollout: RolloutRecord | None, expected: str
) -> None:
    assert ops.rollback_target(history, "dev", rollout=rollout) == expected


def test_rollback_target_refuses() -> None:
    with pytest.raises(NotFoundError, match="dev has no production release to roll back"):
        ops.rollback_target([], "dev")
    with pytest.raises(InvalidRequestError, match=r"no earlier release than chat@1\.0\.0"):
        ops.rollback_target(_moves((None, A)), "dev")
    with pytest.raises(InvalidRequestError, match=r"never pointed at chat@2\.0\.0"):
        ops.rollback_target(_moves((None, A), (A, B)), "dev", to=C)
    assert ops.rollback_target(_moves((None, A), (A, B)), "dev", to=A) == A
