"""``llmship demo``: the whole change flow on the bundled model, from an empty directory.

:func:`run_demo` does what a newcomer would otherwise do by hand, with the real
model and real processes:

1. writes the demo project (:mod:`llmship.pipeline.demo_project`) into a directory
   that is empty or new, its two environments on free ports, and makes the bundled
   release the production release of both (the registry under ``DIR/.llmship``);
2. starts ``llmship up --env staging`` and ``llmship up --env prod`` as child
   processes, side by side in that home, and waits until both gateways are ready;
3. runs ``llmship pipeline run --candidate candidates/good.yaml --traffic --yes``
   (expected: promoted, prod's production is its new version), then the same with
   ``candidates/bad.yaml`` (expected: rejected by a gate or the rollout's analysis,
   prod's production unchanged), each in the project as a person would;
4. hands the outcome to ``hold`` while the stacks still run (the command line prints
   where to look), then stops them, or with ``keep_running`` waits for Ctrl-C first.

Nothing here prints: steps, the pipelines' own lines and the outcomes go to a
``progress`` callback as :class:`DemoEvent`.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx

from llmship.errors import ConflictError, InvalidRequestError, LlmshipError
from llmship.pipeline.demo_project import (
    BAD_CANDIDATE,
    GOOD_CANDIDATE,
    PROD,
    STAGING,
    demo_files,
)
from llmship.registry import Registry
from llmship.release.spec import load_spec
from llmship.supervisor.stack import free_port

__all__ = [
    "DEFAULT_DIRECTORY",
    "CandidateOutcome",
    "DemoEvent",
    "DemoOptions",
    "DemoResult",
    "Project",
    "Stacks",
    "prepare",
    "run_candidate",
    "run_demo",
]

DEFAULT_DIRECTORY = Path("llmship-demo")
ACTOR = "llmship-demo"
PRODUCTION = "production"
ISOLATED = (
    "LLMSHIP_HOME",
    "LLMSHIP_CONFIG",
    "LLMSHIP_DATABASE_URL",
    "LLMSHIP_ENV",
    "LLMSHIP_GATEWAY_PORT",
    "LLMSHIP_ADMIN_TOKEN",
    "LLMSHIP_ACTOR",
)
"""Settings the demo's processes must not inherit: the demo has its own home, registry,
configuration, environments, ports and token."""
REJECTING_STAGES = frozenset({"tests", "eval", "loadtest", "production"})
"""Stages whose failure is a rejection of the candidate: the gates, and the production
rollout's analysis. A failure elsewhere (staging not served, ...) is the demo's own."""
STOP_TIMEOUT_S = 40.0
"""How long the stacks get to stop together: each stops in three waves of at most 8 s
(supervisor.children.STOP_TIMEOUT), after a round in progress."""
Expected = Literal["promoted", "rejected"]
CANDIDATES: tuple[tuple[str, Expected], ...] = (
    (GOOD_CANDIDATE, "promoted"),
    (BAD_CANDIDATE, "rejected"),
)
"""The demo's candidates in the order it runs them, with what should become of each."""


@dataclass(frozen=True)
class DemoOptions:
    """What ``llmship demo`` was asked."""

    directory: Path = DEFAULT_DIRECTORY
    force: bool = False
    """Write into a directory that is not empty (files of the demo are overwritten)."""
    keep_running: bool = False
    """After ``hold``, keep the stacks running until Ctrl-C (or until one exits)."""
    ready_timeout: float = 240.0
    """Seconds both stacks have to become ready."""
    pipeline_timeout: float = 600.0
    """Seconds each pipeline may run."""


@dataclass(frozen=True)
class DemoEvent:
    """What the demo tells its ``progress`` callback."""

    kind: Literal["step", "note", "line"]
    """``step``: a new step begins; ``note``: what it found; ``line``: a line a
    pipeline printed."""
    message: str


Progress = Callable[[DemoEvent], None]


@dataclass(frozen=True)
class Project:
    """The demo project: where it is and where each environment's gateway listens."""

    directory: Path
    ports: dict[str, int]

    @property
    def home(self) -> Path:
        return self.directory / ".llmship"

    @property
    def shown(self) -> str:
        """The directory as people type it: relative to the working directory when
        inside it."""
        return self.show(self.directory)

    @staticmethod
    def show(path: Path) -> str:
        """``path`` relative to the working directory when inside it, else absolute."""
        try:
            return str(path.relative_to(Path.cwd())) or "."
        except ValueError:
            return str(path)

    def url(self, env: str) -> str:
        return f"http://127.0.0.1:{self.ports[env]}"

    def registry(self) -> Registry:
        return Registry.open(f"sqlite:///{self.home / 'registry.db'}", home=self.home)

    def env(self) -> dict[str, str]:
        """The environment of the demo's processes: this project's home, its actor."""
        env = {k: v for k, v in os.environ.items() if k not in ISOLATED}
        env.update(LLMSHIP_HOME=str(self.home), LLMSHIP_ACTOR=ACTOR, PYTHONUNBUFFERED="1")
        return env

    def production(self, env: str) -> str | None:
        with self.registry() as registry:
            record = registry.get_alias(env, PRODUCTION)
            return record.ref if record is not None else None


@dataclass(frozen=True)
class CandidateOutcome:
    """What one pipeline run did with a candidate, and whether that was expected."""

    candidate: str
    expected: Expected
    exit_code: int
    run: int | None
    """The pipeline run's id (``llmship pipeline show RUN``); None when none was recorded."""
    state: str | None
    failed_stage: str | None
    ref: str | None
    """The candidate as a release, ``NAME@VERSION``."""
    production_before: str | None
    production_after: str | None
    """prod's production release before and after the run."""
    report_dir: str | None
    seconds: float

    @property
    def expected_name(self) -> str:
        """``good (NAME@VERSION)`` or ``bad (...)``: which candidate this was."""
        which = "good" if self.expected == "promoted" else "bad"
        return f"{which} ({self.ref})" if self.ref else which

    @property
    def ok(self) -> bool:
        """Promoted (prod's production is the candidate now) or rejected (by a gate or
        the analysis, prod's production unchanged), as expected."""
        if self.expected == "promoted":
            return (
                self.exit_code == 0
                and self.state == "succeeded"
                and self.ref is not None
                and self.production_after == self.ref
            )
        return (
            self.exit_code == 1
            and self.state == "failed"
            and self.failed_stage in REJECTING_STAGES
            and self.production_after == self.production_before
        )

    def describe(self) -> str:
        """One line for people."""
        what = self.ref or self.candidate
        took = f"{self.seconds:.0f}s"
        run = f"pipeline run {self.run}" if self.run is not None else "no pipeline run recorded"
        if self.state == "succeeded":
            done = f"promoted: prod's production is {self.production_after}"
        elif self.state == "failed":
            done = f"rejected at stage {self.failed_stage}; prod's production " + (
                f"still {self.production_after}"
                if self.production_after == self.production_before
                else f"moved to {self.production_after}"
            )
        else:
            done = f"ended {self.state or 'without a run'} (exit {self.exit_code})"
        verdict = "as expected" if self.ok else f"NOT as expected: it should be {self.expected}"
        return f"{what} ({self.candidate}): {done} ({run}, {took}), {verdict}"


@dataclass(frozen=True)
class DemoResult:
    """The demo's outcome."""

    project: Project
    outcomes: tuple[CandidateOutcome, ...]
    seconds: float
    """From the first file written to the second pipeline's end."""

    @property
    def ok(self) -> bool:
        return len(self.outcomes) == 2 and all(o.ok for o in self.outcomes)

    def pointers(self) -> list[tuple[str, str]]:
        """Where to look, as (what, where) pairs: the prod gateway, each pipeline's
        report, the commands to run in the project."""
        directory = shlex.quote(self.project.shown)
        found = [("prod gateway", self.project.url(PROD))]
        for outcome in self.outcomes:
            if outcome.report_dir:
                folder = self.project.directory / outcome.report_dir  # absolute stays so
                html = folder / "report.html"
                where = html if html.is_file() else folder
                found.append((f"report, {outcome.expected_name}", self.project.show(where)))
        found += [
            ("rollouts", f"cd {directory} && llmship rollout history --env {PROD}"),
            ("pipelines", f"cd {directory} && llmship pipeline list"),
        ]
        return found


# -- 1. the project ------------------------------------------------------------------------


def prepare(directory: Path, *, force: bool = False) -> tuple[Project, list[Path]]:
    """Write the demo project into ``directory`` and make the bundled release production
    in both environments; the project and the files written.

    ``directory`` must be new or empty unless ``force`` (ConflictError: nothing written).
    With ``force`` a registry there is kept, and production goes back to the bundled
    release in both environments (the candidates then get the next versions).
    """
    if directory.exists() and not directory.is_dir():
        raise InvalidRequestError(f"{directory} is a file; give a directory for the demo")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise ConflictError(
            f"{directory} is not empty; give a new or empty directory, or --force to write "
            "the demo's files there (its registry under .llmship/ is kept)"
        )
    staging_port = free_port()
    prod_port = free_port()
    while prod_port == staging_port:
        prod_port = free_port()
    project = Project(directory.resolve(), {STAGING: staging_port, PROD: prod_port})
    written = []
    for f in demo_files(project.ports):
        path = project.directory / f.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f.text, encoding="utf-8")
        written.append(path)
    gitignore = project.directory / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text(".llmship/\n", encoding="utf-8")
        written.append(gitignore)
    seed = next(p for p in written if p.parent.name == "models")
    with project.registry() as registry:
        record, _ = registry.register(load_spec(seed), actor=ACTOR)
        for env in (STAGING, PROD):
            current = registry.get_alias(env, PRODUCTION)
            if current is None or current.ref != record.ref:  # --force: back to the start
                registry.set_alias(
                    env, PRODUCTION, record.ref, actor=ACTOR, reason="llmship demo: the start"
                )
    return project, written


# -- 2. the stacks -------------------------------------------------------------------------


class Stacks:
    """``llmship up --env NAME`` for each environment, as child processes of the demo,
    each writing to ``.llmship/logs/NAME/up.log``."""

    def __init__(self, project: Project, envs: Sequence[str] = (STAGING, PROD)) -> None:
        self.project = project
        self.envs = tuple(envs)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def log(self, env: str) -> Path:
        return self.project.home / "logs" / env / "up.log"

    def start(self) -> None:
        for env in self.envs:
            log = self.log(env)
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("ab") as out:
                self.procs[env] = subprocess.Popen(
                    [sys.executable, "-m", "llmship", "up", "--env", env],
                    cwd=self.project.directory,
                    env=self.project.env(),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # Ctrl-C reaches the demo, which stops them
                )

    def check(self) -> None:
        """LlmshipError naming the stack that exited, with the end of its output."""
        for env, proc in self.procs.items():
            if proc.poll() is not None:
                raise LlmshipError(
                    f"`llmship up --env {env}` exited with {proc.returncode}; its last lines "
                    f"({self.log(env)}):\n{self.tail(env)}"
                )

    def tail(self, env: str, lines: int = 15) -> str:
        try:
            text = self.log(env).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, timeout: float) -> None:
        """Return once every gateway answers ``/readyz`` with 200; LlmshipError when a
        stack exits or ``timeout`` seconds pass first."""
        deadline = time.monotonic() + timeout
        waiting = set(self.envs)
        while waiting:
            self.check()
            for env in sorted(waiting):
                try:
                    ready = httpx.get(f"{self.project.url(env)}/readyz", timeout=2).status_code
                except httpx.HTTPError:
                    continue
                if ready == 200:
                    waiting.discard(env)
            if waiting and time.monotonic() > deadline:
                envs = ", ".join(sorted(waiting))
                raise LlmshipError(
                    f"the stack of {envs} was not ready after {timeout:.0f}s; see "
                    + ", ".join(str(self.log(e).parent) for e in sorted(waiting))
                )
            time.sleep(0.5)

    def wait(self) -> None:
        """Block until Ctrl-C, or until a stack exits."""
        try:
            while all(proc.poll() is None for proc in self.procs.values()):
                time.sleep(0.5)
        except KeyboardInterrupt:
            return

    def stop(self) -> None:
        """SIGTERM to every stack (each stops its children in order), then wait for all
        of them together, SIGKILL for any still running after :data:`STOP_TIMEOUT_S`."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def running(stacks: Stacks) -> Iterator[Stacks]:
    """The stacks started, and stopped when the block ends (however it ends)."""
    try:
        stacks.start()
        yield stacks
    finally:
        stacks.stop()


# -- 3. the pipelines ----------------------------------------------------------------------


def pipeline_command(candidate: str) -> list[str]:
    """``llmship pipeline run`` as the demo runs it: live requests through prod's gateway
    during its canary (``--traffic``), so that its analysis judges real requests, and
    the approval given at once (``--yes``: prod allows it)."""
    return ["pipeline", "run", "--candidate", candidate, "--traffic", "--yes"]


def _latest_run(project: Project) -> int:
    with project.registry() as registry:
        runs = registry.list_pipeline_runs(limit=1)
    return runs[0].id if runs else 0


def run_candidate(
    project: Project,
    candidate: str,
    expected: Expected,
    *,
    timeout: float,
    progress: Progress,
    stacks: Stacks | None = None,
) -> CandidateOutcome:
    """Run the pipeline on ``candidate`` in the project (a child process, its lines
    relayed to ``progress``) and read what it did from the registry."""
    before = project.production(PROD)
    last = _latest_run(project)
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmship", *pipeline_command(candidate)],
        cwd=project.directory,
        # plain progress lines, not a live display; one line each, however long
        env={**project.env(), "CI": "1", "COLUMNS": "1000"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            progress(DemoEvent("line", raw.decode(errors="replace").rstrip()))
        code = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    seconds = time.monotonic() - started
    if stacks is not None:
        stacks.check()
    with project.registry() as registry:
        runs = [r for r in registry.list_pipeline_runs(limit=5) if r.id > last]
    run = runs[0] if runs else None
    return CandidateOutcome(
        candidate=candidate,
        expected=expected,
        exit_code=code,
        run=run.id if run else None,
        state=run.state if run else None,
        failed_stage=run.failed_stage if run else None,
        ref=run.ref if run else None,
        production_before=before,
        production_after=project.production(PROD),
        report_dir=run.report_dir if run else None,
        seconds=seconds,
    )


# -- the whole demo ------------------------------------------------------------------------


def run_demo(
    options: DemoOptions,
    *,
    progress: Progress,
    hold: Callable[[DemoResult], None] | None = None,
) -> DemoResult:
    """Write the project, start both stacks, run the good and the bad candidate's
    pipelines; ``hold`` gets the result while the stacks still run, which stop after
    (with ``keep_running``, at Ctrl-C)."""
    started = time.monotonic()

    def step(text: str) -> None:
        progress(DemoEvent("step", text))

    def note(text: str) -> None:
        progress(DemoEvent("note", text))

    step(f"1/4 writing the demo project into {options.directory}")
    project, written = prepare(options.directory, force=options.force)
    note(
        f"wrote {len(written)} files into {project.shown}; the bundled release "
        f"{project.production(PROD)} is production in {STAGING} and {PROD}"
    )
    stacks = Stacks(project)
    with running(stacks):
        step(
            f"2/4 starting the stacks: `llmship up --env {STAGING}` on port "
            f"{project.ports[STAGING]}, `llmship up --env {PROD}` on port {project.ports[PROD]}"
        )
        stacks.wait_ready(options.ready_timeout)
        logs = project.show(project.home / "logs")
        note(f"both ready after {time.monotonic() - started:.0f}s (logs in {logs}/ENV/)")
        outcomes: list[CandidateOutcome] = []
        for number, (candidate, expected) in enumerate(CANDIDATES, start=3):
            shown = " ".join(["llmship", *pipeline_command(candidate)])
            step(f"{number}/4 the {'good' if number == 3 else 'bad'} candidate: {shown}")
            outcome = run_candidate(
                project,
                candidate,
                expected,
                timeout=options.pipeline_timeout,
                progress=progress,
                stacks=stacks,
            )
            note(outcome.describe())
            outcomes.append(outcome)
        result = DemoResult(project, tuple(outcomes), time.monotonic() - started)
        if hold is not None:
            hold(result)
        if options.keep_running:
            stacks.wait()
            stacks.check()  # Ctrl-C, or a stack that exited: say which
    return result
