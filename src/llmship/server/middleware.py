"""Pure-ASGI middleware: request ids, version header, request metrics, one log line."""

from __future__ import annotations

import logging
import time
from typing import Any

from opentelemetry.trace import Span
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmship import logs, tracing
from llmship.http import new_query_id
from llmship.server.metrics import ServerMetrics
from llmship.server.serving import RequestContext

access_log = logging.getLogger("llmship.access")


class RequestMiddleware:
    """Adds ``X-Request-ID`` and ``X-Llmship-Version``, counts ``http_requests_total``
    and writes one access-log line per request (prompt text only with log_prompts)."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics):
        self.app = app
        self.metrics = metrics
        self.version = metrics.version
        self._version_header = (b"x-llmship-version", self.version.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        raw_id = headers.get(b"x-request-id")
        ctx = RequestContext(
            query_id=new_query_id(raw_id.decode("latin-1") if raw_id else None),
            started=time.perf_counter(),
        )
        scope.setdefault("state", {})["llmship"] = ctx
        status = 500
        id_header = (b"x-request-id", ctx.query_id.encode())

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), id_header, self._version_header]
            await send(message)

        with tracing.server_span(scope, f"{scope.get('method', '')} {scope['path']}") as span:
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                tracing.end_status(span, status)
                tracing.annotate(
                    span, {"llmship.request_id": ctx.query_id, "llmship.release": self.version}
                )
                self._record(scope, ctx, status, span)

    def _record(self, scope: Scope, ctx: RequestContext, status: int, span: Span | None) -> None:
        route = _route(scope)
        method = scope.get("method", "")
        self.metrics.requests.labels(
            method=method, route=route, status=str(status), version=self.version
        ).inc()
        if route in ("/metrics", "/health", "/healthz", "/readyz"):
            return
        if not access_log.isEnabledFor(logging.INFO):
            return
        latency_ms = (time.perf_counter() - ctx.started) * 1000
        fields: dict[str, Any] = {
            "request_id": ctx.query_id,
            "version": self.version,
            "method": method,
            "path": scope.get("path", ""),
            "route": route,
            "status": status,
            "duration_ms": round(latency_ms, 1),
        }
        if ctx.ttft is not None:
            fields["ttft_ms"] = round(ctx.ttft * 1000, 1)
        if ctx.prompt_tokens is not None:
            fields["prompt_tokens"] = ctx.prompt_tokens
        if ctx.completion_tokens:
            fields["completion_tokens"] = ctx.completion_tokens
        if ctx.finish_reason:
            fields["finish"] = ctx.finish_reason
        fields.update(ctx.extra)  # prompt and response are there only with log_prompts
        ids = logs.trace_ids(span) if span is not None else None
        if ids is not None:
            fields["trace_id"], fields["span_id"] = ids
        logs.access(access_log, fields)


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "other"
