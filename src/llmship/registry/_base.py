"""What every part of the registry shares: the engine, transactions, the clock, events,
moving an alias inside a transaction, and the lease fence every write can carry.

``Registry`` (``store.py``) builds on this; so do the gateway's methods
(``_gateway.py``), which are part of ``Registry`` too.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import select, text
from sqlalchemy.engine import URL, Engine
from sqlalchemy.orm import Session

from llmship.errors import FencedError, RegistryUnavailableError, SpecError
from llmship.registry import _guard
from llmship.registry import _queries as q
from llmship.registry._engine import WRITE, safe_url
from llmship.registry.records import AliasMove, Event, ReleaseRecord
from llmship.registry.tables import AliasHistoryRow, AliasRow, EventRow, LeaseRow, ReleaseRow
from llmship.release.promotion_guard import PromotionGuard

logger = logging.getLogger("llmship.registry.store")

ENV_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
RETRIES = 3
"""Attempts of a write that can lose a race on a unique key (two first aliases, ...)."""

Clock = Callable[[], datetime]
STALL_LIMIT_MS = 1000
"""PostgreSQL ends a lease holder's session idle this long inside a transaction (it was
paused or cut off), so the row locks it holds do not hold off a takeover."""


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


class Store:
    """The engine, its transactions and the clock (the base of ``Registry``)."""

    def __init__(
        self,
        engine: Engine,
        url: URL,
        *,
        home: Path | None,
        clock: Clock,
        guard: PromotionGuard | None = None,
    ) -> None:
        self._engine = engine
        self._url = url
        self._clock = clock
        self.home = home
        """The llmship state directory this registry belongs to, when known."""
        self.guard = guard or PromotionGuard()
        """The promotion guard's rules, enforced by every write that moves ``production``
        or gives a release a guarded share of the traffic (``_guard.py``); by default read
        from ``llmship.yaml`` on each such write."""
        self._fence: tuple[str, int] | None = None
        """``(lease name, token)`` every write of this view checks first (``fenced()``)."""

    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return safe_url(self._url)

    def _move_alias_in(
        self,
        session: Session,
        env: str,
        alias: str,
        target: ReleaseRecord,
        *,
        actor: str,
        reason: str,
        force: bool = False,
    ) -> AliasMove:
        """Move ``alias`` to ``target`` inside the caller's transaction; a move of
        ``production`` passes the promotion guard first (``force`` overrides it)."""
        current = session.get(AliasRow, (env, alias), with_for_update=True)
        if current is not None and current.release_id == target.id:
            last = q.history(session, env, alias, last_only=True)
            if last:
                return last[0]
        if alias == _guard.STABLE_ALIAS:
            reason = self._admit(
                session, env, force=force, reason=reason, actor=actor, production=target.ref
            )
        from_id = current.release_id if current is not None else None
        from_row = session.get(ReleaseRow, from_id) if from_id is not None else None
        from_ref = f"{from_row.name}@{from_row.version}" if from_row is not None else None
        now = self._now()
        if current is None:
            session.add(AliasRow(env=env, alias=alias, release_id=target.id, updated_at=now))
        else:
            current.release_id = target.id
            current.updated_at = now
        entry = AliasHistoryRow(
            env=env,
            alias=alias,
            from_release_id=from_id,
            to_release_id=target.id,
            actor=actor,
            reason=reason,
            at=now,
        )
        session.add(entry)
        session.flush()
        self._add_event(
            session,
            kind="alias.moved",
            subject=f"{env}/{alias}",
            message=f"{env}/{alias}: {from_ref or '(none)'} -> {target.ref} ({reason})",
            actor=actor,
            data={
                "env": env,
                "alias": alias,
                "from": from_ref,
                "to": target.ref,
                "reason": reason,
            },
        )
        logger.info("moved %s/%s: %s -> %s by %s", env, alias, from_ref, target.ref, actor)
        return AliasMove(
            id=entry.id,
            env=env,
            alias=alias,
            from_ref=from_ref,
            to_ref=target.ref,
            actor=actor,
            reason=reason,
            at=now,
        )

    def _admit(
        self, session: Session, env: str, *, force: bool, reason: str, actor: str, **change: Any
    ) -> str:
        """The promotion guard on a change of ``env`` in ``session`` (``_guard.admit``:
        ``production=``, ``rollout=``, ``before=``/``after=``); the reason to record."""
        return _guard.admit(
            session,
            env,
            self.guard.rule(env),
            self._add_event,
            force=force,
            reason=reason,
            actor=actor,
            **change,
        )

    def _add_event(
        self,
        session: Session,
        *,
        kind: str,
        subject: str,
        message: str,
        actor: str,
        data: dict[str, Any] | None,
    ) -> Event:
        if not KIND_PATTERN.match(kind):
            raise SpecError(
                f"{kind!r} is not an event kind: use lower-case words joined by dots, "
                "e.g. alias.moved",
                param="kind",
            )
        row = EventRow(
            at=self._now(),
            actor=actor,
            kind=kind,
            subject=subject,
            message=message,
            data=json.dumps(data, sort_keys=True, default=str) if data is not None else None,
        )
        session.add(row)
        session.flush()
        return q.to_event(row)

    # -- transactions --------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Session]:
        try:
            with Session(self._engine, expire_on_commit=False) as session, session.begin():
                yield session
        except sa_exc.OperationalError as exc:
            raise self._unavailable(exc) from exc

    @contextmanager
    def _write(self, *, fenced: bool = True) -> Iterator[Session]:
        """A write transaction (SQLite: ``BEGIN IMMEDIATE``). On a fenced view
        (``Registry.fenced``) it first checks the lease's token, unless ``fenced`` is
        False (the lease methods themselves)."""
        try:
            with self._engine.connect() as conn:
                conn.execution_options(**{WRITE: True})
                with conn.begin(), Session(bind=conn, expire_on_commit=False) as session:
                    if fenced and self._fence is not None:
                        _check_fence(session, *self._fence)
                    yield session
                    session.flush()
        except sa_exc.OperationalError as exc:
            raise self._unavailable(exc) from exc
        except sa_exc.DBAPIError as exc:
            if exc.connection_invalidated:  # the server ended the session (a stall)
                raise self._unavailable(exc) from exc
            raise

    def _now(self) -> datetime:
        return self._clock().astimezone(timezone.utc)

    def _unavailable(self, exc: sa_exc.DBAPIError) -> RegistryUnavailableError:
        return RegistryUnavailableError(f"the registry at {self.url} failed: {first_line(exc)}")


# -- checks and messages ----------------------------------------------------------


def _check_fence(session: Session, name: str, token: int) -> None:
    """Refuse the write in ``session`` unless ``token`` is the lease's current token.

    PostgreSQL locks the lease row in share mode for the rest of the transaction, so
    a takeover (which locks it for update) waits for this write to commit, or this
    write sees the takeover; SQLite's ``BEGIN IMMEDIATE`` already serialises both.
    """
    limit_stalls(session)
    row = session.scalars(
        select(LeaseRow).where(LeaseRow.name == name).with_for_update(read=True)
    ).first()
    if row is None:
        raise FencedError(
            f"write refused: no one holds the lease {name} (this writer's token {token} "
            "is not current)",
            param="lease",
        )
    if row.token != token:
        raise FencedError(
            f"write refused: the lease {name} passed to {row.holder} (token {row.token}); "
            f"this writer's token {token} is stale, so it changes nothing",
            param="lease",
        )


def limit_stalls(session: Session) -> None:
    """PostgreSQL: end this session if it idles inside this transaction for
    :data:`STALL_LIMIT_MS` (SQLite has no such limit: a writer paused inside its
    transaction holds the database lock until it resumes)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SET LOCAL idle_in_transaction_session_timeout = {STALL_LIMIT_MS}"))


def required_reason(reason: str, doing: str) -> str:
    reason = reason.strip()
    if not reason:
        raise SpecError(f"a reason is required for {doing}", param="reason")
    return reason


def check_env(env: str) -> None:
    if not ENV_PATTERN.match(env):
        raise SpecError(
            f"{env!r} is not a valid environment name: use 1-32 lower-case letters, digits "
            "or '-', starting with a letter (e.g. dev, staging, prod)",
            param="env",
        )


def first_line(exc: sa_exc.DBAPIError) -> str:
    text = str(exc.orig) if exc.orig is not None else str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc.orig).__name__
