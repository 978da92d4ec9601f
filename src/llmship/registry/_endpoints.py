"""Model-server endpoints: an upsert per announcement, a list of the live ones.

Each function takes an open session; the transaction is the caller's.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import case, delete, select, update
from sqlalchemy.orm import Session

from llmship.errors import InvalidRequestError, NotFoundError, SpecError
from llmship.registry import _queries as q
from llmship.registry.records import Endpoint
from llmship.registry.tables import REF_LENGTH, EndpointRow
from llmship.release.spec import parse_ref


def check(ref: str, url: str) -> None:
    """Refuse a ref that is not ``NAME@VERSION`` or a URL that is not http(s)."""
    if parse_ref(ref) is None or len(ref) > REF_LENGTH:
        raise SpecError(f"endpoint ref {ref!r} is not NAME@VERSION", param="ref")
    if not url.startswith(("http://", "https://")) or len(url) > 1024:
        raise InvalidRequestError(
            f"endpoint url {url!r}: give the server's base URL, e.g. http://127.0.0.1:8101",
            param="url",
        )


def upsert(
    session: Session, env: str, ref: str, url: str, *, pid: int | None, now: datetime
) -> Endpoint:
    """Announce (or renew) an endpoint; ``started_at`` moves only when the pid changes."""
    stmt = q.insert(session, EndpointRow).values(
        env=env, ref=ref, url=url, pid=pid, started_at=now, heartbeat_at=now
    )
    excluded = stmt.excluded
    same_process = EndpointRow.pid.is_not_distinct_from(excluded.pid)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["env", "ref", "url"],
            set_={
                "pid": excluded.pid,
                "heartbeat_at": excluded.heartbeat_at,
                "started_at": case(
                    (same_process, EndpointRow.started_at), else_=excluded.started_at
                ),
            },
        )
    )
    row = session.get(EndpointRow, (env, ref, url), populate_existing=True)
    if row is None:  # pragma: no cover - the upsert just wrote it
        raise NotFoundError(f"the endpoint {url} of {ref} vanished")
    return to_endpoint(row)


def heartbeat(session: Session, env: str, ref: str, url: str, *, now: datetime) -> None:
    """Renew an endpoint; NotFoundError when it is not registered (register it again)."""
    stmt = (
        update(EndpointRow)
        .where(EndpointRow.env == env, EndpointRow.ref == ref, EndpointRow.url == url)
        .values(heartbeat_at=now)
    )
    if session.execute(stmt).rowcount == 0:  # type: ignore[attr-defined]
        raise NotFoundError(
            f"no endpoint {url} of {ref} is registered in {env}: register it again",
            param="url",
        )


def remove(session: Session, env: str, ref: str, url: str) -> bool:
    """Forget an endpoint; False when there was none (nothing happens then)."""
    result = session.execute(
        delete(EndpointRow).where(
            EndpointRow.env == env, EndpointRow.ref == ref, EndpointRow.url == url
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def forget_stale(session: Session, env: str, *, before: datetime) -> None:
    """Delete the endpoints of ``env`` whose last heartbeat is older than ``before``
    (servers that died without withdrawing)."""
    session.execute(
        delete(EndpointRow).where(EndpointRow.env == env, EndpointRow.heartbeat_at < before)
    )


def live(session: Session, env: str, *, max_age_s: float | None, now: datetime) -> list[Endpoint]:
    """The endpoints of ``env``, newest heartbeat first, without stale ones."""
    stmt = (
        select(EndpointRow)
        .where(EndpointRow.env == env)
        .order_by(EndpointRow.heartbeat_at.desc(), EndpointRow.ref, EndpointRow.url)
    )
    if max_age_s is not None:
        stmt = stmt.where(EndpointRow.heartbeat_at >= now - timedelta(seconds=max_age_s))
    return [to_endpoint(row) for row in session.scalars(stmt)]


def to_endpoint(row: EndpointRow) -> Endpoint:
    """An endpoint row as a frozen record."""
    return Endpoint(
        env=row.env,
        ref=row.ref,
        url=row.url,
        pid=row.pid,
        started_at=row.started_at,
        heartbeat_at=row.heartbeat_at,
    )
