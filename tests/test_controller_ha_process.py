"""Several `llmship controller` processes on one SQLite registry during a canary: the
leader is killed (SIGKILL), paused (SIGSTOP) and stopped (SIGTERM) in turn; each time
another leads within two intervals and the canary goes on from where it was, every
step applied once; a paused leader that wakes up writes nothing and stands by.

No gateway or model server is needed: the canary has no analysis, and the
candidate's readiness is an endpoint recorded in the registry."""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from _procs import LlmshipProcess
from _registry import make_spec
from llmship.registry import Registry
from llmship.registry.records import Lease
from llmship.rollout import ops, parse_rollout

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ENV = "dev"
LEASE = f"controller/{ENV}"
INTERVAL = 1.0
BOUND = 2 * INTERVAL
"""The promise: another controller leads within two intervals."""
WEIGHTS = [10, 20, 30, 40, 50, 60, 70, 80, 90]
STEPS: list[dict[str, Any]] = [
    step for weight in WEIGHTS for step in ({"setWeight": weight}, {"pause": {"duration": "4s"}})
]
STEPS.append({"setWeight": 100})
CANARY = {"name": "ha-canary", "strategy": {"canary": {"steps": STEPS}}}
PROC_ENV = {"LLMSHIP_ENDPOINT_MAX_AGE": "3600", "LLMSHIP_LOG_LEVEL": "INFO"}


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


class Controllers:
    """`llmship controller` processes of env dev on the registry in ``workdir``."""

    def __init__(self, workdir: Path, registry: Registry) -> None:
        self.workdir = workdir
        self.registry = registry
        self.procs: list[LlmshipProcess] = []

    def start(self) -> LlmshipProcess:
        args = ["controller", "--env", ENV, "--interval", f"{INTERVAL:g}s"]
        proc = LlmshipProcess(
            [*args, "--gateway-url", "http://127.0.0.1:9"], self.workdir, PROC_ENV
        )
        self.procs.append(proc)
        return proc

    def lease(self) -> Lease:
        lease = self.registry.get_lease(LEASE)
        assert lease is not None
        return lease

    def leader(self) -> LlmshipProcess | None:
        lease = self.registry.get_lease(LEASE)
        if lease is None or not lease.live(datetime.now(timezone.utc)):
            return None
        pid = int(lease.holder.rsplit(":", 1)[1])
        return next((p for p in self.procs if p.proc.pid == pid), None)

    def wait_leader(self, proc: LlmshipProcess, timeout: float = 60) -> None:
        def leads() -> bool:
            self.check_alive()
            return self.leader() is proc

        wait_until(leads, f"pid {proc.proc.pid} to lead", timeout)

    def wait_log(self, proc: LlmshipProcess, text: str, timeout: float = 60) -> None:
        wait_until(lambda: text in proc.output(), f"{text!r} in the log of pid {proc.proc.pid}")

    def takeover(self, old: LlmshipProcess, since: float) -> tuple[LlmshipProcess, float]:
        """Wait for a controller other than ``old`` to hold the lease; it, and the
        seconds since ``since``."""
        token = self.lease().token

        def taken() -> bool:
            lease = self.registry.get_lease(LEASE)
            return lease is not None and lease.token > token

        wait_until(taken, "another controller to take the lease", timeout=30)
        took = time.monotonic() - since
        new = self.leader()
        assert new is not None and new is not old
        return new, took

    def check_alive(self) -> None:
        for proc in self.procs:
            code = proc.proc.poll()
            if code is not None and code != -signal.SIGKILL:
                raise AssertionError(f"a controller exited with {code}:\n{proc.output()}")

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.proc.poll() is None:
                proc.proc.send_signal(signal.SIGCONT)
            proc.stop()


def tmp_db(registry: Registry) -> str:
    """The SQLite file of ``registry``."""
    return registry.url.removeprefix("sqlite:///")


def pause_outside_a_write(proc: Any, database: str) -> float:
    """SIGSTOP ``proc`` at a moment it holds no SQLite write lock (a process frozen
    inside its few-millisecond write transaction holds the whole database until it
    resumes: SQLite's nature, see docs/controller.md); when it was paused."""
    for _ in range(50):
        paused = time.monotonic()
        proc.proc.send_signal(signal.SIGSTOP)
        probe = sqlite3.connect(database, timeout=0.05, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return paused
        except sqlite3.OperationalError:  # frozen mid-write: let it finish, try again
            proc.proc.send_signal(signal.SIGCONT)
            time.sleep(0.01)
        finally:
            probe.close()
    raise AssertionError("the controller held the database's write lock at every try")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Registry, Controllers]]:
    home = tmp_path / ".llmship"
    registry = Registry.open(f"sqlite:///{home / 'registry.db'}", home=home)
    for version in ("1.0.0", "1.1.0"):
        registry.register(make_spec(version=version), actor="test")
    registry.set_alias(ENV, "production", "chat@1.0.0", actor="test", reason="launch")
    registry.register_endpoint(ENV, "chat@1.1.0", "http://127.0.0.1:9", pid=None)
    controllers = Controllers(tmp_path, registry)
    try:
        yield registry, controllers
    finally:
        controllers.stop_all()
        registry.close()


def test_controllers_take_over_within_two_intervals_and_apply_each_step_once(
    world: tuple[Registry, Controllers],
) -> None:
    registry, ctl = world
    taken: dict[str, float] = {}
    # Given two controllers of dev: a leads, b stands by
    a = ctl.start()
    ctl.wait_leader(a)
    b = ctl.start()
    ctl.wait_log(b, "standby: ")
    # and a canary 10% -> 20% -> ... -> 90% -> 100%, 4 s a step, that a runs
    rollout = ops.start(
        registry, parse_rollout(CANARY), "chat@1.1.0", env=ENV, actor="test", reason="ha"
    )
    wait_until(lambda: registry.get_rollout(rollout.id).step_index >= 2, "the canary to go on")
    # When a is killed (SIGKILL): b leads within two intervals, at the same step
    before = registry.get_rollout(rollout.id)
    weight = registry.get_traffic(ENV).canary_weight
    killed = time.monotonic()
    a.proc.send_signal(signal.SIGKILL)
    new, taken["SIGKILL"] = ctl.takeover(a, killed)
    assert new is b
    after = registry.get_rollout(rollout.id)
    assert after.step_index >= before.step_index
    assert registry.get_traffic(ENV).canary_weight >= weight
    # a replacement starts (as systemd or Kubernetes would restart it) and stands by
    c = ctl.start()
    ctl.wait_log(c, "standby: ")
    # When b is paused (SIGSTOP) past its lease: c leads within two intervals
    paused = pause_outside_a_write(b, tmp_db(registry))
    new, taken["SIGSTOP"] = ctl.takeover(b, paused)
    assert new is c
    wait_until(lambda: time.monotonic() - paused > 3 * INTERVAL, "b to stay paused a while")
    # and b wakes up: it writes nothing, says it lost the lease, and stands by
    steps_before_wake = step_events(registry, rollout.id)
    logged = len(b.output())
    b.proc.send_signal(signal.SIGCONT)
    wait_until(lambda: "lost the lease" in b.output()[logged:], "b to notice it lost the lease")
    time.sleep(2 * INTERVAL)
    woke = b.output()[logged:]
    assert " did " not in woke and "rollout ha-canary (id" not in woke, woke
    assert ctl.leader() is c
    assert step_events(registry, rollout.id)[: len(steps_before_wake)] == steps_before_wake
    # When c stops cleanly (SIGTERM): it releases the lease and b leads at once
    stopped = time.monotonic()
    c.proc.send_signal(signal.SIGTERM)
    new, taken["SIGTERM"] = ctl.takeover(c, stopped)
    assert new is b
    assert c.wait(timeout=30) == 0, c.output()
    # Then the canary ends promoted, every step applied once, the weights in order
    wait_until(lambda: registry.get_rollout(rollout.id).phase == "Healthy", "Healthy", 90)
    steps = step_events(registry, rollout.id)
    assert len(steps) == len(set(steps)) == len(STEPS), steps
    # (the promotion is saved, Healthy, before it is carried out)
    wait_until(lambda: registry.get_traffic(ENV).canary is None, "the canary to end")
    production = registry.get_alias(ENV, "production")
    assert production is not None and production.ref == "chat@1.1.0"
    assert weights_set(registry) == [*map(float, WEIGHTS), 100.0]
    assert [m.to_ref for m in registry.alias_history(ENV, "production")] == [
        "chat@1.0.0",
        "chat@1.1.0",
    ]  # promoted once
    print(
        "takeover after "
        + ", ".join(f"{how}: {seconds:.2f} s" for how, seconds in taken.items())
        + f" (interval {INTERVAL:g} s, bound {BOUND:g} s)"
    )
    assert taken["SIGKILL"] < BOUND and taken["SIGSTOP"] < BOUND, taken
    assert taken["SIGTERM"] < INTERVAL, taken


def step_events(registry: Registry, rollout_id: int) -> list[str]:
    return [e.message for e in registry.rollout_events(rollout_id) if e.kind == "rollout.step"]


def weights_set(registry: Registry) -> list[float]:
    """The canary weights the `traffic.changed` events set, in order, repeats merged."""
    out: list[float] = []
    for e in reversed(registry.events(limit=1000, kind="traffic.changed")):
        canary = e.data.get("canary")
        weight = float(canary["weight"]) if canary else 0.0
        if not out or out[-1] != weight:
            out.append(weight)
    return out
