"""The gateway's application as a whole: its OpenAPI document, what it imports, the
FastAPI routes behind the hot path, and the same flows over a real SQLite registry."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from _gateway import (
    ADMIN,
    CANARY,
    CHAT,
    PREVIEW,
    SLUGS,
    STABLE,
    TOKEN,
    Rig,
    answer,
    make_rig,
    text_of,
)
from fakes_gateway import FakeModelServers, FakeServer
from llmship.gateway import create_app
from llmship.settings import Settings


def test_docs_and_openapi(rig: Rig) -> None:
    assert rig.client.get("/docs").status_code == 200
    schema = rig.client.get("/openapi.json").json()
    assert "ChatCompletionRequest" in schema["components"]["schemas"]
    body = schema["paths"]["/v1/chat/completions"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("ChatCompletionRequest")
    assert "/api/v1/traffic" in schema["paths"]
    assert "/health" in schema["paths"] and "/healthz" in schema["paths"]


def test_the_gateway_does_not_load_the_model_server_app() -> None:
    """The gateway shares its error handlers with the model server (llmship.http); it
    imports the model server's wire models, never its app, backends or scheduler."""
    check = (
        "import sys, llmship.gateway\n"
        "app = {'llmship.server.app', 'llmship.server.serving'} & set(sys.modules)\n"
        "assert not app, app\n"
    )
    subprocess.run([sys.executable, "-c", check], check=True, timeout=60)


# -- against the real registry -----------------------------------------------------------


def test_the_gateway_over_a_real_registry(fakes: FakeModelServers, tmp_path: Path) -> None:
    """The same flows over a SQLite ``Registry``: routing, records, feedback, flags, admin."""
    from llmship.registry import Registry
    from llmship.release.spec import parse_spec

    fakes.servers = {SLUGS[ref]: FakeServer(ref, words=[answer(ref)]) for ref in SLUGS}
    registry = Registry.open(f"sqlite:///{tmp_path / 'registry.db'}", home=tmp_path)
    try:
        for ref in (STABLE, CANARY, PREVIEW):
            name, _, version = ref.partition("@")
            spec = {"name": name, "version": version, "backend": "openai"}
            spec["model"] = {"base_url": "http://unused.invalid/v1", "id": "m"}  # type: ignore[assignment]
            registry.register(parse_spec(spec), actor="test")
            registry.register_endpoint("dev", ref, fakes.url(SLUGS[ref]), pid=None)
        registry.set_alias("dev", "production", STABLE, actor="test", reason="first")
        settings = Settings(
            home=tmp_path, env="dev", admin_token=TOKEN, policy_refresh_interval=0.05
        )
        with TestClient(create_app(registry, settings)) as client:
            update = {
                "canary": {"release": CANARY, "weight": 100},
                "preview": PREVIEW,
                "reason": "t",
            }
            assert client.put("/api/v1/traffic", json=update, headers=ADMIN).status_code == 200
            r = client.post("/v1/chat/completions", json=CHAT, headers={"X-User-Id": "ann"})
            assert r.headers["x-llmship-version"] == CANARY
            query_id = r.headers["x-request-id"]
            fb = client.post("/feedback", json={"query_id": query_id, "rating": 5})
            assert fb.json()["version"] == CANARY
            fb = client.post("/feedback", json={"query_id": query_id, "rating": 3})
            assert fb.status_code == 200
            [summary] = registry.feedback_summary("dev", CANARY)
            assert (summary.ratings, summary.mean_rating) == (1, 3.0)
            assert registry.get_query(query_id).user_key == "ann"
            assert (
                client.post("/feedback", json={"query_id": "nope", "rating": 1}).status_code == 404
            )
            r = client.post("/api/v1/toggle/new-model", headers=ADMIN)
            assert r.json() == {"status": True, "name": "new-model"}
            assert client.get("/flags/new_model").json() == {"name": "new-model", "on": True}
            r = client.post("/api/v1/traffic/promote-preview", json={"reason": "go"}, headers=ADMIN)
            assert r.json()["stable"] == PREVIEW
            assert registry.get_alias("dev", "production").ref == PREVIEW  # type: ignore[union-attr]
            client.delete("/api/v1/traffic", params={"reason": "done"}, headers=ADMIN)
            r = client.post("/v1/chat/completions", json=CHAT)
            assert r.headers["x-llmship-version"] == PREVIEW
            # a change made elsewhere (another gateway, the CLI) is picked up within a second
            registry.set_traffic(
                "dev",
                replace(registry.get_traffic("dev"), canary=CANARY, canary_weight=100.0),
                actor="cli",
                reason="elsewhere",
            )
            deadline = time.monotonic() + 1.0
            while (
                client.post("/v1/chat/completions", json=CHAT).headers["x-llmship-version"]
                != CANARY
            ):
                assert time.monotonic() < deadline, "the change was not picked up within 1 s"
                time.sleep(0.02)
    finally:
        registry.close()


def test_the_fastapi_routes_answer_like_the_hot_path(
    fakes: FakeModelServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The middleware answers routed POSTs itself; the FastAPI handlers behind it (used
    for the OpenAPI document) give the same answers."""
    import llmship.gateway.middleware

    monkeypatch.setattr(llmship.gateway.middleware, "PROXIED", {})
    with make_rig(fakes) as rig:
        r = rig.chat({**CHAT, "stream": True})
        assert (r.status_code, text_of(r)) == (200, answer(STABLE))
        assert rig.client.post("/predict", json={"prompt": "x"}).json()["response"] == answer(
            STABLE
        )
        assert rig.client.post("/v1/completions", content=b"[").status_code == 400
        rig.flush()
        assert {q.route for q in rig.store.queries.values()} == {"/v1/chat/completions", "/predict"}
