"""Feedback through the gateway: it lands on the release that answered the query, only
the client that got the answer can rate it, and each user rates each answer once."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from _gateway import ADMIN, CANARY, CHAT, STABLE, TOKEN, Rig, make_rig
from _registry import register_chat
from fakes_gateway import FakeModelServers, FakeServer
from llmship.gateway import create_app
from llmship.gateway.feedback import one_per_user
from llmship.registry import Registry
from llmship.registry.records import FeedbackRecord
from llmship.settings import Settings

# -- where a rating lands ---------------------------------------------------------------


def rate(rig: Rig, answer: httpx.Response, **body: Any) -> httpx.Response:
    """Rate ``answer`` with its query id and feedback token (unless ``body`` says)."""
    payload = {
        "query_id": answer.headers["x-llmship-query-id"],
        "feedback_token": answer.headers["x-llmship-feedback-token"],
        **body,
    }
    return rig.client.post("/feedback", json={k: v for k, v in payload.items() if v is not None})


def test_feedback_lands_on_the_release_that_answered(rig: Rig) -> None:
    rig.set_policy(canary=CANARY, canary_weight=100)
    answer = rig.chat()  # still pending in the batch
    query_id = answer.headers["x-llmship-query-id"]
    assert answer.headers["x-request-id"] == query_id  # the client sent none
    r = rate(rig, answer, rating=4, comment="ok")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "query_id": query_id, "version": CANARY}
    assert rate(rig, answer, rating=2).status_code == 200
    assert rate(rig, answer, thumbs="up").status_code == 200
    assert rig.store.feedback[(query_id, "rating", "")].value == 2  # replaced, not added
    assert rig.store.feedback[(query_id, "thumbs", "")].value == 1
    assert len(rig.store.feedback) == 2


def test_one_rating_per_query_and_user(rig: Rig) -> None:
    answer = rig.chat(**{"X-User-Id": "alice"})
    query_id = answer.headers["x-llmship-query-id"]
    for rating in (1, 5):
        assert rate(rig, answer, rating=rating).status_code == 200
    assert rate(rig, answer, rating=2, user="bob").status_code == 200
    assert rate(rig, answer, rating=3, user="bob").status_code == 200
    assert {key: f.value for key, f in rig.store.feedback.items()} == {
        (query_id, "rating", "alice"): 5,
        (query_id, "rating", "bob"): 3,
    }


def test_a_clients_request_id_is_a_correlation_id_not_the_query_id(rig: Rig) -> None:
    answer = rig.chat(**{"X-Request-ID": "client-chosen-42"})
    query_id = answer.headers["x-llmship-query-id"]
    assert query_id != "client-chosen-42" and len(query_id) == 32
    assert answer.headers["x-request-id"] == "client-chosen-42"  # echoed
    assert rig.fakes.servers["stable"].requests[-1].headers["x-request-id"] == query_id
    rig.flush()
    assert rig.store.queries[query_id].request_id == "client-chosen-42"
    assert "client-chosen-42" not in rig.store.queries
    r = rig.client.post("/feedback", json={"query_id": "client-chosen-42", "rating": 1})
    assert r.status_code == 404
    assert rig.store.feedback == {}
    # Two clients choosing the same id get two queries.
    again = rig.chat(**{"X-Request-ID": "client-chosen-42"})
    assert again.headers["x-llmship-query-id"] != query_id


def test_an_insane_request_id_is_neither_echoed_nor_kept(rig: Rig) -> None:
    answer = rig.chat(**{"X-Request-ID": "no spaces please"})
    assert answer.headers["x-request-id"] == answer.headers["x-llmship-query-id"]
    rig.flush()
    assert rig.store.queries[answer.headers["x-llmship-query-id"]].request_id is None


def test_predict_carries_the_feedback_token_next_to_the_query_id(rig: Rig) -> None:
    r = rig.client.post("/predict", json={"prompt": "hi"})
    assert r.status_code == 200
    body = r.json()
    assert list(body)[:3] == ["response", "query_id", "feedback_token"]
    assert body["query_id"] == r.headers["x-llmship-query-id"]
    assert body["feedback_token"] == r.headers["x-llmship-feedback-token"]
    assert len(body["feedback_token"]) == 32
    fb = rig.client.post(
        "/feedback",
        json={"query_id": body["query_id"], "feedback_token": body["feedback_token"], "rating": 5},
    )
    assert fb.status_code == 200


# -- who may rate ---------------------------------------------------------------------------


def test_a_wrong_token_is_403_and_stores_nothing(rig: Rig) -> None:
    answer, other = rig.chat(), rig.chat()
    for token in ("0" * 32, other.headers["x-llmship-feedback-token"], "short"):
        r = rate(rig, answer, rating=1, feedback_token=token)
        assert r.status_code == 403, token
        error = r.json()["error"]
        assert (error["param"], error["code"]) == ("feedback_token", "invalid_feedback_token")
    rig.flush()
    assert rig.store.feedback == {}
    assert rate(rig, answer, rating=4).status_code == 200  # the right one
    assert len(rig.store.feedback) == 1


def test_by_default_a_rating_without_a_token_is_taken(rig: Rig) -> None:
    answer = rig.chat()
    query_id = answer.headers["x-llmship-query-id"]
    r = rig.client.post("/feedback", json={"query_id": query_id, "thumbs": "down"})
    assert r.status_code == 200


def test_a_required_token_refuses_a_rating_without_one(fakes: FakeModelServers) -> None:
    with make_rig(fakes, feedback_token="required") as rig:
        answer = rig.chat()
        query_id = answer.headers["x-llmship-query-id"]
        r = rig.client.post("/feedback", json={"query_id": query_id, "rating": 3})
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "feedback_token_required"
        assert rig.store.feedback == {}
        assert rate(rig, answer, rating=3).status_code == 200


def test_unknown_query_ids_are_404(rig: Rig) -> None:
    r = rig.client.post("/feedback", json={"query_id": "nope", "thumbs": "down"})
    assert r.status_code == 404
    assert r.json()["error"]["param"] == "query_id"
    token = rig.gateway.feedback_tokens.token("f" * 32)
    r = rig.client.post(
        "/feedback", json={"query_id": "f" * 32, "feedback_token": token, "rating": 2}
    )
    assert r.status_code == 404
    assert rig.store.calls["add_feedback"] == 4  # each id looked up twice (the retry)


def test_a_rating_at_another_gateway_waits_for_the_answering_one(rig: Rig) -> None:
    """Gateway B takes a rating of an answer gateway A gave a moment ago: the token is
    good at B (one key in the registry), and the retry finds the query once A wrote it."""
    settings = Settings(home=Path("/nonexistent"), env="dev", policy_refresh_interval=3600)
    other = create_app(rig.store, settings, rng=random.Random(1))
    other.state.gateway.feedback_retry = 1.0  # A writes its batch every 0.2 s
    answer = rig.chat()
    with TestClient(other) as b:
        r = b.post(
            "/feedback",
            json={
                "query_id": answer.headers["x-llmship-query-id"],
                "feedback_token": answer.headers["x-llmship-feedback-token"],
                "rating": 5,
            },
        )
    assert r.status_code == 200, r.text


def test_answers_carry_no_token_while_the_key_is_unknown(fakes: FakeModelServers) -> None:
    with make_rig(fakes) as rig:
        rig.gateway.feedback_tokens._key = None
        rig.store.down = True
        answer = rig.chat()
        assert answer.status_code == 200
        assert "x-llmship-feedback-token" not in answer.headers
        query_id = answer.headers["x-llmship-query-id"]
        r = rig.client.post(
            "/feedback", json={"query_id": query_id, "feedback_token": "a" * 32, "rating": 1}
        )
        assert r.status_code == 503  # cannot check it: the registry is down
        rig.store.down = False
        assert rig.client.portal is not None
        assert rig.client.portal.call(rig.gateway.feedback_tokens.load_quietly)
        assert "x-llmship-feedback-token" in rig.chat().headers


# -- the A/B analysis counts a user once -------------------------------------------------


def test_the_stats_count_each_users_newest_rating_once(rig: Rig) -> None:
    def ask_and_rate(user: str | None, rating: int, thumbs: str | None = None) -> None:
        answer = rig.chat(**({"X-User-Id": user} if user else {}))
        assert rate(rig, answer, rating=rating, thumbs=thumbs).status_code == 200

    for rating in (1, 1, 1, 2):  # one user rating many answers
        ask_and_rate("spammer", rating, "down")
    ask_and_rate("alice", 5, "up")
    ask_and_rate(None, 4)  # no user: each answer counts
    ask_and_rate(None, 3)
    r = rig.client.get("/api/v1/stats", params={"ref": STABLE, "window": 60}, headers=ADMIN)
    stats = r.json()
    assert sorted(stats["ratings"]) == [2, 3, 4, 5]
    assert (stats["thumbs_up"], stats["thumbs_down"]) == (1, 1)


def test_one_per_user_keeps_the_newest_of_each_kind() -> None:
    def record(query_id: str, kind: str, value: int, user: str | None) -> FeedbackRecord:
        return FeedbackRecord(query_id, "dev", STABLE, kind, value, None, T, user)

    records = [
        record("q1", "rating", 1, "u"),
        record("q2", "rating", 2, "u"),
        record("q2", "thumbs", 0, "u"),
        record("q3", "rating", 5, None),
        record("q4", "rating", 4, None),
        record("q5", "rating", 3, "v"),
    ]
    kept = one_per_user(records)
    assert [(f.query_id, f.kind, f.value) for f in kept] == [
        ("q2", "rating", 2),
        ("q2", "thumbs", 0),
        ("q3", "rating", 5),
        ("q4", "rating", 4),
        ("q5", "rating", 3),
    ]


T = datetime(2026, 12, 2, tzinfo=timezone.utc)


# -- invalid bodies ----------------------------------------------------------------------


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
        ({"query_id": "q", "rating": 3, "feedback_token": ""}, "feedback_token"),
        ({"query_id": "q", "rating": 3, "feedback_token": 7}, "feedback_token"),
        ({"query_id": "q", "rating": 3, "user": ""}, "user"),
        ({"query_id": "q", "rating": 3, "user": "u" * 256}, "user"),
    ],
)
def test_invalid_feedback_is_422(rig: Rig, body: dict[str, Any], param: str | None) -> None:
    r = rig.client.post("/feedback", json=body)
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_feedback_while_the_registry_is_down_is_503(rig: Rig) -> None:
    answer = rig.chat()
    rig.flush()
    rig.store.down = True
    assert rate(rig, answer, rating=5).status_code == 503


# -- through a real registry -------------------------------------------------------------


@pytest.fixture
def real(fakes: FakeModelServers, db_url: str) -> Iterator[tuple[TestClient, Registry]]:
    """A gateway over a real registry (SQLite and PostgreSQL) and a fake model server."""
    with Registry.open(db_url) as registry:
        register_chat(registry, ("1.0.0",))
        ref = "chat@1.0.0"
        fakes.servers = {"stable": FakeServer(ref, words=["hi"])}
        registry.register_endpoint("dev", ref, fakes.url("stable"), pid=None)
        settings = Settings(
            home=Path("/nonexistent"), env="dev", admin_token=TOKEN, policy_refresh_interval=3600
        )
        app = create_app(registry, settings, rng=random.Random(0))
        app.state.gateway.feedback_retry = 0.01
        with TestClient(app) as client:
            yield client, registry


def test_through_a_real_registry_tokens_and_one_rating_per_user_hold(
    real: tuple[TestClient, Registry],
) -> None:
    client, registry = real
    answer = client.post("/v1/chat/completions", json=CHAT, headers={"X-User-Id": "alice"})
    assert answer.status_code == 200
    query_id = answer.headers["x-llmship-query-id"]
    token = answer.headers["x-llmship-feedback-token"]

    def post(**body: Any) -> int:
        return client.post("/feedback", json={"query_id": query_id, **body}).status_code

    assert post(rating=1, feedback_token="0" * 32) == 403
    assert registry.list_feedback("dev", "chat@1.0.0") == []
    assert post(rating=2, feedback_token=token) == 200
    assert post(rating=4, feedback_token=token) == 200
    assert post(rating=5, feedback_token=token, user="bob") == 200
    listed = registry.list_feedback("dev", "chat@1.0.0")
    assert sorted((f.user, f.value) for f in listed) == [("alice", 4), ("bob", 5)]
    assert client.post("/feedback", json={"query_id": "f" * 32, "rating": 3}).status_code == 404
    r = client.get("/api/v1/stats", params={"ref": "chat@1.0.0"}, headers=ADMIN)
    assert sorted(r.json()["ratings"]) == [4, 5]
    assert registry.get_query(query_id).user_key == "alice"
