"""Carrying out the state machine's actions against the registry, idempotently.

Each function reads what is there first and writes only when something must
change, so an action carried out twice (after a controller died between doing
it and recording that it was done) changes nothing the second time. Traffic
policy writes name the revision they read and try again when someone else
wrote meanwhile. The controller passes a registry fenced by its lease
(``Registry.fenced``): a write refused because another controller leads now
(``FencedError``) is never retried here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from llmship.errors import ConflictError, FencedError, InvalidRequestError
from llmship.registry import Registry
from llmship.rollout.state import Action, RolloutState
from llmship.routing.policy import Experiment, TrafficPolicy, Variant

__all__ = ["PRODUCTION", "execute"]

log = logging.getLogger(__name__)

PRODUCTION = "production"
POLICY_ATTEMPTS = 5


def execute(registry: Registry, state: RolloutState, action: Action) -> bool:
    """Carry out ``action`` for the rollout ``state``; True when something changed."""
    kind = action.kind
    if kind in ("startAnalysis", "stopAnalysis"):
        return False
    if kind == "promoteAlias":
        return _promote_alias(registry, state, action)
    if kind == "promotePreview":
        return _promote_preview(registry, state, action)
    if kind == "revertAlias":
        return _revert_alias(registry, state, action)
    change = _policy_change(state, action)
    return _update_policy(registry, state.env, change, action)


def _policy_change(state: RolloutState, action: Action) -> Callable[[TrafficPolicy], TrafficPolicy]:
    candidate = state.candidate
    if action.kind == "setWeight":
        weight = float(action.value or 0.0)
        return lambda p: replace(p, canary=candidate, canary_weight=weight, experiment=None)
    if action.kind == "setPreview":
        return lambda p: replace(p, preview=candidate)
    if action.kind == "setShadow":
        percent = float(action.value or 0.0)
        return lambda p: replace(p, shadow=candidate, shadow_percent=percent)
    if action.kind == "setExperiment":
        experiment = _experiment(state)
        return lambda p: replace(p, canary=None, canary_weight=0.0, experiment=experiment)
    if action.kind == "clearTraffic":
        return lambda p: _without(p, candidate)
    raise ValueError(f"unknown action {action.kind!r}")  # pragma: no cover


def _experiment(state: RolloutState) -> Experiment:
    strategy = state.spec.strategy.experiment
    if strategy is None or state.stable is None:
        raise InvalidRequestError(
            f"rollout {state.name}: an experiment needs an experiment strategy and a stable release"
        )
    variants = tuple(
        Variant(v.name, state.candidate if release == "candidate" else state.stable, v.weight)
        for v, release in zip(strategy.variants, strategy.releases(), strict=True)
    )
    return Experiment(name=state.name, variants=variants)


def _without(policy: TrafficPolicy, ref: str) -> TrafficPolicy:
    """``policy`` with ``ref`` in no role (canary weight 0, no preview, experiment or shadow)."""
    changed = policy
    if changed.canary == ref:
        changed = replace(changed, canary=None, canary_weight=0.0)
    if changed.preview == ref:
        changed = replace(changed, preview=None)
    if changed.shadow == ref:
        changed = replace(changed, shadow=None, shadow_percent=0.0)
    if changed.experiment and any(v.ref == ref for v in changed.experiment.variants):
        changed = replace(changed, experiment=None)
    return changed


def _update_policy(
    registry: Registry,
    env: str,
    change: Callable[[TrafficPolicy], TrafficPolicy],
    action: Action,
) -> bool:
    for _ in range(POLICY_ATTEMPTS):
        policy = registry.get_traffic(env)
        desired = change(policy)
        if desired == policy:
            return False
        try:
            registry.set_traffic(
                env,
                desired,
                actor=action.actor,
                reason=action.reason or action.describe(),
                expected_revision=policy.revision,
            )
            return True
        except FencedError:
            raise
        except ConflictError:
            log.info("the traffic policy of %s changed meanwhile; reading it again", env)
    raise ConflictError(
        f"the traffic policy of {env} kept changing; {action.describe()} is tried again "
        "on the next pass"
    )


def _production(registry: Registry, env: str) -> str | None:
    record = registry.get_alias(env, PRODUCTION)
    return record.ref if record is not None else None


def _promote_alias(registry: Registry, state: RolloutState, action: Action) -> bool:
    """``production`` to the candidate. A canary of the candidate ends in the same
    transaction (through the preview route), so no stale canary stays stored."""
    if _production(registry, state.env) == state.candidate:
        return False
    if registry.get_traffic(state.env).canary == state.candidate:
        return _promote_preview(registry, state, action)
    registry.set_alias(
        state.env,
        PRODUCTION,
        state.candidate,
        actor=action.actor,
        reason=action.reason or f"rollout {state.name} promoted {state.candidate}",
    )
    return True


def _promote_preview(registry: Registry, state: RolloutState, action: Action) -> bool:
    """Switch ``production`` to the candidate with the preview (one transaction)."""
    candidate = state.candidate
    reason = action.reason or f"rollout {state.name} promoted {candidate}"
    if _production(registry, state.env) == candidate:
        return _update_policy(
            registry,
            state.env,
            lambda p: replace(p, preview=None) if p.preview == candidate else p,
            action,
        )
    _update_policy(registry, state.env, lambda p: replace(p, preview=candidate), action)
    registry.promote_preview(state.env, actor=action.actor, reason=reason)
    return True


def _revert_alias(registry: Registry, state: RolloutState, action: Action) -> bool:
    """``production`` back to the stable release the rollout started from."""
    if state.stable is None or _production(registry, state.env) == state.stable:
        return False
    registry.set_alias(
        state.env,
        PRODUCTION,
        state.stable,
        actor=action.actor,
        reason=action.reason or f"rollout {state.name} switched back to {state.stable}",
    )
    return True
