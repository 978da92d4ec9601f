"""A gateway and a model server in this process for schemathesis: the gateway over a real
SQLite registry (its dashboard and admin API read it), the model server over a fake
backend (``FakeBackend``) and registered as the production release's endpoint, both
served by uvicorn on free local ports with their lifespans running.

``python tests/_fuzz_stack.py`` starts the two and prints their URLs, for a run of the
schemathesis CLI by hand (``schemathesis run URL/openapi.json``).
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from _procs import free_port
from _registry import chat_registry, make_spec
from fakes import FakeBackend
from llmship.gateway import create_app as create_gateway
from llmship.server import ModelService
from llmship.server import create_app as create_server
from llmship.server.metrics import ServerMetrics
from llmship.settings import Settings

TOKEN = "fuzz-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


class UvicornThread:
    """An ASGI app served by uvicorn in a daemon thread, lifespan included."""

    def __init__(self, app: Any, what: str) -> None:
        self.what = what
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="error", lifespan="on"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> UvicornThread:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, f"{self.what} did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


@dataclass(frozen=True)
class FuzzStack:
    server_url: str
    gateway_url: str


@contextmanager
def fuzz_stack(home: Path) -> Iterator[FuzzStack]:
    """The model server of ``chat@1.0.0`` (production) and the gateway of ``dev``."""
    settings = Settings(
        home=home,
        env="dev",
        admin_token=TOKEN,
        read_access="open",
        policy_refresh_interval=0.2,
        upstream_timeout=5.0,
        endpoint_max_age=3600,  # registered once, never renewed
    )
    spec = make_spec(version="1.0.0")
    backend = FakeBackend(context_length=4096)
    service = ModelService(spec, backend, settings, ServerMetrics(spec.ref))
    with (
        chat_registry(home / "registry.db", ("1.0.0", "1.1.0")) as registry,
        UvicornThread(create_server(service), "model server") as server,
    ):
        registry.register_endpoint("dev", spec.ref, server.url, pid=None)
        gateway_app = create_gateway(registry, settings, rng=random.Random(0))
        with UvicornThread(gateway_app, "gateway") as gateway:
            yield FuzzStack(server.url, gateway.url)


if __name__ == "__main__":  # pragma: no cover - a manual run
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, fuzz_stack(Path(tmp)) as stack:
        print(stack.server_url, stack.gateway_url, flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            sys.exit(0)
