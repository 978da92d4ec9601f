"""What ``llmship loadtest`` does, as functions: run a load test against a target
(or a release served for the occasion) with SLOs, write its reports, record it in
the registry against its release.

:func:`run` does it all in one call; its steps (:func:`measure`,
:func:`write_reports`, :func:`record`) can be called one by one, as the command
line does to print the report before recording it. Nothing here prints:
what happens while a test runs is told to an optional ``progress`` callback
(:data:`Event`).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from llmship.errors import InvalidRequestError, LlmshipError
from llmship.loadtest.plan import LoadPlan
from llmship.loadtest.report_model import KIND, LoadTestReport
from llmship.settings import Settings

if TYPE_CHECKING:
    from llmship.registry import GateRun, Registry

__all__ = [
    "Event",
    "LoadTestOutcome",
    "Measured",
    "Measuring",
    "Recording",
    "ReportFiles",
    "ServingRelease",
    "SeveralReleases",
    "attribute",
    "measure",
    "record",
    "run",
    "write_reports",
]

TICK_S = 0.1
"""Seconds between two :class:`Measuring` events."""


# -- progress ------------------------------------------------------------------------


@dataclass(frozen=True)
class ServingRelease:
    """``llmship serve --release ref`` is starting, to be the target."""

    ref: str


@dataclass(frozen=True)
class Measuring:
    """The load generator runs: ``elapsed`` of ``total`` seconds (warm-up + duration)."""

    elapsed: float
    total: float
    open_loop: bool


@dataclass(frozen=True)
class Measured:
    """The load generator has stopped (sent once after the :class:`Measuring` events)."""


@dataclass(frozen=True)
class SeveralReleases:
    """Several releases answered, so the run is attributed to none (pass ``ref``)."""

    versions: dict[str, int]
    """Release -> requests it answered."""


Event = ServingRelease | Measuring | Measured | SeveralReleases
"""What a load test tells its ``progress`` callback."""
Progress = Callable[[Event], None]


# -- results -------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportFiles:
    """Where to write the report's renderings (None: that one is not written)."""

    json: Path | None = None
    markdown: Path | None = None
    html: Path | None = None
    junit: Path | None = None


@dataclass(frozen=True)
class Recording:
    """What became of storing a run in the registry."""

    run: GateRun | None
    """The stored gate run; None when it could not be stored."""
    error: str | None = None
    """Why it was not stored (only when the release was not named: else it raised)."""


@dataclass(frozen=True)
class LoadTestOutcome:
    """A load test run by :func:`run`."""

    report: LoadTestReport
    files: dict[str, Path] = field(default_factory=dict)
    """The renderings written: ``json``, ``markdown``, ``html``, ``junit`` -> path."""
    recording: Recording | None = None
    """None: not recorded (not asked, or the release is unknown)."""

    @property
    def passed(self) -> bool:
        return self.report.passed

    @property
    def run_id(self) -> int | None:
        """The registry's gate-run id, when the run was recorded."""
        run = self.recording.run if self.recording else None
        return run.id if run else None


# -- the workflow --------------------------------------------------------------------


def run(
    plan: LoadPlan,
    slos: Mapping[str, float],
    settings: Settings,
    *,
    release: str | None = None,
    ref: str | None = None,
    files: ReportFiles | None = None,
    record_run: bool = True,
    progress: Progress | None = None,
) -> LoadTestOutcome:
    """Load-test ``plan``'s target (or ``release``, served on a free port) against
    ``slos``, write ``files`` and record the run in the registry of ``settings``.

    ``ref`` names the release a target belongs to; without it (and without
    ``release``) the run is attributed to the one release that answered, if one
    did. Storing the run fails the call only when the release was named
    (``release``, ``ref``); else :attr:`Recording.error` says why it was not stored.
    """
    report = measure(plan, slos, settings, release=release, ref=ref, progress=progress)
    written = write_reports(report, files or ReportFiles())
    recording = record(report, settings, required=bool(release or ref)) if record_run else None
    return LoadTestOutcome(report=report, files=written, recording=recording)


def measure(
    plan: LoadPlan,
    slos: Mapping[str, float],
    settings: Settings,
    *,
    release: str | None = None,
    ref: str | None = None,
    progress: Progress | None = None,
) -> LoadTestReport:
    """Serve ``release`` when asked, probe the target, send a first request (a wrong
    URL, endpoint or model fails here, before any load), run the test, judge it.

    ``release`` and ``ref`` are resolved in the registry (an alias becomes
    ``NAME@VERSION``) before anything starts; giving both is a usage error.
    """
    from llmship.loadtest.runner import run_load_test
    from llmship.loadtest.slo import check_endpoint
    from llmship.loadtest.target import ReleaseServer, first_request, probe

    check_endpoint(slos, plan.endpoint)
    if release and ref:
        raise InvalidRequestError(
            "give release or ref, not both: serving a release names it already", param="ref"
        )
    tell = progress or _ignore
    named = release or ref
    if named:
        with _open_registry(settings) as registry:  # fail now, not after the run
            ref = registry.resolve(named, env=settings.env).ref
    with ExitStack() as stack:
        if release and ref:
            tell(ServingRelease(ref))
            server = stack.enter_context(ReleaseServer(ref, env=settings.env))
            plan = replace(plan, target=server.url)
        info = probe(plan.target)
        if plan.model is None and info.model is not None:
            plan = replace(plan, model=info.model)
        first_request(plan)
        report = run_load_test(
            plan, dict(slos), ref=ref, wait=_waiter(plan, progress) if progress else None
        )
    report = attribute(report, source="--release" if release else "--ref" if ref else None)
    versions = report.results.versions
    if report.ref is None and len(versions) > 1:
        tell(SeveralReleases(dict(versions)))
    return report


def attribute(report: LoadTestReport, *, source: str | None) -> LoadTestReport:
    """``report`` with where its ``ref`` came from: ``source`` (``--release`` or
    ``--ref``, the report's words for a release that was served or named); a report
    without a ref is attributed to the one release that answered
    (``X-Llmship-Version``), if exactly one did."""
    versions = report.results.versions
    if report.ref is None and len(versions) == 1:
        return replace(report, ref=next(iter(versions)), ref_source="X-Llmship-Version")
    return replace(report, ref_source=source)


def write_reports(report: LoadTestReport, files: ReportFiles) -> dict[str, Path]:
    """Write the renderings ``files`` asks for (folders are made); the paths written.
    A file that cannot be written is an LlmshipError that names it."""
    from llmship.loadtest.html_report import render_html
    from llmship.loadtest.report import render_junit, render_markdown

    renderers: dict[str, tuple[Path | None, Callable[[LoadTestReport], str]]] = {
        "json": (files.json, _json_text),
        "markdown": (files.markdown, render_markdown),
        "html": (files.html, render_html),
        "junit": (files.junit, render_junit),
    }
    written: dict[str, Path] = {}
    for name, (path, render) in renderers.items():
        if path is None:
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render(report), encoding="utf-8")
        except OSError as exc:
            raise LlmshipError(f"cannot write {path}: {exc.strerror or exc}") from exc
        written[name] = path
    return written


def record(report: LoadTestReport, settings: Settings, *, required: bool) -> Recording | None:
    """Store the run as a ``loadtest`` gate run of its release in ``settings.env``.

    None when the report names no release. A failure to store it raises when
    ``required`` (the release was named); else the :class:`Recording` says why.
    """
    from llmship.loadtest.report import summary

    if report.ref is None:
        return None
    try:
        with _open_registry(settings) as registry:
            stored = registry.record_gate_run(
                KIND,
                report.ref,
                env=settings.env,
                passed=report.passed,
                summary=summary(report),
                report=report.to_json(),
                actor=settings.actor,
                error=report.error,
            )
    except LlmshipError as exc:
        if required:
            raise
        return Recording(run=None, error=exc.message)
    return Recording(run=stored)


# -- helpers -------------------------------------------------------------------------


def _open_registry(settings: Settings) -> Registry:
    """The registry of ``settings`` (a context manager that closes it)."""
    from llmship.registry import Registry

    return Registry.open(settings.registry_url, home=settings.home)


def _json_text(report: LoadTestReport) -> str:
    return json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"


def _ignore(event: Event) -> None:
    """The ``progress`` callback of a caller that gave none."""


def _waiter(plan: LoadPlan, progress: Progress) -> Callable[[subprocess.Popen[bytes], float], None]:
    """The runner's wait: tell ``progress`` the elapsed time until the generator exits
    (or ``budget`` seconds pass), then :class:`Measured`."""
    total = plan.warmup + plan.duration

    def wait(process: subprocess.Popen[bytes], budget: float) -> None:
        started = time.monotonic()
        try:
            while process.poll() is None and time.monotonic() - started < budget:
                progress(Measuring(min(total, time.monotonic() - started), total, plan.open_loop))
                time.sleep(TICK_S)
        finally:
            progress(Measured())

    return wait
