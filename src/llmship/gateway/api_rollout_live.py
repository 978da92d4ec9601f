"""This gateway's own figures per version over the last seconds, for the dashboard's live
charts (``GET /api/v1/live``).

The versions are those of the gateway's current traffic policy (stable, canary,
preview, shadow, each experiment arm) and of its routing flags, plus any release of
the environment that still answered in the window (the old stable just after a
promotion). The figures come from the gateway's in-memory window (what
``GET /api/v1/stats`` reads), the ratings from the registry's feedback.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta, timezone

from pydantic import BaseModel, Field

from llmship.analysis.stats import VersionStats, quantile
from llmship.gateway.api_rollout_views import weights_by_ref
from llmship.gateway.state import Snapshot
from llmship.gateway.store import GatewayStore
from llmship.gateway.window import WindowStats
from llmship.routing.policy import TrafficPolicy

__all__ = ["LiveVersion", "LiveView", "Share", "live_view", "shares"]


class LiveVersion(BaseModel):
    """One version's (or one experiment arm's) figures over the window."""

    ref: str = Field(description="NAME@VERSION.")
    variant: str | None = Field(description="The experiment arm or routing flag, if any.")
    role: str = Field(
        description="`stable`, `canary`, `preview`, `shadow`, `arm` (an experiment's), "
        "`flag` (a routing flag's release) or `other` (no longer in the policy)."
    )
    weight: float | None = Field(description="Its share of ordinary traffic (percent), if any.")
    requests: int = Field(description="Requests it answered or failed in the window.")
    requests_per_s: float = Field(description="`requests` / window.")
    error_rate: float | None = Field(description="Errors / requests; null without requests.")
    p50_s: float | None = Field(description="Median end-to-end latency of its successes.")
    p95_s: float | None = Field(description="95th percentile end-to-end latency.")
    ttft_p50_s: float | None = Field(description="Median time to first token (streamed).")
    tokens_per_s: float | None = Field(description="Mean completion tokens per second.")
    mean_rating: float | None = Field(description="Mean feedback rating (1..5) in the window.")
    ratings: int = Field(description="How many ratings that mean is of.")


class LiveView(BaseModel):
    """What this gateway saw over the last `window` seconds."""

    env: str = Field(description="This gateway's environment.")
    at: float = Field(description="When the figures were taken (epoch seconds).")
    window: float = Field(description="The window in seconds.")
    versions: list[LiveVersion] = Field(description="One entry per version or arm.")


Share = tuple[str, str | None, str, float | None]
"""``(ref, variant, role, weight)`` of one entry."""


def shares(policy: TrafficPolicy, snapshot: Snapshot | None) -> list[Share]:
    """The entries the policy (and the routing flags) give, without repeats of
    ``(ref, variant)``: stable (unless an experiment arm serves it), the canary, each
    arm, the preview, the shadow, each routing flag's release."""
    weights = weights_by_ref(policy)
    found: list[Share] = []
    arms = policy.experiment.variants if policy.experiment else ()
    for arm in arms:
        found.append((arm.ref, arm.name, "arm", arm.weight))
    if policy.stable and policy.stable not in {a.ref for a in arms}:
        found.append((policy.stable, None, "stable", weights.get(policy.stable, 0.0)))
    if policy.canary:
        found.append((policy.canary, None, "canary", policy.canary_weight))
    if policy.preview:
        found.append((policy.preview, None, "preview", None))
    if policy.shadow:
        found.append((policy.shadow, None, "shadow", None))
    for flag in snapshot.routing_flags if snapshot is not None else ():
        if flag.release:
            found.append((flag.release, flag.name, "flag", None))
    seen: set[tuple[str, str | None]] = set()
    unique = []
    for share in found:
        if share[:2] not in seen:
            seen.add(share[:2])
            unique.append(share)
    return unique


def live_view(
    store: GatewayStore,
    env: str,
    window: WindowStats,
    policy: TrafficPolicy,
    snapshot: Snapshot | None,
    window_s: float,
) -> LiveView:
    """The figures of every version of :func:`shares`, and of the environment's other
    live releases (the gateway's snapshot of the model servers) that answered in the
    window (blocking: it reads the registry's feedback)."""
    entries = shares(policy, snapshot)
    known = {ref for ref, *_ in entries}
    live = snapshot.endpoints if snapshot is not None else {}
    others = dict.fromkeys(ref for ref in live if ref not in known)
    since = datetime.now(timezone.utc) - timedelta(seconds=window_s)
    stats: dict[str, VersionStats] = {}
    for ref in [*known, *others]:
        ratings = [
            f.value for f in store.list_feedback(env, ref, since=since) if f.kind == "rating"
        ]
        stats[ref] = window.stats(ref, window_s, ratings=ratings)
    entries += [(ref, None, "other", None) for ref in others if stats[ref].requests > 0]
    versions = [_version(share, stats[share[0]], window_s) for share in entries]
    return LiveView(env=env, at=time.time(), window=window_s, versions=versions)


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value


def _version(share: Share, s: VersionStats, window_s: float) -> LiveVersion:
    ref, variant, role, weight = share
    return LiveVersion(
        ref=ref,
        variant=variant,
        role=role,
        weight=weight,
        requests=s.requests,
        requests_per_s=s.requests / window_s,
        error_rate=_number(s.error_rate),
        p50_s=_number(quantile(s.latencies, 0.5)),
        p95_s=_number(quantile(s.latencies, 0.95)),
        ttft_p50_s=_number(quantile(s.ttfts, 0.5)),
        tokens_per_s=_number(s.tokens_per_second),
        mean_rating=sum(s.ratings) / len(s.ratings) if s.ratings else None,
        ratings=len(s.ratings),
    )
