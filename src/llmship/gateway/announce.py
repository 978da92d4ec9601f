"""Tell the registry where a gateway listens, so the controller can read every gateway.

A gateway announces itself at start (its advertised URL, pid and host), renews that
every ``GATEWAY_HEARTBEAT_S`` (``registry/records.py``) with the policy revision it
routes by and the requests it answered over the last minute, and withdraws when it stops cleanly. A
registry that is down only delays the announcement (one warning per outage); the
gateway goes on serving.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Callable

from llmship.gateway.store import GatewayDirectory
from llmship.registry.records import GATEWAY_HEARTBEAT_S

log = logging.getLogger(__name__)


def instance_id() -> str:
    """A name unique to this process: ``host-pid-random``."""
    return f"{socket.gethostname()[:100]}-{os.getpid()}-{secrets.token_hex(3)}"


class GatewayAnnouncer:
    """Announces one gateway of ``env`` at ``url`` and keeps the announcement fresh.

    ``revision`` and ``recent`` are read on the event loop at each heartbeat: the
    policy revision routed by, and the requests answered in the last minute.
    """

    def __init__(
        self,
        directory: GatewayDirectory,
        env: str,
        url: str,
        *,
        revision: Callable[[], int | None],
        recent: Callable[[], int],
        interval: float = GATEWAY_HEARTBEAT_S,
        instance: str | None = None,
    ):
        self.directory = directory
        self.env = env
        self.url = url.rstrip("/")
        self.revision = revision
        self.recent = recent
        self.interval = interval
        self.instance = instance or instance_id()
        self.host = socket.gethostname()
        self.announced = asyncio.Event()
        """Set once the first announcement is stored."""
        self._outage = False

    def _announce(self, revision: int | None, recent: int) -> None:
        self.directory.announce_gateway(
            self.env,
            self.instance,
            self.url,
            pid=os.getpid(),
            host=self.host,
            policy_revision=revision,
            recent_requests=recent,
        )

    async def beat(self) -> bool:
        """Announce (or renew) once; False when the registry could not be written."""
        revision, recent = self.revision(), self.recent()
        try:
            await asyncio.to_thread(self._announce, revision, recent)
        except Exception as exc:  # a registry that is down raises many kinds of error
            if not self._outage:
                self._outage = True
                log.warning(
                    "cannot announce the gateway %s at %s (%s); trying again every %gs",
                    self.instance,
                    self.url,
                    getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}",
                    self.interval,
                )
            return False
        if not self.announced.is_set():
            log.info("announced gateway %s of env %s at %s", self.instance, self.env, self.url)
            self.announced.set()
        elif self._outage:
            log.info("announced gateway %s again", self.instance)
        self._outage = False
        return True

    async def run(self) -> None:
        """Announce and renew until cancelled; withdraw on the way out."""
        try:
            while True:
                await self.beat()
                await asyncio.sleep(self.interval)
        finally:
            if self.announced.is_set():
                try:
                    await asyncio.shield(
                        asyncio.to_thread(self.directory.remove_gateway, self.env, self.instance)
                    )
                    log.info("withdrew gateway %s", self.instance)
                except (Exception, asyncio.CancelledError) as exc:
                    log.warning("could not withdraw the gateway %s: %s", self.instance, exc)
