"""What the registry keeps for the gateway, against SQLite and a real PostgreSQL server:
traffic policies, endpoints, queries, feedback and flags."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select, text

from _registry import T0, StillClock, make_spec, register_chat, run_threads
from llmship.errors import ConflictError, InvalidRequestError, NotFoundError, SpecError
from llmship.flags import Flag
from llmship.registry import Endpoint, FeedbackRecord, QueryRecord, Registry, _engine
from llmship.registry.tables import Base, FeedbackRow, QueryRow
from llmship.routing import Experiment, TrafficPolicy, Variant

GATEWAY_TABLES = {"traffic_policies", "endpoints", "queries", "feedback", "flags"}


Clock = StillClock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registry(db_url: str, clock: Clock) -> Iterator[Registry]:
    reg = Registry.open(db_url, clock=clock)
    try:
        yield reg
    finally:
        reg.close()


@pytest.fixture
def releases(registry: Registry) -> Registry:
    """chat@1.0.0 (production in dev), chat@1.1.0 and chat@2.0.0 registered."""
    register_chat(registry, ("1.0.0", "1.1.0", "2.0.0"))
    return registry


def query(query_id: str, ref: str = "chat@1.0.0", env: str = "dev", **changes: Any) -> QueryRecord:
    values: dict[str, Any] = {
        "query_id": query_id,
        "env": env,
        "ref": ref,
        "variant": "stable",
        "route": "/v1/chat/completions",
        "status": 200,
        "at": T0,
    }
    values.update(changes)
    return QueryRecord(**values)


# -- schema -----------------------------------------------------------------------


def test_upgrading_from_0001_keeps_releases_and_adds_the_gateway_tables(db_url: str) -> None:
    engine = _engine.create_registry_engine(_engine.parse_url(db_url))
    spec = make_spec()
    try:
        with engine.begin() as conn:
            config = Config()
            config.set_main_option("script_location", str(_engine.MIGRATIONS))
            config.attributes["connection"] = conn
            command.upgrade(config, "0001")
            conn.execute(
                text(
                    "INSERT INTO releases (name, version, backend, spec, digest, created_at, "
                    "created_by) VALUES ('chat', '1.0.0', 'openai', :spec, :digest, :at, 'old')"
                ),
                {"spec": json.dumps(spec.to_dict()), "digest": spec.digest(), "at": T0},
            )
        with engine.connect() as conn:
            assert not GATEWAY_TABLES & set(inspect(conn).get_table_names())
        with Registry.open(db_url) as reg:  # migrates 0001 -> head
            assert reg.get("chat", "1.0.0").created_by == "old"
            assert reg.get_traffic("dev").revision == 0
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) >= GATEWAY_TABLES
            assert MigrationContext.configure(conn).get_current_revision() == _engine.HEAD_REVISION
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
            indexes = {i["name"] for i in inspect(conn).get_indexes("queries")}
            assert "ix_queries_env_ref_at" in indexes
            indexes = {i["name"] for i in inspect(conn).get_indexes("feedback")}
            assert "ix_feedback_ref_at" in indexes
    finally:
        engine.dispose()


# -- traffic ------------------------------------------------------------------------


def test_an_env_without_a_policy_sends_everything_to_production(registry: Registry) -> None:
    assert registry.get_traffic("dev") == TrafficPolicy(env="dev", stable=None, revision=0)
    registry.register(make_spec(), actor="ci")
    registry.set_alias("dev", "production", "chat@1.0.0", actor="ci", reason="launch")
    assert registry.get_traffic("dev") == TrafficPolicy(env="dev", stable="chat@1.0.0")
    assert registry.get_traffic("prod").stable is None


def test_policy_round_trip_with_stable_from_the_alias(releases: Registry) -> None:
    policy = TrafficPolicy(
        env="ignored",
        stable="chat@2.0.0",  # ignored: stable is the production alias
        canary="chat@v1.1.0",
        canary_weight=20,
        preview="chat@2.0.0",
        shadow="chat@2.0.0",
        shadow_percent=5,
    )
    stored = releases.set_traffic("dev", policy, actor="alice", reason="canary 20%")
    assert stored == TrafficPolicy(
        env="dev",
        stable="chat@1.0.0",
        canary="chat@1.1.0",
        canary_weight=20.0,
        preview="chat@2.0.0",
        shadow="chat@2.0.0",
        shadow_percent=5.0,
        revision=1,
    )
    assert releases.get_traffic("dev") == stored
    [event] = releases.events(kind="traffic.changed")
    assert (event.subject, event.actor) == ("dev", "alice")
    assert event.data == {**stored.to_dict(), "reason": "canary 20%"}
    assert "canary chat@1.1.0 20%" in event.message
    # The production alias moves: stable follows without a new revision.
    releases.set_alias("dev", "production", "chat@2.0.0", actor="ci", reason="manual")
    assert releases.get_traffic("dev").stable == "chat@2.0.0"
    assert releases.get_traffic("dev").revision == 1
    assert releases.get_traffic("prod").revision == 0


def test_experiment_round_trip_and_aliases_resolve(releases: Registry) -> None:
    releases.set_alias("dev", "staging", "chat@2.0.0", actor="ci", reason="stage")
    experiment = Experiment(
        "prompt-ab", (Variant("A", "production", 50), Variant("B", "staging", 50))
    )
    stored = releases.set_traffic(
        "dev", TrafficPolicy(env="dev", experiment=experiment), actor="a", reason="ab"
    )
    assert stored.experiment == Experiment(
        "prompt-ab", (Variant("A", "chat@1.0.0", 50.0), Variant("B", "chat@2.0.0", 50.0))
    )
    assert releases.get_traffic("dev") == stored


def test_revisions_increment_and_expected_revision_is_checked(releases: Registry) -> None:
    canary = TrafficPolicy(env="dev", canary="chat@1.1.0", canary_weight=10)
    first = releases.set_traffic("dev", canary, actor="a", reason="10%", expected_revision=0)
    second = releases.set_traffic("dev", replace(canary, canary_weight=30), actor="a", reason="30%")
    assert (first.revision, second.revision) == (1, 2)
    with pytest.raises(ConflictError, match=r"at revision 2, not 1: someone changed it"):
        releases.set_traffic(
            "dev", replace(canary, canary_weight=50), actor="b", reason="50%", expected_revision=1
        )
    assert releases.get_traffic("dev") == second
    third = releases.set_traffic(
        "dev", replace(canary, canary_weight=50), actor="b", reason="50%", expected_revision=2
    )
    assert third.revision == 3
    assert third.canary_weight == 50


UNKNOWN_RELEASES: list[tuple[dict[str, Any], str]] = [
    ({"canary": "chat@9.0.0", "canary_weight": 5}, r"^canary: no release chat@9\.0\.0"),
    ({"preview": "other@1.0.0"}, r"^preview: no release named 'other'"),
    ({"shadow": "chat@3.0.0", "shadow_percent": 5}, r"^shadow: no release chat@3\.0\.0"),
    (
        {
            "experiment": Experiment(
                "x", (Variant("A", "chat@1.0.0", 50), Variant("B", "chat@7.0.0", 50))
            )
        },
        r"^variant B: no release chat@7\.0\.0",
    ),
    ({"preview": "canary"}, r"^preview: 'canary' is neither NAME@VERSION nor an alias"),
]


def test_unknown_releases_are_refused(releases: Registry) -> None:
    for changes, message in UNKNOWN_RELEASES:
        with pytest.raises(NotFoundError, match=message):
            releases.set_traffic("dev", TrafficPolicy(env="dev", **changes), actor="a", reason="r")
    assert releases.get_traffic("dev").revision == 0
    assert releases.events(kind="traffic.changed") == []


def test_contradictions_and_missing_reason_are_refused(releases: Registry) -> None:
    with pytest.raises(InvalidRequestError, match="already the stable release"):
        releases.set_traffic(
            "dev",
            TrafficPolicy(env="dev", canary="chat@v1.0.0", canary_weight=5),
            actor="a",
            reason="r",
        )
    experiment = Experiment("x", (Variant("A", "chat@1.0.0", 50), Variant("B", "chat@2.0.0", 50)))
    with pytest.raises(InvalidRequestError, match="cannot run at once"):
        releases.set_traffic(
            "dev",
            TrafficPolicy(env="dev", canary="chat@1.1.0", canary_weight=5, experiment=experiment),
            actor="a",
            reason="r",
        )
    with pytest.raises(InvalidRequestError, match="between 0 and 100"):
        releases.set_traffic(
            "dev",
            TrafficPolicy(env="dev", canary="chat@1.1.0", canary_weight=150),
            actor="a",
            reason="r",
        )
    with pytest.raises(SpecError, match="a reason is required"):
        releases.set_traffic("dev", TrafficPolicy(env="dev"), actor="a", reason=" ")
    with pytest.raises(SpecError, match="not a valid environment name"):
        releases.set_traffic("Dev", TrafficPolicy(env="Dev"), actor="a", reason="r")
    assert releases.get_traffic("dev").revision == 0


def test_a_canary_that_became_stable_is_over(releases: Registry) -> None:
    releases.set_traffic(
        "dev",
        TrafficPolicy(env="dev", canary="chat@1.1.0", canary_weight=50),
        actor="a",
        reason="r",
    )
    releases.set_alias("dev", "production", "chat@1.1.0", actor="a", reason="promoted by hand")
    policy = releases.get_traffic("dev")
    assert (policy.stable, policy.canary, policy.canary_weight) == ("chat@1.1.0", None, 0.0)
    # ... and the policy can be changed on top of that again.
    changed = releases.set_traffic(
        "dev", replace(policy, shadow="chat@2.0.0", shadow_percent=10), actor="a", reason="r"
    )
    assert changed.revision == 2


def test_promote_preview_moves_the_alias_and_clears_the_preview(releases: Registry) -> None:
    releases.set_traffic(
        "dev",
        TrafficPolicy(
            env="dev",
            canary="chat@2.0.0",
            canary_weight=10,
            preview="chat@2.0.0",
            shadow="chat@1.1.0",
            shadow_percent=20,
        ),
        actor="a",
        reason="try 2.0.0",
    )
    promoted = releases.promote_preview("dev", actor="bob", reason="preview looks good")
    assert promoted == TrafficPolicy(
        env="dev",
        stable="chat@2.0.0",
        shadow="chat@1.1.0",
        shadow_percent=20.0,
        revision=2,
    )
    assert releases.get_traffic("dev") == promoted
    last = releases.alias_history("dev", "production")[-1]
    assert (last.from_ref, last.to_ref, last.actor, last.reason) == (
        "chat@1.0.0",
        "chat@2.0.0",
        "bob",
        "preview looks good",
    )
    [event] = releases.events(kind="traffic.promoted")
    assert event.data["stable"] == "chat@2.0.0"
    assert event.data["preview"] is None
    assert [e.kind for e in releases.events(limit=2)] == ["traffic.promoted", "alias.moved"]
    with pytest.raises(InvalidRequestError, match="no preview is set in dev"):
        releases.promote_preview("dev", actor="bob", reason="again")


def test_promote_preview_is_one_transaction(
    releases: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    releases.set_traffic(
        "dev", TrafficPolicy(env="dev", preview="chat@2.0.0"), actor="a", reason="r"
    )
    events = releases.events()

    def _broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr("llmship.registry._traffic.store", _broken)
    with pytest.raises(RuntimeError, match="disk full"):
        releases.promote_preview("dev", actor="bob", reason="go")
    # Nothing of it stayed: the alias, its history, the policy and the events are as before.
    current = releases.get_alias("dev", "production")
    assert current is not None and current.ref == "chat@1.0.0"
    assert len(releases.alias_history("dev", "production")) == 1
    assert releases.get_traffic("dev").preview == "chat@2.0.0"
    assert releases.events() == events


def test_reset_clears_everything_but_stable(releases: Registry) -> None:
    releases.set_traffic(
        "dev",
        TrafficPolicy(
            env="dev",
            canary="chat@1.1.0",
            canary_weight=10,
            preview="chat@2.0.0",
            shadow="chat@2.0.0",
            shadow_percent=5,
        ),
        actor="a",
        reason="r",
    )
    reset = releases.reset_traffic("dev", actor="carol", reason="errors up")
    assert reset == TrafficPolicy(env="dev", stable="chat@1.0.0", revision=2)
    assert releases.get_traffic("dev") == reset
    [event] = releases.events(kind="traffic.reset")
    assert (event.actor, event.data["reason"]) == ("carol", "errors up")
    # An env that never had a policy can be reset too.
    assert releases.reset_traffic("prod", actor="a", reason="r").revision == 1


def test_concurrent_writers_of_one_revision_have_one_winner(
    releases: Registry, open_many: Callable[[], Registry]
) -> None:
    workers = [open_many() for _ in range(6)]
    outcomes: list[str] = []
    lock = threading.Lock()

    def _work(index: int) -> None:
        policy = TrafficPolicy(env="dev", canary="chat@1.1.0", canary_weight=index + 1)
        try:
            workers[index].set_traffic(
                "dev", policy, actor=f"w{index}", reason="race", expected_revision=0
            )
            outcome = "won"
        except ConflictError:
            outcome = "conflict"
        with lock:
            outcomes.append(outcome)

    run_threads(len(workers), _work)
    assert sorted(outcomes) == ["conflict"] * 5 + ["won"]
    assert releases.get_traffic("dev").revision == 1


# -- endpoints ------------------------------------------------------------------------


def test_endpoints_register_renew_list_and_remove(registry: Registry, clock: Clock) -> None:
    first = registry.register_endpoint("dev", "chat@1.0.0", "http://127.0.0.1:8101", pid=11)
    assert first == Endpoint("dev", "chat@1.0.0", "http://127.0.0.1:8101", 11, T0, T0)
    clock.advance(5)
    registry.register_endpoint("dev", "chat@1.1.0", "http://127.0.0.1:8102", pid=None)
    clock.advance(5)
    again = registry.register_endpoint("dev", "chat@1.0.0", "http://127.0.0.1:8101", pid=11)
    assert (again.started_at, again.heartbeat_at) == (T0, T0 + timedelta(seconds=10))
    registry.register_endpoint("prod", "chat@1.0.0", "http://10.0.0.1:8000", pid=1)

    listed = registry.list_endpoints("dev")
    assert [(e.ref, e.heartbeat_at) for e in listed] == [
        ("chat@1.0.0", T0 + timedelta(seconds=10)),
        ("chat@1.1.0", T0 + timedelta(seconds=5)),
    ]
    clock.advance(20)  # 1.0.0 renewed 20 s ago, 1.1.0 25 s ago
    assert [e.ref for e in registry.list_endpoints("dev", max_age_s=22)] == ["chat@1.0.0"]
    registry.heartbeat_endpoint("dev", "chat@1.1.0", "http://127.0.0.1:8102")
    assert [e.ref for e in registry.list_endpoints("dev", max_age_s=1)] == ["chat@1.1.0"]

    # A restarted server (another pid) at the same URL starts again.
    restarted = registry.register_endpoint("dev", "chat@1.0.0", "http://127.0.0.1:8101", pid=12)
    assert restarted.started_at == restarted.heartbeat_at == clock.now

    registry.remove_endpoint("dev", "chat@1.0.0", "http://127.0.0.1:8101")
    registry.remove_endpoint("dev", "chat@1.0.0", "http://127.0.0.1:8101")  # harmless
    assert [e.ref for e in registry.list_endpoints("dev")] == ["chat@1.1.0"]
    assert [e.url for e in registry.list_endpoints("prod")] == ["http://10.0.0.1:8000"]
    with pytest.raises(NotFoundError, match="register it again"):
        registry.heartbeat_endpoint("dev", "chat@1.0.0", "http://127.0.0.1:8101")


def test_bad_endpoints_are_refused(registry: Registry) -> None:
    with pytest.raises(SpecError, match="not NAME@VERSION"):
        registry.register_endpoint("dev", "production", "http://127.0.0.1:1", pid=None)
    with pytest.raises(InvalidRequestError, match="base URL"):
        registry.register_endpoint("dev", "chat@1.0.0", "127.0.0.1:1", pid=None)
    assert registry.list_endpoints("dev") == []


# -- queries --------------------------------------------------------------------------


def _count(registry: Registry, table: type[Base]) -> int:
    with registry._engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_record_queries_is_batched_and_idempotent(registry: Registry) -> None:
    rows = [query(f"q{i}", user_key="u" * 300 if i == 0 else None) for i in range(1200)]
    registry.record_queries(rows)
    registry.record_queries([*rows[1100:], query("q1200")])
    # A duplicate query_id never overwrites what was recorded first.
    registry.record_queries([query("q5", ref="chat@9.9.9", status=500)])
    registry.record_queries([])
    assert _count(registry, QueryRow) == 1201
    assert registry.get_query("q5") == query("q5")
    assert registry.get_query("q0").user_key == "u" * 255
    assert registry.get_query("q7").at.tzinfo is not None
    with pytest.raises(NotFoundError, match="no query 'nope' is recorded"):
        registry.get_query("nope")


BAD_QUERIES: list[tuple[dict[str, Any], str]] = [
    ({"query_id": "x" * 65}, "query_id must be 1-64 characters"),
    ({"ref": "production"}, "is not NAME@VERSION"),
    ({"at": datetime(2024, 1, 1)}, "timezone-aware"),
]


def test_bad_query_rows_are_refused(registry: Registry) -> None:
    for changes, message in BAD_QUERIES:
        with pytest.raises(InvalidRequestError, match=message):
            registry.record_queries([query("good"), replace(query("bad"), **changes)])
    assert _count(registry, QueryRow) == 0


def test_record_queries_is_one_insert_per_batch(registry: Registry) -> None:
    from sqlalchemy import event

    from llmship.registry import _feedback

    inserts: list[str] = []

    def _count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO QUERIES"):
            inserts.append(statement)

    engine = registry._engine
    event.listen(engine, "before_cursor_execute", _count)
    try:
        registry.record_queries([query(f"q{i}") for i in range(_feedback.BATCH_ROWS + 1)])
    finally:
        event.remove(engine, "before_cursor_execute", _count)
    assert len(inserts) == 2
    assert registry.get_query(f"q{_feedback.BATCH_ROWS}").query_id == f"q{_feedback.BATCH_ROWS}"
    registry.record_queries([query("q0")])  # already recorded: skipped, not an error


# -- feedback ---------------------------------------------------------------------


def test_feedback_is_attributed_to_the_querys_release(registry: Registry, clock: Clock) -> None:
    registry.record_queries([query("q1", ref="chat@1.1.0", env="staging", variant="canary")])
    [record] = registry.add_feedback("q1", rating=4, comment="good", actor="user-7")
    assert record == FeedbackRecord("q1", "staging", "chat@1.1.0", "rating", 4, "good", T0)


def test_the_same_kind_replaces_and_both_kinds_are_kept(registry: Registry, clock: Clock) -> None:
    registry.record_queries([query("q1")])
    registry.add_feedback("q1", rating=2)
    clock.advance(1)
    replaced = registry.add_feedback("q1", rating=5, thumbs="up", comment="better")
    assert [(r.kind, r.value, r.comment) for r in replaced] == [
        ("rating", 5, "better"),
        ("thumbs", 1, "better"),
    ]
    registry.add_feedback("q1", thumbs="down")
    assert _count(registry, FeedbackRow) == 2
    [summary] = registry.feedback_summary()
    assert (summary.ratings, summary.mean_rating, summary.thumbs_up, summary.thumbs_down) == (
        1,
        5.0,
        0,
        1,
    )


BAD_FEEDBACK: list[tuple[dict[str, Any], str]] = [
    ({}, "give a rating"),
    ({"rating": 0}, "rating must be a whole number from 1 to 5, not 0"),
    ({"rating": 6}, "not 6"),
    ({"rating": 2.5}, "not 2.5"),
    ({"rating": True}, "not True"),
    ({"rating": "5"}, "not '5'"),
    ({"thumbs": "meh"}, 'thumbs must be "up" or "down"'),
    ({"rating": 3, "comment": "x" * 10_001}, "at most 10000"),
]


def test_invalid_feedback_is_refused(registry: Registry) -> None:
    registry.record_queries([query("q1")])
    for kwargs, message in BAD_FEEDBACK:
        with pytest.raises(InvalidRequestError, match=message):
            registry.add_feedback("q1", **kwargs)
    assert _count(registry, FeedbackRow) == 0


def test_feedback_on_an_unknown_query_is_not_found(registry: Registry) -> None:
    with pytest.raises(NotFoundError, match="X-Llmship-Query-Id"):
        registry.add_feedback("nope", rating=5)


def test_feedback_summary_numbers_and_filters(registry: Registry, clock: Clock) -> None:
    registry.record_queries(
        [query(f"a{i}", ref="chat@1.0.0") for i in range(4)]
        + [query(f"b{i}", ref="chat@1.1.0") for i in range(3)]
        + [query("p0", ref="chat@1.0.0", env="prod")]
    )
    for i, rating in enumerate([5, 4, 4, 2]):
        registry.add_feedback(f"a{i}", rating=rating, thumbs="up" if rating >= 4 else "down")
    clock.advance(3600)
    registry.add_feedback("b0", thumbs="up")
    registry.add_feedback("b1", thumbs="down")
    registry.add_feedback("b2", rating=1)
    registry.add_feedback("p0", rating=3)

    a, b = registry.feedback_summary("dev")
    assert (a.ref, a.ratings, a.mean_rating, a.thumbs_up, a.thumbs_down) == (
        "chat@1.0.0",
        4,
        3.75,
        3,
        1,
    )
    assert a.thumbs_up_rate == 0.75
    assert (b.ref, b.ratings, b.mean_rating, b.thumbs_up, b.thumbs_down) == (
        "chat@1.1.0",
        1,
        1.0,
        1,
        1,
    )
    [everywhere] = registry.feedback_summary(ref="chat@v1.0.0")
    assert (everywhere.ratings, everywhere.mean_rating) == (5, 3.6)
    [recent] = registry.feedback_summary("dev", since=T0 + timedelta(seconds=60))
    assert recent.ref == "chat@1.1.0"
    assert registry.feedback_summary("staging") == []
    with pytest.raises(SpecError, match="not NAME@VERSION"):
        registry.feedback_summary(ref="production")


def test_concurrent_feedback_is_neither_lost_nor_duplicated(
    registry: Registry, open_many: Callable[[], Registry]
) -> None:
    threads, writes = 8, 50
    registry.record_queries(
        [query(f"q{t}-{w}") for t in range(threads) for w in range(writes)]
        + [query("shared", ref="chat@2.0.0")]
    )
    workers = [open_many() for _ in range(threads)]
    written_shared: list[tuple[int, str]] = []
    lock = threading.Lock()

    def _work(t: int) -> None:
        for w in range(writes):
            rating, thumbs = (t + w) % 5 + 1, "up" if (t + w) % 3 else "down"
            if w % 2 == 0:
                workers[t].add_feedback(f"q{t}-{w}", rating=rating, thumbs=thumbs)
            else:
                workers[t].add_feedback("shared", rating=rating, thumbs=thumbs)
                with lock:
                    written_shared.append((rating, thumbs))

    run_threads(threads, _work)
    distinct = [(t, w) for t in range(threads) for w in range(0, writes, 2)]
    ratings = [(t + w) % 5 + 1 for t, w in distinct]
    ups = sum(1 for t, w in distinct if (t + w) % 3)
    assert _count(registry, FeedbackRow) == 2 * len(distinct) + 2
    mine, shared = registry.feedback_summary("dev")
    assert (mine.ref, mine.ratings, mine.thumbs_up, mine.thumbs_down) == (
        "chat@1.0.0",
        len(distinct),
        ups,
        len(distinct) - ups,
    )
    assert mine.mean_rating == pytest.approx(sum(ratings) / len(ratings))
    assert (shared.ref, shared.ratings, shared.thumbs_up + shared.thumbs_down) == (
        "chat@2.0.0",
        1,
        1,
    )
    assert shared.mean_rating is not None
    assert int(shared.mean_rating) in {rating for rating, _ in written_shared}
    assert len(written_shared) == threads * writes // 2


# -- flags ----------------------------------------------------------------------------


def test_flags_set_get_list_delete(releases: Registry) -> None:
    flag = Flag(
        "new-prompt", enabled=True, percent=25, conditions={"plan": "pro"}, release="chat@v1.1.0"
    )
    stored = releases.set_flag("dev", flag, actor="alice")
    assert stored == replace(flag, release="chat@1.1.0")
    assert releases.get_flag("dev", "new-prompt") == stored
    releases.set_flag("dev", Flag("another"), actor="alice")
    changed = releases.set_flag("dev", replace(stored, percent=50, release=None), actor="bob")
    assert releases.get_flag("dev", "new-prompt") == changed
    assert [f.name for f in releases.list_flags("dev")] == ["another", "new-prompt"]
    assert releases.list_flags("prod") == []

    [last, _, first] = releases.events(kind="flag.changed")
    assert (first.subject, first.actor, first.data) == ("dev/new-prompt", "alice", stored.to_dict())
    assert last.data["percent"] == 50.0
    assert "on for 25% when plan=pro, routed to chat@1.1.0" in first.message

    releases.delete_flag("dev", "another", actor="carol")
    [deleted] = releases.events(kind="flag.deleted")
    assert (deleted.subject, deleted.actor) == ("dev/another", "carol")
    with pytest.raises(
        NotFoundError, match=r"no flag 'another' in dev \(flags there: new-prompt\)"
    ):
        releases.get_flag("dev", "another")
    with pytest.raises(NotFoundError, match="it has no flags yet"):
        releases.delete_flag("prod", "new-prompt", actor="carol")


def test_concurrent_toggles_are_each_applied_once(db_url: str) -> None:
    # Given a flag toggled from eight connections at once, 40 times in all
    with Registry.open(db_url) as first:
        first.set_flag("dev", Flag("new_model", enabled=False), actor="setup")
    barrier = threading.Barrier(8)

    def toggle_five(_: int) -> None:
        with Registry.open(db_url) as registry:
            barrier.wait()
            for _ in range(5):
                registry.toggle_flag("dev", "new-model", actor="t")  # the other spelling

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(toggle_five, range(8)))
    # Then no toggle was lost: an even number of flips leaves it off, every one recorded
    with Registry.open(db_url) as registry:
        assert registry.get_flag("dev", "new_model").enabled is False
        assert len(registry.events(limit=100, kind="flag.changed")) == 41
        # and a flag that does not exist is created on by its first toggle
        assert registry.toggle_flag("dev", "fresh", actor="t").enabled is True
        assert registry.toggle_flag("dev", "fresh", actor="t").enabled is False


def test_flag_release_resolves_aliases_and_must_be_registered(releases: Registry) -> None:
    stored = releases.set_flag("dev", Flag("f", enabled=True, release="production"), actor="a")
    assert stored.release == "chat@1.0.0"
    with pytest.raises(NotFoundError, match=r"^flag g: no release chat@5\.0\.0"):
        releases.set_flag("dev", Flag("g", release="chat@5.0.0"), actor="a")
    assert [f.name for f in releases.list_flags("dev")] == ["f"]


BAD_FLAGS: list[tuple[Flag, str]] = [
    (Flag("Bad Name"), "flag name 'Bad Name'"),
    (Flag("f", percent=150), "percent must be between 0 and 100"),
    (Flag("f", conditions={"1x": "y"}), "is not a name"),
]


def test_invalid_flags_are_refused(registry: Registry) -> None:
    for flag, message in BAD_FLAGS:
        with pytest.raises(InvalidRequestError, match=message):
            registry.set_flag("dev", flag, actor="a")
    assert registry.list_flags("dev") == []
