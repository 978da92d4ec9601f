"""The model server's ASGI application."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from llmship import __version__
from llmship.errors import LlmshipError
from llmship.http import fastapi_options, install_error_handlers, liveness
from llmship.limits import LimitsMiddleware
from llmship.server.api_router import router
from llmship.server.metrics import ServerMetrics
from llmship.server.middleware import RequestMiddleware
from llmship.server.serving import ModelService
from llmship.wire import (
    ChatCompletionRequest,
    CompletionRequest,
    PredictRequest,
    document_bodies,
)

log = logging.getLogger(__name__)

DESCRIPTION = """\
One release of an LLM service, served by llmship: OpenAI-compatible endpoints,
the `/predict` API, health, readiness and Prometheus metrics. Every response
carries `X-Request-ID` (the query id) and `X-Llmship-Version` (NAME@VERSION).
Errors use OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
"""

BODIES = (ChatCompletionRequest, CompletionRequest, PredictRequest)
"""The request bodies, documented as pydantic writes their schemas."""


def create_app(
    service: ModelService,
    *,
    on_load_error: Callable[[LlmshipError], None] | None = None,
    on_ready: Callable[[], Awaitable[None]] | None = None,
) -> FastAPI:
    """An app serving ``service``; the model loads in the background after start-up.

    ``on_ready`` runs as a task once the model is loaded (e.g. to announce the
    server) and is cancelled at shutdown.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async def load() -> None:
            try:
                await service.start()
            except LlmshipError as exc:
                service.load_error = exc.message
                log.error("cannot serve %s: %s", service.version, exc.message)
                if on_load_error is not None:
                    on_load_error(exc)
                return
            if on_ready is not None:
                await on_ready()

        loader = asyncio.create_task(load())
        try:
            yield
        finally:
            loader.cancel()
            await asyncio.gather(loader, return_exceptions=True)
            await service.close()

    app = FastAPI(
        title=f"llmship model server: {service.version}",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        **fastapi_options(),
    )
    app.state.service = service
    app.include_router(router)
    app.include_router(liveness)
    install_error_handlers(app)
    app.add_middleware(RequestMiddleware, metrics=service.metrics)
    app.add_middleware(  # outermost: nothing reads a request that is over a limit
        LimitsMiddleware,
        max_body_bytes=service.settings.max_body_bytes,
        max_header_bytes=service.settings.max_header_bytes,
    )
    documented = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:  # built once; the token limit is a setting
            served = ("", service.spec.name, service.spec.ref)
            document_bodies(documented(), BODIES, service.settings.max_request_tokens, served)
        return app.openapi_schema or documented()

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def build_service(spec: Any, settings: Any) -> ModelService:
    """A ModelService for ``spec`` with its backend and metrics."""
    from llmship.backends import create_backend

    backend = create_backend(spec)
    return ModelService(spec, backend, settings, ServerMetrics(spec.ref))
