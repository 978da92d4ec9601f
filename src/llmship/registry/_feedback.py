"""Queries and the feedback on them: batch inserts, upserts and summaries in SQL.

Each function takes an open session; the transaction is the caller's. Feedback
is written with ``INSERT ... ON CONFLICT (query_id, kind, user_key) DO UPDATE``, one
statement, so concurrent writers neither lose nor duplicate a rating: one rating and
one thumbs per query and user, a second replacing the first.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from llmship.errors import InvalidRequestError, NotFoundError, SpecError
from llmship.registry import _queries as q
from llmship.registry.records import FeedbackRecord, FeedbackSummary, QueryRecord
from llmship.registry.tables import REF_LENGTH, FeedbackRow, QueryRow, SecretRow
from llmship.release.spec import parse_ref

BATCH_ROWS = 500
"""Rows per INSERT: 8 columns each stays far below SQLite's bound-parameter limit."""
MAX_COMMENT = 10_000
THUMBS = {"up": 1, "down": 0}
_SHORT = {"query_id": 64, "env": 32, "ref": REF_LENGTH, "variant": 96, "route": 128}
MAX_USER = 255
MAX_REQUEST_ID = 128


def check_query(row: QueryRecord) -> None:
    """Refuse a query record the tables cannot hold, naming the field."""
    for name, limit in _SHORT.items():
        value = getattr(row, name)
        if not value or len(value) > limit:
            raise InvalidRequestError(
                f"query {row.query_id!r}: {name} must be 1-{limit} characters", param=name
            )
    if parse_ref(row.ref) is None:
        raise SpecError(f"query {row.query_id!r}: ref {row.ref!r} is not NAME@VERSION")
    if row.at.tzinfo is None:
        raise InvalidRequestError(f"query {row.query_id!r}: the time must be timezone-aware")
    if row.request_id is not None and len(row.request_id) > MAX_REQUEST_ID:
        raise InvalidRequestError(
            f"query {row.query_id!r}: request_id must be at most {MAX_REQUEST_ID} characters",
            param="request_id",
        )


def insert_queries(session: Session, rows: Sequence[QueryRecord]) -> None:
    """Insert ``rows`` a batch at a time; a query_id already recorded is skipped.

    One statement, compiled once, is executed over each batch's rows (a DBAPI
    ``executemany``): compiling a fresh multi-row VALUES clause per batch cost the
    gateway a third of its CPU under load.
    """
    stmt = q.insert(session, QueryRow).on_conflict_do_nothing(index_elements=["query_id"])
    for start in range(0, len(rows), BATCH_ROWS):
        values = [
            {
                "query_id": r.query_id,
                "env": r.env,
                "ref": r.ref,
                "variant": r.variant,
                "route": r.route,
                "status": r.status,
                "at": r.at,
                "user_key": r.user_key[:MAX_USER] if r.user_key is not None else None,
                "request_id": r.request_id,
            }
            for r in rows[start : start + BATCH_ROWS]
        ]
        session.execute(stmt, values)


def to_query(row: QueryRow) -> QueryRecord:
    """A query row as a frozen record."""
    return QueryRecord(
        query_id=row.query_id,
        env=row.env,
        ref=row.ref,
        variant=row.variant,
        route=row.route,
        status=row.status,
        at=row.at,
        user_key=row.user_key,
        request_id=row.request_id,
    )


def query_row(session: Session, query_id: str) -> QueryRow:
    """The row of ``query_id``; NotFoundError says where query ids come from."""
    row = session.get(QueryRow, query_id)
    if row is None:
        raise NotFoundError(
            f"no query {query_id!r} is recorded: feedback needs the query id of an answer "
            "the gateway gave (its X-Llmship-Query-Id header, or query_id of /predict)",
            param="query_id",
        )
    return row


def rater(query: QueryRow, user: str | None) -> str:
    """Who rates ``query``: ``user`` when given, else the query's user key, else ``""``
    (no user known: the answer stands for its user, one rating per query)."""
    if user is not None:
        if not user.strip() or len(user) > MAX_USER:
            raise InvalidRequestError(f"user must be 1-{MAX_USER} characters", param="user")
        return user
    return query.user_key or ""


def feedback_values(
    rating: int | None, thumbs: str | None, comment: str | None
) -> list[tuple[str, int]]:
    """``[(kind, value), ...]`` for a rating and/or a thumbs; InvalidRequestError if bad."""
    if rating is None and thumbs is None:
        raise InvalidRequestError(
            'give a rating (1 to 5) or thumbs ("up" or "down"), or both', param="rating"
        )
    values = []
    if rating is not None:
        if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
            raise InvalidRequestError(
                f"rating must be a whole number from 1 to 5, not {rating!r}", param="rating"
            )
        values.append(("rating", rating))
    if thumbs is not None:
        if thumbs not in THUMBS:
            raise InvalidRequestError(
                f'thumbs must be "up" or "down", not {thumbs!r}', param="thumbs"
            )
        values.append(("thumbs", THUMBS[thumbs]))
    if comment is not None and len(comment) > MAX_COMMENT:
        raise InvalidRequestError(
            f"the comment is {len(comment)} characters long; at most {MAX_COMMENT} are kept",
            param="comment",
        )
    return values


def upsert_feedback(
    session: Session,
    query: QueryRow,
    values: list[tuple[str, int]],
    *,
    user: str,
    comment: str | None,
    actor: str | None,
    now: datetime,
) -> list[FeedbackRecord]:
    """Write each ``(kind, value)`` of ``user`` on ``query``, replacing the one of the
    same kind that ``user`` gave before."""
    records = []
    for kind, value in values:
        stmt = q.insert(session, FeedbackRow).values(
            query_id=query.query_id,
            kind=kind,
            user_key=user,
            env=query.env,
            ref=query.ref,
            value=value,
            comment=comment,
            actor=actor[:255] if actor is not None else None,
            at=now,
        )
        excluded = stmt.excluded
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=["query_id", "kind", "user_key"],
                set_={
                    "env": excluded.env,
                    "ref": excluded.ref,
                    "value": excluded.value,
                    "comment": excluded.comment,
                    "actor": excluded.actor,
                    "at": excluded.at,
                },
            )
        )
        records.append(
            FeedbackRecord(
                query_id=query.query_id,
                env=query.env,
                ref=query.ref,
                kind=kind,
                value=value,
                comment=comment,
                at=now,
                user=user or None,
            )
        )
    return records


def summary(
    session: Session, env: str | None, ref: str | None, since: datetime | None
) -> list[FeedbackSummary]:
    """Per release: how many ratings and their mean, how many thumbs up and down."""
    kind, value = FeedbackRow.kind, FeedbackRow.value
    stmt = (
        select(
            FeedbackRow.ref,
            func.sum(case((kind == "rating", 1), else_=0)),
            func.avg(case((kind == "rating", value), else_=None)),
            func.sum(case((and_(kind == "thumbs", value == 1), 1), else_=0)),
            func.sum(case((and_(kind == "thumbs", value == 0), 1), else_=0)),
        )
        .group_by(FeedbackRow.ref)
        .order_by(FeedbackRow.ref)
    )
    if env is not None:
        stmt = stmt.where(FeedbackRow.env == env)
    if ref is not None:
        stmt = stmt.where(FeedbackRow.ref == ref)
    if since is not None:
        stmt = stmt.where(FeedbackRow.at >= since)
    return [
        FeedbackSummary(
            ref=row_ref,
            ratings=int(ratings or 0),
            mean_rating=float(mean) if mean is not None else None,
            thumbs_up=int(up or 0),
            thumbs_down=int(down or 0),
        )
        for row_ref, ratings, mean, up, down in session.execute(stmt)
    ]


def listing(session: Session, env: str, ref: str, since: datetime | None) -> list[FeedbackRecord]:
    """Every rating and thumbs of ``ref`` in ``env`` (since ``since``), oldest first."""
    stmt = (
        select(FeedbackRow)
        .where(FeedbackRow.env == env, FeedbackRow.ref == ref)
        .order_by(FeedbackRow.at)
    )
    if since is not None:
        stmt = stmt.where(FeedbackRow.at >= since)
    return [_record(row) for row in session.scalars(stmt)]


def _record(row: FeedbackRow) -> FeedbackRecord:
    return FeedbackRecord(
        query_id=row.query_id,
        env=row.env,
        ref=row.ref,
        kind=row.kind,
        value=row.value,
        comment=row.comment,
        at=row.at,
        user=row.user_key or None,
    )


def page(
    session: Session,
    *,
    env: str | None,
    ref: str | None,
    kind: str | None,
    commented: bool,
    limit: int,
    offset: int,
) -> tuple[list[FeedbackRecord], int]:
    """One page of the feedback that matches (newest first), and how many match in all.

    ``commented``: only feedback that carries a comment.
    """
    conditions = []
    if env is not None:
        conditions.append(FeedbackRow.env == env)
    if ref is not None:
        conditions.append(FeedbackRow.ref == ref)
    if kind is not None:
        conditions.append(FeedbackRow.kind == kind)
    if commented:
        conditions.append(FeedbackRow.comment.is_not(None))
        conditions.append(FeedbackRow.comment != "")
    total = session.scalar(select(func.count()).select_from(FeedbackRow).where(*conditions))
    stmt = (
        select(FeedbackRow)
        .where(*conditions)
        .order_by(
            FeedbackRow.at.desc(),
            FeedbackRow.query_id.desc(),
            FeedbackRow.kind,
            FeedbackRow.user_key,
        )
        .limit(limit)
        .offset(offset)
    )
    return [_record(row) for row in session.scalars(stmt)], int(total or 0)


def points(
    session: Session, env: str | None, since: datetime | None
) -> list[tuple[str, str, int, datetime]]:
    """``(ref, kind, value, at)`` of every rating and thumbs (of ``env``, since ``since``),
    oldest first: what a time series of the feedback is drawn from (comments not read)."""
    stmt = select(FeedbackRow.ref, FeedbackRow.kind, FeedbackRow.value, FeedbackRow.at).order_by(
        FeedbackRow.at, FeedbackRow.query_id, FeedbackRow.kind
    )
    if env is not None:
        stmt = stmt.where(FeedbackRow.env == env)
    if since is not None:
        stmt = stmt.where(FeedbackRow.at >= since)
    return [(ref, kind, int(value), at) for ref, kind, value, at in session.execute(stmt)]


def normal_ref(ref: str) -> str:
    """``NAME@VERSION`` written as the registry writes it (no ``v`` before the version)."""
    parsed = parse_ref(ref)
    if parsed is None:
        raise SpecError(f"{ref!r} is not NAME@VERSION, e.g. chat@1.1.0", param="ref")
    return f"{parsed[0]}@{parsed[1]}"


def shared_secret(session: Session, name: str, *, now: datetime) -> str:
    """The secret ``name``, created at random (64 hex digits) when there is none yet.

    ``INSERT ... ON CONFLICT DO NOTHING`` and then a read, in the caller's (write)
    transaction: processes that ask at once all get the one that was stored first.
    """
    value = session.scalar(select(SecretRow.value).where(SecretRow.name == name))
    if value is None:
        stmt = q.insert(session, SecretRow).values(
            name=name, value=secrets.token_hex(32), created_at=now
        )
        session.execute(stmt.on_conflict_do_nothing(index_elements=["name"]))
        value = session.scalar(select(SecretRow.value).where(SecretRow.name == name))
    assert value is not None
    return value
