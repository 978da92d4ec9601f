"""Routing decisions: pure functions of the policy, the request's key and an RNG."""

from __future__ import annotations

import random
from dataclasses import dataclass

from llmship.routing.policy import TrafficPolicy
from llmship.routing.sticky import BUCKETS, bucket


@dataclass(frozen=True)
class Route:
    """Where one request goes."""

    variant: str
    """``stable``, ``canary``, ``preview``, an experiment variant, or ``flag-<name>``."""
    ref: str
    sticky: bool = False
    """Assigned by hashing the user's key (stays the same for that user)."""
    keyed: bool = True
    """False for an experiment request without a user key (assigned at random)."""


class NoReleaseError(LookupError):
    """The policy names no release to send the request to."""


def choose(
    policy: TrafficPolicy,
    *,
    user_key: str | None,
    wants_preview: bool,
    rng: random.Random,
) -> Route:
    """The release that answers a request.

    Preview requests (``X-Llmship-Variant: preview``) go to the preview when one
    is set; an experiment assigns by a sticky hash of the user key (random, and
    counted apart, without one); a canary takes its weight at random; the rest
    goes to stable.
    """
    if wants_preview and policy.preview:
        return Route("preview", policy.preview)
    if policy.experiment:
        ranges = policy.experiment.ranges()
        if user_key:
            point, keyed = bucket(user_key, policy.experiment.name), True
        else:
            point, keyed = rng.randrange(BUCKETS), False
        for variant, lo, hi in ranges:
            if lo <= point < hi:
                return Route(variant.name, variant.ref, sticky=keyed, keyed=keyed)
    if policy.canary and policy.canary_weight > 0 and rng.random() * 100 < policy.canary_weight:
        return Route("canary", policy.canary)
    if policy.stable:
        return Route("stable", policy.stable)
    raise NoReleaseError(f"env {policy.env!r} has no production release to route to")


def mirror(policy: TrafficPolicy, rng: random.Random) -> str | None:
    """The shadow release to mirror this request to, or None."""
    if policy.shadow and policy.shadow_percent > 0 and rng.random() * 100 < policy.shadow_percent:
        return policy.shadow
    return None
