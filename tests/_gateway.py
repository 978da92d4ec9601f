"""The gateway in process for tests: a fake store and fake model servers behind a real
socket (``fakes_gateway``), and a client for the app (``Rig``)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from fakes_gateway import FakeModelServers, FakeServer, FakeStore
from llmship.gateway import Gateway, create_app
from llmship.routing import Experiment, Variant
from llmship.settings import Settings

STABLE, CANARY, PREVIEW, SHADOW, OTHER = (
    "chat@1.0.0",
    "chat@1.1.0",
    "chat@2.0.0",
    "chat@3.0.0",
    "other@1.0.0",
)
SLUGS = {STABLE: "stable", CANARY: "canary", PREVIEW: "preview", SHADOW: "shadow", OTHER: "other"}
TOKEN = "s3cret-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
CHAT = {"messages": [{"role": "user", "content": "hi"}]}
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Rig:
    """A gateway over a fake store and fake model servers."""

    client: TestClient
    store: FakeStore
    servers: dict[str, FakeServer]
    gateway: Gateway
    fakes: FakeModelServers

    def set_mode(self, ref: str, mode: str) -> None:
        """``refuse`` points the endpoint at a port nothing listens on; any other mode
        is the fake server's."""
        if mode != "refuse":
            self.servers[ref].mode = mode
            return
        self.store.remove_endpoint("dev", ref, self.fakes.url(SLUGS[ref]))
        self.store.register_endpoint("dev", ref, self.fakes.dead_url, pid=None)
        assert self.gateway.state.refresh()

    def set_policy(self, **changes: Any) -> None:
        """Change the stored policy and let the gateway read it at once."""
        policy = self.store.policy
        self.store.policy = replace(policy, revision=policy.revision + 1, **changes)
        assert self.gateway.state.refresh()

    def metric(self, name: str, **labels: str) -> float | None:
        return self.gateway.metrics.registry.get_sample_value(name, labels)

    def flush(self) -> None:
        assert self.client.portal is not None
        self.client.portal.call(self.gateway.recorder.flush)

    def chat(self, body: dict[str, Any] | None = None, **headers: str) -> httpx.Response:
        return self.client.post("/v1/chat/completions", json=body or CHAT, headers=headers)


def answer(ref: str) -> str:
    return f"answer from {ref}"


@contextmanager
def make_rig(
    fakes: FakeModelServers,
    seed: int = 0,
    *,
    endpoints: tuple[str, ...] | None = None,
    **cfg: Any,
) -> Iterator[Rig]:
    servers = {ref: FakeServer(ref, words=["answer", " from", f" {ref}"]) for ref in SLUGS}
    fakes.servers = {SLUGS[ref]: server for ref, server in servers.items()}
    store = FakeStore(list(SLUGS), production=STABLE)
    for ref in endpoints if endpoints is not None else tuple(SLUGS):
        store.register_endpoint("dev", ref, fakes.url(SLUGS[ref]), pid=None)
    settings = Settings(
        home=Path("/nonexistent"),
        env="dev",
        admin_token=TOKEN,
        policy_refresh_interval=3600,
        **{"upstream_timeout": 0.25, **cfg},
    )
    app = create_app(store, settings, rng=random.Random(seed))
    app.state.gateway.feedback_retry = 0.01
    with TestClient(app) as client:
        yield Rig(client, store, servers, app.state.gateway, fakes)


def events(text: str) -> list[str]:
    return [line[6:] for line in text.splitlines() if line.startswith("data: ")]


def text_of(r: httpx.Response) -> str:
    """The answer's text, streamed or not."""
    if not r.headers["content-type"].startswith("text/event-stream"):
        return str(r.json()["choices"][0]["message"]["content"])
    chunks = [json.loads(e) for e in events(r.text) if e != "[DONE]"]
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)


def experiment(weights: tuple[float, float] = (50, 50)) -> Experiment:
    return Experiment("exp", (Variant("a", STABLE, weights[0]), Variant("b", CANARY, weights[1])))
