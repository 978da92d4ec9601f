"""In-memory fakes for tests. Each has a real counterpart tested elsewhere."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable

from llmship.backends.base import Backend, BackendInfo, Chunk, GenerationRequest
from llmship.errors import ContextLengthError
from llmship.release.spec import ReleaseSpec


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


class EchoModel(Backend):
    """A chat model made of a function: ``answer(last user message, request)`` -> text.

    Each answer streams as one chunk per word. ``calls`` counts every request of
    every instance made by the same :class:`FakeBackends` (the fake of llama.cpp or
    an upstream behind ``create_backend``; real ones: tests/test_serve_process.py).
    """

    def __init__(
        self,
        answer: Callable[[str, GenerationRequest], str],
        *,
        max_concurrency: int = 4,
        delay: float = 0.0,
        log: list[GenerationRequest] | None = None,
    ):
        self.answer = answer
        self.max_concurrency = max_concurrency
        self.delay = delay
        self.requests: list[GenerationRequest] = log if log is not None else []
        self.loaded = False
        self.active = 0
        self.peak = 0

    async def start(self) -> None:
        self.loaded = True

    async def close(self) -> None:
        self.loaded = False

    def info(self) -> BackendInfo:
        return BackendInfo(kind="fake", model="echo", context_length=4096)

    async def health(self) -> bool:
        return self.loaded

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        if not self.loaded:
            raise RuntimeError("stream() before start()")
        self.requests.append(request)
        users = [m.content for m in request.messages or () if m.role == "user"]
        text = self.answer(users[-1] if users else request.prompt or "", request)
        if text.startswith("ERROR:"):
            raise ContextLengthError(text.removeprefix("ERROR:").strip(), param="messages")
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            words = text.split(" ")[: request.max_tokens]
            for index, word in enumerate(words):
                await asyncio.sleep(self.delay)
                yield Chunk(text=word if index == 0 else " " + word, tokens=1)
            yield Chunk(text="", finish_reason="stop", prompt_tokens=len(users))
        finally:
            self.active -= 1


class FakeBackends:
    """A ``create_backend`` stand-in: each release (by name and version) gets an
    :class:`EchoModel` answering with ``answers[ref]`` (or ``default``).

    ``requests[ref]`` lists what each release was asked; ``started[ref]`` counts
    how often its backend was created.
    """

    def __init__(
        self,
        default: Callable[[str, GenerationRequest], str],
        answers: dict[str, Callable[[str, GenerationRequest], str]] | None = None,
        *,
        max_concurrency: int = 4,
        delay: float = 0.0,
    ):
        self.default = default
        self.answers = answers or {}
        self.max_concurrency = max_concurrency
        self.delay = delay
        self.requests: dict[str, list[GenerationRequest]] = {}
        self.started: dict[str, int] = {}
        self.models: list[EchoModel] = []

    def __call__(self, spec: ReleaseSpec) -> Backend:
        ref = spec.ref
        self.started[ref] = self.started.get(ref, 0) + 1
        model = EchoModel(
            self.answers.get(ref, self.default),
            max_concurrency=self.max_concurrency,
            delay=self.delay,
            log=self.requests.setdefault(ref, []),
        )
        self.models.append(model)
        return model

    @property
    def calls(self) -> int:
        """Generation requests made, all releases together."""
        return sum(len(r) for r in self.requests.values())
