"""The README, run as written: its set-up and every command of its tour, in order, on a
fresh copy of the project, under `llmship up`, with the real model, while steady client
traffic goes through the gateway the whole time and never sees an error.

The commands are read from the README itself, so the README and this test cannot drift:
a command added to the README runs here (or fails this test until it is given a check).
"""

from __future__ import annotations

import json
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from _journey import (
    REPO,
    Shell,
    Traffic,
    Up,
    free_port,
    gateway_serves,
    production,
    project,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900), pytest.mark.xdist_group("journeys")]
"""The journeys run one after the other on one worker: each runs several real model servers."""

STABLE, NEW = "smollm2-chat@1.0.0", "smollm2-chat@1.1.0"
EXAMPLE_QUERY_ID = "3f0c4e2b9a7d4f5e8c1b2a3d4e5f6a7b"
"""The request id the README shows; the test uses the one its own request got."""


@dataclass(frozen=True)
class Command:
    """One command of the README: its block's language, its text, the output shown after it."""

    lang: str
    text: str
    shown: tuple[str, ...] = ()


def readme_commands(text: str) -> list[Command]:
    """The commands of the runnable blocks (``sh``, ``console``, ``python``), in order."""
    commands: list[Command] = []
    for lang, body in re.findall(r"```(\w+)\n(.*?)```", text, flags=re.S):
        if lang == "python":
            commands.append(Command(lang, body))
            continue
        if lang not in ("sh", "console"):
            continue
        lines: list[list[str]] = []  # per command: its text, then the lines shown after it
        continued = False
        for line in body.splitlines():
            if continued:
                lines[-1][0] += "\n" + line
            elif lang == "console" and not line.startswith("$ "):
                lines[-1].append(line)
                continue
            elif line.strip():
                lines.append([line.removeprefix("$ ")])
            continued = line.endswith("\\")
        commands += [Command(lang, first, tuple(rest)) for first, *rest in lines]
    return commands


def without_comment(command: str) -> str:
    return re.sub(r"\s+# .*$", "", command, flags=re.M)


def masked(line: str) -> str:
    """A line with what differs from run to run (ids and hashes) masked."""
    return re.sub(r"\b[0-9a-f]{12,32}\b", "<id>", line)


def shows(output: str, expected: tuple[str, ...]) -> None:
    """Each line the README shows is in ``output``, ids and numbers aside; a header
    line (``name: value``) only needs its header."""
    got = [masked(line.rstrip("\r")) for line in output.splitlines()]
    for line in expected:
        if re.match(r"^[a-z-]+: ", line):
            name = line.split(":")[0]
            assert any(g.lower().startswith(name + ":") for g in got), (line, output)
        else:
            assert masked(line) in got, (line, output)


TOUR = [
    "make up",
    "make test",
    "source .venv/bin/activate && llmship demo",
    "curl -s http://127.0.0.1:8080/predict",
    "from openai import OpenAI",
    "grep -v '^#' models/smollm2-chat-1.0.0.yaml",
    "llmship models register models/smollm2-chat-1.1.0.yaml",
    "llmship alias set production smollm2-chat@1.1.0",
    "llmship alias history production",
    "llmship rollback",
    "llmship traffic set --canary smollm2-chat@1.1.0 --weight 20",
    "curl -si http://127.0.0.1:8080/predict",
    "curl -s http://127.0.0.1:8080/feedback",
    "llmship traffic set --reset",
    "llmship eval --dataset evals/smoke.jsonl --candidate smollm2-chat@1.1.0",
    "llmship loadtest --release smollm2-chat@1.1.0",
    "llmship rollout start rollouts/chat-canary.yaml --candidate smollm2-chat@1.1.0",
    "llmship rollout status --watch",
    "llmship init my-service && cd my-service",
    "llmship models register models/smollm2-chat-1.0.0.yaml",
    "llmship alias set production smollm2-chat@1.0.0",
    "pytest tests/ -v",
]
"""How each README command begins, in order: the test knows each one."""


def test_the_readme_lists_the_commands_this_test_runs() -> None:
    commands = [c.text for c in readme_commands((REPO / "README.md").read_text())]
    assert len(commands) == len(TOUR), commands
    for command, start in zip(commands, TOUR, strict=True):
        assert command.startswith(start), (command, start)


class Tour:
    """The README's commands, run one after the other in a fresh checkout."""

    def __init__(self, root: Path):
        self.root = root
        self.shell = Shell(root, free_port())
        self.up: Up | None = None
        self.traffic: Traffic | None = None
        self.query_id = ""
        self.timings: dict[str, float] = {}

    def run(self, step: Command) -> None:
        command = without_comment(step.text)
        shell = self.shell
        if command == "make up":
            # `make up` installs (done: this test runs in the virtualenv), then runs `llmship up`
            self.up = Up(shell).wait_ready()
            assert f"gateway at http://127.0.0.1:{shell.port}" in self.up.output()
            self.traffic = Traffic(shell.url).__enter__()
        elif command == "make test":
            pass  # this very suite
        elif command.endswith("llmship demo"):
            pass  # tests/test_demo.py runs `llmship demo` as docs/demo.md and this README show it
        elif step.lang == "python":
            out = shell.run(f"python - <<'PY'\n{command}\nPY").stdout
            assert out.strip(), "the OpenAI client printed no answer"
        elif "/feedback" in command:
            assert self.query_id, "no request id to rate"
            out = shell.run(command.replace(EXAMPLE_QUERY_ID, self.query_id)).stdout
            assert json.loads(out)["query_id"] == self.query_id
        elif command.startswith(("llmship eval", "llmship loadtest")):
            # a gate: 0 passed, 1 failed; either way its reports are written
            shell.run(command, codes=(0, 1), timeout=600)
            for report in re.findall(r"--(?:junit|markdown|html) (\S+)", command):
                assert (shell.cwd / report).stat().st_size > 0, report
        elif command.startswith("llmship rollout status --watch"):
            out = shell.run(command, timeout=400).stdout
            assert "Healthy" in out, out
            assert production(shell) == NEW
            wait_for(gateway_serves(shell.url, NEW), "the gateway to serve 1.1.0")
        else:
            out = shell.run(command, timeout=600).stdout
            shows(out, step.shown)
            self._after(command, out)

    def _after(self, command: str, out: str) -> None:
        if "| grep -i '^x-'" in command:
            found = re.search(r"x-request-id: (\w+)", out, re.I)
            assert found, out
            self.query_id = found[1]
        if command.startswith("llmship alias set production smollm2-chat@1.1.0"):
            wait_for(gateway_serves(self.shell.url, NEW), "the gateway to serve 1.1.0")
        if command == "llmship rollback":
            wait_for(gateway_serves(self.shell.url, STABLE), "the gateway to serve 1.0.0")

    def close(self) -> None:
        if self.traffic is not None:
            self.traffic.stop()
        if self.up is not None and self.up.proc.poll() is None:
            self.up.interrupt()


def test_the_readme_tour_runs_as_written(tmp_path: Path) -> None:
    tour = Tour(project(tmp_path))
    started = time.monotonic()
    try:
        for step in readme_commands((REPO / "README.md").read_text()):
            began = time.monotonic()
            tour.run(step)
            tour.timings[step.text.splitlines()[0][:60]] = time.monotonic() - began
        assert tour.up is not None and tour.traffic is not None
        tour.traffic.stop()
        # Under steady traffic the whole time, no client saw an error
        tour.traffic.assert_no_errors()
        assert {STABLE, NEW} <= tour.traffic.versions()
        # Ctrl-C stops everything within a few seconds
        took = tour.up.interrupt(signal.SIGINT)
        assert took < 10, tour.up.output()
    finally:
        tour.close()
    slowest = sorted(tour.timings.items(), key=lambda kv: -kv[1])[:6]
    print(f"README tour: {time.monotonic() - started:.0f}s; slowest: {slowest}")
