"""llmship across hosts: PostgreSQL, two gateways, two controllers and three model
servers, each on its own host (a network namespace), through a canary under steady
load, while a stable replica is killed, the leading controller and a gateway are cut
off, and the link to the database turns slow. Each host runs its
command from docs/scaling.md, as written.

Hosts (``front``: clients, gateways, model servers, controllers; ``db``: PostgreSQL):

    pg        db           PostgreSQL
    gw1 gw2   front + db   llmship gateway (to PostgreSQL through a relay that can delay:
                           the one change to the docs' settings)
    ctl1 ctl2 front + db   llmship controller
    s1 s2     front + db   llmship serve, the stable release (one llama.cpp thread each)
    c1        front + db   llmship serve, the candidate
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from _hosts import DelayRelay, Hosts, netem_works, postgres_on, set_delay, unavailable
from _journey import REPO, ClientThreads, Shell, project, wait_for
from _procs import Process

WHY_NOT = unavailable()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("journeys"),
    pytest.mark.skipif(WHY_NOT is not None and not os.environ.get("CI"), reason=WHY_NOT or ""),
]

ENV = "prod"
TOKEN = "hosts-admin-token"
INTERVAL = 1.0
"""The controllers' reconcile interval (seconds)."""
RELAY_PORT = 6543
STABLE, CANDIDATE = "smollm2-chat@1.0.0", "smollm2-chat@1.1.0"

CANARY = """\
name: hosts-canary
progressDeadline: 10m
strategy:
  canary:
    steps:
      - setWeight: 25
      - pause: {duration: 50s}
      - setWeight: 50
      - pause: {duration: 40s}
    analysis:
      templates: [{templateName: health}]
analysisTemplates:
  - name: health
    metrics:
      - name: error-rate
        interval: 10s
        failureLimit: 0
        successCondition: result <= 0.05
        provider: {builtin: {metric: error_rate, window: 30s, minSamples: 3}}
      - name: candidate-requests
        interval: 10s
        successCondition: result >= 1
        provider: {builtin: {metric: request_count, window: 10m}}
"""


@dataclass
class Reply:
    gateway: str
    sent: float
    took: float
    status: int
    version: str
    detail: str


class Load(ClientThreads):
    """Steady traffic through every gateway: ``per_gateway`` client threads each, one
    non-streamed chat completion after another; every reply kept."""

    def __init__(self, gateways: dict[str, str], per_gateway: int = 2):
        super().__init__()
        self.gateways = gateways
        self.per_gateway = per_gateway
        self.replies: list[Reply] = []

    def clients(self) -> list[tuple[Callable[..., None], tuple[Any, ...]]]:
        return [
            (self._client, (name, url, i))
            for name, url in self.gateways.items()
            for i in range(self.per_gateway)
        ]

    def _client(self, name: str, url: str, seed: int) -> None:
        body = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 4}
        n = 0
        with httpx.Client(base_url=url, timeout=60) as client:
            while not self._stop.is_set():
                n += 1
                began = time.monotonic()
                try:
                    response = client.post(
                        "/v1/chat/completions",
                        json=body,
                        headers={"X-User-Id": f"{name}-{seed}-{n}"},
                    )
                    status, version = (
                        response.status_code,
                        response.headers.get("X-Llmship-Version", ""),
                    )
                    detail = "" if status == 200 else response.text[:300]
                except httpx.HTTPError as exc:
                    status, version, detail = 0, "", f"{type(exc).__name__}: {exc}"
                reply = Reply(name, began, time.monotonic() - began, status, version, detail)
                with self._lock:
                    self.replies.append(reply)

    def since(self, t: float) -> list[Reply]:
        with self._lock:
            return [r for r in self.replies if r.sent >= t]

    def errors(self) -> list[Reply]:
        with self._lock:
            return [r for r in self.replies if r.status != 200]


class Cluster:
    """The hosts, the processes on them, and the shell that gives the commands."""

    def __init__(
        self, hosts: Hosts, root: Path, database_url: str, relay_url: str, relay: DelayRelay
    ):
        self.hosts = hosts
        self.relay = relay
        self.root = root
        self.database_url = database_url
        self.relay_url = relay_url
        self.procs: dict[str, Process] = {}
        self.shell = Shell(
            root,
            8080,
            extra_env={
                "LLMSHIP_DATABASE_URL": database_url,
                "LLMSHIP_ENV": ENV,
                "LLMSHIP_ADMIN_TOKEN": TOKEN,
                "LLMSHIP_HOME": str(root / ".llmship"),
            },
        )

    def start(self, name: str, command: str, *, database_url: str | None = None) -> Process:
        """``command`` (a line of docs/scaling.md) in bash on host ``name``, with
        ``HOST_IP`` its address, as a user runs it there (bash runs the one command in
        its own process: the pid is llmship's)."""
        host = self.hosts.hosts[name]
        env = self.shell.env()
        env["LLMSHIP_DATABASE_URL"] = database_url or self.database_url
        env["LLMSHIP_HOME"] = str(self.root / f".llmship-{name}")
        env["HOST_IP"] = host.ip("front")
        argv = host.argv(["bash", "-c", command])
        proc = Process(name, argv, self.root, self.root / f"{name}.log", env)
        proc.stop_signal = signal.SIGTERM
        self.procs[name] = proc
        return proc

    def url(self, name: str, port: int) -> str:
        return f"http://{self.hosts.hosts[name].ip('front')}:{port}"

    def logs(self) -> str:
        parts = []
        for name, proc in self.procs.items():
            lines = proc.output().splitlines()[-30:]
            parts.append(f"--- {name}\n" + "\n".join(lines))
        return "\n".join(parts)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    if WHY_NOT is not None:
        pytest.fail(f"the cross-host test cannot run here: {WHY_NOT}")
    root = project(tmp_path)
    with Hosts(("front", "db")) as hosts:
        pg = hosts.add("pg", ("db",))
        for name in ("gw1", "gw2", "ctl1", "ctl2", "s1", "s2", "c1"):
            hosts.add(name, ("front", "db"))
        with postgres_on(pg) as url:
            relay_addr = (hosts.nets["db"].gateway_ip, RELAY_PORT)
            with DelayRelay(relay_addr, (pg.ip("db"), 5432)) as relay:
                relay_url = url.replace(f"{pg.ip('db')}:5432", f"{relay_addr[0]}:{RELAY_PORT}")
                made = Cluster(hosts, root, url, relay_url, relay)
                try:
                    yield made
                except BaseException:
                    print(made.logs(), file=sys.stderr)
                    raise
                finally:
                    made.stop()


def metric(url: str, name: str) -> float:
    """One unlabelled series of a process's /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    assert found, f"{name} not in {url}/metrics"
    return float(found.group(1))


def overhead_buckets(url: str) -> dict[float, float]:
    """The gateway's overhead histogram (all series added): upper bound -> count."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    buckets: dict[float, float] = {}
    for le, count in re.findall(
        r'^llmship_gateway_overhead_seconds_bucket\{[^}]*le="([^"]+)"[^}]*\} (\S+)$', text, re.M
    ):
        bound = float("inf") if le == "+Inf" else float(le)
        buckets[bound] = buckets.get(bound, 0.0) + float(count)
    return buckets


def overhead_median_ms(before: dict[float, float], after: dict[float, float]) -> float:
    """The median time the gateway added (ms, a bucket's upper bound) to the requests it
    answered between two readings of its histogram."""
    counts = {bound: after[bound] - before.get(bound, 0.0) for bound in after}
    total = counts.get(float("inf"), 0.0)
    for bound in sorted(counts):
        if total and counts[bound] >= total / 2:
            return 1000 * bound
    return float("nan")


def lease_holder(database_url: str) -> str:
    """Who holds the controllers' lease of the environment (read straight from the table,
    so that a takeover is timed to the poll, not to a command's start-up)."""
    import psycopg

    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT holder FROM leases WHERE name = %s", (f"controller/{ENV}",)
        ).fetchone()
    return str(row[0]) if row else ""


def connections(cluster: Cluster) -> dict[str, int]:
    """PostgreSQL connections held by each host now (pg_stat_activity)."""
    import psycopg

    names = {h.ip("db"): name for name, h in cluster.hosts.hosts.items() if "db" in h.addrs}
    names[cluster.hosts.nets["db"].gateway_ip] = "via the relay"
    dsn = cluster.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT host(client_addr), count(*) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' GROUP BY 1"
        ).fetchall()
    return {names.get(str(addr), str(addr)): int(n) for addr, n in rows}


def status(shell: Shell) -> dict[str, Any]:
    return dict(json.loads(shell.run("llmship rollout status --format json").stdout))


def timed(check: Callable[[], bool], what: str, timeout: float, step: float = 0.05) -> float:
    """Seconds until ``check`` holds."""
    began = time.monotonic()
    while not check():
        assert time.monotonic() - began < timeout, f"timed out after {timeout:g}s: {what}"
        time.sleep(step)
    return time.monotonic() - began


@pytest.mark.timeout(600)
def test_a_canary_across_hosts_survives_failures(cluster: Cluster) -> None:
    shell = cluster.shell
    prepare_releases(cluster)
    gateways = start_hosts(cluster)
    with Load(gateways) as load:
        wait_for(lambda: len(load.since(0)) >= 8, "the first answers", 60)

        # When the canary starts
        shell.run(f"llmship rollout start hosts-canary.yaml --candidate {CANDIDATE}")
        wait_for(
            lambda: any(r.version == CANDIDATE for r in load.since(0)),
            "the candidate to answer through a gateway",
            60,
        )
        kill_a_stable_replica(cluster, load)
        cut_the_leading_controller(cluster)
        revision = cut_a_gateway_from_the_database(cluster, load, gateways)
        slow_down_the_database(cluster, load, gateways)
        print(f"PostgreSQL connections by host: {connections(cluster)}")

        # Then the canary ends as on one host: the candidate is promoted
        wait_for(
            lambda: status(shell)["phase"] in ("Healthy", "Degraded", "Aborted"),
            "the canary to end",
            180,
        )
        final = status(shell)
        assert final["phase"] == "Healthy", final
        wait_for(
            lambda: all(
                metric(url, "llmship_policy_revision") > revision for url in gateways.values()
            ),
            "both gateways to route by the promotion",
            30,
        )
    # with no error seen by any client, through either gateway
    assert not load.errors(), load.errors()[:5]
    served = [r for r in load.replies if r.version == CANDIDATE]
    assert {r.gateway for r in served} == {"gw1", "gw2"}
    # and every step applied once, whichever controller applied it
    history = json.loads(shell.run("llmship rollout history --format json").stdout)
    messages = [e["message"] for e in history]
    assert len(messages) == len(set(messages)), messages

    # and the analysis counted every gateway's requests of the candidate
    from llmship.registry import Registry
    from llmship.rollout.stats_http import GatewaysStats

    with Registry.open(cluster.database_url) as registry, GatewaysStats(registry, TOKEN) as source:
        counted = source.stats(ENV, CANDIDATE, 3600).requests
    assert counted == len(served)


def prepare_releases(cluster: Cluster) -> None:
    """1.0.0 in production and 1.1.0 (another system prompt) registered, from the
    operator's machine."""
    shell = cluster.shell
    shell.run("llmship models register models/smollm2-chat-1.0.0.yaml")
    spec = (cluster.root / "models" / "smollm2-chat-1.0.0.yaml").read_text()
    spec = spec.replace("version: 1.0.0", "version: 1.1.0").replace(
        "You are a helpful assistant.", "You are a helpful assistant. Answer briefly."
    )
    (cluster.root / "models" / "smollm2-chat-1.1.0.yaml").write_text(spec)
    shell.run("llmship models register models/smollm2-chat-1.1.0.yaml")
    shell.run(f'llmship alias set production {STABLE} --reason "first production release"')
    (cluster.root / "hosts-canary.yaml").write_text(CANARY)


def scaling_commands() -> list[str]:
    """The commands of docs/scaling.md's "Run it on several hosts", in order."""
    text = (REPO / "docs" / "scaling.md").read_text()
    section = text.split("## Run it on several hosts", 1)[1].split("\n## ", 1)[0]
    lines = [
        line.strip()
        for block in re.findall(r"```sh\n(.*?)```", section, re.S)
        for line in block.splitlines()
    ]
    exports = " ".join(line for line in lines if line.startswith("export "))
    for name in ("LLMSHIP_DATABASE_URL", f"LLMSHIP_ENV={ENV}", "LLMSHIP_ADMIN_TOKEN"):
        assert name in exports, f"docs/scaling.md no longer sets {name}: {exports}"
    return [line for line in lines if line.startswith("llmship ")]


def start_hosts(cluster: Cluster) -> dict[str, str]:
    """On each host its process, started by its command in docs/scaling.md; the
    gateways' URLs."""
    commands = scaling_commands()
    serve = {
        ref: next(c for c in commands if f"serve --release {ref} " in c)
        for ref in (STABLE, CANDIDATE)
    }
    gateway = next(c for c in commands if c.startswith("llmship gateway "))
    controller = next(c for c in commands if c.startswith("llmship controller "))
    assert f"--interval {INTERVAL:g}s" in controller, controller
    servers = {"s1": STABLE, "s2": STABLE, "c1": CANDIDATE}
    for name, ref in servers.items():
        cluster.start(name, serve[ref])
    gateways = {name: cluster.url(name, 8080) for name in ("gw1", "gw2")}
    for name in gateways:
        cluster.start(name, gateway, database_url=cluster.relay_url)
    for name in ("ctl1", "ctl2"):
        cluster.start(name, controller)
    for name in servers:
        cluster.procs[name].wait_http(f"{cluster.url(name, 8000)}/readyz", 120)
    for name, url in gateways.items():
        cluster.procs[name].wait_http(f"{url}/readyz", 60)
    return gateways


def kill_a_stable_replica(cluster: Cluster, load: Load) -> None:
    """A stable replica dies: no client sees an error."""
    killed_at = time.monotonic()
    cluster.procs["s1"].proc.kill()
    wait_for(lambda: len(load.since(killed_at + 2)) >= 8, "answers after the kill", 60)
    assert not load.errors(), load.errors()[:3]


def cut_the_leading_controller(cluster: Cluster) -> None:
    """The leader is cut off: the other leads within two intervals, at the same step;
    when the link is back, the old leader stays out."""
    pids = {name: f":{cluster.procs[name].proc.pid}" for name in ("ctl1", "ctl2")}
    leader = lease_holder(cluster.database_url)
    leading = next(name for name, pid in pids.items() if pid in leader)
    other = "ctl2" if leading == "ctl1" else "ctl1"
    step_before = status(cluster.shell)["step_index"]
    cluster.hosts.hosts[leading].cut()
    takeover = timed(
        lambda: pids[other] in lease_holder(cluster.database_url),
        "the standby controller to take the lease",
        10,
    )
    print(f"controller takeover after the leader's link was cut: {takeover:.2f}s")
    assert takeover <= 2 * INTERVAL + 0.5
    assert status(cluster.shell)["step_index"] >= step_before  # resumed, not restarted
    time.sleep(2)
    cluster.hosts.hosts[leading].mend()
    time.sleep(3 * INTERVAL)
    assert pids[other] in lease_holder(cluster.database_url)
    shown = cluster.shell.run("llmship rollout status").stdout
    assert f"{pids[other]} leads" in shown, shown


def cut_a_gateway_from_the_database(
    cluster: Cluster, load: Load, gateways: dict[str, str]
) -> float:
    """gw1 loses PostgreSQL while the canary takes its next step: it serves on its last
    policy, logs the outage once, and catches up when the link is back. The revision
    before the step."""
    gw1, gw2 = gateways["gw1"], gateways["gw2"]
    revision = metric(gw2, "llmship_policy_revision")
    cut_at = time.monotonic()
    cluster.hosts.hosts["gw1"].cut("db")
    wait_for(
        lambda: metric(gw2, "llmship_policy_revision") > revision,
        "the canary's next step to reach gw2",
        90,
    )
    assert metric(gw1, "llmship_policy_revision") == revision  # still its last policy
    assert [r for r in load.since(cut_at) if r.gateway == "gw1" and r.status == 200]
    cluster.hosts.hosts["gw1"].mend("db")
    caught_up = timed(
        lambda: metric(gw1, "llmship_policy_revision") == metric(gw2, "llmship_policy_revision"),
        "gw1 to catch up",
        30,
    )
    print(f"gw1 caught up {caught_up:.2f}s after its link to PostgreSQL came back")
    log = cluster.procs["gw1"].output()
    assert log.count("cannot read the registry") == 1, log[-3000:]
    return revision


def slow_down_the_database(cluster: Cluster, load: Load, gateways: dict[str, str]) -> None:
    """50 ms more between the gateways and PostgreSQL: the time the gateways add to a
    request stays the same. (The clients' end-to-end latency is printed, not asserted: it is
    the model's time on a shared CPU, and the canary moves traffic between replicas while
    it is measured, so its median wanders by more than 50 ms on its own.)"""
    gw2 = gateways["gw2"]
    before, first = time.monotonic(), overhead_buckets(gw2)
    time.sleep(8)
    base = [r.took for r in load.since(before) if r.status == 200]
    second = overhead_buckets(gw2)
    links = [cluster.hosts.hosts[name].links["db"] for name in gateways]
    netem = all(netem_works(link) for link in links)
    if netem:
        for link in links:
            set_delay(link, 50)
    else:  # this kernel has no sch_netem: the relay holds every packet instead
        cluster.relay.delay = 0.05
    slow_at = time.monotonic()
    time.sleep(8)
    slow = [r.took for r in load.since(slow_at) if r.status == 200]
    third = overhead_buckets(gw2)
    if netem:
        for link in links:
            set_delay(link, 0)
    cluster.relay.delay = 0.0
    added = overhead_median_ms(first, second), overhead_median_ms(second, third)
    print(
        f"median request latency: {statistics.median(base) * 1000:.0f} ms, "
        f"{statistics.median(slow) * 1000:.0f} ms with 50 ms to PostgreSQL "
        f"({'tc netem' if netem else 'relay'}); median gateway overhead at most "
        f"{added[0]:g} ms, then at most {added[1]:g} ms"
    )
    assert added[1] < 10  # waiting on the database would add 50 ms or more
