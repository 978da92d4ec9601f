"""The dashboard's API for releases and aliases (``gateway/api_releases.py``): releases
with their specs, a release with its aliases and gate runs, the diff of two releases,
aliases and their history, over a real SQLite registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from _dashboard_api import check_read_access, client_for
from _registry import TickClock, make_spec
from llmship.gateway.api_releases import spec_changes
from llmship.registry import Registry


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """chat@1.0.0, chat@1.1.0 (cooler, labelled, with a system prompt) and
    summarize@0.1.0, registered in that order; dev's production moved 1.0.0 -> 1.1.0,
    dev's canary and staging's production on 1.1.0."""
    reg = Registry.open(f"sqlite:///{tmp_path}/r.db", home=tmp_path, clock=TickClock())
    try:
        reg.register(make_spec(version="1.0.0"), actor="ci")
        reg.register(
            make_spec(
                version="1.1.0",
                params={"temperature": 0.2, "stop": ["</s>"]},
                labels={"team": "chat"},
                prompt={"system": "Be brief."},
            ),
            actor="ann",
        )
        reg.register(make_spec("summarize", "0.1.0"), actor="ci")
        reg.set_alias("dev", "production", "chat@1.0.0", actor="ci", reason="launch")
        reg.set_alias("dev", "production", "chat@1.1.0", actor="ann", reason="better")
        reg.set_alias("dev", "canary", "chat@1.1.0", actor="ci", reason="try")
        reg.set_alias("staging", "production", "chat@1.1.0", actor="ci", reason="launch")
        yield reg
    finally:
        reg.close()


@pytest.fixture
def client(registry: Registry, tmp_path: Path) -> Iterator[TestClient]:
    with client_for(registry, tmp_path) as c:
        yield c


# -- releases ------------------------------------------------------------------------


def test_releases_are_listed_newest_first_a_page_at_a_time(client: TestClient) -> None:
    page = client.get("/api/v1/releases", params={"limit": 2}).json()
    assert [r["ref"] for r in page["items"]] == ["summarize@0.1.0", "chat@1.1.0"]
    assert (page["total"], page["limit"], page["offset"]) == (3, 2, 0)
    chat = page["items"][1]
    assert (chat["name"], chat["version"], chat["backend"], chat["model"]) == (
        "chat",
        "1.1.0",
        "openai",
        "tiny",
    )
    assert chat["created_by"] == "ann" and chat["created_at"].endswith("+00:00")
    assert len(chat["digest"]) == 64
    assert chat["spec"]["params"]["temperature"] == 0.2
    rest = client.get("/api/v1/releases", params={"limit": 2, "offset": 2}).json()
    assert [r["ref"] for r in rest["items"]] == ["chat@1.0.0"]
    named = client.get("/api/v1/releases", params={"name": "chat"}).json()
    assert [r["ref"] for r in named["items"]] == ["chat@1.1.0", "chat@1.0.0"]
    assert client.get("/api/v1/releases", params={"name": "nope"}).json()["total"] == 0


def test_a_release_has_its_aliases_gate_runs_and_yaml(
    registry: Registry, client: TestClient
) -> None:
    run = registry.record_gate_run(
        "eval",
        "chat@1.1.0",
        env="dev",
        passed=True,
        summary={"passed": True},
        report={},
        actor="ci",
        baseline_ref="chat@1.0.0",
    )
    r = client.get("/api/v1/releases/chat/1.1.0")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ref"] == "chat@1.1.0" and body["spec"]["labels"] == {"team": "chat"}
    assert body["aliases"] == [
        {"env": "dev", "alias": "canary"},
        {"env": "dev", "alias": "production"},
        {"env": "staging", "alias": "production"},
    ]
    [gate] = body["gate_runs"]
    assert (gate["id"], gate["kind"], gate["passed"], gate["baseline_ref"]) == (
        run.id,
        "eval",
        True,
        "chat@1.0.0",
    )
    # the YAML is the spec `llmship models register` takes back
    assert yaml.safe_load(body["spec_yaml"]) == body["spec"]
    assert body["spec_yaml"].startswith("name: chat\nversion: 1.1.0\n")
    # a "v" before the version names the same release; an older one has no aliases now
    assert client.get("/api/v1/releases/chat/v1.1.0").json()["ref"] == "chat@1.1.0"
    older = client.get("/api/v1/releases/chat/1.0.0").json()
    assert older["aliases"] == [] and older["gate_runs"] == []


def test_an_unknown_release_is_a_404_that_lists_the_versions(client: TestClient) -> None:
    r = client.get("/api/v1/releases/chat/9.9.9")
    assert r.status_code == 404
    assert "1.1.0, 1.0.0" in r.json()["error"]["message"]
    assert client.get("/api/v1/releases/nope/1.0.0").status_code == 404
    assert client.get("/api/v1/releases/chat/not-a-version").status_code == 404


# -- the diff ------------------------------------------------------------------------


def test_the_diff_of_two_releases_lists_the_changed_fields_and_the_yaml_diff(
    client: TestClient,
) -> None:
    r = client.get("/api/v1/releases/diff", params={"a": "chat@1.0.0", "b": "chat@1.1.0"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["a"], body["b"]) == ("chat@1.0.0", "chat@1.1.0")
    assert body["changes"] == [
        {"path": "version", "a": "1.0.0", "b": "1.1.0"},
        {"path": "prompt.system", "a": None, "b": "Be brief."},
        {"path": "params.temperature", "a": 0.7, "b": 0.2},
        {"path": "params.stop", "a": [], "b": ["</s>"]},
        {"path": "labels.team", "a": None, "b": "chat"},
    ]
    unified = body["unified"]
    assert unified.startswith("--- chat@1.0.0\n+++ chat@1.1.0\n")
    assert "-version: 1.0.0\n+version: 1.1.0\n" in unified
    assert "+  temperature: 0.2\n" in unified and "-  temperature: 0.7\n" in unified
    # the same release twice: nothing changed
    same = client.get("/api/v1/releases/diff", params={"a": "chat@1.0.0", "b": "chat@v1.0.0"})
    assert same.json()["changes"] == [] and same.json()["unified"] == ""


def test_changes_walk_mappings_in_order_and_compare_other_values_whole() -> None:
    a = {"x": {"b": 1, "c": {"d": [1, 2]}, "e": {}}, "f": 1}
    b = {"x": {"c": {"d": [1, 3]}, "b": 1, "e": {"g": "h"}}, "y": {"z": 0}, "f": 1}
    changes = [(c.path, c.a, c.b) for c in spec_changes(a, b)]
    assert changes == [("x.c.d", [1, 2], [1, 3]), ("x.e.g", None, "h"), ("y.z", None, 0)]
    assert [(c.path, c.a, c.b) for c in spec_changes(b, a)] == [
        ("x.c.d", [1, 3], [1, 2]),
        ("x.e.g", "h", None),
        ("y.z", 0, None),
    ]
    assert spec_changes(a, a) == [] and spec_changes({}, {}) == []


@pytest.mark.parametrize(
    ("a", "b", "status", "param"),
    [
        ("production", "chat@1.1.0", 400, "a"),
        ("chat@1.0.0", "chat@", 400, "b"),
        ("chat@1.0.0", "@1.0.0", 400, "b"),
        ("chat@1.0.0", "chat@one", 400, "b"),
        ("chat@9.0.0", "nope", 400, "b"),  # malformed before unknown
        ("chat@9.0.0", "chat@1.0.0", 404, None),
        ("chat@1.0.0", "nope@1.0.0", 404, None),
    ],
)
def test_a_malformed_ref_is_a_400_and_an_unknown_one_a_404(
    client: TestClient, a: str, b: str, status: int, param: str | None
) -> None:
    r = client.get("/api/v1/releases/diff", params={"a": a, "b": b})
    assert r.status_code == status, r.text
    if param is not None:
        assert r.json()["error"]["param"] == param
        assert "NAME@VERSION" in r.json()["error"]["message"]


def test_the_diff_needs_both_refs(client: TestClient) -> None:
    r = client.get("/api/v1/releases/diff", params={"a": "chat@1.0.0"})
    assert r.status_code == 400 and "b" in r.json()["error"]["message"]


# -- aliases -------------------------------------------------------------------------


def test_aliases_are_listed_by_environment(client: TestClient) -> None:
    page = client.get("/api/v1/aliases").json()
    assert [(a["env"], a["alias"], a["ref"]) for a in page["items"]] == [
        ("dev", "canary", "chat@1.1.0"),
        ("dev", "production", "chat@1.1.0"),
        ("staging", "production", "chat@1.1.0"),
    ]
    assert page["total"] == 3 and page["items"][0]["updated_at"].endswith("+00:00")
    staging = client.get("/api/v1/aliases", params={"env": "staging"}).json()
    assert [a["alias"] for a in staging["items"]] == ["production"] and staging["total"] == 1
    paged = client.get("/api/v1/aliases", params={"limit": 1, "offset": 1}).json()
    assert [a["alias"] for a in paged["items"]] == ["production"] and paged["total"] == 3


def test_an_alias_history_is_newest_first(client: TestClient) -> None:
    page = client.get("/api/v1/aliases/dev/production/history").json()
    moves = [(m["from_ref"], m["to_ref"], m["actor"], m["reason"]) for m in page["items"]]
    assert moves == [
        ("chat@1.0.0", "chat@1.1.0", "ann", "better"),
        (None, "chat@1.0.0", "ci", "launch"),
    ]
    assert page["total"] == 2 and page["items"][0]["id"] > page["items"][1]["id"]
    assert page["items"][0]["env"] == "dev" and page["items"][0]["at"].endswith("+00:00")
    one = client.get("/api/v1/aliases/dev/production/history", params={"limit": 1, "offset": 1})
    assert [m["to_ref"] for m in one.json()["items"]] == ["chat@1.0.0"]
    never = client.get("/api/v1/aliases/dev/nothing/history").json()
    assert never["items"] == [] and never["total"] == 0


# -- who may read ----------------------------------------------------------------------


READS = [
    "/api/v1/releases",
    "/api/v1/releases/chat/1.0.0",
    "/api/v1/releases/diff?a=chat@1.0.0&b=chat@1.1.0",
    "/api/v1/aliases",
    "/api/v1/aliases/dev/production/history",
]


def test_reads_follow_read_access(registry: Registry, tmp_path: Path) -> None:
    check_read_access(registry, tmp_path, READS)


def test_the_routes_are_in_the_openapi_schema(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path in (
        "/api/v1/releases",
        "/api/v1/releases/diff",
        "/api/v1/releases/{name}/{version}",
        "/api/v1/aliases",
        "/api/v1/aliases/{env}/{alias}/history",
    ):
        assert schema["paths"][path]["get"]["tags"] == ["dashboard"], path
    models = schema["components"]["schemas"]
    assert models["ReleaseDetail"]["properties"]["spec_yaml"]["description"]
    assert models["ReleaseDiff"]["properties"]["changes"]["description"]


def test_the_release_page_of_an_unknown_release_is_a_404(client: TestClient) -> None:
    assert client.get("/ui/releases/chat/1.0.0").status_code == 200
    assert client.get("/ui/releases/chat/9.9.9").status_code == 404
    assert client.get("/ui/releases/diff").status_code == 200
