"""The openai backend against an in-memory upstream (httpx.MockTransport).

The real counterpart, a live upstream, is in tests/test_serve_process.py."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from llmship.backends.base import Chunk, GenerationRequest, Message
from llmship.backends.openai import OpenAIBackend
from llmship.errors import (
    ContextLengthError,
    GenerationTimeoutError,
    InvalidRequestError,
    UpstreamError,
)
from llmship.release.spec import parse_spec

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


SPEC = parse_spec(
    {
        "name": "up",
        "version": "1.0.0",
        "backend": "openai",
        "model": {
            "base_url": "http://upstream.test/v1",
            "id": "m1",
            "api_key_env": "TEST_UPSTREAM_KEY",
        },
    }
)
CHAT = GenerationRequest(max_tokens=5, messages=(Message("user", "hi"),), seed=3, stop=("\n",))


def sse(*events: dict[str, object]) -> bytes:
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    return body + b"data: [DONE]\n\n"


def backend(handler: Callable[[httpx.Request], httpx.Response]) -> OpenAIBackend:
    return OpenAIBackend(SPEC, transport=httpx.MockTransport(handler))


async def collect(b: OpenAIBackend, request: GenerationRequest = CHAT) -> list[Chunk]:
    return [chunk async for chunk in b.stream(request)]


async def test_streams_deltas_and_takes_usage_from_upstream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_UPSTREAM_KEY", "sekret")
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            content=sse(
                {"choices": [{"delta": {"role": "assistant", "content": ""}}]},
                {"choices": [{"delta": {"content": "Hel"}}]},
                {"choices": [{"delta": {"content": "lo"}, "finish_reason": "stop"}]},
                {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3}},
            ),
            headers={"content-type": "text/event-stream"},
        )

    chunks = await collect(backend(handler))
    assert [c.text for c in chunks] == ["Hel", "lo", ""]
    assert sum(c.tokens for c in chunks) == 3  # corrected to the upstream's count
    assert chunks[-1].finish_reason == "stop" and chunks[-1].prompt_tokens == 9
    sent = json.loads(seen[0].content)
    assert seen[0].url.path == "/v1/chat/completions"
    assert seen[0].headers["authorization"] == "Bearer sekret"
    assert sent["model"] == "m1" and sent["stream"] is True and sent["seed"] == 3
    assert sent["stop"] == ["\n"] and sent["stream_options"] == {"include_usage": True}


async def test_completions_path_for_raw_prompts() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/completions"
        assert json.loads(request.content)["prompt"] == "Once"
        return httpx.Response(
            200, content=sse({"choices": [{"text": " upon", "finish_reason": "length"}]})
        )

    chunks = await collect(backend(handler), GenerationRequest(max_tokens=1, prompt="Once"))
    assert [c.text for c in chunks] == [" upon", ""]
    assert chunks[-1].finish_reason == "length" and chunks[-1].prompt_tokens is None


@pytest.mark.parametrize(
    ("status", "message", "error"),
    [
        (500, "boom", UpstreamError),
        (503, "overloaded", UpstreamError),
        (400, "This model's maximum context length is 2048 tokens", ContextLengthError),
        (400, "temperature out of range", InvalidRequestError),
    ],
)
async def test_upstream_errors_map_to_llmship_errors(
    status: int, message: str, error: type[Exception]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": {"message": message}})

    with pytest.raises(error, match=message.split(maxsplit=1)[0]):
        await collect(backend(handler))


async def test_unreachable_upstream_is_an_upstream_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    b = backend(handler)
    with pytest.raises(UpstreamError, match="failed"):
        await collect(b)
    with pytest.raises(UpstreamError, match="cannot reach"):
        await b.start()
    assert await b.health() is False


async def test_start_checks_the_model_is_served() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [{"id": "other", "object": "model"}]})

    with pytest.raises(UpstreamError, match="does not serve 'm1'"):
        await backend(handler).start()


async def test_upstream_timeout_is_a_504() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(GenerationTimeoutError, match=r"runtime\.timeout_s"):
        await collect(backend(handler))
