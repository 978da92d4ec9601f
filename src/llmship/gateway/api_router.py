"""HTTP <-> Python for the gateway's public endpoints."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from llmship.errors import NotFoundError, UnprocessableError
from llmship.gateway.bodies import parse_object
from llmship.gateway.feedback import add_feedback
from llmship.gateway.protocol import (
    FeedbackRequest,
    FeedbackResponse,
    FlagState,
    GatewayModelCard,
    GatewayModelList,
)
from llmship.gateway.proxied import ROUTES, ProxiedRoute
from llmship.gateway.serving import GatewayContext
from llmship.wire import ERROR_RESPONSES, ErrorResponse

if TYPE_CHECKING:
    from llmship.gateway.app import Gateway

router = APIRouter()

PROXIED_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    502: {"model": ErrorResponse, "description": "The stable release's model server failed."},
    503: {"model": ErrorResponse, "description": "No policy yet, or no live stable server."},
}


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def _ctx(request: Request) -> GatewayContext:
    ctx: GatewayContext = request.scope["state"]["llmship"]
    return ctx


async def _proxy(request: Request, route: str, *, openai: bool) -> Response:
    """The routed endpoints. ``GatewayMiddleware`` answers their POSTs itself, without
    FastAPI's routing (the hot path); these handlers serve the OpenAPI document and
    any app that mounts the router without that middleware."""
    service = _gateway(request).service
    return await service.proxy(request.scope, request.receive, route, openai=openai)


def _body(model: str) -> dict[str, Any]:
    """OpenAPI of a forwarded body: the model server's schema, not validated here."""
    schema = {"$ref": f"#/components/schemas/{model}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _proxied_handler(route: ProxiedRoute) -> Callable[[Request], Awaitable[Response]]:
    async def handler(request: Request) -> Response:
        return await _proxy(request, route.path, openai=route.openai)

    return handler


for _route in ROUTES:
    router.add_api_route(
        _route.path,
        _proxied_handler(_route),
        methods=["POST"],
        name=_route.name,
        responses=(
            {200: {"model": _route.response}, **PROXIED_ERRORS}
            if _route.response
            else PROXIED_ERRORS
        ),
        summary=_route.summary,
        description=_route.description,
        tags=[_route.tag],
        openapi_extra=_body(_route.body),
    )


@router.get("/v1/models", response_model=GatewayModelList, tags=["openai"], summary="Models")
async def list_models(request: Request) -> GatewayModelList:
    """The releases the traffic policy routes to, one entry per release name."""
    gateway = _gateway(request)
    snapshot = gateway.state.snapshot
    by_name: dict[str, list[str]] = {}
    for ref in snapshot.policy.releases() if snapshot else []:
        by_name.setdefault(ref.partition("@")[0], []).append(ref)
    return GatewayModelList(
        data=[
            GatewayModelCard(id=name, created=gateway.created, version=refs[0], versions=refs)
            for name, refs in by_name.items()
        ]
    )


@router.post(
    "/feedback",
    response_model=FeedbackResponse,
    responses={
        400: {"model": ErrorResponse, "description": "The body is not a JSON object."},
        403: {
            "model": ErrorResponse,
            "description": "A wrong feedback token, or none where the `feedback_token` "
            "setting requires one.",
        },
        404: {"model": ErrorResponse, "description": "Unknown query id."},
        422: {"model": ErrorResponse, "description": "Invalid rating, thumbs or comment."},
    },
    tags=["llmship"],
    summary="Rate an answer",
    openapi_extra=_body("FeedbackRequest"),
)
async def feedback(request: Request) -> FeedbackResponse:
    """Store a rating (1..5) and/or a thumbs (up/down) against the query id (the
    `X-Llmship-Query-Id` the gateway issued), hence the release that answered. With the
    answer's `feedback_token` only the client that got the answer can rate it. One of
    each kind per query and user: a second replaces the first."""
    payload = parse_object(await request.body())
    try:
        body = FeedbackRequest.model_validate(payload)
    except ValidationError as exc:
        message, param = _problem(exc)
        raise UnprocessableError(message, param=param) from None
    gateway, actor = _gateway(request), _ctx(request).user_key
    records = await add_feedback(
        gateway.store,
        gateway.recorder,
        body,
        actor=actor,
        tokens=gateway.feedback_tokens,
        token_rule=gateway.settings.feedback_token,
        retry_after=gateway.feedback_retry,
        metrics=gateway.metrics,
    )
    return FeedbackResponse(query_id=body.query_id, version=records[0].ref)


def _problem(exc: ValidationError) -> tuple[str, str | None]:
    """One sentence per bad field, and the first bad field."""
    parts, first = [], None
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()))
        first = first or where or None
        msg = "is required" if err.get("type") == "missing" else str(err.get("msg"))
        msg = msg.removeprefix("Value error, ")
        parts.append(f"`{where}`: {msg}" if where else msg)
    return "; ".join(parts), first


@router.get(
    "/flags/{name}",
    response_model=FlagState,
    responses={404: {"model": ErrorResponse, "description": "Unknown flag."}},
    tags=["llmship"],
    summary="Evaluate a feature flag for the caller",
)
async def flag_state(name: str, request: Request) -> FlagState:
    """Whether flag `name` is on for this caller: its `X-User-Id` and its
    `X-Llmship-Attr-<name>: value` headers (as routing sees them)."""
    snapshot = _gateway(request).state.snapshot
    flag = snapshot.flag(name) if snapshot else None
    if flag is None:
        raise NotFoundError(f"no flag named {name!r}", param="name")
    ctx = _ctx(request)
    return FlagState(name=flag.name, on=flag.is_on(ctx.user_key, ctx.attrs))


@router.get(
    "/readyz", tags=["ops"], summary="Readiness", responses={503: {"description": "Not ready"}}
)
async def readyz(request: Request) -> JSONResponse:
    """200 once a traffic policy is loaded and the stable release has a live model server."""
    gateway = _gateway(request)
    snapshot = gateway.state.snapshot
    if snapshot is None:
        detail = "no traffic policy read from the registry yet"
    elif not snapshot.policy.stable:
        detail = "the production alias points at no release"
    elif snapshot.stable_url is None:
        detail = f"no live model server of the stable release {snapshot.policy.stable}"
    else:
        return JSONResponse(
            {
                "status": "ready",
                "env": gateway.env,
                "stable": snapshot.policy.stable,
                "revision": snapshot.policy.revision,
                "registry_up": gateway.state.registry_up,
                "waiting_for": list(gateway.state.waiting_for),
            }
        )
    return JSONResponse(
        {"status": "not ready", "env": gateway.env, "detail": detail},
        status_code=503,
        headers={"Retry-After": "1"},
    )


@router.get(
    "/metrics", tags=["ops"], summary="Prometheus metrics", response_class=PlainTextResponse
)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition; request series carry `version` and `variant`."""
    registry = _gateway(request).metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
