"""Rollouts, their intents and analysis measurements in the registry, against SQLite and a
real PostgreSQL server."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from _registry import TickClock, make_spec
from llmship.errors import ConflictError, InvalidRequestError, NotFoundError
from llmship.registry import Registry, RolloutRecord, RolloutUpdate, _engine
from llmship.registry.tables import Base

SPEC = {"name": "c", "strategy": {"canary": {"steps": [{"setWeight": 20}]}}}


@pytest.fixture
def registry(db_url: str) -> Iterator[Registry]:
    reg = Registry.open(db_url, clock=TickClock())
    try:
        for version in ("1.0.0", "1.1.0"):
            reg.register(make_spec(version=version), actor="ci")
        yield reg
    finally:
        reg.close()


def update(phase: str = "Pending", *, active: bool = True, **changes: Any) -> RolloutUpdate:
    values: dict[str, Any] = {
        "phase": phase,
        "step_index": 0,
        "step_started_at": None,
        "paused": False,
        "pause_reason": None,
        "abort_reason": None,
        "message": "",
        "state": {"phase": phase},
        "active": active,
    }
    values.update(changes)
    return RolloutUpdate(**values)


def create(registry: Registry, env: str = "dev", candidate: str = "chat@1.1.0") -> RolloutRecord:
    return registry.create_rollout(
        env,
        name="c",
        strategy="canary",
        spec=SPEC,
        candidate=candidate,
        stable="chat@1.0.0",
        update=update(),
        actor="ann",
        reason="ticket 42",
    )


# -- schema ------------------------------------------------------------------------------


def test_upgrading_from_0003_adds_the_rollout_tables(db_url: str) -> None:
    tables = {"rollouts", "rollout_intents", "analysis_measurements"}
    engine = _engine.create_registry_engine(_engine.parse_url(db_url))
    try:
        with engine.begin() as conn:
            config = Config()
            config.set_main_option("script_location", str(_engine.MIGRATIONS))
            config.attributes["connection"] = conn
            command.upgrade(config, "0003")
        with engine.connect() as conn:
            assert not tables & set(inspect(conn).get_table_names())
        with Registry.open(db_url) as reg:  # migrates 0003 -> head
            assert reg.list_rollouts() == []
        with engine.connect() as conn:
            assert tables <= set(inspect(conn).get_table_names())
            assert MigrationContext.configure(conn).get_current_revision() == _engine.HEAD_REVISION
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0003")
        with engine.connect() as conn:
            assert not tables & set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


# -- rollouts --------------------------------------------------------------------------------


def test_create_get_and_find_a_rollout(registry: Registry) -> None:
    record = create(registry)
    assert (record.env, record.name, record.strategy) == ("dev", "c", "canary")
    assert (record.candidate, record.stable) == ("chat@1.1.0", "chat@1.0.0")
    assert record.spec == SPEC
    assert record.active
    assert record.revision == 0
    assert record.created_by == "ann"
    assert registry.get_rollout(record.id) == record
    assert registry.find_rollout("dev") == record
    assert registry.find_rollout("dev", "c") == record
    assert registry.find_rollout("dev", str(record.id)) == record
    assert registry.active_rollout("dev") == record
    assert registry.active_rollout("prod") is None
    [event] = registry.rollout_events(record.id)
    assert event.kind == "rollout.created"
    assert "ticket 42" in event.message
    assert event.actor == "ann"


def test_one_active_rollout_per_environment(registry: Registry) -> None:
    first = create(registry)
    with pytest.raises(ConflictError, match=r"rollout c \(id \d+\) of chat@1.1.0 is Pending"):
        create(registry)
    other = create(registry, env="staging")  # another environment is independent
    assert other.active
    done = registry.save_rollout(
        first.id, update("Aborted", active=False), expected_revision=0, actor="controller"
    )
    assert not done.active
    again = create(registry)
    assert registry.find_rollout("dev") == again
    assert [r.id for r in registry.list_rollouts("dev")] == [again.id, first.id]
    assert [r.id for r in registry.list_rollouts("dev", active_only=True)] == [again.id]
    with pytest.raises(ConflictError, match="one rollout runs at a time"):  # retry of first
        registry.save_rollout(first.id, update("Pending"), expected_revision=1, actor="ann")


def test_the_candidate_must_be_registered(registry: Registry) -> None:
    with pytest.raises(NotFoundError, match=r"candidate: no release chat@9.9.9"):
        create(registry, candidate="chat@9.9.9")


def test_save_names_the_revision_it_read_and_records_events(registry: Registry) -> None:
    record = create(registry)
    at = datetime(2024, 5, 1, 13, 0, tzinfo=timezone.utc)
    saved = registry.save_rollout(
        record.id,
        update(
            "Paused",
            step_index=1,
            step_started_at=at,
            paused=True,
            pause_reason="CanaryPauseStep",
            message="step 2/3: pause 10s",
            state={"phase": "Paused", "runs": [{"x": [1, 2]}]},
        ),
        expected_revision=0,
        actor="controller",
        notes=[("rollout.step", "step 1/3: setWeight 20", ""), ("rollout.paused", "p", "ann")],
    )
    assert saved.revision == 1
    assert (saved.phase, saved.step_index, saved.step_started_at) == ("Paused", 1, at)
    assert saved.paused and saved.pause_reason == "CanaryPauseStep"
    assert saved.state == {"phase": "Paused", "runs": [{"x": [1, 2]}]}
    with pytest.raises(ConflictError, match="revision 1, not 0"):
        registry.save_rollout(record.id, update("Aborted"), expected_revision=0, actor="x")
    events = registry.rollout_events(record.id)
    assert [(e.kind, e.actor) for e in events[1:]] == [
        ("rollout.step", "controller"),
        ("rollout.paused", "ann"),
    ]
    assert events[1].message == f"rollout c (id {record.id}): step 1/3: setWeight 20"
    assert events[1].data["rollout"] == record.id
    assert events[1].subject == f"dev/rollout/{record.id}"


def test_find_says_what_there_is(registry: Registry) -> None:
    with pytest.raises(NotFoundError, match="no rollout in dev yet"):
        registry.find_rollout("dev")
    record = create(registry)
    with pytest.raises(NotFoundError, match=r"no rollout named 'x' in dev \(rollouts there: c\)"):
        registry.find_rollout("dev", "x")
    with pytest.raises(NotFoundError, match="no rollout with id"):
        registry.find_rollout("staging", str(record.id))
    with pytest.raises(NotFoundError):
        registry.get_rollout(999)


# -- intents ------------------------------------------------------------------------------


def test_intents_wait_in_order_until_applied_or_rejected(registry: Registry) -> None:
    record = create(registry)
    pause = registry.add_rollout_intent(record.id, "pause", actor="ann", reason="lunch")
    resume = registry.add_rollout_intent(record.id, "resume", actor="bob")
    assert pause is not None and resume is not None
    assert [i.kind for i in registry.pending_rollout_intents(record.id)] == ["pause", "resume"]
    registry.save_rollout(
        record.id, update("Paused"), expected_revision=0, actor="c", consume_intent=pause.id
    )
    registry.reject_rollout_intent(resume.id, "not paused", actor="controller")
    assert registry.pending_rollout_intents(record.id) == []
    outcomes = [(i.kind, i.outcome) for i in registry.list_rollout_intents(record.id)]
    assert outcomes == [("pause", "applied"), ("resume", "not paused")]
    kinds = [e.kind for e in registry.rollout_events(record.id)]
    assert kinds == [
        "rollout.created",
        "rollout.requested",
        "rollout.requested",
        "rollout.rejected",
    ]
    with pytest.raises(InvalidRequestError, match="unknown rollout intent 'jump'"):
        registry.add_rollout_intent(record.id, "jump", actor="ann")


def test_rollouts_to_reconcile(registry: Registry) -> None:
    record = create(registry)
    assert [r.id for r in registry.rollouts_to_reconcile("dev")] == [record.id]
    registry.save_rollout(
        record.id, update("Aborted", active=False), expected_revision=0, actor="c"
    )
    assert registry.rollouts_to_reconcile("dev") == []
    registry.add_rollout_intent(record.id, "retry", actor="ann")
    assert [r.id for r in registry.rollouts_to_reconcile("dev")] == [record.id]
    assert registry.rollouts_to_reconcile("prod") == []
    assert [r.id for r in registry.rollouts_to_reconcile(None)] == [record.id]


def test_an_alert_abort_request_is_idempotent(registry: Registry) -> None:
    record = create(registry)
    key = "a" * 64
    assert registry.request_rollout_abort("dev", record.id, reason="alert fired", dedupe_key=key)
    events = len(registry.rollout_events(record.id))
    assert not registry.request_rollout_abort("dev", record.id, reason="again", dedupe_key=key)
    assert len(registry.rollout_events(record.id)) == events
    [intent] = registry.pending_rollout_intents(record.id)
    assert (intent.kind, intent.actor, intent.reason) == ("abort", "alertmanager", "alert fired")
    assert registry.request_rollout_abort("dev", record.id, reason="new", dedupe_key="b" * 64)
    with pytest.raises(NotFoundError):
        registry.request_rollout_abort("prod", record.id, reason="x", dedupe_key=key)


def test_concurrent_identical_alerts_record_one_abort(registry: Registry) -> None:
    record = create(registry)
    results: list[bool] = []

    def deliver() -> None:
        results.append(
            registry.request_rollout_abort("dev", record.id, reason="r", dedupe_key="k" * 40)
        )

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]
    assert len(registry.pending_rollout_intents(record.id)) == 1


# -- measurements -------------------------------------------------------------------------


def test_measurements_are_stored_per_run(registry: Registry) -> None:
    record = create(registry)
    at = datetime(2024, 5, 1, 13, 0, 0, 250000, tzinfo=timezone.utc)
    for run, value in (("background.1", 0.01), ("step3.2", math.nan), ("background.1", [1, 2])):
        registry.record_measurement(
            record.id,
            run,
            "error-rate",
            phase="Successful",
            value=value,
            message="m",
            started_at=at,
            at=at + timedelta(milliseconds=5),
        )
    background = registry.list_measurements(record.id, runs=["background.1"])
    assert [m.value for m in background] == [0.01, [1, 2]]
    assert background[0].at == at + timedelta(milliseconds=5)
    assert background[0].started_at == at
    assert [m.value for m in registry.list_measurements(record.id)] == [0.01, None, [1, 2]]
    assert registry.list_measurements(record.id, runs=[]) == []


@pytest.mark.parametrize("rollout_id", [0, -1, 2**63, 10**30])
def test_an_id_no_row_can_have_is_not_found(registry: Registry, rollout_id: int) -> None:
    # (a larger one overflowed the database's integer: a 500 at the API)
    with pytest.raises(NotFoundError, match=f"no rollout with id {rollout_id}"):
        registry.get_rollout(rollout_id)
    with pytest.raises(NotFoundError):
        registry.rollout_events(rollout_id)
    with pytest.raises(NotFoundError, match=f"no gate run {rollout_id}"):
        registry.get_gate_run(rollout_id)
