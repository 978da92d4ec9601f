"""Bounds on what a client may send to a public port, enforced while the request arrives.

The gateway and the model server take input from anyone who reaches them. This
pure-ASGI middleware, the outermost layer of both, refuses:

- a header block larger than ``max_header_bytes``: 431 ``headers_too_large``, before
  anything else runs;
- a body whose ``Content-Length`` is larger than ``max_body_bytes``: 413
  ``request_too_large`` at once, without reading a byte of it;
- a body that grows past ``max_body_bytes`` while it arrives (chunked, or a
  ``Content-Length`` that lies): 413 as soon as the bytes read pass the limit. The
  rest is never read, and the connection is not reused.

Errors are in OpenAI's shape. The limits of each field (messages, content, stop
strings, ``seed``) are in the wire models (:mod:`llmship.wire`), so the OpenAPI
documents state them. :func:`uvicorn_options` bounds what the HTTP server itself
buffers before the application sees a request.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmship.errors import HeadersTooLargeError, InvalidRequestError, RequestTooLargeError
from llmship.http import error_response


def _mib(size: int) -> str:
    return f"{size} bytes" if size < 1024 else f"{size / 1024:g} KiB"


def body_too_large(limit: int, size: int | None = None) -> RequestTooLargeError:
    """The 413 of a body over ``limit`` (``size``: its declared length, when known)."""
    told = f" ({size} bytes)" if size is not None else ""
    return RequestTooLargeError(
        f"the request body{told} is larger than the limit of {_mib(limit)}; send a smaller "
        "request (the max_body_bytes setting)"
    )


def headers_too_large(limit: int, size: int) -> HeadersTooLargeError:
    """The 431 of a header block of ``size`` bytes over ``limit``."""
    return HeadersTooLargeError(
        f"the request headers are {size} bytes, larger than the limit of {_mib(limit)}; "
        "send fewer or shorter headers (the max_header_bytes setting)"
    )


class LimitsMiddleware:
    """Refuses over-large headers (431) and bodies (413) before or while they are read."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_header_bytes: int):
        self.app = app
        self.max_body = max_body_bytes
        self.max_headers = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared: bytes | None = None
        header_bytes = 0
        for key, value in scope["headers"]:
            header_bytes += len(key) + len(value) + 4  # ": " and CRLF, as sent
            if key == b"content-length":
                declared = value
        if header_bytes > self.max_headers:
            await self._refuse(
                scope, receive, send, headers_too_large(self.max_headers, header_bytes)
            )
            return
        if declared is not None:
            size = _length(declared)
            if size is None:
                bad = InvalidRequestError("the Content-Length header is not a byte count")
                await self._refuse(scope, receive, send, bad)
                return
            if size > self.max_body:
                await self._refuse(scope, receive, send, body_too_large(self.max_body, size))
                return
        await self._guarded(scope, receive, send)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app with a ``receive`` that counts body bytes and stops at the limit.

        Past the limit ``receive`` raises :class:`RequestTooLargeError`; whatever the app
        then answers (its own handler may turn the error into another status) is replaced
        by the 413, unless the app had begun answering already."""
        limit = self.max_body
        received = 0
        tripped = False
        started = False
        replaced = False

        async def counted() -> Message:
            nonlocal received, tripped
            if tripped:
                raise body_too_large(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    tripped = True
                    raise body_too_large(limit)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started, replaced
            if tripped and not started:
                if not replaced and message["type"] == "http.response.start":
                    replaced = True
                    await error_response(body_too_large(limit))(scope, receive, send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, guarded_send)
        except RequestTooLargeError:
            if started or replaced:
                raise
            await error_response(body_too_large(limit))(scope, receive, send)

    @staticmethod
    async def _refuse(
        scope: Scope, receive: Receive, send: Send, error: InvalidRequestError
    ) -> None:
        response = error_response(error)
        response.headers["connection"] = "close"  # the unread body is not to be parsed
        await response(scope, receive, send)


def _length(value: bytes) -> int | None:
    text = value.strip()
    return int(text) if text.isdigit() and len(text) <= 19 else None


def uvicorn_options(max_header_bytes: int) -> dict[str, Any]:
    """``uvicorn.Config`` options that bound what the HTTP server buffers of a request's
    head: h11 (the pure-Python parser) reads at most this much before the application
    sees the request (then 400). httptools has no such bound in uvicorn; there the
    middleware's 431 is the limit."""
    return {"h11_max_incomplete_event_size": max_header_bytes + 8192}
