"""The first stages of a pipeline: the regression tests, the eval and load-test gates
against production, and the release.

Each stage is a function of the :class:`Context` that returns what it found (the
detail stored with the stage) or raises :class:`~llmship.pipeline.model.StageFailed`
when its check does not hold. They call the service functions of the commands a
person would run (``pytest`` with llmship's plugin, :func:`llmship.eval.ops.run_eval`,
:func:`llmship.loadtest.ops.run`, :func:`llmship.release.ops.release`); none prints.

The gates judge registered releases and store their runs against one, and the
promotion guard reads the runs of the release it promotes. So before the eval gate
the candidate is registered at the version its release will have
(:func:`candidate_ref`: the next version, as ``llmship release --dry-run`` says),
and the release stage then writes that version's file and changelog entry: the gate
runs are already recorded against the released version. A candidate the gates
reject stays registered, unreleased (no file, no changelog entry), with its failed
gate runs; the next candidate's version comes after it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmship.errors import ConflictError, InvalidRequestError
from llmship.pipeline.model import PipelineOptions, StageFailed
from llmship.release.ops import Outcome, read_spec, release

if TYPE_CHECKING:
    from llmship.environments import Environment, Environments
    from llmship.registry import Registry
    from llmship.registry.records import ReleaseRecord
    from llmship.release.spec import ReleaseSpec
    from llmship.settings import Settings

__all__ = [
    "Context",
    "candidate_ref",
    "eval_stage",
    "loadtest_stage",
    "release_stage",
    "tests_stage",
]

TESTS_TIMEOUT_S = 1800.0
"""Longest the project's regression tests may run."""
LOG_TAIL = 4000
"""Characters of the tests' output kept in the stage's detail."""


@dataclass
class Context:
    """What the stages of one run share."""

    registry: Registry
    envs: Environments
    options: PipelineOptions
    settings: Settings
    run_id: int
    target: Environment
    staging: Environment | None
    out: Path
    """The run's report folder."""
    note: Callable[[str, str], None]
    """``note(stage, message)``: a progress line of the running stage."""
    ref: str | None = None
    """The candidate as a registered release, from the eval stage on."""
    found: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each stage's stored detail so far (a resumed run reads them back)."""
    sleep: Callable[[float], None] = time.sleep

    @property
    def actor(self) -> str:
        return self.settings.actor

    @property
    def reason(self) -> str:
        return self.options.reason or f"pipeline run {self.run_id}"

    def source(self) -> Path:
        """The candidate spec's file."""
        assert self.options.candidate is not None
        return Path(self.options.candidate)

    def spec(self) -> ReleaseSpec:
        return read_spec(self.source())

    def env_settings(self, env: str) -> Settings:
        return self.settings.model_copy(update={"env": env})


# -- the candidate as a release ---------------------------------------------------------


def candidate_ref(registry: Registry, spec: ReleaseSpec, source: Path, env: str) -> str:
    """``NAME@VERSION`` the candidate ``spec`` is released as, without registering it.

    The next version after the newest registered one (by what changed), or that
    newest one when it is this very candidate already (a run that stopped before
    its release). InvalidRequestError when the candidate is ``env``'s production
    release already: nothing to do.
    """
    planned = release(registry, spec, source, actor="pipeline", dry_run=True)
    if planned.outcome is Outcome.DRY_RUN:
        assert planned.version is not None
        return f"{spec.name}@{planned.version}"
    latest = f"{spec.name}@{planned.previous}"
    production = _production(registry, env)
    if production is not None and production.ref == latest:
        raise InvalidRequestError(
            f"{source}: the candidate is {latest}, production in {env} already; "
            "change the spec (a prompt, parameters, weights) to make a candidate",
            param="candidate",
        )
    return latest


def _production(registry: Registry, env: str) -> ReleaseRecord | None:
    from llmship.errors import NotFoundError

    try:
        return registry.resolve("production", env=env)
    except NotFoundError:
        return None


def register_candidate(ctx: Context) -> str:
    """Register the candidate at its release's version (see the module's docstring)."""
    if ctx.ref is not None:
        return ctx.ref
    spec = ctx.spec()
    ref = candidate_ref(ctx.registry, spec, ctx.source(), ctx.target.name)
    version = ref.partition("@")[2]
    record, created = ctx.registry.register(
        spec.model_copy(update={"version": version}), actor=ctx.actor
    )
    ctx.note("eval", f"candidate {record.ref} {'registered' if created else 'known'}")
    ctx.ref = record.ref
    return record.ref


# -- tests ----------------------------------------------------------------------------


def tests_stage(ctx: Context) -> dict[str, Any]:
    """The project's regression tests (pytest with llmship's plugin) against the candidate
    spec, in a child process in the project folder; skipped when ``tests`` (a folder, a
    file or a pytest node id ``FILE::TEST``) is not there."""
    opts = ctx.options
    tests = opts.project_path(opts.tests)  # a folder, a file, or a pytest node id
    if not opts.project_path(opts.tests.partition("::")[0]).exists():
        return {"skipped": f"no {opts.tests} in {opts.project}"}
    log = ctx.out / "tests.log"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)]
    ctx.note("tests", f"pytest {opts.tests} against {ctx.source().name}")
    env = {
        **os.environ,
        "LLMSHIP_TEST_RELEASE": str(ctx.source().resolve()),
        "LLMSHIP_ENV": ctx.target.name,
        "PYTHONUNBUFFERED": "1",
    }
    started = time.monotonic()
    try:
        done = subprocess.run(
            command,
            cwd=opts.project,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TESTS_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise StageFailed(f"the tests ran past {TESTS_TIMEOUT_S:.0f}s") from exc
    output = done.stdout + done.stderr
    log.write_text(output, encoding="utf-8")
    lines = [line for line in output.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    detail = {
        "exit_code": done.returncode,
        "summary": last.strip("= "),
        "log": str(log),
        "seconds": round(time.monotonic() - started, 2),
    }
    if done.returncode == 5:  # no tests collected
        return {**detail, "skipped": f"no tests collected in {opts.tests}"}
    if done.returncode != 0:
        raise StageFailed(f"the regression tests failed: {last.strip('= ')} (see {log})", detail)
    return detail


# -- gates ------------------------------------------------------------------------------


class _Generation:
    """The eval's generation progress as notes: one when a release starts, then every
    quarter of its cases."""

    def __init__(self, note: Callable[[str, str], None]) -> None:
        self.note = note
        self.counts: dict[str, list[int]] = {}

    def start(self, label: str, total: int, done: int) -> None:
        self.counts[label] = [done, total]
        cached = f" ({done} cached)" if done else ""
        self.note("eval", f"generating {label}: {total} case(s){cached}")

    def advance(self, label: str) -> None:
        count = self.counts.setdefault(label, [0, 0])
        count[0] += 1
        done, total = count
        if total and (done == total or done % max(1, total // 4) == 0):
            self.note("eval", f"{label}: {done}/{total}")


def eval_stage(ctx: Context) -> dict[str, Any]:
    """The eval gate: the candidate against the target's ``production`` release on the
    golden dataset, recorded against the candidate's release (registered here)."""
    from llmship.eval import ops
    from llmship.eval.config import load_gate
    from llmship.eval.generation import EvalOptions

    ref = register_candidate(ctx)
    data = ops.load_cases(ctx.options.project_path(ctx.options.dataset))
    options = EvalOptions(max_tokens=ctx.options.max_tokens, timeout_s=ctx.settings.request_timeout)
    paths = ops.ReportPaths(
        json=ctx.out / "eval.json", markdown=ctx.out / "eval.md", html=ctx.out / "eval.html"
    )
    result = ops.run_eval(
        ctx.registry,
        data,
        ref,
        env=ctx.target.name,
        actor=ctx.actor,
        gate=load_gate(),
        options=options,
        paths=paths,
        progress=_Generation(ctx.note),
    )
    report = result.report
    detail = {
        "run": result.run_id,
        "ref": ref,
        "baseline": report.baseline.ref,
        "passed": result.passed,
        "failures": list(result.decision.failures[:5]),
        "reports": {label.lower(): str(path) for label, path in result.written},
    }
    if not result.passed:
        why = "; ".join(result.decision.failures[:3]) or "the gate failed"
        raise StageFailed(
            f"{ref} failed the eval gate against {report.baseline.ref}: {why}", detail
        )
    return detail


def loadtest_stage(ctx: Context) -> dict[str, Any]:
    """The load-test gate: the candidate served on a free port, the golden dataset's
    prompts for ``loadtest_duration`` seconds, judged by ``gates: loadtest:``'s SLOs."""
    from llmship.loadtest import ops
    from llmship.loadtest.config import load_gate_config, merged_slos
    from llmship.loadtest.plan import LoadPlan, load_prompts

    ref = register_candidate(ctx)
    opts = ctx.options
    plan = LoadPlan(
        target="http://127.0.0.1",
        users=opts.loadtest_users,
        duration=opts.loadtest_duration,
        prompts=load_prompts(opts.project_path(opts.dataset)),
        max_tokens=opts.max_tokens or 64,
    ).validated()
    slos = merged_slos(load_gate_config(), {})
    shown = [-1]

    def progress(event: ops.Event) -> None:
        if isinstance(event, ops.ServingRelease):
            ctx.note("loadtest", f"serving {event.ref} on a free port")
        elif isinstance(event, ops.Measuring) and int(event.elapsed) // 5 > shown[0]:
            shown[0] = int(event.elapsed) // 5
            ctx.note("loadtest", f"measuring {event.elapsed:.0f}/{event.total:.0f}s")

    files = ops.ReportFiles(
        json=ctx.out / "loadtest.json",
        markdown=ctx.out / "loadtest.md",
        html=ctx.out / "loadtest.html",
    )
    outcome = ops.run(
        plan,
        slos,
        ctx.env_settings(ctx.target.name),
        release=ref,
        files=files,
        progress=progress,
    )
    report = outcome.report
    results = report.results
    detail = {
        "run": outcome.run_id,
        "ref": ref,
        "passed": report.passed,
        "requests": results.requests,
        "error_rate": results.error_rate,
        "ttft_p95": results.ttft.p95 if results.ttft else None,
        "slos": dict(slos),
        "reasons": list(report.reasons),
        "reports": {name: str(path) for name, path in outcome.files.items()},
    }
    if not report.passed:
        why = "; ".join(report.reasons[:3]) or "an SLO failed"
        raise StageFailed(f"{ref} failed the load-test gate: {why}", detail)
    return detail


# -- release ----------------------------------------------------------------------------


class _WithoutCandidate:
    """The registry as :func:`~llmship.release.ops.release` sees it, without the
    candidate's own registration, so that the release works out the same version and
    writes its file and changelog entry (registering it again changes nothing)."""

    def __init__(self, registry: Registry, ref: str) -> None:
        self.registry = registry
        self.ref = ref

    def list_releases(self, name: str | None = None) -> list[ReleaseRecord]:
        return [r for r in self.registry.list_releases(name) if r.ref != self.ref]

    def register(self, spec: ReleaseSpec, *, actor: str) -> tuple[ReleaseRecord, bool]:
        return self.registry.register(spec, actor=actor)


def release_stage(ctx: Context) -> dict[str, Any]:
    """The release: the candidate's version file ``NAME-VERSION.yaml`` and its changelog
    entry (``llmship release``), at the version its gate runs are recorded against."""
    ref = register_candidate(ctx)
    done = release(
        _WithoutCandidate(ctx.registry, ref),
        ctx.spec(),
        ctx.source(),
        actor=ctx.actor,
        reason=ctx.reason,
    )
    if done.ref != ref:
        raise ConflictError(
            f"the release became {done.ref or 'nothing'}, not {ref}: another release of "
            f"{done.name} was registered meanwhile; run the pipeline again",
            param="candidate",
        )
    ctx.note("release", f"{ref} released ({done.bump.value if done.bump else 'first release'})")
    gates = ctx.registry.latest_gate_runs(ref)
    return {
        "ref": ref,
        "previous": done.previous_ref,
        "bump": done.bump.value if done.bump else None,
        "file": str(done.file) if done.file else None,
        "changelog": str(done.changelog) if done.changelog else None,
        "gates": {kind: {"run": run.id, "passed": run.passed} for kind, run in gates.items()},
    }
