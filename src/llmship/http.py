"""What the model server and the gateway share at the HTTP edge: the error
handlers that render every error in OpenAI's shape, and request ids.

Both services import this module, so the gateway does not load the model
server's application to answer errors the same way.
"""

from __future__ import annotations

import inspect
import logging
import re
import uuid
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmship.errors import InvalidRequestError, LlmshipError

log = logging.getLogger(__name__)

liveness = APIRouter()
"""``/healthz`` and ``/health``, the same in both services."""


@liveness.get("/healthz", tags=["ops"], summary="Liveness")
async def healthz() -> dict[str, str]:
    """200 while the process is up."""
    return {"status": "ok"}


@liveness.get(
    "/health",
    tags=["ops"],
    summary="Liveness (vLLM-compatible)",
    response_class=Response,
    responses={200: {"description": "The process is up; the body is empty."}},
)
async def health() -> Response:
    """200 with an empty body while the process is up, as vLLM's OpenAI server answers
    it: the same meaning as `/healthz`, for tools that probe `/health` first."""
    return Response(status_code=200)


_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")


def fastapi_options() -> dict[str, Any]:
    """Keyword arguments for ``FastAPI(...)`` shared by both services: FastAPI's own
    OpenTelemetry spans are off (where FastAPI has them), since :mod:`llmship.tracing`
    makes the SERVER spans, named by path and carrying the status."""
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        return {"telemetry": {"tracing": False}}
    return {}


def client_request_id(client_value: str | None) -> str | None:
    """The client's X-Request-ID when it is a sane token (8 to 128 letters, digits and
    ``._:-``), else None."""
    if client_value and _CLIENT_ID.match(client_value):
        return client_value
    return None


def new_query_id(client_value: str | None = None) -> str:
    """The client's X-Request-ID when it is a sane token, else a fresh uuid4 hex (the
    model server's ids; the gateway issues its query ids itself)."""
    return client_request_id(client_value) or uuid.uuid4().hex


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
        if isinstance(part, str) and (
            part in _TYPE_TAGS
            or part.startswith("constrained-")
            or "[" in part
            or part[:1].isupper()
        ):
            break
        parts.append(str(part))
    return ".".join(parts)


def invalid_body(exc: ValidationError) -> InvalidRequestError:
    """The 400 of a body that a wire model refused, worded as FastAPI's are."""
    message, param = _validation_message(exc)
    return InvalidRequestError(message, param=param)


def _validation_message(exc: RequestValidationError | ValidationError) -> tuple[str, str | None]:
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
