"""Several controllers of one environment, in process, with a fake clock: only the
holder of the lease ``controller/dev`` acts, a standby takes over when the lease
expires or is released and resumes at the same step, and an old leader's writes are
refused (fenced) once another leads. Given / When / Then."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _cli import Run
from _registry import ControllerClock, chat_registry
from _stats import InMemoryStats
from llmship.analysis import VersionStats
from llmship.registry import Registry
from llmship.rollout import RolloutState, ops, parse_rollout
from llmship.rollout.controller import Controller

T0 = 1_714_564_800.0
STABLE, CANDIDATE = "chat@1.0.0", "chat@1.1.0"
LEASE = "controller/dev"
CANARY = {
    "name": "ha-canary",
    "strategy": {
        "canary": {
            "steps": [
                {"setWeight": 20},
                {"pause": {"duration": "10s"}},
                {"setWeight": 50},
                {"pause": {"duration": "10s"}},
                {"setWeight": 100},
            ]
        }
    },
}
ANALYSED = {
    "name": "ha-analysed",
    "strategy": {
        "canary": {
            "steps": [{"setWeight": 20}, {"pause": {"duration": "30s"}}],
            "analysis": {"templates": [{"templateName": "errors"}]},
        }
    },
    "analysisTemplates": [
        {
            "name": "errors",
            "metrics": [
                {
                    "name": "error-rate",
                    "interval": "2s",
                    "successCondition": "result <= 0.05",
                    "provider": {"builtin": {"metric": "error_rate", "window": "30s"}},
                }
            ],
        }
    ],
}


Clock = ControllerClock


class HookedStats(InMemoryStats):
    """Statistics that call ``hook`` once, the first time they are read."""

    def __init__(self) -> None:
        super().__init__()
        self.hook: Any = None

    def stats(self, env: str, ref: str, window_s: float) -> VersionStats:
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()
        return super().stats(env, ref, window_s)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registry(tmp_path: Path, clock: Clock) -> Iterator[Registry]:
    with chat_registry(tmp_path / "state" / "registry.db", clock=clock.dt) as reg:
        reg.register_endpoint("dev", CANDIDATE, "http://127.0.0.1:8101", pid=1)
        yield reg


@pytest.fixture
def stats() -> HookedStats:
    stats = HookedStats()
    stats.set("dev", CANDIDATE, VersionStats(requests=100, errors=0, error_rate=0.0))
    return stats


def controller(registry: Registry, clock: Clock, stats: HookedStats, holder: str) -> Controller:
    return Controller(
        registry,
        env="dev",
        stats=stats,
        clock=clock,
        endpoint_max_age=None,
        holder=holder,
        lease_duration=3.0,
    )


def start(registry: Registry, spec: dict[str, Any]) -> int:
    return ops.start(registry, parse_rollout(spec), CANDIDATE, env="dev", actor="ann").id


def steps(registry: Registry, rollout_id: int) -> list[str]:
    return [e.message for e in registry.rollout_events(rollout_id) if e.kind == "rollout.step"]


def weight(registry: Registry) -> float:
    return registry.get_traffic("dev").canary_weight


def test_only_the_lease_holder_acts_and_a_standby_writes_nothing(
    registry: Registry, clock: Clock, stats: HookedStats, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a canary and two controllers
    rollout_id = start(registry, CANARY)
    a, b = (controller(registry, clock, stats, h) for h in ("a", "b"))
    # When a makes the first pass, it leads and sets the first weight
    assert [s.weight for s in a.run_once()] == [20.0]
    lease = registry.get_lease(LEASE)
    assert lease is not None and (lease.holder, lease.token) == ("a", 1)
    # Then b, a standby, does nothing, pass after pass, and says so once
    before = (registry.get_rollout(rollout_id), registry.events(limit=1)[0].id)
    with caplog.at_level(logging.INFO, logger="llmship.rollout.controller"):
        for _ in range(3):
            clock.t += 1
            assert b.run_once() == []
            assert a.lease is not None
            a.claim()  # a renews, as its thread does
    assert b.lease is None
    assert (registry.get_rollout(rollout_id), registry.events(limit=1)[0].id) == before
    standby = [r.message for r in caplog.records if "standby" in r.message]
    assert standby == ["standby: a leads (lease controller/dev, token 1)"]


def test_a_standby_takes_over_an_expired_lease_at_the_same_step(
    registry: Registry, clock: Clock, stats: HookedStats
) -> None:
    # Given a canary that a leads to 20% and into its 10 s pause
    rollout_id = start(registry, CANARY)
    a, b = (controller(registry, clock, stats, h) for h in ("a", "b"))
    a.run_once()
    clock.t += 1
    a.run_once()
    assert registry.get_rollout(rollout_id).step_index == 1
    # When a dies (no more passes or renewals) and its 3 s lease runs out
    clock.t += 2.9
    assert b.run_once() == []  # not yet expired
    clock.t += 0.1
    [state] = b.run_once()
    # Then b leads with the next token, from the same step with the same weight
    lease = registry.get_lease(LEASE)
    assert lease is not None and (lease.holder, lease.token) == ("b", 2)
    assert (state.step_index, state.weight, weight(registry)) == (1, 20.0, 20.0)
    # and the pause that started under a ends on time under b, each step once
    for _ in range(20):
        clock.t += 1
        b.run_once()
    assert registry.get_rollout(rollout_id).phase == "Healthy"
    assert len(steps(registry, rollout_id)) == len(set(steps(registry, rollout_id))) == 5


def test_a_released_lease_is_taken_on_the_next_pass(
    registry: Registry, clock: Clock, stats: HookedStats
) -> None:
    rollout_id = start(registry, CANARY)
    a, b = (controller(registry, clock, stats, h) for h in ("a", "b"))
    a.run_once()
    # When a stops cleanly, b leads on its next pass, with no wait for the expiry
    a.release()
    assert a.lease is None
    [state] = b.run_once()
    assert b.lease is not None and b.lease.token == 2
    assert state.weight == 20.0
    assert registry.get_rollout(rollout_id).step_index == 1


def test_an_old_leader_that_wakes_after_a_takeover_writes_nothing(
    registry: Registry, clock: Clock, stats: HookedStats, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a canary with a background analysis that a leads
    rollout_id = start(registry, ANALYSED)
    a, b = (controller(registry, clock, stats, h) for h in ("a", "b"))
    a.run_once()
    clock.t += 1
    a.run_once()
    assert registry.list_measurements(rollout_id) == []  # the first one is due at 2 s
    # When a stalls in the middle of its next pass, measuring (a GC pause, SIGSTOP),
    # long enough for its lease to expire and for b to take over and make a pass
    taken_over: list[RolloutState] = []

    def stall() -> None:
        clock.t += 5
        taken_over.extend(b.run_once())

    stats.hook = stall
    clock.t += 1
    with caplog.at_level(logging.INFO, logger="llmship.rollout.controller"):
        assert a.run_once() == []
        # Then a's measurement is refused (fenced), a stands by, and says so once
        assert a.lease is None
        clock.t += 1
        b.claim()
        assert a.run_once() == []
    assert [s.rollout_id for s in taken_over] == [rollout_id]
    lease = registry.get_lease(LEASE)
    assert lease is not None and (lease.holder, lease.token) == ("b", 2)
    measured = registry.list_measurements(rollout_id)
    assert len(measured) == 1  # b's; a's was refused in its transaction
    lost = [r.message for r in caplog.records if "lost the lease" in r.message]
    assert len(lost) == 1, lost
    assert "passed to b (token 2)" in lost[0]
    assert [r.message for r in caplog.records if "standby" in r.message] == [
        "standby: b leads (lease controller/dev, token 2)"
    ]


def test_the_renewal_thread_keeps_the_lease_through_a_long_pass(tmp_path: Path) -> None:
    """Real time: a pass that takes 4 lease durations does not lose the lease."""
    with Registry.open(f"sqlite:///{tmp_path / 'registry.db'}") as registry:
        passes = threading.Event()

        class Slow(Controller):
            def _pass(self) -> list[RolloutState]:
                passes.set()
                time.sleep(1.2)
                return []

        stop = threading.Event()
        slow = Slow(registry, env="dev", holder="slow", lease_duration=0.3)
        other = Controller(registry, env="dev", holder="other", lease_duration=0.3)
        runner = threading.Thread(target=slow.run, args=(0.2, stop))
        runner.start()
        try:
            assert passes.wait(timeout=30)
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                assert other.claim() is None, "the lease was lost during a long pass"
                time.sleep(0.05)
        finally:
            stop.set()
            runner.join(timeout=30)
        # a clean stop released it: the other leads at once
        lease = other.claim()
        assert lease is not None and lease.token == 2


# -- `llmship rollout status` shows the leader --------------------------------------------


def test_status_shows_the_leader_or_how_to_start_one(
    cli_home: Path, run: Run, registry: Registry, clock: Clock
) -> None:
    start(registry, CANARY)
    # no controller yet: the rollout does not progress, and status says what to run
    data = json.loads(run("rollout", "status", "--format", "json").output)
    assert data["leader"]["holder"] is None
    assert "llmship controller --env dev" in data["leader"]["message"]
    table = run("rollout", "status").output
    assert "no controller holds the lease controller/dev" in table
    assert "does not progress" in table
    # a controller holding the lease (the registry's clock is now)
    clock.t = time.time()
    registry.acquire_lease(LEASE, "host-a:4242", duration_s=60)
    data = json.loads(run("rollout", "status", "--format", "json").output)
    leader = data["leader"]
    assert (leader["holder"], leader["token"]) == ("host-a:4242", 1)
    assert 0 <= leader["renewed_s_ago"] < 30
    assert "host-a:4242 leads (token 1, renewed" in run("rollout", "status").output
