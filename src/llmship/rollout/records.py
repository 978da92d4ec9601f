"""Stored rollouts and the state machine's states, one into the other.

:func:`state_of` reads a registry :class:`~llmship.registry.RolloutRecord` as a
:class:`~llmship.rollout.state.RolloutState`; :func:`update_of` is what saving a
state writes (the state JSON and the columns derived from it);
:func:`from_timestamp` turns a controller time into the registry's datetimes.
"""

from __future__ import annotations

from datetime import datetime, timezone

from llmship.registry import RolloutRecord
from llmship.registry.records import RolloutUpdate
from llmship.rollout.state import RolloutState

__all__ = ["from_timestamp", "state_of", "update_of"]


def from_timestamp(seconds: float) -> datetime:
    """A controller time (seconds) as a timezone-aware UTC datetime."""
    return datetime.fromtimestamp(seconds, timezone.utc)


def state_of(record: RolloutRecord) -> RolloutState:
    """The state machine's view of a stored rollout."""
    return RolloutState.from_dict(
        record.state,
        env=record.env,
        name=record.name,
        spec=record.spec,
        candidate=record.candidate,
        stable=record.stable,
        rollout_id=record.id,
    )


def update_of(state: RolloutState) -> RolloutUpdate:
    """What saving ``state`` writes: the state JSON and the columns derived from it."""
    reasons = []
    if state.pause_reason is not None:
        reasons.append(f"{state.pause_reason.value}: {state.pause_message}")
    if state.manual_pause:
        reasons.append("paused by a person (`llmship rollout resume` resumes)")
    started = state.step_started_at
    return RolloutUpdate(
        phase=state.phase.value,
        step_index=state.step_index,
        step_started_at=from_timestamp(started) if started is not None else None,
        paused=state.paused,
        pause_reason="; ".join(reasons) or None,
        abort_reason=state.abort_reason,
        message=state.message,
        state=state.to_dict(),
        # A finished rollout whose last actions are not all done yet still holds its
        # environment, and the controller still reconciles it.
        active=not state.phase.is_terminal or bool(state.pending),
    )
