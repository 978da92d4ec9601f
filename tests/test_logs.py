"""Log lines: the text and JSON formats of llmship.logs, access lines with the trace of
their request, and `llmship gateway` with LLMSHIP_LOG_FORMAT=json as a real process
(every line on stderr one JSON object, one access line per request)."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider

from _cli import Run
from _otlp import SERVER, OtlpReceiver
from _procs import free_port
from fakes import FakeBackend
from fakes_gateway import FakeModelServers, FakeServer
from llmship import logs, tracing
from llmship.registry import Registry
from llmship.release.bundled import bundled_spec
from llmship.server import ModelService, create_app
from llmship.server.metrics import ServerMetrics
from llmship.settings import Settings

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def record(
    msg: object,
    *args: object,
    name: str = "llmship.gateway.access",
    exc_info: Any = None,
) -> logging.LogRecord:
    return logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, exc_info)


# -- the two formats -----------------------------------------------------------------


def test_an_access_line_keeps_its_historic_names_in_the_text_format() -> None:
    line = logs.AccessLine(
        {
            "request_id": "abc",
            "method": "POST",
            "status": 200,
            "duration_ms": 12.5,
            "client_disconnected": True,
            "retried_from": None,
            "prompt": 'say "hi"',
        }
    )
    assert str(line) == (
        "id=abc method=POST status=200 latency_ms=12.5 client_disconnected=true "
        'prompt="say \\"hi\\""'
    )


def test_the_json_format_writes_one_object_with_the_access_fields() -> None:
    fields = {
        "request_id": "abc",
        "version": "chat@1.0.0",
        "variant": "stable",
        "method": "POST",
        "path": "/v1/chat/completions",
        "status": 200,
        "duration_ms": 3.2,
        "retried_from": None,
    }
    line = json.loads(logs.JsonFormatter().format(record(logs.AccessLine(fields))))
    assert RFC3339_UTC.match(line.pop("timestamp"))
    assert line == {
        "level": "INFO",
        "logger": "llmship.gateway.access",
        "message": "POST /v1/chat/completions 200",
        **{k: v for k, v in fields.items() if v is not None},
    }


def test_the_json_format_adds_the_current_trace_and_the_traceback() -> None:
    tracer = TracerProvider().get_tracer("test")
    formatter = logs.JsonFormatter()
    with tracer.start_as_current_span("request") as span:
        context = span.get_span_context()
        try:
            raise ValueError("boom")
        except ValueError:
            failed = record(
                "query %s failed", "q1", name="llmship.gateway.serving", exc_info=sys.exc_info()
            )
            line = json.loads(formatter.format(failed))
    assert line["message"] == "query q1 failed"
    assert line["trace_id"] == format(context.trace_id, "032x")
    assert line["span_id"] == format(context.span_id, "016x")
    assert line["exception"].startswith("Traceback") and "ValueError: boom" in line["exception"]
    outside = json.loads(formatter.format(record("idle", name="x")))
    assert "trace_id" not in outside and "exception" not in outside


def test_an_unknown_log_format_is_refused_before_anything_starts(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMSHIP_LOG_FORMAT", "xml")
    result = run("gateway", "--port", str(free_port()), code=2)
    assert "LLMSHIP_LOG_FORMAT='xml'" in result.output


# -- the model server's access line names its trace ------------------------------------


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    otlp = OtlpReceiver()
    tracing.setup("otlp", "llmship-serve", otlp.url, environ={})
    yield otlp
    tracing.setup("none", "llmship-serve", environ={})
    otlp.close()


def test_each_access_line_of_the_model_server_names_its_trace(
    receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="llmship.access")
    spec = bundled_spec()
    service = ModelService(
        spec, FakeBackend(), Settings(home=Path("/nonexistent")), ServerMetrics(spec.ref)
    )
    with TestClient(create_app(service)) as client:
        deadline = time.monotonic() + 5
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        r = client.post("/predict", json={"prompt": "hi"})
    assert r.status_code == 200
    assert tracing.flush()
    [line] = [rec.getMessage() for rec in caplog.records if "route=/predict" in rec.getMessage()]
    [span] = [s for s in receiver.spans if s.kind == SERVER and s.name == "POST /predict"]
    assert f"id={r.headers['x-request-id']} " in line
    assert f"trace_id={span.trace_id} span_id={span.span_id}" in line


# -- `llmship gateway` with LLMSHIP_LOG_FORMAT=json ------------------------------------


def test_the_gateway_logs_one_json_object_a_line(tmp_path: Path) -> None:
    # Given a release whose (fake) model server is announced in the registry
    release = bundled_spec()
    home = tmp_path / ".llmship"
    port = free_port()
    env = {
        **os.environ,
        "LLMSHIP_HOME": str(home),
        "LLMSHIP_ENDPOINT_MAX_AGE": "3600",
        "LLMSHIP_LOG_FORMAT": "json",
    }
    for name in ("LLMSHIP_CONFIG", "LLMSHIP_TRACING", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        env.pop(name, None)
    with (
        FakeModelServers() as fakes,
        Registry.open(f"sqlite:///{home / 'registry.db'}", home=home) as registry,
        (tmp_path / "stderr.log").open("wb") as stderr,
    ):
        fakes.servers["v1"] = FakeServer(release.ref)
        registry.register(release, actor="test")
        registry.set_alias("dev", "production", release.ref, actor="test", reason="first")
        registry.register_endpoint("dev", release.ref, fakes.url("v1"), pid=os.getpid())
        # When the gateway runs with LLMSHIP_LOG_FORMAT=json and answers two requests
        gateway = subprocess.Popen(
            [sys.executable, "-m", "llmship", "gateway", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                assert gateway.poll() is None, (tmp_path / "stderr.log").read_text()
                assert time.monotonic() < deadline, "the gateway did not become ready"
                try:
                    if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
            chat = {"messages": [{"role": "user", "content": "hi"}]}
            first = httpx.post(
                f"{url}/v1/chat/completions", json=chat, headers={"X-Request-ID": "my-request-1"}
            )
            second = httpx.post(f"{url}/predict", json={"prompt": "hi"})
            assert first.status_code == second.status_code == 200
        finally:
            gateway.send_signal(2)  # SIGINT, as Ctrl-C
            gateway.wait(timeout=15)
    # Then every line it logged is one JSON object with time, level, logger and message
    lines = [json.loads(text) for text in (tmp_path / "stderr.log").read_text().splitlines()]
    assert lines, "the gateway logged nothing"
    for line in lines:
        assert RFC3339_UTC.match(line["timestamp"]), line
        assert {"level", "logger", "message"} <= set(line), line
    assert any(line["logger"].startswith("uvicorn") for line in lines)  # uvicorn's own lines too
    # and each request has exactly one access line (uvicorn's own access log is off)
    access = [line for line in lines if "access" in line["logger"]]
    assert [line["logger"] for line in access] == ["llmship.gateway.access"] * 2
    chat_line, predict_line = access
    assert chat_line["request_id"] == first.headers["x-llmship-query-id"]  # the gateway's
    assert chat_line["client_request_id"] == "my-request-1" == first.headers["x-request-id"]
    assert predict_line["request_id"] == second.headers["x-request-id"]
    assert chat_line["message"] == "POST /v1/chat/completions 200"
    assert {k: chat_line[k] for k in ("method", "path", "status", "version", "variant")} == {
        "method": "POST",
        "path": "/v1/chat/completions",
        "status": 200,
        "version": release.ref,
        "variant": "stable",
    }
    assert isinstance(chat_line["duration_ms"], float) and chat_line["duration_ms"] > 0
    assert "trace_id" not in chat_line  # tracing is off
