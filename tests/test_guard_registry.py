"""The promotion guard enforced by the registry itself (``registry/_guard.py``): every
way a release gets production, or all (or more than ``guard_above`` percent) of an
environment's traffic, whoever calls: an alias move, a preview promotion, a canary
at 100, an experiment arm at 100, a routing flag, the admin API, the controller's
promotion at the end of a rollout; forcing recorded; rollbacks never guarded. On
SQLite and PostgreSQL (the check runs inside the write transaction)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from _controller import CANARY, CANDIDATE, STABLE, Clock, World, healthy
from _registry import register_chat
from _stats import InMemoryStats
from llmship.errors import GateError, InvalidRequestError, SpecError
from llmship.flags.model import Flag
from llmship.registry import Registry
from llmship.registry._guard import shares
from llmship.release.promotion_guard import GuardRule, PromotionGuard
from llmship.rollout import ops, parse_rollout
from llmship.rollout.traffic_router import Cause, RegistryTrafficRouter
from llmship.routing.policy import Experiment, TrafficPolicy, Variant

ENV = "prod"
BOTH = ("eval", "loadtest")


def guard(above: float | None = None, env: str = ENV) -> PromotionGuard:
    return PromotionGuard(rules={env: GuardRule(BOTH, above)})


@pytest.fixture
def registry(db_url: str) -> Iterator[Registry]:
    """chat@1.0.0 production in prod, chat@1.1.0 registered; prod requires both gates."""
    with Registry.open(db_url) as reg:
        register_chat(reg, env=ENV)
        reg.guard = guard()
        yield reg


def passed(registry: Registry, ref: str = CANDIDATE, *kinds: str) -> None:
    for kind in kinds or BOTH:
        registry.record_gate_run(kind, ref, env=ENV, passed=True, summary={}, report={}, actor="ci")


def production(registry: Registry, env: str = ENV) -> str | None:
    record = registry.get_alias(env, "production")
    return record.ref if record is not None else None


def canary(weight: float, ref: str = CANDIDATE) -> TrafficPolicy:
    return TrafficPolicy(env=ENV, canary=ref, canary_weight=weight)


# -- the shares, a pure function ---------------------------------------------------------


def test_shares_add_up_every_route_to_a_release() -> None:
    policy = TrafficPolicy(env=ENV, stable=STABLE, canary=CANDIDATE, canary_weight=30)
    flags = [
        Flag("a", enabled=True, percent=50, release=CANDIDATE),
        Flag("b", enabled=False, percent=100, release="chat@2.0.0"),  # off: nothing
        Flag("c", enabled=True, percent=100, conditions={"plan": "pro"}, release="x@1.0.0"),
        Flag("d", enabled=True, percent=100),  # routes nowhere
    ]
    assert shares(policy, flags) == {CANDIDATE: 80.0, "x@1.0.0": 100.0}
    arms = Experiment("e", (Variant("A", STABLE, 40), Variant("B", CANDIDATE, 60)))
    assert shares(TrafficPolicy(env=ENV, experiment=arms)) == {STABLE: 40.0, CANDIDATE: 60.0}
    assert shares(TrafficPolicy(env=ENV, preview=CANDIDATE, shadow=CANDIDATE)) == {}


@pytest.mark.parametrize(
    ("above", "share", "guarded"),
    [(None, 99.9, False), (None, 100, True), (20, 20, False), (20, 20.5, True), (0, 1, True)],
)
def test_rule_guards(above: float | None, share: float, guarded: bool) -> None:
    assert GuardRule(BOTH, above).guards(share) is guarded
    assert GuardRule((), above).guards(share) is False  # nothing required: nothing guarded


# -- every path ----------------------------------------------------------------------------


def test_alias_move_of_production(registry: Registry) -> None:
    with pytest.raises(GateError, match=r"chat@1\.1\.0 cannot become production in prod") as err:
        registry.set_alias(ENV, "production", CANDIDATE, actor="ann", reason="ship")
    assert "eval: no run recorded" in str(err.value) and "llmship loadtest" in str(err.value)
    assert production(registry) == STABLE
    registry.set_alias(ENV, "canary", CANDIDATE, actor="ann", reason="try")  # not guarded
    registry.set_alias("dev", "production", CANDIDATE, actor="ann", reason="dev")  # nor dev
    passed(registry)
    registry.set_alias(ENV, "production", CANDIDATE, actor="ann", reason="ship")
    assert production(registry) == CANDIDATE
    assert registry.events(kind="gate.forced") == []


def test_forced_alias_move_is_recorded_and_a_rollback_is_never_guarded(
    registry: Registry,
) -> None:
    with pytest.raises(InvalidRequestError, match="--force needs --reason"):
        registry.set_alias(
            ENV, "production", CANDIDATE, actor="ann", reason="no reason given", force=True
        )
    move = registry.set_alias(
        ENV, "production", CANDIDATE, actor="ann", reason="CVE fix", force=True
    )
    assert move.reason == "[forced] CVE fix"
    [event] = registry.events(kind="gate.forced")
    assert (event.subject, event.actor) == (CANDIDATE, "ann")
    assert event.data["missing"] == ["eval", "loadtest"] and event.data["reason"] == "CVE fix"
    # back to the release production served before: no gate, no force
    back = registry.set_alias(ENV, "production", STABLE, actor="ann", reason="rollback: bad")
    assert back.reason == "rollback: bad" and production(registry) == STABLE
    # and a rollback by the rollout ops (`llmship rollback`) as well
    registry.set_alias(ENV, "production", CANDIDATE, actor="ann", reason="again", force=True)
    ops.rollback(registry, ENV, actor="ann", reason="alert")
    assert production(registry) == STABLE


def test_promote_preview(registry: Registry) -> None:
    registry.set_traffic(ENV, TrafficPolicy(env=ENV, preview=CANDIDATE), actor="a", reason="bg")
    with pytest.raises(GateError, match="cannot become production"):
        registry.promote_preview(ENV, actor="ann", reason="switch")
    assert production(registry) == STABLE and registry.get_traffic(ENV).preview == CANDIDATE
    registry.promote_preview(ENV, actor="ann", reason="switch", force=True)
    assert production(registry) == CANDIDATE
    assert registry.alias_history(ENV, "production")[-1].reason == "[forced] switch"
    [promoted] = registry.events(kind="traffic.promoted")
    assert promoted.data["reason"] == "[forced] switch"


def test_canary_weight_100(registry: Registry) -> None:
    registry.set_traffic(ENV, canary(99), actor="ann", reason="almost")  # not all of it
    with pytest.raises(GateError, match=r"cannot get 100% of the traffic in prod"):
        registry.set_traffic(ENV, canary(100), actor="ann", reason="all")
    assert registry.get_traffic(ENV).canary_weight == 99
    policy = registry.set_traffic(ENV, canary(100), actor="ann", reason="hotfix", force=True)
    assert policy.canary_weight == 100
    assert registry.events(kind="traffic.changed")[0].data["reason"] == "[forced] hotfix"
    assert registry.events(kind="gate.forced")[0].data["to"] == "get 100% of the traffic"
    # lowering it, or changing something else, is not checked again
    registry.set_traffic(ENV, canary(50), actor="ann", reason="less")


def test_experiment_arm_at_100(registry: Registry) -> None:
    arms = (Variant("A", STABLE, 0), Variant("B", CANDIDATE, 100))
    policy = TrafficPolicy(env=ENV, experiment=Experiment("all-b", arms))
    with pytest.raises(GateError, match=r"chat@1.1.0 cannot get 100% of the traffic"):
        registry.set_traffic(ENV, policy, actor="ann", reason="ab")
    passed(registry)
    assert registry.set_traffic(ENV, policy, actor="ann", reason="ab").experiment is not None


def test_routing_flag_at_100(registry: Registry) -> None:
    everyone = Flag("new-model", enabled=True, percent=100, release=CANDIDATE)
    with pytest.raises(GateError, match=r"cannot get 100% of the traffic"):
        registry.set_flag(ENV, everyone, actor="ann")
    assert registry.list_flags(ENV) == []
    registry.set_flag(
        ENV, Flag("new-model", enabled=True, percent=10, release=CANDIDATE), actor="a"
    )
    off = Flag("all", enabled=False, percent=100, release=CANDIDATE)
    registry.set_flag(ENV, off, actor="ann")  # off: routes nothing
    with pytest.raises(GateError):  # turning it on would send everyone there
        registry.toggle_flag(ENV, "all", actor="ann")
    assert registry.get_flag(ENV, "all").enabled is False
    flag = registry.set_flag(ENV, everyone, actor="ann", force=True, reason="dark launch")
    assert flag.percent == 100
    [event] = registry.events(kind="gate.forced")
    assert event.data["reason"] == "dark launch"
    assert "[forced] dark launch" in registry.events(kind="flag.changed")[0].message


def test_guard_above_a_share(registry: Registry) -> None:
    registry.guard = guard(above=20)
    registry.set_traffic(ENV, canary(20), actor="ann", reason="a fifth")
    with pytest.raises(GateError, match=r"cannot get 30% of the traffic in prod"):
        registry.set_traffic(ENV, canary(30), actor="ann", reason="more")
    with pytest.raises(GateError, match=r"cannot get 25% of the traffic"):  # 20 + a flag's 5
        registry.set_flag(ENV, Flag("f", enabled=True, percent=5, release=CANDIDATE), actor="a")
    passed(registry, CANDIDATE, "eval")
    with pytest.raises(GateError, match="loadtest: no run recorded"):
        registry.set_traffic(ENV, canary(30), actor="ann", reason="more")
    passed(registry, CANDIDATE, "loadtest")
    assert registry.set_traffic(ENV, canary(30), actor="ann", reason="more").canary_weight == 30


def test_rollout_start_is_checked_in_the_registry(registry: Registry) -> None:
    spec = parse_rollout(CANARY)
    with pytest.raises(GateError, match=r"chat@1\.1\.0 cannot be rolled out in prod"):
        ops.start(registry, spec, CANDIDATE, env=ENV, actor="ann")
    assert registry.active_rollout(ENV) is None
    record = ops.start(registry, spec, CANDIDATE, env=ENV, actor="ann", reason="inc", force=True)
    assert record.active and registry.events(kind="gate.forced")[0].data["reason"] == "inc"
    assert "[forced] inc" in registry.events(kind="rollout.created")[0].message


# -- the controller ----------------------------------------------------------------------


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """The controller's world (env dev) on a registry that guards dev."""
    clock = Clock()
    with Registry.open(f"sqlite:///{tmp_path / 'registry.db'}", clock=clock.dt) as reg:
        register_chat(reg)
        reg.guard = guard(env="dev")
        yield World(reg, clock, InMemoryStats())


def run_canary_to_its_end(world: World) -> None:
    world.ready()
    world.candidate_stats(healthy())
    world.run(60, until=lambda: world.phase() == "Healthy")
    assert world.phase() == "Healthy" and world.production() == CANDIDATE


def test_controller_promotes_a_forced_rollout_at_its_end(world: World) -> None:
    spec = parse_rollout(CANARY)
    ops.start(world.registry, spec, CANDIDATE, env="dev", actor="ann", reason="inc", force=True)
    run_canary_to_its_end(world)  # setWeight 100 and the promotion are not refused
    assert len(world.registry.events(kind="gate.forced")) == 1  # once, at the start


def test_controller_promotes_what_passed_at_the_start(world: World) -> None:
    for kind in BOTH:
        world.registry.record_gate_run(
            kind, CANDIDATE, env="dev", passed=True, summary={}, report={}, actor="ci"
        )
    world.start(CANARY)
    world.registry.record_gate_run(  # a newer run failed meanwhile
        "eval", CANDIDATE, env="dev", passed=False, summary={}, report={}, actor="ci"
    )
    run_canary_to_its_end(world)  # the rollout was checked when it started


def test_controller_switches_a_forced_blue_green_rollout(world: World) -> None:
    spec = parse_rollout({"name": "bg", "strategy": {"blueGreen": {"autoPromotionSeconds": 5}}})
    ops.start(world.registry, spec, CANDIDATE, env="dev", actor="ann", reason="inc", force=True)
    world.ready()
    world.run(20, until=lambda: world.production() == CANDIDATE)
    assert world.production() == CANDIDATE  # the switch (promote_preview) was admitted
    assert world.registry.alias_history("dev", "production")[-1].actor == "controller"


def test_controller_writes_without_a_rollout_are_guarded(world: World) -> None:
    router = RegistryTrafficRouter(world.registry, "dev")
    cause = Cause(actor="controller", reason="r", alias_reason="r", label="setWeight 100")
    router.set_weight(CANDIDATE, 50, cause=cause)
    with pytest.raises(GateError):
        router.set_weight(CANDIDATE, 100, cause=cause)
    with pytest.raises(GateError):
        router.promote(CANDIDATE, cause=cause)
    assert world.production() == STABLE


def test_an_aborted_rollout_admits_nothing(world: World) -> None:
    spec = parse_rollout(CANARY)
    ops.start(world.registry, spec, CANDIDATE, env="dev", actor="ann", reason="inc", force=True)
    world.ask("abort", "bad")
    world.run(5, until=lambda: world.phase() == "Aborted")
    assert world.phase() == "Aborted"
    with pytest.raises(GateError):
        world.registry.set_alias("dev", "production", CANDIDATE, actor="ann", reason="sneak")


# -- the admin API -------------------------------------------------------------------------


@pytest.fixture
def client(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    from llmship.gateway.app import create_app
    from llmship.settings import load_settings

    monkeypatch.setenv("LLMSHIP_ADMIN_TOKEN", "secret")
    monkeypatch.setenv("LLMSHIP_ENV", ENV)
    with TestClient(create_app(registry, load_settings())) as test_client:
        test_client.headers["Authorization"] = "Bearer secret"
        yield test_client


def test_admin_api_traffic_and_flags(client: TestClient, registry: Registry) -> None:
    body = {"canary": {"release": CANDIDATE, "weight": 100}, "reason": "all"}
    refused = client.put("/api/v1/traffic", json=body)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "gates_missing"
    flag = {"enabled": True, "percent": 100, "release": CANDIDATE}
    refused = client.put("/api/v1/flags/everyone", json=flag)
    assert refused.status_code == 409, refused.text
    assert "cannot get 100% of the traffic" in refused.json()["error"]["message"]
    registry.set_flag(ENV, Flag("dark", percent=100, release=CANDIDATE), actor="ann")  # off
    refused = client.post("/api/v1/toggle/dark")  # on would send everyone there
    assert refused.status_code == 409, refused.text
    assert registry.get_flag(ENV, "dark").enabled is False
    forced = client.put("/api/v1/traffic", json={**body, "force": True})
    assert forced.status_code == 200, forced.text
    assert registry.get_traffic(ENV).canary_weight == 100
    assert production(registry) == STABLE


# -- the configuration ---------------------------------------------------------------------


def test_guard_above_in_llmship_yaml(tmp_path: Path) -> None:
    path = tmp_path / "llmship.yaml"
    path.write_text(
        yaml.safe_dump(
            {"environments": {"staging": {"require": ["eval"], "guard_above": 10}, "prod": {}}}
        )
    )
    rules = PromotionGuard(path)
    assert rules.rule("staging") == GuardRule(("eval",), 10)
    assert rules.rule("prod") == GuardRule()
    path.write_text(yaml.safe_dump({"environments": {"prod": {"guard_above": 100}}}))
    with pytest.raises(SpecError, match=r"environments\.prod\.guard_above"):
        PromotionGuard(path).rule("prod")
