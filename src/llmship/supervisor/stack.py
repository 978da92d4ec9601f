"""The local stack: model servers for each release the environment needs (the
``replicas`` setting says how many), the gateway and the rollout controller.

Every second the supervisor reads what the environment needs served (see
:func:`needed_releases`), starts the model servers each release lacks,
stops those nothing has needed for a grace period (only once every release that
takes traffic is ready: make before break), restarts any child that dies (with
exponential backoff), and stops everything in order on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx
from rich.console import Console

from llmship.errors import LlmshipError
from llmship.registry import Registry
from llmship.settings import Settings
from llmship.supervisor.children import STOP_TIMEOUT, Child
from llmship.supervisor.plan import (
    SERVE_PREFIX,
    ChildState,
    plan,
    record_exit,
    record_start,
    server_names,
    server_ref,
    server_threads,
)

log = logging.getLogger(__name__)

GATEWAY = "gateway"
CONTROLLER = "controller"
TICK_SECONDS = 1.0
DRAIN_MAX = 60.0
"""Seconds an unneeded model server may go on answering the requests it still holds
(running or queued) before it is stopped anyway."""


@dataclass(frozen=True)
class Needs:
    """What one environment needs served, read from the registry."""

    releases: frozenset[str]
    """Every release something needs a model server for."""
    settled: bool
    """Whether every release that takes traffic (the policy's routed releases) has a
    live model server (one replica is enough)."""


def needed_releases(registry: Registry, env: str, *, endpoint_max_age: float) -> Needs:
    """The releases ``env`` needs served: those of the traffic policy (stable, canary,
    preview, experiment arms, shadow), the active rollout's candidate (from the moment it
    starts, so it is ready for the first step) and stable (for a switch back), and the
    releases enabled flags route to."""
    policy = registry.get_traffic(env)
    refs = set(policy.releases())
    rollout = registry.active_rollout(env)
    if rollout is not None:
        refs |= {ref for ref in (rollout.candidate, rollout.stable) if ref}
    refs |= {f.release for f in registry.list_flags(env) if f.enabled and f.release}
    live = {e.ref for e in registry.list_endpoints(env, max_age_s=endpoint_max_age)}
    return Needs(frozenset(refs), settled=all(ref in live for ref in policy.routed()))


def ensure_admin_token(cfg: Settings) -> tuple[str, Path | None]:
    """The admin token: from settings, else the one kept in ``<home>/admin-token``
    (generated on first start, readable by its owner only)."""
    if cfg.admin_token:
        return cfg.admin_token, None
    path = cfg.home / "admin-token"
    if path.is_file():
        token = path.read_text().strip()
        if token:
            return token, path
    cfg.home.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    try:  # created at most once: two stacks (staging, prod) starting at once share it
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        written = _read_token(path)
        if written:
            return written, path
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)  # an empty file left behind: fill it
    os.fchmod(fd, 0o600)  # also when that empty file was made readable by others
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token, path


def _read_token(path: Path, timeout: float = 2.0) -> str:
    """The token another process is writing into ``path`` (created, maybe not yet
    written); empty when none comes within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        token = path.read_text().strip()
        if token or time.monotonic() > deadline:
            return token
        time.sleep(0.05)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class Stack:
    """Supervises the children of one environment."""

    def __init__(
        self,
        cfg: Settings,
        *,
        gateway_port: int,
        console: Console,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.cfg = cfg
        self.gateway_port = gateway_port
        self.console = console
        self.clock = clock
        self.logs = cfg.home / "logs" / cfg.env
        """Each environment's stack logs to its own folder: stacks share a home."""
        self.children: dict[str, Child] = {}
        self.states: dict[str, ChildState] = {}
        self.ports: dict[str, int] = {}
        self.threads: dict[str, int | None] = {}
        """llama.cpp threads each model server of a release is started with, by release
        (None: the server's own choice)."""
        self.needed: set[str] = {GATEWAY, CONTROLLER}
        self.settled = True
        self._draining: dict[str, float] = {}
        """Unneeded servers still holding requests: when they were first found busy."""
        self._stopping = False
        self.token, self.token_path = ensure_admin_token(cfg)

    # -- what is needed ------------------------------------------------------------

    def refresh_needed(self) -> None:
        """Read what the environment needs; keep the last answer while the registry is
        unreachable."""
        try:
            with Registry.open(self.cfg.registry_url, home=self.cfg.home) as registry:
                needs = needed_releases(
                    registry, self.cfg.env, endpoint_max_age=self.cfg.endpoint_max_age
                )
                for ref in needs.releases - set(self.threads):
                    self.threads[ref] = self._threads(registry, ref)
        except LlmshipError as exc:
            log.warning("cannot read what the environment needs: %s", exc.message)
            return
        servers = {
            name for ref in needs.releases for name in server_names(ref, self.cfg.replicas_of(ref))
        }
        self.needed = {GATEWAY, CONTROLLER} | servers
        self.settled = needs.settled

    def _threads(self, registry: Registry, ref: str) -> int | None:
        """The ``--threads`` each model server of ``ref`` gets (see
        :func:`~llmship.supervisor.plan.server_threads`); None for other backends."""
        from llmship.backends.llamacpp import default_threads

        try:
            spec = registry.resolve(ref, env=self.cfg.env).spec
        except LlmshipError as exc:
            log.warning("cannot read the release %s: %s", ref, exc.message)
            return None
        if spec.backend != "llamacpp":
            return None
        replicas = self.cfg.replicas_of(ref)
        return server_threads(
            self.cfg.n_threads, spec.runtime.n_threads, replicas, default_threads()
        )

    # -- children --------------------------------------------------------------------

    def _child(self, name: str) -> Child:
        env = {
            "LLMSHIP_ENV": self.cfg.env,
            "LLMSHIP_HOME": str(self.cfg.home.resolve()),
            "LLMSHIP_ADMIN_TOKEN": self.token,
        }
        if self.cfg.database_url:
            env["LLMSHIP_DATABASE_URL"] = self.cfg.database_url
        if name == GATEWAY:
            args = ["gateway", "--port", str(self.gateway_port), "--host", self.cfg.gateway_host]
            return Child(name, args, self.logs / "gateway.log", env)
        if name == CONTROLLER:
            gateway_url = f"http://127.0.0.1:{self.gateway_port}"
            args = ["controller", "--env", self.cfg.env, "--gateway-url", gateway_url]
            return Child(name, args, self.logs / "controller.log", env)
        ref, number = server_ref(name)
        port = self.ports.setdefault(name, free_port())
        args = ["serve", "--release", ref, "--port", str(port), "--host", "127.0.0.1"]
        threads = self.threads.get(ref)
        if threads is not None:
            args += ["--threads", str(threads)]
        log_path = self.logs / f"serve-{ref.replace('@', '-')}-{number}.log"
        return Child(name, args, log_path, env)

    def _start(self, name: str) -> None:
        child = self.children.get(name) or self._child(name)
        self.children[name] = child
        state = self.states.setdefault(name, ChildState(name))
        child.start()
        record_start(state, self.clock())
        again = f" (restart {state.failures})" if state.failures else ""
        if name == CONTROLLER:
            self.console.print(f"started the rollout controller, pid {child.pid}{again}")
            return
        if name == GATEWAY:
            self.console.print(
                f"started the gateway on port {self.gateway_port}, pid {child.pid}{again}"
            )
            return
        ref, _ = server_ref(name)
        threads = self.threads.get(ref)
        how = f" ({threads} thread{'s' if threads != 1 else ''})" if threads else ""
        self.console.print(
            f"started model server {self.shown(name)} on port "
            f"{self.ports[name]}{how}, pid {child.pid}{again}"
        )

    def shown(self, name: str) -> str:
        """How the model server child ``name`` is named to people: ``NAME@VERSION``, with
        ``#N`` when its release runs several replicas."""
        ref, number = server_ref(name)
        return f"{ref}#{number}" if self.cfg.replicas_of(ref) > 1 or number > 1 else ref

    def _busy(self, name: str) -> bool:
        """Whether the model server ``name`` holds requests (its in-flight gauge)."""
        port = self.ports.get(name)
        if not name.startswith(SERVE_PREFIX) or port is None:
            return False
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1.0).text
        except httpx.HTTPError:
            return False
        for line in text.splitlines():
            if line.startswith("llm_requests_in_flight{") and float(line.rsplit(" ", 1)[1]) > 0:
                return True
        return False

    def _stop(self, name: str) -> None:
        child = self.children.get(name)
        if child is None:
            return
        child.stop()
        record_exit(self.states[name], self.clock(), expected=True)
        self.console.print(f"stopped {self.shown(name)}: nothing needs it any more")

    def tick(self) -> None:
        """One round: notice exits, read the policy, start and stop children."""
        now = self.clock()
        for name, child in self.children.items():
            state = self.states[name]
            code = child.exit_code()
            if state.running and code is not None:
                record_exit(state, now, expected=False)
                self.console.print(
                    f"[yellow]{name} exited with {code}[/]; restarting in a moment. "
                    f"Last log lines:\n{child.tail()}",
                    highlight=False,
                )
        self.refresh_needed()
        actions = plan(self.needed, self.states, now, settled=self.settled)
        self._draining = {n: t for n, t in self._draining.items() if n in actions.stop}
        for name in actions.stop:
            if self._busy(name) and now - self._draining.setdefault(name, now) < DRAIN_MAX:
                continue  # requests sent before the switch are answered first
            self._draining.pop(name, None)
            self._stop(name)
        for name in actions.start:
            self._start(name)

    # -- lifecycle ---------------------------------------------------------------------

    def wait_ready(self, timeout: float = 120.0) -> bool:
        """Poll the gateway's /readyz while supervising; True once it answers 200."""
        deadline = self.clock() + timeout
        url = f"http://127.0.0.1:{self.gateway_port}/readyz"
        while self.clock() < deadline and not self._stopping:
            self.tick()
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        return False

    @contextmanager
    def signals(self) -> Iterator[None]:
        """While inside, SIGTERM and SIGINT (Ctrl-C) ask the stack to stop. SIGINT is taken
        back even where it was ignored, as in a job a shell started in the background."""

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self._stopping = True

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @property
    def stopping(self) -> bool:
        """Whether a signal asked the stack to stop."""
        return self._stopping

    def run(self) -> None:
        """Supervise until asked to stop (see :meth:`signals`), then stop every child."""
        try:
            while not self._stopping:
                self.tick()
                time.sleep(TICK_SECONDS)
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        """Stop the controller (no more traffic changes), then the gateway (no new
        requests), then every model server at once."""
        self._stopping = True
        began = time.monotonic()
        self.console.print("stopping the local stack ...")
        waves = [
            [self.children[n] for n in (CONTROLLER,) if n in self.children],
            [self.children[n] for n in (GATEWAY,) if n in self.children],
            [c for n, c in self.children.items() if n.startswith(SERVE_PREFIX)],
        ]
        for wave in waves:
            for child in wave:
                child.terminate()
            for child in wave:
                if not child.wait_stopped():
                    self.console.print(
                        f"[yellow]{child.name} did not stop within {STOP_TIMEOUT:g}s[/]: killed"
                    )
        self.console.print(f"stopped ({time.monotonic() - began:.1f}s)")
