"""A controller killed at any write, or replaced every pass, resumes the rollout where
it was: no step skipped or repeated, promoted exactly once."""

from __future__ import annotations

from typing import Any

from _controller import (
    CANARY,
    CANDIDATE,
    SHORT,
    STABLE,
    T0,
    Clock,
    World,
    healthy,
)
from _stats import InMemoryStats
from llmship.registry import Registry
from llmship.rollout.controller import Controller

pytest_plugins = ["_controller_fixtures"]  # the fixtures registry and world


# -- restarts -------------------------------------------------------------------------------


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
