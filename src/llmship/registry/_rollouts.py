"""The registry's methods for rollouts: their state, the intents people and alerts
leave for the controller, and analysis measurements. They are methods of
``Registry`` (which inherits them).

A rollout row holds the state machine's state as JSON plus the columns a list
needs (phase, step, pause and abort reasons). ``active_env`` is the environment
while the rollout is not finished and NULL afterwards; its unique constraint is
what keeps one active rollout per environment, even when two processes start one
at the same moment. Every save names the revision it read (optimistic
concurrency) and records one event per transition, in the same transaction.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from llmship.errors import ConflictError, InvalidRequestError, NotFoundError
from llmship.registry import _queries as q
from llmship.registry._base import Store, check_env, logger
from llmship.registry.records import (
    Event,
    MeasurementRecord,
    RolloutIntent,
    RolloutRecord,
    RolloutUpdate,
)
from llmship.registry.tables import (
    AnalysisMeasurementRow,
    EventRow,
    RolloutIntentRow,
    RolloutRow,
)

INTENT_KINDS = ("promote", "promoteFull", "pause", "resume", "abort", "retry")
DEDUPE_LENGTH = 64


def rollout_subject(env: str, rollout_id: int) -> str:
    """The ``subject`` of a rollout's events: ``dev/rollout/3``."""
    return f"{env}/rollout/{rollout_id}"


class RolloutMethods(Store):
    """Rollouts, their intents and measurements (part of ``Registry``)."""

    def create_rollout(
        self,
        env: str,
        *,
        name: str,
        strategy: str,
        spec: dict[str, Any],
        candidate: str,
        stable: str | None,
        update: RolloutUpdate,
        actor: str,
        reason: str = "",
        force: bool = False,
    ) -> RolloutRecord:
        """Record a new rollout of ``candidate`` in ``env``.

        The candidate (and the stable release) must be registered. ConflictError
        when another rollout of ``env`` is not finished: one runs at a time. The promotion
        guard checks the candidate here, once (``registry/_guard.py``; ``force``).
        """
        check_env(env)
        try:
            with self._write() as session:
                candidate = q.canonical_ref(session, candidate, env, role="candidate")
                if stable is not None:
                    stable = q.canonical_ref(session, stable, env, role="stable")
                _refuse_if_active(session, env)
                reason = self._admit(session, env, force=force, reason=reason, actor=actor,
                                     rollout=candidate)  # fmt: skip
                now = self._now()
                row = RolloutRow(
                    env=env,
                    name=name,
                    strategy=strategy,
                    spec=json.dumps(spec, sort_keys=True),
                    candidate=candidate,
                    stable=stable,
                    created_at=now,
                    created_by=actor,
                    revision=0,
                )
                _apply(row, update, env=env, now=now)
                session.add(row)
                session.flush()
                why = f" ({reason})" if reason else ""
                self._add_event(
                    session,
                    kind="rollout.created",
                    subject=rollout_subject(env, row.id),
                    message=f"rollout {name} (id {row.id}) of {candidate} in {env}: {strategy} "
                    f"from {stable or '(none)'}{why}",
                    actor=actor,
                    data=_event_data(row),
                )
                record = _to_rollout(row)
        except sa_exc.IntegrityError as exc:
            # Another process started a rollout in env at the same moment.
            with self._read() as session:
                _refuse_if_active(session, env)
            raise ConflictError(f"another rollout was started in {env} meanwhile") from exc
        logger.info(
            "rollout %s (id %d) of %s created in %s by %s", name, record.id, candidate, env, actor
        )
        return record

    def get_rollout(self, rollout_id: int) -> RolloutRecord:
        """The rollout ``rollout_id``; NotFoundError when there is none."""
        with self._read() as session:
            return _to_rollout(_row(session, rollout_id))

    def active_rollout(self, env: str) -> RolloutRecord | None:
        """The unfinished rollout of ``env``, or None."""
        with self._read() as session:
            row = session.scalars(select(RolloutRow).where(RolloutRow.active_env == env)).first()
            return _to_rollout(row) if row is not None else None

    def find_rollout(self, env: str, target: str | None = None) -> RolloutRecord:
        """The rollout ``target`` names in ``env``: an id, or a name (the active one of
        that name, else the newest); without a target the active rollout, else the newest.
        NotFoundError says what there is."""
        check_env(env)
        with self._read() as session:
            stmt = select(RolloutRow).where(RolloutRow.env == env)
            if target is not None and target.strip().isdigit():
                row = session.get(RolloutRow, int(target))
                if row is None or row.env != env:
                    raise NotFoundError(
                        f"no rollout with id {target} in {env}: `llmship rollout list` shows them",
                        param="rollout",
                    )
                return _to_rollout(row)
            if target is not None:
                stmt = stmt.where(RolloutRow.name == target)
            rows = list(session.scalars(stmt.order_by(RolloutRow.id.desc()).limit(50)))
            active = [r for r in rows if r.active_env is not None]
            if active or rows:
                return _to_rollout(active[0] if active else rows[0])
            names = sorted(
                set(session.scalars(select(RolloutRow.name).where(RolloutRow.env == env)))
            )
        if target is None:
            raise NotFoundError(
                f"no rollout in {env} yet: start one with "
                "`llmship rollout start SPEC --candidate NAME@VERSION`",
                param="rollout",
            )
        known = f" (rollouts there: {', '.join(names)})" if names else ""
        raise NotFoundError(f"no rollout named {target!r} in {env}{known}", param="rollout")

    def list_rollouts(
        self, env: str | None = None, *, active_only: bool = False, limit: int = 50
    ) -> list[RolloutRecord]:
        """The latest ``limit`` rollouts (of ``env``; only unfinished ones), newest first."""
        if limit < 1:
            raise InvalidRequestError("limit must be at least 1", param="limit")
        stmt = select(RolloutRow).order_by(RolloutRow.id.desc()).limit(limit)
        if env is not None:
            stmt = stmt.where(RolloutRow.env == env)
        if active_only:
            stmt = stmt.where(RolloutRow.active_env.is_not(None))
        with self._read() as session:
            return [_to_rollout(row) for row in session.scalars(stmt)]

    def page_rollouts(
        self,
        env: str | None = None,
        *,
        active: bool | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[RolloutRecord], int]:
        """One page of rollouts (of ``env``; only unfinished, or only finished, ones),
        newest first, and how many there are in all (for the dashboard's pages)."""
        stmt = select(RolloutRow)
        if env is not None:
            stmt = stmt.where(RolloutRow.env == env)
        if active is not None:
            done = RolloutRow.active_env.is_(None)
            stmt = stmt.where(~done if active else done)
        with self._read() as session:
            total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
            rows = session.scalars(stmt.order_by(RolloutRow.id.desc()).limit(limit).offset(offset))
            return [_to_rollout(row) for row in rows], total

    def rollouts_to_reconcile(self, env: str | None = None) -> list[RolloutRecord]:
        """What the controller has to look at (of ``env``): every unfinished rollout and
        every finished one with an intent waiting (a ``retry``), oldest first."""
        waiting = select(RolloutIntentRow.rollout_id).where(RolloutIntentRow.consumed_at.is_(None))
        stmt = (
            select(RolloutRow)
            .where(RolloutRow.active_env.is_not(None) | RolloutRow.id.in_(waiting))
            .order_by(RolloutRow.id)
        )
        if env is not None:
            stmt = stmt.where(RolloutRow.env == env)
        with self._read() as session:
            return [_to_rollout(row) for row in session.scalars(stmt)]

    def save_rollout(
        self,
        rollout_id: int,
        update: RolloutUpdate,
        *,
        expected_revision: int,
        actor: str,
        notes: Sequence[tuple[str, str, str]] = (),
        consume_intent: int | None = None,
    ) -> RolloutRecord:
        """Store the rollout's new state (revision + 1), one event per note
        ``(kind, message, actor)``, and mark ``consume_intent`` applied, in one transaction.

        ConflictError when the stored revision is not ``expected_revision`` (someone
        saved meanwhile: read it again), or when the update makes the rollout active
        again while another rollout of its environment is.
        """
        try:
            with self._write() as session:
                row = _row(session, rollout_id, for_update=True)
                if row.revision != expected_revision:
                    raise ConflictError(
                        f"rollout {row.name} (id {row.id}) is at revision {row.revision}, not "
                        f"{expected_revision}: it changed meanwhile; read it again",
                        param="revision",
                    )
                if update.active and row.active_env is None:
                    _refuse_if_active(session, row.env)
                now = self._now()
                _apply(row, update, env=row.env, now=now)
                row.revision += 1
                session.flush()
                for kind, message, who in notes:
                    self._add_event(
                        session,
                        kind=kind,
                        subject=rollout_subject(row.env, row.id),
                        message=f"rollout {row.name} (id {row.id}): {message}",
                        actor=who or actor,
                        data=_event_data(row),
                    )
                if consume_intent is not None:
                    intent = session.get(RolloutIntentRow, consume_intent, with_for_update=True)
                    if intent is not None and intent.consumed_at is None:
                        intent.consumed_at = now
                        intent.outcome = "applied"
                return _to_rollout(row)
        except sa_exc.IntegrityError as exc:
            raise ConflictError(
                f"another rollout is active in the environment of rollout {rollout_id}",
                param="env",
            ) from exc

    # -- intents -------------------------------------------------------------

    def add_rollout_intent(
        self,
        rollout_id: int,
        kind: str,
        *,
        actor: str,
        reason: str = "",
        dedupe_key: str | None = None,
    ) -> RolloutIntent | None:
        """Ask the controller to ``kind`` the rollout (``promote``, ``promoteFull``,
        ``pause``, ``resume``, ``abort``, ``retry``); it applies intents in order.

        With ``dedupe_key``, asking again with the same key for the same rollout
        changes nothing and returns None.
        """
        if kind not in INTENT_KINDS:
            raise InvalidRequestError(
                f"unknown rollout intent {kind!r}: use one of {', '.join(INTENT_KINDS)}",
                param="kind",
            )
        if dedupe_key is not None and not 0 < len(dedupe_key) <= DEDUPE_LENGTH:
            raise InvalidRequestError(
                f"a dedupe key has 1 to {DEDUPE_LENGTH} characters", param="dedupe_key"
            )
        try:
            with self._write() as session:
                rollout = _row(session, rollout_id)
                if dedupe_key is not None and _intent_exists(session, rollout_id, dedupe_key):
                    return None
                row = RolloutIntentRow(
                    rollout_id=rollout_id,
                    kind=kind,
                    actor=actor,
                    reason=reason,
                    dedupe_key=dedupe_key,
                    created_at=self._now(),
                )
                session.add(row)
                session.flush()
                why = f": {reason}" if reason else ""
                self._add_event(
                    session,
                    kind="rollout.requested",
                    subject=rollout_subject(rollout.env, rollout.id),
                    message=f"rollout {rollout.name} (id {rollout.id}): {kind} requested by "
                    f"{actor}{why}",
                    actor=actor,
                    data={**_event_data(rollout), "intent": row.id, "kind": kind},
                )
                intent = _to_intent(row)
        except sa_exc.IntegrityError:
            # The same delivery raced with itself: the other one recorded it.
            if dedupe_key is None:
                raise
            return None
        logger.info("rollout %d: %s requested by %s", rollout_id, kind, actor)
        return intent

    def request_rollout_abort(
        self,
        env: str,
        rollout_id: int,
        *,
        reason: str,
        dedupe_key: str,
        actor: str = "alertmanager",
    ) -> bool:
        """Ask the controller to abort rollout ``rollout_id`` of ``env`` (an alert fired).

        Idempotent by ``dedupe_key`` (an alert's group key, fingerprint and start):
        True when the request is new, False for a repeated delivery, which changes
        nothing. NotFoundError when ``env`` has no such rollout.
        """
        check_env(env)
        with self._read() as session:
            row = session.get(RolloutRow, rollout_id)
            if row is None or row.env != env:
                raise NotFoundError(f"no rollout with id {rollout_id} in {env}", param="rollout")
        return (
            self.add_rollout_intent(
                rollout_id, "abort", actor=actor, reason=reason, dedupe_key=dedupe_key
            )
            is not None
        )

    def pending_rollout_intents(self, rollout_id: int) -> list[RolloutIntent]:
        """The intents of the rollout not yet applied, oldest first."""
        stmt = (
            select(RolloutIntentRow)
            .where(
                RolloutIntentRow.rollout_id == rollout_id, RolloutIntentRow.consumed_at.is_(None)
            )
            .order_by(RolloutIntentRow.id)
        )
        with self._read() as session:
            return [_to_intent(row) for row in session.scalars(stmt)]

    def list_rollout_intents(self, rollout_id: int) -> list[RolloutIntent]:
        """Every intent of the rollout, oldest first."""
        stmt = (
            select(RolloutIntentRow)
            .where(RolloutIntentRow.rollout_id == rollout_id)
            .order_by(RolloutIntentRow.id)
        )
        with self._read() as session:
            return [_to_intent(row) for row in session.scalars(stmt)]

    def reject_rollout_intent(self, intent_id: int, why: str, *, actor: str) -> None:
        """Mark an intent done without effect (it did not apply), with an event saying why."""
        with self._write() as session:
            intent = session.get(RolloutIntentRow, intent_id, with_for_update=True)
            if intent is None or intent.consumed_at is not None:
                return
            intent.consumed_at = self._now()
            intent.outcome = why
            rollout = _row(session, intent.rollout_id)
            self._add_event(
                session,
                kind="rollout.rejected",
                subject=rollout_subject(rollout.env, rollout.id),
                message=f"rollout {rollout.name} (id {rollout.id}): {intent.kind} by "
                f"{intent.actor} not applied: {why}",
                actor=actor,
                data={**_event_data(rollout), "intent": intent.id, "kind": intent.kind},
            )

    # -- measurements --------------------------------------------------------

    def record_measurement(
        self,
        rollout_id: int,
        run: str,
        metric: str,
        *,
        phase: str,
        value: Any,
        message: str,
        started_at: datetime | None,
        at: datetime,
    ) -> MeasurementRecord:
        """Store one measurement of ``metric`` in the analysis run ``run`` of the rollout."""
        with self._write() as session:
            _row(session, rollout_id)
            row = AnalysisMeasurementRow(
                rollout_id=rollout_id,
                run=run,
                metric=metric,
                phase=phase,
                value=json.dumps(_json_safe(value), allow_nan=False),
                message=message,
                started_at=started_at,
                at=at,
            )
            session.add(row)
            session.flush()
            return _to_measurement(row)

    def list_measurements(
        self, rollout_id: int, *, runs: Iterable[str] | None = None
    ) -> list[MeasurementRecord]:
        """The measurements of the rollout (of the runs named), oldest first."""
        stmt = (
            select(AnalysisMeasurementRow)
            .where(
                AnalysisMeasurementRow.rollout_id
                == (rollout_id if q.storable_id(rollout_id) else 0)
            )
            .order_by(AnalysisMeasurementRow.id)
        )
        if runs is not None:
            names = list(runs)
            if not names:
                return []
            stmt = stmt.where(AnalysisMeasurementRow.run.in_(names))
        with self._read() as session:
            return [_to_measurement(row) for row in session.scalars(stmt)]

    def rollout_events(self, rollout_id: int, *, limit: int = 500) -> list[Event]:
        """The events of the rollout (transitions, requests, rejections), oldest first."""
        with self._read() as session:
            row = _row(session, rollout_id)
            stmt = (
                select(EventRow)
                .where(EventRow.subject == rollout_subject(row.env, row.id))
                .order_by(EventRow.id.desc())
                .limit(limit)
            )
            return [q.to_event(e) for e in reversed(list(session.scalars(stmt)))]

    def page_rollout_events(
        self, rollout_id: int, *, limit: int = 50, offset: int = 0
    ) -> tuple[list[Event], int]:
        """One page of the rollout's events, oldest first, and how many it has in all."""
        with self._read() as session:
            row = _row(session, rollout_id)
            stmt = select(EventRow).where(EventRow.subject == rollout_subject(row.env, row.id))
            total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
            rows = session.scalars(stmt.order_by(EventRow.id).limit(limit).offset(offset))
            return [q.to_event(e) for e in rows], total

    def env_events(self, env: str, *, limit: int = 20) -> list[Event]:
        """The latest events of ``env`` (its traffic, aliases, flags, rollouts, approvals
        and controller lease), newest first."""
        check_env(env)
        subject = EventRow.subject
        where = or_(subject == env, subject.startswith(f"{env}/"), subject == f"controller/{env}")
        stmt = select(EventRow).where(where).order_by(EventRow.id.desc()).limit(limit)
        with self._read() as session:
            return [q.to_event(e) for e in session.scalars(stmt)]


# -- helpers ------------------------------------------------------------------------


def _row(session: Session, rollout_id: int, *, for_update: bool = False) -> RolloutRow:
    row = (
        session.get(RolloutRow, rollout_id, with_for_update=for_update)
        if q.storable_id(rollout_id)
        else None
    )
    if row is None:
        raise NotFoundError(
            f"no rollout with id {rollout_id}: `llmship rollout list` shows them", param="rollout"
        )
    return row


def _refuse_if_active(session: Session, env: str) -> None:
    active = session.scalars(select(RolloutRow).where(RolloutRow.active_env == env)).first()
    if active is not None:
        raise ConflictError(
            f"rollout {active.name} (id {active.id}) of {active.candidate} is {active.phase} in "
            f"{env}: one rollout runs at a time; promote or abort it first "
            f"(`llmship rollout abort {active.id} --env {env}`)",
            param="env",
        )


def _intent_exists(session: Session, rollout_id: int, dedupe_key: str) -> bool:
    stmt = select(RolloutIntentRow.id).where(
        RolloutIntentRow.rollout_id == rollout_id, RolloutIntentRow.dedupe_key == dedupe_key
    )
    return session.scalars(stmt).first() is not None


def _apply(row: RolloutRow, update: RolloutUpdate, *, env: str, now: datetime) -> None:
    row.phase = update.phase
    row.step_index = update.step_index
    row.step_started_at = update.step_started_at
    row.paused = update.paused
    row.pause_reason = update.pause_reason
    row.abort_reason = update.abort_reason
    row.message = update.message
    row.state = json.dumps(update.state, sort_keys=True, allow_nan=False)
    row.active_env = env if update.active else None
    row.updated_at = now


def _event_data(row: RolloutRow) -> dict[str, Any]:
    return {
        "rollout": row.id,
        "name": row.name,
        "env": row.env,
        "candidate": row.candidate,
        "stable": row.stable,
        "phase": row.phase,
        "step": row.step_index,
    }


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _to_rollout(row: RolloutRow) -> RolloutRecord:
    return RolloutRecord(
        id=row.id,
        env=row.env,
        name=row.name,
        strategy=row.strategy,
        spec=json.loads(row.spec),
        candidate=row.candidate,
        stable=row.stable,
        phase=row.phase,
        step_index=row.step_index,
        step_started_at=row.step_started_at,
        paused=row.paused,
        pause_reason=row.pause_reason,
        abort_reason=row.abort_reason,
        message=row.message,
        state=json.loads(row.state),
        active=row.active_env is not None,
        created_at=row.created_at,
        created_by=row.created_by,
        updated_at=row.updated_at,
        revision=row.revision,
    )


def _to_intent(row: RolloutIntentRow) -> RolloutIntent:
    return RolloutIntent(
        id=row.id,
        rollout_id=row.rollout_id,
        kind=row.kind,
        actor=row.actor,
        reason=row.reason,
        dedupe_key=row.dedupe_key,
        created_at=row.created_at,
        consumed_at=row.consumed_at,
        outcome=row.outcome,
    )


def _to_measurement(row: AnalysisMeasurementRow) -> MeasurementRecord:
    return MeasurementRecord(
        id=row.id,
        rollout_id=row.rollout_id,
        run=row.run,
        metric=row.metric,
        phase=row.phase,
        value=json.loads(row.value) if row.value is not None else None,
        message=row.message,
        started_at=row.started_at,
        at=row.at,
    )
