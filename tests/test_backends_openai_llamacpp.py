"""The ``openai`` backend in front of an engine no one here wrote: llama-cpp-python's own
OpenAI-compatible server (``python -m llama_cpp.server``) on the bundled GGUF, as a real
process, with ``llmship serve`` as a real process in front of it.

That server ignores ``stream_options`` and streams no usage: a streamed answer's prompt
token count is unknown (null, never 0), and its completion count is the deltas counted,
checked against the upstream's own usage; a whole answer (``/predict``) is asked for whole
and carries the upstream's usage. An upstream error reaches the client as a clear 4xx with
the upstream's message; an upstream killed mid-stream ends the stream with an error
event, without a hang.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from _procs import ModelServer, Process, free_port
from llmship.release.bundled import bundled_spec
from llmship.release.weights import resolve_weights

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("llamacpp_server")]

ALIAS = "smollm2-upstream"
NAME = "llamacpp-proxied"
QUESTION = [{"role": "user", "content": "Say hello to Alice."}]


class LlamaCppServer(Process):
    """``python -m llama_cpp.server`` on the bundled GGUF, one thread, a 512-token context."""

    def __init__(self, cwd: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        gguf = resolve_weights(bundled_spec().model)
        argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf)]
        argv += ["--model_alias", ALIAS, "--port", str(self.port)]
        argv += ["--n_ctx", "512", "--n_threads", "1", "--verbose", "false"]
        super().__init__("llama_cpp.server", argv, cwd, cwd / f"llama-{self.port}.log")

    def wait_ready(self, timeout: float = 60) -> LlamaCppServer:
        self.wait_http(f"{self.url}/models", timeout)
        return self


def proxy_spec(path: Path, upstream: LlamaCppServer) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "name": NAME,
                "version": "1.0.0",
                "backend": "openai",
                "model": {"base_url": upstream.url, "id": ALIAS},
                "params": {"temperature": 0.0, "max_tokens": 12},
                "runtime": {"timeout_s": 30},
            }
        )
    )
    return path


class Stack:
    """An upstream llama_cpp.server and the llmship model server in front of it."""

    def __init__(self, workdir: Path) -> None:
        self.upstream = LlamaCppServer(workdir).wait_ready()
        spec = proxy_spec(workdir / f"proxy-{self.upstream.port}.yaml", self.upstream)
        self.proxy = ModelServer(workdir, "--spec", str(spec))

    def stop(self) -> None:
        self.proxy.stop()
        self.upstream.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("llamacpp"))
    try:
        s.proxy.wait_ready()
        yield s
    finally:
        s.stop()


def direct(stack: Stack, max_tokens: int) -> dict[str, Any]:
    """The upstream's own non-streamed answer, usage included (what the proxy must match)."""
    body = {"model": ALIAS, "messages": QUESTION, "max_tokens": max_tokens, "temperature": 0.0}
    r = httpx.post(f"{stack.upstream.url}/chat/completions", json=body, timeout=30)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def sse_events(response: httpx.Response) -> list[str]:
    return [line[6:] for line in response.iter_lines() if line.startswith("data: ")]


def counter(stack: Stack, name: str) -> float:
    """A counter of the model server's /metrics (0 when it has no sample yet)."""
    text = httpx.get(f"{stack.proxy.url}/metrics", timeout=10).text
    prefix = f'{name}{{version="{NAME}@1.0.0"}} '
    values = [float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix)]
    return values[0] if values else 0.0


def test_whole_answers_carry_the_upstreams_usage(stack: Stack) -> None:
    """/predict and a non-streamed chat ask the upstream for the whole answer: real counts."""
    upstream = direct(stack, 12)
    assert upstream["usage"]["prompt_tokens"] > 0

    r = httpx.post(
        f"{stack.proxy.url}/predict",
        json={"prompt": QUESTION[0]["content"], "max_new_tokens": 12, "temperature": 0.0},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["response"] == upstream["choices"][0]["message"]["content"]
    assert body["version"] == f"{NAME}@1.0.0"
    assert body["usage"] == upstream["usage"]

    chat = httpx.post(
        f"{stack.proxy.url}/v1/chat/completions",
        json={"messages": QUESTION, "max_tokens": 12},
        timeout=30,
    ).json()
    assert chat["usage"] == upstream["usage"]


def test_a_streamed_answer_reports_the_unknown_prompt_count_as_null(stack: Stack) -> None:
    """llama_cpp.server ignores stream_options: no usage in its stream. The prompt's count
    is null (and not counted in the metrics as 0 or anything else); the completion's is the
    deltas counted, which is exact here."""
    upstream = direct(stack, 12)
    prompt_before = counter(stack, "llm_prompt_tokens_total")
    generated_before = counter(stack, "llm_generation_tokens_total")
    with httpx.stream(
        "POST",
        f"{stack.proxy.url}/v1/chat/completions",
        json={"messages": QUESTION, "stream": True, "stream_options": {"include_usage": True}},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == upstream["choices"][0]["message"]["content"]
    completion = upstream["usage"]["completion_tokens"]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": None,
        "completion_tokens": completion,
        "total_tokens": None,
    }
    assert counter(stack, "llm_prompt_tokens_total") == prompt_before
    assert counter(stack, "llm_generation_tokens_total") == generated_before + completion

    schema = httpx.get(f"{stack.proxy.url}/openapi.json", timeout=10).json()
    prompt_tokens = schema["components"]["schemas"]["Usage"]["properties"]["prompt_tokens"]
    assert {"type": "null"} in prompt_tokens["anyOf"]


def test_a_request_the_upstream_refuses_is_a_clear_error(stack: Stack) -> None:
    """A prompt over the upstream's context: a 400 with the upstream's words when the whole
    answer is asked for. Streamed, llama_cpp.server answers 200 with an empty stream (it
    swallows the error): a 502 that says so, not an empty answer passed off as complete."""
    too_long = [{"role": "user", "content": "word " * 700}]  # over the upstream's 512 tokens
    r = httpx.post(
        f"{stack.proxy.url}/v1/chat/completions",
        json={"messages": too_long, "max_tokens": 4},
        timeout=30,
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "context_length_exceeded" and error["param"] == "messages"
    assert "maximum context length is 512 tokens" in error["message"]  # the upstream's words

    r = httpx.post(
        f"{stack.proxy.url}/v1/chat/completions",
        json={"messages": too_long, "max_tokens": 4, "stream": True},
        timeout=30,
    )
    assert r.status_code == 502, r.text
    error = r.json()["error"]
    assert error["code"] == "upstream_error"
    assert "ended its stream before the last event" in error["message"]
    assert httpx.get(f"{stack.proxy.url}/readyz", timeout=5).status_code == 200


def test_an_upstream_killed_mid_stream_ends_the_stream_with_an_error(tmp_path: Path) -> None:
    """Its own stack (last in the file): the upstream is SIGKILLed after a few deltas of a
    long answer; the client gets an error event and [DONE] at once, then clear 502s."""
    s = Stack(tmp_path)
    try:
        s.proxy.wait_ready()
        began = time.monotonic()
        events: list[str] = []
        with httpx.stream(
            "POST",
            f"{s.proxy.url}/v1/chat/completions",
            json={
                "messages": [{"role": "user", "content": "Write a long story about a dragon."}],
                "max_tokens": 400,
                "stream": True,
            },
            timeout=30,
        ) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                events.append(line[6:])
                if len(events) == 3:
                    s.upstream.proc.kill()
        took = time.monotonic() - began
        assert events[-1] == "[DONE]"
        error = json.loads(events[-2])["error"]
        assert error["code"] == "upstream_error", error
        assert s.upstream.url in error["message"]
        assert took < 20, f"the stream took {took:.1f}s to end"

        r = httpx.post(f"{s.proxy.url}/predict", json={"prompt": "Hi"}, timeout=30)
        assert r.status_code == 502, r.text
        assert r.json()["error"]["code"] == "upstream_error"
        assert s.proxy.proc.poll() is None  # the model server lives on
    finally:
        s.stop()
