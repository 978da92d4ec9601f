"""Shared fixtures: a real PostgreSQL server (one per pytest-xdist worker), an empty
registry database of each kind, the command line run in a clean directory, and the
gateway in process over fake model servers (the ``tests/test_gateway_*.py`` files)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from _cli import Run, cli_runner
from _gateway import Rig, make_rig
from _postgres import PostgresServer, PostgresUnavailable, postgres_server
from fakes_gateway import FakeModelServers
from llmship.registry import Registry


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server started for this test session (this xdist worker)."""
    problem = None
    try:
        with postgres_server() as server:
            yield server
    except PostgresUnavailable as exc:
        problem = str(exc)
    if problem is not None:  # fail, never skip: `make test` installs PostgreSQL
        pytest.fail(problem, pytrace=False)


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """SQLAlchemy URL of a new, empty database on the test server."""
    with postgres.database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file under tmp_path, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'registry.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def open_many(db_url: str) -> Iterator[Callable[[], Registry]]:
    """Open extra registries on the same database (one per simulated process)."""
    opened: list[Registry] = []

    def _open() -> Registry:
        reg = Registry.open(db_url)
        opened.append(reg)
        return reg

    yield _open
    for reg in opened:
        reg.close()


@pytest.fixture
def cli_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean place for the command line: tmp_path as the working directory, state in
    tmp_path/state, actor ``tester``, and no llmship.yaml or ``LLMSHIP_*`` setting
    (database, env, config file, admin token) from the shell that runs the tests."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LLMSHIP_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("LLMSHIP_ACTOR", "tester")
    for name in ("LLMSHIP_DATABASE_URL", "LLMSHIP_ENV", "LLMSHIP_CONFIG", "LLMSHIP_ADMIN_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def run(cli_home: Path) -> Run:
    """``run(*args, code=0)``: ``llmship ARGS`` in :func:`cli_home`, its exit status checked."""
    return cli_runner()


@pytest.fixture(scope="module")
def fakes() -> Iterator[FakeModelServers]:
    """Fake model servers on one real socket, shared by a test module's gateways."""
    with FakeModelServers(hang=2.0) as servers:
        yield servers


@pytest.fixture
def rig(fakes: FakeModelServers) -> Iterator[Rig]:
    """A gateway over a fake store and :func:`fakes` (a module may define its own ``rig``)."""
    with make_rig(fakes) as r:
        yield r
