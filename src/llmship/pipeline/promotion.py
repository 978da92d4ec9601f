"""Promotion between environments: ``llmship promote``, ``approve`` and ``reject``.

A release moves from an environment (``--from``, default the one listed before
the target in ``environments:``) into the next one only when it is the
production release of the source, has passed the gates the target requires
(:mod:`llmship.release.promotion_guard`), and the target is a declared
environment. Then, where the target wants a person's approval, a request is
recorded (``pending``) and the promotion waits; otherwise, and once approved, it
is carried out: the target's rollout spec starts with the release as candidate
(``rollout.ops.start``: the controller rolls it out with analysis), or, without a
rollout spec (or without a production release there yet to roll out from), the
target's ``production`` alias moves at once::

    promotion = promote(registry, envs, "chat@1.1.0", to="prod", actor="alice")
    promotion.state          # "pending": approval 3 waits
    approve(registry, envs, 3, actor="bob", reason="reviewed the eval report")

Every check is made again when an approval is carried out (the world may have
moved on while it waited), before the decision is recorded; a refusal raises an
llmship error and changes nothing. The decision is a compare-and-set in the
registry, so two approvers cannot both carry a promotion out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from llmship.environments import Environment, Environments
from llmship.errors import (
    ConflictError,
    InvalidRequestError,
    LlmshipError,
    PermissionDeniedError,
)
from llmship.registry import ApprovalRecord, Registry, ReleaseRecord
from llmship.registry._approvals import APPROVAL_STATES, already_decided
from llmship.registry.records import given_reason
from llmship.release.promotion_guard import check_promotion
from llmship.rollout import load_rollout
from llmship.rollout import ops as rollout_ops

__all__ = [
    "PRODUCTION",
    "YES_REASON",
    "Promotion",
    "approve",
    "list_approvals",
    "promote",
    "reject",
]

log = logging.getLogger(__name__)

PRODUCTION = "production"
YES_REASON = "--yes"
"""The decision's reason of an approval given in the same command (``promote --yes``)."""


@dataclass(frozen=True)
class Promotion:
    """What a promotion did: ``moved`` (the target's production alias moved at once),
    ``started`` (the target's rollout started: ``rollout_id``) or ``pending`` (it waits
    for ``approval_id``)."""

    state: Literal["moved", "started", "pending"]
    ref: str
    """The release, ``NAME@VERSION``."""
    env: str
    """The environment it is promoted into."""
    source_env: str | None
    rollout_id: int | None
    approval_id: int | None
    message: str
    """What happened and what to do next, for a person."""


def promote(
    registry: Registry,
    envs: Environments,
    ref: str,
    *,
    to: str,
    source: str | None = None,
    actor: str,
    reason: str = "",
    yes: bool = False,
    pipeline_run: int | None = None,
) -> Promotion:
    """Promote the release ``ref`` (``NAME@VERSION``, or an alias of the source
    environment) into the environment ``to``.

    Refused, with nothing recorded: an undeclared ``to`` or ``source`` (SpecError),
    no environment to promote from (InvalidRequestError), a release that is not the
    source's production release (InvalidRequestError), one that is already the
    target's (ConflictError), missing or failed gates the target requires
    (GateError), ``yes`` where the target does not allow it (InvalidRequestError).
    Where the target needs an approval a pending request is recorded (asking again
    returns the one already waiting), unless ``yes`` is allowed there: then it is
    approved at once by ``actor`` with the reason ``--yes``, and carried out.
    """
    target = envs.declared(to)
    origin = _source(envs, target, source)
    release = registry.resolve(ref, env=origin.name)
    _check_release(registry, envs, release, origin, target, actor=actor)
    why = given_reason(reason)
    if target.approval and yes and not target.allow_yes:
        raise InvalidRequestError(
            f"--yes is not allowed for {target.name}: a promotion into it waits for "
            f"`llmship approve` (set environments.{target.name}.allow_yes: true in "
            "llmship.yaml for scripted runs); nothing was recorded",
            param="yes",
        )
    if not target.approval:
        return _carry_out(registry, release, origin, target, actor=actor, reason=why)
    if not yes:
        request, created = registry.request_approval(
            target.name,
            release.ref,
            source_env=origin.name,
            actor=actor,
            reason=why,
            pipeline_run=pipeline_run,
        )
        again = "" if created else " (already asked)"
        return Promotion(
            state="pending",
            ref=release.ref,
            env=target.name,
            source_env=origin.name,
            rollout_id=None,
            approval_id=request.id,
            message=f"waiting for approval {request.id}{again}: {release.ref} from "
            f"{origin.name} into {target.name}, asked by {request.requested_by}; another "
            f"person approves it with `llmship approve {request.id}` or rejects it with "
            f"`llmship reject {request.id} --reason TEXT`",
        )
    _check_carry_out(registry, release, target)
    request, _ = registry.request_approval(
        target.name,
        release.ref,
        source_env=origin.name,
        actor=actor,
        reason=why,
        pipeline_run=pipeline_run,
    )
    decided = registry.decide_approval(request.id, approved=True, actor=actor, reason=YES_REASON)
    return _carry_out_approved(registry, decided, release, origin, target, actor=actor)


def approve(
    registry: Registry,
    envs: Environments,
    approval_id: int,
    *,
    actor: str,
    reason: str = "",
) -> Promotion:
    """Approve the pending promotion ``approval_id`` and carry it out.

    Refused, with nothing changed: an unknown id (NotFoundError), one decided
    already (ConflictError, naming by whom), the requester approving their own
    request where the environment does not allow it (PermissionDeniedError), and
    every refusal of :func:`promote`, checked again now.
    """
    request = registry.get_approval(approval_id)
    if not request.pending:
        raise ConflictError(already_decided(request), param="approval")
    target = envs.declared(request.env)
    if request.requested_by == actor and not target.self_approval:
        raise PermissionDeniedError(
            f"approval {request.id}: {actor} asked for this promotion and cannot approve it "
            f"too; another person approves it (or set environments.{target.name}."
            "self_approval: true in llmship.yaml)",
            param="approval",
        )
    origin = _source(envs, target, request.source_env)
    release = registry.resolve(request.ref, env=target.name)
    try:
        _check_release(registry, envs, release, origin, target, actor=actor)
        _check_carry_out(registry, release, target)
    except ConflictError:
        latest = registry.get_approval(request.id)
        if not latest.pending:  # another approver carried it out meanwhile
            raise ConflictError(already_decided(latest), param="approval") from None
        raise
    decided = registry.decide_approval(
        request.id, approved=True, actor=actor, reason=given_reason(reason)
    )
    return _carry_out_approved(registry, decided, release, origin, target, actor=actor)


def reject(registry: Registry, approval_id: int, *, actor: str, reason: str) -> ApprovalRecord:
    """Reject the pending promotion ``approval_id``; nothing moves. ``reason`` is
    required. NotFoundError for an unknown id, ConflictError for a decided one."""
    if not reason.strip():
        raise InvalidRequestError(
            "rejecting needs --reason TEXT: the person who asked reads why", param="reason"
        )
    request = registry.get_approval(approval_id)
    if not request.pending:
        raise ConflictError(already_decided(request), param="approval")
    return registry.decide_approval(approval_id, approved=False, actor=actor, reason=reason.strip())


def list_approvals(
    registry: Registry, *, env: str | None = None, state: str | None = None, limit: int = 50
) -> list[ApprovalRecord]:
    """The approvals (of ``env``, in ``state``: pending, approved or rejected), newest first."""
    if state is not None and state not in APPROVAL_STATES:
        raise InvalidRequestError(
            f"--state {state}: use one of {', '.join(APPROVAL_STATES)}", param="state"
        )
    return registry.list_approvals(env=env, state=state, limit=limit)


# -- checks ------------------------------------------------------------------------


def _source(envs: Environments, target: Environment, source: str | None) -> Environment:
    """The environment to promote from: ``source``, else the one before ``target``."""
    if source is not None:
        origin = envs.declared(source)
    else:
        before = envs.before(target.name)
        if before is None:
            raise InvalidRequestError(
                f"{target.name} is the first environment ({', '.join(envs.names)}): there is "
                f"none to promote from; give --from ENV, or set its production release with "
                f"`llmship alias set production NAME@VERSION --env {target.name}`",
                param="from",
            )
        origin = before
    if origin.name == target.name:
        raise InvalidRequestError(
            f"--from {origin.name} --to {target.name}: a promotion goes from one environment "
            "into another",
            param="from",
        )
    return origin


def _check_release(
    registry: Registry,
    envs: Environments,
    release: ReleaseRecord,
    origin: Environment,
    target: Environment,
    *,
    actor: str,
) -> None:
    """The release is production in ``origin``, not yet in ``target``, and has passed
    ``target``'s gates (GateError names the missing ones and how to run them)."""
    current = registry.get_alias(origin.name, PRODUCTION)
    if current is None or current.ref != release.ref:
        now = f"it is {current.ref}" if current is not None else "it has none"
        how = (
            f"`llmship promote {release.ref} --to {origin.name}`"
            if envs.before(origin.name) is not None
            else f"`llmship alias set production {release.ref} --env {origin.name}`"
        )
        raise InvalidRequestError(
            f"{release.ref} is not the production release of {origin.name} ({now}): a "
            f"release reaches {target.name} from there; put it there first with {how}",
            param="ref",
        )
    there = registry.get_alias(target.name, PRODUCTION)
    if there is not None and there.ref == release.ref:
        raise ConflictError(
            f"{release.ref} is already the production release of {target.name}; nothing to do",
            param="ref",
        )
    check_promotion(
        registry,
        target.name,
        release.ref,
        force=False,
        reason="",
        actor=actor,
        required=target.require,
    )


def _check_carry_out(registry: Registry, release: ReleaseRecord, target: Environment) -> None:
    """What carrying the promotion out needs now: a readable rollout spec and no other
    rollout running in ``target`` (when a rollout will start)."""
    if _rolls_out(registry, target):
        assert target.rollout is not None
        load_rollout(target.rollout)
        active = registry.active_rollout(target.name)
        if active is not None:
            raise ConflictError(
                f"rollout {active.name} (id {active.id}) of {active.candidate} is "
                f"{active.phase} in {target.name}: one rollout runs at a time; let it "
                f"finish, or abort it with `llmship rollout abort --env {target.name}`",
                param="env",
            )


def _rolls_out(registry: Registry, target: Environment) -> bool:
    """A promotion into ``target`` starts its rollout spec: it has one, and a
    production release to roll out from."""
    return target.rollout is not None and registry.get_alias(target.name, PRODUCTION) is not None


# -- carrying out ------------------------------------------------------------------


def _carry_out_approved(
    registry: Registry,
    decided: ApprovalRecord,
    release: ReleaseRecord,
    origin: Environment,
    target: Environment,
    *,
    actor: str,
) -> Promotion:
    """Carry out an approved promotion; if that fails, the approval is pending again."""
    why = f"approval {decided.id} by {decided.decided_by}: {decided.decision_reason}"
    try:
        return _carry_out(
            registry, release, origin, target, actor=actor, reason=why, approval=decided.id
        )
    except LlmshipError as exc:
        registry.reopen_approval(decided.id, actor=actor, reason=f"not carried out: {exc.message}")
        log.warning("approval %d not carried out: %s", decided.id, exc.message)
        raise


def _carry_out(
    registry: Registry,
    release: ReleaseRecord,
    origin: Environment,
    target: Environment,
    *,
    actor: str,
    reason: str,
    approval: int | None = None,
) -> Promotion:
    """Start ``target``'s rollout of ``release``, or move its production alias."""
    why = f"promoted from {origin.name}: {reason}"
    approved = f" (approval {approval})" if approval is not None else ""
    if _rolls_out(registry, target):
        assert target.rollout is not None
        spec = load_rollout(target.rollout)
        record = rollout_ops.start(
            registry, spec, release.ref, env=target.name, actor=actor, reason=why
        )
        return Promotion(
            state="started",
            ref=release.ref,
            env=target.name,
            source_env=origin.name,
            rollout_id=record.id,
            approval_id=approval,
            message=f"rollout {record.name} (id {record.id}) of {release.ref} started in "
            f"{target.name}{approved}: {record.strategy} from {record.stable}; the controller "
            f"of `llmship up --env {target.name}` runs it; watch it with "
            f"`llmship rollout status --env {target.name}`",
        )
    before = registry.get_alias(target.name, PRODUCTION)
    move = registry.set_alias(target.name, PRODUCTION, release.ref, actor=actor, reason=why)
    first = ""
    if target.rollout is not None and before is None:
        first = (
            f" (no production release to roll out from yet, so {target.rollout.name} did not run)"
        )
    return Promotion(
        state="moved",
        ref=release.ref,
        env=target.name,
        source_env=origin.name,
        rollout_id=None,
        approval_id=approval,
        message=f"{release.ref} is now the production release of {target.name}{approved}: "
        f"{move.from_ref or '(none)'} -> {move.to_ref}{first}; "
        f"`llmship alias history production --env {target.name}` shows it",
    )
