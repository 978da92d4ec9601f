"""Fixtures of the controller run in process (the rig of ``tests/_controller.py``), for
the test files that list this module in ``pytest_plugins`` (the names ``registry`` and
``world`` mean other things in other files, so they are not in conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from _controller import Clock, World
from _registry import chat_registry
from _stats import InMemoryStats
from llmship.registry import Registry


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[tuple[Registry, Clock]]:
    """A registry with chat@1.0.0 in production and chat@1.1.0 registered, on a clock."""
    clock = Clock()
    with chat_registry(tmp_path / "registry.db", clock=clock.dt) as reg:
        yield reg, clock


@pytest.fixture
def world(registry: tuple[Registry, Clock]) -> World:
    """The registry of ``registry`` with fake stats and a controller of env ``dev``."""
    reg, clock = registry
    return World(reg, clock, InMemoryStats())
