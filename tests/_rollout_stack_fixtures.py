"""Fixtures of the real rollout stack (``tests/_rollout_stack.py``), for the process test
files that list this module in ``pytest_plugins`` (``stack`` means other things in
other files, so it is not in conftest.py). ``stack`` is module-scoped: each test file
starts its own stack once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from _rollout_stack import Stack, fresh_stack, started_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A gateway, a controller, and model servers for STABLE (real), GOOD and BAD (fake
    upstreams) of env dev, all started at once."""
    with started_stack(tmp_path_factory.mktemp("rollout")) as started:
        yield started


@pytest.fixture
def fresh(stack: Stack) -> Iterator[Stack]:
    """The file's stack back at its starting point for one test (``fresh_stack``)."""
    with fresh_stack(stack):
        yield stack
