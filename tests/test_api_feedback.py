"""The dashboard's API for feedback (``gateway/api_feedback.py``): the ratings and
thumbs with their comments, newest first and filtered, and per release the feedback
over time in buckets, over a real SQLite registry."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from _dashboard_api import check_read_access, client_for
from _registry import T0, make_spec
from llmship.gateway.api_feedback import summarize
from llmship.registry import Registry
from llmship.registry.records import QueryRecord

OLD, NEW = "chat@1.0.0", "chat@1.1.0"
START = int(T0.timestamp())
"""T0 (12:00 UTC) in epoch seconds: a whole hour, the start of a bucket."""


class Clock:
    """A clock that stays where a test puts it."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def minutes(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


FEEDBACK: list[tuple[str, str, str, int, dict[str, Any]]] = [
    ("q1", "dev", OLD, 10, {"rating": 4, "comment": "ok"}),
    ("q2", "dev", OLD, 20, {"rating": 2, "thumbs": "down"}),
    ("q3", "dev", NEW, 70, {"rating": 5, "thumbs": "up", "comment": "great"}),
    ("q4", "dev", NEW, 80, {"thumbs": "up"}),
    ("q5", "staging", NEW, 90, {"rating": 1, "comment": ""}),
]
"""(query, env, release, minutes after T0, feedback): two ratings and a thumbs down for
the old release in dev's first hour, a rating and two thumbs up for the new one in the
second, and a rating in staging."""


def fill(registry: Registry, clock: Clock) -> None:
    """The releases, and the queries and feedback of :data:`FEEDBACK`."""
    for version in ("1.0.0", "1.1.0"):
        registry.register(make_spec(version=version), actor="ci")
    for query_id, env, ref, at, given in FEEDBACK:
        clock.now = minutes(at)
        route = "/v1/chat/completions"
        registry.record_queries([QueryRecord(query_id, env, ref, "stable", route, 200, clock.now)])
        registry.add_feedback(query_id, **given)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    clock = Clock()
    reg = Registry.open(f"sqlite:///{tmp_path}/r.db", home=tmp_path, clock=clock)
    try:
        fill(reg, clock)
        yield reg
    finally:
        reg.close()


@pytest.fixture
def client(registry: Registry, tmp_path: Path) -> Iterator[TestClient]:
    with client_for(registry, tmp_path) as c:
        yield c


def rows(client: TestClient, **params: Any) -> list[tuple[str, str, int]]:
    r = client.get("/api/v1/feedback", params=params)
    assert r.status_code == 200, r.text
    return [(f["query_id"], f["kind"], f["value"]) for f in r.json()["items"]]


# -- the list ------------------------------------------------------------------------


def test_feedback_is_listed_newest_first_with_comments(client: TestClient) -> None:
    page = client.get("/api/v1/feedback").json()
    assert page["total"] == 7
    assert [(f["query_id"], f["kind"]) for f in page["items"]] == [
        ("q5", "rating"),
        ("q4", "thumbs"),
        ("q3", "rating"),
        ("q3", "thumbs"),
        ("q2", "rating"),
        ("q2", "thumbs"),
        ("q1", "rating"),
    ]
    great = page["items"][2]
    assert great == {
        "query_id": "q3",
        "env": "dev",
        "ref": NEW,
        "kind": "rating",
        "value": 5,
        "comment": "great",
        "at": "2024-05-01T13:10:00+00:00",
    }
    # thumbs are 1 up, 0 down
    assert rows(client, kind="thumbs") == [
        ("q4", "thumbs", 1),
        ("q3", "thumbs", 1),
        ("q2", "thumbs", 0),
    ]


def test_feedback_is_filtered_and_paged(client: TestClient) -> None:
    assert [q for q, _, _ in rows(client, env="staging")] == ["q5"]
    assert rows(client, env="dev", ref=OLD, kind="rating") == [
        ("q2", "rating", 2),
        ("q1", "rating", 4),
    ]
    # comment=true: only feedback with a comment (an empty one is none)
    assert rows(client, comment="true") == [
        ("q3", "rating", 5),
        ("q3", "thumbs", 1),
        ("q1", "rating", 4),
    ]
    assert rows(client, ref="chat@v1.1.0", kind="thumbs") == [
        ("q4", "thumbs", 1),
        ("q3", "thumbs", 1),
    ]
    page = client.get("/api/v1/feedback", params={"limit": 2, "offset": 5}).json()
    assert (page["total"], page["limit"], page["offset"]) == (7, 2, 5)
    assert [(f["query_id"], f["kind"]) for f in page["items"]] == [
        ("q2", "thumbs"),
        ("q1", "rating"),
    ]
    assert rows(client, env="prod") == []


@pytest.mark.parametrize(
    "params", [{"ref": "production"}, {"kind": "stars"}, {"limit": 0}, {"comment": "maybe"}]
)
def test_a_bad_filter_is_a_400(client: TestClient, params: dict[str, Any]) -> None:
    r = client.get("/api/v1/feedback", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"]


def test_the_registry_pages_feedback_on_each_database(db_url: str) -> None:
    clock = Clock()
    with Registry.open(db_url, clock=clock) as registry:
        fill(registry, clock)
        records, total = registry.page_feedback(env="dev", limit=2, offset=1)
        assert total == 6
        assert [(r.query_id, r.kind, r.at) for r in records] == [
            ("q3", "rating", minutes(70)),
            ("q3", "thumbs", minutes(70)),
        ]
        records, total = registry.page_feedback(commented=True, kind="rating")
        assert [(r.query_id, r.comment) for r in records] == [("q3", "great"), ("q1", "ok")]
        assert total == 2
        assert registry.feedback_points("dev", since=minutes(70)) == [
            (NEW, "rating", 5, minutes(70)),
            (NEW, "thumbs", 1, minutes(70)),
            (NEW, "thumbs", 1, minutes(80)),
        ]


# -- the summary ---------------------------------------------------------------------


def test_the_summary_gives_each_release_its_feedback_per_bucket(client: TestClient) -> None:
    # the gateway's own environment by default, buckets of an hour
    body = client.get("/api/v1/feedback/summary").json()
    assert (body["env"], body["bucket_s"]) == ("dev", 3600)
    assert body["releases"] == [
        {
            "ref": OLD,
            "ratings": 2,
            "mean_rating": 3.0,
            "thumbs_up": 0,
            "thumbs_down": 1,
            "series": [
                {"t": START, "ratings": 2, "mean_rating": 3.0, "thumbs_up": 0, "thumbs_down": 1}
            ],
        },
        {
            "ref": NEW,
            "ratings": 1,
            "mean_rating": 5.0,
            "thumbs_up": 2,
            "thumbs_down": 0,
            "series": [
                {
                    "t": START + 3600,
                    "ratings": 1,
                    "mean_rating": 5.0,
                    "thumbs_up": 2,
                    "thumbs_down": 0,
                }
            ],
        },
    ]


def test_the_summary_by_bucket_since_a_time_and_of_another_env(client: TestClient) -> None:
    body = client.get("/api/v1/feedback/summary", params={"bucket": 600}).json()
    old = body["releases"][0]
    assert [(b["t"], b["ratings"], b["mean_rating"]) for b in old["series"]] == [
        (START + 600, 1, 4.0),
        (START + 1200, 1, 2.0),
    ]
    new = body["releases"][1]
    assert [(b["t"], b["ratings"], b["mean_rating"], b["thumbs_up"]) for b in new["series"]] == [
        (START + 4200, 1, 5.0, 1),
        (START + 4800, 0, None, 1),
    ]
    # since 12:15 (an ISO time without a zone is UTC): q1 is left out
    for since in ("2024-05-01T12:15:00", "2024-05-01T14:15:00+02:00"):
        later = client.get("/api/v1/feedback/summary", params={"since": since}).json()
        assert [(r["ref"], r["ratings"], r["mean_rating"]) for r in later["releases"]] == [
            (OLD, 1, 2.0),
            (NEW, 1, 5.0),
        ], since
    staging = client.get("/api/v1/feedback/summary", params={"env": "staging"}).json()
    assert staging["env"] == "staging"
    assert [(r["ref"], r["ratings"], r["mean_rating"]) for r in staging["releases"]] == [
        (NEW, 1, 1.0)
    ]
    assert client.get("/api/v1/feedback/summary", params={"env": "prod"}).json()["releases"] == []


@pytest.mark.parametrize("params", [{"bucket": 0}, {"bucket": 59}, {"since": "yesterday"}])
def test_a_bad_summary_query_is_a_400(client: TestClient, params: dict[str, Any]) -> None:
    assert client.get("/api/v1/feedback/summary", params=params).status_code == 400


def test_summarize_counts_each_kind_in_its_bucket() -> None:
    points = [
        ("b@1", "rating", 5, minutes(0)),
        ("a@1", "thumbs", 0, minutes(1)),
        ("b@1", "rating", 2, minutes(59)),
        ("b@1", "thumbs", 1, minutes(60)),
    ]
    [a, b] = summarize(points, 3600)
    assert (a.ref, a.ratings, a.mean_rating, a.thumbs_down) == ("a@1", 0, None, 1)
    assert (b.ratings, b.mean_rating, b.thumbs_up) == (2, 3.5, 1)
    assert [(s.t - START, s.ratings, s.mean_rating, s.thumbs_up) for s in b.series] == [
        (0, 2, 3.5, 0),
        (3600, 0, None, 1),
    ]
    assert summarize([], 60) == []


# -- who may read ----------------------------------------------------------------------


READS = ["/api/v1/feedback", "/api/v1/feedback/summary"]


def test_reads_follow_read_access(registry: Registry, tmp_path: Path) -> None:
    check_read_access(registry, tmp_path, READS)


def test_the_routes_are_in_the_openapi_schema(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path in READS:
        assert schema["paths"][path]["get"]["tags"] == ["dashboard"], path
    models = schema["components"]["schemas"]
    assert models["FeedbackView"]["properties"]["value"]["description"]
    assert models["FeedbackBucket"]["properties"]["t"]["description"]
