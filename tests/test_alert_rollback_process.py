"""Rollback on an alert after a promotion, with real processes (issue #13 point 4): a
release promoted into prod by `llmship promote`, prod's gateway (`llmship gateway
--env prod`), and a real Alertmanager with the shipped config. An alert posted to
Alertmanager reaches the gateway's webhook and production moves back; Alertmanager
delivering it again changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml

from _monitoring import Alertmanager, shipped_alertmanager
from _procs import GatewayProcess
from _registry import chat_registry
from llmship.registry import Registry

pytestmark = pytest.mark.slow

TOKEN = "alert-rollback-token"
OLD, NEW = "chat@1.0.0", "chat@1.1.0"


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def llmship(project: Path, *args: str) -> str:
    """``llmship ARGS`` in ``project`` as a user runs it; its output (exit 0 checked)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMSHIP_")}
    env |= {"LLMSHIP_HOME": str(project / ".llmship"), "LLMSHIP_ACTOR": "alice"}
    done = subprocess.run(
        [sys.executable, "-m", "llmship", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def production(registry: Registry) -> str | None:
    release = registry.get_alias("prod", "production")
    return release.ref if release is not None else None


def test_an_alert_after_a_promotion_rolls_production_back_once(tmp_path: Path) -> None:
    # Given a project whose prod rolls back on alerts, with 1.0.0 production in prod and
    # 1.1.0 production in staging
    project = tmp_path / "project"
    project.mkdir()
    environments = {"staging": {}, "prod": {"on_alert": "rollback"}}
    (project / "llmship.yaml").write_text(
        yaml.safe_dump({"environments": environments}, sort_keys=False)
    )
    db = project / ".llmship" / "registry.db"
    db.parent.mkdir()
    with chat_registry(db, ("1.0.0", "1.1.0"), env="prod") as registry:
        registry.set_alias("staging", "production", NEW, actor="ci", reason="staged")
        # When 1.1.0 is promoted into prod
        out = llmship(project, "promote", NEW, "--to", "prod", "--reason", "ship it")
        assert production(registry) == NEW, out
        # and prod's gateway runs, with Alertmanager delivering rollback alerts to it
        gateway = GatewayProcess(
            project, "--env", "prod", env={"LLMSHIP_ADMIN_TOKEN": TOKEN, "LLMSHIP_ACTOR": "gw"}
        )
        workdir = tmp_path / "alertmanager"
        token = tmp_path / "admin-token"
        token.write_text(TOKEN)
        config = shipped_alertmanager(gateway.url, token)
        config["route"]["repeat_interval"] = "1s"  # deliver the same alert again soon
        alertmanager = Alertmanager(workdir, config)
        try:
            gateway.wait_ready(path="/healthz")
            alertmanager.wait_ready()
            # When an alert for the production release is posted to Alertmanager
            alert = {
                "labels": {"alertname": "HighErrorRate", "action": "rollback", "version": NEW},
                "annotations": {"summary": "5xx above 10%"},
                "startsAt": "2026-12-01T10:00:00Z",
            }
            posted = httpx.post(f"{alertmanager.url}/api/v2/alerts", json=[alert], timeout=10)
            assert posted.status_code == 200, posted.text
            # Then it reaches the gateway and production moves back to 1.0.0
            wait_for(lambda: production(registry) == OLD, "production back on 1.0.0")
            move = registry.alias_history("prod", "production")[-1]
            assert (move.from_ref, move.to_ref, move.actor) == (NEW, OLD, "alertmanager")
            assert move.reason == "alert HighErrorRate: 5xx above 10%"
            # When it is posted again, and Alertmanager delivers it again
            again = httpx.post(f"{alertmanager.url}/api/v2/alerts", json=[alert], timeout=10)
            assert again.status_code == 200, again.text
            line = f"alert HighErrorRate ({NEW}) in prod: repeated, handled before: rollback"
            wait_for(lambda: line in gateway.output(), "the gateway to get it again", 20)
        finally:
            alertmanager.stop()
            gateway.stop()
        # Then nothing changed: production stays on 1.0.0, moved back once
        assert production(registry) == OLD
        moves = [(m.from_ref, m.to_ref) for m in registry.alias_history("prod", "production")]
        assert moves == [(None, OLD), (OLD, NEW), (NEW, OLD)]
        [action] = registry.list_alert_actions("prod")
        assert (action.action, action.ref, action.alertname) == ("rollback", NEW, "HighErrorRate")
