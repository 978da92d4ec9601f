"""How many gateways one registry serves: simulated gateways reading a real PostgreSQL.

Every gateway reads the registry in the background, never on a request's path: each
refresh is three reads (the traffic policy, the live model servers, the flags), every
``policy_refresh_interval`` (0.5 s) and at once when PostgreSQL notifies a change.
This script runs N simulated gateways that do exactly those reads, through the same
``Registry`` methods, at that rate, spread over worker processes (threads in each),
against a throwaway PostgreSQL server (initdb in a temp directory, as the tests do),
for ``--seconds`` per N. It does not start real gateways: their request path does not
touch the database, so the registry's load is the refreshes.

Measured per N:

* refreshes per second achieved against the target (N x 2);
* refresh time p50 and p95 (the three reads, from the client);
* PostgreSQL's CPU time per second (all its processes, from /proc) and per gateway;

and, from the largest N that kept up, the number of gateways one PostgreSQL core
serves at the 0.5 s poll (one core's second divided by the CPU each gateway costs).
The clients share this machine's cores with the server, so the figures are a lower
bound of what a dedicated database host serves.

    .venv/bin/python benchmarks/registry_gateways.py [--gateways 1 8 32 64]
        [--seconds 10] [--workers 2] [--json results.json]

Exit status 0 whatever the figures (this is a report), 1 when something broke.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from _common import BenchmarkError, environment, median, percentile, throwaway_postgres

ENV = "bench"
REFRESH_S = 0.5


def _gateway_threads(url: str, count: int, seconds: float, queue: Any) -> None:
    """``count`` simulated gateways in this process; puts their refresh times (s)."""
    from llmship.registry import Registry

    registries: list[Registry] = []
    try:
        for _ in range(count):  # a connection pool each
            registries.append(Registry.open(url))
            registries[-1].get_traffic(ENV)  # hold a connection, as a running gateway does
    except Exception as exc:  # the server refused: the limit this script looks for
        for registry in registries:
            registry.close()
        queue.put(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
        return
    times: list[float] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def gateway(registry: Registry, offset: float) -> None:
        time.sleep(offset)
        mine = []
        while time.monotonic() < stop_at:
            began = time.perf_counter()
            registry.get_traffic(ENV)
            registry.list_endpoints(ENV, max_age_s=30)
            registry.list_flags(ENV)
            took = time.perf_counter() - began
            mine.append(took)
            time.sleep(max(0.0, REFRESH_S - took))
        with lock:
            times.extend(mine)

    threads = [
        threading.Thread(target=gateway, args=(registry, REFRESH_S * i / max(1, count)))
        for i, registry in enumerate(registries)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for registry in registries:
        registry.close()
    queue.put(times)


def _postgres_cpu_s() -> float:
    """CPU seconds used so far by every process named postgres."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)
            if not fields[0].endswith("(postgres"):
                continue
            rest = fields[1].split()
            total += int(rest[11]) + int(rest[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return total / ticks


def _connections(url: str) -> int:
    """Connections the server holds now (pg_stat_activity, client backends)."""
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        ).fetchone()
    return int(row[0]) - 1 if row else 0


def measure(url: str, gateways: int, seconds: float, workers: int) -> dict[str, Any]:
    """N simulated gateways for ``seconds``: their refresh rate, times and the server's CPU."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    per = [gateways // workers + (1 if i < gateways % workers else 0) for i in range(workers)]
    procs = [
        context.Process(target=_gateway_threads, args=(url, n, seconds, queue)) for n in per if n
    ]
    for proc in procs:
        proc.start()
    # The server's CPU is read while every gateway runs (a backend's time leaves /proc
    # with it when its connection closes).
    settle = min(2.0, seconds / 4)
    time.sleep(settle)
    cpu_before, began = _postgres_cpu_s(), time.monotonic()
    time.sleep(seconds - 2 * settle)
    cpu = (_postgres_cpu_s() - cpu_before) / (time.monotonic() - began)
    connections = _connections(url)
    times: list[float] = []
    errors: list[str] = []
    for _ in procs:
        got = queue.get(timeout=seconds + 120)
        if isinstance(got, str):
            errors.append(got)
        else:
            times.extend(got)
    for proc in procs:
        proc.join()
    if errors:
        return {"gateways": gateways, "error": errors[0], "connections": connections}
    rate = len(times) / seconds
    return {
        "gateways": gateways,
        "refreshes_per_s": rate,
        "target_per_s": gateways / REFRESH_S,
        "kept_up": rate >= 0.9 * gateways / REFRESH_S,
        "refresh_ms_p50": 1000 * median(times),
        "refresh_ms_p95": 1000 * percentile(times, 0.95),
        "postgres_cpu_per_s": cpu,
        "postgres_cpu_ms_per_gateway_s": 1000 * cpu / gateways,
        "connections": connections,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateways", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from llmship.registry import Registry
    from llmship.release.bundled import bundled_spec

    try:
        with throwaway_postgres() as url:
            with Registry.open(url) as registry:
                spec = bundled_spec()
                registry.register(spec, actor="bench")
                registry.set_alias(ENV, "production", spec.ref, actor="bench", reason="bench")
                for i in range(4):  # a few replicas' endpoints, as in a real environment
                    registry.register_endpoint(
                        ENV, spec.ref, f"http://10.0.0.{i + 2}:8000", pid=1000 + i
                    )
            results = [measure(url, n, args.seconds, args.workers) for n in args.gateways]
    except BenchmarkError as exc:
        print(exc, file=sys.stderr)
        return 1

    print(
        f"{'gateways':>8} {'refresh/s':>10} {'target':>7} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'pg cpu':>7} {'pg ms/gw/s':>10} {'conns':>6}"
    )
    for r in results:
        if "error" in r:
            print(f"{r['gateways']:>8} failed: {r['error']}")
            continue
        print(
            f"{r['gateways']:>8} {r['refreshes_per_s']:>10.1f} {r['target_per_s']:>7.0f} "
            f"{r['refresh_ms_p50']:>7.2f} {r['refresh_ms_p95']:>7.2f} "
            f"{r['postgres_cpu_per_s']:>7.2f} {r['postgres_cpu_ms_per_gateway_s']:>10.2f} "
            f"{r['connections']:>6}"
        )
    # (a run too short for PostgreSQL's CPU to show in /proc's 10 ms ticks says nothing)
    kept = [r for r in results if r.get("kept_up") and r["postgres_cpu_ms_per_gateway_s"] > 0]
    if kept:
        best = max(kept, key=lambda r: r["gateways"])
        per_core = 1000 / best["postgres_cpu_ms_per_gateway_s"]
        print(
            f"at {best['gateways']} gateways each costs PostgreSQL "
            f"{best['postgres_cpu_ms_per_gateway_s']:.2f} ms of CPU per second: one core "
            f"serves about {per_core:.0f} gateways at the {REFRESH_S:g} s poll"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"environment": environment(["llmship", "psycopg"]), "results": results})
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
