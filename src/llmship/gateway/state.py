"""The gateway's view of the registry: policy, endpoints and flags, refreshed in the background.

Requests never touch the database: each one takes the current :class:`Snapshot`
(immutable) and uses it from start to end, so a policy change (a promotion, a
new weight) is atomic for every request. When the registry cannot be read, the
last snapshot stays in use and one warning is logged per outage.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from llmship.flags import Flag, alternate_name
from llmship.gateway.balancer import Balancer
from llmship.gateway.metrics import GatewayMetrics
from llmship.gateway.store import GatewayStore
from llmship.registry.records import Endpoint
from llmship.routing import TrafficPolicy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """Everything routing needs, read from the registry at one moment."""

    policy: TrafficPolicy
    endpoints: Mapping[str, tuple[str, ...]]
    """``ref`` -> base URLs of its live model servers (its replicas), newest heartbeat
    first; a ref without one is absent."""
    flags: Mapping[str, Flag]
    """Flags of the environment, by name."""
    loaded_at: float
    """``time.monotonic()`` when it was read."""
    routing_flags: tuple[Flag, ...] = field(init=False)
    """Enabled flags that route to a release, by name."""
    model_names: frozenset[str] = field(init=False)
    """Names and NAME@VERSION refs of the releases requests can go to: the policy's and
    the routing flags' (valid ``model`` values)."""
    needs_attrs: bool = field(init=False)
    """Whether a routing flag has conditions (only then are attributes read)."""

    def __post_init__(self) -> None:
        routing = tuple(f for f in self.flags.values() if f.enabled and f.release)
        object.__setattr__(self, "routing_flags", routing)
        refs = self.policy.releases() + [f.release for f in routing if f.release]
        names = {ref.partition("@")[0] for ref in refs}
        object.__setattr__(self, "model_names", frozenset(names | set(refs)))
        object.__setattr__(self, "needs_attrs", any(f.conditions for f in routing))

    @property
    def stable_url(self) -> str | None:
        """A live endpoint of the stable release (the newest), if it has one."""
        stable = self.policy.stable
        urls = self.endpoints.get(stable, ()) if stable else ()
        return urls[0] if urls else None

    def flag(self, name: str) -> Flag | None:
        """The flag ``name``; ``new-model`` finds ``new_model`` and the other way round."""
        found = self.flags.get(name)
        if found is None:
            found = self.flags.get(alternate_name(name))
        return found


def live_endpoints(endpoints: list[Endpoint]) -> dict[str, tuple[str, ...]]:
    """``ref`` -> URLs of all its endpoints (its replicas), newest heartbeat first, each
    once."""
    urls: dict[str, dict[str, None]] = {}
    for endpoint in sorted(endpoints, key=lambda e: e.heartbeat_at, reverse=True):
        urls.setdefault(endpoint.ref, {}).setdefault(endpoint.url.rstrip("/"), None)
    return {ref: tuple(found) for ref, found in urls.items()}


class GatewayState:
    """Holds the current :class:`Snapshot` and refreshes it from the store; its
    :class:`Balancer` follows each snapshot's replicas."""

    def __init__(
        self,
        store: GatewayStore,
        env: str,
        metrics: GatewayMetrics,
        *,
        endpoint_max_age: float,
        switch_wait: float = 0.0,
        balancer: Balancer | None = None,
    ):
        self.store = store
        self.env = env
        self.metrics = metrics
        self.endpoint_max_age = endpoint_max_age
        self.switch_wait = switch_wait
        self.balancer = balancer or Balancer(metrics)
        """Spreads each release's requests over its replicas (state in memory)."""
        self.snapshot: Snapshot | None = None
        """None until the registry has been read once."""
        self.waiting_for: tuple[str, ...] = ()
        """Releases of the stored policy without a live model server, while the gateway
        still routes by the previous policy (make before break)."""
        self._waiting_since: float | None = None
        self.registry_up = False
        self._outage = False
        self._lock = threading.Lock()

    def refresh(self) -> bool:
        """Read policy, endpoints and flags (blocking: run it in a thread); False when the
        registry could not be read, in which case the last snapshot stays."""
        with self._lock:
            try:
                policy = self.store.get_traffic(self.env)
                endpoints = self.store.list_endpoints(self.env, max_age_s=self.endpoint_max_age)
                flags = self.store.list_flags(self.env)
            except Exception as exc:  # a registry that is down raises many kinds of error
                self.registry_up = False
                self.metrics.registry_up.set(0)
                if not self._outage:
                    self._outage = True
                    log.warning(
                        "cannot read the registry (%s: %s); routing with the last known policy "
                        "(revision %s) until it is back",
                        type(exc).__name__,
                        exc,
                        self.snapshot.policy.revision if self.snapshot else "none",
                    )
                return False
            if self._outage:
                self._outage = False
                log.info("the registry is reachable again")
            previous = self.snapshot
            urls = live_endpoints(endpoints)
            if previous is not None:
                policy = self._effective(previous.policy, policy, urls)
            self.balancer.sync(urls)  # before requests can see the new replicas
            self.snapshot = Snapshot(
                policy=policy,
                endpoints=urls,
                flags={f.name: f for f in flags},
                loaded_at=time.monotonic(),
            )
            self.registry_up = True
            self.metrics.registry_up.set(1)
            if previous is None or previous.policy != policy:
                self.metrics.show_policy(policy)
                if previous is not None:
                    log.info(
                        "traffic policy of %s: %s",
                        self.env,
                        previous.policy.describe_change(policy),
                    )
            return True

    def _effective(
        self,
        current: TrafficPolicy,
        stored: TrafficPolicy,
        urls: Mapping[str, tuple[str, ...]],
    ) -> TrafficPolicy:
        """The policy to route by: ``stored``, unless it sends requests to a release with
        no live model server while ``current`` does not; then ``current`` for up to
        ``switch_wait`` seconds (make before break: a new production release, a rollback
        or a canary takes requests once its server is ready)."""
        missing = tuple(ref for ref in stored.routed() if ref not in urls)
        hold = (
            stored != current
            and bool(missing)
            and self.switch_wait > 0
            and all(ref in urls for ref in current.routed())
        )
        if not hold:
            if self._waiting_since is not None and not missing:
                log.info(
                    "switching: %s %s ready",
                    ", ".join(self.waiting_for),
                    "is" if len(self.waiting_for) == 1 else "are",
                )
            self._waiting_since, self.waiting_for = None, ()
            return stored
        now = time.monotonic()
        if self._waiting_since is None:
            self._waiting_since = now
            log.info(
                "traffic policy of %s changed (%s); routing as before until %s has a live "
                "model server",
                self.env,
                current.describe_change(stored),
                " and ".join(missing),
            )
        elif now - self._waiting_since >= self.switch_wait:
            log.warning(
                "switching after %gs although %s has no live model server: its requests "
                "fail until one starts (`llmship serve --release %s`)",
                self.switch_wait,
                " and ".join(missing),
                missing[0],
            )
            self._waiting_since, self.waiting_for = None, ()
            return stored
        self.waiting_for = missing
        return current

    async def run(self, interval: float) -> None:
        """Refresh every ``interval`` seconds (in a worker thread) until cancelled."""
        while True:
            await asyncio.sleep(interval)
            await asyncio.to_thread(self.refresh)
