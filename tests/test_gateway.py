"""The gateway in process: a fake store, fake model servers behind httpx.MockTransport."""

from __future__ import annotations

import json
import logging
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.metrics import MetricWrapperBase

from fakes_gateway import FakeModelServers, FakeServer, FakeStore, SeenRequest
from llmship.flags import Flag
from llmship.gateway import Gateway, create_app
from llmship.gateway.metrics import GatewayMetrics
from llmship.gateway.serving import whole_events
from llmship.gateway.state import Snapshot
from llmship.registry.records import NO_REASON
from llmship.routing import Experiment, Variant, bucket
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


@pytest.fixture(scope="module")
def fakes() -> Iterator[FakeModelServers]:
    with FakeModelServers(hang=2.0) as servers:
        yield servers


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


@pytest.fixture
def rig(fakes: FakeModelServers) -> Iterator[Rig]:
    with make_rig(fakes) as r:
        yield r


def events(text: str) -> list[str]:
    return [line[6:] for line in text.splitlines() if line.startswith("data: ")]


def text_of(r: httpx.Response) -> str:
    """The answer's text, streamed or not."""
    if not r.headers["content-type"].startswith("text/event-stream"):
        return str(r.json()["choices"][0]["message"]["content"])
    chunks = [json.loads(e) for e in events(r.text) if e != "[DONE]"]
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)


# -- forwarding ------------------------------------------------------------------------


def test_stable_answers_with_the_gateway_headers(rig: Rig) -> None:
    r = rig.chat()
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == answer(STABLE)
    assert r.headers["x-llmship-version"] == STABLE
    assert r.headers["x-llmship-variant"] == "stable"
    assert float(r.headers["x-llmship-overhead-ms"]) >= 0
    query_id = r.headers["x-request-id"]
    assert len(query_id) == 32
    sent = rig.servers[STABLE].requests[-1]
    assert sent.headers["x-request-id"] == query_id  # the model server uses the same id
    assert sent.path == "/v1/chat/completions"


def test_the_body_is_forwarded_byte_for_byte(rig: Rig) -> None:
    raw = b'{ "messages" : [{"role":"user","content":"h\\u00e9"}],  "extra": [1, 2] }'
    r = rig.client.post(
        "/v1/chat/completions", content=raw, headers={"content-type": "application/json"}
    )
    assert r.status_code == 200
    assert rig.servers[STABLE].requests[-1].content == raw


def test_a_sane_client_request_id_is_kept(rig: Rig) -> None:
    r = rig.chat(**{"X-Request-ID": "client-id-12345"})
    assert r.headers["x-request-id"] == "client-id-12345"
    too_long = "x" * 100
    r = rig.chat(**{"X-Request-ID": too_long})
    assert r.headers["x-request-id"] != too_long


def test_predict_and_completions_are_routed(rig: Rig) -> None:
    r = rig.client.post("/predict", json={"prompt": "hi", "max_new_tokens": 5})
    assert r.status_code == 200
    body = r.json()
    assert body["response"] == answer(STABLE)
    assert body["query_id"] == r.headers["x-request-id"]
    r = rig.client.post("/v1/completions", json={"prompt": "hi"})
    assert r.json()["choices"][0]["text"] == answer(STABLE)


def test_streams_pass_through_event_by_event(rig: Rig) -> None:
    r = rig.chat({**CHAT, "stream": True})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    data = events(r.text)
    assert data[-1] == "[DONE]"
    text = "".join(json.loads(e)["choices"][0]["delta"]["content"] for e in data[:-1])
    assert text == answer(STABLE)
    assert (
        rig.metric(
            "llm_time_to_first_token_seconds_count",
            route="/v1/chat/completions",
            version=STABLE,
            variant="stable",
        )
        == 1
    )
    assert rig.metric("tokens_per_second_count", version=STABLE, variant="stable") == 1


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "llmship.gateway.access"]


def test_a_completed_stream_is_not_logged_as_a_disconnect(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="llmship.gateway.access")
    r = rig.chat({**CHAT, "stream": True})
    assert events(r.text)[-1] == "[DONE]"
    (line,) = access_lines(caplog)
    assert "status=200" in line
    assert "client_disconnected" not in line


def test_a_client_leaving_mid_stream_is_logged_as_a_disconnect(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="llmship.gateway.access")
    rig.servers[STABLE].words = [f" word{n}" for n in range(50)]
    received: list[bytes] = []

    async def leave_after_the_first_event() -> None:
        # Given a client that reads one event of a streamed answer, then goes away
        first = anyio.Event()
        body = json.dumps({**CHAT, "stream": True}).encode()
        asked = False

        async def receive() -> dict[str, Any]:
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": body, "more_body": False}
            await first.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                received.append(message["body"])
                first.set()
                await anyio.sleep(5)  # the client reads no more; the gateway must notice

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/chat/completions",
            "raw_path": b"/v1/chat/completions",
            "query_string": b"",
            "headers": [(b"content-type", b"application/json")],
            "client": ("127.0.0.1", 1234),
            "server": ("testserver", 80),
        }
        with anyio.fail_after(3):
            await rig.client.app(scope, receive, send)

    assert rig.client.portal is not None
    rig.client.portal.call(leave_after_the_first_event)
    # Then the stream stopped early and the access log says the client left
    assert len(received) == 1 and b"[DONE]" not in received[0]
    (line,) = access_lines(caplog)
    assert "client_disconnected=true" in line


def test_whole_events_keeps_an_unfinished_event_back() -> None:
    assert whole_events(b"", b"data: 1\n\n") == (b"data: 1\n\n", b"")
    assert whole_events(b"", b"data: 1\n\ndata: 2") == (b"data: 1\n\n", b"data: 2")
    assert whole_events(b"data: 2", b"2\n\n") == (b"data: 22\n\n", b"")
    assert whole_events(b"", b"data: par") == (b"", b"data: par")


def test_models_lists_the_policys_releases_by_name(rig: Rig) -> None:
    rig.set_policy(canary=CANARY, canary_weight=10, shadow=OTHER, shadow_percent=5)
    data = rig.client.get("/v1/models").json()["data"]
    assert [(m["id"], m["version"], m["versions"]) for m in data] == [
        ("chat", STABLE, [STABLE, CANARY]),
        ("other", OTHER, [OTHER]),
    ]


# -- routing -----------------------------------------------------------------------------


def test_canary_weight_is_exact_under_an_injected_rng(fakes: FakeModelServers) -> None:
    with make_rig(fakes, seed=7) as rig:
        rig.set_policy(canary=CANARY, canary_weight=20)
        versions = Counter(rig.chat().headers["x-llmship-version"] for _ in range(400))
    replay = random.Random(7)
    expected = sum(replay.random() * 100 < 20 for _ in range(400))
    assert versions[CANARY] == expected
    assert versions[STABLE] == 400 - expected
    assert 0.15 < expected / 400 < 0.25


def test_preview_answers_only_requests_that_ask_for_it(rig: Rig) -> None:
    rig.set_policy(preview=PREVIEW)
    assert rig.chat().headers["x-llmship-version"] == STABLE
    r = rig.chat(**{"X-Llmship-Variant": "preview"})
    assert (r.headers["x-llmship-version"], r.headers["x-llmship-variant"]) == (PREVIEW, "preview")
    assert {rig.chat().headers["x-llmship-version"] for _ in range(20)} == {STABLE}


def test_a_request_uses_one_policy_from_start_to_end(rig: Rig) -> None:
    """The policy changes while a canary request is in flight (and fails): the retry
    goes to the stable release of the policy the request started with."""
    rig.set_policy(canary=CANARY, canary_weight=100)
    rig.servers[CANARY].mode = "500"

    def promote_meanwhile(_: SeenRequest) -> None:
        rig.store.production = OTHER
        rig.store.policy = replace(rig.store.policy, canary=None, canary_weight=0.0)
        rig.gateway.state.refresh()

    rig.servers[CANARY].on_request = promote_meanwhile
    r = rig.chat()
    assert r.headers["x-llmship-version"] == STABLE
    assert rig.chat().headers["x-llmship-version"] == OTHER  # the next request: new policy


def experiment(weights: tuple[float, float] = (50, 50)) -> Experiment:
    return Experiment("exp", (Variant("a", STABLE, weights[0]), Variant("b", CANARY, weights[1])))


def test_ab_assignment_is_sticky_and_matches_the_hash(rig: Rig) -> None:
    rig.set_policy(experiment=experiment())
    seen = set()
    for n in range(40):
        user = f"user-{n}"
        first = rig.chat(**{"X-User-Id": user}).headers["x-llmship-variant"]
        again = rig.chat({**CHAT, "user": user}).headers["x-llmship-variant"]  # OpenAI `user`
        assert first == again
        assert first == ("a" if bucket(user, "exp") < 5000 else "b")
        seen.add(first)
    assert seen == {"a", "b"}
    assert rig.metric("llmship_unkeyed_requests_total", experiment="exp") in (None, 0.0)


def test_raising_a_variants_share_keeps_its_users(rig: Rig) -> None:
    rig.set_policy(experiment=experiment((80, 20)))
    users = [f"u{n}" for n in range(60)]
    before = {u for u in users if rig.chat(**{"X-User-Id": u}).headers["x-llmship-variant"] == "b"}
    rig.set_policy(experiment=experiment((50, 50)))
    after = {u for u in users if rig.chat(**{"X-User-Id": u}).headers["x-llmship-variant"] == "b"}
    assert before and before <= after and len(after) > len(before)


def test_unkeyed_experiment_requests_are_counted_apart(rig: Rig) -> None:
    rig.set_policy(experiment=experiment())
    for _ in range(7):
        assert rig.chat().status_code == 200
    rig.chat(**{"X-User-Id": "someone"})
    assert rig.metric("llmship_unkeyed_requests_total", experiment="exp") == 7


def test_a_routing_flag_sends_its_users_to_its_release(rig: Rig) -> None:
    rig.store.flags["beta"] = Flag(
        "beta", enabled=True, percent=100, conditions={"plan": "pro"}, release=OTHER
    )
    rig.gateway.state.refresh()
    r = rig.chat(**{"X-User-Id": "u1", "X-Llmship-Attr-plan": "pro"})
    assert (r.headers["x-llmship-version"], r.headers["x-llmship-variant"]) == (OTHER, "flag-beta")
    # the client named `chat`; the other release is named `other`: the body says so
    assert json.loads(rig.servers[OTHER].requests[-1].content).get("model") is None
    r = rig.chat({**CHAT, "model": "chat"}, **{"X-Llmship-Attr-plan": "pro"})
    assert json.loads(rig.servers[OTHER].requests[-1].content)["model"] == "other"
    r = rig.chat({**CHAT, "model": "other"}, **{"X-Llmship-Attr-plan": "pro"})
    assert r.headers["x-llmship-version"] == OTHER  # a flag's release is a valid `model`
    assert rig.chat(**{"X-Llmship-Attr-plan": "free"}).headers["x-llmship-version"] == STABLE
    assert rig.chat().headers["x-llmship-version"] == STABLE


# -- failures ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("500", "http_500"),
        ("503", "http_503"),
        ("429", "http_429"),
        ("refuse", "connect"),
        ("timeout", "timeout"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_a_failing_candidate_costs_clients_nothing(
    fakes: FakeModelServers, mode: str, reason: str, stream: bool
) -> None:
    with make_rig(fakes) as rig:
        rig.set_policy(canary=CANARY, canary_weight=100)
        rig.set_mode(CANARY, mode)
        for _ in range(3):
            r = rig.chat({**CHAT, "stream": stream})
            assert r.status_code == 200
            assert r.headers["x-llmship-version"] == STABLE
            assert r.headers["x-llmship-variant"] == "stable"
            assert text_of(r) == answer(STABLE)
        labels = {"version": CANARY, "variant": "canary", "reason": reason}
        assert rig.metric("llmship_upstream_failures_total", **labels) == 3
        rig.flush()
        assert {(q.ref, q.variant, q.status) for q in rig.store.queries.values()} == {
            (STABLE, "stable", 200)
        }


def test_a_candidate_without_a_live_server_falls_back_to_stable(fakes: FakeModelServers) -> None:
    # switch_wait=0: the gateway takes the policy at once (by default it waits for the
    # candidate's server, see test_gateway_state.py), and falls back for each request
    with make_rig(fakes, endpoints=(STABLE,), switch_wait=0) as rig:
        rig.set_policy(canary=CANARY, canary_weight=100)
        assert rig.chat().headers["x-llmship-version"] == STABLE
        labels = {"version": CANARY, "variant": "canary", "reason": "no_endpoint"}
        assert rig.metric("llmship_upstream_failures_total", **labels) == 1


def test_a_candidates_client_error_is_passed_through(rig: Rig) -> None:
    rig.set_policy(canary=CANARY, canary_weight=100)
    rig.servers[CANARY].mode = "400"
    r = rig.chat()
    assert r.status_code == 400
    assert r.headers["x-llmship-version"] == CANARY
    assert rig.servers[STABLE].requests == []


@pytest.mark.parametrize(
    ("mode", "status", "code"),
    [("refuse", 502, "upstream_error"), ("timeout", 504, "upstream_timeout"), ("500", 500, None)],
)
def test_stable_failures_are_openai_shaped(rig: Rig, mode: str, status: int, code: str) -> None:
    rig.set_mode(STABLE, mode)
    r = rig.chat()
    assert r.status_code == status
    error = r.json()["error"]
    assert error["message"]
    if code:
        assert error["code"] == code
    assert r.headers["x-llmship-version"] == STABLE


def test_no_live_stable_server_is_a_clear_503(fakes: FakeModelServers) -> None:
    with make_rig(fakes, endpoints=()) as rig:
        r = rig.chat()
        assert r.status_code == 503
        error = r.json()["error"]
        assert error["code"] == "no_endpoint"
        assert "llmship serve --release chat@1.0.0 --env dev" in error["message"]
        ready = rig.client.get("/readyz")
        assert ready.status_code == 503
        assert "no live model server" in ready.json()["detail"]


def test_a_stale_endpoint_is_not_used(fakes: FakeModelServers) -> None:
    with make_rig(fakes, endpoint_max_age=5) as rig:
        rig.store.age_endpoint(STABLE, 60)
        rig.gateway.state.refresh()
        assert rig.chat().status_code == 503


def test_a_server_dying_mid_stream_ends_the_stream_with_an_error(rig: Rig) -> None:
    rig.servers[STABLE].mode = "die"
    r = rig.chat({**CHAT, "stream": True})
    assert r.status_code == 200
    data = events(r.text)
    assert data[-1] == "[DONE]"
    error = json.loads(data[-2])["error"]
    assert error["code"] == "upstream_error"
    assert "mid-stream" in error["message"]
    assert json.loads(data[0])["choices"][0]["delta"]["content"] == "answer"
    labels = {"version": STABLE, "variant": "stable", "reason": "mid_stream"}
    assert rig.metric("llmship_upstream_failures_total", **labels) == 1


# -- shadow ---------------------------------------------------------------------------------


def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.005)


@pytest.mark.parametrize("stream", [False, True])
def test_shadow_gets_a_copy_and_is_compared(rig: Rig, stream: bool) -> None:
    rig.servers[SHADOW].words = list(rig.servers[STABLE].words)  # the same answer
    rig.set_policy(shadow=SHADOW, shadow_percent=100)
    r = rig.chat({**CHAT, "stream": stream, "stream_options": {"include_usage": True}})
    assert r.status_code == 200 and r.headers["x-llmship-version"] == STABLE
    wait_for(lambda: rig.metric("llmship_shadow_similarity_count", version=SHADOW) == 1)
    assert rig.metric("llmship_shadow_similarity_sum", version=SHADOW) == 1.0
    assert rig.metric("llmship_shadow_requests_total", version=SHADOW, outcome="ok") == 1
    sent = json.loads(rig.servers[SHADOW].requests[-1].content)
    assert sent["stream"] is False
    assert ("stream_options" in sent) is not stream  # dropped only where it was rewritten
    rig.flush()
    shadow_rows = [q for q in rig.store.queries.values() if q.variant == "shadow"]
    assert [(q.ref, q.status) for q in shadow_rows] == [(SHADOW, 200)]
    assert shadow_rows[0].query_id != r.headers["x-request-id"]


@pytest.mark.parametrize("mode", ["500", "refuse", "timeout"])
def test_a_failing_shadow_never_touches_the_client(rig: Rig, mode: str) -> None:
    rig.set_mode(SHADOW, mode)
    rig.set_policy(shadow=SHADOW, shadow_percent=100)
    for _ in range(3):
        r = rig.chat()
        assert r.status_code == 200
        assert r.json()["choices"][0]["message"]["content"] == answer(STABLE)
    wait_for(
        lambda: rig.metric("llmship_shadow_requests_total", version=SHADOW, outcome="error") == 3
    )
    assert rig.metric("llmship_shadow_similarity_count", version=SHADOW) in (None, 0.0)


def test_a_slow_shadow_does_not_delay_the_client(rig: Rig) -> None:
    gate = threading.Event()
    rig.servers[SHADOW].gate = gate
    rig.set_policy(shadow=SHADOW, shadow_percent=100)
    started = time.monotonic()
    r = rig.chat()
    assert r.status_code == 200 and time.monotonic() - started < 1.0
    assert rig.metric("llmship_shadow_requests_total", version=SHADOW, outcome="ok") is None
    gate.set()
    wait_for(lambda: rig.metric("llmship_shadow_similarity_count", version=SHADOW) == 1)
    score = rig.metric("llmship_shadow_similarity_sum", version=SHADOW)
    assert score is not None and 0 < score < 1  # "answer from" matches, the refs differ


def test_shadow_requests_beyond_the_limit_are_dropped(fakes: FakeModelServers) -> None:
    with make_rig(fakes, shadow_max_in_flight=0) as rig:
        rig.set_policy(shadow=SHADOW, shadow_percent=100)
        assert rig.chat().status_code == 200
        assert rig.metric("llmship_shadow_requests_total", version=SHADOW, outcome="dropped") == 1
        assert rig.servers[SHADOW].requests == []


# -- registry outages ------------------------------------------------------------------------


def test_routing_goes_on_while_the_registry_is_down(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.set_policy(canary=CANARY, canary_weight=100)
    rig.store.down = True
    with caplog.at_level(logging.WARNING, logger="llmship.gateway.state"):
        for _ in range(3):
            assert not rig.gateway.state.refresh()
    warnings = [r for r in caplog.records if "cannot read the registry" in r.getMessage()]
    assert len(warnings) == 1, "one warning per outage"
    assert rig.metric("llmship_registry_up") == 0
    assert rig.chat().headers["x-llmship-version"] == CANARY
    assert rig.client.get("/readyz").status_code == 200
    rig.store.down = False
    assert rig.gateway.state.refresh()
    assert rig.metric("llmship_registry_up") == 1


def test_requests_never_touch_the_store(rig: Rig) -> None:
    before = dict(rig.store.calls)
    for _ in range(20):
        rig.chat()
    assert rig.store.calls == before


def test_queries_are_recorded_with_the_release_that_answered(rig: Rig) -> None:
    rig.set_policy(experiment=experiment())
    r = rig.chat(**{"X-User-Id": "alice"})
    rig.chat({"messages": "not checked by the gateway"}, **{"X-User-Id": "bob"})
    rig.flush()
    row = rig.store.queries[r.headers["x-request-id"]]
    assert (row.env, row.ref, row.variant, row.route, row.status, row.user_key) == (
        "dev",
        r.headers["x-llmship-version"],
        r.headers["x-llmship-variant"],
        "/v1/chat/completions",
        200,
        "alice",
    )
    assert len(rig.store.queries) == 2


def test_records_wait_while_the_registry_is_down(rig: Rig) -> None:
    r = rig.chat()
    rig.store.down = True
    assert rig.client.portal is not None
    rig.client.portal.call(rig.gateway.recorder.flush_quietly)
    assert rig.gateway.recorder.pending(r.headers["x-request-id"]) is not None
    rig.store.down = False
    rig.flush()
    assert r.headers["x-request-id"] in rig.store.queries


# -- feedback ---------------------------------------------------------------------------------


def test_feedback_lands_on_the_release_that_answered(rig: Rig) -> None:
    rig.set_policy(canary=CANARY, canary_weight=100)
    query_id = rig.chat().headers["x-request-id"]  # still pending in the batch
    r = rig.client.post("/feedback", json={"query_id": query_id, "rating": 4, "comment": "ok"})
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "query_id": query_id, "version": CANARY}
    r = rig.client.post("/feedback", json={"query_id": query_id, "rating": 2})
    assert r.status_code == 200
    r = rig.client.post("/feedback", json={"query_id": query_id, "thumbs": "up"})
    assert r.status_code == 200
    assert rig.store.feedback[(query_id, "rating")].value == 2  # replaced, not added
    assert rig.store.feedback[(query_id, "thumbs")].value == 1
    assert len(rig.store.feedback) == 2


def test_feedback_on_an_unknown_query_is_404(rig: Rig) -> None:
    r = rig.client.post("/feedback", json={"query_id": "nope", "thumbs": "down"})
    assert r.status_code == 404
    assert r.json()["error"]["param"] == "query_id"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"query_id": "q", "rating": 6}, "rating"),
        ({"query_id": "q", "rating": 0}, "rating"),
        ({"query_id": "q", "rating": "5"}, "rating"),
        ({"query_id": "q", "rating": 4.5}, "rating"),
        ({"query_id": "q", "thumbs": "sideways"}, "thumbs"),
        ({"query_id": "q"}, None),
        ({"rating": 3}, "query_id"),
        ({"query_id": 5, "rating": 3}, "query_id"),
        ({"query_id": "q", "rating": 3, "comment": "x" * 2001}, "comment"),
        ({"query_id": "q", "rating": 3, "score": 3}, "score"),
    ],
)
def test_invalid_feedback_is_422(rig: Rig, body: dict[str, Any], param: str | None) -> None:
    r = rig.client.post("/feedback", json=body)
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_feedback_while_the_registry_is_down_is_503(rig: Rig) -> None:
    query_id = rig.chat().headers["x-request-id"]
    rig.flush()
    rig.store.down = True
    r = rig.client.post("/feedback", json={"query_id": query_id, "rating": 5})
    assert r.status_code == 503


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
        ({**CHAT, "model": 7}, 404, "model"),
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


# -- flags ----------------------------------------------------------------------------------------


def test_public_flag_evaluation(rig: Rig) -> None:
    rig.store.flags["new_model"] = Flag("new_model", enabled=True, percent=50)
    rig.store.flags["pro"] = Flag("pro", enabled=True, conditions={"plan": "pro"})
    rig.gateway.state.refresh()
    ons = {
        rig.client.get("/flags/new_model", headers={"X-User-Id": f"u{n}"}).json()["on"]
        for n in range(30)
    }
    assert ons == {True, False}
    user = {"X-User-Id": "u1"}
    first = rig.client.get("/flags/new_model", headers=user).json()
    assert rig.client.get("/flags/new-model", headers=user).json() == first  # either spelling
    assert rig.client.get("/flags/pro").json() == {"name": "pro", "on": False}
    pro = rig.client.get("/flags/pro", headers={"X-Llmship-Attr-plan": "pro"}).json()
    assert pro == {"name": "pro", "on": True}
    assert rig.client.get("/flags/unknown").status_code == 404


def test_the_seeds_toggle(rig: Rig) -> None:
    r = rig.client.post("/api/v1/toggle/new-model", headers=ADMIN)
    assert r.status_code == 200 and r.json() == {"status": True, "name": "new-model"}
    r = rig.client.get("/api/v1/toggle/new-model", headers=ADMIN)  # curl-style GET
    assert r.json() == {"status": False, "name": "new-model"}
    rig.store.flags.clear()
    rig.store.flags["new_model"] = Flag("new_model", enabled=False)
    r = rig.client.post("/api/v1/toggle/new-model", headers=ADMIN)
    assert r.json() == {"status": True, "name": "new_model"}  # flips the existing flag
    assert rig.client.get("/flags/new_model").json()["on"] is True  # picked up at once
    assert rig.client.post("/api/v1/toggle/Bad Name", headers=ADMIN).status_code == 400


def test_flags_admin_api(rig: Rig) -> None:
    body = {"enabled": True, "percent": 25, "conditions": {"plan": "pro"}, "release": OTHER}
    r = rig.client.put("/api/v1/flags/beta", json=body, headers=ADMIN)
    assert r.status_code == 200
    assert r.json() == {"name": "beta", **body, "percent": 25.0}
    listed = rig.client.get("/api/v1/flags", headers=ADMIN).json()["data"]
    assert [f["name"] for f in listed] == ["beta"]
    bad = [
        ({"percent": 150}, 400),
        ({"enabled": "maybe"}, 400),
        ({"name": "other"}, 400),
        ({"release": "nope@1.0.0"}, 404),
        ({"colour": "red"}, 400),
    ]
    for wrong, status in bad:
        r = rig.client.put("/api/v1/flags/beta", json=wrong, headers=ADMIN)
        assert r.status_code == status, (wrong, r.text)
        assert "error" in r.json()
    assert rig.client.delete("/api/v1/flags/beta", headers=ADMIN).json() == {
        "status": "deleted",
        "name": "beta",
    }
    assert rig.client.delete("/api/v1/flags/beta", headers=ADMIN).status_code == 404


# -- admin API -------------------------------------------------------------------------------------


ADMIN_CALLS = [
    ("GET", "/api/v1/traffic", None),
    ("PUT", "/api/v1/traffic", {"reason": "x"}),
    ("POST", "/api/v1/traffic/promote-preview", {"reason": "x"}),
    ("DELETE", "/api/v1/traffic?reason=x", None),
    ("GET", "/api/v1/flags", None),
    ("PUT", "/api/v1/flags/f", {}),
    ("DELETE", "/api/v1/flags/f", None),
    ("POST", "/api/v1/toggle/f", None),
    ("GET", "/api/v1/toggle/f", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
def test_admin_api_needs_the_token(
    rig: Rig, method: str, path: str, body: dict[str, Any] | None
) -> None:
    r = rig.client.request(method, path, json=body)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json()["error"]["type"] == "authentication_error"
    r = rig.client.request(method, path, json=body, headers={"Authorization": "Basic abc"})
    assert r.status_code == 401
    r = rig.client.request(method, path, json=body, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 403
    assert r.json()["error"]["type"] == "permission_error"
    assert rig.store.flags == {} and rig.store.policy.revision == 0  # nothing changed


def test_admin_api_is_off_without_a_token() -> None:
    store = FakeStore([STABLE], production=STABLE)
    settings = Settings(home=Path("/nonexistent"), admin_token=None)
    with TestClient(create_app(store, settings)) as client:
        r = client.get("/api/v1/traffic", headers=ADMIN)
        assert r.status_code == 503
        assert "LLMSHIP_ADMIN_TOKEN" in r.json()["error"]["message"]
        assert client.get("/healthz").status_code == 200  # public endpoints need none


def test_traffic_show_set_promote_and_reset(rig: Rig) -> None:
    r = rig.client.get("/api/v1/traffic", headers=ADMIN)
    assert r.status_code == 200
    view = r.json()
    assert (view["stable"], view["revision"], view["endpoints"]) == (
        STABLE,
        0,
        {STABLE: rig.fakes.url("stable")},
    )
    assert view["replicas"] == {STABLE: [rig.fakes.url("stable")]}
    update = {"canary": {"release": CANARY, "weight": 100}, "preview": PREVIEW, "reason": "try"}
    r = rig.client.put("/api/v1/traffic", json=update, headers=ADMIN)
    assert r.status_code == 200
    view = r.json()
    assert view["revision"] == 1 and view["canary"] == {"release": CANARY, "weight": 100.0}
    assert view["weights"] == {"stable": 0.0, "canary": 100.0}
    assert view["endpoints"][PREVIEW] == rig.fakes.url("preview")
    assert rig.chat().headers["x-llmship-version"] == CANARY  # the gateway follows at once
    assert rig.metric("llmship_traffic_weight", version=CANARY, variant="canary") == 100
    assert rig.metric("llmship_policy_revision") == 1
    r = rig.client.put("/api/v1/traffic", json={**update, "expected_revision": 0}, headers=ADMIN)
    assert r.status_code == 409
    r = rig.client.post("/api/v1/traffic/promote-preview", json={"reason": "go"}, headers=ADMIN)
    assert r.status_code == 200
    assert (r.json()["stable"], r.json()["preview"]) == (PREVIEW, None)
    r = rig.client.delete("/api/v1/traffic", params={"reason": "done"}, headers=ADMIN)
    assert r.json()["canary"] is None
    assert rig.chat().headers["x-llmship-version"] == PREVIEW


@pytest.mark.parametrize(
    ("update", "status"),
    [
        ({"canary": {"release": CANARY, "weight": 120}, "reason": "x"}, 400),
        ({"canary": {"release": CANARY, "weight": "lots"}, "reason": "x"}, 400),
        ({"canary": {"release": "nope@9.9.9", "weight": 5}, "reason": "x"}, 404),
        ({"canary": {"release": CANARY, "weight": 5}, "reason": "x", "stable": OTHER}, 400),
        (
            {
                "experiment": {
                    "name": "e",
                    "variants": [
                        {"name": "a", "release": STABLE, "weight": 60},
                        {"name": "b", "release": CANARY, "weight": 60},
                    ],
                },
                "reason": "x",
            },
            400,
        ),
    ],
)
def test_invalid_traffic_changes_are_refused(rig: Rig, update: dict[str, Any], status: int) -> None:
    r = rig.client.put("/api/v1/traffic", json=update, headers=ADMIN)
    assert r.status_code == status, r.text
    assert r.json()["error"]["message"]
    assert rig.store.policy.revision == 0


def test_promote_without_a_preview(rig: Rig) -> None:
    r = rig.client.post("/api/v1/traffic/promote-preview", json={"reason": "x"}, headers=ADMIN)
    assert r.status_code == 400 and r.json()["error"]["param"] == "preview"


def test_a_reason_is_optional(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    reasons: list[str] = []
    for method in ("set_traffic", "promote_preview", "reset_traffic"):

        def recording(*args: Any, _change: Any = getattr(rig.store, method), **kw: Any) -> Any:
            reasons.append(kw["reason"])
            return _change(*args, **kw)

        monkeypatch.setattr(rig.store, method, recording)
    assert rig.client.put("/api/v1/traffic", json={"preview": PREVIEW}, headers=ADMIN).is_success
    assert rig.client.post("/api/v1/traffic/promote-preview", json={}, headers=ADMIN).is_success
    assert rig.client.delete("/api/v1/traffic", params={"reason": " "}, headers=ADMIN).is_success
    assert reasons == [NO_REASON] * 3


# -- metrics and docs ---------------------------------------------------------------------------


def test_metrics_carry_version_and_variant(rig: Rig) -> None:
    rig.set_policy(canary=CANARY, canary_weight=50)
    for _ in range(10):
        rig.chat()
    text = rig.client.get("/metrics").text
    assert re.search(
        r'http_requests_total\{method="POST",route="/v1/chat/completions",status="200",'
        r'variant="(stable|canary)",version="chat@1\.\d\.0"\}',
        text,
    )
    for name in (
        "model_latency_seconds_bucket",
        "llm_time_to_first_token_seconds_bucket",
        "tokens_per_second_bucket",
        "llmship_gateway_overhead_seconds_bucket",
    ):
        assert re.search(name + r'\{.*variant="(stable|canary)",version="chat@1\.\d\.0"', text)
    assert 'llmship_traffic_weight{variant="stable",version="chat@1.0.0"} 50.0' in text
    assert "llmship_policy_revision 1.0" in text
    assert "llmship_registry_up 1.0" in text
    overhead = rig.metric(
        "llmship_gateway_overhead_seconds_sum",
        route="/v1/chat/completions",
        version=STABLE,
        variant="stable",
    )
    latency = rig.metric(
        "model_latency_seconds_sum", route="/v1/chat/completions", version=STABLE, variant="stable"
    )
    assert overhead is not None and latency is not None and 0 < overhead <= latency


def _gateway_metrics() -> dict[str, tuple[str, tuple[str, ...]]]:
    metrics = GatewayMetrics()
    found = {}
    for wrapper in vars(metrics).values():
        if isinstance(wrapper, MetricWrapperBase):
            name = wrapper._name + ("_total" if wrapper._type == "counter" else "")
            found[name] = (wrapper._type, tuple(wrapper._labelnames))
    return found


@pytest.mark.parametrize(("name", "kind_labels"), sorted(_gateway_metrics().items()))
def test_every_gateway_metric_is_documented(name: str, kind_labels: tuple[str, Any]) -> None:
    kind, labels = kind_labels
    text = (ROOT / "docs" / "gateway.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith(f"| `{name}` ")]
    assert rows, f"docs/gateway.md has no table row for the metric `{name}`"
    assert kind in rows[0], f"docs/gateway.md: `{name}` is a {kind}"
    for label in labels:
        assert f"`{label}`" in rows[0], f"docs/gateway.md: `{name}` row lacks label `{label}`"


def test_docs_and_openapi(rig: Rig) -> None:
    assert rig.client.get("/docs").status_code == 200
    schema = rig.client.get("/openapi.json").json()
    assert "ChatCompletionRequest" in schema["components"]["schemas"]
    body = schema["paths"]["/v1/chat/completions"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("ChatCompletionRequest")
    assert "/api/v1/traffic" in schema["paths"]
    assert "/health" in schema["paths"] and "/healthz" in schema["paths"]


def test_snapshot_flag_lookup_by_either_spelling() -> None:
    policy = FakeStore([STABLE], production=STABLE).get_traffic("dev")
    snap = Snapshot(policy, {}, {"new_model": Flag("new_model")}, loaded_at=0.0)
    assert snap.flag("new-model") is snap.flag("new_model") is not None
    assert snap.flag("old-model") is None


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


# -- analysis statistics and the Alertmanager webhook ----------------------------------------


def test_stats_per_release_count_failed_candidate_attempts(fakes: FakeModelServers) -> None:
    with make_rig(fakes) as rig:
        rig.set_policy(canary=CANARY, canary_weight=100)
        rig.set_mode(CANARY, "500")
        for _ in range(4):
            assert rig.chat().status_code == 200
        rig.flush()
        query = next(iter(rig.store.queries))
        assert (
            rig.client.post("/feedback", json={"query_id": query, "rating": 4}).status_code == 200
        )
        canary = rig.client.get(
            "/api/v1/stats", params={"ref": CANARY, "window": 60}, headers=ADMIN
        )
        stable = rig.client.get(
            "/api/v1/stats", params={"ref": STABLE, "window": 60}, headers=ADMIN
        )
    assert canary.status_code == 200, canary.text
    assert (canary.json()["requests"], canary.json()["errors"]) == (4, 4)
    assert canary.json()["error_rate"] == 1.0
    body = stable.json()
    assert (body["requests"], body["errors"], body["error_rate"]) == (4, 0, 0.0)
    assert len(body["latencies"]) == 4 and all(v > 0 for v in body["latencies"])
    assert body["ratings"] == [4]


def test_stats_without_traffic_are_empty_not_an_error(rig: Rig) -> None:
    r = rig.client.get("/api/v1/stats", params={"ref": OTHER, "window": 5}, headers=ADMIN)
    assert r.status_code == 200
    assert r.json()["requests"] == 0 and r.json()["error_rate"] is None
    assert rig.client.get("/api/v1/stats", params={"ref": OTHER}).status_code == 401
    bad = rig.client.get("/api/v1/stats", params={"ref": OTHER, "window": -1}, headers=ADMIN)
    assert bad.status_code == 400


def alert_payload(status: str = "firing", **labels: str) -> dict[str, Any]:
    alert = {
        "status": status,
        "labels": {"alertname": "LLMHighErrorRate", "action": "rollback", **labels},
        "annotations": {"summary": "5xx above 5%"},
        "startsAt": "2026-11-28T22:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": "a1b2c3d4",
    }
    return {
        "version": "4",
        "groupKey": '{}:{alertname="LLMHighErrorRate"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "llmship",
        "groupLabels": {},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager",
        "alerts": [alert],
    }


def test_alertmanager_webhook_aborts_a_rollout_once(rig: Rig) -> None:
    from fakes_gateway import FakeRollout

    rig.store.rollouts = [FakeRollout(7, "dev", "chat-canary", CANARY)]
    first = rig.client.post("/api/v1/alerts", json=alert_payload(version=CANARY), headers=ADMIN)
    assert first.status_code == 200, first.text
    assert first.json() == {"status": "ok", "aborted": ["chat-canary"], "repeated": 0}
    again = rig.client.post("/api/v1/alerts", json=alert_payload(version=CANARY), headers=ADMIN)
    assert again.json() == {"status": "ok", "aborted": [], "repeated": 1}
    resolved = rig.client.post(
        "/api/v1/alerts", json=alert_payload("resolved", version=CANARY), headers=ADMIN
    )
    assert resolved.json()["aborted"] == []
    other = rig.client.post("/api/v1/alerts", json=alert_payload(version=OTHER), headers=ADMIN)
    assert other.json()["aborted"] == []
    assert [rollout_id for rollout_id, _ in rig.store.aborts] == [7]
    assert "LLMHighErrorRate" in rig.store.aborts[0][1]


@pytest.mark.parametrize(
    "body", [b"{not json", b"[]", json.dumps({"version": "3", "alerts": []}).encode()]
)
def test_malformed_alert_payloads_are_400(rig: Rig, body: bytes) -> None:
    r = rig.client.post(
        "/api/v1/alerts", content=body, headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
