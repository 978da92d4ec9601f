"""Feedback through the gateway: it lands on the release that answered the query."""

from __future__ import annotations

from typing import Any

import pytest

from _gateway import (
    CANARY,
    Rig,
)

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
