"""Bad input to the gateway: OpenAI-shaped 4xx errors, the request fields it reads,
and clear 503s when nothing can route."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from _gateway import (
    CHAT,
    STABLE,
    Rig,
    make_rig,
)
from fakes_gateway import FakeModelServers, FakeStore
from llmship.gateway import create_app
from llmship.settings import Settings

# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/v1/chat/completions", "/v1/completions", "/predict", "/feedback"]
)
@pytest.mark.parametrize(
    ("raw", "wanted"),
    [(b"{not json", "not valid JSON"), (b"[1, 2]", "JSON list"), (b"\xff\xfe", "not valid JSON")],
)
def test_a_body_that_is_not_a_json_object_is_400(
    rig: Rig, path: str, raw: bytes, wanted: str
) -> None:
    r = rig.client.post(path, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and wanted in error["message"]
    assert rig.servers[STABLE].requests == []


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({**CHAT, "stream": "yes"}, 400, "stream"),
        ({**CHAT, "user": 42}, 400, "user"),
        ({**CHAT, "model": "gpt-4"}, 404, "model"),
        ({**CHAT, "model": 7}, 400, "model"),  # not a string: the wire model refuses it
    ],
)
def test_fields_the_gateway_reads_are_checked(
    rig: Rig, body: dict[str, Any], status: int, param: str
) -> None:
    r = rig.chat(body)
    assert r.status_code == status
    assert r.json()["error"]["param"] == param


def test_known_model_names_are_accepted(rig: Rig) -> None:
    assert rig.chat({**CHAT, "model": "chat"}).status_code == 200
    assert rig.chat({**CHAT, "model": STABLE}).status_code == 200
    assert rig.chat({**CHAT, "model": ""}).status_code == 200


def test_wrong_methods_and_paths_are_openai_shaped(rig: Rig) -> None:
    r = rig.client.get("/v1/chat/completions")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    r = rig.client.get("/nowhere")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_nothing_routes_before_a_policy_is_read() -> None:
    store = FakeStore([STABLE], production=STABLE)
    store.down = True
    settings = Settings(home=Path("/nonexistent"), policy_refresh_interval=3600)
    with TestClient(create_app(store, settings)) as client:
        r = client.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 503 and r.json()["error"]["code"] == "no_policy"
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200
        health = client.get("/health")  # as vLLM answers it: tools made for vLLM probe it
        assert health.status_code == 200 and health.content == b""


def test_no_production_release_is_a_clear_503(fakes: FakeModelServers) -> None:
    with make_rig(fakes) as rig:
        rig.store.production = None
        rig.gateway.state.refresh()
        r = rig.chat()
        assert r.status_code == 503
        assert "alias set production" in r.json()["error"]["message"]
