"""A pytest plugin for regression tests of a release, like the seed's::

    def test_regression(generate):
        output = generate("你好")
        assert output.strip()

Installed with llmship (entry point ``pytest11``), so ``pytest regression_test.py
-v`` finds the fixtures:

``llmship_release``
    A :class:`ServedRelease` for the whole session: the release loaded in-process
    (the real model), generating at temperature 0. Which release: the
    ``--llmship-release`` option, else ``$LLMSHIP_TEST_RELEASE`` (``NAME@VERSION``,
    an alias of ``$LLMSHIP_ENV``, or a release spec file), else the ``production``
    alias of the registry (when there is one), else the bundled SmolLM2 release.
``generate``
    ``generate(prompt, max_new_tokens=100, **params) -> str``: the release's answer to
    ``prompt`` as a user message. ``params`` override sampling (``temperature``,
    ``seed``, ``stop``, ...).

``--llmship-threads N`` (or ``$LLMSHIP_TEST_THREADS``) sets llama.cpp's CPU threads.

pytest loads this module in every run: it imports nothing heavy until a test asks
for a fixture.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from llmship.backends import Backend
    from llmship.release.spec import ReleaseSpec

__all__ = ["ServedRelease", "generate", "llmship_release"]

RELEASE_ENV = "LLMSHIP_TEST_RELEASE"
THREADS_ENV = "LLMSHIP_TEST_THREADS"
GENERATE_TIMEOUT_S = 300.0
T = TypeVar("T")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llmship", "llmship regression tests")
    group.addoption(
        "--llmship-release",
        metavar="NAME@VERSION",
        default=None,
        help="Release the `generate` fixture serves: NAME@VERSION, an alias, or a spec "
        f"file (default: ${RELEASE_ENV}, the production alias, the bundled release).",
    )
    group.addoption(
        "--llmship-threads",
        metavar="N",
        type=int,
        default=None,
        help=f"llama.cpp CPU threads for the served release (default: ${THREADS_ENV} "
        "or the release's runtime.n_threads).",
    )


class ServedRelease:
    """A release's backend running on a private event loop in a background thread, so
    that synchronous tests can call :meth:`generate`."""

    def __init__(self, spec: ReleaseSpec) -> None:
        self.spec = spec
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="llmship-release", daemon=True
        )
        self._backend: Backend | None = None

    @property
    def ref(self) -> str:
        """``NAME@VERSION`` of the release served."""
        return self.spec.ref

    def start(self) -> None:
        """Load the model (verifying its weights first)."""
        from llmship.backends import create_backend

        self._thread.start()
        backend = create_backend(self.spec)
        self._run(backend.start())
        self._backend = backend

    def generate(self, prompt: str, max_new_tokens: int = 100, **params: Any) -> str:
        """The release's answer to ``prompt`` (a user message, with the release's prompt
        template and system prompt), at temperature 0 unless ``params`` says otherwise."""
        from llmship.backends.prompting import generation_request

        if self._backend is None:
            raise RuntimeError("the release is not started (or already closed)")
        params.setdefault("temperature", 0.0)
        request = generation_request(
            self.spec, [("user", prompt)], max_tokens=max_new_tokens, **params
        )
        backend = self._backend

        async def collect() -> str:
            parts = [chunk.text async for chunk in backend.stream(request)]
            return "".join(parts)

        return self._run(collect())

    def close(self) -> None:
        """Release the model, then stop and close the private event loop."""
        backend, self._backend = self._backend, None
        if self._thread.is_alive():
            try:
                if backend is not None:
                    self._run(backend.close())
                self._run(self._loop.shutdown_asyncgens())
                self._run(self._loop.shutdown_default_executor())
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join()
        self._loop.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(GENERATE_TIMEOUT_S)


def choose_release(config: pytest.Config) -> ReleaseSpec:
    """The release to serve (see the module's docstring for the order)."""
    from llmship.release.bundled import bundled_spec
    from llmship.settings import load_settings

    wanted = config.getoption("llmship_release") or os.environ.get(RELEASE_ENV) or None
    if wanted and Path(wanted).suffix in (".yaml", ".yml") and Path(wanted).is_file():
        from llmship.release.spec import load_spec

        spec = load_spec(Path(wanted))
    else:
        settings = load_settings()
        registry_there = bool(settings.database_url) or (settings.home / "registry.db").is_file()
        spec = bundled_spec()
        if wanted or registry_there:
            from llmship.registry import Registry

            registry = Registry.open(settings.registry_url, home=settings.home)
            try:
                if wanted:
                    spec = registry.resolve(wanted, env=settings.env).spec
                else:
                    production = registry.get_alias(settings.env, "production")
                    spec = production.spec if production is not None else spec
            finally:
                registry.close()
    threads = config.getoption("llmship_threads") or os.environ.get(THREADS_ENV)
    if threads and spec.backend == "llamacpp":
        runtime = spec.runtime.model_copy(update={"n_threads": int(threads)})
        spec = spec.model_copy(update={"runtime": runtime})
    return spec


@pytest.fixture(scope="session")
def llmship_release(pytestconfig: pytest.Config) -> Iterator[ServedRelease]:
    """The release under test, served in-process for the whole session."""
    from llmship.errors import LlmshipError

    try:
        served = ServedRelease(choose_release(pytestconfig))
    except LlmshipError as exc:
        pytest.fail(f"llmship: cannot choose the release to test: {exc.message}", pytrace=False)
    try:
        served.start()
    except LlmshipError as exc:
        served.close()
        pytest.fail(f"llmship: cannot serve {served.ref}: {exc.message}", pytrace=False)
    except BaseException:
        served.close()
        raise
    try:
        yield served
    finally:
        served.close()


@pytest.fixture
def generate(llmship_release: ServedRelease) -> Callable[..., str]:
    """``generate(prompt, max_new_tokens=100, **params) -> str`` with the release under
    test, at temperature 0."""
    return llmship_release.generate
