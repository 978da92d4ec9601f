"""Bounded inputs on both public ports, the gateway and the model server
(``llmship.limits``, the wire models' limits): every limit refused with its status
before the request costs anything, and stated in the OpenAPI documents."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from _gateway import CHAT, STABLE, Rig, make_rig
from _procs import ThreadedServer
from fakes import FakeBackend
from fakes_gateway import FakeModelServers, FakeStore
from llmship.gateway import create_app as create_gateway
from llmship.release.spec import parse_spec
from llmship.server import ModelService
from llmship.server import create_app as create_server
from llmship.server.metrics import ServerMetrics
from llmship.server.serving import MAX_CHARS_PER_TOKEN
from llmship.settings import Settings
from llmship.wire import MAX_MESSAGES, MAX_STOP_CHARS, MAX_TEXT_CHARS, SEED_MAX

SPEC = parse_spec(
    {
        "name": "demo-chat",
        "version": "1.2.0",
        "backend": "openai",
        "model": {"base_url": "http://upstream.invalid/v1", "id": "demo"},
    }
)
MIB = 1024 * 1024


def _settings(**values: Any) -> Settings:
    return Settings(home=Path("/nonexistent"), **values)


def server_app(backend: FakeBackend | None = None, **settings: Any) -> FastAPI:
    service = ModelService(
        SPEC, backend or FakeBackend(), _settings(**settings), ServerMetrics(SPEC.ref)
    )
    return create_server(service)


def gateway_app(**settings: Any) -> FastAPI:
    return create_gateway(FakeStore([SPEC.ref], production=SPEC.ref), _settings(**settings))


APPS: dict[str, Callable[..., FastAPI]] = {"server": server_app, "gateway": gateway_app}


# -- the ASGI layer: what is read before the answer -----------------------------------


class Asgi:
    """One request straight into an ASGI app: its body comes from ``chunks`` (an
    iterator of byte strings); ``reads`` counts what the app took of it."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.reads = 0
        self.messages: list[dict[str, Any]] = []

    def post(
        self, path: str, headers: list[tuple[bytes, bytes]], chunks: Iterator[bytes]
    ) -> tuple[int, dict[str, Any], dict[bytes, bytes]]:
        async def receive() -> dict[str, Any]:
            chunk = next(chunks, None)
            self.reads += 1
            if chunk is None:
                return {"type": "http.request", "body": b"", "more_body": False}
            return {"type": "http.request", "body": chunk, "more_body": True}

        async def send(message: dict[str, Any]) -> None:
            self.messages.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"test"), (b"content-type", b"application/json"), *headers],
            "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 80),
        }
        asyncio.run(self.app(scope, receive, send))
        start = next(m for m in self.messages if m["type"] == "http.response.start")
        body = b"".join(
            m.get("body", b"") for m in self.messages if m["type"] == "http.response.body"
        )
        return start["status"], json.loads(body), dict(start["headers"])


def _endless(size: int = 64 * 1024) -> Iterator[bytes]:
    yield b'{"prompt": "'
    while True:
        yield b"a" * size


@pytest.mark.parametrize("kind", APPS)
def test_a_declared_body_over_the_limit_is_refused_unread(kind: str) -> None:
    asgi = Asgi(APPS[kind]())
    status, body, headers = asgi.post(
        "/predict", [(b"content-length", str(10 * 1024**3).encode())], _endless()
    )
    assert status == 413
    assert body["error"]["code"] == "request_too_large"
    assert "1 MiB" in body["error"]["message"] or "1024 KiB" in body["error"]["message"]
    assert asgi.reads == 0  # not one byte of it was read
    assert headers[b"connection"] == b"close"


@pytest.mark.parametrize("kind", APPS)
@pytest.mark.parametrize("path", ["/predict", "/v1/chat/completions"])
def test_a_body_that_goes_on_is_cut_off_at_the_limit(kind: str, path: str) -> None:
    asgi = Asgi(APPS[kind](max_body_bytes=MIB))
    status, body, _ = asgi.post(path, [(b"transfer-encoding", b"chunked")], _endless())
    assert status == 413, body
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["code"] == "request_too_large"
    assert asgi.reads <= MIB // (64 * 1024) + 2  # read up to the limit, and no further


@pytest.mark.parametrize("kind", APPS)
def test_a_lying_content_length_is_cut_off_too(kind: str) -> None:
    asgi = Asgi(APPS[kind](max_body_bytes=MIB))
    status, _, _ = asgi.post("/predict", [(b"content-length", b"100")], _endless())
    assert status == 413
    assert asgi.reads <= MIB // (64 * 1024) + 2


@pytest.mark.parametrize("kind", APPS)
def test_big_headers_get_431(kind: str) -> None:
    asgi = Asgi(APPS[kind](max_header_bytes=4096))
    status, body, _ = asgi.post("/predict", [(b"x-junk", b"j" * 5000)], iter([b"{}"]))
    assert status == 431
    assert body["error"]["code"] == "headers_too_large"
    assert asgi.reads == 0


@pytest.mark.parametrize("kind", APPS)
def test_a_content_length_that_is_no_number_is_400(kind: str) -> None:
    status, body, _ = Asgi(APPS[kind]()).post(
        "/predict", [(b"content-length", b"-5")], iter([b"{}"])
    )
    assert status == 400 and "Content-Length" in body["error"]["message"]


def test_a_body_under_the_limit_is_served() -> None:
    backend = FakeBackend()
    with TestClient(server_app(backend, max_body_bytes=1024)) as client:
        deadline = time.monotonic() + 5
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert client.post("/predict", json={"prompt": "hi"}).status_code == 200
        r = client.post("/predict", json={"prompt": "x" * 2000})
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


# -- over a real socket -----------------------------------------------------------------


def _exchange(port: int, head: bytes, body_chunks: Iterator[bytes], most: int) -> tuple[bytes, int]:
    """Send ``head`` then body chunks until the server answers (or ``most`` bytes went);
    the answer's first bytes and how many body bytes were sent."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        sock.sendall(head)
        sock.setblocking(False)
        reply = b""
        pending = b""
        while sent <= most:
            with contextlib.suppress(BlockingIOError):
                reply += sock.recv(65536)
            if reply:
                break
            pending = pending or next(body_chunks, b"")
            if not pending:
                break
            try:
                done = sock.send(pending)
            except BlockingIOError:
                time.sleep(0.005)
                continue
            except OSError:  # the server closed the connection
                break
            sent, pending = sent + done, pending[done:]
        sock.setblocking(True)
        while b"\r\n\r\n" not in reply:
            more = sock.recv(65536)
            if not more:
                break
            reply += more
    return reply, sent


def _chunked(size: int = 16 * 1024) -> Iterator[bytes]:
    piece = b"a" * size
    frame = f"{size:x}\r\n".encode() + piece + b"\r\n"
    while True:
        yield frame


@pytest.mark.parametrize("kind", APPS)
def test_over_a_socket_the_413_comes_before_the_body(kind: str) -> None:
    server = ThreadedServer(APPS[kind](max_body_bytes=MIB), kind)
    server.start()
    try:
        head = (
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10737418240\r\n\r\n"
        )
        reply, sent = _exchange(server.port, head, iter(lambda: b"a" * 16384, None), 8 * MIB)
        assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
        assert sent < 8 * MIB  # answered long before the 10 GiB it announced
        head = b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        reply, sent = _exchange(server.port, head, _chunked(), 16 * MIB)
        assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
        assert sent < 8 * MIB  # the limit, plus what the sockets' buffers held
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"j" * 40_000 + b"\r\n\r\n"
        reply, _ = _exchange(server.port, head, iter(()), 0)
        assert reply.startswith(b"HTTP/1.1 431"), reply[:200]
    finally:
        server.stop()


# -- the wire models' limits, on both ports ---------------------------------------------


def _msg(text: str = "hi") -> dict[str, str]:
    return {"role": "user", "content": text}


BAD_BODIES = [
    pytest.param({"messages": [_msg()] * (MAX_MESSAGES + 1)}, "messages", id="too-many-messages"),
    pytest.param({"messages": [_msg("a" * (MAX_TEXT_CHARS + 1))]}, "messages", id="long-content"),
    pytest.param(
        {
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "a" * (MAX_TEXT_CHARS + 1)}]}
            ]
        },
        "messages",
        id="long-part",
    ),
    pytest.param({**CHAT, "seed": SEED_MAX + 1}, "seed", id="seed-too-big"),
    pytest.param({**CHAT, "seed": -(2**63) - 1}, "seed", id="seed-too-small"),
    pytest.param({**CHAT, "stop": ["a", "b", "c", "d", "e"]}, "stop", id="five-stops"),
    pytest.param({**CHAT, "stop": "s" * (MAX_STOP_CHARS + 1)}, "stop", id="long-stop"),
    pytest.param({**CHAT, "stop": ["s" * (MAX_STOP_CHARS + 1)]}, "stop", id="long-stop-in-list"),
    pytest.param({**CHAT, "n": 2}, "n", id="n"),
    pytest.param({**CHAT, "user": "u" * 300}, "user", id="long-user"),
]


@pytest.fixture(scope="module")
def server_client() -> Iterator[tuple[TestClient, FakeBackend]]:
    backend = FakeBackend(context_length=64)
    with TestClient(server_app(backend, max_body_bytes=8 * MIB)) as client:
        deadline = time.monotonic() + 5
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        yield client, backend


@pytest.fixture(scope="module")
def module_fakes() -> Iterator[FakeModelServers]:
    with FakeModelServers(hang=2.0) as servers:
        yield servers


@pytest.fixture
def gateway_rig(module_fakes: FakeModelServers) -> Iterator[Rig]:
    with make_rig(module_fakes, max_body_bytes=8 * MIB) as rig:
        yield rig


@pytest.mark.parametrize(("body", "param"), BAD_BODIES)
def test_the_model_server_refuses_a_body_over_a_field_limit(
    server_client: tuple[TestClient, FakeBackend], body: dict[str, Any], param: str
) -> None:
    client, backend = server_client
    before = len(backend.requests)
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"].startswith(param)
    assert len(backend.requests) == before


@pytest.mark.parametrize(("body", "param"), BAD_BODIES)
def test_the_gateway_refuses_a_body_over_a_field_limit(
    gateway_rig: Rig, body: dict[str, Any], param: str
) -> None:
    r = gateway_rig.chat(body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"].startswith(param)
    assert gateway_rig.servers[STABLE].requests == []  # no release saw it


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/predict", {"prompt": "x", "seed": 2**64}),
        ("/predict", {"prompt": "x" * (MAX_TEXT_CHARS + 1)}),
        ("/v1/completions", {"prompt": ["a", "b"]}),
        ("/v1/completions", {"prompt": "x", "stop": ["1", "2", "3", "4", "5"]}),
    ],
)
def test_other_routes_have_the_limits_too(
    server_client: tuple[TestClient, FakeBackend], gateway_rig: Rig, path: str, body: dict[str, Any]
) -> None:
    for client in (server_client[0], gateway_rig.client):
        assert client.post(path, json=body).status_code == 400


def test_a_seed_at_the_limit_is_served(server_client: tuple[TestClient, FakeBackend]) -> None:
    client, backend = server_client
    r = client.post("/v1/chat/completions", json={**CHAT, "seed": SEED_MAX})
    assert r.status_code == 200
    assert backend.requests[-1].seed == SEED_MAX


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/predict", {"prompt": "a" * (64 * MAX_CHARS_PER_TOKEN + 1)}),
        ("/v1/completions", {"prompt": "a" * (64 * MAX_CHARS_PER_TOKEN + 1)}),
        ("/v1/chat/completions", {"messages": [_msg("a" * (64 * MAX_CHARS_PER_TOKEN + 1))]}),
    ],
)
def test_a_prompt_beyond_the_context_is_refused_before_it_is_tokenised(
    server_client: tuple[TestClient, FakeBackend], path: str, body: dict[str, Any]
) -> None:
    client, backend = server_client
    before = len(backend.requests)
    r = client.post(path, json=body)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert "context window of 64 tokens" in error["message"]
    assert len(backend.requests) == before  # the backend never saw (or tokenised) it


TEMPLATE_CHECK = """
import json
from pathlib import Path
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from llmship.backends.base import GenerationRequest, Message
from llmship.backends.llamacpp import LlamaCppBackend
from llmship.errors import InvalidRequestError
from llmship.release.spec import parse_spec

spec = parse_spec(
    {"name": "t", "version": "1.0.0", "backend": "llamacpp", "model": {"path": "m.gguf"}}
)
backend = LlamaCppBackend(spec, Path("m.gguf"))
backend._formatter = Jinja2ChatFormatter(
    template="{% if messages[0]['role'] != 'user' %}"
    "{{ raise_exception('Conversations must start with a user message') }}{% endif %}"
    "{% for m in messages %}{{ m['content'] }}{% endfor %}",
    eos_token="</s>",
    bos_token="<s>",
)
ok = backend._format(GenerationRequest(max_tokens=4, messages=(Message("user", "hi"),)))
try:
    backend._format(GenerationRequest(max_tokens=4, messages=(Message("assistant", "hi"),)))
except InvalidRequestError as exc:
    print(json.dumps([ok.prompt, exc.status_code, exc.param, exc.message]))
"""


def test_a_chat_template_that_refuses_the_messages_is_a_400() -> None:
    # In a child process: importing llama_cpp leaves a file open at exit.
    done = subprocess.run(
        [sys.executable, "-c", TEMPLATE_CHECK],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    prompt, status, param, message = json.loads(done.stdout.splitlines()[-1])
    assert prompt == "hi"  # a conversation the template takes is formatted
    assert (status, param) == (400, "messages")
    assert "Conversations must start with a user message" in message


# -- the OpenAPI documents state the limits ----------------------------------------------


@pytest.mark.parametrize("kind", APPS)
def test_the_openapi_document_states_the_limits(kind: str) -> None:
    schema = APPS[kind](max_request_tokens=512).openapi()
    chat = schema["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    assert chat["messages"]["maxItems"] == MAX_MESSAGES
    seed = next(b for b in chat["seed"]["anyOf"] if b.get("type") == "integer")
    assert (seed["minimum"], seed["maximum"]) == (-(2**63), SEED_MAX)
    tokens = next(b for b in chat["max_tokens"]["anyOf"] if b.get("type") == "integer")
    assert tokens["maximum"] == 512  # the max_request_tokens setting
    predict = schema["components"]["schemas"]["PredictRequest"]["properties"]
    assert predict["max_new_tokens"]["maximum"] == 512
    assert predict["prompt"]["maxLength"] == MAX_TEXT_CHARS
