"""The registry's methods for pipeline runs: each stage of ``llmship pipeline run``.

They are methods of ``Registry`` (which inherits them).

A run row holds the candidate, the target environment, the run's state and its
stages as JSON (name, state, start and end, detail), plus the options it was
started with, so that ``llmship pipeline run --resume RUN`` continues where it
stopped. Each change of a stage is saved at once (a run that dies shows how far
it got), and each stage that ends, and the run's end, is an event ``pipeline.*``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select

from llmship.errors import ConflictError, InvalidRequestError, NotFoundError
from llmship.registry._base import Store, check_env, logger
from llmship.registry.tables import PipelineRunRow

__all__ = [
    "RUN_STATES",
    "STAGE_STATES",
    "PipelineRun",
    "PipelineRunMethods",
    "PipelineStage",
    "RunState",
    "StageState",
]

RunState = Literal["running", "waiting", "succeeded", "failed", "error"]
RUN_STATES: tuple[RunState, ...] = ("running", "waiting", "succeeded", "failed", "error")
StageState = Literal["pending", "running", "passed", "failed", "skipped", "waiting"]
STAGE_STATES: tuple[StageState, ...] = (
    "pending",
    "running",
    "passed",
    "failed",
    "skipped",
    "waiting",
)
ENDED_STAGE: frozenset[str] = frozenset({"passed", "failed", "skipped"})
"""Stage states that end it (``waiting`` stops the run but the stage goes on later)."""


@dataclass(frozen=True)
class PipelineStage:
    """One stage of a pipeline run as stored."""

    name: str
    state: StageState = "pending"
    started_at: datetime | None = None
    finished_at: datetime | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    """What the stage found: gate runs, report paths, the release, the rollout, a message."""

    @property
    def seconds(self) -> float | None:
        """How long it ran (None until it has started and stopped)."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PipelineStage:
        return cls(
            name=str(data["name"]),
            state=data.get("state", "pending"),
            started_at=_when(data.get("started_at")),
            finished_at=_when(data.get("finished_at")),
            detail=dict(data.get("detail") or {}),
        )


@dataclass(frozen=True)
class PipelineRun:
    """One ``llmship pipeline run`` as stored."""

    id: int
    candidate: str
    """The candidate spec as given (a path)."""
    ref: str | None
    """The release it became (``NAME@VERSION``), once registered."""
    target_env: str
    state: RunState
    failed_stage: str | None
    stages: tuple[PipelineStage, ...]
    options: dict[str, Any]
    report_dir: str | None
    created_at: datetime
    created_by: str
    updated_at: datetime

    def stage(self, name: str) -> PipelineStage:
        """The stage ``name`` (NotFoundError: the run has none of that name)."""
        for each in self.stages:
            if each.name == name:
                return each
        raise NotFoundError(f"pipeline run {self.id} has no stage {name!r}", param="stage")


class PipelineRunMethods(Store):
    """Registry methods for pipeline runs: each stage of ``llmship pipeline run``."""

    def create_pipeline_run(
        self,
        candidate: str,
        *,
        target_env: str,
        stages: Sequence[str],
        options: dict[str, Any],
        actor: str,
        report_dir: str | None = None,
    ) -> PipelineRun:
        """Record a new run (state ``running``) of ``candidate`` into ``target_env`` with
        ``stages`` (in order, each ``pending``) and the ``options`` to resume it with."""
        check_env(target_env)
        if not stages or len(set(stages)) != len(stages):
            raise InvalidRequestError("a pipeline run needs distinct stage names", param="stages")
        with self._write() as session:
            now = self._now()
            row = PipelineRunRow(
                candidate=candidate,
                ref=None,
                target_env=target_env,
                state="running",
                failed_stage=None,
                stages=_dumps([PipelineStage(name).to_json() for name in stages]),
                options=_dumps(options),
                report_dir=report_dir,
                created_at=now,
                created_by=actor,
                updated_at=now,
            )
            session.add(row)
            session.flush()
            self._add_event(
                session,
                kind="pipeline.created",
                subject=_subject(row.id),
                message=f"pipeline run {row.id} of {candidate} into {target_env}",
                actor=actor,
                data={"run": row.id, "candidate": candidate, "env": target_env},
            )
            run = _to_run(row)
        logger.info("pipeline run %d of %s into %s by %s", run.id, candidate, target_env, actor)
        return run

    def update_pipeline_stage(
        self,
        run_id: int,
        stage: str,
        *,
        state: StageState,
        actor: str,
        detail: dict[str, Any] | None = None,
        ref: str | None = None,
    ) -> PipelineRun:
        """Set ``stage``'s state (merging ``detail`` into what it holds) and, when
        given, the release the run became. ``running`` stamps the start (once),
        ``passed``/``failed``/``skipped``/``waiting`` the end; an ended stage is an
        event ``pipeline.stage``."""
        if state not in STAGE_STATES:
            raise InvalidRequestError(
                f"stage state {state!r}: use one of {', '.join(STAGE_STATES)}", param="state"
            )
        with self._write() as session:
            row = _row(session, run_id, for_update=True)
            now = self._now()
            stages = [PipelineStage.from_json(s) for s in json.loads(row.stages)]
            names = [s.name for s in stages]
            if stage not in names:
                raise NotFoundError(
                    f"pipeline run {run_id} has no stage {stage!r}; it has {', '.join(names)}",
                    param="stage",
                )
            index = names.index(stage)
            old = stages[index]
            if state == "running" and old.state != "waiting":
                started = now  # a waiting stage that goes on keeps its start
            else:
                started = old.started_at or now
            stages[index] = PipelineStage(
                name=stage,
                state=state,
                started_at=started,
                finished_at=None if state == "running" else now,
                detail={**old.detail, **(detail or {})},
            )
            row.stages = _dumps([s.to_json() for s in stages])
            if ref is not None:
                row.ref = ref
            row.updated_at = now
            if state in ENDED_STAGE or state == "waiting":
                seconds = stages[index].seconds or 0.0
                self._add_event(
                    session,
                    kind="pipeline.stage",
                    subject=_subject(run_id),
                    message=f"pipeline run {run_id}: {stage} {state} ({seconds:.1f}s)",
                    actor=actor,
                    data={"run": run_id, "stage": stage, "state": state, "seconds": seconds},
                )
            session.flush()
            return _to_run(row)

    def finish_pipeline_run(
        self,
        run_id: int,
        *,
        state: RunState,
        actor: str,
        failed_stage: str | None = None,
        report_dir: str | None = None,
    ) -> PipelineRun:
        """Set the run's state: ``waiting`` (on a person, or ``--until``),
        ``succeeded``, ``failed`` (``failed_stage`` names the stage) or ``error``;
        an event ``pipeline.<state>``. ``running`` again is :meth:`resume_pipeline_run`."""
        if state not in RUN_STATES or state == "running":
            raise InvalidRequestError(
                f"a pipeline run ends as waiting, succeeded, failed or error, not {state!r}",
                param="state",
            )
        with self._write() as session:
            row = _row(session, run_id, for_update=True)
            row.state = state
            row.failed_stage = failed_stage
            if report_dir is not None:
                row.report_dir = report_dir
            row.updated_at = self._now()
            where = f" at {failed_stage}" if failed_stage else ""
            self._add_event(
                session,
                kind=f"pipeline.{state}",
                subject=_subject(run_id),
                message=f"pipeline run {run_id} of {row.ref or row.candidate}: {state}{where}",
                actor=actor,
                data={"run": run_id, "state": state, "stage": failed_stage, "ref": row.ref},
            )
            session.flush()
            return _to_run(row)

    def resume_pipeline_run(self, run_id: int, *, actor: str) -> PipelineRun:
        """A ``waiting`` run running again (ConflictError for any other state)."""
        with self._write() as session:
            row = _row(session, run_id, for_update=True)
            if row.state != "waiting":
                raise ConflictError(
                    f"pipeline run {run_id} is {row.state}: only a waiting run can be resumed",
                    param="run",
                )
            row.state = "running"
            row.updated_at = self._now()
            self._add_event(
                session,
                kind="pipeline.resumed",
                subject=_subject(run_id),
                message=f"pipeline run {run_id} resumed",
                actor=actor,
                data={"run": run_id},
            )
            session.flush()
            return _to_run(row)

    def get_pipeline_run(self, run_id: int) -> PipelineRun:
        """The run ``run_id``; NotFoundError when there is none."""
        with self._read() as session:
            return _to_run(_row(session, run_id))

    def list_pipeline_runs(
        self, *, state: RunState | None = None, limit: int = 20
    ) -> list[PipelineRun]:
        """The latest ``limit`` runs (in ``state``), newest first."""
        if limit < 1:
            raise InvalidRequestError("limit must be at least 1", param="limit")
        stmt = select(PipelineRunRow).order_by(PipelineRunRow.id.desc()).limit(limit)
        if state is not None:
            stmt = stmt.where(PipelineRunRow.state == state)
        with self._read() as session:
            return [_to_run(row) for row in session.scalars(stmt)]


# -- helpers -------------------------------------------------------------------------


def _subject(run_id: int) -> str:
    return f"pipeline/{run_id}"


def _row(session: Any, run_id: int, *, for_update: bool = False) -> PipelineRunRow:
    row = session.get(PipelineRunRow, run_id, with_for_update=for_update)
    if row is None:
        raise NotFoundError(
            f"no pipeline run {run_id}: list them with `llmship pipeline list`", param="run"
        )
    return row  # type: ignore[no-any-return]


def _when(text: Any) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) and text else None


def _dumps(data: Any) -> str:
    return json.dumps(data, sort_keys=True, ensure_ascii=False, default=str)


def _to_run(row: PipelineRunRow) -> PipelineRun:
    return PipelineRun(
        id=row.id,
        candidate=row.candidate,
        ref=row.ref,
        target_env=row.target_env,
        state=row.state,  # type: ignore[arg-type]
        failed_stage=row.failed_stage,
        stages=tuple(PipelineStage.from_json(s) for s in json.loads(row.stages)),
        options=json.loads(row.options),
        report_dir=row.report_dir,
        created_at=row.created_at,
        created_by=row.created_by,
        updated_at=row.updated_at,
    )
