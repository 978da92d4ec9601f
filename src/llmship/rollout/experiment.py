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
from llmship.rollout.state import Action, AnalysisRun, RolloutState
from llmship.rollout.strategy import FIRST, SECOND, TwoStage
from llmship.rollout.transitions import (
    Result,
    abort,
    enter_step,
    judge,
    note,
    promote_now,
    start_run,
    stop_runs,
)

__all__ = ["DECIDING", "RUNNING", "Experiment"]

RUNNING = FIRST
DECIDING = SECOND
GUARD = "strategy.experiment.analysis"


def _strategy(state: RolloutState) -> ExperimentStrategy:
    strategy = state.spec.strategy.experiment
    if strategy is None:  # pragma: no cover - the machine picks this module by kind
        raise TypeError("not an experiment rollout")
    return strategy


class Experiment(TwoStage):
    """The experiment strategy's part of the state machine."""

    stages = ("experiment running", "deciding")

    def begin(self, state: RolloutState, now: float) -> Result:
        strategy = _strategy(state)
        arms = ", ".join(
            f"{v.name}={state.candidate if v is strategy.candidate_variant else state.stable} "
            f"{v.weight:g}%"
            for v in strategy.variants
        )
        actions = [Action("setExperiment", reason=f"rollout {state.name}: A/B experiment ({arms})")]
        state = note(
            state, "rollout.step", f"experiment for {format_duration(strategy.duration)}: {arms}"
        )
        if strategy.analysis is not None:
            state, more = start_run(state, "guard", GUARD, now)
            actions += more
        return state, actions

    def advance(self, state: RolloutState, now: float) -> Result | None:
        if state.step_elapsed(now) < _strategy(state).duration:
            return None
        state, actions = stop_runs(state, now, "experiment over", roles=("guard",))
        return enter_step(state, DECIDING, now), actions

    def settle(self, state: RolloutState, now: float) -> Result:
        strategy = _strategy(state)
        state = note(
            state,
            "rollout.step",
            f"experiment over after {format_duration(strategy.duration)}: deciding on "
            f"{strategy.decision.metric}",
        )
        return start_run(state, "decision", "", now)

    def conclude(self, state: RolloutState, now: float) -> Result | None:
        decision = state.latest_run("decision")
        if decision is None or decision.phase is not Phase.SUCCESSFUL:
            return None
        why = f"won the experiment: {decision.message}"
        return promote_now(state, now, actor="controller", why=why)

    def on_result(self, state: RolloutState, run: AnalysisRun, now: float) -> Result:
        if run.role == "decision" and run.phase is Phase.FAILED:
            reason = f"the candidate lost the experiment: {run.message}"
            return abort(state, now, self, actor="controller", reason=reason)
        what = "the decision" if run.role == "decision" else f"guard analysis run {run.name}"
        return judge(state, run, now, self, what)

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
