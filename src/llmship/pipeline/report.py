"""The report of a pipeline run, in Markdown and HTML: its stages and their times, the
gate results, the rollout's timeline (the registry's rollout events), and links to
the eval and load-test reports written beside it.

:func:`build` reads what the report shows from the registry into a
:class:`PipelineReport`; :func:`render_markdown` and :func:`render_html` render
it; :func:`write_reports` writes both into the run's folder.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmship.errors import LlmshipError, NotFoundError

if TYPE_CHECKING:
    from llmship.registry import Event, PipelineRun, Registry

__all__ = [
    "PipelineReport",
    "build",
    "render_html",
    "render_markdown",
    "stage_summary",
    "write_reports",
]

MARKDOWN_NAME = "report.md"
HTML_NAME = "report.html"


@dataclass(frozen=True)
class StageRow:
    """One stage as the report shows it."""

    name: str
    state: str
    seconds: float | None
    summary: str


@dataclass(frozen=True)
class GateRow:
    """One gate run of the release."""

    kind: str
    run: int
    passed: bool
    headline: str
    links: tuple[tuple[str, str], ...]
    """``(label, path relative to the report)`` of its report files."""


@dataclass(frozen=True)
class PipelineReport:
    """What a pipeline run's report shows."""

    run: int
    candidate: str
    ref: str | None
    target: str
    state: str
    failed_stage: str | None
    created_by: str
    created_at: str
    total_seconds: float
    stages: tuple[StageRow, ...]
    gates: tuple[GateRow, ...]
    timeline: tuple[tuple[str, str], ...]
    """``(time, message)`` of each event of the rollout in the target."""
    rollout: int | None


def build(registry: Registry, run: PipelineRun, folder: Path) -> PipelineReport:
    """The report of ``run``, with links relative to ``folder`` (where it is written)."""
    rows = tuple(
        StageRow(s.name, s.state, s.seconds, stage_summary(s.name, s.detail)) for s in run.stages
    )
    gates = []
    for kind in ("eval", "loadtest"):
        detail = run.stage(kind).detail
        if detail.get("run") is None:
            continue
        links = tuple(
            (label, _relative(Path(path), folder))
            for label, path in sorted((detail.get("reports") or {}).items())
        )
        gates.append(
            GateRow(kind, int(detail["run"]), bool(detail.get("passed")), _headline(detail), links)
        )
    rollout = run.stage("production").detail.get("rollout") or run.stage("approval").detail.get(
        "rollout"
    )
    events = _rollout_events(registry, int(rollout)) if rollout is not None else []
    return PipelineReport(
        run=run.id,
        candidate=run.candidate,
        ref=run.ref,
        target=run.target_env,
        state=run.state,
        failed_stage=run.failed_stage,
        created_by=run.created_by,
        created_at=run.created_at.isoformat(timespec="seconds"),
        total_seconds=sum(s.seconds or 0.0 for s in run.stages),
        stages=rows,
        gates=tuple(gates),
        timeline=tuple((e.at.isoformat(timespec="seconds"), e.message) for e in events),
        rollout=int(rollout) if rollout is not None else None,
    )


def write_reports(registry: Registry, run: PipelineRun, folder: Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` of ``run`` into ``folder``; their paths."""
    report = build(registry, run, folder)
    markdown, page = folder / MARKDOWN_NAME, folder / HTML_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        markdown.write_text(render_markdown(report), encoding="utf-8")
        page.write_text(render_html(report), encoding="utf-8")
    except OSError as exc:
        raise LlmshipError(f"cannot write the pipeline report in {folder}: {exc}") from exc
    return markdown, page


def render_markdown(report: PipelineReport) -> str:
    """The report as Markdown."""
    lines = [
        f"# Pipeline run {report.run}: {_outcome(report)}",
        "",
        f"- candidate: `{report.candidate}`",
        f"- release: {report.ref or '(not registered)'}",
        f"- into: {report.target}",
        f"- started: {report.created_at} by {report.created_by}",
        f"- time in stages: {report.total_seconds:.1f}s",
        "",
        "## Stages",
        "",
        "| stage | state | time | detail |",
        "| --- | --- | --- | --- |",
    ]
    for s in report.stages:
        lines.append(f"| {s.name} | {s.state} | {_secs(s.seconds)} | {_cell(s.summary)} |")
    lines += ["", "## Gates", ""]
    if not report.gates:
        lines.append("No gate ran.")
    for g in report.gates:
        links = ", ".join(f"[{label}]({path})" for label, path in g.links)
        verdict = "passed" if g.passed else "failed"
        lines.append(f"- **{g.kind}** (gate run {g.run}): {verdict}; {g.headline}. {links}")
    lines += ["", "## Rollout timeline", ""]
    if not report.timeline:
        lines.append("No rollout ran.")
    else:
        lines.append(f"Rollout {report.rollout} in {report.target}:")
        lines.append("")
        lines += [f"- {at}: {_cell(message)}" for at, message in report.timeline]
    return "\n".join(lines) + "\n"


def render_html(report: PipelineReport) -> str:
    """The report as one HTML page (no scripts, no outside resources)."""
    e = html.escape
    rows = "".join(
        f"<tr class='{e(s.state)}'><td>{e(s.name)}</td><td>{e(s.state)}</td>"
        f"<td>{_secs(s.seconds)}</td><td>{e(s.summary)}</td></tr>"
        for s in report.stages
    )
    gates = "".join(
        f"<li><b>{e(g.kind)}</b> (gate run {g.run}): {'passed' if g.passed else 'failed'}; "
        f"{e(g.headline)}. "
        + ", ".join(f"<a href='{e(path)}'>{e(label)}</a>" for label, path in g.links)
        + "</li>"
        for g in report.gates
    )
    events = "".join(
        f"<li><time>{e(at)}</time> {e(message)}</li>" for at, message in report.timeline
    )
    timeline = (
        f"<p>Rollout {report.rollout} in {e(report.target)}:</p><ol>{events}</ol>"
        if events
        else "<p>No rollout ran.</p>"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Pipeline run {report.run}: {e(_outcome(report))}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; max-width: 60rem; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: .3rem .6rem; }}
tr.passed td:nth-child(2) {{ color: #070; }} tr.failed td:nth-child(2) {{ color: #b00; }}
tr.waiting td:nth-child(2) {{ color: #a60; }} time {{ color: #666; }}
</style></head><body>
<h1>Pipeline run {report.run}: {e(_outcome(report))}</h1>
<p>Candidate <code>{e(report.candidate)}</code>, release {e(report.ref or "(not registered)")},
into {e(report.target)}; started {e(report.created_at)} by {e(report.created_by)};
{report.total_seconds:.1f}s in stages.</p>
<h2>Stages</h2>
<table><tr><th>stage</th><th>state</th><th>time</th><th>detail</th></tr>{rows}</table>
<h2>Gates</h2>
{f"<ul>{gates}</ul>" if gates else "<p>No gate ran.</p>"}
<h2>Rollout timeline</h2>
{timeline}
</body></html>
"""


# -- helpers --------------------------------------------------------------------------


def _outcome(report: PipelineReport) -> str:
    if report.state == "succeeded":
        return f"{report.ref} promoted in {report.target}"
    if report.state == "failed":
        return f"failed at {report.failed_stage}"
    return report.state


def stage_summary(stage: str, detail: dict[str, Any]) -> str:
    """One line on what a stage found."""
    for key in ("error", "skipped", "waiting"):
        if detail.get(key):
            return str(detail[key])
    if stage == "tests":
        return str(detail.get("summary") or "")
    if stage in ("eval", "loadtest"):
        return f"gate run {detail.get('run')} of {detail.get('ref')}: {_headline(detail)}"
    if stage == "release":
        previous = detail.get("previous") or "first release"
        return f"{detail.get('ref')} (from {previous}, {detail.get('bump') or 'new'})"
    parts = []
    if detail.get("rollout") is not None:
        parts.append(f"rollout {detail['rollout']} {detail.get('phase') or 'started'}")
    if detail.get("approval") is not None:
        who = detail.get("approved_by")
        parts.append(f"approval {detail['approval']}" + (f" by {who}" if who else ""))
    if detail.get("answered_by"):
        parts.append(f"{detail.get('gateway')} answered with {detail['answered_by']}")
    if detail.get("traffic"):
        sent = detail["traffic"]
        parts.append(f"live traffic: {sent.get('sent')} requests, {sent.get('errors')} errors")
    return "; ".join(parts)


def _headline(detail: dict[str, Any]) -> str:
    if "baseline" in detail:
        failures = detail.get("failures") or []
        against = f"against {detail['baseline']}"
        return f"{against}: {'; '.join(failures[:2])}" if failures else f"{against}: held"
    if "requests" in detail:
        rate = detail.get("error_rate")
        ttft = detail.get("ttft_p95")
        parts = [f"{detail['requests']} requests"]
        if rate is not None:
            parts.append(f"error rate {rate:.1%}")
        if ttft is not None:
            parts.append(f"TTFT p95 {ttft * 1000:.0f} ms")
        reasons = detail.get("reasons") or []
        return ", ".join(parts) + (f" ({'; '.join(reasons[:2])})" if reasons else "")
    return ""


def _rollout_events(registry: Registry, rollout_id: int) -> list[Event]:
    try:
        return registry.rollout_events(rollout_id)
    except NotFoundError:
        return []


def _relative(path: Path, folder: Path) -> str:
    try:
        return os.path.relpath(path, folder)
    except ValueError:  # another drive (Windows)
        return str(path)


def _secs(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds:.1f}s"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
