"""The service under test: what it serves (a probe before the run), and a release's
own model server (``llmship serve --release REF`` on a free port) for ``--release``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from llmship.errors import LlmshipError, UpstreamError
from llmship.loadtest.measure import StreamParser, error_from_body, predict_reply
from llmship.loadtest.plan import LoadPlan

READY_TIMEOUT = 120.0
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class TargetInfo:
    """What a probe of the target found."""

    model: str | None
    """The first model of ``/v1/models`` (None when the service has no such route)."""
    version: str | None
    """Its ``X-Llmship-Version`` header: an llmship gateway or model server names the
    release that answered."""


def probe(url: str, *, timeout: float = 10.0) -> TargetInfo:
    """Ask ``url`` what it serves (``GET /v1/models``). A target that cannot be
    reached is an ``UpstreamError``; one without that route is fine."""
    try:
        response = httpx.get(f"{url}/v1/models", timeout=timeout)
    except httpx.HTTPError as exc:
        raise UpstreamError(f"cannot reach the target {url}: {exc}") from exc
    version = response.headers.get("x-llmship-version")
    model = None
    if response.status_code == 200:
        try:
            data = response.json().get("data") or []
            model = str(data[0]["id"]) if data else None
        except (ValueError, AttributeError, KeyError, IndexError, TypeError):
            model = None
    return TargetInfo(model=model, version=version)


def first_request(plan: LoadPlan) -> float:
    """Send one request of ``plan`` (streamed, like the test's) before the test
    starts, as vLLM's ``bench serve`` does: a wrong endpoint, model or URL fails
    here, at once, and the server's slow first request is not measured. Returns
    its latency in seconds; an ``UpstreamError`` says what went wrong."""
    prompt = plan.prompts[0]
    body: dict[str, Any]
    if plan.endpoint == "predict":
        body = {"prompt": prompt.as_text(), "max_new_tokens": min(plan.max_tokens, 16)}
    else:
        body = {"max_tokens": min(plan.max_tokens, 16), "stream": True}
        body |= {"messages": prompt.as_messages()} if plan.endpoint == "chat" else {}
        body |= {"prompt": prompt.as_text()} if plan.endpoint == "completions" else {}
        body |= {"model": plan.model} if plan.model else {}
    url = plan.target + plan.path
    started = time.perf_counter()
    parser = StreamParser(chat=plan.endpoint == "chat")
    try:
        with httpx.stream("POST", url, json=body, timeout=plan.timeout) as response:
            if response.status_code >= 400:
                error: str | None = error_from_body(response.status_code, response.read())
            elif plan.endpoint == "predict":
                error = predict_reply(response.read())[1]
            else:
                for line in response.iter_lines():
                    parser.feed(line, time.perf_counter() - started)
                error = parser.error
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    if error is not None:
        raise UpstreamError(
            f"the first request to {url} failed: {error} (check --target, --endpoint and --model)"
        )
    return time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ReleaseServer:
    """``llmship serve --release REF`` on a free local port, for the length of a
    ``with`` block: ready (``/readyz`` answers 200) on entry, stopped on exit."""

    def __init__(self, ref: str, *, env: str | None = None, ready_timeout: float = READY_TIMEOUT):
        self.ref = ref
        self.env = env
        self.ready_timeout = ready_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._tmp = tempfile.TemporaryDirectory(prefix="llmship-loadtest-serve-")
        self.log_path = Path(self._tmp.name) / "serve.log"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ReleaseServer:
        args = [sys.executable, "-m", "llmship", "serve", "--release", self.ref]
        args += ["--host", "127.0.0.1", "--port", str(self.port)]
        if self.env:
            args += ["--env", self.env]
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                raise LlmshipError(
                    f"`llmship serve --release {self.ref}` exited with {code}:\n{self.output()}"
                )
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise LlmshipError(
            f"`llmship serve --release {self.ref}` was not ready after "
            f"{self.ready_timeout:.0f} s:\n{self.output()}"
        )

    def stop(self) -> None:
        """Stop the server (Ctrl-C, then kill after a grace time)."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._tmp.cleanup()

    def output(self, lines: int = 30) -> str:
        """The last lines the server printed."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
