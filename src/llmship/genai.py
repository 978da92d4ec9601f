"""OpenTelemetry GenAI semantic conventions: the span name and ``gen_ai.*`` attributes of
one call to a model, read from its request and its answer (pure functions).

Span names are ``{gen_ai.operation.name} {gen_ai.request.model}`` (``chat smollm2-chat``).
The provider is ``gen_ai.provider.name``, which replaced the deprecated
``gen_ai.system``. llmship adds ``llmship.release`` (NAME@VERSION) and
``llmship.variant`` where it knows them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "OPERATIONS",
    "Attributes",
    "StreamFacts",
    "operation",
    "provider",
    "request_attributes",
    "response_attributes",
    "server_attributes",
    "span_name",
]

Attributes = dict[str, str | int | float | bool | list[str]]

OPERATIONS = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "text_completion",
    "/predict": "chat",  # the model server answers /predict with its chat template
}
"""``gen_ai.operation.name`` per route."""

PROVIDERS = {"openai": "openai", "llamacpp": "llama.cpp"}
"""``gen_ai.provider.name`` per backend kind: the OpenAI API flavour for an
OpenAI-compatible upstream, ``llama.cpp`` for the in-process model."""

GATEWAY_PROVIDER = "llmship"
"""``gen_ai.provider.name`` of the gateway's calls: an llmship model server."""

_REQUEST_NUMBERS = (
    ("max_tokens", "gen_ai.request.max_tokens", int),
    ("max_completion_tokens", "gen_ai.request.max_tokens", int),
    ("max_new_tokens", "gen_ai.request.max_tokens", int),
    ("temperature", "gen_ai.request.temperature", float),
    ("top_p", "gen_ai.request.top_p", float),
    ("seed", "gen_ai.request.seed", int),
)
"""Request fields (OpenAI's, and /predict's ``max_new_tokens``) and their attribute."""


def operation(route: str) -> str:
    """``gen_ai.operation.name`` of ``route`` (``chat`` for a route not listed)."""
    return OPERATIONS.get(route, "chat")


def provider(backend_kind: str) -> str:
    """``gen_ai.provider.name`` of a model server's backend."""
    return PROVIDERS.get(backend_kind, backend_kind)


def span_name(op: str, model: str | None) -> str:
    """``{operation} {model}``, or the operation alone when the model is unknown."""
    return f"{op} {model}" if model else op


def server_attributes(url: str) -> Attributes:
    """``server.address`` and ``server.port`` of the base URL ``url``."""
    parts = urlsplit(url)
    found: Attributes = {}
    if parts.hostname:
        found["server.address"] = parts.hostname
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None and parts.scheme in ("http", "https"):
        port = 80 if parts.scheme == "http" else 443
    if port is not None:
        found["server.port"] = port
    return found


def request_attributes(route: str, payload: Mapping[str, Any]) -> Attributes:
    """``gen_ai.operation.name`` and the ``gen_ai.request.*`` attributes of a request
    body (``model`` only when it names one); fields of the wrong type are left out."""
    found: Attributes = {"gen_ai.operation.name": operation(route)}
    model = payload.get("model")
    if isinstance(model, str) and model:
        found["gen_ai.request.model"] = model
    for field, name, kind in _REQUEST_NUMBERS:
        value = payload.get(field)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if kind is int and not isinstance(value, int):
            continue
        found.setdefault(name, kind(value))
    return found


def response_attributes(answer: Mapping[str, Any]) -> Attributes:
    """``gen_ai.response.*`` and ``gen_ai.usage.*`` of a whole answer: an OpenAI chat
    or text completion, or /predict's (``query_id``, ``version``, ``finish_reason``)."""
    found: Attributes = {}
    ident = answer.get("id", answer.get("query_id"))
    if isinstance(ident, str) and ident:
        found["gen_ai.response.id"] = ident
    model = answer.get("model", answer.get("version"))
    if isinstance(model, str) and model:
        found["gen_ai.response.model"] = model
    reasons = [
        str(choice["finish_reason"])
        for choice in answer.get("choices") or []
        if isinstance(choice, dict) and choice.get("finish_reason")
    ]
    if not reasons and isinstance(answer.get("finish_reason"), str):
        reasons = [answer["finish_reason"]]
    if reasons:
        found["gen_ai.response.finish_reasons"] = reasons
    found.update(_usage(answer.get("usage")))
    return found


def _usage(usage: Any) -> Attributes:
    found: Attributes = {}
    if not isinstance(usage, dict):
        return found
    for field, name in (
        ("prompt_tokens", "gen_ai.usage.input_tokens"),
        ("completion_tokens", "gen_ai.usage.output_tokens"),
    ):
        value = usage.get(field)
        if isinstance(value, int) and not isinstance(value, bool):
            found[name] = value
    return found


class StreamFacts:
    """The ``gen_ai.response.*`` and usage attributes of a server-sent event stream, fed
    whole events as they pass: the id and model of the first event, each choice's
    finish reason, and the last usage seen."""

    __slots__ = ("_found", "_reasons", "_seen")

    def __init__(self) -> None:
        self._found: Attributes = {}
        self._reasons: dict[int, str] = {}
        self._seen = False

    def feed(self, events: bytes) -> None:
        """Read whole events (``data: {...}`` blocks); anything else is skipped."""
        for block in events.split(b"\n\n"):
            data = block.strip()
            if not data.startswith(b"data:"):
                continue
            data = data[5:].strip()
            if data == b"[DONE]" or not data.startswith(b"{"):
                continue
            # most events only add text: parse the first, and those that end or count
            if self._seen and b'"usage"' not in data and b'"finish_reason":null' in data:
                continue
            try:
                event = json.loads(data)
            except ValueError:
                continue
            if isinstance(event, dict):
                self._event(event)

    def _event(self, event: dict[str, Any]) -> None:
        for key, name in (("id", "gen_ai.response.id"), ("model", "gen_ai.response.model")):
            value = event.get(key)
            if isinstance(value, str) and value and name not in self._found:
                self._found[name] = value
        self._seen = True
        for choice in event.get("choices") or []:
            if isinstance(choice, dict) and choice.get("finish_reason"):
                index = choice.get("index")
                self._reasons[index if isinstance(index, int) else 0] = str(choice["finish_reason"])
        self._found.update(_usage(event.get("usage")))

    def attributes(self) -> Attributes:
        """What the stream said so far."""
        found = dict(self._found)
        if self._reasons:
            found["gen_ai.response.finish_reasons"] = [
                self._reasons[i] for i in sorted(self._reasons)
            ]
        return found
