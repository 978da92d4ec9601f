"""Shared fixtures: a real PostgreSQL server (one per pytest-xdist worker), an empty
registry database of each kind, and the command line run in a clean directory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from _cli import Run, cli_runner
from _postgres import PostgresServer, PostgresUnavailable, postgres_server
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
