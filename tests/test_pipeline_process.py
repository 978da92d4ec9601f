"""docs/pipeline.md's "Try it", run as written with the real model and real processes:
``llmship init``, two environments each served by its own ``llmship up --env NAME``,
then a good candidate (another system prompt) promoted into prod through its canary
under live traffic, and a bad one (a prompt that breaks the golden set's assertions)
rejected at the eval gate with production untouched.

The only changes to what a user types: the gateway ports 8081 and 8082 become free
ports, and the two ``llmship up`` run in the background instead of two terminals.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from _procs import Process, free_port
from llmship.registry import Registry

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("journeys")]

DOC = Path(__file__).resolve().parent.parent / "docs" / "pipeline.md"
PORTS = {"staging": "8081", "prod": "8082"}


def _blocks(lang: str) -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    found = re.findall(r"^```([\w-]*)[^\n]*\n(.*?)^```", text, flags=re.M | re.S)
    return [body for tag, body in found if tag == lang]


def _env(project: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMSHIP_", "PYTEST_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        LLMSHIP_HOME=str(project / ".llmship"),
        LLMSHIP_ACTOR="tester",
        PYTHONUNBUFFERED="1",
        CI="1",
    )
    return env


def _bash(project: Path, command: str, *, code: int = 0) -> str:
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=project,
        env=_env(project),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == code, f"`{command}` exited {done.returncode}:\n{output}"
    return output


@contextmanager
def _served(project: Path, env: str, port: int) -> Iterator[Process]:
    """``llmship up --env ENV`` until the block ends; its logs shown when the block fails."""
    up = Process(
        f"llmship up --env {env}",
        [sys.executable, "-m", "llmship", "up", "--env", env],
        project,
        project / f"up-{env}.log",
        _env(project),
    )
    try:
        up.wait_http(f"http://127.0.0.1:{port}/readyz", timeout=180)
        yield up
    except BaseException:
        logs = sorted((project / ".llmship" / "logs").rglob("*.log"))
        tails = "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-3000:]}" for p in logs)
        print(f"--- {up.name}\n{up.output()[-3000:]}\n{tails}", file=sys.stderr)
        raise
    finally:
        up.stop()


@pytest.mark.timeout(600)
def test_a_good_candidate_is_promoted_and_a_bad_one_rejected(tmp_path: Path) -> None:
    started = time.monotonic()
    project = tmp_path / "project"
    project.mkdir()
    setup, serve, runs = _blocks("bash")
    config, rollout = _blocks("yaml")
    ports = {env: free_port() for env in PORTS}

    # Given a project with two environments, each served by its own `llmship up`
    _bash(project, setup)
    for env, port in PORTS.items():
        config = config.replace(f"gateway_port: {port}", f"gateway_port: {ports[env]}")
    (project / "llmship.yaml").write_text(config, encoding="utf-8")
    (project / "rollouts" / "quick.yaml").write_text(rollout, encoding="utf-8")
    commands = serve.strip().splitlines()
    assert commands[-2:] == ["llmship up --env staging", "llmship up --env prod"]
    for command in commands[:-2]:
        _bash(project, command)
    with _served(project, "staging", ports["staging"]), _served(project, "prod", ports["prod"]):
        served = time.monotonic()
        good, bad, listing, show = runs.strip().splitlines()

        # When the good candidate runs through the pipeline: promoted
        out = _bash(project, good)
        assert "pipeline run 1 succeeded: smollm2-chat@1.1.0 promoted" in out, out
        for stage in ("tests", "eval", "loadtest", "release", "staging", "approval"):
            assert f"[1] {stage}: passed" in out, out
        assert "[1] production: passed" in out and "rollout 1 Healthy" in out, out
        promoted = time.monotonic()

        # When the bad one runs: rejected at the eval gate, production untouched
        out = _bash(project, bad, code=1)
        assert "pipeline run 2 failed at eval:" in out, out
        assert "failed the eval gate against smollm2-chat@1.1.0" in out, out
        rejected = time.monotonic()

        listed = _bash(project, listing)
        assert "succeeded" in listed and "failed" in listed, listed
        shown = _bash(project, show)
        assert "production" in shown and "Healthy" in shown, shown

    with Registry.open(f"sqlite:///{project / '.llmship' / 'registry.db'}") as registry:
        for env in PORTS:
            assert registry.resolve("production", env=env).ref == "smollm2-chat@1.1.0"
        first, second = registry.get_pipeline_run(1), registry.get_pipeline_run(2)
        for run in (first, second):
            times = ", ".join(f"{s.name} {s.seconds or 0:.0f}s" for s in run.stages if s.seconds)
            print(f"\npipeline run {run.id} ({run.state}): {times}")
        assert [s.state for s in first.stages] == ["passed"] * 7
        traffic = first.stage("production").detail["traffic"]
        assert traffic["sent"] > 0 and traffic["errors"] == 0, traffic
        assert (second.state, second.failed_stage) == ("failed", "eval")
        assert [s.state for s in second.stages][2:] == ["pending"] * 5
    report = (project / ".llmship" / "pipelines" / "1" / "report.md").read_text(encoding="utf-8")
    assert "## Rollout timeline" in report and "rollout quick (id 1)" in report, report
    assert (project / "candidates" / "smollm2-chat-1.1.0.yaml").exists()  # released
    assert not (project / "candidates" / "smollm2-chat-1.2.0.yaml").exists()  # rejected
    print(
        f"\npipeline journey: {time.monotonic() - started:.0f}s (served {served - started:.0f}s,"
        f" promoted {promoted - served:.0f}s, rejected {rejected - promoted:.0f}s)"
    )
