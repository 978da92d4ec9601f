"""`llmship demo`: the project it writes, its refusals, how it judges each candidate's
outcome, and (slow) the demo itself, typed as docs/demo.md says, with the real model and
real processes: the good candidate promoted into prod, the bad one rejected with prod
untouched, every pointer it prints leading somewhere real, and Ctrl-C stopping
everything, at the end (`--keep-running`) or in the middle of a pipeline."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from _journey import REPO, Shell, free_port
from llmship.cli import app
from llmship.environments import load_environments
from llmship.errors import ConflictError, LlmshipError
from llmship.eval.dataset import load_dataset
from llmship.pipeline.demo import CandidateOutcome, Project, Stacks, prepare, running
from llmship.pipeline.demo_project import BAD_PROMPT, GOOD_PROMPT, demo_files
from llmship.registry import Registry
from llmship.release.bump import Bump, diff, required_bump
from llmship.release.spec import load_spec
from llmship.rollout.spec import load_rollout

GOOD, BAD, START = "smollm2-chat@1.1.0", "smollm2-chat@1.2.0", "smollm2-chat@1.0.0"


def write(tmp_path: Path) -> Path:
    for f in demo_files({"staging": 18181, "prod": 18282}):
        path = tmp_path / f.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f.text)
    return tmp_path


def test_the_project_has_two_environments_a_golden_set_a_canary_and_two_candidates(
    tmp_path: Path,
) -> None:
    project = write(tmp_path)
    # Two environments on the given ports; prod wants both gates, an approval that
    # --yes may give, and runs the project's canary
    envs = load_environments(project / "llmship.yaml")
    assert envs.names == ("staging", "prod")
    staging, prod = envs.get("staging"), envs.get("prod")
    assert (staging.gateway_port, staging.require, staging.approval) == (18181, ("eval",), False)
    assert (prod.gateway_port, prod.require) == (18282, ("eval", "loadtest"))
    assert prod.approval and prod.allow_yes and prod.needs_reason
    assert prod.rollout == project / "rollouts/canary.yaml"
    # The canary: a weight, a timed pause, all of it, with an analysis from the start
    canary = load_rollout(prod.rollout)
    assert canary.strategy.canary is not None
    assert canary.strategy.canary.analysis is not None
    # The golden set: three cases, each with an assertion
    dataset = load_dataset(project / "evals/golden.jsonl")
    assert len(dataset.cases) == 3 and all(case.asserts for case in dataset.cases)
    # The candidates: the starting release with another system prompt each (a minor bump)
    start = load_spec(project / "models/smollm2-chat-1.0.0.yaml")
    for name, prompt in (("good", GOOD_PROMPT), ("bad", BAD_PROMPT)):
        candidate = load_spec(project / f"candidates/{name}.yaml")
        changes = diff(start, candidate)
        assert [c.field for c in changes] == ["prompt.system"], changes
        assert required_bump(changes) is Bump.MINOR
        assert candidate.prompt.system == prompt
        # and the command its comment shows is the one the demo runs
        assert f"llmship pipeline run --candidate candidates/{name}.yaml --traffic --yes" in (
            (project / f"candidates/{name}.yaml").read_text()
        )


def test_prepare_makes_the_bundled_release_production_in_both_environments(
    tmp_path: Path,
) -> None:
    project, written = prepare(tmp_path / "demo")
    assert (project.directory / "llmship.yaml") in written
    assert set(project.ports) == {"staging", "prod"}
    assert project.ports["staging"] != project.ports["prod"]
    config = yaml.safe_load((project.directory / "llmship.yaml").read_text())
    assert config["environments"]["prod"]["gateway_port"] == project.ports["prod"]
    assert project.production("staging") == project.production("prod") == START
    assert (project.directory / ".gitignore").read_text() == ".llmship/\n"


def test_force_writes_again_and_puts_production_back_to_the_start(tmp_path: Path) -> None:
    # Given a demo that has run: prod's production moved to a candidate
    project, _ = prepare(tmp_path / "demo")
    good = load_spec(project.directory / "candidates/good.yaml").model_copy(
        update={"version": "1.1.0"}
    )
    with project.registry() as registry:
        registry.register(good, actor="test")
        registry.set_alias("prod", "production", GOOD, actor="test", reason="promoted")
    (project.directory / "notes.txt").write_text("mine")
    # When the demo is asked to write there again, it refuses without --force
    with pytest.raises(ConflictError, match="not empty"):
        prepare(project.directory)
    # And with --force it writes its files, keeps the others and the registry, and
    # production is the bundled release again in both environments
    again, _ = prepare(project.directory, force=True)
    assert (again.directory / "notes.txt").read_text() == "mine"
    assert again.production("staging") == again.production("prod") == START
    with again.registry() as registry:
        assert {r.ref for r in registry.list_releases()} == {START, GOOD}


def test_a_stack_that_exits_is_named_with_its_last_lines(tmp_path: Path) -> None:
    # Given the demo project with an llmship.yaml that `llmship up` cannot read
    project, _ = prepare(tmp_path / "demo")
    (project.directory / "llmship.yaml").write_text("environments: [staging, prod]\n")
    # When the stacks start, the wait for them ends at once with the first that exited
    with running(Stacks(project)) as stacks, pytest.raises(LlmshipError) as failed:
        stacks.wait_ready(timeout=60)
    message = str(failed.value)
    assert re.search(r"`llmship up --env (staging|prod)` exited with 2", message), message
    assert "environments: must be a mapping" in message, message
    assert all(proc.poll() is not None for proc in stacks.procs.values())


@pytest.mark.parametrize("content", ["file", "directory"])
def test_a_non_empty_directory_is_refused_and_nothing_is_written(
    tmp_path: Path, content: str
) -> None:
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    if content == "directory":
        (target / "sub").mkdir()
    before = sorted(p.name for p in target.rglob("*"))
    result = CliRunner().invoke(app, ["demo", str(target)])
    assert result.exit_code == 2, result.output
    assert "is not empty" in result.output and "--force" in result.output
    assert sorted(p.name for p in target.rglob("*")) == before


def test_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("x")
    result = CliRunner().invoke(app, ["demo", str(target)])
    assert result.exit_code == 2, result.output
    assert "is a file" in result.output
    assert target.read_text() == "x"


def outcome(expected: str, **changes: object) -> CandidateOutcome:
    promoted = expected == "promoted"
    fields: dict[str, object] = {
        "candidate": "candidates/x.yaml",
        "expected": expected,
        "exit_code": 0 if promoted else 1,
        "run": 1,
        "state": "succeeded" if promoted else "failed",
        "failed_stage": None if promoted else "eval",
        "ref": GOOD,
        "production_before": START,
        "production_after": GOOD if promoted else START,
        "report_dir": None,
        "seconds": 1.0,
    }
    fields.update(changes)
    return CandidateOutcome(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("expected", "changes", "ok"),
    [
        ("promoted", {}, True),
        ("promoted", {"production_after": START}, False),  # exit 0, production not moved
        ("promoted", {"exit_code": 1, "state": "failed", "failed_stage": "eval"}, False),
        ("promoted", {"state": "waiting"}, False),  # stopped at the approval
        ("promoted", {"run": None, "state": None, "ref": None}, False),  # nothing recorded
        ("rejected", {}, True),
        ("rejected", {"failed_stage": "tests"}, True),
        ("rejected", {"failed_stage": "loadtest"}, True),
        ("rejected", {"failed_stage": "production"}, True),  # the analysis rolled it back
        ("rejected", {"failed_stage": "staging"}, False),  # staging not served: not a gate
        ("rejected", {"production_after": GOOD}, False),  # production moved
        ("rejected", {"exit_code": 2, "state": None, "failed_stage": None}, False),
        ("rejected", {"exit_code": 0, "state": "succeeded", "failed_stage": None}, False),
    ],
)
def test_what_counts_as_the_expected_outcome(
    expected: str, changes: dict[str, object], ok: bool
) -> None:
    assert outcome(expected, **changes).ok is ok


def test_the_pointers_name_the_gateway_the_reports_and_the_commands(tmp_path: Path) -> None:
    from llmship.pipeline.demo import DemoResult

    project = Project(tmp_path / "demo", {"staging": 1, "prod": 2})
    report = project.directory / ".llmship/pipelines/1"
    report.mkdir(parents=True)
    (report / "report.html").write_text("<html></html>")
    good = outcome("promoted", report_dir=str(report))
    bad = outcome("rejected", ref=BAD, report_dir=str(project.directory / ".llmship/pipelines/2"))
    pointers = dict(DemoResult(project, (good, bad), 1.0).pointers())
    assert pointers["prod gateway"] == "http://127.0.0.1:2"
    assert pointers[f"report, good ({GOOD})"] == str(report / "report.html")
    assert pointers[f"report, bad ({BAD})"] == str(project.directory / ".llmship/pipelines/2")
    assert pointers["rollouts"] == f"cd {project.directory} && llmship rollout history --env prod"
    assert pointers["pipelines"] == f"cd {project.directory} && llmship pipeline list"


# -- the demo itself -----------------------------------------------------------------------


def documented_blocks() -> list[list[str]]:
    """The commands of docs/demo.md's ``sh`` blocks, continuation lines joined, without
    comments."""
    text = (REPO / "docs/demo.md").read_text()
    blocks = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        joined = block.replace("\\\n", " ")
        commands = [re.sub(r"(^|\s+)#.*$", "", line).strip() for line in joined.splitlines()]
        blocks.append([c for c in commands if c])
    return blocks


def pointers(output: str) -> dict[str, str]:
    """The ``where to look:`` lines the demo printed, as what -> where."""
    _, found, rest = output.partition("\nwhere to look:\n")
    assert found, output
    lines = []
    for line in rest.splitlines():
        if not line.startswith("  "):
            break
        lines.append(line.strip())
    return dict(re.split(r":\s+", line, maxsplit=1) for line in lines)  # type: ignore[misc]


def lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines()


def processes_in(directory: Path) -> list[str]:
    """The processes whose working directory is ``directory`` or below it (Linux)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cwd = (proc / "cwd").resolve(strict=True)
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if cwd == directory or directory in cwd.parents:
            found.append(f"{proc.name}: {command}")
    return found


class Typed:
    """A command typed in a terminal and left running: its own process group, so that
    :meth:`ctrl_c` reaches it and its children as Ctrl-C does."""

    def __init__(self, shell: Shell, command: str, *, sigint_ignored: bool = False) -> None:
        """``sigint_ignored``: started as a script's background job is, SIGINT ignored
        (inherited by what it runs), as CI runners and ``nohup ... &`` do."""
        self.log = shell.cwd / "typed.log"
        self._out = self.log.open("wb")
        if sigint_ignored:
            command = f"trap '' INT; {command}"  # what bash leaves ignored, its children inherit
        self.proc = subprocess.Popen(
            ["bash", "-c", command],
            cwd=shell.cwd,
            env=shell.env(),
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            assert self.proc.poll() is None, f"exited with {self.proc.returncode}:\n{self.output()}"
            assert time.monotonic() < deadline, f"no {text!r} after {timeout:g}s:\n{self.output()}"
            time.sleep(0.5)

    def ctrl_c(self, timeout: float = 60) -> int:
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            logs = sorted(self.log.parent.glob("*/.llmship/logs/*/*.log"))
            tails = "".join(f"\n== {p}\n" + "\n".join(lines(p)[-12:]) for p in logs)
            processes = "\n".join(processes_in(self.log.parent.resolve()))
            raise AssertionError(
                f"still running {timeout:g}s after Ctrl-C:\n{self.output()}\n"
                f"processes:\n{processes}\n{tails}"
            ) from None

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._out.close()


def assert_stopped(project: Path) -> None:
    """Nothing answers on either gateway, and no process runs in the project."""
    config = yaml.safe_load((project / "llmship.yaml").read_text())
    for env in ("staging", "prod"):
        port = config["environments"][env]["gateway_port"]
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
    assert processes_in(project.resolve()) == []


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.xdist_group("journeys")
def test_the_demo_promotes_the_good_candidate_and_rejects_the_bad_one(tmp_path: Path) -> None:
    # Given an empty directory, where the user types what docs/demo.md shows: the demo
    # kept running at the end, and a request to the prod gateway it prints
    blocks = documented_blocks()
    assert blocks[0] == ["llmship demo"], blocks
    kept = next(b for b in blocks if b[0] == "llmship demo --keep-running")
    assert kept[1].startswith("curl -s http://127.0.0.1:PORT/predict"), kept
    shell = Shell(tmp_path, free_port())  # LLMSHIP_GATEWAY_PORT set: the demo ignores it
    started = time.monotonic()
    demo = Typed(shell, kept[0])
    try:
        demo.wait_for("Ctrl-C stops them", timeout=840)
        took = time.monotonic() - started
        output = demo.output()
        print(f"\n`llmship demo` took {took:.0f}s\n{output[-3000:]}")

        # Then both candidates ended as expected, each pipeline's progress shown as it ran
        assert "both candidates ended as expected" in output, output
        stages = ("tests", "eval", "loadtest", "release", "staging", "approval", "production")
        for stage in stages:
            assert re.search(rf"\| \[1\] {stage}: passed", output), (stage, output)
        assert re.search(r"\| \[2\] eval: failed", output), output
        project = tmp_path / "llmship-demo"
        home = project / ".llmship"
        with Registry.open(f"sqlite:///{home / 'registry.db'}", home=home) as registry:
            # the good one promoted: prod's (and staging's) production is its new version
            for env in ("prod", "staging"):
                assert registry.get_alias(env, "production").ref == GOOD  # type: ignore[union-attr]
            good, bad = sorted(registry.list_pipeline_runs(), key=lambda r: r.id)
            assert (good.state, good.ref, good.failed_stage) == ("succeeded", GOOD, None)
            # the bad one rejected at the eval gate, never production anywhere
            assert (bad.state, bad.ref, bad.failed_stage) == ("failed", BAD, "eval")
            assert [r.candidate for r in registry.list_rollouts("prod", limit=10)] == [GOOD]

        # And every pointer it printed leads somewhere real
        where = pointers(output)
        config = yaml.safe_load((project / "llmship.yaml").read_text())
        prod_port = config["environments"]["prod"]["gateway_port"]
        assert where["prod gateway"] == f"http://127.0.0.1:{prod_port}"
        for name, ref in (("good", GOOD), ("bad", BAD)):
            report = tmp_path / where[f"report, {name} ({ref})"]
            assert report.name == "report.html" and report.is_file(), where
        assert where["rollouts"] == "cd llmship-demo && llmship rollout history --env prod"
        assert where["pipelines"] == "cd llmship-demo && llmship pipeline list"
        wide = {"COLUMNS": "250"}  # one table row a line
        history = Shell(tmp_path, shell.port, extra_env=wide).run(where["rollouts"]).stdout
        assert f"promoted {GOOD}: all 3 steps passed" in history, history
        listed = Shell(tmp_path, shell.port, extra_env=wide).run(where["pipelines"]).stdout
        assert re.search(rf"2\s+│ {BAD}\s+│ prod\s+│ failed\s+│ eval", listed), listed
        assert re.search(rf"1\s+│ {GOOD}\s+│ prod\s+│ succeeded", listed), listed

        # And the prod gateway, still running, answers with the good candidate
        curl = kept[1].replace("PORT", str(prod_port))
        answer = json.loads(Shell(tmp_path, shell.port).run(curl).stdout)
        assert answer["version"] == GOOD, answer

        # When the user presses Ctrl-C, both stacks stop and it exits 0
        assert demo.ctrl_c() == 0, demo.output()
        assert "stopped both stacks" in demo.output()
        assert_stopped(project)
    finally:
        demo.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.xdist_group("journeys")
def test_ctrl_c_during_a_pipeline_stops_everything(tmp_path: Path) -> None:
    # Given `llmship demo` running the good candidate's pipeline, started where SIGINT
    # comes ignored (a background job of a script)
    shell = Shell(tmp_path, free_port())
    demo = Typed(shell, documented_blocks()[0][0], sigint_ignored=True)
    try:
        demo.wait_for("| [1] tests: started", timeout=240)
        # When the user presses Ctrl-C
        code = demo.ctrl_c()
        # Then it says so and exits 130, with both stacks and the pipeline stopped
        assert code == 130, demo.output()
        assert "interrupted: the stacks are stopped" in demo.output()
        assert_stopped(tmp_path / "llmship-demo")
    finally:
        demo.close()
