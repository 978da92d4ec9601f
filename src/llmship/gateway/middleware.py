"""Pure-ASGI middleware of the gateway: query ids, headers, metrics, query records, access log."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime, timezone

from opentelemetry.trace import Span
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmship import logs, tracing
from llmship.analysis.stats import time_per_output_token
from llmship.errors import LlmshipError
from llmship.gateway.metrics import GatewayMetrics
from llmship.gateway.proxied import PROXIED
from llmship.gateway.recorder import QueryRecorder
from llmship.gateway.serving import ClientGone, GatewayContext, GatewayService
from llmship.http import client_request_id, error_response
from llmship.registry.records import QueryRecord

access_log = logging.getLogger("llmship.gateway.access")

MAX_USER_KEY = 255
MAX_VARIANT = 64
_ATTR = b"x-llmship-attr-"


def correlation_id(raw: bytes | None) -> str | None:
    """The client's X-Request-ID when it is a sane token: kept with the query and
    echoed, but never the query id (the gateway issues that, so that no client can
    choose which query a rating attaches to)."""
    if raw is None or len(raw) > 128:
        return None
    return client_request_id(raw.decode("latin-1"))


class GatewayMiddleware:
    """Reads the routing headers once, adds ``X-Request-ID`` (the client's, else the query
    id), ``X-Llmship-Query-Id``, ``X-Llmship-Feedback-Token``, ``X-Llmship-Version``,
    ``X-Llmship-Variant`` and ``X-Llmship-Overhead-Ms``, observes the request metrics,
    records proxied queries and writes one access-log line per proxied request."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        service: GatewayService,
        metrics: GatewayMetrics,
        recorder: QueryRecorder,
        env: str,
    ):
        self.app = app
        self.service = service
        self.metrics = metrics
        self.recorder = recorder
        self.env = env
        self._version_headers: dict[tuple[str, str], list[tuple[bytes, bytes]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = GatewayContext(query_id="", started=time.perf_counter())
        raw_id = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                raw_id = value
            elif key == b"x-user-id":
                ctx.user_key = value.decode("latin-1").strip() or None
            elif key == b"x-llmship-variant":
                ctx.wants_preview = value.strip().lower() == b"preview"
            elif key.startswith(_ATTR):
                if ctx.attrs is None:
                    ctx.attrs = {}
                ctx.attrs[key[len(_ATTR) :].decode("latin-1")] = value.decode("latin-1").strip()
        ctx.query_id = uuid.uuid4().hex
        ctx.request_id = correlation_id(raw_id)
        scope.setdefault("state", {})["llmship"] = ctx
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *self._headers(ctx)]
            await send(message)

        routed = PROXIED.get(scope["path"]) if scope["method"] == "POST" else None
        with tracing.server_span(scope, f"{scope['method']} {scope['path']}") as span:
            try:
                if routed is None:
                    await self.app(scope, receive, send_wrapper)
                else:
                    await self._proxy(scope, receive, send_wrapper, routed.path, routed.openai)
            except ClientGone:
                status = 499
            finally:
                tracing.end_status(span, status)
                if span is not None:
                    tracing.annotate(
                        span,
                        {
                            "llmship.request_id": ctx.query_id,
                            "llmship.release": ctx.version or None,
                            "llmship.variant": ctx.variant or None,
                        },
                    )
                self._finish(scope, ctx, status, span)

    async def _proxy(
        self, scope: Scope, receive: Receive, send: Send, route: str, openai: bool
    ) -> None:
        """The hot path: a routed request goes straight to the service, without FastAPI's
        routing; an unexpected error still reaches the app's 500 handler."""
        try:
            response = await self.service.proxy(scope, receive, route, openai=openai)
        except LlmshipError as exc:
            response = error_response(exc)
        await response(scope, receive, send)

    def _headers(self, ctx: GatewayContext) -> list[tuple[bytes, bytes]]:
        query_id = ctx.query_id.encode()
        headers = [
            (b"x-request-id", ctx.request_id.encode() if ctx.request_id else query_id),
            (b"x-llmship-query-id", query_id),
        ]
        if ctx.feedback_token:
            headers.append((b"x-llmship-feedback-token", ctx.feedback_token.encode()))
        if ctx.version:
            key = (ctx.version, ctx.variant)
            fixed = self._version_headers.get(key)
            if fixed is None:
                fixed = [
                    (b"x-llmship-version", ctx.version.encode()),
                    (b"x-llmship-variant", ctx.variant.encode()),
                ]
                self._version_headers[key] = fixed
            headers += fixed
        if ctx.proxied:
            overhead = time.perf_counter() - ctx.started - ctx.upstream_wait
            headers.append((b"x-llmship-overhead-ms", f"{overhead * 1000:.3f}".encode()))
        return headers

    def _finish(self, scope: Scope, ctx: GatewayContext, status: int, span: Span | None) -> None:
        route = ctx.route or _route(scope)
        metrics = self.metrics
        metrics.requests.labels(
            method=scope.get("method", ""),
            route=route,
            status=str(status),
            version=ctx.version,
            variant=ctx.variant,
        ).inc()
        if not (ctx.proxied and ctx.version):
            if ctx.proxied and ctx.disconnected:  # gone before any release answered
                total = time.perf_counter() - ctx.started
                _log_access(scope, ctx, route, status, total, None, span)
            return
        total = time.perf_counter() - ctx.started
        overhead = max(total - ctx.upstream_wait, 0.0)
        children = metrics.children(route, ctx.version, ctx.variant)
        children.latency.observe(total)
        if ctx.ttft is not None:  # streamed only: a whole answer's time is not its TTFT
            children.ttft.observe(ctx.ttft)
        children.overhead.observe(overhead)
        rate = tpot = None
        if status == 200 and not ctx.stream_error:
            tpot = time_per_output_token(total, ctx.ttft, ctx.completion_tokens)
            if tpot is not None:
                children.tpot.observe(tpot)
        if ctx.completion_tokens and total > 0 and status == 200:
            rate = ctx.completion_tokens / total
            metrics.tokens_per_second.labels(version=ctx.version, variant=ctx.variant).observe(rate)
        metrics.window.request(
            ctx.version,
            error=status >= 500 or bool(ctx.stream_error),
            latency=total,
            ttft=ctx.ttft,
            tokens_per_second=rate,
            tpot=tpot,
        )
        key = ctx.user_key
        self.recorder.add(
            QueryRecord(
                query_id=ctx.query_id,
                env=self.env,
                ref=ctx.version,
                variant=ctx.variant[:MAX_VARIANT],
                route=route,
                status=status,
                at=ctx.at or datetime.now(timezone.utc),
                user_key=key[:MAX_USER_KEY] if key else None,
                request_id=ctx.request_id,
            )
        )
        _log_access(scope, ctx, route, status, total, overhead, span)


def _log_access(
    scope: Scope,
    ctx: GatewayContext,
    route: str,
    status: int,
    total: float,
    overhead: float | None,
    span: Span | None,
) -> None:
    """One line per proxied request (ids, sizes and timings; never the prompt), with the
    trace and span ids of its SERVER span when tracing is on."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    fields: dict[str, object] = {
        "request_id": ctx.query_id,
        "client_request_id": ctx.request_id,
        "version": ctx.version or ctx.sent_to,
        "variant": ctx.variant,
        "method": scope.get("method", ""),
        "path": scope.get("path", ""),
        "route": route,
        "status": status,
        "duration_ms": round(total * 1000, 1),
    }
    if overhead is not None:
        fields["overhead_ms"] = round(overhead * 1000, 2)
    if ctx.ttft is not None:
        fields["ttft_ms"] = round(ctx.ttft * 1000, 1)
    if ctx.completion_tokens:
        fields["completion_tokens"] = ctx.completion_tokens
    if ctx.retried_from:
        fields["retried_from"] = ctx.retried_from
    if ctx.stream_error:
        fields["stream_error"] = ctx.stream_error
    if ctx.disconnected:
        fields["client_disconnected"] = True
    ids = logs.trace_ids(span) if span is not None else None
    if ids is not None:
        fields["trace_id"], fields["span_id"] = ids
    logs.access(access_log, fields)


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "other"
