"""The registry's methods for alert actions: what an alert did to production after a promotion.

They are methods of ``Registry`` (which inherits them).

An Alertmanager alert labelled ``action=rollback`` that names an environment's
production release (and no rollout runs there) is recorded once per firing, keyed
by its dedupe key (group key, fingerprint, start time): ``rollback`` when production
moved back, ``notify`` when the environment only notes alerts, ``ignored`` when it
changed nothing (the release is not production, or there is nothing to go back to).
A repeated delivery finds the key and changes nothing. The alias move and the
record share one transaction, so two deliveries racing move production once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import exc as sa_exc
from sqlalchemy import select
from sqlalchemy.orm import Session

from llmship.errors import InvalidRequestError
from llmship.registry import _queries as q
from llmship.registry._base import Store, check_env, logger
from llmship.registry._hosts import notify_change
from llmship.registry.tables import AlertActionRow, RolloutRow

__all__ = ["ALERT_ACTIONS", "AlertAction", "AlertActionKind", "AlertActionMethods"]

AlertActionKind = Literal["rollback", "notify", "ignored"]
ALERT_ACTIONS: tuple[AlertActionKind, ...] = ("rollback", "notify", "ignored")
DEDUPE_LENGTH = 128
PRODUCTION = "production"


@dataclass(frozen=True)
class AlertAction:
    """What one firing of one alert did to an environment's production release."""

    id: int
    env: str
    dedupe_key: str
    """The alert's group key, fingerprint and start time (sha256): one row per firing."""
    alertname: str
    ref: str
    """The release the alert named."""
    action: AlertActionKind
    """``rollback`` (production moved back), ``notify`` (only noted) or ``ignored``."""
    outcome: str
    """What happened, in words (``chat@1.1.0 -> chat@1.0.0``, or why nothing did)."""
    created_at: datetime


class AlertActionMethods(Store):
    """Registry methods for alert actions: what an alert did to production after a promotion."""

    def record_alert_action(
        self,
        env: str,
        *,
        dedupe_key: str,
        alertname: str,
        ref: str,
        action: AlertActionKind,
        outcome: str,
        actor: str = "alertmanager",
        rollback_to: str | None = None,
        reason: str = "",
    ) -> AlertAction | None:
        """Record what the alert ``dedupe_key`` did in ``env``; None when it was already
        recorded (a repeated delivery), which changes nothing.

        With ``action="rollback"``, ``production`` moves from ``ref`` to
        ``rollback_to`` in the same transaction, its history keeping ``reason``; when
        production is no longer ``ref`` or a rollout started meanwhile, nothing moves
        and the action is recorded as ``ignored``, saying why. An event
        ``alert.<action>`` is recorded with it.
        """
        check_env(env)
        _check_action(action)
        if not 0 < len(dedupe_key) <= DEDUPE_LENGTH:
            raise InvalidRequestError(
                f"a dedupe key has 1 to {DEDUPE_LENGTH} characters", param="dedupe_key"
            )
        if action == "rollback" and rollback_to is None:
            raise InvalidRequestError("a rollback needs the release to go back to", param="to")
        try:
            with self._write() as session:
                if _recorded(session, env, dedupe_key):
                    return None
                if action == "rollback":
                    action, outcome = self._roll_back(
                        session, env, ref, rollback_to or "", actor=actor, reason=reason
                    )
                row = AlertActionRow(
                    env=env,
                    dedupe_key=dedupe_key,
                    alertname=alertname[:255],
                    ref=ref,
                    action=action,
                    outcome=outcome,
                    created_at=self._now(),
                )
                session.add(row)
                session.flush()
                self._add_event(
                    session,
                    kind=f"alert.{action}",
                    subject=f"{env}/{PRODUCTION}",
                    message=f"alert {alertname or '(unnamed)'} for {ref} in {env}: {outcome}",
                    actor=actor,
                    data={"env": env, "alert": alertname, "ref": ref, "action_id": row.id},
                )
                recorded = _to_alert_action(row)
        except sa_exc.IntegrityError:
            return None  # the same delivery raced with itself: the other one recorded it
        logger.info("alert %s for %s in %s: %s", alertname, ref, env, recorded.outcome)
        return recorded

    def _roll_back(
        self, session: Session, env: str, ref: str, target: str, *, actor: str, reason: str
    ) -> tuple[AlertActionKind, str]:
        """Move production from ``ref`` to ``target`` unless something changed since the
        caller looked; what was done and how it went."""
        production = q.alias_target(session, env, PRODUCTION)
        current = f"{production.name}@{production.version}" if production is not None else None
        if current != ref:
            return "ignored", f"{ref} is no longer production in {env} ({current or 'none'})"
        running = session.scalars(select(RolloutRow.id).where(RolloutRow.active_env == env))
        if running.first() is not None:
            return (
                "ignored",
                f"a rollout started in {env}; only an alert for its candidate aborts it",
            )
        release = q.resolve(session, target, env)
        move = self._move_alias_in(session, env, PRODUCTION, release, actor=actor, reason=reason)
        notify_change(session, env)
        return "rollback", f"production {move.from_ref} -> {move.to_ref}"

    def alert_action(self, env: str, dedupe_key: str) -> AlertAction | None:
        """The recorded action of the alert ``dedupe_key`` in ``env``, or None."""
        with self._read() as session:
            row = session.scalars(
                select(AlertActionRow).where(
                    AlertActionRow.env == env, AlertActionRow.dedupe_key == dedupe_key
                )
            ).first()
            return _to_alert_action(row) if row is not None else None

    def list_alert_actions(
        self, env: str | None = None, *, action: str | None = None, limit: int = 50
    ) -> list[AlertAction]:
        """The latest ``limit`` alert actions (of ``env``, that did ``action``), newest first."""
        if limit < 1:
            raise InvalidRequestError("limit must be at least 1", param="limit")
        if action is not None:
            _check_action(action)
        stmt = select(AlertActionRow).order_by(AlertActionRow.id.desc()).limit(limit)
        if env is not None:
            stmt = stmt.where(AlertActionRow.env == env)
        if action is not None:
            stmt = stmt.where(AlertActionRow.action == action)
        with self._read() as session:
            return [_to_alert_action(row) for row in session.scalars(stmt)]


def _check_action(action: str) -> None:
    if action not in ALERT_ACTIONS:
        raise InvalidRequestError(
            f"unknown alert action {action!r}: use one of {', '.join(ALERT_ACTIONS)}",
            param="action",
        )


def _recorded(session: Session, env: str, dedupe_key: str) -> bool:
    stmt = select(AlertActionRow.id).where(
        AlertActionRow.env == env, AlertActionRow.dedupe_key == dedupe_key
    )
    return session.scalars(stmt).first() is not None


def _kind(action: str) -> AlertActionKind:
    for kind in ALERT_ACTIONS:
        if kind == action:
            return kind
    raise ValueError(f"alert_actions holds an unknown action {action!r}")  # pragma: no cover


def _to_alert_action(row: AlertActionRow) -> AlertAction:
    return AlertAction(
        id=row.id,
        env=row.env,
        dedupe_key=row.dedupe_key,
        alertname=row.alertname,
        ref=row.ref,
        action=_kind(row.action),
        outcome=row.outcome,
        created_at=row.created_at,
    )
