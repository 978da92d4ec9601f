"""Open-loop arrival schedules: when each request is sent, whatever the server does.

``constant`` spaces requests exactly ``1/rate`` apart; ``poisson`` draws exponential
gaps with mean ``1/rate`` from a seeded generator, so a run is repeatable.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator


def arrivals(rate: float, kind: str = "constant", *, seed: int = 0) -> Iterator[float]:
    """Send times in seconds from the start of the run, endless and increasing."""
    if not rate > 0:
        raise ValueError("the arrival rate must be above 0")
    if kind == "constant":
        return (i / rate for i in itertools.count())
    if kind == "poisson":
        return _poisson(rate, random.Random(seed))
    raise ValueError(f"unknown arrival kind {kind!r} (constant or poisson)")


def _poisson(rate: float, rng: random.Random) -> Iterator[float]:
    at = 0.0
    while True:
        at += rng.expovariate(rate)
        yield at


def arrivals_until(rate: float, kind: str, *, seed: int, end: float) -> list[float]:
    """The send times before ``end`` seconds."""
    return list(itertools.takewhile(lambda t: t < end, arrivals(rate, kind, seed=seed)))
