"""The pytest plugin (`llmship.testing`): its options, its fixtures over a fake backend,
and `examples/regression_test.py` against the real bundled model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

pytest_plugins = ["pytester"]

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "regression_test.py"

FAKE_CONFTEST = '''
import llmship.backends
from llmship.backends.base import Backend, BackendInfo, Chunk


class EchoBackend(Backend):
    """Answers with the user's message upper-cased, then the temperature asked for."""

    started = closed = 0

    def __init__(self, spec):
        self.spec = spec

    async def start(self):
        EchoBackend.started += 1

    async def close(self):
        EchoBackend.closed += 1

    def info(self):
        return BackendInfo(kind="echo", model="echo", context_length=None)

    async def health(self):
        return True

    async def stream(self, request):
        user = request.messages[-1].content
        words = [w.upper() for w in user.split()][: request.max_tokens]
        for word in words:
            yield Chunk(text=word + " ", tokens=1)
        yield Chunk(text=f"t={request.temperature}", finish_reason="stop", prompt_tokens=1)


llmship.backends.create_backend = EchoBackend
'''

FAKE_TESTS = """
def test_generate(generate, llmship_release):
    assert llmship_release.ref == "echo@1.0.0"
    assert generate("hello world") == "HELLO WORLD t=0.0"


def test_params(generate):
    assert generate("one two three", max_new_tokens=2, temperature=0.5) == "ONE TWO t=0.5"


def test_the_release_is_started_once_per_session(llmship_release):
    from conftest import EchoBackend

    assert (EchoBackend.started, EchoBackend.closed) == (1, 0)
"""


@pytest.fixture
def isolated(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester directory with its own empty LLMSHIP_HOME and no llmship settings."""
    monkeypatch.setenv("LLMSHIP_HOME", str(pytester.path / "home"))
    for name in ("LLMSHIP_DATABASE_URL", "LLMSHIP_ENV", "LLMSHIP_CONFIG", "LLMSHIP_TEST_RELEASE"):
        monkeypatch.delenv(name, raising=False)
    return pytester


def test_the_plugin_is_registered_with_its_options(isolated: pytest.Pytester) -> None:
    result = isolated.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(["*--llmship-release=NAME@VERSION*", "*--llmship-threads=N*"])


def test_loading_the_plugin_imports_nothing_heavy() -> None:
    import subprocess

    code = (
        "import sys, llmship.testing; "
        "heavy = [m for m in ('llama_cpp', 'sqlalchemy', 'llmship.backends', 'locust') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_the_fixtures_serve_a_release_spec_file(
    isolated: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = {
        "name": "echo",
        "version": "1.0.0",
        "backend": "openai",
        "model": {"base_url": "http://127.0.0.1:9/v1", "id": "tiny"},
        "params": {"temperature": 0.9},
    }
    (isolated.path / "echo.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("LLMSHIP_TEST_RELEASE", "echo.yaml")
    isolated.makeconftest(FAKE_CONFTEST)
    isolated.makepyfile(test_echo=FAKE_TESTS)
    result = isolated.runpytest_subprocess("-W", "error", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_an_unknown_release_fails_with_a_clear_message(isolated: pytest.Pytester) -> None:
    isolated.makepyfile(test_unknown="def test_x(generate):\n    generate('hi')\n")
    result = isolated.runpytest_subprocess(
        "--llmship-release", "nope@1.0.0", "-W", "error", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*llmship: cannot choose the release to test: *nope*"])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_example_passes_with_the_bundled_model(isolated: pytest.Pytester) -> None:
    # Given an empty registry, the plugin serves the bundled SmolLM2 release
    isolated.makepyfile(regression_test=EXAMPLE.read_text(encoding="utf-8"))
    # when a user runs `pytest regression_test.py -v` (on one CPU thread)
    result = isolated.runpytest_subprocess(
        "regression_test.py", "-v", "-W", "error", "-p", "no:cacheprovider", "--llmship-threads=1"
    )
    # then every regression test passes
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*test_regression PASSED*"])
