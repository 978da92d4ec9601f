"""What the benchmarks share: child processes on free ports, readiness polls, the
instant upstream, streamed chat requests, percentiles and the environment record.

Imported by the scripts in this folder (``from _common import ...``; Python puts
a script's folder first on ``sys.path``). Only the standard library is imported at
module level, so the light helper processes (``gateway_overhead.py _upstream`` and
``_loadgen``) stay light; httpx and psutil are imported where they are used.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

READY_TIMEOUT_S = 180.0
TESTS = Path(__file__).resolve().parent.parent / "tests"
"""The test helpers some benchmarks reuse (a throwaway PostgreSQL, release specs)."""
UPSTREAM_SCRIPT = Path(__file__).resolve().with_name("gateway_overhead.py")
"""Run as ``UPSTREAM_SCRIPT _upstream``: an OpenAI-compatible server that answers at once."""

SYSTEM_PROMPT = "You are a helpful assistant."
PROMPTS = (
    "Explain what a canary release is and why teams use one.",
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "List ten tips for writing clear technical documentation, with one sentence each.",
    "Describe how a bicycle works, from the pedals to the wheels.",
)
WARMUP_PROMPT = "Say hello and introduce yourself in two sentences."


class BenchmarkError(Exception):
    """Something broke; the figures would be meaningless."""


# -- processes ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Proc:
    """A child process with its output in a log file, stopped by :meth:`stop`.

    ``env`` is set on top of this process's environment (a ``None`` value removes the
    variable); ``PYTHONUNBUFFERED=1`` always, so the log is up to date.
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str | None] | None = None,
        cwd: Path | None = None,
        stdout_pipe: bool = False,
        stdin_pipe: bool = False,
        stop_signal: int = signal.SIGTERM,
    ):
        self.name = name
        self.log_path = log_path
        self.stop_signal = stop_signal
        merged: dict[str, str | None] = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            list(command),
            stdout=subprocess.PIPE if stdout_pipe else self._log,
            stderr=self._log if stdout_pipe else subprocess.STDOUT,
            stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            env={k: v for k, v in merged.items() if v is not None},
            cwd=cwd,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check(self) -> None:
        """Fail at once, with its log, if the process has exited."""
        if self.proc.poll() is not None:
            raise BenchmarkError(
                f"{self.name} exited with status {self.proc.returncode}; its log:\n{self.tail()}"
            )

    def tail(self, lines: int = 30) -> str:
        self._log.flush()
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def wait_http(self, url: str, timeout: float = READY_TIMEOUT_S) -> None:
        """Poll ``url`` until it answers 200; fail at once if the process exits."""
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return
            time.sleep(0.1)
        raise BenchmarkError(f"{self.name} not ready after {timeout:g}s; its log:\n{self.tail()}")

    def cpu_s(self) -> float:
        """User + system CPU seconds of the process and its children so far."""
        import psutil

        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return math.nan
        total = 0.0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                times = p.cpu_times()
                total += times.user + times.system
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        self._log.close()


def start_upstream(workdir: Path, tokens: int = 16) -> tuple[Proc, str]:
    """The instant upstream (``tokens`` content events per stream); returns it and its
    base URL."""
    proc = Proc(
        "instant upstream",
        [sys.executable, str(UPSTREAM_SCRIPT), "_upstream", "--tokens", str(tokens)],
        workdir / "upstream.log",
        stdout_pipe=True,
    )
    assert proc.proc.stdout is not None
    line = proc.proc.stdout.readline().decode()
    if not line.startswith("PORT "):
        proc.check()
        raise BenchmarkError(f"the upstream said {line!r}; its log:\n{proc.tail()}")
    url = f"http://127.0.0.1:{int(line.split()[1])}"
    proc.wait_http(f"{url}/readyz", timeout=30)
    return proc, url


def exit_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so that the child processes are stopped."""

    def terminate(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)


# -- streamed chat requests -----------------------------------------------------------


def chat_messages(prompt: str) -> list[dict[str, str]]:
    """The system message is sent explicitly so the server does not add its own."""
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]


@dataclass
class ChatStream:
    """One streamed chat completion, timed at the client."""

    ttft_s: float  # start -> first non-empty content delta
    total_s: float  # start -> ``[DONE]``
    text: str
    finish_reason: str | None
    usage: dict[str, int]
    headers: Mapping[str, str] = field(default_factory=dict)  # the response's


def stream_chat(
    client: Any, url: str, prompt: str, *, max_tokens: int, seed: int, label: str | None = None
) -> ChatStream:
    """``POST url`` (an httpx client's chat completions), greedy, streamed (SSE)."""
    label = label or url
    body = {
        "messages": chat_messages(prompt),
        "stream": True,
        "temperature": 0,
        "max_tokens": max_tokens,
        "seed": seed,
    }
    began = time.perf_counter()
    first: float | None = None
    end: float | None = None
    parts: list[str] = []
    finish: str | None = None
    usage: dict[str, int] | None = None
    with client.stream("POST", url, json=body) as response:
        headers = response.headers
        if response.status_code != 200:
            response.read()
            raise BenchmarkError(f"{label}: HTTP {response.status_code}: {response.text}")
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line[len("data: ") :]
            if data == "[DONE]":
                end = time.perf_counter()
                break
            event = json.loads(data)
            if "error" in event:
                raise BenchmarkError(f"{label}: the stream ended with an error: {event['error']}")
            for choice in event.get("choices", []):
                content = choice.get("delta", {}).get("content")
                if content:
                    if first is None:
                        first = time.perf_counter()
                    parts.append(content)
                finish = choice.get("finish_reason") or finish
            usage = event.get("usage") or usage
    if first is None or end is None or usage is None:
        raise BenchmarkError(f"{label}: incomplete stream for prompt {prompt!r}")
    return ChatStream(first - began, end - began, "".join(parts), finish, usage, headers)


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A new database on a throwaway PostgreSQL server (initdb in a temp directory, as
    the tests do: ``tests/_postgres.py``), removed afterwards; its SQLAlchemy URL.
    BenchmarkError when PostgreSQL cannot start here."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    from _postgres import PostgresUnavailable, postgres_server

    try:
        with postgres_server() as server, server.database() as url:
            yield url
    except PostgresUnavailable as exc:
        raise BenchmarkError(f"cannot start PostgreSQL: {exc}") from exc


# -- statistics and the report ---------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 1]; nan for no values."""
    data = sorted(v for v in values if not math.isnan(v))
    if not data:
        return math.nan
    k = (len(data) - 1) * q
    lo = math.floor(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    return percentile(values, 0.5)


def median_ci(
    values: Sequence[float], level: float = 0.95, resamples: int = 2000
) -> tuple[float, float]:
    """A bootstrap confidence interval of the median (percentile method, fixed seed):
    how well the runs pin the median down on a noisy machine."""
    import random

    data = [v for v in values if not math.isnan(v)]
    if len(data) < 2:
        return math.nan, math.nan
    rng = random.Random(0)
    medians = sorted(median(rng.choices(data, k=len(data))) for _ in range(resamples))
    tail = (1.0 - level) / 2
    return percentile(medians, tail), percentile(medians, 1.0 - tail)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def environment(packages: Sequence[str], **extra: Any) -> dict[str, Any]:
    """When and where the figures were measured: date, Python, platform, cores, ``extra``
    and the installed version of each of ``packages`` (None when not installed)."""

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        **extra,
        "packages": {d: version(d) for d in packages},
    }
