"""The bodies of the routes the gateway forwards: parsed once, and held to the limits of
the wire models before any release sees them.

The gateway forwards a body as the bytes it received, so it does not build the wire
model; it validates the parsed JSON against it, so that a request over a limit (too
many messages, a content too long, too many stop strings, a seed out of range) is a
400 here, on the public port, and never costs a model server anything.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ValidationError

from llmship.errors import InvalidRequestError
from llmship.http import invalid_body
from llmship.wire import ChatCompletionRequest, CompletionRequest, PredictRequest

WIRE_MODELS: dict[str, type[BaseModel]] = {
    "/v1/chat/completions": ChatCompletionRequest,
    "/v1/completions": CompletionRequest,
    "/predict": PredictRequest,
}
"""The wire model of each forwarded route's body."""


def parse_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 that says what to fix."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise InvalidRequestError(
            "the request body is not valid JSON; send a JSON object"
        ) from None
    if not isinstance(payload, dict):
        raise InvalidRequestError(
            f"the request body is a JSON {type(payload).__name__}; send a JSON object"
        )
    return payload


def check_body(route: str, payload: dict[str, Any]) -> None:
    """400 when ``payload`` is not a valid body of ``route`` (the model server's own
    validation, with the same message)."""
    model = WIRE_MODELS.get(route)
    if model is None:
        return
    try:
        model.model_validate(payload)
    except ValidationError as exc:
        raise invalid_body(exc) from None
