"""Tell the registry where a model server listens, so gateways can find it."""

from __future__ import annotations

import asyncio
import logging
import os

from llmship.advertise import advertised_url as reachable_url
from llmship.advertise import check_advertise_url
from llmship.errors import LlmshipError
from llmship.settings import Settings

__all__ = ["HEARTBEAT_SECONDS", "EndpointAnnouncer", "advertised_url", "check_advertise_url"]

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0


def advertised_url(cfg: Settings) -> tuple[str, str]:
    """The URL a model server listening by ``cfg`` is announced at, and how it was found
    (see :func:`llmship.advertise.advertised_url`)."""
    return reachable_url(cfg.serve_host, cfg.serve_port, database_url=cfg.database_url)


class EndpointAnnouncer:
    """Registers ``url`` as an endpoint of ``ref`` in ``env`` once the model is ready,
    renews it (the heartbeat) every ``interval`` seconds, and removes it when the
    server stops. A registry that is down only delays the announcement."""

    def __init__(self, cfg: Settings, ref: str, url: str, *, interval: float = HEARTBEAT_SECONDS):
        self.cfg = cfg
        self.ref = ref
        self.url = url
        self.interval = interval

    def _call(self, method: str, **kwargs: object) -> None:
        from llmship.registry import Registry

        with Registry.open(self.cfg.registry_url, home=self.cfg.home) as registry:
            getattr(registry, method)(self.cfg.env, self.ref, self.url, **kwargs)

    async def run(self) -> None:
        """Announce and renew until cancelled; withdraw on the way out."""
        announced = False
        try:
            while True:
                try:
                    await asyncio.to_thread(self._call, "register_endpoint", pid=os.getpid())
                    if not announced:
                        log.info("announced %s at %s in env %s", self.ref, self.url, self.cfg.env)
                    announced = True
                except LlmshipError as exc:
                    log.warning("cannot announce %s at %s: %s", self.ref, self.url, exc.message)
                await asyncio.sleep(self.interval)
        finally:
            try:
                await asyncio.shield(asyncio.to_thread(self._call, "remove_endpoint"))
            except (LlmshipError, asyncio.CancelledError) as exc:
                log.warning("could not withdraw the endpoint %s: %s", self.url, exc)
