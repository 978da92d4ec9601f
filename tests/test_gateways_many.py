"""Many gateways of one environment on a real PostgreSQL registry: each announces itself,
hears of a policy change at once (LISTEN/NOTIFY), and the controller reads them all.

Real `llmship gateway` processes; the model servers are announced URLs no one listens
on (routing by the policy needs no model here)."""

from __future__ import annotations

import logging
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from _procs import GatewayProcess, free_port
from _registry import make_spec
from llmship.gateway.notify import ChangeListener
from llmship.registry import Registry
from llmship.rollout.stats_http import GatewaysStats, GatewayStats
from llmship.routing import TrafficPolicy

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TOKEN = "many-gateways-token"
V1, V2 = "chat@1.0.0", "chat@2.0.0"
CHANGES = 20


@dataclass
class Stack:
    registry: Registry
    gateways: list[GatewayProcess]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres: object) -> Iterator[Stack]:
    """Two gateways of env dev sharing one PostgreSQL registry."""
    from _postgres import PostgresServer

    assert isinstance(postgres, PostgresServer)
    workdir = tmp_path_factory.mktemp("gateways")
    with postgres.database() as url, Registry.open(url) as registry:
        for ref in (V1, V2):
            name, _, version = ref.partition("@")
            registry.register(make_spec(name, version), actor="test")
            registry.register_endpoint("dev", ref, f"http://127.0.0.1:{free_port()}", pid=None)
        registry.set_alias("dev", "production", V1, actor="test", reason="first")
        env = {
            "LLMSHIP_DATABASE_URL": url,
            "LLMSHIP_ADMIN_TOKEN": TOKEN,
            "LLMSHIP_ENDPOINT_MAX_AGE": "3600",
        }
        gateways = [GatewayProcess(workdir, "--env", "dev", env=env) for _ in range(2)]
        try:
            for gw in gateways:
                gw.wait_ready()
            yield Stack(registry, gateways)
        finally:
            for gw in gateways:
                gw.stop()


def revision_of(client: httpx.Client, url: str) -> int:
    body = client.get(f"{url}/readyz").json()
    return int(body.get("revision", -1))


def test_a_policy_change_reaches_every_gateway_at_once(stack: Stack) -> None:
    # Given two gateways that poll every 0.5 s and listen for changes
    clients = [httpx.Client(timeout=5) for _ in stack.gateways]
    delays: list[float] = []
    try:
        for n in range(CHANGES):
            # When the traffic policy changes
            policy = TrafficPolicy(env="dev", canary=V2, canary_weight=float(n % 9 + 1) * 10)
            started = time.monotonic()
            wanted = stack.registry.set_traffic("dev", policy, actor="t", reason="push").revision
            # Then both gateways route by it soon: the slower one is the delay
            pending = list(zip(clients, stack.gateways, strict=True))
            while pending:
                pending = [(c, g) for c, g in pending if revision_of(c, g.url) < wanted]
                assert time.monotonic() - started < 5, "a gateway did not pick the policy up"
                if pending:
                    time.sleep(0.003)
            delays.append(time.monotonic() - started)
            time.sleep(0.05 + 0.013 * n)  # spread the changes over the poll's phase
    finally:
        for client in clients:
            client.close()
    p50 = statistics.median(delays)
    p95 = statistics.quantiles(delays, n=20)[-1]
    print(
        f"\npolicy propagation to 2 gateways over {CHANGES} changes: p50 {p50 * 1000:.1f} ms, "
        f"p95 {p95 * 1000:.1f} ms (polling alone: up to 500 ms)"
    )
    # Polling alone would give a p95 near 0.475 s; the push keeps it far below.
    assert p95 < 0.25, delays


def test_gateways_announce_themselves_with_what_they_route_by(stack: Stack) -> None:
    deadline = time.monotonic() + 10
    revision = stack.registry.get_traffic("dev").revision
    while True:
        live = stack.registry.list_gateways("dev", max_age_s=15)
        if len(live) == 2 and all(g.policy_revision == revision for g in live):
            break
        assert time.monotonic() < deadline, live
        time.sleep(0.2)
    assert sorted(g.url for g in live) == sorted(gw.url for gw in stack.gateways)
    assert {g.pid for g in live} == {gw.proc.pid for gw in stack.gateways}


def test_the_controller_counts_every_gateways_requests(stack: Stack) -> None:
    stack.registry.reset_traffic("dev", actor="t", reason="all to stable")
    # Given requests through both gateways (they fail: no model server listens)
    for gw, count in zip(stack.gateways, (3, 2), strict=True):
        for _ in range(count):
            httpx.post(f"{gw.url}/predict", json={"prompt": "Hi"}, timeout=10)
    # When the controller's source reads every live gateway
    with GatewaysStats(stack.registry, TOKEN) as source:
        merged = source.stats("dev", V1, 60)
    # Then it counted what each one saw, once
    each = []
    for gw in stack.gateways:
        with GatewayStats(gw.url, TOKEN) as one:
            each.append(one.stats("dev", V1, 60))
    assert each[0].requests > each[1].requests > 0  # 3 and 2 requests (and failed attempts)
    assert merged.requests == sum(s.requests for s in each)
    assert merged.errors == sum(s.errors for s in each)
    assert merged.notes == ["2 of 2 gateways"]


def test_a_stopped_gateway_withdraws_and_is_named_when_missing(stack: Stack) -> None:
    # Given one gateway gone without withdrawing (killed) and one stopped cleanly
    killed, stopped = stack.gateways
    killed.proc.kill()
    killed.proc.wait()
    stopped.stop()  # SIGINT, as Ctrl-C
    live = stack.registry.list_gateways("dev")
    assert [g.url for g in live] == [killed.url]  # the clean stop withdrew at once
    # When the controller reads the gateways, the dead one (which carried traffic) is named
    with GatewaysStats(stack.registry, TOKEN, timeout=1) as source:
        if live[0].recent_requests > 0:
            with pytest.raises(Exception, match=killed.url):
                source.stats("dev", V1, 60)
        else:
            with pytest.raises(Exception, match="no gateway answered"):
                source.stats("dev", V1, 60)


# -- the listener ------------------------------------------------------------------------------


@pytest.fixture
def pg_registry(postgres_url: str) -> Iterator[Registry]:
    with Registry.open(postgres_url) as registry:
        registry.register(make_spec("chat", "1.0.0"), actor="t")
        yield registry


def test_the_listener_refreshes_once_per_burst_and_only_for_its_env(
    pg_registry: Registry,
) -> None:
    channel = pg_registry.change_channel()
    assert channel is not None
    calls: list[float] = []
    busy = threading.Event()

    def refresh() -> None:
        calls.append(time.monotonic())
        busy.wait(0.3)  # a slow refresh: notices meanwhile are answered by one more

    listener = ChangeListener(channel, "dev", refresh)
    listener.start()
    try:
        assert listener.listening.wait(10)
        pg_registry.set_alias("prod", "production", "chat@1.0.0", actor="t", reason="other env")
        for _ in range(5):
            pg_registry.set_alias("dev", "production", "chat@1.0.0", actor="t", reason="burst")
            pg_registry.reset_traffic("dev", actor="t", reason="burst")
        deadline = time.monotonic() + 5
        while len(calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.8)
    finally:
        listener.stop()
    assert 1 <= len(calls) <= 3, calls  # 10 notices of dev, not 10 refreshes


def test_the_listener_logs_an_outage_once_and_keeps_trying(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dsn = f"host=127.0.0.1 port={free_port()} user=nobody dbname=x"
    listener = ChangeListener(dsn, "dev", lambda: None, backoff=(0.01, 0.02))
    with caplog.at_level(logging.WARNING, logger="llmship.gateway.notify"):
        listener.start()
        time.sleep(0.5)
        listener.stop()
    warnings = [r for r in caplog.records if "cannot listen" in r.getMessage()]
    assert len(warnings) == 1 and not listener.listening.is_set()


# -- a wrong database -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://nobody@127.0.0.1:1/x",  # nothing listens
        "mysql://nobody@127.0.0.1/x",  # not a registry this llmship opens
    ],
)
def test_a_gateway_with_a_wrong_database_exits_with_one_line(url: str, tmp_path: Path) -> None:
    env = {**os.environ, "LLMSHIP_HOME": str(tmp_path), "LLMSHIP_DATABASE_URL": url}
    env.pop("LLMSHIP_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-m", "llmship", "gateway", "--port", str(free_port())],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    output = (done.stdout + done.stderr).strip()
    assert "Traceback" not in output
    assert output.startswith("error: ") and len(output.splitlines()) == 1, output
