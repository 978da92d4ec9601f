"""The provider interface: ``measure(metric, context) -> Measurement``."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from llmship.analysis.args import render
from llmship.analysis.models import Metric
from llmship.analysis.phases import Measurement

__all__ = ["MeasureContext", "MeasurementError", "Provider"]


class MeasurementError(Exception):
    """A provider could not take the measurement (the measurement is an Error)."""


@dataclass(frozen=True)
class MeasureContext:
    """What a provider needs to know about the run it measures for."""

    env: str
    """The environment (``prod``, ``staging``, ...)."""
    candidate: str
    """The release under analysis, ``name@version``."""
    stable: str | None = None
    """The stable release, ``name@version``; None when there is none."""
    window_s: float = 60.0
    """Default look-back window for builtin metrics without their own ``window``."""
    args: Mapping[str, str] = field(default_factory=dict)
    """Template arguments with their values (the built-in ones are added by :attr:`all_args`)."""
    clock: Callable[[], float] = time.time
    """The time source (seconds); injected so tests are exact."""

    @property
    def all_args(self) -> dict[str, str]:
        """``args`` plus ``version``, ``candidate``, ``stable`` and ``env``."""
        builtins = {
            "version": self.candidate,
            "candidate": self.candidate,
            "stable": self.stable or "",
            "env": self.env,
        }
        return {**self.args, **builtins}

    def render(self, text: str) -> str:
        """``text`` with ``{{args.NAME}}`` filled in; MeasurementError for an unknown name."""
        try:
            return render(text, self.all_args)
        except KeyError as exc:
            raise MeasurementError(f"no value for the argument {exc.args[0]!r}") from None


class Provider(Protocol):
    """Takes one measurement of a metric.

    Return a :class:`Measurement` with the value (its ``phase`` None to let the
    metric's conditions decide, or set when the provider decides itself) or raise
    :class:`MeasurementError`; :func:`llmship.analysis.run_measurement` turns
    exceptions into Error measurements and stamps the times.
    """

    def measure(self, metric: Metric, context: MeasureContext) -> Measurement: ...
