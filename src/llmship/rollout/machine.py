"""The rollout state machine: ``step(state, event, now) -> (new state, actions)``.

Pure: no clock, no database, no network. The controller persists the new state
(with the actions as its outbox) and then carries the actions out; every action
is idempotent, so carrying one out twice after a crash changes nothing.

Phases (:class:`~llmship.rollout.state.RolloutPhase`): Pending -> Progressing
<-> Paused -> Healthy (promoted) or Aborted (all traffic on stable; ``retry``
starts again). Events (:mod:`llmship.rollout.events`):

- :class:`Tick`: the controller's pass. Starts a Pending rollout, runs the
  current step as far as it goes (timers, readiness), and aborts a step that has
  been blocked (no ready candidate, traffic changes failing) for longer than
  ``progressDeadline``, not counting the time a person had it paused;
- :class:`AnalysisResult`: a run's verdict. Successful continues, Failed or
  Error aborts, Inconclusive pauses for a person;
- :class:`Promote` (``full``), :class:`Pause`, :class:`Resume`, :class:`Abort`,
  :class:`Retry`: what people and alerts ask for. An event that does not apply
  raises :class:`TransitionError` and changes nothing.

Each strategy adds its own part (``canary.py``, ``bluegreen.py``,
``experiment.py``, ``shadow.py``); the last three share the two-stage skeleton
of ``strategy.py``.
"""

from __future__ import annotations

from dataclasses import replace

from llmship.analysis.durations import format_duration
from llmship.rollout.bluegreen import BlueGreen
from llmship.rollout.canary import Canary, waiting_weight
from llmship.rollout.events import (
    Abort,
    AnalysisResult,
    Pause,
    Promote,
    Resume,
    Retry,
    RolloutEvent,
    Tick,
    TransitionError,
)
from llmship.rollout.experiment import Experiment
from llmship.rollout.shadow import Shadow
from llmship.rollout.state import Action, PauseReason, RolloutPhase, RolloutState
from llmship.rollout.transitions import (
    Result,
    StrategyMachine,
    abort,
    enter_step,
    note,
    settle,
)

__all__ = ["check", "describe", "machine_for", "step"]

_MACHINES: dict[str, StrategyMachine] = {
    "canary": Canary(),
    "blueGreen": BlueGreen(),
    "experiment": Experiment(),
    "shadow": Shadow(),
}


def machine_for(state: RolloutState) -> StrategyMachine:
    """The strategy's part of the machine."""
    return _MACHINES[state.strategy]


def describe(state: RolloutState) -> str:
    """The current step in words, e.g. ``step 3/6: setWeight 50``."""
    return machine_for(state).describe(state)


def check(state: RolloutState, event: RolloutEvent) -> None:
    """Raise :class:`TransitionError` when ``event`` does not apply to ``state``."""
    who = f"rollout {state.name} (id {state.rollout_id})"
    terminal = state.phase.is_terminal
    if isinstance(event, Promote) and terminal:
        raise TransitionError(f"{who} is {state.phase}: there is nothing to promote")
    if isinstance(event, Promote) and not event.full:
        weight = waiting_weight(state)
        if weight is not None and not state.paused:
            raise TransitionError(
                f"{who} is at {weight}, which waits for {state.candidate} to have a ready "
                "model server; promote moves past pauses and analysis, never past a weight "
                "change: wait until the weight is set, or promote in full with `--full`"
            )
    if isinstance(event, Pause):
        if terminal:
            raise TransitionError(f"{who} is {state.phase}: there is nothing to pause")
        if state.manual_pause:
            raise TransitionError(f"{who} is already paused; resume it with `rollout resume`")
    if isinstance(event, Resume):
        if terminal:
            raise TransitionError(f"{who} is {state.phase}: there is nothing to resume")
        if not state.paused:
            raise TransitionError(f"{who} is not paused ({state.phase})")
        if not state.manual_pause and _timed_pause(state):
            raise TransitionError(
                f"{who} is in a timed pause step that ends by itself; "
                "`llmship rollout promote` skips it"
            )
    if isinstance(event, Abort) and terminal:
        raise TransitionError(f"{who} is already {state.phase}")
    if isinstance(event, Retry) and state.phase is not RolloutPhase.ABORTED:
        raise TransitionError(f"{who} is {state.phase}: only an Aborted rollout can be retried")


def _timed_pause(state: RolloutState) -> bool:
    canary = state.spec.strategy.canary
    if state.pause_reason is not PauseReason.CANARY_PAUSE_STEP or canary is None:
        return False
    pause = canary.steps[state.step_index].pause
    return pause is not None and pause.duration is not None


def step(state: RolloutState, event: RolloutEvent, now: float) -> tuple[RolloutState, list[Action]]:
    """Apply ``event`` at time ``now``: the new state and the actions to carry out.

    ``new_state.notes`` lists the transitions made (one event each in the
    registry). Raises :class:`TransitionError` when the event does not apply.
    """
    check(state, event)
    state = state.without_notes()
    machine = machine_for(state)
    actions: list[Action] = []
    if isinstance(event, Tick):
        state, actions = _tick(state, event, now, machine)
    elif isinstance(event, AnalysisResult):
        state, actions = _result(state, event, now, machine)
    else:
        if isinstance(event, Retry):
            state = _retry(state, event, now)
        elif state.phase is RolloutPhase.PENDING and not isinstance(event, Abort):
            state = _start(state, now)
        if isinstance(event, Abort):
            reason = event.reason or f"aborted by {event.actor}"
            state, actions = abort(state, now, machine, actor=event.actor, reason=reason)
        elif isinstance(event, Pause):
            state = note(
                replace(state, manual_pause=True, manual_paused_at=now),
                "rollout.paused",
                f"paused by {event.actor}" + (f": {event.reason}" if event.reason else ""),
                event.actor,
            )
        elif isinstance(event, Resume):
            state, actions = _resume(state, event, now, machine)
        elif isinstance(event, Promote):
            state = _unpause(state, now)
            state, actions = machine.promote(
                state, now, actor=event.actor, reason=event.reason, full=event.full
            )
        if not state.phase.is_terminal:
            state, more = machine.progress(settle(state), now)
            actions += more
    return settle(state), actions


def _start(state: RolloutState, now: float) -> RolloutState:
    state = replace(enter_step(state, 0, now), phase=RolloutPhase.PROGRESSING, started_at=now)
    stable = state.stable or "(none)"
    message = (
        f"started: {state.strategy} from {stable} to {state.candidate} (attempt {state.attempt})"
    )
    return note(state, "rollout.started", message)


def _tick(state: RolloutState, event: Tick, now: float, machine: StrategyMachine) -> Result:
    state = replace(state, candidate_ready=event.ready)
    actions: list[Action] = []
    if state.phase.is_terminal:
        return state, actions
    if event.failing is None:
        if state.phase is RolloutPhase.PENDING:
            state = settle(_start(state, now))
        state, actions = machine.progress(state, now)
        if state.phase.is_terminal:
            return state, actions
    if state.manual_pause:
        return state, actions  # a person's pause stops the deadline's clock
    reason = event.failing or machine.blocked(state)
    if reason is None:
        if state.blocked_since is not None:
            state = replace(state, blocked_since=None, blocked_reason="")
        return state, actions
    if state.blocked_since is None or state.blocked_reason != reason:
        since = state.blocked_since if state.blocked_since is not None else now
        state = note(
            replace(state, blocked_since=since, blocked_reason=reason),
            "rollout.waiting",
            f"waiting: {reason}",
        )
    deadline = state.spec.progress_deadline
    assert state.blocked_since is not None
    if now - state.blocked_since >= deadline:
        why = f"progress deadline ({format_duration(deadline)}) exceeded: {reason}"
        state, more = abort(state, now, machine, actor="controller", reason=why)
        actions += more
    return state, actions


def _result(
    state: RolloutState, event: AnalysisResult, now: float, machine: StrategyMachine
) -> Result:
    run = state.run(event.run)
    if run is None or not run.live or not event.phase.completed:
        return state, []
    done = replace(
        run, phase=event.phase, message=event.message, finished_at=now, terminating=False
    )
    state = replace(state, runs=tuple(done if r.name == run.name else r for r in state.runs))
    detail = f" ({event.message})" if event.message else ""
    state = note(state, "rollout.analysis", f"analysis run {run.name}: {event.phase}{detail}")
    if state.phase.is_terminal:
        return state, []
    state, actions = machine.on_result(state, done, now)
    if not state.phase.is_terminal:
        state, more = machine.progress(settle(state), now)
        actions += more
    return state, actions


def _unpause(state: RolloutState, now: float) -> RolloutState:
    """Lift a person's pause; step timers and the deadline leave the paused time out."""
    if not state.manual_pause:
        return state
    paused = max(0.0, now - (state.manual_paused_at or now))
    return replace(
        state,
        manual_pause=False,
        manual_paused_at=None,
        step_paused_s=state.step_paused_s + paused,
        blocked_since=None if state.blocked_since is None else state.blocked_since + paused,
    )


def _resume(state: RolloutState, event: Resume, now: float, machine: StrategyMachine) -> Result:
    state = note(
        _unpause(state, now),
        "rollout.resumed",
        f"resumed by {event.actor}" + (f": {event.reason}" if event.reason else ""),
        event.actor,
    )
    if state.pause_reason is None or _timed_pause(state):
        return state, []
    return machine.resume(state, now, actor=event.actor)


def _retry(state: RolloutState, event: Retry, now: float) -> RolloutState:
    state = replace(
        state,
        phase=RolloutPhase.PENDING,
        attempt=state.attempt + 1,
        runs=(),
        weight=0.0,
        switched=False,
        abort_reason=None,
        finished_at=None,
        pause_reason=None,
        pause_message="",
        manual_pause=False,
        manual_paused_at=None,
    )
    state = note(
        state,
        "rollout.retried",
        f"retried by {event.actor}" + (f": {event.reason}" if event.reason else ""),
        event.actor,
    )
    return _start(state, now)
