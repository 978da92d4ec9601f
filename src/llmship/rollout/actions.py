"""Carrying out the state machine's actions through a traffic router, idempotently.

Each action kind maps to one call of the :class:`TrafficRouter`
(``rollout/traffic_router.py``), which reads what is there first and writes only
when something must change; :func:`execute` does it on the registry.
"""

from __future__ import annotations

from collections.abc import Callable

from llmship.errors import InvalidRequestError
from llmship.registry import Registry
from llmship.rollout.state import Action, ActionKind, RolloutState
from llmship.rollout.traffic_router import (
    PRODUCTION,
    Cause,
    RegistryTrafficRouter,
    TrafficRouter,
)
from llmship.routing.policy import Experiment, Variant

__all__ = ["PRODUCTION", "carry_out", "execute"]

Step = Callable[[TrafficRouter, RolloutState, Action, Cause], bool]
"""One action kind as a call of the router: ``(router, state, action, cause)``."""

_STEPS: dict[ActionKind, Step] = {
    "setWeight": lambda r, s, a, c: r.set_weight(s.candidate, a.value or 0.0, cause=c),
    "setPreview": lambda r, s, a, c: r.set_preview(s.candidate, cause=c),
    "setExperiment": lambda r, s, a, c: r.set_experiment(_experiment(s), cause=c),
    "setShadow": lambda r, s, a, c: r.set_shadow(s.candidate, a.value or 0.0, cause=c),
    "clearTraffic": lambda r, s, a, c: r.reset(s.candidate, cause=c),
    "promotePreview": lambda r, s, a, c: r.promote_preview(s.candidate, cause=c),
    "promoteAlias": lambda r, s, a, c: r.promote(s.candidate, cause=c),
    "revertAlias": lambda r, s, a, c: s.stable is not None and r.revert(s.stable, cause=c),
    "startAnalysis": lambda r, s, a, c: False,  # bookkeeping only: the controller runs it
    "stopAnalysis": lambda r, s, a, c: False,
}


def execute(registry: Registry, state: RolloutState, action: Action) -> bool:
    """Carry out ``action`` for the rollout ``state`` on the registry (the policy and
    ``production`` alias of its env); True when something changed."""
    return carry_out(RegistryTrafficRouter(registry, state.env), state, action)


def carry_out(router: TrafficRouter, state: RolloutState, action: Action) -> bool:
    """Carry out ``action`` for the rollout ``state`` through ``router``; True when
    something changed."""
    step = _STEPS.get(action.kind)
    if step is None:  # pragma: no cover - ActionKind is closed
        raise ValueError(f"unknown action {action.kind!r}")
    return step(router, state, action, _cause(state, action))


def _cause(state: RolloutState, action: Action) -> Cause:
    """Who carries out ``action`` and why: its own reason, or one that names it."""
    if action.kind == "revertAlias":
        moved = f"rollout {state.name} switched back to {state.stable}"
    else:
        moved = f"rollout {state.name} promoted {state.candidate}"
    return Cause(
        actor=action.actor,
        reason=action.reason or action.describe(),
        alias_reason=action.reason or moved,
        label=action.describe(),
    )


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
