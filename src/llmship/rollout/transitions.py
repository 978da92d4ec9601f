"""Transitions every strategy shares: notes, steps, analysis runs, promotion, abort.

Each function is pure: it takes a :class:`RolloutState` and returns a new one,
with the :class:`Action` list the controller must carry out when there is one.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from llmship.analysis.durations import format_duration
from llmship.analysis.phases import Phase
from llmship.rollout.state import (
    Action,
    AnalysisRun,
    Note,
    PauseReason,
    RolloutPhase,
    RolloutState,
    RunRole,
)

__all__ = [
    "Result",
    "StrategyMachine",
    "abort",
    "enter_step",
    "finish",
    "judge",
    "note",
    "pause_for",
    "promote_actions",
    "promote_now",
    "settle",
    "start_run",
    "stop_runs",
]

Result = tuple[RolloutState, list[Action]]


class StrategyMachine(Protocol):
    """What one strategy adds to the shared transitions (``canary.py``, ...)."""

    def progress(self, state: RolloutState, now: float) -> Result:
        """Go as far as the current step allows without waiting."""
        ...

    def on_result(self, state: RolloutState, run: AnalysisRun, now: float) -> Result:
        """React to the verdict of ``run`` (already recorded in ``state``)."""
        ...

    def promote(
        self, state: RolloutState, now: float, *, actor: str, reason: str, full: bool
    ) -> Result:
        """Skip the current step, or (``full``) everything left."""
        ...

    def resume(self, state: RolloutState, now: float, *, actor: str) -> Result:
        """Continue past what waits for a person (``state.pause_reason``)."""
        ...

    def blocked(self, state: RolloutState) -> str | None:
        """Why the current step cannot start now (the progress deadline counts), or None."""
        ...

    def abort_actions(self, state: RolloutState, *, actor: str, reason: str) -> list[Action]:
        """The actions that put every request back on stable."""
        ...

    def describe(self, state: RolloutState) -> str:
        """The current step in words, e.g. ``step 3/6: setWeight 50``."""
        ...


def note(state: RolloutState, kind: str, message: str, actor: str = "controller") -> RolloutState:
    """``state`` with one more transition note (and ``message`` as its last message)."""
    return replace(state, notes=(*state.notes, Note(kind, message, actor)), message=message)


def settle(state: RolloutState) -> RolloutState:
    """The phase that follows from the pauses (terminal and Pending phases stay)."""
    if state.phase.is_terminal or state.phase is RolloutPhase.PENDING:
        return state
    phase = RolloutPhase.PAUSED if state.paused else RolloutPhase.PROGRESSING
    return state if phase is state.phase else replace(state, phase=phase)


def enter_step(state: RolloutState, index: int, now: float) -> RolloutState:
    """``state`` at the start of step (or stage) ``index``."""
    return replace(
        state,
        step_index=index,
        step_started_at=now,
        step_paused_s=0.0,
        step_applied=False,
        pause_reason=None,
        pause_message="",
        blocked_since=None,
        blocked_reason="",
    )


def pause_for(state: RolloutState, reason: PauseReason, message: str) -> RolloutState:
    """``state`` waiting for ``reason``, with a note."""
    paused = replace(state, pause_reason=reason, pause_message=message)
    return note(paused, "rollout.paused", f"paused ({reason.value}): {message}")


_RUN_BASE: dict[str, str] = {
    "step": "step",
    "background": "background",
    "prePromotion": "prepromotion",
    "postPromotion": "postpromotion",
    "guard": "guard",
    "shadow": "shadow",
    "decision": "decision",
}


def start_run(
    state: RolloutState, role: RunRole, ref: str, now: float, *, step: int | None = None
) -> Result:
    """Start an analysis run for the analysis at ``ref`` in the spec; it is named after
    its role (a step's run after the step's number, 1-based) and a per-rollout counter:
    ``background.1``, ``step3.2``."""
    seq = state.run_seq + 1
    base = _RUN_BASE[role] + (str(step + 1) if step is not None else "")
    run = AnalysisRun(name=f"{base}.{seq}", role=role, ref=ref, started_at=now, step=step)
    started = replace(state, run_seq=seq, runs=(*state.runs, run))
    what = _templates(state, ref) if ref else f"decision on {_decision_metric(state)}"
    started = note(started, "rollout.analysis", f"analysis run {run.name} started ({what})")
    return started, [Action("startAnalysis", run=run.name)]


def _templates(state: RolloutState, ref: str) -> str:
    for path, analysis in state.spec.analysis_refs():
        if path == ref:
            return "templates " + ", ".join(t.template_name for t in analysis.templates)
    return ref


def _decision_metric(state: RolloutState) -> str:
    experiment = state.spec.strategy.experiment
    return experiment.decision.metric if experiment else "?"


def stop_runs(
    state: RolloutState, now: float, why: str, *, roles: tuple[RunRole, ...] | None = None
) -> Result:
    """Stop the live runs (of ``roles``); like Argo's terminated runs, they end Successful
    (a run that had failed would have ended already)."""
    runs = []
    actions = []
    for run in state.runs:
        if run.live and (roles is None or run.role in roles):
            runs.append(
                replace(run, phase=Phase.SUCCESSFUL, message=f"stopped: {why}", finished_at=now)
            )
            actions.append(Action("stopAnalysis", run=run.name))
        else:
            runs.append(run)
    return replace(state, runs=tuple(runs)), actions


def promote_actions(state: RolloutState, *, actor: str, reason: str) -> list[Action]:
    """``production`` to the candidate, then the candidate out of the policy."""
    return [
        Action("promoteAlias", actor=actor, reason=reason),
        Action("clearTraffic", actor=actor, reason=reason),
    ]


def promote_now(state: RolloutState, now: float, *, actor: str, why: str) -> Result:
    """The rollout ends Healthy by promoting the candidate, ``why`` recorded with it."""
    return finish(
        state,
        now,
        actor=actor,
        reason=why,
        actions=promote_actions(state, actor=actor, reason=f"rollout {state.name}: {why}"),
    )


def finish(
    state: RolloutState, now: float, *, actor: str, reason: str, actions: list[Action]
) -> Result:
    """The rollout ends Healthy: runs stopped, then ``actions`` (the promotion)."""
    state, stops = stop_runs(state, now, "rollout promoted")
    state = replace(
        state,
        phase=RolloutPhase.HEALTHY,
        weight=100.0 if state.strategy == "canary" else state.weight,
        pause_reason=None,
        pause_message="",
        manual_pause=False,
        manual_paused_at=None,
        blocked_since=None,
        blocked_reason="",
        finished_at=now,
    )
    state = note(state, "rollout.promoted", f"promoted {state.candidate}: {reason}", actor)
    return state, [*stops, *actions]


def abort(
    state: RolloutState,
    now: float,
    machine: StrategyMachine,
    *,
    actor: str,
    reason: str,
) -> Result:
    """All traffic back to stable at once; the rollout ends Aborted."""
    actions = machine.abort_actions(state, actor=actor, reason=f"aborted: {reason}")
    state, stops = stop_runs(state, now, "rollout aborted")
    state = replace(
        state,
        phase=RolloutPhase.ABORTED,
        weight=0.0,
        pause_reason=None,
        pause_message="",
        manual_pause=False,
        manual_paused_at=None,
        blocked_since=None,
        blocked_reason="",
        abort_reason=reason,
        finished_at=now,
    )
    back = state.stable or "(no stable release)"
    state = note(state, "rollout.aborted", f"aborted: {reason}; all traffic on {back}", actor)
    return state, [*stops, *actions]


def waited(seconds: float | None) -> str:
    """``10s``, or ``until promoted`` for an open-ended pause."""
    return "until promoted" if seconds is None else format_duration(seconds)


def judge(
    state: RolloutState, run: AnalysisRun, now: float, machine: StrategyMachine, what: str
) -> Result:
    """The answer to a finished analysis run: Failed or Error aborts, Inconclusive
    pauses for a person (Argo's ``InconclusiveAnalysis``); ``what`` names the run."""
    if run.phase in (Phase.FAILED, Phase.ERROR):
        reason = f"{what} ended {run.phase}: {run.message}"
        return abort(state, now, machine, actor="controller", reason=reason)
    if run.phase is Phase.INCONCLUSIVE:
        message = f"{what} is Inconclusive ({run.message}); promote or abort"
        return pause_for(state, PauseReason.INCONCLUSIVE, message), []
    return state, []
