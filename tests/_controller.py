"""The rollout controller in process for tests: a real registry (SQLite) with
chat@1.0.0 in production and chat@1.1.0 registered, fake gateway statistics
(``InMemoryStats``), an injected clock (``World``), and the specs several tests run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _registry import ControllerClock, errors_template
from _stats import InMemoryStats
from llmship.analysis import VersionStats
from llmship.registry import Registry, RolloutRecord
from llmship.rollout import ops, parse_rollout
from llmship.rollout.controller import Controller
from llmship.routing.policy import TrafficPolicy

T0 = 1_714_564_800.0  # 2024-05-01 12:00 UTC
STABLE = "chat@1.0.0"
CANDIDATE = "chat@1.1.0"
ROOT = Path(__file__).resolve().parent.parent

ERRORS = errors_template(failure_limit=1)
CANARY = {
    "name": "chat-canary",
    "strategy": {
        "canary": {
            "steps": [
                {"setWeight": 20},
                {"pause": {"duration": "10s"}},
                {"analysis": {"templates": [{"templateName": "errors"}]}},
                {"setWeight": 50},
                {"pause": {"duration": "10s"}},
                {"setWeight": 100},
            ],
            "analysis": {"templates": [{"templateName": "errors"}]},
        }
    },
    "analysisTemplates": [ERRORS],
}


def healthy(n: int = 100) -> VersionStats:
    return VersionStats(requests=n, errors=0, error_rate=0.0, latencies=[0.2] * n)


def erroring(n: int = 100) -> VersionStats:
    return VersionStats(requests=n, errors=n // 2, error_rate=0.5, latencies=[0.2] * n)


Clock = ControllerClock


@dataclass
class World:
    """A registry with chat@1.0.0 in production and chat@1.1.0 registered, fake stats,
    a clock, and a controller of env ``dev``."""

    registry: Registry
    clock: Clock
    stats: InMemoryStats
    env: str = "dev"
    make: Callable[..., Controller] | None = None
    controller: Controller = field(init=False)
    trace: list[tuple[float, float, str | None]] = field(default_factory=list)
    """(seconds since T0, canary weight, production) after each pass."""

    def __post_init__(self) -> None:
        self.controller = self.new_controller()

    def new_controller(self) -> Controller:
        return Controller(
            self.registry, env=self.env, stats=self.stats, clock=self.clock, endpoint_max_age=None
        )

    # -- given --------------------------------------------------------------------------

    def start(self, spec: dict[str, Any] | str, candidate: str = CANDIDATE) -> RolloutRecord:
        rollout = parse_rollout(spec) if isinstance(spec, dict) else parse_rollout_file(ROOT / spec)
        return ops.start(self.registry, rollout, candidate, env=self.env, actor="ann")

    def ready(self, ref: str = CANDIDATE) -> None:
        self.registry.register_endpoint(self.env, ref, "http://127.0.0.1:8101", pid=1)

    def candidate_stats(self, stats: VersionStats) -> None:
        self.stats.set(self.env, CANDIDATE, stats)

    def stable_stats(self, stats: VersionStats) -> None:
        self.stats.set(self.env, STABLE, stats)

    # -- when ---------------------------------------------------------------------------

    def run(self, seconds: int, *, until: Callable[[], bool] | None = None) -> None:
        """One pass a second for ``seconds`` seconds (or until ``until()``)."""
        for _ in range(seconds):
            self.clock.t += 1
            self.controller.run_once()
            policy = self.policy()
            self.trace.append((self.clock.t - T0, policy.canary_weight, policy.stable))
            if until is not None and until():
                return

    def ask(self, kind: str, reason: str = "") -> None:
        ops.request(self.registry, self.env, None, kind, actor="ann", reason=reason)

    # -- then ---------------------------------------------------------------------------

    def rollout(self) -> RolloutRecord:
        return self.registry.find_rollout(self.env)

    def phase(self) -> str:
        return self.rollout().phase

    def policy(self) -> TrafficPolicy:
        return self.registry.get_traffic(self.env)

    def production(self) -> str | None:
        record = self.registry.get_alias(self.env, "production")
        return record.ref if record else None

    def weights_seen(self) -> list[float]:
        """The canary weights in the order they were seen, without repeats."""
        seen: list[float] = []
        for _, weight, _ in self.trace:
            if not seen or seen[-1] != weight:
                seen.append(weight)
        return seen

    def messages(self, kind: str = "rollout.step", rollout_id: int | None = None) -> list[str]:
        record = self.registry.get_rollout(rollout_id) if rollout_id else self.rollout()
        prefix = f"rollout {record.name} (id {record.id}): "
        return [
            e.message.removeprefix(prefix)
            for e in self.registry.rollout_events(record.id)
            if e.kind == kind
        ]


def parse_rollout_file(path: Path) -> Any:
    from llmship.rollout import load_rollout

    return load_rollout(path)


SHORT = {
    "name": "short",
    "strategy": {
        "canary": {
            "steps": [
                {"setWeight": 20},
                {"pause": {"duration": "2s"}},
                {"setWeight": 50},
                {"pause": {"duration": "2s"}},
                {"setWeight": 100},
            ]
        }
    },
}
