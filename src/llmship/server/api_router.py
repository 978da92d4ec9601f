"""HTTP <-> Python for the model server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from llmship import __version__
from llmship.backends.base import GenerationRequest
from llmship.server.protocol import ModelCard, ModelList
from llmship.server.serving import (
    Completion,
    ModelService,
    RequestContext,
    chat_response,
    completion_response,
    sse_stream,
)
from llmship.wire import (
    ERROR_RESPONSES,
    ChatCompletionRequest,
    CompletionRequest,
    PredictRequest,
    PredictResponse,
    Usage,
)

router = APIRouter()

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _service(request: Request) -> ModelService:
    service: ModelService = request.app.state.service
    return service


def _ctx(request: Request, route: str) -> RequestContext:
    ctx: RequestContext = request.scope["state"]["llmship"]
    ctx.route = route
    return ctx


async def _until_disconnect(request: Request) -> None:
    """Return when the client goes away (the body has been read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _complete_unless_disconnected(
    request: Request, work: Awaitable[Completion]
) -> Completion | None:
    """Run a non-streamed generation; cancel it if the client disconnects first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_until_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return None
    return task.result()


async def _respond(
    request: Request,
    gen: GenerationRequest,
    ctx: RequestContext,
    *,
    stream: bool,
    include_usage: bool,
    chat: bool,
    shape: Callable[[RequestContext, str, Completion, int], dict[str, Any]],
) -> Response:
    service = _service(request)
    model = service.spec.name
    created = int(time.time())  # OpenAI: when this completion was created
    if not stream:
        result = await _complete_unless_disconnected(request, service.complete(gen, ctx))
        if result is None:
            return Response(status_code=499)
        return JSONResponse(shape(ctx, model, result, created))
    chunks = service.generate(gen, ctx)
    try:
        first = await chunks.__anext__()  # errors before the first token become 4xx/5xx
    except BaseException:
        await chunks.aclose()
        raise
    body = sse_stream(
        chunks,
        first,
        ctx,
        chat=chat,
        model=model,
        created=created,
        include_usage=include_usage,
    )
    return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)


@router.post(
    "/v1/chat/completions",
    responses=ERROR_RESPONSES,
    summary="Chat completion (OpenAI-compatible)",
    tags=["openai"],
)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    """Answer a conversation. `stream: true` gives server-sent events ending in `data: [DONE]`."""
    ctx = _ctx(request, "/v1/chat/completions")
    gen = _service(request).chat_request(body)
    include = bool(body.stream_options and body.stream_options.include_usage)
    return await _respond(
        request, gen, ctx, stream=body.stream, include_usage=include, chat=True, shape=chat_response
    )


@router.post(
    "/v1/completions",
    responses=ERROR_RESPONSES,
    summary="Text completion (OpenAI-compatible)",
    tags=["openai"],
)
async def completions(body: CompletionRequest, request: Request) -> Response:
    """Continue a prompt as raw text (no chat template)."""
    ctx = _ctx(request, "/v1/completions")
    gen = _service(request).completion_request(body)
    include = bool(body.stream_options and body.stream_options.include_usage)
    return await _respond(
        request,
        gen,
        ctx,
        stream=body.stream,
        include_usage=include,
        chat=False,
        shape=completion_response,
    )


@router.get("/v1/models", response_model=ModelList, tags=["openai"], summary="Served models")
async def list_models(request: Request) -> ModelList:
    """The release this server serves."""
    service = _service(request)
    info = service.backend.info()
    card = ModelCard(
        id=service.spec.name,
        created=service.created,
        version=service.version,
        context_length=info.context_length,
    )
    return ModelList(data=[card])


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses=ERROR_RESPONSES,
    tags=["llmship"],
    summary="Generate an answer (the seed's API)",
)
async def predict(body: PredictRequest, request: Request) -> Response:
    """Answer `prompt` with at most `max_new_tokens` tokens."""
    ctx = _ctx(request, "/predict")
    service = _service(request)
    gen = service.predict_request(body)
    result = await _complete_unless_disconnected(request, service.complete(gen, ctx))
    if result is None:
        return Response(status_code=499)
    payload = PredictResponse(
        response=result.text,
        query_id=ctx.query_id,
        version=service.version,
        finish_reason=result.finish_reason,
        usage=Usage(**result.usage()),
    )
    return JSONResponse(payload.model_dump())


@router.get(
    "/readyz", tags=["ops"], summary="Readiness", responses={503: {"description": "Loading"}}
)
async def readyz(request: Request) -> JSONResponse:
    """200 once the model is loaded and the backend is healthy; 503 before."""
    service = _service(request)
    if service.ready and await service.backend.health():
        return JSONResponse({"status": "ready", "version": service.version})
    detail = service.load_error or "loading"
    return JSONResponse(
        {"status": "not ready", "version": service.version, "detail": detail},
        status_code=503,
        headers={"Retry-After": "1"},
    )


@router.get(
    "/metrics", tags=["ops"], summary="Prometheus metrics", response_class=PlainTextResponse
)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition; every series has a `version` label."""
    registry = _service(request).metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/version", tags=["ops"], summary="What is served")
async def version(request: Request) -> dict[str, Any]:
    """The release, its backend and llmship's version."""
    service = _service(request)
    info = service.backend.info()
    return {
        "version": service.version,
        "name": service.spec.name,
        "release_version": service.spec.version,
        "backend": info.kind,
        "model": info.model,
        "context_length": info.context_length,
        "llmship": __version__,
    }
