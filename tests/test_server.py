"""The model server's API, in process, over a fake backend."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fakes import FakeBackend
from llmship.release.spec import ReleaseSpec, parse_spec
from llmship.server import ModelService, create_app
from llmship.server.metrics import ServerMetrics
from llmship.settings import Settings

SPEC = parse_spec(
    {
        "name": "demo-chat",
        "version": "1.2.0",
        "backend": "openai",
        "model": {"base_url": "http://upstream.invalid/v1", "id": "demo"},
        "prompt": {"system": "Be brief.", "template": "Q: {input}"},
        "params": {"max_tokens": 8, "temperature": 0.3, "seed": 7},
    }
)


def make_client(backend: FakeBackend, spec: ReleaseSpec = SPEC, **settings: object) -> TestClient:
    cfg = Settings(home=Path("/nonexistent"), **settings)  # type: ignore[arg-type]
    service = ModelService(spec, backend, cfg, ServerMetrics(spec.ref))
    return TestClient(create_app(service))


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def client(backend: FakeBackend) -> Iterator[TestClient]:
    with make_client(backend) as c:
        _wait_ready(c)
        yield c


def _wait_ready(client: TestClient) -> None:
    deadline = time.monotonic() + 5
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "server never became ready"
        time.sleep(0.01)


def _events(response_text: str) -> list[str]:
    return [line[6:] for line in response_text.splitlines() if line.startswith("data: ")]


# -- happy paths ------------------------------------------------------------------


def test_chat_completion_returns_text_usage_and_headers(client: TestClient) -> None:
    r = client.post(
        "/v1/chat/completions",
        json={"model": "demo-chat", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hello there, friend."}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == 5
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 5
    assert r.headers["x-llmship-version"] == "demo-chat@1.2.0"
    assert len(r.headers["x-request-id"]) == 32
    assert body["id"] == "chatcmpl-" + r.headers["x-request-id"]


def test_created_is_when_each_completion_was_made(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenAI's ``created`` is the completion's time, not the server's start."""
    loaded = client.get("/v1/models").json()["data"][0]["created"]
    later = loaded + 3600
    monkeypatch.setattr(time, "time", lambda: float(later))
    messages = [{"role": "user", "content": "hi"}]
    answer = client.post("/v1/chat/completions", json={"messages": messages}).json()
    assert answer["created"] == later
    text = client.post("/v1/completions", json={"prompt": "hi"}).json()
    assert text["created"] == later
    streamed = client.post("/v1/chat/completions", json={"messages": messages, "stream": True})
    first = json.loads(_events(streamed.text)[0])
    assert first["created"] == later


def test_release_prompt_and_params_are_applied(client: TestClient, backend: FakeBackend) -> None:
    client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    request = backend.requests[-1]
    assert [(m.role, m.content) for m in request.messages or ()] == [
        ("system", "Be brief."),
        ("user", "Q: hi"),
    ]
    assert (request.max_tokens, request.temperature, request.seed) == (8, 0.3, 7)
    client.post(
        "/v1/chat/completions",
        json={
            "messages": [{"role": "system", "content": "Mine."}, {"role": "user", "content": "x"}],
            "temperature": 0,
            "max_tokens": 3,
            "seed": 1,
            "stop": ["\n"],
        },
    )
    request = backend.requests[-1]
    assert request.messages and request.messages[0].content == "Mine."
    assert (request.max_tokens, request.temperature, request.seed, request.stop) == (
        3,
        0,
        1,
        ("\n",),
    )


def test_client_request_id_is_kept(client: TestClient) -> None:
    r = client.post("/predict", json={"prompt": "hi"}, headers={"X-Request-ID": "trace-12345678"})
    assert r.headers["x-request-id"] == "trace-12345678"
    assert r.json()["query_id"] == "trace-12345678"


def test_chat_stream_is_sse_ending_in_done(client: TestClient) -> None:
    r = client.post(
        "/v1/chat/completions",
        json={
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = _events(r.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "Hello there, friend."
    finish = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finish[0]["choices"][0]["finish_reason"] == "stop"
    assert finish[0]["usage"]["completion_tokens"] == 5
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5


def test_completion_non_stream_and_stream(client: TestClient) -> None:
    r = client.post("/v1/completions", json={"prompt": "Once upon", "max_tokens": 2})
    assert r.status_code == 200
    assert r.json()["choices"][0] == {
        "index": 0,
        "text": "Hello there",
        "finish_reason": "length",
        "logprobs": None,
    }
    r = client.post("/v1/completions", json={"prompt": ["Once upon"], "stream": True})
    events = _events(r.text)
    assert events[-1] == "[DONE]"
    assert (
        "".join(json.loads(e)["choices"][0]["text"] for e in events[:-1]) == "Hello there, friend."
    )


def test_predict_is_the_seeds_api(client: TestClient, backend: FakeBackend) -> None:
    r = client.post("/predict", json={"prompt": "请解释什么是量子计算", "max_new_tokens": 3})
    assert r.status_code == 200
    body = r.json()
    assert body["response"] == "Hello there,"
    assert body["version"] == "demo-chat@1.2.0"
    assert body["query_id"] == r.headers["x-request-id"]
    assert body["usage"]["completion_tokens"] == 3
    assert backend.requests[-1].max_tokens == 3


def test_models_version_health(client: TestClient) -> None:
    models = client.get("/v1/models").json()
    assert models["object"] == "list"
    assert models["data"][0]["id"] == "demo-chat"
    assert models["data"][0]["version"] == "demo-chat@1.2.0"
    assert client.get("/healthz").json() == {"status": "ok"}
    version = client.get("/version").json()
    assert version["version"] == "demo-chat@1.2.0" and version["backend"] == "fake"


def test_docs_describe_every_field(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    schemas = schema["components"]["schemas"]
    assert {"ChatCompletionRequest", "PredictRequest", "PredictResponse", "ErrorDetail"} <= set(
        schemas
    )
    for name, model in schemas.items():
        if name in ("HTTPValidationError", "ValidationError"):
            continue  # FastAPI's own; llmship answers 400 in OpenAI's shape instead
        undocumented = [k for k, v in model.get("properties", {}).items() if "description" not in v]
        assert not undocumented, f"{name}: {undocumented} lack a description"


def test_health_answers_like_vllm_for_peer_tools(client: TestClient) -> None:
    # GuideLLM and other tools made for vLLM's OpenAI server probe GET /health first.
    r = client.get("/health")
    assert r.status_code == 200
    assert r.content == b""
    assert "/health" in client.get("/openapi.json").json()["paths"]


def test_health_means_alive_not_ready() -> None:
    with make_client(FakeBackend(load_delay=0.5)) as c:
        assert c.get("/readyz").status_code == 503
        assert c.get("/health").status_code == 200
        assert c.get("/healthz").status_code == 200


def test_overlong_prompt_blames_the_field_the_client_sent(client: TestClient) -> None:
    long = "word " * 100
    r = client.post("/predict", json={"prompt": long})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "context_length_exceeded"
    assert r.json()["error"]["param"] == "prompt"
    r = client.post(CHAT, json={"messages": [{"role": "user", "content": long}]})
    assert r.json()["error"]["param"] == "messages"
    r = client.post(COMPLETIONS, json={"prompt": long})
    assert r.json()["error"]["param"] == "prompt"


# -- readiness, queueing, timeouts ---------------------------------------------------


def test_not_ready_until_loaded() -> None:
    backend = FakeBackend(load_delay=0.5)
    with make_client(backend) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        r = c.post("/predict", json={"prompt": "hi"})
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "not_ready"
        assert r.headers["retry-after"] == "1"
        _wait_ready(c)
        assert c.post("/predict", json={"prompt": "hi"}).status_code == 200


def test_full_queue_answers_429_with_retry_after() -> None:
    backend = FakeBackend(delay=0.2)
    with make_client(backend, queue_size=0) as c:
        _wait_ready(c)
        results: list[int] = []
        slow = threading.Thread(
            target=lambda: results.append(c.post("/predict", json={"prompt": "a"}).status_code)
        )
        slow.start()
        deadline = time.monotonic() + 5
        while backend.active == 0:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        r = c.post("/predict", json={"prompt": "b"})
        slow.join()
        assert r.status_code == 429
        assert r.json()["error"]["type"] == "rate_limit_error"
        assert int(r.headers["retry-after"]) >= 1
        assert results == [200]


def test_waiting_requests_are_served_in_turn() -> None:
    backend = FakeBackend(delay=0.02)
    with make_client(backend, queue_size=4) as c:
        _wait_ready(c)
        codes: list[int] = []
        threads = [
            threading.Thread(
                target=lambda: codes.append(c.post("/predict", json={"prompt": "x"}).status_code)
            )
            for _ in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert codes == [200] * 4
        metrics = c.get("/metrics").text
        assert 'llm_queue_wait_seconds_count{version="demo-chat@1.2.0"} 4.0' in metrics
        assert 'llm_requests_in_flight{version="demo-chat@1.2.0"} 0.0' in metrics


def test_slow_generation_times_out_with_504() -> None:
    backend = FakeBackend(delay=0.3)
    with make_client(backend, request_timeout=0.2) as c:
        _wait_ready(c)
        r = c.post("/predict", json={"prompt": "hi"})
        assert r.status_code == 504
        assert r.json()["error"]["type"] == "timeout_error"
        assert "request_timeout" in r.json()["error"]["message"]
        deadline = time.monotonic() + 2
        while backend.cancelled < 1:
            assert time.monotonic() < deadline, "the generation was not stopped"
            time.sleep(0.01)
        stopped = 'llm_generations_stopped_total{version="demo-chat@1.2.0"} 1.0'
        assert stopped in c.get("/metrics").text


# -- bad input ---------------------------------------------------------------------

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
USER = [{"role": "user", "content": "hi"}]

BAD_REQUESTS = [
    (CHAT, {}, 400, "messages"),
    (CHAT, {"messages": []}, 400, "messages"),
    (CHAT, {"messages": "hi"}, 400, "messages"),
    (CHAT, {"messages": [{"role": "wizard", "content": "x"}]}, 400, "messages.0.role"),
    (CHAT, {"messages": [{"role": "user", "content": "   "}]}, 400, "messages"),
    (CHAT, {"messages": USER, "max_tokens": 0}, 400, "max_tokens"),
    (CHAT, {"messages": USER, "max_tokens": "many"}, 400, "max_tokens"),
    (CHAT, {"messages": USER, "max_tokens": 100000}, 400, "max_tokens"),
    (CHAT, {"messages": USER, "temperature": 5}, 400, "temperature"),
    (CHAT, {"messages": USER, "n": 2}, 400, "n"),
    (CHAT, {"messages": USER, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    (CHAT, {"messages": USER, "logprobs": True}, 400, "logprobs"),
    (CHAT, {"messages": USER, "model": "gpt-4"}, 404, "model"),
    (CHAT, {"messages": [{"role": "user", "content": "word " * 100}]}, 400, "messages"),
    (COMPLETIONS, {"prompt": ""}, 400, "prompt"),
    (COMPLETIONS, {"prompt": ["a", "b"]}, 400, "prompt"),
    (COMPLETIONS, {"prompt": 42}, 400, "prompt"),
    (COMPLETIONS, {"prompt": "x", "echo": True}, 400, "echo"),
    (COMPLETIONS, {"prompt": "word " * 100, "stream": True}, 400, "prompt"),
    (COMPLETIONS, {"prompt": "word " * 100}, 400, "prompt"),
    ("/predict", {"prompt": "word " * 100}, 400, "prompt"),
    ("/predict", {}, 400, "prompt"),
    ("/predict", {"prompt": ""}, 400, "prompt"),
    ("/predict", {"prompt": "hi", "max_new_tokens": -1}, 400, "max_new_tokens"),
    ("/predict", {"prompt": ["not", "a", "string"]}, 400, "prompt"),
]


@pytest.mark.parametrize(("path", "payload", "status", "param"), BAD_REQUESTS)
def test_bad_input_gets_openai_error(
    client: TestClient, path: str, payload: dict[str, object], status: int, param: str
) -> None:
    r = client.post(path, json=payload)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"]
    assert r.headers["x-request-id"]


@pytest.mark.parametrize("path", [CHAT, COMPLETIONS, "/predict"])
def test_malformed_json_is_400(client: TestClient, path: str) -> None:
    r = client.post(path, content=b'{"prompt": ', headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert "not valid JSON" in r.json()["error"]["message"]


def test_unknown_route_and_wrong_method(client: TestClient) -> None:
    r = client.get("/v2/nothing")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    r = client.get("/predict")
    assert r.status_code == 405
    assert r.json()["error"]["type"] == "invalid_request_error"


# -- metrics -------------------------------------------------------------------------


def test_metrics_carry_version_labels(client: TestClient) -> None:
    client.post("/predict", json={"prompt": "hi"})
    client.post(CHAT, json={"messages": USER, "stream": True})
    client.post("/predict", json={})
    text = client.get("/metrics").text
    v = 'version="demo-chat@1.2.0"'
    assert f'http_requests_total{{method="POST",route="/predict",status="200",{v}}} 1.0' in text
    assert f'http_requests_total{{method="POST",route="/predict",status="400",{v}}} 1.0' in text
    assert f'model_latency_seconds_count{{route="/v1/chat/completions",{v}}} 1.0' in text
    # a time to first token, and per output token, for the streamed request only
    assert f'llm_time_to_first_token_seconds_count{{route="/predict",{v}}}' not in text
    assert f'llm_time_to_first_token_seconds_count{{route="{CHAT}",{v}}} 1.0' in text
    assert f'llm_time_per_output_token_seconds_count{{route="{CHAT}",{v}}} 1.0' in text
    assert f'llm_time_per_output_token_seconds_count{{route="/predict",{v}}}' not in text
    assert f"tokens_per_second_count{{{v}}} 2.0" in text
    assert f"llm_generation_tokens_total{{{v}}} 10.0" in text
    assert f"llm_prompt_tokens_total{{{v}}}" in text
    assert "llm_queue_wait_seconds_bucket{le=" in text
    assert "gpu_usage_percent" not in text  # no NVIDIA GPU on the test machines
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert "version=" in line, line


def test_access_log_has_no_prompt_text_unless_asked(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="llmship.access")
    with make_client(FakeBackend()) as c:
        _wait_ready(c)
        c.post("/predict", json={"prompt": "secret question"})
    line = next(r.getMessage() for r in caplog.records if "route=/predict" in r.getMessage())
    assert (
        "status=200" in line and "completion_tokens=5" in line and "version=demo-chat@1.2.0" in line
    )
    assert "secret" not in line and "Hello" not in line
    caplog.clear()
    with make_client(FakeBackend(), log_prompts=True) as c:
        _wait_ready(c)
        c.post("/predict", json={"prompt": "secret question"})
    line = next(r.getMessage() for r in caplog.records if "route=/predict" in r.getMessage())
    assert "secret question" in line and "Hello there, friend." in line


def test_release_default_max_tokens_is_capped_by_the_server_limit(backend: FakeBackend) -> None:
    spec = SPEC.model_copy(update={"params": SPEC.params.model_copy(update={"max_tokens": 5000})})
    with make_client(backend, spec, max_request_tokens=100) as c:
        _wait_ready(c)
        assert c.post("/predict", json={"prompt": "hi", "max_new_tokens": 100}).status_code == 200
        assert c.post(CHAT, json={"messages": USER}).status_code == 200
        assert backend.requests[-1].max_tokens == 100
        assert c.post(CHAT, json={"messages": USER, "max_tokens": 101}).status_code == 400
