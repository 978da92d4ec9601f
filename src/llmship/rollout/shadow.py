"""Shadow: mirror a share of the requests to the candidate, then a verdict.

Stage 0, **mirroring**: once the candidate has a ready model server,
``percent`` of the requests are copied to it (clients only get stable's answers)
and the analysis runs; Failed or Error at any time aborts, Inconclusive pauses.
Stage 1, **verdict** (the duration is over): a run still measuring is ended and
assessed as Argo assesses a terminated run (a metric without any measurement
counts as Inconclusive); Successful promotes the candidate.
"""

from __future__ import annotations

from dataclasses import replace

from llmship.analysis.durations import format_duration
from llmship.analysis.phases import Phase
from llmship.rollout.spec import ShadowStrategy
from llmship.rollout.state import Action, AnalysisRun, RolloutState
from llmship.rollout.strategy import FIRST, SECOND, TwoStage
from llmship.rollout.transitions import Result, enter_step, judge, note, promote_now, start_run

__all__ = ["MIRRORING", "VERDICT", "Shadow"]

MIRRORING = FIRST
VERDICT = SECOND
ANALYSIS = "strategy.shadow.analysis"


def _strategy(state: RolloutState) -> ShadowStrategy:
    strategy = state.spec.strategy.shadow
    if strategy is None:  # pragma: no cover - the machine picks this module by kind
        raise TypeError("not a shadow rollout")
    return strategy


class Shadow(TwoStage):
    """The shadow strategy's part of the state machine."""

    stages = ("mirroring", "verdict")

    def begin(self, state: RolloutState, now: float) -> Result:
        strategy = _strategy(state)
        actions = [
            Action(
                "setShadow",
                value=strategy.percent,
                reason=f"rollout {state.name}: mirror {strategy.percent:g}%",
            )
        ]
        state = note(
            state,
            "rollout.step",
            f"mirroring {strategy.percent:g}% of the requests to {state.candidate} "
            f"for {format_duration(strategy.duration)}",
        )
        state, more = start_run(state, "shadow", ANALYSIS, now)
        return state, actions + more

    def advance(self, state: RolloutState, now: float) -> Result | None:
        if state.step_elapsed(now) < _strategy(state).duration:
            return None
        return enter_step(state, VERDICT, now), []

    def settle(self, state: RolloutState, now: float) -> Result:
        state = note(
            state,
            "rollout.step",
            f"mirroring over after {format_duration(_strategy(state).duration)}: verdict",
        )
        run = state.latest_run("shadow")
        if run is not None and run.live:
            run = replace(run, terminating=True)
            state = replace(state, runs=tuple(run if r.name == run.name else r for r in state.runs))
        return state, []

    def conclude(self, state: RolloutState, now: float) -> Result | None:
        run = state.latest_run("shadow")
        if run is None or run.phase is not Phase.SUCCESSFUL:
            return None
        why = f"shadow analysis run {run.name} Successful"
        return promote_now(state, now, actor="controller", why=why)

    def on_result(self, state: RolloutState, run: AnalysisRun, now: float) -> Result:
        return judge(state, run, now, self, f"shadow analysis run {run.name}")

    def promote(
        self, state: RolloutState, now: float, *, actor: str, reason: str, full: bool
    ) -> Result:
        why = reason or f"promoted by {actor}"
        return promote_now(state, now, actor=actor, why=why)

    def resume(self, state: RolloutState, now: float, *, actor: str) -> Result:
        if state.step_index == VERDICT:
            why = f"Inconclusive shadow analysis accepted by {actor}"
            return promote_now(state, now, actor=actor, why=why)
        state = replace(state, pause_reason=None, pause_message="")
        run = state.latest_run("shadow")
        if run is not None and run.phase is Phase.INCONCLUSIVE:
            return start_run(state, "shadow", ANALYSIS, now)
        return state, []
