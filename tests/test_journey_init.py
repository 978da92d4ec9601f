"""`llmship init` in an empty directory, then the project's own release under its own
`llmship up`: the commands a user types, with the real model and real processes, while
steady client traffic goes through the gateway the whole time and never sees an error.

Every command comes from what the project shows its user: the next commands `llmship
init` prints, the gate commands in the comments of its `llmship.yaml` and the rollout
command in the comment of `rollouts/canary.yaml`. So the guide and this test cannot
drift. `llmship up` starts every model server; the test starts none by hand.
"""

from __future__ import annotations

import re
import signal
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml

from _journey import (
    Shell,
    Traffic,
    Up,
    free_port,
    gateway_serves,
    production,
    rollout_status,
    stack,
    wait_for,
)
from llmship.registry import Registry
from llmship.release.promotion_guard import missing_gates

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900), pytest.mark.xdist_group("journeys")]

STABLE, NEW = "smollm2-chat@1.0.0", "smollm2-chat@1.1.0"
NEW_PROMPT = "You are a concise assistant."


def printed_guide(output: str) -> list[str]:
    """The commands `llmship init` prints under ``next:``, without their comments."""
    _, found, guide = output.partition("\nnext:\n")
    assert found, f"llmship init printed no next commands:\n{output}"
    commands = [re.sub(r"\s+#.*$", "", line).strip() for line in guide.splitlines()]
    return [c for c in commands if c]


def commented_commands(path: Path) -> list[str]:
    """The ``llmship`` commands a file shows in its comments (``#   llmship ...``)."""
    return re.findall(r"^\s*#\s+(llmship .+?)\s*$", path.read_text(), flags=re.M)


class Stages:
    """How long each stage of the journey took, in order."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.took: dict[str, float] = {}
        self._last = self.started

    def done(self, stage: str) -> None:
        now = time.monotonic()
        self.took[stage] = now - self._last
        self._last = now

    def report(self) -> str:
        total = time.monotonic() - self.started
        parts = ", ".join(f"{stage} {took:.0f}s" for stage, took in self.took.items())
        return f"init journey: {total:.0f}s ({parts})"


def promote_past_the_pause(shell: Shell, timeout: float) -> None:
    """Wait until the rollout waits for a person (its ``pause: {}``), then promote it
    with `llmship rollout promote`, as the person watching it would."""
    deadline = time.monotonic() + timeout
    while True:
        status = rollout_status(shell)
        assert status["phase"] not in ("Aborted", "Healthy"), status
        if status["phase"] == "Paused" and "until promoted" in status["step"]:
            shell.run("llmship rollout promote")
            return
        assert time.monotonic() < deadline, f"the rollout never waited for a person: {status}"
        time.sleep(3)  # each status is a new CLI process: poll gently on a small machine


def follow_the_guide(
    shell: Shell, guide: list[str], running: ExitStack, stages: Stages
) -> tuple[Up, Traffic]:
    """Run the commands `llmship init` printed, in order, as printed: `llmship up` as a
    process left running (steady traffic starts once it is ready), the others to the end."""
    up: Up | None = None
    traffic: Traffic | None = None
    for command in guide:
        if command == "llmship up":
            up = running.enter_context(stack(shell))
            # on LLMSHIP_GATEWAY_PORT, which wins over dev's gateway_port in llmship.yaml
            assert f"gateway at http://127.0.0.1:{shell.port}" in up.output()
            wait_for(gateway_serves(shell.url, STABLE), "the gateway to serve 1.0.0")
            traffic = running.enter_context(Traffic(shell.url))
            stages.done("llmship up")
        elif command.startswith("pytest"):
            tests = shell.run(command, timeout=600).stdout
            assert re.search(r"\b2 passed\b", tests), tests
            stages.done("pytest tests/")
        else:
            shell.run(command)
    assert up is not None and traffic is not None, guide
    return up, traffic


def pass_the_gates(shell: Shell, candidate: str, env: str, stages: Stages) -> None:
    """Run each gate the project's llmship.yaml requires for ``env``'s production, with
    the command its comments show; each is recorded, and when all passed none is missing.

    A gate may fail (exit 1) for a real reason here: the load test's latency SLO is
    absolute, and CI runs other tests beside this one on two cores. The project's own
    rollout is in `dev`, whose environment requires no gate, so the journey goes on."""
    config_path = shell.cwd / "llmship.yaml"
    config = yaml.safe_load(config_path.read_text())
    required = config["environments"][env]["require"]
    assert required, config
    shown = commented_commands(config_path)
    passed = True
    for gate in required:
        commands = [c for c in shown if c.startswith(f"llmship {gate} ") and candidate in c]
        assert len(commands) == 1, (gate, shown)
        done = shell.run(commands[0], codes=(0, 1), timeout=600)
        print(f"$ {commands[0]}\n{done.stdout}")
        assert re.search(r"\brun \d+", done.stdout), done.stdout  # recorded in the registry
        passed = passed and done.returncode == 0
        stages.done(f"llmship {gate}" + ("" if done.returncode == 0 else " (failed)"))
    home = shell.cwd / ".llmship"
    with Registry.open(f"sqlite:///{home / 'registry.db'}", home=home) as registry:
        runs = registry.latest_gate_runs(candidate)
        assert {g for g in required if g in runs} == set(required), runs
        assert (missing_gates(required, runs) == []) == passed


def test_a_new_project_releases_its_next_version_under_its_own_stack(tmp_path: Path) -> None:
    stages = Stages()
    # Given an empty directory, and `llmship init my-service` run in it
    shell = Shell(tmp_path, free_port())
    guide = printed_guide(shell.run("llmship init my-service").stdout)
    assert guide[0] == "cd my-service", guide
    stages.done("init")

    with ExitStack() as running:
        # When the user runs the next commands it printed, `llmship up` among them
        up, traffic = follow_the_guide(shell, guide, running, stages)
        assert shell.cwd.name == "my-service"
        assert production(shell) == STABLE

        # And makes a new version: another system prompt in a new spec file, the
        # version the canary's comment names, registered
        rollout_commands = commented_commands(shell.cwd / "rollouts/canary.yaml")
        assert len(rollout_commands) == 1, rollout_commands
        assert rollout_commands[0].endswith(f"--candidate {NEW}"), rollout_commands
        shell.run(
            "grep -v '^#' models/smollm2-chat-1.0.0.yaml | sed"
            " -e 's/^version: 1.0.0/version: 1.1.0/'"
            f" -e 's/system: You are a helpful assistant./system: {NEW_PROMPT}/'"
            " > models/smollm2-chat-1.1.0.yaml"
        )
        registered = shell.run("llmship models register models/smollm2-chat-1.1.0.yaml")
        assert f"registered {NEW}" in registered.stdout
        stages.done("new version")

        # And passes every gate the project requires before production (env prod)
        pass_the_gates(shell, NEW, "prod", stages)

        # And rolls it out with the project's canary, promoting past its pause
        assert NEW in shell.run(rollout_commands[0]).stdout
        promote_past_the_pause(shell, timeout=120)
        watched = shell.run("llmship rollout status --watch", timeout=480).stdout
        assert "Healthy" in watched, watched
        stages.done("rollout to Healthy")

        # Then production is the new version, and the gateway serves it
        status = rollout_status(shell)
        assert (status["phase"], status["candidate"]) == ("Healthy", NEW), status
        assert production(shell) == NEW
        wait_for(gateway_serves(shell.url, NEW), "the gateway to serve 1.1.0")
        switched = time.monotonic()
        wait_for(lambda: NEW in traffic.versions(since=switched), "an answer from 1.1.0")
        traffic.stop()
        # And no client saw an error, on either version
        traffic.assert_no_errors()
        assert {STABLE, NEW} <= traffic.versions()
        # And Ctrl-C stops the whole stack within a few seconds
        took = up.interrupt(signal.SIGINT)
        assert took < 10, up.output()
        stages.done("switch and Ctrl-C")
    answers = len(traffic.snapshot())
    print(f"\n{stages.report()}; {answers} requests, none failed; Ctrl-C took {took:.1f}s")
