"""The load generator: ``python -m llmship.loadtest.worker PLAN.json RESULT.json``.

Runs one :class:`~llmship.loadtest.plan.LoadPlan` with Locust as a library
(``Environment`` + ``create_local_runner``, headless) and writes every request's
record, the window, the counters and its own CPU time as JSON. It is a separate
process because importing Locust monkey-patches the whole process with gevent,
which an asyncio program or a pytest run must not suffer.

Timeline: users start; after ``warmup`` seconds Locust's statistics are reset and
the measured window begins; after ``duration`` more no new request is sent, the
requests in flight get ``drain_timeout`` seconds to finish, and the runner quits.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import gevent
import locust  # patches the process with gevent (nothing imported before uses ssl)
from locust.env import Environment

from llmship.loadtest.measure import RequestRecord
from llmship.loadtest.plan import LoadPlan
from llmship.loadtest.user import LLMClientUser, LLMUser, OpenLoopUser, RunControl

log = logging.getLogger("llmship.loadtest.worker")


def user_class(plan: LoadPlan, control: RunControl) -> type[LLMClientUser]:
    """A user class configured for ``plan``."""
    attrs: dict[str, Any] = {
        "abstract": False,
        "endpoint": plan.endpoint,
        "model": plan.model,
        "max_tokens": plan.max_tokens,
        "prompts": plan.prompts,
        "network_timeout": plan.timeout,
        "connection_timeout": min(plan.timeout, 10.0),
        "control": control,
        "host": plan.target,
    }
    if plan.rate is None:
        return type("ClosedLoopLLMUser", (LLMUser,), attrs)
    attrs |= {
        "rate": plan.rate,
        "arrival": plan.arrival,
        "seed": plan.seed,
        "max_in_flight": plan.max_in_flight,
    }
    return type("OpenLoopLLMUser", (OpenLoopUser,), attrs)


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def run(plan: LoadPlan) -> dict[str, Any]:
    """Run ``plan``; the result as JSON-ready data."""
    control = RunControl()
    users = user_class(plan, control)
    env = Environment(user_classes=[users], host=plan.target)
    records: list[RequestRecord] = []
    user_errors: list[str] = []

    def on_request(context: dict[str, Any] | None = None, **_: Any) -> None:
        record = (context or {}).get("llmship")
        if isinstance(record, RequestRecord):
            records.append(record)

    def on_user_error(user_instance: Any, exception: BaseException, tb: Any) -> None:
        user_errors.append(f"{type(exception).__name__}: {exception}"[:300])

    env.events.request.add_listener(on_request)  # type: ignore[no-untyped-call]
    env.events.user_error.add_listener(on_user_error)  # type: ignore[no-untyped-call]
    runner = env.create_local_runner()
    cpu_start = _cpu()
    if plan.open_loop:
        runner.start(1, spawn_rate=1)
    else:
        runner.start(plan.users, spawn_rate=plan.effective_spawn_rate)

    gevent.sleep(max(0.0, plan.warmup - control.now()))
    env.stats.reset_all()
    control.window_start = control.now()
    cpu_window = _cpu()
    gevent.sleep(max(0.0, control.window_start + plan.duration - control.now()))
    control.stopping = True
    window_end = control.now()
    deadline = time.perf_counter() + plan.drain_timeout
    while control.in_flight and time.perf_counter() < deadline:
        gevent.sleep(0.01)
    drained = control.now()
    cpu_end = _cpu()
    incomplete = control.incomplete()
    runner.quit()
    total = env.stats.total
    return {
        "locust_version": locust.__version__,
        "window_start": control.window_start,
        "window_end": window_end,
        "drained": drained,
        "sent": control.sent,
        "dropped": control.dropped,
        "incomplete": incomplete,
        "cpu_window_s": cpu_end - cpu_window,
        "cpu_run_s": _cpu() - cpu_start,
        "cpu_process_s": _cpu(),
        "user_errors": user_errors[:20],
        "locust": {
            "requests": total.num_requests,
            "failures": total.num_failures,
            "entries": [
                {
                    "method": entry.method,
                    "name": entry.name,
                    "requests": entry.num_requests,
                    "failures": entry.num_failures,
                    "median_ms": entry.median_response_time,
                    "p95_ms": entry.get_response_time_percentile(0.95),
                }
                for entry in env.stats.entries.values()
            ],
        },
        "records": [r.to_json() for r in records],
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m llmship.loadtest.worker PLAN.json RESULT.json", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    plan = LoadPlan.from_json(json.loads(Path(argv[0]).read_text(encoding="utf-8")))
    result = run(plan)
    Path(argv[1]).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
