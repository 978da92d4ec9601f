"""The controller's traffic router: the one way a rollout changes where requests go.

Modelled on Argo Rollouts' traffic routers (``TrafficRoutingReconciler``:
``SetWeight``, ``SetHeaderRoute``, ``SetMirrorRoute``, ``RemoveManagedRoutes``):
:class:`TrafficRouter` is the small interface ``rollout/actions.py`` calls, and
:class:`RegistryTrafficRouter` implements it on the registry's traffic policy and
``production`` alias. Tests drive the same actions through an in-memory router.

Every method is idempotent: it reads first and writes only when something must
change, and says whether it changed anything, so an action carried out twice
(after a controller died between doing it and recording that it was done)
changes nothing the second time. Traffic policy writes name the revision they
read and try again when someone else wrote meanwhile. The controller passes a
registry fenced by its lease (``Registry.fenced``): a write refused because
another controller leads now (``FencedError``) is never retried here, nor one the
promotion guard refused (``GateError``: the registry admits the candidate of the
rollout running, so it means the rollout was aborted meanwhile).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from llmship.errors import ConflictError, FencedError, GateError
from llmship.registry.records import ReleaseRecord
from llmship.routing.policy import Experiment, TrafficPolicy
from llmship.routing.store import TrafficPolicies

__all__ = ["PRODUCTION", "Cause", "RegistryTrafficRouter", "TrafficRegistry", "TrafficRouter"]

log = logging.getLogger(__name__)

PRODUCTION = "production"
POLICY_ATTEMPTS = 5


@dataclass(frozen=True)
class Cause:
    """Who changes traffic and why, for the traffic events and the alias history."""

    actor: str
    reason: str
    """Kept with a traffic policy change."""
    alias_reason: str
    """Kept in the ``production`` alias history when the alias moves."""
    label: str
    """The change in a few words (``setWeight 20``), for messages."""


class TrafficRouter(Protocol):
    """Where one environment's requests go, as the controller changes it.

    Each method returns True when it changed something, False when it was
    already so.
    """

    def set_weight(self, candidate: str, weight: float, *, cause: Cause) -> bool:
        """The canary ``candidate`` gets ``weight`` percent (an experiment ends)."""
        ...

    def set_preview(self, candidate: str, *, cause: Cause) -> bool:
        """``candidate`` answers the preview route (``X-Llmship-Variant: preview``)."""
        ...

    def set_experiment(self, experiment: Experiment, *, cause: Cause) -> bool:
        """``experiment`` splits the users (a canary ends)."""
        ...

    def set_shadow(self, candidate: str, percent: float, *, cause: Cause) -> bool:
        """``percent`` of the requests are mirrored to ``candidate``."""
        ...

    def reset(self, candidate: str, *, cause: Cause) -> bool:
        """``candidate`` leaves every role in one change (no canary, preview,
        experiment or shadow of it): all its requests go back to stable at once."""
        ...

    def promote_preview(self, candidate: str, *, cause: Cause) -> bool:
        """Blue-green switch: ``production`` moves to ``candidate`` and the preview
        ends, in one change."""
        ...

    def promote(self, candidate: str, *, cause: Cause) -> bool:
        """``production`` moves to ``candidate``; a canary of it ends with the move."""
        ...

    def revert(self, stable: str, *, cause: Cause) -> bool:
        """``production`` moves back to ``stable``."""
        ...


class TrafficRegistry(TrafficPolicies, Protocol):
    """What :class:`RegistryTrafficRouter` calls (``Registry`` and its fenced view have it):
    the policies and the aliases."""

    def get_alias(self, env: str, alias: str) -> ReleaseRecord | None: ...

    def set_alias(self, env: str, alias: str, ref: str, *, actor: str, reason: str) -> object: ...


class RegistryTrafficRouter:
    """:class:`TrafficRouter` on the registry: the traffic policy and the
    ``production`` alias of ``env``."""

    def __init__(self, registry: TrafficRegistry, env: str) -> None:
        self.registry = registry
        self.env = env

    def set_weight(self, candidate: str, weight: float, *, cause: Cause) -> bool:
        """See :meth:`TrafficRouter.set_weight`."""
        return self._update(
            lambda p: replace(p, canary=candidate, canary_weight=weight, experiment=None), cause
        )

    def set_preview(self, candidate: str, *, cause: Cause) -> bool:
        """See :meth:`TrafficRouter.set_preview`."""
        return self._update(lambda p: replace(p, preview=candidate), cause)

    def set_experiment(self, experiment: Experiment, *, cause: Cause) -> bool:
        """See :meth:`TrafficRouter.set_experiment`."""
        return self._update(
            lambda p: replace(p, canary=None, canary_weight=0.0, experiment=experiment), cause
        )

    def set_shadow(self, candidate: str, percent: float, *, cause: Cause) -> bool:
        """See :meth:`TrafficRouter.set_shadow`."""
        return self._update(lambda p: replace(p, shadow=candidate, shadow_percent=percent), cause)

    def reset(self, candidate: str, *, cause: Cause) -> bool:
        """See :meth:`TrafficRouter.reset`."""
        return self._update(lambda p: p.without(candidate), cause)

    def promote_preview(self, candidate: str, *, cause: Cause) -> bool:
        """See :meth:`TrafficRouter.promote_preview`: the preview is set to
        ``candidate`` first (when it is not yet), then switched in one transaction."""
        if self._production() == candidate:
            return self._update(
                lambda p: replace(p, preview=None) if p.preview == candidate else p, cause
            )
        self._update(lambda p: replace(p, preview=candidate), cause)
        self.registry.promote_preview(self.env, actor=cause.actor, reason=cause.alias_reason)
        return True

    def promote(self, candidate: str, *, cause: Cause) -> bool:
        """See :meth:`TrafficRouter.promote`. A canary of the candidate ends in the
        same transaction (through the preview route), so no stale canary stays stored."""
        if self._production() == candidate:
            return False
        if self.registry.get_traffic(self.env).canary == candidate:
            return self.promote_preview(candidate, cause=cause)
        self._move(candidate, cause)
        return True

    def revert(self, stable: str, *, cause: Cause) -> bool:
        """See :meth:`TrafficRouter.revert`."""
        if self._production() == stable:
            return False
        self._move(stable, cause)
        return True

    def _production(self) -> str | None:
        record = self.registry.get_alias(self.env, PRODUCTION)
        return record.ref if record is not None else None

    def _move(self, ref: str, cause: Cause) -> None:
        self.registry.set_alias(
            self.env, PRODUCTION, ref, actor=cause.actor, reason=cause.alias_reason
        )

    def _update(self, change: Callable[[TrafficPolicy], TrafficPolicy], cause: Cause) -> bool:
        """Write ``change`` of the policy, naming the revision read; False when unchanged."""
        env = self.env
        for _ in range(POLICY_ATTEMPTS):
            policy = self.registry.get_traffic(env)
            desired = change(policy)
            if desired == policy:
                return False
            try:
                self.registry.set_traffic(
                    env,
                    desired,
                    actor=cause.actor,
                    reason=cause.reason,
                    expected_revision=policy.revision,
                )
                return True
            except (FencedError, GateError):  # not a lost race: trying again changes nothing
                raise
            except ConflictError:
                log.info("the traffic policy of %s changed meanwhile; reading it again", env)
        raise ConflictError(
            f"the traffic policy of {env} kept changing; {cause.label} is tried again "
            "on the next pass"
        )
