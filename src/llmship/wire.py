"""Wire models of the LLM API that the model server serves and the gateway routes.

The OpenAI-compatible requests (chat and text completions), the seed's
``/predict`` and the OpenAI-style error body: the model server validates and
answers with them; the gateway, which forwards these bodies as raw bytes,
documents its proxied routes and answers its own errors with them. The model
server's own models (``/v1/models``) are in :mod:`llmship.server.protocol`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_MESSAGES = 1024
"""Most messages in one chat request."""
MAX_PARTS = 256
"""Most text parts in one message's content."""
MAX_TEXT_CHARS = 1_048_576
"""Longest text of one message, part or prompt, in characters (the body limit, the
``max_body_bytes`` setting, is usually reached first)."""
MAX_STOPS = 4
"""Most stop strings, as OpenAI allows."""
MAX_STOP_CHARS = 256
"""Longest stop string, in characters."""
MAX_NAME_CHARS = 256
"""Longest ``model``, ``name`` or ``user``."""
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1
"""``seed`` is a signed 64-bit integer, as in OpenAI's API."""

NONBLANK = r"[^\s\x1c-\x1f\x85]"
"""A character that is not white space, as ``str.strip`` sees it: the pattern the
OpenAPI documents give to text that must not be blank (JSON Schema's ``\\s`` misses
U+001C to U+001F and U+0085). The server's own check, with its clearer message, is
``text.strip()``."""

Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
Prompt = Annotated[str, Field(max_length=MAX_TEXT_CHARS, json_schema_extra={"pattern": NONBLANK})]

SOME_TEXT: dict[str, Any] = {
    "contains": {
        "type": "object",
        "required": ["content"],
        "properties": {
            "content": {
                "anyOf": [
                    {"type": "string", "pattern": NONBLANK},
                    {
                        "type": "array",
                        "contains": {
                            "type": "object",
                            "required": ["text"],
                            "properties": {"text": {"type": "string", "pattern": NONBLANK}},
                        },
                    },
                ]
            }
        },
    }
}
"""What the documents say of ``messages``: one message at least has some text."""


def _only(*values: Any) -> Any:
    """A ``json_schema_extra`` that documents a field as taking only ``values``: the
    fields OpenAI has and llmship refuses, with a message, when set."""

    def extra(schema: dict[str, Any]) -> None:
        schema.pop("anyOf", None)
        schema.pop("type", None)
        schema["enum"] = list(values)

    return extra


Stop = Annotated[str, Field(max_length=MAX_STOP_CHARS)]


class _Request(BaseModel):
    # OpenAI clients send fields we do not use; they are accepted and ignored.
    model_config = ConfigDict(extra="ignore")


class StreamOptions(_Request):
    include_usage: bool = Field(False, description="Send a last chunk with token usage.")


class TextPart(_Request):
    type: Literal["text"] = Field(description="Only text parts are supported.")
    text: str = Field(max_length=MAX_TEXT_CHARS, description="The text of this part.")


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool"] = Field(
        description="Who wrote the message."
    )
    content: Text | Annotated[list[TextPart], Field(max_length=MAX_PARTS)] | None = Field(
        None, description="Text, or a list of text parts."
    )
    name: str | None = Field(None, max_length=MAX_NAME_CHARS, description="Optional author name.")

    def text(self) -> str:
        """The message as plain text."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class _Sampling(_Request):
    model: str | None = Field(
        None,
        max_length=MAX_NAME_CHARS,
        description="Release name, NAME@VERSION, or omitted for the served release.",
    )
    temperature: float | None = Field(None, ge=0.0, le=2.0, description="Sampling temperature.")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    top_k: int | None = Field(None, ge=0, description="Top-k sampling (0: off).")
    n: int = Field(1, ge=1, le=1, description="Number of choices; only 1 is supported.")
    stream: bool = Field(False, description="Stream server-sent events ending in `data: [DONE]`.")
    stream_options: StreamOptions | None = Field(None, description="Streaming options.")
    stop: Stop | Annotated[list[Stop], Field(max_length=MAX_STOPS)] | None = Field(
        None, description="A stop string, or up to 4."
    )
    seed: int | None = Field(
        None, ge=SEED_MIN, le=SEED_MAX, description="Seed for reproducible sampling (64-bit)."
    )
    presence_penalty: float | None = Field(
        None, ge=-2.0, le=2.0, description="Penalty for tokens already present."
    )
    frequency_penalty: float | None = Field(
        None, ge=-2.0, le=2.0, description="Penalty growing with a token's count so far."
    )
    user: str | None = Field(
        None,
        max_length=MAX_NAME_CHARS,
        description="End-user id; the model server ignores it (the gateway keys A/B on it).",
    )

    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ChatCompletionRequest(_Sampling):
    """`POST /v1/chat/completions`."""

    messages: list[ChatMessage] = Field(
        min_length=1,
        max_length=MAX_MESSAGES,
        description="The conversation so far; at least one message has some text.",
        json_schema_extra=SOME_TEXT,
    )
    max_tokens: int | None = Field(None, ge=1, description="Most tokens to generate.")
    max_completion_tokens: int | None = Field(None, ge=1, description="Alias of max_tokens.")
    logprobs: bool | None = Field(
        None,
        description="Not supported; must be false or absent.",
        json_schema_extra=_only(False, None),
    )


class CompletionRequest(_Sampling):
    """`POST /v1/completions`."""

    prompt: Prompt | Annotated[list[Prompt], Field(min_length=1, max_length=1)] = Field(
        description="The text to continue (not blank): a string, or a list of one string."
    )
    max_tokens: int | None = Field(None, ge=1, description="Most tokens to generate.")
    echo: bool = Field(
        False, description="Not supported; must be false.", json_schema_extra=_only(False)
    )
    suffix: str | None = Field(
        None, description="Not supported; must be absent.", json_schema_extra=_only(None)
    )


class PredictRequest(_Request):
    """`POST /predict`: the seed's API."""

    prompt: str = Field(
        min_length=1,
        max_length=MAX_TEXT_CHARS,
        json_schema_extra={"pattern": NONBLANK},
        description="What to ask the model (not blank).",
        examples=["请解释什么是量子计算"],
    )
    max_new_tokens: int = Field(100, ge=1, description="Most tokens to generate.")
    temperature: float | None = Field(None, ge=0.0, le=2.0, description="Sampling temperature.")
    seed: int | None = Field(
        None, ge=SEED_MIN, le=SEED_MAX, description="Seed for reproducible sampling (64-bit)."
    )


class Usage(BaseModel):
    """Token counts; null where the model did not say (an OpenAI-compatible upstream that
    streams no usage leaves the prompt's count unknown), never 0 for unknown."""

    prompt_tokens: int | None = Field(
        description="Tokens in the prompt; null when the upstream model did not report it."
    )
    completion_tokens: int | None = Field(description="Tokens generated; null when not known.")
    total_tokens: int | None = Field(description="Sum of both; null when either is unknown.")


class PredictResponse(BaseModel):
    response: str = Field(description="The generated text.")
    query_id: str = Field(description="Id of this query, also sent as the X-Request-ID header.")
    version: str = Field(description="The release that answered, NAME@VERSION.")
    finish_reason: str = Field(description="`stop` (natural end) or `length` (token limit).")
    usage: Usage = Field(description="Token counts.")


class ErrorDetail(BaseModel):
    message: str = Field(description="What went wrong and what to fix.")
    type: str = Field(description="invalid_request_error, rate_limit_error, server_error, ...")
    param: str | None = Field(None, description="The request field at fault, if any.")
    code: str | None = Field(None, description="Machine-readable code.")


class ErrorResponse(BaseModel):
    error: ErrorDetail = Field(description="What went wrong.")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Invalid request: the message says what to fix."},
    413: {"model": ErrorResponse, "description": "The body is larger than `max_body_bytes`."},
    404: {"model": ErrorResponse, "description": "Unknown model."},
    429: {"model": ErrorResponse, "description": "Queue full; retry after `Retry-After` seconds."},
    503: {"model": ErrorResponse, "description": "Model still loading."},
    504: {"model": ErrorResponse, "description": "Request timed out."},
}


TOKEN_FIELDS = {
    "ChatCompletionRequest": ("max_tokens", "max_completion_tokens"),
    "CompletionRequest": ("max_tokens",),
    "PredictRequest": ("max_new_tokens",),
}
"""The request fields bounded by the ``max_request_tokens`` setting, by schema."""


def document_bodies(
    openapi: dict[str, Any],
    models: tuple[type[BaseModel], ...],
    max_request_tokens: int,
    served: tuple[str, ...] | None = None,
) -> None:
    """Put ``models``' JSON schemas into ``openapi`` as pydantic writes them (FastAPI's
    document would turn 64-bit bounds into floats that round past them), with the
    ``max_request_tokens`` setting as the bound of the token fields and, given
    ``served``, the model names a request may name (a model server knows them; a
    gateway's change with its traffic policy)."""
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    for model in models:
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(body.pop("$defs", {}))
        schemas[model.__name__] = body
    state_token_limit(openapi, max_request_tokens)
    if served is None:
        return
    for name in ("ChatCompletionRequest", "CompletionRequest"):
        prop = schemas.get(name, {}).get("properties", {}).get("model", {})
        for branch in prop.get("anyOf", []):
            if branch.get("type") == "string":
                branch["enum"] = list(served)


def state_token_limit(openapi: dict[str, Any], limit: int) -> None:
    """Write ``limit`` (the ``max_request_tokens`` setting) into ``openapi`` as the
    ``maximum`` of every token-count field, so the document says what the server
    accepts: the models cannot, since the limit is a setting."""
    schemas = openapi.get("components", {}).get("schemas", {})
    for name, fields in TOKEN_FIELDS.items():
        properties = schemas.get(name, {}).get("properties", {})
        for field in fields:
            prop = properties.get(field)
            if prop is None:
                continue
            for branch in prop.get("anyOf", [prop]):
                if branch.get("type") == "integer":
                    branch["maximum"] = limit
