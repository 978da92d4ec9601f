"""llmship.tracing without a collector: off by default and free of side effects; bad
settings are refused. (Spans across real processes: tests/test_tracing_process.py.)"""

from __future__ import annotations

import pytest

from llmship import tracing
from llmship.errors import NotConfiguredError, SpecError
from llmship.settings import load_settings


def test_tracing_is_off_by_default_and_every_helper_is_a_no_op(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LLMSHIP_TRACING", raising=False)
    cfg = load_settings()
    assert cfg.tracing is None
    tracing.setup(cfg.tracing, "llmship-test", environ={})
    assert not tracing.enabled()
    headers: dict[str, str] = {}
    with tracing.server_span({"type": "http", "method": "GET", "path": "/"}, "GET /") as span:
        assert span is None
    assert tracing.start_client_span("chat x", headers, {}) is None
    assert headers == {}  # no traceparent without tracing
    assert tracing.start_span("model_inference") is None
    tracing.end_status(None, 500)


def test_an_unknown_exporter_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(NotConfiguredError, match="'jaeger' is not one of none, console, otlp"):
        tracing.setup("jaeger", "llmship-test")
    assert not tracing.enabled()
    monkeypatch.setenv("LLMSHIP_TRACING", "jaeger")
    with pytest.raises(SpecError, match=r"LLMSHIP_TRACING='jaeger': Input should be"):
        load_settings()
