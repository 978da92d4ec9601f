"""Gateways announcing themselves in the registry, and the change notices PostgreSQL
sends them, against SQLite and a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest

from _registry import T0, StillClock, make_spec
from llmship.errors import InvalidRequestError, SpecError
from llmship.flags import Flag
from llmship.registry import Registry
from llmship.registry._hosts import CHANNEL
from llmship.routing import TrafficPolicy

Clock = StillClock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registry(db_url: str, clock: Clock) -> Iterator[Registry]:
    with Registry.open(db_url, clock=clock) as reg:
        yield reg


def test_a_gateway_announces_renews_and_withdraws(registry: Registry, clock: Clock) -> None:
    # Given a gateway that announced itself
    first = registry.announce_gateway("dev", "h-1-a", "http://10.0.0.5:8080", pid=1, host="h")
    assert (first.url, first.pid, first.host, first.policy_revision) == (
        "http://10.0.0.5:8080",
        1,
        "h",
        None,
    )
    assert first.started_at == first.heartbeat_at == T0
    # When it renews with what it routes by and how busy it is
    clock.advance(5)
    renewed = registry.announce_gateway(
        "dev", "h-1-a", "http://10.0.0.5:8080", pid=1, host="h", policy_revision=7,
        recent_requests=42,
    )  # fmt: skip
    # Then the heartbeat moves and started_at stays
    assert renewed.started_at == T0
    assert renewed.heartbeat_at == T0 + timedelta(seconds=5)
    assert (renewed.policy_revision, renewed.recent_requests) == (7, 42)
    # And a clean stop removes it (twice is harmless)
    registry.remove_gateway("dev", "h-1-a")
    registry.remove_gateway("dev", "h-1-a")
    assert registry.list_gateways("dev") == []


def test_only_live_gateways_of_the_env_are_listed(registry: Registry, clock: Clock) -> None:
    registry.announce_gateway("dev", "old", "http://10.0.0.1:8080", pid=1, host="a")
    clock.advance(20)
    registry.announce_gateway("dev", "new", "http://10.0.0.2:8080", pid=2, host="b")
    registry.announce_gateway("prod", "other", "http://10.0.0.3:8080", pid=3, host="c")
    assert [g.instance for g in registry.list_gateways("dev")] == ["old", "new"]
    assert [g.instance for g in registry.list_gateways("dev", max_age_s=15)] == ["new"]
    assert [g.instance for g in registry.list_gateways("prod", max_age_s=15)] == ["other"]


def test_processes_that_died_an_hour_ago_are_forgotten(registry: Registry, clock: Clock) -> None:
    # Given a gateway and a model server that died without withdrawing
    registry.announce_gateway("dev", "dead", "http://10.0.0.1:8080", pid=1, host="a")
    registry.register_endpoint("dev", "chat@1.0.0", "http://10.0.0.7:8000", pid=7)
    registry.announce_gateway("prod", "elsewhere", "http://10.0.0.9:8080", pid=9, host="c")
    # When, 59 minutes later, others of the environment announce themselves
    clock.advance(59 * 60)
    registry.announce_gateway("dev", "new", "http://10.0.0.2:8080", pid=2, host="b")
    registry.register_endpoint("dev", "chat@1.0.0", "http://10.0.0.8:8000", pid=8)
    # Then the dead are still listed (their requests may be in an analysis window)
    assert [g.instance for g in registry.list_gateways("dev")] == ["dead", "new"]
    assert len(registry.list_endpoints("dev", max_age_s=None)) == 2
    # And past the hour, the next announcements delete them, in their environment only
    clock.advance(2 * 60)
    registry.announce_gateway("dev", "new", "http://10.0.0.2:8080", pid=2, host="b")
    registry.register_endpoint("dev", "chat@1.0.0", "http://10.0.0.6:8000", pid=6)
    assert [g.instance for g in registry.list_gateways("dev")] == ["new"]
    urls = {e.url for e in registry.list_endpoints("dev", max_age_s=None)}
    assert urls == {"http://10.0.0.8:8000", "http://10.0.0.6:8000"}
    assert [g.instance for g in registry.list_gateways("prod")] == ["elsewhere"]


def test_a_bad_announcement_is_refused(registry: Registry) -> None:
    with pytest.raises(InvalidRequestError, match="advertise-url"):
        registry.announce_gateway("dev", "x", "10.0.0.5:8080", pid=1, host="h")
    with pytest.raises(SpecError, match="instance"):
        registry.announce_gateway("dev", "", "http://10.0.0.5:8080", pid=1, host="h")
    with pytest.raises(SpecError, match="environment"):
        registry.announce_gateway("Dev!", "x", "http://10.0.0.5:8080", pid=1, host="h")


def test_the_change_channel_exists_on_postgresql_only(registry: Registry, db_url: str) -> None:
    channel = registry.change_channel()
    if db_url.startswith("sqlite"):
        assert channel is None
    else:
        assert channel is not None and channel.startswith("postgresql://")
        with psycopg.connect(channel) as conn:  # it is a working libpq connection string
            assert conn.execute("SELECT 1").fetchone() == (1,)


# -- notices ----------------------------------------------------------------------------


@pytest.fixture
def listening(postgres_url: str) -> Iterator[tuple[Registry, psycopg.Connection[object]]]:
    """A PostgreSQL registry (real clock) with releases, and a connection listening."""
    with Registry.open(postgres_url) as reg:
        for version in ("1.0.0", "1.1.0"):
            reg.register(make_spec("chat", version), actor="t")
        reg.set_alias("dev", "production", "chat@1.0.0", actor="t", reason="r")
        channel = reg.change_channel()
        assert channel is not None
        with psycopg.connect(channel, autocommit=True) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            yield reg, conn


def _notices(conn: psycopg.Connection[object]) -> list[str]:
    return [n.payload for n in conn.notifies(timeout=0.2)]


@pytest.mark.postgres
def test_every_routing_change_is_announced_once_committed(
    listening: tuple[Registry, psycopg.Connection[object]],
) -> None:
    reg, conn = listening
    # Traffic: set, reset, promote (each one notice for its env)
    reg.set_traffic(
        "dev", TrafficPolicy(env="dev", canary="chat@1.1.0", canary_weight=10), actor="t",
        reason="r",
    )  # fmt: skip
    assert _notices(conn) == ["dev"]
    reg.reset_traffic("dev", actor="t", reason="r")
    assert _notices(conn) == ["dev"]
    # Flags: set and delete
    reg.set_flag("dev", Flag(name="beta", enabled=True, percent=5.0), actor="t")
    assert _notices(conn) == ["dev"]
    reg.delete_flag("dev", "beta", actor="t")
    assert _notices(conn) == ["dev"]
    # Aliases: production moved
    reg.set_alias("dev", "production", "chat@1.1.0", actor="t", reason="r")
    assert _notices(conn) == ["dev"]
    # Model servers: a new one and its withdrawal, not each heartbeat
    reg.register_endpoint("dev", "chat@1.1.0", "http://127.0.0.1:9001", pid=10)
    assert _notices(conn) == ["dev"]
    reg.register_endpoint("dev", "chat@1.1.0", "http://127.0.0.1:9001", pid=10)
    assert _notices(conn) == []
    reg.register_endpoint("dev", "chat@1.1.0", "http://127.0.0.1:9001", pid=11)  # restarted
    assert _notices(conn) == ["dev"]
    reg.remove_endpoint("dev", "chat@1.1.0", "http://127.0.0.1:9001")
    assert _notices(conn) == ["dev"]
    reg.remove_endpoint("dev", "chat@1.1.0", "http://127.0.0.1:9001")  # nothing to remove
    # And what does not change routing says nothing
    reg.announce_gateway("dev", "g", "http://127.0.0.1:8080", pid=1, host="h")
    assert _notices(conn) == []


@pytest.mark.postgres
def test_a_refused_change_sends_no_notice(
    listening: tuple[Registry, psycopg.Connection[object]],
) -> None:
    reg, conn = listening
    with pytest.raises(Exception, match="revision"):
        reg.set_traffic("dev", TrafficPolicy(env="dev"), actor="t", reason="r", expected_revision=9)
    assert _notices(conn) == []
