"""The shipped Prometheus rules and configs, and the Alertmanager config, checked and
unit-tested by the real tools (`promtool`, `amtool`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from _monitoring import binary

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


@pytest.mark.parametrize(
    "command",
    [
        ["promtool", "check", "rules", "prometheus/rules.yml"],
        ["promtool", "test", "rules", "prometheus/rules.test.yml"],
        ["promtool", "check", "config", "prometheus/prometheus.yml"],
        ["amtool", "check-config", "alertmanager/alertmanager.yml"],
    ],
    ids=["check-rules", "test-rules", "check-prometheus-config", "check-alertmanager-config"],
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
