"""The promotion guard, enforced where traffic and aliases change: inside the
registry's own write transactions, whoever calls (a command, the admin API, the
controller, a script).

A change is guarded when it gives a release, in an environment whose rule
(:class:`~llmship.release.promotion_guard.GuardRule`) requires gates:

- the ``production`` alias (``Registry.set_alias``, ``promote_preview``, an alert's
  rollback, any later path: they all move it with ``Store._move_alias_in``);
- all of the environment's traffic, or more than ``guard_above`` percent of it, through
  the traffic policy or the flags (:func:`shares`: a canary's weight, an experiment
  arm's, a routing flag's percent, added up), when the change raises its share.

Not guarded, so that a rollback always works and a rollout runs to its end:

- a release that was the environment's ``production`` release before (it is in the
  alias's history: ``llmship rollback``, ``rollout undo``, an alert's rollback);
- the candidate of the environment's newest rollout, unless that rollout was
  aborted: the rollout was checked (or forced, and recorded) when it was recorded
  (``create_rollout``), so its steps and the controller's promotion at its end are not
  checked again.

The newest gate run of each required kind is read in the same transaction. A release
without them is refused (``GateError``, 409) unless ``force`` with a reason of its own:
an event ``gate.forced`` per release, and the reason recorded with the change (the
alias history's too) starts with ``[forced]``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from llmship.errors import InvalidRequestError
from llmship.flags.model import Flag
from llmship.registry import _queries as q
from llmship.registry.records import NO_REASON, Event
from llmship.registry.tables import AliasHistoryRow, RolloutRow
from llmship.release.promotion_guard import GuardRule, forced_reason, gate_error, refusal
from llmship.routing.policy import TrafficPolicy

__all__ = ["admit", "shares"]

log = logging.getLogger(__name__)

STABLE_ALIAS = "production"
ABORTED = "Aborted"

RecordEvent = Callable[..., Event]
"""``Store._add_event`` bound to the transaction's session."""


def shares(policy: TrafficPolicy, flags: Iterable[Flag] = ()) -> dict[str, float]:
    """The most of the environment's ordinary traffic (percent) each release may get
    besides stable: a canary's weight, an experiment arm's weight, an enabled routing
    flag's percent (its conditions may match every request), added up and capped at
    100. The preview (asked for by header) and the shadow (answers not seen) count 0."""
    found: dict[str, float] = {}

    def add(ref: str | None, percent: float) -> None:
        if ref and percent > 0:
            found[ref] = min(100.0, found.get(ref, 0.0) + percent)

    if policy.canary:
        add(policy.canary, policy.canary_weight)
    if policy.experiment:
        for variant in policy.experiment.variants:
            add(variant.ref, variant.weight)
    for flag in flags:
        if flag.enabled and flag.release:
            add(flag.release, flag.percent)
    return found


def admit(
    session: Session,
    env: str,
    rule: GuardRule,
    record: RecordEvent,
    *,
    force: bool,
    reason: str,
    actor: str,
    production: str | None = None,
    rollout: str | None = None,
    before: Mapping[str, float] | None = None,
    after: Mapping[str, float] | None = None,
) -> str:
    """Check a change of ``env`` inside its transaction; the reason to record with it.

    ``production``: the release (``NAME@VERSION``) the ``production`` alias moves to;
    ``rollout``: the candidate of a rollout being recorded; ``before`` and ``after``:
    :func:`shares` before and after a traffic policy or flag change. GateError names the
    first release refused, its missing gates and how to run them, unless ``force``.
    """
    if not rule.require:
        return reason
    stable = q.alias_target(session, env, STABLE_ALIAS)
    current = f"{stable.name}@{stable.version}" if stable is not None else None
    wanted: list[tuple[str, str]] = []
    if production is not None and production != current:
        wanted.append((production, "become production"))
    if rollout is not None:
        wanted.append((rollout, "be rolled out"))
    for ref, share in (after or {}).items():
        if ref != current and share > (before or {}).get(ref, 0.0) and rule.guards(share):
            wanted.append((ref, f"get {share:g}% of the traffic"))
    refused: list[tuple[str, str, list[str], str]] = []
    for ref, what in wanted:
        if _served_before(session, env, ref) or (
            rollout is None and _rolling_out(session, env, ref)
        ):
            continue
        missing, problems = refusal(rule.require, q.latest_gate_runs(session, ref))
        if missing:
            refused.append((ref, what, missing, problems))
    if not refused:
        return reason
    if not force:
        ref, what, missing, problems = refused[0]
        raise gate_error(env, ref, rule.require, missing, problems, what)
    why = reason.removeprefix("[forced]").strip()
    if not why or why == NO_REASON:
        raise InvalidRequestError(
            "--force needs --reason TEXT: why the release goes out without passing gates",
            param="reason",
        )
    for ref, what, missing, problems in refused:
        record(
            session,
            kind="gate.forced",
            subject=ref,
            message=f"{ref} forced to {what} in {env} without passing gates ({problems}): {why}",
            actor=actor,
            data=_forced(env, ref, what, missing, why, actor),
        )
        log.warning("gates %s of %s forced in %s by %s", ",".join(missing), ref, env, actor)
    return forced_reason(reason)


def _forced(
    env: str, ref: str, what: str, missing: list[str], reason: str, actor: str
) -> dict[str, Any]:
    return {
        "env": env,
        "ref": ref,
        "to": what,
        "missing": missing,
        "reason": reason,
        "actor": actor,
    }


def _served_before(session: Session, env: str, ref: str) -> bool:
    """Whether ``ref`` was the ``production`` release of ``env`` at some time."""
    name, _, version = ref.partition("@")
    row = q.release_row(session, name, version)
    if row is None:
        return False
    stmt = select(AliasHistoryRow.id).where(
        AliasHistoryRow.env == env,
        AliasHistoryRow.alias == STABLE_ALIAS,
        AliasHistoryRow.to_release_id == row.id,
    )
    return session.scalars(stmt.limit(1)).first() is not None


def _rolling_out(session: Session, env: str, ref: str) -> bool:
    """Whether ``ref`` is the candidate of ``env``'s newest rollout and it was not aborted
    (it was checked when it was recorded)."""
    stmt = select(RolloutRow).where(RolloutRow.env == env).order_by(RolloutRow.id.desc())
    newest = session.scalars(stmt.limit(1)).first()
    return newest is not None and newest.candidate == ref and newest.phase != ABORTED
