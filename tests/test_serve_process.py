"""`llmship serve` as a real process with the real SmolLM2 model, talked to by real clients."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from _procs import LlmshipProcess, ModelServer
from llmship.registry import Registry
from llmship.release.bundled import bundled_spec

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("serve_process")]  # one stack, one worker


def write_spec(path: Path, **changes: dict[str, object]) -> Path:
    """The bundled release with test-friendly settings (1 thread, small context)."""
    data = bundled_spec().to_dict()
    data["runtime"] |= {"n_threads": 1, "n_ctx": 512}
    data["params"] |= {"temperature": 0.0}
    for key, value in changes.items():
        data[key] = {**data.get(key, {}), **value}
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="module")
def server(workdir: Path) -> Iterator[ModelServer]:
    spec = write_spec(workdir / "smollm2.yaml")
    srv = ModelServer(workdir, "--spec", str(spec), env={"LLMSHIP_QUEUE_SIZE": "0"})
    try:
        yield srv.wait_ready()
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def client(server: ModelServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def test_openai_client_chat(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="smollm2-chat",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=24,
    )
    text = reply.choices[0].message.content or ""
    assert "Paris" in text
    assert reply.usage is not None
    assert reply.usage.completion_tokens > 0
    assert reply.usage.prompt_tokens > 10  # the chat template and system prompt count
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_openai_client_stream_matches_non_stream(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Name three colours."}]
    whole = client.chat.completions.create(
        model="smollm2-chat",
        messages=messages,
        max_tokens=20,  # type: ignore[arg-type]
    )
    stream = client.chat.completions.create(
        model="smollm2-chat",
        messages=messages,  # type: ignore[arg-type]
        max_tokens=20,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage, finish = [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert len([p for p in pieces if p]) > 3, "the answer should arrive in several chunks"
    assert "".join(pieces) == whole.choices[0].message.content  # temperature 0
    assert usage is not None and whole.usage is not None
    assert usage.completion_tokens == whole.usage.completion_tokens
    assert finish == whole.choices[0].finish_reason


def test_openai_client_completions(client: openai.OpenAI) -> None:
    result = client.completions.create(
        model="smollm2-chat", prompt="One, two, three,", max_tokens=8
    )
    assert result.choices[0].text.strip()
    assert result.usage is not None and result.usage.completion_tokens <= 8
    models = client.models.list()
    assert [m.id for m in models.data] == ["smollm2-chat"]


def test_predict_over_plain_http(server: ModelServer) -> None:
    r = httpx.post(
        f"{server.url}/predict",
        json={"prompt": "请解释什么是量子计算", "max_new_tokens": 30},
        timeout=60,
    )
    assert r.status_code == 200
    body = r.json()
    assert body["response"].strip()
    assert "\ufffd" not in body["response"]
    assert body["version"] == "smollm2-chat@1.0.0"
    assert body["query_id"] == r.headers["x-request-id"]
    assert r.headers["x-llmship-version"] == "smollm2-chat@1.0.0"
    assert 0 < body["usage"]["completion_tokens"] <= 30


def test_bad_input_through_the_openai_client(client: openai.OpenAI, server: ModelServer) -> None:
    with pytest.raises(openai.NotFoundError) as not_found:
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "x"}])
    assert "smollm2-chat" in str(not_found.value)
    with pytest.raises(openai.BadRequestError) as too_long:
        client.chat.completions.create(
            model="smollm2-chat", messages=[{"role": "user", "content": "word " * 1000}]
        )
    assert too_long.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="smollm2-chat", messages=[{"role": "user", "content": "x"}], max_tokens=0
        )
    r = httpx.post(
        f"{server.url}/predict", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"


def stopped_count(metrics: str) -> float:
    """``llm_generations_stopped_total`` of the served release."""
    prefix = 'llm_generations_stopped_total{version="smollm2-chat@1.0.0"} '
    return float(next(line for line in metrics.splitlines() if line.startswith(prefix)).split()[-1])


def test_full_queue_and_disconnect_cancel(server: ModelServer) -> None:
    """With queue_size 0 a second request is refused while one generates; a client
    that disconnects mid-stream frees the model at once."""
    body = {
        "messages": [{"role": "user", "content": "Write a long story."}],
        "max_tokens": 480,
        "stream": True,
    }
    stopped_before = stopped_count(httpx.get(f"{server.url}/metrics").text)
    with httpx.stream(
        "POST", f"{server.url}/v1/chat/completions", json=body, timeout=60
    ) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        busy = httpx.post(f"{server.url}/predict", json={"prompt": "hi", "max_new_tokens": 5})
        assert busy.status_code == 429
        assert int(busy.headers["retry-after"]) >= 1

    # the stream is closed after one chunk: the generation must stop, not run ~480 tokens
    # (which takes well over 8 s on one thread of these machines, even unloaded)
    def ask() -> float:
        """Seconds until a short /predict is answered (a busy model says 429 meanwhile)."""
        started = time.monotonic()
        while True:
            r = httpx.post(
                f"{server.url}/predict", json={"prompt": "hi", "max_new_tokens": 5}, timeout=60
            )
            if r.status_code == 200:
                return time.monotonic() - started
            assert r.status_code == 429 and time.monotonic() - started < 60, r.text
            time.sleep(0.05)

    ask()  # answered once the slot is free (the thread itself: test_backends_llamacpp.py)
    metrics = httpx.get(f"{server.url}/metrics").text
    assert stopped_count(metrics) == stopped_before + 1
    assert 'llm_requests_in_flight{version="smollm2-chat@1.0.0"} 0.0' in metrics


def test_metrics_after_real_traffic(server: ModelServer) -> None:
    httpx.post(f"{server.url}/predict", json={"prompt": "Hello", "max_new_tokens": 5}, timeout=60)
    chat = {
        "messages": [{"role": "user", "content": "Count from one to ten."}],
        "max_tokens": 8,
        "stream": True,
    }
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=chat, timeout=60) as r:
        assert r.status_code == 200 and r.read().rstrip().endswith(b"data: [DONE]")
    text = httpx.get(f"{server.url}/metrics").text
    # a time to first token, and per output token after it, for streamed answers only
    assert 'llm_time_to_first_token_seconds_count{route="/predict"' not in text
    assert 'llm_time_to_first_token_seconds_count{route="/v1/chat/completions"' in text
    assert 'llm_time_per_output_token_seconds_count{route="/v1/chat/completions"' in text
    series = {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and line[0] != "#"
    }
    for name in (
        "http_requests_total",
        "model_latency_seconds_bucket",
        "llm_time_to_first_token_seconds_bucket",
        "llm_time_per_output_token_seconds_bucket",
        "tokens_per_second_bucket",
        "llm_prompt_tokens_total",
        "llm_generation_tokens_total",
        "llm_queue_wait_seconds_bucket",
        "llm_requests_in_flight",
    ):
        assert name in series, name
    assert "gpu_usage_percent" not in series


def test_openai_backend_streams_from_an_upstream(server: ModelServer, workdir: Path) -> None:
    """A release with backend `openai` served in front of another OpenAI-compatible server."""
    spec = workdir / "proxy.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "proxied-chat",
                "version": "2.0.0",
                "backend": "openai",
                "model": {"base_url": f"{server.url}/v1", "id": "smollm2-chat"},
                "params": {"temperature": 0.0, "max_tokens": 16},
                "runtime": {"max_concurrency": 4},
            }
        )
    )
    proxy = ModelServer(workdir, "--spec", str(spec))
    try:
        proxy.wait_ready()
        messages = [{"role": "user", "content": "Say hello."}]
        direct = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={"messages": messages, "max_tokens": 16},
            timeout=60,
        ).json()
        events = []
        with httpx.stream(
            "POST",
            f"{proxy.url}/v1/chat/completions",
            json={"model": "proxied-chat", "messages": messages, "stream": True},
            timeout=60,
        ) as response:
            assert response.headers["x-llmship-version"] == "proxied-chat@2.0.0"
            events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        assert text == direct["choices"][0]["message"]["content"]
        usage = next(c["usage"] for c in chunks if c.get("usage"))
        assert usage == direct["usage"]
    finally:
        proxy.stop()


def test_sha256_mismatch_refuses_to_serve(workdir: Path) -> None:
    spec = write_spec(workdir / "tampered.yaml", model={"sha256": "0" * 64})
    proc = ModelServer(workdir, "--spec", str(spec))
    try:
        assert proc.wait(timeout=60) != 0
    finally:
        proc.stop()
    out = proc.output()
    assert "sha256" in out and "0000000000" in out
    assert "Traceback" not in out


def _endpoints(home: Path) -> list[tuple[str, str]]:
    with Registry.open(f"sqlite:///{home / 'registry.db'}") as registry:
        return [(e.ref, e.url) for e in registry.list_endpoints("dev")]


def test_empty_registry_serves_the_bundled_release_as_production(tmp_path: Path) -> None:
    srv = ModelServer(tmp_path, env={"LLMSHIP_HOME": str(tmp_path / "state")})
    try:
        srv.wait_ready()
        r = httpx.post(
            f"{srv.url}/predict", json={"prompt": "Hi!", "max_new_tokens": 8}, timeout=60
        )
        assert r.json()["version"] == "smollm2-chat@1.0.0"
        deadline = time.monotonic() + 10
        while not _endpoints(tmp_path / "state"):
            assert time.monotonic() < deadline, "the server never announced its endpoint"
            time.sleep(0.1)
        assert _endpoints(tmp_path / "state") == [("smollm2-chat@1.0.0", srv.url)]
    finally:
        srv.stop()
    assert _endpoints(tmp_path / "state") == []  # withdrawn on a clean stop
    listing = LlmshipProcess(
        ["alias", "list", "--env", "dev"], tmp_path, env={"LLMSHIP_HOME": str(tmp_path / "state")}
    )
    assert listing.wait() == 0
    listing.stop()
    assert "production" in listing.output() and "smollm2-chat@1.0.0" in listing.output()
    assert "bundled" in srv.output()


def test_concurrent_clients_all_get_answers(server: ModelServer) -> None:
    """Requests beyond the one generating are refused with 429 (queue_size 0), never 5xx."""
    codes: list[int] = []

    def ask() -> None:
        r = httpx.post(
            f"{server.url}/predict", json={"prompt": "Hi", "max_new_tokens": 4}, timeout=60
        )
        codes.append(r.status_code)

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(codes) <= {200, 429}
    assert 200 in codes
