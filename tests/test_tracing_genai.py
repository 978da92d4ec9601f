"""OpenTelemetry GenAI spans and the standard OTEL_* variables.

- Which exporter the settings and OTEL_* variables choose, and the gen_ai.* attributes
  read from requests and answers: tables.
- A model server (in process, with the fake model or the openai backend in front of
  an in-memory upstream) exporting to a real OTLP/HTTP receiver.
- `llmship gateway` as a real process, configured only by OTEL_* variables as a user
  would, in front of fake model servers: its spans reach the receiver with the GenAI
  attributes, under the service name and resource the variables give, and each
  access-log line names the trace of its request.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from _cli import Run
from _otlp import CLIENT, INTERNAL, SERVER, OtlpReceiver, ReceivedSpan
from _procs import GatewayProcess, free_port
from fakes import FakeBackend
from fakes_gateway import FakeModelServers, FakeServer
from llmship import genai, tracing
from llmship.backends.openai import OpenAIBackend
from llmship.errors import NotConfiguredError
from llmship.registry import Registry
from llmship.release.bundled import bundled_spec
from llmship.release.spec import ReleaseSpec, parse_spec
from llmship.server import ModelService, create_app
from llmship.server.metrics import ServerMetrics
from llmship.settings import Settings

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CLIENT_SPAN}-01"


def traceparent(header: str) -> tuple[str, str, bool]:
    """The trace id, parent span id and sampled flag of a W3C ``traceparent``."""
    version, trace_id, parent_id, flags = header.split("-")
    assert version == "00"
    return trace_id, parent_id, bool(int(flags, 16) & 1)


# -- which exporters: llmship's settings and the OTEL_* variables --------------------

ENDPOINT = "http://collector:4318"


@pytest.mark.parametrize(
    ("tracing_setting", "endpoint", "environ", "exporters", "why"),
    [
        pytest.param(None, None, {}, (), "off by default", id="nothing-set-is-off"),
        pytest.param("otlp", None, {}, ("otlp",), "LLMSHIP_TRACING=otlp", id="setting"),
        pytest.param(
            None,
            None,
            {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT},
            ("otlp",),
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            id="an-otlp-endpoint-alone-turns-export-on",
        ),
        pytest.param(
            None,
            None,
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ENDPOINT + "/v1/traces"},
            ("otlp",),
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            id="a-traces-endpoint-alone-too",
        ),
        pytest.param(
            None,
            ENDPOINT + "/v1/traces",
            {},
            ("otlp",),
            "LLMSHIP_TRACING_ENDPOINT",
            id="llmship-endpoint-alone-too",
        ),
        pytest.param(
            "none",
            None,
            {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT},
            (),
            "LLMSHIP_TRACING=none",
            id="the-setting-none-wins-over-an-endpoint",
        ),
        pytest.param(
            None,
            None,
            {"OTEL_TRACES_EXPORTER": "console", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT},
            ("console",),
            "OTEL_TRACES_EXPORTER=console",
            id="otel-traces-exporter-wins-over-an-endpoint",
        ),
        pytest.param(
            None,
            None,
            {"OTEL_TRACES_EXPORTER": "otlp, console"},
            ("otlp", "console"),
            "OTEL_TRACES_EXPORTER=otlp, console",
            id="otel-traces-exporter-list",
        ),
        pytest.param(
            None,
            None,
            {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT},
            (),
            "OTEL_TRACES_EXPORTER=none",
            id="otel-traces-exporter-none",
        ),
        pytest.param(
            "console",
            None,
            {"OTEL_TRACES_EXPORTER": "otlp"},
            ("console",),
            "LLMSHIP_TRACING=console",
            id="the-setting-wins-over-otel-traces-exporter",
        ),
        pytest.param(
            "otlp",
            None,
            {"OTEL_SDK_DISABLED": "TRUE"},
            (),
            "OTEL_SDK_DISABLED=true",
            id="otel-sdk-disabled-wins-over-everything",
        ),
        pytest.param(
            None,
            None,
            {"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT},
            ("otlp",),
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            id="otel-sdk-disabled-false-changes-nothing",
        ),
    ],
)
def test_which_exporters(
    tracing_setting: str | None,
    endpoint: str | None,
    environ: dict[str, str],
    exporters: tuple[str, ...],
    why: str,
) -> None:
    chosen = tracing.plan(tracing_setting, endpoint, environ)
    assert (chosen.exporters, chosen.why) == (exporters, why)
    assert chosen.endpoint == endpoint


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"OTEL_TRACES_EXPORTER": "zipkin"},
            "OTEL_TRACES_EXPORTER='zipkin': zipkin is not one of none, console, otlp",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL=grpc: llmship exports OTLP over HTTP only",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json: llmship exports OTLP over HTTP only",
        ),
    ],
)
def test_what_llmship_cannot_export_is_refused(environ: dict[str, str], message: str) -> None:
    with pytest.raises(NotConfiguredError) as caught:
        tracing.plan(None, None, environ)
    assert caught.value.message.startswith(message)


def test_a_gateway_asked_for_otlp_over_grpc_stops_at_startup(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    result = run("gateway", "--port", str(free_port()), code=2)
    assert "OTEL_EXPORTER_OTLP_PROTOCOL=grpc: llmship exports OTLP over HTTP only" in result.output
    assert not tracing.enabled()


# -- gen_ai.* attributes from requests and answers -----------------------------------


@pytest.mark.parametrize(
    ("route", "payload", "expected"),
    [
        (
            "/v1/chat/completions",
            {"model": "chat", "max_tokens": 9, "temperature": 0, "top_p": 0.5, "seed": 3},
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "chat",
                "gen_ai.request.max_tokens": 9,
                "gen_ai.request.temperature": 0.0,
                "gen_ai.request.top_p": 0.5,
                "gen_ai.request.seed": 3,
            },
        ),
        (
            "/v1/chat/completions",
            {"max_completion_tokens": 4, "temperature": "hot", "seed": True, "model": ""},
            {"gen_ai.operation.name": "chat", "gen_ai.request.max_tokens": 4},
        ),
        (
            "/v1/completions",
            {"model": "m", "max_tokens": 2.5},
            {"gen_ai.operation.name": "text_completion", "gen_ai.request.model": "m"},
        ),
        (
            "/predict",
            {"prompt": "hi", "max_new_tokens": 7},
            {"gen_ai.operation.name": "chat", "gen_ai.request.max_tokens": 7},
        ),
    ],
)
def test_request_attributes(route: str, payload: dict[str, Any], expected: dict[str, Any]) -> None:
    assert genai.request_attributes(route, payload) == expected


USAGE = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            {
                "id": "chatcmpl-1",
                "model": "chat",
                "choices": [{"index": 0, "finish_reason": "length"}],
                "usage": USAGE,
            },
            {
                "gen_ai.response.id": "chatcmpl-1",
                "gen_ai.response.model": "chat",
                "gen_ai.response.finish_reasons": ["length"],
                "gen_ai.usage.input_tokens": 11,
                "gen_ai.usage.output_tokens": 5,
            },
        ),
        (
            {"query_id": "q1", "version": "chat@1.0.0", "finish_reason": "stop", "usage": USAGE},
            {
                "gen_ai.response.id": "q1",
                "gen_ai.response.model": "chat@1.0.0",
                "gen_ai.response.finish_reasons": ["stop"],
                "gen_ai.usage.input_tokens": 11,
                "gen_ai.usage.output_tokens": 5,
            },
        ),
        ({"choices": "x", "usage": {"prompt_tokens": "many"}}, {}),
    ],
)
def test_response_attributes(answer: dict[str, Any], expected: dict[str, Any]) -> None:
    assert genai.response_attributes(answer) == expected


def test_stream_facts_read_the_id_model_finish_reasons_and_usage_of_a_stream() -> None:
    def event(data: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"

    base = {"id": "cmpl-9", "model": "chat"}
    facts = genai.StreamFacts()
    facts.feed(event(base | {"choices": [{"index": 0, "text": "a", "finish_reason": None}]}))
    facts.feed(event(base | {"choices": [{"index": 0, "text": "b", "finish_reason": None}]}))
    facts.feed(
        event(base | {"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]})
        + event(base | {"choices": [], "usage": USAGE})
        + b"data: [DONE]\n\n"
    )
    assert facts.attributes() == {
        "gen_ai.response.id": "cmpl-9",
        "gen_ai.response.model": "chat",
        "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 5,
    }


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://10.0.0.7:8000", {"server.address": "10.0.0.7", "server.port": 8000}),
        ("https://api.example.com/v1", {"server.address": "api.example.com", "server.port": 443}),
        ("http://vllm/v1", {"server.address": "vllm", "server.port": 80}),
    ],
)
def test_server_attributes(url: str, expected: dict[str, Any]) -> None:
    assert genai.server_attributes(url) == expected


# -- the model server's spans ---------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    otlp = OtlpReceiver()
    yield otlp
    otlp.close()


@pytest.fixture
def exporting(receiver: OtlpReceiver) -> Iterator[OtlpReceiver]:
    """This process exports its spans over OTLP/HTTP to ``receiver`` (off afterwards)."""
    tracing.setup("otlp", "llmship-serve", receiver.url, environ={})
    yield receiver
    tracing.setup("none", "llmship-serve", environ={})


def model_server(backend: Any, spec: ReleaseSpec) -> TestClient:
    cfg = Settings(home=Path("/nonexistent"))
    service = ModelService(spec, backend, cfg, ServerMetrics(spec.ref))
    return TestClient(create_app(service))


def ready(client: TestClient) -> TestClient:
    deadline = time.monotonic() + 5
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the model server never became ready"
        time.sleep(0.01)
    return client


def exported(receiver: OtlpReceiver) -> list[ReceivedSpan]:
    assert tracing.flush(), "the spans were not exported in time"
    return receiver.spans


def test_a_chat_completion_is_a_chat_span_with_the_genai_attributes(
    exporting: OtlpReceiver,
) -> None:
    # Given a model server of an in-process model (llama.cpp's place taken by a fake)
    spec = bundled_spec()
    with model_server(FakeBackend(), spec) as client:
        ready(client)
        # When a client that is itself traced asks for a chat completion
        r = client.post(
            "/v1/chat/completions",
            json={
                "model": "smollm2-chat",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 3,
                "temperature": 0.2,
                "top_p": 0.9,
                "seed": 42,
            },
            headers={"traceparent": TRACEPARENT},
        )
    assert r.status_code == 200, r.text
    answer = r.json()
    # Then its generation is a span "chat MODEL", child of the request's SERVER span
    spans = [s for s in exported(exporting) if s.trace_id == TRACE_ID]
    [handled] = [s for s in spans if s.kind == SERVER]
    [generation] = [s for s in spans if s.kind == INTERNAL]
    assert handled.parent_id == CLIENT_SPAN and handled.trace_id == TRACE_ID
    assert handled.attributes["llmship.release"] == spec.ref
    assert handled.attributes["llmship.request_id"] == r.headers["x-request-id"]
    assert generation.name == "chat smollm2-chat"
    assert generation.parent_id == handled.span_id
    assert generation.attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "fake",
        "gen_ai.request.model": "smollm2-chat",
        "gen_ai.request.max_tokens": 3,
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.top_p": 0.9,
        "gen_ai.request.seed": 42,
        "llmship.release": spec.ref,
        "gen_ai.response.id": answer["id"],
        "gen_ai.response.model": answer["model"],
        "gen_ai.response.finish_reasons": [answer["choices"][0]["finish_reason"]],
        "gen_ai.usage.input_tokens": answer["usage"]["prompt_tokens"],
        "gen_ai.usage.output_tokens": answer["usage"]["completion_tokens"],
    }


def test_a_streamed_text_completion_is_a_text_completion_span(exporting: OtlpReceiver) -> None:
    spec = bundled_spec()
    with model_server(FakeBackend(), spec) as client:
        ready(client)
        r = client.post("/v1/completions", json={"prompt": "Once", "max_tokens": 4, "stream": True})
    assert r.status_code == 200 and r.text.endswith("data: [DONE]\n\n")
    [generation] = [s for s in exported(exporting) if s.kind == INTERNAL]
    assert generation.name == "text_completion smollm2-chat"
    attributes = generation.attributes
    assert attributes["gen_ai.operation.name"] == "text_completion"
    assert attributes["gen_ai.response.id"] == "cmpl-" + r.headers["x-request-id"]
    assert attributes["gen_ai.response.finish_reasons"] == ["length"]
    assert attributes["gen_ai.usage.output_tokens"] == 4


def test_the_openai_backend_calls_its_upstream_in_a_client_span_that_it_passes_on(
    exporting: OtlpReceiver,
) -> None:
    # Given a release in front of an OpenAI-compatible upstream (vLLM's place)
    spec = parse_spec(
        {
            "name": "big-chat",
            "version": "2.0.0",
            "backend": "openai",
            "model": {"base_url": "http://vllm.internal:8001/v1", "id": "Qwen/Qwen2.5-7B"},
        }
    )
    seen: list[httpx.Request] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "Qwen/Qwen2.5-7B"}]})
        if json.loads(request.content)["stream"] is False:  # /predict asks for a whole answer
            usage = {"prompt_tokens": 6, "completion_tokens": 1, "total_tokens": 7}
            choice = {"index": 0, "message": {"content": "Hi"}, "finish_reason": "stop"}
            return httpx.Response(200, json={"choices": [choice], "usage": usage})
        events = [
            {"model": "Qwen/Qwen2.5-7B", "choices": [{"index": 0, "delta": {"content": "Hi"}}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {"choices": [], "usage": {"prompt_tokens": 6, "completion_tokens": 1}},
        ]
        body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
        return httpx.Response(
            200, content=body + b"data: [DONE]\n\n", headers={"content-type": "text/event-stream"}
        )

    backend = OpenAIBackend(spec, transport=httpx.MockTransport(upstream))
    with model_server(backend, spec) as client:
        ready(client)
        r = client.post("/predict", json={"prompt": "hello", "max_new_tokens": 5})
    assert r.status_code == 200, r.text
    # Then the call to the upstream is a CLIENT span with the upstream's address ...
    [call] = [s for s in exported(exporting) if s.kind == CLIENT]
    assert call.name == "chat Qwen/Qwen2.5-7B"
    assert call.attributes["gen_ai.provider.name"] == "openai"
    assert call.attributes["gen_ai.request.max_tokens"] == 5
    assert call.attributes["server.address"] == "vllm.internal"
    assert call.attributes["server.port"] == 8001
    assert call.attributes["gen_ai.usage.input_tokens"] == 6
    assert call.attributes["gen_ai.response.id"] == r.json()["query_id"]
    # ... whose context the upstream received, so its own spans join the trace
    [generate] = [req for req in seen if req.url.path.endswith("/chat/completions")]
    assert traceparent(generate.headers["traceparent"]) == (call.trace_id, call.span_id, True)


def test_a_sampler_ratio_of_zero_exports_nothing(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="llmship.access")
    # Given OTEL_TRACES_SAMPLER=traceidratio with OTEL_TRACES_SAMPLER_ARG=0
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    tracing.setup("otlp", "llmship-serve", receiver.url, environ={})
    try:
        with model_server(FakeBackend(), bundled_spec()) as client:
            ready(client)
            for _ in range(3):
                assert client.post("/predict", json={"prompt": "hi"}).status_code == 200
        # Then nothing is exported, yet each access line still names its trace
        assert exported(receiver) == []
        lines = [r.getMessage() for r in caplog.records if "route=/predict" in r.getMessage()]
        assert len(lines) == 3
        assert all(re.search(r" trace_id=[0-9a-f]{32} span_id=[0-9a-f]{16}", x) for x in lines)
    finally:
        tracing.setup("none", "llmship-serve", environ={})


def test_otel_sdk_disabled_turns_tracing_off_even_when_llmship_asks_for_it() -> None:
    chosen = tracing.setup("otlp", "llmship-serve", environ={"OTEL_SDK_DISABLED": "true"})
    assert chosen.exporters == () and not tracing.enabled()
    assert tracing.start_span("chat x") is None


# -- `llmship gateway`, configured by OTEL_* variables ---------------------------------


def access_lines(output: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("logger") == "llmship.gateway.access"]


def test_the_gateway_exports_genai_spans_where_otel_variables_say(tmp_path: Path) -> None:
    # Given a release whose model server (a fake) is announced in the registry
    release = bundled_spec()
    home = tmp_path / ".llmship"
    with (
        FakeModelServers() as fakes,
        Registry.open(f"sqlite:///{home / 'registry.db'}", home=home) as registry,
    ):
        fakes.servers["v1"] = FakeServer(release.ref)
        registry.register(release, actor="test")
        registry.set_alias("dev", "production", release.ref, actor="test", reason="first")
        registry.register_endpoint("dev", release.ref, fakes.url("v1"), pid=os.getpid())
        receiver = OtlpReceiver()
        # and a gateway started with OTEL_* variables only (no LLMSHIP_TRACING)
        gateway = GatewayProcess(
            tmp_path,
            env={
                "LLMSHIP_ENDPOINT_MAX_AGE": "3600",
                "LLMSHIP_LOG_FORMAT": "json",
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.base,
                "OTEL_SERVICE_NAME": "edge-gateway",
                "OTEL_RESOURCE_ATTRIBUTES": "team=ml,deployment.environment.name=staging",
                "OTEL_BSP_SCHEDULE_DELAY": "100",  # export every 0.1 s, not every 5 s
            },
        )
        try:
            gateway.wait_ready()
            # When a traced client asks for a chat completion, and another streams one
            chat = {"model": "smollm2-chat", "messages": [{"role": "user", "content": "hi"}]}
            r = httpx.post(
                f"{gateway.url}/v1/chat/completions",
                json={**chat, "max_tokens": 8, "temperature": 0.1},
                headers={"traceparent": TRACEPARENT},
                timeout=10,
            )
            assert r.status_code == 200, r.text
            s = httpx.post(f"{gateway.url}/v1/chat/completions", json={**chat, "stream": True})
            assert s.status_code == 200 and s.text.endswith("data: [DONE]\n\n")
            calls = receiver.wait_for(2, kind=CLIENT)
            for call in calls:
                receiver.wait_for(1, kind=SERVER, trace_id=call.trace_id)
            spans = [x for x in receiver.spans if x.trace_id in {c.trace_id for c in calls}]
            lines = access_lines(gateway.output())
        finally:
            gateway.stop()
            receiver.close()
    # Then its spans carry the service name and resource of the variables
    assert {(span.service, span.resource.get("team")) for span in receiver.spans} == {
        ("edge-gateway", "ml")
    }
    assert {span.resource["deployment.environment.name"] for span in spans} == {"staging"}
    assert receiver.paths[0] == "/v1/traces"
    # and the call to the model server is a CLIENT span "chat MODEL" in the client's trace
    [incoming] = [x for x in spans if x.kind == SERVER and x.trace_id == TRACE_ID]
    [outgoing] = [x for x in spans if x.kind == CLIENT and x.trace_id == TRACE_ID]
    assert incoming.parent_id == CLIENT_SPAN and outgoing.parent_id == incoming.span_id
    assert incoming.name == "POST /v1/chat/completions"
    assert (incoming.attributes["llmship.release"], incoming.attributes["llmship.variant"]) == (
        release.ref,
        "stable",
    )
    assert outgoing.name == "chat smollm2-chat"
    port = int(fakes.url("v1").rsplit(":", 1)[1].split("/")[0])
    assert outgoing.attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "llmship",
        "gen_ai.request.model": "smollm2-chat",
        "gen_ai.request.max_tokens": 8,
        "gen_ai.request.temperature": 0.1,
        "llmship.release": release.ref,
        "llmship.variant": "stable",
        "server.address": "127.0.0.1",
        "server.port": port,
        "gen_ai.response.model": "smollm2-chat",
        "gen_ai.usage.input_tokens": 3,
        "gen_ai.usage.output_tokens": 4,
        "http.response.status_code": 200,
    }
    # and the model server was asked within that CLIENT span
    first = fakes.servers["v1"].requests[0]
    assert traceparent(first.headers["traceparent"]) == (TRACE_ID, outgoing.span_id, True)
    # and the streamed answer's span counted what the stream said
    [streamed] = [x for x in spans if x.kind == CLIENT and x.trace_id != TRACE_ID]
    assert streamed.attributes["gen_ai.usage.output_tokens"] == 4
    assert streamed.attributes["gen_ai.response.model"] == "smollm2-chat"
    # and each access-log line names its request's trace and SERVER span
    by_request = {line["request_id"]: line for line in lines}
    assert len(lines) == 2 == len(by_request)
    logged = by_request[r.headers["x-request-id"]]
    assert (logged["trace_id"], logged["span_id"]) == (TRACE_ID, incoming.span_id)
    other = by_request[s.headers["x-request-id"]]
    [other_server] = [x for x in spans if x.kind == SERVER and x.trace_id != TRACE_ID]
    assert (other["trace_id"], other["span_id"]) == (other_server.trace_id, other_server.span_id)
