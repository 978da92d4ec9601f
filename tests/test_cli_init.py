"""`llmship init`: the project it writes loads with every loader, runs its regression
tests against the real model (the way its CI workflow runs them), and nothing is
overwritten without --force. The CI files themselves: tests/test_init_ci.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from _cli import Run
from llmship.environments import load_environments
from llmship.eval.config import load_gate
from llmship.eval.dataset import load_dataset
from llmship.loadtest.config import load_gate_config
from llmship.release.bundled import bundled_spec
from llmship.release.spec import load_spec
from llmship.rollout.spec import load_rollout
from llmship.settings import load_settings

FILES = (
    "llmship.yaml",
    "models/smollm2-chat-1.0.0.yaml",
    "rollouts/canary.yaml",
    "evals/golden.jsonl",
    "tests/test_regression.py",
    ".github/workflows/llmship.yml",
    "Dockerfile",
    "locustfile.py",
)


def test_init_writes_a_project_every_loader_accepts(
    run: Run, cli_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = run("init", "proj").output
    project = cli_home / "proj"
    for name in (*FILES, ".gitignore"):
        assert f"wrote {Path('proj') / name}" in out
    assert "llmship models register models/smollm2-chat-1.0.0.yaml" in out
    assert "llmship alias set production smollm2-chat@1.0.0" in out
    # the release is the bundled one, exactly
    assert load_spec(project / FILES[1]).digest() == bundled_spec().digest()
    rollout = load_rollout(project / "rollouts/canary.yaml")
    assert rollout.strategy.canary is not None
    assert [s.set_weight for s in rollout.strategy.canary.steps if s.set_weight] == [20, 50, 100]
    dataset = load_dataset(project / "evals/golden.jsonl")
    assert [c.id for c in dataset.cases] == ["greeting", "capital", "hello-zh"]
    config = project / "llmship.yaml"
    assert load_gate(config).configured
    assert load_gate_config(config).slo == {"ttft_p95": 2.0, "error_rate": 0.01}
    envs = load_environments(config)
    assert {e.name: e.require for e in envs} == {
        "dev": (),
        "staging": ("eval",),
        "prod": ("eval", "loadtest"),
    }
    assert [e.gateway_port for e in envs] == [8080, 8081, 8082]
    monkeypatch.setenv("LLMSHIP_CONFIG", str(config))
    assert load_settings().env == "dev"
    assert (project / ".gitignore").read_text() == ".llmship/\n"


def test_init_overwrites_nothing_without_force(run: Run, cli_home: Path) -> None:
    (cli_home / ".gitignore").write_text("*.pyc")  # no final newline
    run("init")
    assert (cli_home / ".gitignore").read_text() == "*.pyc\n.llmship/\n"
    (cli_home / "llmship.yaml").write_text("env: staging\n")
    refused = run("init", code=2).output
    assert "already has llmship.yaml, models/smollm2-chat-1.0.0.yaml" in refused
    assert "--force" in refused
    assert (cli_home / "llmship.yaml").read_text() == "env: staging\n"
    (cli_home / "notes.txt").write_text("mine")
    forced = run("init", "--force").output
    assert "wrote llmship.yaml" in forced
    assert "wrote .gitignore" not in forced  # .llmship/ is there already
    assert "gates:" in (cli_home / "llmship.yaml").read_text()
    assert (cli_home / "notes.txt").read_text() == "mine"
    assert (cli_home / ".gitignore").read_text() == "*.pyc\n.llmship/\n"


def test_init_into_a_file_is_refused(run: Run, cli_home: Path) -> None:
    (cli_home / "taken").write_text("")
    assert "taken is a file; give a directory" in run("init", "taken", code=2).output


@pytest.mark.slow
def test_the_new_project_registers_and_passes_its_regression_tests(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "LLMSHIP_HOME": str(tmp_path / "proj" / ".llmship"),
        "LLMSHIP_TEST_THREADS": "1",
    }
    for name in ("LLMSHIP_CONFIG", "LLMSHIP_DATABASE_URL", "LLMSHIP_ENV"):
        env.pop(name, None)

    def llmship(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "llmship", *args],
            cwd=tmp_path / "proj",
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    (tmp_path / "proj").mkdir()
    llmship("init")
    llmship("models", "register", "models/smollm2-chat-1.0.0.yaml")
    llmship("alias", "set", "production", "smollm2-chat@1.0.0", "--reason", "first release")
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path / "proj",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "2 passed" in tests.stdout

    # And the CI workflow's test step, as written, on the release spec it names
    workflow = yaml.safe_load((tmp_path / "proj" / ".github/workflows/llmship.yml").read_text())
    step = next(
        s for s in workflow["jobs"]["gates"]["steps"] if "pytest tests/" in s.get("run", "")
    )
    ci = subprocess.run(
        ["bash", "-e", "-c", step["run"]],
        cwd=tmp_path / "proj",
        env={
            **env,
            "RELEASE_SPEC": workflow["env"]["RELEASE_SPEC"],
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ci.returncode == 0, ci.stdout + ci.stderr
    assert "2 passed" in ci.stdout
    assert 'failures="0"' in (tmp_path / "proj/reports/pytest.xml").read_text()
