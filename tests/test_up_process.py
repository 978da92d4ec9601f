"""`llmship up` as a real process: the local stack follows the traffic policy,
restarts a crashed model server or controller, and stops every child on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml

from _procs import LlmshipProcess, free_port
from llmship.registry import Registry
from llmship.release.bundled import bundled_spec

pytestmark = pytest.mark.slow


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def spec_file(path: Path, version: str) -> Path:
    data = bundled_spec().to_dict()
    data["version"] = version
    data["runtime"] |= {"n_threads": 1, "n_ctx": 512}
    path.write_text(yaml.safe_dump(data))
    return path


def served_by(url: str) -> str:
    try:
        r = httpx.post(f"{url}/predict", json={"prompt": "Hi", "max_new_tokens": 2}, timeout=30)
    except httpx.TransportError:
        return ""
    return r.headers.get("x-llmship-version", "") if r.status_code == 200 else ""


def test_up_follows_the_policy_restarts_crashes_and_stops_cleanly(tmp_path: Path) -> None:
    home = tmp_path / "state"
    env = {"LLMSHIP_HOME": str(home)}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # Given a registry with two releases, 1.0.0 in production
    for version in ("1.0.0", "1.1.0"):
        cmd = LlmshipProcess(
            ["models", "register", str(spec_file(tmp_path / f"{version}.yaml", version))],
            tmp_path,
            env,
        )
        assert cmd.wait() == 0, cmd.output()
        cmd.stop()
    alias = LlmshipProcess(
        ["alias", "set", "production", "smollm2-chat@1.0.0", "--reason", "test"], tmp_path, env
    )
    assert alias.wait() == 0, alias.output()
    alias.stop()
    # When the stack starts
    up = LlmshipProcess(["up", "--port", str(port)], tmp_path, env)
    try:
        wait_for(lambda: "ready" in up.output(), "the stack to be ready")
        assert "started the rollout controller" in up.output()
        assert f"dashboard: {url}/ui" in up.output()
        assert "<title>llmship</title>" in httpx.get(f"{url}/ui", timeout=5).text
        assert served_by(url) == "smollm2-chat@1.0.0"
        assert (home / "admin-token").stat().st_mode & 0o777 == 0o600
        # and the whole traffic goes to a canary, a model server for it starts
        with Registry.open(f"sqlite:///{home / 'registry.db'}") as registry:
            policy = registry.get_traffic("dev").with_(
                canary="smollm2-chat@1.1.0", canary_weight=100
            )
            registry.set_traffic("dev", policy, actor="test", reason="canary")
        wait_for(lambda: served_by(url) == "smollm2-chat@1.1.0", "the canary to answer")
        # When the canary's model server is killed, it is restarted
        with Registry.open(f"sqlite:///{home / 'registry.db'}") as registry:
            pid = next(e.pid for e in registry.list_endpoints("dev") if e.ref.endswith("1.1.0"))
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: "(restart 1)" in up.output(), "the crashed server to be restarted")
        wait_for(lambda: served_by(url) == "smollm2-chat@1.1.0", "the restarted canary to answer")
        # When the controller is killed, it is restarted too
        [first] = re.findall(r"started the rollout controller, pid (\d+)", up.output())
        os.kill(int(first), signal.SIGKILL)
        wait_for(
            lambda: len(re.findall(r"started the rollout controller, pid \d+", up.output())) == 2,
            "the controller to be restarted",
        )
        [again] = re.findall(
            r"started the rollout controller, pid (\d+) \(restart 1\)", up.output()
        )
        assert again != first
        os.kill(int(again), 0)  # it runs
    finally:
        # When Ctrl-C reaches it, every child stops and it exits
        up.proc.send_signal(signal.SIGINT)
        code = up.wait(timeout=60)
        up.stop()
    assert code == 0, up.output()
    assert "stopped" in up.output()
    assert up.output().count("controller exited") == 1  # only when it was killed
    with Registry.open(f"sqlite:///{home / 'registry.db'}") as registry:
        assert registry.list_endpoints("dev") == []  # every model server withdrew
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/healthz", timeout=2)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_up_started_in_the_background_stops_within_seconds(tmp_path: Path, sig: int) -> None:
    # Given `llmship up &` from a script: the shell starts it with SIGINT ignored
    home = tmp_path / "state"
    port = free_port()
    env = {**os.environ, "LLMSHIP_HOME": str(home), "LLMSHIP_GATEWAY_PORT": str(port)}
    env.pop("LLMSHIP_CONFIG", None)
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen(
        [sys.executable, "-m", "llmship", "up"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # noqa: PLW1509
    )
    try:
        wait_for(lambda: "ready" in (tmp_path / "up.log").read_text(), "the stack to be ready")
        # When it gets SIGTERM or SIGINT, every child stops within a few seconds
        started = time.monotonic()
        up.send_signal(sig)
        assert up.wait(timeout=30) == 0
        took = time.monotonic() - started
    finally:
        if up.poll() is None:
            up.kill()
        log.close()
    output = (tmp_path / "up.log").read_text()
    assert took < 8, output
    assert "killed" not in output.lower()
    with Registry.open(f"sqlite:///{home / 'registry.db'}") as registry:
        assert registry.list_endpoints("dev") == []
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
