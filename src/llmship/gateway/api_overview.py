"""An environment at a glance for the dashboard: the environments, one environment's
production, running rollout and traffic split, and the live per-version figures."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from llmship.environments import load_environments
from llmship.gateway.api_common import (
    READ_ERRORS,
    actor,
    gateway_of,
    identity,
    registry_of,
    require_reader,
    require_token,
)
from llmship.gateway.api_rollout_detail import rollout_detail
from llmship.gateway.api_rollout_live import LiveView, live_view
from llmship.gateway.api_rollout_views import (
    EventView,
    ReleaseBrief,
    RolloutDetail,
    RolloutSummary,
    brief_of,
    event_view,
    summary_of,
    weights_by_ref,
)
from llmship.registry import Registry
from llmship.rollout.actions import PRODUCTION

router = APIRouter(prefix="/api/v1", tags=["dashboard"], responses=READ_ERRORS)

OVERVIEW_EVENTS = 20
"""How many of the environment's latest events the overview shows."""


class WhoAmI(BaseModel):
    """Who a token makes the caller."""

    name: str = Field(description="The token's name (`admin-api` for LLMSHIP_ADMIN_TOKEN).")
    actor: str = Field(
        description="Who changes are recorded as: the token's name, with "
        "`X-Llmship-Actor` as a display name after it."
    )
    role: str = Field(
        description="`read` (reads only), `operator` (also acts on rollouts, traffic and "
        "flags) or `admin` (also forces past the gates)."
    )


@router.get(
    "/whoami",
    response_model=WhoAmI,
    summary="Check a token",
    dependencies=[Depends(require_token)],
)
async def whoami(request: Request) -> WhoAmI:
    """200 with any of the gateway's tokens, saying whose it is and its role; 401
    without one, 403 with a wrong one. The dashboard asks this when a token is entered."""
    who = identity(request)
    assert who is not None  # require_token checked it
    return WhoAmI(name=who.name, actor=actor(request), role=who.role.label)


class EnvironmentView(BaseModel):
    """One environment: its rules, its production release, its running rollout."""

    name: str = Field(description="The environment's name.")
    gateway_port: int | None = Field(
        description="Its gateway's port: for this gateway's environment the port this "
        "request reached, for the others the one llmship.yaml gives, if any."
    )
    approval: bool = Field(description="Promotions into it wait for a person's approval.")
    reason_required: bool = Field(description="Traffic and alias changes here must say why.")
    production: str | None = Field(description="NAME@VERSION of its production release.")
    active_rollout: RolloutSummary | None = Field(description="Its running rollout, if any.")


class EnvironmentsView(BaseModel):
    """The environments, in promotion order."""

    current: str = Field(description="This gateway's environment.")
    items: list[EnvironmentView] = Field(
        description="Those llmship.yaml declares, in promotion order, then any other "
        "environment that has aliases or rollouts in the registry."
    )


@router.get(
    "/environments",
    response_model=EnvironmentsView,
    summary="The environments with their production release and running rollout",
    dependencies=[Depends(require_reader)],
)
async def environments(request: Request) -> EnvironmentsView:
    """The environments of llmship.yaml (its defaults without one), plus those the
    registry knows of, each with its production release and running rollout."""
    registry = registry_of(request)
    current = gateway_of(request).env
    here = request.url.port
    items = await asyncio.to_thread(_environments, registry, current, here)
    return EnvironmentsView(current=current, items=items)


def _environments(registry: Registry, current: str, here: int | None) -> list[EnvironmentView]:
    declared = load_environments()
    aliases = registry.list_aliases()
    production = {a.env: a.ref for a in aliases if a.alias == PRODUCTION}
    rollouts, _ = registry.page_rollouts(limit=500)
    known = {a.env for a in aliases} | {r.env for r in rollouts}
    names = list(declared.names) + sorted(known - set(declared.names))
    views = []
    for name in names:
        env = declared.get(name)
        running = registry.active_rollout(name)
        views.append(
            EnvironmentView(
                name=name,
                gateway_port=here if name == current and here else env.gateway_port,
                approval=env.approval,
                reason_required=env.needs_reason,
                production=production.get(name),
                active_rollout=summary_of(running) if running is not None else None,
            )
        )
    return views


class AliasView(BaseModel):
    """One alias of the environment."""

    alias: str = Field(description="e.g. `production`, `staging`.")
    ref: str = Field(description="NAME@VERSION it points at.")


class EndpointView(BaseModel):
    """A live model server of the environment."""

    ref: str = Field(description="NAME@VERSION it serves.")
    url: str = Field(description="Its base URL.")
    heartbeat_at: str = Field(description="Its last heartbeat (ISO-8601, UTC).")


class OverviewView(BaseModel):
    """One environment at a glance."""

    env: str = Field(description="The environment.")
    production: ReleaseBrief | None = Field(description="Its production release, if any.")
    aliases: list[AliasView] = Field(description="Its aliases, by name.")
    rollout: RolloutDetail | None = Field(description="The running rollout, if any.")
    last_rollout: RolloutSummary | None = Field(description="The newest finished rollout.")
    traffic: dict[str, Any] | None = Field(description="Its traffic policy.")
    weights: dict[str, float] | None = Field(
        description="Share of ordinary traffic (percent) per release, NAME@VERSION."
    )
    endpoints: list[EndpointView] = Field(description="Its live model servers.")
    events: list[EventView] = Field(description="Its latest events, newest first.")


@router.get(
    "/overview",
    response_model=OverviewView,
    summary="One environment at a glance",
    dependencies=[Depends(require_reader)],
)
async def overview(
    request: Request,
    env: str | None = Query(None, description="The environment (default: this gateway's)."),
) -> OverviewView:
    """Production, aliases, the running rollout (in full) and the last one, the traffic
    split, the live model servers and the latest events of `env`."""
    gateway = gateway_of(request)
    registry = registry_of(request)
    max_age = gateway.settings.endpoint_max_age
    return await asyncio.to_thread(_overview, registry, env or gateway.env, max_age)


def _overview(registry: Registry, env: str, max_age: float) -> OverviewView:
    events = registry.env_events(env, limit=OVERVIEW_EVENTS)  # checks the name first
    production = registry.get_alias(env, PRODUCTION)
    running = registry.active_rollout(env)
    finished, _ = registry.page_rollouts(env, active=False, limit=1)
    policy = registry.get_traffic(env)
    return OverviewView(
        env=env,
        production=brief_of(production) if production is not None else None,
        aliases=[AliasView(alias=a.alias, ref=a.ref) for a in registry.list_aliases(env)],
        rollout=rollout_detail(registry, running) if running is not None else None,
        last_rollout=summary_of(finished[0]) if finished else None,
        traffic=policy.to_dict(),
        weights=weights_by_ref(policy),
        endpoints=[
            EndpointView(ref=e.ref, url=e.url, heartbeat_at=e.heartbeat_at.isoformat())
            for e in registry.list_endpoints(env, max_age_s=max_age)
        ],
        events=[event_view(e) for e in events],
    )


@router.get(
    "/live",
    response_model=LiveView,
    summary="This gateway's live figures per version",
    dependencies=[Depends(require_reader)],
)
async def live(
    request: Request,
    window: float = Query(10.0, ge=1, le=3600, description="Seconds to look back (1..3600)."),
) -> LiveView:
    """What this gateway saw over the last `window` seconds, per version of its traffic
    policy (and per experiment arm): requests/s, error rate, p50/p95 latency, TTFT,
    tokens/s and the mean feedback rating. The dashboard polls it."""
    gateway = gateway_of(request)
    snapshot = gateway.state.snapshot
    store = gateway.store
    policy = snapshot.policy if snapshot is not None else None
    if policy is None:
        policy = await asyncio.to_thread(registry_of(request).get_traffic, gateway.env)
    return await asyncio.to_thread(
        live_view, store, gateway.env, gateway.metrics.window, policy, snapshot, window
    )
