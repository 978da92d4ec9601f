"""Where a model server is announced: the advertised URL, checked, or the address other
hosts reach it by when it listens on every interface."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from _cli import Run
from llmship import advertise
from llmship.errors import SpecError
from llmship.server.announce import advertised_url, check_advertise_url
from llmship.settings import Settings


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No llmship.yaml or registry setting of the shell that runs the tests."""
    monkeypatch.chdir(tmp_path)
    for var in ("LLMSHIP_CONFIG", "LLMSHIP_DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize(
    ("url", "announced"),
    [
        ("http://10.0.0.5:8000", "http://10.0.0.5:8000"),
        ("https://models.internal/chat/", "https://models.internal/chat"),
        ("http://[fd00::5]:8000", "http://[fd00::5]:8000"),
    ],
)
def test_an_advertised_url_is_announced_as_given(url: str, announced: str) -> None:
    assert check_advertise_url(url) == announced


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("10.0.0.5:8000", "give an http:// or https:// URL"),
        ("ftp://10.0.0.5", "give an http:// or https:// URL"),
        ("http://", "give an http:// or https:// URL"),
        ("http://10.0.0.5:port", "Port could not be cast"),
        ("http://10.0.0.5:70000", "Port out of range"),
        ("http://0.0.0.0:8000", "other hosts cannot reach 0.0.0.0"),
        ("http://[::]:8000", "other hosts cannot reach ::"),
        ("http://10.0.0.5:8000/?a=1", "no user, query or fragment"),
    ],
)
def test_a_bad_advertised_url_says_what_to_fix(url: str, problem: str) -> None:
    with pytest.raises(SpecError, match="--advertise-url") as info:
        check_advertise_url(url)
    assert problem in info.value.message
    assert "e.g. http://10.0.0.5:8000" in info.value.message


def test_a_bad_advertised_url_stops_serve_with_one_line(run: Run) -> None:
    result = run("serve", "--release", "chat@1.0.0", "--advertise-url", "0.0.0.0:8000", code=2)
    assert "--advertise-url '0.0.0.0:8000': give an http:// or https:// URL" in " ".join(
        result.output.split()
    )
    assert "Traceback" not in result.output


def test_a_spec_file_is_not_announced(run: Run) -> None:
    result = run("serve", "--spec", __file__, "--advertise-url", "http://h:1", code=2)
    assert "a --spec file is not announced" in " ".join(result.output.split())


def test_a_server_on_one_address_is_announced_there() -> None:
    assert advertised_url(Settings(serve_host="10.1.2.3", serve_port=8001)) == (
        "http://10.1.2.3:8001",
        "the listen address",
    )
    url, _ = advertised_url(Settings(serve_host="::1", serve_port=8001))
    assert url == "http://[::1]:8001"


def test_a_server_on_every_interface_is_announced_at_a_reachable_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a host whose route to the registry leaves by 10.0.0.7, its default route by
    # 192.168.1.20, and whose name resolves to 172.16.0.9
    routes = {"db.internal": "10.0.0.7", advertise.PROBE[socket.AF_INET]: "192.168.1.20"}
    monkeypatch.setattr(advertise, "_source_address", routes.get)
    monkeypatch.setattr(advertise, "_host_name_address", lambda: "172.16.0.9")
    registry = "postgresql+psycopg://u:p@db.internal:5432/llmship"
    # The route to the registry wins: gateways share that network
    cfg = Settings(serve_host="0.0.0.0", serve_port=8000, database_url=registry)
    assert advertised_url(cfg) == (
        "http://10.0.0.7:8000",
        "this host's address on the route to the registry",
    )
    # Else the default route's, else the host name's, else loopback, saying so
    cfg = Settings(serve_host="0.0.0.0", serve_port=8000)
    assert advertised_url(cfg)[0] == "http://192.168.1.20:8000"
    del routes[advertise.PROBE[socket.AF_INET]]
    assert advertised_url(cfg) == ("http://172.16.0.9:8000", "the address of this host's name")
    monkeypatch.setattr(advertise, "_host_name_address", lambda: None)
    url, how = advertised_url(cfg)
    assert url == "http://127.0.0.1:8000"
    assert "only this host can reach it; pass --advertise-url" in how
    # On :: an IPv6 default route counts too
    routes[advertise.PROBE[socket.AF_INET6]] = "2001:db8::20"
    assert advertised_url(Settings(serve_host="::", serve_port=8000))[0] == (
        "http://[2001:db8::20]:8000"
    )


def test_the_real_route_gives_no_loopback_or_wildcard_address() -> None:
    address = advertise._source_address(advertise.PROBE[socket.AF_INET])
    assert address is None or address not in ("127.0.0.1", "0.0.0.0")
    assert advertise._source_address("127.0.0.1") is None  # loopback: not for other hosts
