"""A tiny, fast fake OpenAI-compatible LLM server for load-generator tests
(FastAPI under uvicorn in a thread). Fake of ``llmship serve`` (the real one:
tests/test_cli_loadtest.py).

It streams ``words`` as SSE chunks ``delay`` seconds apart, then a chunk with the
finish reason and usage, then ``data: [DONE]``. A prompt containing ``FAIL`` gets
an HTTP 503; one containing ``BREAK`` gets an error event after its first chunk.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from _procs import ThreadedServer

VERSION = "fake-llm@1.0.0"


class FakeLLMServer:
    """``with FakeLLMServer() as server:`` serves at ``server.url``."""

    def __init__(self, words: int = 4, delay: float = 0.002, first_delay: float = 0.005):
        self.words = [f" w{i}" for i in range(words)]
        self.delay = delay
        self.first_delay = first_delay
        self.requests = 0
        self.bodies: list[dict[str, Any]] = []
        self._http = ThreadedServer(self._app(), "the fake LLM server")
        self.port = self._http.port
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeLLMServer:
        self._http.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.stop()

    def _app(self) -> FastAPI:
        app = FastAPI()
        headers = {"X-Llmship-Version": VERSION}

        @app.get("/v1/models")
        async def models() -> JSONResponse:
            return JSONResponse({"object": "list", "data": [{"id": "fake-llm"}]}, headers=headers)

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            body = await self._body(request)
            text = " ".join(m["content"] for m in body["messages"])
            return self._answer(text, chat=True, headers=headers)

        @app.post("/v1/completions")
        async def completions(request: Request) -> Response:
            body = await self._body(request)
            return self._answer(body["prompt"], chat=False, headers=headers)

        @app.post("/predict")
        async def predict(request: Request) -> Response:
            body = await self._body(request)
            if "FAIL" in body["prompt"]:
                return JSONResponse({"error": {"message": "down"}}, status_code=503)
            await asyncio.sleep(self.first_delay + self.delay * len(self.words))
            reply = {
                "response": "".join(self.words).strip(),
                "query_id": "q",
                "version": VERSION,
                "usage": {"completion_tokens": len(self.words)},
            }
            return JSONResponse(reply, headers=headers)

        return app

    async def _body(self, request: Request) -> dict[str, Any]:
        body: dict[str, Any] = await request.json()
        self.requests += 1
        self.bodies.append(body)
        return body

    def _answer(self, prompt: str, *, chat: bool, headers: dict[str, str]) -> Response:
        if "FAIL" in prompt:
            return JSONResponse(
                {"error": {"message": "the model is down", "type": "server_error"}},
                status_code=503,
            )
        return StreamingResponse(
            self._events(prompt, chat=chat), media_type="text/event-stream", headers=headers
        )

    async def _events(self, prompt: str, *, chat: bool) -> AsyncIterator[bytes]:
        def event(text: str | None, finish: str | None = None) -> bytes:
            if chat:
                delta = {} if text is None else {"content": text}
                choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": text or "", "finish_reason": finish}
            return f"data: {json.dumps({'choices': [choice]})}\n\n".encode()

        if chat:
            role = {"index": 0, "delta": {"role": "assistant", "content": ""}}
            yield f"data: {json.dumps({'choices': [role]})}\n\n".encode()
        await asyncio.sleep(self.first_delay)
        for index, word in enumerate(self.words):
            if index:
                await asyncio.sleep(self.delay)
            yield event(word)
            if "BREAK" in prompt:
                yield b'data: {"error": {"message": "generation failed"}}\n\n'
                yield b"data: [DONE]\n\n"
                return
        yield event(None, "stop")
        usage = {"prompt_tokens": 3, "completion_tokens": len(self.words), "total_tokens": 7}
        yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode()
        yield b"data: [DONE]\n\n"
