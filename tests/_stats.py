"""A stats source with fixed answers, for tests of analysis and the controller."""

from __future__ import annotations

from collections.abc import Mapping

from llmship.analysis import VersionStats


class InMemoryStats:
    """A :class:`~llmship.analysis.StatsSource` with fixed answers; records every call."""

    def __init__(self, stats: Mapping[tuple[str, str], VersionStats] | None = None):
        self._stats: dict[tuple[str, str], VersionStats] = dict(stats or {})
        self.calls: list[tuple[str, str, float]] = []

    def set(self, env: str, ref: str, stats: VersionStats) -> None:
        """Answer ``stats`` for ``ref`` in ``env`` from now on."""
        self._stats[(env, ref)] = stats

    def stats(self, env: str, ref: str, window_s: float) -> VersionStats:
        self.calls.append((env, ref, window_s))
        return self._stats.get((env, ref), VersionStats())
