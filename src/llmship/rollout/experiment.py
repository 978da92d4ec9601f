"""Experiment: an A/B test between stable and the candidate, then a significance test.

Stage 0, **running**: once the candidate has a ready model server, users are split
between the spec's two variants (sticky by user key) for ``duration``, with the
guard analysis (if any) watching. Stage 1, **deciding**: a ``decision`` run that
the controller measures once with :func:`llmship.analysis.decide_experiment`:
Successful promotes the candidate, Failed aborts, Inconclusive pauses.
"""

from __future__ import annotations

from dataclasses import replace

from llmship.analysis.durations import format_duration
from llmship.analysis.phases import Phase
from llmship.rollout.spec import ExperimentStrategy
from llmship.rollout.state import Action, AnalysisRun, PauseReason, RolloutState
from llmship.rollout.transitions import (
    Result,
    abort,
    enter_step,
    note,
    pause_for,
    promote_now,
    start_run,
    stop_runs,
)

__all__ = ["DECIDING", "RUNNING", "Experiment"]

RUNNING = 0
DECIDING = 1
GUARD = "strategy.experiment.analysis"


def _strategy(state: RolloutState) -> ExperimentStrategy:
    strategy = state.spec.strategy.experiment
    if strategy is None:  # pragma: no cover - the machine picks this module by kind
        raise TypeError("not an experiment rollout")
    return strategy


class Experiment:
    """The experiment strategy's part of the state machine."""

    def progress(self, state: RolloutState, now: float) -> Result:
        strategy = _strategy(state)
        actions: list[Action] = []
        while not state.phase.is_terminal and not state.paused:
            if state.step_index == RUNNING:
                if not state.step_applied:
                    if not state.candidate_ready:
                        break
                    state, more = self._start(state, now)
                    actions += more
                if state.step_elapsed(now) < strategy.duration:
                    break
                state, more = stop_runs(state, now, "experiment over", roles=("guard",))
                actions += more
                state = enter_step(state, DECIDING, now)
                continue
            if not state.step_applied:
                state = note(
                    replace(state, step_applied=True),
                    "rollout.step",
                    f"experiment over after {format_duration(strategy.duration)}: deciding on "
                    f"{strategy.decision.metric}",
                )
                state, more = start_run(state, "decision", "", now)
                actions += more
            decision = state.latest_run("decision")
            if decision is None or decision.phase is not Phase.SUCCESSFUL:
                break
            why = f"won the experiment: {decision.message}"
            state, done = promote_now(state, now, actor="controller", why=why)
            return state, actions + done
        return state, actions

    def _start(self, state: RolloutState, now: float) -> Result:
        strategy = _strategy(state)
        arms = ", ".join(
            f"{v.name}={state.candidate if v is strategy.candidate_variant else state.stable} "
            f"{v.weight:g}%"
            for v in strategy.variants
        )
        actions = [Action("setExperiment", reason=f"rollout {state.name}: A/B experiment ({arms})")]
        state = note(
            replace(state, step_applied=True, step_started_at=now, step_paused_s=0.0),
            "rollout.step",
            f"experiment for {format_duration(strategy.duration)}: {arms}",
        )
        if strategy.analysis is not None:
            state, more = start_run(state, "guard", GUARD, now)
            actions += more
        return state, actions

    def on_result(self, state: RolloutState, run: AnalysisRun, now: float) -> Result:
        what = "the decision" if run.role == "decision" else f"guard analysis run {run.name}"
        if run.phase in (Phase.FAILED, Phase.ERROR):
            if run.role == "decision" and run.phase is Phase.FAILED:
                reason = f"the candidate lost the experiment: {run.message}"
            else:
                reason = f"{what} ended {run.phase}: {run.message}"
            return abort(state, now, self, actor="controller", reason=reason)
        if run.phase is Phase.INCONCLUSIVE:
            message = f"{what} is Inconclusive ({run.message}); promote or abort"
            return pause_for(state, PauseReason.INCONCLUSIVE, message), []
        return state, []

    def promote(
        self, state: RolloutState, now: float, *, actor: str, reason: str, full: bool
    ) -> Result:
        if full or state.step_index != RUNNING or not state.step_applied:
            why = reason or f"promoted by {actor}"
            return promote_now(state, now, actor=actor, why=why)
        # Like a canary's pause, the experiment's time is skipped, not its decision.
        strategy = _strategy(state)
        state, actions = stop_runs(state, now, f"experiment ended by {actor}", roles=("guard",))
        state = note(
            replace(state, pause_reason=None, pause_message=""),
            "rollout.step",
            f"experiment ended by {actor} after {format_duration(state.step_elapsed(now))} of "
            f"{format_duration(strategy.duration)}: deciding now"
            + (f" ({reason})" if reason else ""),
            actor,
        )
        return enter_step(state, DECIDING, now), actions

    def resume(self, state: RolloutState, now: float, *, actor: str) -> Result:
        if state.step_index == DECIDING:
            why = f"Inconclusive decision: the candidate taken by {actor}"
            return promote_now(state, now, actor=actor, why=why)
        state = replace(state, pause_reason=None, pause_message="")
        guard = state.latest_run("guard")
        if guard is not None and guard.phase is Phase.INCONCLUSIVE:
            return start_run(state, "guard", GUARD, now)
        return state, []

    def blocked(self, state: RolloutState) -> str | None:
        if state.step_index == RUNNING and not state.step_applied and not state.candidate_ready:
            return f"the candidate {state.candidate} has no ready model server"
        return None

    def abort_actions(self, state: RolloutState, *, actor: str, reason: str) -> list[Action]:
        return [Action("clearTraffic", actor=actor, reason=f"rollout {state.name} {reason}")]

    def describe(self, state: RolloutState) -> str:
        if state.step_index == RUNNING:
            return "stage 1/2: experiment running"
        return "stage 2/2: deciding"
