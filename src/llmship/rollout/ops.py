"""What ``llmship rollout`` does, as functions over the registry.

Starting a rollout and ``undo`` act directly (nothing else has to happen at
once). Promote, pause, resume, abort and retry are *intents*: checked against
the rollout's state now (so a command that cannot apply fails at once), then
recorded for the controller, which applies them in order on its next pass.
``rollback`` (``llmship rollback``) is ``undo`` that first aborts the rollout
running in the environment and waits until the abort is applied.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from llmship.errors import ConflictError, InvalidRequestError, NotFoundError
from llmship.registry import AliasMove, MeasurementRecord, Registry, RolloutIntent, RolloutRecord
from llmship.release.spec import parse_ref
from llmship.rollout.actions import PRODUCTION
from llmship.rollout.controller import Controller, default_holder
from llmship.rollout.events import Retry, TransitionError, intent_event
from llmship.rollout.machine import check, describe, step
from llmship.rollout.records import state_of, update_of
from llmship.rollout.spec import RolloutSpec
from llmship.rollout.state import RolloutState
from llmship.routing.policy import TrafficPolicy

__all__ = [
    "ABORT_WAIT_S",
    "Rollback",
    "abort_and_wait",
    "request",
    "rollback",
    "rollback_target",
    "stable_for",
    "start",
    "status",
    "undo",
]

ABORT_WAIT_S = 30.0
"""How long ``llmship rollback`` waits for the controller to abort a running rollout."""


def start(
    registry: Registry,
    spec: RolloutSpec,
    candidate: str,
    *,
    env: str,
    actor: str,
    reason: str = "",
    force: bool = False,
) -> RolloutRecord:
    """Record a rollout of ``candidate`` (``NAME@VERSION``) from ``env``'s production release.

    Refused at once: a candidate that is not registered or already production, an
    environment without a production release, another unfinished rollout there, a
    candidate without the passing gates ``llmship.yaml`` requires for ``env``
    (GateError from the registry, unless ``force`` with a ``reason``: see
    ``registry/_guard.py``). The rollout's steps and the controller's promotion at
    its end are not checked again: they carry out what was checked here.
    """
    if parse_ref(candidate) is None:
        raise InvalidRequestError(
            f"--candidate {candidate!r}: give the release as NAME@VERSION, e.g. chat@1.1.0",
            param="candidate",
        )
    name, version = parse_ref(candidate) or ("", "")
    release = registry.get(name, version)
    stable = stable_for(registry, env, release.ref)
    active = registry.active_rollout(env)
    if active is not None:
        raise ConflictError(
            f"rollout {active.name} (id {active.id}) of {active.candidate} is {active.phase} in "
            f"{env}: one rollout runs at a time; promote or abort it first",
            param="env",
        )
    _refuse_hand_set_traffic(registry.get_traffic(env))
    state = RolloutState(env=env, name=spec.name, spec=spec, candidate=release.ref, stable=stable)
    return registry.create_rollout(
        env,
        name=spec.name,
        strategy=spec.strategy.kind,
        spec=spec.to_dict(),
        candidate=release.ref,
        stable=stable,
        update=update_of(state),
        actor=actor,
        reason=reason,
        force=force,
    )


def stable_for(registry: Registry, env: str, candidate: str) -> str:
    """The production release of ``env`` (``NAME@VERSION``), which a rollout of
    ``candidate`` replaces. InvalidRequestError when ``env`` has none, ConflictError
    when ``candidate`` is already it."""
    production = registry.get_alias(env, PRODUCTION)
    if production is None:
        raise InvalidRequestError(
            f"{env} has no production release: a rollout moves production from a stable "
            f"release to a candidate; set one first with "
            f"`llmship alias set production NAME@VERSION --env {env} --reason ...`",
            param="env",
        )
    if production.ref == candidate:
        raise ConflictError(f"{candidate} is already the production release of {env}")
    return production.ref


def _refuse_hand_set_traffic(policy: TrafficPolicy) -> None:
    """A rollout owns the traffic split while it runs: refuse to start over a canary,
    preview, experiment or shadow that someone set by hand (no rollout is active)."""
    held = []
    if policy.canary:
        held.append(f"a canary {policy.canary} at {policy.canary_weight:g}%")
    if policy.preview:
        held.append(f"a preview {policy.preview}")
    if policy.experiment:
        held.append(f"an experiment {policy.experiment.name}")
    if policy.shadow:
        held.append(f"a shadow {policy.shadow} at {policy.shadow_percent:g}%")
    if held:
        raise ConflictError(
            f"the traffic policy of {policy.env} has {' and '.join(held)} set by hand; a "
            "rollout sets the traffic itself: end the hand-set split first with "
            f"`llmship traffic set --reset --env {policy.env}`",
            param="env",
        )


def request(
    registry: Registry,
    env: str,
    target: str | None,
    kind: str,
    *,
    actor: str,
    reason: str = "",
) -> tuple[RolloutRecord, RolloutIntent]:
    """Check that ``kind`` applies to the rollout ``target`` names (as it will be once the
    intents already waiting are applied), and record it for the controller;
    TransitionError (409) when it does not apply."""
    record = registry.find_rollout(env, target)
    event = intent_event(kind, actor=actor, reason=reason)
    check(_expected(registry, record), event)
    if isinstance(event, Retry):
        active = registry.active_rollout(env)
        if active is not None and active.id != record.id:
            raise ConflictError(
                f"rollout {active.name} (id {active.id}) is {active.phase} in {env}: "
                "one rollout runs at a time",
                param="env",
            )
    intent = registry.add_rollout_intent(record.id, kind, actor=actor, reason=reason)
    if intent is None:  # pragma: no cover - only intents with a dedupe key are dropped
        raise ConflictError(f"{kind} was already requested")
    return record, intent


def _expected(registry: Registry, record: RolloutRecord) -> RolloutState:
    """The rollout's state after the intents waiting for the controller (those that apply)."""
    state = state_of(record)
    now = time.time()
    for intent in registry.pending_rollout_intents(record.id):
        try:
            state, _ = step(state, intent_event(intent.kind, actor=intent.actor), now)
        except TransitionError:
            continue
    return state


def undo(
    registry: Registry,
    env: str,
    *,
    actor: str,
    reason: str,
    alias: str = PRODUCTION,
    to: str | None = None,
    why: str = "rollout undo",
) -> AliasMove:
    """Move ``alias`` back to where it pointed before its last move, or to ``to``, a
    release it pointed at before; the reason is kept as ``"{why}: {reason}"``.

    Refused while a rollout runs in ``env`` (abort it: that puts all traffic back on
    stable; :func:`rollback` does both), when the alias has no earlier release, and for
    a ``to`` it never served. No gates are checked: it only goes back to a release
    that served before.
    """
    active = registry.active_rollout(env)
    if active is not None:
        raise ConflictError(
            f"rollout {active.name} (id {active.id}) is {active.phase} in {env}: abort it "
            f"instead (`llmship rollout abort --env {env}`), which puts all traffic on stable",
            param="env",
        )
    wanted = registry.resolve(to, env=env).ref if to is not None else None
    target = rollback_target(registry.alias_history(env, alias), env, alias, to=wanted)
    return registry.set_alias(env, alias, target, actor=actor, reason=f"{why}: {reason}")


def rollback_target(
    history: Sequence[AliasMove],
    env: str,
    alias: str = PRODUCTION,
    *,
    to: str | None = None,
    rollout: RolloutRecord | None = None,
) -> str:
    """Where a rollback moves ``alias`` given its ``history`` (oldest first): where it
    pointed before its last move, or ``to`` (``NAME@VERSION``) when it pointed there
    once. NotFoundError without history, InvalidRequestError when there is nothing
    earlier or ``to`` never served.

    With the ``rollout`` that runs (and will be aborted first), the moves it made
    itself (a blue-green switch to its candidate and back) are not counted: the
    rollback goes to the release before the rollout's stable one.
    """
    if not history:
        raise NotFoundError(f"{env} has no {alias} release to roll back", param="env")
    if to is not None:
        if to not in {m.to_ref for m in history}:
            raise InvalidRequestError(
                f"{alias} in {env} never pointed at {to}: a rollback goes back to a "
                f"release it served; `llmship alias set {alias} {to}` moves it anywhere "
                "(with the gates llmship.yaml requires)",
                param="to",
            )
        return to
    moves = list(history)
    if rollout is not None and alias == PRODUCTION:
        while moves and _made_by(moves[-1], rollout):
            moves.pop()
    if not moves or moves[-1].from_ref is None:
        current = (moves or list(history))[-1].to_ref
        raise InvalidRequestError(
            f"{alias} in {env} has no earlier release than {current}", param="env"
        )
    return moves[-1].from_ref


def _made_by(move: AliasMove, rollout: RolloutRecord) -> bool:
    """Whether ``rollout`` made ``move`` (to or from its candidate, since it started)."""
    return move.at >= rollout.created_at and rollout.candidate in (move.to_ref, move.from_ref)


@dataclass(frozen=True)
class Rollback:
    """What :func:`rollback` did: the rollout it aborted first (if one ran), the move."""

    move: AliasMove
    aborted: RolloutRecord | None = None


def rollback(
    registry: Registry,
    env: str,
    *,
    actor: str,
    reason: str,
    alias: str = PRODUCTION,
    to: str | None = None,
    wait_s: float = ABORT_WAIT_S,
) -> Rollback:
    """``llmship rollback``: :func:`undo`, aborting the rollout that runs in ``env`` first.

    The target is checked before anything changes (nothing moves when it is refused).
    The abort is an intent like ``llmship rollout abort``'s, applied by the controller
    holding the lease ``controller/ENV``, or here under that lease when no controller
    holds it (see :func:`abort_and_wait`); then ``alias`` moves. Only ``production``
    belongs to a rollout: for another alias, :func:`undo`'s refusal stands.
    """
    active = registry.active_rollout(env) if alias == PRODUCTION else None
    if active is None:
        move = undo(registry, env, actor=actor, reason=reason, alias=alias, to=to, why="rollback")
        return Rollback(move)
    wanted = registry.resolve(to, env=env).ref if to is not None else None
    history = registry.alias_history(env, alias)
    target = rollback_target(history, env, alias, to=wanted, rollout=active)
    aborted = abort_and_wait(
        registry, env, active, actor=actor, reason=f"rollback: {reason}", wait_s=wait_s
    )
    move = registry.set_alias(env, alias, target, actor=actor, reason=f"rollback: {reason}")
    return Rollback(move, aborted)


def abort_and_wait(
    registry: Registry,
    env: str,
    record: RolloutRecord,
    *,
    actor: str,
    reason: str,
    wait_s: float = ABORT_WAIT_S,
    poll_s: float = 0.2,
) -> RolloutRecord:
    """Abort the rollout ``record`` and wait until it is Aborted (all traffic on stable).

    The abort is recorded as an intent with ``actor`` and ``reason`` (one already
    waiting, from an alert or a person, is waited for instead). It is applied by the
    one controller that holds the lease ``controller/ENV``: while another process
    holds it, this waits for that controller's next pass; when none does (no
    controller runs), this takes the lease for one pass and applies it as the
    controller would, fenced, so two writers never change the traffic at once.
    ConflictError when the rollout ended otherwise (it was promoted first) or the
    abort was not applied within ``wait_s``: the intent stays, nothing else moved.
    """
    with suppress(TransitionError):  # an abort already waits for the controller
        request(registry, env, str(record.id), "abort", actor=actor, reason=reason)
    deadline = time.monotonic() + wait_s
    while True:
        _pass_unless_led(registry, env)
        current = registry.get_rollout(record.id)
        if not current.active:
            if current.phase != "Aborted":
                raise ConflictError(
                    f"rollout {current.name} (id {current.id}) ended {current.phase} before "
                    f"the abort applied: production in {env} may have moved; nothing was "
                    "rolled back, look at `llmship rollout history` and run it again",
                    param="env",
                )
            return current
        if time.monotonic() >= deadline:
            raise ConflictError(
                f"the abort of rollout {current.name} (id {current.id}) was requested, but "
                f"the controller leading {env} did not apply it within {wait_s:g}s; it "
                "will: run `llmship rollback` again once the rollout is Aborted",
                param="env",
            )
        time.sleep(poll_s)


def _pass_unless_led(registry: Registry, env: str) -> None:
    """One controller pass over ``env`` under its lease, if no controller holds it."""
    controller = Controller(registry, env=env, holder=f"rollback {default_holder()}")
    try:
        controller.run_once()
    finally:
        controller.release()
        controller.close()


def status(
    record: RolloutRecord,
    policy: TrafficPolicy | None = None,
    measurements: list[MeasurementRecord] | None = None,
) -> dict[str, Any]:
    """Plain data for ``rollout status``: where the rollout is, its weights, its analysis."""
    state = state_of(record)
    by_metric: dict[tuple[str, str], list[MeasurementRecord]] = defaultdict(list)
    for m in measurements or []:
        by_metric[(m.run, m.metric)].append(m)
    runs = []
    for run in state.runs:
        metrics = []
        for (run_name, metric), taken in by_metric.items():
            if run_name != run.name:
                continue
            last = taken[-1]
            metrics.append(
                {
                    "metric": metric,
                    "measurements": len(taken),
                    "phases": [m.phase for m in taken],
                    "last_value": last.value,
                    "last_phase": last.phase,
                    "last_message": last.message,
                    "at": last.at.isoformat(),
                }
            )
        runs.append(
            {
                "name": run.name,
                "role": run.role,
                "phase": run.phase.value,
                "message": run.message,
                "metrics": metrics,
            }
        )
    return {
        "id": record.id,
        "name": record.name,
        "env": record.env,
        "strategy": record.strategy,
        "candidate": record.candidate,
        "stable": record.stable,
        "phase": record.phase,
        "step": describe(state),
        "step_index": state.step_index,
        "attempt": state.attempt,
        "weight": state.weight,
        "paused": record.paused,
        "pause_reason": record.pause_reason,
        "abort_reason": record.abort_reason,
        "blocked": state.blocked_reason or None,
        "message": record.message,
        "traffic": policy.to_dict() if policy is not None else None,
        "weights": policy.weights() if policy is not None else None,
        "runs": runs,
        "created_at": record.created_at.isoformat(),
        "created_by": record.created_by,
        "updated_at": record.updated_at.isoformat(),
    }
