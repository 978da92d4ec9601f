"""The load-test report as typed records: what was asked (the load, the SLOs),
what was measured (:class:`~llmship.loadtest.stats.LoadTestStats`, a timeline),
how it was judged (SLO verdicts, checks) and by what (the load generator).

The report becomes JSON only at the edges: :meth:`LoadTestReport.to_json` for
``--json`` and the registry, :func:`parse_report` to read a stored one back. Its
keys and their order are those of the JSON report ``llmship loadtest`` has always
written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

from llmship import __version__
from llmship.loadtest.plan import LoadPlan
from llmship.loadtest.slo import SloVerdict
from llmship.loadtest.stats import LoadTestStats, TimelineBin

if TYPE_CHECKING:
    from llmship.loadtest.runner import GeneratorResult

KIND = "loadtest"
"""The report's ``kind``, and the gate kind of its runs in the registry."""
REQUESTS_CHECK = "requests"
"""The check every run has besides its SLOs: at least one request succeeded."""


@dataclass(frozen=True)
class LoadShape:
    """The load that was applied (a report's ``load``); open-loop fields are None
    for a closed loop and the other way round."""

    mode: Literal["open", "closed"]
    users: int | None
    spawn_rate: float | None
    rate: float | None
    arrival: str | None
    seed: int
    max_in_flight: int | None
    duration_s: float
    warmup_s: float
    max_tokens: int
    prompts: int
    """How many prompts the plan cycled through."""

    @classmethod
    def of(cls, plan: LoadPlan) -> LoadShape:
        open_loop = plan.open_loop
        return cls(
            mode="open" if open_loop else "closed",
            users=None if open_loop else plan.users,
            spawn_rate=None if open_loop else plan.effective_spawn_rate,
            rate=plan.rate,
            arrival=plan.arrival if open_loop else None,
            seed=plan.seed,
            max_in_flight=plan.max_in_flight if open_loop else None,
            duration_s=plan.duration,
            warmup_s=plan.warmup,
            max_tokens=plan.max_tokens,
            prompts=len(plan.prompts),
        )

    @property
    def open_loop(self) -> bool:
        return self.mode == "open"


@dataclass(frozen=True)
class Check:
    """A check of the run besides its SLOs (today: ``requests``, some succeeded)."""

    key: str
    passed: bool
    reason: str


Gate = SloVerdict | Check
"""A row of the gates table: both have ``key``, ``passed`` and ``reason``."""


@dataclass(frozen=True)
class GeneratorInfo:
    """The load generator: its Locust version, the CPU it used, its own statistics."""

    locust_version: str
    cpu_window_s: float
    """CPU seconds of the generator from the measured window's start to the drain."""
    cpu_run_s: float
    cpu_process_s: float
    locust_stats: dict[str, Any]
    """Locust's own totals, as Locust reports them."""
    user_errors: tuple[str, ...]
    """Problems the Locust users reported (warnings, not failed requests)."""


@dataclass(frozen=True)
class LoadTestReport:
    """One load test: the plan, the numbers, the verdicts."""

    llmship_version: str
    ref: str | None
    """The release the run is recorded against (None: unknown)."""
    started_at: str
    """ISO 8601 time the run started (UTC)."""
    target: str
    endpoint: str
    path: str
    model: str | None
    load: LoadShape
    passed: bool
    """Every SLO held and at least one request succeeded."""
    slo: dict[str, float]
    verdicts: tuple[SloVerdict, ...]
    checks: tuple[Check, ...]
    results: LoadTestStats
    generator_cpu_per_request_s: float | None
    generator_cpu_share: float | None
    """The generator's CPU time over the time it was busy (1.0: a whole core)."""
    generator: GeneratorInfo
    timeline: tuple[TimelineBin, ...]
    ref_source: str | None = None
    """How ``ref`` was found: ``--release``, ``--ref``, ``X-Llmship-Version`` or None."""
    error: str | None = None
    """Set when the run checked nothing (no request ended): an error, neither a pass nor
    a fail."""

    @property
    def gates(self) -> list[Gate]:
        """The SLO verdicts, then the checks: the rows of a gates table."""
        return [*self.verdicts, *self.checks]

    @property
    def reasons(self) -> list[str]:
        """Why the run failed: one line per failed SLO or check (empty when it passed)."""
        return [gate.reason for gate in self.gates if not gate.passed]

    def to_json(self) -> dict[str, Any]:
        """The JSON report (``--json``, the registry)."""
        return {
            "kind": KIND,
            "llmship_version": self.llmship_version,
            "ref": self.ref,
            "started_at": self.started_at,
            "target": self.target,
            "endpoint": self.endpoint,
            "path": self.path,
            "model": self.model,
            "load": asdict(self.load),
            "passed": self.passed,
            "slo": dict(self.slo),
            "verdicts": [asdict(v) for v in self.verdicts],
            "checks": [asdict(c) for c in self.checks],
            "results": self.results.to_json(),
            "generator_cpu_per_request_s": self.generator_cpu_per_request_s,
            "generator_cpu_share": self.generator_cpu_share,
            "generator": {
                **asdict(self.generator),
                "user_errors": list(self.generator.user_errors),
            },
            "timeline": [row.to_json() for row in self.timeline],
            "ref_source": self.ref_source,
            **({"error": self.error} if self.error is not None else {}),
        }


def parse_report(data: Mapping[str, Any]) -> LoadTestReport:
    """A report as :meth:`LoadTestReport.to_json` wrote it (a ``--json`` file, a gate
    run's report in the registry). Reports written before ``generator_cpu_share`` and
    ``ref_source`` existed read with those as None."""
    if data.get("kind", KIND) != KIND:
        raise ValueError(f"not a load-test report (kind {data.get('kind')!r})")
    generator = data["generator"]
    return LoadTestReport(
        llmship_version=str(data["llmship_version"]),
        ref=data["ref"],
        started_at=str(data["started_at"]),
        target=str(data["target"]),
        endpoint=str(data["endpoint"]),
        path=str(data["path"]),
        model=data["model"],
        load=LoadShape(**data["load"]),
        passed=bool(data["passed"]),
        slo=dict(data["slo"]),
        verdicts=tuple(SloVerdict.from_json(row) for row in data["verdicts"]),
        checks=tuple(Check(**row) for row in data["checks"]),
        results=LoadTestStats.from_json(data["results"]),
        generator_cpu_per_request_s=data["generator_cpu_per_request_s"],
        generator_cpu_share=data.get("generator_cpu_share"),
        generator=GeneratorInfo(
            locust_version=str(generator["locust_version"]),
            cpu_window_s=generator["cpu_window_s"],
            cpu_run_s=generator["cpu_run_s"],
            cpu_process_s=generator["cpu_process_s"],
            locust_stats=dict(generator["locust_stats"]),
            user_errors=tuple(generator["user_errors"]),
        ),
        timeline=tuple(TimelineBin.from_json(row) for row in data["timeline"]),
        ref_source=data.get("ref_source"),
        error=data.get("error"),
    )


def build_report(
    *,
    plan: LoadPlan,
    stats: LoadTestStats,
    verdicts: Sequence[SloVerdict],
    slos: Mapping[str, float],
    generator: GeneratorResult,
    timeline: Sequence[TimelineBin],
    ref: str | None,
    started_at: datetime | None = None,
) -> LoadTestReport:
    """The report of a run: ``plan`` measured as ``stats`` by ``generator``, judged
    against ``slos`` (``verdicts``); it passes when every SLO held and a request succeeded,
    and is an error (``error``) when no request was made at all."""
    served = stats.successes > 0
    error = None
    if stats.requests == 0 and stats.incomplete == 0:
        error = (
            "the load test checked nothing: no request was made in its measured window; "
            "is the target reachable, and the duration longer than the ramp-up?"
        )
    if served:
        reason = f"{stats.successes} of {stats.requests} requests succeeded"
    else:
        reason = f"no request succeeded ({stats.requests} ended, {stats.incomplete} unfinished)"
    measured = generator.window_records
    busy = max(generator.drained - generator.window_start, 1e-9)
    return LoadTestReport(
        llmship_version=__version__,
        ref=ref,
        started_at=(started_at or datetime.now(timezone.utc)).isoformat(),
        target=plan.target,
        endpoint=plan.endpoint,
        path=plan.path,
        model=plan.model,
        load=LoadShape.of(plan),
        passed=served and all(v.passed for v in verdicts),
        slo=dict(slos),
        verdicts=tuple(verdicts),
        checks=(Check(REQUESTS_CHECK, served, reason),),
        results=stats,
        generator_cpu_per_request_s=generator.cpu_window_s / len(measured) if measured else None,
        generator_cpu_share=generator.cpu_window_s / busy,
        generator=GeneratorInfo(
            locust_version=generator.locust_version,
            cpu_window_s=generator.cpu_window_s,
            cpu_run_s=generator.cpu_run_s,
            cpu_process_s=generator.cpu_process_s,
            locust_stats=generator.locust,
            user_errors=tuple(generator.user_errors),
        ),
        timeline=tuple(timeline),
        error=error,
    )
