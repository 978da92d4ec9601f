"""Leases in the registry (SQLite and PostgreSQL): acquire, renew, expire, take over,
release; the fencing token grows only when the lease changes hands; of racing
acquirers exactly one wins; and a fenced write with a stale token is refused in its
own transaction, with nothing written."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from _registry import T0, StillClock, register_chat, run_threads
from llmship.errors import (
    ConflictError,
    FencedError,
    InvalidRequestError,
    RegistryUnavailableError,
)
from llmship.registry import Registry, RolloutUpdate
from llmship.registry.records import Lease
from llmship.routing.policy import TrafficPolicy

NAME = "controller/dev"


Clock = StillClock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def reg(db_url: str, clock: Clock) -> Iterator[Registry]:
    with Registry.open(db_url, clock=clock) as registry:
        yield registry


def acquire(reg: Registry, holder: str, seconds: float = 3.0) -> Lease | None:
    return reg.acquire_lease(NAME, holder, duration_s=seconds)


# -- acquire, renew, expire, take over, release ------------------------------------------


def test_the_first_holder_gets_token_1_and_renewing_keeps_it(reg: Registry, clock: Clock) -> None:
    first = acquire(reg, "a")
    assert first is not None
    assert (first.holder, first.token, first.acquired_at, first.expires_at) == (
        "a",
        1,
        T0,
        T0 + timedelta(seconds=3),
    )
    clock.advance(2)
    renewed = acquire(reg, "a")
    assert renewed is not None
    assert renewed.token == 1
    assert renewed.acquired_at == T0
    assert renewed.renewed_at == clock.now
    assert renewed.expires_at == clock.now + timedelta(seconds=3)
    assert reg.get_lease(NAME) == renewed


def test_no_one_takes_a_live_lease(reg: Registry, clock: Clock) -> None:
    assert acquire(reg, "a") is not None
    clock.advance(2.9)
    assert acquire(reg, "b") is None
    lease = reg.get_lease(NAME)
    assert lease is not None and (lease.holder, lease.token) == ("a", 1)


def test_an_expired_lease_changes_hands_and_the_token_grows_by_one(
    reg: Registry, clock: Clock
) -> None:
    acquire(reg, "a")
    clock.advance(3)  # expires_at is not included
    taken = acquire(reg, "b")
    assert taken is not None and (taken.holder, taken.token) == ("b", 2)
    assert taken.acquired_at == clock.now
    # the old holder is now the one refused, and each renewal keeps token 2
    assert acquire(reg, "a") is None
    for _ in range(3):
        clock.advance(1)
        again = acquire(reg, "b")
        assert again is not None and again.token == 2
    # an expired lease its holder renews before anyone else takes it stays its own
    clock.advance(10)
    back = acquire(reg, "b")
    assert back is not None and back.token == 2
    events = [(e.kind, e.actor, e.data["token"]) for e in reversed(reg.events(kind=None))]
    assert [e for e in events if e[0].startswith("lease.")] == [
        ("lease.acquired", "a", 1),
        ("lease.acquired", "b", 2),
    ]


def test_a_released_lease_is_taken_at_once(reg: Registry, clock: Clock) -> None:
    acquire(reg, "a")
    assert reg.release_lease(NAME, "b") is False  # not b's to release
    assert reg.release_lease(NAME, "a") is True
    assert reg.release_lease(NAME, "a") is False  # already released
    lease = reg.get_lease(NAME)
    assert lease is not None and not lease.live(clock.now)
    taken = acquire(reg, "b")
    assert taken is not None and taken.token == 2


def test_an_unknown_lease_is_none_and_bad_arguments_say_what_to_fix(reg: Registry) -> None:
    assert reg.get_lease(NAME) is None
    assert reg.release_lease(NAME, "a") is False
    with pytest.raises(InvalidRequestError, match="positive number of seconds"):
        reg.acquire_lease(NAME, "a", duration_s=0)
    with pytest.raises(InvalidRequestError, match="HOST:PID"):
        reg.acquire_lease(NAME, "", duration_s=1)


def test_of_racing_acquirers_exactly_one_wins(
    db_url: str, open_many: Callable[[], Registry]
) -> None:
    registries = [open_many() for _ in range(6)]
    won: list[Lease] = []
    lock = threading.Lock()

    def _try(index: int) -> None:
        lease = registries[index].acquire_lease(NAME, f"c{index}", duration_s=30)
        if lease is not None:
            with lock:
                won.append(lease)

    run_threads(len(registries), _try)
    assert len(won) == 1, won
    assert won[0].token == 1
    assert registries[0].get_lease(NAME) == won[0]


def test_racing_for_an_expired_lease_one_wins_and_the_token_grows_once(
    db_url: str, open_many: Callable[[], Registry], clock: Clock
) -> None:
    registries = [Registry.open(db_url, clock=clock) for _ in range(5)]
    try:
        registries[0].acquire_lease(NAME, "old", duration_s=1)
        clock.advance(5)
        won: list[Lease] = []

        def _try(index: int) -> None:
            lease = registries[index].acquire_lease(NAME, f"c{index}", duration_s=30)
            if lease is not None:
                won.append(lease)

        run_threads(len(registries), _try)
        assert len(won) == 1 and won[0].token == 2, won
    finally:
        for registry in registries:
            registry.close()


# -- fencing -------------------------------------------------------------------------------


@pytest.fixture
def world(reg: Registry) -> Registry:
    """chat@1.0.0 in production, chat@1.1.0 registered, a rollout, a traffic policy."""
    register_chat(reg)
    reg.set_traffic("dev", TrafficPolicy(env="dev"), actor="ci", reason="start")
    reg.create_rollout(
        "dev",
        name="chat-canary",
        strategy="canary",
        spec={},
        candidate="chat@1.1.0",
        stable="chat@1.0.0",
        update=RolloutUpdate(
            phase="Progressing",
            step_index=0,
            step_started_at=None,
            paused=False,
            pause_reason=None,
            abort_reason=None,
            message="started",
            state={},
            active=True,
        ),
        actor="ci",
    )
    return reg


def test_a_stale_token_is_refused_and_nothing_is_written(world: Registry, clock: Clock) -> None:
    reg = world
    old = acquire(reg, "a")
    assert old is not None
    stale = reg.fenced(NAME, old.token)
    clock.advance(5)
    assert acquire(reg, "b") is not None  # b leads now, with token 2
    rollout = reg.find_rollout("dev")
    policy = reg.get_traffic("dev")
    events = reg.events(limit=1)[0].id
    update = RolloutUpdate(
        phase="Progressing",
        step_index=1,
        step_started_at=None,
        paused=False,
        pause_reason=None,
        abort_reason=None,
        message="step 1",
        state={},
        active=True,
    )
    writes: list[Callable[[], object]] = [
        lambda: stale.save_rollout(
            rollout.id,
            update,
            expected_revision=rollout.revision,
            actor="a",
            notes=[("x", "y", "")],
        ),
        lambda: stale.set_traffic(
            "dev",
            TrafficPolicy(env="dev", canary="chat@1.1.0", canary_weight=20),
            actor="a",
            reason="step 1",
            expected_revision=policy.revision,
        ),
        lambda: stale.set_alias("dev", "production", "chat@1.1.0", actor="a", reason="promote"),
        lambda: stale.record_measurement(
            rollout.id,
            "bg",
            "errors",
            phase="Successful",
            value=0.0,
            message="ok",
            started_at=None,
            at=clock.now,
        ),
        lambda: stale.record_event("rollout.step", "dev/rollout/1", "late", actor="a"),
    ]
    for write in writes:
        with pytest.raises(FencedError, match=r"passed to b \(token 2\)") as caught:
            write()
        assert isinstance(caught.value, ConflictError)
        assert caught.value.code == "fenced"
    # nothing was written, not even in part
    assert reg.get_rollout(rollout.id) == rollout
    assert reg.get_traffic("dev") == policy
    production = reg.get_alias("dev", "production")
    assert production is not None and production.ref == "chat@1.0.0"
    assert reg.list_measurements(rollout.id) == []
    assert reg.events(limit=1)[0].id == events


def test_the_current_token_writes_and_reads_are_never_fenced(world: Registry, clock: Clock) -> None:
    reg = world
    lease = acquire(reg, "a")
    assert lease is not None
    view = reg.fenced(NAME, lease.token)
    clock.advance(10)  # expired, but no one took over: the token is still current
    moved = view.set_alias("dev", "production", "chat@1.1.0", actor="a", reason="promote")
    assert moved.to_ref == "chat@1.1.0"
    acquire(reg, "b")
    with pytest.raises(FencedError):
        view.set_alias("dev", "production", "chat@1.0.0", actor="a", reason="back")
    assert view.find_rollout("dev").name == "chat-canary"  # reads go on
    with pytest.raises(FencedError, match="no one holds the lease controller/other"):
        reg.fenced("controller/other", 1).record_event("x.y", "s", "m", actor="a")


def test_a_takeover_waits_for_a_fenced_write_in_flight(world: Registry, clock: Clock) -> None:
    """The fence check and the write are one transaction: a takeover that starts while a
    fenced write is in flight waits for it (PostgreSQL: the share lock on the lease row;
    SQLite: the database lock), so no write of the old holder lands after a takeover."""
    reg = world
    acquire(reg, "a", seconds=1)
    view = reg.fenced(NAME, 1)
    clock.advance(5)
    taken: list[Lease | None] = []
    taker = threading.Thread(target=lambda: taken.append(acquire(reg, "b")))
    with view._write():
        taker.start()
        time.sleep(0.3)
        assert taker.is_alive(), "the takeover did not wait for the write in flight"
    taker.join(timeout=30)
    assert taken and taken[0] is not None and taken[0].token == 2
    with pytest.raises(FencedError):
        view.record_event("x.y", "s", "m", actor="a")


@pytest.mark.postgres
def test_a_writer_stalled_in_its_transaction_does_not_hold_off_a_takeover(
    postgres_url: str, clock: Clock
) -> None:
    """A holder paused or cut off inside a fenced write holds the lease row's share lock;
    PostgreSQL ends its session after STALL_LIMIT_MS idle, and the takeover goes on."""
    with Registry.open(postgres_url, clock=clock) as reg:
        reg.acquire_lease(NAME, "a", duration_s=1)
        view = reg.fenced(NAME, 1)
        clock.advance(5)
        taken: list[Lease | None] = []
        started = time.monotonic()

        def stall() -> None:
            with view._write():
                taken.append(acquire(reg, "b"))  # waits for the stalled session to end

        with pytest.raises(RegistryUnavailableError):
            stall()
        waited = time.monotonic() - started
        assert taken and taken[0] is not None and taken[0].token == 2
        assert 0.5 < waited < 5, waited
