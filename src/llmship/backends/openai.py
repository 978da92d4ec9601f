"""Backend for any OpenAI-compatible upstream: vLLM, TGI, llama.cpp server, Ollama."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any

import httpx

from llmship.backends.base import Backend, BackendInfo, Chunk, GenerationRequest
from llmship.errors import (
    ContextLengthError,
    GenerationTimeoutError,
    InvalidRequestError,
    UpstreamError,
)
from llmship.release.spec import ReleaseSpec

log = logging.getLogger(__name__)


class StaleConnectionRetry(httpx.AsyncBaseTransport):
    """Sends a request once more, on a new connection, when the upstream closed a kept-alive
    connection without answering it.

    A server may close an idle connection just as a request is written to it: uvicorn
    closes one after its application raised, also when the response was already complete
    (llama-cpp-python's server does so after a stream it could not serve). Nothing was
    answered, so nothing was done that a second try repeats; any other error stands.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._inner.handle_async_request(request)
        except httpx.RemoteProtocolError as exc:
            if "without sending a response" not in str(exc):
                raise
            log.info("upstream %s closed a kept-alive connection; sending again", request.url)
            return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class OpenAIBackend(Backend):
    """Generates with ``{base_url}/chat/completions`` or ``/completions``.

    A streamed request is streamed from the upstream, which is asked for usage in its
    last chunk (``stream_options.include_usage``); an upstream that refuses the option
    is asked again without it, and not asked for it again. Until the usage arrives each
    content delta counts as one token, and the final chunk corrects the count to what
    the upstream reports. An upstream that streams no usage (llama-cpp-python's server
    ignores the option) leaves the prompt's token count unknown: the last chunk's
    ``prompt_tokens`` is None, never a guess, and the completion tokens are the deltas
    counted (one token each on llama.cpp and vLLM).

    A request for the whole answer (``GenerationRequest.stream`` False) asks the
    upstream for the whole answer, whose usage every known server reports, and whose
    errors some servers' streams swallow (llama-cpp-python's answers a prompt over its
    context with an empty stream). An upstream whose whole answers carry no usage is
    streamed from instead, from that request on.
    """

    def __init__(self, spec: ReleaseSpec, *, transport: httpx.AsyncBaseTransport | None = None):
        model = spec.model
        assert model.base_url, "validated by ReleaseSpec"
        assert model.id, "validated by ReleaseSpec"
        self.spec = spec
        self.model_id = model.id
        self.base_url = model.base_url.rstrip("/")
        self.max_concurrency = spec.runtime.max_concurrency
        headers = {}
        if model.api_key_env:
            key = os.environ.get(model.api_key_env)
            if key:
                headers["Authorization"] = f"Bearer {key}"
        timeout = httpx.Timeout(spec.runtime.timeout_s, connect=min(10.0, spec.runtime.timeout_s))
        limits = httpx.Limits(max_connections=max(self.max_concurrency, 1) + 4)
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout,
            transport=StaleConnectionRetry(transport or httpx.AsyncHTTPTransport(limits=limits)),
        )
        self._context_length: int | None = None
        self._ask_usage = True
        """Whether to send ``stream_options``; False once the upstream refused it."""
        self._whole_answers = True
        """Whether to ask for whole answers; False once one came without usage."""

    async def start(self) -> None:
        try:
            response = await self._client.get("/models")
        except httpx.HTTPError as exc:
            raise UpstreamError(f"cannot reach the upstream {self.base_url}: {exc}") from exc
        if response.status_code >= 400:
            raise UpstreamError(f"upstream {self.base_url}/models answered {response.status_code}")
        cards = {
            str(m.get("id")): m for m in _json(response).get("data", []) if isinstance(m, dict)
        }
        if cards and self.model_id not in cards:
            raise UpstreamError(
                f"upstream {self.base_url} does not serve {self.model_id!r} "
                f"(it has: {', '.join(cards)})"
            )
        length = cards.get(self.model_id, {}).get("max_model_len") or cards.get(
            self.model_id, {}
        ).get("context_length")
        self._context_length = length if isinstance(length, int) else None

    async def close(self) -> None:
        await self._client.aclose()

    def info(self) -> BackendInfo:
        return BackendInfo(
            kind="openai",
            model=self.model_id,
            context_length=self._context_length,
            details={"base_url": self.base_url},
        )

    async def health(self) -> bool:
        try:
            response = await self._client.get("/models", timeout=5.0)
        except httpx.HTTPError:
            return False
        return response.status_code < 400

    def _body(self, request: GenerationRequest, *, stream: bool) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "model": self.model_id,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stream": stream,
        }
        if stream and self._ask_usage:
            body["stream_options"] = {"include_usage": True}
        if request.seed is not None:
            body["seed"] = request.seed
        if request.stop:
            body["stop"] = list(request.stop)
        if request.presence_penalty:
            body["presence_penalty"] = request.presence_penalty
        if request.frequency_penalty:
            body["frequency_penalty"] = request.frequency_penalty
        if request.messages is not None:
            body["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
            return "/chat/completions", body
        body["prompt"] = request.prompt or ""
        return "/completions", body

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        if not request.stream and self._whole_answers:
            with self._errors():
                whole = await self._whole(request)
            if whole is not None:
                for chunk in whole:
                    yield chunk
                return
        streamed = self._streamed(request)
        try:
            async for chunk in streamed:
                yield chunk
        finally:
            await streamed.aclose()

    async def _whole(self, request: GenerationRequest) -> tuple[Chunk, Chunk] | None:
        """The upstream's whole answer as a text chunk and a last chunk with its usage;
        None (and streams from then on) when it carries no completion token count."""
        path, body = self._body(request, stream=False)
        response = await self._client.post(path, json=body, headers=request.trace_headers or None)
        if response.status_code >= 400:
            raise _upstream_error(response)
        answer = response.json()
        choices = answer.get("choices") if isinstance(answer, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise UpstreamError(f"upstream {self.base_url} answered without choices")
        usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
        completion = _count(usage, "completion_tokens")
        if completion is None:
            log.warning(
                "upstream %s sends whole answers without usage; streaming from it instead",
                self.base_url,
            )
            self._whole_answers = False
            return None
        choice = choices[0]
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else choice.get("text")
        return (
            Chunk(text=str(text or ""), tokens=completion),
            Chunk(
                text="",
                finish_reason=str(choice.get("finish_reason") or "stop"),
                prompt_tokens=_count(usage, "prompt_tokens"),
            ),
        )

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """httpx's and JSON's errors as llmship errors that say what the upstream did."""
        try:
            yield
        except httpx.TimeoutException as exc:
            raise GenerationTimeoutError(
                f"upstream {self.base_url} did not answer within {self.spec.runtime.timeout_s:g}s "
                "(runtime.timeout_s)"
            ) from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"upstream {self.base_url} failed: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise UpstreamError(f"upstream {self.base_url} sent malformed JSON: {exc}") from exc

    async def _streamed(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        counted = 0
        finish: str | None = None
        usage: dict[str, Any] = {}
        done = False
        with self._errors():
            async with self._open(request) as response:
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        done = True
                        break
                    event = json.loads(data)
                    if isinstance(event.get("usage"), dict):
                        usage = event["usage"]
                    for choice in event.get("choices") or []:
                        text = _delta_text(choice)
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
                        if text:
                            counted += 1
                            yield Chunk(text=text, tokens=1)
        if not done and finish is None:
            raise UpstreamError(
                f"upstream {self.base_url} ended its stream before the last event "
                f"(no finish_reason, no [DONE]) after {counted} pieces"
            )
        completion = _count(usage, "completion_tokens")
        yield Chunk(
            text="",
            tokens=(completion if completion is not None else counted) - counted,
            finish_reason=finish or "stop",
            prompt_tokens=_count(usage, "prompt_tokens"),
        )

    @contextlib.asynccontextmanager
    async def _open(self, request: GenerationRequest) -> AsyncIterator[httpx.Response]:
        """The upstream's streamed response, status checked; asked again without
        ``stream_options`` when the upstream refuses that option."""
        path, body = self._body(request, stream=True)
        headers = request.trace_headers or None
        async with self._client.stream("POST", path, json=body, headers=headers) as response:
            if response.status_code < 400:
                yield response
                return
            await response.aread()
            if not (self._ask_usage and _refuses_stream_options(response)):
                raise _upstream_error(response)
        log.warning(
            "upstream %s refused stream_options (%s); asking without it, usage may be unknown",
            self.base_url,
            response.status_code,
        )
        self._ask_usage = False
        path, body = self._body(request, stream=True)
        async with self._client.stream("POST", path, json=body, headers=headers) as response:
            if response.status_code >= 400:
                await response.aread()
                raise _upstream_error(response)
            yield response


def _count(usage: dict[str, Any], field: str) -> int | None:
    """A token count of the upstream's usage; None when it sent none (never 0 for unknown)."""
    value = usage.get(field)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _refuses_stream_options(response: httpx.Response) -> bool:
    """Whether a 400/422 answer blames ``stream_options`` (an upstream without it)."""
    return response.status_code in (400, 422) and "stream_options" in response.text


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _delta_text(choice: dict[str, Any]) -> str:
    if "delta" in choice:
        return str((choice["delta"] or {}).get("content") or "")
    return str(choice.get("text") or "")


def _upstream_error(response: httpx.Response) -> Exception:
    detail = _json(response).get("error")
    message = detail.get("message") if isinstance(detail, dict) else response.text[:300]
    if response.status_code == 400 and "context" in str(message).lower():
        return ContextLengthError(f"upstream: {message}")
    if response.status_code in (400, 422):
        return InvalidRequestError(f"upstream rejected the request: {message}")
    return UpstreamError(f"upstream answered {response.status_code}: {message}")
