"""Helpers for tests that use a real registry: release specs, a registry with chat
releases, an analysis template, a ticking clock, threads."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from llmship.registry import Registry
from llmship.release.spec import ReleaseSpec, parse_spec

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def spec_data(name: str = "chat", version: str = "1.0.0", **changes: Any) -> dict[str, Any]:
    """A release spec, as a dict: an ``openai`` backend no one listens to."""
    data: dict[str, Any] = {
        "name": name,
        "version": version,
        "backend": "openai",
        "model": {"base_url": "http://127.0.0.1:9/v1", "id": "tiny"},
    }
    data.update(changes)
    return data


def make_spec(name: str = "chat", version: str = "1.0.0", **changes: Any) -> ReleaseSpec:
    """:func:`spec_data`, parsed."""
    return parse_spec(spec_data(name, version, **changes))


def register_chat(
    registry: Registry, versions: Sequence[str] = ("1.0.0", "1.1.0"), *, env: str = "dev"
) -> None:
    """``chat@VERSION`` (:func:`make_spec`) registered by ``ci`` for each of ``versions``;
    the first is the production release of ``env``."""
    for version in versions:
        registry.register(make_spec(version=version), actor="ci")
    registry.set_alias(env, "production", f"chat@{versions[0]}", actor="ci", reason="launch")


@contextmanager
def chat_registry(
    path: Path,
    versions: Sequence[str] = ("1.0.0", "1.1.0"),
    *,
    env: str = "dev",
    clock: Callable[[], datetime] | None = None,
) -> Iterator[Registry]:
    """A SQLite registry at ``path`` with :func:`register_chat`'s releases, closed after."""
    registry = Registry.open(f"sqlite:///{path}", clock=clock)
    try:
        register_chat(registry, versions, env=env)
        yield registry
    finally:
        registry.close()


def errors_template(failure_limit: int = 1) -> dict[str, Any]:
    """The analysis template ``errors``: ``error-rate`` (builtin ``error_rate`` over 30 s)
    at most 5 %, measured 3 times 5 s apart; it fails once more than ``failure_limit``
    measurements do."""
    metric = {
        "name": "error-rate",
        "interval": "5s",
        "count": 3,
        "failureLimit": failure_limit,
        "successCondition": "result <= 0.05",
        "provider": {"builtin": {"metric": "error_rate", "window": "30s"}},
    }
    return {"name": "errors", "metrics": [metric]}


class StillClock:
    """A registry clock that stands still until moved, from :data:`T0`."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class ControllerClock:
    """One time for a controller and its registry: seconds (``time.time``'s kind) when
    called, datetimes from :meth:`dt`; from :data:`T0`, moved by setting ``t``."""

    def __init__(self) -> None:
        self.t = T0.timestamp()

    def __call__(self) -> float:
        return self.t

    def dt(self) -> datetime:
        return datetime.fromtimestamp(self.t, timezone.utc)


class TickClock:
    """A clock that moves one second per reading, from :data:`T0` (thread-safe)."""

    def __init__(self) -> None:
        self.now = T0
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            self.now += timedelta(seconds=1)
            return self.now


def run_threads(count: int, target: Callable[[int], None], *, timeout: float = 90) -> None:
    """``target(0)`` ... ``target(count - 1)`` in threads released at once; the first
    error any of them raised is raised here, and a thread still running after
    ``timeout`` seconds fails the test."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def _wrapped(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            target(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=_wrapped, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not [t for t in threads if t.is_alive()], "a thread hung"
    if errors:
        raise errors[0]
