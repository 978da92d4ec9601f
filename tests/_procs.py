"""Real llmship processes for integration tests: free ports, readiness polls, clean stops;
a test's own ASGI app served over real HTTP from a thread; and a fake OpenAI-compatible
upstream for ``llmship serve``'s ``openai`` backend."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import uvicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ThreadedServer:
    """An ASGI ``app`` served by uvicorn on a free local port, in a daemon thread."""

    def __init__(self, app: Any, what: str) -> None:
        self.what = what
        self.port = free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="error",
            lifespan="off",
            interface="asgi3",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> None:
        """Serve, and return once the port accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, f"{self.what} did not start"
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving: from then on the port refuses connections."""
        self._server.should_exit = True
        self._thread.join(timeout=10)


class FakeUpstream:
    """An OpenAI-compatible server on a free port: `/v1/models`, and completions (streamed,
    or whole when the request says ``"stream": false``) that answer "ok", or 500 while
    ``failing`` is set."""

    def __init__(self) -> None:
        self.failing = False
        self.text = "ok"
        """What it answers (in the first chunk; the last carries only the usage)."""
        self.hits = 0
        self.failures: list[float] = []
        """``time.monotonic()`` of each 500 it answered."""
        self.last_hit = 0.0
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                models = {"object": "list", "data": [{"id": "fake", "object": "model"}]}
                self._send(200, json.dumps(models).encode(), "application/json")

            def do_POST(self) -> None:
                request = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                upstream.hits += 1
                upstream.last_hit = time.monotonic()
                if upstream.failing:
                    upstream.failures.append(upstream.last_hit)
                    error = {"error": {"message": "injected failure", "type": "server_error"}}
                    self._send(500, json.dumps(error).encode(), "application/json")
                    return
                chat = "chat" in self.path
                if json.loads(request or b"{}").get("stream") is False:
                    answer = (
                        {"message": {"role": "assistant", "content": upstream.text}}
                        if chat
                        else {"text": upstream.text}
                    )
                    whole = {
                        "choices": [{"index": 0, **answer, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
                    }
                    self._send(200, json.dumps(whole).encode(), "application/json")
                    return
                text = {"delta": {"content": upstream.text}} if chat else {"text": upstream.text}
                empty = {"delta": {}} if chat else {"text": ""}
                events = [
                    {"choices": [{"index": 0, **text, "finish_reason": None}]},
                    {
                        "choices": [{"index": 0, "finish_reason": "stop", **empty}],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
                    },
                ]
                body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
                self._send(200, body.encode(), "text/event-stream")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Process:
    """``argv`` in ``cwd`` with its output in ``log_path``; :meth:`stop` sends
    ``stop_signal``, then kills it after 10 s."""

    stop_signal = signal.SIGINT

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        cwd: Path,
        log_path: Path,
        env: dict[str, str] | None = None,
    ):
        self.name = name
        self.cwd = cwd
        self.log_path = log_path
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            list(argv), cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)

    def wait_http(self, url: str, timeout: float) -> None:
        """Poll ``url`` until it answers 200; fail at once, with the log, if the process
        exits, and stop it if it is not ready in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.output()}"
                )
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"{self.name} not ready after {timeout}s:\n{self.output()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class LlmshipProcess(Process):
    """``python -m llmship ARGS`` in ``cwd`` with its output in a log file."""

    def __init__(self, args: Sequence[str], cwd: Path, env: dict[str, str] | None = None):
        self.args = list(args)
        full_env = {**os.environ, "LLMSHIP_HOME": str(cwd / ".llmship"), **(env or {})}
        full_env.pop("LLMSHIP_CONFIG", None)
        super().__init__(
            f"llmship {self.args[0]}",
            [sys.executable, "-m", "llmship", *self.args],
            cwd,
            cwd / f"llmship-{os.getpid()}-{time.monotonic_ns()}.log",
            full_env,
        )


class ModelServer(LlmshipProcess):
    """``llmship serve`` on a free port; ``url`` is its base URL."""

    def __init__(self, cwd: Path, *extra: str, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(["serve", "--port", str(self.port), *extra], cwd, env)

    def wait_ready(self, timeout: float = 60) -> ModelServer:
        """Poll /readyz; fail at once, with the log, if the process exits."""
        self.wait_http(f"{self.url}/readyz", timeout)
        return self


class GatewayProcess(LlmshipProcess):
    """``llmship gateway`` on a free port; ``url`` is its base URL."""

    def __init__(self, cwd: Path, *extra: str, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(["gateway", "--port", str(self.port), *extra], cwd, env)

    def wait_ready(self, timeout: float = 30, path: str = "/readyz") -> GatewayProcess:
        """Poll ``path`` (/readyz: a policy is read and stable has a live model server)
        until it answers 200; fail at once, with the log, if the process exits."""
        self.wait_http(f"{self.url}{path}", timeout)
        return self
