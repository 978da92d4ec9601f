"""The gateway's request path in process: forwarding byte for byte, streams, the
access log, and failures of a candidate or of stable (fake model servers behind a
real socket, a fake store)."""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
import pytest

from _gateway import (
    CANARY,
    CHAT,
    OTHER,
    STABLE,
    Rig,
    answer,
    events,
    make_rig,
    text_of,
)
from fakes_gateway import FakeModelServers
from llmship.gateway.serving import whole_events

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


def test_a_sane_client_request_id_is_echoed_but_is_not_the_query_id(rig: Rig) -> None:
    r = rig.chat(**{"X-Request-ID": "client-id-12345"})
    assert r.headers["x-request-id"] == "client-id-12345"
    assert r.headers["x-llmship-query-id"] != "client-id-12345"
    too_long = "x" * 129
    r = rig.chat(**{"X-Request-ID": too_long})
    assert r.headers["x-request-id"] == r.headers["x-llmship-query-id"] != too_long


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
