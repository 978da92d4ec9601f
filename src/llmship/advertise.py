"""The URL a process is announced at in the registry: the one other hosts reach it by.

A model server (``llmship serve --release``) and a gateway announce themselves so that
gateways and the controller find them. ``--advertise-url`` says the URL outright (a
container, NAT, a name in DNS); without it, :func:`advertised_url` works it out from
the listen address.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from llmship.errors import SpecError

WILDCARDS = ("0.0.0.0", "::", "")
"""Listen addresses that mean every interface: no other host can use them."""
PROBE = {socket.AF_INET: "192.0.2.1", socket.AF_INET6: "2001:db8::1"}
"""Documentation addresses (RFC 5737, RFC 3849): a UDP socket "connected" to one
tells which local address the default route leaves by; no packet is sent."""


def check_advertise_url(url: str, *, example_port: int = 8000) -> str:
    """``url`` as other processes will use it (no trailing ``/``); SpecError says what to
    fix (its example URL ends in ``example_port``)."""
    example = f"e.g. http://10.0.0.5:{example_port}"
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


def advertised_url(host: str, port: int, *, database_url: str | None) -> tuple[str, str]:
    """The URL a process listening on ``host:port`` is announced at, and how it was
    found. One listening on every interface (``0.0.0.0``, ``::``) is announced at this
    host's address on the way to the registry (``database_url``'s host), else on the
    default route, else at its host name's address; loopback only when nothing else is
    found."""
    if host not in WILDCARDS:
        return f"http://{_url_host(host)}:{port}", "the listen address"
    targets = []
    registry_host = urlsplit(database_url or "").hostname
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
