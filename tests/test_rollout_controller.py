"""The rollout controller against a real registry (SQLite) with fake gateway statistics
(``InMemoryStats``) and an injected clock, Given / When / Then.

Each scenario runs the controller pass by pass, one second apart, and watches the
traffic policy the gateway would follow.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from _registry import ControllerClock, chat_registry, errors_template
from _stats import InMemoryStats
from llmship.analysis import MeasureContext, Providers, VersionStats
from llmship.analysis.models import Metric
from llmship.analysis.phases import Measurement, Phase
from llmship.analysis.providers import MeasurementError, run_measurement
from llmship.gateway.alerts import abort_requests, parse_webhook
from llmship.registry import Registry, RolloutRecord
from llmship.rollout import RolloutPhase, ops, parse_rollout
from llmship.rollout.controller import Controller
from llmship.rollout.measurements import first_measurement_at
from llmship.rollout.records import state_of
from llmship.rollout.stats_http import GatewayStats, gateway_url
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


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[tuple[Registry, Clock]]:
    clock = Clock()
    with chat_registry(tmp_path / "registry.db", clock=clock.dt) as reg:
        yield reg, clock


@pytest.fixture
def world(registry: tuple[Registry, Clock]) -> World:
    reg, clock = registry
    return World(reg, clock, InMemoryStats())


# -- canary ------------------------------------------------------------------------------


def test_canary_20_50_100_is_promoted_and_the_alias_history_says_why(world: World) -> None:
    # Given a good candidate with a ready model server
    world.start(CANARY)
    world.ready()
    world.candidate_stats(healthy())
    # When the controller runs
    world.run(60, until=lambda: world.phase() == "Healthy")
    # Then the weights went 20 -> 50 -> 100 and production moved to the candidate
    assert world.phase() == "Healthy"
    assert world.weights_seen() == [20.0, 50.0, 0.0]
    assert world.trace[-1][2] == CANDIDATE
    assert world.production() == CANDIDATE
    policy = world.policy()
    assert (policy.canary, policy.preview, policy.experiment) == (None, None, None)
    move = world.registry.alias_history("dev", "production")[-1]
    assert (move.from_ref, move.to_ref, move.actor) == (STABLE, CANDIDATE, "controller")
    assert "rollout chat-canary" in move.reason
    assert world.messages() == [
        "step 1/6: setWeight 20: chat@1.1.0 gets 20% of the requests",
        "step 2/6: pause 10s",
        "step 3/6: analysis errors",
        "step 4/6: setWeight 50: chat@1.1.0 gets 50% of the requests",
        "step 5/6: pause 10s",
        "step 6/6: setWeight 100: chat@1.1.0 gets 100% of the requests",
    ]
    # measurements: 3 in the background run, 3 in the analysis step, one interval apart
    measurements = world.registry.list_measurements(world.rollout().id)
    assert [(m.run, m.phase) for m in measurements] == [
        ("background.1", "Successful"),
        ("background.1", "Successful"),
        ("background.1", "Successful"),
        ("step3.2", "Successful"),
        ("step3.2", "Successful"),
        ("step3.2", "Successful"),
    ]
    assert [m.at.timestamp() - T0 for m in measurements] == [6, 11, 16, 16, 21, 26]
    assert world.rollout().active is False


def test_failing_analysis_aborts_and_puts_all_traffic_on_stable_at_once(world: World) -> None:
    world.start(CANARY)
    world.ready()
    world.candidate_stats(erroring())
    revision = world.policy().revision
    world.run(30, until=lambda: world.phase() == "Aborted")
    record = world.rollout()
    assert record.phase == "Aborted"
    assert "background analysis run background.1 ended Failed" in (record.abort_reason or "")
    assert world.weights_seen() == [20.0, 0.0]
    # two failures are needed (failureLimit 1): at 5s and 10s after setWeight 20
    assert world.trace[-1][0] == 11
    policy = world.policy()
    assert policy.canary is None and policy.canary_weight == 0.0
    assert policy.revision == revision + 2  # setWeight 20, then one write back to stable
    assert world.production() == STABLE
    traffic = world.registry.events(kind="traffic.changed")[0]
    assert traffic.actor == "controller"
    assert "aborted" in traffic.message


def test_no_data_pauses_then_resume_continues(world: World) -> None:
    world.start(CANARY)
    world.ready()  # no statistics at all: no data
    world.run(
        10,
        until=lambda: (
            world.phase() == "Paused"
            and world.rollout().pause_reason is not None
            and "Inconclusive" in (world.rollout().pause_reason or "")
        ),
    )
    record = world.rollout()
    assert "InconclusiveAnalysis" in (record.pause_reason or "")
    world.run(20)
    assert world.rollout().step_index == 1  # stays paused for a person
    assert world.policy().canary_weight == 20.0
    # When a person resumes with data now flowing
    world.candidate_stats(healthy())
    world.ask("resume", "traffic is flowing now")
    world.run(60, until=lambda: world.phase() == "Healthy")
    assert world.phase() == "Healthy"
    assert "resumed by ann: traffic is flowing now" in world.messages("rollout.resumed")


def test_no_data_pauses_then_abort(world: World) -> None:
    world.start(CANARY)
    world.ready()
    world.run(
        10,
        until=lambda: (
            world.phase() == "Paused" and "Inconclusive" in (world.rollout().pause_reason or "")
        ),
    )
    world.ask("abort", "no traffic to judge")
    world.run(1)
    assert world.phase() == "Aborted"
    assert world.rollout().abort_reason == "no traffic to judge"
    assert world.policy().canary is None


def test_a_candidate_that_never_becomes_ready_is_aborted_at_the_deadline(world: World) -> None:
    world.start({**CANARY, "progressDeadline": "30s"})
    world.run(40, until=lambda: world.phase() == "Aborted")
    record = world.rollout()
    assert record.phase == "Aborted"
    assert world.trace[-1][0] == 31  # blocked from the first pass at 1s
    assert "progress deadline (30s) exceeded" in (record.abort_reason or "")
    assert "chat@1.1.0 has no ready model server" in (record.abort_reason or "")
    assert world.weights_seen() == [0.0]  # never any traffic


def test_a_person_pauses_and_the_weights_stay(world: World) -> None:
    world.start(CANARY)
    world.ready()
    world.candidate_stats(healthy())
    world.run(2)
    world.ask("pause", "looking at the dashboards")
    world.run(100)
    record = world.rollout()
    assert record.phase == "Paused"
    assert record.step_index == 1  # the 10s pause step's timer stopped with the pause
    assert world.policy().canary_weight == 20.0
    world.ask("promote", "skip the pause")
    world.run(1)
    assert (world.phase(), world.rollout().step_index) == ("Progressing", 2)
    world.ask("promote", "skip the analysis")
    world.run(1)
    assert world.policy().canary_weight == 50.0


def test_promote_full_and_then_undo(world: World) -> None:
    world.start(CANARY)
    world.ready()
    world.run(2)
    world.ask("promoteFull", "urgent fix")
    world.run(1)
    assert world.phase() == "Healthy"
    assert world.production() == CANDIDATE
    move = world.registry.alias_history("dev", "production")[-1]
    assert (move.actor, move.reason) == ("ann", "rollout chat-canary: urgent fix")
    ops.undo(world.registry, "dev", actor="bob", reason="users complain")
    assert world.production() == STABLE
    assert world.registry.get_traffic("dev").canary is None  # no stale canary comes back


def test_retry_after_abort_runs_again(world: World) -> None:
    world.start(CANARY)
    world.ready()
    world.run(2)
    world.ask("abort")
    world.run(1)
    world.candidate_stats(healthy())
    world.ask("retry", "fixed the config")
    world.run(60, until=lambda: world.phase() == "Healthy")
    assert world.phase() == "Healthy"
    assert state_of(world.rollout()).attempt == 2


def test_an_intent_that_no_longer_applies_is_rejected(world: World) -> None:
    world.start(CANARY)
    world.ready()
    world.run(1)
    world.ask("pause")
    world.registry.add_rollout_intent(world.rollout().id, "pause", actor="bob")  # twice
    world.run(1)
    rejected = world.messages("rollout.rejected")
    assert len(rejected) == 1
    assert "pause by bob not applied: " in rejected[0]
    assert world.registry.pending_rollout_intents(world.rollout().id) == []


# -- blue-green ---------------------------------------------------------------------------

SMOKE = {
    "name": "smoke",
    "metrics": [
        {
            "name": "preview-errors",
            "initialDelay": "2s",
            "successCondition": "result <= 0.01",
            "provider": {"builtin": {"metric": "error_rate", "window": "1m"}},
        }
    ],
}
LIVE = {
    "name": "live",
    "metrics": [
        {
            "name": "error-rate",
            "interval": "5s",
            "count": 3,
            "successCondition": "result <= 0.02",
            "provider": {"builtin": {"metric": "error_rate", "window": "30s"}},
        }
    ],
}
BLUE_GREEN = {
    "name": "bg",
    "strategy": {
        "blueGreen": {
            "autoPromotionSeconds": 10,
            "prePromotionAnalysis": {"templates": [{"templateName": "smoke"}]},
            "postPromotionAnalysis": {"templates": [{"templateName": "live"}]},
        }
    },
    "analysisTemplates": [SMOKE, LIVE],
}


def test_blue_green_with_automatic_promotion(world: World) -> None:
    world.start(BLUE_GREEN)
    world.ready()
    world.candidate_stats(healthy())
    world.run(1)
    assert world.policy().preview == CANDIDATE
    assert world.production() == STABLE
    world.run(10, until=lambda: world.production() == CANDIDATE)
    assert world.trace[-1][0] == 11  # autoPromotionSeconds after the preview
    assert world.policy().preview is None
    world.run(30, until=lambda: world.phase() == "Healthy")
    assert world.phase() == "Healthy"
    assert world.production() == CANDIDATE
    history = world.registry.alias_history("dev", "production")
    assert [m.to_ref for m in history] == [STABLE, CANDIDATE]


def test_auto_promotion_counts_from_the_preview_when_the_candidate_is_late(world: World) -> None:
    world.start(BLUE_GREEN)
    world.run(15)  # no ready model server for 15 s: longer than autoPromotionSeconds
    assert world.policy().preview is None
    world.ready()
    world.candidate_stats(healthy())
    world.run(1)
    assert world.policy().preview == CANDIDATE
    preview_at = world.trace[-1][0]
    world.run(20, until=lambda: world.production() == CANDIDATE)
    assert world.trace[-1][0] - preview_at == 10  # a full 10 s in preview first


def test_blue_green_failing_after_the_switch_switches_back(world: World) -> None:
    world.start(BLUE_GREEN)
    world.ready()
    world.candidate_stats(healthy())
    world.run(15, until=lambda: world.production() == CANDIDATE)
    world.candidate_stats(erroring())  # it goes bad under full traffic
    world.run(10, until=lambda: world.phase() == "Aborted")
    record = world.rollout()
    assert record.phase == "Aborted"
    assert "post-promotion analysis" in (record.abort_reason or "")
    assert world.production() == STABLE
    back = world.registry.alias_history("dev", "production")[-1]
    assert (back.from_ref, back.to_ref, back.actor) == (CANDIDATE, STABLE, "controller")
    assert "aborted" in back.reason


# -- experiment ---------------------------------------------------------------------------

EXPERIMENT = {
    "name": "ab",
    "strategy": {
        "experiment": {
            "duration": "20s",
            "variants": [{"name": "A", "weight": 50}, {"name": "B", "weight": 50}],
            "decision": {"metric": "feedback_mean", "minSamples": 30},
        }
    },
}


def ratings(*values: int, n: int = 40) -> VersionStats:
    return VersionStats(requests=n, ratings=[values[i % len(values)] for i in range(n)])


@pytest.mark.parametrize(
    ("candidate", "phase", "production"),
    [
        (ratings(4, 5, 5), "Healthy", CANDIDATE),
        (ratings(1, 2, 2), "Aborted", STABLE),
        (ratings(3, 3, 4), "Paused", STABLE),
    ],
)
def test_experiment_decided_by_ratings(
    world: World, candidate: VersionStats, phase: str, production: str
) -> None:
    world.start(EXPERIMENT)
    world.ready()
    world.stable_stats(ratings(3, 3, 4))
    world.candidate_stats(candidate)
    world.run(1)
    experiment = world.policy().experiment
    assert experiment is not None
    assert [(v.name, v.ref, v.weight) for v in experiment.variants] == [
        ("A", STABLE, 50.0),
        ("B", CANDIDATE, 50.0),
    ]
    world.run(30, until=lambda: world.phase() != "Progressing")
    assert world.phase() == phase
    assert world.production() == production
    [decision] = world.registry.list_measurements(world.rollout().id)
    assert decision.metric == "feedback-mean"
    assert decision.at.timestamp() - T0 == 22  # measured on the pass after the 20s
    if phase != "Paused":
        assert world.policy().experiment is None


def test_the_experiment_lasts_its_duration_from_when_the_candidate_is_ready(
    world: World,
) -> None:
    world.start(EXPERIMENT)
    world.run(25)  # not ready for longer than the experiment's duration
    world.ready()
    world.stable_stats(ratings(3, 3, 4))
    world.candidate_stats(ratings(4, 5, 5))
    world.run(1)
    started = world.trace[-1][0]
    assert world.policy().experiment is not None
    world.run(30, until=lambda: world.phase() != "Progressing")
    [decision] = world.registry.list_measurements(world.rollout().id)
    assert decision.at.timestamp() - T0 - started >= 20


# -- shadow -------------------------------------------------------------------------------

SHADOW = {
    "name": "sh",
    "strategy": {
        "shadow": {
            "percent": 10,
            "duration": "20s",
            "analysis": {"templates": [{"templateName": "similar"}]},
        }
    },
    "analysisTemplates": [
        {
            "name": "similar",
            "metrics": [
                {
                    "name": "similarity",
                    "interval": "5s",
                    "failureLimit": 1,
                    "successCondition": "result >= 0.6",
                    "provider": {"builtin": {"metric": "shadow_similarity", "minSamples": 5}},
                }
            ],
        }
    ],
}


@pytest.mark.parametrize(
    ("similarity", "phase", "production"),
    [(0.9, "Healthy", CANDIDATE), (0.2, "Aborted", STABLE)],
)
def test_shadow_verdict_by_similarity(
    world: World, similarity: float, phase: str, production: str
) -> None:
    world.start(SHADOW)
    world.ready()
    world.candidate_stats(VersionStats(requests=20, shadow_similarities=[similarity] * 20))
    world.run(1)
    policy = world.policy()
    assert (policy.shadow, policy.shadow_percent, policy.canary) == (CANDIDATE, 10.0, None)
    world.run(40, until=lambda: world.phase() in ("Healthy", "Aborted"))
    assert world.phase() == phase
    assert world.production() == production
    assert world.policy().shadow is None
    if phase == "Healthy":
        assert world.trace[-1][0] >= 21  # the whole duration first


def test_shadow_mirrors_its_whole_duration_when_the_candidate_is_late(world: World) -> None:
    world.start(SHADOW)
    world.run(25)
    world.ready()
    world.candidate_stats(VersionStats(requests=20, shadow_similarities=[0.9] * 20))
    world.run(1)
    mirrored_at = world.trace[-1][0]
    assert world.policy().shadow == CANDIDATE
    world.run(40, until=lambda: world.phase() != "Progressing")
    assert world.phase() == "Healthy", world.rollout().pause_reason
    assert world.trace[-1][0] - mirrored_at >= 20


def test_shadow_without_any_measurement_is_inconclusive(world: World) -> None:
    spec = json.loads(json.dumps(SHADOW))
    spec["analysisTemplates"][0]["metrics"][0]["interval"] = "1m"
    world.start(spec)
    world.ready()
    world.run(30, until=lambda: world.phase() == "Paused")
    assert world.phase() == "Paused"
    assert "no measurement was taken" in (world.rollout().pause_reason or "")


# -- restarts -------------------------------------------------------------------------------


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
MUTATIONS = ("set_traffic", "set_alias", "promote_preview", "save_rollout", "record_measurement")


class Killed(BaseException):
    """What SIGKILL does to a controller: it stops wherever it is."""


class Killing:
    """The registry, except that the ``at``-th mutation kills the caller, before or
    after it reaches the database."""

    def __init__(self, registry: Registry, at: int, after: bool, count: list[int] | None = None):
        self._registry = registry
        self._at = at
        self._after = after
        self._count = count if count is not None else [0]

    @property
    def calls(self) -> int:
        return self._count[0]

    def fenced(self, name: str, token: int) -> Killing:
        """The controller writes through a view fenced by its lease: the same count."""
        return Killing(self._registry.fenced(name, token), self._at, self._after, self._count)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._registry, name)
        if name not in MUTATIONS:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._count[0] += 1
            if self.calls == self._at and not self._after:
                raise Killed
            result = attr(*args, **kwargs)
            if self.calls == self._at:
                raise Killed
            return result

        return call


def _scenario(world: World, spec: dict[str, Any], killing: Killing | None) -> World:
    """Run ``spec`` to the end; the controller dies where ``killing`` says and a new one
    (built from the registry alone) takes over in the same second."""
    world.start(spec)
    world.ready()
    world.candidate_stats(healthy())
    for _ in range(40):
        world.clock.t += 1
        controller = Controller(
            killing or world.registry,  # type: ignore[arg-type]
            env=world.env,
            stats=world.stats,
            clock=world.clock,
            endpoint_max_age=None,
        )
        try:
            controller.run_once()
        except Killed:
            # SIGKILL: a new controller starts from the registry, in the same second.
            killing = None
            world.new_controller().run_once()
        world.trace.append((world.clock.t - T0, world.policy().canary_weight, None))
        if world.phase() == "Healthy":
            break
    return world


def _envs(registry: Registry, count: int) -> list[str]:
    names = [f"k{i}" for i in range(count)]
    for env in names:
        registry.set_alias(env, "production", STABLE, actor="ci", reason="launch")
    return names


def test_a_controller_killed_at_any_write_resumes_where_it_was(
    registry: tuple[Registry, Clock],
) -> None:
    reg, clock = registry
    counting = Killing(reg, at=0, after=True)  # never kills: counts the writes
    baseline = _scenario(World(reg, clock, InMemoryStats()), SHORT, counting)
    expected_steps = baseline.messages()
    expected_weights = baseline.weights_seen()
    assert expected_weights == [20.0, 50.0, 0.0]
    writes = counting.calls
    assert writes >= 10
    for i, env in enumerate(_envs(reg, 2 * writes)):
        at, after = i // 2 + 1, bool(i % 2)
        clock.t = T0
        killing = Killing(reg, at, after)
        world = _scenario(World(reg, clock, InMemoryStats(), env=env), SHORT, killing)
        where = f"killed at write {at} ({'after' if after else 'before'} it)"
        assert killing.calls >= at, where
        assert world.phase() == "Healthy", where
        assert world.messages() == expected_steps, where  # no step skipped or repeated
        assert world.weights_seen() == expected_weights, where
        moves = [m.to_ref for m in reg.alias_history(env, "production")]
        assert moves == [STABLE, CANDIDATE], where  # promoted exactly once
        assert reg.get_traffic(env).canary is None, where


def test_a_controller_killed_during_analysis_resumes_where_it_was(
    registry: tuple[Registry, Clock],
) -> None:
    reg, clock = registry
    counting = Killing(reg, at=0, after=True)
    baseline = _scenario(World(reg, clock, InMemoryStats()), CANARY, counting)
    expected = (baseline.messages(), baseline.weights_seen())
    measurements = len(reg.list_measurements(baseline.rollout().id))
    points = range(1, counting.calls + 1, 5)  # a sample: the whole walk is slow
    for i, env in enumerate(_envs(reg, len(points))):
        clock.t = T0
        at, after = points[i], bool(i % 2)
        world = _scenario(
            World(reg, clock, InMemoryStats(), env=env), CANARY, Killing(reg, at, after)
        )
        where = f"killed at write {at} ({'after' if after else 'before'} it)"
        assert world.phase() == "Healthy", where
        assert (world.messages(), world.weights_seen()) == expected, where
        assert len(reg.list_measurements(world.rollout().id)) == measurements, where


def test_a_new_controller_every_pass_gives_the_same_rollout(world: World) -> None:
    world.start(CANARY)
    world.ready()
    world.candidate_stats(healthy())
    for _ in range(60):
        world.clock.t += 1
        world.new_controller().run_once()  # the old one is gone, as after SIGKILL
        world.trace.append((world.clock.t - T0, world.policy().canary_weight, None))
        if world.phase() == "Healthy":
            break
    assert world.weights_seen() == [20.0, 50.0, 0.0]
    assert world.trace[-1][0] == 36
    assert len(world.messages()) == 6


def test_restart_keeps_the_pause_step_timer(world: World) -> None:
    steps = [{"setWeight": 20}, {"pause": {"duration": "1h"}}, {"setWeight": 60}, {"pause": {}}]
    world.start({"name": "hour", "strategy": {"canary": {"steps": steps}}})
    world.ready()
    world.run(1)
    world.clock.t += 3598  # the controller was down for most of the hour
    world.controller = world.new_controller()
    world.run(1)
    assert world.policy().canary_weight == 20.0
    world.run(1)
    assert world.policy().canary_weight == 60.0


# -- alerts ---------------------------------------------------------------------------------


def webhook(status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="HighErrorRate"}',
        "status": status,
        "receiver": "llmship",
        "alerts": [
            {
                "status": status,
                "labels": {"alertname": "HighErrorRate", "action": "rollback", **labels},
                "annotations": {"summary": "5xx above 5%"},
                "startsAt": "2024-05-01T12:00:05Z",
                "fingerprint": "abc123",
            }
        ],
    }


def deliver(world: World, payload: dict[str, Any]) -> list[bool]:
    parsed = parse_webhook(payload)
    active = world.registry.list_rollouts(world.env, active_only=True)
    return [
        world.registry.request_rollout_abort(
            world.env, r.rollout_id, reason=r.reason, dedupe_key=r.dedupe_key
        )
        for r in abort_requests(parsed, active)
    ]


def test_an_alert_aborts_the_rollout_once(world: World) -> None:
    world.start(CANARY)
    world.ready()
    world.candidate_stats(healthy())
    world.run(3)
    assert deliver(world, webhook(model_version=CANDIDATE)) == [True]
    assert deliver(world, webhook(model_version=CANDIDATE)) == [False]  # repeated delivery
    world.run(1)
    record = world.rollout()
    assert record.phase == "Aborted"
    assert record.abort_reason == "alert HighErrorRate fired: 5xx above 5%"
    assert world.policy().canary is None
    events = world.registry.rollout_events(record.id)
    assert [e.kind for e in events].count("rollout.aborted") == 1
    assert [e.kind for e in events].count("rollout.requested") == 1
    assert deliver(world, webhook(model_version=CANDIDATE)) == []  # not active any more
    world.run(2)
    assert world.registry.rollout_events(record.id) == events
    assert world.registry.pending_rollout_intents(record.id) == []


def test_a_resolved_alert_changes_nothing(world: World) -> None:
    world.start(CANARY)
    world.ready()
    world.run(2)
    assert deliver(world, webhook("resolved", rollout="chat-canary")) == []
    world.run(1)
    assert world.phase() != "Aborted"


# -- pieces -----------------------------------------------------------------------------------


def test_the_first_measurement_of_an_interval_metric_waits_one_interval() -> None:
    def metric(**fields: Any) -> Metric:
        return Metric.model_validate(
            {"name": "m", "provider": {"builtin": {"metric": "error_rate"}}, **fields}
        )

    assert first_measurement_at(metric(interval="5s"), [], started_at=100) == 105
    assert first_measurement_at(metric(interval="5s", initialDelay="1s"), [], started_at=100) == 101
    assert first_measurement_at(metric(), [], started_at=100) == 100
    taken = [Measurement(0.0, Phase.SUCCESSFUL, finished_at=105.5)]
    assert first_measurement_at(metric(interval="5s", count=3), taken, started_at=100) == 110.5


def test_gateway_stats_over_http() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.params["ref"] == "chat@9.9.9":
            return httpx.Response(404, json={"error": {"message": "no such release"}})
        return httpx.Response(
            200, json={"requests": 10, "errors": 1, "error_rate": None, "latencies": [0.1]}
        )

    with GatewayStats(
        "http://gw:8080/", "s3cret", transport=httpx.MockTransport(handler)
    ) as source:
        stats = source.stats("prod", CANDIDATE, 30)
        assert (stats.requests, stats.errors, stats.latencies) == (10, 1, [0.1])
        request = seen[0]
        assert request.url.path == "/api/v1/stats"
        assert dict(request.url.params) == {"env": "prod", "ref": CANDIDATE, "window": "30"}
        assert request.headers["authorization"] == "Bearer s3cret"
        with pytest.raises(MeasurementError, match=r"answered 404 .* no such release"):
            source.stats("prod", "chat@9.9.9", 30)
        # through the builtin provider: a failure is an Error measurement with the reason
        metric = Metric.model_validate(
            {"name": "m", "provider": {"builtin": {"metric": "error_rate"}}}
        )
        with Providers(stats=source) as providers:
            context = MeasureContext(env="prod", candidate="chat@9.9.9", clock=lambda: 1.0)
            taken = run_measurement(metric, context, providers)
    assert taken.phase is Phase.ERROR
    assert "no such release" in taken.message


def test_gateway_stats_when_the_gateway_is_down() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    source = GatewayStats("http://gw:1", None, transport=httpx.MockTransport(handler))
    with source, pytest.raises(MeasurementError, match="did not answer"):
        source.stats("dev", CANDIDATE, 60)


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8080"),
        ("0.0.0.0", "http://127.0.0.1:8080"),
        ("::", "http://[::1]:8080"),
        ("fe80::1", "http://[fe80::1]:8080"),
        ("gw.local", "http://gw.local:8080"),
    ],
)
def test_gateway_url(host: str, url: str) -> None:
    assert gateway_url(host, 8080) == url


def test_the_repository_specs_run(world: World) -> None:
    record = world.start("rollouts/chat-canary.yaml")
    assert state_of(record).phase is RolloutPhase.PENDING


def test_a_retry_while_another_rollout_runs_is_rejected(world: World) -> None:
    first = world.start(CANARY)
    world.ask("abort")
    world.run(1)
    world.ask("retry")  # checked now: nothing else runs yet
    second = ops.start(world.registry, parse_rollout(SHORT), CANDIDATE, env="dev", actor="bob")
    world.run(1)
    [rejected] = world.messages("rollout.rejected", first.id)
    assert "retry by ann not applied" in rejected
    assert world.registry.get_rollout(first.id).phase == "Aborted"
    assert world.registry.get_rollout(second.id).active
    assert world.registry.pending_rollout_intents(first.id) == []
