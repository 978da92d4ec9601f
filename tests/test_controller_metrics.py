"""The controller's /metrics: rollout state, weights and analysis verdicts read from a
real registry (SQLite) as a scrape sees them, with fake gateway statistics and an
injected clock; and the pure functions behind them, table-tested."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from _registry import ControllerClock, chat_registry, errors_template
from _stats import InMemoryStats
from llmship.analysis import VersionStats
from llmship.analysis.phases import Phase
from llmship.cli import app
from llmship.registry import Registry
from llmship.registry.records import MeasurementRecord
from llmship.rollout import RolloutPhase, ops, parse_rollout
from llmship.rollout.controller import Controller
from llmship.rollout.metrics import MetricView, RolloutCollector, metric_views, rollout_weights
from llmship.rollout.state import AnalysisRun, RolloutState

STABLE, CANDIDATE = "chat@1.0.0", "chat@1.1.0"
ERRORS = errors_template(failure_limit=0)
CANARY = {
    "name": "chat-canary",
    "strategy": {
        "canary": {
            "steps": [
                {"setWeight": 20},
                {"analysis": {"templates": [{"templateName": "errors"}]}},
                {"setWeight": 50},
                {"pause": {}},
            ]
        }
    },
    "analysisTemplates": [ERRORS],
}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class World:
    """chat@1.0.0 in production, chat@1.1.0 ready, a controller of env dev, and the
    collector a controller's /metrics serves."""

    def __init__(self, registry: Registry, clock: ControllerClock):
        self.registry, self.clock = registry, clock
        self.stats = InMemoryStats()
        self.controller = Controller(
            registry, env="dev", stats=self.stats, clock=clock, endpoint_max_age=None
        )
        self.leading = True
        self.collector = RolloutCollector(
            registry, "dev", leading=lambda: self.leading, clock=clock, cache_s=0
        )
        registry.register_endpoint("dev", CANDIDATE, "http://127.0.0.1:8101", pid=1)

    def start(self, spec: dict[str, Any] = CANARY) -> None:
        ops.start(self.registry, parse_rollout(spec), CANDIDATE, env="dev", actor="ann")

    def run(self, seconds: int) -> None:
        for _ in range(seconds):
            self.clock.t += 1
            self.controller.run_once()

    def scrape(self) -> Samples:
        """What Prometheus reads: the text exposition, parsed back."""
        registry = CollectorRegistry()
        registry.register(self.collector)
        text = generate_latest(registry).decode()
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def names(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for n, labels in samples if n == name]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    clock = ControllerClock()
    with chat_registry(tmp_path / "registry.db", clock=clock.dt) as registry:
        yield World(registry, clock)


def test_a_running_canary_reports_its_phase_step_and_weights(world: World) -> None:
    world.start()
    world.run(2)
    got = world.scrape()
    info = {"env": "dev", "rollout": "chat-canary", "strategy": "canary", "release": CANDIDATE}
    assert sample(got, "llmship_rollout_info", **info, phase="Progressing") == 1
    assert sample(got, "llmship_rollout_step", env="dev", rollout="chat-canary") == 1
    weight = "llmship_rollout_weight"
    assert sample(got, weight, env="dev", rollout="chat-canary", version=CANDIDATE) == 20
    assert sample(got, weight, env="dev", rollout="chat-canary", version=STABLE) == 80
    assert sample(got, "llmship_controller_leader", env="dev") == 1
    assert sample(got, "llmship_controller_registry_up") == 1


def test_analysis_reports_each_metrics_latest_value_and_phase(world: World) -> None:
    world.stats.set("dev", CANDIDATE, VersionStats(requests=100, errors=2, error_rate=0.02))
    world.start()
    world.run(7)  # the step's analysis measures once 5 s after it starts
    got = world.scrape()
    [labels] = names(got, "llmship_analysis_metric_value")
    run = labels["run"]
    where = {"env": "dev", "rollout": "chat-canary", "run": run, "metric": "error-rate"}
    assert sample(got, "llmship_analysis_metric_value", **where) == pytest.approx(0.02)
    # One of three measurements taken and good: the metric is still Running.
    assert sample(got, "llmship_analysis_metric_phase", **where, phase="Running") == 1
    assert len(names(got, "llmship_analysis_metric_phase")) == 1

    world.stats.set("dev", CANDIDATE, VersionStats(requests=100, errors=50, error_rate=0.5))
    world.run(5)
    got = world.scrape()
    assert sample(got, "llmship_analysis_metric_value", **where) == pytest.approx(0.5)
    assert sample(got, "llmship_analysis_metric_phase", **where, phase="Failed") == 1
    assert sample(got, "llmship_analysis_metric_phase", **where, phase="Running") is None
    info = {"env": "dev", "rollout": "chat-canary", "strategy": "canary", "release": CANDIDATE}
    assert sample(got, "llmship_rollout_info", **info, phase="Aborted") == 1
    assert (
        sample(got, "llmship_rollout_weight", env="dev", rollout="chat-canary", version=STABLE)
        == 100
    )


def test_a_finished_rollout_is_reported_for_a_while_then_not(world: World) -> None:
    world.start()
    world.run(2)
    ops.request(world.registry, "dev", None, "abort", actor="ann", reason="test")
    world.run(2)
    got = world.scrape()
    assert [labels["phase"] for labels in names(got, "llmship_rollout_info")] == ["Aborted"]
    world.clock.t += world.collector.recent_s + 1
    got = world.scrape()
    assert names(got, "llmship_rollout_info") == []
    assert names(got, "llmship_rollout_weight") == []
    assert sample(got, "llmship_controller_leader", env="dev") == 1


def test_a_standby_reports_the_same_rollouts_and_says_it_does_not_lead(world: World) -> None:
    world.start()
    world.run(2)
    leader = world.scrape()
    world.leading = False
    standby = world.scrape()
    assert sample(standby, "llmship_controller_leader", env="dev") == 0
    del leader[("llmship_controller_leader", frozenset({("env", "dev")}))]
    del standby[("llmship_controller_leader", frozenset({("env", "dev")}))]
    assert standby == leader


class Unreachable:
    def __init__(self) -> None:
        self.reads = 0

    def list_rollouts(self, *args: Any, **kwargs: Any) -> list[Any]:
        self.reads += 1
        raise ConnectionError("connection refused")

    def list_measurements(self, *args: Any, **kwargs: Any) -> list[Any]:  # pragma: no cover
        return []


def test_a_registry_that_cannot_be_read_still_answers_the_scrape() -> None:
    collector = RolloutCollector(Unreachable(), "dev", leading=lambda: False)
    families = {f.name: f for f in collector.collect()}
    assert set(families) == {"llmship_controller_leader", "llmship_controller_registry_up"}
    assert families["llmship_controller_registry_up"].samples[0].value == 0


def test_scrapes_within_the_cache_time_read_the_registry_once(world: World) -> None:
    reads = []
    source = world.registry

    class Counting:
        def list_rollouts(self, *args: Any, **kwargs: Any) -> Any:
            reads.append(1)
            return source.list_rollouts(*args, **kwargs)

        def list_measurements(self, *args: Any, **kwargs: Any) -> Any:
            return source.list_measurements(*args, **kwargs)

    collector = RolloutCollector(Counting(), "dev", leading=lambda: True, cache_s=60)
    list(collector.collect())
    list(collector.collect())
    assert len(reads) == 1


# -- pure functions -------------------------------------------------------------------


def state(spec: dict[str, Any], **changes: Any) -> RolloutState:
    return RolloutState(
        env="dev",
        name=spec["name"],
        spec=parse_rollout(spec),
        candidate=CANDIDATE,
        stable=STABLE,
        **changes,
    )


BLUE_GREEN = {"name": "bg", "strategy": {"blueGreen": {}}}
EXPERIMENT = {
    "name": "ab",
    "strategy": {
        "experiment": {
            "duration": "1h",
            "variants": [{"name": "a", "weight": 70}, {"name": "b", "weight": 30}],
            "decision": {"metric": "latency_p95"},
        }
    },
}
SHADOW = {
    "name": "sh",
    "strategy": {
        "shadow": {
            "duration": "1h",
            "percent": 50,
            "analysis": {"templates": [{"templateName": "errors"}]},
        }
    },
    "analysisTemplates": [ERRORS],
}
P = RolloutPhase


@pytest.mark.parametrize(
    ("spec", "changes", "candidate"),
    [
        (CANARY, {"phase": P.PENDING, "weight": 0.0}, 0),
        (CANARY, {"phase": P.PROGRESSING, "weight": 20.0}, 20),
        (CANARY, {"phase": P.PAUSED, "weight": 50.0}, 50),
        (CANARY, {"phase": P.HEALTHY, "weight": 50.0}, 100),
        (CANARY, {"phase": P.ABORTED, "weight": 50.0}, 0),
        (BLUE_GREEN, {"phase": P.PAUSED, "switched": False}, 0),
        (BLUE_GREEN, {"phase": P.PROGRESSING, "switched": True}, 100),
        (EXPERIMENT, {"phase": P.PROGRESSING}, 30),
        (SHADOW, {"phase": P.PROGRESSING}, 0),
    ],
)
def test_rollout_weights(spec: dict[str, Any], changes: dict[str, Any], candidate: float) -> None:
    assert rollout_weights(state(spec, **changes)) == {
        CANDIDATE: candidate,
        STABLE: 100 - candidate,
    }


def test_a_rollout_without_a_stable_release_weighs_only_its_candidate() -> None:
    lone = RolloutState(
        env="dev", name="x", spec=parse_rollout(CANARY), candidate=CANDIDATE, stable=None
    )
    assert rollout_weights(lone) == {CANDIDATE: 0}


def measured(run: str, metric: str, phase: str, value: Any) -> MeasurementRecord:
    at = datetime(2024, 5, 1, tzinfo=timezone.utc)
    return MeasurementRecord(1, 1, run, metric, phase, value, "", at, at)


@pytest.mark.parametrize(
    ("taken", "run_phase", "value", "phase"),
    [
        ([], Phase.RUNNING, None, Phase.PENDING),
        ([("Successful", 0.01)], Phase.RUNNING, 0.01, Phase.RUNNING),
        ([("Successful", [0.01, 0.5])], Phase.RUNNING, 0.01, Phase.RUNNING),
        ([("Successful", 0.0)] * 3, Phase.SUCCESSFUL, 0.0, Phase.SUCCESSFUL),
        ([("Successful", 0.0), ("Failed", 0.3)], Phase.FAILED, 0.3, Phase.FAILED),
        ([("Error", None)], Phase.RUNNING, None, Phase.RUNNING),
        ([("Successful", True)], Phase.RUNNING, 1.0, Phase.RUNNING),
        ([("Successful", 0.0)], Phase.SUCCESSFUL, 0.0, Phase.SUCCESSFUL),  # terminated
    ],
)
def test_metric_views(
    taken: list[tuple[str, Any]], run_phase: Phase, value: float | None, phase: Phase
) -> None:
    run = AnalysisRun("step1.1", "step", "strategy.canary.steps[1].analysis", 0.0, run_phase)
    got = metric_views(
        state(CANARY, runs=(run,)), [measured("step1.1", "error-rate", p, v) for p, v in taken]
    )
    assert got == [MetricView("step1.1", "error-rate", value, phase)]


def test_a_metric_the_spec_does_not_define_has_its_latest_measurements_phase() -> None:
    run = AnalysisRun("decision.1", "decision", "", 0.0)
    got = metric_views(
        state(EXPERIMENT, runs=(run,)), [measured("decision.1", "latency-p95", "Failed", 1.2)]
    )
    assert [(v.metric, v.value, v.phase) for v in got] == [("latency-p95", 1.2, Phase.FAILED)]


@pytest.mark.parametrize("port", ["-1", "70000"])
def test_a_bad_metrics_port_is_refused(port: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["controller", "--metrics-port", port], env={"LLMSHIP_HOME": str(tmp_path)}
    )
    assert result.exit_code == 2
    assert "--metrics-port" in result.output
