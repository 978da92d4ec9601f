"""What `llmship up` serves: every release anything in the environment needs."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from rich.console import Console

from _registry import make_spec
from llmship.flags import Flag
from llmship.registry import Registry
from llmship.rollout import ops, parse_rollout
from llmship.rollout.controller import Controller
from llmship.settings import Settings
from llmship.supervisor.stack import Stack, needed_releases

CANARY = parse_rollout(
    {"name": "c", "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}}
)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """chat@1.0.0 in production with a live server; 1.1.0, 1.2.0 and 2.0.0 registered."""
    reg = Registry.open(f"sqlite:///{tmp_path / 'registry.db'}")
    for version in ("1.0.0", "1.1.0", "1.2.0", "2.0.0"):
        reg.register(make_spec(version=version), actor="ci")
    reg.set_alias("dev", "production", "chat@1.0.0", actor="ci", reason="launch")
    reg.register_endpoint("dev", "chat@1.0.0", "http://127.0.0.1:8101", pid=1)
    try:
        yield reg
    finally:
        reg.close()


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
