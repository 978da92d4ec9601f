"""HTTP <-> Python for the admin API under ``/api/v1/`` (bearer token required)."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from llmship.environments import Environment, load_environments
from llmship.errors import InvalidRequestError, NotFoundError
from llmship.flags.model import FLAG_NAME
from llmship.gateway import admin
from llmship.gateway.alert_actions import handle_webhook
from llmship.gateway.alerts import WEBHOOK_SCHEMA, parse_webhook
from llmship.gateway.api_common import actor, require_force, require_operator, require_token
from llmship.gateway.discovery import TargetGroup, scrape_targets
from llmship.gateway.feedback import one_per_user
from llmship.gateway.protocol import (
    Deleted,
    FlagBody,
    FlagList,
    FlagView,
    PromoteRequest,
    ToggleResponse,
    TrafficUpdate,
    TrafficView,
)
from llmship.names import REF_PATTERN
from llmship.registry import traffic_ops
from llmship.registry.records import NO_REASON
from llmship.wire import ErrorResponse

if TYPE_CHECKING:
    from llmship.gateway.app import Gateway


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Invalid change: the message says what to fix."},
    401: {"model": ErrorResponse, "description": "No `Authorization: Bearer <token>`."},
    403: {"model": ErrorResponse, "description": "A wrong token."},
    404: {"model": ErrorResponse, "description": "Unknown release or flag."},
    409: {"model": ErrorResponse, "description": "`expected_revision` is not the stored one."},
    503: {"model": ErrorResponse, "description": "No admin token configured, or no registry."},
}

FlagName = Path(
    description="The flag's name: a lower-case letter, then letters, digits, `_`, `-` or `.`.",
    json_schema_extra={"pattern": FLAG_NAME.pattern},
)
"""A flag's name in a path (the pattern documented; the flag's own check says what to fix)."""

router = APIRouter(
    prefix="/api/v1",
    tags=["admin"],
    dependencies=[Depends(require_token)],
    responses=ADMIN_ERRORS,
)


async def _changed(gateway: Gateway) -> None:
    """Pick a change up at once (other gateways do within the refresh interval)."""
    await asyncio.to_thread(gateway.state.refresh)


@router.get("/traffic", response_model=TrafficView, summary="The traffic policy")
async def get_traffic(request: Request) -> TrafficView:
    """The environment's policy, its revision, and the live model server of each release."""
    gateway = _gateway(request)
    return await asyncio.to_thread(
        admin.traffic_view,
        gateway.store,
        gateway.env,
        endpoint_max_age=gateway.settings.endpoint_max_age,
    )


@router.get(
    "/targets",
    response_model=list[TargetGroup],
    summary="Model servers to scrape (Prometheus HTTP service discovery)",
)
async def targets(request: Request) -> list[TargetGroup]:
    """Every live model server of the environment as the gateway last read them, one
    target group each, labelled `env`, `release` and `replica`: the format of
    Prometheus' `http_sd_configs` (give it the admin token in `authorization`)."""
    gateway = _gateway(request)
    snapshot = gateway.state.snapshot
    return scrape_targets(gateway.env, snapshot.endpoints if snapshot else {})


@router.put(
    "/traffic",
    response_model=TrafficView,
    summary="Replace the traffic policy",
    dependencies=[Depends(require_operator)],
)
async def put_traffic(body: TrafficUpdate, request: Request) -> TrafficView:
    """Replace the whole policy (fields left out are cleared); `stable` stays the
    `production` alias. With `expected_revision`, 409 if the policy changed meanwhile.
    409 (`gates_missing`) when it gives a release all of the traffic (or more than the
    environment's `guard_above` percent) without the gates `llmship.yaml` requires,
    unless `force` (with a `reason`; role admin)."""
    gateway = _gateway(request)
    if body.force:
        require_force(request)
    await asyncio.to_thread(
        traffic_ops.set_policy,
        gateway.store,
        gateway.env,
        body.policy(gateway.env),
        actor=actor(request),
        reason=body.reason,
        expected_revision=body.expected_revision,
        force=body.force,
    )
    await _changed(gateway)
    return await get_traffic(request)


@router.post(
    "/traffic/promote-preview",
    response_model=TrafficView,
    summary="Blue-green switch",
    dependencies=[Depends(require_operator)],
)
async def promote_preview(body: PromoteRequest, request: Request) -> TrafficView:
    """Point `production` at the preview and clear the preview, in one transaction.
    409 (`gates_missing`) when `llmship.yaml` requires gates the preview has not passed,
    unless `force` (recorded as a `gate.forced` event; only a token of role admin may
    force)."""
    gateway = _gateway(request)
    if body.force:
        require_force(request)
    await asyncio.to_thread(
        traffic_ops.promote_preview,
        gateway.store,
        gateway.env,
        force=body.force,
        actor=actor(request),
        reason=body.reason,
    )
    await _changed(gateway)
    return await get_traffic(request)


@router.delete(
    "/traffic",
    response_model=TrafficView,
    summary="Reset the traffic policy",
    dependencies=[Depends(require_operator)],
)
async def reset_traffic(
    request: Request,
    reason: str | None = Query(
        None, description=f"Why: recorded with the change (default: {NO_REASON!r})."
    ),
) -> TrafficView:
    """Clear canary, preview, experiment and shadow: all traffic to stable."""
    gateway = _gateway(request)
    await asyncio.to_thread(
        traffic_ops.reset,
        gateway.store,
        gateway.env,
        actor=actor(request),
        reason=reason,
    )
    await _changed(gateway)
    return await get_traffic(request)


@router.get("/flags", response_model=FlagList, summary="Every flag")
async def list_flags(request: Request) -> FlagList:
    """The environment's flags, by name."""
    gateway = _gateway(request)
    flags = await asyncio.to_thread(gateway.store.list_flags, gateway.env)
    return FlagList(data=[FlagView.of(f) for f in flags])


@router.put(
    "/flags/{name}",
    response_model=FlagView,
    summary="Create or replace a flag",
    dependencies=[Depends(require_operator)],
)
async def put_flag(body: FlagBody, request: Request, name: str = FlagName) -> FlagView:
    """The whole flag: `enabled`, `percent`, `conditions`, `release`."""
    gateway = _gateway(request)
    flag = await asyncio.to_thread(
        admin.put_flag,
        gateway.store,
        gateway.env,
        name,
        body,
        actor=actor(request),
    )
    await _changed(gateway)
    return FlagView.of(flag)


@router.delete(
    "/flags/{name}",
    response_model=Deleted,
    summary="Delete a flag",
    dependencies=[Depends(require_operator)],
)
async def delete_flag(request: Request, name: str = FlagName) -> Deleted:
    """Remove flag `name` (404 if there is none)."""
    gateway = _gateway(request)
    await asyncio.to_thread(
        gateway.store.delete_flag,
        gateway.env,
        name,
        actor=actor(request),
    )
    await _changed(gateway)
    return Deleted(name=name)


async def _toggle(name: str, request: Request) -> ToggleResponse:
    gateway = _gateway(request)
    flag = await asyncio.to_thread(
        admin.toggle_flag,
        gateway.store,
        gateway.env,
        name,
        actor=actor(request),
    )
    await _changed(gateway)
    return ToggleResponse(status=flag.enabled, name=flag.name)


@router.post(
    "/toggle/{name}",
    response_model=ToggleResponse,
    summary="Flip a flag",
    dependencies=[Depends(require_operator)],
)
async def toggle(request: Request, name: str = FlagName) -> ToggleResponse:
    """Flip the flag's `enabled` (the seed's toggle); a missing flag is created enabled.
    `new-model` finds `new_model` and the other way round."""
    return await _toggle(name, request)


@router.get("/toggle/{name}", response_model=ToggleResponse, summary="A flag's state")
async def toggle_get(request: Request, name: str = FlagName) -> ToggleResponse:
    """Whether the flag is on, in the toggle's shape; a `GET` changes nothing (flip it
    with `POST /api/v1/toggle/{name}`). 404 for a flag that does not exist."""
    gateway = _gateway(request)
    flag = await asyncio.to_thread(admin.find_flag, gateway.store, gateway.env, name)
    if flag is None:
        raise NotFoundError(
            f"no flag {name!r} in {gateway.env}: `POST /api/v1/toggle/{name}` creates it on",
            param="name",
        )
    return ToggleResponse(status=flag.enabled, name=flag.name)


@router.get("/stats", summary="Per-release statistics over a window (for analysis)")
async def stats(
    request: Request,
    ref: str = Query(
        description="The release, NAME@VERSION.", json_schema_extra={"pattern": REF_PATTERN}
    ),
    window: float = Query(60.0, gt=0, le=3600, description="Window in seconds (at most 3600)."),
    env: str | None = Query(None, description="Must be this gateway's env when given."),
    feedback: bool = Query(
        True,
        description="Add the feedback its answers got (from the registry, so the same at "
        "every gateway: a reader merging several gateways asks for it once, or not at all).",
    ),
) -> dict[str, Any]:
    """What `ref` did over the last `window` seconds at this gateway: requests, errors
    (a failed attempt retried on stable counts against `ref`), latencies and TTFTs of
    successful requests, tokens/s, shadow similarities, and the feedback its answers
    got, each user's newest rating and thumbs counted once (feedback without a user
    once per answer). The rollout controller's `builtin` analysis reads this."""
    gateway = _gateway(request)
    if env is not None and env != gateway.env:
        raise InvalidRequestError(
            f"this gateway serves env {gateway.env!r}, not {env!r}", param="env"
        )
    since = datetime.now(timezone.utc) - timedelta(seconds=window)
    given = (
        await asyncio.to_thread(gateway.store.list_feedback, gateway.env, ref, since=since)
        if feedback
        else []
    )
    given = one_per_user(given)
    ratings = [f.value for f in given if f.kind == "rating"]
    thumbs = [f.value for f in given if f.kind == "thumbs"]
    result = gateway.metrics.window.stats(
        ref, window, ratings=ratings, thumbs_up=sum(thumbs), thumbs_down=len(thumbs) - sum(thumbs)
    )
    return {
        k: (None if isinstance(v, float) and math.isnan(v) else v)
        for k, v in result.to_dict().items()
    }


@router.post(
    "/alerts",
    summary="Alertmanager webhook: abort a rollout, or roll production back",
    dependencies=[Depends(require_operator)],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": WEBHOOK_SCHEMA}},
        }
    },
)
async def alerts(request: Request) -> dict[str, Any]:
    """Alertmanager's webhook payload (version 4). A firing alert labelled
    `action=rollback` whose labels name a running rollout (`rollout=NAME`) or its
    candidate (`version`/`model_version`) aborts that rollout. With no rollout
    running, one that names the production release moves production back to the
    release before it where the environment's `on_alert` is `rollback` (else it is
    only recorded). The same alert delivered again changes nothing; resolved alerts
    do nothing. The answer says, per alert, what was done."""
    gateway = _gateway(request)
    try:
        body = json.loads(await request.body())
    except ValueError as exc:
        raise InvalidRequestError("the request body is not valid JSON; send a JSON object") from exc
    payload = parse_webhook(body)
    rules = partial(_environment_rules, gateway.env)
    result = await asyncio.to_thread(
        handle_webhook, gateway.store, gateway.env, payload, rules=rules
    )
    return result.to_dict()


def _environment_rules(env: str) -> Environment:
    """``env``'s rules in ``llmship.yaml``, read when an alert needs them."""
    return load_environments().get(env)
