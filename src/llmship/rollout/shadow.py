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
from llmship.rollout.state import Action, AnalysisRun, PauseReason, RolloutState
from llmship.rollout.transitions import (
    Result,
    abort,
    enter_step,
    note,
    pause_for,
    promote_now,
    start_run,
)

__all__ = ["MIRRORING", "VERDICT", "Shadow"]

MIRRORING = 0
VERDICT = 1
ANALYSIS = "strategy.shadow.analysis"


def _strategy(state: RolloutState) -> ShadowStrategy:
    strategy = state.spec.strategy.shadow
    if strategy is None:  # pragma: no cover - the machine picks this module by kind
        raise TypeError("not a shadow rollout")
    return strategy


class Shadow:
    """The shadow strategy's part of the state machine."""

    def progress(self, state: RolloutState, now: float) -> Result:
        strategy = _strategy(state)
        actions: list[Action] = []
        while not state.phase.is_terminal and not state.paused:
            if state.step_index == MIRRORING:
                if not state.step_applied:
                    if not state.candidate_ready:
                        break
                    actions.append(
                        Action(
                            "setShadow",
                            value=strategy.percent,
                            reason=f"rollout {state.name}: mirror {strategy.percent:g}%",
                        )
                    )
                    state = note(
                        replace(state, step_applied=True, step_started_at=now, step_paused_s=0.0),
                        "rollout.step",
                        f"mirroring {strategy.percent:g}% of the requests to {state.candidate} "
                        f"for {format_duration(strategy.duration)}",
                    )
                    state, more = start_run(state, "shadow", ANALYSIS, now)
                    actions += more
                if state.step_elapsed(now) < strategy.duration:
                    break
                state = enter_step(state, VERDICT, now)
                continue
            run = state.latest_run("shadow")
            if not state.step_applied:
                state = note(
                    replace(state, step_applied=True),
                    "rollout.step",
                    f"mirroring over after {format_duration(strategy.duration)}: verdict",
                )
                if run is not None and run.live:
                    run = replace(run, terminating=True)
                    state = replace(
                        state, runs=tuple(run if r.name == run.name else r for r in state.runs)
                    )
            if run is None or run.phase is not Phase.SUCCESSFUL:
                break
            why = f"shadow analysis run {run.name} Successful"
            state, done = promote_now(state, now, actor="controller", why=why)
            return state, actions + done
        return state, actions

    def on_result(self, state: RolloutState, run: AnalysisRun, now: float) -> Result:
        if run.phase in (Phase.FAILED, Phase.ERROR):
            reason = f"shadow analysis run {run.name} ended {run.phase}: {run.message}"
            return abort(state, now, self, actor="controller", reason=reason)
        if run.phase is Phase.INCONCLUSIVE:
            message = f"shadow analysis run {run.name} is Inconclusive ({run.message})"
            return pause_for(state, PauseReason.INCONCLUSIVE, message + "; promote or abort"), []
        return state, []

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

    def blocked(self, state: RolloutState) -> str | None:
        if state.step_index == MIRRORING and not state.step_applied and not state.candidate_ready:
            return f"the candidate {state.candidate} has no ready model server"
        return None

    def abort_actions(self, state: RolloutState, *, actor: str, reason: str) -> list[Action]:
        return [Action("clearTraffic", actor=actor, reason=f"rollout {state.name} {reason}")]

    def describe(self, state: RolloutState) -> str:
        if state.step_index == MIRRORING:
            return "stage 1/2: mirroring"
        return "stage 2/2: verdict"
