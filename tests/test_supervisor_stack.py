"""What `llmship up` serves: every release anything in the environment needs."""

from __future__ import annotations

import io
import itertools
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from rich.console import Console

from _registry import chat_registry
from llmship.flags import Flag
from llmship.registry import Registry
from llmship.release.bundled import bundled_spec
from llmship.rollout import ops, parse_rollout
from llmship.rollout.controller import Controller
from llmship.settings import Settings
from llmship.supervisor.children import Child
from llmship.supervisor.stack import Stack, needed_releases

CANARY = parse_rollout(
    {"name": "c", "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}}
)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """chat@1.0.0 in production with a live server; 1.1.0, 1.2.0 and 2.0.0 registered."""
    with chat_registry(tmp_path / "registry.db", ("1.0.0", "1.1.0", "1.2.0", "2.0.0")) as reg:
        reg.register_endpoint("dev", "chat@1.0.0", "http://127.0.0.1:8101", pid=1)
        yield reg


def needs(registry: Registry) -> tuple[set[str], bool]:
    found = needed_releases(registry, "dev", endpoint_max_age=30)
    return set(found.releases), found.settled


def test_production_alone(registry: Registry) -> None:
    assert needs(registry) == ({"chat@1.0.0"}, True)


def test_a_rollouts_candidate_from_the_moment_it_starts(registry: Registry) -> None:
    # The candidate is needed before the rollout puts it in the policy (its first step
    # waits for its server), and the policy, still without it, is settled.
    ops.start(registry, CANARY, "chat@1.1.0", env="dev", actor="ann")
    assert needs(registry) == ({"chat@1.0.0", "chat@1.1.0"}, True)
    # Once the rollout is aborted, only the policy's releases are needed again
    ops.request(registry, "dev", None, "abort", actor="ann")
    with Controller(registry, env="dev") as controller:
        controller.run_once()
    assert needs(registry) == ({"chat@1.0.0"}, True)


def test_policy_flags_and_settling(registry: Registry) -> None:
    policy = registry.get_traffic("dev").with_(
        canary="chat@1.1.0", canary_weight=20, shadow="chat@1.2.0", shadow_percent=5
    )
    registry.set_traffic("dev", policy, actor="ann", reason="try")
    registry.set_flag("dev", Flag(name="new-model", enabled=True, release="chat@2.0.0"), actor="a")
    releases, settled = needs(registry)
    assert releases == {"chat@1.0.0", "chat@1.1.0", "chat@1.2.0", "chat@2.0.0"}
    assert not settled  # the canary takes requests and has no server yet
    registry.register_endpoint("dev", "chat@1.1.0", "http://127.0.0.1:8102", pid=2)
    assert needs(registry)[1]  # the shadow's answers reach nobody: not waited for


def test_an_unneeded_server_holding_requests_is_busy(tmp_path: Path) -> None:
    # A model server's in-flight gauge, as its /metrics shows it
    gauge = {"value": 2.0}

    class Metrics(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = f'llm_requests_in_flight{{version="chat@1.0.0"}} {gauge["value"]}\n'.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        stack = Stack(Settings(home=tmp_path), gateway_port=0, console=Console(file=io.StringIO()))
        stack.ports["serve:chat@1.0.0"] = server.server_address[1]
        # While it answers or queues requests sent before a switch, it is not stopped
        assert stack._busy("serve:chat@1.0.0")
        gauge["value"] = 0.0
        assert not stack._busy("serve:chat@1.0.0")
        assert not stack._busy("serve:chat@9.9.9")  # not running: nothing to wait for
    finally:
        server.shutdown()
        server.server_close()


class FakeProc:
    """What the supervisor sees of a child process: it runs until signalled or ``crash``."""

    pids = itertools.count(1000)

    def __init__(self) -> None:
        self.pid = next(self.pids)
        self.returncode: int | None = None
        self.signals: list[int] = []

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)
        self.returncode = 0

    def wait(self, timeout: float | None = None) -> int | None:
        return self.returncode

    def kill(self) -> None:
        self.returncode = -9


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake_children(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeProc]:
    """Children that start no process: their fake processes, by child name."""
    procs: dict[str, FakeProc] = {}

    def start(child: Child) -> None:
        child.proc = procs[child.name] = FakeProc()  # type: ignore[assignment]

    monkeypatch.setattr(Child, "start", start)
    return procs


def stack_of(tmp_path: Path, clock: Clock | None = None, **settings: object) -> Stack:
    cfg = Settings(home=tmp_path, **settings)  # type: ignore[arg-type]
    return Stack(cfg, gateway_port=0, console=Console(file=io.StringIO()), clock=clock or Clock())


def printed(stack: Stack) -> str:
    file = stack.console.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


def test_replicas_start_crash_alone_and_stop_together(
    registry: Registry, tmp_path: Path, fake_children: dict[str, FakeProc]
) -> None:
    # Given `replicas: {chat: 2}` and chat@1.0.0 in production
    clock = Clock()
    stack = stack_of(tmp_path, clock, replicas={"chat": 2})
    first, second = "serve:chat@1.0.0#1", "serve:chat@1.0.0#2"
    # When the stack starts, two model servers of the release start, each on its port
    stack.tick()
    assert set(fake_children) == {"gateway", "controller", first, second}
    assert stack.ports[first] != stack.ports[second]
    for number, name in enumerate((first, second), start=1):
        child = stack.children[name]
        assert child.args[:3] == ["serve", "--release", "chat@1.0.0"]
        assert "--threads" not in child.args  # an openai release: no threads to share
        assert child.log_path.name == f"serve-chat-1.0.0-{number}.log"
        port = stack.ports[name]
        pid = fake_children[name].pid
        assert f"started model server chat@1.0.0#{number} on port {port}, pid {pid}" in (
            printed(stack)
        )
    # When the second crashes, it alone is restarted after its backoff, on the same port
    port = stack.ports[second]
    crashed = fake_children[second]
    crashed.returncode = 1
    clock.now = 1.0
    stack.tick()
    assert f"{second} exited with 1" in printed(stack)
    assert fake_children[second] is crashed  # backoff: not yet
    clock.now = 2.0
    stack.tick()
    assert fake_children[second] is not crashed
    assert f"started model server chat@1.0.0#2 on port {port}, pid" in printed(stack)
    assert "(restart 1)" in printed(stack)
    assert fake_children[first].returncode is None
    # When the stack stops, every replica gets SIGTERM
    stack.shutdown()
    assert all(proc.signals == [signal.SIGTERM] for proc in fake_children.values())


@pytest.mark.parametrize(
    ("settings", "threads"),
    [
        ({}, None),  # one server: its own default (the release's, else half the cores)
        ({"replicas": 2}, "4"),  # two servers share half the cores (8 of 16 here)
        ({"replicas": {"smollm2-chat@1.0.0": 3}}, "2"),
        ({"replicas": 2, "n_threads": 1}, "1"),  # the setting wins
        ({"n_threads": 6}, "6"),
    ],
)
def test_the_threads_each_llamacpp_replica_gets(
    registry: Registry,
    tmp_path: Path,
    fake_children: dict[str, FakeProc],
    monkeypatch: pytest.MonkeyPatch,
    settings: dict[str, object],
    threads: str | None,
) -> None:
    monkeypatch.setattr("llmship.backends.llamacpp.default_threads", lambda: 8)
    record, _ = registry.register(bundled_spec(), actor="ci")
    registry.set_alias("dev", "production", record.ref, actor="ci", reason="llama.cpp")
    stack = stack_of(tmp_path, Clock(), **settings)
    stack.tick()
    servers = [c for n, c in sorted(stack.children.items()) if n.startswith("serve:smollm2")]
    assert len(servers) == Settings(home=tmp_path, **settings).replicas_of(record.ref)  # type: ignore[arg-type]
    for child in servers:
        given = child.args[child.args.index("--threads") + 1] if "--threads" in child.args else None
        assert given == threads
    if threads is not None:
        plural = "s" if threads != "1" else ""
        assert f"({threads} thread{plural}), pid" in printed(stack)


def test_a_release_counts_as_live_with_one_live_replica(registry: Registry) -> None:
    # Given two replicas of the canary, one of them announced
    policy = registry.get_traffic("dev").with_(canary="chat@1.1.0", canary_weight=20)
    registry.set_traffic("dev", policy, actor="ann", reason="try")
    assert not needs(registry)[1]
    registry.register_endpoint("dev", "chat@1.1.0", "http://127.0.0.1:8102", pid=2)
    assert needs(registry)[1]
    registry.register_endpoint("dev", "chat@1.1.0", "http://127.0.0.1:8103", pid=3)
    registry.remove_endpoint("dev", "chat@1.1.0", "http://127.0.0.1:8102")
    assert needs(registry)[1]
