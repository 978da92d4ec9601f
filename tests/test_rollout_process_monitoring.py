"""Alerts that abort a rollout run by the controller as a real process: an Alertmanager
webhook posted to the gateway, and a real Prometheus scraping the gateway with the
shipped rules, its alerts delivered by a real Alertmanager."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _monitoring import Alertmanager, Prometheus, Receiver, shipped_alertmanager, shipped_rules
from _rollout_stack import (
    ADMIN,
    BAD,
    GOOD,
    STABLE,
    TOKEN,
    Load,
    Stack,
    wait_until,
)

pytest_plugins = ["_rollout_stack_fixtures"]  # the fixtures stack (one per file) and fresh
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("rollout_process")]  # one stack, one worker


def alert_payload(labels: dict[str, str], status: str = "firing") -> dict[str, Any]:
    alert = {
        "status": status,
        "labels": {"alertname": "LlmHighErrorRate", "action": "rollback", **labels},
        "annotations": {"summary": "error rate above 5%"},
        "startsAt": "2024-05-01T12:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": "c0ffee0123456789",
    }
    return {
        "version": "4",
        "groupKey": '{}:{action="rollback"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "llmship",
        "groupLabels": {"action": "rollback"},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager:9093",
        "alerts": [alert],
    }


def test_an_alertmanager_alert_aborts_a_running_rollout_once(fresh: Stack, tmp_path: Path) -> None:
    stack = fresh
    # Given a canary that holds 20% of the traffic until a person promotes it
    spec = {
        "name": "alerted-canary",
        "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}},
    }
    rollout_id = stack.start_rollout(tmp_path, spec, GOOD)
    wait_until(lambda: stack.rollout(rollout_id).step_index == 1, "the pause step")
    wait_until(lambda: stack.canary_weight() == 20, "the canary at 20%")
    alerts = f"{stack.gateway.url}/api/v1/alerts"
    # When a resolved alert arrives, nothing happens
    resolved = httpx.post(alerts, json=alert_payload({"version": GOOD}, "resolved"), headers=ADMIN)
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["aborted"] == []
    # When Alertmanager delivers a firing rollback alert naming the candidate
    r = httpx.post(alerts, json=alert_payload({"version": GOOD}), headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["aborted"] == ["alerted-canary"]
    # and delivers it again at once (the controller may not have applied it yet)
    again = httpx.post(alerts, json=alert_payload({"version": GOOD}), headers=ADMIN)
    assert again.status_code == 200, again.text
    assert again.json()["aborted"] == []
    # Then the rollout is aborted once, by alertmanager, with the alert as the reason
    record = stack.wait_phase(rollout_id, "Aborted", "Healthy")
    assert record.phase == "Aborted"
    assert "LlmHighErrorRate" in (record.abort_reason or ""), record.abort_reason
    wait_until(lambda: stack.canary_weight() == 0, "all traffic back on stable")
    intents = stack.registry.list_rollout_intents(rollout_id)
    assert [(i.kind, i.actor, i.outcome) for i in intents] == [("abort", "alertmanager", "applied")]
    events = stack.events(rollout_id)
    assert len(stack.events(rollout_id, "rollout.aborted")) == 1
    # When the same alert is delivered once more, after the abort
    late = httpx.post(alerts, json=alert_payload({"version": GOOD}), headers=ADMIN)
    # Then it changes nothing
    assert late.status_code == 200, late.text
    assert late.json()["aborted"] == []
    time.sleep(1.0)  # five controller passes
    assert stack.registry.list_rollout_intents(rollout_id) == intents
    assert stack.events(rollout_id) == events
    assert stack.rollout(rollout_id).phase == "Aborted"
    # and a malformed payload is refused
    assert httpx.post(alerts, json={"version": "4"}, headers=ADMIN).status_code == 400


# -- Prometheus and Alertmanager ------------------------------------------------------------

SHIPPED_RULES = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "rules.yml"


@pytest.fixture(scope="module")
def prometheus(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """A real Prometheus scraping the gateway every second, with the shipped rules (and
    no Alertmanager: their alerts go nowhere)."""
    target = stack.gateway.url.removeprefix("http://")
    prom = Prometheus(tmp_path_factory.mktemp("prometheus"), [target], [SHIPPED_RULES])
    try:
        prom.wait_ready()
        yield prom
    finally:
        prom.stop()


def test_the_shipped_rules_load_and_find_the_gateways_metrics(
    fresh: Stack, prometheus: Prometheus
) -> None:
    stack = fresh
    for _ in range(3):
        r = httpx.post(f"{stack.gateway.url}/predict", json={"prompt": "Hi", "max_new_tokens": 2})
        assert r.status_code == 200
    # a streamed request: only those have a time to first token (what SlowFirstToken reads)
    chat = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "stream": True}
    r = httpx.post(f"{stack.gateway.url}/v1/chat/completions", json=chat, timeout=60)
    assert r.status_code == 200 and r.text.rstrip().endswith("data: [DONE]")
    # the metric families the rules query, with their types, as Prometheus scraped them
    wanted = {
        "http_requests_total": "counter",
        "llmship_upstream_failures_total": "counter",
        "llm_time_to_first_token_seconds": "histogram",
        "llmship_registry_up": "gauge",
    }

    def scraped() -> dict[str, str]:
        meta = httpx.get(f"{prometheus.url}/api/v1/metadata", timeout=10).json()["data"]
        return {name: meta[name][0]["type"] for name in wanted if name in meta}

    wait_until(lambda: scraped() == wanted, "every metric the rules use", timeout=30)
    rules = httpx.get(f"{prometheus.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {rule["name"]: rule["health"] for group in rules for rule in group["rules"]}
    assert loaded == dict.fromkeys(
        ["HighErrorRate", "CandidateFailing", "SlowFirstToken", "RegistryUnreachable"], "ok"
    )


def prometheus_canary(name: str, address: str) -> dict[str, Any]:
    """A canary judged by a PromQL query: no upstream failures of the candidate in the
    last 4 s (what Prometheus scraped from the gateway)."""
    query = (
        'sum(increase(llmship_upstream_failures_total{version="{{args.version}}"}[4s]))'
        " or vector(0)"
    )
    return {
        "name": name,
        "strategy": {
            "canary": {
                "steps": [{"setWeight": 30}, {"pause": {"duration": "6s"}}, {"setWeight": 100}],
                "analysis": {"templates": [{"templateName": "prom"}]},
            }
        },
        "analysisTemplates": [
            {
                "name": "prom",
                "metrics": [
                    {
                        "name": "upstream-failures",
                        "initialDelay": "4s",
                        "interval": "1s",
                        "successCondition": "result[0] == 0",
                        "provider": {"prometheus": {"address": address, "query": query}},
                    }
                ],
            }
        ],
    }


@pytest.mark.parametrize(
    ("candidate", "phase"),
    [(GOOD, "Healthy"), (BAD, "Aborted")],
    ids=["no-failures-promoted", "failures-aborted"],
)
def test_a_prometheus_analysis_judges_the_canary(
    fresh: Stack, prometheus: Prometheus, tmp_path: Path, candidate: str, phase: str
) -> None:
    stack = fresh
    # Given a canary whose analysis is a PromQL query on what Prometheus scraped
    spec = prometheus_canary(f"prom-{phase.lower()}", prometheus.url)
    # When it runs under client load
    with Load(stack.gateway.url) as load:
        rollout_id = stack.start_rollout(tmp_path, spec, candidate)
        record = stack.wait_phase(rollout_id, "Healthy", "Aborted", timeout=90)
        stack.wait_production(GOOD if phase == "Healthy" else STABLE)
    # Then the query's answer decided, and no client saw an error either way
    assert record.phase == phase, (record.message, stack.events(rollout_id))
    values = [m.value for m in stack.registry.list_measurements(rollout_id)]
    if phase == "Healthy":
        assert values and all(v == [0.0] for v in values), values
    else:
        assert "upstream-failures" in (record.abort_reason or ""), record.abort_reason
        assert values[-1][0] > 0, values
    assert load.errors() == []


def test_a_prometheus_alert_delivered_by_alertmanager_aborts_the_rollout(
    fresh: Stack, tmp_path: Path
) -> None:
    stack = fresh
    # Given Prometheus with the shipped alerting rules, and Alertmanager with the shipped
    # config: action=rollback alerts to the gateway's webhook with the admin token, and
    # every alert to Slack (a stand-in here). Only the rules' `for:` durations are
    # rewritten (to 0s), so the test does not wait minutes; the expressions are as shipped.
    token = tmp_path / "admin-token"
    token.write_text(TOKEN)
    rules = shipped_rules(tmp_path / "rules.yml", for_="0s")
    workdir = tmp_path / "alertmanager"
    workdir.mkdir()
    with Receiver() as slack:

        def posted() -> list[str]:
            return [body["attachments"][0]["text"] for _, body in slack.posts]

        (workdir / "slack-webhook-url").write_text(f"{slack.url}/slack")
        alertmanager = Alertmanager(workdir, shipped_alertmanager(stack.gateway.url, token))
        target = stack.gateway.url.removeprefix("http://")
        prom: Prometheus | None = None
        try:
            alertmanager.wait_ready()
            prom = Prometheus(tmp_path / "prometheus", [target], [rules], alertmanager.url)
            prom.wait_ready()
            # When a failing candidate is rolled out with no analysis of its own, and holds
            # 30% until a person promotes it
            spec = {
                "name": "alerted-by-prometheus",
                "strategy": {"canary": {"steps": [{"setWeight": 30}, {"pause": {}}]}},
            }
            with Load(stack.gateway.url) as load:
                rollout_id = stack.start_rollout(tmp_path, spec, BAD)
                record = stack.wait_phase(rollout_id, "Aborted", "Healthy", timeout=90)
                wait_until(lambda: stack.canary_weight() == 0, "all traffic back on stable")
            wait_until(
                lambda: any("CandidateFailing" in text for text in posted()),
                "the alert posted to Slack too",
            )
        finally:
            if prom is not None:
                prom.stop()
            alertmanager.stop()
    # Then the shipped rule's alert, fired by Prometheus and delivered by Alertmanager,
    # aborted it, and Slack heard of it
    assert record.phase == "Aborted", (record.message, stack.events(rollout_id))
    assert "CandidateFailing" in (record.abort_reason or ""), record.abort_reason
    assert any("firing: CandidateFailing" in text for text in posted()), posted()
    intents = stack.registry.list_rollout_intents(rollout_id)
    assert [(i.kind, i.actor) for i in intents] == [("abort", "alertmanager")]
    assert stack.production() == STABLE
    assert load.errors() == []
