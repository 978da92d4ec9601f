"""The shared skeleton of the two-stage strategies (blue-green, experiment, shadow).

Each runs a **first** stage that starts only once the candidate has a ready model
server (until then the step is blocked and the progress deadline counts) and
then lasts until its own condition holds, and a **second** stage that waits for
one verdict and ends the rollout. :class:`TwoStage` holds the loop, the guard on
readiness, and the abort and describe parts (every strategy answers a verdict
with :func:`~llmship.rollout.transitions.judge`); a strategy fills in four hooks
(:meth:`~TwoStage.begin`, :meth:`~TwoStage.advance`, :meth:`~TwoStage.settle`,
:meth:`~TwoStage.conclude`) plus ``on_result``, ``promote`` and ``resume``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import replace

from llmship.rollout.state import Action, AnalysisRun, RolloutState
from llmship.rollout.transitions import Result

__all__ = ["FIRST", "SECOND", "TwoStage"]

FIRST = 0
SECOND = 1


class TwoStage(ABC):
    """A strategy of two stages; ``stages`` names them for :meth:`describe`."""

    stages: tuple[str, str]

    def progress(self, state: RolloutState, now: float) -> Result:
        """Go as far as the current stage allows without waiting."""
        actions: list[Action] = []
        while not state.phase.is_terminal and not state.paused:
            if state.step_index == FIRST:
                if not state.step_applied:
                    if not state.candidate_ready:
                        break
                    state, more = self.begin(
                        replace(state, step_applied=True, step_started_at=now, step_paused_s=0.0),
                        now,
                    )
                    actions += more
                moved = self.advance(state, now)
                if moved is None:
                    break
                state, more = moved
                actions += more
                continue
            if not state.step_applied:
                state, more = self.settle(replace(state, step_applied=True), now)
                actions += more
            done = self.conclude(state, now)
            if done is None:
                break
            state, more = done
            return state, actions + more
        return state, actions

    @abstractmethod
    def begin(self, state: RolloutState, now: float) -> Result:
        """Start the first stage (``state`` is already marked applied and timed from ``now``)."""

    @abstractmethod
    def advance(self, state: RolloutState, now: float) -> Result | None:
        """None while the first stage goes on; else the state moved on (or paused)."""

    @abstractmethod
    def settle(self, state: RolloutState, now: float) -> Result:
        """Start the second stage (``state`` is already marked applied)."""

    @abstractmethod
    def conclude(self, state: RolloutState, now: float) -> Result | None:
        """None while the second stage waits for its verdict; else the finished rollout."""

    @abstractmethod
    def on_result(self, state: RolloutState, run: AnalysisRun, now: float) -> Result:
        """React to the verdict of ``run`` (already recorded in ``state``)."""

    @abstractmethod
    def promote(
        self, state: RolloutState, now: float, *, actor: str, reason: str, full: bool
    ) -> Result:
        """Skip the current stage, or (``full``) everything left."""

    @abstractmethod
    def resume(self, state: RolloutState, now: float, *, actor: str) -> Result:
        """Continue past what waits for a person (``state.pause_reason``)."""

    def blocked(self, state: RolloutState) -> str | None:
        """Why the first stage cannot start now (no ready candidate), or None."""
        if state.step_index == FIRST and not state.step_applied and not state.candidate_ready:
            return f"the candidate {state.candidate} has no ready model server"
        return None

    def abort_actions(self, state: RolloutState, *, actor: str, reason: str) -> list[Action]:
        """Clear the strategy's traffic so every request goes to stable."""
        return [Action("clearTraffic", actor=actor, reason=f"rollout {state.name} {reason}")]

    def describe(self, state: RolloutState) -> str:
        """``stage 1/2: ...`` or ``stage 2/2: ...``."""
        index = FIRST if state.step_index == FIRST else SECOND
        return f"stage {index + 1}/2: {self.stages[index]}"
