"""Distributed tracing with OpenTelemetry (the seed's "logs + tracing"); off by default.

Exporting (``console``: one JSON line per span on stdout; ``otlp``: OTLP over HTTP)
is decided by :func:`plan` from llmship's settings and the standard ``OTEL_*``
variables (docs/tracing.md gives the order). When on, each process exports:

- a SERVER span per HTTP request, continuing the caller's W3C ``traceparent``;
- in the gateway, a CLIENT span ``{operation} {model}`` per call to a model server,
  with the OpenTelemetry GenAI attributes (:mod:`llmship.genai`); its context
  travels on in ``traceparent``, so one trace runs from the client to the model;
- in the model server, a span ``{operation} {model}`` around each generation:
  INTERNAL for an in-process model, CLIENT (passing ``traceparent`` on) for an
  OpenAI-compatible upstream.

The SDK itself reads ``OTEL_TRACES_SAMPLER``/``_ARG`` (TracerProvider),
``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` (resource detector) and the
``OTEL_EXPORTER_OTLP_*`` endpoint, headers, timeout and TLS variables (exporter).

Off, nothing is imported beyond the API and every helper is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from llmship import __version__
from llmship.errors import NotConfiguredError

__all__ = [
    "KINDS",
    "TracingPlan",
    "annotate",
    "enabled",
    "end",
    "end_status",
    "fail",
    "flush",
    "headers_for",
    "plan",
    "server_span",
    "setup",
    "start_client_span",
    "start_span",
]

KINDS = ("none", "console", "otlp")
OTLP_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
PROTOCOLS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")


class _State:
    tracer: trace.Tracer | None = None
    """The process's tracer; None while tracing is off."""
    provider: Any = None
    """The SDK's TracerProvider behind ``tracer`` (None while tracing is off)."""
    replaced = False
    """Whether a provider was made the API's global one (allowed once per process)."""


_state = _State()


@dataclass(frozen=True)
class TracingPlan:
    """Where this process's spans go."""

    exporters: tuple[str, ...]
    """``console`` and/or ``otlp``; empty: tracing is off."""
    endpoint: str | None
    """The OTLP traces URL given by llmship's setting (None: the exporter's own
    ``OTEL_EXPORTER_OTLP_*`` variables, else ``http://localhost:4318/v1/traces``)."""
    why: str
    """What decided it, e.g. ``LLMSHIP_TRACING=otlp`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``."""


def _flag(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "").strip().lower() == "true"


def plan(
    tracing: str | None, endpoint: str | None, environ: Mapping[str, str] = os.environ
) -> TracingPlan:
    """Decide where spans go, first rule that applies:

    1. ``OTEL_SDK_DISABLED=true``: off, whatever else is set (the standard switch);
    2. the ``tracing`` setting (``LLMSHIP_TRACING`` or llmship.yaml), when given;
    3. ``OTEL_TRACES_EXPORTER`` (a comma-separated list of otlp, console, none);
    4. otlp, when an endpoint is set: the ``tracing_endpoint`` setting,
       ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``;
    5. off.

    NotConfiguredError for an unknown exporter, or OTLP over another protocol than
    http/protobuf.
    """
    if _flag(environ, "OTEL_SDK_DISABLED"):
        return _checked(TracingPlan((), endpoint, "OTEL_SDK_DISABLED=true"), environ)
    if tracing is not None:
        if tracing not in KINDS:
            raise NotConfiguredError(f"tracing: {tracing!r} is not one of {', '.join(KINDS)}")
        kinds: tuple[str, ...] = () if tracing == "none" else (tracing,)
        return _checked(TracingPlan(kinds, endpoint, f"LLMSHIP_TRACING={tracing}"), environ)
    listed = environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if listed:
        names = [n.strip().lower() for n in listed.split(",") if n.strip()]
        unknown = [n for n in names if n not in KINDS]
        if unknown:
            raise NotConfiguredError(
                f"OTEL_TRACES_EXPORTER={listed!r}: {', '.join(unknown)} is not one of "
                f"{', '.join(KINDS)} (llmship exports OTLP over HTTP or to the console)"
            )
        kinds = tuple(dict.fromkeys(n for n in names if n != "none"))
        return _checked(TracingPlan(kinds, endpoint, f"OTEL_TRACES_EXPORTER={listed}"), environ)
    if endpoint:
        return _checked(TracingPlan(("otlp",), endpoint, "LLMSHIP_TRACING_ENDPOINT"), environ)
    for name in OTLP_ENDPOINTS:
        if environ.get(name, "").strip():
            return _checked(TracingPlan(("otlp",), None, name), environ)
    return TracingPlan((), endpoint, "off by default")


def _checked(chosen: TracingPlan, environ: Mapping[str, str]) -> TracingPlan:
    if "otlp" in chosen.exporters:
        for name in PROTOCOLS:
            protocol = environ.get(name, "").strip()
            if protocol and protocol != "http/protobuf":
                raise NotConfiguredError(
                    f"{name}={protocol}: llmship exports OTLP over HTTP only; set it to "
                    "http/protobuf (or unset it) and point the endpoint at the collector's "
                    "HTTP port (4318)"
                )
    return chosen


def enabled() -> bool:
    """Whether this process exports spans."""
    return _state.tracer is not None


def setup(
    kind: str | None,
    service: str,
    endpoint: str | None = None,
    *,
    environment: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> TracingPlan:
    """Start exporting this process's spans as ``service`` (the resource's
    ``service.name`` unless ``OTEL_SERVICE_NAME`` or ``OTEL_RESOURCE_ATTRIBUTES`` say
    otherwise), as :func:`plan` decides from ``kind`` (the ``tracing`` setting, None
    when not given) and ``endpoint``. Spans still buffered are flushed at exit."""
    chosen = plan(kind, endpoint, environ)
    _stop()
    if not chosen.exporters:
        return chosen
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    ours: dict[str, AttributeValue] = {"service.name": service, "service.version": __version__}
    if environment:
        ours["deployment.environment.name"] = environment
    # the standard variables win over llmship's own names
    resource = Resource.create({**ours, **OTELResourceDetector().detect().attributes})
    provider = TracerProvider(resource=resource)  # reads OTEL_TRACES_SAMPLER(_ARG)
    if "console" in chosen.exporters:
        exporter = ConsoleSpanExporter(formatter=lambda s: s.to_json(indent=None) + os.linesep)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    if "otlp" in chosen.exporters:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:  # pragma: no cover - a dependency of llmship
            raise NotConfiguredError(
                "tracing: otlp needs opentelemetry-exporter-otlp-proto-http; reinstall llmship"
            ) from None
        otlp = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(otlp))
    if not _state.replaced:
        trace.set_tracer_provider(provider)  # the global one can be set once per process
        _state.replaced = True
    _state.provider = provider  # flushed at exit by its own handler
    _state.tracer = provider.get_tracer("llmship", __version__)
    return chosen


def flush(timeout_s: float = 5.0) -> bool:
    """Export the spans still buffered; False when they could not all go in time."""
    if _state.provider is None:
        return True
    return bool(_state.provider.force_flush(int(timeout_s * 1000)))


def _stop() -> None:
    """Stop exporting: flush and shut down the provider a former :func:`setup` made."""
    provider, _state.provider, _state.tracer = _state.provider, None, None
    if provider is not None:
        provider.shutdown()


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


def start_client_span(
    name: str, headers: MutableMapping[str, str], attributes: Mapping[str, AttributeValue]
) -> Span | None:
    """A CLIENT span, child of the current one, that the caller ends; its context goes
    into ``headers`` (``traceparent``)."""
    tracer = _state.tracer
    if tracer is None:
        return None
    span = tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
    propagate.inject(headers, context=trace.set_span_in_context(span))
    return span


def start_span(
    name: str,
    attributes: Mapping[str, AttributeValue] | None = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
) -> Span | None:
    """A span (INTERNAL unless ``kind`` says), child of the current one, that the caller
    ends (it is not made current: safe to hold across the yields of an async generator)."""
    tracer = _state.tracer
    if tracer is None:
        return None
    return tracer.start_span(name, kind=kind, attributes=attributes)


def headers_for(span: Span | None) -> dict[str, str]:
    """W3C headers (``traceparent``) that make a callee's spans children of ``span``."""
    headers: dict[str, str] = {}
    if span is not None:
        propagate.inject(headers, context=trace.set_span_in_context(span))
    return headers


def annotate(span: Span | None, attributes: Mapping[str, AttributeValue | None]) -> None:
    """Set ``attributes`` on ``span`` (None values are left out)."""
    if span is None:
        return
    for key, value in attributes.items():
        if value is not None:
            span.set_attribute(key, value)


def fail(span: Span | None, error_type: str) -> None:
    """Mark ``span`` failed: ``error.type`` and an ERROR status."""
    if span is None:
        return
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, error_type))


def end(span: Span | None) -> None:
    """End ``span`` unless it has ended already."""
    if span is not None and span.is_recording():
        span.end()


def end_status(span: Span | None, status: int, *, client: bool = False) -> None:
    """Record an HTTP status on ``span``; 5xx marks it an error (4xx too on a CLIENT
    span, as the HTTP conventions say)."""
    if span is None:
        return
    span.set_attribute("http.response.status_code", status)
    if status >= 500 or (client and status >= 400):
        fail(span, str(status))
