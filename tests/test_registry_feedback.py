"""Feedback in the registry, against SQLite and a real PostgreSQL server: one rating and
one thumbs per query and user, the client's request id kept with the query, the shared
key of the feedback tokens, and migration 0007 (which keys feedback by user)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, func, select, text

from _registry import T0, StillClock
from llmship.errors import InvalidRequestError, NotFoundError
from llmship.registry import QueryRecord, Registry, _engine
from llmship.registry.tables import Base, FeedbackRow


@pytest.fixture
def clock() -> StillClock:
    return StillClock()


@pytest.fixture
def registry(db_url: str, clock: StillClock) -> Iterator[Registry]:
    reg = Registry.open(db_url, clock=clock)
    try:
        yield reg
    finally:
        reg.close()


def query(query_id: str, user_key: str | None = None, **changes: Any) -> QueryRecord:
    values: dict[str, Any] = {
        "query_id": query_id,
        "env": "dev",
        "ref": "chat@1.0.0",
        "variant": "stable",
        "route": "/v1/chat/completions",
        "status": 200,
        "at": T0,
        "user_key": user_key,
    }
    values.update(changes)
    return QueryRecord(**values)


def rows(registry: Registry) -> list[tuple[str, str, str, int]]:
    """``(query_id, kind, user_key, value)`` of every feedback row, sorted."""
    with registry._engine.connect() as conn:
        found = conn.execute(
            select(FeedbackRow.query_id, FeedbackRow.kind, FeedbackRow.user_key, FeedbackRow.value)
        )
        return sorted((q, k, u, int(v)) for q, k, u, v in found)


# -- one per query and user -------------------------------------------------------------


def test_a_second_rating_by_the_same_user_replaces_the_first(
    registry: Registry, clock: StillClock
) -> None:
    registry.record_queries([query("q1", user_key="alice")])
    registry.add_feedback("q1", rating=2, thumbs="down")
    clock.advance(5)
    [record] = registry.add_feedback("q1", rating=5)
    assert (record.user, record.value, record.at) == ("alice", 5, T0 + timedelta(seconds=5))
    registry.add_feedback("q1", rating=4, user="alice")  # the same user, named
    assert rows(registry) == [("q1", "rating", "alice", 4), ("q1", "thumbs", "alice", 0)]
    [summary] = registry.feedback_summary("dev")
    assert (summary.ratings, summary.mean_rating) == (1, 4.0)


def test_each_user_named_in_the_rating_has_one(registry: Registry) -> None:
    registry.record_queries([query("shared", user_key="alice")])
    registry.add_feedback("shared", rating=5)
    registry.add_feedback("shared", rating=1, user="bob")
    registry.add_feedback("shared", rating=2, user="bob")
    registry.add_feedback("shared", thumbs="up", user="carol")
    assert rows(registry) == [
        ("shared", "rating", "alice", 5),
        ("shared", "rating", "bob", 2),
        ("shared", "thumbs", "carol", 1),
    ]
    listed = registry.list_feedback("dev", "chat@1.0.0")
    assert sorted((f.user, f.kind, f.value) for f in listed) == [
        ("alice", "rating", 5),
        ("bob", "rating", 2),
        ("carol", "thumbs", 1),
    ]


def test_without_a_user_the_answer_has_one_rating(registry: Registry) -> None:
    registry.record_queries([query("anon")])
    registry.add_feedback("anon", rating=1)
    [record] = registry.add_feedback("anon", rating=3)
    assert record.user is None
    assert rows(registry) == [("anon", "rating", "", 3)]
    [listed] = registry.list_feedback("dev", "chat@1.0.0")
    assert listed.user is None


@pytest.mark.parametrize("user", ["", "   ", "u" * 256])
def test_a_blank_or_too_long_user_is_refused(registry: Registry, user: str) -> None:
    registry.record_queries([query("q1")])
    with pytest.raises(InvalidRequestError, match="user must be 1-255 characters"):
        registry.add_feedback("q1", rating=3, user=user)
    assert rows(registry) == []


def test_feedback_on_an_unknown_query_is_not_found(registry: Registry) -> None:
    with pytest.raises(NotFoundError, match="X-Llmship-Query-Id"):
        registry.add_feedback("nope", rating=5, user="bob")
    assert rows(registry) == []


# -- the client's request id, the shared key ------------------------------------------


def test_the_clients_request_id_is_kept_beside_the_query_id(registry: Registry) -> None:
    registry.record_queries([query("q1", request_id="client-chosen-id"), query("q2")])
    assert registry.get_query("q1").request_id == "client-chosen-id"
    assert registry.get_query("q2").request_id is None
    with pytest.raises(InvalidRequestError, match="request_id must be at most 128"):
        registry.record_queries([query("q3", request_id="x" * 129)])


def test_every_process_of_the_registry_gets_the_same_feedback_key(
    registry: Registry, open_many: Callable[[], Registry]
) -> None:
    others = [open_many() for _ in range(3)]
    keys = {reg.feedback_secret() for reg in [*others, registry]}
    assert len(keys) == 1
    [key] = keys
    assert len(key) == 64 and int(key, 16) >= 0  # 32 random bytes, hex


# -- migration 0007 -----------------------------------------------------------------------


def _upgrade(db_url: str, revision: str, then: Callable[[Connection, datetime], None]) -> None:
    """Bring an empty database to ``revision``, then run ``then(conn, T0 as stored)``."""
    engine = _engine.create_registry_engine(_engine.parse_url(db_url))
    at = T0.replace(tzinfo=None) if engine.dialect.name == "sqlite" else T0
    try:
        with engine.begin() as conn:
            config = Config()
            config.set_main_option("script_location", str(_engine.MIGRATIONS))
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
            then(conn, at)
    finally:
        engine.dispose()


def _queries(conn: Connection, at: datetime) -> None:
    for query_id, user in (("q1", "alice"), ("q2", None)):
        conn.execute(
            text(
                "INSERT INTO queries (query_id, env, ref, variant, route, status, at, user_key) "
                "VALUES (:q, 'dev', 'chat@1.0.0', 'stable', '/predict', 200, :at, :user)"
            ),
            {"q": query_id, "at": at, "user": user},
        )


def _feedback(conn: Connection, at: datetime, *values: tuple[str, str, int, int]) -> None:
    for query_id, kind, value, seconds in values:
        conn.execute(
            text(
                "INSERT INTO feedback (query_id, kind, env, ref, value, comment, actor, at) "
                "VALUES (:q, :kind, 'dev', 'chat@1.0.0', :value, NULL, NULL, :at)"
            ),
            {"q": query_id, "kind": kind, "value": value, "at": at + timedelta(seconds=seconds)},
        )


def _schema_is_current(db_url: str) -> None:
    engine = _engine.create_registry_engine(_engine.parse_url(db_url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn)
            assert context.get_current_revision() == _engine.HEAD_REVISION == "0007"
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_migration_0007_gives_existing_ratings_their_querys_user(db_url: str) -> None:
    def fill(conn: Connection, at: datetime) -> None:
        _queries(conn, at)
        _feedback(conn, at, ("q1", "rating", 4, 0), ("q1", "thumbs", 1, 0), ("q2", "rating", 2, 0))

    _upgrade(db_url, "0006", fill)
    with Registry.open(db_url) as reg:  # migrates 0006 -> 0007
        assert rows(reg) == [
            ("q1", "rating", "alice", 4),
            ("q1", "thumbs", "alice", 1),
            ("q2", "rating", "", 2),
        ]
        assert reg.get_query("q1").request_id is None
        reg.add_feedback("q1", rating=1)  # the same user: replaced
        reg.add_feedback("q1", rating=5, user="bob")
        assert [r for r in rows(reg) if r[1] == "rating"] == [
            ("q1", "rating", "alice", 1),
            ("q1", "rating", "bob", 5),
            ("q2", "rating", "", 2),
        ]
    _schema_is_current(db_url)


def test_migration_0007_keeps_the_newest_of_duplicate_ratings(db_url: str) -> None:
    def fill(conn: Connection, at: datetime) -> None:
        # The 0006 primary key forbids duplicates; a table restored or made by hand
        # without it may hold them, and must still migrate.
        conn.execute(text("DROP INDEX ix_feedback_ref_at"))
        conn.execute(text("DROP TABLE feedback"))
        conn.execute(
            text(
                "CREATE TABLE feedback (query_id VARCHAR(64) NOT NULL, kind VARCHAR(16) NOT "
                "NULL, env VARCHAR(32) NOT NULL, ref VARCHAR(320) NOT NULL, value INTEGER NOT "
                "NULL, comment TEXT, actor VARCHAR(255), at TIMESTAMP WITH TIME ZONE NOT NULL)"
            )
        )
        conn.execute(text("CREATE INDEX ix_feedback_ref_at ON feedback (ref, at)"))
        _queries(conn, at)
        _feedback(
            conn,
            at,
            ("q1", "rating", 2, 0),
            ("q1", "rating", 5, 60),  # the newest of alice's ratings
            ("q1", "rating", 3, 30),
            ("q1", "thumbs", 0, 0),
            ("q2", "rating", 1, 10),
            ("q2", "rating", 4, 0),
        )

    _upgrade(db_url, "0006", fill)
    with Registry.open(db_url) as reg:
        assert rows(reg) == [
            ("q1", "rating", "alice", 5),
            ("q1", "thumbs", "alice", 0),
            ("q2", "rating", "", 1),
        ]
        with reg._engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(FeedbackRow)) == 3
    _schema_is_current(db_url)
