"""Gate runs and the eval output cache in the registry, against SQLite and a real
PostgreSQL server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from _registry import T0, TickClock, make_spec
from llmship.errors import NotFoundError, SpecError
from llmship.registry import GateRun, Registry, _engine
from llmship.registry.tables import Base


@pytest.fixture
def registry(db_url: str) -> Iterator[Registry]:
    reg = Registry.open(db_url, clock=TickClock())
    try:
        for version in ("1.0.0", "1.1.0"):
            reg.register(make_spec(version=version), actor="ci")
        yield reg
    finally:
        reg.close()


def record(
    registry: Registry, kind: str = "eval", ref: str = "chat@1.1.0", **changes: Any
) -> GateRun:
    values: dict[str, Any] = {
        "env": "dev",
        "passed": True,
        "summary": {"verdict": "pass", "metrics": {"rouge_l": 0.4}},
        "report": {"cases": [{"id": "c1", "output": "量子计算"}], "score": 0.4},
        "actor": "ci",
        "baseline_ref": "chat@1.0.0",
    }
    values.update(changes)
    return registry.record_gate_run(kind, ref, **values)


# -- schema ------------------------------------------------------------------------


def test_upgrading_from_0002_adds_the_gate_tables(db_url: str) -> None:
    engine = _engine.create_registry_engine(_engine.parse_url(db_url))
    try:
        with engine.begin() as conn:
            config = Config()
            config.set_main_option("script_location", str(_engine.MIGRATIONS))
            config.attributes["connection"] = conn
            command.upgrade(config, "0002")
        with engine.connect() as conn:
            assert not {"gate_runs", "output_cache"} & set(inspect(conn).get_table_names())
        with Registry.open(db_url) as reg:  # migrates 0002 -> head
            assert reg.list_gate_runs() == []
        with engine.connect() as conn:
            assert {"gate_runs", "output_cache"} <= set(inspect(conn).get_table_names())
            assert MigrationContext.configure(conn).get_current_revision() == _engine.HEAD_REVISION
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
            indexes = {i["name"] for i in inspect(conn).get_indexes("gate_runs")}
            assert "ix_gate_runs_ref_kind" in indexes
        with engine.begin() as conn:  # and back down again
            config.attributes["connection"] = conn
            command.downgrade(config, "0002")
        with engine.connect() as conn:
            assert not {"gate_runs", "output_cache"} & set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


# -- gate runs -----------------------------------------------------------------------


def test_record_and_get_a_gate_run(registry: Registry) -> None:
    run = record(registry)
    assert run.kind == "eval"
    assert run.ref == "chat@1.1.0"
    assert run.baseline_ref == "chat@1.0.0"
    assert run.env == "dev"
    assert run.passed is True
    assert run.forced is False
    assert run.summary == {"verdict": "pass", "metrics": {"rouge_l": 0.4}}
    assert run.report["cases"][0]["output"] == "量子计算"
    assert run.created_by == "ci"
    assert run.created_at.tzinfo is not None
    assert registry.get_gate_run(run.id) == run


def test_recording_is_an_event(registry: Registry) -> None:
    run = record(registry, passed=False, forced=True)
    event = registry.events(kind="gate.eval")[0]
    assert event.subject == "chat@1.1.0"
    assert event.data["passed"] is False
    assert event.data["run"] == run.id
    assert event.data["forced"] is True
    assert "failed (forced)" in event.message
    assert "against chat@1.0.0" in event.message


def test_the_ref_is_normalised_and_must_be_registered(registry: Registry) -> None:
    assert record(registry, ref="chat@v1.1.0").ref == "chat@1.1.0"
    with pytest.raises(NotFoundError, match=r"no release chat@9\.9\.9"):
        record(registry, ref="chat@9.9.9")
    with pytest.raises(SpecError, match="not NAME@VERSION"):
        record(registry, ref="production")
    assert len(registry.list_gate_runs()) == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": "Eval!"}, "not a gate kind"),
        ({"env": "Prod"}, "not a valid environment"),
        ({"summary": ["not", "a", "dict"]}, "must be a JSON object"),
    ],
)
def test_bad_gate_runs_are_refused(
    registry: Registry, changes: dict[str, Any], message: str
) -> None:
    values = dict(changes)  # the parameters are shared by the sqlite and postgres runs
    kind = values.pop("kind", "eval")
    with pytest.raises(SpecError, match=message):
        record(registry, kind, **values)


def test_non_finite_numbers_are_null_and_times_text(registry: Registry) -> None:
    run = record(registry, summary={"p": float("nan"), "ci": (float("-inf"), 1.0), "at": T0})
    assert run.summary == {"p": None, "ci": [None, 1.0], "at": str(T0)}


def test_get_an_unknown_run(registry: Registry) -> None:
    with pytest.raises(NotFoundError, match="no gate run 42"):
        registry.get_gate_run(42)


def test_list_filters_orders_and_limits(registry: Registry) -> None:
    first = record(registry, "eval", "chat@1.0.0", baseline_ref=None)
    second = record(registry, "loadtest", "chat@1.1.0", baseline_ref=None)
    third = record(registry, "eval", "chat@1.1.0")
    assert [r.id for r in registry.list_gate_runs()] == [third.id, second.id, first.id]
    assert [r.id for r in registry.list_gate_runs(kind="eval")] == [third.id, first.id]
    assert [r.id for r in registry.list_gate_runs(ref="chat@1.1.0")] == [third.id, second.id]
    assert [r.id for r in registry.list_gate_runs(kind="eval", ref="chat@1.0.0")] == [first.id]
    assert [r.id for r in registry.list_gate_runs(limit=1)] == [third.id]
    light = registry.list_gate_runs(with_reports=False)
    assert [r.report for r in light] == [{}, {}, {}]
    assert light[0].summary == third.summary


def test_latest_gate_runs_per_kind(registry: Registry) -> None:
    assert registry.latest_gate_runs("chat@1.1.0") == {}
    record(registry, "eval", passed=False)
    newest_eval = record(registry, "eval", passed=True)
    load = record(registry, "loadtest", passed=False, baseline_ref=None)
    record(registry, "eval", "chat@1.0.0", baseline_ref=None)
    latest = registry.latest_gate_runs("chat@1.1.0")
    assert latest == {"eval": newest_eval, "loadtest": load}


# -- output cache ----------------------------------------------------------------------


def test_cache_put_get_and_replace(registry: Registry) -> None:
    key = "a" * 64
    assert registry.cache_get(key) is None
    registry.cache_put(key, "chat@1.0.0", {"text": "你好", "latency_s": 0.5})
    assert registry.cache_get(key) == {"text": "你好", "latency_s": 0.5}
    registry.cache_put(key, "chat@1.0.0", {"text": "again"})
    assert registry.cache_get(key) == {"text": "again"}


def test_cache_many_in_batches(registry: Registry) -> None:
    items = [(f"{i:064x}", "chat@1.0.0", {"text": f"answer {i}"}) for i in range(1234)]
    registry.cache_put_many(items)
    keys = [key for key, _, _ in items] + ["f" * 64]
    found = registry.cache_get_many(keys)
    assert len(found) == 1234
    assert found[f"{77:064x}"] == {"text": "answer 77"}
    # Upserting overlapping keys again keeps one row per key; the last value wins.
    registry.cache_put_many([(f"{1:064x}", "chat@1.1.0", {"text": "new"})] * 2)
    assert registry.cache_get(f"{1:064x}") == {"text": "new"}
    assert registry.cache_get_many([]) == {}
    registry.cache_put_many([])
    assert registry.cache_clear("chat@1.1.0") == 1
    assert registry.cache_clear() == 1233


def test_bad_cache_keys(registry: Registry) -> None:
    with pytest.raises(SpecError, match="cache key"):
        registry.cache_get("x" * 65)
    with pytest.raises(SpecError, match="cache key"):
        registry.cache_put("", "chat@1.0.0", {})
    with pytest.raises(SpecError, match="cache ref"):
        registry.cache_put("k", "", {})


def test_concurrent_cache_writers_lose_nothing(db_url: str, registry: Registry) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def _write(index: int) -> None:
        with Registry.open(db_url) as reg:
            try:
                barrier.wait(timeout=30)
                # Every writer writes the shared keys and its own.
                shared = [(f"{i:064x}", "chat@1.0.0", {"by": index}) for i in range(50)]
                own = [(f"{index + 1:08x}{i:056x}", "chat@1.0.0", {"by": index}) for i in range(50)]
                reg.cache_put_many(shared + own)
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=_write, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    keys = [f"{i:064x}" for i in range(50)]
    keys += [f"{w + 1:08x}{i:056x}" for w in range(4) for i in range(50)]
    found = registry.cache_get_many(keys)
    assert len(found) == 250


def test_stored_json_is_plain_text(db_url: str, registry: Registry) -> None:
    """Reports are readable by other tools straight from the database."""
    run = record(registry)
    engine = _engine.create_registry_engine(_engine.parse_url(db_url))
    try:
        with engine.connect() as conn:
            raw = conn.execute(
                text("SELECT report FROM gate_runs WHERE id = :id"), {"id": run.id}
            ).scalar_one()
        assert json.loads(raw) == run.report
    finally:
        engine.dispose()
