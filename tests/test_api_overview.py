"""The dashboard's overview API over a real SQLite registry: the environments
(``/api/v1/environments``), one environment at a glance (``/api/v1/overview``) and this
gateway's live figures per version (``/api/v1/live``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from _dashboard_api import AUTH, check_read_access, client_for
from _registry import chat_registry
from llmship.gateway.app import Gateway
from llmship.registry import Registry
from llmship.registry.records import QueryRecord
from llmship.rollout import ops, parse_rollout
from llmship.routing import Experiment, Variant

CANARY = parse_rollout({"name": "canary-x", "strategy": {"canary": {"steps": [{"setWeight": 20}]}}})
OLD, NEW, NEWER = "chat@1.0.0", "chat@1.1.0", "chat@2.0.0"


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    config = {
        "environments": {
            "dev": {"gateway_port": 8080},
            "staging": {"gateway_port": 8081},
            "prod": {"approval": True},
        }
    }
    (tmp_path / "llmship.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LLMSHIP_CONFIG", raising=False)
    with chat_registry(tmp_path / "r.db", ("1.0.0", "1.1.0", "2.0.0")) as reg:
        yield reg


@pytest.fixture
def client(registry: Registry, tmp_path: Path) -> Iterator[TestClient]:
    with client_for(registry, tmp_path) as c:
        yield c


def gateway(client: TestClient) -> Gateway:
    found: Gateway = client.app.state.gateway  # type: ignore[attr-defined]
    return found


# -- environments -----------------------------------------------------------------------


def test_the_environments_come_in_promotion_order_with_the_registrys_own(
    registry: Registry, client: TestClient
) -> None:
    # Given production in dev, a rollout running there, and an environment llmship.yaml
    # does not declare that has an alias
    record = ops.start(registry, CANARY, NEW, env="dev", actor="ann")
    registry.set_alias("test", "production", NEWER, actor="ci", reason="try")
    r = client.get("/api/v1/environments")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["current"] == "dev"
    assert [e["name"] for e in body["items"]] == ["dev", "staging", "prod", "test"]
    dev, staging, prod, test = body["items"]
    assert dev["production"] == OLD and dev["gateway_port"] == 8080
    assert dev["active_rollout"]["id"] == record.id and dev["active_rollout"]["phase"] == "Pending"
    assert staging["production"] is None and staging["active_rollout"] is None
    assert (prod["approval"], prod["reason_required"], prod["gateway_port"]) == (True, True, None)
    assert (dev["approval"], dev["reason_required"]) == (False, False)
    assert test["production"] == NEWER and test["gateway_port"] is None
    # this gateway's own environment has the port it was reached at, whatever the file says
    elsewhere = client.get("http://testserver:9123/api/v1/environments").json()["items"]
    assert [e["gateway_port"] for e in elsewhere[:2]] == [9123, 8081]


# -- overview ---------------------------------------------------------------------------


def test_the_overview_of_an_environment_with_a_running_rollout(
    registry: Registry, client: TestClient
) -> None:
    # Given a finished rollout, a running one, a staging alias and a live model server
    first = ops.start(registry, CANARY, NEW, env="dev", actor="ann")
    ops.abort_and_wait(registry, "dev", first, actor="bob", reason="bad", wait_s=10)
    running = ops.start(registry, CANARY, NEWER, env="dev", actor="ann")
    registry.set_alias("dev", "staging", NEWER, actor="ci", reason="qa")
    registry.register_endpoint("dev", OLD, "http://127.0.0.1:9001", pid=None)
    # When the overview is read (of this gateway's env by default)
    r = client.get("/api/v1/overview")
    assert r.status_code == 200, r.text
    body = r.json()
    # Then it has production, the aliases, the running and the last rollout, the split
    assert body["env"] == "dev"
    assert body["production"] == {
        "ref": OLD,
        "name": "chat",
        "version": "1.0.0",
        "backend": "openai",
        "model": "tiny at http://127.0.0.1:9/v1",
    }
    assert body["aliases"] == [
        {"alias": "production", "ref": OLD},
        {"alias": "staging", "ref": NEWER},
    ]
    assert body["rollout"]["id"] == running.id and body["rollout"]["steps"][0]["text"] == (
        "weight 20%"
    )
    assert body["last_rollout"]["id"] == first.id and body["last_rollout"]["phase"] == "Aborted"
    assert body["weights"] == {OLD: 100.0} and body["traffic"]["stable"] == OLD
    assert [(e["ref"], e["url"]) for e in body["endpoints"]] == [(OLD, "http://127.0.0.1:9001")]
    # And the latest events of dev, newest first
    events = body["events"]
    assert 0 < len(events) <= 20
    assert [e["id"] for e in events] == sorted((e["id"] for e in events), reverse=True)
    assert events[0]["kind"] == "alias.moved" and "dev/staging" in events[0]["message"]
    assert "rollout.requested" in {e["kind"] for e in events}
    assert all(set(e) == {"id", "at", "actor", "kind", "message", "data"} for e in events)


def test_the_overview_of_another_environment_and_a_bad_name(
    registry: Registry, client: TestClient
) -> None:
    empty = client.get("/api/v1/overview", params={"env": "staging"})
    assert empty.status_code == 200, empty.text
    body = empty.json()
    assert body["env"] == "staging" and body["production"] is None and body["rollout"] is None
    assert body["aliases"] == [] and body["last_rollout"] is None and body["events"] == []
    bad = client.get("/api/v1/overview", params={"env": "Not An Env"})
    assert bad.status_code == 400
    assert "not a valid environment name" in bad.json()["error"]["message"]


def test_the_weights_are_by_release(registry: Registry, client: TestClient) -> None:
    registry.set_traffic(
        "dev",
        registry.get_traffic("dev").with_(canary=NEW, canary_weight=20),
        actor="a",
        reason="try",
    )
    assert client.get("/api/v1/overview").json()["weights"] == {OLD: 80.0, NEW: 20.0}


# -- live -------------------------------------------------------------------------------


def test_live_figures_per_version_and_arm(registry: Registry, client: TestClient) -> None:
    # Given an experiment over two releases, and a canary-less old release that still
    # answered (it was stable a moment ago)
    experiment = Experiment("ab", (Variant("control", OLD, 50), Variant("treatment", NEW, 50)))
    registry.set_traffic(
        "dev", registry.get_traffic("dev").with_(experiment=experiment), actor="a", reason="ab"
    )
    registry.register_endpoint("dev", NEWER, "http://127.0.0.1:9003", pid=None)
    gw = gateway(client)
    assert gw.state.refresh()
    window = gw.metrics.window
    for latency in (0.1, 0.2, 0.3, 0.4):
        window.request(OLD, error=False, latency=latency, ttft=0.05, tokens_per_second=40.0)
    window.request(NEW, error=True)
    window.request(NEWER, error=False, latency=1.0)
    # And a rating given to an answer of the treatment's release
    at = datetime.now(timezone.utc)
    registry.record_queries([QueryRecord("q1", "dev", NEW, "treatment", "chat", 200, at)])
    registry.add_feedback("q1", rating=4)
    # When the live figures are read
    r = client.get("/api/v1/live", params={"window": 30})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["env"] == "dev" and body["window"] == 30.0 and body["at"] > 0
    versions = {(v["ref"], v["variant"]): v for v in body["versions"]}
    # Then each arm has its share and figures
    control = versions[(OLD, "control")]
    assert (control["role"], control["weight"], control["requests"]) == ("arm", 50.0, 4)
    assert control["requests_per_s"] == pytest.approx(4 / 30)
    assert control["error_rate"] == 0.0 and control["p50_s"] == pytest.approx(0.25)
    assert control["p95_s"] == pytest.approx(0.385)
    assert control["ttft_p50_s"] == pytest.approx(0.05) and control["tokens_per_s"] == 40.0
    assert control["mean_rating"] is None and control["ratings"] == 0
    treatment = versions[(NEW, "treatment")]
    assert treatment["error_rate"] == 1.0 and treatment["p50_s"] is None
    assert (treatment["mean_rating"], treatment["ratings"]) == (4.0, 1)
    # And the release that answered outside the policy is there too
    other = versions[(NEWER, None)]
    assert (other["role"], other["weight"], other["requests"]) == ("other", None, 1)
    assert len(versions) == 3


def test_live_lists_stable_and_canary_without_traffic_yet(
    registry: Registry, client: TestClient
) -> None:
    registry.set_traffic(
        "dev",
        registry.get_traffic("dev").with_(canary=NEW, canary_weight=10),
        actor="a",
        reason="try",
    )
    assert gateway(client).state.refresh()
    body = client.get("/api/v1/live").json()
    assert body["window"] == 10.0
    assert [(v["ref"], v["role"], v["weight"], v["requests"]) for v in body["versions"]] == [
        (OLD, "stable", 90.0, 0),
        (NEW, "canary", 10.0, 0),
    ]
    assert body["versions"][0]["error_rate"] is None
    for bad in ("0", "3601", "soon"):
        assert client.get("/api/v1/live", params={"window": bad}).status_code in (400, 422)


# -- who may read -----------------------------------------------------------------------


def test_reads_follow_read_access(registry: Registry, tmp_path: Path) -> None:
    check_read_access(
        registry, tmp_path, ["/api/v1/environments", "/api/v1/overview", "/api/v1/live"]
    )
    with client_for(registry, tmp_path, read_access="token") as c:
        assert c.get("/api/v1/whoami").status_code == 401
        assert c.get("/api/v1/whoami", headers=AUTH).json()["role"] == "admin"


def test_every_overview_route_is_in_the_openapi_document(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    for path in ("/api/v1/environments", "/api/v1/overview", "/api/v1/live", "/api/v1/whoami"):
        assert "get" in document["paths"][path], path
    schemas = set(document["components"]["schemas"])
    assert {"EnvironmentsView", "OverviewView", "LiveView", "LiveVersion"} <= schemas
