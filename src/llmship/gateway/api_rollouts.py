"""Rollouts for the dashboard: list, one rollout with its steps and analysis, and the
actions (promote, pause, resume, abort, retry, undo) as intents for the controller."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from llmship.errors import ConflictError, InvalidRequestError, NotFoundError
from llmship.gateway.api_common import (
    MAX_ID,
    READ_ERRORS,
    Page,
    PageParams,
    actor,
    registry_of,
    require_operator,
    require_reader,
)
from llmship.gateway.api_rollout_detail import ACTIONS, action_reason, rollout_detail
from llmship.gateway.api_rollout_views import (
    EventView,
    MeasurementView,
    RolloutDetail,
    RolloutSummary,
    event_view,
    measurement_view,
    summary_of,
)
from llmship.registry import Registry
from llmship.registry.records import given_reason
from llmship.rollout import ops
from llmship.rollout.events import TransitionError
from llmship.wire import ErrorResponse

router = APIRouter(prefix="/api/v1", tags=["dashboard"], responses=READ_ERRORS)

RolloutId = Path(
    alias="id",
    ge=1,
    le=MAX_ID,
    description="The rollout's id (`llmship rollout list` shows them).",
)

REASON_LENGTH = 500
"""The longest reason an action takes."""


@router.get(
    "/rollouts",
    response_model=Page[RolloutSummary],
    summary="List rollouts",
    dependencies=[Depends(require_reader)],
)
async def list_rollouts(
    request: Request,
    env: str | None = Query(None, description="Only this environment's rollouts."),
    active: bool | None = Query(
        None, description="`true`: only unfinished rollouts; `false`: only finished ones."
    ),
    page: PageParams = Depends(),
) -> Page[RolloutSummary]:
    """Rollouts, newest first (of every environment unless `env` is given)."""
    registry = registry_of(request)
    records, total = await asyncio.to_thread(
        registry.page_rollouts, env, active=active, limit=page.limit, offset=page.offset
    )
    return Page[RolloutSummary](
        items=[summary_of(r) for r in records], total=total, limit=page.limit, offset=page.offset
    )


@router.get(
    "/rollouts/{id}",
    response_model=RolloutDetail,
    summary="One rollout: phase, steps, weights, analysis, allowed actions",
    dependencies=[Depends(require_reader)],
)
async def get_rollout(request: Request, rollout_id: int = RolloutId) -> RolloutDetail:
    """What `llmship rollout status` shows, with the rollout's steps (done, current,
    pending), each metric's condition, and each action with whether it applies now
    (and why not). 404 for an unknown id."""
    return await asyncio.to_thread(_detail, registry_of(request), rollout_id)


def _detail(registry: Registry, rollout_id: int) -> RolloutDetail:
    return rollout_detail(registry, registry.get_rollout(rollout_id))


@router.get(
    "/rollouts/{id}/events",
    response_model=Page[EventView],
    summary="A rollout's timeline",
    dependencies=[Depends(require_reader)],
)
async def rollout_events(
    request: Request, rollout_id: int = RolloutId, page: PageParams = Depends()
) -> Page[EventView]:
    """Every transition, request and rejection of the rollout, oldest first."""
    registry = registry_of(request)
    events, total = await asyncio.to_thread(
        registry.page_rollout_events, rollout_id, limit=page.limit, offset=page.offset
    )
    return Page[EventView](
        items=[event_view(e) for e in events], total=total, limit=page.limit, offset=page.offset
    )


@router.get(
    "/rollouts/{id}/measurements",
    response_model=Page[MeasurementView],
    summary="A rollout's analysis measurements",
    dependencies=[Depends(require_reader)],
)
async def rollout_measurements(
    request: Request,
    rollout_id: int = RolloutId,
    run: str | None = Query(None, description="Only this analysis run's, e.g. `background.1`."),
    metric: str | None = Query(None, description="Only this metric's."),
    page: PageParams = Depends(),
) -> Page[MeasurementView]:
    """Every measurement of the rollout's analysis runs, oldest first."""
    registry = registry_of(request)

    def read() -> list[MeasurementView]:
        registry.get_rollout(rollout_id)  # 404 for an unknown id
        found = registry.list_measurements(rollout_id, runs=[run] if run is not None else None)
        return [measurement_view(m) for m in found if metric is None or m.metric == metric]

    return page.page(await asyncio.to_thread(read))


class ActionRequest(BaseModel):
    """What comes with an action (all optional)."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(
        None, max_length=REASON_LENGTH, description="Why (kept in the rollout's events)."
    )
    full: bool = Field(False, description="Promote: skip every remaining step and analysis.")


class IntentView(BaseModel):
    """The request recorded for the controller."""

    id: int = Field(description="The intent's id.")
    kind: str = Field(description="`promote`, `promoteFull`, `pause`, `resume`, `abort`, `retry`.")
    actor: str = Field(description="Who asked (`X-Llmship-Actor`, else `admin-api`).")
    reason: str = Field(description="Why.")


class ActionResult(BaseModel):
    """What an action did."""

    rollout: RolloutDetail = Field(description="The rollout now (the controller applies intents).")
    intent: IntentView | None = Field(description="The recorded intent; none for undo.")
    message: str = Field(description="What happened, in words.")


@router.post(
    "/rollouts/{id}/{action}",
    response_model=ActionResult,
    status_code=202,
    summary="Promote, pause, resume, abort, retry or undo a rollout",
    dependencies=[Depends(require_operator)],
    responses={409: {"model": ErrorResponse, "description": "The rollout's phase refuses it."}},
)
async def act(
    request: Request,
    rollout_id: int = RolloutId,
    action: str = Path(
        description="promote, pause, resume, abort, retry or undo.",
        json_schema_extra={"enum": list(ACTIONS)},
    ),
    body: ActionRequest | None = Body(None),
) -> ActionResult:
    """Ask for `action` as `llmship rollout ACTION` does: promote (`full`: to the end),
    pause, resume, abort and retry are checked now and recorded as intents, which the
    controller applies on its next pass; undo moves production back at once. 401/403
    without the admin token (before anything else), 404 unknown id, 400 unknown
    action, 409 when the rollout's phase refuses it (the message says why)."""
    if action not in ACTIONS:
        raise InvalidRequestError(
            f"unknown action {action!r}: use one of {', '.join(ACTIONS)}", param="action"
        )
    given = body or ActionRequest()
    who = actor(request)
    return await asyncio.to_thread(_act, registry_of(request), rollout_id, action, given, who)


def _act(
    registry: Registry, rollout_id: int, action: str, given: ActionRequest, who: str
) -> ActionResult:
    record = registry.get_rollout(rollout_id)
    reason = given_reason(given.reason)
    if action == "undo":
        try:
            move = ops.undo(registry, record.env, actor=who, reason=reason)
        except (NotFoundError, InvalidRequestError) as exc:  # nothing to go back to
            raise ConflictError(exc.message, param="action") from exc
        message = f"production in {record.env}: {move.from_ref} -> {move.to_ref}"
        return ActionResult(rollout=_detail(registry, rollout_id), intent=None, message=message)
    kind = "promoteFull" if action == "promote" and given.full else action
    try:
        record, intent = ops.request(
            registry, record.env, str(record.id), kind, actor=who, reason=reason
        )
    except TransitionError as exc:
        raise TransitionError(action_reason(exc.message, record), param="action") from exc
    what = "full promotion" if kind == "promoteFull" else action
    message = (
        f"{what} of rollout {record.name} (id {record.id}) requested; the controller applies "
        "it on its next pass"
    )
    return ActionResult(
        rollout=_detail(registry, rollout_id),
        intent=IntentView(id=intent.id, kind=intent.kind, actor=intent.actor, reason=intent.reason),
        message=message,
    )
