"""Time to rollback: a canary that starts failing under steady load, until 100% stable.

Everything runs as real processes on free local ports, in a temporary
``LLMSHIP_HOME``:

* the stable release is the bundled SmolLM2 (``runtime.n_threads`` 1, ``n_ctx``
  512) behind ``llmship serve --release``;
* the candidate is an ``openai`` release behind ``llmship serve --release``,
  pointed at a tiny OpenAI-compatible upstream in this process that answers
  "ok" until the script flips it to answer 500 to everything;
* ``llmship gateway`` and ``llmship controller --interval 200ms`` of env ``bench``;
* ``--clients`` threads send ``POST /predict`` to the gateway in a loop, the
  whole time.

Each repetition starts a rollout (``llmship rollout start``): ``setWeight: 50``,
then a long pause, with a background analysis of the builtin ``error_rate``
(``interval`` = ``--interval``, window = two intervals, ``failureLimit: 0``,
``successCondition: result <= 0.05``). Once the candidate has answered some
requests, the script waits a random fraction of an interval (so the failure
falls anywhere in the analysis schedule) and flips the upstream to 500.

Measured per repetition:

* **time to rollback**: from the upstream's first 500 to 100% stable, i.e. the
  later of (a) the gateway's ``GET /api/v1/traffic`` showing no canary (polled
  every 20 ms) and (b) the last request that reached the candidate's upstream;
* **detection**: from the first 500 to the rollout's ``Aborted`` in the registry;
* **client-visible errors**: requests sent during the repetition that did not
  get a 200, and their share (the gateway retries a failing candidate on stable,
  so the target is none).

Target: time to rollback within two analysis intervals, no client-visible
errors. Medians over the repetitions are printed with PASS or FAIL.

    .venv/bin/python benchmarks/time_to_rollback.py [--reps 5] [--interval 2]
        [--clients 3] [--json results.json]

Exit status 0 whatever the verdict (this is a report), 1 when something broke.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from _common import TESTS, BenchmarkError, Proc, free_port
from llmship.registry import Registry
from llmship.release.bundled import bundled_spec
from llmship.release.spec import parse_spec

sys.path.insert(0, str(TESTS))  # for _procs
from _procs import FakeUpstream

ENV = "bench"
TOKEN = "time-to-rollback"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
STABLE, CANDIDATE = "smollm2-chat@1.0.0", "smollm2-chat@2.0.0"


def run_llmship(args: list[str], workdir: Path, env: dict[str, str | None]) -> Proc:
    """``python -m llmship ARGS`` in ``workdir``, its output in a log file; stopped by
    SIGINT, as Ctrl-C would."""
    return Proc(
        f"llmship {args[0]}",
        [sys.executable, "-m", "llmship", *args],
        workdir / f"{args[0]}-{time.monotonic_ns()}.log",
        env=env,
        cwd=workdir,
        stop_signal=signal.SIGINT,
    )


def wait_until(check: Any, what: str, timeout: float, procs: list[Proc]) -> None:
    deadline = time.monotonic() + timeout
    while True:
        for proc in procs:
            proc.check()
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise BenchmarkError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Load:
    """``clients`` threads sending ``/predict`` in a loop; (sent, status, version) each."""

    def __init__(self, url: str, clients: int):
        self.answers: list[tuple[float, int, str]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(url,)) for _ in range(clients)]
        for thread in self._threads:
            thread.start()

    def _run(self, url: str) -> None:
        with httpx.Client(timeout=60) as http:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    r = http.post(f"{url}/predict", json={"prompt": "Hi", "max_new_tokens": 2})
                    answer = (r.status_code, r.headers.get("x-llmship-version", ""))
                except httpx.HTTPError as exc:
                    answer = (0, type(exc).__name__)
                self.answers.append((sent, *answer))

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


def spec(name: str, interval: float) -> dict[str, Any]:
    metric = {
        "name": "error-rate",
        "interval": f"{interval:g}s",
        "inconclusiveLimit": 1000,
        "failureLimit": 0,
        "successCondition": "result <= 0.05",
        "provider": {"builtin": {"metric": "error_rate", "window": f"{2 * interval:g}s"}},
    }
    return {
        "name": name,
        "strategy": {
            "canary": {
                "steps": [{"setWeight": 50}, {"pause": {"duration": "10m"}}],
                "analysis": {"templates": [{"templateName": "errors"}]},
            }
        },
        "analysisTemplates": [{"name": "errors", "metrics": [metric]}],
    }


def one_rep(
    n: int, args: argparse.Namespace, ctx: dict[str, Any], procs: list[Proc]
) -> dict[str, Any]:
    upstream: FakeUpstream = ctx["upstream"]
    registry: Registry = ctx["registry"]
    gateway: str = ctx["gateway"]
    workdir: Path = ctx["workdir"]
    load: Load = ctx["load"]
    upstream.failing = False
    upstream.failures.clear()
    path = workdir / f"ttr-{n}.yaml"
    path.write_text(yaml.safe_dump(spec(f"ttr-{n}", args.interval)))
    begin = time.monotonic()
    started = len(load.answers)
    cli = run_llmship(
        ["rollout", "start", str(path), "--candidate", CANDIDATE, "--env", ENV],
        workdir,
        ctx["env"],
    )
    try:
        if cli.proc.wait(timeout=60) != 0:
            raise BenchmarkError(cli.log_path.read_text())
    finally:
        cli.stop()
    rollout_id = registry.find_rollout(ENV, f"ttr-{n}").id

    def traffic() -> dict[str, Any]:
        r = httpx.get(f"{gateway}/api/v1/traffic", headers=ADMIN, timeout=10)
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data

    wait_until(lambda: traffic().get("canary"), "the canary", 60, procs)
    hits = upstream.hits
    wait_until(lambda: upstream.hits >= hits + 5, "the candidate to answer", 60, procs)
    time.sleep(random.uniform(0, args.interval))
    upstream.failing = True
    wait_until(lambda: bool(upstream.failures), "the first failure", 30, procs)
    wait_until(lambda: not traffic().get("canary"), "the canary to go", 60, procs)
    policy_at = time.monotonic()
    wait_until(
        lambda: registry.get_rollout(rollout_id).phase in {"Aborted", "Healthy"},
        "the rollout to end",
        30,
        procs,
    )
    record = registry.get_rollout(rollout_id)
    aborted_at = record.updated_at.timestamp() - time.time() + time.monotonic()
    time.sleep(2.0)  # requests routed before the gateway followed have reached the upstream
    first = upstream.failures[0]
    answers = load.answers[started:]
    errors = [a for a in answers if a[1] != 200]
    on_candidate = [a for a in answers if a[0] > policy_at + 1.0 and a[2] == CANDIDATE]
    return {
        "rep": n,
        "phase": record.phase,
        "abort_reason": record.abort_reason,
        "rollback_s": max(policy_at, upstream.last_hit) - first,
        "policy_s": policy_at - first,
        "detect_s": aborted_at - first,
        "requests": len(answers),
        "errors": len(errors),
        "error_share": len(errors) / max(1, len(answers)),
        "answered_by_candidate_after": len(on_candidate),
        "rep_s": time.monotonic() - begin,
    }


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """Print the medians and the verdicts; write them as JSON with ``--json``."""
    rollback = statistics.median(r["rollback_s"] for r in results)
    errors = sum(r["errors"] for r in results)
    requests = sum(r["requests"] for r in results)
    summary = {
        "interval_s": args.interval,
        "reps": args.reps,
        "clients": args.clients,
        "rollback_s_median": rollback,
        "rollback_s_max": max(r["rollback_s"] for r in results),
        "policy_s_median": statistics.median(r["policy_s"] for r in results),
        "detect_s_median": statistics.median(r["detect_s"] for r in results),
        "client_errors": errors,
        "requests": requests,
        "error_share": errors / max(1, requests),
        "all_aborted": all(r["phase"] == "Aborted" for r in results),
    }
    print()
    print(f"analysis interval {args.interval:g}s, {args.reps} reps, {args.clients} clients")
    print(
        f"time to rollback: median {rollback:.2f}s, max {summary['rollback_s_max']:.2f}s "
        f"(policy written {summary['policy_s_median']:.2f}s, "
        f"rollout Aborted {summary['detect_s_median']:.2f}s after the first failure)"
    )
    print(f"client-visible errors: {errors}/{requests} ({summary['error_share']:.2%})")
    ok_time = rollback <= 2 * args.interval
    print(f"{'PASS' if ok_time else 'FAIL'} rollback within two intervals ({2 * args.interval:g}s)")
    print(f"{'PASS' if errors == 0 else 'FAIL'} no client-visible errors")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "reps": results}, indent=2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--interval", type=float, default=2.0, help="analysis interval, s")
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="llmship-ttr-"))
    home = workdir / ".llmship"
    env: dict[str, str | None] = {
        "LLMSHIP_HOME": str(home),
        "LLMSHIP_ADMIN_TOKEN": TOKEN,
        "LLMSHIP_ENDPOINT_MAX_AGE": "3600",
        "LLMSHIP_CONFIG": None,  # not the one of the shell that runs the benchmark
    }
    upstream = FakeUpstream()
    registry = Registry.open(f"sqlite:///{home / 'registry.db'}", home=home)
    data = bundled_spec().to_dict()
    data["runtime"] |= {"n_threads": 1, "n_ctx": 512}
    registry.register(parse_spec(data | {"version": "1.0.0"}), actor="bench")
    registry.register(
        parse_spec(
            {
                "name": "smollm2-chat",
                "version": "2.0.0",
                "backend": "openai",
                "model": {"base_url": upstream.url, "id": "fake"},
                "runtime": {"max_concurrency": 8},
            }
        ),
        actor="bench",
    )
    registry.set_alias(ENV, "production", STABLE, actor="bench", reason="benchmark")
    port = free_port()
    gateway = f"http://127.0.0.1:{port}"
    procs = [
        run_llmship(
            ["serve", "--release", ref, "--env", ENV, "--port", str(free_port())], workdir, env
        )
        for ref in (STABLE, CANDIDATE)
    ]
    procs.append(run_llmship(["gateway", "--env", ENV, "--port", str(port)], workdir, env))
    procs.append(
        run_llmship(
            ["controller", "--env", ENV, "--interval", "200ms", "--gateway-url", gateway],
            workdir,
            env,
        )
    )
    load: Load | None = None
    try:
        wait_until(
            lambda: httpx.get(f"{gateway}/readyz", timeout=2).status_code == 200,
            "the gateway",
            180,
            procs,
        )
        r = httpx.post(
            f"{gateway}/predict", json={"prompt": "Hi", "max_new_tokens": 2}, timeout=120
        )
        r.raise_for_status()
        load = Load(gateway, args.clients)
        ctx = {
            "upstream": upstream,
            "registry": registry,
            "gateway": gateway,
            "workdir": workdir,
            "env": env,
            "load": load,
        }
        results = []
        for n in range(1, args.reps + 1):
            result = one_rep(n, args, ctx, procs)
            results.append(result)
            print(
                f"rep {n}: {result['phase']}; rollback {result['rollback_s']:.2f}s "
                f"(policy {result['policy_s']:.2f}s, aborted {result['detect_s']:.2f}s); "
                f"client errors {result['errors']}/{result['requests']}",
                flush=True,
            )
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if load is not None:
            load.stop()
        for proc in reversed(procs):
            proc.stop()
        registry.close()
        upstream.close()

    report(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
