"""What ``llmship pipeline run`` takes and gives: its options, the stages in order,
the progress events it reports, and its result.

The options are plain data (they are stored with the run, so that ``--resume RUN``
goes on with them); the progress events are what the command line draws, live.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from llmship.errors import InvalidRequestError

if TYPE_CHECKING:
    from llmship.registry import PipelineRun

__all__ = [
    "STAGES",
    "PipelineOptions",
    "PipelineResult",
    "Progress",
    "StageEvent",
    "StageFailed",
    "check_stage",
]

STAGES: tuple[str, ...] = (
    "tests",
    "eval",
    "loadtest",
    "release",
    "staging",
    "approval",
    "production",
)
"""The stages of a pipeline, in the order they run."""


def check_stage(name: str, option: str = "--until") -> str:
    """``name`` when it is a stage; InvalidRequestError listing the stages otherwise."""
    if name not in STAGES:
        raise InvalidRequestError(
            f"{option} {name!r} is not a stage; use one of {', '.join(STAGES)}", param="until"
        )
    return name


@dataclass(frozen=True)
class PipelineOptions:
    """How to run a pipeline (``llmship pipeline run``'s options, stored with the run)."""

    candidate: str | None = None
    """The candidate release spec (a path); None only with ``resume``."""
    to: str | None = None
    """The target environment; None: the last declared one."""
    traffic: bool = False
    """Send live requests through the target's gateway during its rollout."""
    traffic_rps: float = 2.0
    """Requests per second of that live traffic."""
    until: str | None = None
    """Stop (state ``waiting``) after this stage."""
    resume: int | None = None
    """Continue this waiting run instead of starting one."""
    yes: bool = False
    """Approve the promotion into the target in the same run, where the env allows it."""
    out: str | None = None
    """Folder for the reports; None: ``.llmship/pipelines/RUN/`` under the project."""
    project: str = "."
    """The project folder: where ``tests/`` and the dataset are, where pytest runs."""
    tests: str = "tests"
    """The project's regression tests under ``project``: a folder, a file or a pytest node
    id (missing: the stage is skipped)."""
    dataset: str = "evals/golden.jsonl"
    """The golden dataset of the eval gate and the prompts of the load test."""
    loadtest_duration: float = 10.0
    """Seconds the load-test gate measures."""
    loadtest_users: int = 1
    """Concurrent users of the load-test gate."""
    max_tokens: int | None = None
    """Longest answer of the eval and load-test gates (None: the release's own)."""
    serve_timeout: float = 180.0
    """Seconds to wait for an environment's gateway to answer with the new release."""
    rollout_timeout: float = 900.0
    """Seconds to follow the production rollout before giving up on it."""
    reason: str = ""
    """Recorded with the promotions (default: ``pipeline run N``)."""

    def to_json(self) -> dict[str, Any]:
        """The options as stored with the run."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PipelineOptions:
        """Options stored by :meth:`to_json` (unknown keys, from another version, dropped)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def project_path(self, relative: str) -> Path:
        """``relative`` under the project folder (an absolute path stays as it is)."""
        path = Path(relative)
        return path if path.is_absolute() else Path(self.project) / path


@dataclass(frozen=True)
class StageEvent:
    """What a running pipeline tells its ``progress`` callback."""

    run: int
    stage: str
    kind: Literal["started", "note", "finished"]
    message: str = ""
    state: str | None = None
    """How the stage ended (``passed``, ``failed``, ``skipped``, ``waiting``): ``finished`` only."""
    seconds: float | None = None
    """How long the stage took: ``finished`` only."""


Progress = Callable[[StageEvent], None]


class StageFailed(Exception):
    """A stage's check did not hold (a gate failed, a rollout was rolled back)."""

    def __init__(self, message: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or {}


@dataclass(frozen=True)
class PipelineResult:
    """How a pipeline run ended."""

    run: PipelineRun
    message: str
    """One line for people: promoted, waiting (and on what), or why it failed."""
    report_markdown: Path | None = None
    report_html: Path | None = None
    next_commands: tuple[str, ...] = ()
    """What to run next, for a waiting run: ``llmship approve ID``, ``--resume RUN``."""

    @property
    def state(self) -> str:
        """``succeeded``, ``waiting``, ``failed`` or ``error``."""
        return self.run.state

    @property
    def failed_stage(self) -> str | None:
        return self.run.failed_stage

    @property
    def exit_code(self) -> int:
        """0 promoted or waiting, 1 a stage failed."""
        return 0 if self.run.state in ("succeeded", "waiting") else 1
