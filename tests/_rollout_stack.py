"""A real rollout stack for tests: a gateway, `llmship controller`, a real SmolLM2 model
server (stable) and candidates served by `llmship serve` with the `openai` backend,
pointed at tiny local upstreams the test controls (good, or answering 500); and client
load through the gateway."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from _procs import FakeUpstream, GatewayProcess, LlmshipProcess, ModelServer
from llmship.registry import Registry, RolloutRecord
from llmship.release.bundled import bundled_spec
from llmship.release.spec import ReleaseSpec, parse_spec

TOKEN = "rollout-process-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
ENV = "dev"
STABLE, GOOD, BAD = "smollm2-chat@1.0.0", "smollm2-chat@2.0.0", "smollm2-chat@3.0.0"
NEVER = "smollm2-chat@4.0.0"
"""Registered, but no model server ever serves it."""
PROC_ENV = {"LLMSHIP_ADMIN_TOKEN": TOKEN, "LLMSHIP_ENDPOINT_MAX_AGE": "3600"}


def real_release(version: str) -> ReleaseSpec:
    """The bundled SmolLM2 release with test-friendly settings (1 thread, small context)."""
    data = bundled_spec().to_dict()
    data["version"] = version
    data["runtime"] |= {"n_threads": 1, "n_ctx": 512}
    data["params"] |= {"temperature": 0.0, "max_tokens": 4}
    return parse_spec(data)


def fake_release(version: str, upstream: FakeUpstream) -> ReleaseSpec:
    return parse_spec(
        {
            "name": "smollm2-chat",
            "version": version,
            "backend": "openai",
            "model": {"base_url": upstream.url, "id": "fake"},
            "runtime": {"max_concurrency": 8, "timeout_s": 10},
        }
    )


# -- client load ---------------------------------------------------------------------------


@dataclass
class Load:
    """Clients sending `/predict` to the gateway in a loop, each answer recorded."""

    url: str
    clients: int = 3
    headers: dict[str, str] = field(default_factory=dict)
    answers: list[tuple[float, int, str]] = field(default_factory=list)
    """(monotonic time sent, status, x-llmship-version) of every request."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _client(self) -> None:
        with httpx.Client(timeout=60, headers=self.headers) as http:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    r = http.post(f"{self.url}/predict", json={"prompt": "Hi", "max_new_tokens": 2})
                    answer = (r.status_code, r.headers.get("x-llmship-version", ""))
                except httpx.HTTPError as exc:
                    answer = (0, type(exc).__name__)
                self.answers.append((sent, *answer))

    def __enter__(self) -> Load:
        self._threads = [threading.Thread(target=self._client) for _ in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def errors(self) -> list[tuple[float, int, str]]:
        return [a for a in self.answers if a[1] != 200]

    def versions(self, since: float = 0.0, until: float = float("inf")) -> set[str]:
        """The versions that answered requests sent between ``since`` and ``until``."""
        return {a[2] for a in self.answers if since <= a[0] < until}


# -- the stack -----------------------------------------------------------------------------


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@dataclass
class Stack:
    workdir: Path
    registry: Registry
    gateway: GatewayProcess
    controller: LlmshipProcess
    good: FakeUpstream
    bad: FakeUpstream

    def start_controller(self) -> None:
        args = ["controller", "--env", ENV, "--interval", "200ms"]
        self.controller = LlmshipProcess(
            [*args, "--gateway-url", self.gateway.url], self.workdir, PROC_ENV
        )

    def llmship(self, *args: str) -> str:
        """Run a CLI command to its end; its output."""
        cmd = LlmshipProcess(list(args), self.workdir, PROC_ENV)
        try:
            assert cmd.wait(timeout=60) == 0, cmd.output()
        finally:
            cmd.stop()
        return cmd.output()

    def start_rollout(self, tmp_path: Path, spec: dict[str, Any], candidate: str) -> int:
        path = tmp_path / f"{spec['name']}.yaml"
        path.write_text(yaml.safe_dump(spec))
        self.llmship("rollout", "start", str(path), "--candidate", candidate, "--env", ENV)
        return self.registry.find_rollout(ENV, spec["name"]).id

    def rollout(self, rollout_id: int) -> RolloutRecord:
        return self.registry.get_rollout(rollout_id)

    def wait_phase(self, rollout_id: int, *phases: str, timeout: float = 60) -> RolloutRecord:
        def reached() -> bool:
            self.assert_controller_alive()
            return self.rollout(rollout_id).phase in phases

        wait_until(reached, f"phase {phases}", timeout)
        return self.rollout(rollout_id)

    def assert_controller_alive(self) -> None:
        if self.controller.proc.poll() is not None:
            raise AssertionError(f"the controller exited:\n{self.controller.output()}")

    def traffic(self) -> dict[str, Any]:
        r = httpx.get(f"{self.gateway.url}/api/v1/traffic", headers=ADMIN, timeout=10)
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data

    def canary_weight(self) -> float:
        canary = self.traffic().get("canary")
        return float(canary["weight"]) if canary else 0.0

    def events(self, rollout_id: int, kind: str | None = None) -> list[str]:
        return [
            e.message
            for e in self.registry.rollout_events(rollout_id)
            if kind is None or e.kind == kind
        ]

    def weights_set(self, since_event: int) -> list[float]:
        """The canary weights the `traffic.changed` events after ``since_event`` set, in
        order; a change that keeps the weight (a promotion adding the preview) is not one."""
        out: list[float] = []
        for e in reversed(self.registry.events(limit=1000, kind="traffic.changed")):
            canary = e.data.get("canary")
            weight = float(canary["weight"]) if canary else 0.0
            if e.id > since_event and (not out or out[-1] != weight):
                out.append(weight)
        return out

    def last_event_id(self) -> int:
        events = self.registry.events(limit=1)
        return events[0].id if events else 0

    def production(self) -> str | None:
        target = self.registry.get_alias(ENV, "production")
        return target.ref if target is not None else None

    def wait_production(self, ref: str) -> None:
        """Until the ``production`` alias is on ``ref``: a rollout's promotion is saved
        (Healthy) before the controller carries it out."""
        wait_until(lambda: self.production() == ref, f"production on {ref}")

    def reset_production(self) -> None:
        """Back to the starting point: production on STABLE, the gateway following."""
        if self.production() != STABLE:
            self.registry.set_alias(ENV, "production", STABLE, actor="test", reason="reset")
        wait_until(lambda: self.traffic()["stable"] == STABLE, "stable back on 1.0.0")
        self.wait_gateway_synced()

    def wait_gateway_stable(self, ref: str) -> None:
        """Until the gateway routes stable traffic to ``ref``."""
        wait_until(
            lambda: httpx.get(f"{self.gateway.url}/readyz").json().get("stable") == ref,
            f"the gateway to route stable traffic to {ref}",
        )

    def wait_gateway_synced(self) -> None:
        """Until the gateway routes by the registry's latest policy (it polls it)."""

        def synced() -> bool:
            policy = self.traffic()
            seen = httpx.get(f"{self.gateway.url}/readyz", timeout=10).json()
            return (seen.get("stable"), seen.get("revision")) == (
                policy["stable"],
                policy["revision"],
            )

        wait_until(synced, "the gateway to follow the registry's policy")


@contextmanager
def started_stack(workdir: Path) -> Iterator[Stack]:
    """A gateway, a controller, and model servers for STABLE (real), GOOD and BAD (fake
    upstreams) of env dev, all started at once in ``workdir``; stopped on exit."""
    home = workdir / ".llmship"
    registry = Registry.open(f"sqlite:///{home / 'registry.db'}", home=home)
    good, bad = FakeUpstream(), FakeUpstream()
    bad.failing = True
    registry.register(real_release("1.0.0"), actor="test")
    registry.register(fake_release("2.0.0", good), actor="test")
    registry.register(fake_release("3.0.0", bad), actor="test")
    registry.register(fake_release("4.0.0", good), actor="test")
    registry.set_alias(ENV, "production", STABLE, actor="test", reason="first")
    servers = [
        ModelServer(workdir, "--release", ref, "--env", ENV, env=PROC_ENV)
        for ref in (STABLE, GOOD, BAD)
    ]
    gateway = GatewayProcess(workdir, env=PROC_ENV)
    stack = Stack(workdir, registry, gateway, gateway, good, bad)
    stack.start_controller()
    try:
        for server in servers:
            server.wait_ready(timeout=120)
        r = httpx.post(
            f"{servers[0].url}/predict", json={"prompt": "Hi", "max_new_tokens": 2}, timeout=120
        )
        assert r.status_code == 200, r.text  # the model's first answer is slow
        gateway.wait_ready()
        yield stack
    finally:
        for proc in (stack.controller, gateway, *servers):
            proc.stop()
        registry.close()
        good.close()
        bad.close()


@contextmanager
def fresh_stack(stack: Stack) -> Iterator[Stack]:
    """The stack back at its starting point (production on STABLE, GOOD answering ok)
    for one test; a rollout the test left active is aborted after it."""
    stack.reset_production()
    stack.good.failing = False
    stack.good.text = "ok"
    yield stack
    active = stack.registry.active_rollout(ENV)
    if active is not None:  # a failed test must not hold the environment
        stack.registry.add_rollout_intent(active.id, "abort", actor="test", reason="cleanup")
        stack.wait_phase(active.id, "Aborted", "Healthy")
    stack.reset_production()


def error_rate_template(**metric: Any) -> dict[str, Any]:
    return {
        "name": "errors",
        "metrics": [
            {
                "name": "error-rate",
                "interval": "1s",
                "initialDelay": "1s",
                "inconclusiveLimit": 30,
                "successCondition": "result <= 0.05",
                "provider": {"builtin": {"metric": "error_rate", "window": "5s"}},
                **metric,
            }
        ],
    }
