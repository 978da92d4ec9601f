"""The registry's methods for approvals: promotions that wait for a person.

They are methods of ``Registry`` (which inherits them).

``llmship promote`` into an environment with ``approval: true`` records a request
(state ``pending``); ``llmship approve`` or ``llmship reject`` decides it once. The
decision is a compare-and-set on the state (``UPDATE ... WHERE state = 'pending'``),
so of two people deciding at the same moment exactly one wins and the other is told
who did. Each request and decision is an event ``approval.<state>`` in the same
transaction. What the promotion checks and does lives in
:mod:`llmship.pipeline.promotion`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from llmship.errors import ConflictError, InvalidRequestError, NotFoundError
from llmship.registry import _queries as q
from llmship.registry._base import Store, check_env, logger
from llmship.registry.tables import ApprovalRow

__all__ = ["APPROVAL_STATES", "ApprovalMethods", "ApprovalRecord", "ApprovalState"]

ApprovalState = Literal["pending", "approved", "rejected"]
APPROVAL_STATES: tuple[ApprovalState, ...] = ("pending", "approved", "rejected")


@dataclass(frozen=True)
class ApprovalRecord:
    """A promotion into ``env`` that waits for (or got) a person's decision."""

    id: int
    env: str
    """The environment the release is to be promoted into."""
    source_env: str | None
    """The environment it is production in, which it is promoted from."""
    ref: str
    """The release, ``NAME@VERSION``."""
    state: ApprovalState
    requested_by: str
    requested_at: datetime
    request_reason: str
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None
    pipeline_run: int | None
    """The pipeline run waiting on it, if any."""

    @property
    def pending(self) -> bool:
        """Nobody has decided it yet."""
        return self.state == "pending"

    def to_json(self) -> dict[str, Any]:
        """The record as JSON (``llmship approvals list --format json``)."""
        return {
            "id": self.id,
            "env": self.env,
            "source_env": self.source_env,
            "ref": self.ref,
            "state": self.state,
            "requested_by": self.requested_by,
            "requested_at": self.requested_at.isoformat(),
            "request_reason": self.request_reason,
            "decided_by": self.decided_by,
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
            "decision_reason": self.decision_reason,
            "pipeline_run": self.pipeline_run,
        }


class ApprovalMethods(Store):
    """Registry methods for approvals: promotions that wait for a person."""

    def request_approval(
        self,
        env: str,
        ref: str,
        *,
        source_env: str | None,
        actor: str,
        reason: str,
        pipeline_run: int | None = None,
    ) -> tuple[ApprovalRecord, bool]:
        """Record that ``actor`` asks to promote the release ``ref`` into ``env``; the
        request and True, or the request already pending for that release and
        environment and False (asking twice waits on one decision). An event
        ``approval.requested``."""
        check_env(env)
        if source_env is not None:
            check_env(source_env)
        with self._write() as session:
            release = q.resolve(session, ref, env)  # NAME@VERSION: NotFoundError if unknown
            waiting = session.scalars(
                select(ApprovalRow)
                .where(
                    ApprovalRow.env == env,
                    ApprovalRow.ref == release.ref,
                    ApprovalRow.state == "pending",
                )
                .order_by(ApprovalRow.id)
            ).first()
            if waiting is not None:
                return _to_record(waiting), False
            row = ApprovalRow(
                env=env,
                source_env=source_env,
                ref=release.ref,
                state="pending",
                requested_by=actor,
                requested_at=self._now(),
                request_reason=reason,
                decided_by=None,
                decided_at=None,
                decision_reason=None,
                pipeline_run=pipeline_run,
            )
            session.add(row)
            session.flush()
            self._add_event(
                session,
                kind="approval.requested",
                subject=approval_subject(env, row.id),
                message=f"approval {row.id}: {release.ref} from {source_env or '(none)'} into "
                f"{env} asked by {actor} ({reason})",
                actor=actor,
                data=_event_data(row),
            )
            record = _to_record(row)
        logger.info("approval %d: %s into %s asked by %s", record.id, record.ref, env, actor)
        return record, True

    def get_approval(self, approval_id: int) -> ApprovalRecord:
        """The approval ``approval_id``; NotFoundError when there is none."""
        with self._read() as session:
            return _to_record(_row(session, approval_id))

    def list_approvals(
        self,
        *,
        env: str | None = None,
        state: ApprovalState | None = None,
        limit: int = 50,
    ) -> list[ApprovalRecord]:
        """The latest ``limit`` approvals (of ``env``, in ``state``), newest first."""
        if limit < 1:
            raise InvalidRequestError("limit must be at least 1", param="limit")
        stmt = select(ApprovalRow).order_by(ApprovalRow.id.desc()).limit(limit)
        if env is not None:
            check_env(env)
            stmt = stmt.where(ApprovalRow.env == env)
        if state is not None:
            _check_state(state)
            stmt = stmt.where(ApprovalRow.state == state)
        with self._read() as session:
            return [_to_record(row) for row in session.scalars(stmt)]

    def decide_approval(
        self,
        approval_id: int,
        *,
        approved: bool,
        actor: str,
        reason: str,
    ) -> ApprovalRecord:
        """Approve or reject the approval ``approval_id``, only if it is still pending
        (a compare-and-set: of two deciders one wins). NotFoundError for an unknown
        id, ConflictError when it was decided already (naming by whom, when and why).
        An event ``approval.approved`` or ``approval.rejected``."""
        state: ApprovalState = "approved" if approved else "rejected"
        with self._write() as session:
            now = self._now()
            changed = session.execute(
                update(ApprovalRow)
                .where(ApprovalRow.id == approval_id, ApprovalRow.state == "pending")
                .values(state=state, decided_by=actor, decided_at=now, decision_reason=reason)
            ).rowcount  # type: ignore[attr-defined]
            row = _row(session, approval_id)
            if not changed:
                raise ConflictError(already_decided(_to_record(row)), param="approval")
            session.refresh(row)
            self._add_event(
                session,
                kind=f"approval.{state}",
                subject=approval_subject(row.env, row.id),
                message=f"approval {row.id}: {row.ref} into {row.env} {state} by {actor} "
                f"({reason})",
                actor=actor,
                data=_event_data(row),
            )
            record = _to_record(row)
        logger.info(
            "approval %d: %s into %s %s by %s", record.id, record.ref, record.env, state, actor
        )
        return record

    def reopen_approval(self, approval_id: int, *, actor: str, reason: str) -> ApprovalRecord:
        """Put an ``approved`` approval back to ``pending`` (its promotion could not be
        carried out: ``reason`` says why), so that it can be approved again once fixed.
        ConflictError when it is not ``approved``. An event ``approval.reopened``."""
        with self._write() as session:
            changed = session.execute(
                update(ApprovalRow)
                .where(ApprovalRow.id == approval_id, ApprovalRow.state == "approved")
                .values(state="pending", decided_by=None, decided_at=None, decision_reason=None)
            ).rowcount  # type: ignore[attr-defined]
            row = _row(session, approval_id)
            if not changed:
                raise ConflictError(
                    f"approval {approval_id} is {row.state}, not approved: nothing to reopen",
                    param="approval",
                )
            session.refresh(row)
            self._add_event(
                session,
                kind="approval.reopened",
                subject=approval_subject(row.env, row.id),
                message=f"approval {row.id}: {row.ref} into {row.env} pending again ({reason})",
                actor=actor,
                data={**_event_data(row), "why": reason},
            )
            return _to_record(row)


# -- helpers -------------------------------------------------------------------------


def approval_subject(env: str, approval_id: int) -> str:
    """The ``subject`` of an approval's events: ``prod/approval/3``."""
    return f"{env}/approval/{approval_id}"


def already_decided(record: ApprovalRecord) -> str:
    """Why a decided approval cannot be decided again: by whom, when, and why."""
    when = record.decided_at.isoformat(timespec="seconds") if record.decided_at else "?"
    why = f" ({record.decision_reason})" if record.decision_reason else ""
    return (
        f"approval {record.id} ({record.ref} into {record.env}) was already {record.state} "
        f"by {record.decided_by} at {when}{why}; nothing changed"
    )


def _check_state(state: str) -> None:
    if state not in APPROVAL_STATES:
        raise InvalidRequestError(
            f"approval state {state!r}: use one of {', '.join(APPROVAL_STATES)}", param="state"
        )


def _row(session: Session, approval_id: int) -> ApprovalRow:
    row = session.get(ApprovalRow, approval_id)
    if row is None:
        raise NotFoundError(
            f"no approval {approval_id}: `llmship approvals list` shows them", param="approval"
        )
    return row


def _event_data(row: ApprovalRow) -> dict[str, Any]:
    return {
        "approval": row.id,
        "env": row.env,
        "source_env": row.source_env,
        "ref": row.ref,
        "state": row.state,
        "requested_by": row.requested_by,
        "decided_by": row.decided_by,
        "reason": row.decision_reason if row.decided_by else row.request_reason,
        "pipeline_run": row.pipeline_run,
    }


def _to_record(row: ApprovalRow) -> ApprovalRecord:
    return ApprovalRecord(
        id=row.id,
        env=row.env,
        source_env=row.source_env,
        ref=row.ref,
        state=row.state,  # type: ignore[arg-type]
        requested_by=row.requested_by,
        requested_at=row.requested_at,
        request_reason=row.request_reason,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        decision_reason=row.decision_reason,
        pipeline_run=row.pipeline_run,
    )
