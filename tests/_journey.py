"""A user's journey as a test: a project directory, shell commands typed as in the docs,
`llmship up` running the stack, and steady client traffic whose every answer is checked.

Commands run in ``bash`` in the project directory, with the virtualenv's ``bin`` first on
``PATH`` (as after ``source .venv/bin/activate``). The docs' gateway address
``127.0.0.1:8080`` is replaced by the test's own free port, the only change made to
what a user would type.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from _procs import LlmshipProcess, free_port

REPO = Path(__file__).resolve().parent.parent
DOCS_ADDRESS = "127.0.0.1:8080"
PROJECT_FILES = ("models", "rollouts", "evals", "locustfile.py")
"""What a checkout of the repository holds that the README's commands use."""


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Poll ``check`` until it is true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout:g}s waiting for {what}"
        time.sleep(0.25)


@dataclass
class Shell:
    """Runs commands as a user types them, in ``cwd``, against the gateway on ``port``;
    a ``cd`` holds for the commands after it, as in a terminal."""

    cwd: Path
    port: int
    extra_env: dict[str, str] = field(default_factory=dict)
    transcript: list[str] = field(default_factory=list)
    """Every command with its exit status and output, for failure messages."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMSHIP_", "PYTEST_"))}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["LLMSHIP_GATEWAY_PORT"] = str(self.port)
        env["LLMSHIP_ENDPOINT_MAX_AGE"] = env.get("LLMSHIP_ENDPOINT_MAX_AGE", "30")
        env["PYTHONUNBUFFERED"] = "1"
        return {**env, **self.extra_env}

    def localise(self, command: str) -> str:
        return command.replace(DOCS_ADDRESS, f"127.0.0.1:{self.port}")

    def run(
        self, command: str, *, codes: tuple[int, ...] = (0,), timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` in bash; fail, with everything run so far, unless it exits
        with one of ``codes``. Its stdout and stderr are in the result (``stdout``
        holds both)."""
        command = self.localise(command)
        started = time.monotonic()
        where = self.cwd / ".journey-cwd"
        script = f"{command}\n__rc=$?; pwd > {where}; exit $__rc"
        done = subprocess.run(
            ["bash", "-c", script],
            check=False,
            cwd=self.cwd,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
        took = time.monotonic() - started
        if where.is_file():  # a `cd` in the command holds for the next ones, as in a terminal
            self.cwd = Path(where.read_text().strip())
            where.unlink()
        self.transcript.append(f"$ {command}\n[exit {done.returncode}, {took:.1f}s]\n{done.stdout}")
        assert done.returncode in codes, self.history()
        return done

    def history(self) -> str:
        return "\n".join(self.transcript[-12:])


def project(tmp_path: Path) -> Path:
    """A fresh copy of the repository's project files (what a clean checkout has)."""
    root = tmp_path / "checkout"
    root.mkdir()
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name)
        else:
            shutil.copy2(source, root / name)
    return root


class Up(LlmshipProcess):
    """``llmship up`` in a project directory, as the user starts it (``make up``)."""

    def __init__(self, shell: Shell, *extra: str):
        env = shell.env()
        env["LLMSHIP_HOME"] = str(shell.cwd / ".llmship")
        super().__init__(["up", *extra], shell.cwd, env)
        self.shell = shell

    def wait_ready(self, timeout: float = 120) -> Up:
        deadline = time.monotonic() + timeout
        while "ready" not in self.output():
            assert self.proc.poll() is None, f"llmship up exited:\n{self.output()}"
            assert time.monotonic() < deadline, f"llmship up not ready:\n{self.output()}"
            time.sleep(0.2)
        return self

    def interrupt(self, sig: int = signal.SIGINT, timeout: float = 30) -> float:
        """Send ``sig`` as Ctrl-C (or ``kill``) does; seconds until everything stopped."""
        started = time.monotonic()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        took = time.monotonic() - started
        self.stop()
        assert code == 0, self.output()
        return took


@contextmanager
def stack(shell: Shell, *extra: str) -> Iterator[Up]:
    """``llmship up`` running until the block ends, then stopped with Ctrl-C; the logs
    of every child are shown when the block fails."""
    up = Up(shell, *extra)
    try:
        up.wait_ready()
        yield up
    except BaseException:
        logs = shell.cwd / ".llmship" / "logs"
        tails = [
            f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-40:])
            for log in sorted(logs.rglob("*.log"))
        ]
        print(f"--- llmship up\n{up.output()}\n" + "\n".join(tails), file=sys.stderr)
        raise
    finally:
        if up.proc.poll() is None:
            up.interrupt()


@dataclass
class Answer:
    sent: float
    status: int
    version: str
    variant: str
    query_id: str
    user: str
    detail: str = ""


_Clients = TypeVar("_Clients", bound="ClientThreads")


class ClientThreads:
    """Client threads, started by ``with`` and stopped by :meth:`stop` (or the end of
    the block); a subclass says what each runs (:meth:`clients`) and checks
    ``self._stop``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def clients(self) -> list[tuple[Callable[..., None], tuple[Any, ...]]]:
        """Each client's function and its arguments."""
        raise NotImplementedError

    def __enter__(self: _Clients) -> _Clients:
        self._threads = [
            threading.Thread(target=target, args=args, daemon=True)
            for target, args in self.clients()
        ]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)


class Traffic(ClientThreads):
    """Steady client traffic through the gateway: ``clients`` threads, each sending a
    ``/predict`` (or, with ``preview``, some with ``X-Llmship-Variant: preview``) every
    ``every`` seconds, each as one of ``users`` sticky users. Every answer is kept."""

    def __init__(
        self,
        url: str,
        *,
        clients: int = 2,
        every: float = 0.4,
        users: int = 200,
        preview_share: float = 0.0,
        max_new_tokens: int = 8,
    ):
        super().__init__()
        self.url = url
        self.n_clients = clients
        self.every = every
        self.users = users
        self.preview_share = preview_share
        self.max_new_tokens = max_new_tokens
        self.answers: list[Answer] = []

    def clients(self) -> list[tuple[Callable[..., None], tuple[Any, ...]]]:
        return [(self._client, (i,)) for i in range(self.n_clients)]

    def _client(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(timeout=120) as http:
            while not self._stop.is_set():
                user = f"user-{rng.randrange(self.users)}"
                headers = {"X-User-Id": user}
                if self.preview_share and rng.random() < self.preview_share:
                    headers["X-Llmship-Variant"] = "preview"
                body = {
                    "prompt": "What is a canary release?",
                    "max_new_tokens": self.max_new_tokens,
                }
                sent = time.monotonic()
                try:
                    r = http.post(f"{self.url}/predict", json=body, headers=headers)
                    answer = Answer(
                        sent,
                        r.status_code,
                        r.headers.get("x-llmship-version", ""),
                        r.headers.get("x-llmship-variant", ""),
                        r.headers.get("x-request-id", ""),
                        user,
                        "" if r.status_code == 200 else r.text[:300],
                    )
                except httpx.HTTPError as exc:
                    answer = Answer(sent, 0, "", "", "", user, f"{type(exc).__name__}: {exc}")
                with self._lock:
                    self.answers.append(answer)
                self._stop.wait(max(0.0, self.every - (time.monotonic() - sent)))

    def snapshot(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)

    def errors(self) -> list[Answer]:
        return [a for a in self.snapshot() if a.status != 200]

    def versions(self, since: float = 0.0) -> set[str]:
        return {a.version for a in self.snapshot() if a.sent >= since and a.status == 200}

    def assert_no_errors(self) -> None:
        answers = self.snapshot()
        errors = [a for a in answers if a.status != 200]
        assert answers, "the steady traffic sent nothing"
        assert not errors, f"{len(errors)} of {len(answers)} requests failed: {errors[:5]}"


def rollout_status(shell: Shell) -> dict[str, Any]:
    """``llmship rollout status --format json``, parsed."""
    data: dict[str, Any] = json.loads(shell.run("llmship rollout status --format json").stdout)
    return data


def production(shell: Shell) -> str:
    """Where the production alias points, as ``llmship alias list`` says."""
    rows = json.loads(shell.run("llmship alias list --format json").stdout)
    return next(str(r["ref"]) for r in rows if r["alias"] == "production")


def gateway_serves(url: str, ref: str) -> Callable[[], bool]:
    """A check: the gateway routes its stable requests to ``ref`` (its /readyz says so)."""

    def check() -> bool:
        try:
            return bool(httpx.get(f"{url}/readyz", timeout=2).json().get("stable") == ref)
        except (httpx.HTTPError, ValueError):
            return False

    return check


__all__ = [
    "REPO",
    "Answer",
    "Shell",
    "Traffic",
    "Up",
    "free_port",
    "gateway_serves",
    "production",
    "project",
    "rollout_status",
    "stack",
    "wait_for",
]
