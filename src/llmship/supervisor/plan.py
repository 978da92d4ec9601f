"""What the supervisor should do next: a pure function of what is needed and what runs."""

from __future__ import annotations

from dataclasses import dataclass, field

BACKOFF_START = 1.0
BACKOFF_MAX = 30.0
STOP_GRACE = 5.0
"""Seconds a release must stay unneeded before its server is stopped (no flapping)."""
HEALTHY_AFTER = 30.0
"""Seconds of running after which a child's crash backoff starts over."""
SERVE_PREFIX = "serve:"
"""Model servers' child names: ``serve:NAME@VERSION#N``, N counting from 1."""


@dataclass
class ChildState:
    """What the supervisor knows about one child process."""

    name: str
    running: bool = False
    started_at: float | None = None
    exited_at: float | None = None
    failures: int = 0
    unneeded_since: float | None = None


@dataclass(frozen=True)
class Plan:
    """Children to start and to stop, by name."""

    start: list[str] = field(default_factory=list)
    stop: list[str] = field(default_factory=list)


def server_names(ref: str, replicas: int) -> list[str]:
    """The child names of the ``replicas`` model servers of ``ref``."""
    return [f"{SERVE_PREFIX}{ref}#{n}" for n in range(1, replicas + 1)]


def server_ref(name: str) -> tuple[str, int]:
    """The release and the replica number of the model server child ``name``."""
    ref, _, number = name.removeprefix(SERVE_PREFIX).rpartition("#")
    return ref, int(number)


def server_threads(
    setting: int | None, spec_threads: int | None, replicas: int, share: int
) -> int | None:
    """llama.cpp threads for each of a release's ``replicas`` model servers: the
    ``n_threads`` setting, else the release's ``runtime.n_threads`` (None: the server
    reads it from the spec), else one server's default ``share`` (half the cores)
    divided among the replicas, at least one each. None leaves the choice to the server.
    """
    if setting is not None:
        return setting
    if spec_threads is not None or replicas <= 1:
        return None
    return max(1, share // replicas)


def backoff(failures: int) -> float:
    """Delay before restarting a child that crashed ``failures`` times in a row."""
    if failures <= 0:
        return 0.0
    return float(min(BACKOFF_START * 2 ** (failures - 1), BACKOFF_MAX))


def plan(
    needed: set[str], children: dict[str, ChildState], now: float, *, settled: bool = True
) -> Plan:
    """Start what is needed and not running (after its crash backoff); stop what has
    been unneeded for ``STOP_GRACE`` seconds. Updates ``unneeded_since`` marks.

    While not ``settled`` (a release that takes traffic has no ready server yet), nothing
    is stopped and the grace period does not start: the gateway goes on sending requests
    to the releases it routed to before, until their successors are ready (make before
    break)."""
    start, stop = [], []
    for name in sorted(needed):
        child = children.get(name)
        if child is None:
            start.append(name)
            continue
        child.unneeded_since = None
        if child.running:
            continue
        waited = now - (child.exited_at if child.exited_at is not None else now)
        if waited >= backoff(child.failures):
            start.append(name)
    for name, child in sorted(children.items()):
        if name in needed or not child.running:
            continue
        if not settled:
            child.unneeded_since = None
            continue
        if child.unneeded_since is None:
            child.unneeded_since = now
        if now - child.unneeded_since >= STOP_GRACE:
            stop.append(name)
    return Plan(start=start, stop=stop)


def record_exit(child: ChildState, now: float, *, expected: bool) -> None:
    """Note that a child exited; an unexpected exit counts as a failure unless the
    child had been healthy for ``HEALTHY_AFTER`` seconds."""
    ran_for = now - child.started_at if child.started_at is not None else 0.0
    child.running = False
    child.exited_at = now
    if expected:
        child.failures = 0
    elif ran_for >= HEALTHY_AFTER:
        child.failures = 1
    else:
        child.failures += 1


def record_start(child: ChildState, now: float) -> None:
    child.running = True
    child.started_at = now
    child.unneeded_since = None
