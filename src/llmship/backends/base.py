"""The interface every model backend implements: a stream of chunks, info, health."""

from __future__ import annotations

import abc
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Message:
    """One chat message with plain-text content."""

    role: str
    content: str


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate. Exactly one of ``messages`` (chat) or ``prompt`` (raw text) is set."""

    max_tokens: int
    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    seed: int | None = None
    stop: tuple[str, ...] = ()
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    trace_headers: dict[str, str] = field(default_factory=dict)
    """W3C trace context (``traceparent``) that a backend calling a remote model sends
    along, so the remote's spans join the model server's trace."""
    stream: bool = True
    """False when the caller takes only the whole answer: a backend calling a remote model
    may then ask for it in one response, which carries the usage and the errors that some
    servers' streams leave out (llama-cpp-python's)."""


@dataclass(frozen=True)
class Chunk:
    """A piece of generated text.

    ``tokens`` is the number of generated tokens this piece accounts for. The last
    chunk of a stream carries ``finish_reason`` ("stop" or "length") and
    ``prompt_tokens``; its ``text`` may be empty.
    """

    text: str
    tokens: int = 0
    finish_reason: str | None = None
    prompt_tokens: int | None = None


@dataclass(frozen=True)
class BackendInfo:
    """What a backend serves."""

    kind: str
    model: str
    context_length: int | None
    details: dict[str, Any] = field(default_factory=dict)


class Backend(abc.ABC):
    """A source of generated text. Implementations: ``llamacpp``, ``openai``.

    ``stream()`` raises llmship errors (``ContextLengthError``, ``UpstreamError``)
    before its first chunk when the request cannot be served, and stops generating
    when the iterator is closed (a client that went away).
    """

    #: How many requests this backend generates at once.
    max_concurrency: int = 1

    @abc.abstractmethod
    async def start(self) -> None:
        """Load weights or check the upstream; raise an llmship error on failure."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the model and connections."""

    @abc.abstractmethod
    def stream(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        """Generate, chunk by chunk."""

    @abc.abstractmethod
    def info(self) -> BackendInfo:
        """What is served."""

    @abc.abstractmethod
    async def health(self) -> bool:
        """True when the backend can generate now."""
