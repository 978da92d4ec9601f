"""The registry against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import random
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy import exc as sa_exc

from _registry import TickClock, make_spec, run_threads
from llmship.errors import ConflictError, NotFoundError, RegistryUnavailableError, SpecError
from llmship.registry import AliasMove, Registry, ReleaseRecord, _engine
from llmship.registry.tables import Base
from llmship.release.spec import parse_spec

TABLES = {
    "releases",
    "aliases",
    "alias_history",
    "events",
    "traffic_policies",
    "endpoints",
    "queries",
    "feedback",
    "flags",
    "gate_runs",
    "output_cache",
    "rollouts",
    "rollout_intents",
    "analysis_measurements",
    "gateways",
    "leases",
    "secrets",
    "approvals",
    "pipeline_runs",
    "alert_actions",
}


@pytest.fixture
def registry(db_url: str) -> Iterator[Registry]:
    reg = Registry.open(db_url, clock=TickClock())
    try:
        yield reg
    finally:
        reg.close()


# -- schema and migrations ---------------------------------------------------------


def test_migrations_create_the_schema_from_empty(db_url: str) -> None:
    Registry.open(db_url).close()
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) == {*TABLES, "alembic_version"}
            assert MigrationContext.configure(conn).get_current_revision() == _engine.HEAD_REVISION
            # The hand-written migrations create exactly what tables.py declares.
            diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            assert diffs == []
    finally:
        engine.dispose()


def test_head_revision_constant_matches_the_migration_scripts() -> None:
    config = Config()
    config.set_main_option("script_location", str(_engine.MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == _engine.HEAD_REVISION


def test_reopening_a_current_database_skips_alembic(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    Registry.open(db_url).close()

    def _fail(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("alembic ran although the schema is current")

    monkeypatch.setattr("alembic.command.upgrade", _fail)
    with Registry.open(db_url) as reg:
        assert reg.is_empty()


def test_unknown_schema_revision_says_to_upgrade_llmship(db_url: str) -> None:
    Registry.open(db_url).close()
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        engine.dispose()
    with pytest.raises(RegistryUnavailableError, match=r"9999.*upgrade llmship"):
        Registry.open(db_url)


def test_sqlite_directory_and_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "registry.db"
    with Registry.open(f"sqlite:///{path}", home=tmp_path / "a") as reg:
        assert path.exists()
        assert reg.home == tmp_path / "a"
        with reg._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000


def test_sqlite_foreign_keys_are_enforced(tmp_path: Path) -> None:
    with (
        Registry.open(f"sqlite:///{tmp_path / 'r.db'}") as reg,
        reg._engine.connect() as conn,
        pytest.raises(sa_exc.IntegrityError, match="FOREIGN KEY"),
    ):
        conn.exec_driver_sql(
            "INSERT INTO aliases (env, alias, release_id, updated_at) "
            "VALUES ('dev', 'production', 42, '2024-01-01 00:00:00')"
        )


def test_unreachable_postgres_is_one_clear_error_without_the_password() -> None:
    url = "postgresql+psycopg://llm:s3cret@127.0.0.1:1/registry"
    with pytest.raises(RegistryUnavailableError) as info:
        Registry.open(url)
    message = info.value.message
    assert message.startswith("cannot open the registry at postgresql+psycopg://llm:***@")
    assert "s3cret" not in message


def test_sqlite_path_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(RegistryUnavailableError, match="cannot open the registry"):
        Registry.open(f"sqlite:///{tmp_path / 'file' / 'registry.db'}")


@pytest.mark.parametrize("url", ["not a url", "nosuchdb://x/y"])
def test_bad_database_url(url: str) -> None:
    with pytest.raises(SpecError):
        Registry.open(url)


# -- releases -----------------------------------------------------------------------


def test_register_and_get(registry: Registry) -> None:
    assert registry.is_empty()
    record, created = registry.register(make_spec(labels={"team": "a"}), actor="alice")
    assert created
    assert isinstance(record, ReleaseRecord)
    assert record.ref == "chat@1.0.0"
    assert record.spec == make_spec(labels={"team": "a"})
    assert record.digest == make_spec(labels={"team": "a"}).digest()
    assert record.created_by == "alice"
    assert record.created_at.utcoffset() == timedelta(0)
    assert registry.get("chat", "1.0.0") == record
    assert registry.get("chat", "v1.0.0") == record
    assert not registry.is_empty()
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.created_by = "mallory"  # type: ignore[misc]


def test_register_is_idempotent_for_identical_content(registry: Registry) -> None:
    first, created = registry.register(make_spec(), actor="alice")
    again, created_again = registry.register(make_spec(), actor="bob")
    assert created
    assert not created_again
    assert again == first
    assert again.created_by == "alice"
    assert len(registry.list_releases()) == 1
    assert len(registry.events(kind="release.registered")) == 1


def test_register_changed_content_is_a_conflict(registry: Registry) -> None:
    registry.register(make_spec(), actor="alice")
    changed = make_spec(params={"temperature": 0.1}, description="colder")
    with pytest.raises(ConflictError) as info:
        registry.register(changed, actor="alice")
    message = info.value.message
    assert "chat@1.0.0 is already registered with different content" in message
    assert "description" in message
    assert "params (temperature)" in message
    assert "bump the version (e.g. 1.0.1)" in message
    assert registry.get("chat", "1.0.0").spec == make_spec()


def test_register_fills_the_weights_sha256(registry: Registry, tmp_path: Path) -> None:
    weights = tmp_path / "tiny.gguf"
    weights.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    spec = parse_spec({"name": "local", "version": "0.1.0", "model": {"path": str(weights)}})
    record, _ = registry.register(spec, actor="alice")
    assert record.spec.model.sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    # The same file again is identical content; a changed file is a conflict.
    assert registry.register(spec, actor="alice")[1] is False
    weights.write_bytes(b"GGUF changed")
    with pytest.raises(ConflictError, match=r"model \(sha256\)"):
        registry.register(spec, actor="alice")


def test_list_orders_by_name_then_semver_descending(registry: Registry) -> None:
    for name, version in [
        ("chat", "1.2.0"),
        ("chat", "1.10.0"),
        ("alpha", "0.1.0"),
        ("chat", "2.0.0-rc.1"),
        ("chat", "1.9.0"),
        ("chat", "2.0.0"),
        ("chat", "2.0.0-rc.2"),
    ]:
        registry.register(make_spec(name, version), actor="alice")
    refs = [r.ref for r in registry.list_releases()]
    assert refs == [
        "alpha@0.1.0",
        "chat@2.0.0",
        "chat@2.0.0-rc.2",
        "chat@2.0.0-rc.1",
        "chat@1.10.0",
        "chat@1.9.0",
        "chat@1.2.0",
    ]
    assert [r.version for r in registry.list_releases("alpha")] == ["0.1.0"]
    assert registry.list_releases("nope") == []


def test_get_not_found_messages(registry: Registry) -> None:
    with pytest.raises(NotFoundError, match="the registry is empty"):
        registry.get("chat", "1.0.0")
    registry.register(make_spec(version="1.0.0"), actor="a")
    registry.register(make_spec(version="1.1.0"), actor="a")
    with pytest.raises(
        NotFoundError, match=r"no release chat@9\.9\.9; known versions of chat: 1\.1\.0, 1\.0\.0"
    ):
        registry.get("chat", "9.9.9")
    with pytest.raises(
        NotFoundError, match=r"no release named 'other' is registered \(known names: chat\)"
    ):
        registry.get("other", "1.0.0")


# -- resolving and aliases ---------------------------------------------------------


def test_resolve_by_ref_and_by_alias(registry: Registry) -> None:
    v1, _ = registry.register(make_spec(version="1.0.0"), actor="a")
    v2, _ = registry.register(make_spec(version="1.1.0"), actor="a")
    registry.set_alias("dev", "production", "chat@1.0.0", actor="a", reason="first")
    registry.set_alias("prod", "production", "chat@1.1.0", actor="a", reason="first")
    assert registry.resolve("chat@1.1.0", env="dev") == v2
    assert registry.resolve("chat@v1.0.0", env="dev") == v1
    assert registry.resolve("production", env="dev") == v1
    assert registry.resolve("production", env="prod") == v2
    with pytest.raises(
        NotFoundError,
        match=r"'canary' is neither NAME@VERSION nor an alias in environment 'dev' "
        r"\(aliases there: production\)",
    ):
        registry.resolve("canary", env="dev")
    with pytest.raises(NotFoundError, match="it has no aliases yet"):
        registry.resolve("production", env="staging")
    with pytest.raises(NotFoundError, match="known versions of chat"):
        registry.resolve("chat@3.0.0", env="dev")
    with pytest.raises(SpecError, match="NAME@VERSION"):
        registry.resolve("chat@", env="dev")


@pytest.mark.parametrize(
    "alias",
    ["Production", "1st", "", "a" * 64, "with space", "dev/production", "_x", "prod.uction"],
)
def test_bad_alias_names_are_refused(registry: Registry, alias: str) -> None:
    registry.register(make_spec(), actor="a")
    with pytest.raises(SpecError, match="not a valid alias name"):
        registry.set_alias("dev", alias, "chat@1.0.0", actor="a", reason="r")
    assert registry.list_aliases() == []


def test_good_alias_names(registry: Registry) -> None:
    registry.register(make_spec(), actor="a")
    for alias in ["production", "a", "canary-2", "ab_test", "x" * 63]:
        registry.set_alias("dev", alias, "chat@1.0.0", actor="a", reason="r")
    assert len(registry.list_aliases("dev")) == 5


def test_bad_env_and_missing_reason(registry: Registry) -> None:
    registry.register(make_spec(), actor="a")
    with pytest.raises(SpecError, match="not a valid environment name"):
        registry.set_alias("Dev", "production", "chat@1.0.0", actor="a", reason="r")
    with pytest.raises(SpecError, match="a reason is required"):
        registry.set_alias("dev", "production", "chat@1.0.0", actor="a", reason="  ")


def test_alias_history_records_from_to_actor_reason_and_rollback(registry: Registry) -> None:
    registry.register(make_spec(version="1.0.0"), actor="ci")
    registry.register(make_spec(version="1.1.0"), actor="ci")

    first = registry.set_alias("dev", "production", "chat@1.0.0", actor="alice", reason="launch")
    second = registry.set_alias("dev", "production", "chat@1.1.0", actor="bob", reason="better")
    # Rollback: move the alias back to where it pointed before.
    back = registry.set_alias(
        "dev", "production", second.from_ref or "", actor="carol", reason="errors up"
    )

    history = registry.alias_history("dev", "production")
    assert history == [first, second, back]
    assert [(m.from_ref, m.to_ref, m.actor, m.reason) for m in history] == [
        (None, "chat@1.0.0", "alice", "launch"),
        ("chat@1.0.0", "chat@1.1.0", "bob", "better"),
        ("chat@1.1.0", "chat@1.0.0", "carol", "errors up"),
    ]
    assert all(isinstance(m, AliasMove) for m in history)
    assert history[0].at < history[1].at < history[2].at
    assert history[0].at.tzinfo is not None
    current = registry.get_alias("dev", "production")
    assert current is not None
    assert current.ref == "chat@1.0.0"
    [alias] = registry.list_aliases("dev")
    assert (alias.env, alias.alias, alias.ref) == ("dev", "production", "chat@1.0.0")
    assert alias.updated_at == back.at
    assert registry.alias_history("dev", "canary") == []
    assert registry.get_alias("dev", "canary") is None


def test_setting_an_alias_where_it_points_records_nothing(registry: Registry) -> None:
    registry.register(make_spec(), actor="a")
    move = registry.set_alias("dev", "production", "chat@1.0.0", actor="a", reason="launch")
    events = registry.events()
    again = registry.set_alias("dev", "production", "chat@1.0.0", actor="b", reason="again")
    assert again == move
    assert registry.alias_history("dev", "production") == [move]
    assert registry.events() == events


def test_an_alias_can_follow_another_alias(registry: Registry) -> None:
    registry.register(make_spec(version="1.0.0"), actor="a")
    registry.register(make_spec(version="2.0.0"), actor="a")
    registry.set_alias("dev", "staging", "chat@2.0.0", actor="a", reason="candidate")
    move = registry.set_alias("dev", "production", "staging", actor="a", reason="promote")
    assert move.to_ref == "chat@2.0.0"


def test_environments_are_separate(registry: Registry) -> None:
    registry.register(make_spec(), actor="a")
    registry.set_alias("dev", "production", "chat@1.0.0", actor="a", reason="r")
    assert registry.get_alias("prod", "production") is None
    assert registry.list_aliases("prod") == []
    assert [a.env for a in registry.list_aliases()] == ["dev"]


def test_moving_to_an_unknown_release_changes_nothing(registry: Registry) -> None:
    registry.register(make_spec(), actor="a")
    with pytest.raises(NotFoundError, match=r"known versions of chat: 1\.0\.0"):
        registry.set_alias("dev", "production", "chat@2.0.0", actor="a", reason="r")
    assert registry.list_aliases() == []
    assert registry.alias_history("dev", "production") == []


# -- events -------------------------------------------------------------------------


def test_events_are_recorded_for_every_change(registry: Registry) -> None:
    registry.register(make_spec(), actor="alice")
    registry.set_alias("dev", "production", "chat@1.0.0", actor="bob", reason="launch")
    custom = registry.record_event(
        "rollout.started", "dev/production", "canary 20%", actor="ctl", data={"weight": 20}
    )
    events = registry.events()
    assert [e.kind for e in events] == ["rollout.started", "alias.moved", "release.registered"]
    assert events[0] == custom
    assert custom.data == {"weight": 20}
    moved, registered = events[1], events[2]
    assert (registered.subject, registered.actor) == ("chat@1.0.0", "alice")
    assert registered.data["digest"] == make_spec().digest()
    assert (moved.subject, moved.actor) == ("dev/production", "bob")
    assert moved.data == {
        "env": "dev",
        "alias": "production",
        "from": None,
        "to": "chat@1.0.0",
        "reason": "launch",
    }
    assert "chat@1.0.0" in moved.message
    assert registry.events(kind="alias.moved") == [moved]
    assert registry.events(limit=1) == [custom]
    assert all(e.at.tzinfo is not None for e in events)


def test_bad_event_kind(registry: Registry) -> None:
    with pytest.raises(SpecError, match="not an event kind"):
        registry.record_event("Bad Kind", "x", "y", actor="a")
    assert registry.events() == []


# -- concurrency --------------------------------------------------------------------


def test_concurrent_registers_lose_and_duplicate_nothing(
    registry: Registry, open_many: Callable[[], Registry]
) -> None:
    versions = [f"1.{minor}.0" for minor in range(6)]
    workers = [open_many() for _ in range(6)]
    created: list[str] = []
    lock = threading.Lock()

    def _work(index: int) -> None:
        order = versions[:]
        random.Random(index).shuffle(order)
        for version in order:
            _, was_created = workers[index].register(make_spec(version=version), actor=f"w{index}")
            if was_created:
                with lock:
                    created.append(version)

    run_threads(len(workers), _work)
    assert sorted(created) == sorted(versions)
    assert sorted(r.version for r in registry.list_releases()) == sorted(versions)
    assert len(registry.events(kind="release.registered")) == len(versions)


def test_concurrent_conflicting_registers_have_one_winner(
    registry: Registry, open_many: Callable[[], Registry]
) -> None:
    workers = [open_many() for _ in range(5)]
    outcomes: list[str] = []
    lock = threading.Lock()

    def _work(index: int) -> None:
        spec = make_spec(description=f"variant {index}")
        try:
            workers[index].register(spec, actor=f"w{index}")
            outcome = "created"
        except ConflictError:
            outcome = "conflict"
        with lock:
            outcomes.append(outcome)

    run_threads(len(workers), _work)
    assert sorted(outcomes) == ["conflict"] * 4 + ["created"]
    assert len(registry.list_releases()) == 1


def test_concurrent_alias_moves_form_one_unbroken_history(
    registry: Registry, open_many: Callable[[], Registry]
) -> None:
    count = 6
    for minor in range(count):
        registry.register(make_spec(version=f"1.{minor}.0"), actor="ci")
    workers = [open_many() for _ in range(count)]

    def _work(index: int) -> None:
        workers[index].set_alias(
            "dev", "production", f"chat@1.{index}.0", actor=f"w{index}", reason="race"
        )

    run_threads(count, _work)
    history = registry.alias_history("dev", "production")
    assert len(history) == count
    assert history[0].from_ref is None
    for before, after in itertools.pairwise(history):
        assert after.from_ref == before.to_ref
    current = registry.get_alias("dev", "production")
    assert current is not None
    assert current.ref == history[-1].to_ref
    assert len(registry.events(kind="alias.moved")) == count
