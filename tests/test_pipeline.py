"""``llmship pipeline run`` over a real SQLite registry, with fake model upstreams and a
fake gateway where a real model is not the point: bad input records nothing, a
candidate that breaks the golden set stops at the eval gate with production
untouched, and a good one goes through the gates, the release, staging, a pending
approval and ``--resume`` to production. The run with the real model and real
``llmship up`` processes is tests/test_pipeline_process.py."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from _cli import Run
from _procs import FakeUpstream, ThreadedServer
from llmship.environments import Environment, Environments
from llmship.errors import ConflictError, InvalidRequestError, NotFoundError
from llmship.pipeline import deploy
from llmship.pipeline.model import STAGES, PipelineOptions, StageEvent, StageFailed
from llmship.pipeline.promotion import approve
from llmship.pipeline.run import run_pipeline
from llmship.pipeline.stages import Context
from llmship.registry import Registry
from llmship.settings import Settings, load_settings

GOLDEN = [
    {"id": "greeting", "input": "Say hello.", "assert": [{"type": "icontains", "value": "hello"}]},
    {"id": "capital", "input": "Capital of France?",
     "assert": [{"type": "icontains", "value": "paris"}]},
]  # fmt: skip
CONFIG = """\
gates:
  eval:
    metrics:
      pass_rate: {max_regression: 0.1}
  loadtest:
    slo:
      error_rate: 10%
"""
ENVS = Environments(
    (
        Environment("staging", require=("eval",)),
        Environment("prod", require=("eval", "loadtest"), approval=True, reason="required"),
    ),
    source="test",
)


def spec_text(version: str, upstream: FakeUpstream, system: str) -> str:
    return (
        f"name: chat\nversion: {version}\nbackend: openai\n"
        f"model: {{base_url: '{upstream.url}', id: fake}}\n"
        f"prompt: {{system: '{system}'}}\nparams: {{temperature: 0, max_tokens: 16}}\n"
    )


@pytest.fixture
def good() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream()
    upstream.text = "Hello! Paris."
    yield upstream
    upstream.close()


@pytest.fixture
def bad() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream()
    upstream.text = "I would rather not."
    yield upstream
    upstream.close()


@pytest.fixture
def project(cli_home: Path, good: FakeUpstream) -> Path:
    """A project in the working folder: config, golden set, a passing test, production
    ``chat@1.0.0`` in staging and prod (served by the ``good`` upstream)."""
    (cli_home / "llmship.yaml").write_text(CONFIG, encoding="utf-8")
    (cli_home / "evals").mkdir()
    (cli_home / "evals" / "golden.jsonl").write_text(
        "".join(json.dumps(c) + "\n" for c in GOLDEN), encoding="utf-8"
    )
    (cli_home / "tests").mkdir()
    (cli_home / "tests" / "test_smoke.py").write_text(
        "import os\n\ndef test_candidate_is_named():\n"
        "    assert os.environ['LLMSHIP_TEST_RELEASE'].endswith('.yaml')\n",
        encoding="utf-8",
    )
    models = cli_home / "models"
    models.mkdir()
    first = models / "chat-1.0.0.yaml"
    first.write_text(spec_text("1.0.0", good, "Be helpful."), encoding="utf-8")
    with _registry(load_settings()) as registry:
        from llmship.release.ops import read_spec

        record, _ = registry.register(read_spec(first), actor="ci")
        for env in ("staging", "prod"):
            registry.set_alias(env, "production", record.ref, actor="ci", reason="first release")
    return cli_home


def _registry(cfg: Settings) -> Registry:
    return Registry.open(cfg.registry_url, home=cfg.home)


def _candidate(project: Path, upstream: FakeUpstream, system: str) -> Path:
    path = project / "models" / "chat.yaml"
    path.write_text(spec_text("1.0.0", upstream, system), encoding="utf-8")
    return path


def _options(candidate: Path, **changes: Any) -> PipelineOptions:
    base = PipelineOptions(
        candidate=str(candidate), loadtest_duration=2.0, serve_timeout=20.0, rollout_timeout=60.0
    )
    return replace(base, **changes)


class Events(list[StageEvent]):
    def __call__(self, event: StageEvent) -> None:
        self.append(event)

    def finished(self) -> list[tuple[str, str | None]]:
        return [(e.stage, e.state) for e in self if e.kind == "finished"]


# -- the registry's pipeline runs --------------------------------------------------------


def test_runs_are_created_updated_finished_and_resumed(tmp_path: Path) -> None:
    with Registry.open(f"sqlite:///{tmp_path / 'r.db'}") as registry:
        run = registry.create_pipeline_run(
            "models/chat.yaml", target_env="prod", stages=STAGES, options={"a": 1}, actor="ci"
        )
        assert (run.state, [s.state for s in run.stages]) == ("running", ["pending"] * 7)
        run = registry.update_pipeline_stage(run.id, "tests", state="running", actor="ci")
        assert run.stage("tests").started_at is not None
        run = registry.update_pipeline_stage(
            run.id, "tests", state="passed", actor="ci", detail={"n": 2}, ref="chat@1.1.0"
        )
        tests = run.stage("tests")
        assert (tests.state, tests.detail, run.ref) == ("passed", {"n": 2}, "chat@1.1.0")
        assert tests.seconds is not None and tests.seconds >= 0
        run = registry.finish_pipeline_run(run.id, state="waiting", actor="ci")
        with pytest.raises(ConflictError, match="only a waiting run"):
            registry.resume_pipeline_run(
                registry.create_pipeline_run(
                    "x.yaml", target_env="prod", stages=STAGES, options={}, actor="ci"
                ).id,
                actor="ci",
            )
        assert registry.resume_pipeline_run(run.id, actor="ci").state == "running"
        run = registry.finish_pipeline_run(run.id, state="failed", failed_stage="eval", actor="ci")
        assert registry.get_pipeline_run(run.id).failed_stage == "eval"
        assert [r.id for r in registry.list_pipeline_runs(state="failed")] == [run.id]
        assert len(registry.list_pipeline_runs()) == 2
        kinds = [e.kind for e in registry.events(limit=50) if e.subject == f"pipeline/{run.id}"]
        assert {"pipeline.created", "pipeline.stage", "pipeline.waiting", "pipeline.failed"} <= set(
            kinds
        )
        with pytest.raises(NotFoundError, match="no stage 'nope'"):
            registry.update_pipeline_stage(run.id, "nope", state="passed", actor="ci")
        with pytest.raises(NotFoundError, match="llmship pipeline list"):
            registry.get_pipeline_run(99)


# -- bad input ------------------------------------------------------------------------------


def test_bad_input_exits_2_and_records_nothing(project: Path, good: FakeUpstream, run: Run) -> None:
    broken = project / "models" / "broken.yaml"
    broken.write_text("name: chat\nversion: 1.0.0\nbackend: nope\n", encoding="utf-8")
    same = _candidate(project, good, "Be helpful.")  # production already
    cases = [
        (["--candidate", "models/missing.yaml"], "no such file"),
        (["--candidate", str(broken)], "broken.yaml"),
        (["--candidate", str(same)], "production in prod already"),
        (["--candidate", str(same), "--to", "nowhere"], "no environment 'nowhere'"),
        (["--candidate", str(same), "--until", "deploy"], "--until 'deploy' is not a stage"),
        (["--candidate", str(same), "--yes"], "--yes is not allowed for prod"),
        (["--candidate", str(same), "--dataset", "evals/none.jsonl"], "no such file"),
        (["--resume", "7"], "no pipeline run 7"),
        ([], "give --candidate SPEC"),
    ]
    for args, message in cases:
        result = run("pipeline", "run", *args, code=2)
        assert message in " ".join(result.output.split()), (args, result.output)
    with _registry(load_settings()) as registry:
        assert registry.list_pipeline_runs() == []
        assert [r.ref for r in registry.list_releases("chat")] == ["chat@1.0.0"]


# -- the gates -------------------------------------------------------------------------------


def test_a_candidate_that_breaks_the_golden_set_stops_at_the_eval_gate(
    project: Path, bad: FakeUpstream
) -> None:
    candidate = _candidate(project, bad, "Refuse everything.")
    events = Events()
    cfg = load_settings()
    with _registry(cfg) as registry:
        result = run_pipeline(registry, _envs(), _options(candidate), progress=events, settings=cfg)
        assert (result.state, result.failed_stage, result.exit_code) == ("failed", "eval", 1)
        assert "failed the eval gate against chat@1.0.0" in result.message
        assert events.finished() == [("tests", "passed"), ("eval", "failed")]
        for env in ("staging", "prod"):
            assert registry.resolve("production", env=env).ref == "chat@1.0.0"
        ref = result.run.ref
        assert ref is not None and ref != "chat@1.0.0"
        assert not registry.latest_gate_runs(ref)["eval"].passed
        stored = registry.get_pipeline_run(result.run.id)
        assert [s.state for s in stored.stages][:3] == ["passed", "failed", "pending"]
    released = project / "models" / f"chat-{ref.partition('@')[2]}.yaml"
    assert not released.exists()  # registered, not released
    assert result.report_markdown is not None and result.report_html is not None
    markdown = result.report_markdown.read_text(encoding="utf-8")
    assert "# Pipeline run 1: failed at eval" in markdown
    assert (
        "[html](eval.html)" in markdown and (result.report_markdown.parent / "eval.html").exists()
    )
    assert "failed the eval gate" in result.report_html.read_text(encoding="utf-8")


def test_failing_regression_tests_stop_the_pipeline_first(
    project: Path, good: FakeUpstream
) -> None:
    (project / "tests" / "test_smoke.py").write_text(
        "def test_it():\n    assert 1 == 2\n", encoding="utf-8"
    )
    candidate = _candidate(project, good, "Be brief.")
    cfg = load_settings()
    with _registry(cfg) as registry:
        result = run_pipeline(registry, _envs(), _options(candidate), settings=cfg)
        assert (result.state, result.failed_stage) == ("failed", "tests")
        assert "1 failed" in result.message
        assert [r.ref for r in registry.list_releases("chat")] == ["chat@1.0.0"]


# -- the whole flow with a fake gateway --------------------------------------------------------


def _fake_gateway(cfg: Settings | str, env: str) -> ThreadedServer:
    """A gateway of ``env`` that answers as its production release (read in the registry
    of ``cfg``, settings or a URL)."""
    url = cfg if isinstance(cfg, str) else cfg.registry_url

    def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    def chat(request: Request) -> JSONResponse:
        with Registry.open(url) as registry:
            ref = registry.resolve("production", env=env).ref
        body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}}]}
        return JSONResponse(body, headers={"X-Llmship-Version": ref})

    app = Starlette(
        routes=[Route("/healthz", healthz), Route("/v1/chat/completions", chat, methods=["POST"])]
    )
    return ThreadedServer(app, f"fake gateway of {env}")


def _envs(staging: int | None = None, prod: int | None = None) -> Environments:
    first, second = ENVS.items
    return Environments(
        (replace(first, gateway_port=staging), replace(second, gateway_port=prod)), source="test"
    )


def test_the_flow_waits_for_an_approval_and_resumes_to_production(
    project: Path, good: FakeUpstream
) -> None:
    candidate = _candidate(project, good, "Be brief.")
    cfg = load_settings()
    events = Events()
    with _registry(cfg) as registry:
        # Given the gates and the release, stopped there (--until release)
        first = run_pipeline(
            registry, _envs(), _options(candidate, until="release"), progress=events, settings=cfg
        )
        assert (first.state, first.exit_code) == ("waiting", 0)
        assert first.next_commands == (f"llmship pipeline run --resume {first.run.id}",)
        assert first.run.ref == "chat@1.1.0"
        assert (project / "models" / "chat-1.1.0.yaml").exists()
        assert "chat 1.1.0" in (project / "models" / "CHANGELOG.md").read_text(encoding="utf-8")
        gates = registry.latest_gate_runs("chat@1.1.0")
        assert gates["eval"].passed and gates["loadtest"].passed

        # When staging and prod are served and the run resumes
        staging, prod = _fake_gateway(cfg, "staging"), _fake_gateway(cfg, "prod")
        staging.start()
        prod.start()
        try:
            envs = _envs(staging.port, prod.port)
            second = run_pipeline(
                registry, envs, PipelineOptions(resume=first.run.id), progress=events, settings=cfg
            )
            # Then staging serves it and the promotion into prod waits for a person
            assert second.state == "waiting"
            assert registry.resolve("production", env="staging").ref == "chat@1.1.0"
            assert registry.resolve("production", env="prod").ref == "chat@1.0.0"
            staged = registry.get_pipeline_run(first.run.id).stage("staging").detail
            assert staged["answered_by"] == "chat@1.1.0"
            approval = registry.get_pipeline_run(first.run.id).stage("approval").detail["approval"]
            assert second.next_commands == (
                f"llmship approve {approval}",
                f"llmship pipeline run --resume {first.run.id}",
            )
            # A resume before the decision waits again
            again = run_pipeline(registry, envs, PipelineOptions(resume=first.run.id), settings=cfg)
            assert again.state == "waiting" and "still pending" in again.message

            # When another person approves and the run resumes
            approve(registry, envs, approval, actor="reviewer", reason="looked fine")
            third = run_pipeline(
                registry, envs, PipelineOptions(resume=first.run.id), progress=events, settings=cfg
            )
        finally:
            staging.stop()
            prod.stop()
        # Then it is promoted
        assert (third.state, third.exit_code) == ("succeeded", 0), third.message
        assert registry.resolve("production", env="prod").ref == "chat@1.1.0"
        done = registry.get_pipeline_run(first.run.id)
        assert [s.state for s in done.stages] == ["passed"] * 7
        assert done.stage("approval").detail["approved_by"] == "reviewer"
    assert ("approval", "waiting") in events.finished()
    assert events.finished()[-1] == ("production", "passed")
    markdown = third.report_markdown.read_text(encoding="utf-8") if third.report_markdown else ""
    assert "promoted in prod" in markdown and "| approval | passed |" in markdown


def test_a_stage_without_a_live_gateway_names_the_command(project: Path) -> None:
    cfg = load_settings()
    with _registry(cfg) as registry:
        ctx = Context(
            registry=registry,
            envs=_envs(staging=9),
            options=PipelineOptions(),
            settings=cfg,
            run_id=1,
            target=ENVS.declared("prod"),
            staging=replace(ENVS.declared("staging"), gateway_port=9),
            out=project,
            note=lambda stage, message: None,
        )
        assert ctx.staging is not None
        with pytest.raises(
            StageFailed,
            match=r"no live gateway of staging \(port 9\).*"
            r"`llmship up --env staging`",
        ):
            deploy.gateway_url(ctx, ctx.staging)


def test_resume_refuses_a_run_that_is_not_waiting(project: Path, bad: FakeUpstream) -> None:
    candidate = _candidate(project, bad, "Refuse.")
    cfg = load_settings()
    with _registry(cfg) as registry:
        failed = run_pipeline(registry, _envs(), _options(candidate, until="tests"), settings=cfg)
        assert failed.state == "waiting"
        with pytest.raises(InvalidRequestError, match="--until tests: run 1 is past it"):
            run_pipeline(registry, _envs(), PipelineOptions(resume=1, until="tests"), settings=cfg)
        resume = PipelineOptions(resume=failed.run.id)
        resumed = run_pipeline(registry, _envs(), resume, settings=cfg)
        assert resumed.failed_stage == "eval"
        with pytest.raises(ConflictError, match="only a waiting run can be resumed"):
            run_pipeline(registry, _envs(), resume, settings=cfg)
        with pytest.raises(InvalidRequestError, match="leave out --candidate"):
            run_pipeline(registry, _envs(), _options(candidate, resume=failed.run.id), settings=cfg)


def test_pipeline_list_and_show(project: Path, bad: FakeUpstream, run: Run) -> None:
    candidate = _candidate(project, bad, "Refuse.")
    result = run(
        "pipeline", "run", "--candidate", str(candidate), "--to", "prod", "--until", "tests"
    )
    assert "pipeline run 1 waiting" in result.output
    assert "[1] tests: passed" in result.output  # plain lines: not a terminal
    listed = json.loads(run("pipeline", "list", "--format", "json").output)
    assert [(r["id"], r["state"]) for r in listed] == [(1, "waiting")]
    shown = run("pipeline", "show", "1").output
    assert "pipeline run 1" in shown and "tests" in shown and "passed" in shown
    run("pipeline", "show", "5", code=2)


def test_the_live_table_draws_every_event() -> None:
    from rich.console import Console

    from llmship.cli import pipeline as cli_pipeline

    table = cli_pipeline._LiveTable()
    table.live.console = Console(file=io.StringIO(), force_terminal=True)
    for event in (
        StageEvent(4, "tests", "started"),
        StageEvent(4, "tests", "note", "pytest tests"),
        StageEvent(4, "tests", "finished", state="passed", seconds=1.5),
        StageEvent(4, "eval", "started"),
        StageEvent(4, "eval", "finished", "a reason", state="failed", seconds=2.0),
    ):
        table(event)
    table.close()
    assert table.rows["tests"][:3] == ["passed", 1.5, "pytest tests"]
    assert table.rows["eval"][:3] == ["failed", 2.0, "a reason"]
    assert table._table().title == "pipeline run 4"


def test_an_unexpected_error_ends_the_run_as_error(
    project: Path, good: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmship.pipeline import run as pipeline_run

    def broken(ctx: Context) -> dict[str, Any]:
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(pipeline_run.STAGE_FUNCTIONS, "tests", broken)
    candidate = _candidate(project, good, "Be brief.")
    cfg = load_settings()
    with _registry(cfg) as registry:
        with pytest.raises(RuntimeError, match="disk on fire"):
            run_pipeline(registry, _envs(), _options(candidate), settings=cfg)
        stored = registry.list_pipeline_runs()[0]
        assert (stored.state, stored.failed_stage) == ("error", "tests")
        assert stored.stage("tests").detail["error"] == "RuntimeError: disk on fire"
    assert stored.report_dir is not None
    assert "error" in (Path(stored.report_dir) / "report.md").read_text(encoding="utf-8")


# -- the production rollout, followed ---------------------------------------------------------


@pytest.mark.parametrize("promoted", [True, False], ids=["promoted", "rolled-back"])
def test_the_production_stage_follows_the_rollout_to_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, promoted: bool
) -> None:
    from _controller import CANARY, CANDIDATE, Clock, World, erroring, healthy
    from _registry import chat_registry
    from _stats import InMemoryStats
    from llmship.rollout import ops as rollout_ops
    from llmship.rollout import parse_rollout

    monkeypatch.chdir(tmp_path)  # no llmship.yaml: no gate required
    clock = Clock()
    notes: list[str] = []
    with chat_registry(tmp_path / "registry.db", clock=clock.dt) as registry:
        world = World(registry, clock, InMemoryStats())
        gateway = _fake_gateway(f"sqlite:///{tmp_path / 'registry.db'}", "dev")
        gateway.start()
        try:
            # Given a canary of chat@1.1.0 in dev, its model server ready
            record = rollout_ops.start(
                registry, parse_rollout(CANARY), CANDIDATE, env="dev", actor="ann"
            )
            world.ready()
            world.candidate_stats(healthy() if promoted else erroring())
            dev = Environment("dev", gateway_port=gateway.port)
            ctx = Context(
                registry=registry,
                envs=Environments((dev,)),
                options=PipelineOptions(rollout_timeout=60.0, serve_timeout=10.0),
                settings=Settings(),
                run_id=1,
                target=dev,
                staging=None,
                out=tmp_path,
                note=lambda stage, message: notes.append(message),
                ref=CANDIDATE,
                found={"approval": {"rollout": record.id}},
                sleep=lambda seconds: world.run(1),  # one controller pass a poll
            )
            # When the production stage follows it
            if promoted:
                detail = deploy.production_stage(ctx)
            else:
                with pytest.raises(StageFailed, match="rolled back") as failed:
                    deploy.production_stage(ctx)
                detail = failed.value.detail
        finally:
            gateway.stop()
        # Then it tells each step and ends as the rollout did
        assert any("candidate at 20" in n for n in notes), notes
        if promoted:
            assert (detail["phase"], detail["answered_by"]) == ("Healthy", CANDIDATE)
            assert any("candidate at 50" in n for n in notes), notes
            assert world.production() == CANDIDATE
        else:
            assert detail["phase"] == "Aborted"
            assert world.production() == "chat@1.0.0"
