"""Canary: ``setWeight``, ``pause`` and ``analysis`` steps in order, with background
analysis from ``startingStep`` on (Argo Rollouts' ``rolloutCanary``).

- ``setWeight: N`` waits until the candidate has a ready model server (for N > 0),
  then asks for the weight and is done;
- ``pause: {duration}`` is done when its time (without a person's pause) is over;
  ``pause: {}`` when a person promotes or resumes;
- ``analysis`` starts a run and is done when it is Successful; Failed or Error
  aborts, Inconclusive pauses;
- after the last step: ``production`` moves to the candidate and the canary is
  cleared.
"""

from __future__ import annotations

from dataclasses import replace

from llmship.analysis.phases import Phase
from llmship.rollout.spec import CanaryStep, CanaryStrategy
from llmship.rollout.state import Action, AnalysisRun, PauseReason, RolloutState
from llmship.rollout.transitions import (
    Result,
    enter_step,
    finish,
    judge,
    note,
    promote_actions,
    promote_now,
    start_run,
    stop_runs,
    waited,
)

__all__ = ["Canary", "describe_step", "waiting_weight"]

BACKGROUND = "strategy.canary.analysis"


def _strategy(state: RolloutState) -> CanaryStrategy:
    canary = state.spec.strategy.canary
    if canary is None:  # pragma: no cover - the machine picks this module by kind
        raise TypeError("not a canary rollout")
    return canary


def describe_step(step: CanaryStep) -> str:
    """``setWeight 20``, ``pause 10s``, ``pause until promoted``, ``analysis errors``."""
    if step.set_weight is not None:
        return f"setWeight {step.set_weight}"
    if step.pause is not None:
        return f"pause {waited(step.pause.duration)}"
    names = ", ".join(t.template_name for t in step.analysis.templates) if step.analysis else ""
    return f"analysis {names}"


def waiting_weight(state: RolloutState) -> str | None:
    """``step 1/5 (setWeight 20)`` when a canary's current step is a weight change not
    made yet (it waits for the candidate's model server), else None: a weight change is
    never skipped by a plain promote."""
    canary = state.spec.strategy.canary
    if canary is None or state.phase.is_terminal or state.step_applied:
        return None
    steps = canary.steps
    if state.step_index >= len(steps) or steps[state.step_index].set_weight is None:
        return None
    return f"step {state.step_index + 1}/{len(steps)} ({describe_step(steps[state.step_index])})"


class Canary:
    """The canary strategy's part of the state machine."""

    def progress(self, state: RolloutState, now: float) -> Result:
        steps = _strategy(state).steps
        actions: list[Action] = []
        while not state.phase.is_terminal:
            if state.manual_pause or state.pause_reason is PauseReason.INCONCLUSIVE:
                break
            index = state.step_index
            if index >= len(steps):
                state, done = finish(
                    state,
                    now,
                    actor="controller",
                    reason=f"all {len(steps)} steps passed",
                    actions=promote_actions(
                        state, actor="controller", reason=f"rollout {state.name}: all steps passed"
                    ),
                )
                return state, actions + done
            step = steps[index]
            if not state.step_applied:
                if step.set_weight and not state.candidate_ready:
                    break
                state, more = self._enter(state, index, step, now)
                actions += more
            completed = self._completed(state, step, now)
            if completed is None:
                break
            state = enter_step(completed, index + 1, now)
        return state, actions

    def _enter(self, state: RolloutState, index: int, step: CanaryStep, now: float) -> Result:
        actions: list[Action] = []
        strategy = _strategy(state)
        total = len(strategy.steps)
        background = strategy.analysis
        if (
            background is not None
            and (background.starting_step or 0) <= index
            and state.latest_run("background") is None
        ):
            state, more = start_run(state, "background", BACKGROUND, now)
            actions += more
        where = f"step {index + 1}/{total}"
        if step.set_weight is not None:
            weight = float(step.set_weight)
            actions.append(
                Action(
                    "setWeight",
                    value=weight,
                    reason=f"rollout {state.name} {where}: setWeight {step.set_weight}",
                )
            )
            state = note(
                replace(state, weight=weight),
                "rollout.step",
                f"{where}: setWeight {step.set_weight}: {state.candidate} gets "
                f"{step.set_weight}% of the requests",
            )
        elif step.pause is not None:
            duration = step.pause.duration
            if duration is None or duration > 0:
                state = replace(
                    state,
                    pause_reason=PauseReason.CANARY_PAUSE_STEP,
                    pause_message=f"{where}: pause {waited(duration)}",
                )
            state = note(state, "rollout.step", f"{where}: pause {waited(duration)}")
        else:
            state = note(state, "rollout.step", f"{where}: {describe_step(step)}")
            state, more = start_run(
                state, "step", f"strategy.canary.steps[{index}].analysis", now, step=index
            )
            actions += more
        return replace(state, step_applied=True), actions

    def _completed(self, state: RolloutState, step: CanaryStep, now: float) -> RolloutState | None:
        """The state to go on with when the current step is done, else None."""
        if step.set_weight is not None:
            return state
        if step.pause is not None:
            duration = step.pause.duration
            if duration is None or state.step_elapsed(now) < duration:
                return None
            return replace(state, pause_reason=None, pause_message="")
        run = state.latest_run("step", state.step_index)
        return state if run is not None and run.phase is Phase.SUCCESSFUL else None

    def on_result(self, state: RolloutState, run: AnalysisRun, now: float) -> Result:
        if run.role == "step" and run.step != state.step_index:
            return state, []
        what = (
            f"step {state.step_index + 1} analysis" if run.role == "step" else "background analysis"
        )
        return judge(state, run, now, self, f"{what} run {run.name}")

    def promote(
        self, state: RolloutState, now: float, *, actor: str, reason: str, full: bool
    ) -> Result:
        steps = _strategy(state).steps
        if full or state.step_index >= len(steps):
            why = reason or f"promoted in full by {actor}"
            return promote_now(state, now, actor=actor, why=why)
        waiting = waiting_weight(state)
        if waiting is not None:
            # A weight change is never skipped: promote only lifts the pause it waits in.
            state, actions = self._restart_inconclusive_background(state, now)
            state = note(
                replace(state, pause_reason=None, pause_message=""),
                "rollout.step",
                f"promoted by {actor}: {waiting} is not skipped; it is made once the "
                "candidate is ready",
                actor,
            )
            return state, actions
        index = state.step_index
        step = steps[index]
        state, actions = stop_runs(state, now, f"step skipped by {actor}", roles=("step",))
        state, more = self._restart_inconclusive_background(state, now)
        state = note(
            replace(state, pause_reason=None, pause_message=""),
            "rollout.step",
            f"step {index + 1}/{len(steps)} ({describe_step(step)}) skipped by {actor}"
            + (f": {reason}" if reason else ""),
            actor,
        )
        return enter_step(state, index + 1, now), actions + more

    def resume(self, state: RolloutState, now: float, *, actor: str) -> Result:
        steps = _strategy(state).steps
        index = state.step_index
        actions: list[Action] = []
        if state.pause_reason is PauseReason.CANARY_PAUSE_STEP:
            step = steps[index]
            if step.pause is not None and step.pause.duration is None:
                state = note(
                    state,
                    "rollout.step",
                    f"step {index + 1}/{len(steps)}: pause ended by {actor}",
                    actor,
                )
                return enter_step(state, index + 1, now), actions
            return state, actions
        if state.pause_reason is PauseReason.INCONCLUSIVE:
            current = steps[index] if index < len(steps) else None
            if current is not None and current.pause is not None and state.step_applied:
                # The pause step the verdict interrupted goes on waiting.
                waiting = f"step {index + 1}/{len(steps)}: pause {waited(current.pause.duration)}"
                state = replace(
                    state, pause_reason=PauseReason.CANARY_PAUSE_STEP, pause_message=waiting
                )
            else:
                state = replace(state, pause_reason=None, pause_message="")
            state, actions = self._restart_inconclusive_background(state, now)
            run = state.latest_run("step", index)
            if run is not None and run.phase is Phase.INCONCLUSIVE:
                state = note(
                    state,
                    "rollout.step",
                    f"step {index + 1}/{len(steps)}: Inconclusive analysis accepted by {actor}",
                    actor,
                )
                state = enter_step(state, index + 1, now)
        return state, actions

    def _restart_inconclusive_background(self, state: RolloutState, now: float) -> Result:
        run = state.latest_run("background")
        if run is None or run.phase is not Phase.INCONCLUSIVE:
            return state, []
        return start_run(state, "background", BACKGROUND, now)

    def blocked(self, state: RolloutState) -> str | None:
        steps = _strategy(state).steps
        if state.step_index >= len(steps) or state.step_applied or state.candidate_ready:
            return None
        if steps[state.step_index].set_weight:
            return f"the candidate {state.candidate} has no ready model server"
        return None

    def abort_actions(self, state: RolloutState, *, actor: str, reason: str) -> list[Action]:
        return [Action("clearTraffic", actor=actor, reason=f"rollout {state.name} {reason}")]

    def describe(self, state: RolloutState) -> str:
        steps = _strategy(state).steps
        if state.step_index >= len(steps):
            return f"all {len(steps)} steps done"
        step = steps[state.step_index]
        return f"step {state.step_index + 1}/{len(steps)}: {describe_step(step)}"
