"""OpenTelemetry tracing across real processes: one trace runs from the client through
`llmship gateway` (exporting over OTLP/HTTP) to `llmship serve` with the real model
(exporting to the console), continuing the client's W3C traceparent."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from _otlp import CLIENT, SERVER, OtlpReceiver
from _procs import GatewayProcess, ModelServer
from llmship.registry import Registry
from llmship.release.bundled import bundled_spec
from llmship.release.spec import parse_spec

pytestmark = pytest.mark.slow

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


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
        gateway_spans = receiver.wait_for(2, timeout=30, trace_id=TRACE_ID)
        [incoming] = [s for s in gateway_spans if s.kind == SERVER]
        [outgoing] = [s for s in gateway_spans if s.kind == CLIENT]
        assert (incoming.service, incoming.name) == ("llmship-gateway", "POST /predict")
        assert incoming.parent_id == CLIENT_SPAN
        assert outgoing.parent_id == incoming.span_id

        # ... and the model server's spans continue the gateway's call to it
        def model_spans() -> list[dict[str, Any]]:
            return [s for s in console_spans(server.output()) if s["trace_id"] == TRACE_ID]

        wait_for(lambda: len(model_spans()) >= 2, "the model server's spans on its console")
        [handled] = [s for s in model_spans() if s["kind"] == "SpanKind.SERVER"]
        [inference] = [s for s in model_spans() if s["kind"] == "SpanKind.INTERNAL"]
        assert handled["name"] == "POST /predict"
        assert handled["parent_id"] == outgoing.span_id
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
