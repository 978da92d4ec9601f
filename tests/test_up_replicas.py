"""`llmship up` with `replicas: 2` and `n_threads: 1` as a real process: two model
servers of the production release, each announced, both stopped by SIGTERM."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from _procs import LlmshipProcess, free_port
from llmship.registry import Registry
from llmship.registry.records import Endpoint

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

REF = "smollm2-chat@1.0.0"


def wait_for(check: Callable[[], bool], what: str, up: LlmshipProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert up.proc.poll() is None, f"llmship up exited:\n{up.output()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{up.output()}"
        time.sleep(0.2)


def endpoints(home: Path) -> list[Endpoint]:
    with Registry.open(f"sqlite:///{home / 'registry.db'}") as registry:
        return registry.list_endpoints("dev")


def test_up_runs_two_replicas_of_production_and_stops_both(tmp_path: Path) -> None:
    # Given a project whose llmship.yaml asks for two one-thread servers per release
    (tmp_path / "llmship.yaml").write_text("replicas: 2\nn_threads: 1\n")
    home = tmp_path / ".llmship"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # When the stack starts on an empty registry
    up = LlmshipProcess(["up", "--port", str(port)], tmp_path)
    try:
        wait_for(lambda: "ready" in up.output(), "the stack to be ready", up, 180)
        # Then two model servers of production start, each named, on its own port
        started = re.findall(
            rf"started model server {re.escape(REF)}#(\d) on port (\d+) \(1 thread\)", up.output()
        )
        assert sorted(number for number, _ in started) == ["1", "2"], up.output()
        assert len({port for _, port in started}) == 2
        # and both announce themselves in the registry
        wait_for(lambda: len(endpoints(home)) == 2, "both replicas to announce", up, 180)
        announced = endpoints(home)
        assert {e.ref for e in announced} == {REF}
        assert {e.url for e in announced} == {f"http://127.0.0.1:{p}" for _, p in started}
        assert len({e.pid for e in announced}) == 2
        for number in ("1", "2"):
            log = (home / "logs" / "dev" / f"serve-smollm2-chat-1.0.0-{number}.log").read_text()
            assert "(llamacpp, 1 thread)" in log, log
        # and requests through the gateway are answered by the release
        for _ in range(3):
            r = httpx.post(f"{url}/predict", json={"prompt": "Hi", "max_new_tokens": 2}, timeout=60)
            assert r.status_code == 200, r.text
            assert r.headers["x-llmship-version"] == REF
    finally:
        # When SIGTERM reaches it
        up.proc.send_signal(signal.SIGTERM)
        code = up.wait(timeout=60)
        up.stop()
    # Then it exits cleanly and both replicas withdrew
    assert code == 0, up.output()
    assert endpoints(home) == []
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/healthz", timeout=2)
