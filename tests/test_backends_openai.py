"""The openai backend against an in-memory upstream (httpx.MockTransport).

The real counterpart, a live upstream, is in tests/test_serve_process.py."""

from __future__ import annotations

import asyncio
import dataclasses
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


async def test_no_usage_from_the_upstream_leaves_the_prompt_count_unknown() -> None:
    """llama-cpp-python's server ignores stream_options: the prompt's count is None (never
    0), and the completion tokens are the deltas counted."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            content=sse(
                {"choices": [{"delta": {"content": "a"}}]},
                {"choices": [{"delta": {"content": "b"}}]},
                {"choices": [{"delta": {}, "finish_reason": "length"}]},
            ),
        )

    chunks = await collect(backend(handler))
    assert sum(c.tokens for c in chunks) == 2
    assert chunks[-1].prompt_tokens is None and chunks[-1].finish_reason == "length"


async def test_an_upstream_that_refuses_stream_options_is_asked_without_it() -> None:
    bodies: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        if "stream_options" in body:
            return httpx.Response(
                422, json={"error": {"message": "extra field not permitted: stream_options"}}
            )
        return httpx.Response(
            200, content=sse({"choices": [{"delta": {"content": "x"}, "finish_reason": "stop"}]})
        )

    b = backend(handler)
    assert [c.text for c in await collect(b)] == ["x", ""]
    assert [c.text for c in await collect(b)] == ["x", ""]
    # Refused once, then never sent again.
    assert ["stream_options" in body for body in bodies] == [True, False, False]


async def test_a_stream_cut_before_its_end_is_an_upstream_error() -> None:
    """An upstream that closes the stream without a finish_reason or [DONE] did not finish:
    the answer is not passed off as complete."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = b'data: {"choices": [{"delta": {"content": "half"}}]}\n\n'
        return httpx.Response(200, content=body)

    with pytest.raises(UpstreamError, match="ended its stream before the last event"):
        await collect(backend(handler))


WHOLE = dataclasses.replace(CHAT, stream=False)


async def test_a_whole_answer_is_asked_for_whole_with_its_usage() -> None:
    sent: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(
            200,
            json={
                "choices": [{"message": {"content": "Hello"}, "finish_reason": "length"}],
                "usage": {"prompt_tokens": 32, "completion_tokens": 5, "total_tokens": 37},
            },
        )

    chunks = await collect(backend(handler), WHOLE)
    assert [c.text for c in chunks] == ["Hello", ""]
    assert sum(c.tokens for c in chunks) == 5
    assert chunks[-1].finish_reason == "length" and chunks[-1].prompt_tokens == 32
    assert sent[0]["stream"] is False and "stream_options" not in sent[0]


async def test_an_upstream_whose_whole_answers_lack_usage_is_streamed_from() -> None:
    """No count is made up: the answer is streamed (deltas counted), from then on."""
    streamed: list[bool] = []

    def handler(request: httpx.Request) -> httpx.Response:
        streamed.append(json.loads(request.content)["stream"])
        if not streamed[-1]:
            return httpx.Response(200, json={"choices": [{"message": {"content": "a b"}}]})
        return httpx.Response(
            200,
            content=sse(
                {"choices": [{"delta": {"content": "a"}}]},
                {"choices": [{"delta": {"content": " b"}, "finish_reason": "stop"}]},
            ),
        )

    b = backend(handler)
    for _ in range(2):
        chunks = await collect(b, WHOLE)
        assert "".join(c.text for c in chunks) == "a b"
        assert sum(c.tokens for c in chunks) == 2 and chunks[-1].prompt_tokens is None
    assert streamed == [False, True, True]


async def test_a_whole_answer_refused_by_the_upstream_keeps_its_message() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        message = "This model's maximum context length is 512 tokens. However, ..."
        return httpx.Response(400, json={"error": {"message": message}})

    with pytest.raises(ContextLengthError, match="maximum context length is 512"):
        await collect(backend(handler), WHOLE)


async def test_a_kept_alive_connection_the_upstream_closed_is_not_an_error() -> None:
    """A real socket: the upstream answers on a kept-alive connection, then closes it when
    the next request arrives, without answering (as uvicorn does after its application
    raised). The request goes again on a new connection, once; the caller sees no error."""
    seen: list[tuple[int, bytes]] = []
    models = json.dumps({"data": [{"id": "m1"}]}).encode()
    answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    answer += b"content-length: %d\r\n\r\n%s" % (len(models), models)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = len({c for c, _ in seen})
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                seen.append((connection, head.split(b" ")[1]))
                if connection == 0 and len(seen) > 1:
                    break  # the first connection is closed at its second request, unanswered
                writer.write(answer)
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    model = SPEC.model.model_copy(update={"base_url": f"http://127.0.0.1:{port}/v1"})
    spec = SPEC.model_copy(update={"model": model})
    b = OpenAIBackend(spec)
    try:
        assert await b.health() is True
        assert await b.health() is True  # the second went again, on a second connection
        assert seen == [(0, b"/v1/models"), (0, b"/v1/models"), (1, b"/v1/models")]
    finally:
        await b.close()
        server.close()


async def test_a_connection_closed_mid_answer_is_not_sent_again() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.RemoteProtocolError("peer closed connection mid-body", request=request)

    with pytest.raises(UpstreamError, match="mid-body"):
        await collect(backend(handler))
    assert len(calls) == 1
