"""The registry's leases: a named lease (``controller/ENV``) that one holder at a time
holds until it expires, and the fencing token that makes a stale holder harmless.
They are methods of ``Registry`` (which inherits them).

Acquiring is acquire-or-renew in one write transaction: the holder renews its own
lease (the token stays), anyone takes an expired or released lease (the token grows
by one), and no one takes a live lease from its holder. PostgreSQL locks the lease
row (``INSERT ... ON CONFLICT DO NOTHING``, then ``SELECT ... FOR UPDATE``) and
SQLite writers queue on ``BEGIN IMMEDIATE``, so of two processes racing for a free
lease exactly one wins.

:meth:`LeaseMethods.fenced` gives a view of the registry whose every write first
checks, in its own transaction, that the token it carries is still the lease's
current one (``_base._check_fence``): a holder that was paused or cut off while
another took over writes nothing when it wakes up.

Expiry is judged with the registry's clock (``Registry.open(clock=...)``, UTC now by
default) of the process that asks: processes on one host share a clock, and hosts
are assumed to agree within a small part of the lease (NTP keeps them within
milliseconds). Skew moves the moment of a takeover, never its safety: the token,
checked inside the database, decides which writes count.
"""

from __future__ import annotations

import copy
import math
from datetime import timedelta
from typing import TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy import select
from sqlalchemy.orm import Session

from llmship.errors import InvalidRequestError
from llmship.registry import _queries as q
from llmship.registry._base import RETRIES, Store, limit_stalls, logger
from llmship.registry.records import Lease
from llmship.registry.tables import LeaseRow

NAME_LENGTH = 128
HOLDER_LENGTH = 255

_View = TypeVar("_View", bound="LeaseMethods")


class LeaseMethods(Store):
    """Leases with fencing tokens (part of ``Registry``)."""

    def acquire_lease(self, name: str, holder: str, *, duration_s: float) -> Lease | None:
        """Acquire or renew the lease ``name`` for ``holder`` for ``duration_s`` seconds.

        The lease when ``holder`` holds it now (its token grew by one if it changed
        hands; a renewal keeps it), None when someone else holds a live lease.
        """
        _check(name, holder)
        if not (math.isfinite(duration_s) and duration_s > 0):
            raise InvalidRequestError(
                f"a lease lasts a positive number of seconds, not {duration_s!r}",
                param="duration",
            )
        for attempt in range(RETRIES):
            try:
                return self._acquire(name, holder, duration_s)
            except sa_exc.IntegrityError:  # pragma: no cover - the upsert does not conflict
                if attempt == RETRIES - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _acquire(self, name: str, holder: str, duration_s: float) -> Lease | None:
        with self._write(fenced=False) as session:
            limit_stalls(session)
            now = self._now()
            expires = now + timedelta(seconds=duration_s)
            inserted = session.execute(
                q.insert(session, LeaseRow)
                .values(
                    name=name,
                    holder=holder,
                    token=1,
                    acquired_at=now,
                    renewed_at=now,
                    expires_at=expires,
                )
                .on_conflict_do_nothing(index_elements=["name"])
                .returning(LeaseRow.token)
            ).first()
            if inserted is not None:
                self._lease_event(session, "lease.acquired", name, holder, 1, previous=None)
                logger.info("lease %s acquired by %s (token 1)", name, holder)
                return Lease(name, holder, 1, now, now, expires)
            row = _lease_row(session, name, for_update=True)
            if row.holder == holder:
                row.renewed_at, row.expires_at = now, expires
                return _to_lease(row)
            if now < row.expires_at:
                return None
            previous = row.holder
            row.holder, row.token = holder, row.token + 1
            row.acquired_at, row.renewed_at, row.expires_at = now, now, expires
            session.flush()
            self._lease_event(session, "lease.acquired", name, holder, row.token, previous)
            logger.info(
                "lease %s acquired by %s (token %d) after %s", name, holder, row.token, previous
            )
            return _to_lease(row)

    def release_lease(self, name: str, holder: str) -> bool:
        """Give up the lease ``name`` at once (a clean stop), so that another takes it on
        its next try; True when ``holder`` held it. The token stays until another takes
        it."""
        _check(name, holder)
        with self._write(fenced=False) as session:
            row = session.scalars(
                select(LeaseRow).where(LeaseRow.name == name).with_for_update()
            ).first()
            now = self._now()
            if row is None or row.holder != holder or row.expires_at <= now:
                return False
            row.expires_at = now
            self._lease_event(session, "lease.released", name, holder, row.token, None)
        logger.info("lease %s released by %s", name, holder)
        return True

    def get_lease(self, name: str) -> Lease | None:
        """The lease ``name`` as stored (live or not: see :meth:`Lease.live`), or None
        when it was never acquired."""
        with self._read() as session:
            row = session.get(LeaseRow, name)
            return _to_lease(row) if row is not None else None

    def fenced(self: _View, name: str, token: int) -> _View:
        """A view of this registry (same engine, same clock) whose every write is refused
        with ``FencedError``, in its own transaction, unless ``token`` is the current
        token of the lease ``name``. Reads are unchanged. Close the registry itself,
        not the view."""
        view = copy.copy(self)
        view._fence = (name, token)
        return view

    def _lease_event(
        self,
        session: Session,
        kind: str,
        name: str,
        holder: str,
        token: int,
        previous: str | None,
    ) -> None:
        if kind == "lease.released":
            message = f"{holder} released the lease {name} (token {token})"
        else:
            after = f" after {previous}" if previous else ""
            message = f"{holder} acquired the lease {name} (token {token}){after}"
        self._add_event(
            session,
            kind=kind,
            subject=name,
            message=message,
            actor=holder,
            data={"lease": name, "holder": holder, "token": token, "previous": previous},
        )


def _check(name: str, holder: str) -> None:
    if not name or len(name) > NAME_LENGTH:
        raise InvalidRequestError(
            f"a lease name has 1-{NAME_LENGTH} characters, e.g. controller/dev", param="name"
        )
    if not holder or len(holder) > HOLDER_LENGTH:
        raise InvalidRequestError(
            f"a lease holder has 1-{HOLDER_LENGTH} characters, e.g. HOST:PID", param="holder"
        )


def _lease_row(session: Session, name: str, *, for_update: bool = False) -> LeaseRow:
    stmt = select(LeaseRow).where(LeaseRow.name == name)
    if for_update:
        stmt = stmt.with_for_update()
    row = session.scalars(stmt).one()
    return row


def _to_lease(row: LeaseRow) -> Lease:
    return Lease(
        name=row.name,
        holder=row.holder,
        token=row.token,
        acquired_at=row.acquired_at,
        renewed_at=row.renewed_at,
        expires_at=row.expires_at,
    )
