"""Tell the registry where a model server listens, so gateways can find it."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
from urllib.parse import urlsplit

from llmship.errors import LlmshipError, SpecError
from llmship.settings import Settings

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
WILDCARDS = ("0.0.0.0", "::", "")
"""Listen addresses that mean every interface: no other host can use them."""
PROBE = {socket.AF_INET: "192.0.2.1", socket.AF_INET6: "2001:db8::1"}
"""Documentation addresses (RFC 5737, RFC 3849): a UDP socket "connected" to one
tells which local address the default route leaves by; no packet is sent."""


def check_advertise_url(url: str) -> str:
    """``url`` as gateways will use it (no trailing ``/``); SpecError says what to fix."""
    example = "e.g. http://10.0.0.5:8000"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SpecError(f"--advertise-url {url!r}: give an http:// or https:// URL, {example}")
    try:
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as exc:
        raise SpecError(f"--advertise-url {url!r}: {exc}; {example}") from exc
    host = parts.hostname or ""
    if not host or host in WILDCARDS:
        raise SpecError(
            f"--advertise-url {url!r}: other hosts cannot reach {host or 'an empty host'}; "
            f"give this host's address or name, {example}"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise SpecError(
            f"--advertise-url {url!r}: no user, query or fragment; the base URL, {example}"
        )
    return url.rstrip("/")


def advertised_url(cfg: Settings) -> tuple[str, str]:
    """The URL a model server listening by ``cfg`` is announced at, and how it was
    found. A server listening on every interface (``0.0.0.0``, ``::``) is announced at
    this host's address on the way to the registry, else on the default route, else
    at its host name's address; loopback only when nothing else is found."""
    host, port = cfg.serve_host, cfg.serve_port
    if host not in WILDCARDS:
        return f"http://{_url_host(host)}:{port}", "the listen address"
    targets = []
    registry_host = urlsplit(cfg.database_url or "").hostname
    if registry_host:
        targets.append((registry_host, "this host's address on the route to the registry"))
    targets += [(PROBE[socket.AF_INET], "this host's address on the default route")]
    if host == "::":
        targets += [(PROBE[socket.AF_INET6], "this host's IPv6 address on the default route")]
    for target, how in targets:
        address = _source_address(target)
        if address is not None:
            return f"http://{_url_host(address)}:{port}", how
    address = _host_name_address()
    if address is not None:
        return f"http://{_url_host(address)}:{port}", "the address of this host's name"
    return (
        f"http://127.0.0.1:{port}",
        "loopback: no other address found, only this host can reach it; pass --advertise-url",
    )


def _source_address(target: str) -> str | None:
    """The local address packets to ``target`` leave from; None when there is no route
    or it is a loopback address."""
    try:
        infos = socket.getaddrinfo(target, 9, type=socket.SOCK_DGRAM)
    except OSError:
        return None
    for family, kind, proto, _, sockaddr in infos:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.connect(sockaddr)
                address = str(sock.getsockname()[0])
        except OSError:
            continue
        if _usable(address):
            return address
    return None


def _host_name_address() -> str | None:
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, type=socket.SOCK_STREAM)
    except OSError:
        return None
    return next((str(i[4][0]) for i in infos if _usable(str(i[4][0]))), None)


def _usable(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_unspecified or ip.is_link_local)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


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
