"""Distributed tracing with OpenTelemetry (the seed's "logs + tracing"); off by default.

With the ``tracing`` setting at ``console`` (one JSON line per span on stdout) or
``otlp`` (OTLP over HTTP to ``tracing_endpoint``, else the exporter's own
``OTEL_EXPORTER_OTLP_*`` variables), each process exports:

- a SERVER span per HTTP request, continuing the caller's W3C ``traceparent``;
- in the gateway, a CLIENT span per call to a model server, whose context travels
  on in ``traceparent``, so one trace runs from the client to the model;
- in the model server, a ``model_inference`` span around each generation, with
  its token counts.

Off (``none``), nothing is imported beyond the API and every helper is a no-op.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from llmship import __version__
from llmship.errors import NotConfiguredError

__all__ = ["client_span", "enabled", "end_status", "server_span", "setup", "start_span"]

KINDS = ("none", "console", "otlp")


class _State:
    tracer: trace.Tracer | None = None
    """The process's tracer; None while tracing is off."""


_state = _State()


def enabled() -> bool:
    """Whether this process exports spans."""
    return _state.tracer is not None


def setup(kind: str, service: str, endpoint: str | None = None) -> None:
    """Start exporting this process's spans as ``service`` (``none``: stop nothing,
    start nothing). Spans still buffered are flushed at exit."""
    if kind == "none":
        _state.tracer = None
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    resource = Resource.create({"service.name": service, "service.version": __version__})
    provider = TracerProvider(resource=resource)
    if kind == "console":
        exporter = ConsoleSpanExporter(formatter=lambda s: s.to_json(indent=None) + os.linesep)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif kind == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:  # pragma: no cover - a dependency of llmship
            raise NotConfiguredError(
                "tracing: otlp needs opentelemetry-exporter-otlp-proto-http; reinstall llmship"
            ) from None
        otlp = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(otlp))
    else:
        raise NotConfiguredError(f"tracing: {kind!r} is not one of {', '.join(KINDS)}")
    trace.set_tracer_provider(provider)
    atexit.register(provider.shutdown)
    _state.tracer = provider.get_tracer("llmship", __version__)


def _carrier(scope: MutableMapping[str, Any]) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers") or []}


@contextmanager
def server_span(scope: MutableMapping[str, Any], name: str) -> Iterator[Span | None]:
    """A SERVER span for the ASGI request ``scope``, child of its ``traceparent``."""
    tracer = _state.tracer
    if tracer is None:
        yield None
        return
    parent = propagate.extract(_carrier(scope))
    with tracer.start_as_current_span(name, context=parent, kind=SpanKind.SERVER) as span:
        span.set_attribute("http.request.method", scope.get("method", ""))
        span.set_attribute("url.path", scope.get("path", ""))
        yield span


@contextmanager
def client_span(name: str, headers: dict[str, str]) -> Iterator[Span | None]:
    """A CLIENT span; its context goes into ``headers`` (``traceparent``)."""
    tracer = _state.tracer
    if tracer is None:
        yield None
        return
    with tracer.start_as_current_span(name, kind=SpanKind.CLIENT) as span:
        propagate.inject(headers)
        yield span


def start_span(name: str, **attributes: str | int | float) -> Span | None:
    """An INTERNAL span, child of the current one, that the caller ends (it is not made
    current: safe to hold across the yields of an async generator)."""
    tracer = _state.tracer
    if tracer is None:
        return None
    return tracer.start_span(name, attributes=attributes)


def end_status(span: Span | None, status: int) -> None:
    """Record an HTTP status on ``span``; 5xx marks it an error."""
    if span is None:
        return
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))
