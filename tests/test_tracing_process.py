"""OpenTelemetry tracing across real processes: one trace runs from the client through
`llmship gateway` (exporting over OTLP/HTTP) to `llmship serve` with the real model
(exporting to the console), continuing the client's W3C traceparent."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from _procs import GatewayProcess, ModelServer
from llmship.registry import Registry
from llmship.release.bundled import bundled_spec
from llmship.release.spec import parse_spec

pytestmark = pytest.mark.slow

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
SERVER, CLIENT = 2, 3  # OTLP span kinds


class OtlpReceiver:
    """An OTLP/HTTP traces endpoint on a free port that keeps every span it is sent,
    decoded with the OpenTelemetry protobuf definitions (what a collector receives)."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource_spans in request.resource_spans:
                    service = next(
                        a.value.string_value
                        for a in resource_spans.resource.attributes
                        if a.key == "service.name"
                    )
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            receiver.spans.append(
                                {
                                    "service": service,
                                    "name": span.name,
                                    "kind": span.kind,
                                    "trace_id": span.trace_id.hex(),
                                    "span_id": span.span_id.hex(),
                                    "parent_id": span.parent_span_id.hex(),
                                }
                            )
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def console_spans(output: str) -> list[dict[str, Any]]:
    """The spans a process printed (``tracing: console``: one JSON object a line)."""
    spans = []
    for line in output.splitlines():
        if line.startswith('{"name"'):
            span = json.loads(line)
            spans.append(
                {
                    "name": span["name"],
                    "kind": span["kind"],
                    "trace_id": span["context"]["trace_id"].removeprefix("0x"),
                    "span_id": span["context"]["span_id"].removeprefix("0x"),
                    "parent_id": (span["parent_id"] or "").removeprefix("0x"),
                    "attributes": span["attributes"],
                }
            )
    return spans


def wait_for(found: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not found():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_one_trace_runs_from_the_client_through_the_gateway_to_the_model(tmp_path: Path) -> None:
    # Given a model server tracing to its console and a gateway tracing over OTLP
    data = bundled_spec().to_dict()
    data["runtime"] |= {"n_threads": 1, "n_ctx": 512}
    data["params"] |= {"temperature": 0.0}
    release = parse_spec(data)
    home = tmp_path / ".llmship"
    with Registry.open(f"sqlite:///{home / 'registry.db'}", home=home) as registry:
        registry.register(release, actor="test")
        registry.set_alias("dev", "production", release.ref, actor="test", reason="first")
    receiver = OtlpReceiver()
    base = {"LLMSHIP_ENDPOINT_MAX_AGE": "3600"}
    server = ModelServer(
        tmp_path, "--release", release.ref, env={**base, "LLMSHIP_TRACING": "console"}
    )
    gateway_env = {
        **base,
        "LLMSHIP_TRACING": "otlp",
        "LLMSHIP_TRACING_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # export every 0.2 s, not every 5 s
    }
    gateway = GatewayProcess(tmp_path, env=gateway_env)
    try:
        server.wait_ready(timeout=120)
        gateway.wait_ready()
        # When a client that is itself traced asks through the gateway
        traceparent = f"00-{TRACE_ID}-{CLIENT_SPAN}-01"
        r = httpx.post(
            f"{gateway.url}/predict",
            json={"prompt": "Hi", "max_new_tokens": 4},
            headers={"traceparent": traceparent},
            timeout=120,
        )
        assert r.status_code == 200, r.text

        # Then the gateway's spans continue the client's trace ...
        def gateway_spans() -> list[dict[str, Any]]:
            return [s for s in receiver.spans if s["trace_id"] == TRACE_ID]

        wait_for(lambda: len(gateway_spans()) >= 2, "the gateway's spans over OTLP")
        [incoming] = [s for s in gateway_spans() if s["kind"] == SERVER]
        [outgoing] = [s for s in gateway_spans() if s["kind"] == CLIENT]
        assert (incoming["service"], incoming["name"]) == ("llmship-gateway", "POST /predict")
        assert incoming["parent_id"] == CLIENT_SPAN
        assert outgoing["parent_id"] == incoming["span_id"]

        # ... and the model server's spans continue the gateway's call to it
        def model_spans() -> list[dict[str, Any]]:
            return [s for s in console_spans(server.output()) if s["trace_id"] == TRACE_ID]

        wait_for(lambda: len(model_spans()) >= 2, "the model server's spans on its console")
        [handled] = [s for s in model_spans() if s["kind"] == "SpanKind.SERVER"]
        [inference] = [s for s in model_spans() if s["kind"] == "SpanKind.INTERNAL"]
        assert handled["name"] == "POST /predict"
        assert handled["parent_id"] == outgoing["span_id"]
        assert handled["attributes"]["http.response.status_code"] == 200
        assert inference["parent_id"] == handled["span_id"]
        assert inference["name"] == "chat smollm2-chat"  # the OpenTelemetry GenAI span
        assert inference["attributes"]["llmship.release"] == release.ref
        assert inference["attributes"]["gen_ai.provider.name"] == "llama.cpp"
        assert inference["attributes"]["gen_ai.usage.output_tokens"] > 0
    finally:
        gateway.stop()
        server.stop()
        receiver.close()
