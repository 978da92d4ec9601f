"""The controller's traffic router (``rollout/traffic_router.py``): the rollout's actions
carried out through an in-memory router and through the registry's, with the same
resulting policies, the same answers (changed or not) and the same revisions.

The in-memory router says, independently of the registry's code, what each action
means; the registry router must agree with it action by action.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, get_args

import pytest

from _registry import chat_registry
from llmship.errors import ConflictError
from llmship.registry import Registry
from llmship.registry.records import ReleaseRecord
from llmship.rollout import RolloutState, parse_rollout
from llmship.rollout.actions import carry_out, execute
from llmship.rollout.state import Action, ActionKind
from llmship.rollout.traffic_router import Cause, RegistryTrafficRouter, TrafficRouter
from llmship.routing.policy import Experiment, TrafficPolicy

STABLE, CANDIDATE = "chat@1.0.0", "chat@1.1.0"


@dataclass
class MemoryRouter:
    """A :class:`TrafficRouter` on a policy in memory: what each call should do."""

    env: str = "dev"
    stored: TrafficPolicy = field(default_factory=lambda: TrafficPolicy(env="dev", stable=STABLE))
    calls: list[str] = field(default_factory=list)

    @property
    def policy(self) -> TrafficPolicy:
        """The policy as read: a canary that has become stable is over."""
        if self.stored.canary is not None and self.stored.canary == self.stored.stable:
            return replace(self.stored, canary=None, canary_weight=0.0)
        return self.stored

    def _write(self, desired: TrafficPolicy) -> bool:
        if desired == self.policy:
            return False
        self.stored = replace(desired, revision=self.policy.revision + 1)
        return True

    def set_weight(self, candidate: str, weight: float, *, cause: Cause) -> bool:
        self.calls.append("set_weight")
        return self._write(
            replace(self.policy, canary=candidate, canary_weight=weight, experiment=None)
        )

    def set_preview(self, candidate: str, *, cause: Cause) -> bool:
        self.calls.append("set_preview")
        return self._write(replace(self.policy, preview=candidate))

    def set_experiment(self, experiment: Experiment, *, cause: Cause) -> bool:
        self.calls.append("set_experiment")
        return self._write(
            replace(self.policy, canary=None, canary_weight=0.0, experiment=experiment)
        )

    def set_shadow(self, candidate: str, percent: float, *, cause: Cause) -> bool:
        self.calls.append("set_shadow")
        return self._write(replace(self.policy, shadow=candidate, shadow_percent=percent))

    def reset(self, candidate: str, *, cause: Cause) -> bool:
        self.calls.append("reset")
        p = self.policy
        arms = [v.ref for v in p.experiment.variants] if p.experiment else []
        return self._write(
            replace(
                p,
                canary=None if p.canary == candidate else p.canary,
                canary_weight=0.0 if p.canary == candidate else p.canary_weight,
                preview=None if p.preview == candidate else p.preview,
                shadow=None if p.shadow == candidate else p.shadow,
                shadow_percent=0.0 if p.shadow == candidate else p.shadow_percent,
                experiment=None if candidate in arms else p.experiment,
            )
        )

    def promote_preview(self, candidate: str, *, cause: Cause) -> bool:
        self.calls.append("promote_preview")
        if self.policy.stable == candidate:
            if self.policy.preview != candidate:
                return False
            return self._write(replace(self.policy, preview=None))
        self._write(replace(self.policy, preview=candidate))
        switched = replace(self.policy, stable=candidate, preview=None)
        if switched.canary == candidate:
            switched = replace(switched, canary=None, canary_weight=0.0)
        self.stored = replace(switched, revision=self.policy.revision + 1)
        return True

    def promote(self, candidate: str, *, cause: Cause) -> bool:
        self.calls.append("promote")
        if self.policy.stable == candidate:
            return False
        if self.policy.canary == candidate:
            return self.promote_preview(candidate, cause=cause)
        self.stored = replace(self.stored, stable=candidate)  # an alias move: same revision
        return True

    def revert(self, stable: str, *, cause: Cause) -> bool:
        self.calls.append("revert")
        if self.policy.stable == stable:
            return False
        self.stored = replace(self.stored, stable=stable)
        return True


def _router_is_a_traffic_router(router: MemoryRouter) -> TrafficRouter:
    return router  # mypy checks that the fake has the protocol's methods


CANARY = parse_rollout({"name": "c", "strategy": {"canary": {"steps": [{"setWeight": 20}]}}})
EXPERIMENT = parse_rollout(
    {
        "name": "ab",
        "strategy": {
            "experiment": {
                "duration": "20s",
                "variants": [{"name": "A", "weight": 70}, {"name": "B", "weight": 30}],
                "decision": {"metric": "feedback_mean", "minSamples": 30},
            }
        },
    }
)


def state_of(spec: Any) -> RolloutState:
    return RolloutState(
        env="dev", name=spec.name, spec=spec, candidate=CANDIDATE, stable=STABLE, rollout_id=7
    )


def act(kind: ActionKind, value: float | None = None) -> Action:
    return Action(kind=kind, value=value)


# (rollout, actions, which of them change something)
SCRIPTS = {
    "canary promoted": (
        CANARY,
        [
            act("startAnalysis"),
            act("setWeight", 20),
            act("setWeight", 20),
            act("setShadow", 10),
            act("setWeight", 100),
            act("promoteAlias"),
            act("promoteAlias"),
            act("clearTraffic"),
            act("stopAnalysis"),
        ],
        [False, True, False, True, True, True, False, True, False],
    ),
    "canary aborted": (
        CANARY,
        [act("setWeight", 20), act("clearTraffic"), act("clearTraffic"), act("revertAlias")],
        [True, True, False, False],
    ),
    "blue-green promoted, then switched back": (
        CANARY,
        [
            act("setPreview"),
            act("setPreview"),
            act("promotePreview"),
            act("promotePreview"),
            act("revertAlias"),
            act("revertAlias"),
        ],
        [True, False, True, False, True, False],
    ),
    "promoted without a canary": (
        CANARY,
        [act("setShadow", 5), act("promoteAlias"), act("clearTraffic"), act("revertAlias")],
        [True, True, True, True],
    ),
    "experiment": (
        EXPERIMENT,
        [
            act("setWeight", 10),
            act("setExperiment"),
            act("setExperiment"),
            act("setShadow", 50),
            act("clearTraffic"),
        ],
        [True, True, False, True, True],
    ),
    "a canary ends the experiment": (
        EXPERIMENT,
        [act("setExperiment"), act("setWeight", 30), act("clearTraffic")],
        [True, True, True],
    ),
}


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with chat_registry(tmp_path / "registry.db") as reg:
        yield reg


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_the_registry_router_does_what_the_memory_router_does(
    registry: Registry, script: str
) -> None:
    spec, actions, changes = SCRIPTS[script]
    state = state_of(spec)
    memory = MemoryRouter()
    for action, changed in zip(actions, changes, strict=True):
        assert carry_out(memory, state, action) is changed, action.describe()
        assert execute(registry, state, action) is changed, action.describe()
        assert registry.get_traffic("dev") == memory.policy, action.describe()


def test_every_action_kind_is_carried_out() -> None:
    used = {a.kind for _, actions, _ in SCRIPTS.values() for a in actions}
    assert used == set(get_args(ActionKind))


def test_an_experiment_is_the_specs_variants_over_stable_and_candidate() -> None:
    memory = MemoryRouter()
    carry_out(memory, state_of(EXPERIMENT), act("setExperiment"))
    assert memory.calls == ["set_experiment"]
    experiment = memory.policy.experiment
    assert experiment is not None and experiment.name == "ab"
    assert [(v.name, v.ref, v.weight) for v in experiment.variants] == [
        ("A", STABLE, 70.0),
        ("B", CANDIDATE, 30.0),
    ]


def test_the_registry_router_keeps_who_and_why(registry: Registry) -> None:
    state = state_of(CANARY)
    execute(registry, state, act("setWeight", 20))
    execute(registry, state, Action(kind="promoteAlias", actor="ann", reason=""))
    changed = registry.events(kind="traffic.changed")
    # the canary at 20%, then the preview the switch goes through
    assert sorted(e.data["reason"] for e in changed) == ["promoteAlias", "setWeight 20"]
    history = registry.alias_history("dev", "production")
    assert (history[-1].to_ref, history[-1].actor) == (CANDIDATE, "ann")
    assert history[-1].reason == f"rollout c promoted {CANDIDATE}"
    execute(registry, state, Action(kind="revertAlias", reason="too slow"))
    assert registry.alias_history("dev", "production")[-1].reason == "too slow"


@dataclass
class Busy:
    """The registry with another writer changing the policy after each read."""

    registry: Registry

    def get_traffic(self, env: str) -> TrafficPolicy:
        policy = self.registry.get_traffic(env)
        other = policy.with_(shadow=STABLE, shadow_percent=policy.revision % 50 + 1)
        self.registry.set_traffic(env, other, actor="other", reason="busy")
        return policy

    def set_traffic(self, env: str, policy: TrafficPolicy, **kwargs: Any) -> TrafficPolicy:
        return self.registry.set_traffic(env, policy, **kwargs)

    def promote_preview(self, env: str, *, actor: str, reason: str) -> TrafficPolicy:
        return self.registry.promote_preview(env, actor=actor, reason=reason)

    def get_alias(self, env: str, alias: str) -> ReleaseRecord | None:
        return self.registry.get_alias(env, alias)

    def set_alias(self, env: str, alias: str, ref: str, *, actor: str, reason: str) -> object:
        return self.registry.set_alias(env, alias, ref, actor=actor, reason=reason)


def test_a_policy_that_keeps_changing_is_a_conflict(registry: Registry) -> None:
    """Another writer between each read and write: the router gives up after a few tries."""
    busy = Busy(registry)
    cause = Cause(actor="c", reason="r", alias_reason="a", label="setWeight 20")
    with pytest.raises(ConflictError, match="kept changing; setWeight 20 is tried again"):
        RegistryTrafficRouter(busy, "dev").set_weight(CANDIDATE, 20.0, cause=cause)
    assert registry.get_traffic("dev").canary is None
