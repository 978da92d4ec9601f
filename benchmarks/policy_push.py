"""Policy propagation: how long a traffic-policy change takes to reach every gateway.

Real ``llmship gateway`` processes (``--gateways``, default 2) of one environment
share a throwaway PostgreSQL registry (initdb in a temp directory, as the tests do);
the model servers are announced URLs nobody listens on (routing by a policy needs no
model). This process changes the traffic policy ``--changes`` times (the canary's
weight, so every change is a new revision) and, after each, polls every gateway's
``/readyz`` every 2 ms until it reports the new revision: the change's propagation
time is when the last gateway got there. Changes are spread over the poll's phase.

Two modes, the same gateways:

* **push**: the writes send ``NOTIFY llmship`` as they commit and each gateway's
  listener re-reads at once (what ships);
* **polling only**: the writes send no notice (this process turns the notice off on
  its side), so gateways see a change at their next 0.5 s poll (what was there before).

It prints p50, p95 and max per mode and the ratio polling / push of each (target: push
p95 under 100 ms).

    .venv/bin/python benchmarks/policy_push.py [--gateways 2] [--changes 40]
        [--json results.json]

Exit status 0 when the push p95 is under 100 ms, 1 when not or when something broke.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    TESTS,
    BenchmarkError,
    Proc,
    environment,
    free_port,
    median,
    percentile,
    throwaway_postgres,
)

sys.path.insert(0, str(TESTS))  # for _registry

ENV = "bench"
TARGET_P95_S = 0.1


def measure(registry: Any, urls: list[str], changes: int, rng: random.Random) -> list[float]:
    """Propagation times (s) of ``changes`` policy changes to every gateway in ``urls``."""
    import httpx

    from llmship.routing import TrafficPolicy

    delays = []
    with httpx.Client(timeout=5) as client:
        for n in range(changes):
            policy = TrafficPolicy(env=ENV, canary="chat@2.0.0", canary_weight=float(n % 9 + 1))
            began = time.monotonic()
            wanted = registry.set_traffic(ENV, policy, actor="bench", reason="bench").revision
            pending = list(urls)
            while pending:
                pending = [
                    u for u in pending if client.get(f"{u}/readyz").json().get("revision") != wanted
                ]
                if time.monotonic() - began > 10:
                    raise BenchmarkError(f"{pending} did not pick revision {wanted} up in 10 s")
                if pending:
                    time.sleep(0.002)
            delays.append(time.monotonic() - began)
            time.sleep(rng.uniform(0.05, 0.55))  # a new phase against the 0.5 s poll
    return delays


def summary(delays: list[float]) -> dict[str, float]:
    return {
        "p50_ms": 1000 * median(delays),
        "p95_ms": 1000 * percentile(delays, 0.95),
        "max_ms": 1000 * max(delays),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateways", type=int, default=2)
    parser.add_argument("--changes", type=int, default=40)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from _registry import make_spec
    from llmship.registry import Registry, _gateway

    rng = random.Random(0)
    results: dict[str, dict[str, float]] = {}
    gateways: list[Proc] = []
    try:
        with (
            throwaway_postgres() as url,
            Registry.open(url) as registry,
            tempfile.TemporaryDirectory() as tmp,
        ):
            for version in ("1.0.0", "2.0.0"):
                registry.register(make_spec("chat", version), actor="bench")
                registry.register_endpoint(
                    ENV, f"chat@{version}", f"http://127.0.0.1:{free_port()}", pid=None
                )
            registry.set_alias(ENV, "production", "chat@1.0.0", actor="bench", reason="bench")
            urls = []
            for i in range(args.gateways):
                port = free_port()
                gateways.append(
                    Proc(
                        f"gateway {i}",
                        [sys.executable, "-m", "llmship", "gateway", "--env", ENV,
                         "--port", str(port)],
                        Path(tmp) / f"gateway-{i}.log",
                        env={
                            "LLMSHIP_HOME": str(Path(tmp) / "home"),
                            "LLMSHIP_DATABASE_URL": url,
                            "LLMSHIP_ENDPOINT_MAX_AGE": "3600",
                            "LLMSHIP_CONFIG": None,
                        },
                        cwd=Path(tmp),
                        stop_signal=2,
                    )
                )  # fmt: skip
                urls.append(f"http://127.0.0.1:{port}")
            for proc, gw in zip(gateways, urls, strict=True):
                proc.wait_http(f"{gw}/readyz")
            measure(registry, urls, 3, rng)  # warm-up
            results["push"] = summary(measure(registry, urls, args.changes, rng))
            notify = _gateway.notify_change
            _gateway.notify_change = lambda session, env: None  # polling only
            try:
                results["polling"] = summary(measure(registry, urls, args.changes, rng))
            finally:
                _gateway.notify_change = notify
    except BenchmarkError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        for proc in gateways:
            proc.stop()

    print(f"policy propagation to {args.gateways} gateways, {args.changes} changes per mode")
    print(f"{'mode':>8} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for mode, r in results.items():
        print(f"{mode:>8} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} {r['max_ms']:>8.1f}")
    push, polling = results["push"], results["polling"]
    passed = push["p95_ms"] < TARGET_P95_S * 1000
    print(
        f"polling / push: p50 {polling['p50_ms'] / push['p50_ms']:.1f}x, "
        f"p95 {polling['p95_ms'] / push['p95_ms']:.1f}x; push p95 under "
        f"{TARGET_P95_S * 1000:.0f} ms: {'PASS' if passed else 'FAIL'}"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "environment": environment(["llmship", "psycopg"], gateways=args.gateways),
                    "results": results,
                }
            )
        )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
