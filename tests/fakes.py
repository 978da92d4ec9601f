"""In-memory fakes for tests. Each has a real counterpart tested elsewhere."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from llmship.backends.base import Backend, BackendInfo, Chunk, GenerationRequest
from llmship.errors import ContextLengthError


class FakeBackend(Backend):
    """Answers with ``words`` (one token each), ``delay`` seconds apart.

    Fake of ``LlamaCppBackend`` (real one: tests/test_serve_process.py).
    """

    def __init__(
        self,
        words: list[str] | None = None,
        *,
        delay: float = 0.0,
        context_length: int = 64,
        load_delay: float = 0.0,
        max_concurrency: int = 1,
    ):
        self.words = words or ["Hello", " there", ",", " friend", "."]
        self.delay = delay
        self.context_length = context_length
        self.load_delay = load_delay
        self.max_concurrency = max_concurrency
        self.requests: list[GenerationRequest] = []
        self.cancelled = 0
        self.loaded = False
        self.active = 0

    async def start(self) -> None:
        await asyncio.sleep(self.load_delay)
        self.loaded = True

    async def close(self) -> None:
        self.loaded = False

    def info(self) -> BackendInfo:
        return BackendInfo(kind="fake", model="fake.gguf", context_length=self.context_length)

    async def health(self) -> bool:
        return self.loaded

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        self.requests.append(request)
        text = request.prompt or " ".join(m.content for m in request.messages or ())
        prompt_tokens = len(text.split())
        if prompt_tokens >= self.context_length:
            raise ContextLengthError(
                f"the prompt is {prompt_tokens} tokens; too long",
                param="prompt" if request.prompt is not None else "messages",
            )
        words = self.words[: request.max_tokens]
        finish = "length" if len(words) < len(self.words) else "stop"
        self.active += 1
        finished = False
        try:
            for word in words:
                if self.delay:
                    await asyncio.sleep(self.delay)
                yield Chunk(text=word, tokens=1)
            finished = True
            yield Chunk(text="", finish_reason=finish, prompt_tokens=prompt_tokens)
        finally:
            self.active -= 1
            if not finished:
                self.cancelled += 1
