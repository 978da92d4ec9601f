"""Shared fixtures: a real PostgreSQL server (one per pytest-xdist worker)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from _postgres import PostgresServer, PostgresUnavailable, postgres_server


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
