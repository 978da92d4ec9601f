"""``llmship pipeline run``: the whole change flow as stages, recorded in the registry.

:func:`run_pipeline` checks the input (nothing is recorded when the candidate spec,
the target environment or ``--until`` is wrong), records a pipeline run, then runs
the stages of :data:`~llmship.pipeline.model.STAGES` in order: the regression tests,
the eval and load-test gates against the target's production release, the release,
staging, the approval of the promotion into the target, and the target's rollout.
Each stage is saved when it starts and when it ends (its time and what it found);
the run ends ``succeeded`` (promoted), ``failed`` (naming the stage), or ``waiting``
(on a person's approval, or after ``--until STAGE``) until ``--resume RUN`` goes on
from the stage it stopped at. A Markdown and an HTML report are written at the end
of every call (:mod:`llmship.pipeline.report`).

Nothing here prints: what happens goes to the ``progress`` callback as
:class:`~llmship.pipeline.model.StageEvent`\\ s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmship.errors import ConflictError, InvalidRequestError, LlmshipError
from llmship.pipeline import deploy, stages
from llmship.pipeline.model import (
    STAGES,
    PipelineOptions,
    PipelineResult,
    Progress,
    StageEvent,
    StageFailed,
    check_stage,
)
from llmship.pipeline.report import write_reports

if TYPE_CHECKING:
    from llmship.environments import Environments
    from llmship.registry import PipelineRun, Registry
    from llmship.settings import Settings

__all__ = ["STAGE_FUNCTIONS", "run_pipeline", "start_options"]

log = logging.getLogger(__name__)

StageFunction = Callable[[stages.Context], dict[str, Any]]

STAGE_FUNCTIONS: dict[str, StageFunction] = {
    "tests": stages.tests_stage,
    "eval": stages.eval_stage,
    "loadtest": stages.loadtest_stage,
    "release": stages.release_stage,
    "staging": deploy.staging_stage,
    "approval": deploy.approval_stage,
    "production": deploy.production_stage,
}
DONE = ("passed", "skipped")


def run_pipeline(
    registry: Registry,
    envs: Environments,
    options: PipelineOptions,
    *,
    progress: Progress | None = None,
    settings: Settings | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> PipelineResult:
    """Run (or, with ``options.resume``, continue) a pipeline; how it ended.

    Bad input raises an llmship error before anything is recorded: an unreadable or
    invalid candidate spec (SpecError), an undeclared target environment, an unknown
    ``--until`` stage, ``--yes`` where the target does not allow it, a missing dataset,
    a candidate that is production already, ``--resume`` of a run that is not waiting.
    What fails in a stage ends the run ``failed`` at that stage (the result says why);
    an unexpected exception ends it ``error`` and is raised.
    """
    from llmship.settings import load_settings

    cfg = settings or load_settings()
    tell = progress if progress is not None else _ignore
    if options.resume is not None:
        run, options = _resume(registry, options, actor=cfg.actor)
    else:
        options = start_options(registry, envs, options)
        target = options.to
        assert target is not None and options.candidate is not None
        run = registry.create_pipeline_run(
            options.candidate,
            target_env=target,
            stages=STAGES,
            options=options.to_json(),
            actor=cfg.actor,
        )
    out = Path(options.out) if options.out else cfg.home / "pipelines" / str(run.id)
    out.mkdir(parents=True, exist_ok=True)
    ctx = stages.Context(
        registry=registry,
        envs=envs,
        options=options,
        settings=cfg,
        run_id=run.id,
        target=envs.declared(run.target_env),
        staging=envs.before(run.target_env),
        out=out,
        note=lambda stage, message: tell(StageEvent(run.id, stage, "note", message)),
        ref=run.ref,
        found={s.name: dict(s.detail) for s in run.stages},
        sleep=sleep,
    )
    try:
        run, message, commands = _run_stages(ctx, run, tell)
    except BaseException as exc:
        running = [s.name for s in registry.get_pipeline_run(run.id).stages if s.state == "running"]
        for name in running:
            why = {"error": f"{type(exc).__name__}: {exc}"}
            registry.update_pipeline_stage(
                run.id, name, state="failed", actor=cfg.actor, detail=why
            )
        run = registry.finish_pipeline_run(
            run.id,
            state="error",
            failed_stage=running[0] if running else None,
            actor=cfg.actor,
            report_dir=str(out),
        )
        write_reports(registry, run, out)
        log.exception("pipeline run %d: %s", run.id, exc)
        raise
    markdown, html = write_reports(registry, run, out)
    return PipelineResult(
        run=registry.get_pipeline_run(run.id),
        message=message,
        report_markdown=markdown,
        report_html=html,
        next_commands=commands,
    )


def start_options(
    registry: Registry, envs: Environments, options: PipelineOptions
) -> PipelineOptions:
    """``options`` checked for a new run, with the target named and every path
    absolute (a resumed run may start elsewhere); raises on bad input, recording nothing."""
    from llmship.release.ops import read_spec

    if options.candidate is None:
        raise InvalidRequestError(
            "give --candidate SPEC (a release spec file), or --resume RUN", param="candidate"
        )
    source = Path(options.candidate)
    if not source.is_file():
        raise InvalidRequestError(
            f"--candidate {source}: no such file; give a release spec (models/NAME-VERSION.yaml)",
            param="candidate",
        )
    spec = read_spec(source)  # SpecError names the file and the field
    target = envs.declared(options.to) if options.to else envs.items[-1]
    if options.until is not None:
        check_stage(options.until)
    if options.yes and target.approval and not target.allow_yes:
        raise InvalidRequestError(
            f"--yes is not allowed for {target.name}: a promotion into it waits for "
            f"`llmship approve` (set environments.{target.name}.allow_yes: true in "
            "llmship.yaml for scripted runs)",
            param="yes",
        )
    project = Path(options.project).resolve()
    if not project.is_dir():
        raise InvalidRequestError(f"the project folder {project} is not a folder", param="project")
    checked = replace(
        options,
        candidate=str(source.resolve()),
        to=target.name,
        project=str(project),
        out=str(Path(options.out).resolve()) if options.out else None,
    )
    dataset = checked.project_path(checked.dataset)
    if not dataset.is_file():
        raise InvalidRequestError(
            f"--dataset {dataset}: no such file; the eval gate needs a golden dataset "
            "(evals/golden.jsonl in a project made by `llmship init`)",
            param="dataset",
        )
    stages.candidate_ref(registry, spec, source, target.name)  # production already: refused
    return checked


def _resume(
    registry: Registry, options: PipelineOptions, *, actor: str
) -> tuple[PipelineRun, PipelineOptions]:
    """The waiting run ``options.resume`` running again, with its stored options (this
    call's ``--until``, ``--yes``, ``--traffic`` and ``--out`` on top)."""
    assert options.resume is not None
    if options.candidate is not None:
        raise InvalidRequestError(
            "--resume RUN goes on with the run's own candidate: leave out --candidate",
            param="candidate",
        )
    if options.until is not None:
        check_stage(options.until)
    run = registry.get_pipeline_run(options.resume)
    if run.state != "waiting":
        raise ConflictError(
            f"pipeline run {run.id} is {run.state}: only a waiting run can be resumed",
            param="resume",
        )
    left = [s.name for s in run.stages if s.state not in DONE]
    if options.until is not None and left and STAGES.index(options.until) < STAGES.index(left[0]):
        raise InvalidRequestError(
            f"--until {options.until}: run {run.id} is past it and goes on at {left[0]}",
            param="until",
        )
    stored = PipelineOptions.from_json(run.options)
    merged = replace(
        stored,
        resume=run.id,
        until=options.until,
        yes=options.yes or stored.yes,
        traffic=options.traffic or stored.traffic,
        out=str(Path(options.out).resolve()) if options.out else stored.out or run.report_dir,
    )
    return registry.resume_pipeline_run(run.id, actor=actor), merged


def _run_stages(
    ctx: stages.Context, run: PipelineRun, tell: Progress
) -> tuple[PipelineRun, str, tuple[str, ...]]:
    """Run the stages not done yet; the run as it ended, a line for people, what to run next."""
    registry, actor = ctx.registry, ctx.actor
    for name in STAGES:
        if run.stage(name).state in DONE:
            continue
        run = registry.update_pipeline_stage(run.id, name, state="running", actor=actor)
        tell(StageEvent(run.id, name, "started"))
        try:
            detail = STAGE_FUNCTIONS[name](ctx)
        except (StageFailed, LlmshipError) as exc:
            message = exc.message
            extra = exc.detail if isinstance(exc, StageFailed) else {}
            run = _end_stage(ctx, run, name, "failed", {**extra, "error": message}, tell)
            run = registry.finish_pipeline_run(
                run.id, state="failed", failed_stage=name, actor=actor, report_dir=str(ctx.out)
            )
            return run, message, ()
        ctx.found[name] = detail
        if detail.get("waiting"):
            run = _end_stage(ctx, run, name, "waiting", detail, tell)
            run = registry.finish_pipeline_run(
                run.id, state="waiting", actor=actor, report_dir=str(ctx.out)
            )
            return run, str(detail["waiting"]), tuple(detail.get("next") or ())
        state = "skipped" if detail.get("skipped") else "passed"
        run = _end_stage(ctx, run, name, state, detail, tell)
        if ctx.options.until == name and name != STAGES[-1]:
            run = registry.finish_pipeline_run(
                run.id, state="waiting", actor=actor, report_dir=str(ctx.out)
            )
            resume = f"llmship pipeline run --resume {run.id}"
            return run, f"stopped after {name} (--until {name})", (resume,)
    run = registry.finish_pipeline_run(
        run.id, state="succeeded", actor=actor, report_dir=str(ctx.out)
    )
    return run, f"{ctx.ref} promoted: the production release of {ctx.target.name}", ()


def _end_stage(
    ctx: stages.Context,
    run: PipelineRun,
    name: str,
    state: Any,
    detail: dict[str, Any],
    tell: Progress,
) -> PipelineRun:
    run = ctx.registry.update_pipeline_stage(
        run.id, name, state=state, actor=ctx.actor, detail=detail, ref=ctx.ref
    )
    stage = run.stage(name)
    message = detail.get("error") or detail.get("skipped") or detail.get("waiting") or ""
    tell(StageEvent(run.id, name, "finished", str(message), state=state, seconds=stage.seconds))
    return run


def _ignore(event: StageEvent) -> None:
    """The ``progress`` of a caller that gave none."""
