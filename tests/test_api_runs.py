"""The dashboard's API for gate runs (``gateway/api_runs.py``): eval runs with their
cases and filters, load-test runs with their HTML report, over a real SQLite registry
holding realistic reports (the golden eval report, a load test built by the report
model)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from _dashboard_api import check_read_access, client_for
from _loadtest_reports import measured_report
from _registry import TickClock, make_spec
from llmship.eval.report_model import EvalReport
from llmship.loadtest import LoadPlan, RequestRecord
from llmship.registry import GateRun, Registry

GOLDEN = Path(__file__).resolve().parent / "data" / "eval_report_v1.json"
"""An eval report of chat@1.1.0 against chat@1.0.0 in dev: cases fr and err fail on
the candidate (a ``contains`` and a ``generation`` assertion); tags chat, en, zh."""


def loadtest_report(ref: str = "chat@1.1.0") -> dict[str, Any]:
    """A load-test report as ``llmship loadtest --json`` writes it, with a timeline."""
    records = [
        RequestRecord(1.0 + i * 0.5, 0.4 + i * 0.05, 0.1, 4, (0.1, 0.2), version=ref)
        for i in range(6)
    ]
    report = measured_report(
        LoadPlan(target="http://127.0.0.1:1", users=2, duration=3.0),
        {"ttft_p95": 0.5, "error_rate": 0.1},
        records,
        window=(1.0, 4.0),
        ref=ref,
        drained=4.5,
    )
    return report.to_json()


def record_eval(registry: Registry, env: str = "dev", ref: str = "chat@1.1.0") -> GateRun:
    data = json.loads(GOLDEN.read_text())
    report = EvalReport.from_json(data)
    return registry.record_gate_run(
        "eval",
        ref,
        env=env,
        passed=report.passed,
        summary=report.summary().to_json(),
        report=data,
        actor="ci",
        baseline_ref="chat@1.0.0",
    )


def record_loadtest(registry: Registry, env: str = "dev", ref: str = "chat@1.1.0") -> GateRun:
    report = loadtest_report(ref)
    return registry.record_gate_run(
        "loadtest",
        ref,
        env=env,
        passed=report["passed"],
        summary={"passed": report["passed"]},
        report=report,
        actor="ci",
    )


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry.open(f"sqlite:///{tmp_path}/r.db", home=tmp_path, clock=TickClock())
    try:
        for version in ("1.0.0", "1.1.0"):
            reg.register(make_spec(version=version), actor="ci")
        yield reg
    finally:
        reg.close()


@pytest.fixture
def client(registry: Registry, tmp_path: Path) -> Iterator[TestClient]:
    with client_for(registry, tmp_path) as c:
        yield c


# -- lists ---------------------------------------------------------------------------


def test_eval_runs_are_listed_newest_first_a_page_at_a_time(
    registry: Registry, client: TestClient
) -> None:
    # Given three eval runs (one in staging, one of 1.0.0) and a load test
    first = record_eval(registry)
    second = record_eval(registry, env="staging")
    third = record_eval(registry, ref="chat@1.0.0")
    record_loadtest(registry)
    # When the evals are listed two at a time
    page = client.get("/api/v1/evals", params={"limit": 2}).json()
    # Then the newest come first, with their summaries, and the total counts all three
    assert [r["id"] for r in page["items"]] == [third.id, second.id]
    assert (page["total"], page["limit"], page["offset"]) == (3, 2, 0)
    item = page["items"][1]
    assert item["kind"] == "eval" and item["env"] == "staging" and item["passed"] is False
    assert item["baseline_ref"] == "chat@1.0.0" and item["created_by"] == "ci"
    assert item["created_at"].endswith("+00:00")
    assert item["summary"]["failures"] == ["pass_rate: 0.6 < minimum 0.9"]
    rest = client.get("/api/v1/evals", params={"limit": 2, "offset": 2}).json()
    assert [r["id"] for r in rest["items"]] == [first.id]
    # And the filters by release and by environment narrow it
    by_ref = client.get("/api/v1/evals", params={"ref": "chat@1.1.0"}).json()
    assert [r["id"] for r in by_ref["items"]] == [second.id, first.id]
    by_env = client.get("/api/v1/evals", params={"env": "staging"}).json()
    assert [r["id"] for r in by_env["items"]] == [second.id]
    assert client.get("/api/v1/evals", params={"env": "prod"}).json()["total"] == 0


def test_the_registry_pages_gate_runs_on_each_database(db_url: str) -> None:
    with Registry.open(db_url, clock=TickClock()) as registry:
        for version in ("1.0.0", "1.1.0"):
            registry.register(make_spec(version=version), actor="ci")
        first, second = record_eval(registry), record_eval(registry, env="staging")
        loadtest = record_loadtest(registry)
        runs, total = registry.page_gate_runs(limit=2)
        assert [r.id for r in runs] == [loadtest.id, second.id] and total == 3
        assert runs[0].report == {} and runs[0].summary == {"passed": loadtest.passed}
        runs, total = registry.page_gate_runs(kind="eval", ref="chat@v1.1.0", offset=1)
        assert [r.id for r in runs] == [first.id] and total == 2
        runs, total = registry.page_gate_runs(env="staging", kind="eval")
        assert [r.id for r in runs] == [second.id] and total == 1


def test_load_tests_are_listed_apart_from_evals(registry: Registry, client: TestClient) -> None:
    record_eval(registry)
    run = record_loadtest(registry)
    page = client.get("/api/v1/loadtests").json()
    assert [r["id"] for r in page["items"]] == [run.id] and page["total"] == 1
    assert page["items"][0]["kind"] == "loadtest" and page["items"][0]["baseline_ref"] is None


def test_a_bad_filter_or_page_is_a_400(client: TestClient) -> None:
    r = client.get("/api/v1/evals", params={"ref": "production"})
    assert r.status_code == 400 and "NAME@VERSION" in r.json()["error"]["message"]
    assert client.get("/api/v1/loadtests", params={"env": "Bad Env"}).status_code == 400
    assert client.get("/api/v1/evals", params={"limit": 0}).status_code == 400
    assert client.get("/api/v1/evals", params={"offset": -1}).status_code == 400


# -- an eval run ---------------------------------------------------------------------


def test_an_eval_run_has_its_report_without_cases_and_its_filters(
    registry: Registry, client: TestClient
) -> None:
    run = record_eval(registry)
    r = client.get(f"/api/v1/evals/{run.id}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["run"]["id"] == run.id and body["run"]["ref"] == "chat@1.1.0"
    assert "cases" not in body["report"]
    assert body["report"]["schema"] == "llmship.eval/1"
    assert [m["metric"] for m in body["report"]["metrics"]][-2:] == ["pass_rate", "score"]
    assert body["tags"] == ["chat", "en", "zh"]
    assert body["assertion_types"] == ["contains", "generation", "icontains", "llm_rubric"]
    assert (body["cases_total"], body["cases_failed"]) == (6, 2)


def test_an_eval_runs_cases_are_filtered_and_paged(registry: Registry, client: TestClient) -> None:
    run = record_eval(registry)
    url = f"/api/v1/evals/{run.id}/cases"

    def ids(**params: Any) -> list[str]:
        r = client.get(url, params=params)
        assert r.status_code == 200, r.text
        return [case["id"] for case in r.json()["items"]]

    # every case, in report order, as the report stores it (both sides, assertions)
    assert ids() == ["fr", "zh", "html", "plain", "msg", "err"]
    [fr] = client.get(url, params={"limit": 1}).json()["items"]
    assert fr["baseline"]["output"] == "Paris" and fr["candidate"]["passed"] is False
    assert fr["candidate"]["assertions"][0] == {
        "type": "contains",
        "passed": False,
        "score": 0.0,
        "value": None,
        "reason": "does not contain 'Paris'",
    }
    # filters: tag, failed on the candidate, a failed assertion type, together
    assert ids(tag="zh") == ["zh"]
    assert ids(tag="en") == ["msg"]
    assert ids(failed="true") == ["fr", "err"]
    assert ids(failed="false") == ["zh", "html", "plain", "msg"]
    assert ids(assertion="contains") == ["fr"]
    assert ids(assertion="generation") == ["err"]
    assert ids(assertion="llm_rubric") == []  # it passed
    assert ids(tag="zh", failed="true") == []
    assert ids(tag="nope") == []
    # pages
    page = client.get(url, params={"failed": "true", "limit": 1, "offset": 1}).json()
    assert [c["id"] for c in page["items"]] == ["err"]
    assert (page["total"], page["limit"], page["offset"]) == (2, 1, 1)
    assert client.get(url, params={"failed": "maybe"}).status_code == 400


@pytest.mark.parametrize("path", ["", "/cases"])
def test_an_unknown_eval_run_or_a_load_test_is_a_404(
    registry: Registry, client: TestClient, path: str
) -> None:
    loadtest = record_loadtest(registry)
    for run_id in (str(loadtest.id), "999", "0", "-1", "abc", "²", "99999999999999999999999"):
        r = client.get(f"/api/v1/evals/{id}{path}")
        assert r.status_code == 404, (run_id, r.text)
    message = client.get(f"/api/v1/evals/{loadtest.id}{path}").json()["error"]["message"]
    assert f"/api/v1/loadtests/{loadtest.id}" in message


def test_a_stored_report_that_is_no_eval_report_is_a_422(
    registry: Registry, client: TestClient
) -> None:
    run = registry.record_gate_run(
        "eval", "chat@1.1.0", env="dev", passed=True, summary={}, report={"cases": []}, actor="ci"
    )
    for path in ("", "/cases"):
        r = client.get(f"/api/v1/evals/{run.id}{path}")
        assert r.status_code == 422 and "cannot be read" in r.json()["error"]["message"]


# -- a load-test run -----------------------------------------------------------------


def test_a_load_test_run_has_its_report_and_its_html_with_plots(
    registry: Registry, client: TestClient
) -> None:
    run = record_loadtest(registry)
    body = client.get(f"/api/v1/loadtests/{run.id}").json()
    assert body["run"]["id"] == run.id and body["run"]["kind"] == "loadtest"
    assert body["report"] == loadtest_report() | {"started_at": body["report"]["started_at"]}
    assert body["report"]["timeline"]
    r = client.get(f"/api/v1/loadtests/{run.id}/report.html")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "<svg" in r.text and "Latency over time" in r.text and "Requests over time" in r.text


def test_an_unknown_load_test_or_an_eval_is_a_404(registry: Registry, client: TestClient) -> None:
    evaluation = record_eval(registry)
    for path in ("", "/report.html"):
        for run_id in (str(evaluation.id), "999", "x1"):
            r = client.get(f"/api/v1/loadtests/{id}{path}")
            assert r.status_code == 404, (run_id, path, r.text)
            assert r.headers["content-type"].startswith("application/json")


def test_a_stored_report_that_is_no_load_test_report_is_a_422(
    registry: Registry, client: TestClient
) -> None:
    run = registry.record_gate_run(
        "loadtest", "chat@1.1.0", env="dev", passed=True, summary={}, report={"x": 1}, actor="ci"
    )
    for path in ("", "/report.html"):
        assert client.get(f"/api/v1/loadtests/{run.id}{path}").status_code == 422


# -- who may read ----------------------------------------------------------------------


READS = ["/api/v1/evals", "/api/v1/evals/1", "/api/v1/evals/1/cases", "/api/v1/loadtests"]


def test_reads_follow_read_access(registry: Registry, tmp_path: Path) -> None:
    record_eval(registry)
    check_read_access(registry, tmp_path, READS)


def test_the_routes_are_in_the_openapi_schema(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in (
        "/api/v1/evals",
        "/api/v1/evals/{id}",
        "/api/v1/evals/{id}/cases",
        "/api/v1/loadtests",
        "/api/v1/loadtests/{id}",
        "/api/v1/loadtests/{id}/report.html",
    ):
        assert "get" in paths[path], path
        assert paths[path]["get"]["tags"] == ["dashboard"]
    models = schema["components"]["schemas"]
    assert models["GateRunSummary"]["properties"]["passed"]["description"]
    assert models["EvalRunView"]["properties"]["cases_failed"]["description"]
