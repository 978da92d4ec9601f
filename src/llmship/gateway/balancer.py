"""Balancing a release's requests over its replicas (its live model servers), in memory.

Policy, per release, for each attempt of a request:

* **In rotation first.** A replica is *in rotation* until it fails (it refuses the
  connection, times out, breaks off, answers 5xx or 429, or answers garbage). Among the
  replicas in rotation that this request has not tried yet, two are drawn at random and
  the one with fewer *outstanding* requests wins (power of two choices over least
  outstanding; with two replicas that is exactly least outstanding). A request is
  outstanding on a replica from the moment it is sent until its answer has been fully
  streamed to the client.
* **Out of rotation, then one trial.** A replica that fails is out for a backoff period:
  1 s after its first failure, doubling with each failure in a row up to 30 s. When the
  period is over, the next request that picks it is its *trial* (one at a time); success
  puts it back in rotation and resets the backoff, failure doubles it. A trial request,
  rather than an active probe of ``GET /readyz``: it checks exactly what failed (a
  server can be ready and still answer 5xx or garbage), works with any upstream, needs
  no background task, and costs the client nothing since a request that fails before
  its first byte is retried on another replica.
* **All out: the least recently failed.** When no replica of the release that this
  request has not tried is in rotation or due for a trial, it still tries one: the one
  that failed longest ago (once per release and request), rather than failing outright.

Each replica is tried at most once per request. State is kept per (release, URL) and
shared by all requests; :meth:`Balancer.sync` takes the live endpoints of each policy
snapshot, so a model server that withdraws is forgotten. Nothing here waits on I/O.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import Gauge

from llmship.gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)

BACKOFF = 1.0
"""Seconds a replica stays out of rotation after its first failure."""
MAX_BACKOFF = 30.0
"""The longest it stays out (the backoff doubles with each failure in a row)."""


class Replica:
    """One live model server of one release, as this gateway sees it."""

    __slots__ = (
        "failed_at",
        "failures",
        "gauge",
        "out_until",
        "outstanding",
        "ref",
        "trial",
        "url",
    )

    def __init__(self, ref: str, url: str, metrics: GatewayMetrics):
        self.ref = ref
        self.url = url
        self.outstanding = 0
        """Requests sent to it whose answer is not fully streamed yet."""
        self.failures = 0
        """Failures in a row; 0 while it is in rotation."""
        self.out_until = 0.0
        """When its backoff ends (the clock's time)."""
        self.failed_at = 0.0
        """When it last failed."""
        self.trial = False
        """A trial request is on its way (others leave it alone meanwhile)."""
        self.gauge = metrics.upstream_outstanding.labels(version=ref, replica=url)

    @property
    def in_rotation(self) -> bool:
        return self.failures == 0

    def __repr__(self) -> str:
        return f"Replica({self.ref} at {self.url}, outstanding={self.outstanding})"


class Attempt:
    """One request on one replica: judged once (:meth:`succeeded` or :meth:`failed`)
    when its answer starts or breaks off, and :meth:`end`-ed once it is over."""

    __slots__ = ("_balancer", "_ended", "_judged", "replica", "trial")

    def __init__(self, balancer: Balancer, replica: Replica, trial: bool):
        self._balancer = balancer
        self.replica = replica
        self.trial = trial
        """Whether this is the replica's trial after a backoff."""
        self._judged = False
        self._ended = False

    @property
    def url(self) -> str:
        return self.replica.url

    def succeeded(self) -> None:
        """The replica answered well (a 2xx that looks right, or a client error)."""
        if not self._judged:
            self._judged = True
            if self.replica.failures or self.trial:
                self._balancer._back(self.replica)

    def failed(self, reason: str) -> None:
        """The replica failed this request (``reason``: the failure label)."""
        if not self._judged:
            self._judged = True
            self._balancer._failed(self.replica, reason)

    def end(self) -> None:
        """The answer is over (or abandoned): no longer outstanding. Idempotent."""
        if not self._ended:
            self._ended = True
            replica = self.replica
            replica.outstanding -= 1
            replica.gauge.dec()
            if self.trial and not self._judged:  # abandoned: let another request try
                replica.trial = False


class Balancer:
    """Picks replicas (see the module's docstring); ``clock`` and ``rng`` are injected
    for tests."""

    def __init__(
        self,
        metrics: GatewayMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        backoff: float = BACKOFF,
        max_backoff: float = MAX_BACKOFF,
    ):
        self.metrics = metrics
        self.clock = clock
        self.rng = rng or random.Random()
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._replicas: dict[tuple[str, str], Replica] = {}
        self._refs: dict[str, tuple[Replica, ...]] = {}

    # -- the live endpoints ------------------------------------------------------------

    def sync(self, endpoints: Mapping[str, Sequence[str]]) -> None:
        """Take the live replicas of each release (from a new snapshot): new ones start in
        rotation, known ones keep their state, withdrawn ones are forgotten.

        Runs in the refresh thread: the maps are replaced whole, never changed in place
        while a request may read them."""
        old = self._replicas
        replicas: dict[tuple[str, str], Replica] = {}
        refs: dict[str, tuple[Replica, ...]] = {}
        for ref, urls in endpoints.items():
            for url in urls:
                key = (ref, url)
                replicas[key] = old.get(key) or Replica(ref, url, self.metrics)
            refs[ref] = tuple(replicas[(ref, url)] for url in urls)
        gone = [key for key in list(old) if key not in replicas]
        self._replicas, self._refs = replicas, refs
        for ref, url in gone:
            _forget(self.metrics.upstream_outstanding, ref, url)
        for ref in {ref for ref, _ in gone} - refs.keys():
            _forget(self.metrics.upstream_replicas, ref, "in")
            _forget(self.metrics.upstream_replicas, ref, "out")
        for ref in refs:
            self._show(ref)

    def replicas(self, ref: str) -> tuple[Replica, ...]:
        """The known replicas of ``ref`` (from the last :meth:`sync`)."""
        return self._refs.get(ref, ())

    # -- choosing ----------------------------------------------------------------------

    def attempts(self, ref: str, urls: Sequence[str]) -> Iterator[Attempt]:
        """The replicas one request tries, in order, each at most once: the caller
        :meth:`Attempt.end`-s each and stops iterating once one answers."""
        tried: list[str] = []
        forced = False
        while True:
            attempt = self._pick(ref, urls, tried, allow_out=not forced)
            if attempt is None:
                return
            tried.append(attempt.url)
            forced = forced or not (attempt.trial or attempt.replica.in_rotation)
            yield attempt

    def pick(self, ref: str, urls: Sequence[str]) -> Attempt | None:
        """One replica of ``ref`` for a request that is not retried (a shadow copy)."""
        return self._pick(ref, urls, (), allow_out=True)

    def _pick(
        self, ref: str, urls: Sequence[str], tried: Sequence[str], *, allow_out: bool
    ) -> Attempt | None:
        now = self.clock()
        ready: list[Replica] = []
        resting: list[Replica] = []
        for url in urls:
            if url in tried:
                continue
            replica = self._replica(ref, url)
            if replica.failures == 0 or (not replica.trial and now >= replica.out_until):
                ready.append(replica)
            else:
                resting.append(replica)
        if ready:
            if len(ready) == 1:
                chosen = ready[0]
            else:  # two distinct at random (cheaper than rng.sample), the less busy wins
                n = len(ready)
                i = int(self.rng.random() * n)
                j = int(self.rng.random() * (n - 1))
                a, b = ready[i], ready[j + 1 if j >= i else j]
                chosen = b if b.outstanding < a.outstanding else a
            trial = chosen.failures > 0
            if trial:
                chosen.trial = True
                log.info("trying %s at %s again (its backoff is over)", ref, chosen.url)
        elif resting and allow_out:
            chosen = min(resting, key=lambda r: r.failed_at)
            trial = False
        else:
            return None
        chosen.outstanding += 1
        chosen.gauge.inc()
        return Attempt(self, chosen, trial)

    def _replica(self, ref: str, url: str) -> Replica:
        key = (ref, url)
        replica = self._replicas.get(key)
        if replica is None:  # a snapshot this balancer was not synced with (tests)
            replica = self._replicas[key] = Replica(ref, url, self.metrics)
        return replica

    # -- outcomes ----------------------------------------------------------------------

    def _failed(self, replica: Replica, reason: str) -> None:
        now = self.clock()
        replica.failures += 1
        replica.trial = False
        replica.failed_at = now
        wait = min(self.backoff * 2 ** (replica.failures - 1), self.max_backoff)
        replica.out_until = now + wait
        if replica.failures == 1:
            log.warning(
                "%s at %s failed (%s): out of rotation for %gs",
                replica.ref,
                replica.url,
                reason,
                wait,
            )
            self._show(replica.ref)
        else:
            log.info(
                "%s at %s failed again (%s, %d in a row): out of rotation for %gs",
                replica.ref,
                replica.url,
                reason,
                replica.failures,
                wait,
            )

    def _back(self, replica: Replica) -> None:
        was_out = replica.failures > 0
        replica.failures = 0
        replica.trial = False
        replica.out_until = 0.0
        if was_out:
            log.info("%s at %s answers again: back in rotation", replica.ref, replica.url)
            self._show(replica.ref)

    def _show(self, ref: str) -> None:
        replicas = self._refs.get(ref, ())
        out = sum(1 for r in replicas if r.failures)
        self.metrics.upstream_replicas.labels(version=ref, state="in").set(len(replicas) - out)
        self.metrics.upstream_replicas.labels(version=ref, state="out").set(out)


def _forget(gauge: Gauge, *labels: str) -> None:
    """Drop one labelled series of ``gauge`` (nothing when it does not exist)."""
    with contextlib.suppress(KeyError):
        gauge.remove(*labels)
