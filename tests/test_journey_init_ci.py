"""The workflow `llmship init` writes, run here job by job as GitHub Actions would run
it, with the real model and a registry the jobs share: a pull request that changes the
system prompt passes the tests and both gates, the merge releases that version, tags
it, makes it production in dev and staging, and the `prod` job (once GitHub's required
reviewers let it run) starts prod's canary with it.

Each ``run:`` step is run as written with bash (``-eo pipefail``, GitHub's default),
with the workflow's, job's and step's ``env:`` and ``GITHUB_OUTPUT`` /
``GITHUB_STEP_SUMMARY`` files; the expressions they use are evaluated from the run's
context. Steps of actions are not run (the checkout is the project itself, Python is
this one) except that an upload's path must exist; ``pip install`` is not run (llmship
is installed here); ``docker`` steps run only where a docker engine answers. Two
things differ from the file: the load test lasts 10 s instead of a minute, and its
latency SLO is loosened in llmship.yaml, as this machine runs other tests beside it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmship.registry import Registry
from llmship.scaffold import write_project

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SPEC = "models/smollm2-chat-1.0.0.yaml"
STABLE, NEW = "smollm2-chat@1.0.0", "smollm2-chat@1.1.0"
NEW_PROMPT = "You are a concise assistant."


def _docker_answers() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    done = subprocess.run([docker, "info"], capture_output=True, timeout=30, check=False)
    return done.returncode == 0


@dataclass
class StepResult:
    name: str
    outcome: str  # success, failure, skipped
    output: str = ""


@dataclass
class WorkflowRunner:
    """Runs a job's steps of the workflow in ``project``, as the runner would."""

    project: Path
    workflow: dict[Any, Any]
    env: dict[str, str]
    """The process environment of every step (beside the workflow's ``env:``)."""
    context: dict[str, str]
    """Values of the expressions' names: ``github.actor``, ``secrets.X``, ..."""
    overrides: Mapping[str, str] = field(default_factory=dict)
    """Workflow ``env:`` values replaced for this machine."""
    summary: str = ""

    def evaluate(self, expression: str, names: Mapping[str, Any]) -> Any:
        """A ``${{ }}`` expression of the forms the workflow uses (names, ``||``,
        ``&&``, ``==``, ``!=``, ``!``, ``cancelled()``, quoted strings)."""
        python = expression.replace("&&", " and ").replace("||", " or ")
        python = re.sub(r"!(?!=)", " not ", python).replace("cancelled()", "False")

        def name(match: re.Match[str]) -> str:
            if match.group(0) not in names:
                raise AssertionError(f"the runner does not know {match.group(0)!r}")
            return repr(names[match.group(0)])

        python = re.sub(r"\b(?!and\b|or\b|not\b|False\b)[a-z_]+(?:\.[\w-]+)+", name, python)
        return eval(python, {"__builtins__": {}}, {})

    def expand(self, text: str, names: Mapping[str, Any]) -> str:
        return re.sub(
            r"\$\{\{(.*?)\}\}", lambda m: str(self.evaluate(m.group(1), names)), str(text)
        )

    def run_job(self, job_name: str, needs: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
        """Run the job; its outputs. Fails the test when a step fails."""
        job = self.workflow["jobs"][job_name]
        names: dict[str, Any] = dict(self.context)
        for other, outputs in needs.items():
            names.update({f"needs.{other}.outputs.{k}": v for k, v in outputs.items()})
        env = {k: self.expand(str(v), names) for k, v in self.workflow["env"].items()}
        env.update(self.overrides)
        env.update({k: self.expand(str(v), names) for k, v in job.get("env", {}).items()})
        names.update({f"env.{k}": v for k, v in env.items()})
        results: list[StepResult] = []
        for index, step in enumerate(job["steps"]):
            result = self._step(step, index, env, names, results)
            results.append(result)
            if step.get("id"):
                names[f"steps.{step['id']}.outcome"] = result.outcome
        failed = [r for r in results if r.outcome == "failure"]
        assert not failed, "\n\n".join(f"step {r.name!r} failed:\n{r.output}" for r in failed)
        return {k: self.expand(str(v), names) for k, v in job.get("outputs", {}).items()}

    def _step(
        self,
        step: dict[str, Any],
        index: int,
        env: dict[str, str],
        names: dict[str, Any],
        before: list[StepResult],
    ) -> StepResult:
        name = str(step.get("name") or step.get("uses") or step.get("run"))
        condition = str(step.get("if", "success()"))
        condition = condition.removeprefix("${{").removesuffix("}}").strip()
        failed = any(r.outcome == "failure" for r in before)
        always = condition == "success()"
        run_it = not failed if always else bool(self.evaluate(condition, names))
        if not run_it:
            return StepResult(name, "skipped")
        if "uses" in step:
            path = step.get("with", {}).get("path")
            if path is not None:
                assert (self.project / path).exists(), f"{name}: nothing at {path}"
            return StepResult(name, "success")
        script = str(step["run"])
        if script.startswith("pip install"):
            assert '"$LLMSHIP_PACKAGE"' in script
            return StepResult(name, "success")
        if "docker " in script and not _docker_answers():
            return StepResult(name, "skipped")
        outputs = self.project.parent / f"output-{index}"
        outputs.write_text("")
        summary = self.project.parent / f"summary-{index}"
        summary.write_text("")
        step_env = {k: self.expand(str(v), names) for k, v in step.get("env", {}).items()}
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
            cwd=self.project,
            env={
                **self.env,
                **env,
                **step_env,
                "GITHUB_OUTPUT": str(outputs),
                "GITHUB_STEP_SUMMARY": str(summary),
            },
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        self.summary += summary.read_text()
        if step.get("id"):
            for line in outputs.read_text().splitlines():
                key, _, value = line.partition("=")
                names[f"steps.{step['id']}.outputs.{key}"] = value
        output = f"$ {script}\n{done.stdout}{done.stderr}"
        print(output)
        return StepResult(name, "success" if done.returncode == 0 else "failure", output)


def git(project: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=project, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def llmship(env: Mapping[str, str], project: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "llmship", *args],
        cwd=project,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def documented_first_release() -> list[str]:
    """The commands docs/init.md gives for the first production release of prod."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "init.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    [block] = [b for b in blocks if "--env prod --force" in b]
    return [line for line in block.splitlines() if line and not line.startswith("export ")]


def a_project(tmp_path: Path) -> tuple[Path, dict[str, str], str]:
    """A project from `llmship init` in a git repository with an origin, and a
    registry whose prod serves 1.0.0: the project, the environment, the registry's URL."""
    project = tmp_path / "my-service"
    write_project(project)
    config = project / "llmship.yaml"
    config.write_text(config.read_text().replace("ttft_p95: 2s", "ttft_p95: 60s"))
    git(tmp_path, "init", "-q", "--bare", "origin.git")
    git(project, "init", "-q", "-b", "main")
    git(project, "config", "user.name", "Dev")
    git(project, "config", "user.email", "dev@example.com")
    git(project, "add", ".")
    git(project, "commit", "-q", "-m", "llmship init")
    git(project, "remote", "add", "origin", str(tmp_path / "origin.git"))
    git(project, "push", "-q", "origin", "main")
    database = f"sqlite:///{tmp_path / 'registry.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMSHIP_", "PYTEST_"))}
    env.update(
        {
            "LLMSHIP_HOME": str(tmp_path / "state"),
            "LLMSHIP_TEST_THREADS": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    admin = {**env, "LLMSHIP_DATABASE_URL": database, "LLMSHIP_ACTOR": "admin"}
    # as docs/init.md says, once, against the shared registry
    for command in documented_first_release():
        shell = subprocess.run(
            ["bash", "-eo", "pipefail", "-c", command],
            cwd=project,
            env=admin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert shell.returncode == 0, command + "\n" + shell.stdout + shell.stderr
    return project, env, database


def test_the_workflow_takes_a_pull_request_to_prod(tmp_path: Path) -> None:
    # Given a project from `llmship init` in a git repository with an origin, and a
    # registry whose prod serves 1.0.0
    project, env, database = a_project(tmp_path)
    admin = {**env, "LLMSHIP_DATABASE_URL": database, "LLMSHIP_ACTOR": "admin"}
    workflow = yaml.safe_load((project / ".github/workflows/llmship.yml").read_text())
    context = {
        "secrets.LLMSHIP_DATABASE_URL": database,
        "secrets.GITHUB_TOKEN": "",
        "github.actor": "octocat",
        "github.event.number": "7",
        "github.server_url": "https://github.com",
        "github.repository": "me/my-service",
        "github.run_id": "42",
    }
    runner = WorkflowRunner(project, workflow, env, context, {"LOADTEST_DURATION": "10s"})

    # When a pull request changes the system prompt of the spec the workflow releases
    assert workflow["env"]["RELEASE_SPEC"] == SPEC
    spec = project / SPEC
    spec.write_text(spec.read_text().replace("You are a helpful assistant.", NEW_PROMPT))
    assert NEW_PROMPT in spec.read_text()
    runner.run_job("gates", {})

    # Then its tests passed on the candidate, which both gates judged against prod's
    # production, with the reports and the job summary
    reports = project / "reports"
    assert 'failures="0"' in (reports / "pytest.xml").read_text()
    assert {"eval.md", "eval.html", "loadtest.md", "loadtest.json"} <= {
        p.name for p in reports.iterdir()
    }
    assert (reports / "eval.md").read_text() in runner.summary
    with Registry.open(database, home=tmp_path / "state") as registry:
        runs = registry.latest_gate_runs(NEW)
        assert {k: r.passed for k, r in runs.items()} == {"eval": True, "loadtest": True}
        assert runs["eval"].baseline_ref == STABLE

    # When it is merged: a push to main
    shutil.rmtree(reports)
    for written in project.glob("models/smollm2-chat-1.*.yaml"):
        if written.name != Path(SPEC).name:
            written.unlink()  # the pull request job's checkout is gone
    git(project, "commit", "-q", "-am", "A concise assistant")
    git(project, "push", "-q", "origin", "main")
    context["github.sha"] = git(project, "rev-parse", "HEAD").strip()
    released = runner.run_job("release", {})

    # Then that version is released, tagged on the origin, production in dev and staging
    assert released == {"ref": NEW}
    assert "refs/tags/smollm2-chat-v1.1.0" in git(project, "ls-remote", "--tags", "origin")
    with Registry.open(database, home=tmp_path / "state") as registry:
        for env_name in ("dev", "staging"):
            alias = registry.get_alias(env_name, "production")
            assert alias is not None and alias.ref == NEW, env_name
        prod = registry.get_alias("prod", "production")
        assert prod is not None and prod.ref == STABLE

    # When GitHub's reviewers let the prod job run
    runner.run_job("prod", {"release": released})

    # Then prod's canary runs 1.1.0 against 1.0.0, approved by the job's actor, and
    # the job summary shows it
    assert "rollout canary (id 1) in prod" in runner.summary
    status = json.loads(llmship(admin, project, "rollout", "status", "--env", "prod", "-f", "json"))
    assert status["candidate"] == NEW and status["phase"] not in ("Aborted", "Healthy"), status
    approvals = json.loads(
        llmship(admin, project, "approvals", "list", "--env", "prod", "--format", "json")
    )
    assert [(a["ref"], a["state"]) for a in approvals] == [(NEW, "approved")], approvals
    assert "approved in the GitHub environment prod" in json.dumps(approvals)
