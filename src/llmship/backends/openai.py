"""Backend for any OpenAI-compatible upstream: vLLM, TGI, llama.cpp server, Ollama."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncGenerator
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


class OpenAIBackend(Backend):
    """Streams from ``{base_url}/chat/completions`` or ``/completions``.

    The upstream is asked for usage in its last chunk (``stream_options``); until
    then each content delta counts as one token, and the final chunk corrects the
    count to what the upstream reports.
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
            limits=limits,
            transport=transport,
        )
        self._context_length: int | None = None

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

    def _body(self, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "model": self.model_id,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
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
        path, body = self._body(request)
        counted = 0
        finish: str | None = None
        usage: dict[str, Any] | None = None
        try:
            async with self._client.stream(
                "POST", path, json=body, headers=request.trace_headers or None
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _upstream_error(response)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    event = json.loads(data)
                    if event.get("usage"):
                        usage = event["usage"]
                    for choice in event.get("choices") or []:
                        text = _delta_text(choice)
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
                        if text:
                            counted += 1
                            yield Chunk(text=text, tokens=1)
        except httpx.TimeoutException as exc:
            raise GenerationTimeoutError(
                f"upstream {self.base_url} did not answer within {self.spec.runtime.timeout_s:g}s "
                "(runtime.timeout_s)"
            ) from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"upstream {self.base_url} failed: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise UpstreamError(f"upstream {self.base_url} sent a malformed event: {exc}") from exc
        completion = int(usage["completion_tokens"]) if usage else counted
        yield Chunk(
            text="",
            tokens=completion - counted,
            finish_reason=finish or "stop",
            prompt_tokens=int(usage["prompt_tokens"]) if usage else None,
        )


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
