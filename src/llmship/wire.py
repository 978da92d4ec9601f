"""Wire models of the LLM API that the model server serves and the gateway routes.

The OpenAI-compatible requests (chat and text completions), the seed's
``/predict`` and the OpenAI-style error body: the model server validates and
answers with them; the gateway, which forwards these bodies as raw bytes,
documents its proxied routes and answers its own errors with them. The model
server's own models (``/v1/models``) are in :mod:`llmship.server.protocol`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Request(BaseModel):
    # OpenAI clients send fields we do not use; they are accepted and ignored.
    model_config = ConfigDict(extra="ignore")


class StreamOptions(_Request):
    include_usage: bool = Field(False, description="Send a last chunk with token usage.")


class TextPart(_Request):
    type: Literal["text"] = Field(description="Only text parts are supported.")
    text: str = Field(description="The text of this part.")


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool"] = Field(
        description="Who wrote the message."
    )
    content: str | list[TextPart] | None = Field(None, description="Text, or a list of text parts.")
    name: str | None = Field(None, description="Optional author name.")

    def text(self) -> str:
        """The message as plain text."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class _Sampling(_Request):
    model: str | None = Field(
        None, description="Release name, NAME@VERSION, or omitted for the served release."
    )
    temperature: float | None = Field(None, ge=0.0, le=2.0, description="Sampling temperature.")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    top_k: int | None = Field(None, ge=0, description="Top-k sampling (0: off).")
    n: int = Field(1, description="Number of choices; only 1 is supported.")
    stream: bool = Field(False, description="Stream server-sent events ending in `data: [DONE]`.")
    stream_options: StreamOptions | None = Field(None, description="Streaming options.")
    stop: str | list[str] | None = Field(None, description="Up to 4 stop strings.")
    seed: int | None = Field(None, description="Seed for reproducible sampling.")
    presence_penalty: float | None = Field(
        None, ge=-2.0, le=2.0, description="Penalty for tokens already present."
    )
    frequency_penalty: float | None = Field(
        None, ge=-2.0, le=2.0, description="Penalty growing with a token's count so far."
    )
    user: str | None = Field(
        None, description="End-user id; the model server ignores it (the gateway keys A/B on it)."
    )

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop strings are allowed")
        return value

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int) -> int:
        if value != 1:
            raise ValueError("only n=1 is supported; send one request per choice")
        return value

    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ChatCompletionRequest(_Sampling):
    """`POST /v1/chat/completions`."""

    messages: list[ChatMessage] = Field(min_length=1, description="The conversation so far.")
    max_tokens: int | None = Field(None, ge=1, description="Most tokens to generate.")
    max_completion_tokens: int | None = Field(None, ge=1, description="Alias of max_tokens.")
    logprobs: bool | None = Field(None, description="Not supported; must be false or absent.")


class CompletionRequest(_Sampling):
    """`POST /v1/completions`."""

    prompt: str | list[str] = Field(description="The text to continue (one prompt).")
    max_tokens: int | None = Field(None, ge=1, description="Most tokens to generate.")
    echo: bool = Field(False, description="Not supported; must be false.")
    suffix: str | None = Field(None, description="Not supported; must be absent.")


class PredictRequest(_Request):
    """`POST /predict`: the seed's API."""

    prompt: str = Field(description="What to ask the model.", examples=["请解释什么是量子计算"])
    max_new_tokens: int = Field(100, ge=1, description="Most tokens to generate.")
    temperature: float | None = Field(None, ge=0.0, le=2.0, description="Sampling temperature.")
    seed: int | None = Field(None, description="Seed for reproducible sampling.")


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
    404: {"model": ErrorResponse, "description": "Unknown model."},
    429: {"model": ErrorResponse, "description": "Queue full; retry after `Retry-After` seconds."},
    503: {"model": ErrorResponse, "description": "Model still loading."},
    504: {"model": ErrorResponse, "description": "Request timed out."},
}
