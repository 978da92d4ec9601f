"""The model server's ASGI application."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmship import __version__
from llmship.errors import InvalidRequestError, LlmshipError
from llmship.server.api_router import router
from llmship.server.metrics import ServerMetrics
from llmship.server.middleware import RequestMiddleware
from llmship.server.serving import ModelService

log = logging.getLogger(__name__)

DESCRIPTION = """\
One release of an LLM service, served by llmship: OpenAI-compatible endpoints,
the `/predict` API, health, readiness and Prometheus metrics. Every response
carries `X-Request-ID` (the query id) and `X-Llmship-Version` (NAME@VERSION).
Errors use OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
"""


def error_response(exc: LlmshipError) -> JSONResponse:
    """The JSON response for an llmship error."""
    return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=exc.headers())


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "function-after", "function-before"}


def _field(loc: tuple[object, ...]) -> str:
    """``body.prompt.str`` -> ``prompt``: drop the body prefix and union-member tags."""
    parts: list[str] = []
    for part in loc:
        if part == "body" and not parts:
            continue
        if isinstance(part, str) and (part in _TYPE_TAGS or "[" in part or part[:1].isupper()):
            break
        parts.append(str(part))
    return ".".join(parts)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    """One readable sentence per bad field, and the first bad field as ``param``."""
    by_field: dict[str, list[str]] = {}
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            return "the request body is not valid JSON; send a JSON object", None
        where = _field(tuple(err.get("loc", ())))
        msg = "is required" if err.get("type") == "missing" else str(err.get("msg"))
        msg = msg.removeprefix("Value error, ")
        if msg not in by_field.setdefault(where, []):
            by_field[where].append(msg)
    problems = [f"`{where or 'body'}`: {' or '.join(msgs)}" for where, msgs in by_field.items()]
    param = next(iter(by_field), None) or None
    return "; ".join(problems) or "invalid request", param


def install_error_handlers(app: FastAPI) -> None:
    """Every error, including FastAPI's own, in OpenAI's error shape."""

    @app.exception_handler(LlmshipError)
    async def _llmship(_: Request, exc: LlmshipError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return error_response(InvalidRequestError(message, param=param))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = LlmshipError(str(exc.detail))
        error.status_code = exc.status_code
        error.error_type = "invalid_request_error" if exc.status_code < 500 else "server_error"
        error.code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return JSONResponse(error.to_dict(), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(LlmshipError(f"internal error: {type(exc).__name__}"))


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
    )
    app.state.service = service
    app.include_router(router)
    install_error_handlers(app)
    app.add_middleware(RequestMiddleware, metrics=service.metrics)
    return app


def build_service(spec: Any, settings: Any) -> ModelService:
    """A ModelService for ``spec`` with its backend and metrics."""
    from llmship.backends import create_backend

    backend = create_backend(spec)
    return ModelService(spec, backend, settings, ServerMetrics(spec.ref))
