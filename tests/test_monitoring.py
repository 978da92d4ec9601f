"""The shipped Prometheus rules and configs, and the Alertmanager config, checked and
unit-tested by the real tools (`promtool`, `amtool`); the shipped Alertmanager config
run by a real Alertmanager, delivering to stand-ins for Slack and the gateway."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml

from _monitoring import Alertmanager, Receiver, binary, shipped_alertmanager

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


@pytest.mark.parametrize(
    "command",
    [
        ["promtool", "check", "rules", "prometheus/rules.yml"],
        ["promtool", "test", "rules", "prometheus/rules.test.yml"],
        ["promtool", "check", "rules", "prometheus/recording-rules.yml"],
        ["promtool", "test", "rules", "prometheus/recording-rules.test.yml"],
        ["promtool", "check", "config", "prometheus/prometheus.yml"],
        ["amtool", "check-config", "alertmanager/alertmanager.yml"],
    ],
    ids=[
        "check-rules",
        "test-rules",
        "check-recording-rules",
        "test-recording-rules",
        "check-prometheus-config",
        "check-alertmanager-config",
    ],
)
def test_the_shipped_monitoring_files_pass_the_real_tools(command: list[str]) -> None:
    done = subprocess.run(
        [binary(command[0]), *command[1:]],
        cwd=DEPLOY,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_the_local_prometheus_scrapes_gateway_model_servers_and_controller() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["rules.yml", "recording-rules.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"llmship-gateway", "llmship-model-servers", "llmship-controller"}
    [sd] = jobs["llmship-model-servers"]["http_sd_configs"]
    assert sd["url"] == "http://127.0.0.1:8080/api/v1/targets"
    assert sd["authorization"]["credentials_file"] == "../../.llmship/admin-token"
    assert jobs["llmship-controller"]["static_configs"] == [{"targets": ["127.0.0.1:9100"]}]


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_alertmanager_sends_every_alert_to_slack_and_rollbacks_to_the_gateway_too(
    tmp_path: Path,
) -> None:
    with Receiver() as slack, Receiver() as gateway:
        # Given the shipped config, the Slack webhook URL in slack-webhook-url beside it,
        # and a gateway stand-in for the rollback webhook
        workdir = tmp_path / "alertmanager"
        workdir.mkdir()
        (workdir / "slack-webhook-url").write_text(f"{slack.url}/services/T0/B0/x\n")
        token = tmp_path / "admin-token"
        token.write_text("alert-token")
        alertmanager = Alertmanager(workdir, shipped_alertmanager(gateway.url, token))
        try:
            alertmanager.wait_ready()
            # When Prometheus would send a rollback alert and one without an action
            alerts = [
                {
                    "labels": {
                        "alertname": "CandidateFailing",
                        "action": "rollback",
                        "version": "chat@1.1.0",
                        "severity": "warning",
                    }
                },
                {"labels": {"alertname": "RegistryUnreachable", "severity": "critical"}},
            ]
            r = httpx.post(f"{alertmanager.url}/api/v2/alerts", json=alerts, timeout=10)
            assert r.status_code == 200, r.text
            wait_for(lambda: len(slack.posts) >= 2 and gateway.posts, "both deliveries")
        finally:
            alertmanager.stop()
    # Then Slack got both, on the URL read from the file, in #alerts with the seed's text
    assert {path for path, _ in slack.posts} == {"/services/T0/B0/x"}
    texts = sorted(body["attachments"][0]["text"] for _, body in slack.posts)
    assert texts == ["firing: CandidateFailing\n", "firing: RegistryUnreachable\n"]
    assert {body["channel"] for _, body in slack.posts} == {"#alerts"}
    # and the gateway only the rollback one
    [(path, body)] = gateway.posts
    assert path == "/api/v1/alerts"
    assert [a["labels"]["alertname"] for a in body["alerts"]] == ["CandidateFailing"]
