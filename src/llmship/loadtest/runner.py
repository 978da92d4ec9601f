"""Run a load plan in the load-generator process and read its result back.

The generator (``python -m llmship.loadtest.worker``) is a child process: Locust's
gevent monkey-patching stays out of the caller (the CLI, a test, an asyncio
program). It writes its result as JSON into a temporary directory.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmship.errors import LlmshipError
from llmship.loadtest.measure import RequestRecord
from llmship.loadtest.plan import LoadPlan

if TYPE_CHECKING:
    from llmship.loadtest.report_model import LoadTestReport

log = logging.getLogger(__name__)

STARTUP_ALLOWANCE = 60.0
"""Seconds the generator may take beyond the plan (imports, spawning, writing)."""


@dataclass(frozen=True)
class GeneratorResult:
    """What the load generator measured."""

    records: list[RequestRecord]
    window_start: float
    window_end: float
    drained: float
    sent: int
    dropped: int
    incomplete: int
    cpu_window_s: float
    """CPU seconds (user + system) of the generator from the window's start to the drain."""
    cpu_run_s: float
    cpu_process_s: float
    locust_version: str
    locust: dict[str, Any] = field(default_factory=dict)
    user_errors: list[str] = field(default_factory=list)

    @property
    def window_records(self) -> list[RequestRecord]:
        end = self.window_end
        return [r for r in self.records if self.window_start <= r.start < end]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GeneratorResult:
        return cls(
            records=[RequestRecord.from_json(row) for row in data["records"]],
            window_start=float(data["window_start"]),
            window_end=float(data["window_end"]),
            drained=float(data["drained"]),
            sent=int(data["sent"]),
            dropped=int(data["dropped"]),
            incomplete=int(data["incomplete"]),
            cpu_window_s=float(data["cpu_window_s"]),
            cpu_run_s=float(data["cpu_run_s"]),
            cpu_process_s=float(data["cpu_process_s"]),
            locust_version=str(data["locust_version"]),
            locust=dict(data.get("locust") or {}),
            user_errors=list(data.get("user_errors") or []),
        )


def run_generator(
    plan: LoadPlan,
    *,
    python: str | None = None,
    wait: Callable[[subprocess.Popen[bytes], float], None] | None = None,
) -> GeneratorResult:
    """Run ``plan`` in a new load-generator process and return what it measured.

    ``wait(process, seconds)`` may replace the plain wait (the CLI shows progress);
    it must return when the process has exited. The generator's log is kept only
    when it fails, in the error's message.
    """
    budget = plan.warmup + plan.duration + plan.drain_timeout + STARTUP_ALLOWANCE
    with tempfile.TemporaryDirectory(prefix="llmship-loadtest-") as tmp:
        plan_path, out_path, log_path = (Path(tmp) / n for n in ("plan.json", "out.json", "log"))
        plan_path.write_text(json.dumps(plan.to_json()), encoding="utf-8")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("PYTHONWARNINGS", None)
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [python or sys.executable, "-m", "llmship.loadtest.worker", plan_path, out_path],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
            )
            started = time.monotonic()
            try:
                if wait is not None:
                    wait(process, budget)
                process.wait(timeout=max(1.0, budget - (time.monotonic() - started)))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise LlmshipError(
                    f"the load generator did not finish within {budget:.0f} s:\n" + _tail(log_path)
                ) from None
            finally:
                if process.poll() is None:  # interrupted (Ctrl-C): stop the generator too
                    process.kill()
                    process.wait()
        if process.returncode != 0 or not out_path.is_file():
            raise LlmshipError(
                f"the load generator failed (exit {process.returncode}):\n{_tail(log_path)}"
            )
        output = _tail(log_path)
        if output.strip():
            log.debug("load generator output:\n%s", output)
        return GeneratorResult.from_json(json.loads(out_path.read_text(encoding="utf-8")))


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def run_load_test(
    plan: LoadPlan,
    slos: dict[str, float],
    *,
    ref: str | None = None,
    wait: Callable[[subprocess.Popen[bytes], float], None] | None = None,
) -> LoadTestReport:
    """Run ``plan``, judge it against ``slos``; the report (``report.passed``)."""
    from datetime import datetime, timezone

    from llmship.loadtest.report_model import build_report
    from llmship.loadtest.slo import evaluate, meets, request_bounds
    from llmship.loadtest.stats import summarize, timeline

    started = datetime.now(timezone.utc)
    result = run_generator(plan, wait=wait)
    for problem in result.user_errors:
        log.warning("load generator: %s", problem)
    bounds = request_bounds(slos)
    stats = summarize(
        result.records,
        window_start=result.window_start,
        window_end=result.window_end,
        sent=result.sent,
        dropped=result.dropped,
        incomplete=result.incomplete,
        good=lambda record: meets(record, bounds),
    )
    return build_report(
        plan=plan,
        stats=stats,
        verdicts=evaluate(slos, stats),
        slos=slos,
        generator=result,
        timeline=timeline(
            result.records, window_start=result.window_start, window_end=result.window_end
        ),
        ref=ref,
        started_at=started,
    )
