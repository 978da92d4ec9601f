"""Named API tokens with roles (``llmship tokens``): who a change is recorded as, what
each role may do, the token file (made by the CLI, read again by a running gateway)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from _gateway import ADMIN, CANARY, PREVIEW, STABLE
from fakes_gateway import FakeStore
from llmship.cli import app
from llmship.errors import SpecError
from llmship.gateway import create_app
from llmship.gateway.tokens import Role, TokenBook, TokenEntry, digest, read_entries, write_entries
from llmship.settings import Settings


@pytest.fixture
def book(tmp_path: Path) -> Path:
    """A token file with one token per role: the token is the role's name, backwards."""
    path = tmp_path / "tokens.yaml"
    entries = [TokenEntry(f"{r.label}-bot", r, digest(r.label[::-1])) for r in Role]
    write_entries(path, entries)
    return path


@pytest.fixture
def client(book: Path, tmp_path: Path) -> Iterator[TestClient]:
    store = FakeStore([STABLE, CANARY, PREVIEW], production=STABLE)
    settings = Settings(home=tmp_path, admin_token=None, tokens_file=book)
    with TestClient(create_app(store, settings)) as test_client:
        yield test_client


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {role[::-1]}"}


def test_each_role_may_do_what_it_says(client: TestClient) -> None:
    # read: reads only, told which role a change needs
    assert client.get("/api/v1/traffic", headers=bearer("read")).status_code == 200
    r = client.post("/api/v1/toggle/new-model", headers=bearer("read"))
    assert r.status_code == 403
    assert "'read-bot' has the role read" in r.json()["error"]["message"]
    assert "needs operator" in r.json()["error"]["message"]
    # operator: changes, recorded as the token's name
    r = client.put(
        "/api/v1/traffic",
        json={"canary": {"release": CANARY, "weight": 10}, "reason": "try"},
        headers=bearer("operator"),
    )
    assert r.status_code == 200, r.text
    # but not forcing past the gates
    client.put("/api/v1/traffic", json={"preview": PREVIEW}, headers=bearer("operator"))
    body = {"reason": "hotfix", "force": True}
    r = client.post("/api/v1/traffic/promote-preview", json=body, headers=bearer("operator"))
    assert r.status_code == 403 and "force past the gates" in r.json()["error"]["message"]
    r = client.post("/api/v1/traffic/promote-preview", json=body, headers=bearer("admin"))
    assert r.status_code == 200, r.text
    # a token no one has is refused
    assert client.get("/api/v1/traffic", headers=bearer("nobody")).status_code == 403


def test_the_actor_is_the_tokens_identity_and_the_header_a_display_name(
    client: TestClient,
) -> None:
    r = client.get("/api/v1/whoami", headers={**bearer("operator"), "X-Llmship-Actor": "Ann"})
    assert r.json() == {"name": "operator-bot", "actor": "operator-bot (Ann)", "role": "operator"}
    store: FakeStore = client.app.state.gateway.store  # type: ignore[attr-defined]
    client.post("/api/v1/toggle/f", headers={**bearer("operator"), "X-Llmship-Actor": "admin"})
    assert store.flags["f"].enabled  # the header cannot make the change anyone else's
    r = client.get("/api/v1/whoami", headers={**bearer("read"), "X-Llmship-Actor": "admin-api"})
    assert r.json()["actor"] == "read-bot (admin-api)" and r.json()["role"] == "read"


def test_the_admin_token_setting_is_the_admin_role(tmp_path: Path) -> None:
    store = FakeStore([STABLE], production=STABLE)
    settings = Settings(home=tmp_path, admin_token=ADMIN["Authorization"].split()[1])
    with TestClient(create_app(store, settings)) as client:
        r = client.get("/api/v1/whoami", headers=ADMIN)
        assert r.json() == {"name": "admin-api", "actor": "admin-api", "role": "admin"}


def test_a_running_gateway_reads_the_file_again_when_it_changes(
    client: TestClient, book: Path
) -> None:
    assert client.get("/api/v1/whoami", headers=bearer("new")).status_code == 403
    entries = read_entries(book)
    write_entries(book, [*entries, TokenEntry("new-bot", Role.READ, digest("wen"))])
    os.utime(book, (1, 1))  # a different mtime even within the clock's resolution
    assert client.get("/api/v1/whoami", headers=bearer("new")).json()["name"] == "new-bot"
    write_entries(book, entries)
    assert client.get("/api/v1/whoami", headers=bearer("new")).status_code == 403


def test_a_bad_token_file_says_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text("tokens:\n  - {name: a, role: boss, sha256: " + "a" * 64 + "}\n")
    with pytest.raises(SpecError, match="unknown role 'boss': one of read, operator, admin"):
        read_entries(path)
    path.write_text("tokens:\n  - {name: a, role: read, sha256: nope}\n")
    with pytest.raises(SpecError, match=r"tokens\[0\]\.sha256: not a SHA-256"):
        read_entries(path)
    assert not TokenBook(None, tmp_path / "missing.yaml").configured


def test_the_cli_adds_lists_and_removes_tokens(cli_home: Path) -> None:
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, result.output
        return result.output

    # When a token is added, it is printed once and only its hash is kept
    token = run("tokens", "add", "ci-bot", "--role", "read").strip().splitlines()[-1]
    path = cli_home / "state" / "tokens.yaml"
    assert token not in path.read_text() and digest(token) in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600
    book = TokenBook(None, path)
    found = book.identify(token)
    assert found is not None and (found.name, found.role) == ("ci-bot", Role.READ)
    listed = run("tokens", "list")
    assert "ci-bot" in listed and "read" in listed and token not in listed
    # a second token of the same name, a bad name, an unknown name: refused
    assert "has a token already" in run("tokens", "add", "ci-bot", code=2)
    assert "lowercase" in run("tokens", "add", "CI Bot", code=2)
    assert "named tokens: ci-bot" in run("tokens", "remove", "nobody", code=2)
    run("tokens", "remove", "ci-bot")
    assert book.identify(token) is None
